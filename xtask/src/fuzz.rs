//! The parsers' fuzz targets (`fuzz/`, cargo-fuzz with libFuzzer and
//! AddressSanitizer), each run for a bounded time by `cargo xtask test`.
//! A crash fails the run and leaves its input under `fuzz/artifacts/`.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::build;

/// How long each target runs in `cargo xtask test`.
pub const SECONDS_PER_TARGET: u32 = 20;

/// cargo-fuzz, installed from crates.io when missing.
pub fn ensure_cargo_fuzz() -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        return Ok(());
    }
    println!("installing cargo-fuzz from crates.io");
    let status = Command::new("cargo")
        .args(["install", "--locked", "cargo-fuzz", "--version", "0.13.2"])
        .status()?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed");
    }
    Ok(())
}

/// The targets `fuzz/Cargo.toml` declares.
fn targets() -> Result<Vec<String>> {
    let out = Command::new("cargo")
        .current_dir(build::workspace_root().join("fuzz"))
        .args(["+nightly", "fuzz", "list"])
        .output()
        .context("running cargo fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo +nightly fuzz list failed (is rustup's nightly toolchain there?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Runs every target for `seconds`; returns (passed, failed) names.
pub fn run_all(seconds: u32) -> Result<(Vec<String>, Vec<String>)> {
    ensure_cargo_fuzz()?;
    let dir = build::workspace_root().join("fuzz");
    let (mut passed, mut failed) = (Vec::new(), Vec::new());
    for target in targets()? {
        // libFuzzer reports every new input: its output goes to a log,
        // and only the summary (or, on a crash, the end) to the terminal.
        let log = dir.join("target").join(format!("{target}.log"));
        std::fs::create_dir_all(dir.join("target"))?;
        let out = std::fs::File::create(&log)?;
        let status = Command::new("cargo")
            .current_dir(&dir)
            .args(["+nightly", "fuzz", "run", "-O", &target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            .args(["-rss_limit_mb=2048", "-print_final_stats=1"])
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .with_context(|| format!("running fuzz target {target}"))?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if status.success() {
            let done = text
                .lines()
                .rev()
                .find(|l| l.starts_with("Done "))
                .unwrap_or("");
            println!("fuzz {target}: ok ({done})");
            passed.push(target);
        } else {
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            for line in tail.into_iter().rev() {
                println!("{line}");
            }
            // A crash leaves its input; a target that did not build, none.
            let why = if text.contains("failed to build fuzz script") {
                "it did not build".to_string()
            } else {
                format!("the input is under fuzz/artifacts/{target}/")
            };
            println!(
                "fuzz {target}: FAILED ({why}, the log in {})",
                log.display()
            );
            failed.push(target);
        }
    }
    Ok((passed, failed))
}
