//! LDAP binds [RFC 4511 4.2], read from payload samples: who a client
//! binds as and whether the server accepted. A bind stays in clear when
//! the session that follows is signed or sealed; the account of an NTLM
//! bind (SASL GSS-SPNEGO, or Microsoft's sicily binds [MS-ADTS 5.1.1.1])
//! is in the NTLM AUTHENTICATE message it carries [MS-NLMP 2.2.1.3].

use std::{collections::HashMap, net::IpAddr};

use super::{
    der::{elements, integer_of, tlv, Tlv},
    event::{Event, Kind, Nanos, PROTO_TCP, SECOND},
    window::cap_oldest,
};

/// LDAP's port [RFC 4511 5.2 and IANA].
pub const LDAP_PORT: u16 = 389;

/// invalidCredentials [RFC 4511 4.1.9].
pub const INVALID_CREDENTIALS: i64 = 49;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// A bind request, with the account it names when it names one.
    Request { account: Option<String> },
    /// A bind response and its result code.
    Response { result: i64 },
}

/// The protocol operation of every LDAP message in a sample (messages
/// follow one another in a TCP stream; a sample may hold several).
pub fn operations(sample: &[u8]) -> Vec<Tlv<'_>> {
    let mut out = Vec::new();
    let mut rest = sample;
    while let Some(message) = tlv(rest) {
        if message.tag != 0x30 {
            break;
        }
        // messageID, protocolOp, controls.
        if let Some(op) = elements(message.value).into_iter().nth(1) {
            out.push(op);
        }
        if !message.complete || message.len >= rest.len() {
            break;
        }
        rest = &rest[message.len..];
    }
    out
}

/// Every bind request and response in a sample.
pub fn binds(sample: &[u8]) -> Vec<Bind> {
    let mut out = Vec::new();
    for op in operations(sample) {
        match op.tag {
            0x60 => out.push(Bind::Request {
                account: bind_account(op.value),
            }),
            0x61 => {
                // resultCode, an ENUMERATED, comes first.
                let first = elements(op.value);
                let code = first.first().filter(|t| t.tag == 0x0a);
                if let Some(result) = code.and_then(integer_of) {
                    out.push(Bind::Response { result });
                }
            }
            _ => {}
        }
    }
    out
}

/// The account a BindRequest's contents name: the DN of a simple bind, or
/// the user of the NTLM AUTHENTICATE message its credentials carry.
fn bind_account(b: &[u8]) -> Option<String> {
    let fields = elements(b);
    // version, name, authentication.
    let name = fields
        .get(1)
        .filter(|t| t.tag == 0x04 && !t.value.is_empty());
    if let Some(auth) = fields.get(2) {
        if let Some(user) = ntlm_user(auth.value) {
            return Some(user);
        }
    }
    name.map(|t| super::text::printable(&String::from_utf8_lossy(t.value)).to_lowercase())
}

/// The "DOMAIN\user" of an NTLM AUTHENTICATE message found in `b`.
pub fn ntlm_user(b: &[u8]) -> Option<String> {
    const SIGNATURE: &[u8] = b"NTLMSSP\0";
    let at = b.windows(SIGNATURE.len()).position(|w| w == SIGNATURE)?;
    let m = &b[at..];
    let u32_at = |i: usize| Some(u32::from_le_bytes(m.get(i..i + 4)?.try_into().ok()?));
    let u16_at = |i: usize| Some(u16::from_le_bytes(m.get(i..i + 2)?.try_into().ok()?));
    if u32_at(8)? != 3 {
        return None;
    }
    // NTLMSSP_NEGOTIATE_UNICODE: the strings are UTF-16LE, else OEM.
    let unicode = u32_at(60)? & 1 != 0;
    let field = |at: usize| -> Option<String> {
        let (len, offset) = (u16_at(at)? as usize, u32_at(at + 4)? as usize);
        let raw = m.get(offset..offset.checked_add(len)?)?;
        Some(if unicode {
            super::text::utf16le(raw)
        } else {
            String::from_utf8_lossy(raw).into_owned()
        })
    };
    let (domain, user) = (field(28)?, field(36)?);
    if user.is_empty() {
        // An anonymous AUTHENTICATE names nobody.
        return None;
    }
    let user = super::text::printable(&user).to_lowercase();
    Some(if domain.is_empty() {
        user
    } else {
        format!("{}\\{user}", super::text::printable(&domain).to_lowercase())
    })
}

/// A bind the server refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub ts: Nanos,
    pub client: IpAddr,
    pub server: IpAddr,
    pub port: u16,
    pub account: Option<String>,
}

/// Connections followed at once.
const CONNECTIONS: usize = 1 << 16;

/// Follows binds on LDAP connections: the last account each client bound
/// as, so that a refusal names it.
#[derive(Default)]
pub struct LdapBinds {
    last: HashMap<(IpAddr, u16, IpAddr), (Option<String>, Nanos)>,
    pub evicted: u64,
}

impl LdapBinds {
    /// The binds refused in this event's sample.
    pub fn observe(&mut self, e: &Event) -> Vec<Refused> {
        if e.kind != Kind::Data || e.protocol != PROTO_TCP {
            return Vec::new();
        }
        let to_server = e.dport == LDAP_PORT;
        if !to_server && e.sport != LDAP_PORT {
            return Vec::new();
        }
        let mut refused = Vec::new();
        for bind in binds(&e.payload) {
            match bind {
                Bind::Request { account } if to_server => {
                    self.evicted += cap_oldest(&mut self.last, CONNECTIONS, |(_, t)| *t);
                    let entry = self.last.entry((e.src, e.sport, e.dst)).or_default();
                    // The NTLM exchange's first request names nobody.
                    if account.is_some() {
                        entry.0 = account;
                    }
                    entry.1 = e.ts;
                }
                Bind::Response { result } if !to_server && result == INVALID_CREDENTIALS => {
                    let account = self
                        .last
                        .get(&(e.dst, e.dport, e.src))
                        .and_then(|(a, _)| a.clone());
                    refused.push(Refused {
                        ts: e.ts,
                        client: e.dst,
                        server: e.src,
                        port: e.sport,
                        account,
                    });
                }
                _ => {}
            }
        }
        refused
    }

    pub fn prune(&mut self, now: Nanos) {
        let since = now.saturating_sub(600 * SECOND);
        self.last.retain(|_, (_, t)| *t >= since);
        super::window::fit(&mut self.last);
    }

    pub fn size(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::detect::der::tests::der;

    pub fn message(id: u8, op: Vec<u8>) -> Vec<u8> {
        der(0x30, &[der(0x02, &[id]), op].concat())
    }

    fn simple_bind(id: u8, dn: &str) -> Vec<u8> {
        let op = [
            der(0x02, &[3]),
            der(0x04, dn.as_bytes()),
            der(0x80, b"secret"),
        ]
        .concat();
        message(id, der(0x60, &op))
    }

    /// An NTLM AUTHENTICATE message for DOMAIN\user (UTF-16LE).
    pub fn ntlm_authenticate(domain: &str, user: &str) -> Vec<u8> {
        let utf16 =
            |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect() };
        let (d, u) = (utf16(domain), utf16(user));
        let mut m = b"NTLMSSP\0".to_vec();
        m.extend(3u32.to_le_bytes());
        let header = 64u32;
        let field = |len: usize, offset: u32| -> Vec<u8> {
            [(len as u16).to_le_bytes(), (len as u16).to_le_bytes()]
                .concat()
                .into_iter()
                .chain(offset.to_le_bytes())
                .collect()
        };
        m.extend(field(0, header)); // LM response
        m.extend(field(0, header)); // NT response
        m.extend(field(d.len(), header)); // domain, at 28
        m.extend(field(u.len(), header + d.len() as u32)); // user, at 36
        m.extend(field(0, header)); // workstation
        m.extend(field(0, header)); // session key
        m.extend(1u32.to_le_bytes()); // flags: unicode
        assert_eq!(m.len(), header as usize);
        m.extend(d);
        m.extend(u);
        m
    }

    fn sasl_bind(id: u8, credentials: &[u8]) -> Vec<u8> {
        let sasl = der(
            0xa3,
            &[der(0x04, b"GSS-SPNEGO"), der(0x04, credentials)].concat(),
        );
        let op = [der(0x02, &[3]), der(0x04, b""), sasl].concat();
        message(id, der(0x60, &op))
    }

    fn response(id: u8, code: u8) -> Vec<u8> {
        let op = [
            der(0x0a, &[code]),
            der(0x04, b""),
            der(0x04, b"80090308: LdapErr"),
        ]
        .concat();
        message(id, der(0x61, &op))
    }

    #[test]
    fn binds_name_their_account_and_responses_their_result() {
        assert_eq!(
            binds(&simple_bind(1, "CN=Alice,DC=corp")),
            [Bind::Request {
                account: Some("cn=alice,dc=corp".into())
            }]
        );
        let ntlm = [b"\xa1\x82junk".to_vec(), ntlm_authenticate("CORP", "Bob")].concat();
        assert_eq!(
            binds(&sasl_bind(2, &ntlm)),
            [Bind::Request {
                account: Some("corp\\bob".into())
            }]
        );
        // Two messages in one sample; a search request is not a bind.
        let search = message(4, der(0x63, &der(0x04, b"DC=corp")));
        let both = [response(2, 49), search, response(3, 0)].concat();
        assert_eq!(
            binds(&both),
            [Bind::Response { result: 49 }, Bind::Response { result: 0 }]
        );
        for junk in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"GET / HTTP/1.1",
        ] {
            assert!(binds(junk).is_empty());
        }
        let whole = sasl_bind(2, &ntlm);
        for n in 0..whole.len() {
            let _ = binds(&whole[..n]);
            let _ = binds(&whole[n..]);
        }
    }

    #[test]
    fn a_refusal_names_the_account_the_connection_bound_as() {
        let ev = |to_server: bool, payload: Vec<u8>| Event {
            ts: SECOND,
            src: (if to_server { "10.0.0.5" } else { "10.0.0.9" })
                .parse()
                .unwrap(),
            dst: (if to_server { "10.0.0.9" } else { "10.0.0.5" })
                .parse()
                .unwrap(),
            sport: if to_server { 50000 } else { LDAP_PORT },
            dport: if to_server { LDAP_PORT } else { 50000 },
            protocol: PROTO_TCP,
            kind: Kind::Data,
            payload,
        };
        let mut b = LdapBinds::default();
        // NTLM: negotiate (no account), challenge (in progress, 14),
        // authenticate, refused.
        assert!(b
            .observe(&ev(true, sasl_bind(1, b"NTLMSSP\0\x01\0\0\0")))
            .is_empty());
        assert!(b.observe(&ev(false, response(1, 14))).is_empty());
        assert!(b
            .observe(&ev(true, sasl_bind(2, &ntlm_authenticate("CORP", "carol"))))
            .is_empty());
        let refused = b.observe(&ev(false, response(2, 49)));
        assert_eq!(
            refused,
            [Refused {
                ts: SECOND,
                client: "10.0.0.5".parse().unwrap(),
                server: "10.0.0.9".parse().unwrap(),
                port: LDAP_PORT,
                account: Some("corp\\carol".into()),
            }]
        );
        // Success is no refusal.
        assert!(b.observe(&ev(false, response(3, 0))).is_empty());
    }
}
