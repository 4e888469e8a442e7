//! Threat intelligence: contact with an address, a range or a domain on a
//! configured list.
//!
//! Lists are text files, one entry a line, `#` starts a comment. A line is
//! an address or CIDR (`198.51.100.7`, `198.51.100.0/24`), a domain
//! (`evil.example`, which also matches its sub-domains), or a hosts-file line
//! (`0.0.0.0 evil.example`, whose address part is ignored).

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{
    dns,
    event::{Event, Kind, PROTO_TCP, PROTO_UDP},
    Evidence,
};

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IntelConfig {
    /// List files, read at start (and on reload).
    pub files: Vec<PathBuf>,
}

/// The entries of every list.
#[derive(Debug, Default, Clone)]
pub struct IntelLists {
    /// Prefixes by length, so a lookup is one hash probe per length in use.
    nets: HashMap<u8, HashSet<IpNet>>,
    domains: HashSet<String>,
    /// Which file each entry came from is not kept; counts are, for status.
    pub entries: usize,
}

impl IntelLists {
    pub fn parse(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            let (Some(first), second) = (words.next(), words.next()) else {
                continue;
            };
            let entry = second.unwrap_or(first);
            if second.is_none() {
                if let Some(net) = first
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| first.parse::<IpAddr>().ok().map(IpNet::from))
                {
                    self.nets
                        .entry(net.prefix_len())
                        .or_default()
                        .insert(net.trunc());
                    self.entries += 1;
                    continue;
                }
            }
            let domain = entry.trim_end_matches('.').to_ascii_lowercase();
            if domain.contains('.') && !domain.contains('/') {
                self.domains.insert(domain);
                self.entries += 1;
            }
        }
    }

    pub fn load(paths: &[PathBuf]) -> Result<IntelLists> {
        let mut lists = IntelLists::default();
        for path in paths {
            lists.parse_file(path)?;
        }
        Ok(lists)
    }

    fn parse_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading intel list {}", path.display()))?;
        self.parse(&text);
        Ok(())
    }

    pub fn listed_address(&self, addr: IpAddr) -> Option<IpNet> {
        self.nets.iter().find_map(|(len, set)| {
            let net = IpNet::new(addr, *len).ok()?.trunc();
            set.contains(&net).then_some(net)
        })
    }

    /// The listed domain `name` is, or lies under.
    pub fn listed_domain(&self, name: &str) -> Option<String> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut rest = name.as_str();
        loop {
            if self.domains.contains(rest) {
                return Some(rest.to_string());
            }
            rest = rest.split_once('.')?.1;
        }
    }
}

pub struct IntelDetector {
    lists: IntelLists,
    reported: HashSet<(IpAddr, String)>,
}

impl IntelDetector {
    pub fn new(lists: IntelLists) -> IntelDetector {
        IntelDetector {
            lists,
            reported: HashSet::new(),
        }
    }

    /// Replaces the lists (a reload).
    pub fn set_lists(&mut self, lists: IntelLists) {
        self.lists = lists;
    }

    /// `question`: the event's DNS question, parsed; `inside`: whether the
    /// source and the destination are inside hosts.
    pub fn observe(
        &mut self,
        e: &Event,
        question: Option<&dns::Question>,
        inside: (bool, bool),
        out: &mut Vec<Evidence>,
    ) {
        let hit = match (&e.kind, question) {
            (Kind::Syn, _) if e.protocol == PROTO_TCP => self.listed_contact(e, inside.0),
            (Kind::FlowStart, _) => self.listed_contact(e, inside.0),
            (Kind::Dns, Some(q)) if e.protocol == PROTO_UDP => self.listed_name(e, q, inside),
            _ => None,
        };
        let Some(evidence) = hit else {
            return;
        };
        // Once per host, entry (the summary names it) and peers: an answer
        // with new addresses is reported again.
        super::window::limit_reported(&mut self.reported);
        if self.reported.insert((
            evidence.host,
            format!("{} {:?}", evidence.summary, evidence.peers),
        )) {
            out.push(evidence);
        }
    }

    /// A connection (or UDP/ICMP flow) from an inside host to a listed
    /// address.
    fn listed_contact(&self, e: &Event, inside_src: bool) -> Option<Evidence> {
        if !inside_src {
            return None;
        }
        let net = self.lists.listed_address(e.dst)?;
        Some(evidence(
            e,
            e.src,
            "intel.address",
            vec![e.dst.to_string()],
            format!("contacted {}, listed as {net}", e.dst),
        ))
    }

    /// A query from an inside host for a listed domain, or an answer to one
    /// (to the inside host that asked): the answer's addresses become
    /// peers, so a `block_peer` rule blocks what the domain resolves to.
    fn listed_name(&self, e: &Event, q: &dns::Question, inside: (bool, bool)) -> Option<Evidence> {
        let entry = self.lists.listed_domain(&q.name)?;
        if !q.response {
            return inside.0.then(|| {
                let summary = format!("contacted {}, listed as {entry}", q.name);
                evidence(e, e.src, "intel.domain", vec![q.name.clone()], summary)
            });
        }
        let addrs = dns::answers(&e.payload);
        if addrs.is_empty() || !inside.1 {
            return None;
        }
        let resolved: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let summary = format!(
            "resolved {} (listed as {entry}) to {}",
            q.name,
            resolved.join(", ")
        );
        let peers = std::iter::once(q.name.clone()).chain(resolved).collect();
        Some(evidence(e, e.dst, "intel.domain", peers, summary))
    }
}

fn evidence(
    e: &Event,
    host: IpAddr,
    detector: &'static str,
    peers: Vec<String>,
    summary: String,
) -> Evidence {
    Evidence {
        host,
        detector,
        technique: "T1071",
        score: 90,
        ts: e.ts,
        since: e.ts,
        peers,
        count: 1,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "# a feed\n198.51.100.7\n203.0.113.0/24 # C&C range\n0.0.0.0 evil.example\nbad.example.org.\n\n::1 not-a-domain\n";

    #[test]
    fn parses_the_three_formats() {
        let mut l = IntelLists::default();
        l.parse(LIST);
        assert_eq!(l.entries, 4);
        assert!(l.listed_address("198.51.100.7".parse().unwrap()).is_some());
        assert!(l.listed_address("198.51.100.8".parse().unwrap()).is_none());
        assert_eq!(
            l.listed_address("203.0.113.99".parse().unwrap())
                .unwrap()
                .to_string(),
            "203.0.113.0/24"
        );
        assert_eq!(
            l.listed_domain("x.y.evil.example").as_deref(),
            Some("evil.example")
        );
        assert_eq!(
            l.listed_domain("BAD.example.org").as_deref(),
            Some("bad.example.org")
        );
        assert!(l.listed_domain("example.org").is_none());
        assert!(l.listed_domain("notevil.example").is_none());
    }

    #[test]
    fn contact_with_a_listed_address_is_reported_once() {
        let mut l = IntelLists::default();
        l.parse(LIST);
        let mut d = IntelDetector::new(l);
        let e = Event {
            ts: 1,
            src: "10.0.0.5".parse().unwrap(),
            dst: "203.0.113.66".parse().unwrap(),
            sport: 40000,
            dport: 443,
            protocol: PROTO_TCP,
            kind: Kind::Syn,
            payload: vec![],
        };
        let mut out = Vec::new();
        d.observe(&e, None, (true, false), &mut out);
        d.observe(&e, None, (true, false), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].detector, "intel.address");
        let mut fresh = IntelDetector::new(d.lists.clone());
        fresh.observe(&e, None, (false, false), &mut out);
        assert_eq!(out.len(), 1, "outside hosts are not judged");
    }

    #[test]
    fn an_answer_for_a_listed_domain_names_its_addresses_as_peers() {
        let mut l = IntelLists::default();
        l.parse(LIST);
        let mut d = IntelDetector::new(l);
        let addrs = [
            "198.18.0.66".parse().unwrap(),
            "2001:db8::66".parse().unwrap(),
        ];
        let e = Event {
            ts: 1,
            src: "203.0.113.53".parse().unwrap(),
            dst: "10.0.0.5".parse().unwrap(),
            sport: 53,
            dport: 40000,
            protocol: PROTO_UDP,
            kind: Kind::Dns,
            payload: dns::tests::response("cdn.evil.example", &addrs),
        };
        let q = dns::parse(&e.payload);
        let inside = (false, true); // from the outside resolver, to 10.0.0.5
        let mut out = Vec::new();
        d.observe(&e, q.as_ref(), inside, &mut out);
        d.observe(&e, q.as_ref(), inside, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].host, e.dst, "the host that asked");
        assert_eq!(out[0].detector, "intel.domain");
        assert_eq!(
            out[0].peers,
            ["cdn.evil.example", "198.18.0.66", "2001:db8::66"]
        );
        assert!(
            out[0].summary.contains("listed as evil.example"),
            "{}",
            out[0].summary
        );
    }
}
