//! Incidents: evidence aggregated per host, so an operator reads one scored
//! incident ("10.10.0.11: port scan, then beaconing to 203.0.113.66") rather
//! than a flood of alerts.
//!
//! Evidence about a host joins its open incident when it comes within
//! `MERGE_GAP` of the incident's last evidence; evidence from the same
//! detector about the same peers updates the entry already there.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde::Serialize;

use super::{event::Nanos, Evidence, SECOND};

/// Evidence this close to a host's last evidence joins the same incident.
pub const MERGE_GAP: Nanos = 30 * 60 * SECOND;
/// Evidence entries kept per incident (the first ones, and the latest).
const MAX_EVIDENCE: usize = 50;
/// Incidents kept (the oldest closed ones go first).
const MAX_INCIDENTS: usize = 10_000;

/// Something done about an incident, for its timeline.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Action {
    pub ts: Nanos,
    /// "isolate", "block", "withheld", "release", "false_positive", "alert".
    pub action: String,
    pub target: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Incident {
    pub id: u64,
    pub host: IpAddr,
    /// 0 to 100: the strongest evidence, plus 5 per other detector.
    pub score: u8,
    pub severity: &'static str,
    /// When the behaviour began: the first evidence packet (a beacon's
    /// first connection), so usually before `opened`.
    pub first_seen: Nanos,
    pub last_seen: Nanos,
    /// When the first evidence was concluded: the incident's birth.
    pub opened: Nanos,
    pub detectors: BTreeSet<&'static str>,
    pub techniques: BTreeSet<&'static str>,
    pub peers: BTreeSet<String>,
    /// Names of peer addresses, as the traffic gave them (DNS answers, TLS
    /// server names, HTTP Host headers).
    pub names: BTreeMap<String, String>,
    pub evidence: Vec<Evidence>,
    /// "open" until `MERGE_GAP` passes without new evidence, then "closed".
    pub status: &'static str,
    pub false_positive: bool,
    pub actions: Vec<Action>,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.status == "open"
    }

    /// Whether `action` on `target` was already taken for this incident.
    pub fn has_action(&self, action: &str, target: &str) -> bool {
        self.actions
            .iter()
            .any(|a| a.action == action && a.target == target)
    }

    /// Whether an action that failed (`failed`) has not succeeded since:
    /// it is retried until it does, or the incident closes.
    pub fn has_failed_action(&self) -> bool {
        self.actions.iter().enumerate().any(|(i, a)| {
            a.action == "failed"
                && !self.actions[i + 1..].iter().any(|b| {
                    b.target == a.target && matches!(b.action.as_str(), "isolate" | "block")
                })
        })
    }

    /// Whether an action on `target` was withheld for this reason already.
    pub fn has_withheld(&self, target: &str, why: &str) -> bool {
        self.actions
            .iter()
            .any(|a| a.action == "withheld" && a.target == target && a.detail == why)
    }
}

/// A peer as people read it: with its name, when the traffic gave one.
pub fn peer_label(peer: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{peer} ({name})"),
        None => peer.to_string(),
    }
}

fn severity(score: u8) -> &'static str {
    match score {
        80.. => "high",
        50..=79 => "medium",
        _ => "low",
    }
}

#[derive(Debug)]
pub struct Incidents {
    /// Evidence this close to a host's last evidence joins its incident;
    /// an incident this long without evidence closes.
    merge_gap: Nanos,
    incidents: Vec<Incident>,
    next_id: u64,
    /// Incidents opened or grown since the last `take_changed`.
    changed: BTreeSet<u64>,
}

impl Default for Incidents {
    fn default() -> Self {
        Incidents::with_merge_gap(MERGE_GAP)
    }
}

impl Incidents {
    pub fn with_merge_gap(merge_gap: Nanos) -> Incidents {
        Incidents {
            merge_gap,
            incidents: Vec::new(),
            next_id: 0,
            changed: BTreeSet::new(),
        }
    }

    /// Adds evidence; returns the id of the incident it went to.
    pub fn add(&mut self, e: Evidence) -> u64 {
        let open = self.incidents.iter_mut().rev().find(|i| {
            i.host == e.host && i.is_open() && e.ts.saturating_sub(i.last_seen) <= self.merge_gap
        });
        let incident = match open {
            Some(i) => i,
            None => {
                self.next_id += 1;
                self.incidents.push(Incident {
                    id: self.next_id,
                    host: e.host,
                    score: 0,
                    severity: "low",
                    first_seen: e.since.min(e.ts),
                    last_seen: e.ts,
                    opened: e.ts,
                    detectors: BTreeSet::new(),
                    techniques: BTreeSet::new(),
                    peers: BTreeSet::new(),
                    names: BTreeMap::new(),
                    evidence: Vec::new(),
                    status: "open",
                    false_positive: false,
                    actions: Vec::new(),
                });
                self.incidents.last_mut().unwrap()
            }
        };
        incident.first_seen = incident.first_seen.min(e.since.min(e.ts));
        incident.last_seen = incident.last_seen.max(e.ts);
        incident.detectors.insert(e.detector);
        incident.techniques.insert(e.technique);
        for p in &e.peers {
            if incident.peers.len() < 20 {
                incident.peers.insert(p.clone());
            }
        }
        let same = incident
            .evidence
            .iter()
            .position(|x| x.detector == e.detector && x.peers == e.peers);
        match same {
            Some(at) => incident.evidence[at] = e,
            None if incident.evidence.len() < MAX_EVIDENCE => incident.evidence.push(e),
            None => *incident.evidence.last_mut().unwrap() = e,
        }
        let strongest = incident.evidence.iter().map(|x| x.score).max().unwrap_or(0);
        let others = incident.detectors.len().saturating_sub(1) as u32;
        incident.score = (strongest as u32 + 5 * others).min(100) as u8;
        incident.severity = severity(incident.score);
        let id = incident.id;
        self.changed.insert(id);
        self.trim();
        id
    }

    /// Forgets the oldest closed incidents beyond `MAX_INCIDENTS`.
    fn trim(&mut self) {
        while self.incidents.len() > MAX_INCIDENTS {
            match self.incidents.iter().position(|i| !i.is_open()) {
                Some(at) => self.incidents.remove(at),
                None => self.incidents.remove(0),
            };
        }
    }

    /// Ids of the incidents opened or grown since the last call.
    pub fn take_changed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    /// Closes open incidents with no evidence for `MERGE_GAP`; returns them.
    pub fn close_idle(&mut self, now: Nanos) -> Vec<u64> {
        let mut closed = Vec::new();
        for i in self.incidents.iter_mut() {
            if i.is_open() && now.saturating_sub(i.last_seen) > self.merge_gap {
                i.status = "closed";
                closed.push(i.id);
            }
        }
        closed
    }

    pub fn list(&self) -> Vec<Incident> {
        self.incidents.clone()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.iter()
    }

    /// Open incidents with an action withheld or failed: decided again
    /// until the reason goes away (the host gets verified, the map or disk
    /// has room again).
    pub fn awaiting_action(&self) -> impl Iterator<Item = u64> + '_ {
        self.incidents
            .iter()
            .filter(|i| {
                i.is_open()
                    && (i.actions.iter().any(|a| a.action == "withheld") || i.has_failed_action())
            })
            .map(|i| i.id)
    }

    pub fn get(&self, id: u64) -> Option<&Incident> {
        self.incidents.iter().find(|i| i.id == id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Incident> {
        self.incidents.iter_mut().find(|i| i.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(host: &str, detector: &'static str, ts: Nanos, peer: &str, score: u8) -> Evidence {
        Evidence {
            host: host.parse().unwrap(),
            detector,
            technique: "T1046",
            score,
            ts,
            since: ts,
            peers: vec![peer.into()],
            count: 1,
            summary: String::new(),
        }
    }

    #[test]
    fn evidence_about_one_host_makes_one_incident() {
        let mut inc = Incidents::default();
        let a = inc.add(evidence(
            "10.0.0.5",
            "scan.vertical",
            SECOND,
            "10.0.0.9",
            70,
        ));
        let b = inc.add(evidence(
            "10.0.0.5",
            "scan.vertical",
            2 * SECOND,
            "10.0.0.9",
            70,
        ));
        let c = inc.add(evidence(
            "10.0.0.5",
            "beacon",
            3 * SECOND,
            "198.51.100.7:443",
            90,
        ));
        assert_eq!((a, b), (c, c));
        let i = inc.get(a).unwrap();
        assert_eq!(i.evidence.len(), 2, "same detector and peer merged");
        assert_eq!(i.score, 95);
        assert_eq!(i.severity, "high");
        assert_eq!(i.first_seen, SECOND);
    }

    #[test]
    fn other_hosts_and_long_gaps_make_new_incidents() {
        let mut inc = Incidents::default();
        let a = inc.add(evidence("10.0.0.5", "scan.vertical", SECOND, "x", 70));
        let b = inc.add(evidence("10.0.0.6", "scan.vertical", SECOND, "x", 70));
        let c = inc.add(evidence(
            "10.0.0.5",
            "scan.vertical",
            2 * MERGE_GAP,
            "x",
            70,
        ));
        assert!(a != b && a != c && b != c);
        assert_eq!(inc.list().len(), 3);
    }
}
