//! SMB1 [MS-CIFS] misuse, read from payload samples of SMB connections
//! between inside hosts:
//!
//! - `exploit.smb1_transaction` (T1210): a transaction continued by a
//!   secondary request of another kind (an NT_TRANSACT continued by a
//!   TRANSACTION2_SECONDARY, ...), the type confusion EternalBlue
//!   (CVE-2017-0144, MS17-010) exploits; or TRANS2_SESSION_SETUP, a
//!   Trans2 subcommand the specification reserves and no client sends,
//!   which the DoublePulsar implant answers. Score 85.
//!
//! A client offering SMB1 alone, although it speaks SMB2, is not judged:
//! Windows 10 does so to browse (RAP needs SMB1), towards servers that
//! speak SMB2 (a benign Arkime capture shows it).

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use super::{
    event::{Connection, Event, Kind, Nanos, PROTO_TCP, SECOND},
    window::{cap_oldest, limit_reported},
    Evidence,
};

/// SMB over TCP [MS-SMB2 2.1], and over NetBIOS [RFC 1002].
const SMB_PORTS: [u16; 2] = [445, 139];

/// The SMB1 header [MS-CIFS 2.2.3.1] and the fields read.
const HEADER: usize = 32;
const FLAGS: usize = 9;
const MID: usize = 30;
/// SMB_FLAGS_REPLY.
const REPLY: u8 = 0x80;

/// Commands [MS-CIFS 2.2.2.1].
const TRANSACTION: u8 = 0x25;
const TRANSACTION_SECONDARY: u8 = 0x26;
const TRANSACTION2: u8 = 0x32;
const TRANSACTION2_SECONDARY: u8 = 0x33;
const NT_TRANSACT: u8 = 0xa0;
const NT_TRANSACT_SECONDARY: u8 = 0xa1;

/// TRANS2_SESSION_SETUP [MS-CIFS 2.2.6.16]: "reserved but not implemented".
const TRANS2_SESSION_SETUP: u16 = 0x000e;

/// A transaction left unfinished this long is forgotten.
const PENDING_FOR: Nanos = 3600 * SECOND;
/// Connections with SMB1 transactions in flight.
const CONNECTIONS: usize = 1 << 14;
/// Transactions followed per connection (a client has a few in flight).
const PENDING: usize = 8;

/// What one SMB1 request says, as far as the detector reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A transaction's primary request, with a Trans2 request's subcommand.
    Primary {
        command: u8,
        mid: u16,
        subcommand: Option<u16>,
    },
    /// A secondary request continuing the transaction of `mid`.
    Secondary { command: u8, mid: u16 },
}

/// The SMB1 requests in a sample (`smb::frames`).
pub fn requests(sample: &[u8]) -> Vec<Request> {
    super::smb::frames(sample, HEADER)
        .into_iter()
        .filter(|m| m.starts_with(b"\xffSMB") && m.get(FLAGS).is_some_and(|f| f & REPLY == 0))
        .filter_map(request)
        .collect()
}

fn request(m: &[u8]) -> Option<Request> {
    let command = *m.get(4)?;
    let mid = u16::from_le_bytes(m.get(MID..MID + 2)?.try_into().ok()?);
    let words = *m.get(HEADER)? as usize;
    // Parameter words follow the count; the byte count and bytes follow
    // them [MS-CIFS 2.2.3.2, 2.2.3.3].
    let word = |i: usize| -> Option<u16> {
        let at = HEADER + 1 + 2 * i;
        Some(u16::from_le_bytes(m.get(at..at + 2)?.try_into().ok()?))
    };
    match command {
        TRANSACTION | NT_TRANSACT => Some(Request::Primary {
            command,
            mid,
            subcommand: None,
        }),
        // TRANSACTION2: fourteen words, then the setup words; the first
        // is the subcommand [MS-CIFS 2.2.4.46.1].
        TRANSACTION2 => Some(Request::Primary {
            command,
            mid,
            subcommand: if words > 14 { word(14) } else { None },
        }),
        TRANSACTION_SECONDARY | TRANSACTION2_SECONDARY | NT_TRANSACT_SECONDARY => {
            Some(Request::Secondary { command, mid })
        }
        _ => None,
    }
}

/// The primary command a secondary continues [MS-CIFS 3.3.5.x: the
/// secondary of each transaction kind].
fn primary_of(secondary: u8) -> u8 {
    match secondary {
        TRANSACTION_SECONDARY => TRANSACTION,
        TRANSACTION2_SECONDARY => TRANSACTION2,
        _ => NT_TRANSACT,
    }
}

/// A connection's transactions in flight: (MID, primary command).
struct Pending {
    open: Vec<(u16, u8)>,
    last: Nanos,
}

#[derive(Default)]
pub struct Smb1Detector {
    pending: HashMap<Connection, Pending>,
    reported: HashSet<(IpAddr, IpAddr, &'static str)>,
    pub evicted: u64,
}

impl Smb1Detector {
    /// `inside`: both ends are inside hosts.
    pub fn observe(&mut self, e: &Event, inside: bool, out: &mut Vec<Evidence>) {
        if !inside || e.protocol != PROTO_TCP || !matches!(e.kind, Kind::Data) {
            return;
        }
        if !SMB_PORTS.contains(&e.dport) {
            return;
        }
        for request in requests(&e.payload) {
            match request {
                Request::Primary {
                    subcommand: Some(TRANS2_SESSION_SETUP),
                    ..
                } => self.report(
                    e,
                    "exploit.smb1_transaction",
                    85,
                    "sent TRANS2_SESSION_SETUP, a reserved Trans2 subcommand that DoublePulsar answers",
                    out,
                ),
                Request::Primary { command, mid, .. } => {
                    let key = e.connection();
                    if !self.pending.contains_key(&key) {
                        self.evicted += cap_oldest(&mut self.pending, CONNECTIONS, |p| p.last);
                    }
                    let pending = self.pending.entry(key).or_insert(Pending {
                        open: Vec::new(),
                        last: e.ts,
                    });
                    pending.last = e.ts;
                    pending.open.retain(|(m, _)| *m != mid);
                    if pending.open.len() >= PENDING {
                        pending.open.remove(0);
                    }
                    pending.open.push((mid, command));
                }
                Request::Secondary { command, mid } => {
                    let primary = self
                        .pending
                        .get(&e.connection())
                        .and_then(|p| p.open.iter().find(|(m, _)| *m == mid))
                        .map(|(_, c)| *c);
                    if primary.is_some_and(|p| p != primary_of(command)) {
                        self.report(
                            e,
                            "exploit.smb1_transaction",
                            85,
                            "continued an SMB1 transaction with a secondary request of another kind (EternalBlue's type confusion)",
                            out,
                        );
                    }
                }
            }
        }
    }

    fn report(
        &mut self,
        e: &Event,
        detector: &'static str,
        score: u8,
        what: &str,
        out: &mut Vec<Evidence>,
    ) {
        limit_reported(&mut self.reported);
        if !self.reported.insert((e.src, e.dst, detector)) {
            return;
        }
        out.push(Evidence {
            host: e.src,
            detector,
            technique: "T1210",
            score,
            ts: e.ts,
            since: e.ts,
            peers: vec![e.dst.to_string()],
            count: 1,
            summary: format!("{what} to {} (port {})", e.dst, e.dport),
        });
    }

    /// Forgets what is older than a day.
    pub fn prune(&mut self, now: Nanos) {
        let since = now.saturating_sub(PENDING_FOR);
        self.pending.retain(|_, p| p.last >= since);
        super::window::fit(&mut self.pending);
    }

    pub fn size(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SMB1 request behind a session header: `command`, `mid`, the
    /// parameter words and the bytes.
    fn smb1(command: u8, mid: u16, words: &[u16], bytes: &[u8]) -> Vec<u8> {
        let mut m = b"\xffSMB".to_vec();
        m.push(command);
        m.extend([0; 4]); // status
        m.push(0x18); // flags: a request
        m.extend([0x01, 0xc8]); // flags2
        m.extend([0; 18]); // PIDHigh, signature, reserved, TID, PIDLow, UID
        m.extend(mid.to_le_bytes());
        assert_eq!(m.len(), HEADER);
        m.push(words.len() as u8);
        for w in words {
            m.extend(w.to_le_bytes());
        }
        m.extend((bytes.len() as u16).to_le_bytes());
        m.extend(bytes);
        let mut framed = vec![0, 0];
        framed.extend((m.len() as u16).to_be_bytes());
        framed.extend(m);
        framed
    }

    /// A Trans2 primary with `subcommand` as its setup word.
    fn trans2(mid: u16, subcommand: u16) -> Vec<u8> {
        let mut words = vec![0u16; 14];
        words[13] = 1; // SetupCount
        words.push(subcommand);
        smb1(TRANSACTION2, mid, &words, &[])
    }

    fn event(secs: u64, src: &str, payload: Vec<u8>) -> Event {
        Event {
            ts: secs * SECOND,
            src: src.parse().unwrap(),
            dst: "10.0.0.9".parse().unwrap(),
            sport: 50000,
            dport: 445,
            protocol: PROTO_TCP,
            kind: Kind::Data,
            payload,
        }
    }

    fn run(events: &[Event]) -> Vec<(&'static str, u8)> {
        let mut d = Smb1Detector::default();
        let mut out = Vec::new();
        for e in events {
            d.observe(e, true, &mut out);
        }
        out.iter().map(|e| (e.detector, e.score)).collect()
    }

    #[test]
    fn dialects_and_transactions_are_read() {
        assert_eq!(
            requests(&trans2(7, 0x0005)),
            [Request::Primary {
                command: TRANSACTION2,
                mid: 7,
                subcommand: Some(0x0005)
            }]
        );
        // Two messages in one sample; a reply is not a request.
        let mut two = smb1(NT_TRANSACT_SECONDARY, 3, &[0; 18], &[]);
        two.extend(smb1(TRANSACTION_SECONDARY, 4, &[0; 8], &[]));
        assert_eq!(requests(&two).len(), 2);
        let mut reply = trans2(9, 0x0001);
        reply[4 + FLAGS] |= REPLY;
        assert!(requests(&reply).is_empty());
        // Cut anywhere: no panic.
        for cut in 0..two.len() {
            let _ = requests(&two[..cut]);
        }
    }

    #[test]
    fn a_secondary_of_another_kind_is_eternalblue_s_confusion() {
        let eternalblue = [
            event(1, "10.0.0.5", smb1(NT_TRANSACT, 64, &[0; 19], &[])),
            event(
                1,
                "10.0.0.5",
                smb1(TRANSACTION2_SECONDARY, 64, &[0; 9], &[]),
            ),
            event(
                2,
                "10.0.0.5",
                smb1(TRANSACTION2_SECONDARY, 64, &[0; 9], &[]),
            ),
        ];
        assert_eq!(run(&eternalblue), [("exploit.smb1_transaction", 85)]);
        // A Trans2 continued as a Trans2, a secondary of no transaction
        // seen (the capture began later): ordinary.
        let ordinary = [
            event(1, "10.0.0.5", trans2(8, 0x0001)),
            event(1, "10.0.0.5", smb1(TRANSACTION2_SECONDARY, 8, &[0; 9], &[])),
            event(
                2,
                "10.0.0.5",
                smb1(NT_TRANSACT_SECONDARY, 99, &[0; 18], &[]),
            ),
        ];
        assert!(run(&ordinary).is_empty());
    }

    #[test]
    fn the_reserved_trans2_session_setup_is_doublepulsar_s() {
        assert_eq!(
            run(&[event(1, "10.0.0.5", trans2(81, TRANS2_SESSION_SETUP))]),
            [("exploit.smb1_transaction", 85)]
        );
        // FIND_FIRST2, QUERY_PATH_INFORMATION: what clients send.
        assert!(run(&[
            event(1, "10.0.0.5", trans2(1, 0x0001)),
            event(1, "10.0.0.5", trans2(2, 0x0005))
        ])
        .is_empty());
    }
}
