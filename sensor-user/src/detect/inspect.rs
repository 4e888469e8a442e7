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

/// The parts of a ClientHello that its server name and fingerprint come
/// from [RFC 8446 4.1.2].
struct ClientHello<'a> {
    /// The legacy version field (0x0303 for TLS 1.2 and 1.3).
    version: u16,
    cipher_suites: &'a [u8],
    /// (type, body), in the client's order, up to where the sample ends.
    extensions: Vec<(u16, &'a [u8])>,
    /// Whether every extension the hello declares is in the sample.
    complete: bool,
}

/// Extensions read at most (a ClientHello declares about 10 to 20).
const MAX_EXTENSIONS: usize = 64;

impl<'a> ClientHello<'a> {
    /// The body of the extension of type `kind`.
    fn extension(&self, kind: u16) -> Option<&'a [u8]> {
        self.extensions
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, b)| *b)
    }
}

/// Big-endian u16s, in order (an odd last byte is left out).
fn u16s(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

fn client_hello(p: &[u8]) -> Option<ClientHello<'_>> {
    if !is_client_hello(p) {
        return None;
    }
    // Record header (5), handshake type (1) and length (3), version (2),
    // random (32), then the session id.
    let version = u16_at(p, 9)? as u16;
    let mut at = 5 + 4 + 2 + 32;
    at += 1 + *p.get(at)? as usize;
    let suites_len = u16_at(p, at)?;
    let cipher_suites = p.get(at + 2..at + 2 + suites_len)?;
    at += 2 + suites_len;
    at += 1 + *p.get(at)? as usize; // compression methods
    let declared_end = at + 2 + u16_at(p, at)?;
    let end = declared_end.min(p.len());
    at += 2;
    let mut extensions = Vec::new();
    while at + 4 <= end && extensions.len() < MAX_EXTENSIONS {
        let kind = u16_at(p, at)? as u16;
        let len = u16_at(p, at + 2)?;
        let Some(body) = p.get(at + 4..at + 4 + len) else {
            break;
        };
        extensions.push((kind, body));
        at += 4 + len;
    }
    Some(ClientHello {
        version,
        cipher_suites,
        extensions,
        complete: at == declared_end,
    })
}

/// The host name of a ClientHello's server_name extension, lower-cased.
/// `None` when the sample is not a ClientHello, holds no SNI, or is cut
/// before it.
pub fn tls_server_name(p: &[u8]) -> Option<String> {
    let hello = client_hello(p)?;
    let (_, body) = hello.extensions.iter().find(|(kind, _)| *kind == 0)?;
    // server_name_list: length (2), then entries of type (1), length (2),
    // name; type 0 is a host name.
    let mut e = 2;
    while e + 3 <= body.len() {
        let name_len = u16_at(body, e + 1)?;
        let name = body.get(e + 3..e + 3 + name_len)?;
        if body[e] == 0 {
            return host_name(name);
        }
        e += 3 + name_len;
    }
    None
}

/// Whether a sample is a ClientHello that names no server (no SNI
/// extension among extensions it holds whole).
pub fn tls_without_server_name(p: &[u8]) -> bool {
    client_hello(p).is_some_and(|h| h.complete && h.extensions.iter().all(|(kind, _)| *kind != 0))
}

/// GREASE values [RFC 8701], which clients pick at random and JA3 skips.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// The JA3 fingerprint of a ClientHello held whole in the sample: the MD5
/// (lower-case hex) of "version,ciphers,extensions,groups,point formats",
/// each list of decimal values joined by '-', GREASE left out
/// (Salesforce's JA3 specification, github.com/salesforce/ja3). A hello
/// cut by the sample (`telemetry::PAYLOAD_MAX`, as browsers' and padded
/// OpenSSL hellos are) gives none.
pub fn ja3(p: &[u8]) -> Option<String> {
    use md5::{Digest, Md5};
    let text = ja3_text(p)?;
    Some(
        Md5::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

fn ja3_text(p: &[u8]) -> Option<String> {
    let hello = client_hello(p)?;
    if !hello.complete {
        return None;
    }
    let join = |values: &mut dyn Iterator<Item = u16>| {
        values
            .filter(|v| !is_grease(*v))
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("-")
    };
    // supported_groups: a 2-byte list length, then u16s; ec_point_formats:
    // a 1-byte length, then u8s.
    let groups = hello
        .extension(10)
        .map(|b| u16s(b.get(2..).unwrap_or(&[])))
        .unwrap_or_default();
    let formats: Vec<u16> = hello
        .extension(11)
        .and_then(|b| b.get(1..))
        .map(|b| b.iter().map(|v| *v as u16).collect())
        .unwrap_or_default();
    Some(format!(
        "{},{},{},{},{}",
        hello.version,
        join(&mut u16s(hello.cipher_suites).into_iter()),
        join(&mut hello.extensions.iter().map(|(k, _)| *k)),
        join(&mut groups.into_iter()),
        join(&mut formats.into_iter()),
    ))
}

/// The JA4 fingerprint of a ClientHello held whole in the sample (FoxIO's
/// JA4 specification, github.com/FoxIO-LLC/ja4): "a_b_c" where `a` is
/// the transport (`t`, TCP), the highest TLS version offered, `d` or `i`
/// for a server name given or not, the counts of cipher suites and of
/// extensions, and the first and last characters of the first ALPN
/// value; `b` the first 12 hex digits of the SHA-256 of the sorted cipher
/// suites; `c` the same of the sorted extensions (without SNI and ALPN),
/// then the signature algorithms in the client's order. GREASE values are
/// left out throughout. Sorting makes it stable where browsers shuffle
/// their extensions, which JA3 is not.
pub fn ja4(p: &[u8]) -> Option<String> {
    let hello = client_hello(p)?;
    if !hello.complete {
        return None;
    }
    let kept =
        |values: Vec<u16>| -> Vec<u16> { values.into_iter().filter(|v| !is_grease(*v)).collect() };
    // supported_versions: a 1-byte list length, then u16s.
    let offered = hello
        .extension(43)
        .and_then(|b| b.get(1..))
        .map(|b| kept(u16s(b)))
        .unwrap_or_default();
    let version = match offered.into_iter().max().unwrap_or(hello.version) {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        _ => "00",
    };
    let named = if hello.extension(0).is_some() {
        'd'
    } else {
        'i'
    };
    let ciphers = kept(u16s(hello.cipher_suites));
    let extensions = kept(hello.extensions.iter().map(|(k, _)| *k).collect());
    // ALPN: a 2-byte list length, then (1-byte length, value) entries.
    let alpn = hello
        .extension(16)
        .and_then(|b| b.get(3..3 + *b.get(2)? as usize))
        .filter(|v| !v.is_empty())
        .map_or("00".to_string(), |v| {
            let (first, last) = (v[0], v[v.len() - 1]);
            if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
                format!("{}{}", first as char, last as char)
            } else {
                let hex = format!("{first:02x}{last:02x}");
                format!("{}{}", &hex[..1], &hex[3..])
            }
        });
    let hex = |values: &[u16]| {
        values
            .iter()
            .map(|v| format!("{v:04x}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let digest = |text: &str| -> String {
        use sha2::{Digest, Sha256};
        if text.is_empty() {
            return "000000000000".into();
        }
        Sha256::digest(text.as_bytes())
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let mut sorted_ciphers = ciphers.clone();
    sorted_ciphers.sort_unstable();
    let mut sorted_extensions: Vec<u16> = extensions
        .iter()
        .copied()
        .filter(|k| !matches!(k, 0x0000 | 0x0010))
        .collect();
    sorted_extensions.sort_unstable();
    // signature_algorithms: a 2-byte list length, then u16s.
    let signatures = hello
        .extension(13)
        .and_then(|b| b.get(2..))
        .map(|b| kept(u16s(b)))
        .unwrap_or_default();
    let mut c = hex(&sorted_extensions);
    if !c.is_empty() && !signatures.is_empty() {
        c = format!("{c}_{}", hex(&signatures));
    }
    Some(format!(
        "t{version}{named}{:02}{:02}{alpn}_{}_{}",
        ciphers.len().min(99),
        extensions.len().min(99),
        digest(&hex(&sorted_ciphers)),
        digest(&c),
    ))
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
    /// The body's declared length (Content-Length).
    pub content_length: Option<u64>,
    /// Whether the request line names HTTP/1.1 (which requires a Host).
    pub http11: bool,
    /// Whether the headers ended within the sample: only then is a header
    /// not read a header not sent.
    pub complete: bool,
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
        content_length: None,
        http11: request_line.ends_with(" HTTP/1.1"),
        complete: text.contains("\r\n\r\n"),
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
        } else if name.eq_ignore_ascii_case("content-length") {
            request.content_length = value.parse().ok();
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

    /// `hello` (from `client_hello`) with these cipher suites for the
    /// helper's two (at 76..82), its lengths set to match.
    fn with_suites(hello: &[u8], suites: &[u16]) -> Vec<u8> {
        let mut list: Vec<u8> = (suites.len() as u16 * 2).to_be_bytes().to_vec();
        list.extend(suites.iter().flat_map(|s| s.to_be_bytes()));
        let mut with: Vec<u8> = hello[..76].to_vec();
        with.extend_from_slice(&list);
        with.extend_from_slice(&hello[82..]);
        let body = (with.len() - 9) as u32;
        with[6..9].copy_from_slice(&body.to_be_bytes()[1..]);
        let record = (with.len() - 5) as u16;
        with[3..5].copy_from_slice(&record.to_be_bytes());
        with
    }

    #[test]
    fn ja4_follows_the_published_example() {
        // The JA4 specification's example (Chrome): fifteen suites and
        // sixteen extensions besides GREASE, in the client's shuffled
        // order; ALPN h2 then http/1.1; TLS 1.3 offered.
        let u16s = |v: &[u16]| -> Vec<u8> { v.iter().flat_map(|x| x.to_be_bytes()).collect() };
        let list = |v: &[u16]| -> Vec<u8> {
            let mut b = ((v.len() * 2) as u16).to_be_bytes().to_vec();
            b.extend(u16s(v));
            b
        };
        let signatures = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        let alpn = b"\x00\x0c\x02h2\x08http/1.1".to_vec();
        let hello = client_hello(&[
            (0x3a3a, vec![]),
            (0x0033, vec![0, 0]),
            (0x002d, vec![1, 1]),
            (0x000d, list(&signatures)),
            (0x0010, alpn),
            (0x0000, sni("example.com").1),
            (0x002b, [vec![6], u16s(&[0x2a2a, 0x0304, 0x0303])].concat()),
            (0xff01, vec![0]),
            (0x0005, vec![1, 0, 0, 0, 0]),
            (0x0017, vec![]),
            (0x000b, vec![1, 0]),
            (0x000a, list(&[0x001d, 0x0017])),
            (0x001b, vec![2, 0, 2]),
            (0x4469, vec![0, 3, 2, b'h', b'2']),
            (0x0023, vec![]),
            (0x0012, vec![]),
            (0x0015, vec![0; 4]),
            (0x0a0a, vec![0]),
        ]);
        let suites = [
            0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let chrome = with_suites(&hello, &suites);
        assert_eq!(
            ja4(&chrome).as_deref(),
            Some("t13d1516h2_8daaf6152771_e5627efa2ab1")
        );
        // No server name, no ALPN, no extensions at all.
        let bare = client_hello(&[]);
        assert_eq!(
            ja4(&bare).as_deref(),
            Some("t12i020000_62ed6f6ca7ad_000000000000")
        );
    }

    #[test]
    fn ja3_follows_the_published_example() {
        // The JA3 README's example: TLS 1.0, twelve suites, three
        // extensions, three groups, one point format.
        let mut hello = client_hello(&[
            (0, sni("x.example").1),
            (10, vec![0, 6, 0, 23, 0, 24, 0, 25]),
            (11, vec![1, 0]),
        ]);
        hello[9..11].copy_from_slice(&[0x03, 0x01]);
        let with = with_suites(
            &hello,
            &[47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4],
        );
        assert_eq!(
            ja3_text(&with).as_deref(),
            Some("769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0")
        );
        assert_eq!(
            ja3(&with).as_deref(),
            Some("ada70206e40642a3e4461f35503241d5")
        );
        // GREASE values are left out; a cut hello gives none.
        let greased = client_hello(&[(0x1a1a, vec![]), (11, vec![1, 0])]);
        assert_eq!(ja3_text(&greased).as_deref(), Some("771,4865-4866,11,,0"));
        assert_eq!(ja3(&greased[..greased.len() - 1]), None);
        assert!(tls_without_server_name(&greased));
        assert!(!tls_without_server_name(&with));
    }

    #[test]
    fn http_host_and_user_agent() {
        let req = b"GET /admin HTTP/1.1\r\nHost: intranet.lab:8080\r\nUser-Agent: Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)\r\n\r\n";
        let r = http_request(req).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/admin");
        assert_eq!(r.host.as_deref(), Some("intranet.lab"));
        assert!(r.user_agent.unwrap().contains("Nmap Scripting Engine"));
        assert_eq!(r.content_length, None);
        let put = http_request(b"PUT /f HTTP/1.1\r\nContent-Length: 31457280\r\n\r\n").unwrap();
        assert_eq!(put.content_length, Some(31_457_280));
        assert!(sensor_common::telemetry::is_opening(req));
        assert_eq!(http_request(b"HTTP/1.1 200 OK\r\n"), None);
        assert!(!sensor_common::telemetry::is_opening(b"220 ftp ready\r\n"));
        assert!(sensor_common::telemetry::is_opening(
            b"SSH-2.0-OpenSSH_9.2\r\n"
        ));
        let v6 = http_request(b"GET / HTTP/1.1\r\nhost: [fd00:10::12]:80\r\n").unwrap();
        assert_eq!(v6.host.as_deref(), Some("[fd00:10::12]"));
    }
}
