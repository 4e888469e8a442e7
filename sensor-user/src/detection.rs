//! Live detection in sensord: datapath events through the engine, the
//! response policy carried out on the maps, alerts out, and the operator's
//! view of incidents (`sensorctl incidents`, `incident ID`, false positives).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    path::PathBuf,
};

use anyhow::Result;
use ipnet::IpNet;
use log::{info, warn};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{
    alerts::{self, Alerts, Change},
    config::{Config, Segment},
    datapath::Maps,
    detect::{incident::Action, Engine, Event, Incident, Nanos},
    enforcer::{Enforcer, Origin},
    response::{self, Decision, HostFacts, ResponseConfig},
    state::{self, Kind},
    telemetry::Decision as DatapathDecision,
};

/// Counters for the metrics.
#[derive(Debug, Default, Clone)]
pub struct DetectionCounts {
    pub events: u64,
    pub incidents: BTreeMap<&'static str, u64>,
    pub actions: BTreeMap<String, u64>,
}

/// What an operator marked false positive: detectors, per host.
#[derive(Debug, Default, Serialize, Deserialize)]
struct FalsePositives {
    hosts: BTreeMap<IpAddr, BTreeSet<String>>,
}

/// What the last alert about an incident said, to report only changes.
#[derive(PartialEq)]
struct Reported {
    score: u8,
    detectors: usize,
    actions: usize,
    status: &'static str,
}

pub struct Detection {
    pub engine: Engine,
    response: ResponseConfig,
    alerts: Alerts,
    segments: Vec<Segment>,
    false_positives: FalsePositives,
    false_positive_file: PathBuf,
    reported: HashMap<u64, Reported>,
    pub counts: DetectionCounts,
}

/// Filters of `sensorctl incidents`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentFilter {
    pub host: Option<IpAddr>,
    pub min_score: Option<u8>,
    pub status: Option<String>,
    pub detector: Option<String>,
}

fn rfc3339(ns: Nanos) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns))
        .to_string()
}

impl Detection {
    pub fn new(config: &Config) -> Result<Detection> {
        let state_dir = config
            .state_file
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        let false_positive_file = state_dir.join("false_positives.json");
        let false_positives = match std::fs::read(&false_positive_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("{} is not valid: {e}", false_positive_file.display())
            })?,
            Err(_) => FalsePositives::default(),
        };
        let alert_file = config
            .alerts
            .file
            .clone()
            .unwrap_or_else(|| state_dir.join("alerts.jsonl"));
        Ok(Detection {
            engine: Engine::new(&config.detection)?,
            response: config.response.clone(),
            alerts: Alerts::new(Some(alert_file), config.alerts.webhook.clone()),
            segments: config.segments.clone(),
            false_positives,
            false_positive_file,
            reported: HashMap::new(),
            counts: DetectionCounts::default(),
        })
    }

    pub fn snapshot(
        &self,
        telemetry: crate::telemetry::TelemetryCounts,
    ) -> crate::metrics::DetectionSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let d = self.alerts.delivered;
        let w = &self.alerts.webhook_results;
        crate::metrics::DetectionSnapshot {
            telemetry,
            counts: self.counts.clone(),
            open_incidents: self.engine.incidents.iter().filter(|i| i.is_open()).count() as u64,
            evicted: self.engine.evicted(),
            alerts: vec![
                ("file", "ok", d.file_ok),
                ("file", "failed", d.file_failed),
                ("webhook", "ok", w.ok.load(Relaxed)),
                ("webhook", "failed", w.failed.load(Relaxed)),
                ("webhook", "dropped", d.webhook_dropped),
            ],
        }
    }

    /// The segment holding `addr`, by longest prefix; `own` leaves out
    /// catch-alls such as the internet's 0.0.0.0/0.
    fn segment_of(&self, addr: IpAddr, own: bool) -> Option<&str> {
        crate::config::segment_of(&self.segments, addr, own)
    }

    /// One event from the datapath.
    pub fn observe(&mut self, event: &Event, decision: Option<DatapathDecision>) {
        self.counts.events += 1;
        // Dropped, or in monitor mode would have been.
        if decision.is_some_and(|d| d.segment_policy()) {
            let from = self.segment_of(event.src, false).unwrap_or("?").to_string();
            let to = self.segment_of(event.dst, false).unwrap_or("?").to_string();
            self.engine.policy_violation(event, (&from, &to));
        }
        self.engine.observe(event);
    }

    /// Decides and acts on every incident that changed, closes idle ones,
    /// and sends the alerts.
    pub fn respond(&mut self, enforcer: &mut Enforcer, maps: &mut Maps, now: Nanos) {
        let mut ids: BTreeSet<u64> = self.engine.incidents.take_changed().into_iter().collect();
        ids.extend(self.engine.incidents.awaiting_action());
        for id in ids {
            self.act_on(id, enforcer, maps, now);
            self.report(id, now);
        }
        for id in self.engine.incidents.close_idle(now) {
            self.report(id, now);
        }
    }

    fn act_on(&mut self, id: u64, enforcer: &mut Enforcer, maps: &mut Maps, now: Nanos) {
        let Some(incident) = self.engine.incidents.get(id) else {
            return;
        };
        let none = BTreeSet::new();
        let engine = &self.engine;
        let is_internal = |a: IpAddr| engine.is_internal(a);
        let facts = HostFacts {
            segment: self.segment_of(incident.host, true),
            verified: engine.is_verified(incident.host, now.max(engine.now())),
            false_positive_detectors: self
                .false_positives
                .hosts
                .get(&incident.host)
                .unwrap_or(&none),
            is_internal: &is_internal,
        };
        let decisions = response::decide(&self.response, incident, &facts);
        let reason = format!(
            "incident {id}: {} (score {})",
            incident
                .detectors
                .iter()
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
            incident.score
        );
        let by = format!(
            "auto:{}",
            incident
                .evidence
                .iter()
                .max_by_key(|e| e.score)
                .map(|e| e.detector)
                .unwrap_or("detection")
        );
        let mut actions = Vec::new();
        for decision in decisions {
            let origin = Origin {
                by: &by,
                incident: Some(id),
            };
            let not_carried_out = response::not_carried_out(&decision, self.response.mode);
            let (action, target, detail) = match (not_carried_out, decision) {
                (Some((target, why)), _) => ("withheld", target, why),
                (None, Decision::Withheld { .. }) => unreachable!("withheld is not carried out"),
                (None, Decision::Isolate { host, ttl, rule }) => {
                    let detail = if enforcer.has(Kind::Isolation, IpNet::from(host)) {
                        format!("rule {rule}: already isolated")
                    } else {
                        match enforcer.isolate(maps, host, ttl, &reason, origin) {
                            Ok(_) => format!("rule {rule}: isolated for {}", ttl_text(ttl)),
                            Err(e) => format!("rule {rule}: failed: {e}"),
                        }
                    };
                    info!("incident {id}: isolate {host}: {detail}");
                    ("isolate", host.to_string(), detail)
                }
                (None, Decision::Block { net, ttl, rule }) => {
                    let detail = if enforcer.has(Kind::Block, net) {
                        format!("rule {rule}: already blocked")
                    } else {
                        match enforcer.block(maps, net, ttl, &reason, origin) {
                            Ok(_) => format!("rule {rule}: blocked for {}", ttl_text(ttl)),
                            Err(e) => format!("rule {rule}: failed: {e}"),
                        }
                    };
                    info!("incident {id}: block {net}: {detail}");
                    ("block", net.to_string(), detail)
                }
            };
            *self.counts.actions.entry(action.to_string()).or_default() += 1;
            actions.push(Action {
                ts: now,
                action: action.into(),
                target,
                detail,
            });
        }
        if let Some(incident) = self.engine.incidents.get_mut(id) {
            incident.actions.extend(actions);
        }
    }

    /// Alerts about `id` if it is new or changed since the last alert.
    fn report(&mut self, id: u64, now: Nanos) {
        let Some(incident) = self.engine.incidents.get(id) else {
            return;
        };
        let state = Reported {
            score: incident.score,
            detectors: incident.detectors.len(),
            actions: incident.actions.len(),
            status: incident.status,
        };
        let change = match self.reported.get(&id) {
            None => {
                *self.counts.incidents.entry(incident.severity).or_default() += 1;
                Change::Opened
            }
            Some(r) if *r == state => return,
            Some(_) if !incident.is_open() => Change::Closed,
            Some(_) => Change::Updated,
        };
        let doc = alerts::document(incident, change, now, incident.actions.last());
        if change == Change::Opened {
            warn!("{}", doc["message"].as_str().unwrap_or_default());
        }
        self.alerts.emit(doc);
        self.reported.insert(id, state);
        // Closed incidents no longer change.
        if change == Change::Closed {
            self.reported.retain(|k, _| *k != id);
        }
    }

    /// The operator released `host` as a false positive: its open incidents
    /// are marked, and their detectors no longer act on it.
    pub fn mark_false_positive(&mut self, host: IpAddr, now: Nanos) -> Result<Vec<u64>, String> {
        let mut marked = Vec::new();
        let mut detectors = BTreeSet::new();
        for i in self.engine.incidents.list() {
            if i.host == host && i.is_open() && !i.false_positive {
                detectors.extend(i.detectors.iter().map(|d| d.to_string()));
                marked.push(i.id);
            }
        }
        self.false_positives
            .hosts
            .entry(host)
            .or_default()
            .extend(detectors);
        let bytes = serde_json::to_vec_pretty(&self.false_positives).expect("serialises");
        state::write_atomic(&self.false_positive_file, &bytes).map_err(|e| e.to_string())?;
        for id in &marked {
            if let Some(i) = self.engine.incidents.get_mut(*id) {
                i.false_positive = true;
                i.actions.push(Action {
                    ts: now,
                    action: "false_positive".into(),
                    target: host.to_string(),
                    detail: "released by an operator as a false positive".into(),
                });
            }
            self.report(*id, now);
        }
        Ok(marked)
    }

    /// Records an operator's release on the host's open incidents.
    pub fn note_release(&mut self, host: IpAddr, now: Nanos) {
        let ids: Vec<u64> = self
            .engine
            .incidents
            .iter()
            .filter(|i| i.host == host && i.is_open())
            .map(|i| i.id)
            .collect();
        for id in ids {
            if let Some(i) = self.engine.incidents.get_mut(id) {
                i.actions.push(Action {
                    ts: now,
                    action: "release".into(),
                    target: host.to_string(),
                    detail: "released by an operator".into(),
                });
            }
            self.report(id, now);
        }
    }

    pub fn incidents(&self, filter: &IncidentFilter) -> Value {
        let list: Vec<Value> = self
            .engine
            .incidents
            .iter()
            .filter(|i| filter.host.is_none_or(|h| h == i.host))
            .filter(|i| filter.min_score.is_none_or(|s| i.score >= s))
            .filter(|i| filter.status.as_deref().is_none_or(|s| s == i.status))
            .filter(|i| {
                filter.detector.as_deref().is_none_or(|d| {
                    i.detectors
                        .iter()
                        .any(|x| crate::detect::allow::detector_matches(d, x))
                })
            })
            .map(summary)
            .collect();
        json!(list)
    }

    pub fn incident(&self, id: u64) -> Option<Value> {
        let i = self.engine.incidents.get(id)?;
        let mut timeline: Vec<(Nanos, Value)> = i
            .evidence
            .iter()
            .map(|e| {
                (
                    e.ts,
                    json!({"time": rfc3339(e.ts), "time_ns": e.ts, "type": "evidence", "detector": e.detector,
                           "technique": e.technique, "score": e.score, "peers": e.peers,
                           "count": e.count, "summary": e.summary}),
                )
            })
            .chain(i.actions.iter().map(|a| {
                (
                    a.ts,
                    json!({"time": rfc3339(a.ts), "time_ns": a.ts, "type": "action", "action": a.action,
                           "target": a.target, "detail": a.detail}),
                )
            }))
            .collect();
        timeline.sort_by_key(|(ts, _)| *ts);
        let mut v = summary(i);
        v["timeline"] = json!(timeline.into_iter().map(|(_, v)| v).collect::<Vec<_>>());
        Some(v)
    }
}

fn ttl_text(ttl: Option<std::time::Duration>) -> String {
    match ttl {
        Some(d) => humantime::format_duration(d).to_string(),
        None => "good (permanent)".into(),
    }
}

fn summary(i: &Incident) -> Value {
    json!({
        "id": i.id, "host": i.host, "score": i.score, "severity": i.severity,
        "status": i.status, "false_positive": i.false_positive,
        "first_seen": rfc3339(i.first_seen), "last_seen": rfc3339(i.last_seen),
        "detectors": i.detectors, "techniques": i.techniques, "peers": i.peers,
        "names": i.names,
        "actions": i.actions.iter().map(|a| format!("{} {}", a.action, a.target)).collect::<Vec<_>>(),
    })
}
