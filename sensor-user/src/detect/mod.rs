//! Behavioural detection: one engine, driven by events on packet time, for
//! live traffic and capture files alike. Each detector is a module of its
//! own that turns events into `Evidence`; `incident` aggregates evidence per
//! host into scored incidents. docs/detection.md describes each detector.

pub mod agents;
pub mod allow;
pub mod arpscan;
pub mod beacon;
pub mod bruteforce;
pub mod callback;
pub mod capture;
pub mod certificate;
pub mod dcerpc;
pub mod der;
pub mod dns;
pub mod edges;
pub mod event;
pub mod exfil;
pub mod ftp;
pub mod icmp_tunnel;
pub mod incident;
pub mod inspect;
pub mod intel;
pub mod kerberos;
pub mod known;
pub mod lateral;
pub mod ldap;
pub mod ldap_search;
pub mod logons;
pub mod mail;
pub mod mysql;
pub mod names;
pub mod novelty;
pub mod ntlm;
pub mod pcapfile;
pub mod postgres;
pub mod registry;
pub mod roles;
pub mod scan;
pub mod shell;
pub mod smb;
pub mod smb1;
pub mod text;
pub mod tickets;
pub mod uploads;
pub mod web;
pub mod webscan;
pub mod window;

use std::{collections::HashMap, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use event::{Event, Kind, Nanos, SECOND};
pub use incident::{Incident, Incidents};

/// The most entries each of the engine's tables keeps, so that its memory
/// is bounded whatever the traffic (a flood from random sources, one host
/// probing a million peers). Past a cap, the least recently seen eighth
/// goes at once, counted per table in `sensor_detection_evicted_total`.
/// At about 100 to 300 bytes an entry, the tables together stay under
/// about 1.5 GiB at the very worst.
pub mod limits {
    /// SYNs awaiting an answer (a SYN flood fills this first).
    pub const PENDING_ATTEMPTS: usize = 1 << 20;
    /// Failed probes, per (source, target), per (source, port), per source.
    pub const PROBE_SETS: usize = 1 << 19;
    /// Connection series per (inside host, outside peer, port).
    pub const BEACON_PAIRS: usize = 1 << 20;
    /// Names asked per (host, registered domain), and NXDOMAIN answers per host.
    pub const DNS_DOMAINS: usize = 1 << 19;
    /// Inside hosts with outbound volumes, and destinations per host.
    pub const EXFIL_HOSTS: usize = 1 << 16;
    pub const EXFIL_DESTINATIONS: usize = 1 << 16;
    /// Names of peer addresses.
    pub const PEER_NAMES: usize = 1 << 19;
    /// Hosts that proved their address (`HandshakeProof`, bindings).
    pub const VERIFIED_HOSTS: usize = 1 << 18;
    /// Brute-force buckets per (source, server, port).
    pub const BRUTEFORCE_TARGETS: usize = 1 << 18;
    /// Hosts with peers reached (lateral fan-out, ARP sweeps).
    pub const FANOUT_HOSTS: usize = 1 << 18;
    /// DCE/RPC associations followed (inside connections carrying RPC).
    pub const RPC_ASSOCIATIONS: usize = 1 << 16;
    /// Findings remembered as reported, per detector (`window::Reported`).
    pub const REPORTED: usize = 1 << 16;
}

/// Parameters of every detector; each has a documented default.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionConfig {
    /// Live detection in sensord (telemetry from the datapath). Default true.
    pub enabled: bool,
    /// The networks that are "inside" (sources of lateral movement, beacons
    /// and exfiltration). Default: RFC 1918, RFC 6598, ULA.
    #[serde(deserialize_with = "crate::config::nets")]
    pub internal: Vec<IpNet>,
    pub scan: scan::ScanConfig,
    pub arp: arpscan::ArpScanConfig,
    pub bruteforce: bruteforce::BruteForceConfig,
    pub beacon: beacon::BeaconConfig,
    pub dns: dns::DnsConfig,
    pub lateral: lateral::LateralConfig,
    pub kerberos: tickets::KerberosConfig,
    pub edges: edges::EdgesConfig,
    pub exfiltration: exfil::ExfilConfig,
    pub intel: intel::IntelConfig,
    pub webscan: webscan::WebScanConfig,
    /// Well-known services: spared beacon and weak web evidence.
    pub known_services: known::KnownServicesConfig,
    /// Domain controllers, configured and learned.
    pub roles: roles::RolesConfig,
    /// Evidence these rules cover never reaches an incident.
    pub allow: Vec<allow::AllowRule>,
    /// Evidence about a host within this many seconds of its incident's
    /// last evidence joins it (no new alert); an incident this long without
    /// evidence closes. Default 1800 (30 minutes).
    pub incident_merge_secs: u64,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            enabled: true,
            internal: Vec::new(),
            scan: Default::default(),
            arp: Default::default(),
            bruteforce: Default::default(),
            beacon: Default::default(),
            dns: Default::default(),
            lateral: Default::default(),
            kerberos: Default::default(),
            edges: Default::default(),
            exfiltration: Default::default(),
            intel: Default::default(),
            webscan: Default::default(),
            known_services: Default::default(),
            roles: Default::default(),
            allow: Vec::new(),
            incident_merge_secs: incident::MERGE_GAP / SECOND,
        }
    }
}

impl DetectionConfig {
    /// Checks every threshold, count and window: a 0 (or a negative
    /// ratio) would make a detector fire on everything or on nothing.
    /// Errors name the key, e.g. `detection.scan.ports`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, rule) in self.allow.iter().enumerate() {
            rule.validate(&format!("detection.allow[{i}]"))?;
        }
        let tree = serde_json::to_value(self).expect("the configuration serializes");
        check_positive("detection", &tree)
    }
}

/// Settings that may be 0 or negative: the producer/consumer ratio runs
/// from -1 to 1.
const SIGNED_SETTINGS: [&str; 1] = ["detection.exfiltration.min_pcr"];

fn check_positive(key: &str, value: &serde_json::Value) -> Result<(), (String, String)> {
    use serde_json::Value;
    match value {
        Value::Object(fields) => fields
            .iter()
            .try_for_each(|(name, v)| check_positive(&format!("{key}.{name}"), v)),
        Value::Number(n) if SIGNED_SETTINGS.contains(&key) => {
            let v = n.as_f64().unwrap_or(0.0);
            match (-1.0..=1.0).contains(&v) {
                true => Ok(()),
                false => Err((key.into(), format!("{v} is not between -1 and 1"))),
            }
        }
        Value::Number(n) if n.as_f64().is_some_and(|v| v <= 0.0) => Err((
            key.into(),
            format!(
                "{n} would make the detector fire on everything or nothing; it must be above 0"
            ),
        )),
        // Lists (ports, names) and flags hold no thresholds.
        _ => Ok(()),
    }
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
    /// When the detector concluded (the packet that tipped it).
    pub ts: Nanos,
    /// When the behaviour began: the first packet behind the conclusion
    /// (a beacon's first connection); `ts` where the detector keeps none.
    pub since: Nanos,
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
    arp: arpscan::ArpScanDetector,
    bruteforce: bruteforce::BruteForceDetector,
    beacon: beacon::BeaconDetector,
    dns: dns::DnsDetector,
    lateral: lateral::LateralDetector,
    kerberos: tickets::KerberosDetector,
    smb1: smb1::Smb1Detector,
    edges: edges::EdgeDetector,
    /// Logons read where the protocol shows them (`logons`): (table name
    /// for the metrics, protocol, follower).
    logons: [(&'static str, &'static str, logons::Logons); 5],
    exfil: exfil::ExfilDetector,
    pub intel: intel::IntelDetector,
    webscan: webscan::WebScanDetector,
    roles: roles::Roles,
    mail: mail::MailDetector,
    icmp_tunnel: icmp_tunnel::IcmpTunnelDetector,
    web: web::WebSignals,
    callback: callback::CallbackDetector,
    shells: shell::InteractiveShells,
    destinations: novelty::Destinations,
    uploads: uploads::UploadDetector,
    known_services: known::DomainSet,
    /// Evidence dropped because its peers are well-known services.
    known_service_drops: u64,
    /// Names of peers, from DNS answers, TLS and HTTP, for incidents.
    names: names::PeerNames,
    pub incidents: Incidents,
    allow: Vec<allow::AllowRule>,
    /// Hosts seen completing TCP handshakes they started, and when last:
    /// proof that the address is really theirs (see `verify`).
    verified: HashMap<IpAddr, Nanos>,
    verified_evicted: u64,
    now: Nanos,
    /// Sweeps of aged-out state.
    sweep: window::MinuteSweep,
}

/// How long a proof vouches for a host's address.
pub const VERIFIED_FOR: Nanos = 24 * 3600 * SECOND;
/// A name learnt for an address is kept this long after it was last seen.
const NAMES_FOR: Nanos = 24 * 3600 * SECOND;
/// Idle beacon pairs are forgotten after this long.
const BEACON_HORIZON: Nanos = 24 * 3600 * SECOND;

impl Engine {
    /// An engine; the intel lists named in the configuration are read here.
    pub fn new(config: &DetectionConfig) -> anyhow::Result<Engine> {
        let lists = intel::IntelLists::load(&config.intel.files)?;
        let known_services = config.known_services.load()?;
        Ok(Engine {
            internal: Engine::internal_of(config),
            scan: scan::ScanDetector::new(config.scan.clone()),
            arp: arpscan::ArpScanDetector::new(config.arp.clone()),
            bruteforce: bruteforce::BruteForceDetector::new(config.bruteforce.clone()),
            beacon: beacon::BeaconDetector::new(config.beacon.clone()),
            dns: dns::DnsDetector::new(config.dns.clone()),
            lateral: lateral::LateralDetector::new(config.lateral.clone()),
            kerberos: tickets::KerberosDetector::new(config.kerberos.clone()),
            smb1: smb1::Smb1Detector::default(),
            edges: edges::EdgeDetector::new(config.edges.clone()),
            logons: [
                (
                    "ldap",
                    "LDAP",
                    logons::Logons::new(ldap::LDAP_PORT, ldap::logon_steps),
                ),
                (
                    "smb_logons",
                    "SMB",
                    logons::Logons::new(smb::SMB_PORT, smb::logon_steps),
                ),
                (
                    "ftp_logons",
                    "FTP",
                    logons::Logons::new(ftp::FTP_PORT, ftp::logon_steps),
                ),
                (
                    "mysql_logons",
                    "MySQL",
                    logons::Logons::new(mysql::MYSQL_PORT, mysql::logon_steps),
                ),
                (
                    "postgres_logons",
                    "PostgreSQL",
                    logons::Logons::new(postgres::POSTGRES_PORT, postgres::logon_steps),
                ),
            ],
            exfil: exfil::ExfilDetector::new(config.exfiltration.clone()),
            intel: intel::IntelDetector::new(lists),
            webscan: webscan::WebScanDetector::new(config.webscan.clone()),
            roles: roles::Roles::new(config.roles.clone()),
            mail: mail::MailDetector::default(),
            icmp_tunnel: icmp_tunnel::IcmpTunnelDetector::default(),
            web: web::WebSignals::default(),
            callback: callback::CallbackDetector::default(),
            shells: shell::InteractiveShells::default(),
            destinations: novelty::Destinations::default(),
            uploads: uploads::UploadDetector::default(),
            known_services,
            known_service_drops: 0,
            names: names::PeerNames::default(),
            incidents: Incidents::with_merge_gap(config.incident_merge_secs.max(1) * SECOND),
            allow: config.allow.clone(),
            verified: HashMap::new(),
            verified_evicted: 0,
            now: 0,
            sweep: window::MinuteSweep::default(),
        })
    }

    /// Takes a reloaded configuration: thresholds, allowlists, inside
    /// networks, intel lists and well-known services apply from the next
    /// event, and what the detectors learnt stays. The lists are read
    /// first: if one fails, nothing changes. Exfiltration and web-scanner
    /// settings, when changed, start those detectors' windows afresh.
    pub fn reconfigure(&mut self, config: &DetectionConfig) -> anyhow::Result<()> {
        let lists = intel::IntelLists::load(&config.intel.files)?;
        self.known_services = config.known_services.load()?;
        self.intel.set_lists(lists);
        self.internal = Engine::internal_of(config);
        self.scan.reconfigure(config.scan.clone());
        self.arp.reconfigure(config.arp.clone());
        self.bruteforce.reconfigure(config.bruteforce.clone());
        self.beacon.reconfigure(config.beacon.clone());
        self.dns.reconfigure(config.dns.clone());
        self.lateral.reconfigure(config.lateral.clone());
        self.kerberos.reconfigure(config.kerberos.clone());
        self.edges.reconfigure(config.edges.clone());
        self.roles.reconfigure(config.roles.clone());
        if self.exfil.config() != &config.exfiltration {
            self.exfil = exfil::ExfilDetector::new(config.exfiltration.clone());
        }
        self.webscan = webscan::WebScanDetector::new(config.webscan.clone());
        self.allow = config.allow.clone();
        self.incidents
            .set_merge_gap(config.incident_merge_secs.max(1) * SECOND);
        Ok(())
    }

    fn internal_of(config: &DetectionConfig) -> Vec<IpNet> {
        if config.internal.is_empty() {
            DEFAULT_INTERNAL
                .iter()
                .map(|n| n.parse().unwrap())
                .collect()
        } else {
            config.internal.clone()
        }
    }

    /// The networks that are inside.
    pub fn internal(&self) -> &[IpNet] {
        &self.internal
    }

    pub fn is_internal(&self, addr: IpAddr) -> bool {
        self.internal.iter().any(|n| n.contains(&addr))
    }

    /// Feeds one event (events must come in packet-time order).
    pub fn observe(&mut self, event: &Event) {
        self.now = self.now.max(event.ts);
        let mut found = Vec::new();
        self.scan.observe(event, &mut found);
        self.arp.observe(event, &mut found);
        // A connection whose logon was read is judged by its refusals, not
        // counted as an inferred attempt.
        let logon_read = matches!(event.kind, Kind::FlowEnd(_))
            && self.logons.iter_mut().any(|(_, _, l)| l.take_read(event));
        self.bruteforce.observe(event, logon_read, &mut found);
        let internal_src = self.is_internal(event.src);
        let internal_dst = self.is_internal(event.dst);
        self.beacon
            .observe(event, internal_src && !internal_dst, &mut found);
        // A DNS message is parsed once, for every detector that reads it.
        let question = match event.kind {
            Kind::Dns => dns::parse(&event.payload),
            _ => None,
        };
        if let Some(q) = &question {
            self.dns.observe(event, q, &mut found);
        }
        self.roles.observe(event);
        self.lateral
            .observe(event, internal_src && internal_dst, &self.roles, &mut found);
        self.kerberos.observe(event, &mut found);
        self.smb1
            .observe(event, internal_src && internal_dst, &mut found);
        self.edges
            .observe(event, internal_src && internal_dst, &mut found);
        for (_, protocol, follower) in self.logons.iter_mut() {
            for refused in follower.observe(event) {
                self.bruteforce.refused(&refused, protocol, &mut found);
            }
        }
        self.exfil
            .observe(event, internal_src && !internal_dst, &mut found);
        self.icmp_tunnel.observe(event, internal_src, &mut found);
        self.callback
            .observe(event, (internal_src, internal_dst), &mut found);
        self.shells
            .observe(event, (internal_src, internal_dst), &mut found);
        self.uploads
            .observe(event, internal_src && !internal_dst, &mut found);
        self.mail.observe(
            event,
            internal_src && !internal_dst,
            &self.roles,
            &mut found,
        );
        self.intel.observe(
            event,
            question.as_ref(),
            (internal_src, internal_dst),
            &mut found,
        );
        self.webscan.observe(event, &mut found);
        self.web.observe(
            event,
            (internal_src, internal_dst),
            &self.names,
            &self.known_services,
            &mut found,
        );
        self.names.observe(event, question.as_ref());
        self.destinations
            .observe(event, internal_src && !internal_dst);
        if event.kind == Kind::Proven {
            self.verify(event.src, event.ts);
        }
        self.record(found);
    }

    /// Evidence to incidents, past the allowlists; addresses among the
    /// peers get the names they were last seen under.
    fn record(&mut self, found: Vec<Evidence>) {
        let mut queue = std::collections::VecDeque::from(found);
        while let Some(evidence) = queue.pop_front() {
            if self.allow.iter().any(|rule| rule.allows(&evidence)) {
                continue;
            }
            if known::spares(evidence.detector) && self.only_known_services(&evidence) {
                self.known_service_drops += 1;
                continue;
            }
            // A destination new to the site and its host alone weighs on
            // C&C-like evidence about it.
            queue.extend(self.destinations.modifier(&evidence, self.now));
            let named: Vec<(String, String)> = evidence
                .peers
                .iter()
                .filter_map(|p| {
                    let name = self.names.get(allow::peer_address(p)?)?;
                    Some((p.clone(), name.to_string()))
                })
                .collect();
            let id = self.incidents.add(evidence);
            if let Some(incident) = id.and_then(|id| self.incidents.get_mut(id)) {
                incident.names.extend(named);
            }
        }
    }

    /// Whether every peer the evidence names is a well-known service.
    /// Findings not reported as evidence, by why: peers that are all
    /// well-known services, sweeps that were peer-to-peer retries.
    pub fn spared(&self) -> [(&'static str, u64); 2] {
        [
            ("known_service", self.known_service_drops),
            ("peer_retries", self.scan.peer_retries),
        ]
    }

    fn only_known_services(&self, e: &Evidence) -> bool {
        let addrs: Vec<IpAddr> = e
            .peers
            .iter()
            .filter_map(|p| allow::peer_address(p))
            .collect();
        !addrs.is_empty()
            && addrs
                .iter()
                .all(|a| self.known_services.covers(&self.names, *a))
    }

    /// Evidence found outside the detectors (sensord's anti-spoofing).
    pub fn evidence(&mut self, evidence: Evidence) {
        self.now = self.now.max(evidence.ts);
        self.record(vec![evidence]);
    }

    /// A connection attempt the datapath dropped because the segment policy
    /// separates the two ends.
    pub fn policy_violation(&mut self, event: &Event, segments: (&str, &str)) {
        let attempt = matches!(event.kind, Kind::Syn | Kind::FlowStart);
        if !attempt {
            return;
        }
        self.now = self.now.max(event.ts);
        let (from, to) = segments;
        self.record(vec![Evidence {
            host: event.src,
            detector: "segment_policy",
            technique: "T1599",
            score: 60,
            ts: event.ts,
            since: event.ts,
            peers: vec![event.dst.to_string()],
            count: 1,
            summary: format!(
                "reached for {}:{} in segment {to:?}, which the policy separates from {from:?}; dropped",
                event.dst, event.dport
            ),
        }]);
    }

    /// Records that `host` completed a TCP handshake it started at `ts`: a
    /// forged source address cannot (the answers go to the real owner).
    pub fn verify(&mut self, host: IpAddr, ts: Nanos) {
        self.verified_evicted +=
            window::cap_oldest(&mut self.verified, limits::VERIFIED_HOSTS, |t| *t);
        let seen = self.verified.entry(host).or_insert(ts);
        *seen = (*seen).max(ts);
    }

    pub fn is_verified(&self, host: IpAddr, now: Nanos) -> bool {
        self.verified
            .get(&host)
            .is_some_and(|t| now.saturating_sub(*t) <= VERIFIED_FOR)
    }

    /// Live: lets time-based detectors conclude up to `now` and forgets
    /// what has aged out. Called about once a second.
    pub fn tick(&mut self, now: Nanos) {
        self.now = self.now.max(now);
        let mut found = Vec::new();
        self.scan.tick(now, &mut found);
        self.beacon.flush(&mut found);
        self.record(found);
        if self.sweep.due(now) {
            self.beacon.prune(now.saturating_sub(BEACON_HORIZON));
            self.lateral
                .prune(now.saturating_sub(self.lateral.window()));
            self.roles.prune(now);
            self.mail.reported.prune(now);
            self.icmp_tunnel.reported.prune(now);
            self.web.prune(now);
            self.callback.prune(now);
            self.shells.prune(now);
            self.destinations.prune(now);
            self.uploads.reported.prune(now);
            self.kerberos.prune(now);
            self.smb1.prune(now);
            for (_, _, follower) in self.logons.iter_mut() {
                follower.prune(now);
            }
            self.arp.prune(now.saturating_sub(self.arp.window()));
            self.verified
                .retain(|_, t| now.saturating_sub(*t) <= VERIFIED_FOR);
            window::fit(&mut self.verified);
            self.names.prune(now.saturating_sub(NAMES_FOR));
            self.incidents.prune_held(now);
        }
    }

    /// Lets time-based detectors conclude (the end of a capture).
    pub fn flush(&mut self) {
        let mut found = Vec::new();
        self.scan.flush(self.now, &mut found);
        self.beacon.flush(&mut found);
        self.record(found);
    }

    /// Takes up the admin-edge baseline sensord saved (`edges.json`).
    pub fn restore_edges(&mut self, baseline: edges::Baseline) {
        self.edges.restore(baseline);
    }

    /// The admin-edge baseline, when it changed since last asked.
    pub fn edges_baseline(&mut self) -> Option<edges::Baseline> {
        self.edges.baseline()
    }

    pub fn now(&self) -> Nanos {
        self.now
    }

    /// Entries in the engine's main tables now, for the metric.
    pub fn sizes(&self) -> Vec<(&'static str, usize)> {
        let [pending, probes, reported] = self.scan.sizes();
        let logons = self.logons.iter().map(|(table, _, l)| (*table, l.size()));
        let mut sizes = vec![
            ("scan.pending", pending),
            ("scan.probes", probes),
            ("scan.reported", reported),
            ("beacon.pairs", self.beacon.size()),
            ("dns.domains", self.dns.size()),
            ("exfiltration", self.exfil.size()),
            ("bruteforce", self.bruteforce.size()),
            ("names", self.names.size()),
            ("verified", self.verified.len()),
            ("roles", self.roles.size()),
            ("mail", self.mail.reported.pairs()),
            ("icmp_tunnel", self.icmp_tunnel.reported.pairs()),
            ("web", self.web.size()),
            ("callback", self.callback.size()),
            ("shell", self.shells.size()),
            ("destinations", self.destinations.size()),
            ("uploads", self.uploads.reported.pairs()),
            ("kerberos", self.kerberos.size()),
            ("smb1", self.smb1.size()),
            ("edges", self.edges.size()),
            ("incidents", self.incidents.iter().count()),
            ("incidents.held", self.incidents.held()),
        ];
        sizes.extend(logons);
        sizes
    }

    /// Entries each table dropped to stay within its limit (`limits`), for
    /// the metric.
    pub fn evicted(&self) -> Vec<(&'static str, u64)> {
        let logons = self.logons.iter().map(|(table, _, l)| (*table, l.evicted));
        let mut evicted = vec![
            ("scan.pending", self.scan.evicted[0]),
            ("scan.probes", self.scan.evicted[1]),
            ("beacon.pairs", self.beacon.evicted),
            ("dns.domains", self.dns.evicted),
            ("exfiltration", self.exfil.evicted),
            ("bruteforce", self.bruteforce.evicted),
            ("lateral.fanout", self.lateral.evicted()),
            ("arp.fanout", self.arp.evicted()),
            ("kerberos", self.kerberos.evicted),
            ("smb1", self.smb1.evicted),
            ("edges", self.edges.evicted),
            ("callback", self.callback.evicted),
            ("shell", self.shells.evicted),
            ("destinations", self.destinations.evicted),
            ("user_agents", self.web.agents.evicted),
            ("names", self.names.evicted),
            ("verified", self.verified_evicted),
        ];
        evicted.extend(logons);
        evicted
    }
}
