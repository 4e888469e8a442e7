//! Exfiltration: an inside host sending far more to one outside destination
//! than it usually sends, and far more than it receives back.
//!
//! The producer/consumer ratio (Bullard and Gerth, FloCon 2014),
//! PCR = (sent - received) / (sent + received), is near -1 for a host that
//! downloads and near +1 for one that uploads. Per (inside host, outside
//! destination), finished flows are summed over the window; a destination
//! that received at least `min_bytes`, with a PCR of at least `min_pcr`,
//! and more than `baseline_factor` times the host's usual outbound volume
//! per window, is evidence. The host's baseline is an exponential moving
//! average of its outbound bytes per window; until one window has passed,
//! only the absolute floor applies.
//!
//! Two scales: the hour (`window_secs`, `min_bytes`), whose evidence is
//! acted on, and a burst of minutes (`burst_window_secs`,
//! `burst_min_bytes`), judged against the host's own usual volume per
//! burst window, which alerts: a quick archive upload is over before an
//! hourly sum notices it, and a person sending one large attachment
//! looks the same, so it alone does not isolate.

use std::{collections::HashMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::{
    event::{Event, FlowSummary, Kind, Nanos, SECOND},
    limits,
    window::cap_oldest,
    Evidence,
};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExfilConfig {
    pub window_secs: u64,
    pub min_bytes: u64,
    pub min_pcr: f64,
    pub baseline_factor: f64,
    pub burst_window_secs: u64,
    pub burst_min_bytes: u64,
}

impl Default for ExfilConfig {
    fn default() -> Self {
        ExfilConfig {
            window_secs: 3600,
            min_bytes: 50_000_000,
            min_pcr: 0.6,
            baseline_factor: 10.0,
            burst_window_secs: 300,
            burst_min_bytes: 20_000_000,
        }
    }
}

/// One time scale's rule: its window, floor and score.
struct Scale {
    window: Nanos,
    min_bytes: u64,
    score: u8,
    hosts: HashMap<IpAddr, Host>,
    reported: HashMap<(IpAddr, IpAddr), u64>,
}

impl Scale {
    fn new(window_secs: u64, min_bytes: u64, score: u8) -> Scale {
        Scale {
            window: window_secs * SECOND,
            min_bytes,
            score,
            hosts: HashMap::new(),
            reported: HashMap::new(),
        }
    }
}

#[derive(Default)]
struct Volume {
    sent: u64,
    received: u64,
    last: Nanos,
}

#[derive(Default)]
struct Host {
    window_start: Nanos,
    /// Outbound bytes this window, all destinations.
    sent: u64,
    /// EWMA of outbound bytes per window; None until a window has passed.
    baseline: Option<f64>,
    /// By the keyed hash of the destination (keyed per process, so nobody
    /// can aim for collisions): a word of key where an address takes
    /// three. The destination named in evidence is the flow's.
    per_dst: HashMap<u64, Volume>,
    last: Nanos,
}

pub struct ExfilDetector {
    config: ExfilConfig,
    /// The hour, then the burst.
    scales: [Scale; 2],
    dst_hash: std::hash::RandomState,
    /// Hosts and destinations dropped to stay within `limits`.
    pub evicted: u64,
}

/// The producer/consumer ratio of a flow or a sum of flows.
pub fn pcr(sent: u64, received: u64) -> f64 {
    let total = sent + received;
    if total == 0 {
        0.0
    } else {
        (sent as f64 - received as f64) / total as f64
    }
}

impl ExfilDetector {
    pub fn config(&self) -> &ExfilConfig {
        &self.config
    }

    pub fn new(config: ExfilConfig) -> ExfilDetector {
        let scales = [
            Scale::new(config.window_secs, config.min_bytes, 70),
            Scale::new(config.burst_window_secs, config.burst_min_bytes, 60),
        ];
        ExfilDetector {
            config,
            scales,
            dst_hash: std::hash::RandomState::new(),
            evicted: 0,
        }
    }

    /// Entries: hosts with outbound volumes.
    pub fn size(&self) -> usize {
        self.scales[0].hosts.len()
    }

    /// `outbound`: the flow's source is inside and its destination outside.
    pub fn observe(&mut self, e: &Event, outbound: bool, out: &mut Vec<Evidence>) {
        let Kind::FlowEnd(flow) = &e.kind else { return };
        if !outbound {
            return;
        }
        let dst = std::hash::BuildHasher::hash_one(&self.dst_hash, e.dst);
        for at in 0..self.scales.len() {
            if let Some(evidence) = self.judge(at, e, flow, dst) {
                out.push(evidence);
            }
        }
    }

    /// Adds the flow to one scale's sums; evidence if they cross its rule.
    fn judge(&mut self, at: usize, e: &Event, flow: &FlowSummary, dst: u64) -> Option<Evidence> {
        let factor = self.config.baseline_factor;
        let min_pcr = self.config.min_pcr;
        let scale = &mut self.scales[at];
        let window = scale.window;
        self.evicted += cap_oldest(&mut scale.hosts, limits::EXFIL_HOSTS, |h| h.last);
        let host = scale.hosts.entry(e.src).or_insert_with(|| Host {
            window_start: e.ts,
            ..Default::default()
        });
        if e.ts >= host.window_start + window {
            // Close the window: fold it into the baseline, start afresh.
            let last = host.sent as f64;
            host.baseline = Some(match host.baseline {
                Some(b) => 0.7 * b + 0.3 * last,
                None => last,
            });
            host.window_start = e.ts;
            host.sent = 0;
            host.per_dst.clear();
        }
        host.sent += flow.orig_bytes;
        host.last = e.ts;
        self.evicted += cap_oldest(&mut host.per_dst, limits::EXFIL_DESTINATIONS, |v| v.last);
        let v = host.per_dst.entry(dst).or_default();
        v.last = e.ts;
        v.sent += flow.orig_bytes;
        v.received += flow.resp_bytes;
        let (sent, received) = (v.sent, v.received);
        let ratio = pcr(sent, received);
        let above_baseline = host
            .baseline
            .is_none_or(|b| sent as f64 > factor * b.max(1.0));
        if sent < scale.min_bytes || ratio < min_pcr || !above_baseline {
            return None;
        }
        super::window::limit_reported(&mut scale.reported);
        let last = scale.reported.entry((e.src, e.dst)).or_insert(0);
        if sent < *last * 2 {
            return None;
        }
        *last = sent;
        Some(Evidence {
            host: e.src,
            detector: "exfiltration",
            technique: "T1048",
            score: scale.score,
            ts: e.ts,
            since: e.ts,
            peers: vec![e.dst.to_string()],
            count: sent,
            summary: format!(
                "{:.1} MB sent to {} within {}s, {:.1} MB received (PCR {:.2})",
                sent as f64 / 1e6,
                e.dst,
                window / SECOND,
                received as f64 / 1e6,
                ratio
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::event::PROTO_TCP;

    fn flow(ts: Nanos, dst: &str, sent: u64, received: u64) -> Event {
        Event {
            ts,
            src: "10.0.0.5".parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: 40000,
            dport: 443,
            protocol: PROTO_TCP,
            kind: Kind::FlowEnd(FlowSummary {
                orig_bytes: sent,
                resp_bytes: received,
                answered: true,
                ..Default::default()
            }),
            payload: vec![],
        }
    }

    fn run(events: &[Event]) -> Vec<Evidence> {
        let mut d = ExfilDetector::new(ExfilConfig::default());
        let mut out = Vec::new();
        for e in events {
            d.observe(e, true, &mut out);
        }
        out
    }

    #[test]
    fn pcr_bounds() {
        assert_eq!(pcr(100, 0), 1.0);
        assert_eq!(pcr(0, 100), -1.0);
        assert_eq!(pcr(0, 0), 0.0);
    }

    #[test]
    fn a_bulk_upload_is_exfiltration() {
        let out = run(&[flow(SECOND, "198.51.100.7", 80_000_000, 200_000)]);
        let scores: Vec<u8> = out.iter().map(|e| e.score).collect();
        assert_eq!(scores, [70, 60], "the hour's rule and the burst's");
        assert_eq!(out[0].peers, ["198.51.100.7"]);
    }

    #[test]
    fn a_burst_over_minutes_alerts_against_the_host_s_own_history() {
        // A host that sends 1 MB every five minutes, then 25 MB at once.
        let mut events: Vec<Event> = (0..12u64)
            .map(|i| flow(i * 300 * SECOND + SECOND, "198.51.100.9", 1_000_000, 50_000))
            .collect();
        events.push(flow(3700 * SECOND, "198.51.100.7", 25_000_000, 100_000));
        let out = run(&events);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].score, out[0].count), (60, 25_000_000));
        assert!(out[0].summary.contains("within 300s"), "{}", out[0].summary);
        // A host whose bursts are always this large is its own baseline.
        let usual: Vec<Event> = (0..24u64)
            .map(|i| {
                flow(
                    i * 300 * SECOND + SECOND,
                    "198.51.100.9",
                    25_000_000,
                    50_000,
                )
            })
            .collect();
        let bursts = run(&usual).into_iter().filter(|e| e.score == 60).count();
        assert_eq!(bursts, 1, "only before a baseline exists");
    }

    #[test]
    fn downloads_and_small_uploads_are_not() {
        assert!(run(&[flow(SECOND, "198.51.100.7", 1_000_000, 900_000_000)]).is_empty());
        assert!(run(&[flow(SECOND, "198.51.100.7", 5_000_000, 1_000)]).is_empty());
    }

    #[test]
    fn a_host_that_always_uploads_this_much_is_its_own_baseline() {
        // A backup client: 60 MB every hour for a day, then the same again.
        let mut events = Vec::new();
        for hour in 0..24u64 {
            events.push(flow(
                hour * 3600 * SECOND + SECOND,
                "198.51.100.8",
                60_000_000,
                100_000,
            ));
        }
        let out = run(&events);
        // Only the first hour, before any baseline exists, is reported (on
        // both scales).
        assert_eq!(out.len(), 2, "{out:?}");
    }
}
