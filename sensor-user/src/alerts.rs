//! Alerts out: one JSON document per line in an alert file (ECS-style field
//! names, so Filebeat, Vector or Fluent Bit ship it as is) and, optionally,
//! the same document POSTed to a webhook. An incident is reported when it
//! opens, when it grows (score, detectors, an action), and when it closes.
//! docs/alerts.md documents the schema.

use std::{
    fs::OpenOptions,
    io::Write,
    path::PathBuf,
    sync::mpsc::{sync_channel, SyncSender, TrySendError},
    time::{Duration, UNIX_EPOCH},
};

use log::warn;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::detect::{allow::peer_address, incident::Action, Incident, Nanos};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// JSON-lines alert file. Default: next to the state file, alerts.jsonl.
    pub file: Option<PathBuf>,
    /// URL that receives each alert as an HTTP POST of the same JSON.
    pub webhook: Option<String>,
    /// The gateway's name in alerts (`observer.name`). Default: the host
    /// name.
    pub observer_name: Option<String>,
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
}

impl Observer {
    pub fn local(name: Option<&str>) -> Observer {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        Observer {
            name: name.unwrap_or(&hostname).to_string(),
            hostname,
        }
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
    pub webhook_queued: u64,
    /// Webhook alerts dropped because the sender thread was backed up.
    pub webhook_dropped: u64,
}

pub struct Alerts {
    file: Option<PathBuf>,
    webhook: Option<SyncSender<Value>>,
    pub delivered: Delivered,
    pub webhook_results: std::sync::Arc<WebhookResults>,
}

#[derive(Debug, Default)]
pub struct WebhookResults {
    pub ok: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
}

/// Alerts waiting for the webhook sender; more are dropped and counted.
const WEBHOOK_QUEUE: usize = 1024;

impl Alerts {
    pub fn new(file: Option<PathBuf>, webhook: Option<String>) -> Alerts {
        let results = std::sync::Arc::new(WebhookResults::default());
        let webhook = webhook.map(|url| {
            let (tx, rx) = sync_channel::<Value>(WEBHOOK_QUEUE);
            let results = results.clone();
            std::thread::Builder::new()
                .name("webhook".into())
                .spawn(move || send_loop(&url, rx, &results))
                .expect("spawn the webhook thread");
            tx
        });
        Alerts {
            file,
            webhook,
            delivered: Delivered::default(),
            webhook_results: results,
        }
    }

    pub fn emit(&mut self, doc: Value) {
        if let Some(path) = &self.file {
            let line = format!("{doc}\n");
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
        if let Some(tx) = &self.webhook {
            match tx.try_send(doc) {
                Ok(()) => self.delivered.webhook_queued += 1,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.delivered.webhook_dropped += 1;
                }
            }
        }
    }
}

/// Posts each alert, retrying a failed one twice with a short back-off.
fn send_loop(url: &str, rx: std::sync::mpsc::Receiver<Value>, results: &WebhookResults) {
    use std::sync::atomic::Ordering::Relaxed;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    for doc in rx {
        let mut sent = false;
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(500 * attempt));
            }
            match agent
                .post(url)
                .set("content-type", "application/json")
                .send_string(&doc.to_string())
            {
                Ok(_) => {
                    sent = true;
                    break;
                }
                Err(e) => warn!("webhook {url}: {e}"),
            }
        }
        if sent {
            results.ok.fetch_add(1, Relaxed);
        } else {
            results.failed.fetch_add(1, Relaxed);
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
        let text = include_str!("../../docs/alert.schema.json");
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

    #[test]
    fn the_webhook_gets_each_alert_as_a_json_post() {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let mut alerts = Alerts::new(None, Some(url));
        alerts.emit(json!({"event": {"action": "incident-opened"}}));
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
        std::io::Write::write_all(
            reader.get_mut(),
            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
        )
        .unwrap();
        assert!(head.starts_with("POST /hook "), "{head}");
        assert!(head
            .to_ascii_lowercase()
            .contains("content-type: application/json"));
        let doc: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["event"]["action"], "incident-opened");
        // The sender counts the delivery once the answer is in.
        let results = alerts.webhook_results.clone();
        let delivered = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            results.ok.load(std::sync::atomic::Ordering::Relaxed) == 1
        });
        assert!(delivered);
    }

    #[test]
    fn the_file_gets_one_line_per_alert() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let mut alerts = Alerts::new(Some(path.clone()), None);
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
