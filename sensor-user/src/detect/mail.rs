//! Mail sent out by a host that is not a mail server
//! (`exfiltration.smtp`, T1048.003): credential stealers and keyloggers
//! (Agent Tesla, Snake Keylogger, HawkEye) mail what they took to a mailbox
//! of the attacker's over SMTP, and spam bots send through it. In a
//! managed network, workstations hand their mail to the organisation's
//! own servers; a host that completes SMTP sessions with outside servers
//! itself, on the relay port (25) or the submission ports (465 with TLS,
//! 587 [RFC 8314]), is doing what only mail servers do.
//!
//! A session counts when it carried data both ways (a greeting, a
//! command): a port check or a refused connection sent no mail. Reported
//! once per (host, server) a day: an alert, which adds up with other
//! evidence on the host. Mail servers are configured
//! (`[detection.roles] mail_servers`); a site that names none may have
//! every host send through outside providers, and is not judged.

use super::{
    event::{Event, Kind, Nanos, PROTO_TCP, SECOND},
    roles::Roles,
    window::OncePer,
    Evidence,
};

/// SMTP relay, submission over TLS, and submission [RFC 5321, RFC 8314].
pub const SMTP_PORTS: [u16; 3] = [25, 465, 587];

/// A (host, server) pair is reported again after this.
const REPORT_AGAIN_AFTER: Nanos = 24 * 3600 * SECOND;

/// Pairs remembered at most.
const PAIRS: usize = 1 << 14;

/// This project's choice: an alert, as a new admin edge is; several
/// together, or with other evidence, add up.
const SCORE: u8 = 60;

pub struct MailDetector {
    /// Pairs reported, pruned with the engine's sweep.
    pub reported: OncePer,
}

impl Default for MailDetector {
    fn default() -> Self {
        MailDetector {
            reported: OncePer::new(REPORT_AGAIN_AFTER, PAIRS),
        }
    }
}

impl MailDetector {
    /// `outbound`: the source is inside and the destination outside.
    pub fn observe(&mut self, e: &Event, outbound: bool, roles: &Roles, out: &mut Vec<Evidence>) {
        let Kind::FlowEnd(flow) = &e.kind else {
            return;
        };
        if !outbound
            || e.protocol != PROTO_TCP
            || !SMTP_PORTS.contains(&e.dport)
            || !flow.orig_data
            || !flow.resp_data
            || !roles.has_mail_servers()
            || roles.is_mail_server(e.src)
        {
            return;
        }
        if !self.reported.first((e.src, e.dst), e.ts) {
            return;
        }
        out.push(Evidence {
            host: e.src,
            detector: "exfiltration.smtp",
            technique: "T1048.003",
            score: SCORE,
            ts: e.ts,
            since: flow.start,
            peers: vec![format!("{}:{}", e.dst, e.dport)],
            count: 1,
            summary: format!(
                "sent mail to {}:{} itself ({} bytes), which only mail servers do",
                e.dst, e.dport, flow.orig_bytes
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{event::FlowSummary, roles::RolesConfig};

    fn session(src: &str, dport: u16, resp_data: bool) -> Event {
        Event {
            ts: 100 * SECOND,
            src: src.parse().unwrap(),
            dst: "198.51.100.25".parse().unwrap(),
            sport: 40000,
            dport,
            protocol: PROTO_TCP,
            kind: Kind::FlowEnd(FlowSummary {
                start: 90 * SECOND,
                orig_bytes: 48_000,
                orig_data: true,
                resp_data,
                answered: true,
                proven: true,
                ..Default::default()
            }),
            payload: vec![],
        }
    }

    #[test]
    fn a_workstation_sending_mail_out_alerts_and_a_mail_server_does_not() {
        let config: RolesConfig = toml::from_str(r#"mail_servers = ["10.0.0.25"]"#).unwrap();
        let roles = Roles::new(config);
        let mut d = MailDetector::default();
        let mut out = Vec::new();
        for port in SMTP_PORTS {
            d.observe(&session("10.0.0.5", port, true), true, &roles, &mut out);
        }
        // Once per (host, server) a day.
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            (out[0].detector, out[0].technique, out[0].score),
            ("exfiltration.smtp", "T1048.003", SCORE)
        );
        assert_eq!(out[0].peers, ["198.51.100.25:25"]);
        // The mail server, a session the server never answered with data,
        // an inside server, other ports: nothing.
        let mut out = Vec::new();
        let mut d = MailDetector::default();
        d.observe(&session("10.0.0.25", 25, true), true, &roles, &mut out);
        d.observe(&session("10.0.0.6", 587, false), true, &roles, &mut out);
        d.observe(&session("10.0.0.7", 25, true), false, &roles, &mut out);
        d.observe(&session("10.0.0.8", 443, true), true, &roles, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // A site with no mail server named is not judged.
        let none = Roles::new(RolesConfig::default());
        d.observe(&session("10.0.0.9", 25, true), true, &none, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }
}
