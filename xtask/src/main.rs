//! `cargo xtask`: builds the eBPF program and the binaries, runs the tests,
//! the lab and the benchmarks. Each command installs what it needs.

mod bench;
mod build;
mod chart;
mod eval;
mod fuzz;
mod lab;
mod lab_fleet;
mod lint;
mod package;
mod setup;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the toolchain and packages the project needs (skips what is there).
    Setup(setup::Options),
    /// Build the eBPF program, then sensord and sensorctl (release).
    Build(build::Options),
    /// Run every test: unit tests, datapath tests and end-to-end tests (needs root).
    Test(test::Options),
    /// The built-in lab: a gateway between three segments, and its story.
    ///
    /// Example: cargo xtask lab        (build, tell the story, clean up)
    ///
    /// Example: cargo xtask lab --fleet   (three sites sharing decisions)
    Lab(lab::Options),
    /// Benchmarks: XDP per-packet cost beside the floor and xdp-filter,
    /// the detection engine, detection-to-drop latency in the lab.
    ///
    /// Example: cargo xtask bench --rounds 9 --only xdp,latency
    Bench(bench::Options),
    /// Detection quality on the shared captures: a table, target/eval/results.json
    /// and docs/detection-quality.md; fails on a regression.
    Eval(eval::Options),
    /// The Debian package (target/package/sensor_VERSION_amd64.deb): both
    /// binaries, the hardened systemd unit, configuration, logrotate rules,
    /// manual pages, completions, documentation and licences.
    ///
    /// Example: cargo xtask package && apt install ./target/package/sensor_0.1.0_amd64.deb
    Package(package::Options),
    /// rustfmt and clippy (warnings denied) on every crate, the eBPF one included.
    Lint,
}

fn main() -> Result<()> {
    // Every cargo run below builds sensor-user with the same commit in its
    // version (`sensord --version`), so none rebuilds it for another.
    std::env::set_var("SENSOR_BUILD_COMMIT", build::build_commit());
    match Cli::parse().command {
        Command::Setup(o) => setup::run(&o),
        Command::Build(o) => build::run(&o).map(|_| ()),
        Command::Test(o) => test::run(&o),
        Command::Lab(o) => lab::run(&o),
        Command::Bench(o) => bench::run(&o),
        Command::Eval(o) => eval::run(&o),
        Command::Package(o) => package::run(&o).map(|_| ()),
        Command::Lint => lint::run(),
    }
}
