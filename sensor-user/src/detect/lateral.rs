//! Lateral movement between inside hosts over Windows and Unix admin
//! protocols.
//!
//! - `lateral.fanout` (T1021): one inside host opening admin-protocol
//!   connections (SMB 445, RPC 135, RDP 3389, WinRM 5985/5986, SSH 22) to
//!   many other inside hosts. Workstations talk these protocols to a file
//!   server or two, not to their neighbours; a worm or an operator moving
//!   through the network reaches many.
//! - `lateral.remote_service` (T1569.002): a DCE/RPC client asking the
//!   Service Control Manager (svcctl) of another inside host to create,
//!   start or re-point a service: how PsExec, Impacket's psexec/smbexec
//!   and most "jump" commands run code remotely.
//! - `lateral.scheduled_task` (T1053.002, T1053.005): a client adding an
//!   `at` job (atsvc) or registering or running a scheduled task
//!   (ITaskSchedulerService) on another inside host: Impacket's atexec,
//!   `schtasks /s`.
//!
//! Both follow each RPC association (`dcerpc::Association`) in the payload
//! samples the sensor takes of SMB and DCE/RPC flows, over named pipes and
//! over TCP alike: the bind names the interface, each request its context
//! and operation, in clear even when the call is sealed.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use serde::{Deserialize, Serialize};

use super::{
    dcerpc::{self, Association, Uuid},
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

/// What a remote call means, when it is one the detectors report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Call {
    detector: &'static str,
    technique: &'static str,
    /// Remote execution and credential theft isolate alone (85); changes
    /// an administrator also makes alert (65) and add up with the rest.
    score: u8,
    /// What the client did, for the summary.
    what: &'static str,
}

/// The calls the detectors report, by interface and operation number (from
/// each interface's specification).
fn remote_call(interface: Uuid, opnum: u16) -> Option<Call> {
    let call = |detector, technique, score, what| Call {
        detector,
        technique,
        score,
        what,
    };
    let service = |what| call("lateral.remote_service", "T1569.002", 85, what);
    Some(match (interface, opnum) {
        // [MS-SCMR] 3.1.4: RCreateServiceW, RCreateServiceA,
        // RCreateServiceWOW64A/W.
        (dcerpc::SVCCTL, 12 | 24 | 44 | 45) => service("created a service"),
        // RStartServiceW, RStartServiceA.
        (dcerpc::SVCCTL, 19 | 31) => service("started a service"),
        // RChangeServiceConfigW, RChangeServiceConfigA: an existing
        // service pointed at another program (SCShell and the like).
        (dcerpc::SVCCTL, 11 | 23) => service("changed a service's program"),
        // [MS-TSCH] 3.2.5.2.1 NetrJobAdd.
        (dcerpc::ATSVC, 0) => call("lateral.scheduled_task", "T1053.002", 85, "added an at job"),
        // [MS-TSCH] 3.2.5.4.2 SchRpcRegisterTask, 3.2.5.4.13 SchRpcRun.
        (dcerpc::TASK_SCHEDULER, 1 | 12) => call(
            "lateral.scheduled_task",
            "T1053.005",
            85,
            "registered or ran a scheduled task",
        ),
        // [MS-RRP] 3.1.5.20 BaseRegSaveKey, 3.1.5.27 BaseRegSaveKeyEx: a
        // hive written to a file, how secretsdump takes SAM and SECURITY
        // from a remote host.
        (dcerpc::WINREG, 20 | 31) => call(
            "credential.hive_dump",
            "T1003.002",
            85,
            "saved a registry hive to a file",
        ),
        // BaseRegCreateKey, BaseRegSetValue: remote registry writes (run
        // keys, services, debugger hijacks).
        (dcerpc::WINREG, 6 | 22) => call(
            "lateral.remote_registry",
            "T1112",
            65,
            "wrote to the registry",
        ),
        // [MS-EVEN] 3.1.4.9/3.1.4.10 ElfrClearELFW/A, [MS-EVEN6] 3.1.4.16
        // EvtRpcClearLog.
        (dcerpc::EVENTLOG, 0 | 12) | (dcerpc::EVEN6, 6) => call(
            "evasion.log_cleared",
            "T1070.001",
            65,
            "cleared an event log",
        ),
        // Domain reconnaissance: alerts that add up with the rest.
        // [MS-SRVS] 3.1.4.5 NetrSessionEnum: who is connected to a host,
        // how BloodHound's collectors find where administrators are logged
        // on (Windows restricts it to administrators since 2016).
        (dcerpc::SRVSVC, 12) => call("recon.sessions", "T1049", 60, "listed the sessions"),
        // [MS-WKST] 3.2.4.3 NetrWkstaUserEnum: who is logged on.
        (dcerpc::WKSSVC, 2) => call(
            "recon.logged_on_users",
            "T1033",
            60,
            "listed the logged-on users",
        ),
        _ => return None,
    })
}

/// A TCP connection, either way round.
fn conn_key(e: &Event) -> (IpAddr, u16, IpAddr, u16) {
    if (e.src, e.sport) <= (e.dst, e.dport) {
        (e.src, e.sport, e.dst, e.dport)
    } else {
        (e.dst, e.dport, e.src, e.sport)
    }
}

/// One connection's RPC association, seen from its client.
struct Rpc {
    client: IpAddr,
    association: Association,
    last: Nanos,
}

pub struct LateralDetector {
    config: LateralConfig,
    /// Inside hosts each source reached on admin ports.
    reached: FanOut,
    /// RPC associations by connection: the client (the side that bound
    /// first), its contexts, and when the connection last carried RPC.
    rpc: HashMap<(IpAddr, u16, IpAddr, u16), Rpc>,
    exec_reported: HashSet<(IpAddr, IpAddr, &'static str)>,
}

impl LateralDetector {
    pub fn new(config: LateralConfig) -> LateralDetector {
        LateralDetector {
            config,
            reached: FanOut::default(),
            rpc: HashMap::new(),
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
        let pdus = dcerpc::pdus(&e.payload);
        if pdus.is_empty() {
            return;
        }
        let key = conn_key(e);
        if !self.rpc.contains_key(&key) {
            // Only a bind opens an association: a request without one
            // names no interface.
            if !pdus.iter().any(|p| matches!(p, dcerpc::Pdu::Bind { .. })) {
                return;
            }
            if self.rpc.len() >= super::limits::RPC_ASSOCIATIONS {
                super::window::cap_oldest(&mut self.rpc, super::limits::RPC_ASSOCIATIONS, |r| {
                    r.last
                });
            }
        }
        let rpc = self.rpc.entry(key).or_insert(Rpc {
            client: e.src,
            association: Association::default(),
            last: e.ts,
        });
        rpc.last = e.ts;
        if e.src != rpc.client {
            return;
        }
        let calls: Vec<(Uuid, u16)> = pdus
            .iter()
            .filter_map(|p| rpc.association.client_pdu(p))
            .collect();
        for (interface, opnum) in calls {
            let Some(call) = remote_call(interface, opnum) else {
                continue;
            };
            super::window::limit_reported(&mut self.exec_reported);
            if !self.exec_reported.insert((e.src, e.dst, call.detector)) {
                continue;
            }
            out.push(Evidence {
                host: e.src,
                detector: call.detector,
                technique: call.technique,
                score: call.score,
                ts: e.ts,
                since: e.ts,
                peers: vec![e.dst.to_string()],
                count: 1,
                summary: format!(
                    "{} on {} over DCE/RPC ({interface} opnum {opnum}, port {})",
                    call.what, e.dst, e.dport
                ),
            });
        }
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
        self.rpc.retain(|_, r| r.last >= since);
        super::window::fit(&mut self.rpc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::dcerpc::tests::{bind, request};

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

    /// A payload sample `secs` into the capture.
    fn data(secs: u64, src: &str, dst: &str, dport: u16, payload: Vec<u8>) -> Event {
        ev(secs * SECOND, src, dst, dport, Kind::Data, payload)
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
    fn svcctl_create_service_over_smb_is_remote_execution() {
        let mut with_smb_header = vec![0, 0, 0, 0x90, 0xfe, b'S', b'M', b'B'];
        with_smb_header.extend(vec![0u8; 60 + 48]);
        with_smb_header.extend(request(0, 12, 200));
        let events = [
            data(
                1,
                "10.0.0.5",
                "10.0.0.9",
                445,
                bind(&[dcerpc::SVCCTL], false),
            ),
            // OpenSCManagerW: not execution.
            data(2, "10.0.0.5", "10.0.0.9", 445, request(0, 15, 40)),
            data(3, "10.0.0.5", "10.0.0.9", 445, with_smb_header),
            data(4, "10.0.0.5", "10.0.0.9", 445, request(0, 19, 8)),
        ];
        let out = run(&events);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].detector, "lateral.remote_service");
        assert_eq!(out[0].technique, "T1569.002");
        let summary = &out[0].summary;
        assert!(summary.starts_with("created a service"), "{summary}");
        assert!(summary.contains("svcctl opnum 12"), "{summary}");
    }

    #[test]
    fn tasks_registered_over_tcp_are_remote_execution() {
        // atexec's way (ITaskSchedulerService on a dynamic port, bound as
        // the second context), and the legacy at service (big-endian, to
        // hold the other data representation too).
        let events = [
            data(
                1,
                "10.0.0.5",
                "10.0.0.9",
                49667,
                bind(&[dcerpc::EPMAPPER, dcerpc::TASK_SCHEDULER], false),
            ),
            data(2, "10.0.0.5", "10.0.0.9", 49667, request(1, 1, 600)),
            data(3, "10.0.0.5", "10.0.0.9", 49667, request(1, 12, 60)),
            data(
                1,
                "10.0.0.6",
                "10.0.0.9",
                49668,
                bind(&[dcerpc::ATSVC], true),
            ),
        ];
        let mut at = request(0, 0, 64);
        at[4] = 0; // big-endian
        at[8..10].copy_from_slice(&(88u16).to_be_bytes());
        at[10..12].copy_from_slice(&[0, 0]);
        at[20..22].copy_from_slice(&0u16.to_be_bytes());
        at[22..24].copy_from_slice(&0u16.to_be_bytes());
        let mut all = events.to_vec();
        all.push(data(2, "10.0.0.6", "10.0.0.9", 49668, at));
        let out = run(&all);
        let found: Vec<(&str, &str, IpAddr)> = out
            .iter()
            .map(|e| (e.detector, e.technique, e.host))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "lateral.scheduled_task",
                    "T1053.005",
                    "10.0.0.5".parse().unwrap()
                ),
                (
                    "lateral.scheduled_task",
                    "T1053.002",
                    "10.0.0.6".parse().unwrap()
                ),
            ],
            "{out:?}"
        );
    }

    /// What one association binding `interface` and calling `opnums`
    /// yields: (detector, technique, score) of each piece of evidence.
    fn calls(interface: Uuid, opnums: &[u16]) -> Vec<(&'static str, &'static str, u8)> {
        let mut events = vec![data(
            1,
            "10.0.0.5",
            "10.0.0.9",
            445,
            bind(&[interface], false),
        )];
        for (i, op) in opnums.iter().enumerate() {
            events.push(data(
                2 + i as u64,
                "10.0.0.5",
                "10.0.0.9",
                445,
                request(0, *op, 64),
            ));
        }
        run(&events)
            .iter()
            .map(|e| (e.detector, e.technique, e.score))
            .collect()
    }

    #[test]
    fn registry_hives_writes_and_log_clearing_are_reported_by_weight() {
        // secretsdump's remote hive save (OpenLocalMachine, BaseRegSaveKey): strong.
        assert_eq!(
            calls(dcerpc::WINREG, &[2, 20]),
            vec![("credential.hive_dump", "T1003.002", 85)]
        );
        // A value set, an event log cleared (either interface): alerts.
        assert_eq!(
            calls(dcerpc::WINREG, &[22]),
            vec![("lateral.remote_registry", "T1112", 65)]
        );
        for (interface, clear) in [(dcerpc::EVEN6, 6), (dcerpc::EVENTLOG, 0)] {
            assert_eq!(
                calls(interface, &[clear]),
                vec![("evasion.log_cleared", "T1070.001", 65)]
            );
        }
        // Reading the registry (BaseRegQueryValue) is neither.
        assert!(calls(dcerpc::WINREG, &[2, 17]).is_empty());
    }

    #[test]
    fn domain_reconnaissance_calls_alert() {
        // NetrSessionEnum; NetrWkstaUserEnum.
        assert_eq!(
            calls(dcerpc::SRVSVC, &[12]),
            vec![("recon.sessions", "T1049", 60)]
        );
        assert_eq!(
            calls(dcerpc::WKSSVC, &[2]),
            vec![("recon.logged_on_users", "T1033", 60)]
        );
        // Listing a server's shares (NetrShareEnum, what Explorer does when
        // a user opens \\server) is not; nor, for now, SAMR listings, which
        // ordinary domain members make too (docs/detection.md).
        assert!(calls(dcerpc::SRVSVC, &[15]).is_empty());
        assert!(calls(dcerpc::SAMR, &[7, 13]).is_empty());
    }

    #[test]
    fn requests_without_a_bind_and_the_server_s_pdus_are_not() {
        let events = [
            data(1, "10.0.0.5", "10.0.0.9", 445, request(0, 12, 0)),
            // The server's side of an association the client opened.
            data(
                2,
                "10.0.0.7",
                "10.0.0.9",
                445,
                bind(&[dcerpc::SVCCTL], false),
            ),
            data(3, "10.0.0.9", "10.0.0.7", 445, request(0, 12, 0)),
        ];
        let mut events = events.to_vec();
        for e in &mut events[1..] {
            if e.src.to_string() == "10.0.0.9" {
                e.sport = 445;
                e.dport = 50000;
            }
        }
        assert!(run(&events).is_empty());
    }
}
