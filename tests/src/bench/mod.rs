//! Per-packet cost of XDP programs with BPF_PROG_TEST_RUN, side by side in
//! one run: the sensor's program, the floor (an XDP_PASS program) and
//! xdp-filter from xdp-tools. The kernel times `repeat` runs of a program on
//! one packet and reports the mean; each (program, packet) pair is measured
//! `rounds` times, interleaved, and the median is kept.

pub mod load;
pub mod netns;
pub mod peers;
pub mod stream;

use std::time::Duration;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use serde_json::json;

use crate::support::packet::{Packet, ETH_P_8021Q};

/// A packet class the benchmark runs, and the verdict it must get.
pub struct Case {
    pub name: &'static str,
    pub packet: Vec<u8>,
    /// The sensor's expected return value (the peers pass everything).
    pub sensor_verdict: u32,
}

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// Addresses the cases use; `load` keeps the random entries away from them.
pub const OFFICE_HOST: &str = "10.10.0.5";
pub const OFFICE_HOST_V6: &str = "fd00:10::5";
pub const RECORDS_HOST: &str = "10.20.0.5";
pub const INTERNET_HOST: &str = "93.184.216.34";
pub const INTERNET_HOST_V6: &str = "2001:db8::1";
/// The drop cases' addresses when the maps hold no random entries (not in
/// the pass cases' /24s, which would send those to the trie).
pub const ISOLATED_HOST: &str = "10.10.7.66";
pub const BLOCKED_HOST: &str = "198.51.100.7";

/// The packet classes, with the drop cases sent from `isolated` and to
/// `blocked` (entries picked at random from what the maps hold).
pub fn cases(isolated: &str, blocked: &str) -> Vec<Case> {
    vec![
        Case {
            name: "ipv4_tcp_pass",
            packet: Packet::tcp(OFFICE_HOST, INTERNET_HOST).build(),
            sensor_verdict: XDP_PASS,
        },
        Case {
            name: "ipv4_tcp_ack_pass",
            packet: Packet::tcp(OFFICE_HOST, INTERNET_HOST)
                .tcp_flags(0x10)
                .build(),
            sensor_verdict: XDP_PASS,
        },
        Case {
            name: "ipv4_udp_pass",
            packet: Packet::udp(OFFICE_HOST, INTERNET_HOST).build(),
            sensor_verdict: XDP_PASS,
        },
        Case {
            name: "ipv6_tcp_pass",
            packet: Packet::tcp(OFFICE_HOST_V6, INTERNET_HOST_V6).build(),
            sensor_verdict: XDP_PASS,
        },
        Case {
            name: "vlan_tcp_pass",
            packet: Packet::tcp(OFFICE_HOST, INTERNET_HOST)
                .vlan(ETH_P_8021Q, 10)
                .build(),
            sensor_verdict: XDP_PASS,
        },
        Case {
            name: "drop_isolated",
            packet: Packet::tcp(isolated, INTERNET_HOST).build(),
            sensor_verdict: XDP_DROP,
        },
        Case {
            name: "drop_blocked",
            packet: Packet::tcp(OFFICE_HOST, blocked).build(),
            sensor_verdict: XDP_DROP,
        },
        Case {
            name: "drop_segment_policy",
            packet: Packet::tcp(RECORDS_HOST, INTERNET_HOST).build(),
            sensor_verdict: XDP_DROP,
        },
    ]
}

/// Mean ns per run of `program` on `packet`, as the kernel measured it.
pub fn ns_per_packet(program: &Xdp, packet: &[u8], repeat: u32) -> (u32, f64) {
    let opts = TestRunOptions {
        data_in: Some(packet),
        repeat,
        ..Default::default()
    };
    let r = program.test_run(opts).expect("BPF_PROG_TEST_RUN");
    // The kernel reports the mean per run, rounded to whole ns.
    (r.return_value, r.duration.as_nanos() as f64)
}

/// min, median, max.
pub fn summary(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = samples[samples.len() / 2];
    (samples[0], median, samples[samples.len() - 1])
}

pub fn sample_json(samples: &[f64]) -> serde_json::Value {
    let (min, median, max) = summary(samples.to_vec());
    json!({ "min_ns": min, "median_ns": median, "max_ns": max, "samples_ns": samples })
}

pub fn duration_text(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Bytes the kernel accounts to the address maps pinned in `pin_dir`
/// (`bpftool map show`'s memlock: the nodes and elements allocated).
pub fn map_memory(pin_dir: &std::path::Path) -> anyhow::Result<u64> {
    use sensor_common::map_names::{ADDRESSES_V4, ADDRESSES_V6, HOSTS_V4};
    let mut total = 0;
    for name in [ADDRESSES_V4, ADDRESSES_V6, HOSTS_V4] {
        let out = std::process::Command::new("bpftool")
            .args(["-j", "map", "show", "pinned"])
            .arg(pin_dir.join(name))
            .output()?;
        anyhow::ensure!(out.status.success(), "bpftool map show {name} failed");
        let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        total += info["bytes_memlock"].as_u64().unwrap_or(0);
    }
    Ok(total)
}

/// The `p`th percentile (nearest rank) of `samples`.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
