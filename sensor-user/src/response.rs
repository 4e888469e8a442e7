//! The automatic response policy: which incidents isolate their host, block
//! the peers they talk to, or only alert. Decisions are pure functions of
//! the incident and what is known about its host, so they are tested
//! without a datapath; the daemon carries them out.

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::detect::{
    allow::{detector_matches, peer_address},
    Incident,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Cut the host off (both ways, exemptions aside).
    #[default]
    Isolate,
    /// Block the external peers the evidence names (C&C addresses).
    BlockPeer,
    /// Alert only.
    Alert,
}

/// One rule: incidents it covers and what to do about them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Rule {
    /// Detector names or "prefix.*"; the rule covers an incident when any
    /// of its detectors matches. Default: every detector.
    pub detectors: Vec<String>,
    /// The incident's score must reach this. Default 70: one clear
    /// detection (a scan, brute force, a beacon); weak signals alone (60-65:
    /// NXDOMAIN bursts, policy drops) only alert.
    pub min_score: u8,
    /// Segment names of the host. Default: every segment.
    pub segments: Vec<String>,
    pub action: ActionKind,
    /// How long the isolation or block lasts ("30m", "1h"). Default 1h;
    /// "permanent" for no expiry.
    pub ttl: String,
    /// In fleet mode, where the action applies: "gateway", "site" or
    /// "fleet". Default: an isolation stays on its site, a block goes to
    /// the whole fleet where this gateway may publish there.
    pub scope: Option<crate::fleet::Scope>,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            detectors: vec!["*".into()],
            min_score: 70,
            segments: Vec::new(),
            action: ActionKind::Isolate,
            ttl: "1h".into(),
            scope: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// Carry out the rules.
    #[default]
    Act,
    /// Decide as the rules say, record and alert, but change nothing.
    AlertOnly,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseConfig {
    pub mode: ResponseMode,
    /// Hosts never isolated and peers never blocked automatically: gateways,
    /// resolvers, domain controllers. Incidents about them alert only.
    #[serde(deserialize_with = "crate::config::nets")]
    pub never_isolate: Vec<IpNet>,
    /// Act on a host only once it has completed a TCP handshake it started
    /// (within a day), so a forged source address cannot get an innocent
    /// host cut off. Default true.
    pub require_verified: bool,
    /// Every matching rule applies (isolate the host and block its C&C).
    /// Default: one rule, isolate on score 70+.
    #[serde(rename = "rule")]
    pub rules: Vec<Rule>,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        ResponseConfig {
            mode: ResponseMode::Act,
            never_isolate: Vec::new(),
            require_verified: true,
            rules: vec![Rule::default()],
        }
    }
}

/// `ttl` as written: `None` is permanent.
pub fn parse_ttl(text: &str) -> Result<Option<Duration>, String> {
    if text == "permanent" {
        return Ok(None);
    }
    let ttl = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as 30m or 1h ({e})"))?;
    crate::clock::check_ttl(ttl).map(Some)
}

impl ResponseConfig {
    /// Checks meaning; errors name the key.
    pub fn validate(&self, segment_names: &[String]) -> Result<(), (String, String)> {
        for (i, rule) in self.rules.iter().enumerate() {
            let key = |k: &str| format!("response.rule[{i}].{k}");
            parse_ttl(&rule.ttl).map_err(|e| (key("ttl"), e))?;
            if rule.min_score > 100 {
                return Err((key("min_score"), "a score is 0 to 100".into()));
            }
            if let Some(s) = rule.segments.iter().find(|s| !segment_names.contains(s)) {
                return Err((key("segments"), format!("no segment is named {s:?}")));
            }
            if rule.detectors.is_empty() {
                return Err((
                    key("detectors"),
                    "name at least one detector, or \"*\"".into(),
                ));
            }
            for (j, pattern) in rule.detectors.iter().enumerate() {
                crate::detect::registry::check_pattern(pattern)
                    .map_err(|problem| (key(&format!("detectors[{j}]")), problem))?;
            }
        }
        Ok(())
    }
}

/// What is known about the incident's host when deciding.
pub struct HostFacts<'a> {
    /// The configured segment whose own ranges hold the host (not a
    /// catch-all such as the internet's 0.0.0.0/0).
    pub segment: Option<&'a str>,
    pub verified: bool,
    /// Detectors an operator marked false positives for this host.
    pub false_positive_detectors: &'a BTreeSet<String>,
    /// Whether an address is inside (peers inside are never blocked).
    pub is_internal: &'a dyn Fn(IpAddr) -> bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Isolate {
        host: IpAddr,
        ttl: Option<Duration>,
        rule: usize,
    },
    Block {
        net: IpNet,
        ttl: Option<Duration>,
        rule: usize,
    },
    /// A rule asked for an action that was not taken, and why.
    Withheld { target: String, why: String },
}

/// What the policy does about `incident` now (actions already taken for it
/// are left out).
pub fn decide(config: &ResponseConfig, incident: &Incident, facts: &HostFacts) -> Vec<Decision> {
    if incident.false_positive || !incident.is_open() {
        return Vec::new();
    }
    // Detectors still standing once the operator's false positives are out.
    let live: Vec<&str> = incident
        .detectors
        .iter()
        .copied()
        .filter(|d| !facts.false_positive_detectors.contains(*d))
        .collect();
    if live.is_empty() {
        return Vec::new();
    }
    let matching: Vec<(usize, &Rule)> = config
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            incident.score >= r.min_score
                && live
                    .iter()
                    .any(|d| r.detectors.iter().any(|p| detector_matches(p, d)))
                && (r.segments.is_empty()
                    || facts
                        .segment
                        .is_some_and(|s| r.segments.iter().any(|x| x == s)))
        })
        .collect();
    let mut out = Vec::new();
    for (index, rule) in matching {
        let decided = decide_rule(config, incident, facts, &live, index, rule);
        for d in decided {
            // Two rules asking for the same thing: the first one's stands.
            if !out.iter().any(|o| same_target(o, &d)) {
                out.push(d);
            }
        }
    }
    out
}

/// Whether an address can name one host on a wire. Loopback never leaves a
/// host (RFC 1122 3.2.1.3, RFC 4291 2.5.3): seen in traffic it is forged
/// or a capture taken on a host; the others name no single machine.
pub fn is_host_address(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            !(a.is_loopback() || a.is_multicast() || a.is_broadcast() || a.is_unspecified())
        }
        IpAddr::V6(a) => !(a.is_loopback() || a.is_multicast() || a.is_unspecified()),
    }
}

/// A decision not to carry out, with its target and why: withheld by the
/// policy, or any action while the mode is alert_only.
pub fn not_carried_out(decision: &Decision, mode: ResponseMode) -> Option<(String, String)> {
    let alert_only = mode == ResponseMode::AlertOnly;
    match decision {
        Decision::Withheld { target, why } => Some((target.clone(), why.clone())),
        Decision::Isolate { host, .. } if alert_only => Some((
            host.to_string(),
            "response mode is alert_only (would isolate)".into(),
        )),
        Decision::Block { net, .. } if alert_only => Some((
            net.to_string(),
            "response mode is alert_only (would block)".into(),
        )),
        _ => None,
    }
}

fn same_target(a: &Decision, b: &Decision) -> bool {
    let target = |d: &Decision| match d {
        Decision::Isolate { host, .. } => IpNet::from(*host).to_string(),
        Decision::Block { net, .. } => net.to_string(),
        Decision::Withheld { target, .. } => target
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_or(target.clone(), |n| n.to_string()),
    };
    std::mem::discriminant(a) == std::mem::discriminant(b) && target(a) == target(b)
}

fn decide_rule(
    config: &ResponseConfig,
    incident: &Incident,
    facts: &HostFacts,
    live: &[&str],
    index: usize,
    rule: &Rule,
) -> Vec<Decision> {
    let ttl = parse_ttl(&rule.ttl).unwrap_or(Some(Duration::from_secs(3600)));
    let protected = |a: IpAddr| config.never_isolate.iter().any(|n| n.contains(&a));
    let host = incident.host;
    let withheld = |target: String, why: &str| Decision::Withheld {
        target,
        why: why.into(),
    };
    let mut out = Vec::new();
    match rule.action {
        ActionKind::Alert => {}
        ActionKind::Isolate => {
            let target = host.to_string();
            if incident.has_action("isolate", &target) {
                return out;
            }
            let why = if !is_host_address(host) {
                Some("the address is no single host's (loopback, multicast, broadcast or unspecified)")
            } else if protected(host) {
                Some("the host is on the never-isolate list")
            } else if facts.segment.is_none() {
                Some("the address is in none of the segments' own ranges")
            } else if config.require_verified && !facts.verified {
                Some("the address is not proven yet: no acknowledged TCP data, no layer-2 binding (it may be forged)")
            } else {
                None
            };
            match why {
                // Said once; decided again when the reason goes away.
                Some(why) if incident.has_withheld(&target, why) => {}
                Some(why) => out.push(withheld(target, why)),
                None => out.push(Decision::Isolate {
                    host,
                    ttl,
                    rule: index,
                }),
            }
        }
        ActionKind::BlockPeer => {
            let peers: BTreeSet<IpAddr> = incident
                .evidence
                .iter()
                .filter(|e| live.contains(&e.detector))
                .flat_map(|e| e.peers.iter().filter_map(|p| peer_address(p)))
                .collect();
            for peer in peers {
                let target = IpNet::from(peer).to_string();
                if incident.has_action("block", &target) || incident.has_action("withheld", &target)
                {
                    continue;
                }
                if (facts.is_internal)(peer) {
                    continue;
                }
                if protected(peer) {
                    out.push(withheld(target, "the peer is on the never-isolate list"));
                } else {
                    out.push(Decision::Block {
                        net: IpNet::from(peer),
                        ttl,
                        rule: index,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Evidence, Incidents};

    fn incident(detector: &'static str, score: u8, peer: &str) -> Incident {
        let mut book = Incidents::default();
        let id = book
            .add(Evidence {
                host: "10.10.0.11".parse().unwrap(),
                detector,
                technique: "T1071",
                score,
                ts: 1,
                since: 1,
                peers: vec![peer.into()],
                count: 20,
                summary: String::new(),
            })
            .expect("strong evidence opens an incident");
        book.get(id).unwrap().clone()
    }

    fn internal(a: IpAddr) -> bool {
        matches!(a, IpAddr::V4(v) if v.octets()[0] == 10)
    }

    fn facts<'a>(fp: &'a BTreeSet<String>, verified: bool) -> HostFacts<'a> {
        HostFacts {
            segment: Some("office"),
            verified,
            false_positive_detectors: fp,
            is_internal: &internal,
        }
    }

    #[test]
    fn a_high_score_isolates_a_verified_host() {
        let none = BTreeSet::new();
        let d = decide(
            &ResponseConfig::default(),
            &incident("beacon", 90, "203.0.113.66:443"),
            &facts(&none, true),
        );
        assert_eq!(
            d,
            vec![Decision::Isolate {
                host: "10.10.0.11".parse().unwrap(),
                ttl: Some(Duration::from_secs(3600)),
                rule: 0
            }]
        );
        // Below the rule's score: nothing.
        let low = incident("beacon", 60, "203.0.113.66:443");
        assert!(decide(&ResponseConfig::default(), &low, &facts(&none, true)).is_empty());
    }

    #[test]
    fn unverified_protected_and_foreign_hosts_are_withheld() {
        let none = BTreeSet::new();
        let i = incident("scan.vertical", 90, "10.10.0.9");
        let d = decide(&ResponseConfig::default(), &i, &facts(&none, false));
        assert!(matches!(&d[0], Decision::Withheld { why, .. } if why.contains("not proven")));

        let config = ResponseConfig {
            never_isolate: vec!["10.10.0.0/24".parse().unwrap()],
            ..Default::default()
        };
        let d = decide(&config, &i, &facts(&none, true));
        assert!(matches!(&d[0], Decision::Withheld { why, .. } if why.contains("never-isolate")));

        let mut f = facts(&none, true);
        f.segment = None;
        let d = decide(&ResponseConfig::default(), &i, &f);
        assert!(matches!(&d[0], Decision::Withheld { why, .. } if why.contains("segments")));
    }

    #[test]
    fn block_peer_blocks_only_external_peers_once() {
        let none = BTreeSet::new();
        let config = ResponseConfig {
            rules: vec![Rule {
                detectors: vec!["beacon".into()],
                min_score: 50,
                action: ActionKind::BlockPeer,
                ttl: "permanent".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut i = incident("beacon", 90, "203.0.113.66:443");
        let d = decide(&config, &i, &facts(&none, true));
        assert_eq!(
            d,
            vec![Decision::Block {
                net: "203.0.113.66/32".parse().unwrap(),
                ttl: None,
                rule: 0
            }]
        );
        i.actions.push(crate::detect::incident::Action {
            ts: 2,
            action: "block".into(),
            target: "203.0.113.66/32".into(),
            detail: String::new(),
        });
        assert!(decide(&config, &i, &facts(&none, true)).is_empty());
        let inside = incident("beacon", 90, "10.10.0.99:443");
        assert!(decide(&config, &inside, &facts(&none, true)).is_empty());
    }

    #[test]
    fn false_positives_and_segments_narrow_the_rules() {
        let fp: BTreeSet<String> = ["beacon".to_string()].into();
        let i = incident("beacon", 90, "203.0.113.66:443");
        assert!(decide(&ResponseConfig::default(), &i, &facts(&fp, true)).is_empty());
        let records_only = ResponseConfig {
            rules: vec![Rule {
                segments: vec!["records".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let none = BTreeSet::new();
        assert!(decide(&records_only, &i, &facts(&none, true)).is_empty());
        assert!(records_only
            .validate(&["office".into()])
            .unwrap_err()
            .0
            .contains("segments"));
    }

    #[test]
    fn addresses_of_no_single_host_are_never_isolated() {
        for host in [
            "127.0.0.1",
            "::1",
            "224.0.0.251",
            "255.255.255.255",
            "0.0.0.0",
        ] {
            let mut i = incident("scan.vertical", 90, "10.0.0.1");
            i.host = host.parse().unwrap();
            let none = BTreeSet::new();
            let d = decide(&ResponseConfig::default(), &i, &facts(&none, true));
            assert!(
                matches!(&d[..], [Decision::Withheld { .. }]),
                "{host}: {d:?}"
            );
        }
    }
}
