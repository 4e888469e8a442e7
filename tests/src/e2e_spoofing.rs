//! Forged source addresses in the lab: the impersonated host is never
//! isolated, the real sender is, and a host that never spoke is proven by
//! its layer-2 binding (docs/operations.md, "Anti-spoofing").
//!
//! The lab's office and records segments are switched (their frames carry
//! their hosts' own MACs); the internet segment's ports take only internet
//! addresses.

use std::time::{Duration, Instant};

use crate::support::lab::{
    self, assert_isolated_within, background, http, incidents_of, isolated, metric, run, wait_for,
};

/// The isolation entry of `host`, as `sensorctl list --json` shows it.
fn isolation_of(lab: &labnet::Lab, host: &str) -> serde_json::Value {
    lab::sensorctl_json(lab, &["list"])
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["kind"] == "isolation" && e["target"] == format!("{host}/32"))
        .cloned()
        .unwrap_or_default()
}

fn spoofed_drops(lab: &labnet::Lab) -> u64 {
    let text = lab.metrics().unwrap_or_default();
    ["office", "c2"]
        .iter()
        .map(|port| {
            metric(
                &text,
                "sensor_packets_total",
                &[
                    ("interface", port),
                    ("verdict", "drop"),
                    ("reason", "spoofed_source"),
                ],
            )
        })
        .sum()
}

#[test]
fn forged_sources_never_isolate_the_impersonated_host() {
    let lab = lab::start("spoof", lab::ISOLATE_POLICY);
    // office2 has browsed: the gateway knows its MAC.
    assert!(
        http(&lab, "office2", "http://203.0.113.80/"),
        "office2 browses"
    );
    // From office1, a SYN scan in office2's name.
    run(
        &lab,
        "office1",
        "hping3 -a 10.10.0.12 -S -p ++1 -c 100 -i u10000 10.20.0.21 2>&1 | tail -1",
    );
    // The real sender is caught; the impersonated host never is.
    assert_isolated_within(&lab, "10.10.0.11", 10, "hping3 -a 10.10.0.12 from office1");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !isolated(&lab).contains(&"10.10.0.12".to_string()),
        "office2 isolated; incidents: {:?}",
        incidents_of(&lab, "10.10.0.12")
    );
    let caught = incidents_of(&lab, "10.10.0.11");
    let detectors: Vec<String> = caught
        .iter()
        .flat_map(|i| i["detectors"].as_array().cloned().unwrap_or_default())
        .filter_map(|d| d.as_str().map(String::from))
        .collect();
    assert!(detectors.contains(&"spoofing".to_string()), "{caught:?}");
    assert!(spoofed_drops(&lab) > 0, "the forgeries were dropped");
    // office2 still works.
    assert!(
        http(&lab, "office2", "http://203.0.113.80/"),
        "office2 cut off"
    );

    // office1's isolation carries its MAC: from an address of its own
    // choosing (unbound, so not a forgery the binding check sees), its
    // frames are still dropped.
    let office1_mac = run(&lab, "office1", "cat /sys/class/net/eth0/address");
    let entry = isolation_of(&lab, "10.10.0.11");
    assert_eq!(entry["mac"].as_str(), Some(office1_mac.trim()), "{entry}");
    let before = entry["mac_hits"].as_u64().unwrap_or(0);
    run(
        &lab,
        "office1",
        "hping3 -a 10.10.0.99 -S -p 80 -c 20 -i u10000 203.0.113.80 2>&1 | tail -1",
    );
    let cut = wait_for(5, || {
        isolation_of(&lab, "10.10.0.11")["mac_hits"]
            .as_u64()
            .unwrap_or(0)
            >= before + 20
    });
    assert!(cut.is_some(), "{}", isolation_of(&lab, "10.10.0.11"));

    // A host that never spoke: office3's address forged by office1 (now
    // isolated, so from the records host instead, whose segment is
    // switched too). Its early forgeries, sent before the gateway knew
    // office3's MAC, must not get office3 isolated once office3 speaks.
    run(
        &lab,
        "records1",
        "hping3 -a 10.10.0.13 -S -p ++1 -c 60 -i u10000 10.10.0.11 2>&1 | tail -1",
    );
    assert!(
        http(&lab, "office3", "http://203.0.113.80/"),
        "office3 browses"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !isolated(&lab).contains(&"10.10.0.13".to_string()),
        "office3 isolated; incidents: {:?}",
        incidents_of(&lab, "10.10.0.13")
    );

    // From the internet, an office address: dropped at the port, no
    // evidence against office2.
    let before = spoofed_drops(&lab);
    run(
        &lab,
        "c2",
        "hping3 -a 10.10.0.12 -S -p ++1 -c 50 -i u10000 10.20.0.21 2>&1 | tail -1",
    );
    let dropped = wait_for(5, || spoofed_drops(&lab) >= before + 50);
    assert!(
        dropped.is_some(),
        "{} forged drops",
        spoofed_drops(&lab) - before
    );
    assert!(!isolated(&lab).contains(&"10.10.0.12".to_string()));
}

#[test]
fn a_never_seen_scanner_on_a_switched_segment_is_isolated_within_a_second() {
    let lab = lab::start("spoof2", lab::ISOLATE_POLICY);
    // office3 has sent nothing: no handshake, no binding. Its scan alone
    // proves its address (the gateway resolves it to answer).
    let start = Instant::now();
    let _scan = background(
        &lab,
        "office3",
        "nmap",
        "nmap -sS -n -Pn -p 1-500 --max-retries 1 10.20.0.21",
    );
    let mut took = None;
    while start.elapsed() < Duration::from_secs(10) {
        if isolated(&lab).contains(&"10.10.0.13".to_string()) {
            took = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("office3 isolated {took:?} after its scan started");
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(1)),
        "isolated after {took:?}; incidents: {:?}; neighbours: {:?}; bindings: {:?}; log: {}",
        incidents_of(&lab, "10.10.0.13"),
        lab.gateway.exec("ip", &["neigh", "show"]),
        std::fs::read_to_string(lab.dir.join("bindings.json")),
        std::fs::read_to_string(lab.sensord_log()).unwrap_or_default()
    );
}
