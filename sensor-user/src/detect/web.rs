//! Weak signals in how an inside host opens HTTP and TLS conversations
//! with outside servers: traits that C&C implants show far more often
//! than browsers and update agents, but that ordinary software shows too.
//! Each is evidence with a low score (`incident::is_weak`): alone it opens
//! no incident; together, or with a beacon or other evidence on the same
//! host, they add up (the design Slips uses).
//!
//! - `web.unnamed` (T1071.001, 25): TLS without a server name (SNI) or
//!   HTTP whose Host is missing or an address, to an address no DNS answer,
//!   server name or Host header ever named. Browsers and update agents
//!   reach servers by name; implants with a hard-coded address do not
//!   (Zeek's and RITA's "connection to an IP never resolved" practice;
//!   the Slips "connection without DNS resolution" evidence).
//! - `web.odd_port` (T1571, 20): a TLS ClientHello, an HTTP request or an
//!   SSH client's identification string to a port that is not the
//!   protocol's (ATT&CK T1571 Non-Standard Port; Slips "HTTP/SSL on a
//!   non-standard port").
//! - `web.no_user_agent` (T1071.001, 20): an HTTP request with no
//!   User-Agent. Every browser, library and update agent sends one; a
//!   hand-written implant often does not (Slips "missing User-Agent").
//! - `web.no_host` (T1071.001, 20): an HTTP/1.1 request with no Host
//!   header, which RFC 9112 (3.2) requires of every client (RITA's
//!   "missing host header" threat modifier).
//! - `web.rare_user_agent` (T1071.001, 15): a User-Agent no other inside
//!   host sent within a day, on a site where at least 20 did send one
//!   (`agents`; RITA's "rare signature" threat modifier).
//! - `web.self_signed` (T1573.002, 25) and `web.certificate_age`
//!   (T1573.002, 20): the server's certificate (TLS 1.2 and earlier, from
//!   its first flight) names itself as its issuer, or has expired, or was
//!   issued within the hour. RATs' default certificates are self-signed
//!   (AsyncRAT, QuasarRAT, njRAT; Zeek's `SSL::Invalid_Server_Cert`,
//!   Slips' "self-signed certificate" evidence).
//! - `web.certificate_name` (T1573.002, 20): the certificate's names,
//!   when the sample holds them, cover nothing the client asked for in
//!   its SNI (RFC 6125; Zeek's `SSL::Invalid_Server_Cert` with "hostname
//!   mismatch").
//!
//! Each is reported once per (host, server) within the incident merge
//! window, so a repeated trait keeps its weight without adding more.
//! Servers under a well-known domain (`[detection] known_services`) are
//! not judged.

use std::{collections::HashMap, net::IpAddr};

use sensor_common::telemetry::is_inspect_port;

use super::{
    agents::UserAgentCensus,
    certificate,
    event::{Event, Kind, Nanos, PROTO_TCP, SECOND},
    incident::MERGE_GAP,
    inspect,
    known::DomainSet,
    names::PeerNames,
    window::{cap_oldest, fit, OncePer},
    Evidence,
};

/// Ports HTTP is served on: IANA's http, http-alt and the usual proxies.
pub const HTTP_PORTS: [u16; 6] = [80, 591, 8000, 8008, 8080, 3128];
/// SSH's port (IANA).
const SSH_PORT: u16 = 22;
/// Ports TLS is opened on directly (IANA): https and its alternate, and the
/// TLS forms of mail, directory, DNS, FTP, SIP, XMPP, push, AMQP and MQTT.
pub const TLS_PORTS: [u16; 17] = [
    443, 8443, 465, 636, 853, 989, 990, 992, 993, 994, 995, 3269, 5061, 5223, 5228, 5671, 8883,
];

/// The signals: (detector, ATT&CK technique, weight). Weights are the
/// project's choice: one trait alone never alerts, an implant's usual
/// three do, and any one adds to a beacon (docs/detection.md).
const SIGNALS: [(&str, &str, u8); 8] = [
    ("web.unnamed", "T1071.001", 25),
    ("web.odd_port", "T1571", 20),
    ("web.no_user_agent", "T1071.001", 20),
    ("web.self_signed", "T1573.002", 25),
    ("web.certificate_age", "T1573.002", 20),
    ("web.no_host", "T1071.001", 20),
    ("web.rare_user_agent", "T1071.001", 15),
    ("web.certificate_name", "T1573.002", 20),
];
const UNNAMED: usize = 0;
const ODD_PORT: usize = 1;
const NO_USER_AGENT: usize = 2;
const SELF_SIGNED: usize = 3;
const CERTIFICATE_AGE: usize = 4;
const NO_HOST: usize = 5;
const RARE_USER_AGENT: usize = 6;
const CERTIFICATE_NAME: usize = 7;
/// Connections whose ClientHello named a server, awaiting its answer.
const ASKED: usize = 1 << 16;
/// A connection: (client, server, client's port, server's port).
type Connection = (IpAddr, IpAddr, u16, u16);
/// A certificate issued this recently was made for this server just now
/// (an implant's operator setting up; ordinary sites' are days old by the
/// time anyone connects).
const FRESH_CERTIFICATE_SECS: i64 = 3600;

/// (host, server) pairs remembered per signal.
const PAIRS: usize = 1 << 16;

pub struct WebSignals {
    /// Per signal: pairs reported, pruned with the engine's sweep.
    pub reported: [OncePer; SIGNALS.len()],
    /// Which hosts send which User-Agent.
    pub agents: UserAgentCensus,
    /// The server name each recent ClientHello asked for, and when.
    asked: HashMap<Connection, (String, Nanos)>,
}

impl Default for WebSignals {
    fn default() -> Self {
        WebSignals {
            reported: std::array::from_fn(|_| OncePer::new(MERGE_GAP, PAIRS)),
            agents: UserAgentCensus::default(),
            asked: HashMap::new(),
        }
    }
}

/// What an opening says about itself: the server name it gives (SNI,
/// or an HTTP Host that is no address) and, for HTTP, its User-Agent and
/// which headers it is known to lack (its headers ended in the sample).
enum Opening {
    Tls {
        name: Option<String>,
    },
    Http {
        name: Option<String>,
        user_agent: Option<String>,
        lacks_user_agent: bool,
        lacks_host: bool,
    },
    /// An SSH client's identification string: no name in it.
    Ssh,
}

fn opening(payload: &[u8]) -> Option<Opening> {
    if payload.starts_with(b"SSH-") {
        return Some(Opening::Ssh);
    }
    if let Some(r) = inspect::http_request(payload) {
        let user_agent = r.user_agent.filter(|u| !u.is_empty());
        return Some(Opening::Http {
            lacks_user_agent: r.complete && user_agent.is_none(),
            // HTTP/1.0 may leave it out; HTTP/1.1 may not (RFC 9112 3.2).
            lacks_host: r.complete && r.http11 && r.host.is_none(),
            name: r
                .host
                .filter(|h| h.trim_matches(['[', ']']).parse::<IpAddr>().is_err()),
            user_agent,
        });
    }
    if inspect::tls_without_server_name(payload) {
        return Some(Opening::Tls { name: None });
    }
    inspect::tls_server_name(payload).map(|name| Opening::Tls { name: Some(name) })
}

/// Flows on the inspected ports (`telemetry::INSPECT_PORTS`) are sampled
/// throughout: TLS in them is the protocol's own upgrade (MySQL's
/// SSLRequest, LDAP's StartTLS, FTP's AUTH TLS), not a web opening.
fn inspected(e: &Event) -> bool {
    is_inspect_port(e.sport) || is_inspect_port(e.dport)
}

impl WebSignals {
    /// `inside`: whether the source and the destination are inside hosts;
    /// servers under a `known` domain are not judged.
    pub fn observe(
        &mut self,
        e: &Event,
        inside: (bool, bool),
        names: &PeerNames,
        known: &DomainSet,
        out: &mut Vec<Evidence>,
    ) {
        if e.kind != Kind::Data || e.protocol != PROTO_TCP || inspected(e) {
            return;
        }
        match inside {
            (true, false) => self.opening(e, names, known, out),
            (false, true) => self.answer(e, names, known, out),
            _ => {}
        }
    }

    /// An inside client's opening to an outside server.
    fn opening(
        &mut self,
        e: &Event,
        names: &PeerNames,
        known: &DomainSet,
        out: &mut Vec<Evidence>,
    ) {
        let Some(opening) = opening(&e.payload) else {
            return;
        };
        // Every agent counts in the census, to well-known services too.
        let rare_agent = match &opening {
            Opening::Http {
                user_agent: Some(agent),
                ..
            } => self.agents.rare(e.src, agent, e.ts).then(|| agent.clone()),
            _ => None,
        };
        let (protocol, name, standard) = match &opening {
            Opening::Tls { name } => ("TLS", name, TLS_PORTS.contains(&e.dport)),
            Opening::Http { name, .. } => ("HTTP", name, HTTP_PORTS.contains(&e.dport)),
            Opening::Ssh => ("SSH", &None, e.dport == SSH_PORT),
        };
        if name.as_deref().is_some_and(|n| known.matching(n).is_some())
            || known.covers(names, e.dst)
        {
            return;
        }
        let (host, server) = (e.src, (e.dst, e.dport));
        let at = format!("{}:{}", e.dst, e.dport);
        if let Opening::Tls { name: Some(name) } = &opening {
            cap_oldest(&mut self.asked, ASKED, |a| a.1);
            self.asked
                .insert((e.src, e.dst, e.sport, e.dport), (name.clone(), e.ts));
        }
        if let Opening::Http {
            lacks_user_agent: true,
            ..
        } = opening
        {
            let summary = format!("HTTP request to {at} without a User-Agent");
            self.report(NO_USER_AGENT, host, server, e.ts, summary, out);
        }
        if let Opening::Http {
            lacks_host: true, ..
        } = opening
        {
            let summary = format!("HTTP request to {at} without a Host header");
            self.report(NO_HOST, host, server, e.ts, summary, out);
        }
        if let Some(agent) = rare_agent {
            let summary = format!(
                "HTTP request to {at} with a User-Agent no other inside host sent within a day: {agent}"
            );
            self.report(RARE_USER_AGENT, host, server, e.ts, summary, out);
        }
        // Administrators reach SSH servers by address every day.
        let unnamed = !matches!(opening, Opening::Ssh) && name.is_none();
        if unnamed && names.get(e.dst).is_none() {
            let summary = format!(
                "{protocol} to {at} by address: no server name given, and no DNS answer named it"
            );
            self.report(UNNAMED, host, server, e.ts, summary, out);
        }
        if !standard {
            let summary = format!("{protocol} to {at}, not a port {protocol} is served on");
            self.report(ODD_PORT, host, server, e.ts, summary, out);
        }
    }

    /// An outside TLS server's first flight to an inside client: its
    /// certificate (TLS 1.2 and earlier) is self-signed, expired, or
    /// issued within the hour. The client is the suspect.
    fn answer(&mut self, e: &Event, names: &PeerNames, known: &DomainSet, out: &mut Vec<Evidence>) {
        let asked = self.asked.remove(&(e.dst, e.src, e.dport, e.sport));
        if known.covers(names, e.src) {
            return;
        }
        let Some(c) = certificate::server_certificate(&e.payload) else {
            return;
        };
        let (host, server) = (e.dst, (e.src, e.sport));
        let at = format!("{}:{}", e.src, e.sport);
        let now = (e.ts / SECOND) as i64;
        if c.self_signed {
            let summary = format!("TLS server {at} presented a self-signed certificate");
            self.report(SELF_SIGNED, host, server, e.ts, summary, out);
        }
        let why = if c.not_after < now {
            Some(format!("expired {} days ago", (now - c.not_after) / 86_400))
        } else if (0..FRESH_CERTIFICATE_SECS).contains(&(now - c.not_before)) {
            Some(format!(
                "issued {} minutes before",
                (now - c.not_before) / 60
            ))
        } else {
            None
        };
        if let Some(why) = why {
            let summary = format!("TLS server {at} presented a certificate {why}");
            self.report(CERTIFICATE_AGE, host, server, e.ts, summary, out);
        }
        if let (Some(names), Some((asked, _))) = (&c.names, asked) {
            if !names.iter().any(|n| certificate::covers(n, &asked)) {
                let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
                let summary = format!(
                    "TLS server {at} was asked for {asked} and presented a certificate for {}",
                    if shown.is_empty() {
                        "no DNS name".to_string()
                    } else {
                        shown.join(", ")
                    }
                );
                self.report(CERTIFICATE_NAME, host, server, e.ts, summary, out);
            }
        }
    }

    /// Reports `signal` about `host` and `server` once per merge window.
    fn report(
        &mut self,
        signal: usize,
        host: IpAddr,
        server: (IpAddr, u16),
        ts: Nanos,
        summary: String,
        out: &mut Vec<Evidence>,
    ) {
        if !self.reported[signal].first((host, server.0), ts) {
            return;
        }
        let (detector, technique, score) = SIGNALS[signal];
        out.push(Evidence {
            host,
            detector,
            technique,
            score,
            ts,
            since: ts,
            peers: vec![format!("{}:{}", server.0, server.1)],
            count: 1,
            summary,
        });
    }

    pub fn prune(&mut self, now: Nanos) {
        self.reported.iter_mut().for_each(|r| r.prune(now));
        self.agents.prune(now);
        // An answer comes within seconds of its hello, or not at all.
        self.asked
            .retain(|_, (_, at)| now.saturating_sub(*at) <= 60 * SECOND);
        fit(&mut self.asked);
    }

    pub fn size(&self) -> usize {
        self.reported.iter().map(|r| r.pairs()).sum::<usize>()
            + self.agents.size()
            + self.asked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::inspect::tests::{client_hello, sni};

    fn opening(dst: &str, dport: u16, payload: Vec<u8>) -> Event {
        Event {
            ts: 1,
            src: "10.0.0.5".parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: 40000,
            dport,
            protocol: PROTO_TCP,
            kind: Kind::Data,
            payload,
        }
    }

    /// The signals `events` give; with `known`, the resolver first named
    /// 198.51.100.9 push.example.net, a listed well-known service.
    fn signals(events: &[Event], known: bool) -> Vec<&'static str> {
        let mut w = WebSignals::default();
        let mut names = PeerNames::default();
        let mut listed = DomainSet::default();
        if known {
            listed.insert("example.net");
            let addr = "198.51.100.9".parse().unwrap();
            let answer = Event {
                ts: 0,
                src: "198.51.100.53".parse().unwrap(),
                dst: "10.0.0.5".parse().unwrap(),
                sport: 53,
                dport: 40000,
                protocol: crate::detect::event::PROTO_UDP,
                kind: Kind::Dns,
                payload: crate::detect::dns::tests::response("push.example.net", &[addr]),
            };
            names.observe(&answer, crate::detect::dns::parse(&answer.payload).as_ref());
        }
        let mut out = Vec::new();
        for e in events {
            w.observe(e, (true, false), &names, &listed, &mut out);
        }
        out.iter().map(|e| e.detector).collect()
    }

    #[test]
    fn an_implant_s_opening_shows_its_traits_once_per_server() {
        let bare = client_hello(&[(10, vec![0, 2, 0, 29])]);
        let e = opening("198.51.100.7", 4041, bare);
        assert_eq!(
            signals(&[e.clone(), e], false),
            ["web.unnamed", "web.odd_port"]
        );
        let curl_less = b"POST /beacon HTTP/1.1\r\nHost: 198.51.100.7:8888\r\n\r\n".to_vec();
        assert_eq!(
            signals(&[opening("198.51.100.7", 8888, curl_less)], false),
            ["web.no_user_agent", "web.unnamed", "web.odd_port"]
        );
        // SSH off its port: only the port is a trait (administrators
        // reach servers by address).
        let ssh = b"SSH-2.0-Go\r\n".to_vec();
        assert_eq!(
            signals(&[opening("198.51.100.7", 2222, ssh.clone())], false),
            ["web.odd_port"]
        );
        assert!(signals(&[opening("198.51.100.7", 22, ssh)], false).is_empty());
    }

    #[test]
    fn a_self_signed_or_fresh_certificate_is_a_trait_of_the_client() {
        use crate::detect::certificate::tests::first_flight;
        let answer = |flight: Vec<u8>, secs: u64| Event {
            ts: secs * SECOND,
            src: "198.51.100.7".parse().unwrap(),
            dst: "10.0.0.5".parse().unwrap(),
            sport: 4041,
            dport: 40000,
            protocol: PROTO_TCP,
            kind: Kind::Data,
            payload: flight,
        };
        // 2026-06-01: the first valid since 2026-01-01, the second since
        // 10 minutes ago (2026-06-01T00:00:00Z is 1780272000).
        let now = 1_780_272_000 + 600;
        let own = first_flight("rat", "260101000000Z", "360101000000Z", "rat", 0);
        let fresh = first_flight("R11", "260601000000Z", "260830000000Z", "x.example", 0);
        let (names, listed) = (PeerNames::default(), DomainSet::default());
        let mut w = WebSignals::default();
        let mut out = Vec::new();
        for flight in [own, fresh.clone()] {
            w.observe(
                &answer(flight, now),
                (false, true),
                &names,
                &listed,
                &mut out,
            );
        }
        let found: Vec<_> = out
            .iter()
            .map(|e| (e.host.to_string(), e.detector))
            .collect();
        assert_eq!(
            found,
            [
                ("10.0.0.5".into(), "web.self_signed"),
                ("10.0.0.5".into(), "web.certificate_age")
            ]
        );
        assert!(
            out[1].summary.contains("issued 10 minutes before"),
            "{}",
            out[1].summary
        );
        let mut quiet = WebSignals::default();
        let mut none = Vec::new();
        let later = answer(fresh, now + 7200);
        quiet.observe(&later, (false, true), &names, &listed, &mut none);
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn a_browser_s_opening_and_known_services_show_nothing() {
        let hello = client_hello(&[sni("updates.example.org")]);
        let browser = opening("198.51.100.7", 443, hello.clone());
        let http = b"GET / HTTP/1.1\r\nHost: example.org\r\nUser-Agent: Mozilla/5.0\r\n\r\n";
        let page = opening("198.51.100.8", 80, http.to_vec());
        assert!(signals(&[browser, page], false).is_empty());
        let bare = opening("198.51.100.9", 4041, client_hello(&[]));
        assert!(signals(&[bare], true).is_empty(), "a known service");
    }

    #[test]
    fn a_request_without_host_or_with_an_agent_no_other_host_sends() {
        let bare = opening("198.51.100.7", 80, b"GET /a HTTP/1.1\r\n\r\n".to_vec());
        assert_eq!(
            signals(&[bare], false),
            ["web.no_user_agent", "web.no_host", "web.unnamed"]
        );
        // HTTP/1.0 may leave out Host; a sample cut inside the headers
        // says nothing about those past the cut.
        let old = opening(
            "198.51.100.7",
            80,
            b"GET /a HTTP/1.0\r\nUser-Agent: x\r\n\r\n".to_vec(),
        );
        let cut = opening(
            "198.51.100.7",
            80,
            b"GET /a HTTP/1.1\r\nAccept: */*\r\n".to_vec(),
        );
        assert_eq!(signals(&[old, cut], false), ["web.unnamed"]);
        // Twenty-five workstations browse with the same agent by name;
        // one then sends an agent no other does.
        let mut w = WebSignals::default();
        let (names, listed) = (PeerNames::default(), DomainSet::default());
        let mut out = Vec::new();
        let request = |host: u8, agent: &str| Event {
            src: IpAddr::from([10, 0, 1, host]),
            ..opening(
                "198.51.100.8",
                80,
                format!("GET / HTTP/1.1\r\nHost: example.org\r\nUser-Agent: {agent}\r\n\r\n")
                    .into_bytes(),
            )
        };
        for host in 1..=25 {
            w.observe(
                &request(host, "Mozilla/5.0 Firefox/133.0"),
                (true, false),
                &names,
                &listed,
                &mut out,
            );
        }
        assert!(out.is_empty(), "{out:?}");
        w.observe(
            &request(26, "Updater 0.1"),
            (true, false),
            &names,
            &listed,
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].detector, out[0].score), ("web.rare_user_agent", 15));
        assert!(
            out[0].summary.ends_with("Updater 0.1"),
            "{}",
            out[0].summary
        );
    }

    #[test]
    fn a_certificate_for_other_names_than_the_one_asked_is_a_trait() {
        use crate::detect::certificate::tests::named_flight;
        let (names, listed) = (PeerNames::default(), DomainSet::default());
        let run = |asked: &str, named: &[&str]| -> Vec<&'static str> {
            let mut w = WebSignals::default();
            let mut out = Vec::new();
            let hello = opening("198.51.100.7", 443, client_hello(&[sni(asked)]));
            w.observe(&hello, (true, false), &names, &listed, &mut out);
            let answer = Event {
                src: hello.dst,
                dst: hello.src,
                sport: hello.dport,
                dport: hello.sport,
                payload: named_flight(named),
                ..hello.clone()
            };
            w.observe(&answer, (false, true), &names, &listed, &mut out);
            out.iter()
                .map(|e| e.detector)
                .filter(|d| *d == "web.certificate_name")
                .collect()
        };
        assert_eq!(
            run("www.bank.example", &["c2.example"]),
            ["web.certificate_name"]
        );
        assert!(run("a.cdn.example", &["c2.example", "*.cdn.example"]).is_empty());
        assert!(run("c2.example", &["c2.example"]).is_empty());
    }
}
