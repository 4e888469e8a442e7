//! A map keyed by address prefix, kept small for feeds of a million ranges:
//! an IPv4 key is its 5 bytes (an `IpNet` takes 18), and the prefix lengths
//! in use are counted so a walk up a prefix's supernets probes only those.

use std::collections::BTreeMap;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

#[derive(Debug, Clone)]
pub struct PrefixMap<V> {
    v4: BTreeMap<Ipv4Net, V>,
    v6: BTreeMap<Ipv6Net, V>,
    /// Keys per prefix length: IPv4 lengths 0..=32, then IPv6 0..=128.
    lengths: Box<[u32; 33 + 129]>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        PrefixMap {
            v4: BTreeMap::new(),
            v6: BTreeMap::new(),
            lengths: Box::new([0; 33 + 129]),
        }
    }
}

fn length_slot(net: IpNet) -> usize {
    match net {
        IpNet::V4(n) => n.prefix_len() as usize,
        IpNet::V6(n) => 33 + n.prefix_len() as usize,
    }
}

impl<V: Copy> PrefixMap<V> {
    pub fn get(&self, net: &IpNet) -> Option<V> {
        match net {
            IpNet::V4(n) => self.v4.get(n).copied(),
            IpNet::V6(n) => self.v6.get(n).copied(),
        }
    }

    pub fn contains(&self, net: &IpNet) -> bool {
        self.get(net).is_some()
    }

    pub fn insert(&mut self, net: IpNet, value: V) -> Option<V> {
        let old = match net {
            IpNet::V4(n) => self.v4.insert(n, value),
            IpNet::V6(n) => self.v6.insert(n, value),
        };
        if old.is_none() {
            self.lengths[length_slot(net)] += 1;
        }
        old
    }

    pub fn remove(&mut self, net: &IpNet) -> Option<V> {
        let old = match net {
            IpNet::V4(n) => self.v4.remove(n),
            IpNet::V6(n) => self.v6.remove(n),
        };
        if old.is_some() {
            self.lengths[length_slot(*net)] -= 1;
        }
        old
    }

    /// Inserts many new keys at once, sorted and not in the map: merged in
    /// one pass, which leaves the tree's nodes full (one by one in order
    /// leaves them half empty).
    pub fn extend_new(&mut self, sorted: impl IntoIterator<Item = (IpNet, V)>) {
        let mut v4 = BTreeMap::new();
        let mut v6 = BTreeMap::new();
        for (net, value) in sorted {
            self.lengths[length_slot(net)] += 1;
            match net {
                IpNet::V4(n) => v4.insert(n, value),
                IpNet::V6(n) => v6.insert(n, value),
            };
        }
        self.v4.append(&mut v4);
        self.v6.append(&mut v6);
    }

    /// Whether some key has `net`'s family and prefix length `len`.
    pub fn has_length(&self, net: IpNet, len: u8) -> bool {
        let slot = match net {
            IpNet::V4(_) => len as usize,
            IpNet::V6(_) => 33 + len as usize,
        };
        self.lengths.get(slot).is_some_and(|n| *n > 0)
    }

    /// The keys containing `net` (itself included), longest first.
    pub fn containing(&self, net: IpNet) -> impl Iterator<Item = (IpNet, V)> + '_ {
        (0..=net.prefix_len())
            .rev()
            .filter(move |len| self.has_length(net, *len))
            .filter_map(move |len| {
                let p = IpNet::new(net.network(), len)
                    .expect("shorter prefix")
                    .trunc();
                self.get(&p).map(|v| (p, v))
            })
    }

    /// The keys inside `net` (itself included), in order.
    pub fn within(&self, net: IpNet) -> impl Iterator<Item = (IpNet, V)> + '_ {
        let len = net.prefix_len();
        let (v4, v6) = match net {
            IpNet::V4(n) => {
                let lo = Ipv4Net::new(n.network(), 0).unwrap();
                let hi = Ipv4Net::new(n.broadcast(), 32).unwrap();
                (Some(self.v4.range(lo..=hi)), None)
            }
            IpNet::V6(n) => {
                let lo = Ipv6Net::new(n.network(), 0).unwrap();
                let hi = Ipv6Net::new(n.broadcast(), 128).unwrap();
                (None, Some(self.v6.range(lo..=hi)))
            }
        };
        let v4 = v4.into_iter().flatten().map(|(p, v)| (IpNet::V4(*p), *v));
        let v6 = v6.into_iter().flatten().map(|(p, v)| (IpNet::V6(*p), *v));
        v4.chain(v6).filter(move |(p, _)| p.prefix_len() >= len)
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Keys per family: (IPv4, IPv6).
    pub fn lens(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    pub fn iter(&self) -> impl Iterator<Item = (IpNet, V)> + '_ {
        let v4 = self.v4.iter().map(|(n, v)| (IpNet::V4(*n), *v));
        v4.chain(self.v6.iter().map(|(n, v)| (IpNet::V6(*n), *v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn containing_and_within_follow_the_prefixes() {
        let mut m = PrefixMap::default();
        m.insert(net("10.0.0.0/8"), 1);
        m.insert(net("10.1.0.0/16"), 2);
        m.insert(net("10.1.2.3/32"), 3);
        m.extend_new([(net("11.0.0.0/8"), 4), (net("2001:db8::/32"), 5)]);
        let up: Vec<u32> = m.containing(net("10.1.2.3/32")).map(|(_, v)| v).collect();
        assert_eq!(up, [3, 2, 1]);
        let inside: Vec<u32> = m.within(net("10.0.0.0/8")).map(|(_, v)| v).collect();
        assert_eq!(inside, [1, 2, 3]);
        assert_eq!(m.within(net("2001:db8::/16")).count(), 1);
        assert_eq!(m.remove(&net("10.1.0.0/16")), Some(2));
        assert!(!m.has_length(net("10.0.0.0/8"), 16));
        assert_eq!(m.iter().count(), 4);
    }
}
