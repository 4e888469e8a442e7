//! Prometheus metrics (docs/metrics.md lists each). Datapath counters live in
//! per-CPU maps; each scrape reads them and renders the text format.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use sensor_common::{counter_index, IfaceCounters, Reason, Verdict};

use crate::{datapath, enforcer::Counts};

pub struct Metrics {
    registry: Registry,
    packets: IntCounterVec,
    bytes: IntCounterVec,
    map_entries: IntGaugeVec,
    map_capacity: IntGaugeVec,
    monitor_mode: IntGauge,
    state_write_failures: IntCounterVec,
    /// Links attached again because their pin had gone.
    pub links_repinned: IntCounterVec,
    state_unsaved: IntGaugeVec,
    /// Writes to the incident store, by result.
    pub store_writes: IntCounterVec,
    adopted_entries: IntGaugeVec,
    attached: IntGaugeVec,
    pub control_requests: IntCounterVec,
    pub expired_entries: IntCounterVec,
    telemetry_events: IntCounterVec,
    flows: IntCounterVec,
    flows_tracked: IntGauge,
    engine_events: IntCounterVec,
    engine_evicted: IntCounterVec,
    engine_entries: IntGaugeVec,
    spared: IntCounterVec,
    incidents: IntCounterVec,
    incidents_open: IntGauge,
    actions: IntCounterVec,
    alerts: IntCounterVec,
    alerts_waiting: IntGaugeVec,
    /// From the evidence that decided it to the isolation or block.
    pub response_latency: Histogram,
    /// How old the newest event was when the engine judged it.
    pub engine_lag: Gauge,
    intel_entries: IntGauge,
    /// Intel list reloads, by result.
    pub intel_reloads: IntCounterVec,
    tap_frames: IntCounterVec,
    tap_lost: IntCounterVec,
    tap_zero_copy: IntGaugeVec,
    tap_skipped: IntCounterVec,
    tap_flows_open: IntGauge,
    feed_entries: IntGaugeVec,
    feed_skipped: IntGaugeVec,
    feed_checked: IntGaugeVec,
    feed_updated: IntGaugeVec,
    feed_retired: IntGaugeVec,
    /// Feed refreshes, by feed and result (`feeds::Refreshed`).
    pub feed_refreshes: IntCounterVec,
    /// Fleet decisions applied to (or lifted from) the maps here.
    pub fleet_applied: IntCounter,
    /// Decisions of other gateways refused by the checks.
    pub fleet_refused: IntCounter,
    fleet_gauges: IntGaugeVec,
    fleet_errors: IntCounterVec,
}

/// Fleet mode's figures for a scrape (absent without `[fleet]`).
pub struct FleetFigures {
    pub connected: bool,
    pub revision: u64,
    pub outbox: usize,
    pub in_force: usize,
    pub errors: u64,
    pub disconnects: u64,
}

/// One feed's figures for a scrape.
pub struct FeedFigures {
    pub name: String,
    pub entries: usize,
    pub skipped: usize,
    pub checked: Option<u64>,
    pub updated: Option<u64>,
    pub retired: bool,
}

/// Live detection's figures for a scrape (absent with detection off).
pub struct DetectionSnapshot {
    pub telemetry: crate::telemetry::TelemetryCounts,
    pub counts: crate::detection::DetectionCounts,
    pub open_incidents: u64,
    /// (table, entries dropped to stay within its limit)
    pub evicted: Vec<(&'static str, u64)>,
    /// (table, entries now)
    pub entries: Vec<(&'static str, usize)>,
    /// (reason, findings not reported as evidence for it)
    pub spared: [(&'static str, u64); 2],
    /// (sink, result, count)
    pub alerts: Vec<(&'static str, &'static str, u64)>,
    /// (sink, alerts waiting in its spool)
    pub alerts_waiting: Vec<(&'static str, usize)>,
    /// Entries in the threat-intelligence lists.
    pub intel_entries: usize,
}

/// What a scrape shows, read from the datapath under the sensor's lock.
pub struct Snapshot<'a> {
    pub counters: Vec<(String, IfaceCounters)>,
    pub counts: Counts,
    pub monitor: bool,
    pub attachments: &'a [datapath::Attachment],
    pub detection: Option<DetectionSnapshot>,
    pub taps: &'a crate::tap::TapStatus,
    pub feeds: Vec<FeedFigures>,
    pub fleet: Option<FleetFigures>,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(vec.clone()))
        .expect("registered once");
    vec
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(vec.clone()))
        .expect("registered once");
    vec
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let monitor_mode = IntGauge::new(
            "sensor_monitor_mode",
            "1 when blocks are only counted (monitor mode), 0 when they drop",
        )
        .expect("valid metric");
        registry
            .register(Box::new(monitor_mode.clone()))
            .expect("registered once");
        let build = IntGaugeVec::new(
            Opts::new(
                "sensor_build_info",
                "Always 1; the version label says which sensord",
            ),
            &["version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(build.clone()))
            .expect("registered once");
        build.with_label_values(&[crate::VERSION]).set(1);
        // process_cpu_seconds_total, process_resident_memory_bytes,
        // process_open_fds and the rest, read from /proc.
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("registered once");
        let metrics = Metrics {
            links_repinned: counter_vec(
                &registry,
                "sensor_links_repinned_total",
                "XDP links attached again because their pin under the pin directory had gone (which detached the program)",
                &["interface"],
            ),
            state_write_failures: counter_vec(
                &registry,
                "sensor_state_write_failures_total",
                "State-file writes that failed (a full or read-only disk); each is retried every second, and what is in force stays in force",
                &[],
            ),
            state_unsaved: gauge_vec(
                &registry,
                "sensor_state_unsaved",
                "1 while isolations or blocks in force are not all in the state file (its last write failed)",
                &[],
            ),
            store_writes: counter_vec(
                &registry,
                "sensor_store_writes_total",
                "Writes to the incident store (incidents, false-positive marks, audit records), by result; a failed write is said once in the log and retried every second",
                &["result"],
            ),
            adopted_entries: gauge_vec(
                &registry,
                "sensor_adopted_entries",
                "Isolations and blocks in force that were found in the pinned maps without a state-file record at start (origin \"adopted\"): review them",
                &[],
            ),
            packets: counter_vec(
                &registry,
                "sensor_packets_total",
                "Packets seen by the XDP program, by ingress interface, verdict and reason",
                &["interface", "verdict", "reason"],
            ),
            bytes: counter_vec(
                &registry,
                "sensor_bytes_total",
                "Bytes seen by the XDP program, by ingress interface, verdict and reason",
                &["interface", "verdict", "reason"],
            ),
            map_entries: gauge_vec(
                &registry,
                "sensor_map_entries",
                "Entries in each block map",
                &["map"],
            ),
            map_capacity: gauge_vec(
                &registry,
                "sensor_map_capacity",
                "Maximum entries of each block map",
                &["map"],
            ),
            attached: gauge_vec(
                &registry,
                "sensor_interface_attached",
                "1 for each interface the XDP program is attached to, with its mode",
                &["interface", "mode"],
            ),
            control_requests: counter_vec(
                &registry,
                "sensor_control_requests_total",
                "Control API requests, by command and result (ok or error)",
                &["command", "result"],
            ),
            expired_entries: counter_vec(
                &registry,
                "sensor_expired_entries_total",
                "Isolations and blocks removed because their time was up",
                &["kind"],
            ),
            telemetry_events: counter_vec(
                &registry,
                "sensor_telemetry_events_total",
                "Telemetry events from the datapath: delivered to the ring buffer, or lost because it was full",
                &["result"],
            ),
            flows: counter_vec(
                &registry,
                "sensor_flows_total",
                "Flow-table entries: created, ended (closed or idle, read by the engine), evicted by the LRU table before they ended, insert_failed",
                &["event"],
            ),
            flows_tracked: {
                let g = IntGauge::new("sensor_flows_tracked", "Flows in the flow table now")
                    .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("registered once");
                g
            },
            engine_events: counter_vec(
                &registry,
                "sensor_engine_events_total",
                "Events the detection engine processed",
                &[],
            ),
            engine_entries: gauge_vec(
                &registry,
                "sensor_detection_entries",
                "Entries in the detection engine's main tables now (each has a limit, see sensor_detection_evicted_total)",
                &["table"],
            ),
            engine_evicted: counter_vec(
                &registry,
                "sensor_detection_evicted_total",
                "Entries the detection engine dropped from a table to stay within its limit (the least recently seen first)",
                &["table"],
            ),
            spared: counter_vec(
                &registry,
                "sensor_detection_spared_total",
                "Findings not reported as evidence: known_service (beacon and weak web evidence whose peers are all well-known services), peer_retries (sweeps that were peer-to-peer clients retrying cached peers)",
                &["reason"],
            ),
            incidents: counter_vec(
                &registry,
                "sensor_incidents_total",
                "Incidents opened, by severity when opened",
                &["severity"],
            ),
            incidents_open: {
                let g = IntGauge::new("sensor_incidents_open", "Incidents open now")
                    .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("registered once");
                g
            },
            actions: counter_vec(
                &registry,
                "sensor_response_actions_total",
                "Automatic response actions: isolate, block, withheld",
                &["action"],
            ),
            alerts: counter_vec(
                &registry,
                "sensor_alerts_total",
                "Alerts written or sent, by sink (file, webhook, syslog) and result: ok; failed (file); retried (a send failed and is retried with back-off), refused (the receiver refused it for good), dropped (the spool was full)",
                &["sink", "result"],
            ),
            response_latency: {
                // From 10 ms (an intel hit acted on at once) to 10 minutes
                // (an action withheld until the host proved its address).
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "sensor_response_latency_seconds",
                        "From the evidence that decided an automatic isolation or block (its packet) to the action",
                    )
                    .buckets(vec![
                        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
                    ]),
                )
                .expect("valid metric");
                registry.register(Box::new(h.clone())).expect("registered once");
                h
            },
            engine_lag: {
                let g = Gauge::new(
                    "sensor_engine_lag_seconds",
                    "How old the newest event of the last batch was when the detection engine judged it",
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("registered once");
                g
            },
            intel_entries: {
                let g = IntGauge::new(
                    "sensor_intel_entries",
                    "Entries (addresses, ranges, domains, fingerprints) in the threat-intelligence lists",
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("registered once");
                g
            },
            intel_reloads: counter_vec(
                &registry,
                "sensor_intel_reloads_total",
                "Reloads of the threat-intelligence lists (reload, reload-intel, SIGHUP), by result; a failed one leaves the previous lists in force",
                &["result"],
            ),
            alerts_waiting: gauge_vec(
                &registry,
                "sensor_alerts_waiting",
                "Alerts waiting in a sink's spool on disk for their receiver (webhook, syslog)",
                &["sink"],
            ),
            tap_frames: counter_vec(
                &registry,
                "sensor_tap_frames_total",
                "Frames on a tap's receive queue: seen by the tap program, or read by sensord",
                &["interface", "queue", "stage"],
            ),
            tap_lost: counter_vec(
                &registry,
                "sensor_tap_frames_lost_total",
                "Tap frames lost, by queue and cause: ring_full and no_buffer when the reader fell behind, no_socket when no socket was bound",
                &["interface", "queue", "cause"],
            ),
            tap_zero_copy: gauge_vec(
                &registry,
                "sensor_tap_zero_copy",
                "1 when a tap queue's AF_XDP socket runs in zero-copy mode, 0 in copy mode",
                &["interface", "queue"],
            ),
            tap_skipped: counter_vec(
                &registry,
                "sensor_tap_frames_skipped_total",
                "Tap frames read but not fed to detection: undecodable (not IP, cut short) or out_of_scope (crosses the gateway, seen inline)",
                &["reason"],
            ),
            tap_flows_open: {
                let g = IntGauge::new("sensor_tap_flows_open", "Flows the tap reader tracks now")
                    .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("registered once");
                g
            },
            feed_entries: gauge_vec(
                &registry,
                "sensor_feed_entries",
                "Entries a feed has in force: ranges blocked (block feeds) or entries watched (alert feeds)",
                &["feed"],
            ),
            feed_skipped: gauge_vec(
                &registry,
                "sensor_feed_skipped_entries",
                "Entries of a feed's version in force that were not used: unreadable, too wide, overlapping the inside, or names in a block feed",
                &["feed"],
            ),
            feed_checked: gauge_vec(
                &registry,
                "sensor_feed_last_success_timestamp_seconds",
                "When a feed's publisher last answered (changed or not), unix seconds; 0 never",
                &["feed"],
            ),
            feed_updated: gauge_vec(
                &registry,
                "sensor_feed_last_update_timestamp_seconds",
                "When a new version of a feed was last applied, unix seconds; 0 never",
                &["feed"],
            ),
            feed_retired: gauge_vec(
                &registry,
                "sensor_feed_retired",
                "1 for a feed an operator retired (applied nowhere until resumed)",
                &["feed"],
            ),
            feed_refreshes: counter_vec(
                &registry,
                "sensor_feed_refreshes_total",
                "Feed refreshes, by feed and result: updated (a new version applied), unchanged, failed (the version in force stays)",
                &["feed", "result"],
            ),
            fleet_applied: {
                let c = IntCounter::new(
                    "sensor_fleet_applied_total",
                    "Fleet decisions applied to this gateway's maps, or lifted from them, since the start",
                )
                .expect("valid metric");
                registry.register(Box::new(c.clone())).expect("registered once");
                c
            },
            fleet_refused: {
                let c = IntCounter::new(
                    "sensor_fleet_refused_total",
                    "Decisions of other gateways refused here: forged (another site's key), invalid, or dangerous (too wide, the inside, an exempt host)",
                )
                .expect("valid metric");
                registry.register(Box::new(c.clone())).expect("registered once");
                c
            },
            fleet_gauges: gauge_vec(
                &registry,
                "sensor_fleet",
                "Fleet mode: connected (1 or 0), revision (the latest of the decisions bucket applied here), outbox (decisions waiting to be published), in_force (fleet decisions in force here)",
                &["figure"],
            ),
            fleet_errors: counter_vec(
                &registry,
                "sensor_fleet_events_total",
                "Fleet mode: errors (failures to connect, publish, watch or apply; each said in the log) and disconnects from the servers",
                &["event"],
            ),
            monitor_mode,
            registry,
        };
        metrics.start_at_zero();
        metrics
    }

    /// Creates every counter whose labels are known in advance at 0, so a
    /// quiet month shows 0 rather than no data, and `rate()` and alert
    /// rules see the first event.
    fn start_at_zero(&self) {
        let zero = |vec: &IntCounterVec, labels: &[&str]| {
            vec.with_label_values(labels);
        };
        for severity in ["high", "medium", "low"] {
            zero(&self.incidents, &[severity]);
        }
        for action in ["isolate", "block", "failed", "withheld"] {
            zero(&self.actions, &[action]);
        }
        for result in ["ok", "failed"] {
            zero(&self.alerts, &["file", result]);
        }
        for sink in ["webhook", "syslog"] {
            for result in ["ok", "retried", "refused", "dropped"] {
                zero(&self.alerts, &[sink, result]);
            }
            // Nothing waits for a sink that is not configured.
            self.alerts_waiting.with_label_values(&[sink]).set(0);
        }
        for result in ["ok", "failed"] {
            zero(&self.intel_reloads, &[result]);
        }
        for reason in ["known_service", "peer_retries"] {
            zero(&self.spared, &[reason]);
        }
        for result in ["delivered", "lost"] {
            zero(&self.telemetry_events, &[result]);
        }
        for event in ["created", "ended", "evicted", "insert_failed"] {
            zero(&self.flows, &[event]);
        }
        zero(&self.engine_events, &[]);
        for result in ["ok", "failed"] {
            zero(&self.store_writes, &[result]);
        }
        for kind in [crate::state::Kind::Isolation, crate::state::Kind::Block] {
            zero(&self.expired_entries, &[kind.label()]);
        }
    }

    /// Starts a configured feed's refresh counters at 0.
    pub fn feed_configured(&self, name: &str) {
        for result in crate::feeds::Refreshed::ALL {
            self.feed_refreshes
                .with_label_values(&[name, result.label()]);
        }
    }

    /// Drops the series of a feed no longer configured.
    pub fn feed_removed(&self, name: &str) {
        for result in crate::feeds::Refreshed::ALL {
            let _ = self
                .feed_refreshes
                .remove_label_values(&[name, result.label()]);
        }
    }

    fn render_feeds(&self, feeds: &[FeedFigures]) {
        for vec in [
            &self.feed_entries,
            &self.feed_skipped,
            &self.feed_checked,
            &self.feed_updated,
            &self.feed_retired,
        ] {
            vec.reset();
        }
        for f in feeds {
            let name = [f.name.as_str()];
            self.feed_entries
                .with_label_values(&name)
                .set(f.entries as i64);
            self.feed_skipped
                .with_label_values(&name)
                .set(f.skipped as i64);
            self.feed_checked
                .with_label_values(&name)
                .set(f.checked.unwrap_or(0) as i64);
            self.feed_updated
                .with_label_values(&name)
                .set(f.updated.unwrap_or(0) as i64);
            self.feed_retired
                .with_label_values(&name)
                .set(f.retired as i64);
        }
    }

    /// Renders the text exposition format for one scrape.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        self.render_feeds(&snapshot.feeds);
        self.packets.reset();
        self.bytes.reset();
        for (interface, counters) in &snapshot.counters {
            for verdict in Verdict::ALL {
                for reason in Reason::ALL {
                    let i = counter_index(verdict, reason);
                    if counters.packets[i] == 0 {
                        continue;
                    }
                    let labels = [interface.as_str(), verdict.label(), reason.label()];
                    self.packets
                        .with_label_values(&labels)
                        .inc_by(counters.packets[i]);
                    self.bytes
                        .with_label_values(&labels)
                        .inc_by(counters.bytes[i]);
                }
            }
        }
        let c = snapshot.counts;
        let maps = [
            (
                "isolated_v4",
                c.isolated_v4,
                sensor_common::MAX_ISOLATED_HOSTS,
            ),
            (
                "isolated_v6",
                c.isolated_v6,
                sensor_common::MAX_ISOLATED_HOSTS,
            ),
            (
                "blocked_v4",
                c.blocked_v4,
                sensor_common::MAX_BLOCKED_RANGES,
            ),
            (
                "blocked_v6",
                c.blocked_v6,
                sensor_common::MAX_BLOCKED_RANGES,
            ),
        ];
        for (map, entries, capacity) in maps {
            self.map_entries
                .with_label_values(&[map])
                .set(entries as i64);
            self.map_capacity
                .with_label_values(&[map])
                .set(capacity as i64);
        }
        self.monitor_mode.set(snapshot.monitor as i64);
        set(&self.state_write_failures, &[], c.state_write_failures);
        self.state_unsaved
            .with_label_values::<&str>(&[])
            .set(c.state_unsaved as i64);
        self.adopted_entries
            .with_label_values::<&str>(&[])
            .set(c.adopted as i64);
        self.attached.reset();
        for a in snapshot.attachments {
            self.attached
                .with_label_values(&[a.interface.as_str(), a.mode])
                .set(1);
        }
        if let Some(d) = &snapshot.detection {
            self.render_detection(d);
        }
        self.render_taps(snapshot.taps);
        if let Some(f) = &snapshot.fleet {
            let g = &self.fleet_gauges;
            g.with_label_values(&["connected"]).set(f.connected as i64);
            g.with_label_values(&["revision"]).set(f.revision as i64);
            g.with_label_values(&["outbox"]).set(f.outbox as i64);
            g.with_label_values(&["in_force"]).set(f.in_force as i64);
            set(&self.fleet_errors, &["error"], f.errors);
            set(&self.fleet_errors, &["disconnect"], f.disconnects);
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("text format is UTF-8")
    }
}

/// Sets a counter to a total read elsewhere (the maps, the engine).
fn set(vec: &IntCounterVec, labels: &[&str], value: u64) {
    let c = vec.with_label_values(labels);
    c.reset();
    c.inc_by(value);
}

impl Metrics {
    fn render_detection(&self, d: &DetectionSnapshot) {
        let t = &d.telemetry;
        set(&self.telemetry_events, &["delivered"], t.events);
        set(&self.telemetry_events, &["lost"], t.events_lost);
        set(&self.flows, &["created"], t.flows_created);
        set(&self.flows, &["ended"], t.flows_ended);
        set(&self.flows, &["evicted"], t.flows_evicted);
        set(&self.flows, &["insert_failed"], t.flow_insert_failed);
        self.flows_tracked.set(t.flows_tracked as i64);
        set(&self.engine_events, &[], d.counts.events);
        for (reason, n) in &d.spared {
            set(&self.spared, &[reason], *n);
        }
        for (table, n) in &d.evicted {
            set(&self.engine_evicted, &[table], *n);
        }
        for (table, n) in &d.entries {
            self.engine_entries
                .with_label_values(&[table])
                .set(*n as i64);
        }
        for (severity, n) in &d.counts.incidents {
            set(&self.incidents, &[severity], *n);
        }
        for (action, n) in &d.counts.actions {
            set(&self.actions, &[action], *n);
        }
        self.incidents_open.set(d.open_incidents as i64);
        self.intel_entries.set(d.intel_entries as i64);
        for (sink, result, n) in &d.alerts {
            set(&self.alerts, &[sink, result], *n);
        }
        for (sink, n) in &d.alerts_waiting {
            self.alerts_waiting
                .with_label_values(&[sink])
                .set(*n as i64);
        }
    }
}

impl Metrics {
    fn render_taps(&self, taps: &crate::tap::TapStatus) {
        for q in &taps.queues {
            let queue = q.queue.to_string();
            let at = |last: &'static str| [q.interface.as_str(), queue.as_str(), last];
            set(&self.tap_frames, &at("seen"), q.frames);
            set(&self.tap_frames, &at("read"), q.read);
            set(&self.tap_lost, &at("no_socket"), q.lost_no_socket);
            set(&self.tap_lost, &at("ring_full"), q.lost_ring_full);
            set(&self.tap_lost, &at("no_buffer"), q.lost_no_buffer);
            self.tap_zero_copy
                .with_label_values(&[q.interface.as_str(), queue.as_str()])
                .set((q.mode == crate::tap::CaptureMode::ZeroCopy) as i64);
        }
        if !taps.queues.is_empty() {
            set(&self.tap_skipped, &["undecodable"], taps.feed.undecodable);
            set(&self.tap_skipped, &["out_of_scope"], taps.feed.out_of_scope);
            self.tap_flows_open.set(taps.open_flows as i64);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_map_fill() {
        let metrics = Metrics::new();
        let mut counters = IfaceCounters::ZERO;
        counters.packets[counter_index(Verdict::Drop, Reason::SegmentPolicy)] = 7;
        counters.bytes[counter_index(Verdict::Drop, Reason::SegmentPolicy)] = 700;
        let snapshot = Snapshot {
            counters: vec![("lo".to_string(), counters)],
            counts: Counts {
                isolated_v4: 3,
                ..Counts::default()
            },
            monitor: false,
            attachments: &[],
            detection: None,
            taps: &crate::tap::TapStatus::default(),
            feeds: vec![FeedFigures {
                name: "drop".into(),
                entries: 1000,
                skipped: 2,
                checked: Some(1_795_000_000),
                updated: None,
                retired: false,
            }],
            fleet: Some(FleetFigures {
                connected: true,
                revision: 42,
                outbox: 0,
                in_force: 2,
                errors: 1,
                disconnects: 0,
            }),
        };
        let text = metrics.render(&snapshot);
        assert!(
            text.contains(r#"sensor_fleet{figure="revision"} 42"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sensor_fleet_events_total{event="error"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"sensor_packets_total{interface="lo",reason="segment_policy",verdict="drop"} 7"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"sensor_map_entries{map="isolated_v4"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sensor_feed_entries{feed="drop"} 1000"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sensor_feed_last_update_timestamp_seconds{feed="drop"} 0"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE sensor_packets_total counter"),
            "{text}"
        );
        // A second scrape shows the same absolute values, not doubled ones.
        let again = metrics.render(&snapshot);
        assert!(again.contains(r#"verdict="drop"} 7"#), "{again}");
    }

    /// A scrape of a fresh sensord with these taps and nothing else.
    fn render_taps(taps: &crate::tap::TapStatus) -> String {
        Metrics::new().render(&Snapshot {
            counters: Vec::new(),
            counts: Counts::default(),
            monitor: false,
            attachments: &[],
            detection: None,
            taps,
            feeds: Vec::new(),
            fleet: None,
        })
    }

    #[test]
    fn counters_start_at_zero_and_the_process_is_described() {
        let text = render_taps(&crate::tap::TapStatus::default());
        for line in [
            r#"sensor_incidents_total{severity="high"} 0"#,
            r#"sensor_response_actions_total{action="failed"} 0"#,
            r#"sensor_alerts_total{result="retried",sink="webhook"} 0"#,
            r#"sensor_expired_entries_total{kind="isolation"} 0"#,
            "process_resident_memory_bytes ",
            "process_open_fds ",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn renders_tap_queues_and_losses() {
        let taps = crate::tap::TapStatus {
            queues: vec![crate::tap::QueueStatus {
                interface: "span0".into(),
                queue: 0,
                mode: crate::tap::CaptureMode::Copy,
                frames: 10,
                read: 6,
                lost_no_socket: 1,
                lost_ring_full: 2,
                lost_no_buffer: 1,
            }],
            ..Default::default()
        };
        let text = render_taps(&taps);
        for line in [
            r#"sensor_tap_frames_total{interface="span0",queue="0",stage="seen"} 10"#,
            r#"sensor_tap_frames_total{interface="span0",queue="0",stage="read"} 6"#,
            r#"sensor_tap_frames_lost_total{cause="ring_full",interface="span0",queue="0"} 2"#,
            r#"sensor_tap_zero_copy{interface="span0",queue="0"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
