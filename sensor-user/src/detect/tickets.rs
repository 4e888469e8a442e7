//! Credential attacks seen in what clients ask a Kerberos KDC and what it
//! refuses (`kerberos` reads the messages):
//!
//! - `credential.kerberoast` (T1558.003): a service ticket is encrypted
//!   with the service account's key; as RC4 it can be cracked offline
//!   against the account's password. A request offering RC4 only (Rubeus,
//!   Impacket's GetUserSPNs ask so; Windows clients since Vista offer the
//!   AES types first) alerts alone; RC4 tickets the KDC issued (for
//!   accounts with no AES key, as Invoke-Kerberoast gets through the
//!   Windows API) count towards the strong form: tickets for many
//!   services within minutes, the pattern of Windows event 4769 with
//!   encryption type 0x17 that Kerberoasting detections count.
//! - `credential.asrep_roast` (T1558.004): a TGT asked for without
//!   pre-authentication and with RC4 only: for an account that does not
//!   require pre-authentication the reply is crackable (GetNPUsers,
//!   Rubeus asreproast).
//! - `credential.overpass_the_hash` (T1550.002): a TGT asked for with
//!   pre-authentication computed with RC4 only: a client that holds the
//!   account's NT hash and not its password (Rubeus asktgt /rc4, mimikatz
//!   sekurlsa::pth).
//! - `bruteforce.spray` (T1110.003): one client refused (pre-authentication
//!   failed, account revoked) for many distinct accounts; `recon.accounts`
//!   (T1087.002): one client asking for many accounts that do not exist
//!   (kerbrute userenum). SigmaHQ's rules for the Windows events these
//!   errors become (4771 status 0x18, 4768 status 0x6 and 0x12) count more
//!   than 10 distinct accounts from one source in 24 hours, machine
//!   accounts left out.

use std::{collections::HashMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::{
    event::{Event, Kind, Nanos, PROTO_TCP, SECOND},
    kerberos::{self, Message, Request},
    window::{cap_oldest, TimedSet},
    Evidence,
};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KerberosConfig {
    /// More distinct accounts than this refused, or unknown, from one
    /// client within `refused_window_secs`, is spraying or enumeration.
    pub refused_accounts: usize,
    pub refused_window_secs: u64,
    /// Distinct services asked for with RC4 only, from one client within
    /// `kerberoast_window_secs`, from which Kerberoasting is strong.
    pub kerberoast_services: usize,
    pub kerberoast_window_secs: u64,
}

impl Default for KerberosConfig {
    fn default() -> Self {
        KerberosConfig {
            refused_accounts: 10,
            refused_window_secs: 24 * 3600,
            kerberoast_services: 5,
            kerberoast_window_secs: 600,
        }
    }
}

pub use sensor_common::telemetry::KERBEROS_PORT;

/// Clients tracked at once by each table.
const CLIENTS: usize = 1 << 16;

/// Connections whose last sample is kept to join a request body split
/// between segments: a sample is up to 512 bytes, so at most 2 MiB, and a
/// flood of connections to 88 evicts the oldest, never grows it.
const SPLIT_BODIES: usize = 1 << 12;

/// What one client was refused, or asked for, within the windows.
#[derive(Default)]
struct Client {
    /// Accounts refused: wrong password, or revoked (locked, disabled).
    refused: TimedSet<u64>,
    /// Accounts that do not exist.
    unknown: TimedSet<u64>,
    /// Services asked for with RC4 only.
    roasted: TimedSet<u64>,
    /// Count and score already reported, per detector (reported again
    /// each time the count doubles or the score rises).
    reported: Vec<(&'static str, usize, u8)>,
    last: Nanos,
}

pub struct KerberosDetector {
    config: KerberosConfig,
    clients: HashMap<IpAddr, Client>,
    /// The last request on each (client, client port, KDC): a refusal
    /// names the account it refused only when the KDC says so.
    requests: HashMap<(IpAddr, u16, IpAddr), (Option<String>, Nanos)>,
    /// The last sample each client sent on a TCP connection to a KDC.
    previous: HashMap<(IpAddr, u16, IpAddr), (Vec<u8>, Nanos)>,
    names: std::hash::RandomState,
    pub evicted: u64,
}

impl KerberosDetector {
    /// New settings from a reload: they apply from the next event, and
    /// what was learnt so far stays.
    pub fn reconfigure(&mut self, config: KerberosConfig) {
        self.config = config;
    }

    pub fn new(config: KerberosConfig) -> KerberosDetector {
        KerberosDetector {
            config,
            clients: HashMap::new(),
            requests: HashMap::new(),
            previous: HashMap::new(),
            names: std::hash::RandomState::new(),
            evicted: 0,
        }
    }

    pub fn size(&self) -> usize {
        self.clients.len() + self.requests.len() + self.previous.len()
    }

    pub fn observe(&mut self, e: &Event, out: &mut Vec<Evidence>) {
        if e.kind != Kind::Data || (e.sport != KERBEROS_PORT && e.dport != KERBEROS_PORT) {
            return;
        }
        let to_kdc = e.dport == KERBEROS_PORT;
        let message = match kerberos::parse(&e.payload) {
            Some(m) => Some(m),
            // A request body split between two segments: the previous
            // sample (the end of the segment before) and this one are
            // contiguous when nothing was lost between them.
            None if to_kdc && e.protocol == PROTO_TCP => self
                .previous
                .get(&(e.src, e.sport, e.dst))
                .and_then(|(prev, _)| {
                    kerberos::request_tail(&[prev.as_slice(), &e.payload].concat())
                })
                .map(Message::Request),
            None => None,
        };
        if to_kdc && e.protocol == PROTO_TCP {
            self.evicted += cap_oldest(&mut self.previous, SPLIT_BODIES, |(_, t)| *t);
            self.previous
                .insert((e.src, e.sport, e.dst), (e.payload.clone(), e.ts));
        }
        match message {
            Some(Message::Request(r)) if to_kdc => self.request(e, &r, out),
            Some(Message::Reply {
                tgs: true,
                service: Some(service),
                ticket_etype: Some(kerberos::ETYPE_RC4_HMAC),
                ..
            }) if !to_kdc => {
                // Issued to the client, `e.dst`.
                let client = Event {
                    src: e.dst,
                    dst: e.src,
                    ..e.clone()
                };
                self.roasted(&client, &service, 0, out);
            }
            Some(Message::Error { code, client, .. }) if !to_kdc => {
                self.refusal(e, code, client, out)
            }
            _ => {}
        }
    }

    fn request(&mut self, e: &Event, r: &Request, out: &mut Vec<Evidence>) {
        if r.client.is_some() {
            self.evicted += cap_oldest(&mut self.requests, CLIENTS, |(_, t)| *t);
            self.requests
                .insert((e.src, e.sport, e.dst), (r.client.clone(), e.ts));
        }
        if !r.rc4_only() {
            return;
        }
        let account = r.client.as_deref().unwrap_or("an account");
        if !r.tgs {
            let (detector, technique, what) = if r.preauth == Some(true) {
                (
                    "credential.overpass_the_hash",
                    "T1550.002",
                    "pre-authenticated with RC4 only (an NT hash used as the key)",
                )
            } else {
                (
                    "credential.asrep_roast",
                    "T1558.004",
                    "without pre-authentication, RC4 only (its reply is crackable if the account needs none)",
                )
            };
            self.report(
                e,
                detector,
                technique,
                65,
                1,
                || format!("asked {} for a TGT for {account} {what}", e.dst),
                out,
            );
            return;
        }
        let service = r.service.as_deref().unwrap_or("a service").to_string();
        self.roasted(e, &service, 60, out);
    }

    /// A service ticket `e.src` asked for with RC4 only, or was issued
    /// with RC4 (the service account has no AES key: the ticket is as
    /// crackable). One RC4-only request is evidence (`score`); tickets
    /// issued with RC4 are only in numbers, as many services in a
    /// domain that keeps old accounts are RC4.
    fn roasted(&mut self, e: &Event, service: &str, score: u8, out: &mut Vec<Evidence>) {
        if service.starts_with("krbtgt/") {
            return;
        }
        let window = self.config.kerberoast_window_secs * SECOND;
        let hash = std::hash::BuildHasher::hash_one(&self.names, service);
        let n = {
            let client = self.client(e.src, e.ts);
            client.roasted.insert(hash, e.ts);
            client.roasted.count_within(e.ts, window)
        };
        let score = if n >= self.config.kerberoast_services {
            75
        } else {
            score
        };
        if score == 0 {
            return;
        }
        let secs = self.config.kerberoast_window_secs;
        self.report(
            e,
            "credential.kerberoast",
            "T1558.003",
            score,
            n,
            || {
                format!(
                    "service tickets for {n} services crackable as RC4 from {} within {secs}s (last {service})",
                    e.dst
                )
            },
            out,
        );
    }

    /// A KRB-ERROR from the KDC (`e.src`) to its client (`e.dst`).
    fn refusal(&mut self, e: &Event, code: i64, named: Option<String>, out: &mut Vec<Evidence>) {
        let unknown = code == kerberos::KDC_ERR_C_PRINCIPAL_UNKNOWN;
        let refused = matches!(
            code,
            kerberos::KDC_ERR_PREAUTH_FAILED | kerberos::KDC_ERR_CLIENT_REVOKED
        );
        if !unknown && !refused {
            return;
        }
        let asked = self
            .requests
            .get(&(e.dst, e.dport, e.src))
            .and_then(|(name, _)| name.clone());
        let Some(account) = named.or(asked) else {
            return;
        };
        // Machine accounts are left out, as Sigma's rules do: a computer
        // whose password changed retries with the old one.
        if account.split('@').next().is_some_and(|a| a.ends_with('$')) {
            return;
        }
        let hash = std::hash::BuildHasher::hash_one(&self.names, &account);
        let window = self.config.refused_window_secs * SECOND;
        let n = {
            let client = self.client(e.dst, e.ts);
            let set = if unknown {
                &mut client.unknown
            } else {
                &mut client.refused
            };
            set.insert(hash, e.ts);
            set.count_within(e.ts, window)
        };
        if n <= self.config.refused_accounts {
            return;
        }
        let suspect = Event {
            src: e.dst,
            dst: e.src,
            ..e.clone()
        };
        let hours = self.config.refused_window_secs / 3600;
        if unknown {
            self.report(&suspect, "recon.accounts", "T1087.002", 60, n, || {
                format!("asked {} for {n} accounts that do not exist within {hours}h (last {account})", e.src)
            }, out);
        } else {
            self.report(&suspect, "bruteforce.spray", "T1110.003", 65, n, || {
                format!("refused by {} for {n} accounts within {hours}h (last {account}): password spraying", e.src)
            }, out);
        }
    }

    fn client(&mut self, host: IpAddr, ts: Nanos) -> &mut Client {
        self.evicted += cap_oldest(&mut self.clients, CLIENTS, |c| c.last);
        let client = self.clients.entry(host).or_default();
        client.last = client.last.max(ts);
        client
    }

    /// Evidence about `e.src` from `detector`, once per doubling of `n`.
    #[allow(clippy::too_many_arguments)]
    fn report(
        &mut self,
        e: &Event,
        detector: &'static str,
        technique: &'static str,
        score: u8,
        n: usize,
        summary: impl FnOnce() -> String,
        out: &mut Vec<Evidence>,
    ) {
        let client = self.client(e.src, e.ts);
        let at = match client.reported.iter().position(|(d, ..)| *d == detector) {
            Some(at) => at,
            None => {
                client.reported.push((detector, 0, 0));
                client.reported.len() - 1
            }
        };
        let (_, last_n, last_score) = &mut client.reported[at];
        if n < *last_n * 2 && score <= *last_score {
            return;
        }
        (*last_n, *last_score) = (n, score);
        out.push(Evidence {
            host: e.src,
            detector,
            technique,
            score,
            ts: e.ts,
            since: e.ts,
            peers: vec![e.dst.to_string()],
            count: n as u64,
            summary: summary(),
        });
    }

    pub fn prune(&mut self, now: Nanos) {
        let keep =
            (self.config.refused_window_secs).max(self.config.kerberoast_window_secs) * SECOND;
        let since = now.saturating_sub(keep);
        self.clients.retain(|_, c| c.last >= since);
        super::window::fit(&mut self.clients);
        let recent = now.saturating_sub(60 * SECOND);
        self.requests.retain(|_, (_, t)| *t >= recent);
        super::window::fit(&mut self.requests);
        self.previous.retain(|_, (_, t)| *t >= recent);
        super::window::fit(&mut self.previous);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{
        event::{PROTO_TCP, PROTO_UDP},
        kerberos::tests::{error, reply, request},
    };

    const CLIENT: &str = "10.0.0.5";
    const KDC: &str = "10.0.0.10";

    /// A sample from the client (`to_kdc`) or the KDC, on client port `port`.
    fn sample(secs: u64, to_kdc: bool, port: u16, payload: Vec<u8>) -> Event {
        let (src, dst, sport, dport) = if to_kdc {
            (CLIENT, KDC, port, KERBEROS_PORT)
        } else {
            (KDC, CLIENT, KERBEROS_PORT, port)
        };
        Event {
            ts: secs * SECOND,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport,
            dport,
            protocol: if port.is_multiple_of(2) {
                PROTO_TCP
            } else {
                PROTO_UDP
            },
            kind: Kind::Data,
            payload,
        }
    }

    fn run(events: &[Event]) -> Vec<(&'static str, &'static str, u8, u64)> {
        let mut d = KerberosDetector::new(KerberosConfig::default());
        let mut out = Vec::new();
        for e in events {
            d.observe(e, &mut out);
        }
        out.iter()
            .map(|e| (e.detector, e.technique, e.score, e.count))
            .collect()
    }

    const TGT: [&str; 2] = ["krbtgt", "CORP.EXAMPLE"];

    #[test]
    fn tgts_asked_for_with_rc4_only_are_roasting_or_a_passed_hash() {
        let with_ts = request(false, Some("alice"), &TGT, &[23], &[(2, 40)], true);
        let without = request(false, Some("svc_backup"), &TGT, &[23], &[(128, 5)], false);
        let windows = request(false, Some("bob"), &TGT, &[18, 17, 23], &[(2, 40)], true);
        assert_eq!(
            run(&[sample(1, true, 50000, with_ts)]),
            [("credential.overpass_the_hash", "T1550.002", 65, 1)]
        );
        assert_eq!(
            run(&[sample(1, true, 50001, without)]),
            [("credential.asrep_roast", "T1558.004", 65, 1)]
        );
        assert!(run(&[sample(1, true, 50002, windows)]).is_empty());
    }

    #[test]
    fn service_tickets_with_rc4_only_are_kerberoasting_and_strong_in_numbers() {
        // The tails of TGS-REQs (their bodies), one service each.
        let tgs = |service: &str, etypes: &[i64]| {
            let whole = request(
                true,
                None,
                &["MSSQLSvc", service],
                etypes,
                &[(1, 1200)],
                true,
            );
            whole[whole.len() - 512..].to_vec()
        };
        let mut events = vec![
            // A Windows client asking for a ticket; a TGT renewal with RC4.
            sample(1, true, 50000, tgs("db0", &[18, 17, 23])),
            sample(
                1,
                true,
                50002,
                request(true, None, &TGT, &[23], &[(1, 300)], true),
            ),
        ];
        for i in 1..=5 {
            events.push(sample(
                1 + i,
                true,
                50000 + 2 * i as u16,
                tgs(&format!("db{i}"), &[23]),
            ));
        }
        assert_eq!(
            run(&events),
            [
                ("credential.kerberoast", "T1558.003", 60, 1),
                ("credential.kerberoast", "T1558.003", 60, 2),
                ("credential.kerberoast", "T1558.003", 60, 4),
                ("credential.kerberoast", "T1558.003", 75, 5),
            ]
        );
    }

    #[test]
    fn rc4_tickets_issued_for_many_services_are_kerberoasting() {
        // Invoke-Kerberoast through the Windows API: the client offers AES,
        // the KDC answers with RC4 tickets (accounts without AES keys).
        let mut events: Vec<Event> = (0..4u16)
            .map(|i| {
                sample(
                    1,
                    false,
                    50000 + 2 * i,
                    reply(true, &["svc", &format!("app{i}")], 23),
                )
            })
            .collect();
        // AES tickets and RC4 TGTs do not count.
        events.push(sample(2, false, 50100, reply(true, &["svc", "aes"], 18)));
        events.push(sample(2, false, 50102, reply(false, &TGT, 23)));
        assert!(run(&events).is_empty());
        events.push(sample(3, false, 50104, reply(true, &["svc", "app4"], 23)));
        assert_eq!(
            run(&events),
            [("credential.kerberoast", "T1558.003", 75, 5)]
        );
    }

    #[test]
    fn a_request_body_split_between_segments_is_read() {
        // A TGS-REQ in two segments: the datapath samples the end of the
        // first (512 bytes) and all of the second, which holds only part
        // of the body.
        let whole = request(true, None, &["MSSQLSvc", "db1"], &[23], &[(1, 1300)], true);
        let cut = whole.len() - 60;
        let first = &whole[..cut];
        let events = [
            sample(1, true, 50000, first[first.len() - 512..].to_vec()),
            sample(1, true, 50000, whole[cut..].to_vec()),
        ];
        assert_eq!(
            run(&events),
            [("credential.kerberoast", "T1558.003", 60, 1)]
        );
        // With a segment lost in between, nothing is read.
        let events = [
            sample(
                1,
                true,
                50000,
                first[first.len() - 600..first.len() - 88].to_vec(),
            ),
            sample(1, true, 50000, whole[cut..].to_vec()),
        ];
        assert!(run(&events).is_empty());
    }

    #[test]
    fn refusals_for_many_accounts_are_spraying_or_enumeration() {
        let mut events = Vec::new();
        // Eleven accounts, each asked for on its own connection and refused
        // without the error naming it (the request does); a machine
        // account refused too, which does not count.
        for i in 0..11u16 {
            let port = 50000 + 2 * i;
            let account = format!("user{i}");
            events.push(sample(
                1,
                true,
                port,
                request(false, Some(&account), &TGT, &[18, 23], &[(2, 40)], true),
            ));
            events.push(sample(1, false, port, error(24, None, true)));
        }
        events.push(sample(1, false, 51000, error(24, Some("ws7$"), true)));
        let found = run(&events);
        assert_eq!(found, [("bruteforce.spray", "T1110.003", 65, 11)]);
        // Ten is not more than ten.
        assert!(run(&events[..20]).is_empty());
        // Unknown names (kerbrute userenum), named by the KDC, over UDP.
        let unknown: Vec<Event> = (0..11u16)
            .map(|i| {
                sample(
                    1,
                    false,
                    40001 + 2 * i,
                    error(6, Some(&format!("guess{i}")), false),
                )
            })
            .collect();
        assert_eq!(run(&unknown), [("recon.accounts", "T1087.002", 60, 11)]);
    }
}
