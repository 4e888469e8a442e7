//! `cargo xtask lab`: the built-in lab network and its story.

use std::{thread::sleep, time::Duration};

use anyhow::{bail, Result};
use clap::Subcommand;
use labnet::{lab, Lab, LabOptions};

use crate::{build, setup, test::require_root};

/// The lab's name: its namespaces are `sensor-lab-*`, its files /run/sensor-lab.
const PREFIX: &str = "sensor-lab";

/// The lab's response policy: isolate a host on any clear detection, and
/// also block the C&C address a beacon or an intel hit names.
pub(crate) const LAB_POLICY: &str = r#"
[response]
[[response.rule]]
detectors = ["*"]
min_score = 70
action = "isolate"
ttl = "1h"

[[response.rule]]
detectors = ["beacon", "intel.*"]
min_score = 70
action = "block_peer"
ttl = "1h"
"#;

#[derive(clap::Args)]
pub struct Options {
    #[command(subcommand)]
    action: Option<Action>,
    /// The fleet story instead: three municipalities, each with its own
    /// gateway, sharing decisions and incidents through a three-node NATS
    /// cluster (docs/fleet.md).
    #[arg(long)]
    fleet: bool,
}

#[derive(Subcommand)]
enum Action {
    /// Build and start the lab with sensord running, and leave it up.
    Up,
    /// Remove every namespace, interface and pinned map the lab made.
    Down,
    /// Describe the running lab (hosts, addresses, the daemon's socket).
    Status {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(options: &Options) -> Result<()> {
    match &options.action {
        None if options.fleet => crate::lab_fleet::story(),
        None => story(),
        Some(Action::Up) => up(),
        Some(Action::Down) => {
            require_root("cargo xtask lab down")?;
            lab::destroy(PREFIX);
            println!("lab removed");
            Ok(())
        }
        Some(Action::Status { json }) => status(*json),
    }
}

fn start() -> Result<Lab> {
    require_root("cargo xtask lab")?;
    setup::tools()?;
    let bin_dir = build::run(&build::Options::default())?;
    println!("building the lab network");
    let lab = Lab::create(&LabOptions {
        prefix: PREFIX.into(),
        extra_config: LAB_POLICY.into(),
        bin_dir,
        domain: true,
    })?;
    lab.start_sensord()?;
    Ok(lab)
}

fn up() -> Result<()> {
    let lab = start()?;
    print_hosts(&lab.status_json());
    println!("\nsensord runs in netns {}; try:", lab.gateway.name());
    println!(
        "  target/release/sensorctl --socket {} status",
        lab.control_socket().display()
    );
    println!(
        "  ip netns exec {}-office1 curl http://203.0.113.80/",
        PREFIX
    );
    println!("  cargo xtask lab status --json");
    println!("  cargo xtask lab down");
    lab.keep();
    Ok(())
}

fn status(json: bool) -> Result<()> {
    let status = lab::saved_status(PREFIX)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_hosts(&status);
    }
    Ok(())
}

fn print_hosts(status: &serde_json::Value) {
    println!("{:<10} {:<10} {:<16} NETNS", "HOST", "SEGMENT", "IP");
    for h in status["hosts"].as_array().into_iter().flatten() {
        println!(
            "{:<10} {:<10} {:<16} {}",
            h["name"].as_str().unwrap_or(""),
            h["segment"].as_str().unwrap_or(""),
            h["ip"].as_str().unwrap_or(""),
            h["netns"].as_str().unwrap_or("")
        );
    }
}

/// One step of the story: what we expect, and whether it held.
#[derive(Default)]
pub(crate) struct Story {
    step: usize,
    pub(crate) failures: usize,
}

impl Story {
    pub(crate) fn say(&mut self, text: &str) {
        self.step += 1;
        println!("\n{}. {text}", self.step);
    }

    /// `expect` for something that had to happen in time: says how long
    /// it took ("WHAT, 1.2s AFTER").
    pub(crate) fn expect_took(&mut self, what: &str, took: Option<Duration>, after: &str) {
        let text = match took {
            Some(t) => format!("{what}, {:.1}s {after}", t.as_secs_f64()),
            None => what.to_string(),
        };
        self.expect(&text, took.is_some());
    }

    pub(crate) fn expect(&mut self, what: &str, held: bool) {
        println!("   [{}] {what}", if held { "ok" } else { "UNEXPECTED" });
        if !held {
            self.failures += 1;
        }
    }
}

pub(crate) fn reaches(lab: &Lab, from: &str, url: &str) -> bool {
    lab.host(from)
        .netns
        .succeeds("curl", &["-sS", "-o", "/dev/null", "-m", "2", url])
}

fn pings(lab: &Lab, from: &str, to: &str) -> bool {
    lab.host(from)
        .netns
        .succeeds("ping", &["-c", "1", "-W", "1", to])
}

fn resolves(lab: &Lab, from: &str, name: &str) -> bool {
    lab.host(from)
        .netns
        .exec(
            "dig",
            &["+short", "+time=2", "+tries=1", "@203.0.113.53", name],
        )
        .map(|out| !out.trim().is_empty())
        .unwrap_or(false)
}

fn story() -> Result<()> {
    let lab = start()?;
    let mut s = Story {
        step: 0,
        failures: 0,
    };
    println!(
        "\nThe lab: a gateway (netns {}) between three segments.",
        lab.gateway.name()
    );
    print_hosts(&lab.status_json());
    println!("{}", lab.sensorctl(&["status"])?);

    s.say("Normal traffic passes: office1 browses the web, resolves names, reaches the records server.");
    s.expect(
        "office1 -> web (HTTP)",
        reaches(&lab, "office1", "http://203.0.113.80/"),
    );
    s.expect(
        "office1 resolves web.lab at the resolver",
        resolves(&lab, "office1", "web.lab"),
    );
    s.expect(
        "office1 -> records1 (HTTP)",
        reaches(&lab, "office1", "http://10.20.0.21/"),
    );
    s.expect(
        "office1 -> web over IPv6",
        reaches(&lab, "office1", "http://[2001:db8:113::80]/"),
    );

    s.say("Segment policy: the resident-records segment must never reach the internet.");
    s.expect(
        "records1 -> web is dropped",
        !reaches(&lab, "records1", "http://203.0.113.80/"),
    );
    s.expect(
        "web -> records1 is dropped",
        !pings(&lab, "web", "10.20.0.21"),
    );

    s.say("office1 is suspected of infection: isolate it with sensorctl.");
    println!("   $ sensorctl isolate 10.10.0.11 --reason \"lab: suspected infection\"");
    println!(
        "   {}",
        lab.sensorctl(&[
            "isolate",
            "10.10.0.11",
            "--reason",
            "lab: suspected infection"
        ])?
        .trim()
    );
    s.expect(
        "office1 -> web is dropped",
        !reaches(&lab, "office1", "http://203.0.113.80/"),
    );
    s.expect(
        "office1 -> c2 is dropped",
        !reaches(&lab, "office1", "http://203.0.113.66:8080/"),
    );
    s.expect(
        "records1 -> office1 is dropped (both directions)",
        !pings(&lab, "records1", "10.10.0.11"),
    );
    s.expect(
        "office2 -> office1 still answers: inside the office, frames go port to port on \
         its access switch and never reach the gateway",
        pings(&lab, "office2", "10.10.0.11"),
    );
    s.expect(
        "office1 still reaches the exempt resolver",
        resolves(&lab, "office1", "web.lab"),
    );
    s.expect(
        "office2 is unaffected",
        reaches(&lab, "office2", "http://203.0.113.80/"),
    );
    println!(
        "   $ sensorctl list\n{}",
        indent(&lab.sensorctl(&["list"])?)
    );

    s.say("Release office1: its traffic flows again.");
    println!("   {}", lab.sensorctl(&["release", "10.10.0.11"])?.trim());
    s.expect(
        "office1 -> web works again",
        reaches(&lab, "office1", "http://203.0.113.80/"),
    );

    s.say("Block the C&C server's range for everyone.");
    println!(
        "   {}",
        lab.sensorctl(&[
            "block",
            "203.0.113.64/30",
            "--ttl",
            "10m",
            "--reason",
            "lab: C&C range"
        ])?
        .trim()
    );
    s.expect(
        "office2 -> c2 is dropped",
        !reaches(&lab, "office2", "http://203.0.113.66:8080/"),
    );
    s.expect(
        "office2 -> web still works",
        reaches(&lab, "office2", "http://203.0.113.80/"),
    );
    lab.sensorctl(&["unblock", "203.0.113.64/30"])?;

    automatic_isolation(&lab, &mut s)?;
    domain_attack(&lab, &mut s)?;

    s.say("The metrics show every drop with its reason.");
    sleep(Duration::from_millis(200));
    let metrics = lab.metrics()?;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("sensor_packets_total") && l.contains("drop"))
    {
        println!("   {line}");
    }
    for reason in [
        "isolated_source",
        "isolated_destination",
        "segment_policy",
        "blocked_destination",
    ] {
        s.expect(
            &format!("drops counted with reason {reason}"),
            metrics.lines().any(|l| {
                l.starts_with("sensor_packets_total")
                    && l.contains(&format!("reason=\"{reason}\""))
                    && l.contains("verdict=\"drop\"")
            }),
        );
    }
    println!(
        "\n   $ sensorctl stats\n{}",
        indent(&lab.sensorctl(&["stats"])?)
    );

    println!("\nCleaning up the lab (use `cargo xtask lab up` to keep it running).");
    lab.stop_sensord(libc::SIGTERM)?;
    drop(lab);
    if s.failures > 0 {
        bail!(
            "{} step(s) of the story did not behave as expected",
            s.failures
        );
    }
    println!("The story held: every expectation was met.");
    Ok(())
}

/// Waits up to `secs` for sensord to isolate `host`; how long it took.
fn wait_isolated(lab: &Lab, host: &str, secs: u64) -> Option<Duration> {
    let start = std::time::Instant::now();
    let mut dots = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        let list = lab.sensorctl(&["--json", "list"]).unwrap_or_default();
        if list.contains(&format!("\"{host}/32\"")) {
            if dots > 0 {
                println!();
            }
            return Some(start.elapsed());
        }
        sleep(Duration::from_millis(250));
        if start.elapsed().as_secs() >= (dots + 1) * 5 {
            dots += 1;
            print!("   ... {}s\r", dots * 5);
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
    }
    None
}

/// Credential theft against the domain controller: DCSync with a stolen
/// administrator password, from a server across the gateway.
fn domain_attack(lab: &Lab, s: &mut Story) -> Result<()> {
    use labnet::domain::{ADMIN_PASSWORD, DNS_DOMAIN, IMPACKET_VENV};
    s.say(
        "An intruder on the records server uses a stolen domain administrator password \
         to pull every password hash from the domain controller dc1 (DCSync, Impacket's \
         secretsdump).",
    );
    println!("   $ secretsdump.py -just-dc {DNS_DOMAIN}/Administrator:***@10.10.0.10");
    let log = lab.dir.join("logs").join("secretsdump.log");
    let dump = format!(
        "cd {} && timeout 30 {IMPACKET_VENV}/bin/python {IMPACKET_VENV}/bin/secretsdump.py \
         -just-dc '{DNS_DOMAIN}/Administrator:{ADMIN_PASSWORD}'@10.10.0.10",
        lab.dir.display()
    );
    let mut attack = lab
        .host("records1")
        .netns
        .spawn("sh", &["-c", &dump], &log)?;
    let took = wait_isolated(lab, "10.20.0.21", 30);
    let _ = attack.wait();
    s.expect_took(
        "records1 isolated automatically",
        took,
        "after the replication request",
    );
    let incident = first_incident(lab, "10.20.0.21")?;
    s.expect(
        "its incident says DCSync (credential.dcsync, T1003.006) against 10.10.0.10",
        incident["detectors"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d == "credential.dcsync")),
    );
    show_incident(lab, &incident)
}

/// The first incident about `host` (null when there is none).
fn first_incident(lab: &Lab, host: &str) -> Result<serde_json::Value> {
    let all: serde_json::Value =
        serde_json::from_str(&lab.sensorctl(&["--json", "incidents", "--host", host])?)?;
    Ok(all[0]["sensor"]["incident"].clone())
}

/// Prints `sensorctl incident ID` for an incident.
fn show_incident(lab: &Lab, incident: &serde_json::Value) -> Result<()> {
    if let Some(id) = incident["id"].as_u64() {
        println!(
            "\n   $ sensorctl incident {id}\n{}",
            indent(&lab.sensorctl(&["incident", &id.to_string()])?)
        );
    }
    Ok(())
}

/// The infected hosts: reconnaissance and beaconing, detected from the
/// datapath's telemetry and cut off by the response policy, no human
/// involved.
fn automatic_isolation(lab: &Lab, s: &mut Story) -> Result<()> {
    s.say("office3 is infected: it scans the records segment for open ports.");
    println!("   (sensord's policy: isolate on any clear detection; block a beacon's C&C)");
    s.expect(
        "office3 browses first (a completed handshake proves its address)",
        reaches(lab, "office3", "http://203.0.113.80/"),
    );
    let took = scan_until_isolated(lab, "office3", "10.20.0.21", "")?;
    s.expect_took(
        "office3 isolated automatically",
        took,
        "after the scan began",
    );
    s.expect(
        "office3 -> web is now dropped",
        !reaches(lab, "office3", "http://203.0.113.80/"),
    );

    s.say(
        "office1 is infected: it scans its neighbour office2, inside the office segment. \
         The gateway never sees that traffic; the switch's SPAN port copies it to sensord's tap.",
    );
    s.expect(
        "office1 browses first",
        reaches(lab, "office1", "http://203.0.113.80/"),
    );
    let took = scan_until_isolated(lab, "office1", "10.10.0.12", ", east-west")?;
    s.expect_took(
        "office1 caught by the tap and isolated at the gateway",
        took,
        "after the scan began",
    );
    s.expect(
        "office1 -> web is now dropped",
        !reaches(lab, "office1", "http://203.0.113.80/"),
    );
    let metrics = lab.metrics().unwrap_or_default();
    let tap_lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("sensor_tap_frames") && !l.contains("skipped"))
        .collect();
    println!(
        "   $ curl .../metrics | grep sensor_tap_frames\n{}",
        indent(&tap_lines.join("\n"))
    );

    s.say(
        "office2 is infected too: every second or so, with jitter, it looks up its C&C \
         server's name (c2.lab) and calls it.",
    );
    s.expect(
        "office2 browses first",
        reaches(lab, "office2", "http://203.0.113.80/"),
    );
    let beacon = spawn_beacon(
        lab,
        "office2",
        "c2=$(dig +short +time=1 +tries=1 @203.0.113.53 c2.lab); \
         curl -s -o /dev/null -m 2 http://$c2:8080/beacon",
    )?;
    println!("   (a beacon is judged after 20 connections: about 20 seconds)");
    let took = wait_isolated(lab, "10.10.0.12", 60);
    drop(beacon);
    s.expect_took(
        "office2 isolated automatically",
        took,
        "after beaconing began",
    );
    let list = lab.sensorctl(&["--json", "list"])?;
    s.expect(
        "the C&C address 203.0.113.66 is blocked for every host",
        list.contains("\"203.0.113.66/32\""),
    );
    s.expect(
        "office1 -> c2 is dropped",
        !reaches(lab, "office1", "http://203.0.113.66:8080/"),
    );

    s.say("The operator sees which host, when, talking to what, and what was done.");
    println!(
        "   $ sensorctl incidents\n{}",
        indent(&lab.sensorctl(&["incidents"])?)
    );
    let incident = first_incident(lab, "10.10.0.12")?;
    s.expect(
        "office2's incident names its C&C as the traffic did: c2.lab",
        incident["names"]
            .as_array()
            .is_some_and(|names| names.iter().any(|n| n["name"] == "c2.lab")),
    );
    show_incident(lab, &incident)?;
    println!(
        "\n   $ sensorctl list\n{}",
        indent(&lab.sensorctl(&["list"])?)
    );
    let alerts = std::fs::read_to_string(lab.dir.join("alerts.jsonl")).unwrap_or_default();
    s.expect(
        &format!(
            "{} alert(s) in {} (JSON lines, ECS field names)",
            alerts.lines().count(),
            lab.dir.join("alerts.jsonl").display()
        ),
        alerts.lines().count() >= 2,
    );
    // Release both, so the rest of the story runs on a whole network.
    lab.sensorctl(&["release", "10.10.0.13"])?;
    lab.sensorctl(&["release", "10.10.0.11"])?;
    lab.sensorctl(&["release", "10.10.0.12"])?;
    lab.sensorctl(&["unblock", "203.0.113.66/32"])?;
    Ok(())
}

/// A beacon from `host`: `call` (shell) 60 times, about once a second
/// with jitter (0.7 to 1.3 s), its output in logs/beacon.log.
pub(crate) fn spawn_beacon(lab: &Lab, host: &str, call: &str) -> Result<std::process::Child> {
    let log = lab.dir.join("logs").join("beacon.log");
    let script = format!(
        "for i in $(seq 60); do {call}; \
         sleep $(awk -v r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ') 'BEGIN{{printf \"%.2f\", 0.7 + (r % 60) / 100}}'); done"
    );
    lab.host(host).netns.spawn("sh", &["-c", &script], &log)
}

/// Runs `nmap -sS` from `from` against `target`; how long after it began
/// its host was isolated (within 15 s), if it was.
fn scan_until_isolated(
    lab: &Lab,
    from: &str,
    target: &str,
    note: &str,
) -> Result<Option<Duration>> {
    println!("   $ nmap -sS -p 1-200 {target}   (from {from}{note})");
    let started = std::time::Instant::now();
    lab.host(from)
        .netns
        .command("nmap")
        .args([
            "-sS",
            "-n",
            "-Pn",
            "-p",
            "1-200",
            "--max-retries",
            "1",
            target,
        ])
        .output()?;
    let ip = lab.host(from).ipv4.to_string();
    Ok(wait_isolated(lab, &ip, 15).map(|_| started.elapsed()))
}

pub(crate) fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
