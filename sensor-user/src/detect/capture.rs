//! Reading pcap and pcapng files into detection events, with the same
//! choice of packets and the same flow accounting the datapath makes live.

use std::{collections::HashMap, net::IpAddr, path::Path};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};

use super::event::{
    Event, FlowSummary, Kind, Nanos, PROTO_ARP, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
    SECOND,
};
use super::pcapfile;
use sensor_common::telemetry::{
    carries_data, flow_timeout_ns, is_echo_request, is_observed, is_sampled_datagram,
    is_tiny_fragment, is_unreachable, is_wake, sample_span, samples_tail, starts_flow, tcp_event,
    wants_sample, DNS_PORT, EVENT_FIN, EVENT_PROBE, EVENT_RST, EVENT_SYN, EVENT_SYN_ACK,
    FLOW_ENTRIES, FLOW_PROVEN, INSPECT_UNKNOWN, TCP_FIN, TCP_MIN_HLEN, TCP_RST,
};
use sensor_common::HandshakeProof;

/// DNS messages are kept up to this many bytes (the datapath's sample size).
pub const DNS_SAMPLE: usize = sensor_common::telemetry::PAYLOAD_MAX;
/// A payload sample as the datapath takes it: which flows get them, how
/// many, and which bytes is `sensor_common::telemetry`'s rule.
fn sample(payload: &[u8], tail: bool) -> Vec<u8> {
    let (start, n) = sample_span(payload.len(), tail);
    payload[start..start + n].to_vec()
}

/// Counts of what a capture held, for the report.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct CaptureStats {
    pub packets: u64,
    /// Not IP or ARP, or of a link type we cannot read.
    pub undecodable: u64,
    /// Shorter than on the wire (a snap length); judged on what is there.
    pub snapped: u64,
    /// Cut before the headers detection needs, or a later fragment (no
    /// transport header): not judged at all, as in the datapath.
    pub unjudged: u64,
    /// Bytes lost at the end of a file cut mid-record (0: the file is whole).
    pub cut_bytes: u64,
    /// Packets naming a pcapng interface the file never described.
    pub unknown_interface: u64,
    pub events: u64,
}

#[derive(Hash, PartialEq, Eq, Clone, Copy)]
struct FlowKey {
    protocol: u8,
    a: (IpAddr, u16),
    b: (IpAddr, u16),
}

impl FlowKey {
    fn new(protocol: u8, src: (IpAddr, u16), dst: (IpAddr, u16)) -> FlowKey {
        let (a, b) = if src <= dst { (src, dst) } else { (dst, src) };
        FlowKey { protocol, a, b }
    }
}

struct Flow {
    orig: (IpAddr, u16),
    resp: (IpAddr, u16),
    summary: FlowSummary,
    last: Nanos,
    /// Each side sent a FIN; closed: both did, or a RST came.
    fin_orig: bool,
    fin_resp: bool,
    closed: bool,
    /// Payload samples sent so far, and whether the flow is sampled
    /// (`INSPECT_*`, as the datapath's `FlowStats::inspect`).
    samples: u8,
    inspect: u8,
    /// The originator's proof of its address, and its `FLOW_SYN_ACK` and
    /// `FLOW_PROVEN` bits, as in the datapath.
    proof: HandshakeProof,
    proof_flags: u8,
}

/// Turns decoded packets into events, tracking flows on packet time.
#[derive(Default)]
pub struct FlowTracker {
    flows: HashMap<FlowKey, Flow>,
    last_sweep: Nanos,
    /// Flows ended early to stay within `MAX_FLOWS`.
    pub evicted: u64,
}

/// Flows tracked at once (the datapath's flow table's size): a flood of
/// new flows ends the oldest early instead of growing without bound.
const MAX_FLOWS: usize = FLOW_ENTRIES as usize;

/// The transport facts of one packet.
pub struct Packet<'a> {
    pub ts: Nanos,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte (0 for other protocols); ICMP: the type in `dport`.
    pub tcp_flags: u8,
    pub len: u64,
    pub payload: &'a [u8],
    /// TCP: the payload's length on the wire (by the IP length: `payload`
    /// may be cut by a snap length), sequence and acknowledgment numbers.
    pub wire_payload: u32,
    pub seq: u32,
    pub ack: u32,
    /// A tiny first fragment (`is_tiny_fragment`): ports only, no flags.
    pub tiny_fragment: bool,
}

/// The engine's event for a TCP packet, by the shared rule.
fn tcp_kind(flags: u8, stray: bool) -> Option<Kind> {
    match tcp_event(flags, stray) {
        EVENT_SYN => Some(Kind::Syn),
        EVENT_SYN_ACK => Some(Kind::SynAck),
        EVENT_RST => Some(Kind::Rst),
        EVENT_PROBE => Some(Kind::Probe),
        EVENT_FIN => Some(Kind::Fin),
        _ => None,
    }
}

impl FlowTracker {
    /// Feeds one packet; `emit` gets the events it causes, in time order.
    pub fn packet(&mut self, p: &Packet, emit: &mut dyn FnMut(Event)) {
        self.sweep(p.ts, emit);
        if p.protocol == PROTO_ARP {
            // No flow: one event per request.
            emit(Event {
                ts: p.ts,
                src: p.src,
                dst: p.dst,
                sport: 0,
                dport: 0,
                protocol: PROTO_ARP,
                kind: Kind::ArpRequest,
                payload: Vec::new(),
            });
            return;
        }
        let event = |kind: Kind, payload: Vec<u8>| Event {
            ts: p.ts,
            src: p.src,
            dst: p.dst,
            sport: p.sport,
            dport: p.dport,
            protocol: p.protocol,
            kind,
            payload,
        };
        if p.tiny_fragment {
            // Reported, never tracked: its flags are in a later fragment.
            emit(event(Kind::Fragment, Vec::new()));
            return;
        }
        let key = FlowKey::new(p.protocol, (p.src, p.sport), (p.dst, p.dport));
        let is_new = !self.flows.contains_key(&key);
        let data = !p.payload.is_empty() && carries_data(p.protocol);
        if is_new && !starts_flow(p.protocol, p.tcp_flags, data) {
            // No flow (a bare ACK or RST after one ended): the packet's
            // event alone, as in the datapath.
            if let Some(kind) = tcp_kind(p.tcp_flags, true) {
                emit(event(kind, Vec::new()));
            }
            return;
        }
        if is_new && self.flows.len() >= MAX_FLOWS {
            self.evict(emit);
        }
        let flow = self.flows.entry(key).or_insert_with(|| Flow {
            orig: (p.src, p.sport),
            resp: (p.dst, p.dport),
            summary: FlowSummary {
                start: p.ts,
                ..Default::default()
            },
            last: p.ts,
            fin_orig: false,
            fin_resp: false,
            closed: false,
            samples: 0,
            inspect: INSPECT_UNKNOWN,
            proof: HandshakeProof::default(),
            proof_flags: 0,
        });
        let from_orig = (p.src, p.sport) == flow.orig;
        // A mark about the flow: named by its initiator, whichever side
        // sent this packet.
        let (orig, resp) = (flow.orig, flow.resp);
        let flow_mark = |kind: Kind| Event {
            src: orig.0,
            sport: orig.1,
            dst: resp.0,
            dport: resp.1,
            ..event(kind, Vec::new())
        };
        // Payload on the wire (TCP), or as captured (UDP).
        let has_data = p.wire_payload > 0 || !p.payload.is_empty();
        if !is_new && is_wake(p.ts.saturating_sub(flow.last), has_data) {
            emit(flow_mark(Kind::Wake));
        }
        flow.last = p.ts;
        if from_orig {
            flow.summary.orig_bytes += p.len;
            flow.summary.orig_packets += 1;
            flow.summary.orig_data |= data;
        } else {
            flow.summary.resp_bytes += p.len;
            flow.summary.resp_packets += 1;
            flow.summary.answered = true;
            flow.summary.resp_data |= data;
        }
        match p.protocol {
            PROTO_TCP => {
                let f = p.tcp_flags;
                flow.proof_flags =
                    flow.proof
                        .follow(flow.proof_flags, from_orig, f, p.seq, p.ack, p.wire_payload);
                let proven = flow.proof_flags & FLOW_PROVEN != 0;
                if proven && !flow.summary.proven {
                    emit(flow_mark(Kind::Proven));
                }
                flow.summary.proven = proven;
                if let Some(kind) = tcp_kind(f, false) {
                    emit(event(kind, Vec::new()));
                }
                if f & TCP_FIN != 0 {
                    if from_orig {
                        flow.fin_orig = true;
                    } else {
                        flow.fin_resp = true;
                    }
                }
                // Ended by the sweep once it has lingered (`CLOSED_LINGER_NS`).
                flow.closed |= f & TCP_RST != 0 || (flow.fin_orig && flow.fin_resp);
                let sampled = !p.payload.is_empty()
                    && wants_sample(
                        &mut flow.inspect,
                        &mut flow.samples,
                        (p.sport, p.dport),
                        from_orig,
                        p.payload,
                    );
                if sampled {
                    emit(event(Kind::Data, sample(p.payload, samples_tail(p.dport))));
                }
            }
            PROTO_UDP => {
                if is_new {
                    emit(event(Kind::FlowStart, Vec::new()));
                }
                if p.sport == DNS_PORT || p.dport == DNS_PORT {
                    let n = p.payload.len().min(DNS_SAMPLE);
                    emit(event(Kind::Dns, p.payload[..n].to_vec()));
                } else if is_sampled_datagram(p.sport, p.dport) {
                    emit(event(Kind::Data, sample(p.payload, samples_tail(p.dport))));
                }
            }
            PROTO_ICMP | PROTO_ICMPV6 if is_unreachable(p.protocol, p.dport) => {
                let n = p.payload.len().min(DNS_SAMPLE);
                emit(event(Kind::IcmpError, p.payload[..n].to_vec()));
            }
            PROTO_ICMP | PROTO_ICMPV6 if is_new && is_echo_request(p.protocol, p.dport) => {
                emit(event(Kind::FlowStart, Vec::new()));
            }
            _ => {}
        }
    }

    fn end(&mut self, key: FlowKey, emit: &mut dyn FnMut(Event)) {
        if let Some(flow) = self.flows.remove(&key) {
            emit(Event {
                ts: flow.last,
                src: flow.orig.0,
                dst: flow.resp.0,
                sport: flow.orig.1,
                dport: flow.resp.1,
                protocol: key.protocol,
                kind: Kind::FlowEnd(flow.summary),
                payload: Vec::new(),
            });
        }
    }

    /// Live: ends flows idle for longer than their timeout, when no packet
    /// has come to do it.
    pub fn tick(&mut self, now: Nanos, emit: &mut dyn FnMut(Event)) {
        self.sweep(now, emit);
    }

    /// How many flows are open.
    pub fn open_flows(&self) -> usize {
        self.flows.len()
    }

    /// Ends flows idle for longer than their timeout (once a second of
    /// packet time).
    fn sweep(&mut self, now: Nanos, emit: &mut dyn FnMut(Event)) {
        if now < self.last_sweep + SECOND {
            return;
        }
        self.last_sweep = now;
        let idle = self.flows_where(|k, f| f.last + flow_timeout_ns(k.protocol, f.closed) < now);
        self.end_oldest_first(idle, emit);
    }

    /// Ends every flow still open (the end of a capture).
    pub fn finish(&mut self, emit: &mut dyn FnMut(Event)) {
        let open = self.flows_where(|_, _| true);
        self.end_oldest_first(open, emit);
    }

    /// Makes room at `MAX_FLOWS`: ends the oldest eighth of the flows at
    /// once, so a flood of new flows costs one partial sort per
    /// `MAX_FLOWS / 8` flows rather than a search per flow.
    fn evict(&mut self, emit: &mut dyn FnMut(Event)) {
        let mut all = self.flows_where(|_, _| true);
        let n = (MAX_FLOWS / 8).min(all.len().saturating_sub(1));
        all.select_nth_unstable_by_key(n, |(last, _)| *last);
        all.truncate(n);
        self.evicted += n as u64;
        self.end_oldest_first(all, emit);
    }

    /// The flows `keep` picks, with when each was last seen.
    fn flows_where(&self, keep: impl Fn(&FlowKey, &Flow) -> bool) -> Vec<(Nanos, FlowKey)> {
        self.flows
            .iter()
            .filter(|(k, f)| keep(k, f))
            .map(|(k, f)| (f.last, *k))
            .collect()
    }

    fn end_oldest_first(&mut self, mut flows: Vec<(Nanos, FlowKey)>, emit: &mut dyn FnMut(Event)) {
        flows.sort_by_key(|(last, _)| *last);
        for (_, key) in flows {
            self.end(key, emit);
        }
    }
}

/// How frames are framed: the link types a capture or a tap hands us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Linux cooked capture v1 (`tcpdump -i any` before libpcap 1.10).
    LinuxSll,
    /// Linux cooked capture v2.
    LinuxSll2,
    /// A bare IPv4 or IPv6 header first.
    RawIp,
    /// BSD loopback: a 4-byte address family (either byte order), then IP.
    Loopback,
}

impl Link {
    /// The link type of a pcap or pcapng header (tcpdump.org's
    /// LINKTYPE_* values); `None` for one we cannot decode.
    pub fn from_linktype(value: i32) -> Option<Link> {
        match value {
            1 => Some(Link::Ethernet),
            113 => Some(Link::LinuxSll),
            276 => Some(Link::LinuxSll2),
            // LINKTYPE_RAW, the DLT_RAW values some systems wrote, IPv4, IPv6.
            101 | 12 | 14 | 228 | 229 => Some(Link::RawIp),
            // NULL and LOOP (OpenBSD).
            0 | 108 => Some(Link::Loopback),
            _ => None,
        }
    }
}

/// Why a frame gave no packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undecoded {
    /// Not IP or ARP, or a link type we cannot read.
    NotIp,
    /// Cut (snap length) before the headers detection needs, or a later
    /// fragment (no transport header to judge).
    Truncated,
}

/// Decodes one frame into transport facts. `len` is the frame's length on
/// the wire; `data` may be shorter (a snap length): what headers are there
/// are used.
pub fn decode(link: Link, ts: Nanos, len: u64, data: &[u8]) -> Result<Packet<'_>, Undecoded> {
    let cut = (data.len() as u64) < len;
    let failed = if cut {
        Undecoded::Truncated
    } else {
        Undecoded::NotIp
    };
    let sliced = match link {
        Link::Ethernet => LaxSlicedPacket::from_ethernet(data).map_err(|_| failed)?,
        Link::LinuxSll => {
            let protocol = data.get(14..16).ok_or(Undecoded::Truncated)?;
            let ether_type = EtherType(u16::from_be_bytes([protocol[0], protocol[1]]));
            LaxSlicedPacket::from_ether_type(ether_type, &data[16..])
        }
        Link::LinuxSll2 => {
            let protocol = data.get(0..2).ok_or(Undecoded::Truncated)?;
            let rest = data.get(20..).ok_or(Undecoded::Truncated)?;
            LaxSlicedPacket::from_ether_type(
                EtherType(u16::from_be_bytes([protocol[0], protocol[1]])),
                rest,
            )
        }
        Link::RawIp => LaxSlicedPacket::from_ip(data).map_err(|_| failed)?,
        Link::Loopback => {
            let rest = data.get(4..).ok_or(Undecoded::Truncated)?;
            LaxSlicedPacket::from_ip(rest).map_err(|_| failed)?
        }
    };
    // (offset 0, more fragments): the first of several fragments, whose
    // transport header etherparse leaves unread.
    let mut first_fragment = None;
    // Bytes after the IP headers by the IP length, whatever was captured.
    let mut ip_payload_len = None;
    let (src, dst, protocol) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            ip_payload_len = Some((h.total_len() as usize).saturating_sub(h.ihl() as usize * 4));
            if h.fragments_offset().value() != 0 {
                return Err(Undecoded::Truncated);
            }
            if h.more_fragments() {
                first_fragment = Some(ip.payload().payload);
            }
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                h.protocol().0,
            )
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let extensions = ip.extensions().slice().len();
            // 0: a jumbogram, whose length is elsewhere.
            ip_payload_len = match ip.header().payload_length() as usize {
                0 => None,
                n => Some(n.saturating_sub(extensions)),
            };
            let first = ip.header().next_header().0;
            match ipv6_fragment(first, ip.extensions().slice()) {
                Some((0, true)) => first_fragment = Some(ip.payload().payload),
                Some((0, false)) | None => {}
                Some(_) => return Err(Undecoded::Truncated),
            }
            (
                IpAddr::V6(ip.header().source_addr()),
                IpAddr::V6(ip.header().destination_addr()),
                ip.payload().ip_number.0,
            )
        }
        Some(LaxNetSlice::Arp(arp)) => {
            let request = arp.operation() == etherparse::ArpOperation::REQUEST;
            let src: [u8; 4] = arp
                .sender_protocol_addr()
                .try_into()
                .map_err(|_| Undecoded::NotIp)?;
            let dst: [u8; 4] = arp
                .target_protocol_addr()
                .try_into()
                .map_err(|_| Undecoded::NotIp)?;
            if !request || arp.proto_addr_type() != EtherType::IPV4 {
                return Err(Undecoded::NotIp);
            }
            (IpAddr::from(src), IpAddr::from(dst), PROTO_ARP)
        }
        None if cut => return Err(Undecoded::Truncated),
        None => return Err(Undecoded::NotIp),
    };
    let mut p = Packet {
        ts,
        src,
        dst,
        protocol,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        len,
        payload: &[],
        wire_payload: 0,
        seq: 0,
        ack: 0,
        tiny_fragment: false,
    };
    if let Some(bytes) = first_fragment {
        return first_fragment_transport(p, bytes);
    }
    match sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            p.sport = tcp.source_port();
            p.dport = tcp.destination_port();
            p.tcp_flags = tcp.slice()[13];
            p.payload = tcp.payload();
            p.seq = tcp.sequence_number();
            p.ack = tcp.acknowledgment_number();
            p.wire_payload = ip_payload_len
                .map_or(p.payload.len(), |n| n.saturating_sub(tcp.header_len()))
                as u32;
        }
        Some(TransportSlice::Udp(udp)) => {
            p.sport = udp.source_port();
            p.dport = udp.destination_port();
            p.payload = udp.payload();
        }
        // Echo requests start an ICMP "flow"; unreachables tell of refused
        // probes (the payload from the rest of the header on, as the
        // datapath sends it); other replies belong to what they answer.
        Some(TransportSlice::Icmpv4(icmp)) => {
            if !is_observed(PROTO_ICMP, icmp.type_u8() as u16) {
                return Err(Undecoded::NotIp);
            }
            p.dport = icmp.type_u8() as u16;
            p.sport = icmp.code_u8() as u16;
            p.payload = icmp.slice().get(4..).unwrap_or(&[]);
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            if !is_observed(PROTO_ICMPV6, icmp.type_u8() as u16) {
                return Err(Undecoded::NotIp);
            }
            p.dport = icmp.type_u8() as u16;
            p.sport = icmp.code_u8() as u16;
            p.payload = icmp.slice().get(4..).unwrap_or(&[]);
        }
        // A transport header the snap length cut: the packet cannot be
        // judged (its ports and flags are gone).
        None if cut && matches!(protocol, PROTO_TCP | PROTO_UDP | PROTO_ICMP | PROTO_ICMPV6) => {
            return Err(Undecoded::Truncated)
        }
        _ => {}
    }
    Ok(p)
}

/// The fragment header among IPv6 extension headers: (offset in 8-byte
/// units, more fragments). Walked here, every read checked, rather than
/// with etherparse's iterator over a lax slice, which reads past a header
/// cut short (found by the `frame` fuzz target: a heap overflow in
/// `Ipv6RawExtHeaderSlice::from_slice_unchecked`, etherparse 0.21.0).
fn ipv6_fragment(first: u8, exts: &[u8]) -> Option<(u16, bool)> {
    let mut next = first;
    let mut at = 0usize;
    // At most as many headers as the datapath walks.
    for _ in 0..8 {
        let header = exts.get(at..at + 4)?;
        match next {
            44 => {
                let field = u16::from_be_bytes([header[2], header[3]]);
                return Some((field >> 3, field & 1 != 0));
            }
            51 => at += (header[1] as usize + 2) * 4,
            0 | 43 | 60 | 135 => at += (header[1] as usize + 1) * 8,
            _ => return None,
        }
        next = header[0];
    }
    None
}

/// The transport facts of a first fragment, from its bytes after the IP
/// headers, as the datapath reads them: a tiny TCP fragment gives its ports
/// only; a whole header is read as in any other packet.
fn first_fragment_transport<'a>(mut p: Packet<'a>, b: &'a [u8]) -> Result<Packet<'a>, Undecoded> {
    let port = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    if is_tiny_fragment(p.protocol, true, b.len()) {
        p.tiny_fragment = true;
        if b.len() >= 4 {
            (p.sport, p.dport) = (port(0), port(2));
        }
        return Ok(p);
    }
    match p.protocol {
        PROTO_TCP => {
            let header = (b[12] >> 4) as usize * 4;
            if header < TCP_MIN_HLEN || header > b.len() {
                return Err(Undecoded::Truncated);
            }
            (p.sport, p.dport, p.tcp_flags) = (port(0), port(2), b[13]);
            p.payload = &b[header..];
            let number = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            (p.seq, p.ack) = (number(4), number(8));
            p.wire_payload = p.payload.len() as u32;
        }
        PROTO_UDP if b.len() >= 8 => {
            (p.sport, p.dport) = (port(0), port(2));
            p.payload = &b[8..];
        }
        PROTO_ICMP | PROTO_ICMPV6 if b.len() >= 4 => {
            if !is_observed(p.protocol, b[0] as u16) {
                return Err(Undecoded::NotIp);
            }
            (p.dport, p.sport) = (b[0] as u16, b[1] as u16);
            p.payload = &b[4..];
        }
        PROTO_UDP | PROTO_ICMP | PROTO_ICMPV6 => return Err(Undecoded::Truncated),
        _ => {}
    }
    Ok(p)
}

/// Reads a pcap or pcapng file and feeds every event to `emit`, in
/// packet-time order. `progress`: report on stderr while a long file is read.
pub fn read_file(
    path: &Path,
    progress: bool,
    emit: &mut dyn FnMut(Event),
) -> Result<CaptureStats, pcapfile::FileError> {
    let mut stats = CaptureStats::default();
    let mut tracker = FlowTracker::default();
    let mut events = 0u64;
    let mut emit_counted = |e: Event| {
        events += 1;
        emit(e)
    };
    let report = pcapfile::read(path, progress, &mut |frame| {
        stats.packets += 1;
        if (frame.data.len() as u32) < frame.orig_len {
            stats.snapped += 1;
        }
        let Some(link) = Link::from_linktype(frame.link.0) else {
            stats.undecodable += 1;
            return;
        };
        match decode(link, frame.ts, frame.orig_len as u64, frame.data) {
            Ok(p) => tracker.packet(&p, &mut emit_counted),
            Err(Undecoded::NotIp) => stats.undecodable += 1,
            Err(Undecoded::Truncated) => stats.unjudged += 1,
        }
    })?;
    tracker.finish(&mut emit_counted);
    stats.events = events;
    stats.cut_bytes = report.cut_bytes;
    stats.unknown_interface = report.unknown_interface;
    Ok(stats)
}

#[cfg(test)]
mod fragment_tests {
    use super::*;

    #[test]
    fn ipv6_fragment_headers_are_found_and_cut_headers_are_none() {
        // Hop-by-hop (8 bytes), then a fragment header: offset 0, M set.
        let exts = [44, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 1, 0, 0, 0, 1];
        assert_eq!(ipv6_fragment(0, &exts), Some((0, true)));
        // A later fragment.
        assert_eq!(
            ipv6_fragment(44, &[6, 0, 0x05, 0x00, 0, 0, 0, 9]),
            Some((160, false))
        );
        // A header whose length runs past the slice, and a cut slice.
        assert_eq!(ipv6_fragment(0, &[44, 200, 0, 0]), None);
        assert_eq!(ipv6_fragment(0, &[44, 0]), None);
        assert_eq!(ipv6_fragment(6, &[]), None);
    }

    #[test]
    fn the_fuzzers_ipv6_crash_decodes_without_reading_past_the_frame() {
        // Found by the `frame` fuzz target (a raw IPv6 packet whose
        // hop-by-hop header is cut short).
        let mut frame = vec![0x61, 0xc8, 0xff, 0x30, 0x45, 0x30, 0x00, 0x00, 0x4d, 0xa0];
        frame.resize(48, 0);
        frame[47] = 0x2f;
        let _ = decode(Link::RawIp, 1, frame.len() as u64, &frame);
    }
}
