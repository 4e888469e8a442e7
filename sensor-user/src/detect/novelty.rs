//! Outside destinations new to the site and reached by one inside host
//! only (`destination.new`, T1071, weak 5): RITA's "first seen" and
//! "prevalence" threat modifiers. A C&C server is new to the network when
//! the implant first calls it and only its victim calls it; the servers
//! ordinary software reaches were reached before, by many hosts. Alone
//! that describes half of all browsing, so it is never evidence by
//! itself: it is added to C&C-like evidence (beacons, callbacks,
//! interactive sessions, the traits of web openings) that names such a
//! destination, as RITA adds its modifiers to a beacon's score.
//!
//! "New" needs a history: nothing is new until the census has watched the
//! site for `LEARN` (a day). The census lives in memory, so it learns
//! again after each restart.

use std::{collections::HashMap, net::IpAddr};

use super::{
    allow,
    event::{Event, Kind, Nanos, PROTO_TCP, PROTO_UDP, SECOND},
    incident::MERGE_GAP,
    window::{cap_oldest, fit, OncePer},
    Evidence,
};

/// Small on purpose: it tips weak signals over the alert score (two web
/// traits at 45, plus this, alert), but never turns an alert-level
/// finding (60) into an isolation (70) by itself: a new app polling its
/// new server is as new as an implant's.
const SCORE: u8 = 5;
/// How long the census watches before anything is new: a day, so that
/// daily traffic (updates, backups, the working day's services) is known.
pub const LEARN: Nanos = 24 * 3600 * SECOND;
/// A destination first reached within this long is new (RITA's
/// first-seen window is counted in days).
const NEW_FOR: Nanos = 24 * 3600 * SECOND;
/// A destination no one reached for this long is forgotten.
const FORGET_AFTER: Nanos = 30 * 24 * 3600 * SECOND;
/// Destinations remembered: the least recently reached go first.
const DESTINATIONS: usize = 1 << 19;
/// The evidence the modifier is added to.
const MODIFIED: [&str; 4] = ["beacon", "callback.", "shell.", "web."];

struct Reached {
    first: Nanos,
    last: Nanos,
    /// The first inside host that reached it, and whether another did.
    host: IpAddr,
    shared: bool,
}

pub struct Destinations {
    reached: HashMap<IpAddr, Reached>,
    /// When the census started watching.
    since: Option<Nanos>,
    reported: OncePer,
    /// Destinations dropped to stay within `DESTINATIONS`.
    pub evicted: u64,
}

impl Default for Destinations {
    fn default() -> Self {
        Destinations {
            reached: HashMap::new(),
            since: None,
            reported: OncePer::new(MERGE_GAP, 1 << 16),
            evicted: 0,
        }
    }
}

impl Destinations {
    /// Counts an inside host's connection or flow to an outside host
    /// (`outbound`).
    pub fn observe(&mut self, e: &Event, outbound: bool) {
        self.since.get_or_insert(e.ts);
        let opens = matches!(
            (&e.kind, e.protocol),
            (Kind::Syn, PROTO_TCP) | (Kind::FlowStart, PROTO_UDP)
        );
        if !outbound || !opens {
            return;
        }
        if let Some(r) = self.reached.get_mut(&e.dst) {
            r.last = r.last.max(e.ts);
            r.shared |= r.host != e.src;
            return;
        }
        self.evicted += cap_oldest(&mut self.reached, DESTINATIONS, |r| r.last);
        self.reached.insert(
            e.dst,
            Reached {
                first: e.ts,
                last: e.ts,
                host: e.src,
                shared: false,
            },
        );
    }

    /// The modifier for `evidence`: a weak signal when it is C&C-like and
    /// names an outside destination first reached within a day, by its
    /// host alone, after the census has learned for a day.
    pub fn modifier(&mut self, evidence: &Evidence, now: Nanos) -> Option<Evidence> {
        if !MODIFIED.iter().any(|m| evidence.detector.starts_with(m)) {
            return None;
        }
        if now.saturating_sub(self.since?) < LEARN {
            return None;
        }
        let (peer, first) = evidence.peers.iter().find_map(|p| {
            let addr = allow::peer_address(p)?;
            let r = self.reached.get(&addr)?;
            let new = now.saturating_sub(r.first) <= NEW_FOR;
            (new && !r.shared && r.host == evidence.host).then_some((addr, r.first))
        })?;
        if !self.reported.first((evidence.host, peer), now) {
            return None;
        }
        let hours = now.saturating_sub(first) as f64 / (3600 * SECOND) as f64;
        Some(Evidence {
            host: evidence.host,
            detector: "destination.new",
            technique: "T1071",
            score: SCORE,
            ts: now,
            since: first,
            peers: vec![peer.to_string()],
            count: 1,
            summary: format!("{peer} was first reached {hours:.1} h ago, and by this host only"),
        })
    }

    /// Forgets destinations no one reached for a month.
    pub fn prune(&mut self, now: Nanos) {
        self.reached
            .retain(|_, r| now.saturating_sub(r.last) <= FORGET_AFTER);
        fit(&mut self.reached);
        self.reported.prune(now);
    }

    pub fn size(&self) -> usize {
        self.reached.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Nanos = 3600 * SECOND;

    fn syn(src: &str, dst: &str, ts: Nanos) -> Event {
        Event {
            ts,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: 40000,
            dport: 443,
            protocol: PROTO_TCP,
            kind: Kind::Syn,
            payload: Vec::new(),
        }
    }

    fn beacon(host: &str, peer: &str, ts: Nanos) -> Evidence {
        Evidence {
            host: host.parse().unwrap(),
            detector: "beacon",
            technique: "T1071",
            score: 60,
            ts,
            since: ts,
            peers: vec![format!("{peer}:443")],
            count: 4,
            summary: String::new(),
        }
    }

    #[test]
    fn a_beacon_to_a_destination_new_to_the_site_and_its_host_alone_gains_weight() {
        let mut d = Destinations::default();
        // A day of learning: the CDN is reached by two hosts.
        d.observe(&syn("10.0.0.5", "198.51.100.10", 0), true);
        d.observe(&syn("10.0.0.6", "198.51.100.10", HOUR), true);
        let later = 25 * HOUR;
        d.observe(&syn("10.0.0.5", "203.0.113.66", later), true);
        d.observe(&syn("10.0.0.5", "198.51.100.10", later), true);
        let hit = d.modifier(&beacon("10.0.0.5", "203.0.113.66", later), later);
        let hit = hit.expect("new and rare");
        assert_eq!((hit.detector, hit.score), ("destination.new", 5));
        assert_eq!(hit.peers, ["203.0.113.66"]);
        // Once per merge window; never for a shared destination.
        assert!(d
            .modifier(&beacon("10.0.0.5", "203.0.113.66", later), later)
            .is_none());
        assert!(d
            .modifier(&beacon("10.0.0.5", "198.51.100.10", later), later)
            .is_none());
        // A second host makes it shared.
        d.observe(&syn("10.0.0.7", "203.0.113.66", later), true);
        let mut fresh = Destinations {
            reported: OncePer::new(MERGE_GAP, 16),
            ..d
        };
        assert!(fresh
            .modifier(&beacon("10.0.0.5", "203.0.113.66", later), later)
            .is_none());
    }

    #[test]
    fn nothing_is_new_while_learning_nor_after_a_day() {
        let mut d = Destinations::default();
        d.observe(&syn("10.0.0.5", "203.0.113.66", 0), true);
        assert!(d
            .modifier(&beacon("10.0.0.5", "203.0.113.66", HOUR), HOUR)
            .is_none());
        // Learned, but first reached more than a day before.
        let later = 30 * HOUR;
        assert!(d
            .modifier(&beacon("10.0.0.5", "203.0.113.66", later), later)
            .is_none());
        // Other evidence is not modified.
        d.observe(&syn("10.0.0.5", "203.0.113.67", later), true);
        let mut scan = beacon("10.0.0.5", "203.0.113.67", later);
        scan.detector = "scan.horizontal";
        assert!(d.modifier(&scan, later).is_none());
    }
}
