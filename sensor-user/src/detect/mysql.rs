//! MySQL's logon, read from its samples [MySQL Client/Server Protocol,
//! "Connection Phase"]: the client's HandshakeResponse41 names the account;
//! the server's ERR packet with error 1045 (ER_ACCESS_DENIED_ERROR,
//! "Access denied for user") refuses it. A connection that switches to
//! TLS (an SSLRequest: the response cut after its 32 fixed bytes) shows
//! neither, and is left to the connection-count rule (`bruteforce`).

use super::logons::Step;

pub use sensor_common::telemetry::MYSQL_PORT;
/// ER_ACCESS_DENIED_ERROR.
const ACCESS_DENIED: u16 = 1045;
/// CLIENT_PROTOCOL_41: the response layout read here.
const CLIENT_PROTOCOL_41: u32 = 0x200;
/// The longest account name kept.
const MAX_NAME: usize = 64;

/// The packets of a sample: (sequence id, payload) [3-byte length, 1-byte
/// sequence id], as many as it holds whole.
fn packets(sample: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(head) = sample.get(at..at + 4) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
        let Some(payload) = sample.get(at + 4..at + 4 + len) else {
            break;
        };
        out.push((head[3], payload));
        at += 4 + len;
        if out.len() >= 8 {
            break;
        }
    }
    out
}

/// The account a HandshakeResponse41 names: capability flags (4), max
/// packet size (4), character set (1), 23 reserved zero bytes, then the
/// user name, NUL-terminated.
fn account(payload: &[u8]) -> Option<String> {
    let caps = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?);
    let reserved = payload.get(9..32)?;
    if caps & CLIENT_PROTOCOL_41 == 0 || reserved.iter().any(|b| *b != 0) {
        return None;
    }
    let rest = payload.get(32..)?;
    let end = rest.iter().position(|b| *b == 0)?;
    let name = super::text::printable(&String::from_utf8_lossy(&rest[..end]));
    Some(name.chars().take(MAX_NAME).collect())
}

/// The logon steps of a sample (`logons`).
pub fn logon_steps(sample: &[u8]) -> Vec<Step> {
    packets(sample)
        .into_iter()
        .filter_map(|(seq, p)| {
            if p.first() == Some(&0xff) && p.get(1..3) == Some(&ACCESS_DENIED.to_le_bytes()[..]) {
                return Some(Step::Refused);
            }
            (seq == 1)
                .then(|| account(p))
                .flatten()
                .map(|a| Step::Tried(Some(a)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::logons::{tests::*, Logons};

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_le_bytes();
        [&len[..3], &[seq], payload].concat()
    }

    #[test]
    fn access_denied_names_the_account_tried() {
        let mut response = 0x000f_a28du32.to_le_bytes().to_vec(); // PROTOCOL_41 set
        response.extend_from_slice(&16_777_216u32.to_le_bytes());
        response.push(33);
        response.extend_from_slice(&[0; 23]);
        response.extend_from_slice(b"root\0\x14");
        response.extend_from_slice(&[7; 20]);
        let denied = [
            &[0xffu8, 0x15, 0x04, b'#'][..],
            b"28000Access denied for user 'root'",
        ]
        .concat();
        let mut logons = Logons::new(MYSQL_PORT, logon_steps);
        let steps = [
            sample(MYSQL_PORT, false, packet(0, b"\x0a8.0.36\0")),
            sample(MYSQL_PORT, true, packet(1, &response)),
            sample(MYSQL_PORT, false, packet(2, &denied)),
        ];
        let refused: Vec<_> = steps.iter().flat_map(|e| logons.observe(e)).collect();
        assert_eq!(refused, [refusal(MYSQL_PORT, "root")]);
        // An OK, another error, a cut packet: nothing.
        assert_eq!(logon_steps(&packet(2, &[0, 0, 0, 2, 0])), []);
        assert_eq!(logon_steps(&packet(2, &[0xff, 0x48, 0x04])), []);
        assert_eq!(logon_steps(&packet(2, &denied)[..6]), []);
    }
}
