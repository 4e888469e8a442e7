//! A capture judged as sensord judges live traffic: the detection engine on
//! the packets, and the response policy replayed on packet time, so an
//! incident says what sensord would have done and when. `sensorctl
//! analyze` shows it; `cargo xtask eval` measures it.

use std::{collections::BTreeSet, net::IpAddr, path::Path};

use anyhow::Result;
use ipnet::IpNet;

use crate::{
    config::{self, Segment},
    detect::{
        capture::{self, CaptureStats},
        incident::Action,
        DetectionConfig, Engine, Incident, Nanos, SECOND,
    },
    response::{self, Decision, HostFacts, ResponseConfig},
};

/// What a capture gave.
pub struct Analysis {
    /// Each with the actions sensord would have taken, at packet time.
    pub incidents: Vec<Incident>,
    pub stats: CaptureStats,
}

/// The detectors' and the policy's settings, and what is known of the
/// network.
#[derive(Default)]
pub struct Settings {
    pub detection: DetectionConfig,
    pub response: ResponseConfig,
    /// The configuration's segments; with none, every internal address is
    /// taken to be in one segment, "internal".
    pub segments: Vec<Segment>,
}

impl Settings {
    /// These detection settings, the default response policy.
    pub fn detection(detection: DetectionConfig) -> Settings {
        Settings {
            detection,
            ..Default::default()
        }
    }
}

/// The engine plus the response policy, stepped on packet time.
struct Replay<'a> {
    engine: Engine,
    settings: &'a Settings,
    internal: Vec<IpNet>,
    /// Packet time of the last once-a-second step.
    last_tick: Nanos,
}

impl Replay<'_> {
    fn segment_of(&self, addr: IpAddr) -> Option<String> {
        if self.settings.segments.is_empty() {
            return self
                .internal
                .iter()
                .any(|n| n.contains(&addr))
                .then(|| "internal".to_string());
        }
        config::segment_of(&self.settings.segments, addr, true).map(str::to_string)
    }

    /// After each event: decide on the incidents that changed; once a
    /// packet-second, let the time-based detectors conclude and look again
    /// at incidents still waiting, as sensord's loop does each second.
    fn respond(&mut self) {
        let now = self.engine.now();
        let second = now >= self.last_tick + SECOND;
        if second {
            self.last_tick = now;
            self.engine.tick(now);
        }
        let mut ids: BTreeSet<u64> = self.engine.incidents.take_changed().into_iter().collect();
        if second {
            ids.extend(self.engine.incidents.awaiting_action());
        }
        for id in ids {
            self.decide(id, now);
        }
    }

    fn decide(&mut self, id: u64, now: Nanos) {
        let Some(incident) = self.engine.incidents.get(id) else {
            return;
        };
        let none = BTreeSet::new();
        let segment = self.segment_of(incident.host);
        let engine = &self.engine;
        let is_internal = |a: IpAddr| engine.is_internal(a);
        let facts = HostFacts {
            segment: segment.as_deref(),
            verified: engine.is_verified(incident.host, now),
            false_positive_detectors: &none,
            is_internal: &is_internal,
        };
        let mode = self.settings.response.mode;
        let actions: Vec<Action> = response::decide(&self.settings.response, incident, &facts)
            .into_iter()
            .map(|decision| {
                let (action, target, detail) =
                    match (response::not_carried_out(&decision, mode), decision) {
                        (Some((target, why)), _) => ("withheld", target, why),
                        (None, Decision::Isolate { host, rule, .. }) => (
                            "isolate",
                            host.to_string(),
                            format!("rule {rule}: would isolate"),
                        ),
                        (None, Decision::Block { net, rule, .. }) => (
                            "block",
                            net.to_string(),
                            format!("rule {rule}: would block"),
                        ),
                        (None, Decision::Withheld { .. }) => {
                            unreachable!("withheld is not carried out")
                        }
                    };
                Action {
                    ts: now,
                    action: action.into(),
                    target,
                    detail,
                }
            })
            .collect();
        if let Some(incident) = self.engine.incidents.get_mut(id) {
            incident.actions.extend(actions);
        }
    }
}

/// Analyses a capture file: every event through a fresh engine, the
/// response policy replayed as it goes. `progress`: report on stderr
/// while a long file is read.
pub fn analyze(path: &Path, settings: &Settings, progress: bool) -> Result<Analysis> {
    let engine = Engine::new(&settings.detection)?;
    let internal = engine.internal().to_vec();
    let mut replay = Replay {
        engine,
        settings,
        internal,
        last_tick: 0,
    };
    let stats = capture::read_file(path, progress, &mut |event| {
        replay.engine.observe(&event);
        replay.respond();
    })?;
    replay.engine.flush();
    replay.respond();
    Ok(Analysis {
        incidents: replay.engine.incidents.list(),
        stats,
    })
}

/// When sensord would first have isolated `host` over this incident.
pub fn isolated_at(incident: &Incident) -> Option<Nanos> {
    let host = incident.host.to_string();
    incident
        .actions
        .iter()
        .find(|a| a.action == "isolate" && a.target == host)
        .map(|a| a.ts)
}
