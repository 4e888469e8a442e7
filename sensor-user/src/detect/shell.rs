//! Interactive sessions (`shell.interactive`, T1059): a TCP connection
//! between an inside and an outside host, on a port no interactive
//! service is registered on, that keeps waking at a human's pace. A
//! person typing commands into a shell (a reverse or bind shell, a RAT's
//! console) pauses to read and think between commands: each command after
//! a pause wakes the flow (`telemetry::is_wake`, 2 s idle), and the pauses
//! vary widely. An implant's heartbeat wakes the flow as well, but on a
//! timer: even 50% jitter (Cobalt Strike's maximum setting) keeps the
//! intervals' coefficient of variation near 0.2, where a person's reaches
//! 1 (keystroke-dynamics and think-time studies give log-normal pauses).
//!
//! Weak evidence (30): chat, remote-support and device-control
//! protocols on their own ports are human-paced too. It adds up with a
//! callback or the traits of the opening on the same host.

use std::{collections::HashMap, net::IpAddr};

use sensor_common::telemetry::is_inspect_port;

use super::{
    event::{Event, Kind, Nanos, PROTO_TCP, SECOND},
    incident::MERGE_GAP,
    web::{HTTP_PORTS, TLS_PORTS},
    window::{cap_oldest, fit, OncePer},
    Evidence,
};

const SCORE: u8 = 30;
/// Wakes of one connection from which its rhythm is judged: eight
/// commands, a short session's worth.
const MIN_WAKES: usize = 8;
/// Wakes kept per connection: the latest.
const KEPT_WAKES: usize = 16;
/// Intervals this irregular are a person's (coefficient of variation; a
/// timer with 50% jitter gives about 0.2).
const MIN_VARIATION: f64 = 0.6;
/// A person at a console comes back within minutes: a median pause
/// longer than this is no one typing.
const MAX_MEDIAN_PAUSE: Nanos = 120 * SECOND;
/// Ports registered (IANA) to interactive or long-lived services whose
/// sessions are human-paced by design: SSH, Telnet, RDP, VNC, XMPP, MQTT,
/// IRC. HTTP and TLS ports (long polls, push channels) and the inspected
/// ports (FTP's control channel, database consoles) are left out too.
const INTERACTIVE_SERVICES: [u16; 8] = [22, 23, 3389, 5900, 5222, 1883, 6667, 6697];
/// Connections followed at once.
const CONNECTIONS: usize = 1 << 16;

/// A connection: (initiator, responder, initiator's port, responder's port).
type Connection = (IpAddr, IpAddr, u16, u16);

pub struct InteractiveShells {
    /// Per connection: when it woke, the latest `KEPT_WAKES`.
    wakes: HashMap<Connection, Vec<Nanos>>,
    pub reported: OncePer,
    /// Connections dropped to stay within `CONNECTIONS`.
    pub evicted: u64,
}

impl Default for InteractiveShells {
    fn default() -> Self {
        InteractiveShells {
            wakes: HashMap::new(),
            reported: OncePer::new(MERGE_GAP, CONNECTIONS),
            evicted: 0,
        }
    }
}

fn judged_port(port: u16) -> bool {
    !(INTERACTIVE_SERVICES.contains(&port)
        || HTTP_PORTS.contains(&port)
        || TLS_PORTS.contains(&port)
        || is_inspect_port(port))
}

impl InteractiveShells {
    /// `inside`: whether the source and the destination are inside hosts.
    pub fn observe(&mut self, e: &Event, inside: (bool, bool), out: &mut Vec<Evidence>) {
        if e.protocol != PROTO_TCP {
            return;
        }
        let key = (e.src, e.dst, e.sport, e.dport);
        match e.kind {
            Kind::Wake if inside.0 != inside.1 && judged_port(e.dport) => {
                self.evicted += cap_oldest(&mut self.wakes, CONNECTIONS, |w| {
                    w.last().copied().unwrap_or(0)
                });
                let wakes = self.wakes.entry(key).or_default();
                if wakes.len() >= KEPT_WAKES {
                    wakes.remove(0);
                }
                wakes.push(e.ts);
                if let Some((variation, median)) = human_paced(wakes) {
                    let (host, peer) = if inside.0 {
                        (e.src, e.dst)
                    } else {
                        (e.dst, e.src)
                    };
                    if self.reported.first((host, peer), e.ts) {
                        out.push(Evidence {
                            host,
                            detector: "shell.interactive",
                            technique: "T1059",
                            score: SCORE,
                            ts: e.ts,
                            since: wakes[0],
                            peers: vec![format!("{peer}:{}", if inside.0 { e.dport } else { e.sport })],
                            count: wakes.len() as u64,
                            summary: format!(
                                "a connection with {peer} on port {} woke {} times at a person's pace (pauses vary {variation:.1}x their mean, median {:.0} s): an interactive session on a port no interactive service uses",
                                e.dport,
                                wakes.len(),
                                median as f64 / SECOND as f64
                            ),
                        });
                    }
                }
            }
            Kind::FlowEnd(_) => {
                self.wakes.remove(&key);
            }
            _ => {}
        }
    }

    /// Forgets connections that have not woken within the merge window.
    pub fn prune(&mut self, now: Nanos) {
        self.wakes.retain(|_, w| {
            w.last()
                .is_some_and(|t| now.saturating_sub(*t) <= MERGE_GAP)
        });
        fit(&mut self.wakes);
        self.reported.prune(now);
    }

    pub fn size(&self) -> usize {
        self.wakes.len()
    }
}

/// Whether wakes came at a person's pace: enough of them, pauses that
/// vary widely, a median pause of minutes at most. Gives the pauses'
/// coefficient of variation and median.
fn human_paced(wakes: &[Nanos]) -> Option<(f64, Nanos)> {
    if wakes.len() < MIN_WAKES {
        return None;
    }
    let mut pauses: Vec<Nanos> = wakes
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    let n = pauses.len() as f64;
    let mean = pauses.iter().map(|p| *p as f64).sum::<f64>() / n;
    let variance = pauses
        .iter()
        .map(|p| (*p as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let variation = variance.sqrt() / mean.max(1.0);
    pauses.sort_unstable();
    let median = pauses[pauses.len() / 2];
    (variation >= MIN_VARIATION && median <= MAX_MEDIAN_PAUSE).then_some((variation, median))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHELL: &str = "10.0.0.5";
    const OPERATOR: &str = "198.51.100.66";

    /// Wakes of the victim's connection to the operator's `port`, `pauses`
    /// seconds apart.
    fn session(port: u16, pauses: &[f64]) -> Vec<Evidence> {
        let mut d = InteractiveShells::default();
        let mut out = Vec::new();
        let mut t = 10.0;
        for pause in std::iter::once(&0.0).chain(pauses) {
            t += pause;
            let e = Event {
                ts: (t * SECOND as f64) as Nanos,
                src: SHELL.parse().unwrap(),
                dst: OPERATOR.parse().unwrap(),
                sport: 50000,
                dport: port,
                protocol: PROTO_TCP,
                kind: Kind::Wake,
                payload: Vec::new(),
            };
            d.observe(&e, (true, false), &mut out);
        }
        out
    }

    /// A person's pauses between commands, in seconds.
    const PERSON: [f64; 9] = [3.0, 9.5, 4.0, 31.0, 2.5, 6.0, 14.0, 2.2, 48.0];

    #[test]
    fn commands_typed_at_a_person_s_pace_are_an_interactive_session() {
        let found = session(4444, &PERSON);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].detector, found[0].score),
            ("shell.interactive", 30)
        );
        assert_eq!(found[0].host.to_string(), SHELL);
        assert_eq!(found[0].peers, [format!("{OPERATOR}:4444")]);
        // Judged from the eighth wake on.
        assert_eq!(found[0].count, 8);
    }

    #[test]
    fn heartbeats_slow_pauses_and_interactive_services_are_not() {
        // A 10 s heartbeat with 50% jitter.
        let jittered = [7.5, 9.0, 5.5, 10.0, 6.0, 8.5, 5.0, 9.5, 7.0];
        assert!(session(4444, &jittered).is_empty());
        // A push channel waking every few minutes, irregularly.
        let slow: Vec<f64> = PERSON.iter().map(|p| p * 40.0).collect();
        assert!(session(4444, &slow).is_empty());
        // SSH and Telnet are interactive by design; so is a web long poll.
        for port in [22, 23, 443, 8080] {
            assert!(session(port, &PERSON).is_empty(), "port {port}");
        }
        assert!(session(4444, &PERSON[..5]).is_empty(), "too few wakes");
    }
}
