//! Well-known services: domains the operator names as everyday
//! destinations (a top list such as Tranco's, the organisation's cloud
//! providers). Software keeps regular contact with them (connectivity
//! checks, update polls, chat and push keepalives) that looks like a
//! beacon by timing alone. A peer counts as such a service when the
//! traffic itself named it under a listed domain: a DNS answer the host
//! got, the server name its TLS client asked for, the Host it sent.
//! Beacon evidence and weak web signals towards it are dropped (counted
//! in `sensor_detection_spared_total{reason="known_service"}`); every other detector still
//! judges it (exfiltration to a listed cloud is still exfiltration).
//!
//! Empty by default: which services are everyday is the site's to say.

use std::{
    collections::HashSet,
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::names::PeerNames;

/// Detectors a well-known service is spared.
pub const SPARED: [&str; 2] = ["beacon", "web."];

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KnownServicesConfig {
    /// Domains (each covers its sub-domains), e.g. "windowsupdate.com".
    pub domains: Vec<String>,
    /// Files of domains: one a line, `#` comments, or CSV whose last field
    /// is the domain (Tranco's and Umbrella's "rank,domain"). Read at
    /// start and on reload.
    pub files: Vec<PathBuf>,
}

/// Domains matched with their sub-domains: "example.org" covers
/// "cdn.example.org", not "badexample.org".
#[derive(Debug, Default, Clone)]
pub struct DomainSet {
    domains: HashSet<String>,
}

impl DomainSet {
    /// Adds a domain (case and a trailing dot do not matter); `false` when
    /// `name` is not one (no dot, or a path).
    pub fn insert(&mut self, name: &str) -> bool {
        let domain = name.trim().trim_end_matches('.').to_ascii_lowercase();
        let ok = domain.contains('.') && !domain.contains(['/', ' ', ',']);
        ok && {
            self.domains.insert(domain);
            true
        }
    }

    /// The listed domain `name` is, or lies under.
    pub fn matching(&self, name: &str) -> Option<&str> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut rest = name.as_str();
        loop {
            if let Some(d) = self.domains.get(rest) {
                return Some(d);
            }
            rest = rest.split_once('.')?.1;
        }
    }

    /// Whether the traffic named `addr` under one of the domains (its
    /// last name: a DNS answer, a TLS server name, an HTTP Host).
    pub fn covers(&self, names: &PeerNames, addr: IpAddr) -> bool {
        !self.is_empty() && names.get(addr).is_some_and(|n| self.matching(n).is_some())
    }

    pub fn len(&self) -> usize {
        self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

impl KnownServicesConfig {
    /// The domains configured and those of the files.
    pub fn load(&self) -> Result<DomainSet> {
        let mut set = DomainSet::default();
        for d in &self.domains {
            set.insert(d);
        }
        for path in &self.files {
            read_file(&mut set, path)?;
        }
        Ok(set)
    }
}

fn read_file(set: &mut DomainSet, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading known services {}", path.display()))?;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        if let Some(domain) = line.rsplit(',').next().filter(|d| !d.trim().is_empty()) {
            set.insert(domain);
        }
    }
    Ok(())
}

/// Whether a well-known service is spared `detector`'s evidence.
pub fn spares(detector: &str) -> bool {
    SPARED
        .iter()
        .any(|s| detector == *s || (s.ends_with('.') && detector.starts_with(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_cover_their_sub_domains_only() {
        let mut set = DomainSet::default();
        assert!(set.insert("Example.ORG."));
        assert!(!set.insert("localhost"));
        assert_eq!(set.matching("cdn.example.org"), Some("example.org"));
        assert_eq!(set.matching("EXAMPLE.org."), Some("example.org"));
        assert_eq!(set.matching("badexample.org"), None);
        assert_eq!(set.matching("org"), None);
    }

    #[test]
    fn files_take_plain_and_ranked_lists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("top.csv");
        std::fs::write(
            &path,
            "# Tranco\n1,google.com\n2,microsoft.com\nwindowsupdate.com\n\n",
        )
        .unwrap();
        let config = KnownServicesConfig {
            domains: vec!["ntp.org".into()],
            files: vec![path],
        };
        let set = config.load().unwrap();
        assert_eq!(set.len(), 4);
        assert!(set.matching("pool.ntp.org").is_some());
        assert!(set.matching("fe2.update.microsoft.com").is_some());
        let missing = KnownServicesConfig {
            files: vec![dir.path().join("nope")],
            ..Default::default()
        };
        let err = missing.load().unwrap_err();
        assert!(format!("{err:#}").contains("known services"), "{err:#}");
    }

    #[test]
    fn beacons_and_web_signals_are_spared_others_not() {
        assert!(spares("beacon"));
        assert!(spares("web.unnamed"));
        assert!(!spares("exfiltration.volume"));
        assert!(!spares("intel.domain"));
    }
}
