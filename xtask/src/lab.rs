//! `cargo xtask lab`: the built-in lab network and its story.

use std::{thread::sleep, time::Duration};

use anyhow::{bail, Result};
use clap::Subcommand;
use labnet::{lab, Lab, LabOptions};

use crate::{build, setup, test::require_root};

/// The lab's name: its namespaces are `sensor-lab-*`, its files /run/sensor-lab.
const PREFIX: &str = "sensor-lab";

#[derive(clap::Args)]
pub struct Options {
    #[command(subcommand)]
    action: Option<Action>,
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
        extra_config: String::new(),
        bin_dir,
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
struct Story {
    step: usize,
    failures: usize,
}

impl Story {
    fn say(&mut self, text: &str) {
        self.step += 1;
        println!("\n{}. {text}", self.step);
    }

    fn expect(&mut self, what: &str, held: bool) {
        println!("   [{}] {what}", if held { "ok" } else { "UNEXPECTED" });
        if !held {
            self.failures += 1;
        }
    }
}

fn reaches(lab: &Lab, from: &str, url: &str) -> bool {
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
        "office2 -> office1 is dropped (both directions)",
        !pings(&lab, "office2", "10.10.0.11"),
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

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
