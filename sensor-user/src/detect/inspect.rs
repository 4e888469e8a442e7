//! Deep inspection of a conversation's opening, for names: the server name
//! a TLS client asks for (SNI, RFC 6066) and an HTTP request's Host and
//! User-Agent. Bounded parsers of untrusted bytes: every length is checked,
//! nothing allocates more than the sample holds.

use sensor_common::telemetry::is_client_hello;

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

fn http_method(p: &[u8]) -> Option<&'static [u8]> {
    METHODS.iter().copied().find(|m| p.starts_with(m))
}

/// A big-endian u16 at `at`.
fn u16_at(p: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]) as usize)
}

/// The host name of a ClientHello's server_name extension, lower-cased.
/// `None` when the sample is not a ClientHello, holds no SNI, or is cut
/// before it.
pub fn tls_server_name(p: &[u8]) -> Option<String> {
    if !is_client_hello(p) {
        return None;
    }
    // Record header (5), handshake type (1) and length (3), version (2),
    // random (32), then the session id.
    let mut at = 5 + 4 + 2 + 32;
    at += 1 + *p.get(at)? as usize;
    at += 2 + u16_at(p, at)?; // cipher suites
    at += 1 + *p.get(at)? as usize; // compression methods
    let extensions_end = (at + 2 + u16_at(p, at)?).min(p.len());
    at += 2;
    while at + 4 <= extensions_end {
        let kind = u16_at(p, at)?;
        let len = u16_at(p, at + 2)?;
        let body = p.get(at + 4..at + 4 + len)?;
        if kind == 0 {
            // server_name_list: length (2), then entries of type (1),
            // length (2), name; type 0 is a host name.
            let mut e = 2;
            while e + 3 <= body.len() {
                let name_len = u16_at(body, e + 1)?;
                let name = body.get(e + 3..e + 3 + name_len)?;
                if body[e] == 0 {
                    return host_name(name);
                }
                e += 3 + name_len;
            }
            return None;
        }
        at += 4 + len;
    }
    None
}

/// A DNS-style host name, or nothing if the bytes are not one.
fn host_name(bytes: &[u8]) -> Option<String> {
    let ok = !bytes.is_empty()
        && bytes.len() <= 253
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    ok.then(|| {
        String::from_utf8_lossy(bytes)
            .trim_end_matches('.')
            .to_ascii_lowercase()
    })
}

/// What an HTTP request's opening says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// The Host header without its port, lower-cased.
    pub host: Option<String>,
    pub user_agent: Option<String>,
}

/// Longest header value kept (user agents run long; tools' are short).
const MAX_VALUE: usize = 256;

/// Parses the request line and the Host and User-Agent headers of an HTTP
/// request's first bytes. Headers past the end of the sample are missing.
pub fn http_request(p: &[u8]) -> Option<HttpRequest> {
    let method = http_method(p)?;
    // Escaped before anything is taken from it (`text::printable`); CR and
    // LF, which split the lines, are the only controls read as such.
    let text = String::from_utf8_lossy(p)
        .split("\r\n")
        .map(super::text::printable)
        .collect::<Vec<_>>()
        .join("\r\n");
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    let path = request_line[method.len()..]
        .split(' ')
        .next()
        .unwrap_or("")
        .chars()
        .take(MAX_VALUE)
        .collect();
    let mut request = HttpRequest {
        method: String::from_utf8_lossy(&method[..method.len() - 1]).into_owned(),
        path,
        host: None,
        user_agent: None,
    };
    for line in lines.take(64) {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value: String = value.trim().chars().take(MAX_VALUE).collect();
        if name.eq_ignore_ascii_case("host") {
            // Drop a port, but not an IPv6 literal's colons.
            let bare = match value.rsplit_once(':') {
                Some((h, port))
                    if port.parse::<u16>().is_ok() && (h.ends_with(']') || !h.contains(':')) =>
                {
                    h
                }
                _ => &value,
            };
            request.host = Some(bare.trim_end_matches('.').to_ascii_lowercase());
        } else if name.eq_ignore_ascii_case("user-agent") {
            request.user_agent = Some(value);
        }
    }
    Some(request)
}

/// The name a conversation's opening gives its server, if any.
pub fn server_name(payload: &[u8]) -> Option<String> {
    tls_server_name(payload).or_else(|| http_request(payload).and_then(|r| r.host))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A ClientHello as OpenSSL writes it, with `extensions` after a
    /// session id, two cipher suites and null compression.
    pub fn client_hello(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut ext = Vec::new();
        for (kind, body) in extensions {
            ext.extend_from_slice(&kind.to_be_bytes());
            ext.extend_from_slice(&(body.len() as u16).to_be_bytes());
            ext.extend_from_slice(body);
        }
        let mut hello = vec![0x03, 0x03];
        hello.extend_from_slice(&[7u8; 32]);
        hello.push(32);
        hello.extend_from_slice(&[9u8; 32]);
        hello.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
        hello.extend_from_slice(&[1, 0]);
        hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        hello.extend_from_slice(&ext);
        let mut handshake = vec![1, 0, (hello.len() >> 8) as u8, hello.len() as u8];
        handshake.extend_from_slice(&hello);
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    pub fn sni(name: &str) -> (u16, Vec<u8>) {
        let mut body = ((name.len() + 3) as u16).to_be_bytes().to_vec();
        body.push(0);
        body.extend_from_slice(&(name.len() as u16).to_be_bytes());
        body.extend_from_slice(name.as_bytes());
        (0, body)
    }

    #[test]
    fn sni_is_found_after_other_extensions() {
        let hello = client_hello(&[
            (11, vec![1, 0]),
            (10, vec![0, 2, 0, 29]),
            sni("C2.Example.org"),
        ]);
        assert!(sensor_common::telemetry::is_opening(&hello));
        assert_eq!(tls_server_name(&hello).as_deref(), Some("c2.example.org"));
        assert_eq!(server_name(&hello).as_deref(), Some("c2.example.org"));
    }

    #[test]
    fn cut_or_malformed_hellos_give_nothing() {
        let hello = client_hello(&[(10, vec![0; 40]), sni("late.example")]);
        for n in 0..hello.len() - 1 {
            assert_eq!(tls_server_name(&hello[..n]), None, "cut at {n}");
        }
        assert_eq!(
            tls_server_name(&client_hello(&[(10, vec![0, 2, 0, 29])])),
            None
        );
        let mut bad = client_hello(&[sni("x.example")]);
        let last = bad.len() - 1;
        bad[last] = b'/';
        assert_eq!(tls_server_name(&bad), None, "not a host name");
        // A lying extension length must not read past the sample.
        let mut lying = client_hello(&[sni("y.example")]);
        let n = lying.len();
        lying[n - 14] = 0xff;
        let _ = tls_server_name(&lying);
    }

    #[test]
    fn http_host_and_user_agent() {
        let req = b"GET /admin HTTP/1.1\r\nHost: intranet.lab:8080\r\nUser-Agent: Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)\r\n\r\n";
        let r = http_request(req).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/admin");
        assert_eq!(r.host.as_deref(), Some("intranet.lab"));
        assert!(r.user_agent.unwrap().contains("Nmap Scripting Engine"));
        assert!(sensor_common::telemetry::is_opening(req));
        assert_eq!(http_request(b"HTTP/1.1 200 OK\r\n"), None);
        assert!(!sensor_common::telemetry::is_opening(
            b"SSH-2.0-OpenSSH_9.2\r\n"
        ));
        let v6 = http_request(b"GET / HTTP/1.1\r\nhost: [fd00:10::12]:80\r\n").unwrap();
        assert_eq!(v6.host.as_deref(), Some("[fd00:10::12]"));
    }
}
