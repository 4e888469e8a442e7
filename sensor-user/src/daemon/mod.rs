//! sensord: loads the datapath, applies the configuration, serves the control
//! API and the metrics, expires entries, refreshes the feeds, and shuts
//! down on SIGINT/SIGTERM.

mod feeds;
mod fleet;

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use log::{error, info, warn};
use serde_json::{json, Value};
use tokio::{net::UnixStream, sync::watch};

use crate::{
    alerts::Observer,
    bindings::{self, Bindings, Learnt},
    clock,
    config::{Config, Mode, OnExit},
    control::{self, Access, Request, Response},
    datapath::{self, Datapath},
    detection::Detection,
    enforcer::{Enforcer, Origin},
    listen,
    metrics::{Metrics, Snapshot},
    store::{retention_cutoff, AuditRecord, Store},
    tap::{Tap, TapFeed, TapReader, TapStatus},
    telemetry::{self, Clocks, TelemetryCounts, TelemetryMaps},
    triage::Step,
};

/// Everything the tasks share, behind one lock. Operations are short map
/// syscalls; no lock is held across an await.
pub struct Sensor {
    pub config: Config,
    pub datapath: Datapath,
    pub enforcer: Enforcer,
    pub metrics: Metrics,
    /// Live detection; `None` when `detection.enabled` is false.
    pub detection: Option<Detection>,
    pub telemetry: TelemetryCounts,
    /// The taps' figures, refreshed by their reader.
    pub taps: TapStatus,
    /// Layer-2 bindings of the switched segments' addresses.
    pub bindings: Bindings,
    /// Incidents, false-positive marks and the audit log.
    pub store: Store,
    /// The threat feeds (a block feed's ranges live in the enforcer).
    pub feeds: crate::feeds::Feeds,
    /// Fleet mode (`[fleet]`): the bucket as seen, the outbox.
    pub fleet: Option<fleet::Fleet>,
    /// The gateway, as incident documents name it.
    observer: Observer,
    /// When detection's changes were last written to the store.
    persisted: Instant,
    started: Instant,
}

/// What `Sensor::start` hands to the readers it does not own.
pub struct Readers {
    pub telemetry: Option<TelemetryMaps>,
    pub taps: Option<TapReader>,
}

type Shared = Arc<Mutex<Sensor>>;

/// How often the gateway's neighbour table is read for new bindings: a
/// never-seen host on a switched segment is proven within this long of the
/// gateway resolving it.
const BINDING_REFRESH: Duration = Duration::from_millis(250);

/// Incidents one listing returns at most (read under the sensor's lock).
const MAX_LISTED: usize = 100_000;

/// How often at most detection's changes are written to the incident store.
const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// How often expired entries are swept from the maps and the state file.
/// (The datapath ignores an expired entry at once; this only tidies.)
const EXPIRY_SWEEP: Duration = Duration::from_secs(1);

impl Sensor {
    /// Loads (or adopts) the datapath and brings it in line with `config`;
    /// with detection on, also returns the telemetry maps and the taps for
    /// their readers.
    pub fn start(config: Config) -> Result<(Sensor, Readers)> {
        let mut datapath = Datapath::load(&config.pin_dir)?;
        // Fill the maps before attaching, so a new attachment never runs
        // against an empty policy.
        datapath
            .maps
            .sync_segments(&config.segments, &config.policy)?;
        datapath.maps.sync_exempt(&config.exempt)?;
        datapath
            .maps
            .sync_ports(&config.segments, &config.interfaces)?;
        datapath
            .maps
            .set_drop_spoofed(config.anti_spoofing.drop)
            .context("settings map")?;
        datapath
            .maps
            .set_monitor(config.mode == Mode::Monitor)
            .context("settings map")?;
        let metrics = Metrics::new();
        let (feeds, mut enforcer) = feeds::open(&mut datapath.maps, &config, &metrics)?;
        let fleet = match &config.fleet {
            Some(fc) => {
                enforcer.join_fleet(fc, config.feed_protected());
                Some(fleet::Fleet::open(
                    &config,
                    fc,
                    enforcer.fleet_entries().collect(),
                )?)
            }
            None => None,
        };
        let bindings = load_bindings(&mut datapath.maps, &config)?;
        let mut store = Store::open(&config.incident_database())?;
        let observer = Observer::of(&config);
        let (detection, telemetry) = if config.detection.enabled {
            let maps = datapath.take_telemetry()?;
            let mut detection = Detection::new(&config, &mut store)?;
            if let Some(f) = &fleet {
                detection.add_alert_outlet("fleet", Box::new(f.incident_sink()), &config)?;
            }
            (Some(detection), Some(maps))
        } else {
            (None, None)
        };
        datapath
            .maps
            .set_telemetry(detection.is_some())
            .context("settings map")?;
        datapath.attach_all(&config.interfaces, config.xdp_mode)?;
        let taps = open_taps(&datapath, &config)?;
        let mut sensor = Sensor {
            config,
            datapath,
            enforcer,
            feeds,
            fleet,
            metrics,
            detection,
            telemetry: TelemetryCounts::default(),
            taps: taps.as_ref().map(TapReader::status).unwrap_or_default(),
            bindings,
            store,
            observer,
            persisted: Instant::now(),
            started: Instant::now(),
        };
        if sensor.feeds.intel().next().is_some() {
            sensor.refresh_intel().map_err(anyhow::Error::msg)?;
        }
        Ok((sensor, Readers { telemetry, taps }))
    }

    /// Serves one control request from `actor`: a request that changes
    /// anything is logged and goes into the audit log with its outcome.
    pub fn serve(&mut self, request: Request, actor: &str) -> Result<Value, String> {
        let audited = (!request.is_read_only()).then(|| request.audit_subject());
        let command = request.name();
        // What detection changed in the last second is written first, so
        // listings (read from the store) are up to date.
        self.persist();
        let result = self.handle(request, actor);
        // What the request decided goes to the fleet's outbox at once.
        self.fleet_take_journal();
        if let Some((target, detail)) = audited {
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                Err(e) => e.clone(),
            };
            info!("{actor}: {command} {target} ({detail}): {outcome}");
            let record = AuditRecord {
                ts: clock::unix_now_ns(),
                actor: actor.to_string(),
                action: command.to_string(),
                target,
                detail,
                outcome,
            };
            let written = self.store.audit(&[record]);
            self.count_store_write(written.is_ok());
            if let Err(e) = written {
                warn!("the audit log missed {command} by {actor}: {e}");
            }
        }
        self.persist();
        result
    }

    /// Writes detection's pending incidents and audit records.
    fn persist(&mut self) {
        self.persisted = Instant::now();
        if let Some(ok) = self
            .detection
            .as_mut()
            .and_then(|d| d.persist(&mut self.store))
        {
            self.count_store_write(ok);
        }
    }

    fn count_store_write(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.metrics.store_writes.with_label_values(&[result]).inc();
    }

    /// An operator's step on incident `id`: on the engine's copy when it
    /// still holds the incident, else on the stored one.
    fn change_incident(&mut self, id: u64, step: Step, actor: &str) -> Result<Value, String> {
        let now = clock::unix_now_ns();
        if let Some(d) = &mut self.detection {
            if let Some(live) = d.engine.incidents.get(id) {
                step.check(live)?;
                d.record(id, now, |i| step.apply(i, actor, now));
                let view = d.engine.incidents.get(id).map(|i| self.observer.view(i));
                self.persist();
                return view.ok_or_else(|| format!("there is no incident {id}"));
            }
        }
        let mut incident = self
            .store
            .incident(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("there is no incident {id}"))?;
        step.check(&incident)?;
        let action = step.apply(&mut incident, actor, now);
        incident.actions.push(action);
        let written = self.store.save_incidents([&incident]);
        self.count_store_write(written.is_ok());
        written.map_err(|e| e.to_string())?;
        if let Some(d) = &mut self.detection {
            d.alert_stored(&incident, now);
        }
        Ok(self.observer.view(&incident))
    }

    fn handle(&mut self, request: Request, actor: &str) -> Result<Value, String> {
        let maps = &mut self.datapath.maps;
        // The socket's input is checked as sensorctl's is.
        let ttl = |secs: Option<u64>| -> Result<Option<Duration>, String> {
            secs.map(|s| clock::check_ttl(Duration::from_secs(s)))
                .transpose()
        };
        let reason = |r: Option<String>| r.unwrap_or_else(|| "no reason given".into());
        let entry = match request {
            Request::Status => return Ok(self.status()),
            Request::List { filter } => {
                return match &filter.feed {
                    Some(feed) => self.list_feed(feed),
                    None => Ok(json!(self.enforcer.list(maps, &filter))),
                }
            }
            Request::Feeds => return Ok(self.feeds_status()),
            Request::FeedRefresh { name } => return self.feed_refresh(name.as_deref()),
            Request::FeedRetire { name } => return self.feed_retire(&name),
            Request::FeedResume { name } => return self.feed_resume(&name),
            Request::Stats => return Ok(self.stats()),
            Request::FleetList => return self.fleet_list(),
            // Read from the servers off the lock (`handle_connection`).
            Request::FleetStatus | Request::FleetIncidents { .. } => {
                return Err("fleet status and incidents are read off the lock".into())
            }
            Request::Isolate {
                ip,
                ttl_secs,
                reason: r,
                scope,
            } => {
                // On a switched segment, the host's MAC goes with it (see
                // `Enforcer::isolate`), when its binding is settled.
                let mac = self.bindings.settled_mac(ip, clock::unix_now_ns());
                let origin = Origin::operator(scope);
                self.enforcer
                    .isolate(maps, ip, mac, ttl(ttl_secs)?, &reason(r), origin)
            }
            Request::Release { ip, false_positive } => {
                return self.release(ip, false_positive, actor);
            }
            Request::Incidents { mut filter } => {
                // Read under the lock: bounded, whatever the client asks.
                filter.limit = Some(filter.limit.unwrap_or(MAX_LISTED).min(MAX_LISTED));
                let found = self.store.incidents(&filter).map_err(|e| e.to_string())?;
                return Ok(json!(found
                    .iter()
                    .map(|i| self.observer.view(i))
                    .collect::<Vec<_>>()));
            }
            Request::ReloadIntel => return self.reload_intel(),
            Request::Reload => return self.reload(),
            Request::Incident { id } => {
                // The engine's copy is the latest; the store has the rest.
                let live = self
                    .detection
                    .as_ref()
                    .and_then(|d| d.engine.incidents.get(id));
                if let Some(i) = live {
                    return Ok(self.observer.view(i));
                }
                return self
                    .store
                    .incident(id)
                    .map_err(|e| e.to_string())?
                    .map(|i| self.observer.view(&i))
                    .ok_or_else(|| format!("there is no incident {id}"));
            }
            Request::Triage { id, step, note } => {
                return self.change_incident(id, Step::Triage(step, note), actor)
            }
            Request::Note { id, text } => return self.change_incident(id, Step::Note(text), actor),
            Request::FalsePositives => {
                return self
                    .store
                    .false_positives()
                    .map(|marks| json!(marks))
                    .map_err(|e| e.to_string())
            }
            Request::UndoFalsePositive { host, detector } => {
                let removed = self
                    .store
                    .undo_false_positive(host, detector.as_deref())
                    .map_err(|e| e.to_string())?;
                if removed == 0 {
                    return Err(match detector {
                        Some(d) => format!("{host} has no false-positive mark for {d}"),
                        None => format!("{host} has no false-positive marks"),
                    });
                }
                if let Some(d) = &mut self.detection {
                    d.reload_false_positives(&self.store)?;
                }
                return Ok(json!({"host": host, "removed": removed}));
            }
            Request::Audit { since_secs, limit } => {
                let since = since_secs.unwrap_or(0).saturating_mul(1_000_000_000);
                let limit = limit.unwrap_or(100).min(100_000);
                return self
                    .store
                    .audit_log(since, limit)
                    .map(|records| json!(records))
                    .map_err(|e| e.to_string());
            }
            Request::Block {
                cidr,
                ttl_secs,
                reason: r,
                scope,
            } => {
                let origin = Origin::operator(scope);
                self.enforcer
                    .block(maps, cidr, ttl(ttl_secs)?, &reason(r), origin)
            }
            Request::BlockMany {
                cidrs,
                ttl_secs,
                reason: r,
                scope,
            } => {
                let origin = Origin::operator(scope);
                let added = self
                    .enforcer
                    .block_many(maps, &cidrs, ttl(ttl_secs)?, &reason(r), origin)
                    .map_err(|e| e.to_string())?;
                let counts = self.enforcer.counts(&self.datapath.maps);
                return Ok(json!({
                    "blocked": added,
                    "blocked_total": counts.blocked_v4 + counts.blocked_v6,
                }));
            }
            Request::Unblock { cidr } => {
                let feeds = self.enforcer.feeds_listing(&cidr);
                let unblocked = self.enforcer.unblock(maps, cidr);
                if !feeds.is_empty() {
                    let feeds = feeds.join(", ");
                    return match unblocked {
                        Ok(e) => Ok(json!({"target": e.target, "still_blocked_by_feeds": feeds})),
                        Err(_) => Err(format!(
                            "{cidr} is blocked by feed {feeds}, not by a record: sensorctl feeds retire NAME takes a feed out, and exempt ranges are never blocked"
                        )),
                    };
                }
                unblocked
            }
        };
        entry.map(|e| json!(e)).map_err(|e| e.to_string())
    }

    /// Releases `ip`; as a false positive, also marks its open incidents so
    /// the same detectors no longer act on it.
    fn release(
        &mut self,
        ip: std::net::IpAddr,
        false_positive: bool,
        actor: &str,
    ) -> Result<Value, String> {
        let now = crate::telemetry::Clocks::now().unix_now();
        let released = self.enforcer.release(&mut self.datapath.maps, ip);
        let marked = match (&mut self.detection, false_positive) {
            (Some(d), true) => d.mark_false_positive(ip, now, actor, &mut self.store)?,
            (Some(d), false) => {
                if released.is_ok() {
                    d.note_release(ip, now, actor);
                }
                Vec::new()
            }
            (None, true) => return Err("detection is off: there are no incidents to mark".into()),
            (None, false) => Vec::new(),
        };
        let mut result = match released {
            Ok(entry) => json!(entry),
            // Marking a host that is not isolated (alert-only) is fine.
            Err(_) if false_positive => json!({"target": ip.to_string(), "not_isolated": true}),
            Err(e) => return Err(e.to_string()),
        };
        if false_positive {
            result["false_positive_incidents"] = json!(marked);
        }
        Ok(result)
    }

    /// Re-reads the configuration file. Detection's settings (thresholds,
    /// allowlists, intel lists, well-known services), the response rules
    /// and the retention take effect at once; settings that take a restart
    /// are named and keep their running values. An invalid file changes
    /// nothing.
    pub fn reload(&mut self) -> Result<Value, String> {
        let path = self
            .config
            .source
            .clone()
            .ok_or("this sensord was not started from a file")?;
        let new =
            Config::load(&path).map_err(|e| format!("{e} (the running configuration stays)"))?;
        let needs_restart = self.config.needs_restart(&new);
        if let Some(d) = &mut self.detection {
            let reconfigured = d.engine.reconfigure(&new.detection);
            let result = if reconfigured.is_ok() { "ok" } else { "failed" };
            self.metrics
                .intel_reloads
                .with_label_values(&[result])
                .inc();
            reconfigured.map_err(|e| format!("{e:#} (the running configuration stays)"))?;
            d.set_response(new.response.clone());
        }
        self.config.detection.intel = new.detection.intel.clone();
        self.reconfigure_feeds(&new.feeds)
            .map_err(|e| format!("{e} (the feeds' previous settings stay)"))?;
        if self.feeds.intel().next().is_some() {
            self.refresh_intel()?;
        }
        self.config.detection = new.detection;
        self.enforcer.set_fleet_local(self.config.feed_protected());
        self.config.response = new.response;
        self.config.incidents.retention_days = new.incidents.retention_days;
        if needs_restart.is_empty() {
            info!("reloaded {}", path.display());
        } else {
            warn!(
                "reloaded {}; changes to {} take a restart and are not in force",
                path.display(),
                needs_restart.join(", ")
            );
        }
        Ok(json!({
            "file": path,
            "applied": ["detection", "response", "incidents.retention_days", "feed"],
            "needs_restart": needs_restart,
        }))
    }

    /// Re-reads the intel lists (and takes the alert feeds' entries
    /// again); on an error the old lists stay in force.
    pub fn reload_intel(&mut self) -> Result<Value, String> {
        if self.detection.is_none() {
            return Err("detection is off: no intel lists are in use".into());
        }
        let entries = self.refresh_intel()?;
        let files = &self.config.detection.intel.files;
        info!("reloaded {} intel list(s): {entries} entries", files.len());
        Ok(json!({"files": files, "entries": entries}))
    }

    fn status(&self) -> Value {
        let counts = self.enforcer.counts(&self.datapath.maps);
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "mode": if self.datapath.maps.monitor() { "monitor" } else { "enforce" },
            "uptime_secs": self.started.elapsed().as_secs(),
            "pin_dir": self.config.pin_dir,
            "state_file": self.config.state_file,
            "interfaces": self.datapath.attachments,
            "taps": self.taps,
            "entries": counts,
            "capacity": {
                "isolated_hosts": sensor_common::MAX_ISOLATED_HOSTS,
                "blocked_ranges": sensor_common::MAX_BLOCKED_RANGES,
            },
            "segments": self.config.segments.iter().map(|s| json!({
                "id": s.id, "name": s.name, "cidrs": s.cidrs,
            })).collect::<Vec<_>>(),
        })
    }

    fn stats(&self) -> Value {
        let interfaces: Vec<Value> = self
            .datapath
            .maps
            .counters()
            .into_iter()
            .map(|(interface, counters)| {
                let rows: Vec<Value> = sensor_common::Verdict::ALL
                    .iter()
                    .flat_map(|v| sensor_common::Reason::ALL.iter().map(move |r| (*v, *r)))
                    .filter_map(|(v, r)| {
                        let i = sensor_common::counter_index(v, r);
                        (counters.packets[i] > 0).then(|| {
                            json!({
                                "verdict": v.label(), "reason": r.label(),
                                "packets": counters.packets[i], "bytes": counters.bytes[i],
                            })
                        })
                    })
                    .collect();
                json!({"interface": interface, "counters": rows})
            })
            .collect();
        json!({ "interfaces": interfaces })
    }

    pub fn render_metrics(&self) -> String {
        self.metrics.render(&Snapshot {
            counters: self.datapath.maps.counters(),
            counts: self.enforcer.counts(&self.datapath.maps),
            monitor: self.datapath.maps.monitor(),
            attachments: &self.datapath.attachments,
            detection: self.detection.as_ref().map(|d| d.snapshot(self.telemetry)),
            taps: &self.taps,
            feeds: self.feed_figures(),
            fleet: self.fleet_figures(),
        })
    }

    /// Takes in the gateway's neighbour table: new and moved bindings to the
    /// datapath and the bindings file, moves to detection.
    fn learn_bindings(&mut self, table: &[(IpAddr, [u8; 6])], now: crate::detect::Nanos) {
        let learnt = self.bindings.learn(table, now);
        let gone = self.bindings.expire(now);
        let maps = &mut self.datapath.maps;
        for l in &learnt {
            let (Learnt::New { addr, mac } | Learnt::Moved { addr, to: mac, .. }) = l;
            if let Err(e) = maps.set_binding(*addr, *mac) {
                warn!("binding {addr} to {}: {e}", bindings::mac_text(mac));
            }
        }
        for addr in &gone {
            if let Err(e) = maps.remove_binding(*addr) {
                warn!("forgetting the binding of {addr}: {e}");
            }
        }
        if learnt.is_empty() && gone.is_empty() {
            return;
        }
        if let Err(e) = self.bindings.save() {
            warn!("{e:#}");
        }
        if let Some(detection) = &mut self.detection {
            detection.bindings_learnt(&learnt, &self.bindings, now);
            // An incident waiting for its host's proof is decided now.
            self.respond(now);
        }
    }

    /// Forgets closed incidents and audit records past the retention.
    fn prune_store(&mut self) {
        let days = self.config.incidents.retention_days;
        match self.store.prune(retention_cutoff(clock::unix_now_ns(), days)) {
            Ok((0, 0)) => {}
            Ok((incidents, audit)) => info!(
                "forgot {incidents} closed incident(s) and {audit} audit record(s) older than {days} days"
            ),
            Err(e) => warn!("pruning the incident store: {e}"),
        }
    }

    fn sweep_expired(&mut self) {
        self.enforcer.retry_save();
        match self
            .enforcer
            .expire(&mut self.datapath.maps, clock::unix_now())
        {
            Ok(removed) if removed.is_empty() => {}
            Ok(removed) => {
                let now = clock::unix_now_ns();
                let mut records = Vec::with_capacity(removed.len());
                for entry in removed {
                    self.metrics
                        .expired_entries
                        .with_label_values(&[entry.kind.label()])
                        .inc();
                    records.push(AuditRecord {
                        ts: now,
                        actor: "sensord".into(),
                        action: "expire".into(),
                        target: entry.target.to_string(),
                        detail: format!(
                            "{} by {}: {}",
                            entry.kind.label(),
                            entry.origin,
                            entry.reason
                        ),
                        outcome: "ok".into(),
                    });
                }
                let written = self.store.audit(&records);
                self.count_store_write(written.is_ok());
                if let Err(e) = written {
                    warn!("the audit log missed {} expiries: {e}", records.len());
                }
            }
            Err(e) => warn!("expiry sweep: {e}"),
        }
    }
}

/// Runs sensord until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<()> {
    let socket_path = config.control_socket.clone();
    let metrics_address = config.metrics_address;
    let on_exit = config.on_exit;
    let pin_dir = config.pin_dir.clone();

    let control_listener = control::bind(&socket_path, Access::Root)?;
    let readonly_listener = match &config.readonly_group {
        Some(group) => {
            let gid =
                control::group_id(group).map_err(|e| anyhow::anyhow!("readonly_group: {e}"))?;
            let access = Access::Group(gid);
            Some((control::bind(&config.readonly_socket, access)?, access))
        }
        None => None,
    };
    let readonly_path = config.readonly_socket.clone();
    let metrics_listener = tokio::net::TcpListener::bind(metrics_address)
        .await
        .with_context(|| format!("binding metrics_address {metrics_address}"))?;
    let (sensor, readers) = Sensor::start(config)?;
    let sensor: Shared = Arc::new(Mutex::new(sensor));
    let tap_stop = Arc::new(AtomicBool::new(false));
    let tap_thread = match readers.taps {
        Some(reader) => Some(spawn_tap_reader(reader, sensor.clone(), tap_stop.clone())?),
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);

    let control_task = tokio::spawn(serve_control(
        control_listener,
        sensor.clone(),
        stop_rx.clone(),
        Access::Root,
    ));
    let readonly_task = readonly_listener.map(|(listener, access)| {
        tokio::spawn(serve_control(
            listener,
            sensor.clone(),
            stop_rx.clone(),
            access,
        ))
    });
    let metrics_task = tokio::spawn(serve_metrics(
        metrics_listener,
        sensor.clone(),
        stop_rx.clone(),
    ));
    let expiry_task = tokio::spawn(sweep_loop(sensor.clone(), stop_rx.clone()));
    let binding_task = tokio::spawn(binding_loop(sensor.clone(), stop_rx.clone()));
    let hup_task = tokio::spawn(reload_on_hangup(sensor.clone(), stop_rx.clone()));
    let feed_task = tokio::spawn(feeds::feed_loop(sensor.clone(), stop_rx.clone()));
    let fleet_task = tokio::spawn(fleet::fleet_loop(sensor.clone(), stop_rx.clone()));
    let telemetry_task = readers
        .telemetry
        .map(|maps| tokio::spawn(detection_loop(maps, sensor.clone(), stop_rx)));
    info!(
        "sensord ready: control socket {}, metrics http://{metrics_address}/metrics",
        socket_path.display()
    );

    wait_for_signal().await?;
    info!("shutting down");
    let _ = stop_tx.send(true);
    tap_stop.store(true, Ordering::Relaxed);
    let _ = tokio::join!(
        control_task,
        metrics_task,
        expiry_task,
        hup_task,
        binding_task,
        feed_task,
        fleet_task
    );
    if let Some(task) = readonly_task {
        let _ = task.await;
        let _ = std::fs::remove_file(&readonly_path);
    }
    if let Some(thread) = tap_thread {
        if thread.join().is_err() {
            error!("the tap reader panicked");
        }
    }
    if let Some(task) = telemetry_task {
        match task.await {
            Ok(Err(e)) => error!("detection: {e:#}"),
            Err(e) => error!("detection task: {e}"),
            Ok(Ok(())) => {}
        }
    }
    let _ = std::fs::remove_file(&socket_path);

    let mut sensor = Arc::try_unwrap(sensor)
        .map_err(|_| anyhow::anyhow!("a task still holds the sensor"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("the sensor lock was poisoned"))?;
    if let Some(detection) = &mut sensor.detection {
        detection.save_edges(crate::clock::unix_now_ns(), true);
    }
    sensor.persist();
    drop(sensor);
    match on_exit {
        OnExit::Keep => info!(
            "enforcement stays in place (program attached, maps pinned in {})",
            pin_dir.display()
        ),
        OnExit::Remove => {
            datapath::remove_pins(&pin_dir)?;
            info!(
                "detached and removed the pinned maps in {}",
                pin_dir.display()
            );
        }
    }
    Ok(())
}

/// SIGHUP re-reads the configuration (as `sensorctl reload`).
async fn reload_on_hangup(sensor: Shared, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let mut sensor = sensor.lock().expect("sensor lock");
                let reloaded = sensor.serve(Request::Reload, "SIGHUP");
                if let Err(e) = reloaded {
                    warn!("SIGHUP: {e}");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Serves a control socket. `access` says which: the root socket serves
/// every request; the group's serves only requests that read.
async fn serve_control(
    listener: tokio::net::UnixListener,
    sensor: Shared,
    stop: watch::Receiver<bool>,
    access: Access,
) {
    let accept = || listener.accept();
    let name = match access {
        Access::Root => "control socket",
        Access::Group(_) => "read-only control socket",
    };
    listen::serve(name, accept, stop, move |(stream, _)| {
        handle_connection(stream, sensor.clone(), access)
    })
    .await;
}

async fn handle_connection(mut stream: UnixStream, sensor: Shared, access: Access) {
    // Defence in depth beside the socket's mode: root on the root socket;
    // on the group's, whoever the mode let in, for reading only.
    let uid = stream.peer_cred().map(|cred| cred.uid()).ok();
    let refused = match (access, uid) {
        (_, None) => Some("the peer's credentials are unknown"),
        (Access::Root, Some(uid)) if uid != 0 => Some("only root may use the control API"),
        _ => None,
    };
    if let Some(message) = refused {
        control::write_response(&mut stream, &Response::error(message)).await;
        return;
    }
    let actor = control::actor(uid.unwrap_or(u32::MAX));
    let request = tokio::time::timeout(listen::REQUEST_TIMEOUT, control::read_request(&mut stream));
    let response = match request.await {
        Err(_) => Response::error(format!(
            "no request within {}s",
            listen::REQUEST_TIMEOUT.as_secs()
        )),
        Ok(Err(message)) => Response::error(message),
        Ok(Ok(request)) if access != Access::Root && !request.is_read_only() => {
            Response::error(format!(
                "{} changes things: this socket is read-only (use the root control socket)",
                request.name()
            ))
        }
        Ok(Ok(request)) => {
            let command = request.name();
            let query = match &request {
                Request::FleetStatus => Some(fleet::FleetQuery::Status),
                Request::FleetIncidents { site, limit } => Some(fleet::FleetQuery::Incidents {
                    site: site.clone(),
                    limit: limit.unwrap_or(100).min(MAX_LISTED),
                }),
                _ => None,
            };
            let result = match query {
                Some(query) => fleet::fleet_request(&sensor, query).await,
                None => sensor.lock().expect("sensor lock").serve(request, &actor),
            };
            let sensor = sensor.lock().expect("sensor lock");
            let label = if result.is_ok() { "ok" } else { "error" };
            sensor
                .metrics
                .control_requests
                .with_label_values(&[command, label])
                .inc();
            match result {
                Ok(value) => Response::ok(value),
                Err(message) => Response::error(message),
            }
        }
    };
    let write = control::write_response(&mut stream, &response);
    let _ = tokio::time::timeout(listen::REQUEST_TIMEOUT, write).await;
}

/// Serves `/metrics`, a bounded number of connections at once, each closed
/// after one request or `REQUEST_TIMEOUT` (see `listen`).
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    sensor: Shared,
    stop: watch::Receiver<bool>,
) {
    let accept = || listener.accept();
    listen::serve("metrics port", accept, stop, move |(stream, _)| {
        let sensor = sensor.clone();
        async move {
            let body = || sensor.lock().expect("sensor lock").render_metrics();
            listen::serve_metrics_request(stream, body).await;
        }
    })
    .await;
}

/// Reads the neighbour table into the bindings, when a segment is switched.
async fn binding_loop(sensor: Shared, mut stop: watch::Receiver<bool>) {
    if !sensor.lock().expect("sensor lock").bindings.wanted() {
        return;
    }
    let mut tick = tokio::time::interval(BINDING_REFRESH);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match bindings::neighbours().await {
                    Ok(table) => {
                        failing = false;
                        sensor.lock().expect("sensor lock").learn_bindings(&table, clock::unix_now_ns());
                    }
                    // Said once, not four times a second.
                    Err(e) if !failing => {
                        failing = true;
                        warn!("bindings are not learnt: {e:#}");
                    }
                    Err(_) => {}
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// The persisted bindings, and the datapath's made to hold exactly them:
/// what an earlier run left in the map but the file does not hold is
/// dropped, and said.
fn load_bindings(maps: &mut datapath::Maps, config: &Config) -> Result<Bindings> {
    let file = config
        .state_file
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("bindings.json");
    let bindings = Bindings::load(&file, &config.segments)?;
    for (addr, mac) in maps.bindings() {
        if bindings.mac_of(addr) != Some(mac) {
            info!(
                "binding {addr} -> {} left in the datapath is not in {}: dropped",
                bindings::mac_text(&mac),
                file.display()
            );
            maps.remove_binding(addr).context("bindings map")?;
        }
    }
    for (addr, mac) in bindings.all() {
        maps.set_binding(addr, mac).context("bindings map")?;
    }
    if !bindings.is_empty() {
        info!("{} bindings from {}", bindings.len(), file.display());
    }
    Ok(bindings)
}

async fn sweep_loop(sensor: Shared, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(EXPIRY_SWEEP);
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let mut s = sensor.lock().expect("sensor lock");
                s.sweep_expired();
                ticks += 1;
                if ticks.is_multiple_of(5) {
                    let mode = s.config.xdp_mode;
                    let again = s.datapath.repin_lost(mode);
                    for interface in again {
                        s.metrics.links_repinned.with_label_values(&[&interface]).inc();
                    }
                }
                if ticks % 3600 == 1 {
                    s.prune_store();
                }
                drop(s);
                if ticks.is_multiple_of(60) {
                    // What a flood made the engine allocate, and its tables
                    // gave back at their sweeps, goes back to the system
                    // (glibc keeps freed memory in its arenas otherwise).
                    // SAFETY: malloc_trim only releases free memory.
                    unsafe { libc::malloc_trim(0) };
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Events handled per lock of the sensor, so control requests and scrapes
/// are not kept waiting behind a burst.
const BATCH: usize = 2048;
/// How often the flow table is walked and the engine ticks.
const DETECTION_TICK: Duration = Duration::from_secs(1);

/// Reads the datapath's telemetry into the engine and acts on what it finds.
async fn detection_loop(
    mut maps: TelemetryMaps,
    sensor: Shared,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    use tokio::io::{unix::AsyncFd, Interest};
    let ring = maps.ring.take().context("the ring buffer was taken")?;
    // SAFETY: the AsyncFd owns the ring buffer, so its descriptor stays
    // open for as long as it is registered.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE)? };
    let mut tick = tokio::time::interval(DETECTION_TICK);
    let mut clocks = Clocks::now();
    let mut flows_ended = 0u64;
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let ring = guard.get_inner_mut();
                let mut batch = Vec::with_capacity(64);
                while batch.len() < BATCH {
                    let Some(record) = ring.next() else { break };
                    if let Some(item) = telemetry::decode::event(&record, &clocks) {
                        batch.push(item);
                    }
                }
                if batch.len() < BATCH {
                    guard.clear_ready();
                }
                let mut s = sensor.lock().expect("sensor lock");
                s.detect(batch.iter().map(|(e, d)| (e, Some(*d))), clocks.unix_now());
            }
            _ = tick.tick() => {
                ticks += 1;
                clocks = Clocks::now();
                let now = clocks.unix_now();
                let poll = maps.poll_flows(&clocks, now, &mut flows_ended);
                let mut s = sensor.lock().expect("sensor lock");
                s.detect_flows(poll, now);
                if ticks % 5 == 1 {
                    s.telemetry = maps.counts(flows_ended);
                }
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}

impl Sensor {
    /// Events through the engine (with the datapath's decision, for
    /// ring-buffer events), then the response policy.
    fn detect<'a>(
        &mut self,
        batch: impl IntoIterator<Item = (&'a crate::detect::Event, Option<telemetry::Decision>)>,
        now: u64,
    ) {
        let Some(detection) = &mut self.detection else {
            return;
        };
        let mut newest = 0;
        for (event, decision) in batch {
            newest = newest.max(event.ts);
            detection.observe(event, decision, &self.bindings);
        }
        if newest > 0 {
            let lag = now.saturating_sub(newest) as f64 / 1e9;
            self.metrics.engine_lag.set(lag);
        }
        self.respond(now);
    }

    /// The response policy on what changed, then the changes to the store.
    fn respond(&mut self, now: u64) {
        if let Some(detection) = &mut self.detection {
            detection.respond(
                &mut self.enforcer,
                &mut self.datapath.maps,
                &self.bindings,
                now,
            );
            for seconds in detection.take_latencies() {
                self.metrics.response_latency.observe(seconds);
            }
        }
        self.fleet_take_journal();
        // Once a second at most: a flood of evidence is one write per
        // second, not one per batch; a crash loses at most that second
        // (the actions themselves are in the state file at once).
        if self.persisted.elapsed() >= PERSIST_EVERY {
            self.persist();
        }
    }

    /// Ended flows and proven hosts from the flow table; the engine's
    /// tick; the response policy.
    fn detect_flows(&mut self, poll: telemetry::FlowPoll, now: u64) {
        let Some(detection) = &mut self.detection else {
            return;
        };
        for (host, ts) in poll.proven {
            detection.engine.verify(host, ts);
        }
        for event in &poll.ended {
            detection.observe(event, None, &self.bindings);
        }
        detection.engine.tick(now);
        detection.save_edges(now, false);
        self.respond(now);
    }
}

/// Opens every configured tap (none without detection: config refuses it).
fn open_taps(datapath: &Datapath, config: &Config) -> Result<Option<TapReader>> {
    if config.taps.is_empty() {
        return Ok(None);
    }
    let mut taps = Vec::new();
    for interface in &config.taps {
        let tap = Tap::open(datapath, interface, config.xdp_mode)?;
        let modes: Vec<&str> = tap.queues().map(|q| q.mode.label()).collect();
        info!(
            "{interface}: tap in {} XDP mode, {} queue(s), AF_XDP {}",
            tap.xdp_mode,
            modes.len(),
            modes.join("/")
        );
        taps.push(tap);
    }
    info!("taps feed detection with {:?} traffic", config.tap_traffic);
    let feed = TapFeed::new(config.tap_traffic, &config.segments);
    Ok(Some(TapReader::new(taps, feed)))
}

/// How long the tap reader waits for frames before it looks at the clock.
const TAP_POLL_MS: i32 = 100;

/// Reads the taps on a thread of its own (a mirror port delivers at line
/// rate; a blocking poll loop keeps it off the async runtime).
fn spawn_tap_reader(
    mut reader: TapReader,
    sensor: Shared,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let thread = std::thread::Builder::new()
        .name("tap-reader".into())
        .spawn(move || {
            let mut last_tick = Instant::now();
            let mut batch = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let now = Clocks::now().unix_now();
                reader.poll(TAP_POLL_MS, now, &mut |e| batch.push(e));
                let tick = last_tick.elapsed() >= DETECTION_TICK;
                if tick {
                    last_tick = Instant::now();
                    reader.tick(now, &mut |e| batch.push(e));
                }
                if batch.is_empty() && !tick {
                    continue;
                }
                let status = tick.then(|| reader.status());
                let mut s = sensor.lock().expect("sensor lock");
                s.detect(batch.iter().map(|e| (e, None)), now);
                if let Some(status) = status {
                    s.taps = status;
                }
                batch.clear();
            }
        })?;
    Ok(thread)
}
