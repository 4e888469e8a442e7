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
use serde::Deserialize;

use crate::{
    alerts::{self, Alerts, Change, Observer},
    bindings::{self, Bindings, Learnt},
    config::{Config, Segment},
    datapath::Maps,
    detect::{
        incident::{Action, Triage},
        Engine, Event, Evidence, Incident, Nanos,
    },
    enforcer::{Enforcer, Origin},
    response::{self, Decision, HostFacts, ResponseConfig},
    state::{self, Kind},
    store::{AuditRecord, FalsePositive, Store},
    telemetry::Decision as DatapathDecision,
};

/// Counters for the metrics.
#[derive(Debug, Default, Clone)]
pub struct DetectionCounts {
    pub events: u64,
    /// Packets with a forged source the datapath reported.
    pub spoofed: u64,
    pub incidents: BTreeMap<&'static str, u64>,
    pub actions: BTreeMap<String, u64>,
}

/// What operators marked false positive: detectors, per host (the store
/// keeps the marks; this is the response policy's copy).
type FalsePositives = BTreeMap<IpAddr, BTreeSet<String>>;

/// What the last alert about an incident said, to report only changes.
#[derive(PartialEq)]
struct Reported {
    score: u8,
    detectors: usize,
    actions: usize,
    status: &'static str,
    triage: Triage,
}

impl Reported {
    fn of(i: &Incident) -> Reported {
        Reported {
            score: i.score,
            detectors: i.detectors.len(),
            actions: i.actions.len(),
            status: i.status,
            triage: i.triage,
        }
    }
}

pub struct Detection {
    pub engine: Engine,
    response: ResponseConfig,
    alerts: Alerts,
    /// The gateway, as alerts name it.
    observer: Observer,
    segments: Vec<Segment>,
    false_positives: FalsePositives,
    /// Incidents changed since they were last written to the store, and
    /// automatic actions not yet in its audit log (`persist`).
    unsaved: BTreeSet<u64>,
    unaudited: Vec<AuditRecord>,
    /// Whether the last write to the store failed.
    store_failing: bool,
    /// Seconds from deciding evidence to action, for the metrics' histogram
    /// (`take_latencies`).
    latencies: Vec<f64>,
    /// The admin-edge baseline's file, and when it was last written.
    edges_file: PathBuf,
    edges_saved: Nanos,
    reported: HashMap<u64, Reported>,
    pub counts: DetectionCounts,
    /// Forged packets per sending MAC (evidence each time it doubles).
    spoofers: HashMap<[u8; 6], u64>,
    /// Per address of a switched segment: the MAC the frames behind its
    /// events came from, and whether another MAC sent some too.
    senders: HashMap<IpAddr, Sender>,
    /// `config::switched_ranges`, worked out once (read per event).
    switched: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy)]
struct Sender {
    mac: [u8; 6],
    mixed: bool,
    last: Nanos,
}

/// Addresses whose sending MAC is tracked at once.
const MAX_SENDERS: usize = 1 << 16;

/// Sending MACs of forged packets tracked at once.
const MAX_SPOOFERS: usize = 4096;

/// The admin-edge baseline saved earlier. A file that cannot be read as
/// one is set aside (`edges.json.bad`) with a warning, and learning starts
/// afresh: a lost baseline delays new-edge alerts, it must not stop the
/// sensor.
fn load_edges(path: &std::path::Path) -> Option<crate::detect::edges::Baseline> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(baseline) => Some(baseline),
        Err(e) => {
            let aside = path.with_extension("json.bad");
            let _ = std::fs::rename(path, &aside);
            warn!(
                "{} is not an admin-edge baseline ({e}); moved to {}, learning again",
                path.display(),
                aside.display()
            );
            None
        }
    }
}

/// How often at most the admin-edge baseline is written.
const EDGES_SAVE_EVERY: Nanos = 60 * 1_000_000_000;

impl Detection {
    /// Writes the admin-edge baseline when it changed, at most once a
    /// minute unless `now` is the last time (shutting down): a crash loses
    /// at most a minute of learning. Failures are logged and retried at
    /// the next change.
    pub fn save_edges(&mut self, now: Nanos, last: bool) {
        if !last && now.saturating_sub(self.edges_saved) < EDGES_SAVE_EVERY {
            return;
        }
        let Some(baseline) = self.engine.edges_baseline() else {
            return;
        };
        self.edges_saved = now;
        let written = serde_json::to_vec(&baseline)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                state::write_atomic(&self.edges_file, &bytes).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            warn!(
                "cannot save the admin-edge baseline to {}: {e}",
                self.edges_file.display()
            );
        }
    }

    /// Sends every alert to `sink` too, through a spool in the state
    /// directory's `spool/NAME` (the fleet's incidents stream).
    pub fn add_alert_outlet(
        &mut self,
        name: &'static str,
        sink: Box<dyn crate::alerts::Sink>,
        config: &Config,
    ) -> Result<()> {
        let dir = config
            .state_file
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("spool")
            .join(name);
        let max = config.alerts.spool_max.unwrap_or(crate::alerts::SPOOL_MAX);
        self.alerts.add_outlet(name, sink, &dir, max)
    }

    /// Live detection, with the incidents still open and the
    /// false-positive marks of earlier runs taken back from `store`.
    pub fn new(config: &Config, store: &mut Store) -> Result<Detection> {
        let state_dir = config
            .state_file
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        import_false_positives(&state_dir.join("false_positives.json"), store)?;
        let mut false_positives = FalsePositives::new();
        for mark in store.false_positives()? {
            false_positives
                .entry(mark.host)
                .or_default()
                .insert(mark.detector);
        }
        let alert_file = config
            .alerts
            .file
            .clone()
            .unwrap_or_else(|| state_dir.join("alerts.jsonl"));
        let mut engine = Engine::new(&config.detection)?;
        let edges_file = state_dir.join("edges.json");
        if let Some(baseline) = load_edges(&edges_file) {
            engine.restore_edges(baseline);
        }
        let open = store.open_incidents()?;
        let mut reported = HashMap::new();
        for i in &open {
            // What the last run alerted about them: no second "opened".
            reported.insert(i.id, Reported::of(i));
        }
        if !open.is_empty() {
            info!("{} open incident(s) taken back from the store", open.len());
        }
        engine.incidents.restore(open, store.last_incident_id()?);
        Ok(Detection {
            engine,
            response: config.response.clone(),
            alerts: Alerts::new(Some(alert_file), &config.alerts, &state_dir.join("spool"))?,
            observer: Observer::of(config),
            segments: config.segments.clone(),
            false_positives,
            unsaved: BTreeSet::new(),
            unaudited: Vec::new(),
            store_failing: false,
            latencies: Vec::new(),
            edges_file,
            edges_saved: 0,
            reported,
            counts: DetectionCounts::default(),
            spoofers: HashMap::new(),
            senders: HashMap::new(),
            switched: crate::config::switched_ranges(&config.segments),
        })
    }

    /// Writes what changed since the last call to the store: incidents and
    /// audit records. On a failure (a full disk) they stay pending, are
    /// retried at the next call, and the failure is said once. Returns
    /// whether it wrote, or `None` when there was nothing to write.
    pub fn persist(&mut self, store: &mut Store) -> Option<bool> {
        if self.unsaved.is_empty() && self.unaudited.is_empty() {
            return None;
        }
        let incidents = self
            .unsaved
            .iter()
            .filter_map(|id| self.engine.incidents.get(*id));
        let written = store
            .save_incidents(incidents)
            .and_then(|_| store.audit(&self.unaudited));
        match written {
            Ok(()) => {
                if self.store_failing {
                    info!("the incident store is written again");
                }
                self.store_failing = false;
                self.unsaved.clear();
                self.unaudited.clear();
                Some(true)
            }
            Err(e) => {
                if !self.store_failing {
                    warn!("{e}; retried every second until it succeeds");
                }
                self.store_failing = true;
                Some(false)
            }
        }
    }

    pub fn snapshot(
        &self,
        telemetry: crate::telemetry::TelemetryCounts,
    ) -> crate::metrics::DetectionSnapshot {
        let d = self.alerts.delivered;
        let mut alerts = vec![("file", "ok", d.file_ok), ("file", "failed", d.file_failed)];
        let mut waiting = Vec::new();
        for (sink, [sent, retried, refused, dropped], queued) in self.alerts.outlet_figures() {
            alerts.extend([
                (sink, "ok", sent),
                (sink, "retried", retried),
                (sink, "refused", refused),
                (sink, "dropped", dropped),
            ]);
            waiting.push((sink, queued));
        }
        crate::metrics::DetectionSnapshot {
            telemetry,
            counts: self.counts.clone(),
            open_incidents: self.engine.incidents.iter().filter(|i| i.is_open()).count() as u64,
            evicted: self.engine.evicted(),
            entries: self.engine.sizes(),
            spared: self.engine.spared(),
            alerts,
            alerts_waiting: waiting,
            intel_entries: self.engine.intel.entries(),
        }
    }

    /// The segment holding `addr`, by longest prefix; `own` leaves out
    /// catch-alls such as the internet's 0.0.0.0/0.
    fn segment_of(&self, addr: IpAddr, own: bool) -> Option<&str> {
        crate::config::segment_of(&self.segments, addr, own)
    }

    /// One event from the datapath (`decision` for ring-buffer events).
    /// Forged packets never reach the engine: they become evidence against
    /// the MAC that sent them. A bound source is proven by its binding.
    pub fn observe(
        &mut self,
        event: &Event,
        decision: Option<DatapathDecision>,
        bindings: &Bindings,
    ) {
        self.counts.events += 1;
        if let Some(d) = &decision {
            if d.spoofed() {
                self.spoofed(event, d, bindings);
                return;
            }
            if d.bound && bindings.proves(event.src, event.ts) {
                self.engine.verify(event.src, event.ts);
            }
            if self.is_switched(event.src) {
                self.sent_by(event.src, d.mac, event.ts);
            }
        }
        // Dropped, or in monitor mode would have been.
        if decision.is_some_and(|d| d.segment_policy()) {
            let from = self.segment_of(event.src, false).unwrap_or("?").to_string();
            let to = self.segment_of(event.dst, false).unwrap_or("?").to_string();
            self.engine.policy_violation(event, (&from, &to));
        }
        self.engine.observe(event);
    }

    /// A packet whose source is forged: evidence against the host its MAC
    /// is bound to (never against the address it carries), given each time
    /// the count from that MAC doubles.
    fn spoofed(&mut self, event: &Event, d: &DatapathDecision, bindings: &Bindings) {
        self.counts.spoofed += 1;
        if self.spoofers.len() >= MAX_SPOOFERS && !self.spoofers.contains_key(&d.mac) {
            self.spoofers.clear();
        }
        let n = self.spoofers.entry(d.mac).or_insert(0);
        *n += 1;
        let count = *n;
        if !count.is_power_of_two() {
            return;
        }
        let mac = bindings::mac_text(&d.mac);
        let port = crate::datapath::if_name(d.ifindex);
        let Some(sender) = bindings.owner_of(d.mac, event.src) else {
            info!(
                "{count} packet(s) with forged sources (last {} to {}:{}) from MAC {mac} on {port}: \
                 no address is bound to that MAC, so no incident",
                event.src, event.dst, event.dport
            );
            return;
        };
        if bindings.proves(sender, event.ts) {
            self.engine.verify(sender, event.ts);
        }
        self.engine.evidence(Evidence {
            host: sender,
            detector: "spoofing",
            technique: "T1557",
            score: 80,
            ts: event.ts,
            since: event.ts,
            peers: vec![event.src.to_string()],
            count,
            summary: format!(
                "{count} packet(s) with a forged source address (last {} to {}:{}) from MAC {mac} \
                 on {port}, which is {sender}'s",
                event.src, event.dst, event.dport
            ),
        });
    }

    /// Bindings the neighbour table changed. An address that moved to a
    /// MAC bound to another address of the same family (an ARP or NDP
    /// spoofer answering for it) is evidence against that other address.
    pub fn bindings_learnt(&mut self, learnt: &[Learnt], bindings: &Bindings, now: Nanos) {
        for l in learnt {
            let Learnt::Moved { addr, from, to } = l else {
                continue;
            };
            let holder = bindings
                .all()
                .filter(|(a, mac)| mac == to && a != addr && a.is_ipv4() == addr.is_ipv4())
                .map(|(a, _)| a)
                .next();
            let Some(holder) = holder else {
                info!(
                    "{addr} moved from MAC {} to {}",
                    bindings::mac_text(from),
                    bindings::mac_text(to)
                );
                continue;
            };
            self.engine.evidence(Evidence {
                host: holder,
                detector: "binding.moved",
                technique: "T1557.002",
                score: 50,
                ts: now,
                since: now,
                peers: vec![addr.to_string()],
                count: 1,
                summary: format!(
                    "the gateway now reaches {addr} at MAC {} ({holder}'s), no longer at {}",
                    bindings::mac_text(to),
                    bindings::mac_text(from)
                ),
            });
        }
    }

    /// Whether `addr` belongs to a switched segment (its own ranges).
    fn is_switched(&self, addr: IpAddr) -> bool {
        self.switched.iter().any(|c| c.contains(&addr))
    }

    /// Notes the MAC that sent a frame of `addr`'s.
    fn sent_by(&mut self, addr: IpAddr, mac: [u8; 6], ts: Nanos) {
        if self.senders.len() >= MAX_SENDERS && !self.senders.contains_key(&addr) {
            crate::detect::window::cap_oldest(&mut self.senders, MAX_SENDERS, |s| s.last);
        }
        let sender = self.senders.entry(addr).or_insert(Sender {
            mac,
            mixed: false,
            last: ts,
        });
        // Quiet for as long as an incident stays open: a fresh start.
        if ts.saturating_sub(sender.last) > crate::detect::incident::MERGE_GAP {
            *sender = Sender {
                mac,
                mixed: false,
                last: ts,
            };
        }
        sender.mixed |= sender.mac != mac;
        sender.last = ts;
    }

    /// Whether `host` is proven: by acknowledged TCP data (the engine's
    /// `verify`), or on a switched segment by its binding, when the frames
    /// behind its events all came from the MAC its address is bound to (and
    /// the binding has not just moved). Either way, on a switched segment,
    /// only if those frames were the owner's.
    fn proven(&self, host: IpAddr, bindings: &Bindings, now: Nanos) -> bool {
        if !self.sent_by_owner(host, bindings) {
            return false;
        }
        let by_binding = self.senders.contains_key(&host) && bindings.proves(host, now);
        by_binding || self.engine.is_verified(host, now.max(self.engine.now()))
    }

    /// On a switched segment, whether the frames behind `host`'s events all
    /// came from the MAC its address is bound to. Evidence gathered from
    /// another MAC (a forger's, before the owner's binding was learnt) must
    /// never get the owner isolated, even once the owner proves itself.
    fn sent_by_owner(&self, host: IpAddr, bindings: &Bindings) -> bool {
        if !self.is_switched(host) {
            return true;
        }
        match self.senders.get(&host) {
            None => true,
            Some(s) => !s.mixed && bindings.mac_of(host) == Some(s.mac),
        }
    }

    /// The MAC to cut off with `host`'s isolation: on a switched segment,
    /// the one its address is bound to, when the frames behind its evidence
    /// came from that MAC and the binding has not just moved. Never on a
    /// routed segment, where the source MAC is the router's.
    fn mac_to_isolate(&self, host: IpAddr, bindings: &Bindings, now: Nanos) -> Option<[u8; 6]> {
        if !self.is_switched(host) || !self.sent_by_owner(host, bindings) {
            return None;
        }
        bindings.settled_mac(host, now)
    }

    /// Decides and acts on every incident that changed, closes idle ones,
    /// and sends the alerts.
    pub fn respond(
        &mut self,
        enforcer: &mut Enforcer,
        maps: &mut Maps,
        bindings: &Bindings,
        now: Nanos,
    ) {
        let mut ids: BTreeSet<u64> = self.engine.incidents.take_changed().into_iter().collect();
        ids.extend(self.engine.incidents.awaiting_action());
        for id in ids {
            self.act_on(id, enforcer, maps, bindings, now);
            self.report(id, now);
            self.unsaved.insert(id);
        }
        for id in self.engine.incidents.close_idle(now) {
            self.report(id, now);
            self.unsaved.insert(id);
        }
    }

    fn act_on(
        &mut self,
        id: u64,
        enforcer: &mut Enforcer,
        maps: &mut Maps,
        bindings: &Bindings,
        now: Nanos,
    ) {
        let Some(incident) = self.engine.incidents.get(id) else {
            return;
        };
        let none = BTreeSet::new();
        let engine = &self.engine;
        let is_internal = |a: IpAddr| engine.is_internal(a);
        let facts = HostFacts {
            segment: self.segment_of(incident.host, true),
            verified: self.proven(incident.host, bindings, now),
            false_positive_detectors: self.false_positives.get(&incident.host).unwrap_or(&none),
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
            let scope = match &decision {
                Decision::Isolate { rule, .. } | Decision::Block { rule, .. } => {
                    self.response.rules.get(*rule).and_then(|r| r.scope)
                }
                Decision::Withheld { .. } => None,
            };
            let origin = Origin {
                by: &by,
                incident: Some(id),
                scope,
            };
            let not_carried_out = response::not_carried_out(&decision, self.response.mode);
            let (action, target, detail) = match (not_carried_out, decision) {
                (Some((target, why)), _) => ("withheld", target, why),
                (None, Decision::Withheld { .. }) => unreachable!("withheld is not carried out"),
                (None, Decision::Isolate { host, ttl, rule }) => {
                    let result = if enforcer.has(Kind::Isolation, IpNet::from(host)) {
                        Ok(format!("rule {rule}: already isolated"))
                    } else {
                        let mac = self.mac_to_isolate(host, bindings, now);
                        enforcer
                            .isolate(maps, host, mac, ttl, &reason, origin)
                            .map(|_| format!("rule {rule}: isolated for {}", ttl_text(ttl)))
                            .map_err(|e| format!("rule {rule}: isolating {host} failed: {e}"))
                    };
                    match result {
                        Ok(detail) => ("isolate", host.to_string(), detail),
                        Err(detail) => ("failed", host.to_string(), detail),
                    }
                }
                (None, Decision::Block { net, ttl, rule }) => {
                    let result = if enforcer.has(Kind::Block, net) {
                        Ok(format!("rule {rule}: already blocked"))
                    } else {
                        enforcer
                            .block(maps, net, ttl, &reason, origin)
                            .map(|_| format!("rule {rule}: blocked for {}", ttl_text(ttl)))
                            .map_err(|e| format!("rule {rule}: blocking {net} failed: {e}"))
                    };
                    match result {
                        Ok(detail) => ("block", net.to_string(), detail),
                        Err(detail) => ("failed", net.to_string(), detail),
                    }
                }
            };
            *self.counts.actions.entry(action.to_string()).or_default() += 1;
            // A failure retried each second is recorded (and alerted) once,
            // until it changes or succeeds.
            let repeated = action == "failed"
                && self.engine.incidents.get(id).is_some_and(|i| {
                    i.actions
                        .iter()
                        .rev()
                        .find(|a| a.target == target)
                        .is_some_and(|a| a.action == "failed" && a.detail == detail)
                });
            if repeated {
                continue;
            }
            match action {
                "failed" => warn!("incident {id}: {detail}; retried until it succeeds"),
                "withheld" => {}
                _ => info!("incident {id}: {action} {target}: {detail}"),
            }
            if action == "isolate" || action == "block" {
                // From the newest evidence, the packet that tipped it.
                let decided = incident_latest_evidence(&self.engine, id).unwrap_or(now);
                self.latencies
                    .push(now.saturating_sub(decided) as f64 / 1e9);
            }
            if action != "withheld" {
                self.unaudited.push(AuditRecord {
                    ts: now,
                    actor: by.clone(),
                    action: if action == "failed" {
                        "isolate_or_block"
                    } else {
                        action
                    }
                    .into(),
                    target: target.clone(),
                    detail: format!("incident {id}: {detail}"),
                    outcome: if action == "failed" {
                        "failed".into()
                    } else {
                        "ok".into()
                    },
                });
            }
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
        let state = Reported::of(incident);
        let change = match self.reported.get(&id) {
            None => {
                *self.counts.incidents.entry(incident.severity).or_default() += 1;
                Change::Opened
            }
            Some(r) if *r == state => return,
            Some(r) if r.status == "open" && !incident.is_open() => Change::Closed,
            Some(_) => Change::Updated,
        };
        let doc = alerts::document(incident, change, now, &self.observer);
        if change == Change::Opened {
            warn!("{}", doc["message"].as_str().unwrap_or_default());
        }
        self.alerts.emit(doc);
        self.reported.insert(id, state);
        // Kept while the engine holds the incident (an operator may still
        // change a closed one); those it forgot go.
        if self.reported.len() > 2 * crate::detect::incident::MAX_INCIDENTS {
            let incidents = &self.engine.incidents;
            self.reported.retain(|k, _| incidents.get(*k).is_some());
        }
    }

    /// The operator released `host` as a false positive: its open incidents
    /// are marked, and their detectors no longer act on it.
    pub fn mark_false_positive(
        &mut self,
        host: IpAddr,
        now: Nanos,
        actor: &str,
        store: &mut Store,
    ) -> Result<Vec<u64>, String> {
        let mut marks = Vec::new();
        let mut marked = Vec::new();
        for i in self.engine.incidents.iter() {
            if i.host == host && i.is_open() && !i.false_positive {
                marked.push(i.id);
                marks.extend(i.detectors.iter().map(|d| FalsePositive {
                    host,
                    detector: d.to_string(),
                    created: now,
                    actor: actor.to_string(),
                    incident: Some(i.id),
                }));
            }
        }
        store
            .mark_false_positive(&marks)
            .map_err(|e| e.to_string())?;
        for mark in marks {
            self.false_positives
                .entry(host)
                .or_default()
                .insert(mark.detector);
        }
        for id in &marked {
            self.record(*id, now, |i| {
                i.false_positive = true;
                Action {
                    ts: now,
                    action: "false_positive".into(),
                    target: host.to_string(),
                    detail: format!("released by {actor} as a false positive"),
                }
            });
        }
        Ok(marked)
    }

    /// Response latencies observed since the last call.
    pub fn take_latencies(&mut self) -> Vec<f64> {
        std::mem::take(&mut self.latencies)
    }

    /// Takes reloaded response rules: incidents are decided by them from
    /// their next change.
    pub fn set_response(&mut self, response: ResponseConfig) {
        self.response = response;
    }

    /// Takes back the false-positive marks from the store (after an undo).
    pub fn reload_false_positives(&mut self, store: &Store) -> Result<(), String> {
        let mut marks = FalsePositives::new();
        for mark in store.false_positives().map_err(|e| e.to_string())? {
            marks.entry(mark.host).or_default().insert(mark.detector);
        }
        self.false_positives = marks;
        Ok(())
    }

    /// Records an operator's release on the host's open incidents.
    pub fn note_release(&mut self, host: IpAddr, now: Nanos, actor: &str) {
        let ids: Vec<u64> = self
            .engine
            .incidents
            .iter()
            .filter(|i| i.host == host && i.is_open())
            .map(|i| i.id)
            .collect();
        for id in ids {
            self.record(id, now, |_| Action {
                ts: now,
                action: "release".into(),
                target: host.to_string(),
                detail: format!("released by {actor}"),
            });
        }
    }

    /// Changes a live incident with `change` (which returns the action
    /// for its timeline), alerts, and queues it for the store. `false`
    /// when the engine no longer holds it.
    pub fn record(
        &mut self,
        id: u64,
        now: Nanos,
        change: impl FnOnce(&mut Incident) -> Action,
    ) -> bool {
        let Some(i) = self.engine.incidents.get_mut(id) else {
            return false;
        };
        let action = change(i);
        i.actions.push(action);
        self.report(id, now);
        self.unsaved.insert(id);
        true
    }

    /// Alerts about an incident the engine no longer holds (closed and
    /// forgotten), changed by an operator.
    pub fn alert_stored(&mut self, incident: &Incident, now: Nanos) {
        let doc = alerts::document(incident, Change::Updated, now, &self.observer);
        self.alerts.emit(doc);
    }
}

/// When the newest evidence of incident `id` was concluded.
fn incident_latest_evidence(engine: &Engine, id: u64) -> Option<Nanos> {
    engine
        .incidents
        .get(id)
        .and_then(|i| i.evidence.iter().map(|e| e.ts).max())
}

/// Moves the false-positive marks of a release before the incident store
/// (false_positives.json) into it, once: the file is renamed `.imported`.
fn import_false_positives(path: &std::path::Path, store: &mut Store) -> Result<()> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(());
    };
    #[derive(Deserialize)]
    struct Old {
        hosts: BTreeMap<IpAddr, BTreeSet<String>>,
    }
    let old: Old = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not valid: {e}", path.display()))?;
    let marks: Vec<FalsePositive> = old
        .hosts
        .into_iter()
        .flat_map(|(host, detectors)| {
            detectors.into_iter().map(move |detector| FalsePositive {
                host,
                detector,
                created: crate::clock::unix_now_ns(),
                actor: "imported".into(),
                incident: None,
            })
        })
        .collect();
    store.mark_false_positive(&marks)?;
    let aside = path.with_extension("json.imported");
    std::fs::rename(path, &aside)?;
    info!(
        "{} false-positive mark(s) moved from {} into the incident store",
        marks.len(),
        path.display()
    );
    Ok(())
}

fn ttl_text(ttl: Option<std::time::Duration>) -> String {
    match ttl {
        Some(d) => humantime::format_duration(d).to_string(),
        None => "good (permanent)".into(),
    }
}
