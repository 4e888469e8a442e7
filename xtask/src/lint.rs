//! `cargo xtask lint`: formatting and clippy with warnings denied, on every
//! crate, the eBPF one included (built for its own target with its own
//! toolchain, as `cargo xtask build` does).

use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::{
    build,
    setup::{self, EbpfToolchain},
};

fn cargo(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(dir).args(args);
    c
}

fn check(what: &str, mut c: Command) -> Result<()> {
    println!("== {what}");
    let status = c.status().with_context(|| format!("running {what}"))?;
    ensure!(status.success(), "{what} failed");
    Ok(())
}

pub fn run() -> Result<()> {
    let root = build::workspace_root();
    let ebpf = root.join("sensor-ebpf");
    check(
        "rustfmt (workspace)",
        cargo(&root, &["fmt", "--all", "--check"]),
    )?;
    check("rustfmt (sensor-ebpf)", cargo(&ebpf, &["fmt", "--check"]))?;
    check(
        "clippy (workspace)",
        cargo(
            &root,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
    )?;
    let toolchain = setup::ebpf_toolchain()?;
    if toolchain == EbpfToolchain::Debian {
        setup::apt_install(&["rust-web-clippy"])?;
    }
    let mut c = build::ebpf_cargo(toolchain, "clippy", "target/ebpf-lint");
    c.args(["--", "-D", "warnings"]);
    check("clippy (sensor-ebpf)", c)?;
    println!("lint: clean");
    Ok(())
}
