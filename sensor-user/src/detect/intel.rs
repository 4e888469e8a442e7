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

    /// `inside`: the event's source is an inside host.
    pub fn observe(&mut self, e: &Event, inside: bool, out: &mut Vec<Evidence>) {
        if !inside {
            return;
        }
        let hit = match (&e.kind, e.protocol) {
            (Kind::Syn, PROTO_TCP) | (Kind::FlowStart, _) => self
                .lists
                .listed_address(e.dst)
                .map(|net| (net.to_string(), e.dst.to_string(), "address")),
            (Kind::Dns, PROTO_UDP) => {
                dns::parse(&e.payload)
                    .filter(|q| !q.response)
                    .and_then(|q| {
                        self.lists
                            .listed_domain(&q.name)
                            .map(|d| (d, q.name, "domain"))
                    })
            }
            _ => None,
        };
        let Some((entry, what, kind)) = hit else {
            return;
        };
        if !self.reported.insert((e.src, entry.clone())) {
            return;
        }
        out.push(Evidence {
            host: e.src,
            detector: if kind == "address" {
                "intel.address"
            } else {
                "intel.domain"
            },
            technique: "T1071",
            score: 90,
            ts: e.ts,
            peers: vec![what.clone()],
            count: 1,
            summary: format!("contacted {what}, listed as {entry}"),
        });
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
        d.observe(&e, true, &mut out);
        d.observe(&e, true, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].detector, "intel.address");
        d.observe(&e, false, &mut out);
        assert_eq!(out.len(), 1, "outside hosts are not judged");
    }
}
