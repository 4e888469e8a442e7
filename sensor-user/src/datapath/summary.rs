//! The per-/16 summaries of the IPv4 address table (`SummaryV4`): which
//! /24s hold something only the trie can answer (an isolated host, a blocked
//! range, a segment range longer than /16), and which /16s changed since
//! they were last written. A /24's mark is set when an entry overlapping it
//! comes, and cleared when the last one goes (the table says which: a count
//! per /24 would cost some 20 bytes for each range of a large feed).

use std::collections::{BTreeSet, HashMap};

use ipnet::{IpNet, Ipv4Net};
use sensor_common::{SummaryV4, SUMMARY_EXACT, SUMMARY_V4_ENTRIES};

#[derive(Debug, Default, Clone)]
pub struct Summaries {
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
    /// Counts in an isolated host, a blocked range (`is_block`) or a
    /// segment range. A segment range of /16 or shorter needs no trie: it
    /// is the summaries' own segment.
    pub fn add(&mut self, net: IpNet, is_block: bool) {
        let IpNet::V4(net) = net else { return };
        if net.prefix_len() <= 16 {
            if is_block {
                for i16 in sixteens(net) {
                    bump(&mut self.covering, i16, 1);
                    self.dirty.insert(i16);
                }
            }
            return;
        }
        for i24 in twenty_fours(net) {
            let marks = self.marks.entry(i24 >> 8).or_default();
            let bit = 1 << (i24 % 64);
            if marks[(i24 & 0xff) as usize / 64] & bit == 0 {
                marks[(i24 & 0xff) as usize / 64] |= bit;
                self.dirty.insert(i24 >> 8);
            }
        }
    }

    /// Counts out an entry `add` counted in, once it has left the table;
    /// `occupied(i24)` says whether another entry still overlaps a /24.
    pub fn remove(&mut self, net: IpNet, is_block: bool, occupied: impl Fn(u32) -> bool) {
        let IpNet::V4(net) = net else { return };
        if net.prefix_len() <= 16 {
            if is_block {
                for i16 in sixteens(net) {
                    bump(&mut self.covering, i16, -1);
                    self.dirty.insert(i16);
                }
            }
            return;
        }
        for i24 in twenty_fours(net) {
            if occupied(i24) {
                continue;
            }
            let Some(marks) = self.marks.get_mut(&(i24 >> 8)) else {
                continue;
            };
            marks[(i24 & 0xff) as usize / 64] &= !(1 << (i24 % 64));
            if *marks == [0; 4] {
                self.marks.remove(&(i24 >> 8));
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
