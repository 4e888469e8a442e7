//! DNS tunnelling and DGA.
//!
//! Tunnels (iodine, dnscat2, DNS-based C&C) carry data in the query names:
//! long, random-looking labels under one domain, many unique names, and
//! record types that carry bulk data (NULL, TXT). A query is tunnel-like when
//! its sub-domain part has a label of at least `long_label` characters with
//! a Shannon entropy of at least `min_entropy` bits per character, or the
//! sub-domain part is longer than 52 characters (Farnham, "Detecting DNS
//! Tunneling", SANS 2013), or its type is NULL. Tunnel-like queries, or
//! many unique names, from one host under one registered domain within the
//! window are evidence.
//!
//! Domain generation algorithms show as bursts of NXDOMAIN answers to one
//! host: many distinct names that do not exist.

use std::{collections::HashMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::{
    event::{Event, Kind, Nanos, SECOND},
    window::{MinuteSweep, TimedSet},
    Evidence,
};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    pub window_secs: u64,
    /// Tunnel-like queries under one domain from one host within the window.
    pub tunnel_queries: usize,
    /// Unique names under one domain from one host within the window.
    pub unique_names: usize,
    pub long_label: usize,
    pub min_entropy: f64,
    /// Distinct NXDOMAIN names to one host within the window.
    pub nxdomains: usize,
    /// Registered domains never judged (e.g. antivirus lookups that put
    /// hashes in names).
    pub allow_domains: Vec<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            window_secs: 300,
            tunnel_queries: 5,
            unique_names: 100,
            long_label: 24,
            min_entropy: 3.0,
            nxdomains: 20,
            allow_domains: Vec::new(),
        }
    }
}

const TYPE_NULL: u16 = 10;
const TYPE_TXT: u16 = 16;
const RCODE_NXDOMAIN: u8 = 3;
/// Farnham's length beyond which names are suspicious.
const LONG_NAME: usize = 52;

/// The question of a DNS message.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub response: bool,
    pub rcode: u8,
    pub name: String,
    pub qtype: u16,
}

/// Parses a DNS message's header and first question (bounded: names of at
/// most 255 bytes, no compression in the question).
pub fn parse(msg: &[u8]) -> Option<Question> {
    if msg.len() < 12 || u16::from_be_bytes([msg[4], msg[5]]) == 0 {
        return None;
    }
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    let mut pos = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = *msg.get(pos)? as usize;
        if len == 0 {
            pos += 1;
            break;
        }
        if len & 0xc0 != 0
            || pos + 1 + len > msg.len()
            || labels.iter().map(|l| l.len() + 1).sum::<usize>() + len > 255
        {
            return None;
        }
        labels.push(String::from_utf8_lossy(&msg[pos + 1..pos + 1 + len]).to_ascii_lowercase());
        pos += 1 + len;
    }
    let qtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
    Some(Question {
        response: flags & 0x8000 != 0,
        rcode: (flags & 0x000f) as u8,
        name: labels.join("."),
        qtype,
    })
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// The registered domain and the part of the name left of it.
pub fn split_name(name: &str) -> (String, String) {
    match psl::domain_str(name) {
        Some(domain) if domain.len() < name.len() => {
            let sub = name[..name.len() - domain.len() - 1].to_string();
            (domain.to_string(), sub)
        }
        Some(domain) => (domain.to_string(), String::new()),
        None => (name.to_string(), String::new()),
    }
}

#[derive(Default)]
struct DomainActivity {
    names: TimedSet<String>,
    tunnel_like: TimedSet<String>,
    reported_tunnel: usize,
    reported_unique: usize,
}

pub struct DnsDetector {
    config: DnsConfig,
    domains: HashMap<(IpAddr, String), DomainActivity>,
    nx: HashMap<IpAddr, (TimedSet<String>, usize)>,
    /// Sweeps of old names.
    sweep: MinuteSweep,
}

impl DnsDetector {
    pub fn new(config: DnsConfig) -> DnsDetector {
        DnsDetector {
            config,
            domains: HashMap::new(),
            nx: HashMap::new(),
            sweep: MinuteSweep::default(),
        }
    }

    fn tunnel_like(&self, sub: &str, qtype: u16) -> bool {
        qtype == TYPE_NULL
            || sub.len() > LONG_NAME
            || sub
                .split('.')
                .any(|l| l.len() >= self.config.long_label && entropy(l) >= self.config.min_entropy)
    }

    pub fn observe(&mut self, e: &Event, out: &mut Vec<Evidence>) {
        if e.kind != Kind::Dns {
            return;
        }
        let Some(q) = parse(&e.payload) else { return };
        let since = e.ts.saturating_sub(self.config.window_secs * SECOND);
        if q.response {
            if q.rcode == RCODE_NXDOMAIN {
                self.nxdomain(e.dst, q.name, e.ts, since, out);
            }
            return;
        }
        let (domain, sub) = split_name(&q.name);
        if sub.is_empty() || self.config.allow_domains.contains(&domain) {
            return;
        }
        let tunnel_like = self.tunnel_like(&sub, q.qtype);
        let config = self.config.clone();
        let activity = self.domains.entry((e.src, domain.clone())).or_default();
        activity.names.insert(q.name.clone(), e.ts);
        if tunnel_like {
            activity.tunnel_like.insert(q.name.clone(), e.ts);
        }
        let tunnel = activity.tunnel_like.count_since(since);
        let unique = activity.names.count_since(since);
        let bulk_type = matches!(q.qtype, TYPE_NULL | TYPE_TXT);
        if tunnel >= config.tunnel_queries && tunnel >= activity.reported_tunnel * 2 {
            activity.reported_tunnel = tunnel;
            out.push(Evidence {
                host: e.src,
                detector: "dns.tunnel",
                technique: "T1071.004",
                score: if bulk_type { 85 } else { 80 },
                ts: e.ts,
                peers: vec![domain.clone(), e.dst.to_string()],
                count: tunnel as u64,
                summary: format!(
                    "{tunnel} tunnel-like queries under {domain} (e.g. {})",
                    q.name
                ),
            });
        } else if unique >= config.unique_names && unique >= activity.reported_unique * 2 {
            activity.reported_unique = unique;
            out.push(Evidence {
                host: e.src,
                detector: "dns.unique_names",
                technique: "T1071.004",
                score: 60,
                ts: e.ts,
                peers: vec![domain.clone(), e.dst.to_string()],
                count: unique as u64,
                summary: format!(
                    "{unique} unique names under {domain} in {}s",
                    config.window_secs
                ),
            });
        }
        if self.sweep.due(e.ts) {
            self.prune(since);
        }
    }

    fn nxdomain(
        &mut self,
        host: IpAddr,
        name: String,
        ts: Nanos,
        since: Nanos,
        out: &mut Vec<Evidence>,
    ) {
        let (names, reported) = self.nx.entry(host).or_default();
        names.insert(name, ts);
        let n = names.count_since(since);
        if n >= self.config.nxdomains && n >= *reported * 2 {
            *reported = n;
            let mut examples: Vec<String> = names.keys().take(5).cloned().collect();
            examples.sort();
            out.push(Evidence {
                host,
                detector: "dns.nxdomain_burst",
                technique: "T1568.002",
                score: 65,
                ts,
                peers: examples,
                count: n as u64,
                summary: format!(
                    "{n} names that do not exist in {}s (DGA-like)",
                    self.config.window_secs
                ),
            });
        }
    }

    fn prune(&mut self, since: Nanos) {
        self.domains.retain(|_, a| {
            a.names.prune(since);
            a.tunnel_like.prune(since);
            !a.names.is_empty()
        });
        self.nx.retain(|_, (names, _)| {
            names.prune(since);
            !names.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::event::PROTO_UDP;

    fn query(name: &str, qtype: u16, response: bool, rcode: u8) -> Vec<u8> {
        let mut m = vec![
            0x12,
            0x34,
            if response { 0x81 } else { 0x01 },
            rcode,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    fn ev(ts: Nanos, payload: Vec<u8>, response: bool) -> Event {
        let (client, server) = ("10.0.0.5", "10.0.0.53");
        let (src, dst) = if response {
            (server, client)
        } else {
            (client, server)
        };
        Event {
            ts,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: 5353,
            dport: 53,
            protocol: PROTO_UDP,
            kind: Kind::Dns,
            payload,
        }
    }

    fn run(events: &[Event]) -> Vec<Evidence> {
        let mut d = DnsDetector::new(DnsConfig::default());
        let mut out = Vec::new();
        for e in events {
            d.observe(e, &mut out);
        }
        out
    }

    #[test]
    fn parses_a_question() {
        let q = parse(&query("www.Example.com", 28, false, 0)).unwrap();
        assert_eq!(
            q,
            Question {
                response: false,
                rcode: 0,
                name: "www.example.com".into(),
                qtype: 28
            }
        );
        assert!(parse(&[0u8; 5]).is_none());
        let mut bad = query("a.b", 1, false, 0);
        bad[12] = 60; // label past the end
        assert!(parse(&bad).is_none());
    }

    #[test]
    fn registered_domain_split() {
        assert_eq!(
            split_name("a.b.example.co.uk"),
            ("example.co.uk".into(), "a.b".into())
        );
        assert_eq!(
            split_name("example.com"),
            ("example.com".into(), String::new())
        );
    }

    #[test]
    fn hex_labels_under_one_domain_are_a_tunnel() {
        let events: Vec<Event> = (0..8)
            .map(|i| {
                ev(
                    i * SECOND,
                    query(
                        &format!(
                            "{:034x}.tunnel.example.net",
                            0x1234_5678_9abc_def0_1122u128 * (i as u128 + 7)
                        ),
                        16,
                        false,
                        0,
                    ),
                    false,
                )
            })
            .collect();
        let out = run(&events);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].detector, "dns.tunnel");
        assert_eq!(out[0].peers[0], "example.net");
    }

    #[test]
    fn null_queries_are_tunnel_like_even_with_short_names() {
        let events: Vec<Event> = (0..6)
            .map(|i| {
                ev(
                    i * SECOND,
                    query(&format!("q{i}.t1.example.org"), TYPE_NULL, false, 0),
                    false,
                )
            })
            .collect();
        assert_eq!(run(&events)[0].detector, "dns.tunnel");
    }

    #[test]
    fn ordinary_lookups_are_not() {
        let names = [
            "www.example.com",
            "mail.example.com",
            "cdn-3.example.com",
            "api.example.com",
            "login.example.com",
            "static.example.com",
        ];
        let events: Vec<Event> = names
            .iter()
            .enumerate()
            .map(|(i, n)| ev(i as u64 * SECOND, query(n, 1, false, 0), false))
            .collect();
        assert!(run(&events).is_empty());
    }

    #[test]
    fn a_burst_of_nxdomain_is_dga_like() {
        let events: Vec<Event> = (0..25)
            .map(|i| {
                ev(
                    i * SECOND,
                    query(&format!("xk{i}qpz.com"), 1, true, RCODE_NXDOMAIN),
                    true,
                )
            })
            .collect();
        let out = run(&events);
        assert_eq!(out[0].detector, "dns.nxdomain_burst");
        assert_eq!(out[0].host.to_string(), "10.0.0.5");
    }
}
