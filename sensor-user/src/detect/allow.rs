//! Allowlists that every detector honours: evidence about an allowed host,
//! or only about allowed destinations, from the named detectors, never
//! reaches an incident. (A vulnerability scanner the IT team runs, the
//! backup server that moves terabytes at night.)

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::Evidence;

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AllowRule {
    /// Suspects this rule covers (CIDRs). Empty: any host.
    #[serde(deserialize_with = "crate::config::nets")]
    pub hosts: Vec<IpNet>,
    /// Peers this rule covers: CIDRs, or domains (a domain covers its
    /// sub-domains). Empty: any peer. Evidence is allowed only when every
    /// peer it names is covered.
    pub peers: Vec<String>,
    /// Detector names; "scan.*" covers every scan detector. Empty: all.
    pub detectors: Vec<String>,
    /// Why (shown nowhere but kept in the file for the next reader).
    pub comment: String,
}

/// `pattern` is a detector name or a prefix ending in ".*"; "*" is any.
pub fn detector_matches(pattern: &str, detector: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => detector.starts_with(prefix) || detector == prefix.trim_end_matches('.'),
        None => pattern == detector,
    }
}

/// The address in a peer as detectors write it ("10.0.0.9", "10.0.0.9:445",
/// "[fd00::9]:445"), or `None` for a domain.
pub fn peer_address(peer: &str) -> Option<IpAddr> {
    if let Ok(a) = peer.parse::<IpAddr>() {
        return Some(a);
    }
    if let Ok(s) = peer.parse::<SocketAddr>() {
        return Some(s.ip());
    }
    let (host, port) = peer.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn peer_matches(pattern: &str, peer: &str) -> bool {
    match (crate::nets::parse(pattern), peer_address(peer)) {
        (Ok(net), Some(addr)) => net.contains(&addr),
        (Ok(_), None) => false,
        (Err(_), _) => {
            let domain = pattern.trim_start_matches("*.").trim_end_matches('.');
            let name = peer.trim_end_matches('.');
            name.eq_ignore_ascii_case(domain)
                || name
                    .to_ascii_lowercase()
                    .ends_with(&format!(".{}", domain.to_ascii_lowercase()))
        }
    }
}

impl AllowRule {
    /// Checks that each detector pattern names a detector and each peer is
    /// a range (`nets::parse`) or a domain; the problem names the key.
    pub fn validate(&self, key: &str) -> Result<(), (String, String)> {
        for (i, pattern) in self.detectors.iter().enumerate() {
            super::registry::check_pattern(pattern)
                .map_err(|problem| (format!("{key}.detectors[{i}]"), problem))?;
        }
        for (i, peer) in self.peers.iter().enumerate() {
            let looks_numeric = peer.contains('/')
                || peer.contains(':')
                || peer.chars().all(|c| c.is_ascii_digit() || c == '.');
            let domain = !looks_numeric
                && peer
                    .trim_start_matches("*.")
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
            if !domain {
                crate::nets::parse(peer)
                    .map_err(|problem| (format!("{key}.peers[{i}]"), problem))?;
            }
        }
        Ok(())
    }

    pub fn allows(&self, e: &Evidence) -> bool {
        (self.hosts.is_empty() || self.hosts.iter().any(|n| n.contains(&e.host)))
            && (self.detectors.is_empty()
                || self
                    .detectors
                    .iter()
                    .any(|d| detector_matches(d, e.detector)))
            && (self.peers.is_empty()
                || (!e.peers.is_empty()
                    && e.peers
                        .iter()
                        .all(|p| self.peers.iter().any(|pat| peer_matches(pat, p)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(host: &str, detector: &'static str, peers: &[&str]) -> Evidence {
        Evidence {
            host: host.parse().unwrap(),
            detector,
            technique: "T1046",
            score: 70,
            ts: 0,
            since: 0,
            peers: peers.iter().map(|p| p.to_string()).collect(),
            count: 1,
            summary: String::new(),
        }
    }

    #[test]
    fn rules_match_hosts_detectors_and_every_peer() {
        let scanner = AllowRule {
            hosts: vec!["10.10.0.250/32".parse().unwrap()],
            detectors: vec!["scan.*".into()],
            ..Default::default()
        };
        assert!(scanner.allows(&evidence("10.10.0.250", "scan.vertical", &["10.10.0.9"])));
        assert!(!scanner.allows(&evidence("10.10.0.250", "beacon", &["1.2.3.4:443"])));
        assert!(!scanner.allows(&evidence("10.10.0.251", "scan.vertical", &[])));

        let updates = AllowRule {
            peers: vec!["updates.example.org".into(), "198.51.100.0/24".into()],
            ..Default::default()
        };
        assert!(updates.allows(&evidence("10.0.0.5", "beacon", &["198.51.100.7:443"])));
        assert!(updates.allows(&evidence(
            "10.0.0.5",
            "dns.tunnel",
            &["cdn.updates.example.org"]
        )));
        assert!(!updates.allows(&evidence(
            "10.0.0.5",
            "beacon",
            &["198.51.100.7:443", "203.0.113.1:80"]
        )));
        assert!(!updates.allows(&evidence(
            "10.0.0.5",
            "dns.tunnel",
            &["notupdates.example.org"]
        )));
        assert!(!updates.allows(&evidence("10.0.0.5", "scan.horizontal", &[])));
    }

    #[test]
    fn peers_as_detectors_write_them() {
        assert_eq!(peer_address("10.0.0.9:445"), "10.0.0.9".parse().ok());
        assert_eq!(peer_address("[fd00::9]:445"), "fd00::9".parse().ok());
        assert_eq!(peer_address("fd00::9"), "fd00::9".parse().ok());
        assert_eq!(peer_address("evil.example"), None);
        assert!(detector_matches("*", "beacon"));
        assert!(detector_matches("scan.*", "scan.slow_vertical"));
        assert!(!detector_matches("scan.*", "scanner"));
    }

    #[test]
    fn a_bare_address_among_the_peers_is_that_host() {
        let rule = AllowRule {
            peers: vec!["198.51.100.7".into()],
            ..Default::default()
        };
        assert!(rule.allows(&evidence("10.0.0.5", "beacon", &["198.51.100.7:443"])));
        assert!(!rule.allows(&evidence("10.0.0.5", "beacon", &["198.51.100.8:443"])));
    }

    #[test]
    fn rules_naming_no_detector_or_a_bad_range_are_refused() {
        let rule = |detectors: &[&str], peers: &[&str]| AllowRule {
            detectors: detectors.iter().map(|d| d.to_string()).collect(),
            peers: peers.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        };
        assert!(rule(
            &["scan.*", "beacon"],
            &["updates.example.org", "198.51.100.7", "10.0.0.0/8"]
        )
        .validate("detection.allow[0]")
        .is_ok());
        let (key, problem) = rule(&["beecon"], &[])
            .validate("detection.allow[0]")
            .unwrap_err();
        assert_eq!(key, "detection.allow[0].detectors[0]");
        assert!(problem.contains("did you mean \"beacon\""), "{problem}");
        let (key, _) = rule(&[], &["10.0.0.5/8"])
            .validate("detection.allow[1]")
            .unwrap_err();
        assert_eq!(key, "detection.allow[1].peers[0]");
    }
}
