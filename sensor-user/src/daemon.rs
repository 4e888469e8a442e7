//! sensord: loads the datapath, applies the configuration, serves the control
//! API and the metrics, expires entries, and shuts down on SIGINT/SIGTERM.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use log::{error, info, warn};
use serde_json::{json, Value};
use tokio::{net::UnixStream, sync::watch};

use crate::{
    clock,
    config::{Config, Mode, OnExit},
    control::{self, Request, Response},
    datapath::{self, Datapath},
    enforcer::Enforcer,
    metrics::{Metrics, Snapshot},
};

/// Everything the tasks share, behind one lock. Operations are short map
/// syscalls; no lock is held across an await.
pub struct Sensor {
    pub config: Config,
    pub datapath: Datapath,
    pub enforcer: Enforcer,
    pub metrics: Metrics,
    started: Instant,
}

type Shared = Arc<Mutex<Sensor>>;

/// How often expired entries are swept from the maps and the state file.
/// (The datapath ignores an expired entry at once; this only tidies.)
const EXPIRY_SWEEP: Duration = Duration::from_secs(1);

impl Sensor {
    /// Loads (or adopts) the datapath and brings it in line with `config`.
    pub fn start(config: Config) -> Result<Sensor> {
        let mut datapath = Datapath::load(&config.pin_dir)?;
        // Fill the maps before attaching, so a new attachment never runs
        // against an empty policy.
        datapath
            .maps
            .sync_segments(&config.segments, &config.policy)?;
        datapath.maps.sync_exempt(&config.exempt)?;
        datapath
            .maps
            .set_monitor(config.mode == Mode::Monitor)
            .context("settings map")?;
        let enforcer = Enforcer::open(&mut datapath.maps, &config.state_file)?;
        datapath.attach_all(&config.interfaces, config.xdp_mode)?;
        Ok(Sensor {
            config,
            datapath,
            enforcer,
            metrics: Metrics::new(),
            started: Instant::now(),
        })
    }

    pub fn handle(&mut self, request: Request) -> Result<Value, String> {
        let maps = &mut self.datapath.maps;
        let ttl = |secs: Option<u64>| secs.map(Duration::from_secs);
        let reason = |r: Option<String>| r.unwrap_or_else(|| "no reason given".into());
        let entry = match request {
            Request::Status => return Ok(self.status()),
            Request::List => return Ok(json!(self.enforcer.list(maps))),
            Request::Stats => return Ok(self.stats()),
            Request::Isolate {
                ip,
                ttl_secs,
                reason: r,
            } => self
                .enforcer
                .isolate(maps, ip, ttl(ttl_secs), &reason(r), "operator"),
            Request::Release { ip } => self.enforcer.release(maps, ip),
            Request::Block {
                cidr,
                ttl_secs,
                reason: r,
            } => self
                .enforcer
                .block(maps, cidr, ttl(ttl_secs), &reason(r), "operator"),
            Request::Unblock { cidr } => self.enforcer.unblock(maps, cidr),
        };
        entry.map(|e| json!(e)).map_err(|e| e.to_string())
    }

    fn status(&self) -> Value {
        let counts = self.enforcer.counts();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "mode": if self.datapath.maps.monitor() { "monitor" } else { "enforce" },
            "uptime_secs": self.started.elapsed().as_secs(),
            "pin_dir": self.config.pin_dir,
            "state_file": self.config.state_file,
            "interfaces": self.datapath.attachments,
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
            counts: self.enforcer.counts(),
            monitor: self.datapath.maps.monitor(),
            attachments: &self.datapath.attachments,
        })
    }

    fn sweep_expired(&mut self) {
        match self
            .enforcer
            .expire(&mut self.datapath.maps, clock::unix_now())
        {
            Ok(removed) => {
                for entry in removed {
                    self.metrics
                        .expired_entries
                        .with_label_values(&[entry.kind.label()])
                        .inc();
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

    let control_listener = control::bind(&socket_path)?;
    let metrics_listener = tokio::net::TcpListener::bind(metrics_address)
        .await
        .with_context(|| format!("binding metrics_address {metrics_address}"))?;
    let sensor: Shared = Arc::new(Mutex::new(Sensor::start(config)?));
    let (stop_tx, stop_rx) = watch::channel(false);

    let control_task = tokio::spawn(serve_control(
        control_listener,
        sensor.clone(),
        stop_rx.clone(),
    ));
    let metrics_task = tokio::spawn(serve_metrics(
        metrics_listener,
        sensor.clone(),
        stop_rx.clone(),
    ));
    let expiry_task = tokio::spawn(sweep_loop(sensor.clone(), stop_rx));
    info!(
        "sensord ready: control socket {}, metrics http://{metrics_address}/metrics",
        socket_path.display()
    );

    wait_for_signal().await?;
    info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = tokio::join!(control_task, metrics_task, expiry_task);
    let _ = std::fs::remove_file(&socket_path);

    let sensor = Arc::try_unwrap(sensor)
        .map_err(|_| anyhow::anyhow!("a task still holds the sensor"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("the sensor lock was poisoned"))?;
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

async fn serve_control(
    listener: tokio::net::UnixListener,
    sensor: Shared,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => { warn!("control socket accept: {e}"); continue; }
            },
            _ = stop.changed() => return,
        };
        let sensor = sensor.clone();
        tokio::spawn(async move { handle_connection(stream, sensor).await });
    }
}

async fn handle_connection(mut stream: UnixStream, sensor: Shared) {
    // Defence in depth beside the socket's 0600 mode.
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == 0 => {}
        _ => {
            control::write_response(
                &mut stream,
                &Response::error("only root may use the control API"),
            )
            .await;
            return;
        }
    }
    let response = match control::read_request(&mut stream).await {
        Err(message) => Response::error(message),
        Ok(request) => {
            let command = request.name();
            let mut sensor = sensor.lock().expect("sensor lock");
            let result = sensor.handle(request);
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
    control::write_response(&mut stream, &response).await;
}

async fn serve_metrics(
    listener: tokio::net::TcpListener,
    sensor: Shared,
    mut stop: watch::Receiver<bool>,
) {
    use axum::{routing::get, Router};
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let sensor = sensor.clone();
            async move {
                let text = sensor.lock().expect("sensor lock").render_metrics();
                ([("content-type", "text/plain; version=0.0.4")], text)
            }
        }),
    );
    let shutdown = async move {
        let _ = stop.changed().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        error!("metrics server: {e}");
    }
}

async fn sweep_loop(sensor: Shared, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(EXPIRY_SWEEP);
    loop {
        tokio::select! {
            _ = tick.tick() => sensor.lock().expect("sensor lock").sweep_expired(),
            _ = stop.changed() => return,
        }
    }
}
