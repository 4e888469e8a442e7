//! Logons a server refused, read from the protocol rather than inferred
//! (LDAP binds answered invalidCredentials, SMB session setups answered
//! STATUS_LOGON_FAILURE): which account each connection last tried, so
//! that the refusal names it. `bruteforce` counts the refusals, and leaves
//! out of its connection counts the connections whose logon was read.

use std::{collections::HashMap, net::IpAddr};

use super::{
    event::{Connection, Event, Kind, Nanos, PROTO_TCP, SECOND},
    window::cap_oldest,
};

/// One step of a logon, as a protocol's reader finds it in a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The client tries, naming the account when the message does (an
    /// NTLM exchange's first message, or Kerberos, names nobody in clear).
    Tried(Option<String>),
    /// The server refused.
    Refused,
}

/// A logon the server refused.
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

/// An attempt is forgotten when no answer came within this.
const ANSWER_WITHIN: Nanos = 600 * SECOND;

/// Logons on the connections to one service: the account each client
/// last tried.
pub struct Logons {
    /// The service's TCP port.
    port: u16,
    /// The steps in a sample.
    read: fn(&[u8]) -> Vec<Step>,
    last: HashMap<Connection, (Option<String>, Nanos)>,
    pub evicted: u64,
}

impl Logons {
    pub fn new(port: u16, read: fn(&[u8]) -> Vec<Step>) -> Logons {
        Logons {
            port,
            read,
            last: HashMap::new(),
            evicted: 0,
        }
    }

    /// The logons refused in this event's sample.
    pub fn observe(&mut self, e: &Event) -> Vec<Refused> {
        if e.kind != Kind::Data || e.protocol != PROTO_TCP {
            return Vec::new();
        }
        let to_server = e.dport == self.port;
        if !to_server && e.sport != self.port {
            return Vec::new();
        }
        let mut refused = Vec::new();
        for step in (self.read)(&e.payload) {
            match step {
                Step::Tried(account) if to_server => self.tried(e, account),
                Step::Refused if !to_server => refused.push(self.refused(e)),
                _ => {}
            }
        }
        refused
    }

    /// The client of `e`'s connection (its sender) tries to log on; the
    /// account tried before stays when this message names nobody.
    fn tried(&mut self, e: &Event, account: Option<String>) {
        self.evicted += cap_oldest(&mut self.last, CONNECTIONS, |(_, t)| *t);
        let entry = self.last.entry(e.connection()).or_default();
        if account.is_some() {
            entry.0 = account;
        }
        entry.1 = e.ts;
    }

    /// The server (`e`'s sender) refused the logon its client tried.
    fn refused(&self, e: &Event) -> Refused {
        Refused {
            ts: e.ts,
            client: e.dst,
            server: e.src,
            port: e.sport,
            account: self.last.get(&e.connection()).and_then(|(a, _)| a.clone()),
        }
    }

    /// Whether the ended flow `e` carried a logon this follower read (a
    /// client's attempt); forgets it. Such a connection is judged by its
    /// refusals, not counted as an inferred attempt (`bruteforce`).
    pub fn take_read(&mut self, e: &Event) -> bool {
        (e.dport == self.port || e.sport == self.port)
            && self.last.remove(&e.connection()).is_some()
    }

    pub fn prune(&mut self, now: Nanos) {
        let since = now.saturating_sub(ANSWER_WITHIN);
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

    /// A sample of a connection between client 10.0.0.5 and server
    /// 10.0.0.9 on `port`, sent by the client when `to_server`.
    pub fn sample(port: u16, to_server: bool, payload: Vec<u8>) -> Event {
        let (client, server) = ("10.0.0.5".parse().unwrap(), "10.0.0.9".parse().unwrap());
        let (src, dst) = if to_server {
            (client, server)
        } else {
            (server, client)
        };
        Event {
            ts: SECOND,
            src,
            dst,
            sport: if to_server { 50000 } else { port },
            dport: if to_server { port } else { 50000 },
            protocol: PROTO_TCP,
            kind: Kind::Data,
            payload,
        }
    }

    /// The refusal `sample`'s server gives, naming `account`.
    pub fn refusal(port: u16, account: &str) -> Refused {
        Refused {
            ts: SECOND,
            client: "10.0.0.5".parse().unwrap(),
            server: "10.0.0.9".parse().unwrap(),
            port,
            account: Some(account.into()),
        }
    }
}
