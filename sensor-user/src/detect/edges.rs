//! New admin edges (`lateral.new_edge`, T1021): an inside host opening an
//! administrative session (SSH, RDP, WinRM, or an SMB admin share) to an
//! inside host it never used that protocol with. Administrators work from
//! the same few hosts to the same servers; an intruder moving with stolen
//! credentials draws new lines. Zeek's and Corelight's "new remote
//! administration" notices and Exabeam-style first-access rules work the
//! same way.
//!
//! The baseline is learned from the traffic: until the sensor has seen
//! `learn_days` worth of traffic (hours in which any packet was seen, so
//! that time the sensor was down, or the gaps of a capture made of pieces,
//! do not count) nothing is reported and every edge is recorded; afterwards
//! a new edge alerts once and joins the baseline. sensord keeps the baseline
//! in `edges.json` beside its state file, so a restart neither forgets it
//! nor starts learning again. A session counts when the server answered
//! (SYN-ACK) on SSH 22, RDP 3389, WinRM 5985/5986, or when an SMB client
//! asked to connect to `ADMIN$` or a drive share (`C$`).

use std::{collections::HashMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::{
    event::{Event, Kind, Nanos, PROTO_TCP, SECOND},
    smb,
    window::cap_oldest,
    Evidence,
};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EdgesConfig {
    /// Report new edges at all. Default true.
    pub enabled: bool,
    /// Days of learning before new edges are reported. Default 7 (a
    /// working week and a weekend: weekly maintenance is in the baseline).
    pub learn_days: u64,
}

impl Default for EdgesConfig {
    fn default() -> Self {
        EdgesConfig {
            enabled: true,
            learn_days: 7,
        }
    }
}

/// The administrative protocols an edge is drawn for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Ssh,
    Rdp,
    Winrm,
    /// SMB to an administrative share (ADMIN$, C$, ...).
    SmbAdmin,
}

impl Service {
    fn of_port(port: u16) -> Option<Service> {
        match port {
            22 => Some(Service::Ssh),
            3389 => Some(Service::Rdp),
            5985 | 5986 => Some(Service::Winrm),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Service::Ssh => "SSH",
            Service::Rdp => "RDP",
            Service::Winrm => "WinRM",
            Service::SmbAdmin => "an SMB admin share",
        }
    }
}

/// SMB over TCP [MS-SMB2 2.1].
const SMB_PORT: u16 = 445;
/// Edges kept at most; past it the least recently used eighth goes.
pub const EDGES: usize = 1 << 18;

/// One known edge, as the baseline file keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Edge {
    pub client: IpAddr,
    pub server: IpAddr,
    pub service: Service,
    /// Unix ns when last used.
    pub last: Nanos,
}

/// What `edges.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Baseline {
    /// Unix ns of the first event learned from.
    pub since: Option<Nanos>,
    /// Hours in which traffic was seen: learning ends at `learn_days` x 24.
    pub hours: u64,
    /// The last of them (Unix hours).
    pub last_hour: Option<u64>,
    pub edges: Vec<Edge>,
}

const HOUR: Nanos = 3600 * SECOND;

pub struct EdgeDetector {
    config: EdgesConfig,
    since: Option<Nanos>,
    hours: u64,
    last_hour: Option<u64>,
    edges: HashMap<(IpAddr, IpAddr, Service), Nanos>,
    /// Changed since the last `baseline()`.
    dirty: bool,
    pub evicted: u64,
}

impl EdgeDetector {
    /// New settings from a reload: they apply from the next event, and
    /// what was learnt so far stays.
    pub fn reconfigure(&mut self, config: EdgesConfig) {
        self.config = config;
    }

    pub fn new(config: EdgesConfig) -> EdgeDetector {
        EdgeDetector {
            config,
            since: None,
            hours: 0,
            last_hour: None,
            edges: HashMap::new(),
            dirty: false,
            evicted: 0,
        }
    }

    /// Takes up a baseline saved earlier.
    pub fn restore(&mut self, baseline: Baseline) {
        self.since = baseline.since;
        self.hours = baseline.hours;
        self.last_hour = baseline.last_hour;
        for e in baseline.edges {
            self.edges.insert((e.client, e.server, e.service), e.last);
        }
        self.evicted += cap_oldest(&mut self.edges, EDGES, |t| *t);
    }

    /// The baseline to save, when it changed since the last call.
    pub fn baseline(&mut self) -> Option<Baseline> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(Baseline {
            since: self.since,
            hours: self.hours,
            last_hour: self.last_hour,
            edges: self
                .edges
                .iter()
                .map(|(&(client, server, service), &last)| Edge {
                    client,
                    server,
                    service,
                    last,
                })
                .collect(),
        })
    }

    /// `inside`: both ends are inside hosts.
    pub fn observe(&mut self, e: &Event, inside: bool, out: &mut Vec<Evidence>) {
        if !self.config.enabled {
            return;
        }
        let hour = e.ts / HOUR;
        if self.last_hour.is_none_or(|last| hour > last) {
            self.last_hour = Some(hour);
            self.hours += 1;
            self.dirty = true;
        }
        if !inside || e.protocol != PROTO_TCP {
            return;
        }
        let edge = match e.kind {
            // The server's answer: a session, not an attempt.
            Kind::SynAck => Service::of_port(e.sport).map(|s| (e.dst, e.src, s)),
            Kind::Data if e.dport == SMB_PORT => smb::messages(&e.payload)
                .iter()
                .any(|m| matches!(m, smb::Message::TreeConnect { path, .. } if smb::is_admin_share(path)))
                .then_some((e.src, e.dst, Service::SmbAdmin)),
            _ => None,
        };
        let Some((client, server, service)) = edge else {
            return;
        };
        let since = *self.since.get_or_insert(e.ts);
        let learning = self.hours < self.config.learn_days * 24;
        let key = (client, server, service);
        let known = self.edges.contains_key(&key);
        if !known {
            self.evicted += cap_oldest(&mut self.edges, EDGES, |t| *t);
        }
        // Last use is kept to the hour: the file changes when an edge is
        // new or an hour older, not at every session.
        let previous = self.edges.insert(key, e.ts);
        self.dirty |= previous.is_none_or(|t| e.ts.saturating_sub(t) >= 3600 * SECOND);
        if known || learning {
            return;
        }
        out.push(Evidence {
            host: client,
            detector: "lateral.new_edge",
            technique: "T1021",
            score: 60,
            ts: e.ts,
            since: e.ts,
            peers: vec![server.to_string()],
            count: 1,
            summary: format!(
                "opened {} to {server}, which it never used it with before (baseline learned over {} hours of traffic since {})",
                service.label(),
                self.hours,
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_nanos(since)
                )
            ),
        });
    }

    pub fn size(&self) -> usize {
        self.edges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Nanos = 24 * 3600 * SECOND;

    fn answered(ts: Nanos, client: &str, server: &str, port: u16) -> Event {
        Event {
            ts,
            src: server.parse().unwrap(),
            dst: client.parse().unwrap(),
            sport: port,
            dport: 50000,
            protocol: PROTO_TCP,
            kind: Kind::SynAck,
            payload: Vec::new(),
        }
    }

    fn run(d: &mut EdgeDetector, events: &[Event]) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        for e in events {
            d.observe(e, true, &mut out);
        }
        out.iter()
            .map(|e| (e.host.to_string(), e.detector))
            .collect()
    }

    #[test]
    fn new_edges_alert_after_the_learning_period_once() {
        let mut d = EdgeDetector::new(EdgesConfig::default());
        let start = 1_700_000_000 * SECOND;
        // A week of traffic, hour after hour.
        let traffic: Vec<Event> = (0..7 * 24)
            .map(|h| answered(start + h * HOUR, "10.0.0.5", "10.0.1.9", 443))
            .collect();
        // The first week: the admin workstation's RDP to the servers.
        let learned = [
            answered(start, "10.0.0.5", "10.0.1.1", 3389),
            answered(start + DAY, "10.0.0.5", "10.0.1.2", 3389),
            // A new edge while learning: learned, not reported.
            answered(start + 6 * DAY, "10.0.0.7", "10.0.1.1", 22),
        ];
        let mut week = [learned.to_vec(), traffic].concat();
        week.sort_by_key(|e| e.ts);
        assert!(run(&mut d, &week).is_empty());
        let after = [
            answered(start + 8 * DAY, "10.0.0.5", "10.0.1.2", 3389),
            answered(start + 8 * DAY, "10.0.0.7", "10.0.1.1", 22),
            // A workstation's first RDP to a server, and again.
            answered(start + 9 * DAY, "10.0.0.9", "10.0.1.1", 3389),
            answered(start + 9 * DAY, "10.0.0.9", "10.0.1.1", 3389),
            // Same pair, another protocol: a new edge too.
            answered(start + 9 * DAY, "10.0.0.5", "10.0.1.2", 5985),
            // Ordinary ports draw no edges.
            answered(start + 9 * DAY, "10.0.0.9", "10.0.1.3", 443),
        ];
        assert_eq!(
            run(&mut d, &after),
            [
                ("10.0.0.9".to_string(), "lateral.new_edge"),
                ("10.0.0.5".to_string(), "lateral.new_edge")
            ]
        );
    }

    #[test]
    fn days_without_traffic_do_not_count_as_learning() {
        // A capture made of pieces: a few minutes on each of ten days.
        let mut d = EdgeDetector::new(EdgesConfig::default());
        let start = 1_700_000_000 * SECOND;
        let pieces: Vec<Event> = (0..10)
            .map(|day| answered(start + day * DAY, "10.0.0.5", &format!("10.0.1.{day}"), 22))
            .collect();
        assert!(run(&mut d, &pieces).is_empty());
    }

    #[test]
    fn the_baseline_survives_a_restart() {
        let start = 1_700_000_000 * SECOND;
        let mut d = EdgeDetector::new(EdgesConfig::default());
        let week: Vec<Event> = (0..7 * 24)
            .map(|h| answered(start + h * HOUR, "10.0.0.5", "10.0.1.9", 443))
            .collect();
        run(
            &mut d,
            &[vec![answered(start, "10.0.0.5", "10.0.1.1", 3389)], week].concat(),
        );
        let saved = d.baseline().expect("changed");
        assert!(d.baseline().is_none(), "nothing changed since");
        let text = serde_json::to_string(&saved).unwrap();

        let mut restarted = EdgeDetector::new(EdgesConfig::default());
        restarted.restore(serde_json::from_str(&text).unwrap());
        // Learning does not start again, and the old edge is known.
        let later = [
            answered(start + 8 * DAY, "10.0.0.5", "10.0.1.1", 3389),
            answered(start + 8 * DAY, "10.0.0.6", "10.0.1.1", 3389),
        ];
        assert_eq!(
            run(&mut restarted, &later),
            [("10.0.0.6".to_string(), "lateral.new_edge")]
        );
    }

    #[test]
    fn an_admin_share_tree_connect_is_an_smb_admin_edge() {
        use crate::detect::smb::tests::tree_connect;
        let mut d = EdgeDetector::new(EdgesConfig {
            learn_days: 0,
            ..EdgesConfig::default()
        });
        let connect = |path: &str| Event {
            ts: SECOND,
            src: "10.0.0.5".parse().unwrap(),
            dst: "10.0.0.9".parse().unwrap(),
            sport: 50000,
            dport: 445,
            protocol: PROTO_TCP,
            kind: Kind::Data,
            payload: tree_connect(3, path),
        };
        assert!(run(
            &mut d,
            &[connect("\\\\ws9\\share"), connect("\\\\ws9\\IPC$")]
        )
        .is_empty());
        assert_eq!(run(&mut d, &[connect("\\\\ws9\\C$")]).len(), 1);
    }
}
