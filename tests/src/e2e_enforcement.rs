//! Isolation, range blocks, the segment policy, expiry and monitor mode, with
//! real traffic (curl, ping, dig, socat) between the lab's namespaces.

use std::{thread::sleep, time::Duration};

use crate::support::lab::{
    self, dns, http, metric, ping, sensorctl_json, start_udp_echo, udp_echo,
};

#[test]
fn isolate_cuts_a_host_off_both_ways_and_release_restores_it() {
    let lab = lab::start("iso", "");
    let _echo = start_udp_echo(&lab, "records1", 7007);
    assert!(
        http(&lab, "office1", "http://10.20.0.21/"),
        "TCP before isolation"
    );
    assert!(
        udp_echo(&lab, "office1", "10.20.0.21", 7007),
        "UDP before isolation"
    );
    assert!(
        ping(&lab, "records1", "10.10.0.11"),
        "ICMP before isolation"
    );

    lab.sensorctl(&["isolate", "10.10.0.11", "--reason", "test"])
        .unwrap();
    assert!(
        !http(&lab, "office1", "http://10.20.0.21/"),
        "TCP from the isolated host"
    );
    assert!(
        !udp_echo(&lab, "office1", "10.20.0.21", 7007),
        "UDP from the isolated host"
    );
    assert!(
        !ping(&lab, "records1", "10.10.0.11"),
        "ICMP to the isolated host"
    );
    assert!(
        !http(&lab, "office1", "http://203.0.113.80/"),
        "to the internet"
    );
    assert!(
        ping(&lab, "office2", "10.10.0.11"),
        "within its own segment, frames go through the office's access switch, not the gateway"
    );
    assert!(dns(&lab, "office1", "web.lab"), "the resolver is exempt");
    assert!(
        http(&lab, "office2", "http://10.20.0.21/"),
        "other hosts are unaffected"
    );

    let list = sensorctl_json(&lab, &["list"]);
    let entry = &list[0];
    assert_eq!(entry["target"], "10.10.0.11/32");
    assert_eq!(entry["origin"], "operator");
    assert_eq!(entry["reason"], "test");
    assert!(
        entry["hits"].as_u64().unwrap() > 0,
        "hits are counted: {entry}"
    );

    lab.sensorctl(&["release", "10.10.0.11"]).unwrap();
    assert!(
        http(&lab, "office1", "http://10.20.0.21/"),
        "TCP after release"
    );
    assert!(
        udp_echo(&lab, "office1", "10.20.0.21", 7007),
        "UDP after release"
    );
    assert!(ping(&lab, "records1", "10.10.0.11"), "ICMP after release");
}

#[test]
fn isolation_works_for_ipv6_hosts() {
    let lab = lab::start("iso6", "");
    assert!(http(&lab, "office1", "http://[2001:db8:113::80]/"));
    lab.sensorctl(&["isolate", "fd00:10::11"]).unwrap();
    assert!(!http(&lab, "office1", "http://[2001:db8:113::80]/"));
    assert!(!ping(&lab, "web", "fd00:10::11"));
    assert!(http(&lab, "office2", "http://[2001:db8:113::80]/"));
    lab.sensorctl(&["release", "fd00:10::11"]).unwrap();
    assert!(http(&lab, "office1", "http://[2001:db8:113::80]/"));
}

#[test]
fn blocked_range_drops_traffic_to_and_from_it() {
    let lab = lab::start("blk", "");
    assert!(http(&lab, "office2", "http://203.0.113.66:8080/"));
    lab.sensorctl(&["block", "203.0.113.64/30", "--reason", "C&C"])
        .unwrap();
    assert!(!http(&lab, "office2", "http://203.0.113.66:8080/"));
    assert!(!ping(&lab, "c2", "10.10.0.12"), "from the range too");
    assert!(
        http(&lab, "office2", "http://203.0.113.80/"),
        "outside the range"
    );
    lab.sensorctl(&["unblock", "203.0.113.64/30"]).unwrap();
    assert!(http(&lab, "office2", "http://203.0.113.66:8080/"));
}

#[test]
fn segment_policy_drops_separated_flows_and_metrics_count_them_exactly() {
    let lab = lab::start("seg", "");
    assert!(
        http(&lab, "office1", "http://10.20.0.21/"),
        "office may reach records"
    );
    assert!(
        http(&lab, "office1", "http://203.0.113.80/"),
        "office may reach the internet"
    );
    let before = lab.metrics().unwrap();
    let labels = [
        ("interface", "records1"),
        ("verdict", "drop"),
        ("reason", "segment_policy"),
    ];
    let dropped_before = metric(&before, "sensor_packets_total", &labels);
    // Five echo requests from records to the internet: each one dropped.
    let ok = lab
        .host("records1")
        .netns
        .succeeds("ping", &["-c", "5", "-i", "0.2", "-W", "1", "203.0.113.80"]);
    assert!(!ok, "records must not reach the internet");
    let after = lab.metrics().unwrap();
    assert_eq!(
        metric(&after, "sensor_packets_total", &labels) - dropped_before,
        5,
        "{after}"
    );
    assert!(
        !http(&lab, "web", "http://10.20.0.21/"),
        "nor the internet records"
    );
    assert!(
        metric(
            &after,
            "sensor_interface_attached",
            &[("interface", "records1")]
        ) == 1
    );
}

#[test]
fn isolation_with_ttl_expires_by_itself() {
    let lab = lab::start("ttl", "");
    lab.sensorctl(&["isolate", "10.10.0.12", "--ttl", "2s"])
        .unwrap();
    assert!(!http(&lab, "office2", "http://203.0.113.80/"));
    sleep(Duration::from_secs(3));
    assert!(
        http(&lab, "office2", "http://203.0.113.80/"),
        "the isolation lapsed"
    );
    sleep(Duration::from_millis(1500));
    let list = sensorctl_json(&lab, &["list"]);
    assert_eq!(
        list.as_array().unwrap().len(),
        0,
        "the sweep removed it: {list}"
    );
    let metrics = lab.metrics().unwrap();
    assert_eq!(
        metric(
            &metrics,
            "sensor_expired_entries_total",
            &[("kind", "isolation")]
        ),
        1
    );
}

#[test]
fn monitor_mode_counts_would_be_drops_and_passes_them() {
    let lab = lab::start("mon", "mode = \"monitor\"");
    lab.sensorctl(&["isolate", "10.10.0.11"]).unwrap();
    assert!(
        http(&lab, "office1", "http://203.0.113.80/"),
        "monitor mode passes"
    );
    assert!(
        http(&lab, "records1", "http://203.0.113.80/"),
        "even across separated segments"
    );
    let metrics = lab.metrics().unwrap();
    let would = metric(
        &metrics,
        "sensor_packets_total",
        &[("verdict", "pass"), ("reason", "isolated_source")],
    );
    assert!(would > 0, "{metrics}");
    let policy = metric(
        &metrics,
        "sensor_packets_total",
        &[("verdict", "pass"), ("reason", "segment_policy")],
    );
    assert!(policy > 0, "{metrics}");
    assert_eq!(
        metric(&metrics, "sensor_packets_total", &[("verdict", "drop")]),
        0
    );
    assert_eq!(metric(&metrics, "sensor_monitor_mode", &[]), 1);
}

#[test]
fn generic_xdp_mode_enforces_too() {
    let lab = lab::start("generic", "xdp_mode = \"generic\"");
    let status = sensorctl_json(&lab, &["status"]);
    let interfaces = status["interfaces"].as_array().unwrap();
    assert!(
        interfaces.iter().all(|i| i["mode"] == "generic"),
        "{status}"
    );
    lab.sensorctl(&["isolate", "10.10.0.11"]).unwrap();
    assert!(!http(&lab, "office1", "http://203.0.113.80/"));
    assert!(http(&lab, "office2", "http://203.0.113.80/"));
    for port in [labnet::lab::OFFICE_UPLINK, labnet::lab::OFFICE_TAP] {
        let out = lab.gateway.ip(&["-d", "link", "show", port]).unwrap();
        assert!(out.contains("xdpgeneric"), "{out}");
    }
}
