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
    },
    /// Many ranges at once (a threat feed): all or none.
    BlockMany {
        cidrs: Vec<IpNet>,
        ttl_secs: Option<u64>,
        reason: Option<String>,
    },
    Unblock {
        cidr: IpNet,
    },
    List,
    Stats,
    Incidents {
        #[serde(default)]
        filter: crate::detection::IncidentFilter,
    },
    Incident {
        id: u64,
    },
    /// Re-reads the threat-intelligence list files.
    ReloadIntel,
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
            Request::List => "list",
            Request::Stats => "stats",
            Request::Incidents { .. } => "incidents",
            Request::Incident { .. } => "incident",
            Request::ReloadIntel => "reload_intel",
        }
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

/// Binds the control socket: refuses if a live daemon already owns it,
/// replaces a stale one, and restricts it to root (mode 0600; the server also
/// checks the peer's uid).
pub fn bind(socket: &Path) -> Result<tokio::net::UnixListener> {
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
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
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
