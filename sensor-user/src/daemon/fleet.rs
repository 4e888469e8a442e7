//! sensord's side of fleet mode (docs/fleet.md): the decisions it makes go
//! to its outbox and from there to the bucket; what the bucket holds is
//! watched and applied to the maps; its status and alerts go out too.
//!
//! Tasks, none holding the sensor's lock across an await:
//! - `fleet_loop` connects (retrying forever), then runs the three below;
//! - `watch_loop` reads the bucket (the latest entry of every key, then
//!   every change) into the view and applies what is in force here;
//! - `publish_loop` sends the outbox, oldest first, each operation until
//!   acknowledged;
//! - `report_loop` writes this gateway's status every few seconds.
//!
//! Offline, enforcement goes on as it stands and new decisions wait in the
//! outbox; back online, the watch resumes where it stopped (the missed
//! changes arrive in order) and the outbox is sent. A target with an
//! operation of this gateway still waiting is left alone until it is
//! acknowledged: this gateway's newer decision must not be undone by the
//! older state the bucket still shows.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::kv::Operation;
use futures_util::StreamExt;
use ipnet::IpNet;
use log::{info, warn};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use super::{Sensor, Shared};
use crate::{
    clock,
    config::Config,
    enforcer::Journaled,
    fleet::{
        client::{Buckets, FleetClient, GatewayStatus, LinkState, STATUS_EVERY},
        decision::{Checks, Decision, Key},
        incidents::{IncidentSink, Slot},
        outbox::{Op, Outbox},
        view::{Outcome, Recorded, View},
        FleetConfig, FleetTag, Scope,
    },
    state::{Entry, Kind},
    store::AuditRecord,
};

/// The fleet as sensord holds it.
pub struct Fleet {
    pub config: FleetConfig,
    pub gateway: String,
    pub view: View,
    pub outbox: Outbox,
    /// Wakes the publisher when the outbox gains an operation.
    wake: Arc<Notify>,
    /// The connection, once there is one (also the incidents outlet's).
    slot: Slot,
    link: Option<Arc<LinkState>>,
    /// The bucket's first reading has been applied.
    synced: bool,
    /// Changes the fleet made to the maps here.
    pub applied: u64,
    pub published: u64,
    pub errors: u64,
    pub last_error: Option<String>,
}

/// One entry read from the bucket.
pub struct Watched {
    key: String,
    revision: u64,
    operation: Operation,
    value: Vec<u8>,
}

/// How long the publisher waits after a failure before it tries again.
const RETRY: Duration = Duration::from_secs(1);
/// How often the watch is compared with the bucket's latest revision: a
/// stalled watch is resumed within two checks.
const WATCH_CHECK: Duration = Duration::from_secs(2);
/// Entries taken from the watch per lock of the sensor.
const WATCH_BATCH: usize = 512;

impl Fleet {
    /// Opens the outbox; with the enforcer in fleet mode, every entry this
    /// gateway decided that the fleet never acknowledged (a crash between
    /// the state file and the outbox) is queued again.
    pub fn open(
        config: &Config,
        fleet: &FleetConfig,
        entries: Vec<&Entry>,
    ) -> anyhow::Result<Fleet> {
        let dir = config
            .state_file
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("fleet");
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        let mut outbox = Outbox::open(&dir.join("outbox.json"))?;
        let gateway = fleet.gateway_name();
        for entry in entries {
            let Some(tag) = &entry.fleet else { continue };
            let own = tag.site == fleet.site && tag.gateway == gateway;
            if own && tag.revision.is_none() {
                let decision = Decision::of_entry(entry, tag.scope, &fleet.site, &gateway);
                if !outbox.pending(&decision.key().text()) {
                    outbox.push(Op::Put { decision })?;
                }
            }
        }
        if !outbox.is_empty() {
            info!(
                "fleet: {} decision(s) of this gateway wait to be published",
                outbox.len()
            );
        }
        Ok(Fleet {
            view: View::new(&fleet.site, &gateway),
            config: fleet.clone(),
            gateway,
            outbox,
            wake: Arc::new(Notify::new()),
            slot: Slot::default(),
            link: None,
            synced: false,
            applied: 0,
            published: 0,
            errors: 0,
            last_error: None,
        })
    }

    /// The alert outlet that sends to the incidents stream.
    pub fn incident_sink(&self) -> IncidentSink {
        IncidentSink {
            slot: self.slot.clone(),
            runtime: tokio::runtime::Handle::current(),
            site: self.config.site.clone(),
            gateway: self.gateway.clone(),
        }
    }

    fn error(&mut self, message: String) {
        if self.last_error.as_deref() != Some(&message) {
            warn!("fleet: {message}");
        }
        self.errors += 1;
        self.last_error = Some(message);
    }

    /// Whether an operation of this gateway on `kind` `target` waits.
    fn pending(&self, kind: Kind, target: IpNet) -> bool {
        Scope::ALL.into_iter().any(|scope| {
            let key = Key {
                scope,
                site: self.config.site.clone(),
                gateway: (scope == Scope::Gateway).then(|| self.gateway.clone()),
                kind,
                target,
            };
            self.outbox.pending(&key.text())
        })
    }

    /// The key this gateway releases `entry` under: its own, in the
    /// entry's scope (a fleet-wide decision of another site is released
    /// by a later delete marker of this site's, which wins its group).
    fn release_key(&self, entry: &Entry, tag: &FleetTag) -> Key {
        Key {
            scope: tag.scope,
            site: self.config.site.clone(),
            gateway: (tag.scope == Scope::Gateway).then(|| self.gateway.clone()),
            kind: entry.kind,
            target: entry.target,
        }
    }
}

impl Sensor {
    fn fleet_checks(&self) -> (Vec<IpNet>, Vec<IpNet>) {
        let protected = self.config.feed_protected();
        let mut never = self.config.exempt.clone();
        never.extend(self.config.response.never_isolate.iter().copied());
        (protected, never)
    }

    /// Moves what the enforcer journaled into the outbox, and wakes the
    /// publisher.
    pub(super) fn fleet_take_journal(&mut self) {
        let journal = self.enforcer.take_journal();
        let Some(fleet) = &mut self.fleet else { return };
        if journal.is_empty() {
            return;
        }
        for change in journal {
            let op = match &change {
                Journaled::Decided(entry) => {
                    let Some(tag) = &entry.fleet else { continue };
                    let mut decision =
                        Decision::of_entry(entry, tag.scope, &tag.site, &tag.gateway);
                    decision.incident = entry.incident.and_then(|id| {
                        self.detection
                            .as_ref()
                            .and_then(|d| d.engine.incidents.get(id))
                            .map(|i| i.uid.clone())
                    });
                    Op::Put { decision }
                }
                Journaled::Released(entry) => {
                    let Some(tag) = &entry.fleet else { continue };
                    Op::Release {
                        key: fleet.release_key(entry, tag).text(),
                    }
                }
                // This gateway's own decision, read back from the bucket,
                // expired: its key goes, unless that would let an older
                // decision of its group apply again.
                Journaled::Expired(entry) => {
                    let Some(tag) = &entry.fleet else { continue };
                    let Some(revision) = tag.revision else {
                        continue;
                    };
                    let own = tag.site == fleet.config.site && tag.gateway == fleet.gateway;
                    let key = fleet.release_key(entry, tag);
                    if !own || !fleet.view.alone_in_group(&key, revision) {
                        continue;
                    }
                    Op::Tidy {
                        key: key.text(),
                        revision,
                    }
                }
            };
            if let Err(e) = fleet.outbox.push(op) {
                fleet.error(format!("the outbox could not be written: {e}"));
            }
        }
        fleet.wake.notify_one();
    }

    /// Takes in entries read from the bucket, and applies what changed.
    fn fleet_record(&mut self, batch: Vec<Watched>) {
        self.fleet_take_journal();
        let (protected, never) = self.fleet_checks();
        let Some(fleet) = &mut self.fleet else { return };
        let checks = Checks {
            accept: &fleet.config.accept,
            protected: &protected,
            never_isolate: &never,
        };
        let mut touched = Vec::new();
        let mut refusals = Vec::new();
        for w in batch {
            let (value, purged) = match w.operation {
                Operation::Put => (Some(w.value.as_slice()), false),
                Operation::Delete => (None, false),
                Operation::Purge => (None, true),
            };
            let (recorded, target) = fleet
                .view
                .record(&w.key, w.revision, value, purged, &checks);
            if let Recorded::Refused { key, why } = recorded {
                refusals.push((key, why));
            }
            touched.extend(target);
        }
        for (key, why) in refusals {
            warn!("fleet: refused {key}: {why}");
            self.metrics.fleet_refused.inc();
            self.audit_fleet("fleet", "refuse", &key, &why, "refused");
        }
        if self.fleet.as_ref().is_some_and(|f| f.synced) {
            touched.sort();
            touched.dedup();
            for (kind, target) in touched {
                self.settle(kind, target);
            }
        }
    }

    /// The bucket's first reading is complete: everything the fleet or
    /// this gateway's records say is settled.
    fn fleet_sync(&mut self) {
        let Some(fleet) = &mut self.fleet else { return };
        if fleet.synced {
            return;
        }
        fleet.synced = true;
        let mut targets = fleet.view.targets();
        targets.extend(self.enforcer.fleet_entries().map(|e| (e.kind, e.target)));
        info!(
            "fleet: {} decision(s) read at revision {}; settling {} target(s)",
            fleet.view.len(),
            fleet.view.revision,
            targets.len()
        );
        for (kind, target) in targets {
            self.settle(kind, target);
        }
    }

    /// Makes the maps hold what the fleet has in force here for one target.
    fn settle(&mut self, kind: Kind, target: IpNet) {
        let Some(fleet) = &self.fleet else { return };
        if fleet.pending(kind, target) {
            return;
        }
        let outcome = fleet.view.outcome(kind, target, clock::unix_now());
        let maps = &mut self.datapath.maps;
        let (result, what) = match outcome {
            Outcome::Apply { decision, revision } => {
                let mac = match kind {
                    Kind::Isolation => self
                        .bindings
                        .settled_mac(target.addr(), clock::unix_now_ns()),
                    Kind::Block => None,
                };
                let entry = entry_of(&decision, revision, mac);
                let by = format!("fleet:{}/{}", decision.site, decision.gateway);
                let detail = format!(
                    "{} {}: {} ({})",
                    decision.scope.label(),
                    kind.label(),
                    decision.reason,
                    decision.origin
                );
                match self.enforcer.apply_decision(maps, entry) {
                    Ok(false) => return,
                    Ok(true) => (Ok(()), Some((by, action_of(kind), detail))),
                    Err(e) => (Err(e.to_string()), Some((by, action_of(kind), detail))),
                }
            }
            Outcome::Lift { kind, target } => match self.enforcer.lift_decision(maps, kind, target)
            {
                Ok(None) => return,
                Ok(Some(entry)) => {
                    let by = match &entry.fleet {
                        Some(tag) => format!("fleet (decided by {}/{})", tag.site, tag.gateway),
                        None => "fleet".into(),
                    };
                    (
                        Ok(()),
                        Some((by, release_of(kind), "released in the fleet".into())),
                    )
                }
                Err(e) => (Err(e.to_string()), None),
            },
        };
        let fleet = self.fleet.as_mut().expect("fleet mode");
        match (&result, &what) {
            (Ok(()), Some((by, action, detail))) => {
                fleet.applied += 1;
                info!("fleet: {action} {target} ({by}: {detail})");
                self.metrics.fleet_applied.inc();
            }
            (Err(e), _) => fleet.error(format!("applying the fleet's decision on {target}: {e}")),
            _ => {}
        }
        if let Some((by, action, detail)) = what {
            let outcome = match result {
                Ok(()) => "ok".to_string(),
                Err(e) => e,
            };
            self.audit_fleet(&by, action, &target.to_string(), &detail, &outcome);
        }
    }

    /// The fleet acknowledged `op`: out of the outbox; the target is
    /// settled now if the bucket's echo of it was already read (else the
    /// echo settles it when it comes).
    fn fleet_published(&mut self, op: &Op, revision: Option<u64>) {
        let Some(fleet) = &mut self.fleet else { return };
        if let Err(e) = fleet.outbox.done(op) {
            fleet.error(format!("the outbox could not be written: {e}"));
        }
        fleet.published += 1;
        if matches!(op, Op::Tidy { .. }) {
            return; // nothing in force changes
        }
        let Some(key) = op.key() else { return };
        let echoed = match revision {
            Some(r) => fleet.view.revision_of(&key).is_some_and(|seen| seen >= r),
            None => fleet.view.released(&key),
        };
        if echoed {
            self.settle(key.kind, key.target);
        }
    }

    /// The servers refused `op` for good (permissions): dropped, and said.
    fn fleet_refused(&mut self, op: &Op, why: String) {
        let Some(fleet) = &mut self.fleet else { return };
        let _ = fleet.outbox.done(op);
        fleet.error(format!(
            "the servers refused {} ({why}); it is dropped: check this gateway's NATS permissions against [fleet] publish",
            op.key_text()
        ));
        let key = op.key_text();
        self.audit_fleet("fleet", "publish", &key, &why, "refused");
    }

    fn audit_fleet(
        &mut self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
        outcome: &str,
    ) {
        let record = AuditRecord {
            ts: clock::unix_now_ns(),
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            detail: detail.into(),
            outcome: outcome.into(),
        };
        let written = self.store.audit(&[record]);
        self.count_store_write(written.is_ok());
    }

    fn fleet_status(&self) -> Option<GatewayStatus> {
        let fleet = self.fleet.as_ref()?;
        Some(GatewayStatus {
            site: fleet.config.site.clone(),
            gateway: fleet.gateway.clone(),
            version: crate::VERSION.to_string(),
            reported: clock::unix_now(),
            applied_revision: fleet.view.revision,
            decisions_in_force: self.enforcer.fleet_entries().count(),
            refused: fleet.view.refused,
            outbox: fleet.outbox.len(),
            errors: fleet.errors,
            last_error: fleet.last_error.clone(),
        })
    }

    /// `sensorctl fleet list`: every decision in force in the fleet, and
    /// the refused entries.
    pub(super) fn fleet_list(&self) -> Result<Value, String> {
        let fleet = self.fleet.as_ref().ok_or(NOT_IN_FLEET)?;
        let now = clock::unix_now();
        let decisions: Vec<Value> = fleet
            .view
            .decisions(now)
            .into_iter()
            .map(|(d, revision)| {
                let here =
                    fleet.view.in_force(d.kind, d.target, now).map(|(_, r)| r) == Some(revision);
                json!({
                    "kind": d.kind, "target": d.target, "scope": d.scope,
                    "site": d.site, "gateway": d.gateway, "origin": d.origin,
                    "reason": d.reason, "created": d.created, "expires": d.expires,
                    "incident": d.incident, "revision": revision, "in_force_here": here,
                })
            })
            .collect();
        let refused: Vec<Value> = fleet
            .view
            .refusals()
            .into_iter()
            .map(|(key, revision, why)| json!({"key": key, "revision": revision, "why": why}))
            .collect();
        Ok(json!({"revision": fleet.view.revision, "decisions": decisions, "refused": refused}))
    }

    /// This gateway's side of `sensorctl fleet status`.
    pub(super) fn fleet_local_status(&self) -> Result<(Value, Option<Arc<FleetClient>>), String> {
        let fleet = self.fleet.as_ref().ok_or(NOT_IN_FLEET)?;
        let connected = fleet
            .link
            .as_ref()
            .is_some_and(|l| l.connected.load(std::sync::atomic::Ordering::Relaxed));
        let status = json!({
            "site": fleet.config.site,
            "gateway": fleet.gateway,
            "connected": connected,
            "synced": fleet.synced,
            "revision": fleet.view.revision,
            "outbox": fleet.outbox.len(),
            "applied": fleet.applied,
            "published": fleet.published,
            "refused": fleet.view.refused,
            "errors": fleet.errors,
            "last_error": fleet.last_error,
        });
        let client = fleet.slot.lock().expect("fleet slot").clone();
        Ok((status, client))
    }

    /// The connection, for the shared feeds, once there is one.
    pub(super) fn fleet_feed_link(&self) -> Option<super::feeds::FeedLink> {
        let fleet = self.fleet.as_ref()?;
        let client = fleet.slot.lock().expect("fleet slot").clone()?;
        Some(super::feeds::FeedLink {
            client,
            site: fleet.config.site.clone(),
            gateway: fleet.gateway.clone(),
        })
    }

    /// Figures for the metrics.
    pub(super) fn fleet_figures(&self) -> Option<crate::metrics::FleetFigures> {
        let fleet = self.fleet.as_ref()?;
        Some(crate::metrics::FleetFigures {
            connected: fleet
                .link
                .as_ref()
                .is_some_and(|l| l.connected.load(std::sync::atomic::Ordering::Relaxed)),
            revision: fleet.view.revision,
            outbox: fleet.outbox.len(),
            in_force: self.enforcer.fleet_entries().count(),
            errors: fleet.errors,
            disconnects: fleet.link.as_ref().map_or(0, |l| {
                l.disconnects.load(std::sync::atomic::Ordering::Relaxed)
            }),
        })
    }
}

pub const NOT_IN_FLEET: &str = "this gateway is not in a fleet (no [fleet] in its configuration)";

fn action_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Isolation => "isolate",
        Kind::Block => "block",
    }
}

fn release_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Isolation => "release",
        Kind::Block => "unblock",
    }
}

/// The record of a fleet decision applied here.
fn entry_of(d: &Decision, revision: u64, mac: Option<[u8; 6]>) -> Entry {
    Entry {
        kind: d.kind,
        target: d.target,
        origin: d.origin.clone(),
        reason: d.reason.clone(),
        created: d.created,
        expires: d.expires,
        incident: None,
        mac: mac.filter(|_| d.kind == Kind::Isolation),
        fleet: Some(FleetTag {
            scope: d.scope,
            site: d.site.clone(),
            gateway: d.gateway.clone(),
            revision: Some(revision),
        }),
    }
}

/// Connects (retrying every few seconds, said once), then runs the watch,
/// the publisher and the reporter until sensord stops.
pub async fn fleet_loop(sensor: Shared, mut stop: watch::Receiver<bool>) {
    let Some((config, name, slot, wake)) =
        sensor.lock().expect("sensor lock").fleet.as_ref().map(|f| {
            (
                f.config.clone(),
                format!("sensord {}/{}", f.config.site, f.gateway),
                f.slot.clone(),
                f.wake.clone(),
            )
        })
    else {
        return;
    };
    let (client, buckets) = loop {
        let attempt = async {
            let client = FleetClient::connect(&config, &name).await?;
            let buckets = client.buckets().await?;
            Ok::<_, crate::fleet::client::FleetError>((client, buckets))
        };
        tokio::select! {
            result = attempt => match result {
                Ok(pair) => break pair,
                Err(e) => {
                    // Said once (`Fleet::error` says a message once).
                    let message = format!("{e}; enforcing what is in force, retrying every 2 s");
                    if let Some(f) = sensor.lock().expect("sensor lock").fleet.as_mut() {
                        f.error(message);
                    }
                }
            },
            _ = stop.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => return,
        }
    };
    info!(
        "fleet: connected to {} as {name}",
        config.servers.join(", ")
    );
    let client = Arc::new(client);
    {
        let mut s = sensor.lock().expect("sensor lock");
        if let Some(f) = s.fleet.as_mut() {
            f.link = Some(client.link.clone());
        }
    }
    *slot.lock().expect("fleet slot") = Some(client.clone());
    tokio::join!(
        watch_loop(
            sensor.clone(),
            client.clone(),
            buckets.clone(),
            stop.clone()
        ),
        publish_loop(
            sensor.clone(),
            client.clone(),
            buckets.clone(),
            wake,
            stop.clone()
        ),
        report_loop(sensor.clone(), buckets, stop),
    );
    client.client.flush().await.ok();
}

/// Reads the bucket: the latest entry of each key first (then the view is
/// settled against the maps), then every change, in order. If the watch
/// ends (a server lost, the consumer gone), it resumes after the last
/// revision read.
async fn watch_loop(
    sensor: Shared,
    client: Arc<FleetClient>,
    buckets: Buckets,
    mut stop: watch::Receiver<bool>,
) {
    let mut first = true;
    loop {
        let latest = client.latest_revision(&buckets.decisions).await;
        let started = match (&latest, first) {
            (Err(e), _) => Err(e.to_string()),
            (Ok(_), true) => buckets
                .decisions
                .watch_with_history(">")
                .await
                .map_err(|e| e.to_string()),
            (Ok(_), false) => {
                let from = sensor
                    .lock()
                    .expect("sensor lock")
                    .fleet
                    .as_ref()
                    .map_or(0, |f| f.view.revision)
                    + 1;
                buckets
                    .decisions
                    .watch_all_from_revision(from)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        match started {
            Err(e) => {
                // Said each time (at most once a second): a watch that
                // cannot start is the fleet going blind.
                warn!("fleet: watching the decisions: {e}; retrying");
                if let Some(f) = sensor.lock().expect("sensor lock").fleet.as_mut() {
                    f.errors += 1;
                    f.last_error = Some(format!("watching the decisions: {e}"));
                }
            }
            Ok(mut entries) => {
                let latest = latest.unwrap_or(0);
                let mut check = tokio::time::interval(WATCH_CHECK);
                check.tick().await;
                let mut behind = None;
                if first && latest == 0 {
                    sensor.lock().expect("sensor lock").fleet_sync();
                }
                first = false;
                loop {
                    let next = tokio::select! {
                        next = entries.next() => next,
                        _ = check.tick() => {
                            if watch_stalled(&sensor, &client, &buckets, &mut behind).await {
                                warn!("fleet: the watch of the decisions fell behind the bucket; resuming");
                                break;
                            }
                            continue;
                        }
                        _ = stop.changed() => return,
                    };
                    let entry = match next {
                        Some(Ok(entry)) => entry,
                        Some(Err(e)) => {
                            warn!("fleet: the watch of the decisions failed: {e}; resuming");
                            break;
                        }
                        None => break,
                    };
                    let mut caught_up = entry.delta == 0 || entry.revision >= latest;
                    let mut batch = vec![Watched {
                        key: entry.key,
                        revision: entry.revision,
                        operation: entry.operation,
                        value: entry.value.to_vec(),
                    }];
                    // What is already here goes in under the same lock.
                    while batch.len() < WATCH_BATCH {
                        use futures_util::FutureExt;
                        let Some(Some(Ok(more))) = entries.next().now_or_never() else {
                            break;
                        };
                        caught_up |= more.delta == 0 || more.revision >= latest;
                        batch.push(Watched {
                            key: more.key,
                            revision: more.revision,
                            operation: more.operation,
                            value: more.value.to_vec(),
                        });
                    }
                    let mut s = sensor.lock().expect("sensor lock");
                    s.fleet_record(batch);
                    if caught_up {
                        s.fleet_sync();
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Whether the watch has stalled: the bucket is past the revision this
/// gateway has read, and was already at the last check, with nothing read
/// since. (A watch whose server was lost can hang without an error.)
async fn watch_stalled(
    sensor: &Shared,
    client: &FleetClient,
    buckets: &Buckets,
    behind: &mut Option<u64>,
) -> bool {
    let Ok(latest) = client.latest_revision(&buckets.decisions).await else {
        return false; // the servers are away: nothing to compare with
    };
    let read = sensor
        .lock()
        .expect("sensor lock")
        .fleet
        .as_ref()
        .map_or(0, |f| f.view.revision);
    let stalled = latest > read && *behind == Some(read);
    *behind = (latest > read).then_some(read);
    stalled
}

/// Sends the outbox, oldest operation first, each until acknowledged.
async fn publish_loop(
    sensor: Shared,
    client: Arc<FleetClient>,
    buckets: Buckets,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let op = {
            let mut s = sensor.lock().expect("sensor lock");
            s.fleet_take_journal();
            s.fleet.as_ref().and_then(|f| f.outbox.front().cloned())
        };
        let Some(op) = op else {
            tokio::select! {
                _ = wake.notified() => continue,
                _ = stop.changed() => return,
            }
        };
        let result = match &op {
            Op::Put { decision } => buckets.put(decision).await.map(Some),
            Op::Release { key } => buckets.release(key).await.map(|()| None),
            // (Written again since: nothing to tidy, done all the same.)
            Op::Tidy { key, revision } => buckets.tidy(key, *revision).await.map(|_| None),
        };
        match result {
            Ok(revision) => sensor
                .lock()
                .expect("sensor lock")
                .fleet_published(&op, revision),
            Err(e) => {
                let subject = format!("$KV.{}.{}", crate::fleet::client::DECISIONS, op.key_text());
                let why = client.explain(e, &subject);
                let refused = why.to_lowercase().contains("permission");
                {
                    let mut s = sensor.lock().expect("sensor lock");
                    if refused {
                        s.fleet_refused(&op, why);
                    } else if let Some(f) = s.fleet.as_mut() {
                        f.error(format!("publishing {}: {why}; retrying", op.key_text()));
                    }
                }
                if refused {
                    continue;
                }
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// Writes this gateway's status every `STATUS_EVERY`.
async fn report_loop(sensor: Shared, buckets: Buckets, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(STATUS_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let status = sensor.lock().expect("sensor lock").fleet_status();
        if let Some(status) = status {
            // A failure shows as a stale "last seen"; the link's own
            // errors are said by the other loops.
            let _ = buckets.report(&status).await;
        }
    }
}

/// `sensorctl fleet status`: every gateway's last report, with how far
/// behind the bucket each is; `sensorctl fleet incidents`: the latest
/// document of each incident in the stream. Both read the servers, off the
/// sensor's lock.
pub async fn fleet_request(sensor: &Shared, what: FleetQuery) -> Result<Value, String> {
    let (local, client) = sensor.lock().expect("sensor lock").fleet_local_status()?;
    let client = client.ok_or("not connected to the fleet's servers yet")?;
    // A read can time out while the servers move a stream's leader (a
    // server lost): asked again, three times in all.
    let mut result = Err(String::new());
    for _ in 0..3 {
        result = read_fleet(&client, &what, &local).await;
        if result.is_ok() {
            break;
        }
    }
    result
}

async fn read_fleet(
    client: &FleetClient,
    what: &FleetQuery,
    local: &Value,
) -> Result<Value, String> {
    match what {
        FleetQuery::Status => {
            let buckets = client.buckets().await.map_err(|e| e.to_string())?;
            let latest = client
                .latest_revision(&buckets.decisions)
                .await
                .map_err(|e| e.to_string())?;
            let mut gateways = client
                .statuses(&buckets.gateways)
                .await
                .map_err(|e| e.to_string())?;
            gateways.sort_by(|a, b| (&a.site, &a.gateway).cmp(&(&b.site, &b.gateway)));
            let now = clock::unix_now();
            let rows: Vec<Value> = gateways
                .iter()
                .map(|g| {
                    let mut row = serde_json::to_value(g).expect("status serializes");
                    row["last_seen_secs"] = json!(now.saturating_sub(g.reported));
                    row["lag"] = json!(latest.saturating_sub(g.applied_revision));
                    row
                })
                .collect();
            Ok(json!({"revision": latest, "this_gateway": local, "gateways": rows}))
        }
        FleetQuery::Incidents { site, limit } => {
            let filter = match &site {
                Some(site) => format!("sensor.incidents.{site}.>"),
                None => crate::fleet::client::INCIDENT_SUBJECTS.to_string(),
            };
            if let Some(site) = &site {
                if let Some(problem) = crate::fleet::name_problem(site) {
                    return Err(problem);
                }
            }
            let docs = client
                .incidents(&filter, *limit)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!(docs))
        }
    }
}

/// What `fleet_request` reads.
pub enum FleetQuery {
    Status,
    Incidents { site: Option<String>, limit: usize },
}
