//! `cargo xtask bench`: per-packet cost of the XDP program next to the floor
//! and xdp-filter, the detection engine's throughput and memory, and the
//! latency from detection to the first dropped packet (docs/performance.md).

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
    #[arg(long, value_delimiter = ',', value_parser = ["xdp", "engine", "latency"])]
    only: Vec<String>,
    /// Rounds of the lab latency measurement.
    #[arg(long, default_value_t = 5)]
    latency_rounds: u32,
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
    let run = |bin: &str, args: Vec<String>, json: &str| -> Result<()> {
        println!("\n== {bin}");
        let status = Command::new(bin_dir.join(bin))
            .args(args)
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
            vec![
                "--repeat".into(),
                options.repeat.to_string(),
                "--rounds".into(),
                options.rounds.to_string(),
                "--sizes".into(),
                join(&options.sizes),
            ],
            "xdp_per_packet.json",
        )?;
    }
    if wanted("engine") {
        run("engine-bench", Vec::new(), "engine.json")?;
    }
    if wanted("latency") {
        run(
            "latency-bench",
            vec!["--rounds".into(), options.latency_rounds.to_string()],
            "latency.json",
        )?;
    }
    println!("\nresults in {}", out_dir.display());
    Ok(())
}

fn join(values: &[u32]) -> String {
    values
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
