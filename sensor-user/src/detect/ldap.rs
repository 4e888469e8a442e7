//! LDAP binds [RFC 4511 4.2], read from payload samples: who a client
//! binds as and whether the server accepted. A bind stays in clear when
//! the session that follows is signed or sealed; the account of an NTLM
//! bind (SASL GSS-SPNEGO, or Microsoft's sicily binds [MS-ADTS 5.1.1.1])
//! is in the NTLM AUTHENTICATE message it carries [MS-NLMP 2.2.1.3].

use super::{
    der::{elements, integer_of, tlv, Tlv},
    logons::Step,
    ntlm::ntlm_user,
};

pub use sensor_common::telemetry::LDAP_PORT;

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

/// The logon steps of a sample of an LDAP connection (`logons`): bind
/// requests, and binds answered invalidCredentials.
pub fn logon_steps(sample: &[u8]) -> Vec<Step> {
    binds(sample)
        .into_iter()
        .filter_map(|bind| match bind {
            Bind::Request { account } => Some(Step::Tried(account)),
            Bind::Response { result } if result == INVALID_CREDENTIALS => Some(Step::Refused),
            Bind::Response { .. } => None,
        })
        .collect()
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::detect::{
        der::tests::der,
        logons::{tests::*, Logons},
        ntlm::tests::ntlm_authenticate,
    };

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
        let ev = |to_server, payload| sample(LDAP_PORT, to_server, payload);
        let mut b = Logons::new(LDAP_PORT, logon_steps);
        // NTLM: negotiate (no account), challenge (in progress, 14),
        // authenticate, refused.
        assert!(b
            .observe(&ev(true, sasl_bind(1, b"NTLMSSP\0\x01\0\0\0")))
            .is_empty());
        assert!(b.observe(&ev(false, response(1, 14))).is_empty());
        assert!(b
            .observe(&ev(true, sasl_bind(2, &ntlm_authenticate("CORP", "carol"))))
            .is_empty());
        assert_eq!(
            b.observe(&ev(false, response(2, 49))),
            [refusal(LDAP_PORT, "corp\\carol")]
        );
        // Success is no refusal.
        assert!(b.observe(&ev(false, response(3, 0))).is_empty());
    }
}
