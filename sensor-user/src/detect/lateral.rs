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
//! - `lateral.admin_share_write` (T1570): a program or script written to
//!   another inside host's ADMIN$ or drive share over SMB2/3, as PsExec
//!   copies its service and operators copy their tools.
//! - `lateral.winrm` (T1021.006): a WS-Management session (WinRM,
//!   PowerShell remoting) opened on another inside host.
//! - `lateral.wmi`, `lateral.dcom`: remote WMI sessions, methods and
//!   instances; remote COM objects scripted through IDispatch.
//! - `credential.dcsync`, `credential.dcshadow`, `credential.zerologon`,
//!   `credential.coercion`, `credential.hive_dump`: directory replication
//!   from a host that is no domain controller (`roles`), Netlogon
//!   authentication in numbers, callbacks asked of a controller's spooler
//!   or of EFSRPC, registry hives saved remotely.
//! - `lateral.remote_registry`, `evasion.log_cleared`, `recon.*` (sessions,
//!   logged-on users, SID lookups in bulk, accounts opened one by one and
//!   group members over SAMR, the endpoint mapper's whole list, LDAP
//!   searches for every object of a class): changes and listings
//!   administrators also make; they alert and add up.
//! - The first steps that show even when the server refuses what follows:
//!   a COM object activated remotely (`lateral.dcom`, alert), the Task
//!   Scheduler's pipe opened (`lateral.scheduled_task`, alert).
//!
//! All follow each RPC association (`dcerpc::Association`) in the payload
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
    event::{Connection, Event, Kind, Nanos, PROTO_TCP, SECOND},
    roles::Roles,
    smb,
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
    /// When the call is evidence.
    when: When,
}

/// When a call is evidence: some calls are only suspect from the wrong
/// host, to the wrong host, or in numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Always,
    /// The client is not a domain controller (`roles`): replication is
    /// what controllers do among themselves.
    ClientIsNotDc,
    /// The server is a domain controller.
    ServerIsDc,
    /// This many such calls from one client to one server within
    /// `REPEAT_WINDOW`.
    Repeated(u32),
    /// This many items asked for by one client of one server within
    /// `REPEAT_WINDOW`: a call asks for as many as its arguments hold at
    /// `item_bytes` each (from the client's alloc_hint), and at least one.
    Bulk {
        items: u32,
        item_bytes: u32,
    },
    /// The call's first argument, read in clear, is this value.
    FirstArg(u32),
}

/// The window `When::Repeated` counts in.
const REPEAT_WINDOW: Nanos = 120 * SECOND;

/// The calls the detectors report, by interface and operation number (from
/// each interface's specification).
fn remote_call(interface: Uuid, opnum: u16) -> Option<Call> {
    let call = |detector, technique, score, what| Call {
        detector,
        technique,
        score,
        what,
        when: When::Always,
    };
    let only = |when, call: Call| Call { when, ..call };
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
        // [MS-LSAT] 3.1.4.9 LsarLookupSids, 3.1.4.8 LsarLookupSids2,
        // 3.1.4.7 LsarLookupSids3: SIDs to names. In numbers, a walk over
        // RIDs that lists the domain's accounts (Impacket's lookupsid,
        // enum4linux); a security dialog makes a handful.
        (dcerpc::LSARPC, 15 | 57 | 76) => only(
            When::Bulk {
                items: SID_LOOKUPS,
                item_bytes: SID_BYTES,
            },
            call(
                "recon.sid_lookup",
                "T1087.002",
                60,
                "looked up SIDs in bulk (accounts listed by RID)",
            ),
        ),
        // [MS-SAMR] 3.1.5.1.9 SamrOpenUser, one account after another:
        // a listing's details pulled account by account (Impacket's
        // samrdump, enum4linux's user queries). A listing alone
        // (SamrEnumerateUsersInDomain, SamrQueryDisplayInformation) is
        // not evidence: ordinary captures make them (docs/detection.md).
        (dcerpc::SAMR, 34) => only(
            When::Repeated(ACCOUNTS_OPENED),
            call(
                "recon.accounts",
                "T1087.002",
                60,
                "opened one domain account after another (SAMR)",
            ),
        ),
        // 3.1.5.8.3 SamrGetMembersInGroup, 3.1.5.8.4 SamrGetMembersInAlias:
        // who is in a group (`net group "Domain Admins" /domain`;
        // BloodHound asks each host for its local Administrators so).
        (dcerpc::SAMR, 25 | 33) => call(
            "recon.groups",
            "T1069",
            60,
            "listed a group's members (SAMR)",
        ),
        // [C706 2.2.1.2 / MS-RPCE 2.2.1.2.5] ept_lookup asked for all
        // elements: every endpoint the mapper knows, page by page (rpcdump,
        // rpcmap). Clients that want one interface ask for it by interface
        // (Outlook finding Exchange) or with ept_map.
        (dcerpc::EPMAPPER, 2) => only(
            When::FirstArg(EPT_ALL_ELEMENTS),
            call(
                "recon.rpc_endpoints",
                "T1046",
                60,
                "listed the endpoint mapper's registrations (ept_lookup)",
            ),
        ),
        // [MS-RRP] 3.1.5.5 OpenUsers: HKEY_USERS, whose subkeys are the
        // SIDs of the users logged on (PsLoggedOn, BloodHound's registry
        // session collection).
        (dcerpc::WINREG, 4) => call(
            "recon.logged_on_users",
            "T1033",
            60,
            "opened HKEY_USERS (who is logged on)",
        ),
        // [MS-DRSR] 4.1.10 IDL_DRSGetNCChanges: replication of directory
        // objects, secrets included (DCSync); 4.1.19 IDL_DRSReplicaAdd and
        // 4.1.1 IDL_DRSAddEntry: a new replication partner or a new
        // domain controller object (DCShadow). Only controllers do these.
        (dcerpc::DRSUAPI, 3) => only(
            When::ClientIsNotDc,
            call(
                "credential.dcsync",
                "T1003.006",
                85,
                "asked for directory replication (DRSGetNCChanges) without being a domain controller",
            ),
        ),
        (dcerpc::DRSUAPI, 5 | 17) => only(
            When::ClientIsNotDc,
            call(
                "credential.dcshadow",
                "T1207",
                85,
                "added a replication partner or a domain controller object (DRSReplicaAdd, DRSAddEntry) without being a domain controller",
            ),
        ),
        // [MS-NRPC] 3.5.4.4.2 NetrServerAuthenticate, .4.3
        // NetrServerAuthenticate2, .4.2 NetrServerAuthenticate3: a machine
        // sets up its secure channel with one or two; Zerologon
        // (CVE-2020-1472) needs about 256 on average (Secura's white
        // paper), as Corelight's Zeek detector counts them.
        (dcerpc::NETLOGON, 5 | 15 | 26) => only(
            When::Repeated(ZEROLOGON_ATTEMPTS),
            call(
                "credential.zerologon",
                "T1210",
                85,
                "tried to authenticate a Netlogon secure channel again and again (Zerologon)",
            ),
        ),
        // [MS-RPRN] 3.1.4.10.3/.4 RpcRemoteFindFirstPrinterChangeNotification(Ex):
        // the server is to call the client back, authenticating as its
        // machine account, which an attacker relays (PrinterBug). Aimed
        // at a domain controller, which prints for nobody.
        (dcerpc::SPOOLSS, 62 | 65) => only(
            When::ServerIsDc,
            call(
                "credential.coercion",
                "T1187",
                70,
                "asked a domain controller's print spooler to call back (PrinterBug)",
            ),
        ),
        // [MS-EFSR] 3.1.4.2.1 EfsRpcOpenFileRaw, .2 EfsRpcEncryptFileSrv,
        // .3 EfsRpcDecryptFileSrv, .4 EfsRpcQueryUsersOnFile, .5
        // EfsRpcQueryRecoveryAgents, .9 EfsRpcFileKeyInfo, .10
        // EfsRpcDuplicateEncryptionInfoFile, .12 EfsRpcAddUsersToFileEx:
        // each opens a path the caller names, a UNC path to its listener
        // in PetitPotam. Remote EFS over RPC has little everyday use.
        (dcerpc::EFSRPC | dcerpc::EFSRPC_LSA, 0 | 4 | 5 | 6 | 7 | 12 | 13 | 15) => call(
            "credential.coercion",
            "T1187",
            70,
            "asked EFSRPC to open a file on a path it names (PetitPotam)",
        ),
        // [MS-WMI] 3.1.4.1.4 IWbemLevel1Login::NTLMLogin: a remote WMI
        // session (wmiexec, Invoke-WmiMethod -ComputerName); management
        // servers do this too, so alone it alerts.
        (dcerpc::WBEM_LOGIN, 6) => call(
            "lateral.wmi",
            "T1047",
            65,
            "logged on to WMI remotely",
        ),
        // [MS-WMI] 3.1.4.3.22/.23 IWbemServices::ExecMethod(Async): a
        // method run remotely, Win32_Process.Create for wmiexec; 3.1.4.3.12/.13
        // PutInstance(Async): an instance written remotely, the event
        // filter, consumer and binding of a permanent subscription.
        (dcerpc::WBEM_SERVICES, 24 | 25) => call(
            "lateral.wmi",
            "T1047",
            85,
            "ran a WMI method remotely (such as Win32_Process.Create)",
        ),
        (dcerpc::WBEM_SERVICES, 14 | 15) => call(
            "lateral.wmi",
            "T1546.003",
            85,
            "wrote a WMI instance remotely (such as an event subscription)",
        ),
        // [MS-OAUT] 3.1.4 IDispatch over DCOM: a remote object scripted
        // through its dispatch interface, as MMC20.Application,
        // ShellWindows, ShellBrowserWindow and the Office applications
        // are driven to run commands. 3.1.4.4 Invoke runs a method.
        (dcerpc::IDISPATCH, 6) => call(
            "lateral.dcom",
            "T1021.003",
            85,
            "invoked a method of a remote COM object through IDispatch",
        ),
        (dcerpc::IDISPATCH, 3..=5) => call(
            "lateral.dcom",
            "T1021.003",
            65,
            "scripted a remote COM object through IDispatch",
        ),
        _ => return None,
    })
}

/// SMB over TCP [MS-SMB2 2.1].
const SMB_PORT: u16 = 445;

/// SIDs looked up by one client at one server within `REPEAT_WINDOW`
/// that list accounts rather than name a few (a security dialog names a
/// handful; this project's choice).
const SID_LOOKUPS: u32 = 20;

/// ept_lookup's inquiry_type rpc_c_ep_all_elts [C706 Appendix N, ept.idl].
const EPT_ALL_ELEMENTS: u32 = 0;

/// Accounts opened by one client at one server within `REPEAT_WINDOW`
/// that read a listing account by account (a logon or `net user NAME`
/// opens one; this project's choice).
const ACCOUNTS_OPENED: u32 = 10;

/// A domain account's SID as NDR marshals it in a lookup's arguments:
/// pointer (4), conformant count (4), revision, count and authority (8),
/// five sub-authorities (20) [MS-LSAT 2.2.17, MS-DTYP 2.4.2.3].
const SID_BYTES: u32 = 36;

/// A program written to an administrative share: how psexec and its kind
/// put the service they start on the target.
const ADMIN_SHARE_WRITE: Call = Call {
    detector: "lateral.admin_share_write",
    technique: "T1570",
    score: 80,
    what: "wrote a program to an administrative share",
    when: When::Always,
};

/// The Task Scheduler's named pipe opened [MS-TSCH 2.1: ATSvc and
/// ITaskSchedulerService over \PIPE\atsvc]: the first step of a remote
/// task, visible even when the server then refuses the call. `schtasks
/// /s` does it too: it alerts; the registration itself is 85.
const TASK_PIPE_OPENED: Call = Call {
    detector: "lateral.scheduled_task",
    technique: "T1053.005",
    score: 65,
    what: "opened the Task Scheduler's pipe (atsvc)",
    when: When::Always,
};

/// WinRM over HTTPS [MS-WSMV 2.1].
const WINRM_HTTPS_PORT: u16 = 5986;

/// A WS-Management session opened: an HTTP request for the `/wsman`
/// endpoint [MS-WSMV 2.1.1] (PowerShell remoting adds its `PSVersion`),
/// on any port, or a TLS session opened on WinRM's HTTPS port.
fn winrm_session(e: &Event) -> Option<&'static str> {
    if let Some(request) = super::inspect::http_request(&e.payload) {
        let path = request.path.to_ascii_lowercase();
        let endpoint = path.split(['?', '/']).nth(1) == Some("wsman");
        return match endpoint {
            true if path.contains("psversion=") => {
                Some("opened a PowerShell remoting (WinRM) session")
            }
            true => Some("opened a WS-Management (WinRM) session"),
            false => None,
        };
    }
    let tls = sensor_common::telemetry::is_client_hello(&e.payload);
    (tls && e.dport == WINRM_HTTPS_PORT).then_some("opened a WinRM session over HTTPS")
}

/// Netlogon authentications from one client to one server within
/// `REPEAT_WINDOW` that make an attempt at Zerologon.
const ZEROLOGON_ATTEMPTS: u32 = 20;

/// One SMB connection's shares, seen from its client: tree connects
/// awaiting their answer (message id, path) and the trees they opened.
#[derive(Default)]
struct Shares {
    pending: Vec<(u64, String)>,
    trees: Vec<(u32, String)>,
    last: Nanos,
}

/// Trees and pending connects one connection keeps at most.
const MAX_TREES: usize = 16;

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
    rpc: HashMap<Connection, Rpc>,
    /// SMB connections' shares, by connection.
    shares: HashMap<Connection, Shares>,
    /// Evidence given, per (client, server, detector, score): a stronger
    /// call of the same kind is reported again.
    exec_reported: HashSet<(IpAddr, IpAddr, &'static str, u8)>,
    /// Calls counted for `When::Repeated`: (client, server, detector) ->
    /// (start of the count, calls).
    repeated: HashMap<(IpAddr, IpAddr, &'static str), (Nanos, u32)>,
}

impl LateralDetector {
    /// New settings from a reload: they apply from the next event, and
    /// what was learnt so far stays.
    pub fn reconfigure(&mut self, config: LateralConfig) {
        self.config = config;
    }

    pub fn new(config: LateralConfig) -> LateralDetector {
        LateralDetector {
            config,
            reached: FanOut::default(),
            rpc: HashMap::new(),
            shares: HashMap::new(),
            exec_reported: HashSet::new(),
            repeated: HashMap::new(),
        }
    }

    /// `inside`: both ends are inside hosts.
    pub fn observe(&mut self, e: &Event, inside: bool, roles: &Roles, out: &mut Vec<Evidence>) {
        if !inside || e.protocol != PROTO_TCP {
            return;
        }
        match e.kind {
            Kind::Syn if self.config.admin_ports.contains(&e.dport) => self.fanout(e, out),
            Kind::Data => self.inspect(e, roles, out),
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

    fn inspect(&mut self, e: &Event, roles: &Roles, out: &mut Vec<Evidence>) {
        if let Some(what) = winrm_session(e) {
            self.report_once(
                e,
                Call {
                    detector: "lateral.winrm",
                    technique: "T1021.006",
                    score: 65,
                    what,
                    when: When::Always,
                },
                format!("{what} on {} (port {})", e.dst, e.dport),
                out,
            );
            return;
        }
        if e.sport == SMB_PORT || e.dport == SMB_PORT {
            self.smb(e, out);
        }
        if e.dport == super::ldap::LDAP_PORT {
            if let Some(class) = super::ldap_search::bulk_query(&e.payload) {
                let call = Call {
                    detector: "recon.directory",
                    technique: "T1087.002",
                    score: 60,
                    what: "searched the directory for every object of a class (LDAP)",
                    when: When::Always,
                };
                let summary = format!(
                    "searched the directory of {} for every {} (LDAP)",
                    e.dst,
                    super::text::printable(&class)
                );
                self.report_once(e, call, summary, out);
            }
        }
        let pdus = dcerpc::pdus(&e.payload);
        if pdus.is_empty() {
            return;
        }
        let activations = pdus.iter().any(|p| match p {
            dcerpc::Pdu::Bind { contexts } => contexts
                .iter()
                .any(|(_, uuid)| *uuid == dcerpc::REMOTE_ACTIVATION),
            _ => false,
        });
        if activations && roles.is_domain_controller(e.dst, e.ts) {
            // [MS-DCOM 3.1.2.5.2.3] IRemoteSCMActivator: a COM object created
            // on this server for the client, the first step of remote WMI
            // and of every DCOM object driven remotely (MMC20.Application,
            // ShellWindows...). Management servers do it everywhere, so it
            // is judged only towards domain controllers, and alerts.
            let call = Call {
                detector: "lateral.dcom",
                technique: "T1021.003",
                score: 60,
                what: "asked a domain controller to activate a COM object remotely (IRemoteSCMActivator)",
                when: When::ServerIsDc,
            };
            let summary = format!("{} on {} (port {})", call.what, e.dst, e.dport);
            self.report_once(e, call, summary, out);
        }
        let key = e.connection();
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
        let calls: Vec<dcerpc::Call> = pdus
            .iter()
            .filter_map(|p| rpc.association.client_pdu(p))
            .collect();
        for rpc_call in calls {
            let dcerpc::Call {
                interface, opnum, ..
            } = rpc_call;
            let Some(call) = remote_call(interface, opnum) else {
                continue;
            };
            if !self.applies(call, &rpc_call, e, roles) {
                continue;
            }
            let summary = format!(
                "{} on {} over DCE/RPC ({interface} opnum {opnum}, port {})",
                call.what, e.dst, e.dport
            );
            self.report_once(e, call, summary, out);
        }
    }

    /// Follows an SMB connection's trees; an executable written to an
    /// administrative share is evidence.
    fn smb(&mut self, e: &Event, out: &mut Vec<Evidence>) {
        // Logons are `SmbLogons`' to follow.
        let mut messages = smb::messages(&e.payload);
        messages.retain(|m| {
            !matches!(
                m,
                smb::Message::SessionSetup { .. } | smb::Message::LogonRefused { .. }
            )
        });
        if messages.is_empty() {
            return;
        }
        let key = e.connection();
        if !self.shares.contains_key(&key) {
            super::window::cap_oldest(&mut self.shares, super::limits::RPC_ASSOCIATIONS, |s| {
                s.last
            });
        }
        let shares = self.shares.entry(key).or_default();
        shares.last = e.ts;
        let mut found = Vec::new();
        for message in messages {
            match message {
                smb::Message::TreeConnect { message_id, path } => {
                    if shares.pending.len() < MAX_TREES {
                        shares.pending.push((message_id, path));
                    }
                }
                smb::Message::TreeConnected {
                    message_id,
                    tree_id,
                } => {
                    let Some(at) = shares.pending.iter().position(|(id, _)| *id == message_id)
                    else {
                        continue;
                    };
                    let (_, path) = shares.pending.swap_remove(at);
                    shares.trees.retain(|(id, _)| *id != tree_id);
                    if shares.trees.len() < MAX_TREES {
                        shares.trees.push((tree_id, path));
                    }
                }
                smb::Message::CreateForWrite { tree_id, name } => {
                    let share = shares.trees.iter().find(|(id, _)| *id == tree_id);
                    let Some((_, path)) = share else {
                        continue;
                    };
                    if smb::is_admin_share(path) && smb::is_executable(&name) {
                        let what = format!(
                            "wrote {} to {}",
                            super::text::printable(&name),
                            super::text::printable(path)
                        );
                        found.push((ADMIN_SHARE_WRITE, what));
                    } else if smb::is_ipc_share(path) && name.trim_start_matches('\\') == "atsvc" {
                        found.push((TASK_PIPE_OPENED, TASK_PIPE_OPENED.what.to_string()));
                    }
                }
                smb::Message::SessionSetup { .. } | smb::Message::LogonRefused { .. } => {}
            }
        }
        for (call, what) in found {
            self.report_once(e, call, format!("{what} on {} over SMB", e.dst), out);
        }
    }

    /// Evidence of `call` from `e.src` against `e.dst`, once per pair and
    /// score.
    fn report_once(&mut self, e: &Event, call: Call, summary: String, out: &mut Vec<Evidence>) {
        super::window::limit_reported(&mut self.exec_reported);
        if !self
            .exec_reported
            .insert((e.src, e.dst, call.detector, call.score))
        {
            return;
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
            summary,
        });
    }

    /// Whether a call is evidence (`When`).
    fn applies(&mut self, call: Call, rpc: &dcerpc::Call, e: &Event, roles: &Roles) -> bool {
        match call.when {
            When::Always => true,
            When::ClientIsNotDc => !roles.is_domain_controller(e.src, e.ts),
            When::ServerIsDc => roles.is_domain_controller(e.dst, e.ts),
            When::FirstArg(value) => rpc.first_arg == Some(value),
            When::Repeated(_) | When::Bulk { .. } => {
                let (wanted, asked) = match call.when {
                    When::Bulk { items, item_bytes } => (items, (rpc.stub_len / item_bytes).max(1)),
                    When::Repeated(n) => (n, 1),
                    _ => unreachable!("matched above"),
                };
                super::window::cap_oldest(
                    &mut self.repeated,
                    super::limits::RPC_ASSOCIATIONS,
                    |(start, _)| *start,
                );
                let (start, calls) = self
                    .repeated
                    .entry((e.src, e.dst, call.detector))
                    .or_insert((e.ts, 0));
                if e.ts.saturating_sub(*start) > REPEAT_WINDOW {
                    (*start, *calls) = (e.ts, 0);
                }
                *calls = calls.saturating_add(asked);
                *calls >= wanted
            }
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
        self.shares.retain(|_, s| s.last >= since);
        super::window::fit(&mut self.shares);
        self.repeated.retain(|_, (start, _)| *start >= since);
        super::window::fit(&mut self.repeated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{
        dcerpc::tests::{bind, request, request_with},
        roles::RolesConfig,
    };

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
        run_with(events, &Roles::new(RolesConfig::default()))
    }

    fn run_with(events: &[Event], roles: &Roles) -> Vec<Evidence> {
        let mut d = LateralDetector::new(LateralConfig::default());
        let mut out = Vec::new();
        for e in events {
            d.observe(e, true, roles, &mut out);
        }
        out
    }

    /// Roles with 10.0.0.9 configured as the domain controller.
    fn with_dc() -> Roles {
        Roles::new(RolesConfig {
            domain_controllers: vec!["10.0.0.9/32".parse().unwrap()],
            ..Default::default()
        })
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
        calls_with(interface, opnums, &Roles::new(RolesConfig::default()))
    }

    /// `calls` from 10.0.0.5 to 10.0.0.9, with these roles.
    fn calls_with(
        interface: Uuid,
        opnums: &[u16],
        roles: &Roles,
    ) -> Vec<(&'static str, &'static str, u8)> {
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
        run_with(&events, roles)
            .iter()
            .map(|e| (e.detector, e.technique, e.score))
            .collect()
    }

    #[test]
    fn replication_from_a_host_that_is_no_domain_controller_is_credential_theft() {
        // DCSync: DRSBind, then DRSGetNCChanges.
        let none = Roles::new(RolesConfig::default());
        assert_eq!(
            calls_with(dcerpc::DRSUAPI, &[0, 3], &none),
            vec![("credential.dcsync", "T1003.006", 85)]
        );
        // DCShadow: DRSAddEntry, DRSReplicaAdd (one piece of evidence).
        assert_eq!(
            calls_with(dcerpc::DRSUAPI, &[0, 17, 5], &none),
            vec![("credential.dcshadow", "T1207", 85)]
        );
        // Name translation (DRSCrackNames) is what members do.
        assert!(calls_with(dcerpc::DRSUAPI, &[0, 12], &none).is_empty());
        // A domain controller replicating is not evidence.
        let client_is_dc = Roles::new(RolesConfig {
            domain_controllers: vec!["10.0.0.5/32".parse().unwrap()],
            ..Default::default()
        });
        assert!(calls_with(dcerpc::DRSUAPI, &[0, 3, 5], &client_is_dc).is_empty());
    }

    #[test]
    fn netlogon_authentication_in_numbers_is_zerologon() {
        // A secure channel: one challenge, one authentication.
        assert!(calls(dcerpc::NETLOGON, &[4, 26]).is_empty());
        let attempts: Vec<u16> = (0..ZEROLOGON_ATTEMPTS).flat_map(|_| [4, 26]).collect();
        assert_eq!(
            calls(dcerpc::NETLOGON, &attempts[..attempts.len() - 2]),
            vec![]
        );
        assert_eq!(
            calls(dcerpc::NETLOGON, &attempts),
            vec![("credential.zerologon", "T1210", 85)]
        );
    }

    #[test]
    fn coercion_is_the_spooler_of_a_domain_controller_or_efsrpc() {
        // RpcOpenPrinter, RpcRemoteFindFirstPrinterChangeNotificationEx:
        // ordinary towards a print server, coercion towards a DC.
        assert!(calls(dcerpc::SPOOLSS, &[1, 65]).is_empty());
        assert_eq!(
            calls_with(dcerpc::SPOOLSS, &[1, 65], &with_dc()),
            vec![("credential.coercion", "T1187", 70)]
        );
        // EfsRpcOpenFileRaw on either endpoint's interface.
        for interface in [dcerpc::EFSRPC, dcerpc::EFSRPC_LSA] {
            assert_eq!(
                calls(interface, &[0]),
                vec![("credential.coercion", "T1187", 70)]
            );
        }
    }

    #[test]
    fn wmi_and_dcom_are_remote_execution_when_they_run_something() {
        assert_eq!(
            calls(dcerpc::WBEM_LOGIN, &[6]),
            vec![("lateral.wmi", "T1047", 65)]
        );
        // GetObject is a read; ExecMethod runs (Win32_Process.Create).
        assert!(calls(dcerpc::WBEM_SERVICES, &[6]).is_empty());
        assert_eq!(
            calls(dcerpc::WBEM_SERVICES, &[6, 24]),
            vec![("lateral.wmi", "T1047", 85)]
        );
        assert_eq!(
            calls(dcerpc::WBEM_SERVICES, &[14]),
            vec![("lateral.wmi", "T1546.003", 85)]
        );
        // IDispatch: GetTypeInfoCount alerts; Invoke runs.
        assert_eq!(
            calls(dcerpc::IDISPATCH, &[3]),
            vec![("lateral.dcom", "T1021.003", 65)]
        );
        assert_eq!(
            calls(dcerpc::IDISPATCH, &[6]),
            vec![("lateral.dcom", "T1021.003", 85)]
        );
    }

    #[test]
    fn programs_written_to_admin_shares_are_tool_transfer() {
        use crate::detect::smb::tests::{create, tree_connect, tree_connected};
        let to = |secs, payload| data(secs, "10.0.0.5", "10.0.0.9", 445, payload);
        let back = |secs, payload| {
            let mut e = data(secs, "10.0.0.9", "10.0.0.5", 445, payload);
            (e.sport, e.dport) = (445, 50000);
            e
        };
        let events = [
            to(1, tree_connect(3, "\\\\ws9\\C$")),
            back(1, tree_connected(3, 7)),
            to(2, tree_connect(4, "\\\\ws9\\share")),
            back(2, tree_connected(4, 8)),
            // A document to C$, a program to an ordinary share, a read: no.
            to(3, create(7, "Users\\x\\report.docx", 0x4000_0000, 5)),
            to(3, create(8, "tools\\setup.exe", 0x4000_0000, 5)),
            to(3, create(7, "Windows\\notepad.exe", 0x1, 1)),
            to(4, create(7, "Windows\\Temp\\mimikatz.exe", 0x4000_0000, 5)),
            to(5, create(7, "Windows\\Temp\\mimidrv.sys", 0x4000_0000, 5)),
        ];
        let out = run(&events);
        let found: Vec<(&str, &str, u8)> = out
            .iter()
            .map(|e| (e.detector, e.technique, e.score))
            .collect();
        assert_eq!(
            found,
            [("lateral.admin_share_write", "T1570", 80)],
            "{out:?}"
        );
        assert!(
            out[0]
                .summary
                .contains(r"wrote windows\\temp\\mimikatz.exe to \\\\ws9\\c$"),
            "{}",
            out[0].summary
        );
    }

    #[test]
    fn the_task_scheduler_s_pipe_opened_alerts() {
        use crate::detect::smb::tests::{create, tree_connect, tree_connected};
        let to = |secs, payload| data(secs, "10.0.0.5", "10.0.0.9", 445, payload);
        let mut back = data(1, "10.0.0.9", "10.0.0.5", 445, tree_connected(3, 7));
        (back.sport, back.dport) = (445, 50000);
        let events = [
            to(1, tree_connect(3, "\\\\dc1\\IPC$")),
            back,
            // Other pipes (the service manager, LSA) are not evidence alone.
            to(2, create(7, "svcctl", 0x0012_019f, 1)),
            to(2, create(7, "lsarpc", 0x0012_019f, 1)),
            to(3, create(7, "atsvc", 0x0012_019f, 1)),
        ];
        let out = run(&events);
        let found: Vec<_> = out.iter().map(|e| (e.detector, e.score)).collect();
        assert_eq!(found, [("lateral.scheduled_task", 65)], "{out:?}");
    }

    #[test]
    fn remote_com_activation_on_a_domain_controller_alerts() {
        let events = [data(
            1,
            "10.0.0.5",
            "10.0.0.9",
            135,
            bind(&[dcerpc::REMOTE_ACTIVATION], false),
        )];
        let out = run_with(&events, &with_dc());
        let found: Vec<_> = out
            .iter()
            .map(|e| (e.detector, e.technique, e.score))
            .collect();
        assert_eq!(found, [("lateral.dcom", "T1021.003", 60)], "{out:?}");
        // Towards any other host: what management servers do all day.
        assert!(run(&events).is_empty());
    }

    #[test]
    fn one_lookup_of_many_sids_is_bulk() {
        // lookupsid asks for its RIDs a thousand at a time: one call whose
        // arguments hold 20 domain SIDs or more is a listing.
        let lookup = |sids: usize| {
            vec![
                data(
                    1,
                    "10.0.0.5",
                    "10.0.0.9",
                    445,
                    bind(&[dcerpc::LSARPC], false),
                ),
                data(
                    2,
                    "10.0.0.5",
                    "10.0.0.9",
                    445,
                    request(0, 15, 40 + sids * SID_BYTES as usize),
                ),
            ]
        };
        assert!(run(&lookup(SID_LOOKUPS as usize - 2)).is_empty());
        let out = run(&lookup(SID_LOOKUPS as usize));
        let found: Vec<_> = out.iter().map(|e| e.detector).collect();
        assert_eq!(found, ["recon.sid_lookup"], "{out:?}");
    }

    #[test]
    fn searches_for_every_user_alert_once() {
        use crate::detect::{der::tests::der, ldap::tests::message};
        let search = |filter: &[u8]| {
            let filter = der(
                0xa3,
                &[der(0x04, b"objectClass"), der(0x04, filter)].concat(),
            );
            let op = [
                der(0x04, b"DC=city,DC=lab"),
                der(0x0a, &[2]),
                der(0x0a, &[0]),
                der(0x02, &[0]),
                der(0x02, &[0]),
                der(0x01, &[0]),
                filter,
                der(0x30, b""),
            ]
            .concat();
            message(2, der(0x63, &op))
        };
        let events = [
            data(1, "10.0.0.5", "10.0.0.9", 389, search(b"user")),
            data(2, "10.0.0.5", "10.0.0.9", 389, search(b"group")),
            data(3, "10.0.0.6", "10.0.0.9", 389, search(b"dnsNode")),
        ];
        let out = run(&events);
        let found: Vec<_> = out.iter().map(|e| (e.detector, e.score)).collect();
        assert_eq!(found, [("recon.directory", 60)], "{out:?}");
        assert!(
            out[0].summary.contains("for every user"),
            "{}",
            out[0].summary
        );
    }

    #[test]
    fn winrm_sessions_alert_once_per_pair() {
        let ps = b"POST /wsman?PSVersion=5.1.18362.752 HTTP/1.1\r\nHost: ws2:5985\r\n\r\n".to_vec();
        let plain = b"POST /wsman HTTP/1.1\r\nHost: srv\r\n\r\n".to_vec();
        let other = b"POST /wsmanager HTTP/1.1\r\nHost: srv\r\n\r\n".to_vec();
        let events = [
            data(1, "10.0.0.5", "10.0.0.9", 5985, ps.clone()),
            data(2, "10.0.0.5", "10.0.0.9", 5985, ps),
            data(3, "10.0.0.6", "10.0.0.9", 80, plain),
            data(4, "10.0.0.7", "10.0.0.9", 5985, other),
            data(
                5,
                "10.0.0.8",
                "10.0.0.9",
                5986,
                vec![0x16, 3, 1, 0, 0x80, 1, 0, 0, 0x7c],
            ),
            data(
                6,
                "10.0.0.8",
                "10.0.0.9",
                443,
                vec![0x16, 3, 1, 0, 0x80, 1, 0, 0, 0x7c],
            ),
        ];
        let found: Vec<(IpAddr, &str, u8, String)> = run(&events)
            .into_iter()
            .map(|e| (e.host, e.detector, e.score, e.summary))
            .collect();
        let host = |h: &str| h.parse::<IpAddr>().unwrap();
        assert_eq!(
            found,
            [
                (
                    host("10.0.0.5"),
                    "lateral.winrm",
                    65,
                    "opened a PowerShell remoting (WinRM) session on 10.0.0.9 (port 5985)"
                        .to_string()
                ),
                (
                    host("10.0.0.6"),
                    "lateral.winrm",
                    65,
                    "opened a WS-Management (WinRM) session on 10.0.0.9 (port 80)".to_string()
                ),
                (
                    host("10.0.0.8"),
                    "lateral.winrm",
                    65,
                    "opened a WinRM session over HTTPS on 10.0.0.9 (port 5986)".to_string()
                ),
            ]
        );
    }

    #[test]
    fn an_association_picked_up_at_an_alter_context_is_followed() {
        // The bind was before the capture (or the restart); the client's
        // alter-context names the interface.
        let mut alter = bind(&[dcerpc::DRSUAPI], false);
        alter[2] = 14;
        let events = [
            data(1, "10.0.0.5", "10.0.0.9", 49667, alter),
            data(2, "10.0.0.5", "10.0.0.9", 49667, request(0, 5, 64)),
        ];
        let found: Vec<&str> = run(&events).iter().map(|e| e.detector).collect();
        assert_eq!(found, ["credential.dcshadow"]);
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
        // LsarLookupSids in numbers (lookupsid); a few are a dialog's.
        let few: Vec<u16> = vec![76; SID_LOOKUPS as usize - 1];
        assert!(calls(dcerpc::LSARPC, &few).is_empty());
        assert_eq!(
            calls(dcerpc::LSARPC, &[few, vec![15]].concat()),
            vec![("recon.sid_lookup", "T1087.002", 60)]
        );
        // OpenUsers, BaseRegEnumKey: PsLoggedOn's way.
        assert_eq!(
            calls(dcerpc::WINREG, &[4, 9]),
            vec![("recon.logged_on_users", "T1033", 60)]
        );
        // SAMR: the accounts' details one by one (samrdump), a group's
        // members.
        let opened: Vec<u16> = [34, 47].repeat(ACCOUNTS_OPENED as usize);
        assert_eq!(
            calls(dcerpc::SAMR, &[[64, 7, 13].to_vec(), opened].concat()),
            vec![("recon.accounts", "T1087.002", 60)]
        );
        assert_eq!(
            calls(dcerpc::SAMR, &[64, 7, 25]),
            vec![("recon.groups", "T1069", 60)]
        );
        // The endpoint mapper's whole list (rpcdump); one interface's
        // endpoint (ept_map) is what every client asks.
        let lookup = |inquiry: u32| {
            let mut stub = inquiry.to_le_bytes().to_vec();
            stub.resize(64, 0);
            vec![
                data(
                    1,
                    "10.0.0.5",
                    "10.0.0.9",
                    135,
                    bind(&[dcerpc::EPMAPPER], false),
                ),
                data(2, "10.0.0.5", "10.0.0.9", 135, request_with(0, 2, &stub)),
            ]
        };
        let found: Vec<_> = run(&lookup(EPT_ALL_ELEMENTS))
            .iter()
            .map(|e| e.detector)
            .collect();
        assert_eq!(found, ["recon.rpc_endpoints"]);
        // By interface (rpc_c_ep_match_by_if), as Outlook asks: no.
        assert!(run(&lookup(1)).is_empty());
        assert!(calls(dcerpc::EPMAPPER, &[3]).is_empty());
        // Listing a server's shares (NetrShareEnum, what Explorer does when
        // a user opens \\server) is not; nor a SAMR listing alone, which
        // ordinary domain members make too (docs/detection.md), nor one
        // account opened.
        assert!(calls(dcerpc::SRVSVC, &[15]).is_empty());
        assert!(calls(dcerpc::SAMR, &[7, 13, 34, 36]).is_empty());
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
