//! Running commands, with the failing command line in every error.

use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd` to completion; fails unless it exits 0. Returns its stdout.
pub fn run(cmd: &mut Command) -> Result<String> {
    let line = describe(cmd);
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!(
            "`{line}` failed ({status}): {}",
            String::from_utf8_lossy(&stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// `run` for a program and string arguments.
pub fn sh(program: &str, args: &[&str]) -> Result<String> {
    run(Command::new(program).args(args))
}

/// Runs `cmd` and reports only whether it exited 0 (for probes whose
/// failure is an expected answer, such as a ping that must not get through).
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
