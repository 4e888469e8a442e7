//! Per-packet cost of the sensor's XDP program next to the floor and
//! xdp-filter, with the block maps loaded. Run by `cargo xtask bench`.

use std::{path::PathBuf, time::Instant};

use clap::Parser;
use sensor_tests::{
    bench::{self, cases, load, peers, sample_json, summary},
    support::{bpffs::TempBpffs, unique_name},
};
use sensor_user::datapath::{sensor_object, Datapath};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Runs per measurement (the kernel reports their mean).
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Interleaved measurements per (program, packet); the median is kept.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Map fillings to measure: this many random isolated hosts and as many
    /// random blocked ranges.
    #[arg(long, value_delimiter = ',', default_value = "0,10000,1000000")]
    sizes: Vec<usize>,
    /// Write every sample here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

const PROGRAMS: [&str; 4] = ["floor", "sensor", "sensor+telemetry", "xdp-filter"];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bpffs = TempBpffs::new();
    let mut floor = peers::floor();
    let least_ring = aya::maps::RingBuf::try_from(
        floor
            .take_map(peers::LEAST_EVENTS)
            .expect("the floor object's ring"),
    )?;
    let _least_drain = drain_ring(least_ring);
    let xdp_filter = peers::XdpFilter::load(&unique_name("bench-xf"), bpffs.path())?;
    let mut runs = Vec::new();
    for &size in &args.sizes {
        runs.push(measure_size(&args, &bpffs, size, &floor, &xdp_filter)?);
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "benchmark": "xdp_per_packet",
            "repeat": args.repeat, "rounds": args.rounds,
            "sizes": runs,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Loads a fresh sensor with `size` isolated hosts and `size` blocked
/// ranges, measures every case on every program, prints the table.
fn measure_size(
    args: &Args,
    bpffs: &TempBpffs,
    size: usize,
    floor: &aya::Ebpf,
    xdp_filter: &peers::XdpFilter,
) -> anyhow::Result<serde_json::Value> {
    let pin_dir = bpffs.path().join(format!("sensor-{size}"));
    let mut sensor = Datapath::load_object(&pin_dir, sensor_object()?)?;
    eprintln!("\nloading {size} isolated hosts and {size} blocked ranges ...");
    let loaded = load::fill(&mut sensor.maps, size, size, 0x5eed_0000_0000_0042);
    eprintln!(
        "loaded in {:.1}s + {:.1}s",
        loaded.isolated_secs, loaded.blocked_secs
    );
    let isolated = match loaded.some_isolated {
        Some(host) => host.to_string(),
        None => {
            sensor
                .maps
                .set_isolated(bench::ISOLATED_HOST.parse()?, Default::default())?;
            bench::ISOLATED_HOST.to_string()
        }
    };
    let blocked = match loaded.some_blocked {
        Some(net) => net.hosts().next().unwrap_or(net.addr()).to_string(),
        None => {
            sensor.maps.set_blocked(
                format!("{}/24", bench::BLOCKED_HOST)
                    .parse::<ipnet::IpNet>()?
                    .trunc(),
                Default::default(),
            )?;
            bench::BLOCKED_HOST.to_string()
        }
    };
    let memory = bench::map_memory(&pin_dir)?;

    // The sensor twice: telemetry off (enforcement only) and on (flow
    // table and events for detection, as sensord runs by default). A thread
    // drains the ring buffer as sensord would.
    let mut telemetry = sensor.take_telemetry()?;
    let _drain = drain_ring(telemetry.ring.take().expect("the ring buffer"));
    let cases = cases(&isolated, &blocked);
    // samples[case][program]
    let mut samples = vec![vec![Vec::new(); PROGRAMS.len()]; cases.len()];
    // least[case][least program], for the untagged IPv4 cases only.
    let mut least = vec![vec![Vec::new(); peers::LEAST_PROGRAMS.len()]; cases.len()];
    let started = Instant::now();
    for round in 0..args.rounds {
        eprintln!("round {}/{}", round + 1, args.rounds);
        for (c, case) in cases.iter().enumerate() {
            for (p, name) in PROGRAMS.iter().enumerate() {
                sensor.maps.set_telemetry(*name == "sensor+telemetry")?;
                let program = match *name {
                    "floor" => peers::floor_program(floor),
                    "xdp-filter" => &xdp_filter.program,
                    _ => sensor.program(),
                };
                let (verdict, ns) = bench::ns_per_packet(program, &case.packet, args.repeat);
                if name.starts_with("sensor") {
                    anyhow::ensure!(
                        verdict == case.sensor_verdict,
                        "{}: sensor returned {verdict}",
                        case.name
                    );
                }
                samples[c][p].push(ns);
            }
            if has_least(case) {
                for (p, name) in peers::LEAST_PROGRAMS.iter().enumerate() {
                    let program = peers::program(floor, name);
                    let (_, ns) = bench::ns_per_packet(program, &case.packet, args.repeat);
                    least[c][p].push(ns);
                }
            }
        }
    }
    eprintln!("measured in {}", bench::duration_text(started.elapsed()));

    println!(
        "\nper-packet cost, BPF_PROG_TEST_RUN, median of {} rounds x {} runs, maps holding {size} isolated hosts and {size} blocked ranges",
        args.rounds, args.repeat
    );
    println!(
        "{:<22} {:>9} {:>9} {:>11} {:>11} {:>14} {:>16} {:>12}",
        "packet",
        "floor ns",
        "sensor ns",
        "+telemetry",
        "xdp-filter",
        "sensor/floor",
        "sensor/xdp-filter",
        "+tel/xdp-f"
    );
    let mut rows = Vec::new();
    // medians[case][program]
    let medians: Vec<Vec<f64>> = samples
        .iter()
        .map(|programs| programs.iter().map(|s| summary(s.clone()).1).collect())
        .collect();
    for (c, case) in cases.iter().enumerate() {
        let med = &medians[c];
        let (floor_ns, sensor_ns, tel_ns, xf_ns) = (med[0], med[1], med[2], med[3]);
        println!(
            "{:<22} {:>9.0} {:>9.0} {:>11.0} {:>11.0} {:>14.2} {:>16.2} {:>12.2}",
            case.name,
            floor_ns,
            sensor_ns,
            tel_ns,
            xf_ns,
            sensor_ns / floor_ns,
            sensor_ns / xf_ns,
            tel_ns / xf_ns
        );
        rows.push(json!({
            "packet": case.name,
            "floor": sample_json(&samples[c][0]),
            "sensor": sample_json(&samples[c][1]),
            "sensor_telemetry": sample_json(&samples[c][2]),
            "xdp_filter": sample_json(&samples[c][3]),
            "sensor_over_floor": sensor_ns / floor_ns,
            "sensor_over_xdp_filter": sensor_ns / xf_ns,
            "sensor_telemetry_over_xdp_filter": tel_ns / xf_ns,
        }));
    }
    println!(
        "\nthe least flow telemetry can cost (no enforcement; floor.rs `least_*`), same rounds; enf+: the sensor's enforcement plus it, the parse counted once"
    );
    println!(
        "{:<22} {:>9} {:>9} {:>11} {:>11} {:>13} {:>11} {:>12} {:>12} {:>12} {:>15} {:>15}",
        "packet",
        "floor ns",
        "parse",
        "flow only",
        "+ event",
        "+ batched ev",
        "xdp-filter",
        "flow/xdp-f",
        "+ev/xdp-f",
        "+batch/xdp-f",
        "enf+flow/xdp-f",
        "enf+batch/xdp-f"
    );
    let mut least_rows = Vec::new();
    for (c, case) in cases.iter().enumerate() {
        if !has_least(case) {
            continue;
        }
        let med = |p: usize| summary(least[c][p].clone()).1;
        let (floor_ns, enforcement_ns, xf_ns) = (medians[c][0], medians[c][1], medians[c][3]);
        let (parse_ns, flow_ns, event_ns, batched_ns) = (med(0), med(1), med(2), med(3));
        // The sensor's enforcement plus the least telemetry, the parse
        // counted once: the least the sensor with telemetry can cost.
        let with_flow = enforcement_ns + flow_ns - parse_ns;
        let with_batched = enforcement_ns + batched_ns - parse_ns;
        println!(
            "{:<22} {:>9.0} {:>9.0} {:>11.0} {:>11.0} {:>13.0} {:>11.0} {:>12.2} {:>12.2} {:>12.2} {:>15.2} {:>15.2}",
            case.name,
            floor_ns,
            parse_ns,
            flow_ns,
            event_ns,
            batched_ns,
            xf_ns,
            flow_ns / xf_ns,
            event_ns / xf_ns,
            batched_ns / xf_ns,
            with_flow / xf_ns,
            with_batched / xf_ns
        );
        least_rows.push(json!({
            "packet": case.name,
            "parse": sample_json(&least[c][0]),
            "flow": sample_json(&least[c][1]),
            "flow_event": sample_json(&least[c][2]),
            "flow_batched_event": sample_json(&least[c][3]),
            "flow_over_xdp_filter": flow_ns / xf_ns,
            "flow_event_over_xdp_filter": event_ns / xf_ns,
            "flow_batched_event_over_xdp_filter": batched_ns / xf_ns,
            "enforcement_and_flow_over_xdp_filter": with_flow / xf_ns,
            "enforcement_and_batched_event_over_xdp_filter": with_batched / xf_ns,
        }));
    }
    println!(
        "map memory: address maps {:.1} MiB (kernel's count for the loaded entries)",
        memory as f64 / 1048576.0
    );
    drop(sensor);
    sensor_user::datapath::remove_pins(&pin_dir)?;
    Ok(json!({
        "entries": size,
        "load_seconds": { "isolated": loaded.isolated_secs, "blocked": loaded.blocked_secs },
        "address_map_bytes": memory,
        "results": rows,
        "least_telemetry": least_rows,
    }))
}

/// Whether the `least_*` programs are measured on this case: they read
/// untagged IPv4 frames only.
fn has_least(case: &bench::Case) -> bool {
    case.name.starts_with("ipv4")
}

/// Reads the ring buffer on a thread of its own, as sensord's reader does,
/// so events find room as they would live (at millions of packets a second
/// of SYNs the ring still fills; the table says so).
fn drain_ring(mut ring: aya::maps::RingBuf<aya::maps::MapData>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || loop {
        let mut n = 0;
        while let Some(record) = ring.next() {
            std::hint::black_box(&*record);
            n += 1;
        }
        if n == 0 {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    })
}
