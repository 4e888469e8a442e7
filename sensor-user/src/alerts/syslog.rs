//! Syslog: each alert as one RFC 5424 message whose MSG is the alert
//! document, over UDP (RFC 5426: one datagram each), TCP (RFC 6587,
//! octet-counted frames) or TLS (RFC 5425, the same framing).

use std::{
    io::Write,
    net::{TcpStream, ToSocketAddrs, UdpSocket},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use serde::Deserialize;
use serde_json::Value;

use super::outlet::{SendError, Sink};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    #[default]
    Tls,
}

/// `[alerts.syslog]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// host:port of the collector (6514 is syslog over TLS's port).
    pub address: String,
    /// udp, tcp or tls (default).
    #[serde(default)]
    pub transport: Transport,
    /// PEM certificates that may sign the collector's certificate (TLS);
    /// default: the public web roots.
    pub ca_file: Option<PathBuf>,
    /// The name the collector's certificate must carry; default: the
    /// host part of `address`.
    pub server_name: Option<String>,
    /// The syslog facility: kern, user, ..., local0 to local7 (default
    /// local0).
    #[serde(default = "default_facility")]
    pub facility: String,
}

fn default_facility() -> String {
    "local0".into()
}

const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

impl SyslogConfig {
    /// Checks what can be checked without the network: the facility, the
    /// address's form, the CA file.
    pub fn validate(&self) -> Result<(), String> {
        self.facility_code()?;
        if self
            .address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(format!("address {:?} is not host:port", self.address));
        }
        if self.transport == Transport::Tls {
            self.tls_config()?;
        }
        Ok(())
    }

    fn facility_code(&self) -> Result<u8, String> {
        FACILITIES
            .iter()
            .position(|f| *f == self.facility)
            .map(|p| p as u8)
            .ok_or_else(|| {
                format!(
                    "facility {:?} is none of {}",
                    self.facility,
                    FACILITIES.join(", ")
                )
            })
    }

    fn host(&self) -> &str {
        let host = self
            .address
            .rsplit_once(':')
            .map_or(&*self.address, |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("ca_file {} holds no certificate", path.display()));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// RFC 5424 severity for an incident's severity.
fn severity(doc: &Value) -> u8 {
    match doc["sensor"]["incident"]["severity"].as_str() {
        Some("high") => 2,   // critical
        Some("medium") => 4, // warning
        _ => 5,              // notice
    }
}

/// The RFC 5424 message for an alert document:
/// `<PRI>1 TIMESTAMP HOSTNAME sensord PROCID MSGID - MSG`, MSGID the
/// event's action, MSG the document.
pub fn message(facility: u8, alert: &[u8]) -> Vec<u8> {
    let doc: Value = serde_json::from_slice(alert).unwrap_or_default();
    let field = |v: &Value, default: &str| -> String {
        // Header fields are printable US-ASCII without spaces (RFC 5424 6).
        let text = v.as_str().unwrap_or(default);
        let clean: String = text
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(48)
            .collect();
        if clean.is_empty() {
            "-".into()
        } else {
            clean
        }
    };
    let head = format!(
        "<{}>1 {} {} sensord {} {} - ",
        facility * 8 + severity(&doc),
        field(&doc["@timestamp"], "-"),
        field(&doc["observer"]["hostname"], "-"),
        std::process::id(),
        field(&doc["event"]["action"], "-"),
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(alert);
    out
}

enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

pub struct Syslog {
    config: SyslogConfig,
    facility: u8,
    tls: Option<Arc<rustls::ClientConfig>>,
    connection: Option<Connection>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Syslog {
    pub fn new(config: SyslogConfig) -> Result<Syslog, String> {
        config.validate()?;
        let tls = match config.transport {
            Transport::Tls => Some(config.tls_config()?),
            _ => None,
        };
        Ok(Syslog {
            facility: config.facility_code()?,
            config,
            tls,
            connection: None,
        })
    }

    fn connect(&self) -> Result<Connection, String> {
        let address = self
            .config
            .address
            .to_socket_addrs()
            .map_err(|e| format!("resolving: {e}"))?
            .next()
            .ok_or("the address resolves to nothing")?;
        if self.config.transport == Transport::Udp {
            let local = if address.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let socket = UdpSocket::bind(local).map_err(|e| e.to_string())?;
            socket.connect(address).map_err(|e| e.to_string())?;
            return Ok(Connection::Udp(socket));
        }
        let stream =
            TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(CONNECT_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let Some(tls) = &self.tls else {
            return Ok(Connection::Tcp(stream));
        };
        let name = self
            .config
            .server_name
            .as_deref()
            .unwrap_or(self.config.host());
        let name = rustls::pki_types::ServerName::try_from(name.to_string())
            .map_err(|e| format!("server name {name:?}: {e}"))?;
        let client = rustls::ClientConnection::new(tls.clone(), name).map_err(|e| e.to_string())?;
        let mut tls_stream = rustls::StreamOwned::new(client, stream);
        // Finish the handshake now, so a certificate problem shows here.
        while tls_stream.conn.is_handshaking() {
            tls_stream
                .conn
                .complete_io(&mut tls_stream.sock)
                .map_err(|e| format!("TLS: {e}"))?;
        }
        Ok(Connection::Tls(Box::new(tls_stream)))
    }
}

impl Sink for Syslog {
    fn send(&mut self, alert: &[u8]) -> Result<(), SendError> {
        let message = message(self.facility, alert);
        if self.connection.is_none() {
            self.connection = Some(self.connect().map_err(SendError::Retry)?);
        }
        let framed = |m: &[u8]| {
            let mut f = format!("{} ", m.len()).into_bytes();
            f.extend_from_slice(m);
            f
        };
        let sent = match self.connection.as_mut().expect("connected above") {
            Connection::Udp(s) => s.send(&message).map(|_| ()),
            Connection::Tcp(s) => s.write_all(&framed(&message)).and_then(|_| s.flush()),
            Connection::Tls(s) => s.write_all(&framed(&message)).and_then(|_| s.flush()),
        };
        sent.map_err(|e| {
            // Reconnect at the next try.
            self.connection = None;
            SendError::Retry(e.to_string())
        })
    }

    fn describe(&self) -> String {
        let transport = match self.config.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        };
        format!("syslog {transport}://{}", self.config.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_rfc_5424() {
        let doc = serde_json::json!({
            "@timestamp": "2026-11-30T10:00:00.123456Z",
            "observer": {"hostname": "gw1"},
            "event": {"action": "incident-opened"},
            "sensor": {"incident": {"severity": "high"}},
        });
        let bytes = serde_json::to_vec(&doc).unwrap();
        let m = String::from_utf8(message(16, &bytes)).unwrap();
        let head = format!(
            "<130>1 2026-11-30T10:00:00.123456Z gw1 sensord {} incident-opened - {{",
            std::process::id()
        );
        assert!(m.starts_with(&head), "{m}");
        assert!(m.ends_with('}'));
    }

    #[test]
    fn settings_are_checked() {
        let config = |facility: &str, address: &str| SyslogConfig {
            address: address.into(),
            transport: Transport::Tcp,
            ca_file: None,
            server_name: None,
            facility: facility.into(),
        };
        assert!(config("local0", "siem:6514").validate().is_ok());
        assert!(config("local9", "siem:6514").validate().is_err());
        assert!(config("local0", "siem").validate().is_err());
        let tls = SyslogConfig {
            transport: Transport::Tls,
            ca_file: Some("/nonexistent.pem".into()),
            ..config("local0", "siem:6514")
        };
        assert!(tls.validate().unwrap_err().contains("ca_file"));
    }
}
