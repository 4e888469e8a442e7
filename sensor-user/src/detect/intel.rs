//! Threat intelligence: contact with an address, a range or a domain on a
//! configured list.
//!
//! Lists are read by `crate::feeds::format`, in any format it knows (plain
//! and CIDR lists, hosts files, Spamhaus DROP, DShield, FireHOL, abuse.ch
//! CSV and JSON): an address or CIDR, a domain (`evil.example`, which also
//! matches its sub-domains) or a TLS client fingerprint: a JA3 hash (32 hex
//! digits, as abuse.ch's SSLBL publishes them) or a JA4
//! (`t13d1516h2_8daaf6152771_e5627efa2ab1`, as FoxIO's JA4+ database
//! does). They come from `[detection.intel] files` and from feeds whose
//! action is `alert`.
//!
//! A listed domain counts wherever the client names it: in a DNS query, a
//! TLS server name (SNI) or an HTTP Host header, so a host that skips DNS
//! (a hard-coded address, DNS over HTTPS) is still caught by the name it
//! gives the server. A listed fingerprint is a weak signal
//! (`incident::is_weak`): JA3 and JA4 name the TLS library and its settings, and
//! lists of malware fingerprints also hold common libraries' (abuse.ch
//! warns of false positives).

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::feeds::format::{self, Entries, Format, FormatError, Skipped};

use super::{
    dns,
    event::{Event, Kind, PROTO_TCP, PROTO_UDP},
    inspect, Evidence,
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
    domains: super::known::DomainSet,
    /// JA3 and JA4 fingerprints, lower-case.
    fingerprints: HashSet<String>,
    /// Which file each entry came from is not kept; counts are, for status.
    pub entries: usize,
}

impl IntelLists {
    /// Adds what `text` lists, read as `crate::feeds::format` reads it
    /// (the format as it looks); returns the entries that could not be used.
    pub fn parse(&mut self, text: &str) -> Result<Skipped, FormatError> {
        let entries = format::parse(text, Format::Auto)?;
        self.add(&entries);
        Ok(entries.skipped)
    }

    /// Adds a feed's entries.
    pub fn add(&mut self, entries: &Entries) {
        for net in &entries.nets {
            if self.nets.entry(net.prefix_len()).or_default().insert(*net) {
                self.entries += 1;
            }
        }
        for domain in &entries.domains {
            if self.domains.insert(domain) {
                self.entries += 1;
            }
        }
        for fingerprint in &entries.fingerprints {
            if self.fingerprints.insert(fingerprint.clone()) {
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
        let skipped = self
            .parse(&text)
            .with_context(|| format!("reading intel list {}", path.display()))?;
        if skipped.count > 0 {
            log::warn!(
                "intel list {}: {} entries skipped, first: {}",
                path.display(),
                skipped.count,
                skipped.first.join("; ")
            );
        }
        Ok(())
    }

    pub fn listed_address(&self, addr: IpAddr) -> Option<IpNet> {
        self.nets.iter().find_map(|(len, set)| {
            let net = IpNet::new(addr, *len).ok()?.trunc();
            set.contains(&net).then_some(net)
        })
    }

    pub fn listed_fingerprint(&self, fingerprint: &str) -> bool {
        self.fingerprints.contains(fingerprint)
    }

    /// The listed domain `name` is, or lies under.
    pub fn listed_domain(&self, name: &str) -> Option<String> {
        self.domains.matching(name).map(str::to_string)
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

    /// Entries in the lists now.
    pub fn entries(&self) -> usize {
        self.lists.entries
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
            (Kind::Data, _) if inside.0 && e.protocol == PROTO_TCP => self.listed_opening(e),
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

impl IntelDetector {
    /// A TLS or HTTP opening from an inside host that names a listed
    /// domain as its server, or carries a listed TLS fingerprint.
    fn listed_opening(&self, e: &Event) -> Option<Evidence> {
        let peer = format!("{}:{}", e.dst, e.dport);
        if let Some(name) = inspect::server_name(&e.payload) {
            if let Some(entry) = self.lists.listed_domain(&name) {
                let summary = format!("asked {peer} for {name}, listed as {entry}");
                return Some(evidence(
                    e,
                    e.src,
                    "intel.domain",
                    vec![peer, name],
                    summary,
                ));
            }
        }
        let (kind, fingerprint) = [
            ("JA4", inspect::ja4(&e.payload)),
            ("JA3", inspect::ja3(&e.payload)),
        ]
        .into_iter()
        .find_map(|(kind, f)| Some((kind, f.filter(|f| self.lists.listed_fingerprint(f))?)))?;
        let mut found = evidence(
            e,
            e.src,
            "intel.tls_fingerprint",
            vec![peer.clone()],
            format!("TLS client fingerprint {kind} {fingerprint}, listed, towards {peer}"),
        );
        found.technique = "T1573.002";
        found.score = FINGERPRINT_WEIGHT;
        Some(found)
    }
}

/// A listed TLS client fingerprint's weight: a weak signal, the strongest of them
/// (a listed library is more telling than a missing name).
pub const FINGERPRINT_WEIGHT: u8 = 35;

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

    const LIST: &str = "# a feed\n198.51.100.7\n203.0.113.0/24 # C&C range\n0.0.0.0 evil.example\nbad.example.org.\n\n::1 not-a-domain\nADA70206E40642A3E4461F35503241D5,2017-07-14 18:08:13,2019-07-27 20:42:54,Dridex\nt13d1516h2_8daaf6152771_e5627efa2ab1,Chrome\n";

    #[test]
    fn parses_the_three_formats() {
        let mut l = IntelLists::default();
        l.parse(LIST).unwrap();
        assert_eq!(l.entries, 6);
        assert!(l.listed_fingerprint("ada70206e40642a3e4461f35503241d5"));
        assert!(l.listed_fingerprint("t13d1516h2_8daaf6152771_e5627efa2ab1"));
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
        l.parse(LIST).unwrap();
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
        l.parse(LIST).unwrap();
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

    #[test]
    fn a_listed_domain_in_a_tls_server_name_or_http_host_is_a_hit() {
        let mut l = IntelLists::default();
        l.parse(LIST).unwrap();
        let mut d = IntelDetector::new(l);
        let opening = |payload: Vec<u8>| Event {
            ts: 1,
            src: "10.0.0.5".parse().unwrap(),
            dst: "198.18.0.9".parse().unwrap(),
            sport: 40000,
            dport: 443,
            protocol: PROTO_TCP,
            kind: Kind::Data,
            payload,
        };
        let hello = inspect::tests::client_hello(&[inspect::tests::sni("cdn.evil.example")]);
        let mut out = Vec::new();
        d.observe(&opening(hello), None, (true, false), &mut out);
        let http = b"GET / HTTP/1.1\r\nHost: bad.example.org\r\n\r\n".to_vec();
        d.observe(&opening(http), None, (true, false), &mut out);
        let quiet = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n".to_vec();
        d.observe(&opening(quiet), None, (true, false), &mut out);
        let names: Vec<&str> = out.iter().map(|e| e.peers[1].as_str()).collect();
        assert_eq!(names, ["cdn.evil.example", "bad.example.org"]);
        assert!(out
            .iter()
            .all(|e| e.detector == "intel.domain" && e.score == 90));
    }

    #[test]
    fn a_listed_client_fingerprint_is_a_weak_signal() {
        let hello = inspect::tests::client_hello(&[(11, vec![1, 0])]);
        let (ja3, ja4) = (inspect::ja3(&hello).unwrap(), inspect::ja4(&hello).unwrap());
        let opening = Event {
            ts: 1,
            src: "10.0.0.5".parse().unwrap(),
            dst: "198.51.100.7".parse().unwrap(),
            sport: 40000,
            dport: 443,
            protocol: PROTO_TCP,
            kind: Kind::Data,
            payload: hello,
        };
        for (listed, kind) in [(ja4, "JA4"), (ja3, "JA3")] {
            let mut l = IntelLists::default();
            l.parse(&format!("{listed},a RAT's library\n")).unwrap();
            let mut out = Vec::new();
            IntelDetector::new(l).observe(&opening, None, (true, false), &mut out);
            assert_eq!(out.len(), 1, "{out:?}");
            assert_eq!(
                (out[0].detector, out[0].score),
                ("intel.tls_fingerprint", FINGERPRINT_WEIGHT)
            );
            assert!(
                out[0].summary.contains(&format!("{kind} {listed}")),
                "{}",
                out[0].summary
            );
        }
        let mut none = Vec::new();
        IntelDetector::new(IntelLists::default()).observe(&opening, None, (true, false), &mut none);
        assert!(none.is_empty());
    }
}
