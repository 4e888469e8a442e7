//! The NATS connection and the fleet's JetStream objects. sensord, the
//! `sensorctl fleet` commands and the fleet simulation all go through here.
//!
//! - the decisions bucket (`DECISIONS`): one key per decision;
//! - the gateways bucket (`GATEWAYS`): each gateway's status, `site.gateway`;
//! - the incidents stream (`INCIDENTS`): every alert document a gateway
//!   sends, on `sensor.incidents.<site>.<gateway>.<incident uid>`;
//! - the feeds stream (`shared_feeds::FEEDS`): shared threat feeds.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_nats::jetstream::{self, kv, stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{decision::Decision, FleetConfig};

pub const DECISIONS: &str = "sensor-decisions";
pub const GATEWAYS: &str = "sensor-gateways";
pub const INCIDENTS: &str = "SENSOR_INCIDENTS";
pub const INCIDENT_SUBJECTS: &str = "sensor.incidents.>";

/// How long a request to the servers may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub fn incident_subject(site: &str, gateway: &str, uid: &str) -> String {
    format!("sensor.incidents.{site}.{gateway}.{uid}")
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("reading {what} {path}: {source}")]
    File {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("connecting to {servers}: {message}")]
    Connect { servers: String, message: String },
    #[error("{what}: {message}")]
    Nats { what: String, message: String },
}

fn nats(what: impl Into<String>) -> impl FnOnce(String) -> FleetError {
    let what = what.into();
    move |message| FleetError::Nats { what, message }
}

/// What the connection's callback has seen: whether it is up, how often it
/// dropped, and the last permission refusal the servers sent.
#[derive(Default)]
pub struct LinkState {
    pub connected: AtomicBool,
    pub disconnects: AtomicU64,
    pub last_refusal: Mutex<Option<String>>,
}

pub struct FleetClient {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub link: Arc<LinkState>,
}

/// The objects a gateway writes to and reads from.
#[derive(Clone)]
pub struct Buckets {
    pub decisions: kv::Store,
    pub gateways: kv::Store,
}

/// A gateway's status, as `sensorctl fleet status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GatewayStatus {
    pub site: String,
    pub gateway: String,
    pub version: String,
    /// Unix seconds of this report (written every `STATUS_EVERY`).
    pub reported: u64,
    /// The latest revision of the decisions bucket this gateway has applied.
    pub applied_revision: u64,
    /// Fleet decisions in force here.
    pub decisions_in_force: usize,
    /// Decisions refused from other gateways, since the start.
    pub refused: u64,
    /// Operations waiting to be published.
    pub outbox: usize,
    /// Failures to apply or publish, since the start; the last one.
    pub errors: u64,
    pub last_error: Option<String>,
}

/// How often each gateway writes its status.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

fn read_file(what: &'static str, path: &std::path::Path) -> Result<String, FleetError> {
    std::fs::read_to_string(path).map_err(|source| FleetError::File {
        what,
        path: path.display().to_string(),
        source,
    })
}

impl FleetClient {
    /// Connects (once: the caller retries), naming the connection after the
    /// gateway. Once connected, the client reconnects by itself forever.
    pub async fn connect(config: &FleetConfig, name: &str) -> Result<FleetClient, FleetError> {
        let link = Arc::new(LinkState::default());
        let mut options = match &config.credentials_file {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path.clone())
                .await
                .map_err(|source| FleetError::File {
                    what: "fleet.credentials_file",
                    path: path.display().to_string(),
                    source,
                })?,
            None => async_nats::ConnectOptions::new(),
        };
        if let (Some(user), Some(file)) = (&config.user, &config.password_file) {
            let password = read_file("fleet.password_file", file)?;
            options = options.user_and_password(user.clone(), password.trim().to_string());
        }
        let tls_wanted = config.tls_ca_file.is_some()
            || config.tls_cert_file.is_some()
            || config.servers.iter().any(|s| s.starts_with("tls://"));
        if tls_wanted {
            options = options.require_tls(true);
        }
        if let Some(ca) = &config.tls_ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let events = link.clone();
        let options = options
            .name(name)
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .ping_interval(Duration::from_secs(2))
            .max_reconnects(None)
            // Back off to at most 2 s between attempts: a link that comes
            // back is used within 2 s.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 100).min(2000))
            })
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            events.connected.store(true, Ordering::Relaxed);
                        }
                        async_nats::Event::Disconnected => {
                            events.connected.store(false, Ordering::Relaxed);
                            events.disconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        async_nats::Event::ServerError(e) => {
                            let text = e.to_string();
                            if text.to_lowercase().contains("permission") {
                                log::warn!("fleet: the servers refused: {text}");
                                *events.last_refusal.lock().expect("refusal lock") = Some(text);
                            }
                        }
                        _ => {}
                    }
                }
            });
        let client =
            options
                .connect(config.servers.clone())
                .await
                .map_err(|e| FleetError::Connect {
                    servers: config.servers.join(", "),
                    message: e.to_string(),
                })?;
        link.connected.store(true, Ordering::Relaxed);
        let mut js = jetstream::new(client.clone());
        js.set_timeout(REQUEST_TIMEOUT);
        Ok(FleetClient { client, js, link })
    }

    /// The buckets, as the fleet's administrator made them (`create`).
    pub async fn buckets(&self) -> Result<Buckets, FleetError> {
        let open = |name: &'static str| async move {
            self.js
                .get_key_value(name)
                .await
                .map_err(|e| FleetError::Nats {
                    what: format!("opening the {name} bucket"),
                    message: format!("{e} (create it with `sensorctl fleet init`, docs/fleet.md)"),
                })
        };
        Ok(Buckets {
            decisions: open(DECISIONS).await?,
            gateways: open(GATEWAYS).await?,
        })
    }

    /// Creates the buckets and the incidents stream where missing, with
    /// `replicas` copies of each (3 on a three-node cluster). Needs the
    /// administrator's credentials.
    pub async fn create(&self, replicas: usize) -> Result<Vec<String>, FleetError> {
        let mut made = Vec::new();
        for (bucket, history, description) in [
            (DECISIONS, 1, "sensor fleet: isolations and blocks"),
            (GATEWAYS, 1, "sensor fleet: gateway status"),
        ] {
            if self.js.get_key_value(bucket).await.is_ok() {
                continue;
            }
            // The bucket's stream, made as the key-value convention (NATS
            // ADR-8) says: the client's own `create_key_value` first reads
            // account fields that nats-server 2.9 does not send.
            self.js
                .create_stream(stream::Config {
                    name: format!("KV_{bucket}"),
                    description: Some(description.into()),
                    subjects: vec![format!("$KV.{bucket}.>")],
                    max_messages_per_subject: history,
                    max_message_size: 64 * 1024,
                    storage: stream::StorageType::File,
                    num_replicas: replicas,
                    allow_rollup: true,
                    deny_delete: true,
                    deny_purge: false,
                    allow_direct: true,
                    discard: stream::DiscardPolicy::New,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())
                .map_err(nats(format!("creating the {bucket} bucket")))?;
            made.push(bucket.to_string());
        }
        let incidents = stream::Config {
            name: INCIDENTS.into(),
            description: Some("sensor fleet: every gateway's alerts".into()),
            subjects: vec![INCIDENT_SUBJECTS.into()],
            // Each incident's last 50 documents, for a year.
            max_messages_per_subject: 50,
            max_age: Duration::from_secs(365 * 86400),
            max_message_size: 256 * 1024,
            ..Default::default()
        };
        let feeds = stream::Config {
            name: super::shared_feeds::FEEDS.into(),
            description: Some("sensor fleet: shared threat feeds".into()),
            subjects: vec![super::shared_feeds::FEED_SUBJECTS.into()],
            // A version's first chunk rolls its subject up: each feed's
            // latest version only.
            allow_rollup: true,
            max_message_size: 1024 * 1024,
            ..Default::default()
        };
        for config in [incidents, feeds] {
            if self.js.get_stream(&config.name).await.is_ok() {
                continue;
            }
            let name = config.name.clone();
            self.js
                .create_stream(stream::Config {
                    num_replicas: replicas,
                    storage: stream::StorageType::File,
                    ..config
                })
                .await
                .map_err(|e| e.to_string())
                .map_err(nats(format!("creating the {name} stream")))?;
            made.push(name);
        }
        Ok(made)
    }

    /// Publishes one alert document and waits for the stream's
    /// acknowledgement.
    pub async fn publish_incident(&self, subject: String, doc: &Value) -> Result<u64, FleetError> {
        let payload = serde_json::to_vec(doc).expect("documents serialize");
        let ack = self
            .js
            .publish(subject.clone(), payload.into())
            .await
            .map_err(|e| e.to_string())
            .map_err(nats(format!("publishing to {subject}")))?;
        let ack = ack
            .await
            .map_err(|e| self.explain(e.to_string(), &subject))
            .map_err(nats(format!("publishing to {subject}")))?;
        Ok(ack.sequence)
    }

    /// A timed-out publish with a permission refusal on record is the
    /// refusal: say it, not the time-out.
    pub fn explain(&self, message: String, subject: &str) -> String {
        let refusal = self.link.last_refusal.lock().expect("refusal lock").clone();
        match refusal {
            Some(r) if r.contains(subject) => r,
            _ => message,
        }
    }

    /// The latest document of each incident in the stream (at most
    /// `limit`, newest first), read by a short-lived ordered consumer.
    pub async fn incidents(&self, filter: &str, limit: usize) -> Result<Vec<Value>, FleetError> {
        let stream = self
            .js
            .get_stream(INCIDENTS)
            .await
            .map_err(|e| e.to_string())
            .map_err(nats("opening the incidents stream"))?;
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: filter.to_string(),
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())
            .map_err(nats("reading the incidents stream"))?;
        let mut pending = consumer.cached_info().num_pending;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| e.to_string())
            .map_err(nats("reading the incidents stream"))?;
        let mut docs = Vec::new();
        while pending > 0 {
            let next = tokio::time::timeout(REQUEST_TIMEOUT, messages.next()).await;
            let Ok(Some(Ok(message))) = next else { break };
            pending = message.info().map(|i| i.pending).unwrap_or(0);
            if let Ok(doc) = serde_json::from_slice::<Value>(&message.payload) {
                docs.push(doc);
            }
        }
        docs.sort_by(|a, b| {
            let ts = |d: &Value| d["@timestamp"].as_str().unwrap_or("").to_string();
            ts(b).cmp(&ts(a))
        });
        docs.truncate(limit);
        Ok(docs)
    }

    /// Every gateway's last status.
    pub async fn statuses(&self, gateways: &kv::Store) -> Result<Vec<GatewayStatus>, FleetError> {
        let mut keys = gateways
            .keys()
            .await
            .map_err(|e| e.to_string())
            .map_err(nats("listing the gateways"))?;
        let mut out = Vec::new();
        while let Some(Ok(key)) = keys.next().await {
            if let Ok(Some(bytes)) = gateways.get(&key).await {
                if let Ok(status) = serde_json::from_slice(&bytes) {
                    out.push(status);
                }
            }
        }
        Ok(out)
    }

    /// The decisions bucket's latest revision (its stream's last sequence).
    pub async fn latest_revision(&self, decisions: &kv::Store) -> Result<u64, FleetError> {
        let mut stream = decisions.stream.clone();
        let info = stream
            .info()
            .await
            .map_err(|e| e.to_string())
            .map_err(nats("reading the decisions bucket"))?;
        Ok(info.state.last_sequence)
    }
}

impl Buckets {
    /// Writes a decision; its revision once the cluster has it.
    pub async fn put(&self, d: &Decision) -> Result<u64, String> {
        let value = serde_json::to_vec(d).expect("decisions serialize");
        self.decisions
            .put(d.key().text(), value.into())
            .await
            .map_err(|e| e.to_string())
    }

    /// A release: a delete marker under `key`.
    pub async fn release(&self, key: &str) -> Result<(), String> {
        self.decisions.delete(key).await.map_err(|e| e.to_string())
    }

    /// Tidies a key away (an expired decision of this gateway's), if
    /// `revision` is still its latest; `false` if it was written since.
    pub async fn tidy(&self, key: &str, revision: u64) -> Result<bool, String> {
        match self
            .decisions
            .purge_expect_revision(key, Some(revision))
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == kv::PurgeErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    pub async fn report(&self, status: &GatewayStatus) -> Result<(), String> {
        let value = serde_json::to_vec(status).expect("status serializes");
        let key = format!("{}.{}", status.site, status.gateway);
        self.gateways
            .put(key, value.into())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
