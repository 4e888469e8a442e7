//! Web vulnerability scanners, by the user agent their HTTP requests
//! announce (T1595.002). The Nmap Scripting Engine, Nikto, sqlmap and their
//! kind send a fixed, documented User-Agent by default; a workstation's
//! browser does not. An attacker can change it, so this is a cheap extra
//! signal next to the scan detectors, not a replacement for them. Requests
//! are read from the payload sample of each HTTP conversation's opening.

use std::{collections::HashSet, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::{
    event::{Event, Kind, PROTO_TCP},
    inspect, Evidence,
};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebScanConfig {
    /// Substrings (case-insensitive) of scanners' default user agents.
    pub user_agents: Vec<String>,
}

impl Default for WebScanConfig {
    fn default() -> Self {
        WebScanConfig {
            // Each tool's default, as its documentation or source states:
            // "Mozilla/5.0 (compatible; Nmap Scripting Engine; ...)",
            // "Mozilla/5.00 (Nikto/2.x) ...", "sqlmap/1.x (https://sqlmap.org)",
            // "WPScan v3.x", "Mozilla/5.0 [en] (X11, U; OpenVAS-VT ...)",
            // "masscan/1.x", "Mozilla/5.0 zgrab/0.x", "Fuzz Faster U Fool".
            user_agents: [
                "Nmap Scripting Engine",
                "Nikto",
                "sqlmap",
                "WPScan",
                "OpenVAS",
                "masscan",
                "zgrab",
                "Fuzz Faster U Fool",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

pub struct WebScanDetector {
    agents: Vec<String>,
    reported: HashSet<(IpAddr, IpAddr)>,
}

impl WebScanDetector {
    pub fn new(config: WebScanConfig) -> WebScanDetector {
        WebScanDetector {
            agents: config
                .user_agents
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect(),
            reported: HashSet::new(),
        }
    }

    pub fn observe(&mut self, e: &Event, out: &mut Vec<Evidence>) {
        if e.kind != Kind::Data || e.protocol != PROTO_TCP {
            return;
        }
        let Some(request) = inspect::http_request(&e.payload) else {
            return;
        };
        let Some(agent) = request.user_agent else {
            return;
        };
        let lower = agent.to_ascii_lowercase();
        if !self.agents.iter().any(|a| lower.contains(a.as_str())) {
            return;
        }
        // Once per scanner and target: a scan sends hundreds of requests.
        super::window::limit_reported(&mut self.reported);
        if !self.reported.insert((e.src, e.dst)) {
            return;
        }
        let target = request.host.unwrap_or_else(|| e.dst.to_string());
        out.push(Evidence {
            host: e.src,
            detector: "scan.web",
            technique: "T1595.002",
            score: 80,
            ts: e.ts,
            since: e.ts,
            peers: vec![e.dst.to_string()],
            count: 1,
            summary: format!(
                "HTTP {} {} to {target}:{} with a scanner's user agent: {agent}",
                request.method, request.path, e.dport
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(agent: &str, dst: &str) -> Event {
        Event {
            ts: 1,
            src: "10.10.0.11".parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: 40000,
            dport: 80,
            protocol: PROTO_TCP,
            kind: Kind::Data,
            payload: format!(
                "GET /robots.txt HTTP/1.1\r\nHost: intranet\r\nUser-Agent: {agent}\r\n\r\n"
            )
            .into_bytes(),
        }
    }

    #[test]
    fn scanner_agents_are_reported_once_per_target_and_browsers_never() {
        let mut d = WebScanDetector::new(WebScanConfig::default());
        let mut out = Vec::new();
        let nse = "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)";
        d.observe(&request(nse, "10.10.0.12"), &mut out);
        d.observe(&request(nse, "10.10.0.12"), &mut out);
        d.observe(
            &request(
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "10.10.0.13",
            ),
            &mut out,
        );
        d.observe(&request("curl/7.88.1", "10.10.0.13"), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].detector, "scan.web");
        assert!(
            out[0].summary.contains("Nmap Scripting Engine"),
            "{}",
            out[0].summary
        );
        assert!(
            out[0].summary.contains("to intranet:80"),
            "{}",
            out[0].summary
        );
    }
}
