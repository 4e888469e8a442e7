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
}

/// What happened to the incident that this alert reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened,
    Updated,
    Closed,
}

impl Change {
    fn label(self) -> &'static str {
        match self {
            Change::Opened => "incident-opened",
            Change::Updated => "incident-updated",
            Change::Closed => "incident-closed",
        }
    }
}

fn rfc3339(ns: Nanos) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// The alert document for `incident` (schema: docs/alerts.md).
pub fn document(incident: &Incident, change: Change, now: Nanos, action: Option<&Action>) -> Value {
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
    ips.dedup();
    let latest = incident.evidence.iter().max_by_key(|e| e.ts);
    let message = format!(
        "{} {} incident {} on {}: {}",
        incident.severity,
        incident.status,
        incident.id,
        incident.host,
        latest.map(|e| e.summary.as_str()).unwrap_or(""),
    );
    json!({
        "@timestamp": rfc3339(now),
        "ecs": {"version": "8.11.0"},
        "message": message,
        "event": {
            "kind": "alert",
            "category": ["intrusion_detection", "network"],
            "type": ["info"],
            "action": change.label(),
            "id": format!("incident-{}", incident.id),
            "severity": incident.score,
            "risk_score": incident.score,
            "start": rfc3339(incident.first_seen),
            "end": rfc3339(incident.last_seen),
            "outcome": if incident.actions.iter().any(|a| a.action == "isolate" || a.action == "block") { "success" } else { "unknown" },
        },
        "observer": {"vendor": "sensor", "product": "sensord", "type": "ids",
                      "version": env!("CARGO_PKG_VERSION")},
        "host": {"ip": [incident.host.to_string()]},
        "source": {"ip": incident.host.to_string()},
        "related": {"ip": ips, "hosts": domains},
        "rule": {"name": incident.detectors.iter().collect::<Vec<_>>()},
        "threat": {"framework": "MITRE ATT&CK",
                   "technique": {"id": incident.techniques.iter().collect::<Vec<_>>()}},
        "sensor": {
            "incident": {
                "id": incident.id,
                "status": incident.status,
                "triage": incident.triage,
                "severity": incident.severity,
                "score": incident.score,
                "false_positive": incident.false_positive,
                "detectors": incident.detectors,
                "peers": incident.peers,
                "names": incident.names,
                "evidence": incident.evidence.iter().map(|e| json!({
                    "detector": e.detector, "technique": e.technique, "score": e.score,
                    "time": rfc3339(e.ts), "since": rfc3339(e.since), "peers": e.peers, "count": e.count,
                    "summary": e.summary,
                })).collect::<Vec<_>>(),
                "actions": incident.actions.iter().map(action_json).collect::<Vec<_>>(),
            },
            "action": action.map(action_json),
        },
    })
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

    #[test]
    fn documents_carry_ecs_fields_and_the_incident() {
        let mut book = Incidents::default();
        let id = book
            .add(Evidence {
                host: "10.10.0.11".parse().unwrap(),
                detector: "beacon",
                technique: "T1071",
                score: 90,
                ts: 1_700_000_000_000_000_000,
                since: 1_700_000_000_000_000_000,
                peers: vec!["203.0.113.66:443".into(), "c2.example".into()],
                count: 20,
                summary: "20 connections every 5s".into(),
            })
            .unwrap();
        let doc = document(
            book.get(id).unwrap(),
            Change::Opened,
            1_700_000_001_000_000_000,
            None,
        );
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["event"]["action"], "incident-opened");
        assert_eq!(doc["source"]["ip"], "10.10.0.11");
        assert_eq!(doc["related"]["ip"], json!(["10.10.0.11", "203.0.113.66"]));
        assert_eq!(doc["related"]["hosts"], json!(["c2.example"]));
        assert_eq!(doc["threat"]["technique"]["id"], json!(["T1071"]));
        assert_eq!(doc["@timestamp"], "2023-11-14T22:13:21.000Z");
        assert_eq!(doc["sensor"]["incident"]["score"], 90);
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
