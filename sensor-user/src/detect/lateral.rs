//! Lateral movement between inside hosts over Windows and Unix admin
//! protocols.
//!
//! - `lateral.fanout` (T1021): one inside host opening admin-protocol
//!   connections (SMB 445, RPC 135, RDP 3389, WinRM 5985/5986, SSH 22) to
//!   many other inside hosts. Workstations talk these protocols to a file
//!   server or two, not to their neighbours; a worm or an operator moving
//!   through the network reaches many.
//! - `lateral.remote_service` (T1569.002): a DCE/RPC client binding the
//!   Service Control Manager interface (svcctl) of another inside host and
//!   asking it to create or start a service: how PsExec, Impacket's
//!   psexec/smbexec and most "jump" commands run code remotely. Seen in the
//!   payload samples the sensor takes of SMB and DCE/RPC flows.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use serde::{Deserialize, Serialize};

use super::{
    event::{Event, Kind, Nanos, PROTO_TCP, SECOND},
    window::FanOut,
    Evidence,
};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LateralConfig {
    pub admin_ports: Vec<u16>,
    /// Distinct inside hosts reached on admin ports within the window.
    pub fanout_hosts: usize,
    pub window_secs: u64,
}

impl Default for LateralConfig {
    fn default() -> Self {
        LateralConfig {
            admin_ports: vec![22, 135, 445, 3389, 5985, 5986],
            fanout_hosts: 5,
            window_secs: 600,
        }
    }
}

/// The svcctl interface UUID 367abb81-9844-35f1-ad32-98f038001003 as it is
/// encoded in a bind PDU (little-endian fields).
const SVCCTL_UUID: [u8; 16] = [
    0x81, 0xbb, 0x7a, 0x36, 0x44, 0x98, 0xf1, 0x35, 0xad, 0x32, 0x98, 0xf0, 0x38, 0x00, 0x10, 0x03,
];

/// svcctl operations that run code: RCreateServiceW (12), RStartServiceW
/// (19), RCreateServiceA (24), RStartServiceA (31) [MS-SCMR].
const SVCCTL_EXEC_OPNUMS: [u16; 4] = [12, 19, 24, 31];

/// Opnums of the DCE/RPC request PDUs in a payload sample. A request is
/// version 5.0, type 0, first and last fragment, little-endian data; the
/// opnum sits at offset 22. Samples may hold SMB headers before the PDU.
pub fn request_opnums(sample: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    if sample.len() < 24 {
        return out;
    }
    for i in 0..sample.len() - 23 {
        let h = &sample[i..i + 24];
        if h[0] == 5 && h[1] == 0 && h[2] == 0 && h[3] & 0x03 == 0x03 && h[4] == 0x10 {
            out.push(u16::from_le_bytes([h[22], h[23]]));
        }
    }
    out
}

fn binds_svcctl(sample: &[u8]) -> bool {
    sample.windows(SVCCTL_UUID.len()).any(|w| w == SVCCTL_UUID)
}

/// A TCP connection, either way round.
fn conn_key(e: &Event) -> (IpAddr, u16, IpAddr, u16) {
    if (e.src, e.sport) <= (e.dst, e.dport) {
        (e.src, e.sport, e.dst, e.dport)
    } else {
        (e.dst, e.dport, e.src, e.sport)
    }
}

pub struct LateralDetector {
    config: LateralConfig,
    /// Inside hosts each source reached on admin ports.
    reached: FanOut,
    /// Connections whose client bound svcctl, with the client.
    svcctl: HashMap<(IpAddr, u16, IpAddr, u16), IpAddr>,
    exec_reported: HashSet<(IpAddr, IpAddr)>,
}

impl LateralDetector {
    pub fn new(config: LateralConfig) -> LateralDetector {
        LateralDetector {
            config,
            reached: FanOut::default(),
            svcctl: HashMap::new(),
            exec_reported: HashSet::new(),
        }
    }

    /// `inside`: both ends are inside hosts.
    pub fn observe(&mut self, e: &Event, inside: bool, out: &mut Vec<Evidence>) {
        if !inside || e.protocol != PROTO_TCP {
            return;
        }
        match e.kind {
            Kind::Syn if self.config.admin_ports.contains(&e.dport) => self.fanout(e, out),
            Kind::Data => self.inspect(e, out),
            _ => {}
        }
    }

    fn fanout(&mut self, e: &Event, out: &mut Vec<Evidence>) {
        let window = self.config.window_secs * SECOND;
        let Some((n, peers)) =
            self.reached
                .add(e.src, e.dst, e.ts, window, self.config.fanout_hosts)
        else {
            return;
        };
        out.push(Evidence {
            host: e.src,
            detector: "lateral.fanout",
            technique: "T1021",
            score: 75,
            ts: e.ts,
            since: e.ts,
            peers,
            count: n as u64,
            summary: format!(
                "admin-protocol connections to {n} inside hosts within {}s",
                self.config.window_secs
            ),
        });
    }

    fn inspect(&mut self, e: &Event, out: &mut Vec<Evidence>) {
        let key = conn_key(e);
        if binds_svcctl(&e.payload) {
            self.svcctl.entry(key).or_insert(e.src);
        }
        let Some(client) = self.svcctl.get(&key).copied() else {
            return;
        };
        if e.src != client {
            return;
        }
        let exec: Vec<u16> = request_opnums(&e.payload)
            .into_iter()
            .filter(|op| SVCCTL_EXEC_OPNUMS.contains(op))
            .collect();
        super::window::limit_reported(&mut self.exec_reported);
        if exec.is_empty() || !self.exec_reported.insert((e.src, e.dst)) {
            return;
        }
        let what = if exec.iter().any(|op| *op == 12 || *op == 24) {
            "created"
        } else {
            "started"
        };
        out.push(Evidence {
            host: e.src,
            detector: "lateral.remote_service",
            technique: "T1569.002",
            score: 85,
            ts: e.ts,
            since: e.ts,
            peers: vec![e.dst.to_string()],
            count: 1,
            summary: format!(
                "{what} a service on {} over DCE/RPC (svcctl, port {})",
                e.dst, e.dport
            ),
        });
    }

    /// How far back fan-out is counted.
    pub fn window(&self) -> Nanos {
        self.config.window_secs * SECOND
    }

    /// Forgets connections and reach older than `since` (called by the engine).
    /// Hosts the fan-out table dropped to stay within its limit.
    pub fn evicted(&self) -> u64 {
        self.reached.evicted
    }

    pub fn prune(&mut self, since: Nanos) {
        self.reached.prune(since);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: Nanos, src: &str, dst: &str, dport: u16, kind: Kind, payload: Vec<u8>) -> Event {
        Event {
            ts,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: 50000,
            dport,
            protocol: PROTO_TCP,
            kind,
            payload,
        }
    }

    fn request(opnum: u16) -> Vec<u8> {
        let mut pdu = vec![
            5, 0, 0, 3, 0x10, 0, 0, 0, 24, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        pdu.extend_from_slice(&opnum.to_le_bytes());
        pdu
    }

    fn bind() -> Vec<u8> {
        let mut pdu = vec![5, 0, 11, 3, 0x10, 0, 0, 0, 72, 0, 0, 0, 1, 0, 0, 0];
        pdu.extend_from_slice(&[0xb8, 0x10, 0xb8, 0x10, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0]);
        pdu.extend_from_slice(&SVCCTL_UUID);
        pdu.extend_from_slice(&[2, 0, 0, 0]);
        pdu
    }

    fn run(events: &[Event]) -> Vec<Evidence> {
        let mut d = LateralDetector::new(LateralConfig::default());
        let mut out = Vec::new();
        for e in events {
            d.observe(e, true, &mut out);
        }
        out
    }

    #[test]
    fn reaching_many_hosts_over_smb_is_fanout() {
        let events: Vec<Event> = (1..=6)
            .map(|i| {
                ev(
                    i * SECOND,
                    "10.0.0.5",
                    &format!("10.0.0.{}", 100 + i),
                    445,
                    Kind::Syn,
                    vec![],
                )
            })
            .collect();
        let out = run(&events);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].detector, "lateral.fanout");
        assert_eq!(out[0].count, 5);
    }

    #[test]
    fn one_file_server_is_not_fanout() {
        let events: Vec<Event> = (1..=30)
            .map(|i| ev(i * SECOND, "10.0.0.5", "10.0.0.2", 445, Kind::Syn, vec![]))
            .collect();
        assert!(run(&events).is_empty());
    }

    #[test]
    fn svcctl_create_service_is_remote_execution() {
        let mut with_smb_header = vec![0xfe, b'S', b'M', b'B'];
        with_smb_header.extend(vec![0u8; 60]);
        with_smb_header.extend(request(12));
        let events = [
            ev(SECOND, "10.0.0.5", "10.0.0.9", 49683, Kind::Data, bind()),
            ev(
                2 * SECOND,
                "10.0.0.5",
                "10.0.0.9",
                49683,
                Kind::Data,
                request(15),
            ),
            ev(
                3 * SECOND,
                "10.0.0.5",
                "10.0.0.9",
                49683,
                Kind::Data,
                with_smb_header,
            ),
        ];
        let out = run(&events);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].detector, "lateral.remote_service");
        assert!(out[0].summary.starts_with("created"));
    }

    #[test]
    fn requests_without_an_svcctl_bind_are_not() {
        let events = [ev(
            SECOND,
            "10.0.0.5",
            "10.0.0.9",
            445,
            Kind::Data,
            request(12),
        )];
        assert!(run(&events).is_empty());
    }
}
