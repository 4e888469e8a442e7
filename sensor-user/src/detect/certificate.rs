//! The server certificate of a TLS 1.2 (or earlier) handshake, read from
//! the sample of the server's first flight: a ServerHello, then the
//! Certificate message whose first entry is the server's own [RFC 5246
//! 7.4.2] (TLS 1.3 encrypts it). Only the start of the certificate fits in
//! a sample (`telemetry::PAYLOAD_MAX`): its issuer, validity and subject
//! [RFC 5280 4.1], which come first, are what is read; anything cut short
//! gives nothing. The names it was issued for (the subjectAltName
//! extension, past the public key) are read only when the sample holds
//! them whole: a short certificate with an elliptic-curve key.

use super::der::{elements, tlv, Tlv};

/// What the start of a server certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCertificate {
    /// Issuer and subject are the same name: nobody vouches for it.
    pub self_signed: bool,
    /// Validity, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// The DNS names of its subjectAltName, lower-cased, when the sample
    /// holds that extension whole.
    pub names: Option<Vec<String>>,
}

/// TLS record content type and handshake message types [RFC 5246].
const HANDSHAKE: u8 = 22;
const SERVER_HELLO: u8 = 2;
const CERTIFICATE: u8 = 11;

/// The handshake bytes of the sample's TLS records, joined (messages may
/// span records).
fn handshake_stream(sample: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(header) = sample.get(at..at + 5) {
        if header[0] != HANDSHAKE || header[1] != 3 {
            break;
        }
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        let end = (at + 5 + len).min(sample.len());
        out.extend_from_slice(&sample[at + 5..end]);
        at += 5 + len;
    }
    out
}

fn u24(b: &[u8], at: usize) -> Option<usize> {
    let b = b.get(at..at + 3)?;
    Some((b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize)
}

/// The server's certificate, if the sample holds a ServerHello followed
/// by a Certificate message whose first certificate's issuer, validity
/// and subject are whole.
pub fn server_certificate(sample: &[u8]) -> Option<ServerCertificate> {
    let stream = handshake_stream(sample);
    if stream.first() != Some(&SERVER_HELLO) {
        return None;
    }
    let mut at = 0;
    for _ in 0..4 {
        let kind = *stream.get(at)?;
        let len = u24(&stream, at + 1)?;
        if kind == CERTIFICATE {
            // certificate_list length (3), then the first certificate's
            // length (3) and its DER.
            return parse(stream.get(at + 4 + 6..)?);
        }
        at += 4 + len;
    }
    None
}

/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version,
/// serialNumber, signature, issuer, validity, subject, ... }, ... }
fn parse(der: &[u8]) -> Option<ServerCertificate> {
    let certificate = tlv(der).filter(|t| t.tag == 0x30)?;
    let tbs = tlv(certificate.value).filter(|t| t.tag == 0x30)?;
    let fields = elements(tbs.value);
    // The version is optional ([0], absent for v1).
    let skip = usize::from(fields.first()?.tag == 0xa0);
    let whole = |n: usize| fields.get(skip + n).filter(|t: &&Tlv| t.complete);
    let (issuer, validity, subject) = (whole(2)?, whole(3)?, whole(4)?);
    let times = elements(validity.value);
    let (not_before, not_after) = (time(times.first()?)?, time(times.get(1)?)?);
    Some(ServerCertificate {
        self_signed: issuer.value == subject.value,
        not_before,
        not_after,
        names: fields
            .iter()
            .skip(skip + 5)
            .find(|t| t.tag == 0xa3)
            .and_then(|extensions| alt_names(extensions.value)),
    })
}

/// The subjectAltName extension (2.5.29.17) of an extensions field
/// [RFC 5280 4.2.1.6]: its dNSName entries ([2] IA5String), if the
/// extension is whole.
fn alt_names(extensions: &[u8]) -> Option<Vec<String>> {
    const SUBJECT_ALT_NAME: [u8; 3] = [0x55, 0x1d, 0x11];
    let list = tlv(extensions).filter(|t| t.tag == 0x30)?;
    let san = elements(list.value).into_iter().find_map(|ext| {
        let parts = elements(ext.value);
        (ext.tag == 0x30 && parts.first()?.value == SUBJECT_ALT_NAME).then_some((ext, parts))
    })?;
    let (ext, parts) = san;
    if !ext.complete {
        return None;
    }
    // extnValue is the last part (after an optional critical flag).
    let value = parts.last().filter(|t| t.tag == 0x04)?;
    let names = tlv(value.value).filter(|t| t.tag == 0x30 && t.complete)?;
    Some(
        elements(names.value)
            .iter()
            .filter(|n| n.tag == 0x82 && n.complete)
            .map(|n| String::from_utf8_lossy(n.value).to_ascii_lowercase())
            .collect(),
    )
}

/// Whether a certificate issued for `pattern` (a name, or a wildcard
/// `*.example.com` standing for exactly one left-most label [RFC 6125
/// 6.4.3]) covers `name`.
pub fn covers(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == name,
    }
}

/// UTCTime (YYMMDDHHMMSSZ, years 1950 to 2049) or GeneralizedTime
/// (YYYYMMDDHHMMSSZ) [RFC 5280 4.1.2.5], as Unix seconds.
fn time(t: &Tlv<'_>) -> Option<i64> {
    let text = std::str::from_utf8(t.value).ok()?.strip_suffix('Z')?;
    let digits = |s: &str| s.parse::<i64>().ok();
    let (year, rest) = match (t.tag, text.len()) {
        (0x17, 12) => {
            let yy = digits(&text[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        (0x18, 14) => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| digits(rest.get(i..i + 2)?);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::detect::der::tests::der;

    fn name(cn: &str) -> Vec<u8> {
        // Name ::= SEQUENCE OF SET OF { OID commonName, string }
        let attr = der(
            0x30,
            &[der(0x06, &[0x55, 4, 3]), der(0x0c, cn.as_bytes())].concat(),
        );
        der(0x30, &der(0x31, &attr))
    }

    /// A server's first flight: a ServerHello record, then a Certificate
    /// record whose certificate is `issuer`, valid `from` to `to`
    /// (UTCTime), for `subject`, followed by `tail` bytes of the rest.
    pub fn first_flight(issuer: &str, from: &str, to: &str, subject: &str, tail: usize) -> Vec<u8> {
        // An RSA key's SubjectPublicKeyInfo header (290 bytes declared).
        let rest = [vec![0x30, 0x82, 0x01, 0x22], vec![0; tail]].concat();
        flight(issuer, from, to, subject, rest)
    }

    /// A first flight whose self-signed certificate, with a P-256 key,
    /// names `names` in its subjectAltName.
    pub fn named_flight(names: &[&str]) -> Vec<u8> {
        let spki = der(
            0x30,
            &[
                der(0x30, &der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 2, 1])),
                der(0x03, &[4; 66]),
            ]
            .concat(),
        );
        let dns: Vec<u8> = names.iter().flat_map(|n| der(0x82, n.as_bytes())).collect();
        let san = der(
            0x30,
            &[der(0x06, &[0x55, 0x1d, 0x11]), der(0x04, &der(0x30, &dns))].concat(),
        );
        let extensions = der(0xa3, &der(0x30, &san));
        flight(
            "c2",
            "260101000000Z",
            "360101000000Z",
            "c2",
            [spki, extensions].concat(),
        )
    }

    fn flight(issuer: &str, from: &str, to: &str, subject: &str, rest: Vec<u8>) -> Vec<u8> {
        let validity = der(
            0x30,
            &[der(0x17, from.as_bytes()), der(0x17, to.as_bytes())].concat(),
        );
        let tbs = [
            der(0xa0, &der(0x02, &[2])),
            der(0x02, &[0x10; 16]),
            der(
                0x30,
                &der(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 11]),
            ),
            name(issuer),
            validity,
            name(subject),
            rest,
        ]
        .concat();
        let certificate = der(0x30, &der(0x30, &tbs));
        let cert_len = certificate.len() as u32;
        let list = [&cert_len.to_be_bytes()[1..], &certificate[..]].concat();
        let list_len = list.len() as u32;
        let body = [&list_len.to_be_bytes()[1..], &list[..]].concat();
        let body_len = body.len() as u32;
        let message = [&[CERTIFICATE][..], &body_len.to_be_bytes()[1..], &body].concat();
        let hello = [&[SERVER_HELLO, 0, 0, 4][..], &[3, 3, 0, 0]].concat();
        let record =
            |m: &[u8]| [&[HANDSHAKE, 3, 3][..], &(m.len() as u16).to_be_bytes(), m].concat();
        [record(&hello), record(&message)].concat()
    }

    #[test]
    fn a_self_signed_certificate_and_its_validity_are_read() {
        let flight = first_flight("c2", "260101000000Z", "360101000000Z", "c2", 600);
        assert!(sensor_common::telemetry::is_server_hello(&flight));
        let sample = &flight[..512];
        let c = server_certificate(sample).unwrap();
        assert!(c.self_signed);
        assert_eq!(c.not_before, 1_767_225_600, "2026-01-01T00:00:00Z");
        assert_eq!(c.not_after, 2_082_758_400, "2036-01-01T00:00:00Z");
        let issued = first_flight("R11", "260101000000Z", "260401000000Z", "example.org", 0);
        assert!(!server_certificate(&issued).unwrap().self_signed);
    }

    #[test]
    fn a_flight_cut_before_the_subject_or_no_server_hello_gives_nothing() {
        let flight = first_flight(
            "a-long-issuer-name",
            "260101000000Z",
            "270101000000Z",
            "x",
            0,
        );
        let subject_end = flight.len() - 4;
        for n in 0..subject_end - 8 {
            assert_eq!(server_certificate(&flight[..n]), None, "cut at {n}");
        }
        let mut client = flight.clone();
        client[5] = 1;
        assert_eq!(server_certificate(&client), None);
    }

    #[test]
    fn the_names_are_read_when_the_sample_holds_them_whole() {
        let flight = named_flight(&["c2.example", "*.cdn.example"]);
        assert!(flight.len() < 512, "{}", flight.len());
        let c = server_certificate(&flight).unwrap();
        assert_eq!(
            c.names.as_deref(),
            Some(&["c2.example".to_string(), "*.cdn.example".to_string()][..])
        );
        // Cut inside the extension: the rest of the certificate is read,
        // the names are not.
        let cut = server_certificate(&flight[..flight.len() - 3]).unwrap();
        assert_eq!(cut.names, None);
        // An RSA certificate's names lie past the sample.
        let long = first_flight("R11", "260101000000Z", "270101000000Z", "x.example", 600);
        assert_eq!(server_certificate(&long[..512]).unwrap().names, None);
        assert!(covers("*.cdn.example", "a.cdn.example"));
        assert!(!covers("*.cdn.example", "a.b.cdn.example"));
        assert!(!covers("*.cdn.example", "cdn.example"));
        assert!(covers("c2.example", "c2.example"));
    }
}
