//! Callbacks (`callback.reverse`, T1059): an inside host accepts a
//! connection from an outside host and, within seconds, connects out to
//! that same host itself. This is how an exploited service hands its
//! attacker a shell: the exploit arrives inbound, its payload connects
//! back (Metasploit's `reverse_tcp` stagers, `ncat -e`, a PHP or Java
//! web shell's reverse shell) because the firewall lets connections out
//! that it would not let in. ATT&CK files the shell it carries under
//! T1059 (Command and Scripting Interpreter); the inbound half is T1190.
//!
//! Ordinary servers do not open connections to their clients, with two
//! protocol exceptions that are left out: active-mode FTP, whose server
//! opens the data connection from port 20 to the client [RFC 959 3.2],
//! and the Ident lookups (port 113) some SMTP and IRC servers make of
//! their clients [RFC 1413]. Only outside peers count: inside, Windows
//! hosts call each other back by design (print-spooler notifications to
//! the client that registered them, DCOM callbacks).
//!
//! Score 70: what the default policy acts on. The host is the one that
//! called out, proven by its own handshake before any action.
//!
//! A stager may call a different host instead (the exploit's sender is
//! rarely the listener: Metasploit's `LHOST` is any address). An inside
//! host that, within the same seconds, connects out on a port from 1024
//! up to an outside host it has not reached in the last day is weaker
//! evidence, `callback.new_peer` (35, a weak signal that adds up with
//! others): servers open connections of their own too, but seldom to a
//! new host on a high port the moment a client arrives.

use std::{collections::HashMap, net::IpAddr};

use super::{
    event::{Event, Kind, Nanos, PROTO_TCP, SECOND},
    window::{cap_oldest, fit, OncePer},
    Evidence,
};

/// A connection out to the peer this soon after accepting one from it is
/// a callback: payloads connect back in well under a second; 10 s leaves
/// room for a slow stager.
pub const WINDOW: Nanos = 10 * SECOND;
/// Active-mode FTP data [RFC 959] and Ident [RFC 1413].
const FTP_DATA_PORT: u16 = 20;
const IDENT_PORT: u16 = 113;
const SCORE: u8 = 70;
const NEW_PEER_SCORE: u8 = 35;
/// Ports below this are services a server itself uses (DNS, mail, web).
const HIGH_PORTS_FROM: u16 = 1024;
/// How long an outside host a host reached stays "not new".
const PEER_MEMORY: Nanos = 24 * 3600 * SECOND;
/// Hosts whose outside peers are remembered (only hosts that accept
/// connections from outside), and peers per host.
const REACHED_HOSTS: usize = 1 << 14;
const REACHED_PER_HOST: usize = 64;
/// Inside hosts with accepted connections remembered, and peers per host.
const HOSTS: usize = 1 << 16;
const PEERS_PER_HOST: usize = 16;
/// A (host, peer) pair is reported again after this.
const REPORT_AGAIN_AFTER: Nanos = 24 * 3600 * SECOND;

pub struct CallbackDetector {
    /// Per inside host: (outside peer, the port it connected to, when).
    accepted: HashMap<IpAddr, Vec<(IpAddr, u16, Nanos)>>,
    /// Per host that accepted connections from outside: the outside hosts
    /// it connected to since, and when last.
    reached: HashMap<IpAddr, Vec<(IpAddr, Nanos)>>,
    pub reported: OncePer,
    /// Hosts dropped to stay within `HOSTS`.
    pub evicted: u64,
}

impl Default for CallbackDetector {
    fn default() -> Self {
        CallbackDetector {
            accepted: HashMap::new(),
            reached: HashMap::new(),
            reported: OncePer::new(REPORT_AGAIN_AFTER, HOSTS),
            evicted: 0,
        }
    }
}

impl CallbackDetector {
    /// `inside`: whether the source and the destination are inside hosts.
    pub fn observe(&mut self, e: &Event, inside: (bool, bool), out: &mut Vec<Evidence>) {
        if e.protocol != PROTO_TCP {
            return;
        }
        match (&e.kind, inside) {
            // An inside host answering an outside host's connection.
            (Kind::SynAck, (true, false)) => {
                self.evicted += cap_oldest(&mut self.accepted, HOSTS, |v| {
                    v.iter().map(|a| a.2).max().unwrap_or(0)
                });
                let peers = self.accepted.entry(e.src).or_default();
                peers.retain(|(peer, _, at)| *peer != e.dst && e.ts.saturating_sub(*at) <= WINDOW);
                if peers.len() >= PEERS_PER_HOST {
                    peers.remove(0);
                }
                peers.push((e.dst, e.sport, e.ts));
            }
            // The inside host connecting out.
            (Kind::Syn, (true, false)) if e.sport != FTP_DATA_PORT && e.dport != IDENT_PORT => {
                let new_peer = self.reach(e);
                let Some(recent) = self.accepted.get(&e.src).map(|peers| {
                    peers
                        .iter()
                        .filter(|(_, _, at)| e.ts.saturating_sub(*at) <= WINDOW)
                        .collect::<Vec<_>>()
                }) else {
                    return;
                };
                let (evidence, &&(from, service, at)) =
                    match recent.iter().find(|(peer, _, _)| *peer == e.dst) {
                        Some(same) => (("callback.reverse", SCORE), same),
                        None if new_peer && e.dport >= HIGH_PORTS_FROM => match recent.last() {
                            Some(last) => (("callback.new_peer", NEW_PEER_SCORE), last),
                            None => return,
                        },
                        None => return,
                    };
                if !self.reported.first((e.src, e.dst), e.ts) {
                    return;
                }
                let after = e.ts.saturating_sub(at) as f64 / SECOND as f64;
                let summary = if from == e.dst {
                    format!(
                        "accepted a connection from {from} on port {service}, then connected out to it on port {} {after:.1}s later: a callback, as an exploit's reverse shell makes",
                        e.dport
                    )
                } else {
                    format!(
                        "accepted a connection from {from} on port {service}, then connected out to {}:{}, a host it had not reached in a day, {after:.1}s later: a callback to another host, as an exploit's stager may make",
                        e.dst, e.dport
                    )
                };
                out.push(Evidence {
                    host: e.src,
                    detector: evidence.0,
                    technique: "T1059",
                    score: evidence.1,
                    ts: e.ts,
                    since: at,
                    peers: vec![format!("{}:{}", e.dst, e.dport)],
                    count: 1,
                    summary,
                });
            }
            _ => {}
        }
    }

    /// Remembers that a host which accepts connections from outside (or
    /// did) reached `e.dst`; whether that host was new to it.
    fn reach(&mut self, e: &Event) -> bool {
        if !self.accepted.contains_key(&e.src) && !self.reached.contains_key(&e.src) {
            return false;
        }
        self.evicted += cap_oldest(&mut self.reached, REACHED_HOSTS, |v| {
            v.iter().map(|r| r.1).max().unwrap_or(0)
        });
        let peers = self.reached.entry(e.src).or_default();
        if let Some(known) = peers.iter_mut().find(|(peer, _)| *peer == e.dst) {
            let new = e.ts.saturating_sub(known.1) > PEER_MEMORY;
            known.1 = e.ts;
            return new;
        }
        if peers.len() >= REACHED_PER_HOST {
            let oldest = (0..peers.len()).min_by_key(|&i| peers[i].1).unwrap_or(0);
            peers.swap_remove(oldest);
        }
        peers.push((e.dst, e.ts));
        true
    }

    /// Forgets accepted connections past the window.
    pub fn prune(&mut self, now: Nanos) {
        self.accepted.retain(|_, peers| {
            peers.retain(|(_, _, at)| now.saturating_sub(*at) <= WINDOW);
            !peers.is_empty()
        });
        fit(&mut self.accepted);
        self.reached.retain(|_, peers| {
            peers.retain(|(_, at)| now.saturating_sub(*at) <= PEER_MEMORY);
            !peers.is_empty()
        });
        fit(&mut self.reached);
        self.reported.prune(now);
    }

    pub fn size(&self) -> usize {
        self.accepted.len() + self.reached.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VICTIM: &str = "10.0.0.5";
    const ATTACKER: &str = "198.51.100.66";

    fn packet(kind: Kind, src: &str, dst: &str, ports: (u16, u16), secs: f64) -> Event {
        Event {
            ts: (secs * SECOND as f64) as Nanos,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: ports.0,
            dport: ports.1,
            protocol: PROTO_TCP,
            kind,
            payload: Vec::new(),
        }
    }

    /// An outside host's connection to the victim's port 8080, accepted at
    /// 1 s, then the victim's SYN towards `to`:`port` at `secs`.
    fn after_accepting(to: &str, ports: (u16, u16), secs: f64) -> Vec<Evidence> {
        let inside = |a: &str| a.starts_with("10.");
        let events = [
            packet(Kind::Syn, ATTACKER, VICTIM, (40000, 8080), 1.0),
            packet(Kind::SynAck, VICTIM, ATTACKER, (8080, 40000), 1.0),
            packet(Kind::Syn, VICTIM, to, ports, secs),
        ];
        let mut d = CallbackDetector::default();
        let mut out = Vec::new();
        for e in &events {
            d.observe(
                e,
                (inside(&e.src.to_string()), inside(&e.dst.to_string())),
                &mut out,
            );
        }
        out
    }

    #[test]
    fn connecting_back_to_the_peer_just_accepted_is_a_callback() {
        let found = after_accepting(ATTACKER, (51000, 4444), 1.4);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].host.to_string(), VICTIM);
        assert_eq!(found[0].peers, [format!("{ATTACKER}:4444")]);
        assert_eq!((found[0].since, found[0].score), (SECOND, 70));
    }

    #[test]
    fn later_other_peers_ftp_data_and_ident_are_no_callbacks() {
        assert!(
            after_accepting(ATTACKER, (51000, 4444), 12.0).is_empty(),
            "too late"
        );
        assert!(
            after_accepting("198.51.100.7", (51000, 443), 1.4).is_empty(),
            "another host, on a service port"
        );
        assert!(
            after_accepting(ATTACKER, (20, 50123), 1.4).is_empty(),
            "FTP data"
        );
        assert!(
            after_accepting(ATTACKER, (51000, 113), 1.4).is_empty(),
            "Ident"
        );
    }

    #[test]
    fn connecting_to_a_new_host_on_a_high_port_just_after_accepting_is_weak_evidence() {
        let found = after_accepting("198.51.100.7", (51000, 4444), 1.4);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].detector, found[0].score),
            ("callback.new_peer", 35)
        );
        assert_eq!(found[0].peers, ["198.51.100.7:4444"]);
        assert!(found[0].summary.contains(ATTACKER), "{}", found[0].summary);
        assert!(
            after_accepting("198.51.100.7", (51000, 4444), 12.0).is_empty(),
            "too late"
        );
    }

    #[test]
    fn a_server_connecting_to_a_host_it_reached_before_is_no_callback() {
        let inside = |a: &IpAddr| a.to_string().starts_with("10.");
        let backend = "198.51.100.9";
        let mut d = CallbackDetector::default();
        let mut out = Vec::new();
        for client in 1..=3u8 {
            let at = client as f64 * 60.0;
            let peer = format!("203.0.113.{client}");
            for e in [
                packet(Kind::Syn, &peer, VICTIM, (40000, 443), at),
                packet(Kind::SynAck, VICTIM, &peer, (443, 40000), at),
                // First on its HTTPS port (a service port: no evidence,
                // but now a host the server has reached).
                packet(
                    Kind::Syn,
                    VICTIM,
                    backend,
                    (51000, if client == 1 { 443 } else { 9200 }),
                    at + 0.1,
                ),
            ] {
                d.observe(&e, (inside(&e.src), inside(&e.dst)), &mut out);
            }
        }
        assert!(out.is_empty(), "{out:?}");
    }
}
