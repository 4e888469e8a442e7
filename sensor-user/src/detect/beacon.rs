//! Beaconing: an inside host connecting to one outside destination at
//! regular intervals with regular sizes, as implants poll their C&C.
//!
//! Scored as RITA does (activecm/rita-legacy, pkg/beacon/analyzer.go): the
//! time between connections and the bytes sent per connection each give a
//! symmetry score (Bowley skew), a dispersion score (median absolute
//! deviation, cut off at 30 s and 32 bytes) and a third score (how complete
//! the series is; how small the payloads); the beacon score is their mean,
//! 0 to 1. Jitter lowers the score gradually rather than hiding the beacon.
//! Two changes make slow beacons score like fast ones (docs/detection.md):
//! dispersion is also judged against half the interval, and completeness
//! against the series' own interval.
//!
//! Not fooled by polling that is periodic by design: services whose
//! protocol polls (NTP, DNS, DHCP, mDNS, SSDP, NetBIOS) are left out, and a
//! destination that several inside hosts poll alike (software updates,
//! telemetry) is shared, not a C&C.

use std::{
    collections::{hash_map::Entry, HashMap, HashSet},
    net::IpAddr,
};

use serde::{Deserialize, Serialize};

use super::{
    event::{Event, Kind, Nanos, PROTO_TCP, PROTO_UDP, SECOND},
    limits,
    window::cap_oldest,
    Evidence,
};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BeaconConfig {
    /// Fewer connections than this are not judged.
    pub min_connections: usize,
    /// Beacon score (0..1) from which a pair is reported.
    pub min_score: f64,
    /// Timing score alone (0..1) from which a pair is reported: a C&C whose
    /// replies vary in size is still regular in time.
    pub min_timing_score: f64,
    /// UDP ports that poll by design.
    pub ignore_udp_ports: Vec<u16>,
    /// A destination beaconed to by this many inside hosts is shared.
    pub shared_by_hosts: usize,
    /// Connections closer together than this (median) are a burst (a page
    /// load, a retry storm), not a beacon: implants sleep between callbacks.
    pub min_interval_secs: f64,
}

/// How far evidence from a short series may go: a regular series of a
/// few callbacks alerts at once (score `EARLY_SCORE` up to
/// `CONFIDENT_CONNECTIONS`), and the full score, which the default policy
/// acts on, waits for as many connections as RITA's legacy analyser
/// required. Reported again as the series grows past each step.
const EARLY_SCORE: u8 = 60;
const CONFIDENT_CONNECTIONS: usize = 20;
/// A short series is judged only once it spans this much: a few
/// connections seconds apart are a retry loop or a page load, and
/// implants sleep longer between callbacks (Cobalt Strike's and Sliver's
/// default sleep is 60 s).
const EARLY_SPAN: Nanos = 60 * SECOND;

/// The evidence score of a series of `n` connections that scored `score`.
fn evidence_score(score: f64, n: usize) -> u8 {
    let full = (score * 100.0).round() as u8;
    if n >= CONFIDENT_CONNECTIONS {
        full
    } else {
        full.min(EARLY_SCORE)
    }
}

impl Default for BeaconConfig {
    fn default() -> Self {
        BeaconConfig {
            min_connections: 4,
            min_score: 0.8,
            min_timing_score: 0.9,
            ignore_udp_ports: vec![53, 67, 68, 123, 137, 138, 1900, 5060, 5353],
            shared_by_hosts: 3,
            min_interval_secs: 0.5,
        }
    }
}

/// Connections kept per pair: a day of one-minute beacons, and more.
const MAX_PER_PAIR: usize = 4096;

/// Keeps about the last `n` items: past a quarter more, the oldest go at
/// once, so a long series costs no shift per new item.
fn keep_last<T>(v: &mut Vec<T>, n: usize) {
    if v.len() > n + n / 4 {
        v.drain(..v.len() - n);
    }
}

/// A size not yet known (the connection has not ended).
const NO_SIZE: u64 = u64::MAX;

/// Most pairs are one connection to a server never seen again: they cost
/// one word of key and three of value, without an allocation. A second
/// connection moves them into a `Series`, which also keeps the addresses
/// (the key is only their keyed hash).
struct Pair {
    /// The latest connection's start.
    last: Nanos,
    /// The only connection's size while there is no series.
    size: u64,
    series: Option<Box<Series>>,
}

struct Series {
    key: PairKey,
    starts: Vec<Nanos>,
    sizes: Vec<u64>,
    /// Connections when last scored: a pair is scored again only when it
    /// has new ones (live, `flush` runs every second).
    scored_at: usize,
}

#[derive(Hash, PartialEq, Eq, Clone, Copy)]
struct PairKey {
    src: IpAddr,
    dst: IpAddr,
    dport: u16,
    protocol: u8,
}

pub struct BeaconDetector {
    config: BeaconConfig,
    /// Pairs with new connections and enough of them to score: `flush`
    /// looks at these only, not at every pair.
    due: HashSet<u64>,
    /// Pairs dropped to stay within `limits::BEACON_PAIRS`.
    pub evicted: u64,
    /// By the keyed hash of the `PairKey` (keyed per process, so nobody
    /// can aim for collisions): the most numerous entry the engine keeps.
    pairs: HashMap<u64, Pair>,
    pair_hash: std::hash::RandomState,
    /// Pairs reported, with the score they were reported at.
    reported: HashMap<u64, u8>,
}

/// RITA's beacon score and its parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeaconScore {
    pub score: f64,
    /// The timing half of the score alone.
    pub timing: f64,
    pub interval_median_secs: f64,
    pub interval_madm_secs: f64,
}

fn quartiles(sorted: &[f64]) -> (f64, f64, f64) {
    let at = |q: f64| sorted[(q * (sorted.len() - 1) as f64).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

fn bowley_skew(sorted: &[f64]) -> f64 {
    let (low, mid, high) = quartiles(sorted);
    if high != low && mid != low && mid != high {
        (low + high - 2.0 * mid) / (high - low)
    } else {
        0.0
    }
}

fn madm(sorted: &[f64]) -> f64 {
    let (_, mid, _) = quartiles(sorted);
    let mut devs: Vec<f64> = sorted.iter().map(|v| (v - mid).abs()).collect();
    devs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    quartiles(&devs).1
}

/// Scores connection start times (ns) and bytes sent per connection. With
/// no size known yet (a kept-open connection's heartbeats), on timing
/// alone.
pub fn score(starts: &[Nanos], sizes: &[u64]) -> Option<BeaconScore> {
    if starts.len() < 3 {
        return None;
    }
    let mut intervals: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / SECOND as f64)
        .collect();
    intervals.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut sizes: Vec<f64> = sizes.iter().map(|s| *s as f64).collect();
    sizes.sort_by(|a, b| a.partial_cmp(b).unwrap());

    let ts_skew = 1.0 - bowley_skew(&intervals).abs();
    let ts_madm = madm(&intervals);
    let median = quartiles(&intervals).1;
    // RITA's dispersion cut-off is 30 s; for slow beacons, a deviation of
    // half the interval counts as fully irregular too.
    let ts_madm_score = (1.0 - ts_madm / 30.0)
        .max(1.0 - ts_madm / (median / 2.0).max(1e-9))
        .max(0.0);
    // How complete the series is for its own interval (RITA scores against
    // one connection per 10 s of the data set, which sinks slow beacons).
    let span = (starts[starts.len() - 1] - starts[0]) as f64 / SECOND as f64;
    let expected = span / median.max(1e-9) + 1.0;
    let ts_count = (starts.len() as f64 / expected).min(1.0);

    let timing = (ts_skew + ts_madm_score + ts_count) / 3.0;
    let score = if sizes.is_empty() {
        timing
    } else {
        let ds_skew = 1.0 - bowley_skew(&sizes).abs();
        let ds_madm_score = (1.0 - madm(&sizes) / 32.0).max(0.0);
        let ds_mode = mode(&sizes);
        let ds_small = (1.0 - ds_mode / 65535.0).max(0.0);
        (ts_skew + ts_madm_score + ts_count + ds_skew + ds_madm_score + ds_small) / 6.0
    };
    Some(BeaconScore {
        score,
        timing,
        interval_median_secs: quartiles(&intervals).1,
        interval_madm_secs: ts_madm,
    })
}

/// The most frequent value of a sorted list.
fn mode(sorted: &[f64]) -> f64 {
    let (mut best, mut best_n, mut run_n) = (sorted[0], 0, 0);
    for (i, v) in sorted.iter().enumerate() {
        run_n = if i > 0 && sorted[i - 1] == *v {
            run_n + 1
        } else {
            1
        };
        if run_n > best_n {
            best_n = run_n;
            best = *v;
        }
    }
    best
}

impl BeaconDetector {
    /// New settings from a reload: they apply from the next event, and
    /// what was learnt so far stays.
    pub fn reconfigure(&mut self, config: BeaconConfig) {
        self.config = config;
    }

    pub fn new(config: BeaconConfig) -> BeaconDetector {
        BeaconDetector {
            config,
            pairs: HashMap::new(),
            pair_hash: std::hash::RandomState::new(),
            due: HashSet::new(),
            evicted: 0,
            reported: HashMap::new(),
        }
    }

    /// `outbound`: the source is inside and the destination outside.
    pub fn observe(&mut self, e: &Event, outbound: bool, _out: &mut [Evidence]) {
        if !outbound || e.dst.is_multicast() || is_broadcast(e.dst) {
            return;
        }
        if e.protocol == PROTO_UDP && self.config.ignore_udp_ports.contains(&e.dport) {
            return;
        }
        let key = PairKey {
            src: e.src,
            dst: e.dst,
            dport: e.dport,
            protocol: e.protocol,
        };
        let hash = std::hash::BuildHasher::hash_one(&self.pair_hash, key);
        match (&e.kind, e.protocol) {
            // A callback: a new connection, or a kept-open one waking
            // after an idle gap (a heartbeat, a poll on a persistent
            // session).
            (Kind::Syn, PROTO_TCP)
            | (Kind::FlowStart, PROTO_UDP)
            | (Kind::Wake, PROTO_TCP | PROTO_UDP) => {
                self.evicted += cap_oldest(&mut self.pairs, limits::BEACON_PAIRS, |p| p.last);
                let connections = match self.pairs.entry(hash) {
                    Entry::Occupied(mut pair) => pair.get_mut().connect(key, e.ts),
                    Entry::Vacant(slot) => {
                        slot.insert(Pair::new(e.ts));
                        1
                    }
                };
                if connections >= self.config.min_connections {
                    self.due.insert(hash);
                }
            }
            (Kind::FlowEnd(flow), PROTO_TCP | PROTO_UDP) => {
                if let Some(pair) = self.pairs.get_mut(&hash) {
                    pair.ended(flow.orig_bytes);
                }
            }
            _ => {}
        }
    }

    /// Entries: connection series per pair.
    pub fn size(&self) -> usize {
        self.pairs.len()
    }

    /// Forgets pairs with no connection since `horizon` (live: bounded
    /// memory on a sensor that runs for months).
    pub fn prune(&mut self, horizon: Nanos) {
        self.pairs.retain(|_, p| p.last >= horizon);
        super::window::fit(&mut self.pairs);
    }

    /// Scores every pair with enough connections.
    pub fn flush(&mut self, out: &mut Vec<Evidence>) {
        let mut found: Vec<(u64, PairKey, BeaconScore, usize, Nanos, Nanos)> = Vec::new();
        for hash in std::mem::take(&mut self.due) {
            let Some(series) = self.pairs.get_mut(&hash).and_then(|p| p.series.as_mut()) else {
                continue;
            };
            let n = series.starts.len();
            // Reported early: again once confident (a regular series then
            // scores 80 or more, above the early 60); reported confident:
            // done.
            let done = self
                .reported
                .get(&hash)
                .is_some_and(|at| n < CONFIDENT_CONNECTIONS || *at > EARLY_SCORE);
            let span = series.starts[n - 1].saturating_sub(series.starts[0]);
            let early_too_soon = n < CONFIDENT_CONNECTIONS && span < EARLY_SPAN;
            if n < self.config.min_connections || done || early_too_soon || n == series.scored_at {
                continue;
            }
            series.scored_at = n;
            if let Some(s) = score(&series.starts, &series.sizes) {
                let regular =
                    s.score >= self.config.min_score || s.timing >= self.config.min_timing_score;
                if regular && s.interval_median_secs >= self.config.min_interval_secs {
                    found.push((
                        hash,
                        series.key,
                        s,
                        series.starts.len(),
                        series.starts[0],
                        *series.starts.last().unwrap(),
                    ));
                }
            }
        }
        // A destination that several inside hosts poll alike is shared.
        let mut pollers: HashMap<IpAddr, HashSet<IpAddr>> = HashMap::new();
        for (_, key, ..) in &found {
            pollers.entry(key.dst).or_default().insert(key.src);
        }
        found.sort_by_key(|(.., last)| *last);
        for (hash, key, s, n, first, last) in found {
            if pollers[&key.dst].len() >= self.config.shared_by_hosts {
                continue;
            }
            let score = evidence_score(s.score.max(s.timing), n);
            super::window::limit_reported(&mut self.reported);
            self.reported.insert(hash, score);
            out.push(Evidence {
                host: key.src,
                detector: "beacon",
                technique: "T1071",
                score,
                ts: last,
                since: first,
                peers: vec![format!("{}:{}", key.dst, key.dport)],
                count: n as u64,
                summary: format!(
                    "{n} connections to {}:{} every {:.1}s (deviation {:.2}s), beacon score {:.2} (timing {:.2})",
                    key.dst, key.dport, s.interval_median_secs, s.interval_madm_secs, s.score, s.timing
                ),
            });
        }
    }
}

impl Pair {
    fn new(start: Nanos) -> Pair {
        Pair {
            last: start,
            size: NO_SIZE,
            series: None,
        }
    }

    /// Counts a later connection; returns the pair's connections.
    fn connect(&mut self, key: PairKey, start: Nanos) -> usize {
        let (first, size) = (self.last, self.size);
        self.last = start;
        let series = self.series.get_or_insert_with(|| {
            Box::new(Series {
                key,
                starts: vec![first],
                sizes: if size == NO_SIZE { vec![] } else { vec![size] },
                scored_at: 0,
            })
        });
        series.starts.push(start);
        keep_last(&mut series.starts, MAX_PER_PAIR);
        series.starts.len()
    }

    /// A connection ended, having sent `size` bytes.
    fn ended(&mut self, size: u64) {
        match &mut self.series {
            Some(series) => {
                series.sizes.push(size);
                keep_last(&mut series.sizes, MAX_PER_PAIR);
            }
            None => self.size = size,
        }
    }
}

fn is_broadcast(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V4(a) if a.is_broadcast() || a.octets()[3] == 255)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::event::FlowSummary;

    fn beacon_events(period_ms: u64, jitter_ms: u64, n: u64, dst: &str, dport: u16) -> Vec<Event> {
        let mut seed = 12345u64;
        let mut out = Vec::new();
        for i in 0..n {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let jitter = if jitter_ms > 0 {
                (seed >> 33) % (2 * jitter_ms)
            } else {
                jitter_ms
            };
            let ts = (i * period_ms + jitter) * 1_000_000;
            let base = Event {
                ts,
                src: "10.0.0.5".parse().unwrap(),
                dst: dst.parse().unwrap(),
                sport: 40000 + i as u16,
                dport,
                protocol: PROTO_TCP,
                kind: Kind::Syn,
                payload: vec![],
            };
            let end = Event {
                ts: ts + 1_000_000,
                kind: Kind::FlowEnd(FlowSummary {
                    orig_bytes: 600,
                    start: ts,
                    answered: true,
                    ..Default::default()
                }),
                ..base.clone()
            };
            out.push(base);
            out.push(end);
        }
        out
    }

    fn run(events: &[Event]) -> Vec<Evidence> {
        let mut d = BeaconDetector::new(BeaconConfig::default());
        let mut out = Vec::new();
        for e in events {
            d.observe(e, true, &mut out);
        }
        d.flush(&mut out);
        out
    }

    #[test]
    fn a_jittered_beacon_is_found() {
        let out = run(&beacon_events(60_000, 6_000, 40, "198.51.100.7", 443));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].peers, ["198.51.100.7:443"]);
        assert!(out[0].score >= 80, "{:?}", out[0]);
    }

    #[test]
    fn irregular_browsing_is_not_a_beacon() {
        // Connections at random moments with random sizes.
        let mut seed = 99u64;
        let mut events = Vec::new();
        let mut ts = 0;
        for i in 0..40u64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ts += ((seed >> 33) % 600 + 1) * SECOND;
            let size = (seed >> 20) % 200_000;
            events.push(Event {
                ts,
                src: "10.0.0.5".parse().unwrap(),
                dst: "198.51.100.7".parse().unwrap(),
                sport: i as u16,
                dport: 443,
                protocol: PROTO_TCP,
                kind: Kind::Syn,
                payload: vec![],
            });
            events.push(Event {
                ts: ts + 1,
                src: "10.0.0.5".parse().unwrap(),
                dst: "198.51.100.7".parse().unwrap(),
                sport: i as u16,
                dport: 443,
                protocol: PROTO_TCP,
                kind: Kind::FlowEnd(FlowSummary {
                    orig_bytes: size,
                    ..Default::default()
                }),
                payload: vec![],
            });
        }
        assert!(run(&events).is_empty());
    }

    #[test]
    fn a_heartbeat_inside_one_connection_is_a_beacon() {
        // One connection kept open, waking every 180 s (Gh0st's heartbeat):
        // its wake marks make the series.
        let events: Vec<Event> = beacon_events(180_000, 2_000, 30, "198.51.100.7", 8080)
            .into_iter()
            .filter(|e| e.kind == Kind::Syn)
            .enumerate()
            .map(|(i, e)| Event {
                sport: 40000,
                kind: if i == 0 { Kind::Syn } else { Kind::Wake },
                ..e
            })
            .collect();
        let out = run(&events);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].peers, ["198.51.100.7:8080"]);
    }

    #[test]
    fn a_few_callbacks_alert_and_twenty_act() {
        // Judged as they come, as sensord does each second.
        let live = |events: Vec<Event>| {
            let mut d = BeaconDetector::new(BeaconConfig::default());
            let mut out = Vec::new();
            for e in events {
                d.observe(&e, true, &mut out);
                d.flush(&mut out);
            }
            out
        };
        assert!(live(beacon_events(60_000, 0, 3, "198.51.100.7", 443)).is_empty());
        // Four callbacks: an early alert, once, however many follow...
        let early = live(beacon_events(60_000, 3_000, 10, "198.51.100.7", 443));
        let found: Vec<(u8, u64)> = early.iter().map(|e| (e.score, e.count)).collect();
        assert_eq!(found, [(EARLY_SCORE, 4)]);
        // ...and the full score from twenty.
        let grown = live(beacon_events(60_000, 3_000, 30, "198.51.100.7", 443));
        let found: Vec<u64> = grown.iter().map(|e| e.count).collect();
        assert_eq!(found, [4, 20]);
        assert!(grown[1].score >= 80, "{grown:?}");
    }

    #[test]
    fn a_destination_polled_by_many_hosts_is_shared() {
        let mut d = BeaconDetector::new(BeaconConfig::default());
        let mut out = Vec::new();
        for host in 1..=4 {
            for mut e in beacon_events(60_000, 0, 30, "198.51.100.7", 443) {
                e.src = format!("10.0.0.{host}").parse().unwrap();
                d.observe(&e, true, &mut out);
            }
        }
        d.flush(&mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn ntp_polling_is_ignored_by_port() {
        let mut d = BeaconDetector::new(BeaconConfig::default());
        let mut out = Vec::new();
        for mut e in beacon_events(34_000, 0, 40, "198.51.100.123", 123) {
            e.protocol = PROTO_UDP;
            if e.kind == Kind::Syn {
                e.kind = Kind::FlowStart;
            }
            d.observe(&e, true, &mut out);
        }
        d.flush(&mut out);
        assert!(out.is_empty(), "{out:?}");
        // The same polling on another UDP port is a beacon.
        let mut d = BeaconDetector::new(BeaconConfig::default());
        for mut e in beacon_events(34_000, 0, 40, "198.51.100.123", 4444) {
            e.protocol = PROTO_UDP;
            if e.kind == Kind::Syn {
                e.kind = Kind::FlowStart;
            }
            d.observe(&e, true, &mut out);
        }
        d.flush(&mut out);
        assert_eq!(out.len(), 1);
    }
}
