//! What the address tries must hold, computed from the isolated hosts, the
//! segment ranges and the blocked ranges (see `sensor_common::AddressInfo`).
//!
//! The trie holds every isolated host, segment range and blocked range. Each
//! entry carries the segment of the longest segment range containing it, and
//! the block state of the blocked ranges containing it. The datapath's
//! longest match for an address is then the longest prefix of any kind
//! containing it, and that entry answers every question right (an isolated
//! host is a whole-length prefix, so it is its own longest match):
//! - no segment range longer than the entry contains the address (else that
//!   range, being in the trie, would be the longer match), so the entry's
//!   segment is the address's;
//! - the same holds for blocked ranges.
//!
//! A prefix inside several blocked ranges is blocked while any of them is
//! active, so its expiry is the latest of theirs (0, never, wins).
//!
//! The trie's entries are not mirrored here: what the trie holds for a
//! prefix is `entry(prefix)`, so a change computes the entries it touches
//! before and after, and reports those that differ. A million-range feed
//! then costs one small key per range, not a copy of every entry.

#[cfg(test)]
use std::collections::BTreeMap;

use ipnet::IpNet;
use sensor_common::{
    AddressInfo, BlockValue, SummaryV4, ADDRESS_BLOCKED, ADDRESS_ISOLATED, ADDRESS_IS_BLOCK,
    ADDRESS_IS_SEGMENT,
};

use super::{
    prefix_map::PrefixMap,
    summary::{self, Summaries},
};

#[derive(Debug, Default, Clone)]
pub struct AddressTable {
    segments: PrefixMap<u32>,
    /// Blocked range -> its own expiry (`CLOCK_BOOTTIME` ns, 0 = never).
    blocks: PrefixMap<u64>,
    /// Isolated host (a whole-length prefix) -> its expiry.
    isolated: PrefixMap<u64>,
    /// Entries in the trie: prefixes of any kind, each counted once.
    len: usize,
    /// The IPv4 fast path's per-/16 summaries of all of the above.
    summaries: Summaries,
    /// The trie as the reported changes leave it, for the tests to read.
    #[cfg(test)]
    trie: BTreeMap<IpNet, AddressInfo>,
}

/// A prefix whose trie entry must be rewritten (or removed when `want` is
/// `None`), and whether it was in the trie before the change (so its hit
/// count is there to keep). Entries a change leaves as they were are not
/// listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub prefix: IpNet,
    pub want: Option<AddressInfo>,
    pub existed: bool,
}

/// Two expiries of blocks that both cover a prefix: it stays blocked until
/// the later one (0, never, wins).
fn later(a: u64, b: u64) -> u64 {
    if a == 0 || b == 0 {
        0
    } else {
        a.max(b)
    }
}

/// Ranges merged into the table per pass of a bulk change (`insert_blocks`):
/// bounds what the pass holds besides the table.
const BULK_CHUNK: usize = 1 << 16;

impl AddressTable {
    pub fn segment_of(&self, prefix: IpNet) -> u32 {
        self.segments
            .containing(prefix)
            .next()
            .map_or(0, |(_, id)| id)
    }

    /// The longest blocked range containing `prefix`, if any.
    pub fn longest_block(&self, prefix: IpNet) -> Option<IpNet> {
        self.blocks.containing(prefix).next().map(|(p, _)| p)
    }

    fn is_key(&self, prefix: &IpNet) -> bool {
        self.blocks.contains(prefix)
            || self.segments.contains(prefix)
            || self.isolated.contains(prefix)
    }

    /// What the trie holds for `prefix` (hits left at 0), computed from
    /// the segments, blocks and isolations.
    pub fn entry(&self, prefix: IpNet) -> Option<AddressInfo> {
        let own_block = self.blocks.get(&prefix);
        let is_segment = self.segments.contains(&prefix);
        let isolation = self.isolated.get(&prefix);
        if own_block.is_none() && !is_segment && isolation.is_none() {
            return None;
        }
        let mut info = AddressInfo {
            segment: self.segment_of(prefix),
            ..Default::default()
        };
        if own_block.is_some() {
            info.flags |= ADDRESS_IS_BLOCK;
        }
        if is_segment {
            info.flags |= ADDRESS_IS_SEGMENT;
        }
        if let Some(expires_at_ns) = isolation {
            info.flags |= ADDRESS_ISOLATED;
            info.isolation = BlockValue {
                expires_at_ns,
                hits: 0,
            };
        }
        // A permanent block of its own is the answer: never outlasts it.
        let expiry = match own_block {
            Some(0) => Some(0),
            _ => self.blocks.containing(prefix).map(|(_, e)| e).reduce(later),
        };
        if let Some(expires_at_ns) = expiry {
            info.flags |= ADDRESS_BLOCKED;
            info.block = BlockValue {
                expires_at_ns,
                hits: 0,
            };
        }
        Some(info)
    }

    /// Every prefix in the trie that lies inside `net` (itself included),
    /// in order.
    pub fn prefixes_within(&self, net: IpNet) -> Vec<IpNet> {
        let mut found: Vec<IpNet> = self.blocks.within(net).map(|(p, _)| p).collect();
        found.extend(self.segments.within(net).map(|(p, _)| p));
        found.extend(self.isolated.within(net).map(|(p, _)| p));
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Runs `change` and reports how the entries of `scope` (every prefix
    /// whose entry it can alter) moved.
    fn changing(&mut self, mut scope: Vec<IpNet>, change: impl FnOnce(&mut Self)) -> Vec<Change> {
        scope.sort_unstable();
        scope.dedup();
        let before: Vec<Option<AddressInfo>> = scope.iter().map(|p| self.entry(*p)).collect();
        change(self);
        let mut changes = Vec::new();
        for (prefix, was) in scope.into_iter().zip(before) {
            let want = self.entry(prefix);
            if want == was {
                continue;
            }
            match (was.is_some(), want.is_some()) {
                (false, true) => self.len += 1,
                (true, false) => self.len -= 1,
                _ => {}
            }
            #[cfg(test)]
            {
                assert_eq!(self.trie.contains_key(&prefix), was.is_some(), "{prefix}");
                match want {
                    Some(info) => self.trie.insert(prefix, info),
                    None => self.trie.remove(&prefix),
                };
            }
            changes.push(Change {
                prefix,
                want,
                existed: was.is_some(),
            });
        }
        changes
    }

    /// Counts `net` out of the summaries, once it has left the table: the
    /// /24s it spanned stay marked where another entry longer than /16
    /// still overlaps them (one inside them, or one around them).
    fn counted_out(&mut self, net: IpNet, is_block: bool) {
        if net.prefix_len() <= 16 {
            // A wide entry: counted per /16, no /24 marks.
            self.summaries.remove(net, is_block, |_| true);
            return;
        }
        // The /24s it spans, as one prefix.
        let span = match net.prefix_len() {
            ..24 => net,
            _ => IpNet::new(net.network(), 24).expect("shorter").trunc(),
        };
        let longer = |p: &IpNet| p.prefix_len() > 16;
        let covered = self.blocks.containing(span).any(|(p, _)| longer(&p))
            || self.segments.containing(span).any(|(p, _)| longer(&p));
        let mut inside: Vec<u32> = Vec::new();
        if !covered {
            let keys = self.blocks.within(span).map(|(p, _)| p);
            let keys = keys.chain(self.segments.within(span).map(|(p, _)| p));
            for p in keys.chain(self.isolated.within(span).map(|(p, _)| p)) {
                if let IpNet::V4(p) = p {
                    inside.extend((u32::from(p.network()) >> 8)..=(u32::from(p.broadcast()) >> 8));
                }
            }
            inside.sort_unstable();
        }
        self.summaries.remove(net, is_block, |i24| {
            covered || inside.binary_search(&i24).is_ok()
        });
    }

    /// Adds to `scope` the prefixes a change of the block or segment on
    /// `net` can alter: itself and the keys inside it.
    fn scope_of(&self, net: IpNet, scope: &mut Vec<IpNet>) {
        scope.extend(self.blocks.within(net).map(|(p, _)| p));
        scope.extend(self.segments.within(net).map(|(p, _)| p));
        scope.extend(self.isolated.within(net).map(|(p, _)| p));
        scope.push(net);
    }

    pub fn insert_block(&mut self, net: IpNet, expires_at_ns: u64) -> Vec<Change> {
        if self.blocks.get(&net) == Some(expires_at_ns) {
            return Vec::new();
        }
        let mut scope = Vec::new();
        self.scope_of(net, &mut scope);
        self.changing(scope, |t| {
            if t.blocks.insert(net, expires_at_ns).is_none() {
                t.summaries.add(net, true);
            }
        })
    }

    /// Blocks many ranges at once (`(range, expiry)`, any order): the same
    /// changes as one `insert_block` each, merged into the table a chunk at
    /// a time.
    pub fn insert_blocks(&mut self, mut nets: Vec<(IpNet, u64)>) -> Vec<Change> {
        nets.sort_unstable_by_key(|(n, _)| *n);
        nets.dedup_by_key(|(n, _)| *n);
        let mut changes = Vec::new();
        for chunk in nets.chunks(BULK_CHUNK) {
            let (new, known): (Vec<_>, Vec<_>) =
                chunk.iter().partition(|(n, _)| !self.blocks.contains(n));
            for (net, expiry) in known {
                changes.extend(self.insert_block(net, expiry));
            }
            let mut scope = Vec::with_capacity(new.len());
            for (net, _) in &new {
                self.scope_of(*net, &mut scope);
            }
            changes.extend(self.changing(scope, |t| {
                for (net, _) in &new {
                    t.summaries.add(*net, true);
                }
                t.blocks.extend_new(new);
            }));
        }
        changes
    }

    pub fn remove_block(&mut self, net: IpNet) -> Vec<Change> {
        self.remove_blocks(&[net])
    }

    /// Lifts many blocked ranges at once (those that are not are skipped):
    /// the same changes as one `remove_block` each.
    pub fn remove_blocks(&mut self, nets: &[IpNet]) -> Vec<Change> {
        let mut changes = Vec::new();
        for chunk in nets.chunks(BULK_CHUNK) {
            let mut scope = Vec::with_capacity(chunk.len());
            let gone: Vec<IpNet> = chunk
                .iter()
                .copied()
                .filter(|net| self.blocks.contains(net))
                .collect();
            for net in &gone {
                self.scope_of(*net, &mut scope);
            }
            changes.extend(self.changing(scope, |t| {
                for net in &gone {
                    t.blocks.remove(net);
                }
                for net in gone {
                    t.counted_out(net, true);
                }
            }));
        }
        changes
    }

    /// Isolates a host (`host` is a whole-length prefix).
    pub fn insert_isolation(&mut self, host: IpNet, expires_at_ns: u64) -> Vec<Change> {
        self.changing(vec![host], |t| {
            if t.isolated.insert(host, expires_at_ns).is_none() {
                t.summaries.add(host, false);
            }
        })
    }

    pub fn remove_isolation(&mut self, host: IpNet) -> Vec<Change> {
        if !self.isolated.contains(&host) {
            return Vec::new();
        }
        self.changing(vec![host], |t| {
            t.isolated.remove(&host);
            t.counted_out(host, false);
        })
    }

    pub fn isolation(&self, host: IpNet) -> Option<u64> {
        self.isolated.get(&host)
    }

    pub fn isolated_hosts(&self) -> impl Iterator<Item = (IpNet, u64)> + '_ {
        self.isolated.iter()
    }

    pub fn is_block(&self, net: IpNet) -> bool {
        self.blocks.contains(&net)
    }

    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Blocked ranges per family: (IPv4, IPv6).
    pub fn block_counts(&self) -> (usize, usize) {
        self.blocks.lens()
    }

    pub fn blocks(&self) -> impl Iterator<Item = (IpNet, u64)> + '_ {
        self.blocks.iter()
    }

    /// Replaces the segment ranges; returns every entry to rewrite.
    pub fn set_segments(&mut self, segments: &[(IpNet, u32)]) -> Vec<Change> {
        let mut scope = Vec::new();
        for (net, _) in self.segments.iter().chain(segments.iter().copied()) {
            self.scope_of(net, &mut scope);
        }
        self.changing(scope, |t| {
            let old: Vec<IpNet> = t.segments.iter().map(|(n, _)| n).collect();
            for net in &old {
                t.segments.remove(net);
            }
            for net in old {
                t.counted_out(net, false);
            }
            for (net, id) in segments {
                if t.segments.insert(*net, *id).is_none() {
                    t.summaries.add(*net, false);
                }
            }
            // The segment of whole /16s may have moved anywhere.
            t.summaries.mark_all_dirty();
        })
    }

    /// Rebuilds the table from what a trie holds (adoption after a restart):
    /// the entries flagged as blocks are blocks, with the expiry they carry.
    pub fn from_entries(entries: impl IntoIterator<Item = (IpNet, AddressInfo)>) -> AddressTable {
        let mut table = AddressTable::default();
        for (prefix, info) in entries {
            if info.flags & ADDRESS_IS_BLOCK != 0 {
                table.blocks.insert(prefix, info.block.expires_at_ns);
                table.summaries.add(prefix, true);
            }
            if info.flags & ADDRESS_IS_SEGMENT != 0 {
                table.segments.insert(prefix, info.segment);
                table.summaries.add(prefix, false);
            }
            if info.flags & ADDRESS_ISOLATED != 0 {
                table.isolated.insert(prefix, info.isolation.expires_at_ns);
                table.summaries.add(prefix, false);
            }
            if table.is_key(&prefix) {
                table.len += 1;
                #[cfg(test)]
                {
                    let mut stored = info;
                    stored.block.hits = 0;
                    stored.isolation.hits = 0;
                    table.trie.insert(prefix, stored);
                }
            }
        }
        table.summaries.mark_all_dirty();
        table
    }

    /// The IPv4 summaries changed since the last call, by /16 index.
    pub fn take_v4_summaries(&mut self) -> Vec<(u32, SummaryV4)> {
        self.summaries
            .take_dirty()
            .into_iter()
            .map(|i16| {
                let segment = self.segment_of(summary::sixteen(i16));
                (i16, self.summaries.summary(i16, segment))
            })
            .collect()
    }

    /// A blocked range's own expiry, if it is one.
    pub fn block_expiry(&self, net: IpNet) -> Option<u64> {
        self.blocks.get(&net)
    }

    /// The prefixes whose hits belong to the blocked range `net`: those
    /// whose longest containing block it is.
    pub fn hit_prefixes(&self, net: IpNet) -> Vec<IpNet> {
        self.prefixes_within(net)
            .into_iter()
            .filter(|p| self.longest_block(*p) == Some(net))
            .collect()
    }

    /// Entries in the trie.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What the reported changes left in the trie for `prefix`.
    #[cfg(test)]
    pub fn stored(&self, prefix: &IpNet) -> Option<AddressInfo> {
        self.trie.get(prefix).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::Ipv4Net;

    /// Every prefix of `net`'s family that contains it, longest first.
    fn supernets(net: IpNet) -> impl Iterator<Item = IpNet> {
        (0..=net.prefix_len())
            .rev()
            .map(move |len| IpNet::new(net.network(), len).unwrap().trunc())
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// What the datapath would find for `addr`: the longest stored entry.
    fn lookup(t: &AddressTable, addr: &str) -> Option<AddressInfo> {
        let host = IpNet::from(addr.parse::<std::net::IpAddr>().unwrap());
        supernets(host).find_map(|p| t.stored(&p))
    }

    fn table() -> AddressTable {
        let mut t = AddressTable::default();
        t.set_segments(&[
            (net("0.0.0.0/0"), 1),
            (net("10.10.0.0/16"), 2),
            (net("10.20.0.0/16"), 3),
        ]);
        t
    }

    #[test]
    fn segments_alone() {
        let t = table();
        assert_eq!(lookup(&t, "8.8.8.8").unwrap().segment, 1);
        assert_eq!(lookup(&t, "10.10.3.4").unwrap().segment, 2);
        assert_eq!(lookup(&t, "10.20.3.4").unwrap().segment, 3);
        assert_eq!(lookup(&t, "10.10.3.4").unwrap().flags & ADDRESS_BLOCKED, 0);
    }

    #[test]
    fn a_block_inside_a_segment_keeps_the_segment() {
        let mut t = table();
        let changes = t.insert_block(net("10.10.5.0/24"), 0);
        assert_eq!(changes.len(), 1);
        assert!(!changes[0].existed);
        let info = lookup(&t, "10.10.5.9").unwrap();
        assert_eq!(info.segment, 2);
        assert_ne!(info.flags & ADDRESS_BLOCKED, 0);
        assert_eq!(lookup(&t, "10.10.6.9").unwrap().flags & ADDRESS_BLOCKED, 0);
    }

    #[test]
    fn a_segment_inside_a_block_is_blocked_too() {
        let mut t = table();
        let changes = t.insert_block(net("10.0.0.0/8"), 0);
        // The block itself and both segments inside it are rewritten.
        let prefixes: Vec<String> = changes.iter().map(|c| c.prefix.to_string()).collect();
        assert_eq!(prefixes, ["10.0.0.0/8", "10.10.0.0/16", "10.20.0.0/16"]);
        for addr in ["10.10.1.1", "10.20.1.1", "10.99.1.1"] {
            assert_ne!(
                lookup(&t, addr).unwrap().flags & ADDRESS_BLOCKED,
                0,
                "{addr}"
            );
        }
        assert_eq!(lookup(&t, "10.10.1.1").unwrap().segment, 2);
        assert_eq!(lookup(&t, "10.99.1.1").unwrap().segment, 1);
        // Hits of the /8 are counted on all three entries.
        assert_eq!(t.hit_prefixes(net("10.0.0.0/8")).len(), 3);

        let changes = t.remove_block(net("10.0.0.0/8"));
        assert!(changes
            .iter()
            .any(|c| c.prefix == net("10.0.0.0/8") && c.want.is_none()));
        for addr in ["10.10.1.1", "10.20.1.1", "10.99.1.1"] {
            assert_eq!(
                lookup(&t, addr).unwrap().flags & ADDRESS_BLOCKED,
                0,
                "{addr}"
            );
        }
    }

    #[test]
    fn nested_blocks_last_as_long_as_the_longest_lived() {
        let mut t = table();
        t.insert_block(net("10.10.0.0/16"), 0);
        t.insert_block(net("10.10.5.0/24"), 500);
        let inner = lookup(&t, "10.10.5.1").unwrap();
        assert_eq!(
            inner.block.expires_at_ns, 0,
            "the permanent /16 still covers it"
        );
        assert_eq!(
            t.longest_block(net("10.10.5.1/32")),
            Some(net("10.10.5.0/24"))
        );
        let mut t = table();
        t.insert_block(net("10.10.0.0/16"), 300);
        t.insert_block(net("10.10.5.0/24"), 500);
        assert_eq!(lookup(&t, "10.10.5.1").unwrap().block.expires_at_ns, 500);
        assert_eq!(lookup(&t, "10.10.6.1").unwrap().block.expires_at_ns, 300);
    }

    #[test]
    fn a_block_on_a_segment_range_is_one_entry() {
        let mut t = table();
        t.insert_block(net("10.20.0.0/16"), 0);
        assert_eq!(t.len(), 3);
        let info = t.entry(net("10.20.0.0/16")).unwrap();
        assert_eq!(
            info.flags,
            ADDRESS_BLOCKED | ADDRESS_IS_BLOCK | ADDRESS_IS_SEGMENT
        );
        let changes = t.remove_block(net("10.20.0.0/16"));
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].want.unwrap().flags,
            ADDRESS_IS_SEGMENT,
            "stays as a segment"
        );
    }

    #[test]
    fn adoption_rebuilds_the_table() {
        let mut t = table();
        t.insert_block(net("10.0.0.0/8"), 0);
        t.insert_block(net("2001:db8::/32"), 77);
        let entries: Vec<(IpNet, AddressInfo)> = [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "10.10.0.0/16",
            "10.20.0.0/16",
            "2001:db8::/32",
        ]
        .iter()
        .map(|p| (net(p), t.entry(net(p)).unwrap()))
        .collect();
        let back = AddressTable::from_entries(entries);
        let blocks: Vec<(IpNet, u64)> = back.blocks().collect();
        assert_eq!(blocks, [(net("10.0.0.0/8"), 0), (net("2001:db8::/32"), 77)]);
        assert_eq!(back.segment_of(net("10.10.1.0/24")), 2);
    }

    #[test]
    fn changing_segments_rewrites_blocks_inside_them() {
        let mut t = table();
        t.insert_block(net("10.10.5.0/24"), 0);
        let changes = t.set_segments(&[(net("0.0.0.0/0"), 1), (net("10.10.0.0/16"), 4)]);
        let block = changes
            .iter()
            .find(|c| c.prefix == net("10.10.5.0/24"))
            .unwrap();
        assert_eq!(block.want.unwrap().segment, 4);
        assert!(block.existed);
        let gone = changes
            .iter()
            .find(|c| c.prefix == net("10.20.0.0/16"))
            .unwrap();
        assert_eq!(gone.want, None);
    }

    /// Random blocks and segments, added and removed: what the longest
    /// entry says for an address always equals the answer computed directly.
    #[test]
    fn matches_a_direct_computation_under_random_changes() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // A small space (10.0.0.0/20) so that prefixes nest and probes hit them.
        let random_net = |r: u64| {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (r as u32 & 0x0fff));
            IpNet::V4(
                Ipv4Net::new(addr, 20 + (r >> 40) as u8 % 13)
                    .unwrap()
                    .trunc(),
            )
        };
        let mut t = AddressTable::default();
        let mut blocks: Vec<(IpNet, u64)> = Vec::new();
        let mut segments: Vec<(IpNet, u32)> = Vec::new();
        let mut isolated: Vec<(IpNet, u64)> = Vec::new();
        for round in 0..400 {
            let r = rand();
            match r % 7 {
                5 => {
                    let host = IpNet::from(std::net::IpAddr::V4(
                        (0x0a00_0000 | (r as u32 & 0x0fff)).into(),
                    ));
                    let expiry = (r >> 56) % 3;
                    isolated.retain(|(n, _)| *n != host);
                    isolated.push((host, expiry));
                    t.insert_isolation(host, expiry);
                }
                6 if !isolated.is_empty() => {
                    let (host, _) = isolated.remove((r >> 20) as usize % isolated.len());
                    t.remove_isolation(host);
                }
                0 => {
                    segments.retain(|(n, _)| *n != random_net(r));
                    segments.push((random_net(r), 1 + (r >> 50) as u32 % 5));
                    t.set_segments(&segments);
                }
                1 if !blocks.is_empty() => {
                    let (net, _) = blocks.remove((r >> 20) as usize % blocks.len());
                    t.remove_block(net);
                }
                _ => {
                    let net = random_net(r);
                    let expiry = [0, 100, 200, 300][(r >> 56) as usize % 4];
                    blocks.retain(|(n, _)| *n != net);
                    blocks.push((net, expiry));
                    t.insert_block(net, expiry);
                }
            }
            for _ in 0..50 {
                let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (rand() as u32 & 0x0fff));
                let host = IpNet::from(std::net::IpAddr::V4(addr));
                let got = lookup(&t, &addr.to_string());
                let segment = segments
                    .iter()
                    .filter(|(n, _)| n.contains(&host))
                    .max_by_key(|(n, _)| n.prefix_len())
                    .map_or(0, |(_, id)| *id);
                let expiry = blocks
                    .iter()
                    .filter(|(n, _)| n.contains(&host))
                    .map(|(_, e)| *e)
                    .reduce(later);
                assert_eq!(
                    got.map_or(0, |i| i.segment),
                    segment,
                    "round {round}, {addr}"
                );
                assert_eq!(
                    got.filter(|i| i.flags & ADDRESS_BLOCKED != 0)
                        .map(|i| i.block.expires_at_ns),
                    expiry,
                    "round {round}, {addr}"
                );
            }
        }
    }

    #[test]
    fn isolated_hosts_carry_segment_and_blocks_around_them() {
        let mut t = table();
        let host = net("10.10.5.9/32");
        let changes = t.insert_isolation(host, 0);
        assert_eq!(changes.len(), 1);
        let info = lookup(&t, "10.10.5.9").unwrap();
        assert_eq!(info.flags, ADDRESS_ISOLATED);
        assert_eq!(info.segment, 2);
        // A block around it is merged into its entry.
        t.insert_block(net("10.10.5.0/24"), 0);
        let info = lookup(&t, "10.10.5.9").unwrap();
        assert_eq!(info.flags, ADDRESS_ISOLATED | ADDRESS_BLOCKED);
        assert_eq!(t.hit_prefixes(net("10.10.5.0/24")).len(), 2);
        // Releasing the host leaves the block.
        let changes = t.remove_isolation(host);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].want, None);
        assert_ne!(lookup(&t, "10.10.5.9").unwrap().flags & ADDRESS_BLOCKED, 0);
        // Adoption keeps isolations.
        t.insert_isolation(host, 42);
        let back = AddressTable::from_entries([(host, t.stored(&host).unwrap())]);
        assert_eq!(back.isolation(host), Some(42));
    }

    /// What the datapath finds for an IPv4 address with the summaries
    /// written so far in `written`: the summary's answer when it gives one
    /// (segment, nothing isolated or blocked), else the trie's.
    fn fast_lookup(written: &BTreeMap<u32, SummaryV4>, t: &AddressTable, addr: &str) -> (u32, u32) {
        let o = addr.parse::<std::net::Ipv4Addr>().unwrap().octets();
        match written.get(&SummaryV4::index(&o)) {
            Some(s) if s.answers(o[2]) => (s.segment, 0),
            _ => lookup(t, addr).map_or((0, 0), |i| {
                (i.segment, i.flags & (ADDRESS_BLOCKED | ADDRESS_ISOLATED))
            }),
        }
    }

    #[test]
    fn a_slash_24_stays_marked_while_any_entry_overlaps_it() {
        let mut t = table();
        let mut written = BTreeMap::new();
        written.extend(t.take_v4_summaries());
        t.insert_block(net("198.51.100.7/32"), 0);
        t.insert_block(net("198.51.100.9/32"), 0);
        t.insert_isolation(net("10.10.7.7/32"), 0);
        t.insert_block(net("10.10.7.0/25"), 0);
        t.insert_block(net("203.0.112.0/20"), 0);
        t.insert_block(net("203.0.113.0/24"), 0);
        written.extend(t.take_v4_summaries());
        let marked = |w: &BTreeMap<u32, SummaryV4>, addr: &str| {
            let b = addr.parse::<std::net::Ipv4Addr>().unwrap().octets();
            !w[&SummaryV4::index(&b)].answers(b[2])
        };
        // A sibling in the /24, the block around a host, the /20 around a
        // /24: each keeps the /24 marked when the other leaves.
        t.remove_block(net("198.51.100.7/32"));
        t.remove_isolation(net("10.10.7.7/32"));
        t.remove_block(net("203.0.113.0/24"));
        written.extend(t.take_v4_summaries());
        for addr in ["198.51.100.9", "10.10.7.7", "203.0.113.1"] {
            assert!(marked(&written, addr), "{addr}");
        }
        t.remove_block(net("198.51.100.9/32"));
        t.remove_block(net("10.10.7.0/25"));
        t.remove_block(net("203.0.112.0/20"));
        written.extend(t.take_v4_summaries());
        for addr in ["198.51.100.9", "10.10.7.7", "203.0.113.1"] {
            assert!(!marked(&written, addr), "{addr}");
        }
    }

    #[test]
    fn summaries_answer_exactly_what_the_trie_would() {
        let mut t = table();
        let mut written = BTreeMap::new();
        let write = |t: &mut AddressTable, w: &mut BTreeMap<u32, SummaryV4>| {
            w.extend(t.take_v4_summaries());
        };
        write(&mut t, &mut written);
        t.set_segments(&[
            (net("0.0.0.0/0"), 1),
            (net("10.10.0.0/16"), 2),
            (net("10.20.4.0/22"), 3),
            (net("10.20.9.0/28"), 4),
        ]);
        t.insert_isolation(net("10.10.7.7/32"), 0);
        t.insert_block(net("8.8.0.0/16"), 0);
        t.insert_block(net("9.0.0.0/8"), 5);
        t.insert_block(net("203.0.113.0/25"), 0);
        t.insert_block(net("198.51.96.0/20"), 0);
        write(&mut t, &mut written);
        let probe = [
            "10.10.7.7",
            "10.10.7.8",
            "10.10.8.1",
            "10.20.4.1",
            "10.20.7.255",
            "10.20.8.1",
            "10.20.9.1",
            "10.20.9.17",
            "8.8.8.8",
            "8.9.0.1",
            "9.200.1.1",
            "203.0.113.1",
            "203.0.113.200",
            "203.0.114.1",
            "198.51.100.7",
            "198.51.112.1",
            "1.1.1.1",
        ];
        let check = |t: &AddressTable, w: &BTreeMap<u32, SummaryV4>| {
            for addr in probe {
                let trie = lookup(t, addr).map_or((0, 0), |i| {
                    (i.segment, i.flags & (ADDRESS_BLOCKED | ADDRESS_ISOLATED))
                });
                assert_eq!(fast_lookup(w, t, addr), trie, "{addr}");
            }
        };
        check(&t, &written);
        // The common address is answered by the summary alone.
        let o = |a: &str| a.parse::<std::net::Ipv4Addr>().unwrap().octets();
        for addr in ["1.1.1.1", "10.10.8.1", "198.51.112.1"] {
            let b = o(addr);
            assert!(written[&SummaryV4::index(&b)].answers(b[2]), "{addr}");
        }
        for addr in ["10.10.7.9", "8.8.8.8", "10.20.9.1", "198.51.100.7"] {
            let b = o(addr);
            assert!(!written[&SummaryV4::index(&b)].answers(b[2]), "{addr}");
        }
        // Removals clear the marks again.
        t.remove_isolation(net("10.10.7.7/32"));
        t.remove_block(net("8.8.0.0/16"));
        t.remove_block(net("198.51.96.0/20"));
        write(&mut t, &mut written);
        check(&t, &written);
        for addr in ["10.10.7.9", "8.8.8.8", "198.51.100.7"] {
            let b = o(addr);
            assert!(written[&SummaryV4::index(&b)].answers(b[2]), "{addr}");
        }
        // A table rebuilt from the trie (adoption) summarises the same.
        let mut back = AddressTable::from_entries(t.trie.clone());
        let mut rebuilt = BTreeMap::new();
        rebuilt.extend(back.take_v4_summaries());
        assert_eq!(rebuilt, written);
    }
}
