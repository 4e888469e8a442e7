//! Sliding windows on packet time: distinct keys with when they were last
//! seen, leaky buckets, and the once-a-minute gate of sweeps.

use smallvec::SmallVec;
use std::{collections::HashMap, hash::Hash, net::IpAddr};

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

/// Distinct keys seen, each with its latest time. Most sets stay tiny (a
/// host's one query under a domain, a pair's one port): up to `SMALL` keys
/// live inline and are searched in order; past that, in a hash map.
#[derive(Debug, Clone)]
pub struct TimedSet<K> {
    small: SmallVec<[(K, Nanos); 1]>,
    /// Boxed on purpose: most sets never need it, and an empty box is
    /// one word where an empty map is six.
    #[allow(clippy::box_collection)]
    large: Option<Box<HashMap<K, Nanos>>>,
}

/// Keys a `TimedSet` keeps inline before it moves them to a map.
const SMALL: usize = 8;

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
        if let Some(map) = &mut self.large {
            let at = map.entry(key).or_insert(ts);
            *at = (*at).max(ts);
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
        let mut map: HashMap<K, Nanos> = self.small.drain(..).collect();
        map.insert(key, ts);
        self.small.shrink_to_fit();
        self.large = Some(Box::new(map));
    }

    fn times(&self) -> Box<dyn Iterator<Item = &Nanos> + '_> {
        match &self.large {
            Some(map) => Box::new(map.values()),
            None => Box::new(self.small.iter().map(|(_, t)| t)),
        }
    }

    /// Keys seen at or after `since`.
    pub fn count_since(&self, since: Nanos) -> usize {
        self.times().filter(|t| **t >= since).count()
    }

    /// Forgets keys not seen since `since`.
    pub fn prune(&mut self, since: Nanos) {
        match &mut self.large {
            Some(map) => map.retain(|_, t| *t >= since),
            None => self.small.retain(|(_, t)| *t >= since),
        }
    }

    /// When the latest key was seen (0 for none).
    pub fn latest(&self) -> Nanos {
        self.times().copied().max().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        match &self.large {
            Some(map) => map.is_empty(),
            None => self.small.is_empty(),
        }
    }

    pub fn keys(&self) -> Box<dyn Iterator<Item = &K> + '_> {
        match &self.large {
            Some(map) => Box::new(map.keys()),
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
        let since = ts.saturating_sub(window);
        self.evicted += cap_oldest(&mut self.reached, super::limits::FANOUT_HOSTS, |s| {
            s.latest()
        });
        let set = self.reached.entry(host).or_default();
        set.insert(peer, ts);
        set.prune(since);
        let n = set.count_since(since);
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
        assert_eq!(s.count_since(15 * SECOND), 2);
        assert_eq!(s.count_since(25 * SECOND), 1);
        s.prune(25 * SECOND);
        assert_eq!(s.keys().count(), 1);
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
