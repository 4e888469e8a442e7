//! Sliding windows on packet time: distinct keys with when they were last
//! seen, leaky buckets, and the once-a-minute gate of sweeps.

use smallvec::SmallVec;
use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    net::IpAddr,
};

use super::event::{Nanos, SECOND};

/// Gates a sweep over everything a detector tracks (forgetting what aged
/// out) to once a minute of packet time: per event or per second, such
/// sweeps were what limited the engine's throughput.
#[derive(Debug, Default, Clone)]
pub struct MinuteSweep {
    last: Nanos,
}

impl MinuteSweep {
    /// Whether a sweep is due at `now`; if so, it counts as done.
    pub fn due(&mut self, now: Nanos) -> bool {
        let due = now >= self.last + 60 * SECOND;
        if due {
            self.last = now;
        }
        due
    }

    /// The next `due` is true (the end of a capture sweeps whatever the time).
    pub fn reset(&mut self) {
        self.last = 0;
    }
}

/// Keeps `map` within `cap` entries: past it, the eighth with the oldest
/// `last` times go at once (one partial sort per `cap / 8` new entries,
/// not a search per entry). Returns how many went, for the metric.
pub fn cap_oldest<K: Hash + Eq + Clone, V>(
    map: &mut HashMap<K, V>,
    cap: usize,
    last: impl Fn(&V) -> Nanos,
) -> u64 {
    if map.len() <= cap {
        return 0;
    }
    let mut ages: Vec<(Nanos, K)> = map.iter().map(|(k, v)| (last(v), k.clone())).collect();
    let n = (cap / 8).max(1).min(ages.len());
    ages.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
    for (_, key) in &ages[..n] {
        map.remove(key);
    }
    n as u64
}

/// A table of findings already reported (to give each once, or again only
/// when it doubles). Such tables grow with distinct findings, which the
/// network chooses: past `limits::REPORTED` one starts afresh, so a finding
/// may be reported once more, and nothing grows without bound.
pub trait Reported {
    fn entries(&self) -> usize;
    fn forget(&mut self);
}

impl<K: Hash + Eq, V> Reported for HashMap<K, V> {
    fn entries(&self) -> usize {
        self.len()
    }
    fn forget(&mut self) {
        self.clear();
        self.shrink_to_fit();
    }
}

impl<K: Hash + Eq> Reported for std::collections::HashSet<K> {
    fn entries(&self) -> usize {
        self.len()
    }
    fn forget(&mut self) {
        self.clear();
        self.shrink_to_fit();
    }
}

/// Keeps a table of reported findings within `limits::REPORTED`; call
/// before adding to it.
pub fn limit_reported(table: &mut impl Reported) {
    if table.entries() >= super::limits::REPORTED {
        table.forget();
    }
}

/// Findings about a (host, peer) pair given at most once per `every`:
/// the time each pair was last reported, within `cap` pairs (the oldest
/// go first).
pub struct OncePer {
    last: HashMap<(IpAddr, IpAddr), Nanos>,
    every: Nanos,
    cap: usize,
}

impl OncePer {
    pub fn new(every: Nanos, cap: usize) -> OncePer {
        OncePer {
            last: HashMap::new(),
            every,
            cap,
        }
    }

    /// Whether `pair` may be reported at `ts`; if so, it counts as done.
    pub fn first(&mut self, pair: (IpAddr, IpAddr), ts: Nanos) -> bool {
        if self
            .last
            .get(&pair)
            .is_some_and(|at| ts.saturating_sub(*at) < self.every)
        {
            return false;
        }
        cap_oldest(&mut self.last, self.cap, |t| *t);
        self.last.insert(pair, ts);
        true
    }

    /// Forgets pairs reported longer than `every` ago.
    pub fn prune(&mut self, now: Nanos) {
        let every = self.every;
        self.last.retain(|_, at| now.saturating_sub(*at) < every);
        fit(&mut self.last);
    }

    /// Pairs remembered.
    pub fn pairs(&self) -> usize {
        self.last.len()
    }
}

/// Gives back the room of a map that shrank: after a flood, a table that
/// once held a million entries keeps their memory unless told (checked at
/// the once-a-minute sweeps).
pub fn fit<K: Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 4 * map.len() + 1024 {
        map.shrink_to_fit();
    }
}

/// Distinct keys seen, each with its latest time. Most sets stay tiny (a
/// host's one query under a domain, a pair's one port): up to `SMALL` keys
/// live inline and are searched in order; past that, in a `Large` set,
/// whose counts over a sliding window cost O(1) amortised, so one host
/// probing a million peers is linear, not quadratic.
#[derive(Debug, Clone)]
pub struct TimedSet<K> {
    small: SmallVec<[(K, Nanos); 1]>,
    /// Boxed on purpose: most sets never need it, and an empty box is
    /// one word where an empty map is six.
    large: Option<Box<Large<K>>>,
}

/// Keys a `TimedSet` keeps inline before it moves them to a `Large` set.
const SMALL: usize = 8;

/// A large set: each key's latest time and the sequence number of its entry
/// in `order`, the insertions in the order they came (packet time, give or
/// take the few seconds by which a failed attempt's time trails its
/// discovery). An entry is live while it is its key's latest. A count over
/// a window keeps a cursor per window length: the first entry inside the
/// window and the live entries from it on; as time moves on the cursor
/// moves forward over what left the window, so each entry is passed once.
#[derive(Debug, Clone)]
struct Large<K> {
    times: HashMap<K, (Nanos, u64)>,
    order: VecDeque<(Nanos, u64, K)>,
    /// Sequence number of `order[0]`, and of the next entry.
    first_seq: u64,
    next_seq: u64,
    cursors: SmallVec<[Cursor; 2]>,
    latest: Nanos,
}

#[derive(Debug, Clone, Copy)]
struct Cursor {
    window: Nanos,
    seq: u64,
    live: usize,
}

impl<K: Hash + Eq + Clone> Large<K> {
    fn new(keys: impl Iterator<Item = (K, Nanos)>) -> Large<K> {
        let mut large = Large {
            times: HashMap::new(),
            order: VecDeque::new(),
            first_seq: 0,
            next_seq: 0,
            cursors: SmallVec::new(),
            latest: 0,
        };
        let mut keys: Vec<(K, Nanos)> = keys.collect();
        keys.sort_by_key(|(_, t)| *t);
        for (k, t) in keys {
            large.insert(k, t);
        }
        large
    }

    fn insert(&mut self, key: K, ts: Nanos) {
        self.latest = self.latest.max(ts);
        if let Some(&(old, old_seq)) = self.times.get(&key) {
            if ts <= old {
                return;
            }
            // The old entry is stale now.
            for c in &mut self.cursors {
                if old_seq >= c.seq {
                    c.live -= 1;
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.times.insert(key.clone(), (ts, seq));
        self.order.push_back((ts, seq, key));
        for c in &mut self.cursors {
            c.live += 1;
        }
        // Stale entries outnumber live ones: drop them (amortised O(1)).
        if self.order.len() > 2 * self.times.len() + 64 {
            self.rebuild();
        }
    }

    /// `order` with only live entries, numbered afresh; cursors start over.
    fn rebuild(&mut self) {
        let times = &self.times;
        self.order
            .retain(|(_, seq, k)| times.get(k).is_some_and(|(_, s)| s == seq));
        for (i, (_, seq, key)) in self.order.iter_mut().enumerate() {
            *seq = i as u64;
            if let Some(entry) = self.times.get_mut(key) {
                entry.1 = i as u64;
            }
        }
        self.first_seq = 0;
        self.next_seq = self.order.len() as u64;
        self.cursors.clear();
    }

    fn is_live(&self, seq: u64, key: &K) -> bool {
        self.times.get(key).is_some_and(|(_, s)| *s == seq)
    }

    /// Keys whose latest time is within `window` of `now`.
    fn count_within(&mut self, now: Nanos, window: Nanos) -> usize {
        let since = now.saturating_sub(window);
        let at = match self.cursors.iter().position(|c| c.window == window) {
            Some(at) => at,
            None => {
                self.cursors.push(Cursor {
                    window,
                    seq: self.first_seq,
                    live: self.times.len(),
                });
                self.cursors.len() - 1
            }
        };
        let mut c = self.cursors[at];
        while c.seq < self.next_seq {
            let (t, seq, key) = &self.order[(c.seq - self.first_seq) as usize];
            if *t >= since {
                break;
            }
            if self.is_live(*seq, key) {
                c.live -= 1;
            }
            c.seq += 1;
        }
        self.cursors[at] = c;
        c.live
    }

    fn prune(&mut self, since: Nanos) {
        let before = self.times.len();
        self.times.retain(|_, (t, _)| *t >= since);
        if self.times.len() != before {
            self.rebuild();
        }
    }
}

impl<K> Default for TimedSet<K> {
    fn default() -> Self {
        TimedSet {
            small: SmallVec::new(),
            large: None,
        }
    }
}

impl<K: Hash + Eq + Clone> TimedSet<K> {
    pub fn insert(&mut self, key: K, ts: Nanos) {
        if let Some(large) = &mut self.large {
            large.insert(key, ts);
            return;
        }
        if let Some((_, at)) = self.small.iter_mut().find(|(k, _)| *k == key) {
            *at = (*at).max(ts);
            return;
        }
        if self.small.len() < SMALL {
            self.small.push((key, ts));
            return;
        }
        let mut large = Large::new(self.small.drain(..));
        large.insert(key, ts);
        self.small.shrink_to_fit();
        self.large = Some(Box::new(large));
    }

    /// Keys seen within `window` of `now` (`now` moving forward between
    /// calls, as packet time does).
    pub fn count_within(&mut self, now: Nanos, window: Nanos) -> usize {
        match &mut self.large {
            Some(large) => large.count_within(now, window),
            None => {
                let since = now.saturating_sub(window);
                self.small.iter().filter(|(_, t)| *t >= since).count()
            }
        }
    }

    /// Forgets keys not seen since `since`.
    pub fn prune(&mut self, since: Nanos) {
        match &mut self.large {
            Some(large) => large.prune(since),
            None => self.small.retain(|(_, t)| *t >= since),
        }
    }

    /// When the latest key was seen (0 for none).
    pub fn latest(&self) -> Nanos {
        match &self.large {
            Some(large) if large.times.is_empty() => 0,
            Some(large) => large.latest,
            None => self.small.iter().map(|(_, t)| *t).max().unwrap_or(0),
        }
    }

    /// Whether `key` was seen at or after `since`.
    pub fn seen_since(&self, key: &K, since: Nanos) -> bool {
        match &self.large {
            Some(large) => large.times.get(key).is_some_and(|(t, _)| *t >= since),
            None => self.small.iter().any(|(k, t)| k == key && *t >= since),
        }
    }

    pub fn is_empty(&self) -> bool {
        match &self.large {
            Some(large) => large.times.is_empty(),
            None => self.small.is_empty(),
        }
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        match &self.large {
            Some(large) => large.times.len(),
            None => self.small.len(),
        }
    }

    pub fn keys(&self) -> Box<dyn Iterator<Item = &K> + '_> {
        match &self.large {
            Some(large) => Box::new(large.times.keys()),
            None => Box::new(self.small.iter().map(|(k, _)| k)),
        }
    }
}

/// Per host, the distinct peers it reached within a window, reported when
/// their number reaches a threshold and again each time it doubles (a long
/// sweep is one finding whose count keeps up, not a stream).
#[derive(Debug, Default)]
pub struct FanOut {
    reached: HashMap<IpAddr, TimedSet<IpAddr>>,
    reported: HashMap<IpAddr, usize>,
    /// Hosts dropped to stay within `limits::FANOUT_HOSTS`.
    pub evicted: u64,
}

impl FanOut {
    /// Records `host` reaching `peer` at `ts`; when a report is due, the
    /// count and up to ten peers (sorted).
    pub fn add(
        &mut self,
        host: IpAddr,
        peer: IpAddr,
        ts: Nanos,
        window: Nanos,
        threshold: usize,
    ) -> Option<(usize, Vec<String>)> {
        self.evicted += cap_oldest(&mut self.reached, super::limits::FANOUT_HOSTS, |s| {
            s.latest()
        });
        let set = self.reached.entry(host).or_default();
        set.insert(peer, ts);
        let n = set.count_within(ts, window);
        let last = self.reported.entry(host).or_insert(0);
        if n < threshold || n < *last * 2 {
            return None;
        }
        *last = n;
        let mut peers: Vec<String> = set.keys().map(|a| a.to_string()).collect();
        peers.sort();
        peers.truncate(10);
        Some((n, peers))
    }

    /// Forgets hosts quiet since `since`.
    pub fn prune(&mut self, since: Nanos) {
        self.reached.retain(|_, set| {
            set.prune(since);
            !set.is_empty()
        });
        let reached = &self.reached;
        self.reported.retain(|host, _| reached.contains_key(host));
    }
}

/// A leaky bucket, as CrowdSec's scenarios use: each event adds one, the
/// bucket leaks one every `leak` nanoseconds, and it overflows when it
/// holds more than `capacity`.
#[derive(Debug, Clone, Default)]
pub struct LeakyBucket {
    level: f64,
    last: Nanos,
}

impl LeakyBucket {
    /// When something was last poured in.
    pub fn last(&self) -> Nanos {
        self.last
    }

    /// Adds one event at `ts`; true when the bucket overflows.
    pub fn pour(&mut self, ts: Nanos, capacity: u32, leak: Nanos) -> bool {
        if ts > self.last && leak > 0 {
            let leaked = (ts - self.last) as f64 / leak as f64;
            self.level = (self.level - leaked).max(0.0);
        }
        self.last = self.last.max(ts);
        self.level += 1.0;
        self.level > capacity as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::event::SECOND;

    #[test]
    fn timed_set_counts_a_window() {
        let mut s = TimedSet::default();
        s.insert(1, 10 * SECOND);
        s.insert(2, 20 * SECOND);
        s.insert(1, 30 * SECOND);
        assert_eq!(s.count_within(30 * SECOND, 15 * SECOND), 2);
        assert_eq!(s.count_within(30 * SECOND, 5 * SECOND), 1);
        s.prune(25 * SECOND);
        assert_eq!(s.keys().count(), 1);
    }

    /// The amortised counts of a large set against a direct count, under
    /// random keys, re-insertions, two windows and prunes.
    #[test]
    fn large_set_counts_match_a_direct_count() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut set = TimedSet::default();
        let mut truth: HashMap<u64, Nanos> = HashMap::new();
        let mut now = 0;
        for i in 0..20_000u64 {
            now += next() % 3 * SECOND / 10;
            let key = next() % 3000;
            set.insert(key, now);
            truth.insert(key, now);
            for window in [30 * SECOND, 300 * SECOND] {
                let since = now.saturating_sub(window);
                let want = truth.values().filter(|t| **t >= since).count();
                assert_eq!(set.count_within(now, window), want, "insert {i}");
            }
            if i % 5000 == 4999 {
                let since = now - 100 * SECOND;
                set.prune(since);
                truth.retain(|_, t| *t >= since);
                assert_eq!(set.keys().count(), truth.len());
            }
        }
    }

    #[test]
    fn bucket_overflows_on_a_burst_not_on_a_trickle() {
        let mut b = LeakyBucket::default();
        // One every 20 s never fills a bucket that leaks one per 10 s.
        assert!(!(0..20).any(|i| b.pour(i * 20 * SECOND, 5, 10 * SECOND)));
        let mut b = LeakyBucket::default();
        // Six within a second overflow a capacity of 5.
        let overflowed: Vec<bool> = (0..6)
            .map(|i| b.pour(i * SECOND / 10, 5, 10 * SECOND))
            .collect();
        assert_eq!(overflowed, [false, false, false, false, false, true]);
    }

    #[test]
    fn a_full_table_of_reported_findings_starts_afresh() {
        let mut reported: std::collections::HashSet<usize> =
            (0..crate::detect::limits::REPORTED).collect();
        limit_reported(&mut reported);
        assert!(reported.is_empty());
        reported.insert(1);
        limit_reported(&mut reported);
        assert_eq!(reported.len(), 1);
    }

    #[test]
    fn a_capped_table_loses_its_oldest_eighth() {
        let mut map: HashMap<u32, Nanos> = (0..100).map(|k| (k, k as Nanos)).collect();
        assert_eq!(cap_oldest(&mut map, 100, |t| *t), 0);
        map.insert(100, 100);
        assert_eq!(cap_oldest(&mut map, 100, |t| *t), 12);
        assert_eq!(map.len(), 89);
        assert!((0..12).all(|k| !map.contains_key(&k)));
        assert!(map.contains_key(&12) && map.contains_key(&100));
    }
}
