//! Time from detection to the first dropped packet, in the lab with real
//! tools: a default nmap scan from an office host until sensord isolates it,
//! and `sensorctl isolate` until the first drop. Run by `cargo xtask bench`.
//!
//! A UDP stream (one datagram every 0.5 ms) runs from the host to the
//! records server, which stamps each arrival; the first dropped datagram is
//! the one after the last arrival, so "first drop" is known to within one
//! gap of the stream (reported).

use std::{path::PathBuf, thread::sleep, time::Duration};

use clap::Parser;
use labnet::Lab;
use sensor_tests::{
    bench::summary,
    support::lab::{self, background, isolated, sensorctl_json, wait_for},
};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Measurements of each kind (the table shows median, min and max).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

const POLICY: &str =
    "[[response.rule]]\ndetectors = [\"*\"]\nmin_score = 70\naction = \"isolate\"\nttl = \"10m\"\n";
const RECEIVER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9999))
while True:
    data, (host, _) = s.recvfrom(64)
    sys.stdout.write(f"{host} {time.time_ns()}\n")
    sys.stdout.flush()
"#;
const SENDER: &str = r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
while True:
    s.sendto(b"x", ("10.20.0.21", 9999))
    time.sleep(0.0005)
"#;

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Last arrival from `host` in the receiver's log, and the median gap
/// between its arrivals.
fn last_arrival(lab: &Lab, host: &str) -> (u64, u64) {
    let log = std::fs::read_to_string(lab.dir.join("logs/receiver.log")).unwrap_or_default();
    let times: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(h, _)| *h == host)
        .filter_map(|(_, t)| t.trim().parse().ok())
        .collect();
    let mut gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    (
        times.last().copied().unwrap_or(0),
        gaps.get(gaps.len() / 2).copied().unwrap_or(0),
    )
}

/// The time of the incident's isolate action, from the timeline.
fn isolate_decision_ns(lab: &Lab, host: &str) -> Option<u64> {
    let incidents = sensorctl_json(lab, &["incidents", "--host", host]);
    let id = incidents[0]["id"].as_u64()?.to_string();
    let incident = sensorctl_json(lab, &["incident", &id]);
    incident["timeline"]
        .as_array()?
        .iter()
        .find(|t| t["action"] == "isolate")?["time_ns"]
        .as_u64()
}

struct Round {
    scan_to_decision_ms: f64,
    decision_to_drop_ms: f64,
    scan_to_drop_ms: f64,
    manual_to_drop_ms: f64,
    gap_ms: f64,
}

fn round(lab: &Lab) -> anyhow::Result<Round> {
    let host = "10.10.0.11";
    let stream = background(lab, "office1", "sender", &format!("python3 -c '{SENDER}'"));
    assert!(lab::http(lab, "office1", "http://203.0.113.80/"));
    sleep(Duration::from_millis(1500)); // the handshake is read from the flow table
    let scan_start = now_ns();
    // nmap goes on probing (unanswered now) after the isolation: stop it.
    let nmap = background(lab, "office1", "nmap", "nmap -sS -n -Pn 10.20.0.21");
    wait_for(15, || isolated(lab).iter().any(|h| h == host))
        .ok_or_else(|| anyhow::anyhow!("not isolated"))?;
    sleep(Duration::from_millis(500));
    stop(nmap);
    stop(stream);
    let decision = isolate_decision_ns(lab, host).ok_or_else(|| anyhow::anyhow!("no decision"))?;
    let (last, gap) = last_arrival(lab, host);
    let first_drop = last + gap;
    lab.sensorctl(&["release", host])?;

    // The operator's path: sensorctl isolate, with office2's stream.
    let other = "10.10.0.12";
    let stream = background(lab, "office2", "sender2", &format!("python3 -c '{SENDER}'"));
    sleep(Duration::from_millis(500));
    let asked = now_ns();
    lab.sensorctl(&["isolate", other, "--reason", "bench"])?;
    sleep(Duration::from_millis(500));
    stop(stream);
    let (last2, gap2) = last_arrival(lab, other);
    lab.sensorctl(&["release", other])?;
    let ms = |ns: i128| ns as f64 / 1e6;
    Ok(Round {
        scan_to_decision_ms: ms(decision as i128 - scan_start as i128),
        decision_to_drop_ms: ms(first_drop as i128 - decision as i128),
        scan_to_drop_ms: ms(first_drop as i128 - scan_start as i128),
        manual_to_drop_ms: ms((last2 + gap2) as i128 - asked as i128),
        gap_ms: ms(gap.max(gap2) as i128),
    })
}

/// Kills a background job's whole process group.
fn stop(mut child: std::process::Child) {
    // SAFETY: kill(2) on the process group the job was started in.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let lab = lab::start("latbench", POLICY);
    let _receiver = background(
        &lab,
        "records1",
        "receiver",
        &format!("python3 -c '{RECEIVER}'"),
    );
    sleep(Duration::from_millis(500));
    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        eprintln!("round {}/{}", r + 1, args.rounds);
        // A fresh sensord per round: the last round's incident is gone, so
        // the same host can be caught again.
        lab.stop_sensord(libc::SIGTERM)?;
        lab.start_sensord()?;
        rounds.push(round(&lab)?);
    }
    let pick = |f: fn(&Round) -> f64| summary(rounds.iter().map(f).collect());
    let rows = [
        (
            "default nmap scan start -> isolation decision",
            pick(|r| r.scan_to_decision_ms),
        ),
        (
            "isolation decision -> first dropped packet",
            pick(|r| r.decision_to_drop_ms),
        ),
        (
            "default nmap scan start -> first dropped packet",
            pick(|r| r.scan_to_drop_ms),
        ),
        (
            "sensorctl isolate -> first dropped packet",
            pick(|r| r.manual_to_drop_ms),
        ),
        ("(resolution: gap of the UDP stream)", pick(|r| r.gap_ms)),
    ];
    println!(
        "latency in the lab, {} rounds (ms): median [min, max]",
        args.rounds
    );
    for (what, (min, median, max)) in &rows {
        println!("{what:<50} {median:>8.1}  [{min:.1}, {max:.1}]");
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "benchmark": "latency",
            "rounds": args.rounds,
            "results": rows.iter().map(|(w, (min, med, max))| json!({
                "what": w, "median_ms": med, "min_ms": min, "max_ms": max})).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
