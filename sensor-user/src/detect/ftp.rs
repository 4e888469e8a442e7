//! FTP's control connection [RFC 959], read from its samples: the account a
//! client logs on as (`USER`), the server's refusal (reply 530, "Not logged
//! in" [RFC 959 4.2.2]), and the files a client stores (`STOR`, `APPE`,
//! `STOU` [RFC 959 4.1.3]).

use super::{logons::Step, text::printable};

pub use sensor_common::telemetry::FTP_PORT;

/// FTP commands that store a file on the server.
const STORE_COMMANDS: [&str; 3] = ["STOR", "APPE", "STOU"];
/// The longest name (account, file) kept.
const MAX_NAME: usize = 120;

/// The lines of a sample: commands from the client, replies from the
/// server, split at CRLF (a sample may hold several, or cut one short).
fn lines(sample: &[u8]) -> impl Iterator<Item = String> + '_ {
    sample
        .split(|b| *b == b'\n')
        .take(32)
        .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
}

/// A command's verb, upper-cased, and its argument (printable, bounded).
fn command(line: &str) -> (String, String) {
    let (verb, argument) = line.split_once(' ').unwrap_or((line, ""));
    (
        verb.trim().to_ascii_uppercase(),
        printable(argument.trim()).chars().take(MAX_NAME).collect(),
    )
}

/// The logon steps of a sample (`logons`): `USER` from the client, 530
/// from the server.
pub fn logon_steps(sample: &[u8]) -> Vec<Step> {
    lines(sample)
        .filter_map(|line| {
            if line.starts_with("530") {
                return Some(Step::Refused);
            }
            let (verb, account) = command(&line);
            (verb == "USER").then_some(Step::Tried(Some(account)))
        })
        .collect()
}

/// The file a client's sample stores on the server, if it holds such a
/// command.
pub fn stored_file(sample: &[u8]) -> Option<String> {
    lines(sample).find_map(|line| {
        let (verb, file) = command(&line);
        STORE_COMMANDS.contains(&verb.as_str()).then_some(file)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::logons::{tests::*, Logons};

    #[test]
    fn a_refused_logon_names_its_account_and_a_store_names_its_file() {
        let mut logons = Logons::new(FTP_PORT, logon_steps);
        let steps = [
            sample(FTP_PORT, false, b"220 (vsFTPd 3.0.3)\r\n".to_vec()),
            sample(FTP_PORT, true, b"USER admin\r\n".to_vec()),
            sample(
                FTP_PORT,
                false,
                b"331 Please specify the password.\r\n".to_vec(),
            ),
            sample(FTP_PORT, true, b"PASS letmein\r\n".to_vec()),
            sample(FTP_PORT, false, b"530 Login incorrect.\r\n".to_vec()),
        ];
        let refused: Vec<_> = steps.iter().flat_map(|e| logons.observe(e)).collect();
        assert_eq!(refused, [refusal(FTP_PORT, "admin")]);
        assert_eq!(
            stored_file(b"TYPE I\r\nSTOR loot.zip\r\n").as_deref(),
            Some("loot.zip")
        );
        assert_eq!(stored_file(b"RETR report.pdf\r\n"), None);
        assert_eq!(logon_steps(b"230 Login successful.\r\n"), []);
    }
}
