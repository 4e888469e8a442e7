//! Verdicts of the XDP program on crafted packets (BPF_PROG_TEST_RUN): each
//! block kind, each protocol path, VLAN and QinQ, IPv4 options and
//! fragments, IPv6 extension headers, expiry and monitor mode.

use sensor_common::{BlockValue, PortInfo, Reason, Verdict, PORT_SWITCHED};
use sensor_user::{
    clock,
    config::Config,
    datapath::UNATTACHED_SLOT,
    enforcer::{Enforcer, Origin},
    feeds::Ranges,
};

use crate::support::{
    fixture::{Fixture, XDP_DROP, XDP_PASS},
    packet::{arp, Ext, Packet, ETH_P_8021AD, ETH_P_8021Q, L4},
};

#[test]
fn allowed_traffic_passes_on_every_protocol_path() {
    let f = Fixture::new();
    let packets = [
        Packet::tcp("10.0.0.1", "10.0.0.2"),
        Packet::udp("10.0.0.1", "10.0.0.2"),
        Packet::icmp("10.0.0.1", "10.0.0.2"),
        Packet::new("10.0.0.1", "10.0.0.2", L4::Other(47)),
        Packet::tcp("2001:db8::1", "2001:db8::2"),
        Packet::udp("2001:db8::1", "2001:db8::2"),
        Packet::icmp("2001:db8::1", "2001:db8::2"),
    ];
    for p in &packets {
        assert_eq!(f.verdict(p), XDP_PASS, "{p:?}");
    }
    assert_eq!(
        f.counted(Verdict::Pass, Reason::Allowed),
        packets.len() as u64
    );
    assert_eq!(f.run(&arp()), XDP_PASS);
    assert_eq!(f.counted(Verdict::Pass, Reason::NotIp), 1);
}

#[test]
fn isolated_host_is_cut_off_both_ways() {
    let mut f = Fixture::new();
    f.isolate("10.0.0.5");
    f.isolate("2001:db8::5");
    assert_eq!(f.verdict(&Packet::tcp("10.0.0.5", "10.0.0.9")), XDP_DROP);
    assert_eq!(f.verdict(&Packet::udp("10.0.0.9", "10.0.0.5")), XDP_DROP);
    assert_eq!(
        f.verdict(&Packet::icmp("2001:db8::5", "2001:db8::9")),
        XDP_DROP
    );
    assert_eq!(
        f.verdict(&Packet::tcp("2001:db8::9", "2001:db8::5")),
        XDP_DROP
    );
    assert_eq!(f.verdict(&Packet::tcp("10.0.0.6", "10.0.0.9")), XDP_PASS);
    assert_eq!(f.counted(Verdict::Drop, Reason::IsolatedSource), 2);
    assert_eq!(f.counted(Verdict::Drop, Reason::IsolatedDestination), 2);
    let hits =
        f.dp.maps
            .get_isolated("10.0.0.5".parse().unwrap())
            .unwrap()
            .hits;
    assert_eq!(hits, 2, "each drop counts a hit on its entry");
}

#[test]
fn isolated_host_still_reaches_exempt_ranges() {
    let mut f = Fixture::new();
    f.isolate("10.0.0.5");
    f.dp.maps
        .sync_exempt(&["10.0.0.53/32".parse().unwrap()])
        .unwrap();
    assert_eq!(f.verdict(&Packet::udp("10.0.0.5", "10.0.0.53")), XDP_PASS);
    assert_eq!(f.verdict(&Packet::udp("10.0.0.53", "10.0.0.5")), XDP_PASS);
    assert_eq!(f.verdict(&Packet::udp("10.0.0.5", "10.0.0.54")), XDP_DROP);
}

#[test]
fn blocked_ranges_drop_by_longest_prefix() {
    let mut f = Fixture::new();
    f.block("198.51.100.0/24");
    f.block("2001:db8:bad::/48");
    assert_eq!(
        f.verdict(&Packet::tcp("10.0.0.1", "198.51.100.77")),
        XDP_DROP
    );
    assert_eq!(
        f.verdict(&Packet::tcp("198.51.100.1", "10.0.0.1")),
        XDP_DROP
    );
    assert_eq!(
        f.verdict(&Packet::tcp("10.0.0.1", "198.51.101.1")),
        XDP_PASS
    );
    assert_eq!(
        f.verdict(&Packet::udp("2001:db8:bad:1::1", "2001:db8::1")),
        XDP_DROP
    );
    assert_eq!(
        f.verdict(&Packet::udp("2001:db8::1", "2001:db8:bad2::1")),
        XDP_PASS
    );
    assert_eq!(f.counted(Verdict::Drop, Reason::BlockedDestination), 1);
    assert_eq!(f.counted(Verdict::Drop, Reason::BlockedSource), 2);
}

/// A feed is one unit beside the records: a refresh blocks what it adds
/// and lifts what it drops, except what a record or another feed still
/// holds; a restart with the feeds' copies adopts none of their ranges; a
/// range no copy explains is adopted (never lifted silently) until a feed
/// lists it again; retiring a feed lifts what only it listed.
#[test]
fn feeds_block_as_units_beside_the_records() {
    let mut f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let ranges =
        |list: &[&str]| Ranges::new(list.iter().map(|s| sensor_user::nets::parse(s).unwrap()));
    let drop_v1 = || ranges(&["198.51.100.0/24", "203.0.113.7", "2001:db8:bad::/48"]);
    let drop_v2 = || ranges(&["192.0.2.0/24", "2001:db8:bad::/48"]);
    let c2 = || ranges(&["203.0.113.7"]);
    let to = |f: &Fixture, dst: &str| {
        let src = if dst.contains(':') {
            "fd00:10::5"
        } else {
            "10.10.0.5"
        };
        f.verdict(&Packet::tcp(src, dst))
    };
    let mut enforcer = Enforcer::open(&mut f.dp.maps, &state_file, Vec::new()).unwrap();
    let diff = enforcer
        .set_feed(&mut f.dp.maps, "drop", drop_v1())
        .unwrap();
    assert_eq!((diff.added.len(), diff.removed.len()), (3, 0));
    for dst in ["198.51.100.9", "203.0.113.7", "2001:db8:bad::1"] {
        assert_eq!(to(&f, dst), XDP_DROP, "{dst}");
    }
    assert_eq!(to(&f, "192.0.2.1"), XDP_PASS);
    // An operator's block for a minute on a feed's range: permanent while
    // the feed lists it.
    let op: ipnet::IpNet = "198.51.100.0/24".parse().unwrap();
    enforcer
        .block(
            &mut f.dp.maps,
            op,
            Some(std::time::Duration::from_secs(60)),
            "op",
            Origin::OPERATOR,
        )
        .unwrap();
    assert_eq!(f.dp.maps.get_blocked(op).unwrap().expires_at_ns, 0);
    enforcer.set_feed(&mut f.dp.maps, "c2", c2()).unwrap();
    // The refresh drops two ranges that other sources hold, and adds one.
    let diff = enforcer
        .set_feed(&mut f.dp.maps, "drop", drop_v2())
        .unwrap();
    assert_eq!((diff.added.len(), diff.removed.len()), (1, 2));
    for dst in [
        "198.51.100.9",
        "203.0.113.7",
        "192.0.2.1",
        "2001:db8:bad::1",
    ] {
        assert_eq!(to(&f, dst), XDP_DROP, "{dst}");
    }
    assert_ne!(
        f.dp.maps.get_blocked(op).unwrap().expires_at_ns,
        0,
        "back to the record's own expiry"
    );
    enforcer.unblock(&mut f.dp.maps, op).unwrap();
    assert_eq!(to(&f, "198.51.100.9"), XDP_PASS);
    // The state file holds records only.
    let state = std::fs::read_to_string(&state_file).unwrap();
    assert!(!state.contains("192.0.2.0"), "{state}");
    drop(enforcer);
    let feeds = vec![("c2".to_string(), c2()), ("drop".to_string(), drop_v2())];
    let enforcer = Enforcer::open(&mut f.dp.maps, &state_file, feeds).unwrap();
    assert_eq!(enforcer.counts(&f.dp.maps).adopted, 0);
    assert_eq!(enforcer.counts(&f.dp.maps).feed_ranges, 3);
    drop(enforcer);
    // The c2 feed's copy is gone: its range is adopted, still dropped.
    let feeds = vec![("drop".to_string(), drop_v2())];
    let mut enforcer = Enforcer::open(&mut f.dp.maps, &state_file, feeds).unwrap();
    assert_eq!(enforcer.counts(&f.dp.maps).adopted, 1);
    assert_eq!(to(&f, "203.0.113.7"), XDP_DROP);
    enforcer.set_feed(&mut f.dp.maps, "c2", c2()).unwrap();
    assert_eq!(
        enforcer.counts(&f.dp.maps).adopted,
        0,
        "the feed explains it again"
    );
    let diff = enforcer.retire_feed(&mut f.dp.maps, "drop").unwrap();
    assert_eq!(diff.removed.len(), 2);
    assert_eq!(to(&f, "192.0.2.1"), XDP_PASS);
    assert_eq!(to(&f, "2001:db8:bad::1"), XDP_PASS);
    assert_eq!(to(&f, "203.0.113.7"), XDP_DROP);
    assert!(enforcer.feed("drop").is_none());
}

/// An internet segment and a switched office segment (10.10.0.0/24,
/// fd00:10::/64) whose port is the unattached instance the tests run on;
/// that port's `PortInfo`.
fn switched_office_port(f: &mut Fixture) -> PortInfo {
    let config = Config::from_toml(
        r#"
        interfaces = ["office0"]
        [[segment]]
        name = "internet"
        cidrs = ["0.0.0.0/0", "::/0"]
        [[segment]]
        name = "office"
        cidrs = ["10.10.0.0/24", "fd00:10::/64"]
        ports = ["office0"]
        switched = true
        [policy]
        allow = [["office", "internet"]]
        "#,
    )
    .unwrap();
    f.dp.maps
        .sync_segments(&config.segments, &config.policy)
        .unwrap();
    let port = PortInfo {
        segment: config.segments[1].id,
        flags: PORT_SWITCHED,
    };
    f.dp.maps.set_port(UNATTACHED_SLOT, port).unwrap();
    port
}

#[test]
fn forged_sources_are_dropped_by_port_and_by_binding() {
    let mut f = Fixture::new();
    switched_office_port(&mut f);
    f.dp.maps.set_drop_spoofed(true).unwrap();
    let (mac1, mac2) = ([2, 0, 0, 0, 0, 0x11], [2, 0, 0, 0, 0, 0x12]);
    for (addr, mac) in [("10.10.0.12", mac2), ("fd00:10::12", mac2)] {
        f.dp.maps.set_binding(addr.parse().unwrap(), mac).unwrap();
    }
    let from = |f: &Fixture, src: &str, mac| {
        let dst = if src.contains(':') {
            "2001:db8::80"
        } else {
            "203.0.113.80"
        };
        f.verdict(&Packet::tcp(src, dst).from_mac(mac))
    };
    // The owner, from its bound MAC; a host with no binding yet.
    assert_eq!(from(&f, "10.10.0.12", mac2), XDP_PASS);
    assert_eq!(from(&f, "fd00:10::12", mac2), XDP_PASS);
    assert_eq!(from(&f, "10.10.0.13", mac1), XDP_PASS);
    // Another host's bound address from another MAC.
    assert_eq!(from(&f, "10.10.0.12", mac1), XDP_DROP);
    assert_eq!(from(&f, "fd00:10::12", mac1), XDP_DROP);
    // Another segment's address on this port.
    assert_eq!(from(&f, "203.0.113.5", mac1), XDP_DROP);
    assert_eq!(from(&f, "10.20.0.5", mac1), XDP_DROP);
    // Addresses of no host: DHCP's 0.0.0.0, link-local.
    assert_eq!(from(&f, "0.0.0.0", mac1), XDP_PASS);
    assert_eq!(from(&f, "169.254.1.1", mac1), XDP_PASS);
    assert_eq!(from(&f, "fe80::1", mac1), XDP_PASS);
    assert_eq!(f.counted(Verdict::Drop, Reason::Spoofed), 4);
    // With the drop off, counted and passed.
    f.dp.maps.set_drop_spoofed(false).unwrap();
    assert_eq!(from(&f, "10.10.0.12", mac1), XDP_PASS);
    assert_eq!(f.counted(Verdict::Pass, Reason::Spoofed), 1);
    // A port of no segment checks nothing.
    f.dp.maps.set_drop_spoofed(true).unwrap();
    f.dp.maps
        .set_port(UNATTACHED_SLOT, PortInfo::default())
        .unwrap();
    assert_eq!(from(&f, "203.0.113.5", mac1), XDP_PASS);
    assert_eq!(from(&f, "10.10.0.12", mac1), XDP_PASS);
}

/// An isolation on a switched segment carries the host's MAC: every frame
/// from that MAC is dropped on switched ports whatever source address it
/// carries (a forger changing addresses stays cut off), but not on routed
/// ports, where the MAC is a router's. The MAC goes with its last record.
#[test]
fn isolated_macs_are_cut_off_on_switched_ports_whatever_address_they_send() {
    let mut f = Fixture::new();
    let switched = switched_office_port(&mut f);
    let maps = &mut f.dp.maps;
    maps.sync_exempt(&["203.0.113.53/32".parse().unwrap()])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let mut enforcer = Enforcer::open(maps, &state_file, Vec::new()).unwrap();
    let (forger, other) = ([2, 0, 0, 0, 0, 0x11], [2, 0, 0, 0, 0, 0x12]);
    let isolate = |enforcer: &mut Enforcer, maps: &mut _, host: &str| {
        enforcer
            .isolate(
                maps,
                host.parse().unwrap(),
                Some(forger),
                None,
                "test",
                Origin::OPERATOR,
            )
            .unwrap()
    };
    let entry = isolate(&mut enforcer, &mut f.dp.maps, "10.10.0.11");
    assert_eq!(entry.mac, Some(forger));
    let from =
        |f: &Fixture, src: &str, dst: &str, mac| f.verdict(&Packet::tcp(src, dst).from_mac(mac));
    // Its own address, a fresh one and another family: all cut off.
    assert_eq!(from(&f, "10.10.0.11", "198.51.100.1", forger), XDP_DROP);
    assert_eq!(from(&f, "10.10.0.99", "198.51.100.1", forger), XDP_DROP);
    assert_eq!(from(&f, "fd00:10::99", "2001:db8::1", forger), XDP_DROP);
    // Exempt ranges stay reachable, as for an isolated address.
    assert_eq!(from(&f, "10.10.0.99", "203.0.113.53", forger), XDP_PASS);
    // Another MAC passes.
    assert_eq!(from(&f, "10.10.0.12", "198.51.100.1", other), XDP_PASS);
    assert_eq!(f.counted(Verdict::Drop, Reason::IsolatedSource), 3);
    // Hits count every frame the entry matched (the exempt one too, as
    // for an isolated address).
    let listed = enforcer.list(&f.dp.maps, &Default::default());
    assert_eq!(listed[0].mac_hits, Some(4));
    // On a routed port the source MAC is a router's: not looked at.
    f.dp.maps
        .set_port(
            UNATTACHED_SLOT,
            PortInfo {
                flags: 0,
                ..switched
            },
        )
        .unwrap();
    assert_eq!(from(&f, "10.10.0.99", "198.51.100.1", forger), XDP_PASS);
    f.dp.maps.set_port(UNATTACHED_SLOT, switched).unwrap();
    // Two records name the MAC (the host's IPv4 and IPv6): releasing one
    // keeps it cut off; releasing the last lets it through.
    isolate(&mut enforcer, &mut f.dp.maps, "fd00:10::11");
    enforcer
        .release(&mut f.dp.maps, "10.10.0.11".parse().unwrap())
        .unwrap();
    assert_eq!(from(&f, "10.10.0.99", "198.51.100.1", forger), XDP_DROP);
    // A restart keeps the MAC with its record...
    drop(enforcer);
    let mut enforcer = Enforcer::open(&mut f.dp.maps, &state_file, Vec::new()).unwrap();
    assert_eq!(from(&f, "10.10.0.99", "198.51.100.1", forger), XDP_DROP);
    enforcer
        .release(&mut f.dp.maps, "fd00:10::11".parse().unwrap())
        .unwrap();
    assert_eq!(from(&f, "10.10.0.99", "198.51.100.1", forger), XDP_PASS);
    assert!(f.dp.maps.isolated_macs().is_empty());
    // ... and a MAC in the maps that no record names is released at start.
    f.dp.maps
        .set_isolated_mac(other, BlockValue::default())
        .unwrap();
    assert_eq!(from(&f, "10.10.0.12", "198.51.100.1", other), XDP_DROP);
    drop(enforcer);
    let _enforcer = Enforcer::open(&mut f.dp.maps, &state_file, Vec::new()).unwrap();
    assert_eq!(from(&f, "10.10.0.12", "198.51.100.1", other), XDP_PASS);
}

#[test]
fn segment_policy_separates_segments() {
    let mut f = Fixture::new();
    let config = Config::from_toml(
        r#"
        [[segment]]
        name = "internet"
        cidrs = ["0.0.0.0/0"]
        [[segment]]
        name = "office"
        cidrs = ["10.10.0.0/16", "fd00:10::/48"]
        [[segment]]
        name = "records"
        cidrs = ["10.20.0.0/16", "fd00:20::/48"]
        [policy]
        allow = [["office", "internet"], ["office", "records"]]
        "#,
    )
    .unwrap();
    f.dp.maps
        .sync_segments(&config.segments, &config.policy)
        .unwrap();
    assert_eq!(
        f.verdict(&Packet::tcp("10.10.0.5", "93.184.216.34")),
        XDP_PASS
    );
    assert_eq!(
        f.verdict(&Packet::tcp("93.184.216.34", "10.10.0.5")),
        XDP_PASS
    );
    assert_eq!(f.verdict(&Packet::tcp("10.10.0.5", "10.20.0.5")), XDP_PASS);
    assert_eq!(
        f.verdict(&Packet::tcp("10.20.0.5", "10.20.0.6")),
        XDP_PASS,
        "within a segment"
    );
    assert_eq!(
        f.verdict(&Packet::tcp("10.20.0.5", "93.184.216.34")),
        XDP_DROP
    );
    assert_eq!(
        f.verdict(&Packet::udp("93.184.216.34", "10.20.0.5")),
        XDP_DROP
    );
    assert_eq!(
        f.verdict(&Packet::tcp("fd00:10::5", "fd00:20::5")),
        XDP_PASS
    );
    // IPv6 has no internet segment here: addresses in no segment are not judged.
    assert_eq!(
        f.verdict(&Packet::tcp("fd00:20::5", "2001:db8::1")),
        XDP_PASS
    );
    assert_eq!(f.counted(Verdict::Drop, Reason::SegmentPolicy), 2);
}

#[test]
fn expired_entries_stop_applying_in_the_datapath() {
    let mut f = Fixture::new();
    let lapsed = BlockValue {
        expires_at_ns: 1,
        hits: 0,
    };
    let later = BlockValue {
        expires_at_ns: clock::boottime_ns() + 3_600_000_000_000,
        hits: 0,
    };
    f.dp.maps
        .set_isolated("10.0.0.5".parse().unwrap(), lapsed)
        .unwrap();
    f.dp.maps
        .set_isolated("10.0.0.6".parse().unwrap(), later)
        .unwrap();
    f.dp.maps
        .set_blocked("198.51.100.0/24".parse().unwrap(), lapsed)
        .unwrap();
    assert_eq!(f.verdict(&Packet::tcp("10.0.0.5", "10.0.0.9")), XDP_PASS);
    assert_eq!(f.verdict(&Packet::tcp("10.0.0.6", "10.0.0.9")), XDP_DROP);
    assert_eq!(
        f.verdict(&Packet::tcp("10.0.0.9", "198.51.100.1")),
        XDP_PASS
    );
    assert_eq!(
        f.dp.maps
            .get_isolated("10.0.0.5".parse().unwrap())
            .unwrap()
            .hits,
        0
    );
}

#[test]
fn monitor_mode_counts_but_passes() {
    let mut f = Fixture::new();
    f.isolate("10.0.0.5");
    f.dp.maps.set_monitor(true).unwrap();
    assert_eq!(f.verdict(&Packet::tcp("10.0.0.5", "10.0.0.9")), XDP_PASS);
    assert_eq!(f.counted(Verdict::Pass, Reason::IsolatedSource), 1);
    assert_eq!(f.counted(Verdict::Drop, Reason::IsolatedSource), 0);
    f.dp.maps.set_monitor(false).unwrap();
    assert_eq!(f.verdict(&Packet::tcp("10.0.0.5", "10.0.0.9")), XDP_DROP);
}

#[test]
fn vlan_and_qinq_tagged_packets_are_enforced() {
    let mut f = Fixture::new();
    f.isolate("10.0.0.5");
    f.isolate("2001:db8::5");
    let single = Packet::tcp("10.0.0.5", "10.0.0.9").vlan(ETH_P_8021Q, 10);
    let qinq = Packet::tcp("10.0.0.9", "10.0.0.5")
        .vlan(ETH_P_8021AD, 100)
        .vlan(ETH_P_8021Q, 10);
    let qinq6 = Packet::udp("2001:db8::5", "2001:db8::9")
        .vlan(ETH_P_8021AD, 100)
        .vlan(ETH_P_8021Q, 10);
    assert_eq!(f.verdict(&single), XDP_DROP);
    assert_eq!(f.verdict(&qinq), XDP_DROP);
    assert_eq!(f.verdict(&qinq6), XDP_DROP);
    let allowed = Packet::tcp("10.0.0.8", "10.0.0.9")
        .vlan(ETH_P_8021AD, 100)
        .vlan(ETH_P_8021Q, 10);
    assert_eq!(f.verdict(&allowed), XDP_PASS);
    // A third tag is deeper than the parser walks: fail open, counted.
    let triple = Packet::tcp("10.0.0.5", "10.0.0.9")
        .vlan(ETH_P_8021AD, 1)
        .vlan(ETH_P_8021Q, 2)
        .vlan(ETH_P_8021Q, 3);
    assert_eq!(f.verdict(&triple), XDP_PASS);
    assert_eq!(f.counted(Verdict::Pass, Reason::ParseError), 1);
}

#[test]
fn ipv4_options_and_fragments() {
    let mut f = Fixture::new();
    f.isolate("10.0.0.5");
    for words in [1, 5, 10] {
        assert_eq!(
            f.verdict(&Packet::tcp("10.0.0.5", "10.0.0.9").ipv4_options(words)),
            XDP_DROP
        );
        assert_eq!(
            f.verdict(&Packet::tcp("10.0.0.8", "10.0.0.9").ipv4_options(words)),
            XDP_PASS
        );
    }
    // A later fragment has no TCP header; it is judged on its addresses alone.
    let mut later = Packet::tcp("10.0.0.8", "10.0.0.9").ipv4_fragment(185);
    later.l4 = L4::Other(6);
    assert_eq!(f.verdict(&later), XDP_PASS);
    assert_eq!(
        f.counted(Verdict::Pass, Reason::ParseError),
        0,
        "a later fragment is not malformed"
    );
    let mut later_blocked = later.clone();
    later_blocked.src = "10.0.0.5".parse().unwrap();
    assert_eq!(f.verdict(&later_blocked), XDP_DROP);
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let mut f = Fixture::new();
    f.isolate("2001:db8::5");
    let chains: [&[Ext]; 4] = [
        &[Ext::HopByHop],
        &[Ext::HopByHop, Ext::Routing, Ext::DestOpts],
        &[Ext::Fragment { offset: 0 }, Ext::Ah],
        &[Ext::DestOpts, Ext::Fragment { offset: 0 }],
    ];
    for chain in chains {
        let mut ok = Packet::tcp("2001:db8::8", "2001:db8::9");
        let mut bad = Packet::tcp("2001:db8::5", "2001:db8::9");
        for ext in chain {
            ok = ok.ext(*ext);
            bad = bad.ext(*ext);
        }
        assert_eq!(f.verdict(&ok), XDP_PASS, "{chain:?}");
        assert_eq!(f.verdict(&bad), XDP_DROP, "{chain:?}");
    }
    assert_eq!(
        f.counted(Verdict::Pass, Reason::Allowed),
        4,
        "all complete, none malformed"
    );
    // A later fragment: no transport header to find.
    let mut later = Packet::tcp("2001:db8::8", "2001:db8::9").ext(Ext::Fragment { offset: 100 });
    later.l4 = L4::Other(6);
    assert_eq!(f.verdict(&later), XDP_PASS);
    // A chain longer than the walk: the addresses are still enforced.
    let mut long_ok = Packet::tcp("2001:db8::8", "2001:db8::9");
    let mut long_bad = Packet::tcp("2001:db8::5", "2001:db8::9");
    for _ in 0..9 {
        long_ok = long_ok.ext(Ext::DestOpts);
        long_bad = long_bad.ext(Ext::DestOpts);
    }
    assert_eq!(f.verdict(&long_ok), XDP_PASS);
    assert_eq!(f.counted(Verdict::Pass, Reason::ParseError), 1);
    assert_eq!(f.verdict(&long_bad), XDP_DROP);
}

/// The IPv4 fast path (per-/16 summaries) and the trie agree: with many
/// random isolated hosts and blocked ranges loaded, then some removed, every
/// probe address gets the verdict a direct computation gives, near entries
/// (same /24, same /16) and far from them.
#[test]
fn summary_fast_path_agrees_with_the_trie() {
    use crate::bench::load::{random_feed_range, random_inside_host, Rng};
    use ipnet::{IpNet, Ipv4Net};
    use std::net::Ipv4Addr;

    let mut f = Fixture::new();
    let mut rng = Rng(7);
    let hosts: Vec<Ipv4Addr> = (0..300)
        .map(|_| random_inside_host(&mut rng).into())
        .collect();
    let mut ranges: Vec<Ipv4Net> = (0..300).map(|_| random_feed_range(&mut rng)).collect();
    ranges.push("9.0.0.0/8".parse().unwrap());
    for h in &hosts {
        f.isolate(&h.to_string());
    }
    for r in &ranges {
        f.block(&r.to_string());
    }
    // Probes: each entry, its /24 and /16 neighbours, and random addresses.
    let neighbours = |a: Ipv4Addr| {
        let n = u32::from(a);
        [n, n ^ 1, n ^ 0x100, n ^ 0x8000, n ^ 0x10000].map(Ipv4Addr::from)
    };
    let mut probes: Vec<Ipv4Addr> = hosts.iter().flat_map(|h| neighbours(*h)).collect();
    probes.extend(ranges.iter().flat_map(|r| neighbours(r.network())));
    probes.extend((0..300).map(|_| Ipv4Addr::from(rng.next_u64() as u32)));
    let peer = "10.99.0.1";

    let verify = |f: &Fixture, hosts: &[Ipv4Addr], ranges: &[Ipv4Net]| {
        for p in &probes {
            let blocked = hosts.contains(p) || ranges.iter().any(|r| r.contains(p));
            let want = if blocked { XDP_DROP } else { XDP_PASS };
            let got = f.verdict(&Packet::tcp(&p.to_string(), peer));
            assert_eq!(got, want, "{p} as source");
            let got = f.verdict(&Packet::udp(peer, &p.to_string()));
            assert_eq!(got, want, "{p} as destination");
        }
    };
    verify(&f, &hosts, &ranges);

    // Release half of each; their neighbourhoods must go back to passing.
    for h in &hosts[..150] {
        f.dp.maps.remove_isolated((*h).into()).unwrap();
    }
    for r in &ranges[..150] {
        f.dp.maps.remove_blocked(IpNet::V4(*r)).unwrap();
    }
    verify(&f, &hosts[150..], &ranges[150..]);
}

/// A host that an older version isolated in the trie (before whole-length
/// IPv4 entries moved to a hash) is taken over by a restarted daemon: moved
/// to the hash, still dropped, and releasable.
#[test]
fn hosts_left_in_the_trie_by_an_older_version_are_adopted() {
    use aya::maps::lpm_trie::{Key, LpmTrie};
    use sensor_common::{map_names, AddressInfo, ADDRESS_ISOLATED};
    use sensor_user::datapath::{sensor_object, Datapath};

    let mut f = Fixture::new();
    let pin_dir = f.bpffs.pin_dir();
    {
        let map = aya::maps::MapData::from_pin(pin_dir.join(map_names::ADDRESSES_V4)).unwrap();
        let mut trie: LpmTrie<_, [u8; 4], AddressInfo> =
            LpmTrie::try_from(aya::maps::Map::LpmTrie(map)).unwrap();
        let info = AddressInfo {
            flags: ADDRESS_ISOLATED,
            ..Default::default()
        };
        trie.insert(&Key::new(32, [10, 0, 0, 77]), info, 0).unwrap();
    }
    // The daemon restarts over the same pins.
    f.dp = Datapath::load_object(&pin_dir, sensor_object().unwrap()).unwrap();
    let host = "10.0.0.77".parse().unwrap();
    assert!(f.dp.maps.isolated_hosts().contains(&host));
    assert_eq!(f.verdict(&Packet::tcp("10.0.0.77", "10.0.0.9")), XDP_DROP);
    f.dp.maps.remove_isolated(host).unwrap();
    assert_eq!(f.verdict(&Packet::tcp("10.0.0.77", "10.0.0.9")), XDP_PASS);
}
