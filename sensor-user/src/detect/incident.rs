//! Incidents: evidence aggregated per host, so an operator reads one scored
//! incident ("10.10.0.11: port scan, then beaconing to 203.0.113.66") rather
//! than a flood of alerts.
//!
//! Evidence about a host joins its open incident when it comes within
//! `MERGE_GAP` of the incident's last evidence; evidence from the same
//! detector about the same peers updates the entry already there.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use serde::Serialize;

use super::{event::Nanos, window::cap_oldest, Evidence, SECOND};

/// Evidence this close to a host's last evidence joins the same incident.
pub const MERGE_GAP: Nanos = 30 * 60 * SECOND;
/// Evidence entries kept per incident (the first ones, and the latest).
const MAX_EVIDENCE: usize = 50;
/// Incidents kept (the oldest closed ones go first).
pub const MAX_INCIDENTS: usize = 10_000;

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
    /// This gateway's number for it, stable across restarts.
    pub id: u64,
    /// A random UUID: names it across gateways and reinstalls (alerts'
    /// `sensor.incident.uid`).
    pub uid: String,
    pub host: IpAddr,
    /// 0 to 100: the strongest evidence, plus 5 per other detector, plus
    /// the weak signals (`score`).
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
    /// "open" until `MERGE_GAP` passes without new evidence (or an
    /// operator closes it), then "closed".
    pub status: &'static str,
    /// Where the operators' work on it stands.
    pub triage: Triage,
    pub false_positive: bool,
    pub actions: Vec<Action>,
}

/// An incident's triage state, as SOC tools keep it (Elastic's alert
/// workflow status: open, acknowledged, closed). Independent of `status`,
/// which says whether evidence still comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Triage {
    /// Nobody has looked at it yet.
    #[default]
    New,
    Acknowledged,
    /// Dealt with: an operator closed it.
    Closed,
}

impl Triage {
    pub fn label(self) -> &'static str {
        match self {
            Triage::New => "new",
            Triage::Acknowledged => "acknowledged",
            Triage::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Triage> {
        [Triage::New, Triage::Acknowledged, Triage::Closed]
            .into_iter()
            .find(|t| t.label() == text)
    }
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

impl Incident {
    /// Takes `e` in: the same detector about the same peers updates its
    /// entry; the score is recomputed (`score`).
    fn join(&mut self, e: Evidence) {
        self.first_seen = self.first_seen.min(e.since.min(e.ts));
        self.last_seen = self.last_seen.max(e.ts);
        self.detectors.insert(e.detector);
        self.techniques.insert(e.technique);
        for p in &e.peers {
            if self.peers.len() < 20 {
                self.peers.insert(p.clone());
            }
        }
        put(&mut self.evidence, e, MAX_EVIDENCE);
        self.score = score(&self.evidence);
        self.severity = severity(self.score);
    }
}

/// Puts `e` in `list`: in place of the entry of the same detector about the
/// same peers, else at the end, else (full) in place of the last.
fn put(list: &mut Vec<Evidence>, e: Evidence, max: usize) {
    match list
        .iter()
        .position(|x| x.detector == e.detector && x.peers == e.peers)
    {
        Some(at) => list[at] = e,
        None if list.len() < max => list.push(e),
        None => *list.last_mut().unwrap() = e,
    }
}

/// Evidence scoring below this is a weak signal: a trait malware shows
/// more often than ordinary software, but ordinary software shows too
/// (TLS without a server name, a non-standard port). Alone it opens no
/// incident; the weak signals on a host add up, the design Slips uses
/// (evidence accumulates per host within a time window until it crosses
/// a threshold).
pub const WEAK_BELOW: u8 = 50;
/// Weak signals open an incident once their sum reaches this: the lowest
/// "medium" score, what any detector's alert scores at least.
pub const OPEN_AT: u32 = 50;
/// Weak signals held per host, and hosts holding some.
const MAX_HELD: usize = 16;
const MAX_HELD_HOSTS: usize = 1 << 16;

pub fn is_weak(score: u8) -> bool {
    score < WEAK_BELOW
}

/// The sum of a host's weak signals: each detector counts once, at its
/// highest (one trait seen towards many peers is still one trait).
fn weak_sum(evidence: &[Evidence]) -> u32 {
    let mut by_detector: BTreeMap<&str, u8> = BTreeMap::new();
    for x in evidence.iter().filter(|x| is_weak(x.score)) {
        let s = by_detector.entry(x.detector).or_default();
        *s = (*s).max(x.score);
    }
    by_detector.values().map(|s| *s as u32).sum()
}

/// An incident's score: its strongest evidence, plus 5 for each other
/// detector that found something strong about the host, plus the sum of
/// its weak signals; at most 100.
fn score(evidence: &[Evidence]) -> u8 {
    let strong: BTreeSet<&str> = evidence
        .iter()
        .filter(|x| !is_weak(x.score))
        .map(|x| x.detector)
        .collect();
    let strongest = evidence
        .iter()
        .filter(|x| !is_weak(x.score))
        .map(|x| x.score as u32)
        .max()
        .unwrap_or(0);
    let others = strong.len().saturating_sub(1) as u32;
    (strongest + 5 * others + weak_sum(evidence)).min(100) as u8
}

/// A peer as people read it: with its name, when the traffic gave one.
pub fn peer_label(peer: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{peer} ({name})"),
        None => peer.to_string(),
    }
}

pub fn severity(score: u8) -> &'static str {
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
    /// Weak signals about hosts with no open incident, until they add up
    /// (`OPEN_AT`), strong evidence comes, or they age past the merge gap.
    held: HashMap<IpAddr, Vec<Evidence>>,
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
            held: HashMap::new(),
        }
    }

    /// Adds evidence; returns the id of the incident it went to, or `None`
    /// when it is a weak signal held until more adds up (`is_weak`).
    pub fn add(&mut self, e: Evidence) -> Option<u64> {
        let open = self.incidents.iter().rposition(|i| {
            i.host == e.host && i.is_open() && e.ts.saturating_sub(i.last_seen) <= self.merge_gap
        });
        let (at, mut joining) = match open {
            Some(at) => (at, vec![e]),
            None => {
                let (host, ts, weak) = (e.host, e.ts, is_weak(e.score));
                let mut held = self.held.remove(&host).unwrap_or_default();
                held.retain(|x| ts.saturating_sub(x.ts) <= self.merge_gap);
                put(&mut held, e, MAX_HELD);
                if weak && weak_sum(&held) < OPEN_AT {
                    cap_oldest(&mut self.held, MAX_HELD_HOSTS, |h| {
                        h.iter().map(|x| x.ts).max().unwrap_or(0)
                    });
                    self.held.insert(host, held);
                    return None;
                }
                (self.open(host, ts), held)
            }
        };
        joining.sort_by_key(|x| x.ts);
        let incident = &mut self.incidents[at];
        for e in joining {
            incident.join(e);
        }
        let id = incident.id;
        self.changed.insert(id);
        self.trim();
        Some(id)
    }

    /// A new open incident about `host`, from evidence at `ts`; its index.
    /// (Its first evidence joins it next, and sets its times and score.)
    fn open(&mut self, host: IpAddr, ts: Nanos) -> usize {
        self.next_id += 1;
        self.incidents.push(Incident {
            id: self.next_id,
            uid: uuid::Uuid::new_v4().to_string(),
            host,
            score: 0,
            severity: "low",
            first_seen: ts,
            last_seen: ts,
            opened: ts,
            detectors: BTreeSet::new(),
            techniques: BTreeSet::new(),
            peers: BTreeSet::new(),
            names: BTreeMap::new(),
            evidence: Vec::new(),
            status: "open",
            triage: Triage::New,
            false_positive: false,
            actions: Vec::new(),
        });
        self.incidents.len() - 1
    }

    /// Hosts with weak signals held, for the metric.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Forgets weak signals older than the merge gap.
    pub fn prune_held(&mut self, now: Nanos) {
        let gap = self.merge_gap;
        self.held.retain(|_, h| {
            h.retain(|x| now.saturating_sub(x.ts) <= gap);
            !h.is_empty()
        });
        super::window::fit(&mut self.held);
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

    /// A reloaded merge gap, for evidence from now on.
    pub fn set_merge_gap(&mut self, merge_gap: Nanos) {
        self.merge_gap = merge_gap;
    }

    /// Takes back the open incidents of an earlier run (from the incident
    /// store): new evidence joins them, and new ids follow `last_id`.
    pub fn restore(&mut self, open: Vec<Incident>, last_id: u64) {
        self.next_id = self.next_id.max(last_id);
        for incident in open {
            if self.get(incident.id).is_none() {
                self.incidents.push(incident);
            }
        }
        self.incidents.sort_by_key(|i| i.id);
        self.trim();
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
        let a = a.unwrap();
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
        assert!(a.is_some() && a != b && a != c && b != c);
        assert_eq!(inc.list().len(), 3);
    }

    #[test]
    fn weak_signals_add_up_and_open_an_incident_only_together() {
        let mut inc = Incidents::default();
        let host = "10.0.0.5";
        assert_eq!(
            inc.add(evidence(host, "tls.unnamed", SECOND, "a", 25)),
            None
        );
        // The same trait towards another peer is still one trait.
        assert_eq!(
            inc.add(evidence(host, "tls.unnamed", SECOND, "b", 25)),
            None
        );
        assert_eq!(inc.list().len(), 0, "one weak signal opens nothing");
        let id = inc
            .add(evidence(host, "tls.odd_port", 2 * SECOND, "a", 25))
            .expect("two traits reach the alert score");
        let i = inc.get(id).unwrap();
        assert_eq!((i.score, i.first_seen), (50, SECOND));
        assert_eq!(i.evidence.len(), 3);
        // More weak signals on the open incident add to it.
        inc.add(evidence(host, "http.headers", 3 * SECOND, "a", 20));
        assert_eq!(inc.get(id).unwrap().score, 70);
    }

    #[test]
    fn weak_signals_add_to_strong_evidence_but_age_out() {
        let mut inc = Incidents::default();
        let host = "10.0.0.5";
        assert_eq!(
            inc.add(evidence(host, "tls.unnamed", SECOND, "c2", 25)),
            None
        );
        let id = inc
            .add(evidence(host, "beacon", 2 * SECOND, "c2", 60))
            .unwrap();
        assert_eq!(inc.get(id).unwrap().score, 85, "60 and the held 25");
        // Held longer than the merge gap, a weak signal is forgotten.
        let other = "10.0.0.6";
        assert_eq!(
            inc.add(evidence(other, "tls.unnamed", SECOND, "c2", 25)),
            None
        );
        let later = MERGE_GAP + 2 * SECOND;
        let id = inc.add(evidence(other, "beacon", later, "c2", 60)).unwrap();
        assert_eq!(inc.get(id).unwrap().score, 60);
        inc.prune_held(later);
        assert_eq!(inc.held(), 0);
    }
}
