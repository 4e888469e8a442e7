//! Faults and a hostile local user must not disable the automatic response:
//! about 20,000 connections (as many as the machine lets one user open)
//! held on the metrics port by an unprivileged user, and
//! a state file on a full disk (issue 12; docs/operations.md).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use labnet::{Lab, LabOptions};

use crate::support::{
    bin_dir,
    lab::{self, assert_isolated_within, http, metric, run, sensorctl_json, Job},
    unique_name,
};

/// Opens `n` connections to the metrics port and holds them, as `nobody`.
const HOLDER: &str = r#"
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
# As many as the machine lets one user have (20,000 on CI's), less a few.
n = min(int(sys.argv[1]), hard - 20)
held = []
for _ in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", 9464))
    held.append(s)
print(f"holding {len(held)} connections", flush=True)
time.sleep(600)
"#;

fn sensord_fds(lab: &Lab) -> usize {
    let pid = std::fs::read_to_string(lab.dir.join("sensord.pid"))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    pid.and_then(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
        .map_or(0, |d| d.count())
}

#[test]
fn twenty_thousand_idle_connections_starve_nothing() {
    let lab = lab::start("starve", lab::ISOLATE_POLICY);
    let log = lab.dir.join("logs").join("holder.log");
    let holder = Job::new(
        lab.gateway
            .spawn(
                "setpriv",
                &[
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "/usr/bin/python3",
                    "-c",
                    HOLDER,
                    "20000",
                ],
                &log,
            )
            .expect("starting the holder"),
    );
    let held = lab::wait_for(60, || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("holding 19"))
    });
    assert!(
        held.is_some(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The control socket answers at once.
    for _ in 0..3 {
        let start = Instant::now();
        let status = sensorctl_json(&lab, &["status"]);
        let took = start.elapsed();
        assert!(status.is_object(), "{status}");
        assert!(
            took < Duration::from_secs(2),
            "sensorctl status took {took:?}"
        );
    }
    // An automatic isolation works and is written.
    run(
        &lab,
        "office1",
        "nmap -sS -n -Pn -p 1-200 --max-retries 1 10.20.0.21 >/dev/null",
    );
    assert_isolated_within(&lab, "10.10.0.11", 10, "nmap -sS under 20,000 connections");
    let state = std::fs::read_to_string(lab.state_file()).unwrap();
    assert!(state.contains("10.10.0.11"), "{state}");
    // sensord holds a bounded number of descriptors, whatever was opened.
    let fds = sensord_fds(&lab);
    assert!(fds > 0 && fds < 500, "sensord holds {fds} descriptors");
    drop(holder);
    // Scrapes work again once the holder is gone.
    let scraped = lab::wait_for(15, || lab.metrics().is_ok());
    assert!(scraped.is_some(), "metrics did not come back");
}

/// A small tmpfs for the state file, unmounted when dropped (before the
/// lab, which removes the directory it is in).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs at {}", at.display());
        SmallDisk(at.to_owned())
    }

    /// Fills it to the last byte.
    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", self.0.join("filler").display()))
            .stderr(std::process::Stdio::null())
            .status();
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_delays_the_state_file_never_the_enforcement() {
    let lab = Lab::create(&LabOptions {
        prefix: unique_name("diskfull"),
        extra_config: lab::ISOLATE_POLICY.into(),
        bin_dir: bin_dir(),
        domain: false,
    })
    .expect("building the lab");
    let disk = SmallDisk::mount(&lab.dir.join("state"));
    let state_file = disk.0.join("state.json");
    let config = std::fs::read_to_string(lab.config_path()).unwrap();
    let config = config.replace(
        &format!("state_file = {:?}", lab.state_file()),
        &format!("state_file = {state_file:?}"),
    );
    std::fs::write(lab.config_path(), config).unwrap();
    lab.start_sensord().expect("starting sensord");
    disk.fill();

    // A scan: isolated at once although nothing can be written.
    run(
        &lab,
        "office1",
        "nmap -sS -n -Pn -p 1-200 --max-retries 1 10.20.0.21 >/dev/null",
    );
    assert_isolated_within(&lab, "10.10.0.11", 10, "nmap -sS with a full disk");
    assert!(
        !http(&lab, "office1", "http://203.0.113.80/"),
        "office1 cut off"
    );
    let metrics = lab.metrics().unwrap();
    assert_eq!(
        metric(&metrics, "sensor_state_unsaved", &[]),
        1,
        "{metrics}"
    );
    assert!(metric(&metrics, "sensor_state_write_failures_total", &[]) > 0);
    // A release works on the full disk too; so does an operator's isolation.
    let out = lab.sensorctl(&["release", "10.10.0.11"]).unwrap();
    assert!(out.contains("released"), "{out}");
    assert!(
        http(&lab, "office1", "http://203.0.113.80/"),
        "office1 back"
    );
    lab.sensorctl(&["isolate", "10.10.0.12", "--ttl", "1h"])
        .unwrap();
    assert!(
        !http(&lab, "office2", "http://203.0.113.80/"),
        "office2 cut off"
    );

    // Space returns: the state file catches up within seconds.
    disk.free();
    let written = lab::wait_for(5, || {
        std::fs::read_to_string(&state_file).is_ok_and(|s| s.contains("10.10.0.12"))
    });
    assert!(written.is_some(), "the state file was not written again");
    let state = std::fs::read_to_string(&state_file).unwrap();
    assert!(
        !state.contains("10.10.0.11"),
        "the release is recorded: {state}"
    );
    let metrics = lab.metrics().unwrap();
    assert_eq!(metric(&metrics, "sensor_state_unsaved", &[]), 0);
}

/// sensord's resident memory, in bytes.
fn sensord_rss(lab: &Lab) -> u64 {
    let pid = std::fs::read_to_string(lab.dir.join("sensord.pid")).unwrap_or_default();
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn a_random_source_flood_leaves_memory_bounded_and_detection_working() {
    let lab = lab::start("flood", lab::ISOLATE_POLICY);
    std::thread::sleep(Duration::from_secs(2));
    let before = sensord_rss(&lab);
    let flood = crate::support::lab::background(
        &lab,
        "c2",
        "flood",
        "timeout 15 hping3 -S -p 80 --flood --rand-source 203.0.113.80",
    );
    // Detection keeps working during the flood.
    std::thread::sleep(Duration::from_secs(3));
    let scan_start = Instant::now();
    run(
        &lab,
        "office1",
        "nmap -sS -n -Pn -p 1-200 --max-retries 1 10.20.0.21 >/dev/null",
    );
    assert_isolated_within(&lab, "10.10.0.11", 10, "nmap -sS during a flood");
    let isolated_after = scan_start.elapsed();
    let mut peak = before;
    let flood_end = Instant::now() + Duration::from_secs(13);
    while Instant::now() < flood_end {
        peak = peak.max(sensord_rss(&lab));
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(flood);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "sensord RSS {:.1} MiB before, {:.1} MiB peak during the flood; scan isolated {isolated_after:?} after it started",
        mib(before),
        mib(peak)
    );
    let metrics = lab.metrics().unwrap_or_default();
    eprintln!(
        "events {} flows created {}",
        metric(&metrics, "sensor_engine_events_total", &[]),
        metric(&metrics, "sensor_flows_total", &[("event", "created")])
    );
    assert!(
        peak.saturating_sub(before) < 64 << 20,
        "memory rose by {:.1} MiB",
        mib(peak - before)
    );
    // Within 10 minutes of the flood, the process is back where it was:
    // the flood's single probes leave the engine's tables after the scan
    // windows, the tables shrink at their sweeps, and what they held goes
    // back to the system (sensord's allocator settings; malloc_trim once a
    // minute). A little slack for what a running daemon allocates anyway.
    let back_by = before + (4 << 20);
    let returned = crate::support::lab::wait_for(600, || sensord_rss(&lab) <= back_by);
    let tables: Vec<String> = lab
        .metrics()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("sensor_detection_entries{") && !l.ends_with(" 0"))
        .map(String::from)
        .collect();
    eprintln!(
        "sensord RSS {:.1} MiB {returned:?} after the flood; tables not empty: {tables:?}",
        mib(sensord_rss(&lab))
    );
    assert!(
        returned.is_some(),
        "sensord RSS {:.1} MiB 10 minutes after the flood, {:.1} before; tables not empty: {tables:?}",
        mib(sensord_rss(&lab)),
        mib(before)
    );
}
