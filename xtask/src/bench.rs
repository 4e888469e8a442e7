//! `cargo xtask bench`: per-packet cost of the XDP program next to the floor
//! and xdp-filter, end to end on veth next to xdp-filter, nftables and
//! iptables, the detection engine's throughput and memory, and the control
//! plane (detection and `sensorctl` to the first dropped packet, loading a
//! large feed), and a mirror port into the engine through AF_XDP next to
//! AF_PACKET, and fleet propagation between gateways and with simulated
//! gateways. Prints tables, writes target/bench/results.json and
//! chart.svg (docs/performance.md).

use std::process::Command;

use anyhow::{ensure, Result};

use crate::{build, setup, test::require_root};

#[derive(clap::Args)]
pub struct Options {
    /// Runs per measurement (the kernel reports their mean).
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Interleaved measurements per (program, packet); the median is kept.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Map fillings for the per-packet suite: this many random isolated
    /// hosts and as many random blocked ranges.
    #[arg(long, value_delimiter = ',', default_value = "0,10000,1000000")]
    sizes: Vec<u32>,
    /// Run only these suites (default: all).
    #[arg(long, value_delimiter = ',', value_parser = ["xdp", "veth", "engine", "latency", "tap", "fleet"])]
    only: Vec<String>,
    /// Packets per end-to-end veth run.
    #[arg(long, default_value_t = 2_000_000)]
    veth_packets: u64,
    /// End-to-end veth runs per (filter, traffic).
    #[arg(long, default_value_t = 3)]
    veth_rounds: u32,
    /// Automatic isolations measured in the lab (each on a fresh sensord).
    #[arg(long, default_value_t = 10)]
    latency_rounds: u32,
    /// `sensorctl isolate` measurements in the lab.
    #[arg(long, default_value_t = 100)]
    manual_rounds: u32,
    /// Frames per mirror-port run (AF_XDP and AF_PACKET).
    #[arg(long, default_value_t = 2_000_000)]
    tap_frames: u32,
    /// Mirror-port runs per method.
    #[arg(long, default_value_t = 3)]
    tap_rounds: u32,
    /// Ranges of the threat feed loaded with `sensorctl block --file`.
    #[arg(long, default_value_t = 1_000_000)]
    feed_ranges: u32,
    /// Fleet block/unblock rounds between two gateways.
    #[arg(long, default_value_t = 100)]
    fleet_rounds: u32,
    /// Simulated gateway counts for the fleet's load.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    fleet_simulated: Vec<u32>,
}

pub fn run(options: &Options) -> Result<()> {
    require_root("cargo xtask bench")?;
    setup::tools()?;
    build::run(&build::Options::default())?;
    let root = build::workspace_root();
    let bin_dir = root.join("target/release");
    let status = Command::new("cargo")
        .current_dir(&root)
        .args(["build", "--release", "-p", "sensor-tests", "--bins"])
        .status()?;
    ensure!(status.success(), "building the benchmarks failed");
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let wanted = |suite: &str| options.only.is_empty() || options.only.iter().any(|o| o == suite);
    // A suite's binary, with `--FLAG VALUE` pairs and its JSON output file.
    let run = |bin: &str, flags: &[(&str, String)], json: &str| -> Result<()> {
        println!("\n== {bin}");
        let status = Command::new(bin_dir.join(bin))
            .args(
                flags
                    .iter()
                    .flat_map(|(flag, value)| [format!("--{flag}"), value.clone()]),
            )
            .arg("--json")
            .arg(out_dir.join(json))
            .env("SENSOR_BIN_DIR", &bin_dir)
            .status()?;
        ensure!(status.success(), "{bin} failed");
        Ok(())
    };
    if wanted("xdp") {
        run(
            "sensor-bench",
            &[
                ("repeat", options.repeat.to_string()),
                ("rounds", options.rounds.to_string()),
                ("sizes", join(&options.sizes)),
            ],
            "xdp_per_packet.json",
        )?;
    }
    if wanted("veth") {
        run(
            "veth-bench",
            &[
                ("packets", options.veth_packets.to_string()),
                ("rounds", options.veth_rounds.to_string()),
            ],
            "veth.json",
        )?;
    }
    if wanted("engine") {
        run("engine-bench", &[], "engine.json")?;
    }
    if wanted("latency") {
        run(
            "latency-bench",
            &[
                ("rounds", options.latency_rounds.to_string()),
                ("manual-rounds", options.manual_rounds.to_string()),
                ("feed-ranges", options.feed_ranges.to_string()),
            ],
            "latency.json",
        )?;
    }
    if wanted("tap") {
        run(
            "tap-bench",
            &[
                ("frames", options.tap_frames.to_string()),
                ("rounds", options.tap_rounds.to_string()),
            ],
            "tap.json",
        )?;
    }
    if wanted("fleet") {
        run(
            "fleet-bench",
            &[
                ("rounds", options.fleet_rounds.to_string()),
                ("simulated", join(&options.fleet_simulated)),
            ],
            "fleet.json",
        )?;
    }
    summarise(&out_dir)?;
    println!("\nresults in {}", out_dir.display());
    Ok(())
}

/// Gathers the suites' JSON files (this run's, or an earlier run's for the
/// suites not run) into results.json, and draws chart.svg.
fn summarise(out_dir: &std::path::Path) -> Result<()> {
    let mut all = serde_json::Map::new();
    for (key, file) in [
        ("xdp_per_packet", "xdp_per_packet.json"),
        ("veth_end_to_end", "veth.json"),
        ("engine", "engine.json"),
        ("control_plane", "latency.json"),
        ("mirror_port", "tap.json"),
        ("fleet", "fleet.json"),
    ] {
        if let Ok(text) = std::fs::read_to_string(out_dir.join(file)) {
            all.insert(key.into(), serde_json::from_str(&text)?);
        }
    }
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_vec_pretty(&all)?,
    )?;
    if let Some(svg) = all.get("xdp_per_packet").and_then(crate::chart::xdp_svg) {
        std::fs::write(out_dir.join("chart.svg"), svg)?;
        println!("chart: {}", out_dir.join("chart.svg").display());
    }
    Ok(())
}

fn join(values: &[u32]) -> String {
    values
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
