//! Every detector's name, in one list: what response rules, allowlists and
//! filters may name. A rule naming no detector (a typo, `beecon`) would
//! silently never match, so configurations are checked against this list.

/// The detectors, as evidence names them (docs/detection.md).
pub const DETECTORS: [&str; 64] = [
    "beacon",
    "binding.moved",
    "bruteforce",
    "bruteforce.refused",
    "bruteforce.slow",
    "bruteforce.spray",
    "callback.new_peer",
    "callback.reverse",
    "credential.asrep_roast",
    "credential.coercion",
    "credential.dcshadow",
    "credential.dcsync",
    "credential.hive_dump",
    "credential.kerberoast",
    "credential.overpass_the_hash",
    "credential.zerologon",
    "destination.new",
    "dns.nxdomain_burst",
    "dns.tunnel",
    "dns.unique_names",
    "evasion.log_cleared",
    "exfiltration",
    "exfiltration.smtp",
    "exfiltration.upload",
    "exploit.smb1_transaction",
    "intel.address",
    "intel.domain",
    "intel.tls_fingerprint",
    "lateral.admin_share_write",
    "lateral.dcom",
    "lateral.fanout",
    "lateral.new_edge",
    "lateral.remote_registry",
    "lateral.remote_service",
    "lateral.scheduled_task",
    "lateral.winrm",
    "lateral.wmi",
    "recon.accounts",
    "recon.directory",
    "recon.groups",
    "recon.logged_on_users",
    "recon.rpc_endpoints",
    "recon.sessions",
    "recon.sid_lookup",
    "scan.arp",
    "scan.horizontal",
    "scan.icmp_sweep",
    "scan.rpc_enum",
    "scan.slow_horizontal",
    "scan.slow_vertical",
    "scan.vertical",
    "scan.web",
    "segment_policy",
    "shell.interactive",
    "spoofing",
    "tunnel.icmp",
    "web.certificate_age",
    "web.certificate_name",
    "web.no_host",
    "web.no_user_agent",
    "web.odd_port",
    "web.rare_user_agent",
    "web.self_signed",
    "web.unnamed",
];

/// Whether a detector pattern (`allow::detector_matches`: a name, a
/// family `scan.*`, or `*`) names at least one detector; if not, the
/// closest name, for the error.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let matches = DETECTORS
        .iter()
        .any(|d| super::allow::detector_matches(pattern, d));
    if matches {
        return Ok(());
    }
    let closest = DETECTORS
        .iter()
        .min_by_key(|d| distance(pattern.trim_end_matches(".*"), d))
        .expect("detectors exist");
    Err(format!(
        "{pattern:?} names no detector (did you mean {closest:?}? docs/detection.md lists them)"
    ))
}

/// The `&'static` name for a detector or technique read back from the
/// incident store. Detector names come from the list; anything else (an
/// ATT&CK technique id) is kept once for the life of the process, so the
/// set grows only with the distinct names stored, a few dozen.
pub fn intern(name: &str) -> &'static str {
    use std::{
        collections::HashSet,
        sync::{Mutex, OnceLock},
    };
    if let Some(known) = DETECTORS.iter().find(|d| **d == name) {
        return known;
    }
    static OTHERS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut others = OTHERS
        .get_or_init(Default::default)
        .lock()
        .expect("interner lock");
    if let Some(kept) = others.get(name) {
        return kept;
    }
    let kept: &'static str = Box::leak(name.to_owned().into_boxed_str());
    others.insert(kept);
    kept
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_checked_against_the_detectors() {
        for good in ["*", "beacon", "scan.*", "web.*", "lateral.wmi"] {
            assert_eq!(check_pattern(good), Ok(()), "{good}");
        }
        let e = check_pattern("beecon").unwrap_err();
        assert!(e.contains("\"beacon\""), "{e}");
        assert!(check_pattern("scna.*").is_err());
        assert!(check_pattern("web.unamed")
            .unwrap_err()
            .contains("web.unnamed"));
    }

    /// Every name a detector gives its evidence is in the list: each
    /// string literal of the detectors' sources shaped like a detector's
    /// name (a family, a dot, a word) is one, or a table's name.
    #[test]
    fn the_list_holds_every_name_the_sources_give() {
        const FAMILIES: [&str; 17] = [
            "beacon",
            "binding",
            "bruteforce",
            "callback",
            "credential",
            "destination",
            "dns",
            "evasion",
            "exfiltration",
            "exploit",
            "intel",
            "lateral",
            "recon",
            "scan",
            "shell",
            "tunnel",
            "web",
        ];
        // Tables and counters, not detectors (`sensor_detection_entries`).
        const NOT_DETECTORS: [&str; 7] = [
            "beacon.pairs",
            "dns.domains",
            "scan.pending",
            "scan.probes",
            "scan.reported",
            "scan.peer_retries",
            "incidents.held",
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/detect");
        let mut found = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let source = std::fs::read_to_string(&path).unwrap();
            // The module's own code, not its tests.
            let code = source.split("#[cfg(test)]").next().unwrap();
            for literal in code.split('"').skip(1).step_by(2) {
                let Some((family, rest)) = literal.split_once('.') else {
                    continue;
                };
                let shaped = FAMILIES.contains(&family)
                    && !rest.is_empty()
                    && rest
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit());
                if shaped && !NOT_DETECTORS.contains(&literal) {
                    assert!(
                        DETECTORS.contains(&literal),
                        "{literal:?} in {} is not in DETECTORS",
                        path.display()
                    );
                    found += 1;
                }
            }
        }
        assert!(found > 50, "only {found} names read: is the scan broken?");
    }
}
