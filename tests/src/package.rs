//! The Debian package as an operator meets it: what it holds, how its
//! systemd unit is rated, and sensord installed by dpkg on a Debian 12
//! system, started by systemd under that very unit, guarding the lab:
//! it isolates a scanner, keeps the isolation across a restart, reloads,
//! writes alerts where the package says, and leaves the interfaces clean
//! when the package is removed.

use std::{path::PathBuf, process::Command};

use labnet::{Lab, LabOptions};

use crate::support::{
    bin_dir,
    container::Container,
    lab::{http, ping, run, wait_for, ISOLATE_POLICY},
    unique_name,
};

/// The package `cargo xtask test` built (`cargo xtask package`).
fn deb() -> PathBuf {
    std::env::var_os("SENSOR_DEB")
        .map(PathBuf::from)
        .expect("SENSOR_DEB is not set: run the tests with `cargo xtask test`")
}

fn output(command: &mut Command) -> String {
    labnet::cmd::run(command).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn the_package_holds_what_an_operator_needs_and_its_unit_is_rated_safe() {
    let deb = deb();
    let listing = output(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for path in [
        "./usr/sbin/sensord",
        "./usr/bin/sensorctl",
        "./lib/systemd/system/sensord.service",
        "./etc/sensor/sensord.toml",
        "./etc/logrotate.d/sensord",
        "./usr/share/man/man8/sensord.8.gz",
        "./usr/share/man/man1/sensorctl.1.gz",
        "./usr/share/man/man1/sensorctl-isolate.1.gz",
        "./usr/share/bash-completion/completions/sensorctl",
        "./usr/share/zsh/vendor-completions/_sensorctl",
        "./usr/share/fish/vendor_completions.d/sensorctl.fish",
        "./usr/share/doc/sensor/copyright",
        "./usr/share/doc/sensor/LICENSE-MIT",
        "./usr/share/doc/sensor/LICENSE-APACHE",
        "./usr/share/doc/sensor/deployment.md",
        "./usr/share/doc/sensor/alert.schema.json",
        "./usr/share/doc/sensor/examples/filebeat.yml",
        "./usr/share/doc/sensor/examples/vector.toml",
        "./usr/share/sensor/monitoring/sensor-rules.yml",
        "./usr/share/sensor/monitoring/sensor-rules.test.yml",
        "./usr/share/sensor/monitoring/grafana-dashboard.json",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} missing:\n{listing}"
        );
    }
    let control = output(Command::new("dpkg-deb").arg("--field").arg(&deb));
    assert!(control.contains("Package: sensor"), "{control}");
    let conffiles = output(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(&deb)
            .arg("conffiles"),
    );
    assert!(
        conffiles.contains("/etc/sensor/sensord.toml"),
        "{conffiles}"
    );
    // The unit as shipped, rated by systemd.
    let dir = std::env::temp_dir().join(unique_name("unit"));
    output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir));
    let unit = dir.join("lib/systemd/system/sensord.service");
    let rating = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&rating.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("sensord.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    assert!(exposure <= 3.5, "exposure {exposure} > 3.5:\n{text}");
}

#[test]
fn sensord_installed_from_the_package_guards_the_lab_under_its_unit() {
    // The lab's network, without a sensord of its own.
    let lab = Lab::create(&LabOptions {
        prefix: unique_name("pkg"),
        extra_config: ISOLATE_POLICY.into(),
        bin_dir: bin_dir(),
        domain: false,
    })
    .expect("building the lab");
    let mut debian =
        Container::debian_with(&unique_name("debian"), &deb()).expect("a Debian 12 container");
    // The lab's configuration with the package's own paths, which are the
    // only ones the unit lets sensord write.
    let config: String = lab
        .sensord_config(ISOLATE_POLICY)
        .lines()
        .filter(|l| {
            !["control_socket", "state_file", "pin_dir"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let config = format!(
        "readonly_group = \"sensor\"\n{config}\n[alerts]\nfile = \"/var/log/sensor/alerts.jsonl\"\n"
    );
    debian.write("/etc/sensor/sensord.toml", &config).unwrap();
    debian
        .boot(lab.gateway.name(), &lab.dir.join("bpf"))
        .expect("booting the container");
    let sensorctl = |args: &[&str]| {
        let mut all = vec!["sensorctl", "--json"];
        all.extend_from_slice(args);
        debian.exec(&all)
    };
    debian
        .exec(&["systemctl", "enable", "--now", "sensord"])
        .expect("starting sensord");
    let ready = wait_for(30, || sensorctl(&["status"]).is_ok());
    assert!(
        ready.is_some(),
        "sensord did not come up under its unit: {}",
        debian
            .exec(&["journalctl", "-u", "sensord", "--no-pager"])
            .unwrap_or_default()
    );
    // The unit's restrictions are the ones sensord runs under.
    let show = debian
        .exec(&[
            "systemctl",
            "show",
            "sensord",
            "-p",
            "CapabilityBoundingSet,ProtectSystem,NoNewPrivileges,MainPID",
        ])
        .unwrap();
    assert!(show.contains("ProtectSystem=strict"), "{show}");
    assert!(show.contains("NoNewPrivileges=yes"), "{show}");
    let pid = show
        .lines()
        .find_map(|l| l.strip_prefix("MainPID="))
        .unwrap()
        .to_string();
    let status = debian
        .exec(&["cat", &format!("/proc/{pid}/status")])
        .unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|c| u64::from_str_radix(c.trim(), 16).unwrap())
        .unwrap();
    // CAP_NET_ADMIN 12, CAP_NET_RAW 13, CAP_IPC_LOCK 14, CAP_PERFMON 38,
    // CAP_BPF 39.
    let allowed = 1u64 << 12 | 1 << 13 | 1 << 14 | 1 << 38 | 1 << 39;
    assert_eq!(bounding, allowed, "{status}");

    // A scan from office1, after it proved its address: isolated.
    assert!(http(&lab, "office1", "http://203.0.113.80/"));
    run(
        &lab,
        "office1",
        "nmap -sS -n -Pn -p 1-200 --max-retries 1 10.20.0.21",
    );
    let isolated = || {
        sensorctl(&["list"])
            .map(|l| l.contains("\"isolation\"") && l.contains("10.10.0.11"))
            .unwrap_or(false)
    };
    assert!(
        wait_for(20, isolated).is_some(),
        "not isolated: {:?} {:?}\n{}",
        sensorctl(&["list"]),
        sensorctl(&["incidents"]),
        debian
            .exec(&["journalctl", "-u", "sensord", "--no-pager"])
            .unwrap_or_default()
    );
    assert!(!ping(&lab, "office1", "203.0.113.80"), "isolated");
    assert!(ping(&lab, "office2", "203.0.113.80"), "others pass");

    // A restart keeps the isolation (the state file in StateDirectory) and
    // the incidents (their store), ids and timelines alike.
    let incidents = || -> Vec<(u64, usize)> {
        let list: serde_json::Value =
            serde_json::from_str(&sensorctl(&["incidents"]).unwrap()).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|doc| &doc["sensor"]["incident"])
            .map(|i| {
                (
                    i["id"].as_u64().unwrap(),
                    i["actions"].as_array().unwrap().len(),
                )
            })
            .collect()
    };
    let before = incidents();
    assert!(!before.is_empty());
    debian
        .exec(&["systemctl", "restart", "sensord"])
        .expect("restart");
    assert!(wait_for(30, || sensorctl(&["status"]).is_ok()).is_some());
    assert!(isolated(), "after a restart: {:?}", sensorctl(&["list"]));
    assert!(!ping(&lab, "office1", "203.0.113.80"), "still isolated");
    assert_eq!(incidents(), before, "incidents survive the restart");

    // The SOC's read-only socket: the package's group may look, not act.
    let socket = debian
        .exec(&["stat", "-c", "%G %a", "/run/sensor/readonly.sock"])
        .unwrap();
    assert_eq!(socket.trim(), "sensor 660");
    debian
        .exec(&["useradd", "--no-create-home", "-G", "sensor", "analyst"])
        .unwrap();
    let analyst = |args: &[&str]| {
        let mut all = vec!["runuser", "-u", "analyst", "--", "sensorctl"];
        all.extend_from_slice(args);
        debian.exec(&all)
    };
    let seen = analyst(&["incidents"]).expect("the analyst lists incidents");
    assert!(seen.contains("10.10.0.11"), "{seen}");
    let e = analyst(&["isolate", "10.10.0.13"]).unwrap_err().to_string();
    assert!(e.contains("root only"), "{e}");
    // Reload re-reads what it can; the alert went where the package says.
    debian
        .exec(&["systemctl", "reload", "sensord"])
        .expect("reload");
    let alerts = debian.read("/var/log/sensor/alerts.jsonl").unwrap();
    assert!(alerts.contains("10.10.0.11"), "{alerts}");

    // Removing the package takes the program off the interfaces.
    debian
        .exec(&["dpkg", "-r", "sensor"])
        .expect("removing the package");
    let links = lab.gateway.exec("ip", &["-d", "link", "show"]).unwrap();
    assert!(!links.contains("prog/xdp"), "XDP still attached:\n{links}");
    assert!(ping(&lab, "office1", "203.0.113.80"), "released by removal");
}
