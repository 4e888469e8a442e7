//! The server certificate of a TLS 1.2 (or earlier) handshake, read from
//! the sample of the server's first flight: a ServerHello, then the
//! Certificate message whose first entry is the server's own [RFC 5246
//! 7.4.2] (TLS 1.3 encrypts it). Only the start of the certificate fits in
//! a sample (`telemetry::PAYLOAD_MAX`): its issuer, validity and subject
//! [RFC 5280 4.1], which come first, are what is read; anything cut short
//! gives nothing.

use super::der::{elements, tlv, Tlv};

/// What the start of a server certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCertificate {
    /// Issuer and subject are the same name: nobody vouches for it.
    pub self_signed: bool,
    /// Validity, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
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
    })
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
            vec![0x30, 0x82, 0x01, 0x22],
            vec![0; tail],
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
}
