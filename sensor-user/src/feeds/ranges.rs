//! A feed's ranges as the daemon keeps them: sorted, distinct and compact
//! (an IPv4 range is 5 bytes), so a million-range feed costs little and a
//! refresh is a merge of two sorted lists.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ranges {
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
}

/// What a new version of a feed adds and drops.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    pub added: Vec<IpNet>,
    pub removed: Vec<IpNet>,
}

/// The items of `new` missing from `old`, and of `old` missing from `new`
/// (both sorted and distinct).
fn merge<T: Ord + Copy>(old: &[T], new: &[T], added: &mut Vec<T>, removed: &mut Vec<T>) {
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                removed.push(*a);
                i += 1;
            }
            (Some(a), None) => {
                removed.push(*a);
                i += 1;
            }
            (_, Some(b)) => {
                added.push(*b);
                j += 1;
            }
            (None, None) => unreachable!("the loop runs while one is left"),
        }
    }
}

impl Ranges {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Ranges {
        let mut ranges = Ranges::default();
        for net in nets {
            match net {
                IpNet::V4(n) => ranges.v4.push(n),
                IpNet::V6(n) => ranges.v6.push(n),
            }
        }
        ranges.v4.sort_unstable();
        ranges.v4.dedup();
        ranges.v4.shrink_to_fit();
        ranges.v6.sort_unstable();
        ranges.v6.dedup();
        ranges.v6.shrink_to_fit();
        ranges
    }

    pub fn contains(&self, net: &IpNet) -> bool {
        match net {
            IpNet::V4(n) => self.v4.binary_search(n).is_ok(),
            IpNet::V6(n) => self.v6.binary_search(n).is_ok(),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = IpNet> + '_ {
        let v4 = self.v4.iter().map(|n| IpNet::V4(*n));
        v4.chain(self.v6.iter().map(|n| IpNet::V6(*n)))
    }

    /// What replacing `self` by `new` adds and drops.
    pub fn diff(&self, new: &Ranges) -> Diff {
        let (mut added4, mut removed4) = (Vec::new(), Vec::new());
        merge(&self.v4, &new.v4, &mut added4, &mut removed4);
        let (mut added6, mut removed6) = (Vec::new(), Vec::new());
        merge(&self.v6, &new.v6, &mut added6, &mut removed6);
        let join = |v4: Vec<Ipv4Net>, v6: Vec<Ipv6Net>| -> Vec<IpNet> {
            v4.into_iter()
                .map(IpNet::V4)
                .chain(v6.into_iter().map(IpNet::V6))
                .collect()
        };
        Diff {
            added: join(added4, added6),
            removed: join(removed4, removed6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[&str]) -> Ranges {
        Ranges::new(list.iter().map(|s| s.parse::<IpNet>().unwrap()))
    }

    #[test]
    fn a_refresh_is_what_changed() {
        let old = ranges(&["198.51.100.0/24", "192.0.2.7/32", "2001:db8::/32"]);
        let new = ranges(&[
            "203.0.113.0/24",
            "192.0.2.7/32",
            "2001:db8:1::/48",
            "192.0.2.7/32",
        ]);
        assert_eq!(new.len(), 3);
        let d = old.diff(&new);
        let text = |v: &[IpNet]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(text(&d.added), ["203.0.113.0/24", "2001:db8:1::/48"]);
        assert_eq!(text(&d.removed), ["198.51.100.0/24", "2001:db8::/32"]);
        assert!(new.contains(&"192.0.2.7/32".parse().unwrap()));
        assert!(!new.contains(&"198.51.100.0/24".parse().unwrap()));
        assert_eq!(old.diff(&old), Diff::default());
    }
}
