//! `cargo xtask test`: every test the project has, in one command.

use std::process::Command;

use anyhow::{ensure, Result};

use crate::{build, setup};

#[derive(clap::Args, Default)]
pub struct Options {
    /// Only run datapath and end-to-end tests whose name contains this.
    pub filter: Option<String>,
}

pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "{what} needs root (network namespaces, XDP, bpffs); run it as root"
    );
    Ok(())
}

fn cargo_test(args: &[&str], envs: &[(&str, String)]) -> Result<()> {
    let mut c = Command::new("cargo");
    c.current_dir(build::workspace_root())
        .arg("test")
        .args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    let status = c.status()?;
    ensure!(status.success(), "cargo test {} failed", args.join(" "));
    Ok(())
}

pub fn run(options: &Options) -> Result<()> {
    require_root("cargo xtask test")?;
    setup::tools()?;
    let bin_dir = build::run(&build::Options::default())?;

    println!("== unit tests");
    cargo_test(
        &["--release", "--workspace", "--exclude", "sensor-tests"],
        &[],
    )?;

    println!("== datapath and end-to-end tests (one at a time: they share the kernel)");
    let mut args = vec!["--release", "-p", "sensor-tests", "--"];
    if let Some(f) = &options.filter {
        args.push(f);
    }
    args.push("--test-threads=1");
    cargo_test(
        &args,
        &[("SENSOR_BIN_DIR", bin_dir.to_string_lossy().into_owned())],
    )
}
