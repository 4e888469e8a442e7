//! The names addresses go by, learnt from the traffic itself: DNS answers
//! (the name a host asked for, and the addresses it got), TLS server names
//! and HTTP Host headers (the name a client used for the server it
//! connects to). Incidents show them next to the addresses.

use std::{collections::HashMap, net::IpAddr};

use super::{dns, event::Kind, inspect, limits, window::cap_oldest, Event, Nanos};

#[derive(Default)]
pub struct PeerNames {
    names: HashMap<IpAddr, (String, Nanos)>,
    /// Names dropped to stay within `limits::PEER_NAMES`.
    pub evicted: u64,
}

impl PeerNames {
    /// Learns from one event, if it names anything; `question` is a DNS
    /// event's, parsed.
    pub fn observe(&mut self, e: &Event, question: Option<&dns::Question>) {
        match e.kind {
            Kind::Dns => {
                let Some(q) = question.filter(|q| q.response) else {
                    return;
                };
                for addr in dns::answers(&e.payload) {
                    self.learn(addr, &q.name, e.ts);
                }
            }
            Kind::Data => {
                if let Some(name) = inspect::server_name(&e.payload) {
                    self.learn(e.dst, &name, e.ts);
                }
            }
            _ => {}
        }
    }

    fn learn(&mut self, addr: IpAddr, name: &str, ts: Nanos) {
        // An address literal is no name.
        if name.is_empty() || name.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
            return;
        }
        self.evicted += cap_oldest(&mut self.names, limits::PEER_NAMES, |(_, t)| *t);
        self.names.insert(addr, (name.to_string(), ts));
    }

    /// The last name seen for an address.
    pub fn get(&self, addr: IpAddr) -> Option<&str> {
        self.names.get(&addr).map(|(n, _)| n.as_str())
    }

    /// Entries: named addresses.
    pub fn size(&self) -> usize {
        self.names.len()
    }

    /// Forgets names not seen since `before`.
    pub fn prune(&mut self, before: Nanos) {
        self.names.retain(|_, (_, t)| *t >= before);
        super::window::fit(&mut self.names);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::event::{PROTO_TCP, PROTO_UDP};

    fn event(kind: Kind, protocol: u8, src: &str, dst: &str, payload: Vec<u8>) -> Event {
        Event {
            ts: 5,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: 1,
            dport: 2,
            protocol,
            kind,
            payload,
        }
    }

    /// As the engine feeds it: DNS events with their parsed question.
    fn learn(names: &mut PeerNames, e: &Event) {
        let question = dns::parse(&e.payload).filter(|_| e.kind == Kind::Dns);
        names.observe(e, question.as_ref());
    }

    #[test]
    fn answers_sni_and_host_headers_name_addresses() {
        let mut names = PeerNames::default();
        let c2: IpAddr = "198.18.0.66".parse().unwrap();
        let answer = dns::tests::response("c2.example.org", &[c2]);
        learn(
            &mut names,
            &event(Kind::Dns, PROTO_UDP, "10.0.0.53", "10.0.0.5", answer),
        );
        assert_eq!(names.get(c2), Some("c2.example.org"));
        let hello = inspect::tests::client_hello(&[inspect::tests::sni("files.example.net")]);
        learn(
            &mut names,
            &event(Kind::Data, PROTO_TCP, "10.0.0.5", "198.18.0.80", hello),
        );
        assert_eq!(
            names.get("198.18.0.80".parse().unwrap()),
            Some("files.example.net")
        );
        let literal = b"GET / HTTP/1.1\r\nHost: 198.18.0.81\r\n\r\n".to_vec();
        learn(
            &mut names,
            &event(Kind::Data, PROTO_TCP, "10.0.0.5", "198.18.0.81", literal),
        );
        assert_eq!(
            names.get("198.18.0.81".parse().unwrap()),
            None,
            "an address is no name"
        );
        names.prune(6);
        assert_eq!(names.get(c2), None);
    }
}
