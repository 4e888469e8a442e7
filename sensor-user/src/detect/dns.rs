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
    event::{Event, Nanos, SECOND},
    limits,
    window::{cap_oldest, MinuteSweep, TimedSet},
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

/// Address-to-name zones: their names are addresses written out label by
/// label (RFC 1035 3.5, RFC 3596 2.5, and the retired ip6.int of RFC 1886),
/// long and random-looking by construction, and carry no data. Tunnel and
/// DGA heuristics do not apply to them (Zeek and RITA leave them out too).
const REVERSE_ZONES: [&str; 3] = ["in-addr.arpa", "ip6.arpa", "ip6.int"];

fn is_reverse_lookup(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    REVERSE_ZONES
        .iter()
        .any(|z| name == *z || name.ends_with(&format!(".{z}")))
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
        let label = String::from_utf8_lossy(&msg[pos + 1..pos + 1 + len]);
        labels.push(super::text::printable(&label).to_ascii_lowercase());
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

/// Skips a (possibly compressed) name at `pos`; the position after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    // A name has at most 127 labels; a pointer ends it.
    for _ in 0..128 {
        let len = *msg.get(pos)? as usize;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return msg.get(pos + 1).map(|_| pos + 2),
            l if l & 0xc0 != 0 => return None,
            l => pos += 1 + l,
        }
    }
    None
}

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
/// Answer records read per message, at most.
const MAX_ANSWERS: usize = 64;

/// The addresses a DNS response's answer section gives (A and AAAA
/// records, whatever name they are for: a CNAME chain ends in them).
/// Bounded: a cut or malformed message gives what was read before the cut.
pub fn answers(msg: &[u8]) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    if msg.len() < 12 || msg[2] & 0x80 == 0 {
        return out;
    }
    let questions = u16::from_be_bytes([msg[4], msg[5]]) as usize;
    let records = (u16::from_be_bytes([msg[6], msg[7]]) as usize).min(MAX_ANSWERS);
    let mut pos = 12;
    for _ in 0..questions.min(4) {
        match skip_name(msg, pos) {
            Some(next) => pos = next + 4,
            None => return out,
        }
    }
    for _ in 0..records {
        let Some(next) = skip_name(msg, pos) else {
            break;
        };
        let Some(fixed) = msg.get(next..next + 10) else {
            break;
        };
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let len = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let Some(data) = msg.get(next + 10..next + 10 + len) else {
            break;
        };
        match (rtype, len) {
            (TYPE_A, 4) => out.push(std::net::IpAddr::from(<[u8; 4]>::try_from(data).unwrap())),
            (TYPE_AAAA, 16) => {
                out.push(std::net::IpAddr::from(<[u8; 16]>::try_from(data).unwrap()))
            }
            _ => {}
        }
        pos = next + 10 + len;
    }
    out
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

/// Per (host, registered domain): the names asked under it, by their
/// 64-bit hashes (keyed per process, so nobody can aim for collisions):
/// counting distinct names needs no copy of each.
#[derive(Default)]
struct DomainActivity {
    names: TimedSet<u64>,
    /// Boxed: few (host, domain) pairs ever ask a tunnel-like name or
    /// get reported.
    rare: Option<Box<Rare>>,
}

#[derive(Default)]
struct Rare {
    tunnel_like: TimedSet<u64>,
    reported_tunnel: u32,
    reported_unique: u32,
}

pub struct DnsDetector {
    config: DnsConfig,
    /// By the keyed hash of (host, registered domain): one word of key
    /// for the most numerous entry the engine keeps.
    domains: HashMap<u64, DomainActivity>,
    names: std::hash::RandomState,
    nx: HashMap<IpAddr, (TimedSet<String>, usize)>,
    /// Sweeps of old names.
    sweep: MinuteSweep,
    /// Entries dropped to stay within `limits::DNS_DOMAINS`.
    pub evicted: u64,
}

impl DnsDetector {
    /// New settings from a reload: they apply from the next event, and
    /// what was learnt so far stays.
    pub fn reconfigure(&mut self, config: DnsConfig) {
        self.config = config;
    }

    pub fn new(config: DnsConfig) -> DnsDetector {
        DnsDetector {
            config,
            domains: HashMap::new(),
            names: std::hash::RandomState::new(),
            nx: HashMap::new(),
            sweep: MinuteSweep::default(),
            evicted: 0,
        }
    }

    /// Entries: (host, domain) activity and NXDOMAIN sets.
    pub fn size(&self) -> usize {
        self.domains.len() + self.nx.len()
    }

    fn tunnel_like(&self, sub: &str, qtype: u16) -> bool {
        qtype == TYPE_NULL
            || sub.len() > LONG_NAME
            || sub
                .split('.')
                .any(|l| l.len() >= self.config.long_label && entropy(l) >= self.config.min_entropy)
    }

    /// A DNS message, `q` its parsed question.
    pub fn observe(&mut self, e: &Event, q: &Question, out: &mut Vec<Evidence>) {
        let since = e.ts.saturating_sub(self.config.window_secs * SECOND);
        if q.response {
            if q.rcode == RCODE_NXDOMAIN {
                self.nxdomain(e.dst, q.name.clone(), e.ts, since, out);
            }
            return;
        }
        if is_reverse_lookup(&q.name) {
            return;
        }
        let (domain, sub) = split_name(&q.name);
        if sub.is_empty() || self.config.allow_domains.contains(&domain) {
            return;
        }
        let tunnel_like = self.tunnel_like(&sub, q.qtype);
        let config = &self.config;
        let hash = |s: &str| std::hash::BuildHasher::hash_one(&self.names, s);
        let (domain_hash, name_hash) = (hash(&domain), hash(&q.name));
        self.evicted += cap_oldest(&mut self.domains, limits::DNS_DOMAINS, |a| a.names.latest());
        let key = std::hash::BuildHasher::hash_one(&self.names, (e.src, domain_hash));
        let activity = self.domains.entry(key).or_default();
        activity.names.insert(name_hash, e.ts);
        if tunnel_like {
            let rare = activity.rare.get_or_insert_with(Default::default);
            rare.tunnel_like.insert(name_hash, e.ts);
        }
        let window = config.window_secs * SECOND;
        let tunnel = activity
            .rare
            .as_mut()
            .map_or(0, |r| r.tunnel_like.count_within(e.ts, window));
        let unique = activity.names.count_within(e.ts, window);
        let reported = |r: &Option<Box<Rare>>| {
            r.as_ref()
                .map_or((0, 0), |r| (r.reported_tunnel, r.reported_unique))
        };
        let (reported_tunnel, reported_unique) = reported(&activity.rare);
        let bulk_type = matches!(q.qtype, TYPE_NULL | TYPE_TXT);
        if tunnel >= config.tunnel_queries && tunnel >= reported_tunnel as usize * 2 {
            activity
                .rare
                .get_or_insert_with(Default::default)
                .reported_tunnel = tunnel as u32;
            out.push(Evidence {
                host: e.src,
                detector: "dns.tunnel",
                technique: "T1071.004",
                score: if bulk_type { 85 } else { 80 },
                ts: e.ts,
                since: e.ts,
                peers: vec![domain.clone(), e.dst.to_string()],
                count: tunnel as u64,
                summary: format!(
                    "{tunnel} tunnel-like queries under {domain} (e.g. {})",
                    q.name
                ),
            });
        } else if unique >= config.unique_names && unique >= reported_unique as usize * 2 {
            activity
                .rare
                .get_or_insert_with(Default::default)
                .reported_unique = unique as u32;
            out.push(Evidence {
                host: e.src,
                detector: "dns.unique_names",
                technique: "T1071.004",
                score: 60,
                ts: e.ts,
                since: e.ts,
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
        self.evicted += cap_oldest(&mut self.nx, limits::DNS_DOMAINS, |(s, _)| s.latest());
        let (names, reported) = self.nx.entry(host).or_default();
        names.insert(name, ts);
        let n = names.count_within(ts, ts.saturating_sub(since));
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
                since: ts,
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
            if let Some(r) = &mut a.rare {
                r.tunnel_like.prune(since);
                if r.tunnel_like.is_empty() && r.reported_tunnel == 0 && r.reported_unique == 0 {
                    a.rare = None;
                }
            }
            !a.names.is_empty()
        });
        self.nx.retain(|_, (names, _)| {
            names.prune(since);
            !names.is_empty()
        });
        super::window::fit(&mut self.domains);
        super::window::fit(&mut self.nx);
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::detect::event::{Kind, PROTO_UDP};

    pub fn query(name: &str, qtype: u16, response: bool, rcode: u8) -> Vec<u8> {
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

    /// A response to `name` with a CNAME (compressed) and the given A and
    /// AAAA records.
    pub fn response(name: &str, addrs: &[std::net::IpAddr]) -> Vec<u8> {
        let mut m = query(name, TYPE_A, true, 0);
        m[7] = 1 + addrs.len() as u8;
        // CNAME: name pointer to the question (offset 12), to "x" + pointer.
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, b'x', 0xc0, 12]);
        for addr in addrs {
            let (kind, bytes) = match addr {
                std::net::IpAddr::V4(a) => (TYPE_A, a.octets().to_vec()),
                std::net::IpAddr::V6(a) => (TYPE_AAAA, a.octets().to_vec()),
            };
            m.extend_from_slice(&[0xc0, 12]);
            m.extend_from_slice(&kind.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            m.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            m.extend_from_slice(&bytes);
        }
        m
    }

    #[test]
    fn answers_give_every_address_and_stop_at_a_cut() {
        let addrs: Vec<std::net::IpAddr> = vec![
            "203.0.113.66".parse().unwrap(),
            "2001:db8::66".parse().unwrap(),
        ];
        let msg = response("c2.example.org", &addrs);
        assert_eq!(answers(&msg), addrs);
        assert_eq!(parse(&msg).unwrap().name, "c2.example.org");
        assert_eq!(answers(&msg[..msg.len() - 1]), addrs[..1].to_vec());
        for n in 0..msg.len() {
            assert!(answers(&msg[..n]).len() <= 2);
        }
        assert!(
            answers(&query("c2.example.org", TYPE_A, false, 0)).is_empty(),
            "a query"
        );
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
            if let Some(q) = parse(&e.payload) {
                d.observe(e, &q, &mut out);
            }
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

    #[test]
    fn reverse_lookups_are_not_tunnels() {
        let mut d = DnsDetector::new(DnsConfig::default());
        let mut out = Vec::new();
        for i in 0..50u32 {
            let name = format!(
                "{:x}.{:x}.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.1.0.0.0.0.1.0.5.0.e.f.f.3.ip6.arpa",
                i % 16,
                i / 16
            );
            let q = Question {
                name,
                qtype: 12,
                response: false,
                rcode: 0,
            };
            let e = Event {
                ts: i as u64 * SECOND,
                src: "10.0.0.5".parse().unwrap(),
                dst: "10.0.0.53".parse().unwrap(),
                sport: 40000,
                dport: 53,
                protocol: PROTO_UDP,
                kind: Kind::Dns,
                payload: Vec::new(),
            };
            d.observe(&e, &q, &mut out);
        }
        assert!(out.is_empty(), "{out:#?}");
        assert!(is_reverse_lookup("4.3.2.1.IN-ADDR.ARPA."));
        assert!(!is_reverse_lookup("in-addr.arpa.example.com"));
    }
}
