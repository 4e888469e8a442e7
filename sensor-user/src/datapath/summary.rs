//! The per-/16 summaries of the IPv4 address table (`SummaryV4`): which
//! /24s hold something only the trie can answer (an isolated host, a blocked
//! range, a segment range longer than /16), counted so that a change costs
//! what it covers, and which /16s changed since they were last written.

use std::collections::{BTreeSet, HashMap};

use ipnet::{IpNet, Ipv4Net};
use sensor_common::{SummaryV4, SUMMARY_EXACT, SUMMARY_V4_ENTRIES};

#[derive(Debug, Default, Clone)]
pub struct Summaries {
    /// /24 index (address >> 8) -> entries overlapping it.
    per_24: HashMap<u32, u32>,
    /// /16 index -> the bits of its /24s that have entries (absent: none).
    marks: HashMap<u32, [u64; 4]>,
    /// /16 index -> blocked ranges of /16 or shorter covering all of it.
    covering: HashMap<u32, u32>,
    dirty: BTreeSet<u32>,
}

/// The /16 indexes `net` spans (a range of /16 or shorter).
fn sixteens(net: Ipv4Net) -> std::ops::RangeInclusive<u32> {
    (u32::from(net.network()) >> 16)..=(u32::from(net.broadcast()) >> 16)
}

/// The /24 indexes `net` spans.
fn twenty_fours(net: Ipv4Net) -> std::ops::RangeInclusive<u32> {
    (u32::from(net.network()) >> 8)..=(u32::from(net.broadcast()) >> 8)
}

impl Summaries {
    /// Counts (`delta` 1) or uncounts (-1) an isolated host, a blocked
    /// range (`is_block`) or a segment range. A segment range of /16 or
    /// shorter needs no trie: it is the summaries' own segment.
    pub fn count(&mut self, net: IpNet, is_block: bool, delta: i32) {
        let IpNet::V4(net) = net else { return };
        if net.prefix_len() <= 16 {
            if is_block {
                for i16 in sixteens(net) {
                    bump(&mut self.covering, i16, delta);
                    self.dirty.insert(i16);
                }
            }
            return;
        }
        for i24 in twenty_fours(net) {
            let before = self.per_24.get(&i24).copied().unwrap_or(0);
            bump(&mut self.per_24, i24, delta);
            let after = self.per_24.get(&i24).copied().unwrap_or(0);
            if (before == 0) != (after == 0) {
                let marks = self.marks.entry(i24 >> 8).or_default();
                marks[(i24 & 0xff) as usize / 64] ^= 1 << (i24 % 64);
                if *marks == [0; 4] {
                    self.marks.remove(&(i24 >> 8));
                }
            }
            self.dirty.insert(i24 >> 8);
        }
    }

    /// Every /16 must be rewritten (segments changed, or a fresh start).
    pub fn mark_all_dirty(&mut self) {
        self.dirty.extend(0..SUMMARY_V4_ENTRIES);
    }

    pub fn take_dirty(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    /// The summary of /16 `i16`, whose unmarked addresses are in `segment`.
    pub fn summary(&self, i16: u32, segment: u32) -> SummaryV4 {
        let mut summary = SummaryV4 {
            segment,
            ..Default::default()
        };
        if self.covering.get(&i16).copied().unwrap_or(0) > 0 {
            // All of it is blocked: every address goes to the trie, which
            // knows the block's expiry and counts its hits.
            return summary;
        }
        summary.flags = SUMMARY_EXACT;
        summary.trie_24 = self.marks.get(&i16).copied().unwrap_or_default();
        summary
    }
}

fn bump(counts: &mut HashMap<u32, u32>, key: u32, delta: i32) {
    let entry = counts.entry(key).or_insert(0);
    *entry = entry.saturating_add_signed(delta);
    if *entry == 0 {
        counts.remove(&key);
    }
}

/// The /16 network of summary index `i16`.
pub fn sixteen(i16: u32) -> IpNet {
    IpNet::V4(Ipv4Net::new((i16 << 16).into(), 16).expect("a /16"))
}
