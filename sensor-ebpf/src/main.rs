//! The sensor's XDP program: parse, look the addresses up in the block maps
//! and the segment policy, record the verdict, pass or drop.
#![no_std]
#![no_main]
// `atomic_xadd`: the BPF target has no `AtomicU64::fetch_add`, but the
// intrinsic lowers to the BPF atomic add instruction.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod maps;
mod parse;
mod tap;
mod telemetry;

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_boot_ns,
    macros::xdp,
    maps::{lpm_trie::Key, LpmTrie},
    programs::XdpContext,
};
use maps::*;
use parse::{Addrs, IpPacket, Parsed};
use sensor_common::{
    counter_index, is_unchecked_source_v4, is_unchecked_source_v6, mac_key, AddressInfo, Binding,
    BlockValue, PortInfo, Reason, SummaryV4, Verdict, ADDRESS_BLOCKED, ADDRESS_ISOLATED,
    MAX_SEGMENTS, PORT_SWITCHED, SETTINGS_FLAG_DROP_SPOOFED, SETTINGS_FLAG_ISOLATED_MACS,
    SETTINGS_FLAG_MONITOR, SETTINGS_FLAG_TELEMETRY,
};

#[xdp]
pub fn sensor_xdp(ctx: XdpContext) -> u32 {
    let settings = settings();
    let parsed = parse::parse(&ctx);
    let (verdict, reason, origin) = match &parsed {
        Ok(Parsed::Ip(packet)) => decide(&ctx, packet, settings),
        Ok(Parsed::NotIp) => (Verdict::Pass, Reason::NotIp, Origin::Unchecked),
        // Fail open: a packet whose addresses we cannot read cannot be
        // matched against a block, and the kernel's own IP input drops
        // malformed headers anyway (see docs/architecture.md).
        Err(parse::Truncated) => (Verdict::Pass, Reason::ParseError, Origin::Unchecked),
    };
    record(&ctx, verdict, reason);
    if settings & SETTINGS_FLAG_TELEMETRY != 0 {
        if let Ok(Parsed::Ip(packet)) = &parsed {
            let bound = origin == Origin::Bound;
            if let Some(handed) = telemetry::hand_over(packet, verdict, reason, bound) {
                if let Some(slot) = PACKET_SCRATCH.get_ptr_mut(0) {
                    // SAFETY: this CPU's scratch slot, read by the program
                    // we jump to (same CPU, same packet).
                    unsafe { *slot = handed };
                    // SAFETY: on success this does not return; the
                    // telemetry program returns the same verdict. Without
                    // one, we go on below.
                    unsafe { TELEMETRY_PROG.tail_call(&ctx, 0) };
                }
            }
        }
    }
    action(verdict)
}

#[inline(always)]
fn action(verdict: Verdict) -> u32 {
    match verdict {
        Verdict::Pass => xdp_action::XDP_PASS,
        Verdict::Drop => xdp_action::XDP_DROP,
    }
}

/// Tail-called by `sensor_xdp` when telemetry is on: feeds the flow table
/// and the ring buffer from what `sensor_xdp` parsed (no second parse),
/// and returns its verdict.
#[xdp]
pub fn sensor_telemetry(ctx: XdpContext) -> u32 {
    let Some(handed) = PACKET_SCRATCH.get(0).copied() else {
        return xdp_action::XDP_PASS;
    };
    telemetry::observe(&ctx, &handed);
    if handed.verdict == Verdict::Drop as u8 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[inline(always)]
fn decide(ctx: &XdpContext, packet: &IpPacket, settings: u32) -> (Verdict, Reason, Origin) {
    let port = port();
    // Forged packets are dropped first (no block's hit counter moves), or
    // with the drop off judged as any other and counted as spoofed.
    let drop_spoofed = settings & SETTINGS_FLAG_DROP_SPOOFED != 0;
    let (blocked, origin) = match &packet.addrs {
        Addrs::V4 { src, dst } => {
            let (src_found, dst_found) = (find_v4(src), find_v4(dst));
            let unchecked = is_unchecked_source_v4(src);
            // SAFETY: the binding is only read (the daemon replaces
            // entries whole).
            let binding = || unsafe { BINDINGS_V4.get(src) };
            let origin = origin(ctx, port, src_found.segment, unchecked, binding);
            let blocked = match origin {
                Origin::Forged if drop_spoofed => Some(Reason::Spoofed),
                _ if mac_isolated(ctx, port, settings)
                    && EXEMPT_V4.get(Key::new(32, *dst)).is_none() =>
                {
                    Some(Reason::IsolatedSource)
                }
                _ => check(&EXEMPT_V4, src, dst, 32, src_found, dst_found),
            };
            (blocked, origin)
        }
        Addrs::V6 { src, dst } => {
            let (src_found, dst_found) = (find_v6(src), find_v6(dst));
            let unchecked = is_unchecked_source_v6(src);
            // SAFETY: the binding is only read (the daemon replaces
            // entries whole).
            let binding = || unsafe { BINDINGS_V6.get(src) };
            let origin = origin(ctx, port, src_found.segment, unchecked, binding);
            let blocked = match origin {
                Origin::Forged if drop_spoofed => Some(Reason::Spoofed),
                _ if mac_isolated(ctx, port, settings)
                    && EXEMPT_V6.get(Key::new(128, *dst)).is_none() =>
                {
                    Some(Reason::IsolatedSource)
                }
                _ => check(&EXEMPT_V6, src, dst, 128, src_found, dst_found),
            };
            (blocked, origin)
        }
    };
    let (verdict, reason) = match blocked {
        Some(reason) if settings & SETTINGS_FLAG_MONITOR != 0 => (Verdict::Pass, reason),
        Some(reason) => (Verdict::Drop, reason),
        None if origin == Origin::Forged => (Verdict::Pass, Reason::Spoofed),
        None if packet.l4_complete => (Verdict::Pass, Reason::Allowed),
        None => (Verdict::Pass, Reason::ParseError),
    };
    (verdict, reason, origin)
}

/// Where a packet's source address stands with the port it came in on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The port is no segment's, or the address names no host.
    Unchecked,
    /// The port's segment's address, on a routed segment or not yet bound.
    Unbound,
    /// A switched segment's address, from the MAC it is bound to: proven.
    Bound,
    /// Another segment's address, or a bound address from another MAC.
    Forged,
}

/// The ingress and binding checks (`PortInfo`). `binding` looks the source
/// up in its family's bindings; only a switched port needs it.
#[inline(always)]
fn origin(
    ctx: &XdpContext,
    port: PortInfo,
    src_segment: u32,
    unchecked: bool,
    binding: impl FnOnce() -> Option<&'static Binding>,
) -> Origin {
    if port.segment == 0 || unchecked {
        return Origin::Unchecked;
    }
    if src_segment != port.segment {
        return Origin::Forged;
    }
    if port.flags & PORT_SWITCHED == 0 {
        return Origin::Unbound;
    }
    let Some(bound) = binding() else {
        return Origin::Unbound;
    };
    match source_mac(ctx) {
        Some(mac) if mac == bound.mac => Origin::Bound,
        _ => Origin::Forged,
    }
}

/// Whether the frame's sender is isolated by its MAC: on switched ports
/// only, where the source MAC is the sender's own (behind a router it
/// would be the router's).
#[inline(always)]
fn mac_isolated(ctx: &XdpContext, port: PortInfo, settings: u32) -> bool {
    if settings & SETTINGS_FLAG_ISOLATED_MACS == 0 || port.flags & PORT_SWITCHED == 0 {
        return false;
    }
    let Some(mac) = source_mac(ctx) else {
        return false;
    };
    // SAFETY: a value pointer of our own map; its hit counter is only
    // ever touched atomically.
    match unsafe { ISOLATED_MACS.get(mac_key(mac)) } {
        Some(entry) => take_hit(entry as *const BlockValue as *mut BlockValue),
        None => false,
    }
}

/// The frame's source MAC.
#[inline(always)]
pub fn source_mac(ctx: &XdpContext) -> Option<[u8; 6]> {
    let start = ctx.data();
    if start + 12 > ctx.data_end() {
        return None;
    }
    // SAFETY: bytes 6..12 were checked to be inside the frame.
    Some(unsafe { core::ptr::read_unaligned((start + 6) as *const [u8; 6]) })
}

/// This instance's port (`PORTS` at its counter slot).
#[inline(always)]
fn port() -> PortInfo {
    PORTS.get(slot()).copied().unwrap_or_default()
}

/// What the datapath knows of one address: its entry (host hash or trie)
/// when it needed one (isolation and block state with their hit counters),
/// and its segment.
#[derive(Clone, Copy)]
struct Found {
    info: Option<&'static AddressInfo>,
    segment: u32,
}

impl Found {
    #[inline(always)]
    fn from_entry(info: Option<&'static AddressInfo>) -> Found {
        Found {
            info,
            segment: info.map_or(0, |i| i.segment),
        }
    }
}

/// The common IPv4 address is near no entry: its /16's summary answers it
/// with one array read. An isolated host or single-host block is found by
/// exact address in a hash; the rest walk the trie.
#[inline(always)]
fn find_v4(addr: &[u8; 4]) -> Found {
    if let Some(summary) = SUMMARY_V4.get(SummaryV4::index(addr)) {
        if summary.answers(addr[2]) {
            return Found {
                info: None,
                segment: summary.segment,
            };
        }
    }
    // SAFETY: a value pointer of our own map, read-only here but for the
    // hit counters, which are only ever touched atomically.
    if let Some(info) = unsafe { HOSTS_V4.get(addr) } {
        return Found::from_entry(Some(info));
    }
    Found::from_entry(ADDRESSES_V4.get(Key::new(32, *addr)))
}

#[inline(always)]
fn find_v6(addr: &[u8; 16]) -> Found {
    Found::from_entry(ADDRESSES_V6.get(Key::new(128, *addr)))
}

/// The first rule that blocks this pair of addresses, if any.
#[inline(always)]
fn check<const N: usize>(
    exempt: &LpmTrie<[u8; N], u32>,
    src_addr: &[u8; N],
    dst_addr: &[u8; N],
    bits: u32,
    src: Found,
    dst: Found,
) -> Option<Reason> {
    if let Some(info) = src.info {
        if isolated(info) && exempt.get(Key::new(bits, *dst_addr)).is_none() {
            return Some(Reason::IsolatedSource);
        }
    }
    if let Some(info) = dst.info {
        if isolated(info) && exempt.get(Key::new(bits, *src_addr)).is_none() {
            return Some(Reason::IsolatedDestination);
        }
    }
    if let Some(info) = src.info {
        if blocked(info) {
            return Some(Reason::BlockedSource);
        }
    }
    if let Some(info) = dst.info {
        if blocked(info) {
            return Some(Reason::BlockedDestination);
        }
    }
    // Segment 0 is "in no segment": the policy only judges known segments.
    if src.segment != 0
        && dst.segment != 0
        && src.segment != dst.segment
        && !segments_allowed(src.segment, dst.segment)
    {
        return Some(Reason::SegmentPolicy);
    }
    None
}

#[inline(always)]
fn isolated(info: &AddressInfo) -> bool {
    info.flags & ADDRESS_ISOLATED != 0
        && take_hit(&info.isolation as *const BlockValue as *mut BlockValue)
}

#[inline(always)]
fn blocked(info: &AddressInfo) -> bool {
    info.flags & ADDRESS_BLOCKED != 0
        && take_hit(&info.block as *const BlockValue as *mut BlockValue)
}

/// If the entry has not expired, count a hit on it and return true.
#[inline(always)]
fn take_hit(entry: *mut BlockValue) -> bool {
    // SAFETY: `entry` points at a live map value (from a lookup); the
    // hit counter is only ever touched atomically.
    unsafe {
        let expires = (*entry).expires_at_ns;
        if expires != 0 && bpf_ktime_get_boot_ns() >= expires {
            return false;
        }
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*entry).hits, 1);
    }
    true
}

#[inline(always)]
fn segments_allowed(src: u32, dst: u32) -> bool {
    if dst >= MAX_SEGMENTS {
        return false;
    }
    match SEGMENT_POLICY.get(src) {
        Some(row) => row & (1u64 << dst) != 0,
        // A segment id past the table is a bug in whoever wrote the maps:
        // deny, as an unknown pair would be.
        None => false,
    }
}

/// `SETTINGS[0].flags`, read once per packet (an inlined array access).
#[inline(always)]
fn settings() -> u32 {
    match SETTINGS.get(0) {
        Some(settings) => settings.flags,
        None => 0,
    }
}

/// This instance's counter slot, set at load time (see `IFACE_SLOT_GLOBAL`).
#[no_mangle]
static IFACE_SLOT: u32 = 0;

#[inline(always)]
fn slot() -> u32 {
    // SAFETY: a read-only global; volatile so the compiler does not fold in
    // its default, the loader's value is the one that counts.
    unsafe { core::ptr::read_volatile(&IFACE_SLOT) }
}

/// The one place where a verdict is counted, per interface and per CPU.
#[inline(always)]
fn record(ctx: &XdpContext, verdict: Verdict, reason: Reason) {
    let slot = slot();
    let index = counter_index(verdict, reason);
    if index >= sensor_common::VERDICT_COUNT * sensor_common::REASON_COUNT {
        return;
    }
    if let Some(counters) = IFACE_COUNTERS.get_ptr_mut(slot) {
        let bytes = (ctx.data_end() - ctx.data()) as u64;
        // SAFETY: a per-CPU value: only this CPU writes it.
        unsafe {
            (*counters).packets[index] += 1;
            (*counters).bytes[index] += bytes;
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
