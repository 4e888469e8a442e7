//! Benchmark helpers, not part of the sensor: the floor (an XDP program that
//! passes every packet and does nothing else, measured side by side with the
//! sensor's), the least that flow telemetry can cost (`least_*`), and a
//! traffic generator (BPF_PROG_TEST_RUN in live-frames mode with a program
//! that sends each frame out of one interface, as xdp-trafficgen does).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_coarse_ns, bpf_redirect},
    macros::{map, xdp},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use sensor_common::{telemetry, EventHeader, FlowKey, FlowStats};

#[xdp]
pub fn floor_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

// The least flow telemetry can cost: what any program that counts every
// flow and reports its TCP handshakes must do, and nothing more (no
// enforcement, no flags, no sampling), on an untagged IPv4 TCP or UDP
// frame. The sensor's own telemetry is measured against these in
// `cargo xtask bench --only xdp`; maps of the sensor's kinds and sizes.

#[map]
static LEAST_FLOWS: LruHashMap<FlowKey, FlowStats> =
    LruHashMap::with_max_entries(telemetry::FLOW_ENTRIES, 0);

#[map]
static LEAST_EVENTS: RingBuf = RingBuf::with_byte_size(telemetry::RING_BYTES, 0);

/// Events gathered per CPU and handed to the ring `LEAST_BATCH` at a time:
/// the best case of batching (no timer to flush a batch left waiting).
pub const LEAST_BATCH: usize = 16;

#[repr(C)]
pub struct EventBatch {
    pub n: u64,
    pub events: [EventHeader; LEAST_BATCH],
}

#[map]
static LEAST_BATCHES: PerCpuArray<EventBatch> = PerCpuArray::with_max_entries(1, 0);

/// Addresses, ports and protocol of an untagged IPv4 TCP or UDP frame.
struct Tuple {
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    protocol: u8,
    len: u64,
}

#[inline(always)]
fn ipv4_tuple(ctx: &XdpContext) -> Option<Tuple> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + 34 > end {
        return None;
    }
    // SAFETY: bytes 0..34 are inside the packet (checked above).
    let (ethertype, ihl, protocol, src, dst) = unsafe {
        (
            core::ptr::read_unaligned((start + 12) as *const [u8; 2]),
            (*((start + 14) as *const u8) & 0x0f) as usize * 4,
            *((start + 23) as *const u8),
            core::ptr::read_unaligned((start + 26) as *const u32),
            core::ptr::read_unaligned((start + 30) as *const u32),
        )
    };
    let l4 = start + 14 + ihl;
    if ethertype != [0x08, 0x00] || l4 + 4 > end {
        return None;
    }
    // SAFETY: the four port bytes are inside the packet (checked above).
    let ports = unsafe { core::ptr::read_unaligned(l4 as *const [u8; 4]) };
    Some(Tuple {
        src,
        dst,
        sport: u16::from_be_bytes([ports[0], ports[1]]),
        dport: u16::from_be_bytes([ports[2], ports[3]]),
        protocol,
        len: (end - start) as u64,
    })
}

/// Writes two IPv4 addresses into two consecutive 16-byte address fields
/// with word stores, as the sensor's telemetry does (`put_address`).
///
/// # Safety
/// `words` must be 8-aligned and valid for four word writes.
#[inline(always)]
unsafe fn put_v4_pair(words: *mut u64, first: u32, second: u32) {
    words.write(first as u64);
    words.add(1).write(0);
    words.add(2).write(second as u64);
    words.add(3).write(0);
}

/// Counts the frame in its flow (one entry for both directions, as the
/// sensor keeps): the canonical key, one lookup, two adds; a new flow is
/// inserted.
#[inline(always)]
fn count_flow(t: &Tuple) {
    let src_is_a = (t.src, t.sport) <= (t.dst, t.dport);
    let (a, a_port, b, b_port) = if src_is_a {
        (t.src, t.sport, t.dst, t.dport)
    } else {
        (t.dst, t.dport, t.src, t.sport)
    };
    let mut key = FlowKey {
        a: [0; 16],
        b: [0; 16],
        a_port,
        b_port,
        protocol: t.protocol,
        family: 4,
        _pad: [0; 2],
    };
    // SAFETY: FlowKey is 8-aligned and its addresses sit at 0 and 16.
    unsafe { put_v4_pair(&raw mut key as *mut u64, a, b) };
    let key = &key;
    if let Some(flow) = LEAST_FLOWS.get_ptr_mut(key) {
        // SAFETY: a live map value.
        unsafe {
            (*flow).a_bytes += t.len;
            (*flow).a_packets += 1;
        }
        return;
    }
    let stats = FlowStats {
        a_bytes: t.len,
        a_packets: 1,
        ..FlowStats::default()
    };
    let _ = LEAST_FLOWS.insert(key, stats, BPF_NOEXIST as u64);
}

/// Writes the frame's event header (the fields the sensor's has), on the
/// flows' coarse clock: the least an event's time costs (the sensor's events
/// keep the precise clock, docs/performance.md "The event clock").
#[inline(always)]
fn fill_event(h: &mut EventHeader, t: &Tuple) {
    // SAFETY: a helper call without arguments.
    h.ts_ns = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: the header is 8-aligned and its addresses sit at 8 and 24.
    unsafe { put_v4_pair((h as *mut EventHeader as *mut u64).add(1), t.src, t.dst) };
    h.sport = t.sport;
    h.dport = t.dport;
    h.family = 4;
    h.protocol = t.protocol;
    h.kind = telemetry::EVENT_SYN;
    h.tcp_flags = 0;
    h.verdict = 0;
    h.reason = 0;
    h.payload_len = 0;
    h.packet_len = t.len as u32;
    h.ifindex = 0;
    h.src_mac = [0; 6];
    h.flags = 0;
    h._pad = 0;
    h._pad2 = 0;
}

/// The frame's addresses and ports read, nothing else: the part of the
/// `least_*` programs the sensor's enforcement has already done.
#[xdp]
pub fn least_parse(ctx: XdpContext) -> u32 {
    if let Some(t) = ipv4_tuple(&ctx) {
        let mut sink = 0u64;
        let folded = (t.src ^ t.dst) as u64 ^ ((t.sport as u64) << 16 | t.dport as u64);
        // SAFETY: a stack variable; the volatile store keeps the reads.
        unsafe { core::ptr::write_volatile(&mut sink, folded ^ t.protocol as u64 ^ t.len) };
    }
    xdp_action::XDP_PASS
}

/// The flow counted, nothing else.
#[xdp]
pub fn least_flow(ctx: XdpContext) -> u32 {
    if let Some(t) = ipv4_tuple(&ctx) {
        count_flow(&t);
    }
    xdp_action::XDP_PASS
}

/// The flow counted and one event written straight into the ring.
#[xdp]
pub fn least_flow_event(ctx: XdpContext) -> u32 {
    if let Some(t) = ipv4_tuple(&ctx) {
        count_flow(&t);
        if let Some(mut entry) = LEAST_EVENTS.reserve::<EventHeader>(0) {
            // SAFETY: reserved ring memory the size of a header.
            unsafe { fill_event(&mut *entry.as_mut_ptr(), &t) };
            entry.submit(0);
        }
    }
    xdp_action::XDP_PASS
}

/// The flow counted and one event gathered into this CPU's batch; a full
/// batch is copied into the ring in one piece.
#[xdp]
pub fn least_flow_batched_event(ctx: XdpContext) -> u32 {
    let Some(t) = ipv4_tuple(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    count_flow(&t);
    let Some(batch) = LEAST_BATCHES.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: this CPU's slot of a per-CPU map; the index is masked below
    // the batch's length.
    unsafe {
        let i = ((*batch).n as usize) & (LEAST_BATCH - 1);
        fill_event(&mut (*batch).events[i], &t);
        if i == LEAST_BATCH - 1 {
            let _ = LEAST_EVENTS.output::<[EventHeader; LEAST_BATCH]>(&(*batch).events, 0);
        }
        (*batch).n = (i + 1) as u64;
    }
    xdp_action::XDP_PASS
}

/// The interface `generate_redirect` sends to, set at load time.
#[no_mangle]
static REDIRECT_IFINDEX: u32 = 0;

/// Source ports the generated UDP frames spread over (0 or 1: the
/// template's own), set at load time.
#[no_mangle]
static SOURCE_PORTS: u32 = 0;

/// Length of the generated frame, and its bytes, set at load time.
pub const FRAME_LEN: usize = 60;
#[no_mangle]
static FRAME_TEMPLATE: [u8; FRAME_LEN] = [0; FRAME_LEN];

/// Rewrites the frame from the template (a receiver that forwards it
/// rewrites its headers in place, and live-frames mode recycles the pages
/// without restoring them), then sends it out of `REDIRECT_IFINDEX`.
#[xdp]
pub fn generate_redirect(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + FRAME_LEN > end {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: FRAME_LEN bytes from `start` are inside the packet (checked
    // above); the template is a read-only global of that size.
    unsafe {
        let template = core::ptr::read_volatile(&FRAME_TEMPLATE);
        core::ptr::copy_nonoverlapping(template.as_ptr(), start as *mut u8, FRAME_LEN);
    }
    // SAFETY: read-only globals; volatile so the loader's values count.
    let (ifindex, flows) = unsafe {
        (
            core::ptr::read_volatile(&REDIRECT_IFINDEX),
            core::ptr::read_volatile(&SOURCE_PORTS),
        )
    };
    if flows > 1 {
        // A UDP frame's source port (Ethernet 14 + IPv4 20 bytes in),
        // spread over `flows` values: that many flows at once.
        // SAFETY: bytes 34..36 are inside the FRAME_LEN checked above; the
        // helper takes no arguments.
        unsafe {
            let port = 40000 + (bpf_get_prandom_u32() % flows) as u16;
            core::ptr::write_unaligned((start + 34) as *mut [u8; 2], port.to_be_bytes());
        }
    }
    // SAFETY: a helper call with plain integer arguments.
    unsafe { bpf_redirect(ifindex, 0) as u32 }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
