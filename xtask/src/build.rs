//! Builds the eBPF objects, then the release binaries that embed them.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};
use labnet::cmd;

use crate::setup::{self, EbpfToolchain};

#[derive(clap::Args, Default)]
pub struct Options {}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// target/release: where sensord and sensorctl land.
pub fn bin_dir() -> PathBuf {
    workspace_root().join("target/release")
}

/// `cargo SUBCOMMAND` on the eBPF crate with its toolchain and target,
/// its own target directory under target/.
pub fn ebpf_cargo(toolchain: EbpfToolchain, subcommand: &str, target_dir: &str) -> Command {
    let root = workspace_root();
    let mut c = Command::new("cargo");
    c.current_dir(root.join("sensor-ebpf"))
        .arg(format!("+{}", toolchain.rustup_name()))
        .args([
            subcommand,
            "--release",
            "-Z",
            "build-std=core",
            "--target",
            "bpfel-unknown-none",
        ])
        .arg("--target-dir")
        .arg(root.join(target_dir))
        // The Debian toolchain is stable: let it take -Z flags.
        .env("RUSTC_BOOTSTRAP", "1")
        // Cargo sets these for xtask itself; they must not leak into the
        // nested build of another toolchain.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("CARGO");
    if toolchain == EbpfToolchain::Debian {
        c.env(
            "PATH",
            format!(
                "/usr/lib/llvm-22/bin:{}",
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    }
    c
}

pub fn build_ebpf(toolchain: EbpfToolchain) -> Result<()> {
    let mut c = ebpf_cargo(toolchain, "build", "target/ebpf");
    println!("building the eBPF program ({})", toolchain.rustup_name());
    cmd::run(&mut c).context("building sensor-ebpf")?;
    Ok(())
}

/// The commit being built, for `--version` ("" outside a git checkout);
/// "-modified" marks a tree with uncommitted changes.
pub fn build_commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(workspace_root())
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return String::new();
    };
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.is_empty() => format!("{commit}-modified"),
        _ => commit,
    }
}

pub fn build_user() -> Result<()> {
    println!("building sensord and sensorctl");
    let status = Command::new("cargo")
        .current_dir(workspace_root())
        .args(["build", "--release", "-p", "sensor-user", "--bins"])
        .status()?;
    anyhow::ensure!(status.success(), "cargo build -p sensor-user failed");
    Ok(())
}

/// Builds everything; returns the directory of the binaries.
pub fn run(_options: &Options) -> Result<PathBuf> {
    let toolchain = setup::ebpf_toolchain()?;
    build_ebpf(toolchain)?;
    build_user()?;
    Ok(bin_dir())
}
