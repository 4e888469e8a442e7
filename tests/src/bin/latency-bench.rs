//! The control plane in the lab, with real tools: time from a default nmap
//! scan's first probe, and from an automatic isolation decision, to the
//! first dropped packet; from `sensorctl isolate` to the first dropped
//! packet (p50 and p99 over many rounds); time to load a 1,000,000-range
//! threat feed (a `[[feed]]` from a file, added by a reload) and to retire
//! it, and the memory of the maps and of the daemon then. Run by
//! `cargo xtask bench`.
//!
//! A UDP stream (one datagram every 0.5 ms) runs from the host to the
//! records server, which stamps each arrival; the first dropped datagram is
//! the one after the last arrival, so "first drop" is known to within one
//! gap of the stream (reported).

use std::{path::PathBuf, thread::sleep, time::Duration};

use clap::Parser;
use labnet::Lab;
use sensor_tests::{
    bench::{
        load::{distinct_feed_ranges, Rng},
        map_memory, percentile, stream, summary,
    },
    support::lab::{self, background, isolated, sensorctl_json, wait_for},
};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Automatic isolations measured (each on a freshly started sensord).
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// `sensorctl isolate` measurements (one sensord).
    #[arg(long, default_value_t = 100)]
    manual_rounds: usize,
    /// Ranges in the threat feed loaded at the end (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    feed_ranges: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

const POLICY: &str =
    "[[response.rule]]\ndetectors = [\"*\"]\nmin_score = 70\naction = \"isolate\"\nttl = \"10m\"\n";
/// Last arrival from `host`, and the median gap between its arrivals.
fn last_arrival(lab: &Lab, host: &str) -> (u64, u64) {
    let times = stream::arrivals(lab, Some(host));
    (
        times.last().copied().unwrap_or(0),
        stream::median_gap(&times),
    )
}

/// The time of the incident's isolate action, from the timeline.
fn isolate_decision_ns(lab: &Lab, host: &str) -> Option<u64> {
    let incidents = sensorctl_json(lab, &["incidents", "--host", host]);
    // The newest: earlier rounds' incidents are kept, closed.
    let id = incidents.as_array()?.last()?["sensor"]["incident"]["id"]
        .as_u64()?
        .to_string();
    let incident = sensorctl_json(lab, &["incident", &id]);
    let time = incident["sensor"]["incident"]["actions"]
        .as_array()?
        .iter()
        .find(|t| t["action"] == "isolate")?["time"]
        .as_str()?;
    let at = humantime::parse_rfc3339(time).ok()?;
    Some(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as u64)
}

struct Round {
    scan_to_decision_ms: f64,
    decision_to_drop_ms: f64,
    scan_to_drop_ms: f64,
    gap_ms: f64,
}

fn round(lab: &Lab) -> anyhow::Result<Round> {
    let host = "10.10.0.11";
    let stream = stream::sender(lab, "office1", "sender", "10.20.0.21");
    assert!(lab::http(lab, "office1", "http://203.0.113.80/"));
    sleep(Duration::from_millis(1500)); // the handshake is read from the flow table
    let scan_start = stream::now_ns();
    // nmap goes on probing (unanswered now) after the isolation: stop it.
    let nmap = background(lab, "office1", "nmap", "nmap -sS -n -Pn 10.20.0.21");
    wait_for(15, || isolated(lab).iter().any(|h| h == host))
        .ok_or_else(|| anyhow::anyhow!("not isolated"))?;
    sleep(Duration::from_millis(500));
    drop((nmap, stream));
    let decision = isolate_decision_ns(lab, host).ok_or_else(|| anyhow::anyhow!("no decision"))?;
    let (last, gap) = last_arrival(lab, host);
    let first_drop = last + gap;
    lab.sensorctl(&["release", host])?;
    // Closed, so the next round's scan opens a new incident (incidents
    // persist across restarts) and is acted on again.
    let incidents = sensorctl_json(lab, &["incidents", "--host", host, "--status", "open"]);
    for i in incidents.as_array().into_iter().flatten() {
        let id = i["sensor"]["incident"]["id"].to_string();
        lab.sensorctl(&["close", &id, "--reason", "bench round done"])?;
    }
    let ms = |ns: i128| ns as f64 / 1e6;
    Ok(Round {
        scan_to_decision_ms: ms(decision as i128 - scan_start as i128),
        decision_to_drop_ms: ms(first_drop as i128 - decision as i128),
        scan_to_drop_ms: ms(first_drop as i128 - scan_start as i128),
        gap_ms: ms(gap as i128),
    })
}

/// `sensorctl isolate` to the first dropped packet, `rounds` times, with
/// one stream from office2 running throughout: after each isolation the
/// arrivals stop until the release.
fn manual_rounds(lab: &Lab, rounds: usize) -> anyhow::Result<(Vec<f64>, f64)> {
    let host = "10.10.0.12";
    let stream = stream::sender(lab, "office2", "sender2", "10.20.0.21");
    sleep(Duration::from_millis(500));
    let mut windows = Vec::new();
    for r in 0..rounds {
        if (r + 1) % 25 == 0 {
            eprintln!("sensorctl isolate {}/{rounds}", r + 1);
        }
        let asked = stream::now_ns();
        lab.sensorctl(&["isolate", host, "--reason", "bench"])?;
        sleep(Duration::from_millis(150));
        let released = stream::now_ns();
        lab.sensorctl(&["release", host])?;
        windows.push((asked, released));
        sleep(Duration::from_millis(100));
    }
    drop(stream);
    let times = stream::arrivals(lab, Some(host));
    let gap = stream::median_gap(&times);
    let drops = stream::first_drops(&times, &windows);
    let missed = drops.iter().filter(|d| d.is_none()).count();
    anyhow::ensure!(
        missed == 0,
        "in {missed} round(s) the host was never cut off"
    );
    let samples = drops.into_iter().flatten().collect();
    Ok((samples, gap as f64 / 1e6))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let lab = lab::start("latbench", POLICY);
    let _receiver = stream::receiver(&lab, "records1");
    sleep(Duration::from_millis(500));
    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        eprintln!("automatic isolation {}/{}", r + 1, args.rounds);
        // A fresh sensord per round, as the first measurement had it (the
        // last round's incident is closed, so the host is caught again).
        lab.stop_sensord(libc::SIGTERM)?;
        lab.start_sensord()?;
        rounds.push(round(&lab)?);
    }
    let (manual, manual_gap) = manual_rounds(&lab, args.manual_rounds)?;
    let pick = |f: fn(&Round) -> f64| rounds.iter().map(f).collect::<Vec<f64>>();
    let mut rows = vec![
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
        ("sensorctl isolate -> first dropped packet", manual.clone()),
        ("(resolution: gap of the UDP stream)", {
            let mut g = pick(|r| r.gap_ms);
            g.push(manual_gap);
            g
        }),
    ];
    let feed = if args.feed_ranges > 0 {
        let (feed, after_feed) = load_feed(&lab, args.feed_ranges)?;
        rows.push((
            "sensorctl isolate -> first dropped packet, feed loaded",
            after_feed,
        ));
        Some(feed)
    } else {
        None
    };

    println!("control plane in the lab (ms): p50 [min, p99, max] (n)");
    for (what, samples) in &rows {
        let (min, median, max) = summary(samples.clone());
        println!(
            "{what:<56} {median:>8.1}  [{min:.1}, {:.1}, {max:.1}] ({})",
            percentile(samples, 99.0),
            samples.len()
        );
    }
    if let Some(feed) = &feed {
        println!("{}", serde_json::to_string_pretty(feed)?);
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "benchmark": "control_plane",
            "automatic_rounds": args.rounds,
            "manual_rounds": args.manual_rounds,
            "results": rows.iter().map(|(w, samples)| {
                let (min, med, max) = summary(samples.clone());
                json!({"what": w, "median_ms": med, "p99_ms": percentile(samples, 99.0),
                       "min_ms": min, "max_ms": max, "samples_ms": samples})
            }).collect::<Vec<_>>(),
            "feed": feed,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Subscribes sensord to a feed of `ranges` random ranges (a file, added
/// by a reload), timed until it is in force; reports memory then; measures
/// `sensorctl isolate` again with the feed in place; then retires it, timed.
fn load_feed(lab: &Lab, ranges: usize) -> anyhow::Result<(serde_json::Value, Vec<f64>)> {
    let text: String = distinct_feed_ranges(&mut Rng(0xfeed), ranges)
        .iter()
        .map(|net| format!("{net}\n"))
        .collect();
    let path = lab.dir.join("feed.txt");
    std::fs::write(&path, text)?;
    let rss_before = sensord_rss_kib(lab);
    eprintln!("subscribing to a feed of {ranges} ranges ...");
    let config = std::fs::read_to_string(lab.config_path())?;
    std::fs::write(
        lab.config_path(),
        format!(
            "{config}\n[[feed]]\nname = \"bench\"\nfile = {:?}\nrefresh = \"1h\"\n",
            path.display().to_string()
        ),
    )?;
    let in_force = || sensorctl_json(lab, &["feeds"])[0]["entries"].as_u64() == Some(ranges as u64);
    let started = std::time::Instant::now();
    lab.sensorctl(&["reload"])?;
    anyhow::ensure!(wait_for(120, in_force).is_some(), "the feed did not load");
    let load_secs = started.elapsed().as_secs_f64();
    // The copy is written and freed memory handed back after the apply.
    sleep(Duration::from_secs(2));
    let rss_after = sensord_rss_kib(lab);
    let map_bytes = map_memory(&lab.pin_dir())?;
    let state_bytes = std::fs::metadata(lab.state_file())?.len();
    let (after_feed, _) = manual_rounds(lab, 10)?;
    let started = std::time::Instant::now();
    lab.sensorctl(&["feeds", "retire", "bench"])?;
    let retire_secs = started.elapsed().as_secs_f64();
    let feed = json!({
        "ranges": ranges,
        "load_seconds": load_secs,
        "retire_seconds": retire_secs,
        "address_map_bytes": map_bytes,
        "sensord_rss_kib_before": rss_before,
        "sensord_rss_kib_after": rss_after,
        "sensord_bytes_per_range": (rss_after.saturating_sub(rss_before) * 1024) as f64 / ranges as f64,
        "state_file_bytes": state_bytes,
    });
    anyhow::ensure!(
        load_secs < 5.0,
        "the feed loaded in {load_secs:.2} s, past the 5 s target"
    );
    Ok((feed, after_feed))
}

/// Resident memory of the lab's sensord, from /proc.
fn sensord_rss_kib(lab: &Lab) -> u64 {
    for pid in labnet::netns::pids(lab.gateway.name()) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status
            .lines()
            .next()
            .is_some_and(|l| l.ends_with("sensord"))
        {
            return status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
        }
    }
    0
}
