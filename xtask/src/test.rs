//! `cargo xtask test`: every test the project has, in one command.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{ensure, Result};

use crate::{build, fuzz, package, setup};

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

/// Passed and failed tests, summed over every `cargo test` run.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    /// Adds the counts of a libtest summary line, if `line` is one.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.split("test result: ").nth(1) else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let n: u64 = n.parse().unwrap_or(0);
            match kind {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                _ => {}
            }
        }
    }
}

/// Runs `cargo test ARGS`, echoing its output and counting its results.
fn cargo_test(args: &[&str], envs: &[(&str, String)], tally: &mut Tally) -> Result<()> {
    let mut c = Command::new("cargo");
    c.current_dir(build::workspace_root())
        .arg("test")
        .args(args)
        .stdout(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = c.spawn()?;
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        tally.add(&line);
    }
    let status = child.wait()?;
    ensure!(status.success(), "cargo test {} failed", args.join(" "));
    Ok(())
}

pub fn run(options: &Options) -> Result<()> {
    require_root("cargo xtask test")?;
    setup::tools()?;
    let bin_dir = build::run(&build::Options::default())?;
    let deb = package::run(&package::Options { no_build: true })?;

    let mut tally = Tally::default();
    println!("== unit tests");
    let unit = cargo_test(
        &["--release", "--workspace", "--exclude", "sensor-tests"],
        &[],
        &mut tally,
    );

    println!("== datapath and end-to-end tests (one at a time: they share the kernel)");
    let mut args = vec!["--release", "-p", "sensor-tests", "--lib", "--"];
    if let Some(f) = &options.filter {
        args.push(f);
    }
    args.push("--test-threads=1");
    let bin_dir = bin_dir.to_string_lossy().into_owned();
    let deb = deb.to_string_lossy().into_owned();
    let e2e = cargo_test(
        &args,
        &[("SENSOR_BIN_DIR", bin_dir), ("SENSOR_DEB", deb)],
        &mut tally,
    );

    let fuzz = if options.filter.is_none() {
        println!(
            "== fuzz targets of the parsers ({} s each)",
            fuzz::SECONDS_PER_TARGET
        );
        fuzz::run_all(fuzz::SECONDS_PER_TARGET).and_then(|(passed, failed)| {
            tally.passed += passed.len() as u64;
            tally.failed += failed.len() as u64;
            ensure!(
                failed.is_empty(),
                "fuzz targets failed: {}",
                failed.join(", ")
            );
            Ok(())
        })
    } else {
        Ok(())
    };
    // One closing line for every run together.
    println!("tests: {} passed, {} failed", tally.passed, tally.failed);
    unit.and(e2e).and(fuzz)
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn tally_reads_libtest_summaries() {
        let mut t = Tally::default();
        t.add("test result: ok. 29 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 63.37s");
        t.add("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out");
        t.add("running 3 tests");
        assert_eq!((t.passed, t.failed), (32, 2));
    }
}
