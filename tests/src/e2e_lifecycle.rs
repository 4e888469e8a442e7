//! The daemon's life: a crash or a restart leaves no gap in enforcement and
//! loses no block; `on_exit = "remove"` cleans up; a lost state file is
//! rebuilt from the pinned maps.

use crate::support::lab::{self, http, sensorctl_json};

#[test]
fn killed_daemon_keeps_enforcing_and_restart_adopts_the_blocks() {
    let lab = lab::start("crash", "");
    lab.sensorctl(&["isolate", "10.10.0.11", "--reason", "beacon", "--ttl", "1h"])
        .unwrap();
    lab.sensorctl(&["block", "203.0.113.64/30", "--reason", "C&C"])
        .unwrap();
    let before = sensorctl_json(&lab, &["list"]);

    lab.stop_sensord(libc::SIGKILL).unwrap();
    assert!(
        !http(&lab, "office1", "http://203.0.113.80/"),
        "isolation holds while sensord is dead"
    );
    assert!(
        !http(&lab, "office2", "http://203.0.113.66:8080/"),
        "block holds while sensord is dead"
    );
    assert!(
        http(&lab, "office2", "http://203.0.113.80/"),
        "and nothing else is blocked"
    );

    lab.start_sensord().unwrap();
    let status = sensorctl_json(&lab, &["status"]);
    let interfaces = status["interfaces"].as_array().unwrap();
    assert_eq!(interfaces.len(), lab.inline_ports().len());
    assert!(
        interfaces.iter().all(|i| i["adopted"] == true),
        "links adopted: {status}"
    );
    let after = sensorctl_json(&lab, &["list"]);
    let strip_hits = |v: &serde_json::Value| -> Vec<(String, String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["target"].to_string(),
                    e["reason"].to_string(),
                    e["expires"].to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        strip_hits(&before),
        strip_hits(&after),
        "same entries after restart"
    );
    assert!(
        !http(&lab, "office1", "http://203.0.113.80/"),
        "still isolated after restart"
    );
    lab.sensorctl(&["release", "10.10.0.11"]).unwrap();
    assert!(
        http(&lab, "office1", "http://203.0.113.80/"),
        "release works after restart"
    );
}

#[test]
fn sigterm_keeps_enforcement_by_default() {
    let lab = lab::start("term", "");
    lab.sensorctl(&["isolate", "10.10.0.11"]).unwrap();
    lab.stop_sensord(libc::SIGTERM).unwrap();
    assert!(
        !http(&lab, "office1", "http://203.0.113.80/"),
        "still isolated after a clean stop"
    );
    assert!(lab
        .pin_dir()
        .join(sensor_common::map_names::ADDRESSES_V4)
        .exists());
    assert!(
        !lab.control_socket().exists(),
        "the socket is removed on exit"
    );
}

#[test]
fn on_exit_remove_detaches_and_unpins_everything() {
    let lab = lab::start("rm", "on_exit = \"remove\"");
    lab.sensorctl(&["isolate", "10.10.0.11"]).unwrap();
    lab.stop_sensord(libc::SIGTERM).unwrap();
    assert!(
        http(&lab, "office1", "http://203.0.113.80/"),
        "no enforcement left"
    );
    assert!(
        http(&lab, "records1", "http://203.0.113.80/"),
        "policy gone too"
    );
    // (bpffs itself shows progs.debug and maps.debug; those are not ours.)
    assert!(
        !lab.pin_dir().exists(),
        "pins left behind in {}",
        lab.pin_dir().display()
    );
    for port in [labnet::lab::OFFICE_UPLINK, labnet::lab::OFFICE_TAP] {
        let out = lab.gateway.ip(&["-d", "link", "show", port]).unwrap();
        assert!(!out.contains("xdp"), "XDP still attached: {out}");
    }
}

#[test]
fn lost_state_file_is_rebuilt_from_the_pinned_maps() {
    let lab = lab::start("lost", "");
    lab.sensorctl(&["isolate", "10.10.0.13"]).unwrap();
    lab.sensorctl(&["block", "198.51.100.0/24"]).unwrap();
    lab.stop_sensord(libc::SIGTERM).unwrap();
    std::fs::remove_file(lab.state_file()).unwrap();
    lab.start_sensord().unwrap();
    let list = sensorctl_json(&lab, &["list"]);
    assert_eq!(lab::targets(&list), ["10.10.0.13/32", "198.51.100.0/24"]);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["origin"] == "adopted"));
    assert!(lab.state_file().exists(), "the state file is written again");
}

#[test]
fn corrupt_state_file_stops_the_daemon_instead_of_losing_blocks() {
    let lab = lab::start("corrupt", "");
    lab.sensorctl(&["isolate", "10.10.0.13"]).unwrap();
    lab.stop_sensord(libc::SIGTERM).unwrap();
    std::fs::write(lab.state_file(), b"{ truncated").unwrap();
    let err = lab.start_sensord().unwrap_err().to_string();
    assert!(err.contains("not valid"), "{err}");
    assert_eq!(
        std::fs::read(lab.state_file()).unwrap(),
        b"{ truncated",
        "left as it was for the operator"
    );
    assert!(
        !http(&lab, "office3", "http://203.0.113.80/"),
        "the pinned isolation still holds"
    );
}

#[test]
fn a_removed_link_pin_is_attached_again() {
    let lab = lab::start("repin", "");
    lab.sensorctl(&["isolate", "10.10.0.11", "--ttl", "1h"])
        .unwrap();
    assert!(!http(&lab, "office1", "http://203.0.113.80/"), "isolated");
    // The office port's pinned link removed by hand: the program is
    // detached there and the isolation no longer holds.
    let pin = lab.pin_dir().join("links").join(labnet::lab::OFFICE_UPLINK);
    std::fs::remove_file(&pin).unwrap();
    let back = lab::wait_for(15, || pin.exists());
    assert!(back.is_some(), "{} was not pinned again", pin.display());
    let enforced = lab::wait_for(5, || !http(&lab, "office1", "http://203.0.113.80/"));
    assert!(enforced.is_some(), "the isolation holds again");
    let metrics = lab.metrics().unwrap();
    assert_eq!(
        lab::metric(
            &metrics,
            "sensor_links_repinned_total",
            &[("interface", "office")]
        ),
        1
    );
}

#[test]
fn a_reload_applies_allowlists_and_response_rules_without_a_restart() {
    use crate::support::lab::{assert_isolated_within, incidents_of, run, wait_for};
    let lab = lab::start("reload", lab::ISOLATE_POLICY);
    let pid = std::fs::read_to_string(lab.dir.join("sensord.pid")).unwrap();
    let scan = |host: &str| {
        assert!(http(&lab, host, "http://203.0.113.80/"), "{host} browses");
        run(
            &lab,
            host,
            "nmap -sS -n -Pn -p 1-200 --max-retries 1 10.20.0.21",
        );
    };
    let write_config = |extra: &str| {
        std::fs::write(lab.config_path(), lab.sensord_config(extra)).unwrap();
    };

    // office1 becomes the allowlisted vulnerability scanner.
    write_config(&format!(
        "{}\n[[detection.allow]]\nhosts = [\"10.10.0.11\"]\ndetectors = [\"scan.*\"]\n",
        lab::ISOLATE_POLICY
    ));
    let reloaded = sensorctl_json(&lab, &["reload"]);
    assert_eq!(
        reloaded["needs_restart"],
        serde_json::json!([]),
        "{reloaded}"
    );
    scan("office1");
    // The other hosts' scans are still found: the allowlist is office1's.
    scan("office2");
    assert_isolated_within(&lab, "10.10.0.12", 10, "office2's scan");
    assert!(
        incidents_of(&lab, "10.10.0.11").is_empty(),
        "the allowlisted scanner raised nothing"
    );

    // In alert-only mode, a scan is an incident and isolates nothing; a
    // change that takes a restart is named and not applied.
    write_config("[response]\nmode = \"alert_only\"\n");
    let config = std::fs::read_to_string(lab.config_path()).unwrap();
    std::fs::write(
        lab.config_path(),
        config.replace("metrics_address", "on_exit = \"remove\"\nmetrics_address"),
    )
    .unwrap();
    let reloaded = sensorctl_json(&lab, &["reload"]);
    assert_eq!(reloaded["needs_restart"], serde_json::json!(["on_exit"]));
    scan("office3");
    assert!(
        wait_for(10, || !incidents_of(&lab, "10.10.0.13").is_empty()).is_some(),
        "office3's scan is an incident"
    );
    assert!(
        !lab::isolated(&lab).contains(&"10.10.0.13/32".to_string()),
        "and no rule isolates it"
    );

    // An invalid file changes nothing, and says why.
    std::fs::write(lab.config_path(), "interfaces = [").unwrap();
    let e = lab.sensorctl(&["reload"]).unwrap_err().to_string();
    assert!(e.contains("the running configuration stays"), "{e}");
    let now = std::fs::read_to_string(lab.dir.join("sensord.pid")).unwrap();
    assert_eq!(pid, now, "one sensord all along");
}
