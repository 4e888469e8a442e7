//! Alerts out: one JSON document per line in an alert file (ECS-style field
//! names, so Filebeat, Vector or Fluent Bit ship it as is) and, optionally,
//! the same document POSTed to a webhook. An incident is reported when it
//! opens, when it grows (score, detectors, an action), and when it closes.
//! docs/alerts.md documents the schema.

use std::{
    fs::OpenOptions,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        mpsc::{sync_channel, SyncSender},
        Arc,
    },
    time::{Duration, UNIX_EPOCH},
};

use log::warn;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::detect::{allow::peer_address, incident::Action, Incident, Nanos};

mod outlet;
mod spool;
pub mod syslog;
pub mod webhook;

use outlet::OutletStats;
pub use outlet::{SendError, Sink};
use spool::Spool;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// JSON-lines alert file. Default: next to the state file, alerts.jsonl.
    pub file: Option<PathBuf>,
    /// URL that receives each alert as an HTTP POST of the same JSON.
    pub webhook: Option<String>,
    /// A file holding the key that signs each webhook POST (HMAC-SHA256,
    /// `X-Sensor-Signature-256`). Kept out of the configuration so the
    /// configuration may be shown.
    pub webhook_secret_file: Option<PathBuf>,
    /// Extra headers on each webhook POST (an `Authorization`, say).
    pub webhook_headers: std::collections::BTreeMap<String, String>,
    /// Alerts sent by syslog (RFC 5424).
    pub syslog: Option<syslog::SyslogConfig>,
    /// Alerts that may wait on disk for each of the webhook and syslog
    /// while their receiver is unreachable (default 100,000; beyond, the
    /// newest are dropped and counted).
    pub spool_max: Option<usize>,
    /// The gateway's name in alerts (`observer.name`). Default: the host
    /// name.
    pub observer_name: Option<String>,
}

impl AlertConfig {
    /// The webhook's signing key, read from `webhook_secret_file`.
    pub fn webhook_secret(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(path) = &self.webhook_secret_file else {
            return Ok(None);
        };
        let text = std::fs::read(path)
            .map_err(|e| format!("alerts.webhook_secret_file {}: {e}", path.display()))?;
        let key = text.trim_ascii().to_vec();
        if key.len() < 16 {
            return Err(format!(
                "alerts.webhook_secret_file {}: the key is shorter than 16 bytes",
                path.display()
            ));
        }
        Ok(Some(key))
    }
}

/// What happened to the incident that this alert reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened,
    Updated,
    Closed,
    /// Not an alert: the incident as it stands, for `sensorctl --json`.
    Snapshot,
}

impl Change {
    fn label(self) -> &'static str {
        match self {
            Change::Opened => "incident-opened",
            Change::Updated => "incident-updated",
            Change::Closed => "incident-closed",
            Change::Snapshot => "incident-snapshot",
        }
    }
}

/// The gateway the alerts come from (ECS `observer.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Observer {
    /// The machine's host name.
    pub hostname: String,
    /// The name operators know the gateway by (`[alerts] observer_name`;
    /// default the host name).
    pub name: String,
    /// In fleet mode: the site and the gateway's name in the fleet.
    pub fleet: Option<(String, String)>,
}

impl Observer {
    pub fn local(name: Option<&str>) -> Observer {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        Observer {
            name: name.unwrap_or(&hostname).to_string(),
            hostname,
            fleet: None,
        }
    }

    /// The gateway as configured: with its site and name in the fleet.
    pub fn of(config: &crate::config::Config) -> Observer {
        let mut observer = Observer::local(config.alerts.observer_name.as_deref());
        observer.fleet = config
            .fleet
            .as_ref()
            .map(|f| (f.site.clone(), f.gateway_name()));
        observer
    }
}

impl Observer {
    /// An incident as it stands, for sensorctl's `--json` output: the
    /// alert document, `event.action` "incident-snapshot".
    pub fn view(&self, incident: &Incident) -> Value {
        document(
            incident,
            Change::Snapshot,
            crate::clock::unix_now_ns(),
            self,
        )
    }
}

/// Times to the microsecond: evidence and actions within one millisecond
/// keep their order.
fn rfc3339(ns: Nanos) -> String {
    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// The ATT&CK technique ids of `techniques` (a sub-technique's parent
/// included), and the sub-technique ids, as ECS files them.
fn attack_ids<'a>(techniques: impl Iterator<Item = &'a &'a str>) -> (Vec<String>, Vec<String>) {
    let mut ids = std::collections::BTreeSet::new();
    let mut subs = std::collections::BTreeSet::new();
    for t in techniques {
        match t.split_once('.') {
            Some((parent, _)) => {
                ids.insert(parent.to_string());
                subs.insert(t.to_string());
            }
            None => {
                ids.insert(t.to_string());
            }
        }
    }
    (ids.into_iter().collect(), subs.into_iter().collect())
}

fn attack_reference(id: &str) -> String {
    format!(
        "https://attack.mitre.org/techniques/{}/",
        id.replace('.', "/")
    )
}

/// The one document for an incident (schema: docs/alert.schema.json,
/// explained in docs/alerts.md): alerts in the file, the webhook and
/// syslog, and sensorctl's `--json` output. ECS fields where ECS has one:
/// the suspect is `source.*` (never `host.*`, which shippers fill with
/// their own machine), the main peer `destination.*`, the gateway
/// `observer.*`; `event.id` is new for every document, and
/// `sensor.incident.uid` the same for every document about one incident.
pub fn document(incident: &Incident, change: Change, now: Nanos, observer: &Observer) -> Value {
    let mut ips: Vec<String> = vec![incident.host.to_string()];
    let mut domains: Vec<String> = Vec::new();
    for p in &incident.peers {
        match peer_address(p) {
            Some(a) => ips.push(a.to_string()),
            None => domains.push(p.clone()),
        }
    }
    domains.extend(incident.names.values().cloned());
    domains.sort();
    domains.dedup();
    ips.sort();
    ips.dedup();
    let latest = incident.evidence.iter().max_by_key(|e| e.ts);
    let strongest = incident.evidence.iter().max_by_key(|e| (e.score, e.ts));
    let message = format!(
        "{} {} incident {} on {}: {}",
        incident.severity,
        incident.status,
        incident.id,
        incident.host,
        latest.map(|e| e.summary.as_str()).unwrap_or(""),
    );
    let acted = incident
        .actions
        .iter()
        .any(|a| a.action == "isolate" || a.action == "block");
    let (technique_ids, subtechnique_ids) = attack_ids(incident.techniques.iter());
    let mut doc = json!({
        "@timestamp": rfc3339(now),
        "ecs": {"version": "8.11.0"},
        "message": message,
        "event": {
            "kind": "alert",
            "category": ["intrusion_detection", "network"],
            "type": if acted { json!(["info", "denied"]) } else { json!(["info"]) },
            "action": change.label(),
            "id": uuid::Uuid::new_v4().to_string(),
            "dataset": "sensor.incident",
            "module": "sensor",
            "severity": incident.score,
            "risk_score": incident.score,
            "start": rfc3339(incident.first_seen),
            "end": rfc3339(incident.last_seen),
            "outcome": if acted { "success" } else { "unknown" },
        },
        "observer": {
            "vendor": "sensor", "product": "sensord", "type": "ids",
            "version": env!("CARGO_PKG_VERSION"),
            "hostname": observer.hostname, "name": observer.name,
        },
        "source": {"ip": incident.host.to_string(), "address": incident.host.to_string()},
        "related": {"ip": ips, "hosts": domains},
        "rule": {"name": incident.detectors.iter().collect::<Vec<_>>()},
        "threat": {
            "framework": "MITRE ATT&CK",
            "technique": {
                "id": technique_ids,
                "reference": technique_ids.iter().map(|t| attack_reference(t)).collect::<Vec<_>>(),
                "subtechnique": {
                    "id": subtechnique_ids,
                    "reference": subtechnique_ids.iter().map(|t| attack_reference(t)).collect::<Vec<_>>(),
                },
            },
        },
        "sensor": {
            "incident": {
                "id": incident.id,
                "uid": incident.uid,
                "status": incident.status,
                "triage": incident.triage,
                "severity": incident.severity,
                "score": incident.score,
                "false_positive": incident.false_positive,
                "opened": rfc3339(incident.opened),
                "detectors": incident.detectors,
                "techniques": incident.techniques,
                "peers": incident.peers,
                "names": incident.names.iter().map(|(peer, name)| json!({"peer": peer, "name": name})).collect::<Vec<_>>(),
                "evidence": incident.evidence.iter().map(|e| json!({
                    "detector": e.detector, "technique": e.technique, "score": e.score,
                    "time": rfc3339(e.ts), "since": rfc3339(e.since), "peers": e.peers, "count": e.count,
                    "summary": e.summary,
                })).collect::<Vec<_>>(),
                "actions": incident.actions.iter().map(action_json).collect::<Vec<_>>(),
            },
        },
    });
    // The main peer: the strongest evidence's first address (with the
    // name the traffic gave it), else its first domain.
    let main_peer = strongest.and_then(|e| {
        let mut peers = e.peers.iter();
        peers
            .clone()
            .find(|p| peer_address(p).is_some())
            .or_else(|| peers.next())
    });
    if let Some(peer) = main_peer {
        doc["destination"] = destination(peer, &incident.names);
    }
    if let Some((site, gateway)) = &observer.fleet {
        doc["sensor"]["fleet"] = json!({"site": site, "gateway": gateway});
    }
    if change != Change::Snapshot {
        if let Some(action) = incident.actions.last() {
            doc["sensor"]["action"] = action_json(action);
        }
    }
    doc
}

/// `destination.*` for a peer as evidence names it: an address (with its
/// port, and the name the traffic gave it) or a domain.
fn destination(peer: &str, names: &std::collections::BTreeMap<String, String>) -> Value {
    let Some(ip) = peer_address(peer) else {
        return json!({"address": peer, "domain": peer});
    };
    let mut d = json!({"ip": ip.to_string(), "address": ip.to_string()});
    let port = peer
        .rsplit_once(':')
        .filter(|_| peer.parse::<std::net::IpAddr>().is_err())
        .and_then(|(_, p)| p.parse::<u16>().ok());
    if let Some(port) = port {
        d["port"] = json!(port);
    }
    if let Some(name) = names.get(&ip.to_string()).or_else(|| names.get(peer)) {
        d["domain"] = json!(name);
    }
    d
}

fn action_json(a: &Action) -> Value {
    json!({"time": rfc3339(a.ts), "action": a.action, "target": a.target, "detail": a.detail})
}

/// Delivery results, for the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delivered {
    pub file_ok: u64,
    pub file_failed: u64,
}

/// A network sink with its spool and sender thread.
struct Outlet {
    name: &'static str,
    spool: Arc<Spool>,
    wake: SyncSender<()>,
    stats: Arc<OutletStats>,
    /// Whether the last spool write failed (said once).
    failing: bool,
}

pub struct Alerts {
    file: Option<PathBuf>,
    outlets: Vec<Outlet>,
    pub delivered: Delivered,
}

/// Alerts that may wait on disk per outlet, by default.
pub const SPOOL_MAX: usize = 100_000;

impl Alerts {
    /// The sinks `config` names; the webhook's and syslog's spools live in
    /// `spool_dir`, and what an earlier run left there is sent first.
    pub fn new(
        file: Option<PathBuf>,
        config: &AlertConfig,
        spool_dir: &Path,
    ) -> anyhow::Result<Alerts> {
        let mut outlets = Vec::new();
        let max = config.spool_max.unwrap_or(SPOOL_MAX);
        if let Some(url) = &config.webhook {
            let secret = config.webhook_secret().map_err(anyhow::Error::msg)?;
            let sink = webhook::Webhook::new(url.clone(), secret, config.webhook_headers.clone());
            outlets.push(Outlet::start(
                "webhook",
                Box::new(sink),
                &spool_dir.join("webhook"),
                max,
            )?);
        }
        if let Some(syslog) = &config.syslog {
            let sink = syslog::Syslog::new(syslog.clone())
                .map_err(|e| anyhow::anyhow!("alerts.syslog: {e}"))?;
            outlets.push(Outlet::start(
                "syslog",
                Box::new(sink),
                &spool_dir.join("syslog"),
                max,
            )?);
        }
        Ok(Alerts {
            file,
            outlets,
            delivered: Delivered::default(),
        })
    }

    /// Adds a sink fed from a spool of its own in `dir` (the fleet's
    /// incidents stream).
    pub fn add_outlet(
        &mut self,
        name: &'static str,
        sink: Box<dyn Sink>,
        dir: &Path,
        max: usize,
    ) -> anyhow::Result<()> {
        self.outlets.push(Outlet::start(name, sink, dir, max)?);
        Ok(())
    }

    pub fn emit(&mut self, doc: Value) {
        let line = format!("{doc}\n");
        if let Some(path) = &self.file {
            let written = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            match written {
                Ok(()) => self.delivered.file_ok += 1,
                Err(e) => {
                    self.delivered.file_failed += 1;
                    warn!("alert file {}: {e}", path.display());
                }
            }
        }
        for outlet in &mut self.outlets {
            outlet.push(line.trim_end().as_bytes());
        }
    }

    /// Per outlet: (name, sent, retried, refused, dropped, waiting).
    pub fn outlet_figures(&self) -> Vec<(&'static str, [u64; 4], usize)> {
        use std::sync::atomic::Ordering::Relaxed;
        self.outlets
            .iter()
            .map(|o| {
                let s = &o.stats;
                (
                    o.name,
                    [
                        s.sent.load(Relaxed),
                        s.retried.load(Relaxed),
                        s.refused.load(Relaxed),
                        s.dropped.load(Relaxed),
                    ],
                    o.spool.len(),
                )
            })
            .collect()
    }
}

impl Outlet {
    fn start(
        name: &'static str,
        sink: Box<dyn outlet::Sink>,
        dir: &Path,
        max: usize,
    ) -> anyhow::Result<Outlet> {
        let spool = Arc::new(Spool::open(dir, max)?);
        if !spool.is_empty() {
            log::info!(
                "{name}: {} alert(s) from before the restart wait in {}",
                spool.len(),
                dir.display()
            );
        }
        let stats = Arc::new(OutletStats::default());
        let (wake, woken) = sync_channel(1);
        let (thread_spool, thread_stats) = (spool.clone(), stats.clone());
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || outlet::run(name, sink, thread_spool, woken, thread_stats))?;
        Ok(Outlet {
            name,
            spool,
            wake,
            stats,
            failing: false,
        })
    }

    /// Spools an alert and wakes the sender; a full or failing spool drops
    /// it, counted and said once.
    fn push(&mut self, alert: &[u8]) {
        match self.spool.push(alert) {
            Ok(()) => {
                self.failing = false;
                let _ = self.wake.try_send(());
            }
            Err(e) => {
                self.stats
                    .dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if !self.failing {
                    warn!("{}: {e}", self.name);
                }
                self.failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Evidence, Incidents};

    fn observer() -> Observer {
        Observer {
            hostname: "gw1".into(),
            name: "city-hall".into(),
            fleet: Some(("city-a".into(), "gw1".into())),
        }
    }

    fn incident(
        book: &mut Incidents,
        detector: &'static str,
        technique: &'static str,
        peers: &[&str],
    ) -> u64 {
        book.add(Evidence {
            host: "10.10.0.11".parse().unwrap(),
            detector,
            technique,
            score: 90,
            ts: 1_700_000_000_000_000_000,
            since: 1_699_999_000_000_000_000,
            peers: peers.iter().map(|p| p.to_string()).collect(),
            count: 20,
            summary: "20 connections every 5s".into(),
        })
        .unwrap()
    }

    /// Every document must be valid against the published schema.
    pub(crate) fn schema_errors(doc: &Value) -> Vec<String> {
        let text = include_str!("../../../docs/alert.schema.json");
        let schema: Value = serde_json::from_str(text).unwrap();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        validator
            .iter_errors(doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    #[test]
    fn documents_carry_ecs_fields_and_the_incident() {
        let mut book = Incidents::default();
        let id = incident(
            &mut book,
            "beacon",
            "T1071.001",
            &["203.0.113.66:443", "c2.example"],
        );
        let i = book.get_mut(id).unwrap();
        i.names.insert("203.0.113.66".into(), "c2.example".into());
        i.actions.push(Action {
            ts: 1_700_000_000_500_000_000,
            action: "isolate".into(),
            target: "10.10.0.11".into(),
            detail: "rule 0".into(),
        });
        let doc = document(
            book.get(id).unwrap(),
            Change::Opened,
            1_700_000_001_000_000_000,
            &observer(),
        );
        assert_eq!(schema_errors(&doc), Vec::<String>::new(), "{doc}");
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["event"]["action"], "incident-opened");
        assert_eq!(doc["event"]["type"], json!(["info", "denied"]));
        assert_eq!(doc["source"]["ip"], "10.10.0.11");
        assert!(doc.get("host").is_none(), "the suspect is not host.*");
        assert_eq!(
            doc["destination"],
            json!({"ip": "203.0.113.66", "address": "203.0.113.66", "port": 443, "domain": "c2.example"})
        );
        assert_eq!(doc["observer"]["name"], "city-hall");
        assert_eq!(doc["observer"]["hostname"], "gw1");
        assert_eq!(doc["related"]["ip"], json!(["10.10.0.11", "203.0.113.66"]));
        assert_eq!(doc["related"]["hosts"], json!(["c2.example"]));
        assert_eq!(doc["threat"]["technique"]["id"], json!(["T1071"]));
        assert_eq!(
            doc["threat"]["technique"]["subtechnique"]["id"],
            json!(["T1071.001"])
        );
        assert_eq!(
            doc["threat"]["technique"]["subtechnique"]["reference"],
            json!(["https://attack.mitre.org/techniques/T1071/001/"])
        );
        assert_eq!(
            doc["sensor"]["incident"]["names"],
            json!([{"peer": "203.0.113.66", "name": "c2.example"}])
        );
        assert_eq!(doc["sensor"]["action"]["action"], "isolate");
        assert_eq!(doc["@timestamp"], "2023-11-14T22:13:21.000000Z");
        assert_eq!(doc["sensor"]["incident"]["score"], 90);
    }

    #[test]
    fn every_document_is_new_and_every_incident_keeps_its_uid() {
        let mut book = Incidents::default();
        let id = incident(&mut book, "scan.vertical", "T1046", &["10.20.0.21"]);
        let i = book.get(id).unwrap();
        let a = document(i, Change::Opened, 1, &observer());
        let b = document(i, Change::Updated, 2, &observer());
        assert_ne!(a["event"]["id"], b["event"]["id"]);
        assert_eq!(
            a["sensor"]["incident"]["uid"],
            b["sensor"]["incident"]["uid"]
        );
        // A peer without a port; a domain as the main peer.
        assert_eq!(a["destination"]["ip"], "10.20.0.21");
        assert!(a["destination"].get("port").is_none());
        let mut book = Incidents::default();
        let id = incident(&mut book, "dns.tunnel", "T1071.004", &["t.example.org"]);
        let snapshot = document(book.get(id).unwrap(), Change::Snapshot, 3, &observer());
        assert_eq!(
            snapshot["destination"],
            json!({"address": "t.example.org", "domain": "t.example.org"})
        );
        assert_eq!(snapshot["event"]["action"], "incident-snapshot");
        assert!(snapshot["sensor"].get("action").is_none());
        for doc in [&a, &b, &snapshot] {
            assert_eq!(schema_errors(doc), Vec::<String>::new(), "{doc}");
        }
        // The schema is strict: a stray field or a wrong value is refused.
        let mut bad = a.clone();
        bad["host"] = json!({"ip": ["10.10.0.11"]});
        assert!(!schema_errors(&bad).is_empty());
        let mut bad = a.clone();
        bad["threat"]["technique"]["id"] = json!(["T1071.001"]);
        assert!(!schema_errors(&bad).is_empty());
    }

    /// A one-request HTTP server: the request's head and body, answered
    /// with `status`.
    fn serve_once(listener: &std::net::TcpListener, status: &str) -> (String, Vec<u8>) {
        use std::io::{BufRead, BufReader, Read};
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line.trim().is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        std::io::Write::write_all(reader.get_mut(), answer.as_bytes()).unwrap();
        (head, body)
    }

    #[test]
    fn the_webhook_gets_each_alert_signed_and_retries_until_it_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "0123456789abcdef-secret\n").unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = AlertConfig {
            webhook: Some(format!(
                "http://{}/hook/T0K3N",
                listener.local_addr().unwrap()
            )),
            webhook_secret_file: Some(key),
            webhook_headers: [("Authorization".to_string(), "Bearer abc".to_string())].into(),
            ..Default::default()
        };
        let mut alerts = Alerts::new(None, &config, &dir.path().join("spool")).unwrap();
        alerts.emit(json!({"event": {"action": "incident-opened"}}));
        // Down for the first try: the alert waits and comes again.
        let (_, first) = serve_once(&listener, "503 Service Unavailable");
        let (head, body) = serve_once(&listener, "204 No Content");
        assert_eq!(first, body, "the same alert, again");
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("post /hook/t0k3n "), "{head}");
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains("authorization: bearer abc"));
        let signature = webhook::signature(b"0123456789abcdef-secret", &body);
        assert!(
            head.contains(&format!("x-sensor-signature-256: {signature}")),
            "{head}"
        );
        let doc: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["event"]["action"], "incident-opened");
        let delivered = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            alerts.outlet_figures()[0].1 == [1, 1, 0, 0]
        });
        assert!(delivered, "{:?}", alerts.outlet_figures());
        assert_eq!(alerts.outlet_figures()[0].2, 0, "the spool is empty");
    }

    /// The shipped Filebeat and Vector examples parse, and read the alert
    /// file where the package's configuration puts it.
    #[test]
    fn the_shipping_examples_parse_and_read_the_package_alert_file() {
        let package: toml::Value =
            toml::from_str(include_str!("../../../packaging/sensord.toml")).unwrap();
        let alert_file = package["alerts"]["file"].as_str().unwrap();
        let vector: toml::Value =
            toml::from_str(include_str!("../../../docs/examples/vector.toml")).unwrap();
        assert_eq!(
            vector["sources"]["sensor_alerts"]["include"][0].as_str(),
            Some(alert_file)
        );
        assert_eq!(
            vector["sinks"]["siem"]["inputs"][0].as_str(),
            Some("sensor_documents")
        );
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/filebeat.yml");
        let out = std::process::Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
                path,
            ])
            .output()
            .expect("python3 (with PyYAML, which cargo xtask setup installs)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let filebeat: Value = serde_json::from_slice(&out.stdout).unwrap();
        let input = &filebeat["filebeat.inputs"][0];
        assert_eq!(input["paths"][0], alert_file);
        assert_eq!(input["parsers"][0]["ndjson"]["target"], "");
    }

    #[test]
    fn a_short_webhook_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "short").unwrap();
        let config = AlertConfig {
            webhook_secret_file: Some(key),
            ..Default::default()
        };
        assert!(config
            .webhook_secret()
            .unwrap_err()
            .contains("shorter than 16"));
    }

    #[test]
    fn the_file_gets_one_line_per_alert() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let mut alerts =
            Alerts::new(Some(path.clone()), &AlertConfig::default(), dir.path()).unwrap();
        alerts.emit(json!({"a": 1}));
        alerts.emit(json!({"a": 2}));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, vec![json!({"a": 1}), json!({"a": 2})]);
        assert_eq!(alerts.delivered.file_ok, 2);
    }
}
