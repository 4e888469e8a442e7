//! Crafted and malformed packets: every packet cut at every offset, broken
//! headers and random bytes. The program must never abort, and must never
//! drop a packet unless its addresses were readable and blocked.

use crate::bench::load::Rng;
use sensor_common::{Reason, Verdict};

use crate::support::{
    fixture::{Fixture, XDP_ABORTED, XDP_DROP, XDP_PASS},
    packet::{Ext, Packet, ETH_P_8021AD, ETH_P_8021Q},
};

/// The smallest frame BPF_PROG_TEST_RUN accepts for XDP is an Ethernet header.
const MIN_FRAME: usize = 14;

fn samples() -> Vec<Packet> {
    vec![
        Packet::tcp("10.0.0.5", "10.0.0.9"),
        Packet::udp("10.0.0.5", "10.0.0.9").ipv4_options(3),
        Packet::icmp("10.0.0.5", "10.0.0.9").vlan(ETH_P_8021Q, 7),
        Packet::tcp("10.0.0.5", "10.0.0.9")
            .vlan(ETH_P_8021AD, 1)
            .vlan(ETH_P_8021Q, 2),
        Packet::tcp("2001:db8::5", "2001:db8::9"),
        Packet::udp("2001:db8::5", "2001:db8::9")
            .ext(Ext::HopByHop)
            .ext(Ext::Fragment { offset: 0 }),
        Packet::icmp("2001:db8::5", "2001:db8::9")
            .vlan(ETH_P_8021Q, 7)
            .ext(Ext::Ah),
    ]
}

#[test]
fn truncated_packets_pass_when_nothing_is_blocked() {
    let f = Fixture::new();
    for p in samples() {
        let full = p.build();
        for cut in MIN_FRAME..full.len() {
            let v = f.run(&full[..cut]);
            assert_eq!(v, XDP_PASS, "{p:?} cut at {cut} of {}", full.len());
        }
    }
    assert!(f.counted(Verdict::Pass, Reason::ParseError) > 0);
    assert_eq!(f.counted(Verdict::Drop, Reason::ParseError), 0);
}

#[test]
fn truncated_packets_are_dropped_only_once_their_addresses_are_readable() {
    let mut f = Fixture::new();
    f.isolate("10.0.0.5");
    f.isolate("2001:db8::5");
    for p in samples() {
        let full = p.build();
        for cut in MIN_FRAME..=full.len() {
            let v = f.run(&full[..cut]);
            assert_ne!(v, XDP_ABORTED, "{p:?} cut at {cut}");
            let expected = if cut >= p.addresses_end() {
                XDP_DROP
            } else {
                XDP_PASS
            };
            assert_eq!(
                v,
                expected,
                "{p:?} cut at {cut} (addresses end at {})",
                p.addresses_end()
            );
        }
    }
}

#[test]
fn broken_ip_headers_fail_open() {
    let f = Fixture::new();
    let base = Packet::tcp("10.0.0.5", "10.0.0.9").build();
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut v = base.clone();
    v[14] = 0x55; // version 5
    cases.push(("IPv4 ethertype with version 5", v));
    let mut v = base.clone();
    v[14] = 0x44; // IHL 4 < 5
    cases.push(("IHL below 5", v));
    let mut v = base.clone();
    v[14] = 0x4f; // IHL 15: 60 bytes, more than the packet holds
    cases.push(("IHL past the end", v));
    let mut v = base.clone();
    v[14 + 20 + 12] = 0x20; // TCP data offset 2 (< 5)
    cases.push(("TCP data offset below 5", v));
    let mut v6 = Packet::tcp("2001:db8::5", "2001:db8::9").build();
    v6[14] = 0x40;
    cases.push(("IPv6 ethertype with version 4", v6));
    let mut hbh = Packet::tcp("2001:db8::5", "2001:db8::9")
        .ext(Ext::HopByHop)
        .build();
    hbh[14 + 40 + 1] = 255; // extension header claiming 2 KiB
    cases.push(("extension header past the end", hbh));
    for (what, data) in &cases {
        assert_eq!(f.run(data), XDP_PASS, "{what}");
    }
    assert_eq!(
        f.counted(Verdict::Pass, Reason::ParseError),
        cases.len() as u64
    );
}

#[test]
fn random_bytes_never_abort_and_never_drop_with_empty_maps() {
    random_bytes(false);
}

/// The same with telemetry on: the tail-called telemetry program reads
/// what the enforcement program parsed, and must hold on every frame too.
#[test]
fn random_bytes_never_abort_with_telemetry_on() {
    random_bytes(true);
}

fn random_bytes(telemetry: bool) {
    let mut f = Fixture::new();
    f.dp.maps.set_telemetry(telemetry).expect("settings");
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let templates: Vec<Vec<u8>> = samples().iter().map(|p| p.build()).collect();
    for i in 0..4000 {
        // Half fully random, half a real packet with random bytes flipped.
        let data: Vec<u8> = if i % 2 == 0 {
            let len = MIN_FRAME + (rng.next_u64() % 200) as usize;
            (0..len).map(|_| rng.next_u64() as u8).collect()
        } else {
            let mut d = templates[i % templates.len()].clone();
            for _ in 0..4 {
                let at = (rng.next_u64() as usize) % d.len();
                d[at] = rng.next_u64() as u8;
            }
            d
        };
        let v = f.run(&data);
        assert_eq!(v, XDP_PASS, "case {i}: {data:02x?}");
    }
}
