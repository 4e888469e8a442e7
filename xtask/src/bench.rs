//! `cargo xtask bench`: per-packet cost of the XDP program next to the floor
//! and xdp-filter, measured side by side (see docs/performance.md).

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
    /// Random isolated hosts loaded before measuring.
    #[arg(long, default_value_t = 1_000_000)]
    isolated: u32,
    /// Random blocked ranges loaded before measuring.
    #[arg(long, default_value_t = 100_000)]
    blocked: u32,
}

pub fn run(options: &Options) -> Result<()> {
    require_root("cargo xtask bench")?;
    setup::tools()?;
    build::run(&build::Options::default())?;
    let root = build::workspace_root();
    let status = Command::new("cargo")
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "sensor-tests",
            "--bin",
            "sensor-bench",
        ])
        .status()?;
    ensure!(status.success(), "building sensor-bench failed");
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let json = out_dir.join("xdp_per_packet.json");
    let status = Command::new(root.join("target/release/sensor-bench"))
        .arg("--repeat")
        .arg(options.repeat.to_string())
        .arg("--rounds")
        .arg(options.rounds.to_string())
        .arg("--isolated")
        .arg(options.isolated.to_string())
        .arg("--blocked")
        .arg(options.blocked.to_string())
        .arg("--json")
        .arg(&json)
        .status()?;
    ensure!(status.success(), "sensor-bench failed");
    Ok(())
}
