//! Behavioural detection: one engine, driven by events on packet time, for
//! live traffic and capture files alike. Each detector is a module of its
//! own that turns events into `Evidence`; `incident` aggregates evidence per
//! host into scored incidents. docs/detection.md describes each detector.

pub mod beacon;
pub mod bruteforce;
pub mod capture;
pub mod dns;
pub mod event;
pub mod exfil;
pub mod incident;
pub mod intel;
pub mod lateral;
pub mod scan;
mod window;

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use event::{Event, Kind, Nanos, SECOND};
pub use incident::{Incident, Incidents};

/// Parameters of every detector; each has a documented default.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionConfig {
    /// The networks that are "inside" (sources of lateral movement, beacons
    /// and exfiltration). Default: RFC 1918, RFC 6598, ULA.
    pub internal: Vec<IpNet>,
    pub scan: scan::ScanConfig,
    pub bruteforce: bruteforce::BruteForceConfig,
    pub beacon: beacon::BeaconConfig,
    pub dns: dns::DnsConfig,
    pub lateral: lateral::LateralConfig,
    pub exfiltration: exfil::ExfilConfig,
    pub intel: intel::IntelConfig,
}

/// What one detector concluded about one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// The host doing it (the suspect).
    pub host: IpAddr,
    /// Detector name, e.g. "scan.vertical".
    pub detector: &'static str,
    /// MITRE ATT&CK technique.
    pub technique: &'static str,
    /// 0 to 100.
    pub score: u8,
    pub ts: Nanos,
    /// Who it talked to (the scanned host, the C&C, the domain).
    pub peers: Vec<String>,
    /// How many observations back it (probes, connections, queries).
    pub count: u64,
    pub summary: String,
}

const DEFAULT_INTERNAL: [&str; 6] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
    "fe80::/10",
];

/// The detectors, fed one event at a time.
pub struct Engine {
    internal: Vec<IpNet>,
    scan: scan::ScanDetector,
    bruteforce: bruteforce::BruteForceDetector,
    beacon: beacon::BeaconDetector,
    dns: dns::DnsDetector,
    lateral: lateral::LateralDetector,
    exfil: exfil::ExfilDetector,
    pub intel: intel::IntelDetector,
    pub incidents: Incidents,
    now: Nanos,
}

impl Engine {
    /// An engine; the intel lists named in the configuration are read here.
    pub fn new(config: &DetectionConfig) -> anyhow::Result<Engine> {
        let lists = intel::IntelLists::load(&config.intel.files)?;
        let internal = if config.internal.is_empty() {
            DEFAULT_INTERNAL
                .iter()
                .map(|n| n.parse().unwrap())
                .collect()
        } else {
            config.internal.clone()
        };
        Ok(Engine {
            internal,
            scan: scan::ScanDetector::new(config.scan.clone()),
            bruteforce: bruteforce::BruteForceDetector::new(config.bruteforce.clone()),
            beacon: beacon::BeaconDetector::new(config.beacon.clone()),
            dns: dns::DnsDetector::new(config.dns.clone()),
            lateral: lateral::LateralDetector::new(config.lateral.clone()),
            exfil: exfil::ExfilDetector::new(config.exfiltration.clone()),
            intel: intel::IntelDetector::new(lists),
            incidents: Incidents::default(),
            now: 0,
        })
    }

    pub fn is_internal(&self, addr: IpAddr) -> bool {
        self.internal.iter().any(|n| n.contains(&addr))
    }

    /// Feeds one event (events must come in packet-time order).
    pub fn observe(&mut self, event: &Event) {
        self.now = self.now.max(event.ts);
        let mut found = Vec::new();
        self.scan.observe(event, &mut found);
        self.bruteforce.observe(event, &mut found);
        let internal_src = self.is_internal(event.src);
        let internal_dst = self.is_internal(event.dst);
        self.beacon
            .observe(event, internal_src && !internal_dst, &mut found);
        self.dns.observe(event, &mut found);
        self.lateral
            .observe(event, internal_src && internal_dst, &mut found);
        self.exfil
            .observe(event, internal_src && !internal_dst, &mut found);
        self.intel.observe(event, internal_src, &mut found);
        for evidence in found {
            self.incidents.add(evidence);
        }
    }

    /// Lets time-based detectors conclude (the end of a capture, or a
    /// periodic tick live).
    pub fn flush(&mut self) {
        let mut found = Vec::new();
        self.scan.flush(self.now, &mut found);
        self.beacon.flush(&mut found);
        for evidence in found {
            self.incidents.add(evidence);
        }
    }
}

/// Analyses a capture file: every event through a fresh engine.
pub fn analyze_file(
    path: &std::path::Path,
    config: &DetectionConfig,
) -> anyhow::Result<(Vec<Incident>, capture::CaptureStats)> {
    let mut engine = Engine::new(config)?;
    let stats = capture::read_file(path, &mut |event| engine.observe(&event))?;
    engine.flush();
    Ok((engine.incidents.list(), stats))
}
