//! The control API: one JSON request per connection on a Unix socket that only
//! root can open, one JSON response back. `sensorctl` is its client.

use std::{
    io::{BufRead, BufReader, Write},
    net::IpAddr,
    os::unix::{fs::PermissionsExt, net::UnixStream as StdUnixStream},
    path::Path,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request, as `{"command": "isolate", "ip": "10.0.0.5", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    Isolate {
        ip: IpAddr,
        ttl_secs: Option<u64>,
        reason: Option<String>,
        /// In fleet mode: where it applies (default: the site).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<crate::fleet::Scope>,
    },
    Release {
        ip: IpAddr,
        /// Also mark the host's open incidents as false positives.
        #[serde(default)]
        false_positive: bool,
    },
    Block {
        cidr: IpNet,
        ttl_secs: Option<u64>,
        reason: Option<String>,
        /// In fleet mode: where it applies (default: the fleet, where this
        /// gateway may publish there).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<crate::fleet::Scope>,
    },
    /// Many ranges at once (a threat feed): all or none.
    BlockMany {
        cidrs: Vec<IpNet>,
        ttl_secs: Option<u64>,
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<crate::fleet::Scope>,
    },
    Unblock {
        cidr: IpNet,
    },
    List {
        #[serde(default)]
        filter: ListFilter,
    },
    Stats,
    Incidents {
        #[serde(default)]
        filter: crate::store::IncidentFilter,
    },
    Incident {
        id: u64,
    },
    /// An operator's step in an incident's triage.
    Triage {
        id: u64,
        step: TriageStep,
        /// Why (closing), or what was found: kept in the timeline.
        note: Option<String>,
    },
    /// A note on an incident's timeline.
    Note {
        id: u64,
        text: String,
    },
    /// The false-positive marks.
    FalsePositives,
    /// Removes a host's marks (only one detector's, if given).
    UndoFalsePositive {
        host: IpAddr,
        detector: Option<String>,
    },
    /// The audit log: records since `since_secs` (Unix seconds), at most
    /// `limit`, the newest.
    Audit {
        since_secs: Option<u64>,
        limit: Option<usize>,
    },
    /// Re-reads the threat-intelligence list files.
    ReloadIntel,
    /// The feeds: source, entries in force, last refresh, errors.
    Feeds,
    /// Makes a feed (or every feed) due for a refresh now.
    FeedRefresh {
        name: Option<String>,
    },
    /// Takes a feed's entries out at once; it stays out until resumed.
    FeedRetire {
        name: String,
    },
    FeedResume {
        name: String,
    },
    /// Re-reads the configuration file: detection settings, allowlists,
    /// intel lists, response rules and retention take effect at once.
    Reload,
    /// Fleet mode: every decision in force in the fleet.
    FleetList,
    /// Fleet mode: every gateway's last status.
    FleetStatus,
    /// Fleet mode: the latest document of each incident of the fleet (of
    /// one site), newest first.
    FleetIncidents {
        site: Option<String>,
        limit: Option<usize>,
    },
}

/// What `list` shows: entries of this kind, made by this origin (`auto:*`
/// for every detector), whose reason holds this text (any case).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListFilter {
    pub kind: Option<crate::state::Kind>,
    pub origin: Option<String>,
    pub reason: Option<String>,
    /// Instead of the records: this feed's ranges.
    pub feed: Option<String>,
}

impl ListFilter {
    pub fn matches(&self, entry: &crate::state::Entry) -> bool {
        let origin = self
            .origin
            .as_deref()
            .is_none_or(|o| match o.strip_suffix('*') {
                Some(prefix) => entry.origin.starts_with(prefix),
                None => entry.origin == o,
            });
        let reason = self
            .reason
            .as_deref()
            .is_none_or(|r| entry.reason.to_lowercase().contains(&r.to_lowercase()));
        origin && reason && self.kind.is_none_or(|k| k == entry.kind)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriageStep {
    Acknowledge,
    Close,
    Reopen,
}

impl TriageStep {
    pub fn label(self) -> &'static str {
        match self {
            TriageStep::Acknowledge => "acknowledge",
            TriageStep::Close => "close",
            TriageStep::Reopen => "reopen",
        }
    }
}

impl Request {
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Isolate { .. } => "isolate",
            Request::Release { .. } => "release",
            Request::Block { .. } => "block",
            Request::BlockMany { .. } => "block_many",
            Request::Unblock { .. } => "unblock",
            Request::List { .. } => "list",
            Request::Stats => "stats",
            Request::Incidents { .. } => "incidents",
            Request::Incident { .. } => "incident",
            Request::Triage { step, .. } => step.label(),
            Request::Note { .. } => "note",
            Request::FalsePositives => "false_positives",
            Request::UndoFalsePositive { .. } => "undo_false_positive",
            Request::Audit { .. } => "audit",
            Request::ReloadIntel => "reload_intel",
            Request::Reload => "reload",
            Request::Feeds => "feeds",
            Request::FeedRefresh { .. } => "feed_refresh",
            Request::FeedRetire { .. } => "feed_retire",
            Request::FeedResume { .. } => "feed_resume",
            Request::FleetList => "fleet_list",
            Request::FleetStatus => "fleet_status",
            Request::FleetIncidents { .. } => "fleet_incidents",
        }
    }

    /// What the audit log says the request was about: (target, detail).
    pub fn audit_subject(&self) -> (String, String) {
        let ttl = |t: &Option<u64>| match t {
            Some(secs) => format!(
                "for {}",
                humantime::format_duration(Duration::from_secs(*secs))
            ),
            None => "permanent".into(),
        };
        let why = |r: &Option<String>| r.clone().unwrap_or_else(|| "no reason given".into());
        let timed = |t: &Option<u64>, r: &Option<String>| format!("{}, {}", ttl(t), why(r));
        let incident = |id: &u64| format!("incident {id}");
        let scoped = |detail: String, scope: &Option<crate::fleet::Scope>| match scope {
            Some(scope) => format!("{detail}, scope {}", scope.label()),
            None => detail,
        };
        match self {
            Request::Isolate {
                ip,
                ttl_secs,
                reason,
                scope,
            } => (ip.to_string(), scoped(timed(ttl_secs, reason), scope)),
            Request::Release { ip, false_positive } => (
                ip.to_string(),
                if *false_positive {
                    "as a false positive".into()
                } else {
                    String::new()
                },
            ),
            Request::Block {
                cidr,
                ttl_secs,
                reason,
                scope,
            } => (cidr.to_string(), scoped(timed(ttl_secs, reason), scope)),
            Request::BlockMany {
                cidrs,
                ttl_secs,
                reason,
                scope,
            } => (
                format!("{} ranges", cidrs.len()),
                scoped(timed(ttl_secs, reason), scope),
            ),
            Request::Unblock { cidr } => (cidr.to_string(), String::new()),
            Request::Triage { id, note, .. } => (incident(id), note.clone().unwrap_or_default()),
            Request::Note { id, text } => (incident(id), text.clone()),
            Request::UndoFalsePositive { host, detector } => (
                host.to_string(),
                detector.clone().unwrap_or_else(|| "every detector".into()),
            ),
            Request::ReloadIntel => ("intel lists".into(), String::new()),
            Request::Reload => ("configuration".into(), String::new()),
            Request::FeedRefresh { name } => (
                name.clone().unwrap_or_else(|| "every feed".into()),
                String::new(),
            ),
            Request::FeedRetire { name } | Request::FeedResume { name } => {
                (format!("feed {name}"), String::new())
            }
            // Requests that only read (`is_read_only`) are not audited.
            _ => (String::new(), String::new()),
        }
    }

    /// Whether the request only reads: all the read-only socket serves.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Request::Status
                | Request::List { .. }
                | Request::Stats
                | Request::Incidents { .. }
                | Request::Incident { .. }
                | Request::FalsePositives
                | Request::Audit { .. }
                | Request::Feeds
                | Request::FleetList
                | Request::FleetStatus
                | Request::FleetIncidents { .. }
        )
    }
}

/// Who is on the other end of a control connection, as the audit log
/// names them: "alice (uid 1000)".
pub fn actor(uid: u32) -> String {
    // SAFETY: getpwuid_r writes into the buffers given, sized as passed.
    let name = unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found);
        (rc == 0 && !found.is_null()).then(|| {
            std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned()
        })
    };
    match name {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// `{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(result: Value) -> Response {
        Response {
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            result: None,
            error: Some(message.into()),
        }
    }
}

/// Requests larger than this are refused: room for a `block_many` chunk
/// (`BLOCK_CHUNK` ranges), bounded so a runaway client cannot exhaust memory.
const MAX_REQUEST_BYTES: u64 = 16 * 1024 * 1024;
/// Ranges per `block_many` request sent by `sensorctl block --file`.
pub const BLOCK_CHUNK: usize = 100_000;

/// sensord could not be reached: `sensorctl` exits 3 for it, whatever
/// context the command adds.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    #[error("sensord is not running (no control socket at {0})")]
    NotRunning(String),
    #[error("permission denied on {0}: the control socket is for root only")]
    PermissionDenied(String),
    #[error("cannot connect to {0}: {1}")]
    Other(String, std::io::Error),
}

/// Sends one request and waits for its response.
pub fn call(socket: &Path, request: &Request) -> Result<Value> {
    let at = socket.display().to_string();
    let mut stream = StdUnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            Unreachable::NotRunning(at)
        }
        std::io::ErrorKind::PermissionDenied => Unreachable::PermissionDenied(at),
        _ => Unreachable::Other(at, e),
    })?;
    // A large `block_many` chunk takes seconds to apply; nothing else does.
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line).context("sending the request")?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .context("reading sensord's reply")?;
    if reply.is_empty() {
        bail!("sensord closed the connection without a reply");
    }
    let response: Response =
        serde_json::from_str(&reply).context("sensord's reply is not valid JSON")?;
    match (response.ok, response.result, response.error) {
        (true, Some(result), _) => Ok(result),
        (true, None, _) => Ok(Value::Null),
        (false, _, error) => bail!("{}", error.unwrap_or_else(|| "request failed".into())),
    }
}

/// Who may open a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Root only: mode 0600 (the server also checks the peer's uid).
    Root,
    /// Root and this group: mode 0660, owned by root and the group. The
    /// read-only socket, whose server takes only requests that read.
    Group(u32),
}

/// Binds a control socket: refuses if a live daemon already owns it,
/// replaces a stale one, and sets who may open it.
pub fn bind(socket: &Path, access: Access) -> Result<tokio::net::UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if socket.exists() {
        if StdUnixStream::connect(socket).is_ok() {
            bail!(
                "another sensord is already listening on {}",
                socket.display()
            );
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("removing stale socket {}", socket.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(socket)
        .with_context(|| format!("binding {}", socket.display()))?;
    let mode = match access {
        Access::Root => 0o600,
        Access::Group(gid) => {
            // Without CAP_CHOWN, root may still give a file it owns to a
            // group it is a member of (the unit's SupplementaryGroups=).
            std::os::unix::fs::chown(socket, None, Some(gid)).with_context(|| {
                format!(
                    "giving {} to group {gid} (sensord must be a member of it, \
                     SupplementaryGroups= in its unit, or hold CAP_CHOWN)",
                    socket.display()
                )
            })?;
            0o660
        }
    };
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// The id of the group called `name`.
pub fn group_id(name: &str) -> std::result::Result<u32, String> {
    let c_name =
        std::ffi::CString::new(name).map_err(|_| format!("{name:?} is not a group name"))?;
    // SAFETY: getgrnam_r writes into the buffers given, sized as passed.
    let gid = unsafe {
        let mut group: libc::group = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16384];
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            c_name.as_ptr(),
            &mut group,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        (rc == 0 && !found.is_null()).then_some(group.gr_gid)
    };
    gid.ok_or_else(|| {
        format!("there is no group {name:?} on this machine (groupadd --system {name})")
    })
}

/// Reads one request line from a connection.
pub async fn read_request(
    stream: &mut tokio::net::UnixStream,
) -> std::result::Result<Request, String> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(stream).take(MAX_REQUEST_BYTES);
    reader
        .read_line(&mut line)
        .await
        .map_err(|e| format!("reading the request: {e}"))?;
    serde_json::from_str(&line).map_err(|e| format!("invalid request: {e}"))
}

pub async fn write_response(stream: &mut tokio::net::UnixStream, response: &Response) {
    use tokio::io::AsyncWriteExt;
    let mut line = serde_json::to_vec(response).expect("a response serialises");
    line.push(b'\n');
    let _ = stream.write_all(&line).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format_is_stable() {
        let r = Request::Isolate {
            ip: "10.0.0.5".parse().unwrap(),
            ttl_secs: Some(60),
            reason: Some("beacon".into()),
            scope: None,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"command":"isolate","ip":"10.0.0.5","ttl_secs":60,"reason":"beacon"}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), r);
        let block: Request =
            serde_json::from_str(r#"{"command":"block","cidr":"203.0.113.0/24"}"#).unwrap();
        assert_eq!(block.name(), "block");
    }

    #[test]
    fn bad_requests_are_refused() {
        assert!(
            serde_json::from_str::<Request>(r#"{"command":"isolate","ip":"10.0.0.300"}"#).is_err()
        );
        assert!(serde_json::from_str::<Request>(r#"{"command":"reboot"}"#).is_err());
    }

    #[test]
    fn no_daemon_gives_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = call(&dir.path().join("none.sock"), &Request::Status).unwrap_err();
        assert!(e.to_string().contains("sensord is not running"), "{e}");
    }
}
