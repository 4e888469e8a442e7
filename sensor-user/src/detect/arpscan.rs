//! Host discovery by ARP (`scan.arp`, T1018 Remote System Discovery).
//!
//! Inside its own subnet a scanner finds live hosts with ARP requests, not
//! IP packets: `nmap -sn 10.10.0.0/24` from a neighbour, netdiscover,
//! arp-scan and most worms' local sweeps ask for every address in turn, and
//! hosts that do not exist never get an IP packet at all. A workstation asks
//! for its gateway and a handful of servers. Only a mirror port sees these
//! frames (they never cross a gateway), so this detector lives off taps.
//! Gratuitous ARP and address-conflict probes (sender 0.0.0.0) are ignored.

use serde::{Deserialize, Serialize};

use super::{
    event::{Event, Kind, SECOND},
    window::FanOut,
    Evidence,
};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ArpScanConfig {
    /// Distinct addresses one host asks for within the window.
    pub targets: usize,
    pub window_secs: u64,
}

impl Default for ArpScanConfig {
    fn default() -> Self {
        ArpScanConfig {
            targets: 32,
            window_secs: 60,
        }
    }
}

pub struct ArpScanDetector {
    config: ArpScanConfig,
    /// Addresses each host asked for.
    asked: FanOut,
}

impl ArpScanDetector {
    /// New settings from a reload: they apply from the next event, and
    /// what was learnt so far stays.
    pub fn reconfigure(&mut self, config: ArpScanConfig) {
        self.config = config;
    }

    pub fn new(config: ArpScanConfig) -> ArpScanDetector {
        ArpScanDetector {
            config,
            asked: FanOut::default(),
        }
    }

    pub fn observe(&mut self, e: &Event, out: &mut Vec<Evidence>) {
        if e.kind != Kind::ArpRequest || e.src == e.dst || e.src.is_unspecified() {
            return;
        }
        let Some((n, peers)) =
            self.asked
                .add(e.src, e.dst, e.ts, self.window(), self.config.targets)
        else {
            return;
        };
        out.push(Evidence {
            host: e.src,
            detector: "scan.arp",
            technique: "T1018",
            score: 75,
            ts: e.ts,
            since: e.ts,
            peers,
            count: n as u64,
            summary: format!(
                "ARP requests for {n} addresses of its subnet within {}s (host discovery)",
                self.config.window_secs
            ),
        });
    }

    pub fn window(&self) -> u64 {
        self.config.window_secs * SECOND
    }

    /// Forgets hosts quiet since `before`.
    /// Hosts the sweep table dropped to stay within its limit.
    pub fn evicted(&self) -> u64 {
        self.asked.evicted
    }

    pub fn prune(&mut self, before: u64) {
        self.asked.prune(before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::event::PROTO_ARP;
    use std::net::IpAddr;

    fn ask(src: &str, target: u8, ts: u64) -> Event {
        Event {
            ts,
            src: src.parse().unwrap(),
            dst: IpAddr::from([10, 10, 0, target]),
            sport: 0,
            dport: 0,
            protocol: PROTO_ARP,
            kind: Kind::ArpRequest,
            payload: Vec::new(),
        }
    }

    #[test]
    fn a_sweep_is_reported_and_a_workstation_is_not() {
        let mut d = ArpScanDetector::new(ArpScanConfig::default());
        let mut out = Vec::new();
        // A workstation: the gateway and two servers, again and again.
        for i in 0..300u64 {
            d.observe(
                &ask("10.10.0.13", [1, 53, 80][i as usize % 3], i * SECOND),
                &mut out,
            );
        }
        // Gratuitous ARP and probes.
        d.observe(&ask("10.10.0.13", 13, 0), &mut out);
        assert!(out.is_empty(), "{out:?}");
        for t in 1..=254u8 {
            d.observe(
                &ask("10.10.0.11", t, 400 * SECOND + t as u64 * 1_000_000),
                &mut out,
            );
        }
        let hosts: Vec<_> = out.iter().map(|e| e.host.to_string()).collect();
        assert!(hosts.iter().all(|h| h == "10.10.0.11"), "{hosts:?}");
        // Reported at 32, 64 and 128: the count keeps up, not a stream.
        assert_eq!(
            out.iter().map(|e| e.count).collect::<Vec<_>>(),
            [32, 64, 128]
        );
        assert_eq!(out[0].detector, "scan.arp");
    }
}
