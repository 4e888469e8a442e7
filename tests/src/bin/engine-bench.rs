//! The detection engine's throughput on one core and its memory per
//! tracked host, on synthetic office traffic; and the datapath's memory per
//! flow. Run by `cargo xtask bench --only engine`.

use std::{net::IpAddr, path::PathBuf, time::Instant};

use clap::Parser;
use sensor_tests::bench::load::Rng;
use sensor_user::detect::{
    event::{FlowSummary, PROTO_TCP, PROTO_UDP},
    DetectionConfig, Engine, Event, Kind, SECOND,
};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Inside hosts generating traffic.
    #[arg(long, default_value_t = 5_000)]
    hosts: u32,
    /// Connections per host.
    #[arg(long, default_value_t = 100)]
    connections: u32,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A DNS query for `name` (header and question), as the datapath samples it.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = vec![(id >> 8) as u8, id as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m
}

/// Office traffic: each host browses (TCP to many outside servers, in whole
/// connections: SYN, SYN-ACK, FIN, FIN, flow end), looks names up, and now
/// and then reaches an inside file server. Events in time order.
fn traffic(args: &Args) -> Vec<Event> {
    let mut rng = Rng(0x5eed);
    let mut events = Vec::new();
    let mut ts = 1_700_000_000 * SECOND;
    for c in 0..args.connections {
        for h in 0..args.hosts {
            ts += SECOND / 1000;
            let src = IpAddr::from([10, 10 + (h >> 16) as u8, (h >> 8) as u8, h as u8]);
            let r = rng.next_u64();
            let inside = r.is_multiple_of(10);
            let dst = if inside {
                // Each host's own file server (of 4).
                IpAddr::from([10, 99, 0, (h % 4) as u8])
            } else {
                IpAddr::from([93, (r >> 8) as u8, (r >> 16) as u8, (r >> 24) as u8])
            };
            let dport = if inside { 445 } else { 443 };
            let sport = 30000 + (c % 30000) as u16;
            let ev = |ts, src, dst, sport, dport, protocol, kind, payload| Event {
                ts,
                src,
                dst,
                sport,
                dport,
                protocol,
                kind,
                payload,
            };
            let resolver = IpAddr::from([10, 0, 0, 53]);
            let name = format!("www.site{}.example", (r >> 32) % 5000);
            events.push(ev(
                ts,
                src,
                resolver,
                sport,
                53,
                PROTO_UDP,
                Kind::Dns,
                dns_query(c as u16, &name),
            ));
            events.push(ev(ts, src, dst, sport, dport, PROTO_TCP, Kind::Syn, vec![]));
            events.push(ev(
                ts + 1_000_000,
                dst,
                src,
                dport,
                sport,
                PROTO_TCP,
                Kind::SynAck,
                vec![],
            ));
            events.push(ev(
                ts + 50_000_000,
                src,
                dst,
                sport,
                dport,
                PROTO_TCP,
                Kind::Fin,
                vec![],
            ));
            events.push(ev(
                ts + 51_000_000,
                dst,
                src,
                dport,
                sport,
                PROTO_TCP,
                Kind::Fin,
                vec![],
            ));
            let summary = FlowSummary {
                orig_bytes: 800 + r % 4000,
                resp_bytes: 20_000 + r % 200_000,
                orig_packets: 12,
                resp_packets: 20,
                start: ts,
                answered: true,
                orig_data: true,
                resp_data: true,
                proven: true,
            };
            events.push(ev(
                ts + 51_000_000,
                src,
                dst,
                sport,
                dport,
                PROTO_TCP,
                Kind::FlowEnd(summary),
                vec![],
            ));
        }
    }
    events.sort_by_key(|e| e.ts);
    events
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!(
        "generating traffic: {} hosts x {} connections ...",
        args.hosts, args.connections
    );
    let events = traffic(&args);
    let config = DetectionConfig {
        internal: vec!["10.0.0.0/8".parse()?],
        ..Default::default()
    };
    let before = rss_bytes();
    let mut engine = Engine::new(&config)?;
    let start = Instant::now();
    let mut last_tick = 0;
    for e in &events {
        engine.observe(e);
        // Live, the engine ticks once a second.
        if e.ts >= last_tick + SECOND {
            last_tick = e.ts;
            engine.tick(e.ts);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let after = rss_bytes();
    let rate = events.len() as f64 / secs;
    let per_host = after.saturating_sub(before) as f64 / args.hosts as f64;
    let incidents = engine.incidents.list().len();
    eprintln!("entries per table at the end: {:?}", engine.sizes());
    let mut by_detector = std::collections::BTreeMap::new();
    for i in engine.incidents.list() {
        for d in i.detectors {
            *by_detector.entry(d).or_insert(0) += 1;
        }
    }
    eprintln!("incidents by detector: {by_detector:?}");
    println!(
        "detection engine, one core: {} events in {secs:.2}s = {:.2} M events/s; \
         memory {:.1} MiB for {} hosts = {:.0} bytes per tracked host; {incidents} incidents",
        events.len(),
        rate / 1e6,
        after.saturating_sub(before) as f64 / (1 << 20) as f64,
        args.hosts,
        per_host
    );
    let (peers, wide_secs) = one_host_many_peers(1_000_000)?;
    println!(
        "one host probing {peers} peers (SYNs never answered): {wide_secs:.2}s \
         (issue 12: under 10 s, linear)"
    );
    let flow_bytes = flow_table_bytes_per_entry();
    if let Some(b) = flow_bytes {
        println!("datapath flow table: {b:.0} bytes per flow (preallocated LRU, 131,072 flows)");
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "benchmark": "engine",
            "hosts": args.hosts, "connections_per_host": args.connections,
            "events": events.len(), "seconds": secs, "events_per_second": rate,
            "rss_growth_bytes": after.saturating_sub(before), "bytes_per_host": per_host,
            "incidents": incidents, "flow_table_bytes_per_flow": flow_bytes,
            "one_host_peers": peers, "one_host_seconds": wide_secs,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// One host sends a SYN to each of `peers` addresses (2,000 a second), none
/// answered: every per-target and per-port table grows with the peers. The
/// engine must stay linear (the windowed counts are amortised O(1)).
fn one_host_many_peers(peers: u32) -> anyhow::Result<(u32, f64)> {
    let config = DetectionConfig {
        internal: vec!["10.0.0.0/8".parse()?],
        ..Default::default()
    };
    let mut engine = Engine::new(&config)?;
    let src = IpAddr::from([10, 0, 0, 5]);
    let t0 = 1_700_000_000 * SECOND;
    let start = Instant::now();
    let mut last_tick = 0;
    for i in 0..peers {
        let ts = t0 + i as u64 * SECOND / 2000;
        engine.observe(&Event {
            ts,
            src,
            dst: IpAddr::from([20 + (i >> 16) as u8, (i >> 8) as u8, i as u8, 1]),
            sport: 40000 + (i % 20000) as u16,
            dport: 445,
            protocol: PROTO_TCP,
            kind: Kind::Syn,
            payload: vec![],
        });
        if ts >= last_tick + SECOND {
            last_tick = ts;
            engine.tick(ts);
        }
    }
    engine.flush();
    Ok((peers, start.elapsed().as_secs_f64()))
}

/// The kernel's accounting of the flow table (memlock in fdinfo), per entry.
fn flow_table_bytes_per_entry() -> Option<f64> {
    use sensor_tests::support::bpffs::TempBpffs;
    let bpffs = TempBpffs::new();
    let sensor = sensor_user::datapath::Datapath::load_object(
        &bpffs.pin_dir(),
        sensor_user::datapath::sensor_object().ok()?,
    )
    .ok()?;
    let out = std::process::Command::new("bpftool")
        .args(["-j", "map", "show", "pinned"])
        .arg(bpffs.pin_dir().join(sensor_common::map_names::FLOWS))
        .output()
        .ok()?;
    drop(sensor);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let bytes = v["bytes_memlock"].as_f64()?;
    Some(bytes / sensor_common::telemetry::FLOW_ENTRIES as f64)
}
