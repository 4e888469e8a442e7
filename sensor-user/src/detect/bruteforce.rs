//! Brute force: bursts of short or failed connections from one source to an
//! authentication service.
//!
//! The payload is usually encrypted, so a failed login cannot be seen; a
//! failed guess shows instead as a connection that ends quickly (or is
//! refused) followed by another. Each such connection is poured into a leaky
//! bucket per (source, server, port), as in CrowdSec's `ssh-bf` scenario
//! (capacity 5, leaking one every 10 s) and `ssh-slow-bf` (capacity 10,
//! one every 60 s); an overflowing bucket is evidence.

use std::{collections::HashMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::{
    event::{Event, Kind, Nanos, PROTO_TCP, SECOND},
    limits,
    logons::Refused,
    window::cap_oldest,
    window::LeakyBucket,
    Evidence,
};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BruteForceConfig {
    /// TCP ports of authentication services.
    pub ports: Vec<u16>,
    /// A connection shorter than this counts as an attempt...
    pub short_connection_secs: u64,
    /// ...unless the server sent more than this many bytes: then it did
    /// real work (a file copied over SMB, a command run over SSH), which a
    /// failed login never gets. A failed SSH or NTLM login is a few KB.
    pub max_attempt_bytes: u64,
    pub capacity: u32,
    pub leak_secs: u64,
    pub slow_capacity: u32,
    pub slow_leak_secs: u64,
    /// Attempts within `act_window_secs` that make the evidence strong
    /// enough to act on (score 75); fewer only alert (score 65). A failure
    /// inferred from the network is weaker than a logged one: Zeek's SSH
    /// guessing detector, which infers the same way, waits for 30 guesses
    /// in 30 minutes (`SSH::password_guesses_limit`, `guessing_timeout`).
    pub act_attempts: u32,
    pub act_window_secs: u64,
}

impl Default for BruteForceConfig {
    fn default() -> Self {
        BruteForceConfig {
            // FTP, SSH, Telnet, SMTP submission, POP3, IMAP, LDAPS, SMTPS,
            // VMware authd, MSSQL, MySQL, RDP, PostgreSQL, VNC, WinRM. Not
            // where the protocol states its refusals in clear and they are
            // read instead: Kerberos (a logon is many short connections to
            // 88; `tickets`), LDAP 389 and SMB 445 (binds and session
            // setups; `logons`). Scripted LDAP sessions and Windows' many
            // short SMB connections are no guesses. On FTP, MySQL and
            // PostgreSQL a connection whose logon was read in clear
            // (`logons`) is judged by its refusals; one that switched to
            // TLS is still counted here.
            ports: vec![
                21, 22, 23, 587, 110, 143, 636, 465, 902, 1433, 3306, 3389, 5432, 5900, 5985, 5986,
            ],
            short_connection_secs: 30,
            max_attempt_bytes: 20_000,
            capacity: 5,
            leak_secs: 10,
            slow_capacity: 10,
            slow_leak_secs: 60,
            act_attempts: 30,
            act_window_secs: 1800,
        }
    }
}

/// Accounts a refusal table names at most (for the alert).
const MAX_NAMED_ACCOUNTS: usize = 8;

#[derive(Default)]
struct Refusals {
    fast: LeakyBucket,
    slow: LeakyBucket,
    failures: u64,
    reported_at: u64,
    accounts: Vec<String>,
}

#[derive(Default)]
struct Target {
    fast: LeakyBucket,
    slow: LeakyBucket,
    attempts: u64,
    reported_at: u64,
    /// Attempts within the acting window, and when it began.
    recent: u64,
    recent_since: Nanos,
    strong: bool,
}

pub struct BruteForceDetector {
    config: BruteForceConfig,
    targets: HashMap<(IpAddr, IpAddr, u16), Target>,
    /// Logons the server refused, per (client, server, port): the same
    /// buckets, poured with failures known for certain.
    refused: HashMap<(IpAddr, IpAddr, u16), Refusals>,
    /// Buckets dropped to stay within `limits::BRUTEFORCE_TARGETS`.
    pub evicted: u64,
}

impl BruteForceDetector {
    /// New settings from a reload: they apply from the next event, and
    /// what was learnt so far stays.
    pub fn reconfigure(&mut self, config: BruteForceConfig) {
        self.config = config;
    }

    pub fn new(config: BruteForceConfig) -> BruteForceDetector {
        BruteForceDetector {
            config,
            targets: HashMap::new(),
            refused: HashMap::new(),
            evicted: 0,
        }
    }

    /// Entries: buckets per (source, server, port).
    pub fn size(&self) -> usize {
        self.targets.len() + self.refused.len()
    }

    /// A logon the server refused (`logons`: an LDAP bind answered
    /// invalidCredentials, an SMB session setup answered
    /// STATUS_LOGON_FAILURE): a failure known for certain, as CrowdSec's
    /// log-fed buckets count them. An overflow of the fast or slow bucket
    /// is evidence at once: strong for several accounts (spraying) or from
    /// `act_attempts` failures on.
    pub fn refused(&mut self, r: &Refused, protocol: &str, out: &mut Vec<Evidence>) {
        let c = &self.config;
        self.evicted += cap_oldest(&mut self.refused, limits::BRUTEFORCE_TARGETS, |t| {
            t.fast.last()
        });
        let t = self
            .refused
            .entry((r.client, r.server, r.port))
            .or_default();
        t.failures += 1;
        if let Some(account) = &r.account {
            if !t.accounts.contains(account) && t.accounts.len() < MAX_NAMED_ACCOUNTS {
                t.accounts.push(account.clone());
            }
        }
        let fast = t.fast.pour(r.ts, c.capacity, c.leak_secs * SECOND);
        let slow = t
            .slow
            .pour(r.ts, c.slow_capacity, c.slow_leak_secs * SECOND);
        if !(fast || slow) || t.failures < t.reported_at * 2 {
            return;
        }
        t.reported_at = t.failures;
        // Several accounts from one client: spraying; one: guessing, or a
        // client still holding a changed password (a mapped drive, a
        // service: the usual cause of lockouts), which an alert serves
        // better than isolation until the failures reach Zeek's guessing
        // limit (`act_attempts`).
        let spraying = t.accounts.len() >= 3;
        let strong = spraying || t.failures >= u64::from(c.act_attempts);
        let accounts = if t.accounts.is_empty() {
            String::new()
        } else {
            format!(" (accounts: {})", t.accounts.join(", "))
        };
        out.push(Evidence {
            host: r.client,
            detector: "bruteforce.refused",
            technique: if spraying { "T1110.003" } else { "T1110.001" },
            score: if strong { 75 } else { 65 },
            ts: r.ts,
            since: r.ts,
            peers: vec![format!("{}:{}", r.server, r.port)],
            count: t.failures,
            summary: format!(
                "{} {protocol} logons refused by {}:{}{accounts}",
                t.failures, r.server, r.port
            ),
        });
    }

    /// `logon_read`: the flow's logon was read (`logons`), so its outcome
    /// is known and it is no inferred attempt.
    pub fn observe(&mut self, e: &Event, logon_read: bool, out: &mut Vec<Evidence>) {
        let Kind::FlowEnd(flow) = &e.kind else { return };
        if e.protocol != PROTO_TCP || !self.config.ports.contains(&e.dport) || logon_read {
            return;
        }
        // A guess is sent: a connection in which the client sent nothing
        // (refused at the greeting, never answered, a port check) tried no
        // password. Scans are the scan detectors' business.
        let short = e.ts.saturating_sub(flow.start) < self.config.short_connection_secs * SECOND
            && flow.resp_bytes <= self.config.max_attempt_bytes;
        if !short || !flow.orig_data {
            return;
        }
        let c = &self.config;
        self.evicted += cap_oldest(&mut self.targets, limits::BRUTEFORCE_TARGETS, |t| {
            t.fast.last()
        });
        let t = self.targets.entry((e.src, e.dst, e.dport)).or_default();
        t.attempts += 1;
        let fast = t.fast.pour(e.ts, c.capacity, c.leak_secs * SECOND);
        let slow = t
            .slow
            .pour(e.ts, c.slow_capacity, c.slow_leak_secs * SECOND);
        if e.ts.saturating_sub(t.recent_since) > c.act_window_secs * SECOND {
            t.recent = 0;
            t.recent_since = e.ts;
        }
        t.recent += 1;
        let turned_strong = !t.strong && t.recent >= c.act_attempts as u64;
        t.strong |= turned_strong;
        // Report on overflow, again each time the attempts double, and
        // when the evidence becomes strong enough to act on.
        if (fast || slow) && (t.attempts >= t.reported_at * 2 || turned_strong) {
            t.reported_at = t.attempts;
            out.push(Evidence {
                host: e.src,
                detector: if fast {
                    "bruteforce"
                } else {
                    "bruteforce.slow"
                },
                technique: "T1110",
                score: if t.strong { 75 } else { 65 },
                ts: e.ts,
                since: e.ts,
                peers: vec![format!("{}:{}", e.dst, e.dport)],
                count: t.attempts,
                summary: format!(
                    "{} short or failed connections to {}:{}",
                    t.attempts, e.dst, e.dport
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::event::{FlowSummary, Nanos};

    fn conn(start: Nanos, secs: u64, dport: u16) -> Event {
        Event {
            ts: start + secs * SECOND,
            src: "10.0.0.5".parse().unwrap(),
            dst: "10.0.0.9".parse().unwrap(),
            sport: 40000,
            dport,
            protocol: PROTO_TCP,
            kind: Kind::FlowEnd(FlowSummary {
                start,
                answered: true,
                orig_data: true,
                resp_data: true,
                ..Default::default()
            }),
            payload: vec![],
        }
    }

    fn run(events: &[Event]) -> Vec<Evidence> {
        let mut d = BruteForceDetector::new(BruteForceConfig::default());
        let mut out = Vec::new();
        for e in events {
            d.observe(e, false, &mut out);
        }
        out
    }

    #[test]
    fn a_burst_of_short_ssh_connections_is_brute_force() {
        let events: Vec<Event> = (0..20).map(|i| conn(i * SECOND, 1, 22)).collect();
        let out = run(&events);
        assert_eq!(out[0].detector, "bruteforce");
        assert_eq!(out[0].count, 6);
        assert_eq!(out[0].peers, ["10.0.0.9:22"]);
        // Reported again at 12, not at every attempt; an alert only (65)
        // until 30 attempts.
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|e| e.score == 65));
        let more: Vec<Event> = (0..40).map(|i| conn(i * SECOND, 1, 22)).collect();
        let out = run(&more);
        let strong: Vec<u64> = out
            .iter()
            .filter(|e| e.score == 75)
            .map(|e| e.count)
            .collect();
        assert_eq!(strong, [30], "{out:#?}");
    }

    #[test]
    fn long_sessions_and_other_ports_are_not() {
        let long: Vec<Event> = (0..20).map(|i| conn(i * SECOND, 600, 22)).collect();
        assert!(run(&long).is_empty());
        let web: Vec<Event> = (0..20).map(|i| conn(i * SECOND, 1, 443)).collect();
        assert!(run(&web).is_empty());
    }

    #[test]
    fn a_slow_steady_guesser_fills_the_slow_bucket() {
        // One every 15 s: never overflows the fast bucket (leaks one per 10 s).
        let events: Vec<Event> = (0..30).map(|i| conn(i * 15 * SECOND, 1, 3389)).collect();
        let out = run(&events);
        assert!(!out.is_empty());
        assert!(out.iter().all(|e| e.detector == "bruteforce.slow"));
    }

    #[test]
    fn refused_logons_overflow_into_strong_evidence() {
        let mut d = BruteForceDetector::new(BruteForceConfig::default());
        let mut out = Vec::new();
        let refusal = |i: u64| Refused {
            ts: i * SECOND / 10,
            client: "10.0.0.5".parse().unwrap(),
            server: "10.0.0.9".parse().unwrap(),
            port: 389,
            account: Some(format!("corp\\user{}", i % 6)),
        };
        for i in 0..5 {
            d.refused(&refusal(i), "LDAP", &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        for i in 5..12 {
            d.refused(&refusal(i), "LDAP", &mut out);
        }
        let found: Vec<(&str, &str, u8, u64)> = out
            .iter()
            .map(|e| (e.detector, e.technique, e.score, e.count))
            .collect();
        assert_eq!(
            found,
            [
                ("bruteforce.refused", "T1110.003", 75, 6),
                ("bruteforce.refused", "T1110.003", 75, 12)
            ]
        );
        assert!(
            out[0]
                .summary
                .contains("6 LDAP logons refused by 10.0.0.9:389 (accounts: corp\\user0"),
            "{}",
            out[0].summary
        );
    }

    #[test]
    fn one_account_refused_alerts_until_zeek_s_guessing_limit() {
        // A client retrying one account (a stale password, or guessing):
        // an alert, strong from 30 failures.
        let mut d = BruteForceDetector::new(BruteForceConfig::default());
        let mut out = Vec::new();
        let mut refuse = |seconds: std::ops::Range<u64>, out: &mut Vec<Evidence>| {
            for i in seconds {
                let r = Refused {
                    ts: i * SECOND,
                    client: "10.0.0.5".parse().unwrap(),
                    server: "10.0.0.9".parse().unwrap(),
                    port: 445,
                    account: Some("city\\ann".into()),
                };
                d.refused(&r, "SMB", out);
            }
        };
        refuse(0..40, &mut out);
        let found: Vec<(&str, u8, u64)> = out
            .iter()
            .map(|e| (e.technique, e.score, e.count))
            .collect();
        assert_eq!(
            found,
            [
                ("T1110.001", 65, 6),
                ("T1110.001", 65, 12),
                ("T1110.001", 65, 24)
            ]
        );
        refuse(40..50, &mut out);
        assert_eq!(out.last().map(|e| (e.score, e.count)), Some((75, 48)));
    }

    #[test]
    fn connections_that_sent_no_guess_are_not_attempts() {
        // The server refused at its greeting (MySQL's "host is not allowed"),
        // or never answered: the client sent no credentials.
        let refused: Vec<Event> = (0..20)
            .map(|i| {
                let mut e = conn(i * SECOND, 1, 3306);
                if let Kind::FlowEnd(f) = &mut e.kind {
                    f.orig_data = false;
                }
                e
            })
            .collect();
        assert!(run(&refused).is_empty());
    }
}
