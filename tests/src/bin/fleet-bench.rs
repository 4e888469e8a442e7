//! Fleet propagation, with real servers (a three-node cluster of Debian's
//! nats-server) and real gateways. Run by `cargo xtask bench`.
//!
//! - **Gateway to gateway**: from `sensorctl block` at city-a to the first
//!   packet dropped at city-b, over many rounds (p50, p99). A UDP stream
//!   (one datagram every 0.5 ms) runs from city-b's office1 to its C&C
//!   host, which stamps each arrival; the first dropped datagram is the
//!   one after the last arrival before the unblock.
//! - **Simulated gateways**: N clients without a datapath that run the
//!   same client code as sensord (`FleetClient`, the bucket's watch, the
//!   `View` with its checks) watch the bucket while decisions are written;
//!   the time from each write to each client's view having it, and the
//!   servers' CPU and memory, show how propagation and load grow.

use std::{
    path::PathBuf,
    sync::Arc,
    thread::sleep,
    time::{Duration, Instant},
};

use clap::Parser;
use futures_util::StreamExt;
use labnet::{fleet::THREE_CITIES, Lab};
use sensor_tests::{
    bench::{netns::in_netns, percentile, stream, summary},
    support::fleet::{self as fleet_lab, Fleet},
};
use sensor_user::fleet::{
    client::FleetClient,
    decision::{Checks, Decision},
    view::View,
    Accept, Scope,
};
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Block/unblock rounds between two real gateways.
    #[arg(long, default_value_t = 100)]
    rounds: usize,
    /// Simulated gateway counts.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    simulated: Vec<usize>,
    /// Decisions written per simulated run.
    #[arg(long, default_value_t = 50)]
    writes: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

const C2: &str = "203.0.113.66";
/// `sensorctl block` at a to the first drop at b, `rounds` times.
fn gateway_rounds(a: &Lab, b: &Lab, rounds: usize) -> anyhow::Result<(Vec<f64>, f64)> {
    let _receiver = stream::receiver(b, "c2");
    sleep(Duration::from_millis(500));
    let _stream = stream::sender(b, "office1", "sender", C2);
    sleep(Duration::from_millis(500));
    let mut windows = Vec::new();
    for r in 0..rounds {
        if (r + 1) % 25 == 0 {
            eprintln!("fleet block {}/{rounds}", r + 1);
        }
        let asked = stream::now_ns();
        a.sensorctl(&["block", C2, "--scope", "fleet", "--reason", "bench"])?;
        sleep(Duration::from_millis(300));
        let lifted = stream::now_ns();
        a.sensorctl(&["unblock", C2])?;
        windows.push((asked, lifted));
        sleep(Duration::from_millis(300));
    }
    let times = stream::arrivals(b, None);
    let drops = stream::first_drops(&times, &windows);
    let missed = drops.iter().filter(|d| d.is_none()).count();
    anyhow::ensure!(
        missed == 0,
        "in {missed} round(s) city-b never dropped the stream"
    );
    Ok((
        drops.into_iter().flatten().collect(),
        stream::median_gap(&times) as f64 / 1e6,
    ))
}

/// A server's CPU seconds and resident memory, from /varz.
fn load(fleet: &Fleet) -> Vec<(f64, u64)> {
    (0..3)
        .map(|i| {
            let v: Value = fleet
                .cloud
                .monitor(i, "/varz")
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            (
                v["cpu"].as_f64().unwrap_or(0.0),
                v["mem"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// `n` simulated gateways watch the bucket while `writes` decisions are
/// written; per write, the time until each gateway's view had it.
fn simulate(fleet: &Fleet, n: usize, writes: usize) -> anyhow::Result<Value> {
    let watcher = fleet_lab::client(fleet, "soc", "soc");
    let writer = fleet_lab::client(fleet, "city-a", "city-a");
    let started = Instant::now();
    let delays = in_netns(fleet.cloud.switch.name(), None, move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String, Instant)>();
            let ready = Arc::new(tokio::sync::Barrier::new(n + 1));
            for g in 0..n {
                let (config, tx, ready) = (watcher.clone(), tx.clone(), ready.clone());
                tokio::spawn(async move {
                    let client = FleetClient::connect(&config, &format!("sim{g}"))
                        .await
                        .unwrap();
                    let buckets = client.buckets().await.unwrap();
                    let mut view = View::new(&format!("sim-{g}"), "gw1");
                    let accept = Accept::default();
                    let checks = Checks {
                        accept: &accept,
                        protected: &[],
                        never_isolate: &[],
                    };
                    let mut watch = buckets.decisions.watch_all().await.unwrap();
                    ready.wait().await;
                    while let Some(Ok(e)) = watch.next().await {
                        view.record(&e.key, e.revision, Some(&e.value), false, &checks);
                        let _ = tx.send((g, e.key, Instant::now()));
                    }
                });
            }
            ready.wait().await;
            let client = FleetClient::connect(&writer, "bench writer").await?;
            let buckets = client.buckets().await?;
            let mut delays = Vec::new();
            for w in 0..writes {
                let d = Decision {
                    kind: sensor_user::state::Kind::Block,
                    target: format!("198.19.{}.{}/32", w / 250, 1 + w % 250).parse()?,
                    scope: Scope::Fleet,
                    site: "city-a".into(),
                    gateway: "gw1".into(),
                    origin: "operator".into(),
                    reason: "bench".into(),
                    created: sensor_user::clock::unix_now(),
                    expires: Some(sensor_user::clock::unix_now() + 600),
                    incident: None,
                };
                let key = d.key().text();
                let wrote = Instant::now();
                buckets.put(&d).await.map_err(anyhow::Error::msg)?;
                let mut seen = 0;
                while seen < n {
                    let (_, k, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("the watchers stopped"))?;
                    if k == key {
                        seen += 1;
                        delays.push(at.duration_since(wrote).as_secs_f64() * 1e3);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok(delays)
        })
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let (min, median, max) = summary(delays.clone());
    Ok(json!({
        "gateways": n, "writes": writes, "seconds": elapsed,
        "median_ms": median, "p99_ms": percentile(&delays, 99.0), "min_ms": min, "max_ms": max,
    }))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fleet = fleet_lab::start("fbench", &THREE_CITIES[..2], "");
    sleep(Duration::from_secs(3));
    let (a, b) = (fleet.site("city-a"), fleet.site("city-b"));
    let (samples, gap) = gateway_rounds(a, b, args.rounds)?;
    let (min, median, max) = summary(samples.clone());
    let p99 = percentile(&samples, 99.0);
    println!("fleet: sensorctl block at city-a -> first packet dropped at city-b (ms)");
    println!(
        "  p50 {median:.1}  p99 {p99:.1}  [min {min:.1}, max {max:.1}] over {} rounds (stream gap {gap:.2} ms)",
        samples.len()
    );
    let mut simulated = Vec::new();
    for n in &args.simulated {
        let before = load(&fleet);
        let mut run = simulate(&fleet, *n, args.writes)?;
        let after = load(&fleet);
        let cpu: f64 = after.iter().map(|l| l.0).sum::<f64>() / 3.0;
        let mem: u64 = after.iter().map(|l| l.1).max().unwrap_or(0);
        run["servers_cpu_percent_mean"] = json!(cpu);
        run["servers_rss_max_bytes"] = json!(mem);
        run["servers_rss_before_max_bytes"] = json!(before.iter().map(|l| l.1).max());
        println!(
            "  {n:>4} simulated gateways: write -> every view p50 {:.1} ms, p99 {:.1} ms; servers {:.1}% CPU, {} MiB",
            run["median_ms"].as_f64().unwrap_or(0.0),
            run["p99_ms"].as_f64().unwrap_or(0.0),
            cpu,
            mem >> 20
        );
        simulated.push(run);
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "benchmark": "fleet",
            "gateway_to_gateway": {
                "what": "sensorctl block at city-a -> first packet dropped at city-b",
                "rounds": samples.len(), "median_ms": median, "p99_ms": p99,
                "min_ms": min, "max_ms": max, "stream_gap_ms": gap, "samples_ms": samples,
            },
            "simulated": simulated,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
