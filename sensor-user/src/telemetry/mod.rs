//! Telemetry from the datapath: the ring buffer of events and the flow
//! table, read into the detection engine's events.

pub mod decode;

use std::{collections::HashSet, net::IpAddr};

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use sensor_common::{map_names, telemetry::*, FlowKey, FlowStats};

pub use decode::{Clocks, Decision};

use crate::detect::{Event, Nanos};

pub struct TelemetryMaps {
    /// Taken by the reader task.
    pub ring: Option<RingBuf<MapData>>,
    flows: HashMap<MapData, FlowKey, FlowStats>,
    stats: PerCpuArray<MapData, u64>,
    /// Flows created minus flows tracked when we started (the maps outlive
    /// the daemon), so evictions count from our start.
    baseline: u64,
}

/// Totals for the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct TelemetryCounts {
    pub events: u64,
    pub events_lost: u64,
    pub flows_created: u64,
    pub flow_insert_failed: u64,
    pub flows_ended: u64,
    /// Flows the LRU table dropped before they ended (created, minus ended
    /// by us, minus still tracked).
    pub flows_evicted: u64,
    pub flows_tracked: u64,
}

/// What one poll of the flow table found.
#[derive(Default)]
pub struct FlowPoll {
    /// `FlowEnd` events of flows that closed or went idle, oldest first.
    pub ended: Vec<Event>,
    /// Initiators of proven TCP flows (`HandshakeProof`), with when last
    /// seen.
    pub proven: Vec<(IpAddr, Nanos)>,
}

impl TelemetryMaps {
    pub fn take_from(ebpf: &mut aya::Ebpf) -> Result<TelemetryMaps> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("the eBPF object has no map {name}"))
        };
        let mut maps = TelemetryMaps {
            ring: Some(RingBuf::try_from(take(map_names::TELEMETRY)?)?),
            flows: HashMap::try_from(take(map_names::FLOWS)?)?,
            stats: PerCpuArray::try_from(take(map_names::TELEMETRY_STATS)?)?,
            baseline: 0,
        };
        let tracked = maps.flows.keys().count() as u64;
        maps.baseline = maps.stat(STAT_FLOWS_CREATED).saturating_sub(tracked);
        Ok(maps)
    }

    fn stat(&self, index: u32) -> u64 {
        self.stats
            .get(&index, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// Ends closed and idle flows (removing them from the table) and lists
    /// the proven ones (`HandshakeProof`). One pass over the table.
    pub fn poll_flows(&mut self, clocks: &Clocks, now: Nanos, ended_total: &mut u64) -> FlowPoll {
        let mut poll = FlowPoll::default();
        let mut done: Vec<FlowKey> = Vec::new();
        let mut seen: HashSet<IpAddr> = HashSet::new();
        for entry in self.flows.iter() {
            let Ok((key, stats)) = entry else { continue };
            let Some(flow) = decode::flow(&key, &stats, clocks) else {
                done.push(key);
                continue;
            };
            if flow.summary.proven && seen.insert(flow.orig.0) {
                poll.proven.push((flow.orig.0, flow.last));
            }
            let idle = now.saturating_sub(flow.last);
            if idle >= flow_timeout_ns(key.protocol, flow.closed) {
                poll.ended.push(flow.end_event());
                done.push(key);
            }
        }
        for key in &done {
            // Gone already (evicted) is fine.
            let _ = self.flows.remove(key);
        }
        *ended_total += done.len() as u64;
        poll.ended.sort_by_key(|e| e.ts);
        poll
    }

    pub fn counts(&self, flows_ended: u64) -> TelemetryCounts {
        let flows_created = self.stat(STAT_FLOWS_CREATED);
        let flows_tracked = self.flows.keys().count() as u64;
        TelemetryCounts {
            events: self.stat(STAT_EVENTS),
            events_lost: self.stat(STAT_EVENTS_LOST),
            flows_created,
            flow_insert_failed: self.stat(STAT_FLOW_INSERT_FAILED),
            flows_ended,
            flows_evicted: flows_created
                .saturating_sub(self.baseline)
                .saturating_sub(flows_ended + flows_tracked),
            flows_tracked,
        }
    }
}
