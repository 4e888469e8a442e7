//! Typed access to the datapath's maps. Keys are built here and only here
//! (network byte order, see `sensor-common`).

use std::{net::IpAddr, os::fd::AsFd};

use anyhow::{Context, Result};
use aya::maps::{
    lpm_trie::{Key, LpmTrie},
    Array, HashMap, IterableMap, Map, MapData, MapError, PerCpuArray, PerCpuValues,
};
use aya::Ebpf;
use ipnet::IpNet;
use sensor_common::{
    map_names as names, AddressInfo, Binding, BlockValue, IfaceCounters, PortInfo, Settings,
    SummaryV4, MAX_INTERFACES, MAX_SEGMENTS, PORT_SWITCHED,
};

use super::{
    address_table::{AddressTable, Change},
    batch,
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

type Tries<V> = Pair<LpmTrie<MapData, [u8; 4], V>, LpmTrie<MapData, [u8; 16], V>>;

/// Counter slot 0 belongs to the program instance that is never attached
/// (the one tests and benchmarks run); interfaces get slots from 1.
pub const UNATTACHED_SLOT: u32 = 0;

/// Where the address table's entries live: whole-length IPv4 entries
/// (isolated hosts, single-host blocks) in a hash by exact address, the rest
/// in the tries. The datapath looks in the hash before the trie, so the
/// hash entry, being whole-length, is the longest match.
struct Addresses {
    tries: Tries<AddressInfo>,
    hosts_v4: HashMap<MapData, [u8; 4], AddressInfo>,
}

/// A batch's result as a map error; where the map has no batch writes,
/// the elements are written one by one with `one`.
fn batched<K, V: Copy>(
    sent: Result<(), batch::BatchError>,
    keys: &[K],
    values: &[V],
    mut one: impl FnMut(&K, V) -> Result<(), MapError>,
) -> Result<(), MapError> {
    match sent {
        Ok(()) => Ok(()),
        Err(batch::BatchError::Unsupported) => {
            for (k, v) in keys.iter().zip(values) {
                one(k, *v)?;
            }
            Ok(())
        }
        Err(batch::BatchError::Failed(error)) => {
            Err(MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_batch",
                io_error: error,
            }))
        }
    }
}

/// The hash key of a whole-length IPv4 entry.
fn host_v4(net: IpNet) -> Option<[u8; 4]> {
    match net {
        IpNet::V4(n) if n.prefix_len() == 32 => Some(n.addr().octets()),
        _ => None,
    }
}

impl Addresses {
    fn insert(&mut self, net: IpNet, info: AddressInfo) -> Result<(), MapError> {
        match host_v4(net) {
            Some(key) => self.hosts_v4.insert(key, info, 0),
            None => self.tries.insert(net, info),
        }
    }

    /// Writes many new entries, a batch per map (`batch`).
    fn insert_many(&mut self, items: &[(IpNet, AddressInfo)]) -> Result<(), MapError> {
        let mut hosts = (Vec::new(), Vec::new());
        let mut v4 = (Vec::new(), Vec::new());
        let mut v6 = (Vec::new(), Vec::new());
        for (net, info) in items {
            match (host_v4(*net), net) {
                (Some(k), _) => (hosts.0.push(k), hosts.1.push(*info)),
                (None, IpNet::V4(n)) => (
                    v4.0.push(key(n.network().octets(), n.prefix_len())),
                    v4.1.push(*info),
                ),
                (None, IpNet::V6(n)) => (
                    v6.0.push(key(n.network().octets(), n.prefix_len())),
                    v6.1.push(*info),
                ),
            };
        }
        let sent = batch::update(self.hosts_v4.map().fd().as_fd(), &hosts.0, &hosts.1);
        batched(sent, &hosts.0, &hosts.1, |k, v| {
            self.hosts_v4.insert(k, v, 0)
        })?;
        let sent = batch::update(self.tries.v4.map().fd().as_fd(), &v4.0, &v4.1);
        batched(sent, &v4.0, &v4.1, |k, v| self.tries.v4.insert(k, v, 0))?;
        let sent = batch::update(self.tries.v6.map().fd().as_fd(), &v6.0, &v6.1);
        batched(sent, &v6.0, &v6.1, |k, v| self.tries.v6.insert(k, v, 0))
    }

    /// Removes many entries (missing ones are skipped), a batch per map.
    fn remove_many(&mut self, nets: &[IpNet]) -> Result<(), MapError> {
        let (mut hosts, mut v4, mut v6) = (Vec::new(), Vec::new(), Vec::new());
        for net in nets {
            match (host_v4(*net), net) {
                (Some(k), _) => hosts.push(k),
                (None, IpNet::V4(n)) => v4.push(key(n.network().octets(), n.prefix_len())),
                (None, IpNet::V6(n)) => v6.push(key(n.network().octets(), n.prefix_len())),
            }
        }
        let unit = vec![(); hosts.len().max(v4.len()).max(v6.len())];
        let sent = batch::delete(self.hosts_v4.map().fd().as_fd(), &hosts);
        batched(sent, &hosts, &unit[..hosts.len()], |k, ()| {
            ignore_missing(self.hosts_v4.remove(k))
        })?;
        let sent = batch::delete(self.tries.v4.map().fd().as_fd(), &v4);
        batched(sent, &v4, &unit[..v4.len()], |k, ()| {
            ignore_missing(self.tries.v4.remove(k))
        })?;
        let sent = batch::delete(self.tries.v6.map().fd().as_fd(), &v6);
        batched(sent, &v6, &unit[..v6.len()], |k, ()| {
            ignore_missing(self.tries.v6.remove(k))
        })
    }

    /// The entry stored for exactly `net` (or, for a prefix that is not
    /// stored, the trie's longest match).
    fn get(&self, net: IpNet) -> Option<AddressInfo> {
        match host_v4(net) {
            Some(key) => self.hosts_v4.get(&key, 0).ok(),
            None => self.tries.get(net),
        }
    }

    /// Everything the maps hold, for adoption at start. Whole-length IPv4
    /// entries that an older version left in the trie move to the hash on
    /// the way, where this version keeps and updates them.
    fn adopt(&mut self) -> Result<Vec<(IpNet, AddressInfo)>, MapError> {
        let mut all: Vec<(IpNet, AddressInfo)> = self
            .hosts_v4
            .iter()
            .filter_map(|e| e.ok())
            .map(|(k, v)| (IpNet::from(IpAddr::from(k)), v))
            .collect();
        for (net, info) in self.tries.entries() {
            if host_v4(net).is_some() {
                self.insert(net, info)?;
                self.tries.remove(net)?;
            }
            all.push((net, info));
        }
        Ok(all)
    }
}

pub struct Maps {
    addresses: Addresses,
    /// What the address tries hold, kept here (the daemon is their only writer).
    table: AddressTable,
    summary_v4: Array<MapData, SummaryV4>,
    exempt: Tries<u32>,
    policy: Array<MapData, u64>,
    settings: Array<MapData, Settings>,
    counters: PerCpuArray<MapData, IfaceCounters>,
    iface_names: Array<MapData, [u8; 16]>,
    ports: Array<MapData, PortInfo>,
    bindings: Bindings,
    isolated_macs: HashMap<MapData, [u8; 8], BlockValue>,
}

/// Addresses of switched segments and the MAC each is bound to.
type Bindings = Pair<HashMap<MapData, [u8; 4], Binding>, HashMap<MapData, [u8; 16], Binding>>;

fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

fn key<const N: usize>(net_bytes: [u8; N], prefix_len: u8) -> Key<[u8; N]> {
    Key::new(prefix_len as u32, net_bytes)
}

fn net_of<const N: usize>(key: &Key<[u8; N]>) -> IpNet
where
    IpAddr: From<[u8; N]>,
{
    IpNet::new(IpAddr::from(key.data()), key.prefix_len() as u8).expect("prefix fits")
}

impl<V: aya::Pod> Tries<V> {
    fn insert(&mut self, net: IpNet, value: V) -> Result<(), MapError> {
        match net {
            IpNet::V4(n) => self
                .v4
                .insert(&key(n.network().octets(), n.prefix_len()), value, 0),
            IpNet::V6(n) => self
                .v6
                .insert(&key(n.network().octets(), n.prefix_len()), value, 0),
        }
    }

    fn remove(&mut self, net: IpNet) -> Result<(), MapError> {
        ignore_missing(match net {
            IpNet::V4(n) => self.v4.remove(&key(n.network().octets(), n.prefix_len())),
            IpNet::V6(n) => self.v6.remove(&key(n.network().octets(), n.prefix_len())),
        })
    }

    /// The value of the longest prefix containing `net` (for a prefix that
    /// is in the trie: its own).
    fn get(&self, net: IpNet) -> Option<V> {
        match net {
            IpNet::V4(n) => self
                .v4
                .get(&key(n.network().octets(), n.prefix_len()), 0)
                .ok(),
            IpNet::V6(n) => self
                .v6
                .get(&key(n.network().octets(), n.prefix_len()), 0)
                .ok(),
        }
    }

    fn entries(&self) -> Vec<(IpNet, V)> {
        let v4 = self
            .v4
            .iter()
            .filter_map(|e| e.ok())
            .map(|(k, v)| (net_of(&k), v));
        let v6 = self
            .v6
            .iter()
            .filter_map(|e| e.ok())
            .map(|(k, v)| (net_of(&k), v));
        v4.chain(v6).collect()
    }

    /// Makes the tries hold exactly `wanted`, touching only what differs.
    fn sync(&mut self, wanted: &[(IpNet, V)]) -> Result<(), MapError> {
        for (net, value) in wanted {
            self.insert(*net, *value)?;
        }
        for (net, _) in self.entries() {
            if !wanted.iter().any(|(n, _)| *n == net) {
                self.remove(net)?;
            }
        }
        Ok(())
    }
}

impl Maps {
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Maps> {
        let mut addresses = Addresses {
            tries: Pair {
                v4: take(ebpf, names::ADDRESSES_V4)?,
                v6: take(ebpf, names::ADDRESSES_V6)?,
            },
            hosts_v4: take(ebpf, names::HOSTS_V4)?,
        };
        // Adopt what an earlier run left in the pinned maps.
        let adopted = addresses
            .adopt()
            .context("reading the pinned address maps")?;
        let table = AddressTable::from_entries(adopted);
        let mut maps = Maps {
            addresses,
            table,
            summary_v4: take(ebpf, names::SUMMARY_V4)?,
            exempt: Pair {
                v4: take(ebpf, names::EXEMPT_V4)?,
                v6: take(ebpf, names::EXEMPT_V6)?,
            },
            policy: take(ebpf, names::SEGMENT_POLICY)?,
            settings: take(ebpf, names::SETTINGS)?,
            counters: take(ebpf, names::IFACE_COUNTERS)?,
            iface_names: take(ebpf, names::IFACE_NAMES)?,
            ports: take(ebpf, names::PORTS)?,
            bindings: Pair {
                v4: take(ebpf, names::BINDINGS_V4)?,
                v6: take(ebpf, names::BINDINGS_V6)?,
            },
            isolated_macs: take(ebpf, names::ISOLATED_MACS)?,
        };
        maps.write_summaries().context("IPv4 summary map")?;
        Ok(maps)
    }

    /// Isolates a host; `value.expires_at_ns` is its expiry. (`value.hits`
    /// is ignored: hits live in the trie.)
    pub fn set_isolated(&mut self, host: IpAddr, value: BlockValue) -> Result<(), MapError> {
        let changes = self
            .table
            .insert_isolation(IpNet::from(host), value.expires_at_ns);
        self.apply(changes)
    }

    pub fn remove_isolated(&mut self, host: IpAddr) -> Result<(), MapError> {
        let changes = self.table.remove_isolation(IpNet::from(host));
        self.apply(changes)
    }

    /// An isolated host's expiry and the hits counted for it.
    pub fn get_isolated(&self, host: IpAddr) -> Option<BlockValue> {
        let host = IpNet::from(host);
        let expires_at_ns = self.table.isolation(host)?;
        let hits = self
            .addresses
            .get(host)
            .map_or(0, |info| info.isolation.hits);
        Some(BlockValue {
            expires_at_ns,
            hits,
        })
    }

    pub fn isolated_hosts(&self) -> Vec<IpAddr> {
        self.table.isolated_hosts().map(|(h, _)| h.addr()).collect()
    }

    /// Writes the address-trie entries a table change calls for, keeping
    /// the hit counts of entries that stay.
    fn apply(&mut self, changes: Vec<Change>) -> Result<(), MapError> {
        // Runs of new entries and of removals go in batches, in order.
        let mut fresh: Vec<(IpNet, AddressInfo)> = Vec::new();
        let mut gone: Vec<IpNet> = Vec::new();
        for change in changes {
            match change.want {
                Some(info) if !change.existed => {
                    self.addresses.remove_many(&std::mem::take(&mut gone))?;
                    fresh.push((change.prefix, info));
                }
                None => {
                    self.addresses.insert_many(&std::mem::take(&mut fresh))?;
                    gone.push(change.prefix);
                }
                // A rewrite keeps the entry's hit counts.
                Some(mut info) => {
                    self.addresses.remove_many(&std::mem::take(&mut gone))?;
                    self.addresses.insert_many(&std::mem::take(&mut fresh))?;
                    if let Some(old) = self.addresses.get(change.prefix) {
                        info.block.hits = old.block.hits;
                        info.isolation.hits = old.isolation.hits;
                    }
                    self.addresses.insert(change.prefix, info)?;
                }
            }
        }
        self.addresses.remove_many(&gone)?;
        self.addresses.insert_many(&fresh)?;
        self.write_summaries()
    }

    /// Writes the IPv4 summaries the table changed, after the trie entries
    /// they point to (see `SummaryV4`).
    fn write_summaries(&mut self) -> Result<(), MapError> {
        for (index, summary) in self.table.take_v4_summaries() {
            self.summary_v4.set(index, summary, 0)?;
        }
        Ok(())
    }

    /// Blocks a range; `value.expires_at_ns` is its expiry. (`value.hits`
    /// is ignored: hits live in the trie.)
    pub fn set_blocked(&mut self, net: IpNet, value: BlockValue) -> Result<(), MapError> {
        let changes = self.table.insert_block(net, value.expires_at_ns);
        self.apply(changes)
    }

    /// Blocks many ranges at once (`(range, expiry)`): the trie entries,
    /// then the summaries once.
    pub fn set_blocked_many(&mut self, nets: Vec<(IpNet, u64)>) -> Result<(), MapError> {
        let changes = self.table.insert_blocks(nets);
        self.apply(changes)
    }

    /// Lifts many blocked ranges at once (those that are not are skipped).
    pub fn remove_blocked_many(&mut self, nets: &[IpNet]) -> Result<(), MapError> {
        let changes = self.table.remove_blocks(nets);
        self.apply(changes)
    }

    /// Blocked ranges in the datapath, from every source.
    pub fn blocked_count(&self) -> usize {
        self.table.block_count()
    }

    /// Blocked ranges in the datapath per family: (IPv4, IPv6).
    pub fn blocked_counts(&self) -> (usize, usize) {
        self.table.block_counts()
    }

    pub fn remove_blocked(&mut self, net: IpNet) -> Result<(), MapError> {
        if !self.table.is_block(net) {
            return Ok(());
        }
        let changes = self.table.remove_block(net);
        self.apply(changes)
    }

    /// A blocked range's expiry and the hits counted for it, if it is blocked.
    pub fn get_blocked(&self, net: IpNet) -> Option<BlockValue> {
        let expires_at_ns = self.table.block_expiry(net)?;
        let hits = self
            .table
            .hit_prefixes(net)
            .into_iter()
            .filter_map(|p| self.addresses.get(p))
            .map(|info| info.block.hits)
            .sum();
        Some(BlockValue {
            expires_at_ns,
            hits,
        })
    }

    pub fn blocked_ranges(&self) -> Vec<IpNet> {
        self.table.blocks().map(|(n, _)| n).collect()
    }

    /// Makes the exemption tries hold exactly `ranges`.
    pub fn sync_exempt(&mut self, ranges: &[IpNet]) -> Result<()> {
        let wanted: Vec<(IpNet, u32)> = ranges.iter().map(|n| (*n, 1)).collect();
        self.exempt.sync(&wanted).context("exemption map")
    }

    /// Makes the segment ranges and the policy rows match the configuration.
    pub fn sync_segments(&mut self, segments: &[Segment], policy: &SegmentPolicy) -> Result<()> {
        let wanted: Vec<(IpNet, u32)> = segments
            .iter()
            .flat_map(|s| s.cidrs.iter().map(move |c| (*c, s.id)))
            .collect();
        let changes = self.table.set_segments(&wanted);
        self.apply(changes).context("address map")?;
        for src in 0..MAX_SEGMENTS {
            self.policy
                .set(src, policy.row(src), 0)
                .context("segment policy map")?;
        }
        Ok(())
    }

    /// Tells each inline port which segment's hosts come in on it, and
    /// whether that segment is switched (`PortInfo`). Ports of no segment
    /// are checked for nothing.
    pub fn sync_ports(&mut self, segments: &[Segment], interfaces: &[String]) -> Result<()> {
        for interface in interfaces {
            let slot = self.interface_slot(interface)?;
            let info = segments
                .iter()
                .find(|s| s.ports.contains(interface))
                .map(|s| PortInfo {
                    segment: s.id,
                    flags: if s.switched { PORT_SWITCHED } else { 0 },
                })
                .unwrap_or_default();
            self.set_port(slot, info)?;
        }
        Ok(())
    }

    /// What the port at counter slot `slot` is (tests set the unattached one).
    pub fn set_port(&mut self, slot: u32, info: PortInfo) -> Result<()> {
        self.ports.set(slot, info, 0).context("port map")
    }

    /// Binds `addr` to `mac` for the datapath's check of switched segments.
    pub fn set_binding(&mut self, addr: IpAddr, mac: [u8; 6]) -> Result<(), MapError> {
        let value = Binding { mac, _pad: [0; 2] };
        match addr {
            IpAddr::V4(a) => self.bindings.v4.insert(a.octets(), value, 0),
            IpAddr::V6(a) => self.bindings.v6.insert(a.octets(), value, 0),
        }
    }

    pub fn remove_binding(&mut self, addr: IpAddr) -> Result<(), MapError> {
        ignore_missing(match addr {
            IpAddr::V4(a) => self.bindings.v4.remove(&a.octets()),
            IpAddr::V6(a) => self.bindings.v6.remove(&a.octets()),
        })
    }

    /// Every binding in the datapath.
    pub fn bindings(&self) -> Vec<(IpAddr, [u8; 6])> {
        let v4 = self
            .bindings
            .v4
            .iter()
            .filter_map(|e| e.ok())
            .map(|(k, v)| (IpAddr::from(k), v.mac));
        let v6 = self
            .bindings
            .v6
            .iter()
            .filter_map(|e| e.ok())
            .map(|(k, v)| (IpAddr::from(k), v.mac));
        v4.chain(v6).collect()
    }

    /// Cuts off every frame from `mac` on switched ports; `value.expires_at_ns`
    /// is its expiry, `value.hits` its hit count.
    pub fn set_isolated_mac(&mut self, mac: [u8; 6], value: BlockValue) -> Result<(), MapError> {
        self.isolated_macs
            .insert(sensor_common::mac_key(mac), value, 0)?;
        self.set_flag(sensor_common::SETTINGS_FLAG_ISOLATED_MACS, true)
    }

    pub fn remove_isolated_mac(&mut self, mac: [u8; 6]) -> Result<(), MapError> {
        ignore_missing(self.isolated_macs.remove(&sensor_common::mac_key(mac)))?;
        let any = self.isolated_macs.keys().next().is_some();
        self.set_flag(sensor_common::SETTINGS_FLAG_ISOLATED_MACS, any)
    }

    pub fn get_isolated_mac(&self, mac: [u8; 6]) -> Option<BlockValue> {
        self.isolated_macs.get(&sensor_common::mac_key(mac), 0).ok()
    }

    /// Every MAC isolated in the datapath.
    pub fn isolated_macs(&self) -> Vec<[u8; 6]> {
        self.isolated_macs
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| [k[0], k[1], k[2], k[3], k[4], k[5]])
            .collect()
    }

    /// Drop packets with a forged source (else count and pass them).
    pub fn set_drop_spoofed(&mut self, on: bool) -> Result<(), MapError> {
        self.set_flag(sensor_common::SETTINGS_FLAG_DROP_SPOOFED, on)
    }

    /// Entries in the address tries (isolated hosts, blocked and segment ranges).
    pub fn address_entries(&self) -> usize {
        self.table.len()
    }

    pub fn set_monitor(&mut self, monitor: bool) -> Result<(), MapError> {
        self.set_flag(sensor_common::SETTINGS_FLAG_MONITOR, monitor)
    }

    pub fn monitor(&self) -> bool {
        self.flags() & sensor_common::SETTINGS_FLAG_MONITOR != 0
    }

    /// Turns the datapath's flow tracking and events on or off.
    pub fn set_telemetry(&mut self, on: bool) -> Result<(), MapError> {
        self.set_flag(sensor_common::SETTINGS_FLAG_TELEMETRY, on)
    }

    fn flags(&self) -> u32 {
        self.settings.get(&0, 0).map(|s| s.flags).unwrap_or(0)
    }

    fn set_flag(&mut self, flag: u32, on: bool) -> Result<(), MapError> {
        let flags = if on {
            self.flags() | flag
        } else {
            self.flags() & !flag
        };
        self.settings.set(0, Settings { flags, _pad: 0 }, 0)
    }

    fn slot_name(&self, slot: u32) -> Option<String> {
        let raw = self.iface_names.get(&slot, 0).ok()?;
        let len = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        (len > 0).then(|| String::from_utf8_lossy(&raw[..len]).into_owned())
    }

    /// The counter slot of `interface`: the one it had before (so counters
    /// survive restarts), or a free one, zeroed.
    pub fn interface_slot(&mut self, interface: &str) -> Result<u32> {
        let mut free = None;
        for slot in 1..MAX_INTERFACES {
            match self.slot_name(slot) {
                Some(name) if name == interface => return Ok(slot),
                None if free.is_none() => free = Some(slot),
                _ => {}
            }
        }
        let slot = free.context("no free interface counter slot")?;
        let mut name = [0u8; 16];
        let bytes = interface.as_bytes();
        name[..bytes.len().min(15)].copy_from_slice(&bytes[..bytes.len().min(15)]);
        let zeros = PerCpuValues::try_from(vec![
            IfaceCounters::ZERO;
            aya::util::nr_cpus().map_err(|(_, e)| e)?
        ])?;
        self.counters.set(slot, zeros, 0)?;
        self.iface_names.set(slot, name, 0)?;
        Ok(slot)
    }

    /// Forgets an interface's slot (it is no longer attached).
    pub fn release_interface_slot(&mut self, interface: &str) -> Result<()> {
        for slot in 1..MAX_INTERFACES {
            if self.slot_name(slot).as_deref() == Some(interface) {
                self.iface_names.set(slot, [0u8; 16], 0)?;
            }
        }
        Ok(())
    }

    /// Counters per interface, summed over CPUs. The unattached slot (test
    /// runs) is listed as "(unattached)" when it counted anything.
    pub fn counters(&self) -> Vec<(String, IfaceCounters)> {
        let mut out = Vec::new();
        for slot in 0..MAX_INTERFACES {
            let name = match (slot, self.slot_name(slot)) {
                (_, Some(name)) => name,
                (UNATTACHED_SLOT, None) => "(unattached)".to_string(),
                _ => continue,
            };
            let Ok(per_cpu) = self.counters.get(&slot, 0) else {
                continue;
            };
            let mut sum = IfaceCounters::ZERO;
            for cpu in per_cpu.iter() {
                for (s, c) in sum.packets.iter_mut().zip(cpu.packets.iter()) {
                    *s += c;
                }
                for (s, c) in sum.bytes.iter_mut().zip(cpu.bytes.iter()) {
                    *s += c;
                }
            }
            if slot == UNATTACHED_SLOT && sum == IfaceCounters::ZERO {
                continue;
            }
            out.push((name, sum));
        }
        out
    }
}
