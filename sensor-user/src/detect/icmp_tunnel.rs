//! ICMP tunnels (`tunnel.icmp`, T1095): data carried in echo requests
//! (ptunnel-ng, icmptunnel, hans, pingtunnel), to reach outside past a
//! firewall that lets ping through. ping sends one small request a second
//! (56 data bytes on Linux, 32 on Windows: frames of 98 and 74 bytes); a
//! tunnel sends as fast as its data comes, in requests sized by it, up to
//! its MTU. So an echo flow from an inside host that, by the time it ends
//! (a minute without a request, or the capture's end), carried more than
//! `MIN_BYTES` in requests averaging more than `MIN_AVERAGE` bytes is
//! evidence: far beyond what ping's fixed patterns give.
//!
//! Judged when the flow ends: the datapath keeps per-flow counts, not
//! each request's size, so the variation in sizes the tunnel shows is read
//! as their average.

use sensor_common::telemetry::is_echo_request;

use super::{
    event::{Event, Kind, Nanos, SECOND},
    window::OncePer,
    Evidence,
};

/// Request bytes (frames) an echo flow must carry: 64 KiB, 900 requests of
/// Linux's default ping, a quarter of an hour of it.
const MIN_BYTES: u64 = 64 * 1024;
/// Average request frame above ping's defaults (74 and 98 bytes) with room
/// for options and VLAN tags: this project's choice.
const MIN_AVERAGE: u64 = 160;
/// Score: an alert that adds up with other evidence on the host; an MTU
/// test with large pings is the known false positive.
const SCORE: u8 = 65;

/// Reported once per (host, peer) a day.
const REPORT_AGAIN_AFTER: Nanos = 24 * 3600 * SECOND;
const PAIRS: usize = 1 << 14;

pub struct IcmpTunnelDetector {
    /// Pairs reported, pruned with the engine's sweep.
    pub reported: OncePer,
}

impl Default for IcmpTunnelDetector {
    fn default() -> Self {
        IcmpTunnelDetector {
            reported: OncePer::new(REPORT_AGAIN_AFTER, PAIRS),
        }
    }
}

impl IcmpTunnelDetector {
    /// `inside_src`: the sender of the requests is inside.
    pub fn observe(&mut self, e: &Event, inside_src: bool, out: &mut Vec<Evidence>) {
        let Kind::FlowEnd(flow) = &e.kind else {
            return;
        };
        // Echo requests [RFC 792, RFC 4443]; the flow's sender sent them.
        if !inside_src || !is_echo_request(e.protocol, e.dport) || flow.orig_packets == 0 {
            return;
        }
        let average = flow.orig_bytes / flow.orig_packets;
        if flow.orig_bytes < MIN_BYTES || average < MIN_AVERAGE {
            return;
        }
        if !self.reported.first((e.src, e.dst), e.ts) {
            return;
        }
        out.push(Evidence {
            host: e.src,
            detector: "tunnel.icmp",
            technique: "T1095",
            score: SCORE,
            ts: e.ts,
            since: flow.start,
            peers: vec![e.dst.to_string()],
            count: flow.orig_packets,
            summary: format!(
                "{} echo requests to {} carrying {} bytes (average {average}): a tunnel, not ping",
                flow.orig_packets, e.dst, flow.orig_bytes
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::event::{FlowSummary, PROTO_ICMP};

    fn echo_flow(packets: u64, bytes: u64) -> Event {
        Event {
            ts: 600 * SECOND,
            src: "10.0.0.5".parse().unwrap(),
            dst: "198.51.100.9".parse().unwrap(),
            sport: 0,
            dport: 8,
            protocol: PROTO_ICMP,
            kind: Kind::FlowEnd(FlowSummary {
                start: 0,
                orig_packets: packets,
                orig_bytes: bytes,
                ..Default::default()
            }),
            payload: vec![],
        }
    }

    #[test]
    fn volume_in_large_requests_is_a_tunnel_and_ping_is_not() {
        let mut d = IcmpTunnelDetector::default();
        let mut out = Vec::new();
        // An hour of Linux's ping (98-byte frames); a flood of default
        // pings (`ping -f`, 100,000 of them); an MTU probe of 20 large
        // requests.
        d.observe(&echo_flow(3600, 3600 * 98), true, &mut out);
        d.observe(&echo_flow(100_000, 100_000 * 98), true, &mut out);
        d.observe(&echo_flow(20, 20 * 1514), true, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // 2 MB through ptunnel: requests of up to 1 KB and small acks.
        d.observe(&echo_flow(3000, 2_000_000), true, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].detector, out[0].score), ("tunnel.icmp", SCORE));
        // Once a day per pair; an outside sender is not ours to judge.
        d.observe(&echo_flow(3000, 2_000_000), true, &mut out);
        d.observe(&echo_flow(3000, 2_000_000), false, &mut out);
        assert_eq!(out.len(), 1);
    }
}
