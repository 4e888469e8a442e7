//! SMB2 and SMB3 messages [MS-SMB2 2.2] in payload samples, as far as the
//! detectors need them: which share a client connects to, which files it
//! opens there for writing, and which logons the server refused (SMB1's
//! too [MS-CIFS 2.2.4.53]). Encrypted messages (SMB3's transform header)
//! say nothing and are skipped.

use super::{logons::Step, ntlm::ntlm_user};

/// What a sample's SMB2 messages say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// TREE_CONNECT request: the share's UNC path, lower-cased.
    TreeConnect { message_id: u64, path: String },
    /// TREE_CONNECT response: the tree id the server gave.
    TreeConnected { message_id: u64, tree_id: u32 },
    /// CREATE request that may write: the file's name, lower-cased.
    CreateForWrite { tree_id: u32, name: String },
    /// SESSION_SETUP request (SMB2, or SMB1's SESSION_SETUP_ANDX): a
    /// logon, with the account its NTLM AUTHENTICATE names (Kerberos and
    /// an NTLM exchange's first leg name nobody in clear).
    SessionSetup { account: Option<String> },
    /// SESSION_SETUP response refusing the logon (`REFUSED_LOGONS`).
    LogonRefused { status: u32 },
}

/// The SMB2 header's size and the commands read [MS-SMB2 2.2.1].
const HEADER: usize = 64;
const TREE_CONNECT: u16 = 0x0003;
const CREATE: u16 = 0x0005;
/// The header flag of a response.
const SERVER_TO_REDIR: u32 = 0x1;
/// STATUS_SUCCESS.
const SUCCESS: u32 = 0;
const SESSION_SETUP: u16 = 0x0001;

/// SMB1's header [MS-CIFS 2.2.3.1]: its size, SESSION_SETUP_ANDX, the
/// reply flag and the NT-status flag.
const SMB1_HEADER: usize = 32;
const SMB1_SESSION_SETUP_ANDX: u8 = 0x73;
const SMB1_FLAGS_REPLY: u8 = 0x80;
const SMB1_FLAGS2_NT_STATUS: u16 = 0x4000;

/// The statuses of a logon refused for its credentials [MS-ERREF 2.3.1]:
/// STATUS_LOGON_FAILURE (what servers answer a wrong password or an
/// unknown account with), STATUS_WRONG_PASSWORD, STATUS_NO_SUCH_USER,
/// STATUS_ACCOUNT_LOCKED_OUT and STATUS_ACCOUNT_DISABLED: the failures
/// Windows logs as event 4625 that guessing produces. Not
/// STATUS_MORE_PROCESSING_REQUIRED, the ordinary middle of an exchange.
pub const REFUSED_LOGONS: [u32; 5] = [
    0xC000_006D,
    0xC000_006A,
    0xC000_0064,
    0xC000_0234,
    0xC000_0072,
];

/// Access that writes [MS-SMB2 2.2.13.1.1]: FILE_WRITE_DATA,
/// FILE_APPEND_DATA, GENERIC_WRITE, GENERIC_ALL (not MAXIMUM_ALLOWED,
/// with which Explorer opens files to read them).
const WRITE_ACCESS: u32 = 0x0000_0002 | 0x0000_0004 | 0x4000_0000 | 0x1000_0000;
/// Dispositions that create or replace [MS-SMB2 2.2.13]: FILE_SUPERSEDE,
/// FILE_CREATE, FILE_OPEN_IF, FILE_OVERWRITE, FILE_OVERWRITE_IF.
const CREATES: [u32; 5] = [0, 2, 3, 4, 5];

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

/// A UTF-16LE string at `offset` (from the header's start), lower-cased
/// (escaped only when shown: `text::printable`).
fn utf16(m: &[u8], offset: usize, len: usize) -> Option<String> {
    let raw = m.get(offset..offset.checked_add(len)?)?;
    Some(super::text::utf16le(raw).to_lowercase())
}

/// The session messages of a sample of an SMB connection, each behind a
/// 4-byte session header [MS-SMB2 2.1, RFC 1002 4.3.1] (cut at the
/// sample's end), as long as what is left holds `min` bytes past one.
pub fn frames(sample: &[u8], min: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = sample;
    while rest.len() >= 4 + min && rest[0] == 0 {
        let len = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
        out.push(&rest[4..(4 + len).min(rest.len())]);
        if 4 + len >= rest.len() {
            break;
        }
        rest = &rest[4 + len..];
    }
    out
}

/// The SMB2 messages of a sample of a direct-TCP SMB connection
/// (compounded ones chained by NextCommand).
pub fn messages(sample: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    for frame in frames(sample, SMB1_HEADER) {
        if frame.starts_with(b"\xffSMB") {
            out.extend(smb1_session(frame));
            continue;
        }
        let mut at = 0;
        // Compounded messages; bounded by the frame.
        for _ in 0..16 {
            let Some(m) = frame.get(at..) else { break };
            if !m.starts_with(b"\xfeSMB") {
                break;
            }
            if let Some(message) = message(m) {
                out.push(message);
            }
            match u32_at(m, 20) {
                Some(next) if next as usize >= HEADER => at += next as usize,
                _ => break,
            }
        }
    }
    out
}

fn message(m: &[u8]) -> Option<Message> {
    let command = u16_at(m, 12)?;
    let flags = u32_at(m, 16)?;
    let message_id = u64_at(m, 24)?;
    let response = flags & SERVER_TO_REDIR != 0;
    let body = HEADER;
    match (command, response) {
        (TREE_CONNECT, false) => {
            let (offset, len) = (u16_at(m, body + 4)? as usize, u16_at(m, body + 6)? as usize);
            Some(Message::TreeConnect {
                message_id,
                path: utf16(m, offset, len)?,
            })
        }
        (TREE_CONNECT, true) if u32_at(m, 8)? == SUCCESS => Some(Message::TreeConnected {
            message_id,
            tree_id: u32_at(m, 36)?,
        }),
        (SESSION_SETUP, false) => {
            let (offset, len) = (
                u16_at(m, body + 12)? as usize,
                u16_at(m, body + 14)? as usize,
            );
            let blob = m.get(offset..offset.checked_add(len)?.min(m.len()))?;
            Some(Message::SessionSetup {
                account: ntlm_user(blob),
            })
        }
        (SESSION_SETUP, true) => refused(u32_at(m, 8)?),
        (CREATE, false) => {
            let access = u32_at(m, body + 24)?;
            let disposition = u32_at(m, body + 36)?;
            if access & WRITE_ACCESS == 0 && !CREATES.contains(&disposition) {
                return None;
            }
            let (offset, len) = (
                u16_at(m, body + 44)? as usize,
                u16_at(m, body + 46)? as usize,
            );
            Some(Message::CreateForWrite {
                tree_id: u32_at(m, 36)?,
                name: utf16(m, offset, len)?,
            })
        }
        _ => None,
    }
}

fn refused(status: u32) -> Option<Message> {
    REFUSED_LOGONS
        .contains(&status)
        .then_some(Message::LogonRefused { status })
}

/// An SMB1 SESSION_SETUP_ANDX request or its refusal (an NT status: the
/// DOS error form is not read).
fn smb1_session(m: &[u8]) -> Option<Message> {
    if *m.get(4)? != SMB1_SESSION_SETUP_ANDX {
        return None;
    }
    let flags2 = u16_at(m, 10)?;
    if *m.get(9)? & SMB1_FLAGS_REPLY == 0 {
        return Some(Message::SessionSetup {
            account: ntlm_user(m.get(SMB1_HEADER..)?),
        });
    }
    match flags2 & SMB1_FLAGS2_NT_STATUS {
        0 => None,
        _ => refused(u32_at(m, 5)?),
    }
}

pub use sensor_common::telemetry::SMB_PORT;

/// The logon steps of a sample of an SMB connection (`logons`).
pub fn logon_steps(sample: &[u8]) -> Vec<Step> {
    messages(sample)
        .into_iter()
        .filter_map(|m| match m {
            Message::SessionSetup { account } => Some(Step::Tried(account)),
            Message::LogonRefused { .. } => Some(Step::Refused),
            _ => None,
        })
        .collect()
}

/// An administrative share: ADMIN$ or a drive's (C$, D$, ...), which only
/// administrators reach [MS-SRVS 2.2.2.4, STYPE_SPECIAL]. IPC$ carries
/// named pipes, not files.
pub fn is_admin_share(path: &str) -> bool {
    let share = path.rsplit('\\').next().unwrap_or("");
    share == "admin$"
        || (share.len() == 2 && share.ends_with('$') && share.as_bytes()[0].is_ascii_alphabetic())
}

/// The share named pipes are opened on [MS-SMB2 3.3.5.9: IPC$].
pub fn is_ipc_share(path: &str) -> bool {
    path.rsplit('\\').next() == Some("ipc$")
}

/// Files that run: programs, libraries, drivers and scripts.
pub fn is_executable(name: &str) -> bool {
    const RUNS: [&str; 12] = [
        ".exe", ".dll", ".sys", ".scr", ".com", ".ps1", ".bat", ".cmd", ".vbs", ".js", ".hta",
        ".msi",
    ];
    RUNS.iter().any(|ext| name.ends_with(ext))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    fn utf16le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    }

    /// An SMB2 header.
    fn header(command: u16, response: bool, message_id: u64, tree_id: u32) -> Vec<u8> {
        let mut h = vec![0u8; HEADER];
        h[..4].copy_from_slice(b"\xfeSMB");
        h[4..6].copy_from_slice(&64u16.to_le_bytes());
        h[12..14].copy_from_slice(&command.to_le_bytes());
        h[16..20].copy_from_slice(&(response as u32).to_le_bytes());
        h[24..32].copy_from_slice(&message_id.to_le_bytes());
        h[36..40].copy_from_slice(&tree_id.to_le_bytes());
        h
    }

    fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
        let m = messages.concat();
        let mut v = (m.len() as u32).to_be_bytes().to_vec();
        v[0] = 0;
        v.extend(m);
        v
    }

    pub fn tree_connect(message_id: u64, path: &str) -> Vec<u8> {
        let mut m = header(TREE_CONNECT, false, message_id, 0);
        let p = utf16le(path);
        let mut body = vec![0u8; 8];
        body[..2].copy_from_slice(&9u16.to_le_bytes());
        body[4..6].copy_from_slice(&((HEADER + 8) as u16).to_le_bytes());
        body[6..8].copy_from_slice(&(p.len() as u16).to_le_bytes());
        m.extend(body);
        m.extend(p);
        framed(&[m])
    }

    pub fn tree_connected(message_id: u64, tree_id: u32) -> Vec<u8> {
        let mut m = header(TREE_CONNECT, true, message_id, tree_id);
        m.extend([16, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        framed(&[m])
    }

    pub fn create(tree_id: u32, name: &str, access: u32, disposition: u32) -> Vec<u8> {
        let mut m = header(CREATE, false, 9, tree_id);
        let n = utf16le(name);
        let mut body = vec![0u8; 56];
        body[..2].copy_from_slice(&57u16.to_le_bytes());
        body[24..28].copy_from_slice(&access.to_le_bytes());
        body[36..40].copy_from_slice(&disposition.to_le_bytes());
        body[44..46].copy_from_slice(&((HEADER + 56) as u16).to_le_bytes());
        body[46..48].copy_from_slice(&(n.len() as u16).to_le_bytes());
        m.extend(body);
        m.extend(n);
        framed(&[m])
    }

    #[test]
    fn tree_connects_and_creates_for_writing_are_read() {
        assert_eq!(
            messages(&tree_connect(7, "\\\\WS2\\C$")),
            [Message::TreeConnect {
                message_id: 7,
                path: "\\\\ws2\\c$".into()
            }]
        );
        assert_eq!(
            messages(&tree_connected(7, 5)),
            [Message::TreeConnected {
                message_id: 7,
                tree_id: 5
            }]
        );
        // GENERIC_WRITE, FILE_OVERWRITE_IF.
        assert_eq!(
            messages(&create(5, "Windows\\Temp\\MIMIKATZ.EXE", 0x4000_0000, 5)),
            [Message::CreateForWrite {
                tree_id: 5,
                name: "windows\\temp\\mimikatz.exe".into()
            }]
        );
        // FILE_READ_DATA, FILE_OPEN: a read.
        assert!(messages(&create(5, "a.exe", 0x1, 1)).is_empty());
        // Two frames in one sample.
        let both = [tree_connect(1, "\\\\h\\IPC$"), tree_connected(1, 2)].concat();
        assert_eq!(messages(&both).len(), 2);
        // SMB3 encrypted, SMB1, junk: nothing.
        let mut encrypted = tree_connect(1, "\\\\h\\C$");
        encrypted[4] = 0xfd;
        for junk in [
            encrypted,
            b"\x00\x00\x00\x45\xffSMBr".to_vec(),
            vec![0; 100],
        ] {
            assert!(messages(&junk).is_empty());
        }
        let whole = create(5, "x.exe", 2, 2);
        for n in 0..whole.len() {
            let _ = messages(&whole[..n]);
        }
    }

    /// An SMB2 SESSION_SETUP request carrying `blob`.
    pub fn session_setup(blob: &[u8]) -> Vec<u8> {
        let mut m = header(SESSION_SETUP, false, 3, 0);
        let mut body = vec![0u8; 24];
        body[..2].copy_from_slice(&25u16.to_le_bytes());
        body[12..14].copy_from_slice(&((HEADER + 24) as u16).to_le_bytes());
        body[14..16].copy_from_slice(&(blob.len() as u16).to_le_bytes());
        m.extend(body);
        m.extend(blob);
        framed(&[m])
    }

    /// An SMB2 SESSION_SETUP response with `status`.
    pub fn session_answer(status: u32) -> Vec<u8> {
        let mut m = header(SESSION_SETUP, true, 3, 0);
        m[8..12].copy_from_slice(&status.to_le_bytes());
        m.extend([9, 0, 0, 0, 0, 0, 0, 0, 0]);
        framed(&[m])
    }

    /// An SMB1 SESSION_SETUP_ANDX request carrying `blob`, or a reply
    /// with an NT status.
    fn smb1_session(reply: Option<u32>, blob: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; SMB1_HEADER];
        m[..4].copy_from_slice(b"\xffSMB");
        m[4] = SMB1_SESSION_SETUP_ANDX;
        m[10..12].copy_from_slice(&(SMB1_FLAGS2_NT_STATUS | 0x0800).to_le_bytes());
        if let Some(status) = reply {
            m[9] = SMB1_FLAGS_REPLY;
            m[5..9].copy_from_slice(&status.to_le_bytes());
        }
        m.push(12);
        m.extend([0u8; 24]);
        m.extend((blob.len() as u16).to_le_bytes());
        m.extend(blob);
        framed(&[m])
    }

    #[test]
    fn logons_and_their_refusals_are_read_in_smb2_and_smb1() {
        use crate::detect::ntlm::tests::ntlm_authenticate;
        let spnego = [
            b"\xa1\x82\x01\x00junk".to_vec(),
            ntlm_authenticate("CITY", "Ann"),
        ]
        .concat();
        let tried = Message::SessionSetup {
            account: Some("city\\ann".into()),
        };
        assert_eq!(
            messages(&session_setup(&spnego)),
            std::slice::from_ref(&tried)
        );
        assert_eq!(messages(&smb1_session(None, &spnego)), [tried]);
        // Kerberos, or NTLM's first leg: a logon naming nobody.
        assert_eq!(
            messages(&session_setup(b"\x60\x82krb5")),
            [Message::SessionSetup { account: None }]
        );
        let refusal = Message::LogonRefused {
            status: 0xC000_006D,
        };
        assert_eq!(
            messages(&session_answer(0xC000_006D)),
            std::slice::from_ref(&refusal)
        );
        assert_eq!(messages(&smb1_session(Some(0xC000_006D), &[])), [refusal]);
        // Success and STATUS_MORE_PROCESSING_REQUIRED are no refusal.
        for status in [0, 0xC000_0016] {
            assert!(messages(&session_answer(status)).is_empty());
            assert!(messages(&smb1_session(Some(status), &[])).is_empty());
        }
        let whole = smb1_session(None, &spnego);
        for n in 0..whole.len() {
            let _ = messages(&whole[..n]);
            let _ = messages(&session_setup(&spnego)[..n]);
        }
    }

    #[test]
    fn a_refusal_names_the_account_its_connection_tried() {
        use crate::detect::{
            logons::{tests::*, Logons},
            ntlm::tests::ntlm_authenticate,
        };
        let ev = |to_server, payload| sample(SMB_PORT, to_server, payload);
        let mut logons = Logons::new(SMB_PORT, logon_steps);
        let auth = session_setup(&ntlm_authenticate("CITY", "bob"));
        assert!(logons.observe(&ev(true, auth)).is_empty());
        assert_eq!(
            logons.observe(&ev(false, session_answer(0xC000_006D))),
            [refusal(SMB_PORT, "city\\bob")]
        );
        // A refusal sent by the client's side is not the server's.
        assert!(logons
            .observe(&ev(true, session_answer(0xC000_006D)))
            .is_empty());
        assert!(logons.observe(&ev(false, session_answer(0))).is_empty());
    }

    #[test]
    fn admin_shares_and_executables() {
        for share in ["\\\\h\\admin$", "\\\\10.0.0.9\\c$", "\\\\h\\d$"] {
            assert!(is_admin_share(share), "{share}");
        }
        for share in ["\\\\h\\ipc$", "\\\\h\\print$", "\\\\h\\data", "\\\\h\\c"] {
            assert!(!is_admin_share(share), "{share}");
        }
        assert!(is_executable("windows\\psexesvc.exe"));
        assert!(is_executable("temp\\run.ps1"));
        assert!(!is_executable("docs\\report.docx"));
    }
}
