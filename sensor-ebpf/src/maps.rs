//! The maps, pinned by name so that blocks outlive the daemon. Names, sizes
//! and value layouts come from `sensor-common`. Block lists are plain hash
//! maps and LPM tries, never LRU: eviction would silently unblock someone.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuHashMap},
};
use sensor_common::{
    BlockValue, IfaceCounters, Settings, MAX_BLOCKED_RANGES, MAX_EXEMPT_RANGES, MAX_INTERFACES,
    MAX_ISOLATED_HOSTS, MAX_SEGMENTS, MAX_SEGMENT_RANGES,
};

/// Allocate hash entries on insert rather than all at load: a million-entry
/// map that is mostly empty should not hold its memory.
const BPF_F_NO_PREALLOC: u32 = 1;

#[map]
pub static ISOLATED_V4: HashMap<[u8; 4], BlockValue> =
    HashMap::pinned(MAX_ISOLATED_HOSTS, BPF_F_NO_PREALLOC);
#[map]
pub static ISOLATED_V6: HashMap<[u8; 16], BlockValue> =
    HashMap::pinned(MAX_ISOLATED_HOSTS, BPF_F_NO_PREALLOC);

#[map]
pub static BLOCKED_V4: LpmTrie<[u8; 4], BlockValue> = LpmTrie::pinned(MAX_BLOCKED_RANGES, 0);
#[map]
pub static BLOCKED_V6: LpmTrie<[u8; 16], BlockValue> = LpmTrie::pinned(MAX_BLOCKED_RANGES, 0);

/// Ranges an isolated host may still reach (remediation, DHCP, resolver, ...).
#[map]
pub static EXEMPT_V4: LpmTrie<[u8; 4], u32> = LpmTrie::pinned(MAX_EXEMPT_RANGES, 0);
#[map]
pub static EXEMPT_V6: LpmTrie<[u8; 16], u32> = LpmTrie::pinned(MAX_EXEMPT_RANGES, 0);

/// Address range to segment id (1..MAX_SEGMENTS).
#[map]
pub static SEGMENT_V4: LpmTrie<[u8; 4], u32> = LpmTrie::pinned(MAX_SEGMENT_RANGES, 0);
#[map]
pub static SEGMENT_V6: LpmTrie<[u8; 16], u32> = LpmTrie::pinned(MAX_SEGMENT_RANGES, 0);

/// Row per source segment: bit `d` set means traffic to segment `d` is allowed.
#[map]
pub static SEGMENT_POLICY: Array<u64> = Array::pinned(MAX_SEGMENTS, 0);

#[map]
pub static SETTINGS: Array<Settings> = Array::pinned(1, 0);

/// Per-CPU counters keyed by ingress ifindex.
#[map]
pub static IFACE_COUNTERS: PerCpuHashMap<u32, IfaceCounters> =
    PerCpuHashMap::pinned(MAX_INTERFACES, 0);
