//! What the detectors see: one event per packet that matters (connection
//! attempts and their answers, the first packet of a UDP or ICMP flow, DNS
//! messages) and one per finished flow with its byte counts. The datapath's
//! telemetry and the capture reader produce the same events, so one engine
//! serves live traffic and capture files.

use std::net::IpAddr;

/// Nanoseconds of packet time: capture timestamps offline, the datapath's
/// clock live. Detectors never read the wall clock.
pub type Nanos = u64;

pub const SECOND: Nanos = 1_000_000_000;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
/// Not an IP protocol (255 is reserved): an ARP request, `src` asking for
/// `dst`. Only decoded frames (taps, captures) give these.
pub const PROTO_ARP: u8 = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A TCP SYN without ACK: a connection attempt.
    Syn,
    /// A SYN-ACK: the attempt was answered.
    SynAck,
    /// A RST: refused or torn down.
    Rst,
    /// A FIN.
    Fin,
    /// A TCP packet of no connection that is not a SYN or a RST: a FIN,
    /// NULL, Xmas, Maimon, ACK or Window scan's probe
    /// (`sensor_common::telemetry::tcp_event`).
    Probe,
    /// A first fragment too short for the TCP header (`nmap -f`): the
    /// ports when it holds them, no flags.
    Fragment,
    /// The first packet of a UDP or ICMP flow (ICMP: echo requests only
    /// start one).
    FlowStart,
    /// A DNS message (UDP port 53); `payload` holds it from its header.
    Dns,
    /// A sample of TCP payload from a flow worth inspecting (Windows admin
    /// protocols: SMB, DCE/RPC), from either side.
    Data,
    /// An ICMP destination unreachable: `sport` is the code; `payload`
    /// holds the rest of the ICMP header (4 bytes) and the start of the
    /// datagram it refuses (see `icmp::refused`).
    IcmpError,
    /// Live only: a packet whose source address is forged (another
    /// segment's address on a port, or not from the MAC the address is
    /// bound to). Never evidence against `src`; the sender is found by its
    /// MAC (`crate::detection`).
    Spoofed,
    /// An IPv4 ARP request: `src` (sender) asks who has `dst` (target).
    ArpRequest,
    /// A tracked flow active again after an idle gap
    /// (`sensor_common::telemetry::is_wake`): `src` is the flow's
    /// initiator, whichever side sent the packet.
    Wake,
    /// Captures and taps: a TCP flow's initiator acknowledged the
    /// responder's data (`sensor_common::HandshakeProof`), at the packet
    /// that did, once per flow: its address is its own. (Live, sensord
    /// lists proven flows from the flow table once a second instead.)
    Proven,
    /// A flow ended (FIN/RST seen, idle, or the end of the capture).
    FlowEnd(FlowSummary),
}

/// Byte and packet counts of a finished flow, by direction: `orig` is the
/// side that sent the first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowSummary {
    pub orig_bytes: u64,
    pub resp_bytes: u64,
    pub orig_packets: u64,
    pub resp_packets: u64,
    pub start: Nanos,
    /// Whether the responder ever answered (SYN-ACK for TCP, any packet
    /// back for UDP/ICMP).
    pub answered: bool,
    /// Whether each side sent transport payload (not only a handshake).
    pub orig_data: bool,
    pub resp_data: bool,
    /// TCP: the originator acknowledged data the responder sent, with the
    /// responder's sequence numbers (`sensor_common::HandshakeProof`): the
    /// address is really its own.
    pub proven: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub ts: Nanos,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
    pub kind: Kind,
    /// Payload bytes, kept only for DNS and `Data` samples.
    pub payload: Vec<u8>,
}

/// A TCP or UDP connection, the same whichever side sent the packet:
/// its two (address, port) ends in order.
pub type Connection = (IpAddr, u16, IpAddr, u16);

impl Event {
    /// The connection this event belongs to.
    pub fn connection(&self) -> Connection {
        if (self.src, self.sport) <= (self.dst, self.dport) {
            (self.src, self.sport, self.dst, self.dport)
        } else {
            (self.dst, self.dport, self.src, self.sport)
        }
    }
}

/// The datagram an ICMP unreachable refuses: (its source, its destination,
/// protocol, destination port), read from the quoted header.
pub fn refused(payload: &[u8]) -> Option<(IpAddr, IpAddr, u8, u16)> {
    // Skip the rest of the ICMP header (unused / MTU).
    let inner = payload.get(4..)?;
    match inner.first()? >> 4 {
        4 => {
            let ihl = (inner[0] & 0x0f) as usize * 4;
            let h: &[u8; 20] = inner.get(..20)?.try_into().ok()?;
            let src = IpAddr::from([h[12], h[13], h[14], h[15]]);
            let dst = IpAddr::from([h[16], h[17], h[18], h[19]]);
            let l4 = inner.get(ihl..ihl + 4)?;
            Some((src, dst, h[9], u16::from_be_bytes([l4[2], l4[3]])))
        }
        6 => {
            let h = inner.get(..40)?;
            let src: [u8; 16] = h[8..24].try_into().ok()?;
            let dst: [u8; 16] = h[24..40].try_into().ok()?;
            let l4 = inner.get(40..44)?;
            Some((
                IpAddr::from(src),
                IpAddr::from(dst),
                h[6],
                u16::from_be_bytes([l4[2], l4[3]]),
            ))
        }
        _ => None,
    }
}
