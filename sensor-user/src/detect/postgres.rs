//! PostgreSQL's logon, read from its samples [PostgreSQL Frontend/Backend
//! Protocol 3.0, "Message Formats"]: the client's StartupMessage names the
//! account (its "user" parameter); an ErrorResponse whose SQLSTATE is
//! 28P01 (invalid_password) or 28000 (invalid_authorization_specification)
//! refuses it [PostgreSQL "Error Codes", class 28]. A connection that
//! switches to TLS shows neither.

use super::logons::Step;

pub use sensor_common::telemetry::POSTGRES_PORT;
/// Protocol version 3.0 as a StartupMessage states it.
const PROTOCOL_3: u32 = 196_608;
const REFUSALS: [&str; 2] = ["28P01", "28000"];
const MAX_NAME: usize = 64;

/// The "user" parameter of a StartupMessage: length (4), version (4),
/// then NUL-terminated name and value pairs.
fn startup_user(sample: &[u8]) -> Option<String> {
    let version = u32::from_be_bytes(sample.get(4..8)?.try_into().ok()?);
    if version != PROTOCOL_3 {
        return None;
    }
    let mut fields = sample.get(8..)?.split(|b| *b == 0);
    for _ in 0..16 {
        let name = fields.next()?;
        let value = fields.next()?;
        if name == b"user" {
            let value = super::text::printable(&String::from_utf8_lossy(value));
            return Some(value.chars().take(MAX_NAME).collect());
        }
    }
    None
}

/// Whether the sample opens with an ErrorResponse ('E', length, then
/// fields of a type byte and a NUL-terminated string) whose code ('C') is
/// a refused logon.
fn refused(sample: &[u8]) -> bool {
    if sample.first() != Some(&b'E') {
        return false;
    }
    sample
        .get(5..)
        .unwrap_or_default()
        .split(|b| *b == 0)
        .take(16)
        .any(|field| {
            field.first() == Some(&b'C')
                && REFUSALS.iter().any(|code| &field[1..] == code.as_bytes())
        })
}

/// The logon steps of a sample (`logons`).
pub fn logon_steps(sample: &[u8]) -> Vec<Step> {
    if refused(sample) {
        return vec![Step::Refused];
    }
    startup_user(sample)
        .map(|user| vec![Step::Tried(Some(user))])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::logons::{tests::*, Logons};

    #[test]
    fn an_invalid_password_names_the_account_tried() {
        let params = b"user\0postgres\0database\0postgres\0\0";
        let mut startup = ((8 + params.len()) as u32).to_be_bytes().to_vec();
        startup.extend_from_slice(&PROTOCOL_3.to_be_bytes());
        startup.extend_from_slice(params);
        let fields =
            b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"postgres\"\0\0";
        let mut error = vec![b'E'];
        error.extend_from_slice(&((4 + fields.len()) as u32).to_be_bytes());
        error.extend_from_slice(fields);
        let mut logons = Logons::new(POSTGRES_PORT, logon_steps);
        let steps = [
            sample(POSTGRES_PORT, true, startup),
            sample(POSTGRES_PORT, false, b"R\0\0\0\x08\0\0\0\x03".to_vec()),
            sample(POSTGRES_PORT, false, error),
        ];
        let refused: Vec<_> = steps.iter().flat_map(|e| logons.observe(e)).collect();
        assert_eq!(refused, [refusal(POSTGRES_PORT, "postgres")]);
        // An SSLRequest names nobody; another error refuses nothing.
        assert_eq!(logon_steps(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]), []);
        assert_eq!(logon_steps(b"E\0\0\0\x10C42P01\0\0"), []);
    }
}
