//! Layer-2 bindings of switched segments: which MAC owns each address.
//! Learnt from the gateway's own neighbour table (the ARP and NDP answers it
//! got when it had to reach the address), kept in the datapath
//! (`BINDINGS_*`) for its forged-source check, and persisted next to the
//! state file so that a restart keeps them. docs/operations.md explains
//! the anti-spoofing model.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::{config::Segment, detect::Nanos};

/// A binding that changed MAC proves nothing for this long: an ARP or NDP
/// spoofer makes the gateway's neighbour entry point at itself, and must
/// not thereby get its forgeries taken as the owner's.
pub const CONTESTED_FOR: Nanos = 3600 * crate::detect::SECOND;

/// Neighbour states whose link-layer address the kernel confirmed or had
/// confirmed (not INCOMPLETE or FAILED).
const USABLE_STATES: [&str; 6] = ["REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"];

/// A MAC address as text (`02:00:00:00:00:11`).
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The gateway's neighbour entries with a usable link-layer address, from
/// `ip -json neigh show` (iproute2). Async: it runs a process.
pub async fn neighbours() -> Result<Vec<(IpAddr, [u8; 6])>> {
    let out = Command::new("ip")
        .args(["-json", "neigh", "show"])
        .kill_on_drop(true)
        .output()
        .await
        .context("running `ip -json neigh show`")?;
    anyhow::ensure!(
        out.status.success(),
        "`ip -json neigh show` failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    parse_neighbours(&out.stdout)
}

#[derive(Deserialize)]
struct Neighbour {
    dst: String,
    lladdr: Option<String>,
    #[serde(default)]
    state: Vec<String>,
}

fn parse_neighbours(json: &[u8]) -> Result<Vec<(IpAddr, [u8; 6])>> {
    let all: Vec<Neighbour> =
        serde_json::from_slice(json).context("reading the neighbour table")?;
    Ok(all
        .into_iter()
        .filter(|n| n.state.iter().any(|s| USABLE_STATES.contains(&s.as_str())))
        .filter_map(|n| Some((n.dst.parse().ok()?, parse_mac(n.lladdr.as_deref()?)?)))
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    #[serde(with = "mac_serde")]
    mac: [u8; 6],
    /// When the address was first bound to this MAC.
    since: Nanos,
    /// When the neighbour table last showed it.
    seen: Nanos,
    /// When it last moved from another MAC (0: never).
    changed: Nanos,
}

pub mod mac_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &[u8; 6], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::mac_text(mac))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 6], D::Error> {
        let text = String::deserialize(d)?;
        super::parse_mac(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a MAC address")))
    }

    /// The same for an optional MAC (absent when `None`).
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(mac: &Option<[u8; 6]>, s: S) -> Result<S::Ok, S::Error> {
            match mac {
                Some(mac) => super::serialize(mac, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 6]>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(text) => super::super::parse_mac(&text).map(Some).ok_or_else(|| {
                    serde::de::Error::custom(format!("{text:?} is not a MAC address"))
                }),
            }
        }
    }
}

/// What learning changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learnt {
    /// A new binding.
    New { addr: IpAddr, mac: [u8; 6] },
    /// The address moved to another MAC (a new NIC, or a spoofer).
    Moved {
        addr: IpAddr,
        from: [u8; 6],
        to: [u8; 6],
    },
}

/// At most this many bindings are kept (the datapath's map size); past it,
/// the longest unseen go.
const MAX_BINDINGS: usize = sensor_common::MAX_BINDINGS as usize;

/// Bindings unseen in the neighbour table for this long are forgotten.
const FORGET_AFTER: Nanos = 30 * 24 * 3600 * crate::detect::SECOND;

/// The bindings, owned by the daemon.
pub struct Bindings {
    entries: BTreeMap<IpAddr, Entry>,
    /// The switched segments' own ranges: only their addresses are bound.
    ranges: Vec<IpNet>,
    file: PathBuf,
}

impl Bindings {
    /// The bindings persisted in `file` (none if it does not exist), for the
    /// switched segments among `segments`. Entries outside them are dropped.
    pub fn load(file: &Path, segments: &[Segment]) -> Result<Bindings> {
        let ranges = crate::config::switched_ranges(segments);
        let mut entries: BTreeMap<IpAddr, Entry> = match std::fs::read(file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a bindings file", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        entries.retain(|addr, _| ranges.iter().any(|r| r.contains(addr)));
        Ok(Bindings {
            entries,
            ranges,
            file: file.to_owned(),
        })
    }

    /// Whether any segment is switched (else there is nothing to learn).
    pub fn wanted(&self) -> bool {
        !self.ranges.is_empty()
    }

    /// Takes in the neighbour table at `now`: new bindings, moved ones.
    pub fn learn(&mut self, table: &[(IpAddr, [u8; 6])], now: Nanos) -> Vec<Learnt> {
        let mut learnt = Vec::new();
        for &(addr, mac) in table {
            if !self.ranges.iter().any(|r| r.contains(&addr)) || mac == [0; 6] {
                continue;
            }
            match self.entries.get_mut(&addr) {
                Some(e) if e.mac == mac => e.seen = now,
                Some(e) => {
                    learnt.push(Learnt::Moved {
                        addr,
                        from: e.mac,
                        to: mac,
                    });
                    *e = Entry {
                        mac,
                        since: now,
                        seen: now,
                        changed: now,
                    };
                }
                None => {
                    learnt.push(Learnt::New { addr, mac });
                    self.entries.insert(
                        addr,
                        Entry {
                            mac,
                            since: now,
                            seen: now,
                            changed: 0,
                        },
                    );
                }
            }
        }
        learnt
    }

    /// Bindings to drop: unseen for too long, or past the limit (the
    /// longest unseen first).
    pub fn expire(&mut self, now: Nanos) -> Vec<IpAddr> {
        let mut gone: Vec<IpAddr> = self
            .entries
            .iter()
            .filter(|(_, e)| now.saturating_sub(e.seen) > FORGET_AFTER)
            .map(|(a, _)| *a)
            .collect();
        let over = self.entries.len().saturating_sub(gone.len() + MAX_BINDINGS);
        if over > 0 {
            let mut by_seen: Vec<(Nanos, IpAddr)> =
                self.entries.iter().map(|(a, e)| (e.seen, *a)).collect();
            by_seen.sort();
            gone.extend(by_seen.into_iter().map(|(_, a)| a).take(over));
        }
        for addr in &gone {
            self.entries.remove(addr);
        }
        gone
    }

    /// The MAC `addr` is bound to.
    pub fn mac_of(&self, addr: IpAddr) -> Option<[u8; 6]> {
        self.entries.get(&addr).map(|e| e.mac)
    }

    /// The address bound to `mac` most recently (its owner), other than
    /// `except`.
    pub fn owner_of(&self, mac: [u8; 6], except: IpAddr) -> Option<IpAddr> {
        self.entries
            .iter()
            .filter(|(a, e)| e.mac == mac && **a != except)
            .max_by_key(|(_, e)| e.seen)
            .map(|(a, _)| *a)
    }

    /// Whether `addr`'s binding proves its frames' sender: bound, and not
    /// moved from another MAC within `CONTESTED_FOR`.
    pub fn proves(&self, addr: IpAddr, now: Nanos) -> bool {
        self.entries
            .get(&addr)
            .is_some_and(|e| e.changed == 0 || now.saturating_sub(e.changed) > CONTESTED_FOR)
    }

    /// The MAC `addr` is bound to, when the binding proves it (`proves`):
    /// the one an isolation of `addr` may cut off too.
    pub fn settled_mac(&self, addr: IpAddr, now: Nanos) -> Option<[u8; 6]> {
        self.proves(addr, now).then(|| self.mac_of(addr))?
    }

    /// Every binding.
    pub fn all(&self) -> impl Iterator<Item = (IpAddr, [u8; 6])> + '_ {
        self.entries.iter().map(|(a, e)| (*a, e.mac))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the bindings (atomically: a temporary file, renamed).
    pub fn save(&self) -> Result<()> {
        let tmp = self.file.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.entries)?;
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.file)
            .with_context(|| format!("renaming {} into place", tmp.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments() -> Vec<Segment> {
        vec![
            Segment {
                id: 1,
                name: "internet".into(),
                cidrs: vec!["0.0.0.0/0".parse().unwrap()],
                ports: vec!["wan".into()],
                switched: false,
            },
            Segment {
                id: 2,
                name: "office".into(),
                cidrs: vec!["10.10.0.0/24".parse().unwrap()],
                ports: vec!["office".into()],
                switched: true,
            },
        ]
    }

    const M1: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
    const M2: [u8; 6] = [2, 0, 0, 0, 0, 0x12];

    #[test]
    fn reads_the_usable_entries_of_ip_json_neigh() {
        let json = br#"[{"dst":"10.10.0.11","dev":"br-office","lladdr":"02:00:00:00:00:11","state":["REACHABLE"]},
            {"dst":"10.10.0.12","dev":"br-office","state":["FAILED"]},
            {"dst":"10.10.0.13","dev":"br-office","lladdr":"02:00:00:00:00:13","state":["INCOMPLETE"]},
            {"dst":"fd00:10::11","dev":"br-office","lladdr":"02:00:00:00:00:11","router":null,"state":["STALE"]}]"#;
        let table = parse_neighbours(json).unwrap();
        assert_eq!(
            table,
            vec![
                ("10.10.0.11".parse().unwrap(), M1),
                ("fd00:10::11".parse().unwrap(), M1)
            ]
        );
    }

    #[test]
    fn binds_switched_addresses_and_contests_a_move() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bindings.json");
        let mut b = Bindings::load(&file, &segments()).unwrap();
        let (a11, a12, outside) = (
            "10.10.0.11".parse().unwrap(),
            "10.10.0.12".parse().unwrap(),
            "203.0.113.1".parse().unwrap(),
        );
        let learnt = b.learn(&[(a11, M1), (a12, M2), (outside, M1)], 10);
        assert_eq!(learnt.len(), 2, "only the switched segment's: {learnt:?}");
        assert!(b.proves(a11, 20) && b.proves(a12, 20));
        assert_eq!(b.owner_of(M1, a12), Some(a11));
        // 10.10.0.12 now answers from M1: moved, and proves nothing for an hour.
        let learnt = b.learn(&[(a12, M1)], 30);
        assert_eq!(
            learnt,
            vec![Learnt::Moved {
                addr: a12,
                from: M2,
                to: M1
            }]
        );
        assert!(!b.proves(a12, 40));
        assert!(b.proves(a12, 30 + CONTESTED_FOR + 1));
        // Kept across a restart.
        b.save().unwrap();
        let again = Bindings::load(&file, &segments()).unwrap();
        assert_eq!(again.mac_of(a12), Some(M1));
        assert!(!again.proves(a12, 40));
        // A file that is not one: a clear error.
        std::fs::write(&file, b"{\"10.10.0.11\": {\"mac\": \"zz\"}}").unwrap();
        let e = Bindings::load(&file, &segments()).err().unwrap();
        assert!(format!("{e:#}").contains("is not a bindings file"), "{e:#}");
    }
}
