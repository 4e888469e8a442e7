//! A network namespace owned by the lab or a test: made on creation, its
//! processes killed and the namespace deleted on drop, even on a panic.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::Duration,
};

use anyhow::{Context, Result};

use crate::cmd;

#[derive(Debug)]
pub struct Netns {
    name: String,
    /// Delete on drop. Off for a lab left running by `lab up`.
    owned: bool,
}

impl Netns {
    pub fn create(name: &str) -> Result<Netns> {
        if exists(name) {
            delete(name);
        }
        cmd::sh("ip", &["netns", "add", name])?;
        let ns = Netns {
            name: name.to_owned(),
            owned: true,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A handle to an existing namespace that will not be deleted on drop.
    pub fn existing(name: &str) -> Netns {
        Netns {
            name: name.to_owned(),
            owned: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keep the namespace when this handle is dropped.
    pub fn disown(&mut self) {
        self.owned = false;
    }

    /// `ip -n NAME ...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        cmd::sh("ip", &full)
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs a program inside the namespace; fails unless it exits 0.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        cmd::run(self.command(program).args(args))
    }

    /// Whether a program run inside the namespace exits 0.
    pub fn succeeds(&self, program: &str, args: &[&str]) -> bool {
        cmd::succeeds(self.command(program).args(args))
    }

    /// Starts a long-running program inside the namespace, in its own
    /// process group, with its output in `log`.
    pub fn spawn(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        log: &Path,
    ) -> Result<Child> {
        use std::os::unix::process::CommandExt;
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut c = self.command(program);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        c.spawn()
            .with_context(|| format!("starting a program in {}", self.name))
    }

    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")])?;
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.owned {
            delete(&self.name);
        }
    }
}

pub fn exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Pids of the processes inside a namespace.
pub fn pids(name: &str) -> Vec<i32> {
    cmd::sh("ip", &["netns", "pids", name])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Stops every process in the namespace (TERM, then KILL) and deletes it.
pub fn delete(name: &str) {
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let running = pids(name);
        if running.is_empty() {
            break;
        }
        for pid in &running {
            // SAFETY: plain kill(2) on a pid we just listed.
            unsafe { libc::kill(*pid, signal) };
        }
        for _ in 0..50 {
            if pids(name).is_empty() {
                break;
            }
            sleep(Duration::from_millis(100));
        }
    }
    let _ = cmd::sh("ip", &["netns", "del", name]);
}

/// Names of the namespaces that start with `prefix`.
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    cmd::sh("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}
