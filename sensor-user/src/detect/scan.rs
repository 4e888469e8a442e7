//! Reconnaissance: vertical port scans (many ports of one host), horizontal
//! sweeps (one port on many hosts), slow scans (the same over an hour) and
//! ICMP echo sweeps.
//!
//! Like Zeek's scan detection, port and address scans count **failed**
//! attempts only (refused with RST, or unanswered), so a client that opens
//! many successful connections is not a scanner. Defaults: Zeek's
//! `port_scan_threshold` (15 ports) and `addr_scan_threshold` (25 hosts) in
//! 5 minutes; ICMP sweeps at 10 hosts in 5 minutes, between Slips'
//! `pingscan_minimum_scanned_ips` (5) and Zeek's address threshold.
//!
//! A peer-to-peer client retrying its cached peers also fails on one port
//! across many hosts, but it tries each peer over both transports on that
//! port (BitTorrent's uTP runs on the TCP listening port and clients try it
//! first, falling back to TCP), which a scan does not do. That is the
//! TCP/UDP-pair heuristic of Karagiannis et al., "Transport layer
//! identification of P2P traffic" (IMC 2004), which BLINC builds on. A
//! sweep of a port from 1024 up whose failed targets were mostly tried
//! over both is peer retries: not reported, counted. Service ports under
//! 1024 are never spared: a scan of DNS over TCP and UDP stays a scan.

use std::{collections::HashMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::{
    event::{Event, Kind, Nanos, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, SECOND},
    limits,
    window::{cap_oldest, fit, limit_reported, MinuteSweep, TimedSet},
    Evidence,
};

/// The DCE/RPC endpoint mapper's port.
const EPMAP: u16 = 135;
/// Peer-to-peer ports are registered or dynamic ones; below this, a sweep
/// is never taken for peer retries.
const PEER_PORTS_FROM: u16 = 1024;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// Failed attempts to this many ports of one host within `window_secs`.
    pub ports: usize,
    /// Failed attempts to one port on this many hosts within `window_secs`.
    pub hosts: usize,
    /// ICMP echo requests to this many hosts within `window_secs`.
    pub icmp_hosts: usize,
    pub window_secs: u64,
    /// The same thresholds over this longer window catch slow scans.
    pub slow_window_secs: u64,
    /// A SYN with no SYN-ACK after this long is a failed attempt.
    pub attempt_timeout_secs: u64,
    /// Client packets on one connection to the RPC endpoint mapper (135)
    /// from which it is an enumeration (rpcdump-style): a normal client
    /// makes a lookup or two.
    pub rpc_enum_packets: u64,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            ports: 15,
            hosts: 25,
            icmp_hosts: 10,
            window_secs: 300,
            slow_window_secs: 3600,
            attempt_timeout_secs: 3,
            rpc_enum_packets: 100,
        }
    }
}

/// What a source has probed, per target.
#[derive(Default)]
struct Probes {
    /// (src, dst) -> ports that failed.
    ports: HashMap<(IpAddr, IpAddr), TimedSet<u16>>,
    /// (src, port) -> hosts that failed.
    hosts: HashMap<(IpAddr, u16), TimedSet<IpAddr>>,
    /// src -> hosts sent an echo request.
    icmp: HashMap<IpAddr, TimedSet<IpAddr>>,
    /// (src, port) -> hosts tried on that port (from `PEER_PORTS_FROM`),
    /// over TCP and over UDP: peers tried over both are peer retries.
    tried: [HashMap<(IpAddr, u16), TimedSet<IpAddr>>; 2],
}

/// Index into `Probes::tried`.
const TRIED_TCP: usize = 0;
const TRIED_UDP: usize = 1;

pub struct ScanDetector {
    config: ScanConfig,
    /// (src, dst, dport) -> when the SYN was seen, awaiting an answer.
    pending: HashMap<(IpAddr, IpAddr, u16), Nanos>,
    probes: Probes,
    /// Evidence already given, and at what count (it is given again each
    /// time the count doubles, so an incident's counts keep up).
    reported: HashMap<(&'static str, IpAddr, String), usize>,
    last_expiry: Nanos,
    /// Sweeps of old probes.
    sweep: MinuteSweep,
    /// Entries dropped to stay within `limits` (pending, probes).
    pub evicted: [u64; 2],
    /// Sweeps not reported because they were peer retries, counted as
    /// they would have been reported.
    pub peer_retries: u64,
}

impl ScanDetector {
    /// New settings from a reload: they apply from the next event, and
    /// what was learnt so far stays.
    pub fn reconfigure(&mut self, config: ScanConfig) {
        self.config = config;
    }

    pub fn new(config: ScanConfig) -> ScanDetector {
        ScanDetector {
            config,
            pending: HashMap::new(),
            probes: Probes::default(),
            reported: HashMap::new(),
            last_expiry: 0,
            sweep: MinuteSweep::default(),
            evicted: [0; 2],
            peer_retries: 0,
        }
    }

    pub fn observe(&mut self, e: &Event, out: &mut Vec<Evidence>) {
        self.expire_pending(e.ts, out);
        match (&e.kind, e.protocol) {
            // A connection attempt; a tiny first fragment (`nmap -f`) is
            // one too, reassembled by the target, which answers it.
            (Kind::Syn, PROTO_TCP) | (Kind::Fragment, PROTO_TCP) if e.dport != 0 => {
                self.tried(TRIED_TCP, e);
                self.attempt(e);
            }
            // A probe outside any connection (FIN, NULL, Xmas, Maimon, ACK,
            // Window scans): refused with a RST, or unanswered, it failed.
            // One that answers a pending probe (an ACK to a keepalive of a
            // connection the datapath had forgotten) means that was none.
            (Kind::Probe, PROTO_TCP)
                if self.pending.remove(&(e.dst, e.src, e.sport)).is_none() =>
            {
                self.attempt(e);
            }
            (Kind::SynAck, PROTO_TCP) => {
                self.pending.remove(&(e.dst, e.src, e.sport));
            }
            (Kind::Rst, PROTO_TCP)
                // A refusal from the target: the attempt failed now.
                if self.pending.remove(&(e.dst, e.src, e.sport)).is_some() => {
                    self.failed(e.dst, e.src, e.sport, e.ts, out);
                }
            (Kind::FlowEnd(summary), PROTO_UDP) if !summary.answered => {
                self.failed(e.src, e.dst, e.dport, e.ts, out);
            }
            (Kind::FlowEnd(summary), PROTO_TCP) if e.dport == EPMAP || e.sport == EPMAP => {
                // Orient by the port: captures may start mid-connection.
                let (client, server, packets) = if e.dport == EPMAP {
                    (e.src, e.dst, summary.orig_packets)
                } else {
                    (e.dst, e.src, summary.resp_packets)
                };
                if packets >= self.config.rpc_enum_packets {
                    out.push(Evidence {
                        host: client,
                        detector: "scan.rpc_enum",
                        technique: "T1046",
                        score: 60,
                        ts: e.ts,
                        since: e.ts,
                        peers: vec![format!("{server}:{EPMAP}")],
                        count: packets,
                        summary: format!("{packets} requests to the RPC endpoint mapper of {server} on one connection"),
                    });
                }
            }
            (Kind::IcmpError, PROTO_ICMP | PROTO_ICMPV6) => {
                // Port unreachable (v4 code 3, v6 code 4) quoting a UDP
                // datagram: a closed UDP port refused a probe.
                let port_unreachable = (e.protocol == PROTO_ICMP && e.sport == 3)
                    || (e.protocol == PROTO_ICMPV6 && e.sport == 4);
                if let Some((src, dst, PROTO_UDP, port)) = super::event::refused(&e.payload) {
                    if port_unreachable && src == e.dst && dst == e.src {
                        self.failed(src, dst, port, e.ts, out);
                    }
                }
            }
            (Kind::FlowStart, PROTO_UDP) => self.tried(TRIED_UDP, e),
            (Kind::FlowStart, PROTO_ICMP | PROTO_ICMPV6) => {
                self.evicted[1] +=
                    cap_oldest(&mut self.probes.icmp, limits::PROBE_SETS, |s| s.latest());
                self.probes
                    .icmp
                    .entry(e.src)
                    .or_default()
                    .insert(e.dst, e.ts);
                self.check_icmp(e.src, e.ts, out);
            }
            _ => {}
        }
    }

    /// A peer tried on a port where peer-to-peer clients listen.
    fn tried(&mut self, transport: usize, e: &Event) {
        if e.dport < PEER_PORTS_FROM {
            return;
        }
        let tried = &mut self.probes.tried[transport];
        self.evicted[1] += cap_oldest(tried, limits::PROBE_SETS, |s| s.latest());
        tried
            .entry((e.src, e.dport))
            .or_default()
            .insert(e.dst, e.ts);
    }

    /// Whether most hosts `src` failed on `port` were tried over both TCP
    /// and UDP there within the slow window: a peer-to-peer client's
    /// retries of its cached peers, not a sweep.
    fn peer_retries(&self, src: IpAddr, port: u16, ts: Nanos) -> bool {
        if port < PEER_PORTS_FROM {
            return false;
        }
        let since = ts.saturating_sub(self.config.slow_window_secs * SECOND);
        let (Some(failed), Some(tcp), Some(udp)) = (
            self.probes.hosts.get(&(src, port)),
            self.probes.tried[TRIED_TCP].get(&(src, port)),
            self.probes.tried[TRIED_UDP].get(&(src, port)),
        ) else {
            return false;
        };
        let both = failed
            .keys()
            .filter(|h| tcp.seen_since(h, since) && udp.seen_since(h, since))
            .count();
        both * 2 >= failed.len()
    }

    /// An attempt that fails if refused (RST) or unanswered in time.
    fn attempt(&mut self, e: &Event) {
        self.evicted[0] += cap_oldest(&mut self.pending, limits::PENDING_ATTEMPTS, |t| *t);
        self.pending.entry((e.src, e.dst, e.dport)).or_insert(e.ts);
    }

    /// Entries: attempts pending, probe sets, reports given.
    pub fn sizes(&self) -> [usize; 3] {
        let p = &self.probes;
        [
            self.pending.len(),
            p.ports.len()
                + p.hosts.len()
                + p.icmp.len()
                + p.tried.iter().map(HashMap::len).sum::<usize>(),
            self.reported.len(),
        ]
    }

    /// SYNs unanswered for longer than the timeout have failed.
    fn expire_pending(&mut self, now: Nanos, out: &mut Vec<Evidence>) {
        if now < self.last_expiry + SECOND {
            return;
        }
        self.last_expiry = now;
        let timeout = self.config.attempt_timeout_secs * SECOND;
        let mut due: Vec<((IpAddr, IpAddr, u16), Nanos)> = self
            .pending
            .iter()
            .filter(|(_, t)| **t + timeout <= now)
            .map(|(k, t)| (*k, *t))
            .collect();
        due.sort_by_key(|(_, t)| *t);
        for ((src, dst, port), ts) in due {
            self.pending.remove(&(src, dst, port));
            self.failed(src, dst, port, ts, out);
        }
        // Forget what is older than the slow window (a sweep over every
        // tracked pair: once a minute, not every second).
        if !self.sweep.due(now) {
            return;
        }
        // A set of one probe older than the fast window goes sooner: a
        // flood from random sources leaves a million of them, none a scan
        // (a slow scan probes again within minutes, so its set has more).
        let horizon = now.saturating_sub(self.config.slow_window_secs * SECOND);
        let fast = now.saturating_sub(self.config.window_secs * SECOND);
        self.probes
            .ports
            .retain(|_, s| keep_probes(s, horizon, fast));
        self.probes
            .hosts
            .retain(|_, s| keep_probes(s, horizon, fast));
        self.probes
            .icmp
            .retain(|_, s| keep_probes(s, horizon, fast));
        for tried in &mut self.probes.tried {
            tried.retain(|_, s| keep_probes(s, horizon, fast));
            fit(tried);
        }
        fit(&mut self.pending);
        fit(&mut self.probes.ports);
        fit(&mut self.probes.hosts);
        fit(&mut self.probes.icmp);
    }

    /// Live: attempts unanswered for longer than the timeout have failed.
    pub fn tick(&mut self, now: Nanos, out: &mut Vec<Evidence>) {
        self.expire_pending(now, out);
    }

    /// At the end of a capture, pending attempts older than the timeout
    /// have failed.
    pub fn flush(&mut self, now: Nanos, out: &mut Vec<Evidence>) {
        self.last_expiry = 0;
        self.sweep.reset();
        self.expire_pending(now + self.config.attempt_timeout_secs * SECOND, out);
    }

    fn failed(&mut self, src: IpAddr, dst: IpAddr, port: u16, ts: Nanos, out: &mut Vec<Evidence>) {
        let latest = |s: &TimedSet<_>| s.latest();
        self.evicted[1] += cap_oldest(&mut self.probes.ports, limits::PROBE_SETS, latest)
            + cap_oldest(&mut self.probes.hosts, limits::PROBE_SETS, |s| s.latest());
        let ports = self.probes.ports.entry((src, dst)).or_default();
        ports.insert(port, ts);
        let (fast, slow) = counts(&self.config, ports, ts);
        let threshold = self.config.ports;
        if let Some((detector, n)) = pick(fast, slow, threshold) {
            let kind = if detector == "fast" {
                "scan.vertical"
            } else {
                "scan.slow_vertical"
            };
            self.report(
                out,
                kind,
                src,
                dst.to_string(),
                n,
                ts,
                70,
                format!("{n} ports of {dst} probed without success"),
            );
        }
        let hosts = self.probes.hosts.entry((src, port)).or_default();
        hosts.insert(dst, ts);
        let (fast, slow) = counts(&self.config, hosts, ts);
        let threshold = self.config.hosts;
        if let Some((detector, n)) = pick(fast, slow, threshold) {
            if self.peer_retries(src, port, ts) {
                if self.report_due("scan.peer_retries", src, format!("port {port}"), n) {
                    self.peer_retries += 1;
                }
                return;
            }
            let kind = if detector == "fast" {
                "scan.horizontal"
            } else {
                "scan.slow_horizontal"
            };
            self.report(
                out,
                kind,
                src,
                format!("port {port}"),
                n,
                ts,
                70,
                format!("port {port} probed on {n} hosts without success"),
            );
        }
    }

    fn check_icmp(&mut self, src: IpAddr, ts: Nanos, out: &mut Vec<Evidence>) {
        let Some(set) = self.probes.icmp.get_mut(&src) else {
            return;
        };
        let (fast, slow) = counts(&self.config, set, ts);
        if let Some((_, n)) = pick(fast, slow, self.config.icmp_hosts) {
            let mut peers: Vec<String> = set.keys().take(10).map(|a| a.to_string()).collect();
            peers.sort();
            self.report(
                out,
                "scan.icmp_sweep",
                src,
                "icmp".into(),
                n,
                ts,
                60,
                format!("echo requests to {n} hosts"),
            );
            if let Some(last) = out.last_mut() {
                last.peers = peers;
            }
        }
    }

    /// Whether a finding at `count` is reported: the first time, and again
    /// each time its count doubles.
    fn report_due(
        &mut self,
        detector: &'static str,
        host: IpAddr,
        peer: String,
        count: usize,
    ) -> bool {
        limit_reported(&mut self.reported);
        let last = self.reported.entry((detector, host, peer)).or_insert(0);
        if count < *last * 2 {
            return false;
        }
        *last = count;
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &mut self,
        out: &mut Vec<Evidence>,
        detector: &'static str,
        host: IpAddr,
        peer: String,
        count: usize,
        ts: Nanos,
        score: u8,
        summary: String,
    ) {
        if !self.report_due(detector, host, peer.clone(), count) {
            return;
        }
        out.push(Evidence {
            host,
            detector,
            technique: "T1046",
            score,
            ts,
            since: ts,
            peers: vec![peer],
            count: count as u64,
            summary,
        });
    }
}

/// Whether a probe set stays at a sweep: what is left within the slow
/// window, unless that is a single probe older than the fast window.
fn keep_probes<K: std::hash::Hash + Eq + Clone>(
    set: &mut TimedSet<K>,
    horizon: Nanos,
    fast: Nanos,
) -> bool {
    set.prune(horizon);
    set.len() > 1 || (set.len() == 1 && set.latest() >= fast)
}

/// Distinct keys in the fast and the slow window ending at `ts`.
fn counts<K: std::hash::Hash + Eq + Clone>(
    config: &ScanConfig,
    set: &mut TimedSet<K>,
    ts: Nanos,
) -> (usize, usize) {
    let fast = set.count_within(ts, config.window_secs * SECOND);
    let slow = set.count_within(ts, config.slow_window_secs * SECOND);
    (fast, slow)
}

/// Which window crossed its threshold: the fast one first.
fn pick(fast: usize, slow: usize, threshold: usize) -> Option<(&'static str, usize)> {
    if fast >= threshold {
        Some(("fast", fast))
    } else if slow >= threshold {
        Some(("slow", slow))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::event::FlowSummary;

    fn ev(
        ts: Nanos,
        src: &str,
        dst: &str,
        sport: u16,
        dport: u16,
        protocol: u8,
        kind: Kind,
    ) -> Event {
        Event {
            ts,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport,
            dport,
            protocol,
            kind,
            payload: vec![],
        }
    }

    fn run(events: &[Event]) -> Vec<Evidence> {
        let mut d = ScanDetector::new(ScanConfig::default());
        let mut out = Vec::new();
        for e in events {
            d.observe(e, &mut out);
        }
        d.flush(events.last().map_or(0, |e| e.ts), &mut out);
        out
    }

    /// An ICMP port unreachable from `target` quoting a UDP probe from
    /// `scanner` to `port`, as the datapath sends it.
    fn unreachable(ts: Nanos, target: [u8; 4], scanner: [u8; 4], port: u16) -> Event {
        let mut payload = vec![0u8; 4]; // rest of the ICMP header
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[9] = PROTO_UDP;
        ip[12..16].copy_from_slice(&scanner);
        ip[16..20].copy_from_slice(&target);
        payload.extend_from_slice(&ip);
        payload.extend_from_slice(&[0xc0, 0x00]);
        payload.extend_from_slice(&port.to_be_bytes());
        Event {
            payload,
            ..ev(
                ts,
                &std::net::Ipv4Addr::from(target).to_string(),
                &std::net::Ipv4Addr::from(scanner).to_string(),
                3,
                3,
                PROTO_ICMP,
                Kind::IcmpError,
            )
        }
    }

    #[test]
    fn icmp_port_unreachables_make_a_udp_scan() {
        let events: Vec<Event> = (1..=20u16)
            .map(|port| unreachable(port as u64 * SECOND, [10, 0, 0, 9], [10, 0, 0, 5], port))
            .collect();
        let out = run(&events);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].detector, "scan.vertical");
        assert_eq!(out[0].host, "10.0.0.5".parse::<IpAddr>().unwrap());
        // A quoted datagram that is not the other end's: ignored.
        let forged: Vec<Event> = (1..=20u16)
            .map(|port| unreachable(port as u64 * SECOND, [10, 0, 0, 9], [10, 0, 0, 7], port))
            .map(|mut e| {
                e.dst = "10.0.0.5".parse().unwrap();
                e
            })
            .collect();
        assert!(run(&forged).is_empty());
    }

    #[test]
    fn refused_ports_make_a_vertical_scan() {
        let mut events = Vec::new();
        for port in 1..=20u16 {
            let t = port as u64 * SECOND / 10;
            events.push(ev(
                t,
                "10.0.0.5",
                "10.0.0.9",
                40000,
                port,
                PROTO_TCP,
                Kind::Syn,
            ));
            events.push(ev(
                t + 1000,
                "10.0.0.9",
                "10.0.0.5",
                port,
                40000,
                PROTO_TCP,
                Kind::Rst,
            ));
        }
        let out = run(&events);
        assert_eq!(out[0].detector, "scan.vertical");
        assert_eq!(out[0].count, 15);
        assert_eq!(out[0].host.to_string(), "10.0.0.5");
    }

    /// `kind` probes from 10.0.0.5 to 20 ports of 10.0.0.9; each port
    /// answers with `answer` (or nothing).
    fn probes(kind: Kind, answer: Option<Kind>) -> Vec<Event> {
        let mut events = Vec::new();
        for port in 1..=20u16 {
            let t = port as u64 * SECOND / 10;
            let probe = ev(
                t,
                "10.0.0.5",
                "10.0.0.9",
                40000,
                port,
                PROTO_TCP,
                kind.clone(),
            );
            events.push(probe);
            if let Some(answer) = &answer {
                let back = ev(
                    t + 1000,
                    "10.0.0.9",
                    "10.0.0.5",
                    port,
                    40000,
                    PROTO_TCP,
                    answer.clone(),
                );
                events.push(back);
            }
        }
        events
    }

    #[test]
    fn probes_outside_connections_make_a_scan_whether_refused_or_unanswered() {
        // ACK and Window scans: every port answers RST; FIN, NULL, Xmas and
        // Maimon scans: closed ports answer RST, open ones nothing.
        for answer in [Some(Kind::Rst), None] {
            let out = run(&probes(Kind::Probe, answer.clone()));
            assert_eq!(out.len(), 1, "{answer:?}: {out:?}");
            assert_eq!(out[0].detector, "scan.vertical");
            assert_eq!(out[0].host.to_string(), "10.0.0.5");
        }
    }

    #[test]
    fn probes_the_other_end_answers_are_no_scan() {
        // Keepalive ACKs of connections the datapath no longer tracks,
        // each acknowledged by the other end.
        assert!(run(&probes(Kind::Probe, Some(Kind::Probe))).is_empty());
    }

    #[test]
    fn tiny_fragments_are_connection_attempts() {
        let out = run(&probes(Kind::Fragment, Some(Kind::Rst)));
        assert_eq!(out[0].detector, "scan.vertical");
        // Reassembled by open ports, and answered: no scan.
        assert!(run(&probes(Kind::Fragment, Some(Kind::SynAck))).is_empty());
    }

    #[test]
    fn a_flood_of_single_probes_is_forgotten_after_the_fast_window() {
        let mut d = ScanDetector::new(ScanConfig::default());
        let mut out = Vec::new();
        // 1,000 sources, one refused probe each; one slow scanner with two.
        for i in 0..1000u32 {
            let src = IpAddr::from([198, 18, (i >> 8) as u8, i as u8]);
            let syn = Event {
                src,
                ..ev(
                    SECOND,
                    "0.0.0.0",
                    "10.0.0.9",
                    40000,
                    80,
                    PROTO_TCP,
                    Kind::Syn,
                )
            };
            d.observe(&syn, &mut out);
            let rst = Event {
                dst: src,
                ..ev(
                    SECOND,
                    "10.0.0.9",
                    "0.0.0.0",
                    80,
                    40000,
                    PROTO_TCP,
                    Kind::Rst,
                )
            };
            d.observe(&rst, &mut out);
        }
        for (t, port) in [(2, 22), (200, 23)] {
            d.observe(
                &ev(
                    t * SECOND,
                    "10.0.0.5",
                    "10.0.0.9",
                    40000,
                    port,
                    PROTO_TCP,
                    Kind::Syn,
                ),
                &mut out,
            );
            d.observe(
                &ev(
                    t * SECOND,
                    "10.0.0.9",
                    "10.0.0.5",
                    port,
                    40000,
                    PROTO_TCP,
                    Kind::Rst,
                ),
                &mut out,
            );
        }
        assert!(d.sizes()[1] >= 2000);
        // Past the fast window and a sweep: only the scanner's sets stay.
        d.tick(400 * SECOND, &mut out);
        let [_, probes, _] = d.sizes();
        assert!((1..=3).contains(&probes), "{probes} probe sets left");
    }

    #[test]
    fn answered_connections_are_not_a_scan() {
        let mut events = Vec::new();
        for port in 1..=40u16 {
            let t = port as u64 * SECOND;
            events.push(ev(
                t,
                "10.0.0.5",
                "10.0.0.9",
                40000 + port,
                port,
                PROTO_TCP,
                Kind::Syn,
            ));
            events.push(ev(
                t + 1000,
                "10.0.0.9",
                "10.0.0.5",
                port,
                40000 + port,
                PROTO_TCP,
                Kind::SynAck,
            ));
        }
        assert!(run(&events).is_empty());
    }

    #[test]
    fn unanswered_syns_to_many_hosts_make_a_horizontal_scan_after_the_timeout() {
        let events: Vec<Event> = (1..=30u64)
            .map(|i| {
                ev(
                    i * SECOND / 5,
                    "10.0.0.5",
                    &format!("10.0.1.{i}"),
                    40000,
                    445,
                    PROTO_TCP,
                    Kind::Syn,
                )
            })
            .collect();
        let out = run(&events);
        assert!(
            out.iter()
                .any(|e| e.detector == "scan.horizontal" && e.peers == ["port 445"]),
            "{out:?}"
        );
    }

    /// A client trying 30 unreachable hosts on `port`, each over UDP first
    /// (when `udp_first`), then over TCP, as a BitTorrent client tries a
    /// cached peer with uTP and falls back to TCP. Events in time order.
    fn tries(port: u16, udp_first: bool) -> (Vec<Evidence>, u64) {
        let mut events = Vec::new();
        for i in 1..=30u64 {
            let t = i * 5 * SECOND;
            let peer = format!("198.51.{}.{}", i * 7 % 250, i + 10);
            let at = |ts: Nanos, kind: Kind, protocol: u8| {
                ev(
                    ts,
                    "10.0.0.5",
                    &peer,
                    40000 + i as u16,
                    port,
                    protocol,
                    kind,
                )
            };
            if udp_first {
                events.push(at(t, Kind::FlowStart, PROTO_UDP));
            }
            events.push(at(t + 2 * SECOND, Kind::Syn, PROTO_TCP));
            if udp_first {
                // Unanswered: the flow ends at the datapath's UDP idle.
                events.push(at(
                    t + 60 * SECOND,
                    Kind::FlowEnd(FlowSummary::default()),
                    PROTO_UDP,
                ));
            }
        }
        events.sort_by_key(|e| e.ts);
        let mut d = ScanDetector::new(ScanConfig::default());
        let mut out = Vec::new();
        for e in &events {
            d.observe(e, &mut out);
        }
        d.flush(events.last().map_or(0, |e| e.ts), &mut out);
        (out, d.peer_retries)
    }

    #[test]
    fn cached_peers_tried_over_both_transports_are_peer_retries_not_a_scan() {
        let (out, spared) = tries(51413, true);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(spared, 1);
        // The same sweep over TCP alone is a scan.
        let (out, spared) = tries(51413, false);
        assert!(
            out.iter().any(|e| e.detector == "scan.horizontal"),
            "{out:?}"
        );
        assert_eq!(spared, 0);
        // Below 1024 both transports make no difference: DNS probed over
        // TCP and UDP on 30 hosts is a scan.
        let (out, spared) = tries(53, true);
        assert!(
            out.iter().any(|e| e.detector == "scan.horizontal"),
            "{out:?}"
        );
        assert_eq!(spared, 0);
    }

    #[test]
    fn slow_scan_over_an_hour() {
        // One refused port every 3 minutes: 20 ports in an hour.
        let mut events = Vec::new();
        for port in 1..=20u16 {
            let t = port as u64 * 180 * SECOND;
            events.push(ev(
                t,
                "10.0.0.5",
                "10.0.0.9",
                40000,
                port,
                PROTO_TCP,
                Kind::Syn,
            ));
            events.push(ev(
                t + 1000,
                "10.0.0.9",
                "10.0.0.5",
                port,
                40000,
                PROTO_TCP,
                Kind::Rst,
            ));
        }
        let out = run(&events);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].detector, "scan.slow_vertical");
    }

    #[test]
    fn icmp_sweep_and_unanswered_udp() {
        let mut events: Vec<Event> = (1..=12u64)
            .map(|i| {
                ev(
                    i * SECOND / 10,
                    "10.0.0.5",
                    &format!("10.0.1.{i}"),
                    0,
                    8,
                    PROTO_ICMP,
                    Kind::FlowStart,
                )
            })
            .collect();
        let dead = FlowSummary {
            answered: false,
            ..Default::default()
        };
        for port in 1..=16u16 {
            events.push(ev(
                2 * SECOND,
                "10.0.0.6",
                "10.0.0.9",
                50000,
                port,
                PROTO_UDP,
                Kind::FlowEnd(dead),
            ));
        }
        let out = run(&events);
        assert!(out
            .iter()
            .any(|e| e.detector == "scan.icmp_sweep" && e.count == 10));
        assert!(out
            .iter()
            .any(|e| e.detector == "scan.vertical" && e.host.to_string() == "10.0.0.6"));
    }

    #[test]
    fn a_flood_of_random_sources_stays_within_the_limit() {
        let mut d = ScanDetector::new(ScanConfig::default());
        let mut out = Vec::new();
        let n = limits::PENDING_ATTEMPTS as u32 + 5_000;
        for i in 0..n {
            let e = Event {
                ts: 1_000 + i as u64,
                src: IpAddr::from((0x0b00_0000u32 + i).to_be_bytes()),
                dst: "10.0.0.9".parse().unwrap(),
                sport: 40000,
                dport: 80,
                protocol: PROTO_TCP,
                kind: Kind::Syn,
                payload: vec![],
            };
            d.observe(&e, &mut out);
        }
        assert!(d.pending.len() <= limits::PENDING_ATTEMPTS + 1);
        assert!(d.evicted[0] >= 5_000, "{}", d.evicted[0]);
        // The newest stay: the last source is still awaited.
        let last = IpAddr::from((0x0b00_0000u32 + n - 1).to_be_bytes());
        assert!(d
            .pending
            .contains_key(&(last, "10.0.0.9".parse().unwrap(), 80)));
    }
}
