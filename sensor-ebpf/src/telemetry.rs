//! Telemetry for the detection engine: per-flow counters in an LRU table,
//! and events through a ring buffer for the packets that matter (TCP SYN,
//! SYN-ACK, RST, FIN; TCP probes outside any connection and tiny fragments;
//! the first packet of a UDP or ICMP flow; a flow waking after an idle
//! gap; DNS messages and Kerberos datagrams; payload samples of Windows
//! admin-protocol flows). The cost per packet is
//! one flow-table lookup and, rarely, one event. An event that does not fit
//! in the ring is counted, never waited for.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_ktime_get_boot_ns, bpf_ktime_get_coarse_ns, generated::bpf_xdp_load_bytes},
    programs::XdpContext,
};
use sensor_common::{
    telemetry::*, EventHeader, FlowKey, FlowStats, HandshakeProof, ParsedPacket, PayloadEvent,
    Reason, Verdict,
};

use crate::{
    maps::{FLOWS, TELEMETRY, TELEMETRY_STATS},
    parse::{Addrs, IpPacket},
};

#[inline(always)]
fn count(stat: u32) {
    if let Some(v) = TELEMETRY_STATS.get_ptr_mut(stat) {
        // SAFETY: a per-CPU slot; only this CPU writes it.
        unsafe { *v += 1 };
    }
}

#[inline(always)]
fn add(counter: *mut u64, n: u64) {
    // A plain add, not an atomic one (which costs about 15 ns a packet):
    // each direction's counters have one writer, the CPU whose receive
    // queue the direction hashes to. Should two CPUs ever count the same
    // direction at once, one packet goes uncounted; nothing else breaks.
    // SAFETY: a live map value.
    unsafe { *counter += n };
}

/// The two 64-bit halves of an address (IPv4 in the low bytes of the first).
#[inline(always)]
fn words_v4(addr: &[u8; 4]) -> (u64, u64) {
    (u32::from_ne_bytes(*addr) as u64, 0)
}

#[inline(always)]
fn words_v6(a: &[u8; 16]) -> (u64, u64) {
    (
        u64::from_ne_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]),
        u64::from_ne_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]),
    )
}

/// Writes an address's halves into a 16-byte field with two word stores.
/// (Built byte by byte, the field costs 32 single-byte stores: about 15 ns
/// a packet.)
///
/// # Safety
/// `field` must be valid for writes and 8-byte aligned.
#[inline(always)]
unsafe fn put_address(field: *mut [u8; 16], w: (u64, u64)) {
    let words = field as *mut u64;
    words.write(w.0);
    words.add(1).write(w.1);
}

/// Everything an event needs besides its kind, kept small: the event
/// header is written straight into ring memory, never built on the stack.
struct Packet {
    src: (u64, u64),
    dst: (u64, u64),
    l4: L4,
    family: u8,
    verdict: u8,
    reason: u8,
    flags: u8,
    len: u32,
}

/// What the enforcement program hands over for a packet it parsed: the
/// scratch record, when the packet is one telemetry observes.
#[inline(always)]
pub fn hand_over(
    packet: &IpPacket,
    verdict: Verdict,
    reason: Reason,
    bound: bool,
) -> Option<ParsedPacket> {
    let l4 = packet.l4?;
    if !is_observed(l4.protocol, l4.dport) {
        return None;
    }
    let (src, dst, family) = match &packet.addrs {
        Addrs::V4 { src, dst } => (words_v4(src), words_v4(dst), 4u8),
        Addrs::V6 { src, dst } => (words_v6(src), words_v6(dst), 6u8),
    };
    Some(ParsedPacket {
        src: [src.0, src.1],
        dst: [dst.0, dst.1],
        sport: l4.sport,
        dport: l4.dport,
        payload_offset: l4.payload_offset as u16,
        ip_end: packet.ip_end,
        family,
        protocol: l4.protocol,
        tcp_flags: l4.tcp_flags,
        seq: l4.seq,
        ack: l4.ack,
        verdict: verdict as u8,
        reason: reason as u8,
        tiny_fragment: l4.tiny_fragment as u8,
        event_flags: if bound { EVENT_FLAG_BOUND } else { 0 },
        _pad: 0,
    })
}

/// The transport facts telemetry works on (the scratch record's, with the
/// offsets widened).
#[derive(Clone, Copy)]
struct L4 {
    protocol: u8,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    seq: u32,
    ack: u32,
    payload_offset: usize,
    ip_end: usize,
}

/// Offsets past this are not ours to read (no frame is this long here);
/// the bound also tells the verifier how far a packet pointer can move.
const MAX_OFFSET: usize = 1 << 14;

/// Feeds the flow table and the ring buffer from what the enforcement
/// program parsed (no second parse).
#[inline(always)]
pub fn observe(ctx: &XdpContext, s: &ParsedPacket) {
    let payload_offset = s.payload_offset as usize;
    if payload_offset > MAX_OFFSET {
        return;
    }
    let l4 = L4 {
        protocol: s.protocol,
        sport: s.sport,
        dport: s.dport,
        tcp_flags: s.tcp_flags,
        seq: s.seq,
        ack: s.ack,
        payload_offset,
        ip_end: s.ip_end as usize,
    };
    let (src, dst) = ((s.src[0], s.src[1]), (s.dst[0], s.dst[1]));
    let len = (ctx.data_end() - ctx.data()) as u64;
    let p = Packet {
        src,
        dst,
        l4,
        family: s.family,
        verdict: s.verdict,
        reason: s.reason,
        flags: s.event_flags,
        len: len as u32,
    };
    if s.reason == Reason::Spoofed as u8 {
        // Reported with its MAC and port, never tracked: not the address's.
        send(ctx, &p, EVENT_SPOOFED);
        return;
    }
    if s.tiny_fragment != 0 {
        // Reported, never tracked: its flags are in a later fragment.
        send(ctx, &p, EVENT_FRAGMENT);
        return;
    }
    // A total order on (address, port) for canonical keys; any will do.
    let src_is_a = (src.0, src.1, l4.sport) <= (dst.0, dst.1, l4.dport);
    let (a, a_port, b, b_port) = if src_is_a {
        (src, l4.sport, dst, l4.dport)
    } else {
        (dst, l4.dport, src, l4.sport)
    };
    let mut key = FlowKey {
        a: [0; 16],
        b: [0; 16],
        a_port,
        b_port,
        protocol: l4.protocol,
        family: s.family,
        _pad: [0; 2],
    };
    // SAFETY: FlowKey is 8-aligned and its addresses sit at 0 and 16.
    unsafe {
        put_address(&raw mut key.a, a);
        put_address(&raw mut key.b, b);
    }
    let Tracked {
        new_flow,
        sample,
        stray,
        wake,
    } = track(ctx, &key, &l4, src_is_a, len);
    match wake {
        Wake::No => {}
        Wake::ByInitiator => send(ctx, &p, EVENT_WAKE),
        Wake::ByResponder => {
            // Named by the initiator, as the flow is.
            let l4 = L4 {
                sport: p.l4.dport,
                dport: p.l4.sport,
                ..p.l4
            };
            let q = Packet {
                src: p.dst,
                dst: p.src,
                l4,
                ..p
            };
            send(ctx, &q, EVENT_WAKE);
        }
    }
    match l4.protocol {
        PROTO_TCP => {
            let kind = tcp_event(l4.tcp_flags, stray);
            if kind != 0 {
                send(ctx, &p, kind);
            }
            if sample {
                send_payload(ctx, &p, EVENT_DATA, samples_tail(l4.dport));
            }
        }
        PROTO_UDP => {
            if new_flow {
                send(ctx, &p, EVENT_FLOW_START);
            }
            if l4.sport == DNS_PORT || l4.dport == DNS_PORT {
                send_payload(ctx, &p, EVENT_DNS, false);
            } else if is_sampled_datagram(l4.sport, l4.dport) {
                send_payload(ctx, &p, EVENT_DATA, samples_tail(l4.dport));
            }
        }
        PROTO_ICMP | PROTO_ICMPV6 if new_flow && is_echo_request(l4.protocol, l4.dport) => {
            send(ctx, &p, EVENT_FLOW_START);
        }
        PROTO_ICMP | PROTO_ICMPV6 if is_unreachable(l4.protocol, l4.dport) => {
            send_payload(ctx, &p, EVENT_ICMP_ERROR, false)
        }
        _ => {}
    }
}

/// What counting a packet in its flow found.
struct Tracked {
    /// The packet started a flow.
    new_flow: bool,
    /// Its payload is to be sampled.
    sample: bool,
    /// It belongs to no flow and starts none (`tcp_event`).
    stray: bool,
    /// It woke its flow (`is_wake`), and which side sent it.
    wake: Wake,
}

#[derive(Clone, Copy)]
enum Wake {
    No,
    ByInitiator,
    ByResponder,
}

/// Counts the packet in its flow.
#[inline(always)]
fn track(ctx: &XdpContext, key: &FlowKey, l4: &L4, src_is_a: bool, len: u64) -> Tracked {
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if let Some(flow) = FLOWS.get_ptr_mut(key) {
        // SAFETY: a live map value.
        unsafe {
            let from_initiator = ((*flow).initiator_is_b == 0) == src_is_a;
            if src_is_a {
                add(&raw mut (*flow).a_bytes, len);
                add(&raw mut (*flow).a_packets, 1);
            } else {
                add(&raw mut (*flow).b_bytes, len);
                add(&raw mut (*flow).b_packets, 1);
            }
            let data = has_payload(ctx, l4);
            let wake = match is_wake(now.wrapping_sub((*flow).last_ns), data) {
                false => Wake::No,
                true if from_initiator => Wake::ByInitiator,
                true => Wake::ByResponder,
            };
            (*flow).last_ns = now;
            let mut flags = (*flow).flags;
            if !from_initiator {
                flags |= FLOW_ANSWERED;
            }
            if data {
                flags |= if src_is_a { FLOW_DATA_A } else { FLOW_DATA_B };
            }
            let mut sample = false;
            if l4.protocol == PROTO_TCP {
                flags = (*flow).proof.follow(
                    flags,
                    from_initiator,
                    l4.tcp_flags,
                    l4.seq,
                    l4.ack,
                    payload_len(ctx, l4) as u32,
                );
                if l4.tcp_flags & TCP_RST != 0 {
                    flags |= FLOW_RST;
                }
                if l4.tcp_flags & TCP_FIN != 0 {
                    flags |= if src_is_a { FLOW_FIN_A } else { FLOW_FIN_B };
                }
                sample = sample_packet(ctx, l4, &mut *flow, from_initiator);
            }
            (*flow).flags = flags;
            return Tracked {
                new_flow: false,
                sample,
                stray: false,
                wake,
            };
        }
    }
    let has_payload = has_payload(ctx, l4);
    if !starts_flow(l4.protocol, l4.tcp_flags, has_payload) {
        return Tracked {
            new_flow: false,
            sample: false,
            stray: true,
            wake: Wake::No,
        };
    }
    let (a_bytes, b_bytes) = if src_is_a { (len, 0) } else { (0, len) };
    let mut stats = FlowStats {
        first_ns: now,
        last_ns: now,
        a_bytes,
        b_bytes,
        a_packets: src_is_a as u64,
        b_packets: !src_is_a as u64,
        initiator_is_b: !src_is_a as u8,
        flags: match (has_payload, src_is_a) {
            (false, _) => 0,
            (true, true) => FLOW_DATA_A,
            (true, false) => FLOW_DATA_B,
        },
        samples: 0,
        inspect: INSPECT_UNKNOWN,
        proof: HandshakeProof::default(),
        _pad: 0,
    };
    let sample = l4.protocol == PROTO_TCP && sample_packet(ctx, l4, &mut stats, true);
    let new_flow = FLOWS.insert(key, stats, BPF_NOEXIST as u64).is_ok();
    count(if new_flow {
        STAT_FLOWS_CREATED
    } else {
        STAT_FLOW_INSERT_FAILED
    });
    Tracked {
        new_flow,
        sample,
        stray: false,
        wake: Wake::No,
    }
}

/// Whether the packet carries transport payload (TCP or UDP data; for
/// ICMP, `payload_offset` is past the header and this says nothing used).
#[inline(always)]
fn has_payload(ctx: &XdpContext, l4: &L4) -> bool {
    carries_data(l4.protocol) && payload_len(ctx, l4) > 0
}

/// Payload bytes in the frame, up to the end of the IP packet (not the
/// Ethernet padding of a short frame).
#[inline(always)]
fn payload_len(ctx: &XdpContext, l4: &L4) -> usize {
    let frame = ctx.data_end() - ctx.data();
    let end = if l4.ip_end < frame { l4.ip_end } else { frame };
    end.saturating_sub(l4.payload_offset)
}

/// The packet's payload, read in bounded steps for the sampling rule.
struct PacketView<'a> {
    ctx: &'a XdpContext,
    l4: &'a L4,
}

impl PayloadView for PacketView<'_> {
    #[inline(always)]
    fn is_dcerpc_pdu(&self) -> bool {
        payload_head::<DCERPC_HEAD>(self.ctx, self.l4).is_some_and(|h| is_dcerpc_pdu(&h))
    }
    #[inline(always)]
    fn is_opening(&self) -> bool {
        payload_head::<OPENING_HEAD>(self.ctx, self.l4).is_some_and(|h| is_opening(&h))
    }
    #[inline(always)]
    fn is_client_hello(&self) -> bool {
        payload_head::<OPENING_HEAD>(self.ctx, self.l4).is_some_and(|h| is_client_hello(&h))
    }
    #[inline(always)]
    fn is_server_hello(&self) -> bool {
        payload_head::<OPENING_HEAD>(self.ctx, self.l4).is_some_and(|h| is_server_hello(&h))
    }
    #[inline(always)]
    fn is_control_message(&self) -> bool {
        is_control_packet(self.ctx, self.l4)
    }
}

/// Whether to sample this TCP packet's payload (`telemetry::wants_sample`,
/// the rule the decoder follows too).
#[inline(always)]
fn sample_packet(ctx: &XdpContext, l4: &L4, flow: &mut FlowStats, from_initiator: bool) -> bool {
    if payload_len(ctx, l4) == 0 {
        return false;
    }
    wants_sample(
        &mut flow.inspect,
        &mut flow.samples,
        (l4.sport, l4.dport),
        from_initiator,
        &PacketView { ctx, l4 },
    )
}

/// `is_control_message` on the packet's payload, read in steps (five
/// bytes, the SMB2 header, then the start of a WRITE's or IOCTL's data) so
/// that most packets cost one short read.
#[inline(always)]
fn is_control_packet(ctx: &XdpContext, l4: &L4) -> bool {
    if payload_head::<DCERPC_HEAD>(ctx, l4).is_some_and(|h| is_dcerpc_call(&h)) {
        return true;
    }
    let Some(head) = payload_head::<SMB2_HEAD>(ctx, l4) else {
        return false;
    };
    match smb2_request(&head) {
        Some(SMB2_TREE_CONNECT | SMB2_CREATE) => true,
        Some(command @ (SMB2_WRITE | SMB2_IOCTL)) => {
            payload_head::<SMB2_RPC_HEAD>(ctx, l4).is_some_and(|h| smb2_carries_rpc(&h, command))
        }
        _ => false,
    }
}

/// The first `N` payload bytes, if the packet has them.
#[inline(always)]
fn payload_head<const N: usize>(ctx: &XdpContext, l4: &L4) -> Option<[u8; N]> {
    let start = ctx.data() + l4.payload_offset;
    if payload_len(ctx, l4) < N || start + N > ctx.data_end() {
        return None;
    }
    // SAFETY: the N bytes were checked to be inside the packet.
    Some(unsafe { core::ptr::read_unaligned(start as *const [u8; N]) })
}

/// Fills an event header in place (ring memory).
#[inline(always)]
fn fill(ctx: &XdpContext, h: &mut EventHeader, p: &Packet, kind: u8) {
    h.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: the header is 8-aligned (its first field is a u64) and its
    // addresses sit at 8 and 24.
    unsafe {
        put_address(&raw mut h.src, p.src);
        put_address(&raw mut h.dst, p.dst);
    }
    h.sport = p.l4.sport;
    h.dport = p.l4.dport;
    h.family = p.family;
    h.protocol = p.l4.protocol;
    h.kind = kind;
    h.tcp_flags = p.l4.tcp_flags;
    h.verdict = p.verdict;
    h.reason = p.reason;
    h.payload_len = 0;
    h.packet_len = p.len;
    h.ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    h.src_mac = crate::source_mac(ctx).unwrap_or_default();
    h.flags = p.flags;
    h._pad = 0;
    h._pad2 = 0;
}

#[inline(always)]
fn send(ctx: &XdpContext, p: &Packet, kind: u8) {
    match TELEMETRY.reserve::<EventHeader>(0) {
        Some(mut entry) => {
            // SAFETY: reserved ring memory the size of a header.
            unsafe { fill(ctx, &mut *entry.as_mut_ptr(), p, kind) };
            entry.submit(0);
            count(STAT_EVENTS);
        }
        None => count(STAT_EVENTS_LOST),
    }
}

/// An event with up to `PAYLOAD_MAX` bytes of the transport payload: its
/// start, or with `tail` its end (`sample_span`).
#[inline(always)]
fn send_payload(ctx: &XdpContext, p: &Packet, kind: u8, tail: bool) {
    let (start, n) = sample_span(payload_len(ctx, &p.l4), tail);
    let offset = p.l4.payload_offset + start;
    let Some(mut entry) = TELEMETRY.reserve::<PayloadEvent>(0) else {
        count(STAT_EVENTS_LOST);
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` is reserved ring memory of the right size; the copy
    // length is bounded by the payload array (in a form the verifier sees).
    unsafe {
        fill(ctx, &mut (*event).header, p, kind);
        // Read back through memory so the compiler keeps the bound below in
        // the form the verifier checks (it knows n <= PAYLOAD_MAX and would
        // fold the mask away).
        let n = core::ptr::read_volatile(&n);
        if n > 0 {
            let bounded = ((n as u32 - 1) & (PAYLOAD_MAX as u32 - 1)) + 1;
            let dst = (&raw mut (*event).payload) as *mut core::ffi::c_void;
            if bpf_xdp_load_bytes(ctx.ctx, offset as u32, dst, bounded) == 0 {
                (*event).header.payload_len = bounded as u16;
            }
        }
    }
    entry.submit(0);
    count(STAT_EVENTS);
}
