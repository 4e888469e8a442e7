//! Kerberos messages, read from payload samples as RFC 4120 section 5
//! defines them (ASN.1 DER): what a client asked for (its account, the
//! service, the encryption types it offered, whether it proved its key
//! first), what the KDC issued (the service ticket's encryption type) and
//! what it refused (the error code). These stay in clear whatever the
//! tickets hold.
//!
//! Over TCP each message follows a 4-byte length [RFC 4120 7.2.2]; over
//! UDP a datagram is one message. A sample may hold a message's start only
//! (what was cut off is not read), or, for a request longer than a sample,
//! its end (`telemetry::sample_tail`): a request's body comes last, after
//! the ticket-granting ticket it carries, and is found there by its shape.

use super::der::{elements, field, integer, integer_of, sequence, tlv, Tlv};

/// Message types [RFC 4120 5.10] as application tags.
const AS_REQ: u8 = 10;
const AS_REP: u8 = 11;
const TGS_REQ: u8 = 12;
const TGS_REP: u8 = 13;
const KRB_ERROR: u8 = 30;

/// PA-ENC-TIMESTAMP [RFC 4120 5.2.7.2]: the client proved its key.
const PA_ENC_TIMESTAMP: i64 = 2;

/// Encryption types [RFC 3961 8, RFC 4757, RFC 8009]: the AES family, and
/// RC4-HMAC whose key is the account's NT hash.
pub const ETYPE_RC4_HMAC: i64 = 23;
const AES_ETYPES: [i64; 4] = [17, 18, 19, 20];

/// Error codes [RFC 4120 7.5.9].
pub const KDC_ERR_C_PRINCIPAL_UNKNOWN: i64 = 6;
pub const KDC_ERR_PREAUTH_FAILED: i64 = 24;
pub const KDC_ERR_CLIENT_REVOKED: i64 = 18;

/// What a Kerberos message says, as far as the sample holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// TGS-REQ (a service ticket) rather than AS-REQ (a TGT).
    pub tgs: bool,
    /// The account (AS-REQ), "name@REALM" in lower case.
    pub client: Option<String>,
    /// The service asked for, "a/b@REALM" in lower case.
    pub service: Option<String>,
    /// Encryption types offered, in the client's order of preference.
    pub etypes: Vec<i64>,
    /// The request proved the client's key (PA-ENC-TIMESTAMP); `None`
    /// when the padata was not in the sample.
    pub preauth: Option<bool>,
}

impl Request {
    /// The client offered RC4 and none of the AES types: what a tool that
    /// holds only an NT hash, or wants a ticket it can crack offline,
    /// asks for. Windows since Vista offers AES first.
    pub fn rc4_only(&self) -> bool {
        self.etypes.contains(&ETYPE_RC4_HMAC) && !self.etypes.iter().any(|e| AES_ETYPES.contains(e))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    /// AS-REP or TGS-REP.
    Reply {
        tgs: bool,
        client: Option<String>,
        /// The ticket's service and encryption type (the service's key).
        service: Option<String>,
        ticket_etype: Option<i64>,
    },
    Error {
        code: i64,
        client: Option<String>,
        service: Option<String>,
    },
}

/// A KerberosString (GeneralString, IA5 in practice), in lower case and
/// made safe to show (`text::printable`).
fn string(b: &[u8]) -> Option<String> {
    string_of(&tlv(b)?)
}

fn string_of(t: &Tlv<'_>) -> Option<String> {
    (t.complete && (t.tag == 0x1b || t.tag == 0x16))
        .then(|| super::text::printable(&String::from_utf8_lossy(t.value)).to_lowercase())
}

/// PrincipalName [RFC 4120 5.2.2] with its realm, "a/b@realm".
fn principal(b: &[u8], realm: Option<&[u8]>) -> Option<String> {
    let fields = sequence(b)?;
    let names = sequence(field(&fields, 1)?)?;
    let parts: Vec<String> = names.iter().filter_map(string_of).collect();
    if parts.is_empty() {
        return None;
    }
    let mut name = parts.join("/");
    if let Some(realm) = realm.and_then(string) {
        name.push('@');
        name.push_str(&realm);
    }
    Some(name)
}

/// Reads a Kerberos message from a sample (either framing), or a request
/// body found in a request's tail.
pub fn parse(sample: &[u8]) -> Option<Message> {
    let is_message = |b: u8| matches!(b, 0x6a | 0x6b | 0x6c | 0x6d | 0x7e);
    let start = match sample {
        [b, ..] if is_message(*b) => 0,
        [_, _, _, _, b, ..] if is_message(*b) => 4,
        _ => return request_tail(sample).map(Message::Request),
    };
    let outer = tlv(&sample[start..])?;
    let fields = sequence(outer.value)?;
    match outer.tag & 0x1f {
        t @ (AS_REQ | TGS_REQ) => {
            if integer(field(&fields, 2)?)? != t as i64 {
                return None;
            }
            let mut request = field(&fields, 4).and_then(request_body).unwrap_or_default();
            request.tgs = t == TGS_REQ;
            request.preauth = field(&fields, 3).and_then(|padata| {
                let types: Vec<i64> = sequence(padata)?
                    .iter()
                    .filter(|t| t.tag == 0x30)
                    .filter_map(|t| integer(field(&elements(t.value), 1)?))
                    .collect();
                Some(types.contains(&PA_ENC_TIMESTAMP))
            });
            if field(&fields, 3).is_none() && field(&fields, 4).is_some() {
                // No padata at all, and the body follows: nothing proved.
                request.preauth = Some(false);
            }
            Some(Message::Request(request))
        }
        t @ (AS_REP | TGS_REP) => {
            if integer(field(&fields, 1)?)? != t as i64 {
                return None;
            }
            let client = field(&fields, 4).and_then(|c| principal(c, field(&fields, 3)));
            let ticket = field(&fields, 5).and_then(|t| {
                let inner = tlv(t)?;
                (inner.tag == 0x61).then_some(inner.value)
            });
            let ticket_fields = ticket.and_then(sequence).unwrap_or_default();
            let service =
                field(&ticket_fields, 2).and_then(|s| principal(s, field(&ticket_fields, 1)));
            let ticket_etype = field(&ticket_fields, 3)
                .and_then(sequence)
                .and_then(|enc| integer(field(&enc, 0)?));
            Some(Message::Reply {
                tgs: t == TGS_REP,
                client,
                service,
                ticket_etype,
            })
        }
        KRB_ERROR => {
            if integer(field(&fields, 1)?)? != KRB_ERROR as i64 {
                return None;
            }
            Some(Message::Error {
                code: integer(field(&fields, 6)?)?,
                client: field(&fields, 8).and_then(|c| principal(c, field(&fields, 7))),
                service: field(&fields, 10).and_then(|s| principal(s, field(&fields, 9))),
            })
        }
        _ => None,
    }
}

/// KDC-REQ-BODY [RFC 4120 5.4.1].
fn request_body(b: &[u8]) -> Option<Request> {
    let fields = sequence(b)?;
    // kdc-options comes first and is always there.
    field(&fields, 0)?;
    let realm = field(&fields, 2);
    let client = field(&fields, 1).and_then(|c| principal(c, realm));
    let service = field(&fields, 3).and_then(|s| principal(s, realm));
    let etypes = field(&fields, 8)
        .and_then(sequence)
        .map(|list| list.iter().filter_map(integer_of).collect())
        .unwrap_or_default();
    Some(Request {
        tgs: client.is_none(),
        client,
        service,
        etypes,
        preauth: None,
    })
}

/// The body of a request whose start was not in the sample: found at the
/// SEQUENCE that opens with kdc-options (`[0]` holding a 32-bit BIT
/// STRING, `a0 07 03 05 00`) and is read to the end of the sample, which
/// must be where the body ends (it is the request's last field).
pub fn request_tail(sample: &[u8]) -> Option<Request> {
    const KDC_OPTIONS: [u8; 5] = [0xa0, 0x07, 0x03, 0x05, 0x00];
    (0..sample.len().saturating_sub(KDC_OPTIONS.len())).find_map(|i| {
        let t = tlv(&sample[i..])?;
        if t.tag != 0x30 || !t.value.starts_with(&KDC_OPTIONS) || i + t.len != sample.len() {
            return None;
        }
        let request = request_body(&sample[i..])?;
        (!request.etypes.is_empty()).then_some(request)
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::detect::der::tests::der;

    fn int(v: i64) -> Vec<u8> {
        let bytes = v.to_be_bytes();
        // The shortest two's-complement form.
        let mut at = 0;
        while at < 7
            && ((bytes[at] == 0 && bytes[at + 1] & 0x80 == 0)
                || (bytes[at] == 0xff && bytes[at + 1] & 0x80 != 0))
        {
            at += 1;
        }
        der(0x02, &bytes[at..])
    }

    fn ctx(n: u8, contents: &[u8]) -> Vec<u8> {
        der(0xa0 | n, contents)
    }

    fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        der(0x30, &parts.concat())
    }

    fn principal(names: &[&str]) -> Vec<u8> {
        let strings: Vec<Vec<u8>> = names.iter().map(|n| der(0x1b, n.as_bytes())).collect();
        seq(&[ctx(0, &int(1)), ctx(1, &seq(&strings))])
    }

    fn realm() -> Vec<u8> {
        der(0x1b, b"CORP.EXAMPLE")
    }

    /// A KDC-REQ-BODY.
    fn body(client: Option<&str>, service: &[&str], etypes: &[i64]) -> Vec<u8> {
        let mut parts = vec![ctx(0, &[0x03, 0x05, 0x00, 0x40, 0x81, 0x00, 0x10])];
        if let Some(c) = client {
            parts.push(ctx(1, &principal(&[c])));
        }
        parts.push(ctx(2, &realm()));
        parts.push(ctx(3, &principal(service)));
        parts.push(ctx(5, &der(0x18, b"20370913024805Z")));
        parts.push(ctx(7, &int(12345)));
        let list: Vec<Vec<u8>> = etypes.iter().map(|e| int(*e)).collect();
        parts.push(ctx(8, &seq(&list)));
        seq(&parts)
    }

    /// An AS-REQ (`tgs` false) or TGS-REQ with these padata types, each
    /// with `pa_len` bytes of value, TCP-framed when `tcp`.
    pub fn request(
        tgs: bool,
        client: Option<&str>,
        service: &[&str],
        etypes: &[i64],
        padata: &[(i64, usize)],
        tcp: bool,
    ) -> Vec<u8> {
        let t = if tgs { TGS_REQ } else { AS_REQ };
        let mut parts = vec![ctx(1, &int(5)), ctx(2, &int(t as i64))];
        if !padata.is_empty() {
            let pas: Vec<Vec<u8>> = padata
                .iter()
                .map(|(ty, n)| seq(&[ctx(1, &int(*ty)), ctx(2, &der(0x04, &vec![0x55; *n]))]))
                .collect();
            parts.push(ctx(3, &seq(&pas)));
        }
        parts.push(ctx(4, &body(client, service, etypes)));
        framed(der(0x60 | t, &seq(&parts)), tcp)
    }

    fn framed(message: Vec<u8>, tcp: bool) -> Vec<u8> {
        if !tcp {
            return message;
        }
        let mut v = (message.len() as u32).to_be_bytes().to_vec();
        v.extend(message);
        v
    }

    pub fn error(code: i64, client: Option<&str>, tcp: bool) -> Vec<u8> {
        let mut parts = vec![
            ctx(0, &int(5)),
            ctx(1, &int(KRB_ERROR as i64)),
            ctx(4, &der(0x18, b"20261130020000Z")),
            ctx(5, &int(0)),
            ctx(6, &int(code)),
        ];
        if let Some(c) = client {
            parts.push(ctx(7, &realm()));
            parts.push(ctx(8, &principal(&[c])));
        }
        parts.push(ctx(9, &realm()));
        parts.push(ctx(10, &principal(&["krbtgt", "CORP.EXAMPLE"])));
        framed(der(0x60 | KRB_ERROR, &seq(&parts)), tcp)
    }

    pub fn reply(tgs: bool, service: &[&str], ticket_etype: i64) -> Vec<u8> {
        let t = if tgs { TGS_REP } else { AS_REP };
        let enc = |etype: i64| {
            seq(&[
                ctx(0, &int(etype)),
                ctx(1, &int(2)),
                ctx(2, &der(0x04, &[0x77; 300])),
            ])
        };
        let ticket = der(
            0x61,
            &seq(&[
                ctx(0, &int(5)),
                ctx(1, &realm()),
                ctx(2, &principal(service)),
                ctx(3, &enc(ticket_etype)),
            ]),
        );
        let parts = vec![
            ctx(0, &int(5)),
            ctx(1, &int(t as i64)),
            ctx(3, &realm()),
            ctx(4, &principal(&["alice"])),
            ctx(5, &ticket),
            ctx(6, &enc(18)),
        ];
        framed(der(0x60 | t, &seq(&parts)), true)
    }

    #[test]
    fn as_requests_give_account_etypes_and_preauthentication() {
        // Rubeus asktgt /rc4: PA-ENC-TIMESTAMP, RC4 only; over UDP.
        let m = parse(&request(
            false,
            Some("Alice"),
            &["krbtgt", "CORP.EXAMPLE"],
            &[23],
            &[(2, 40), (128, 5)],
            false,
        ));
        let Some(Message::Request(r)) = m else {
            panic!("{m:?}")
        };
        assert!(!r.tgs);
        assert_eq!(r.client.as_deref(), Some("alice@corp.example"));
        assert_eq!(
            r.service.as_deref(),
            Some("krbtgt/corp.example@corp.example")
        );
        assert_eq!(r.etypes, [23]);
        assert_eq!(r.preauth, Some(true));
        assert!(r.rc4_only());
        // A Windows client's first AS-REQ: no timestamp, AES first; TCP.
        let m = parse(&request(
            false,
            Some("bob"),
            &["krbtgt", "CORP"],
            &[18, 17, 23, 24, -135],
            &[(128, 5)],
            true,
        ));
        let Some(Message::Request(r)) = m else {
            panic!("{m:?}")
        };
        assert_eq!(r.etypes, [18, 17, 23, 24, -135]);
        assert_eq!(r.preauth, Some(false));
        assert!(!r.rc4_only());
        // No padata at all.
        let m = parse(&request(
            false,
            Some("svc"),
            &["krbtgt", "CORP"],
            &[23],
            &[],
            true,
        ));
        assert!(
            matches!(
                m,
                Some(Message::Request(Request {
                    preauth: Some(false),
                    ..
                }))
            ),
            "{m:?}"
        );
    }

    #[test]
    fn a_service_ticket_request_is_read_from_its_tail_when_its_start_is_cut() {
        // A TGS-REQ carries the TGT (about 1 KB and more) before its body.
        let whole = request(
            true,
            None,
            &["MSSQLSvc", "db.corp.example:1433"],
            &[23],
            &[(1, 1200)],
            true,
        );
        let head = &whole[..512];
        let tail = &whole[whole.len() - 512..];
        // The head names the type; its body is cut off.
        let Some(Message::Request(r)) = parse(head) else {
            panic!()
        };
        assert!(r.tgs && r.etypes.is_empty());
        // The tail holds the body.
        let Some(Message::Request(r)) = parse(tail) else {
            panic!("{:?}", parse(tail))
        };
        assert!(r.tgs);
        assert_eq!(
            r.service.as_deref(),
            Some("mssqlsvc/db.corp.example:1433@corp.example")
        );
        assert!(r.rc4_only());
        // A tail that is not a body's end is nothing.
        assert_eq!(parse(&tail[..tail.len() - 1]), None);
        assert_eq!(parse(&[0x30, 0x03, 0xa0, 0x07, 0x03]), None);
    }

    #[test]
    fn replies_and_errors() {
        let m = parse(&reply(true, &["cifs", "fs1"], 23));
        assert_eq!(
            m,
            Some(Message::Reply {
                tgs: true,
                client: Some("alice@corp.example".into()),
                service: Some("cifs/fs1@corp.example".into()),
                ticket_etype: Some(23),
            })
        );
        let m = parse(&error(KDC_ERR_PREAUTH_FAILED, Some("carol"), false));
        assert_eq!(
            m,
            Some(Message::Error {
                code: 24,
                client: Some("carol@corp.example".into()),
                service: Some("krbtgt/corp.example@corp.example".into()),
            })
        );
    }

    #[test]
    fn garbage_is_no_message() {
        for b in [
            &b""[..],
            b"\x6a",
            b"\x6a\x84\xff\xff\xff\xff",
            b"\x00\x00\x00\x05\x7e\x03\x30\x01",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert_eq!(parse(b), None, "{b:?}");
        }
        // Every cut of a real message parses or not, never panics.
        let whole = request(
            false,
            Some("a"),
            &["krbtgt", "X"],
            &[18, 23],
            &[(2, 60)],
            true,
        );
        for n in 0..whole.len() {
            let _ = parse(&whole[..n]);
            let _ = parse(&whole[n..]);
        }
    }
}
