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

/// What the enforcement rule says about a frame, computed independently of
/// the datapath: the oracle of the fuzz test. Frames whose addresses cannot
/// be read pass (fail open); otherwise isolation (unless the other end is
/// exempt), blocks and the segment policy decide.
struct Oracle {
    isolated: Vec<std::net::IpAddr>,
    blocked: Vec<ipnet::IpNet>,
    exempt: Vec<ipnet::IpNet>,
    config: sensor_user::config::Config,
}

impl Oracle {
    fn addresses(frame: &[u8]) -> Option<(std::net::IpAddr, std::net::IpAddr)> {
        let mut ether_type = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
        let mut at = 14;
        for _ in 0..2 {
            if ether_type != 0x8100 && ether_type != 0x88a8 {
                break;
            }
            ether_type = u16::from_be_bytes(frame.get(at + 2..at + 4)?.try_into().ok()?);
            at += 4;
        }
        match ether_type {
            0x0800 => {
                let ip = frame.get(at..at + 20)?;
                let ihl = (ip[0] & 0x0f) as usize * 4;
                if ip[0] >> 4 != 4 || ihl < 20 || frame.len() < at + ihl {
                    return None;
                }
                let src: [u8; 4] = ip[12..16].try_into().ok()?;
                let dst: [u8; 4] = ip[16..20].try_into().ok()?;
                Some((src.into(), dst.into()))
            }
            0x86dd => {
                let ip = frame.get(at..at + 40)?;
                if ip[0] >> 4 != 6 {
                    return None;
                }
                let src: [u8; 16] = ip[8..24].try_into().ok()?;
                let dst: [u8; 16] = ip[24..40].try_into().ok()?;
                Some((src.into(), dst.into()))
            }
            _ => None,
        }
    }

    fn segment(&self, addr: std::net::IpAddr) -> u32 {
        self.config
            .segments
            .iter()
            .flat_map(|s| s.cidrs.iter().map(move |c| (c, s.id)))
            .filter(|(c, _)| c.contains(&addr))
            .max_by_key(|(c, _)| c.prefix_len())
            .map_or(0, |(_, id)| id)
    }

    fn verdict(&self, frame: &[u8]) -> u32 {
        let Some((src, dst)) = Self::addresses(frame) else {
            return XDP_PASS;
        };
        let exempt = |a: std::net::IpAddr| self.exempt.iter().any(|n| n.contains(&a));
        let blocked = |a: std::net::IpAddr| self.blocked.iter().any(|n| n.contains(&a));
        let isolated = |a: std::net::IpAddr| self.isolated.contains(&a);
        let (s, d) = (self.segment(src), self.segment(dst));
        let drop = (isolated(src) && !exempt(dst))
            || (isolated(dst) && !exempt(src))
            || blocked(src)
            || blocked(dst)
            || (s != 0 && d != 0 && s != d && !self.config.policy.allows(s, d));
        if drop {
            XDP_DROP
        } else {
            XDP_PASS
        }
    }
}

/// A million frames, each a valid one of the samples (between addresses
/// that are isolated, blocked, exempt or in separated segments) with a few
/// random bytes changed, cut or extended: the program never aborts, and its
/// verdict is always the oracle's.
#[test]
fn a_million_mutated_frames_get_the_oracles_verdict() {
    let mut f = Fixture::new();
    let config = sensor_user::config::Config::from_toml(
        r#"
        exempt = ["10.0.0.53/32", "2001:db8::53/128"]
        [[segment]]
        name = "office"
        cidrs = ["10.0.0.0/24", "2001:db8::/64"]
        [[segment]]
        name = "records"
        cidrs = ["10.0.1.0/24", "2001:db8:1::/64"]
        [[segment]]
        name = "dmz"
        cidrs = ["10.0.2.0/24", "2001:db8:2::/64"]
        [policy]
        allow = [["office", "dmz"]]
        "#,
    )
    .unwrap();
    f.dp.maps
        .sync_segments(&config.segments, &config.policy)
        .unwrap();
    f.dp.maps.sync_exempt(&config.exempt).unwrap();
    let oracle = Oracle {
        isolated: ["10.0.0.5", "2001:db8::5"]
            .map(|a| a.parse().unwrap())
            .to_vec(),
        blocked: ["10.0.2.128/25", "2001:db8:2::/80"]
            .map(|n| n.parse().unwrap())
            .to_vec(),
        exempt: config.exempt.clone(),
        config,
    };
    for a in &oracle.isolated {
        f.isolate(&a.to_string());
    }
    for n in &oracle.blocked {
        f.block(&n.to_string());
    }
    let v4 = [
        "10.0.0.5",
        "10.0.0.9",
        "10.0.0.53",
        "10.0.1.7",
        "10.0.2.200",
        "10.0.2.1",
        "192.0.2.1",
    ];
    let v6 = [
        "2001:db8::5",
        "2001:db8::9",
        "2001:db8::53",
        "2001:db8:1::7",
        "2001:db8:2::1",
        "2001:db8:3::1",
    ];
    let mut rng = Rng(0xf022_1e55);
    let mut bases: Vec<Vec<u8>> = Vec::new();
    for pool in [&v4[..], &v6[..]] {
        for src in pool {
            for dst in pool {
                for mut p in samples() {
                    p.src = src.parse().unwrap();
                    p.dst = dst.parse().unwrap();
                    bases.push(p.build());
                }
            }
        }
    }
    let (mut drops, mut runs) = (0u64, 0u64);
    for i in 0..1_000_000u64 {
        let mut frame = bases[(rng.next_u64() % bases.len() as u64) as usize].clone();
        match i % 4 {
            // A few bytes changed anywhere.
            0 | 1 => {
                for _ in 0..1 + rng.next_u64() % 4 {
                    let at = (rng.next_u64() % frame.len() as u64) as usize;
                    frame[at] = rng.next_u64() as u8;
                }
            }
            // Cut short.
            2 => {
                let len = MIN_FRAME + (rng.next_u64() % (frame.len() - MIN_FRAME) as u64) as usize;
                frame.truncate(len);
            }
            // Random bytes appended, and one changed in the headers.
            _ => {
                frame.extend((0..rng.next_u64() % 64).map(|_| rng.next_u64() as u8));
                let at = (rng.next_u64() % 80.min(frame.len() as u64)) as usize;
                frame[at] = rng.next_u64() as u8;
            }
        }
        let v = f.run(&frame);
        assert_ne!(v, XDP_ABORTED, "aborted on {frame:02x?}");
        assert_eq!(v, oracle.verdict(&frame), "frame {i}: {frame:02x?}");
        drops += (v == XDP_DROP) as u64;
        runs += 1;
    }
    // The oracle's rules were exercised both ways.
    assert!(
        drops > runs / 10 && drops < runs * 9 / 10,
        "{drops} drops of {runs}"
    );
}
