//! Typed access to the datapath's maps. Keys are built here and only here
//! (network byte order, see `sensor-common`).

use std::net::IpAddr;

use anyhow::{Context, Result};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        Array, HashMap, Map, MapData, MapError, PerCpuHashMap,
    },
    Ebpf,
};
use ipnet::IpNet;
use sensor_common::{
    map_names as names, BlockValue, IfaceCounters, Settings, MAX_SEGMENTS,
};

use crate::config::{Segment, SegmentPolicy};

/// A map of our own, opened from the loaded object.
fn take<T: TryFrom<Map, Error = MapError>>(ebpf: &mut Ebpf, name: &str) -> Result<T> {
    let map = ebpf
        .take_map(name)
        .with_context(|| format!("the eBPF object has no map {name}"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

/// Both address families of one keyed map.
struct Pair<V4, V6> {
    v4: V4,
    v6: V6,
}

pub struct Maps {
    isolated: Pair<HashMap<MapData, [u8; 4], BlockValue>, HashMap<MapData, [u8; 16], BlockValue>>,
    blocked: Pair<LpmTrie<MapData, [u8; 4], BlockValue>, LpmTrie<MapData, [u8; 16], BlockValue>>,
    exempt: Pair<LpmTrie<MapData, [u8; 4], u32>, LpmTrie<MapData, [u8; 16], u32>>,
    segments: Pair<LpmTrie<MapData, [u8; 4], u32>, LpmTrie<MapData, [u8; 16], u32>>,
    policy: Array<MapData, u64>,
    settings: Array<MapData, Settings>,
    counters: PerCpuHashMap<MapData, u32, IfaceCounters>,
}

fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

fn lpm_key<const N: usize>(net_bytes: [u8; N], prefix_len: u8) -> Key<[u8; N]> {
    Key::new(prefix_len as u32, net_bytes)
}

fn net_from_key4(key: &Key<[u8; 4]>) -> IpNet {
    IpNet::new(IpAddr::from(key.data()), key.prefix_len() as u8).expect("prefix fits")
}

fn net_from_key6(key: &Key<[u8; 16]>) -> IpNet {
    IpNet::new(IpAddr::from(key.data()), key.prefix_len() as u8).expect("prefix fits")
}

impl Maps {
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Maps> {
        Ok(Maps {
            isolated: Pair {
                v4: take(ebpf, names::ISOLATED_V4)?,
                v6: take(ebpf, names::ISOLATED_V6)?,
            },
            blocked: Pair {
                v4: take(ebpf, names::BLOCKED_V4)?,
                v6: take(ebpf, names::BLOCKED_V6)?,
            },
            exempt: Pair {
                v4: take(ebpf, names::EXEMPT_V4)?,
                v6: take(ebpf, names::EXEMPT_V6)?,
            },
            segments: Pair {
                v4: take(ebpf, names::SEGMENT_V4)?,
                v6: take(ebpf, names::SEGMENT_V6)?,
            },
            policy: take(ebpf, names::SEGMENT_POLICY)?,
            settings: take(ebpf, names::SETTINGS)?,
            counters: take(ebpf, names::IFACE_COUNTERS)?,
        })
    }

    pub fn set_isolated(&mut self, host: IpAddr, value: BlockValue) -> Result<(), MapError> {
        match host {
            IpAddr::V4(a) => self.isolated.v4.insert(a.octets(), value, 0),
            IpAddr::V6(a) => self.isolated.v6.insert(a.octets(), value, 0),
        }
    }

    pub fn remove_isolated(&mut self, host: IpAddr) -> Result<(), MapError> {
        ignore_missing(match host {
            IpAddr::V4(a) => self.isolated.v4.remove(&a.octets()),
            IpAddr::V6(a) => self.isolated.v6.remove(&a.octets()),
        })
    }

    pub fn get_isolated(&self, host: IpAddr) -> Option<BlockValue> {
        match host {
            IpAddr::V4(a) => self.isolated.v4.get(&a.octets(), 0).ok(),
            IpAddr::V6(a) => self.isolated.v6.get(&a.octets(), 0).ok(),
        }
    }

    pub fn isolated_hosts(&self) -> Vec<IpAddr> {
        let v4 = self.isolated.v4.keys().filter_map(|k| k.ok()).map(IpAddr::from);
        let v6 = self.isolated.v6.keys().filter_map(|k| k.ok()).map(IpAddr::from);
        v4.chain(v6).collect()
    }

    pub fn set_blocked(&mut self, net: IpNet, value: BlockValue) -> Result<(), MapError> {
        match net {
            IpNet::V4(n) => self.blocked.v4.insert(&lpm_key(n.network().octets(), n.prefix_len()), value, 0),
            IpNet::V6(n) => self.blocked.v6.insert(&lpm_key(n.network().octets(), n.prefix_len()), value, 0),
        }
    }

    pub fn remove_blocked(&mut self, net: IpNet) -> Result<(), MapError> {
        ignore_missing(match net {
            IpNet::V4(n) => self.blocked.v4.remove(&lpm_key(n.network().octets(), n.prefix_len())),
            IpNet::V6(n) => self.blocked.v6.remove(&lpm_key(n.network().octets(), n.prefix_len())),
        })
    }

    /// The value of the longest block containing `net` (for an existing
    /// entry: that entry's).
    pub fn get_blocked(&self, net: IpNet) -> Option<BlockValue> {
        match net {
            IpNet::V4(n) => self.blocked.v4.get(&lpm_key(n.network().octets(), n.prefix_len()), 0).ok(),
            IpNet::V6(n) => self.blocked.v6.get(&lpm_key(n.network().octets(), n.prefix_len()), 0).ok(),
        }
    }

    pub fn blocked_ranges(&self) -> Vec<IpNet> {
        let v4 = self.blocked.v4.keys().filter_map(|k| k.ok()).map(|k| net_from_key4(&k));
        let v6 = self.blocked.v6.keys().filter_map(|k| k.ok()).map(|k| net_from_key6(&k));
        v4.chain(v6).collect()
    }

    /// Makes the exemption tries hold exactly `ranges`.
    pub fn sync_exempt(&mut self, ranges: &[IpNet]) -> Result<()> {
        let wanted: Vec<(IpNet, u32)> = ranges.iter().map(|n| (*n, 1)).collect();
        sync_lpm(&mut self.exempt.v4, &mut self.exempt.v6, &wanted).context("exemption map")
    }

    /// Makes the segment tries and the policy rows match the configuration.
    pub fn sync_segments(&mut self, segments: &[Segment], policy: &SegmentPolicy) -> Result<()> {
        let wanted: Vec<(IpNet, u32)> = segments
            .iter()
            .flat_map(|s| s.cidrs.iter().map(move |c| (*c, s.id)))
            .collect();
        sync_lpm(&mut self.segments.v4, &mut self.segments.v6, &wanted).context("segment map")?;
        for src in 0..MAX_SEGMENTS {
            self.policy
                .set(src, policy.row(src), 0)
                .context("segment policy map")?;
        }
        Ok(())
    }

    pub fn set_monitor(&mut self, monitor: bool) -> Result<(), MapError> {
        let flags = if monitor { sensor_common::SETTINGS_FLAG_MONITOR } else { 0 };
        self.settings.set(0, Settings { flags, _pad: 0 }, 0)
    }

    pub fn monitor(&self) -> bool {
        self.settings
            .get(&0, 0)
            .map(|s| s.flags & sensor_common::SETTINGS_FLAG_MONITOR != 0)
            .unwrap_or(false)
    }

    /// Counters per ifindex, summed over CPUs.
    pub fn counters(&self) -> Vec<(u32, IfaceCounters)> {
        self.counters
            .iter()
            .filter_map(|item| item.ok())
            .map(|(ifindex, per_cpu)| {
                let mut sum = IfaceCounters::ZERO;
                for cpu in per_cpu.iter() {
                    for (s, c) in sum.packets.iter_mut().zip(cpu.packets.iter()) {
                        *s += c;
                    }
                    for (s, c) in sum.bytes.iter_mut().zip(cpu.bytes.iter()) {
                        *s += c;
                    }
                }
                (ifindex, sum)
            })
            .collect()
    }
}

/// Makes a pair of `prefix -> value` tries hold exactly `wanted`, touching
/// only what differs (so enforcement never has a gap during a reload).
fn sync_lpm(
    v4: &mut LpmTrie<MapData, [u8; 4], u32>,
    v6: &mut LpmTrie<MapData, [u8; 16], u32>,
    wanted: &[(IpNet, u32)],
) -> Result<()> {
    for (net, value) in wanted {
        match net {
            IpNet::V4(n) => v4.insert(&lpm_key(n.network().octets(), n.prefix_len()), value, 0)?,
            IpNet::V6(n) => v6.insert(&lpm_key(n.network().octets(), n.prefix_len()), value, 0)?,
        }
    }
    let stale4: Vec<_> = v4
        .keys()
        .filter_map(|k| k.ok())
        .filter(|k| !wanted.iter().any(|(n, _)| *n == net_from_key4(k)))
        .collect();
    for key in stale4 {
        ignore_missing(v4.remove(&key))?;
    }
    let stale6: Vec<_> = v6
        .keys()
        .filter_map(|k| k.ok())
        .filter(|k| !wanted.iter().any(|(n, _)| *n == net_from_key6(k)))
        .collect();
    for key in stale6 {
        ignore_missing(v6.remove(&key))?;
    }
    Ok(())
}
