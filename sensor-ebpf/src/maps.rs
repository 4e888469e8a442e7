//! The maps, pinned by name so that blocks outlive the daemon. Names, sizes
//! and value layouts come from `sensor-common`. Block lists are plain hash
//! maps and LPM tries, never LRU: eviction would silently unblock someone.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use sensor_common::{
    telemetry, AddressInfo, Binding, BlockValue, FlowKey, FlowStats, IfaceCounters, ParsedPacket,
    PortInfo, Settings, SummaryV4, MAX_ADDRESS_PREFIXES, MAX_BINDINGS, MAX_EXEMPT_RANGES,
    MAX_HOSTS_V4, MAX_INTERFACES, MAX_ISOLATED_MACS, MAX_SEGMENTS, SUMMARY_V4_ENTRIES,
};

/// Isolated hosts, blocked ranges and segment ranges in one trie per
/// family (see `AddressInfo`): one lookup per address instead of three.
#[map]
pub static ADDRESSES_V4: LpmTrie<[u8; 4], AddressInfo> = LpmTrie::pinned(MAX_ADDRESS_PREFIXES, 0);
#[map]
pub static ADDRESSES_V6: LpmTrie<[u8; 16], AddressInfo> = LpmTrie::pinned(MAX_ADDRESS_PREFIXES, 0);

/// The whole-length IPv4 entries of the address table (isolated hosts,
/// single-host blocks), by exact address: one hash lookup instead of the
/// trie's deepest walk. Not preallocated (it is sized for millions).
#[map]
pub static HOSTS_V4: HashMap<[u8; 4], AddressInfo> =
    HashMap::pinned(MAX_HOSTS_V4, BPF_F_NO_PREALLOC);
const BPF_F_NO_PREALLOC: u32 = 1;

/// Per /16 of IPv4: which /24s need the trie, and the segment of the rest
/// (see `SummaryV4`). An array read is inlined by the verifier; a trie
/// lookup is a walk that grows with the entries loaded.
#[map]
pub static SUMMARY_V4: Array<SummaryV4> = Array::pinned(SUMMARY_V4_ENTRIES, 0);

/// Ranges an isolated host may still reach (remediation, DHCP, resolver, ...).
#[map]
pub static EXEMPT_V4: LpmTrie<[u8; 4], u32> = LpmTrie::pinned(MAX_EXEMPT_RANGES, 0);
#[map]
pub static EXEMPT_V6: LpmTrie<[u8; 16], u32> = LpmTrie::pinned(MAX_EXEMPT_RANGES, 0);

/// Row per source segment: bit `d` set means traffic to segment `d` is allowed.
#[map]
pub static SEGMENT_POLICY: Array<u64> = Array::pinned(MAX_SEGMENTS, 0);

#[map]
pub static SETTINGS: Array<Settings> = Array::pinned(1, 0);

/// Per-CPU counters, one slot per interface (`IFACE_SLOT`).
#[map]
pub static IFACE_COUNTERS: PerCpuArray<IfaceCounters> = PerCpuArray::pinned(MAX_INTERFACES, 0);

/// The interface name of each counter slot, NUL-padded; written by the
/// daemon only, so that counters keep their names across restarts.
#[map]
pub static IFACE_NAMES: Array<[u8; 16]> = Array::pinned(MAX_INTERFACES, 0);

/// Telemetry events for the detection engine.
#[map]
pub static TELEMETRY: RingBuf = RingBuf::pinned(telemetry::RING_BYTES, 0);

/// Per-flow counters; LRU, so the busiest flows stay (blocks never live here).
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowStats> = LruHashMap::pinned(telemetry::FLOW_ENTRIES, 0);

/// Per-CPU telemetry counters (`telemetry::STAT_*`).
#[map]
pub static TELEMETRY_STATS: PerCpuArray<u64> = PerCpuArray::pinned(telemetry::STAT_COUNT, 0);

/// Slot 0: the telemetry program, tail-called after the verdict when
/// telemetry is on. A program of its own, so that the verifier checks its
/// paths apart from the enforcement program's.
#[map]
pub static TELEMETRY_PROG: ProgramArray = ProgramArray::pinned(1, 0);

/// The parsed packet and its verdict, handed to the telemetry program.
/// Pinned like the rest: every interface's instance tail-calls the one
/// telemetry program, which must read the scratch slot they write.
#[map]
pub static PACKET_SCRATCH: PerCpuArray<ParsedPacket> = PerCpuArray::pinned(1, 0);

/// What each port is (by counter slot): its segment and whether the segment
/// is switched, for the anti-spoofing checks. Written by the daemon.
#[map]
pub static PORTS: Array<PortInfo> = Array::pinned(MAX_INTERFACES, 0);

/// Addresses of switched segments and the MAC each is bound to. Written by
/// the daemon from the gateway's neighbour table.
#[map]
pub static BINDINGS_V4: HashMap<[u8; 4], Binding> =
    HashMap::pinned(MAX_BINDINGS, BPF_F_NO_PREALLOC);
#[map]
pub static BINDINGS_V6: HashMap<[u8; 16], Binding> =
    HashMap::pinned(MAX_BINDINGS, BPF_F_NO_PREALLOC);

/// Senders cut off by MAC on switched ports, whatever source address their
/// frames carry (`sensor_common::mac_key`), with expiry and hit counter.
/// Written by the daemon with the isolations of switched segments' hosts.
#[map]
pub static ISOLATED_MACS: HashMap<[u8; 8], BlockValue> =
    HashMap::pinned(MAX_ISOLATED_MACS, BPF_F_NO_PREALLOC);
