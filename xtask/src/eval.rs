//! `cargo xtask eval`: detection quality on the shared captures (labelled
//! attacks and a benign corpus), written to docs/detection-quality.md and
//! target/eval/results.json. Fails on a regression against the committed
//! report, or when benign traffic would get a host isolated.

use std::process::Command;

use anyhow::{ensure, Result};

use crate::build;

#[derive(clap::Args, Default)]
pub struct Options {
    /// The shared captures (default: ../shared/pcaps beside the workspace).
    #[arg(long)]
    pub pcaps: Option<std::path::PathBuf>,
}

pub fn run(options: &Options) -> Result<()> {
    let root = build::workspace_root();
    let pcaps = options
        .pcaps
        .clone()
        .unwrap_or_else(|| root.join("../shared/pcaps"));
    ensure!(
        pcaps.join("manifest.tsv").is_file(),
        "no captures at {} (expected manifest.tsv there); pass --pcaps DIR",
        pcaps.display()
    );
    let status = Command::new("cargo")
        .current_dir(&root)
        .args(["build", "--release", "-p", "sensor-tests", "--bin", "eval"])
        .status()?;
    ensure!(status.success(), "building the evaluation failed");
    let doc = root.join("docs/detection-quality.md");
    let status = Command::new(root.join("target/release/eval"))
        .arg("--pcaps")
        .arg(&pcaps)
        .arg("--json")
        .arg(root.join("target/eval/results.json"))
        .arg("--doc")
        .arg(&doc)
        .arg("--gate")
        .arg(&doc)
        .status()?;
    ensure!(status.success(), "detection quality regressed (see above)");
    Ok(())
}
