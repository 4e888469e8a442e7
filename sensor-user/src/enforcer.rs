//! Isolations and blocks: the one place that changes them. Each change is
//! ordered so that a crash halfway leaves the entry blocked, never silently
//! lifted: a new entry goes to the maps first (enforced at once; the state
//! file may take long to write with a large feed loaded), and a crash before
//! its record is written leaves it in the pinned maps, which the next start
//! adopts; a removal goes to the state file first, so a crash leaves the
//! entry in the maps, adopted again.
//!
//! Feeds (`crate::feeds`) block ranges too, as units kept apart from the
//! records: a range is blocked while any feed lists it or a record holds
//! it, and permanently while a feed lists it. A feed's ranges are not
//! written to the state file: the feed's own cached copy is its record.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use log::{info, warn};
use sensor_common::BlockValue;
use serde::Serialize;

use crate::{
    clock,
    datapath::Maps,
    feeds::{ranges::Diff, Ranges},
    fleet::{FleetConfig, FleetTag, Scope},
    state::{self, Entry, Kind, StateError},
};

#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("{target} is not {what}")]
    NotFound { what: &'static str, target: IpNet },
    #[error("{target}: {problem}")]
    Refused { target: String, problem: String },
    #[error("datapath map {map}: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error(transparent)]
    State(#[from] StateError),
}

/// An entry as listed to an operator: the record plus live datapath facts.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub entry: Entry,
    pub hits: u64,
    /// Frames dropped by the entry's MAC (an isolation on a switched segment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_hits: Option<u64>,
    /// False if the record has no entry in the datapath (should not happen;
    /// shown so an auditor would see it).
    pub in_datapath: bool,
}

/// How many entries of each kind, per family (blocked ranges from every
/// source: records and feeds).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub isolated_v4: usize,
    pub isolated_v6: usize,
    pub blocked_v4: usize,
    pub blocked_v6: usize,
    /// State-file writes that failed (retried each second).
    pub state_write_failures: u64,
    /// Whether what is in force is not all in the state file yet.
    pub state_unsaved: bool,
    /// Entries found in the maps without a record at start (`ADOPTED`).
    pub adopted: usize,
    /// Ranges the feeds list (a range two feeds list counts twice).
    pub feed_ranges: usize,
}

/// Who asks for an isolation or a block.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// "operator", or the detector behind an automatic action.
    pub by: &'a str,
    pub incident: Option<u64>,
    /// In fleet mode, where the decision applies (`None`: the default for
    /// its kind, `FleetConfig::default_scope`).
    pub scope: Option<Scope>,
}

impl Origin<'static> {
    pub const OPERATOR: Origin<'static> = Origin {
        by: "operator",
        incident: None,
        scope: None,
    };

    /// An operator's request, in `scope` (fleet mode).
    pub fn operator(scope: Option<Scope>) -> Origin<'static> {
        Origin {
            scope,
            ..Origin::OPERATOR
        }
    }
}

/// A change this gateway made that the fleet should hear of.
#[derive(Debug, Clone, PartialEq)]
pub enum Journaled {
    Decided(Entry),
    Released(Entry),
    /// Its time was up: lifted here as everywhere, without a release.
    Expired(Entry),
}

/// This gateway in the fleet: how its new entries are stamped, and what
/// it changed since the fleet task last looked.
struct FleetSide {
    config: FleetConfig,
    gateway: String,
    /// This site's own ranges (internal and exempt): a block touching
    /// them means something here only, and every other gateway's checks
    /// would refuse it, so it stays on this gateway.
    local: Vec<IpNet>,
    journal: Vec<Journaled>,
}

/// The origin of an entry found in the pinned maps without a record.
pub const ADOPTED: &str = "adopted";

pub struct Enforcer {
    entries: BTreeMap<(Kind, IpNet), Entry>,
    /// Each feed's ranges, by feed name.
    feeds: BTreeMap<String, Ranges>,
    state_file: PathBuf,
    /// The maps hold changes the state file does not yet (its last write
    /// failed: a full disk); `retry_save` writes them.
    unsaved: bool,
    state_write_failures: u64,
    /// In fleet mode (`join_fleet`).
    fleet: Option<FleetSide>,
}

/// Checks that `host` may be isolated.
pub fn check_host(host: IpAddr) -> Result<(), EnforceError> {
    let problem = if host.is_unspecified() {
        "the unspecified address cannot be isolated"
    } else if host.is_multicast() {
        "a multicast address cannot be isolated"
    } else if host == IpAddr::from([255, 255, 255, 255]) {
        "the broadcast address cannot be isolated"
    } else {
        return Ok(());
    };
    Err(EnforceError::Refused {
        target: host.to_string(),
        problem: problem.into(),
    })
}

/// What is wrong with blocking `net`, if anything, phrased to follow the
/// range ("10.1.2.3/8 has host bits set; ..."). sensorctl checks a feed
/// file with it before sending anything; the daemon checks every request.
pub fn range_problem(net: IpNet) -> Option<String> {
    if let Some(problem) = crate::nets::host_bits(net) {
        Some(problem)
    } else if net.prefix_len() == 0 {
        Some("would block every address and cut the gateway off; use the segment policy".into())
    } else {
        None
    }
}

/// Checks that `net` may be blocked.
fn check_range(net: IpNet) -> Result<(), EnforceError> {
    match range_problem(net) {
        Some(problem) => Err(EnforceError::Refused {
            target: net.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

impl Entry {
    /// A new record made `now` (unix seconds) for `origin`.
    fn new(
        kind: Kind,
        target: IpNet,
        ttl: Option<Duration>,
        reason: &str,
        origin: Origin,
        now: u64,
    ) -> Entry {
        Entry {
            kind,
            target,
            origin: origin.by.into(),
            reason: reason.into(),
            created: now,
            expires: ttl.map(|t| now.saturating_add(t.as_secs().max(1))),
            incident: origin.incident,
            mac: None,
            fleet: None,
        }
    }
}

fn map_err(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> EnforceError {
    move |source| EnforceError::Map { map, source }
}

/// Takes an entry's address out of the maps (its MAC: `Enforcer::unapply`).
fn unapply_address(maps: &mut Maps, kind: Kind, target: IpNet) -> Result<(), EnforceError> {
    match kind {
        Kind::Isolation => maps
            .remove_isolated(target.addr())
            .map_err(map_err("isolated hosts")),
        Kind::Block => maps
            .remove_blocked(target)
            .map_err(map_err("blocked ranges")),
    }
}

impl Enforcer {
    /// Loads the state file and makes the maps agree with it: recorded
    /// entries are (re-)applied, expired ones dropped, and entries found in
    /// the maps without a record are adopted so none is lost.
    /// `feeds` are the feeds' ranges as last applied (their cached
    /// copies): applied first, so their ranges are not adopted.
    pub fn open(
        maps: &mut Maps,
        state_file: &Path,
        feeds: Vec<(String, Ranges)>,
    ) -> Result<Enforcer, EnforceError> {
        let now = clock::unix_now();
        let mut enforcer = Enforcer {
            entries: BTreeMap::new(),
            feeds: BTreeMap::new(),
            state_file: state_file.to_owned(),
            unsaved: false,
            state_write_failures: 0,
            fleet: None,
        };
        for entry in state::load(state_file)? {
            if entry.expired(now) {
                continue;
            }
            // As sensorctl's input is: no expiry past the TTL limit.
            if let Some(at) = entry.expires {
                let ttl = std::time::Duration::from_secs(at.saturating_sub(now));
                if let Err(e) = clock::check_ttl(ttl) {
                    warn!(
                        "{} {} in {} skipped: {e}",
                        entry.kind.label(),
                        entry.target,
                        state_file.display()
                    );
                    continue;
                }
            }
            enforcer.entries.insert((entry.kind, entry.target), entry);
        }
        for (name, ranges) in feeds {
            enforcer.set_feed(maps, &name, ranges)?;
        }
        let records: Vec<Entry> = enforcer.entries.values().cloned().collect();
        for entry in &records {
            enforcer.apply(maps, entry)?;
        }
        let adopted = enforcer.adopt_unrecorded(maps, now);
        enforcer.drop_unrecorded_macs(maps);
        enforcer.expire(maps, now)?;
        state::save(state_file, enforcer.entries.values())?;
        info!(
            "enforcement state: {} entries ({} re-applied from {}, {} adopted from the maps)",
            enforcer.entries.len(),
            records.len(),
            state_file.display(),
            adopted
        );
        Ok(enforcer)
    }

    fn adopt_unrecorded(&mut self, maps: &Maps, now: u64) -> usize {
        let boot_now = clock::boottime_ns();
        let expiry = |value: Option<BlockValue>| match value.map(|v| v.expires_at_ns) {
            None | Some(0) => None,
            Some(ns) => Some(now + ns.saturating_sub(boot_now) / 1_000_000_000),
        };
        let found: Vec<(Kind, IpNet, Option<u64>)> = maps
            .isolated_hosts()
            .into_iter()
            .map(|h| {
                (
                    Kind::Isolation,
                    IpNet::from(h),
                    expiry(maps.get_isolated(h)),
                )
            })
            .chain(
                maps.blocked_ranges()
                    .into_iter()
                    .map(|n| (Kind::Block, n, expiry(maps.get_blocked(n)))),
            )
            .collect();
        let mut adopted = 0;
        for (kind, target, expires) in found {
            if self.entries.contains_key(&(kind, target))
                || kind == Kind::Block && self.in_feed(&target)
            {
                continue;
            }
            warn!(
                "adopting {} {target} found in the pinned maps without a record",
                kind.label()
            );
            self.entries.insert(
                (kind, target),
                Entry {
                    kind,
                    target,
                    origin: ADOPTED.into(),
                    reason: "found in the pinned maps without a record".into(),
                    created: now,
                    expires,
                    incident: None,
                    mac: None,
                    fleet: None,
                },
            );
            adopted += 1;
        }
        adopted
    }

    /// MACs in the datapath that no isolation names (their record was never
    /// written, or was released while the daemon was down) are taken out:
    /// unlike an address, a MAC is never adopted without its record, since
    /// nothing else says which host it was cut off for.
    fn drop_unrecorded_macs(&self, maps: &mut Maps) {
        for mac in maps.isolated_macs() {
            if self.entries.values().any(|e| e.mac == Some(mac)) {
                continue;
            }
            let text = crate::bindings::mac_text(&mac);
            match maps.remove_isolated_mac(mac) {
                Ok(()) => warn!("isolated MAC {text} had no record; released"),
                Err(e) => warn!("isolated MAC {text} has no record and stays: {e}"),
            }
        }
    }

    /// Takes an entry out of the maps: its address, and its MAC unless
    /// another isolation names it too (a host's IPv4 and IPv6 addresses).
    fn unapply(&self, maps: &mut Maps, entry: &Entry) -> Result<(), EnforceError> {
        if entry.kind == Kind::Block && self.in_feed(&entry.target) {
            // A feed lists it too: it stays blocked, permanently.
            return Ok(());
        }
        unapply_address(maps, entry.kind, entry.target)?;
        if let Some(mac) = entry.mac {
            let key = (entry.kind, entry.target);
            let shared = self
                .entries
                .iter()
                .any(|(k, e)| *k != key && e.mac == Some(mac));
            if !shared {
                maps.remove_isolated_mac(mac)
                    .map_err(map_err("isolated MACs"))?;
            }
        }
        Ok(())
    }

    /// Writes one entry into the maps, keeping its hit count if it is there.
    fn apply(&self, maps: &mut Maps, entry: &Entry) -> Result<(), EnforceError> {
        let expires = match entry.kind == Kind::Block && self.in_feed(&entry.target) {
            // A feed lists it: blocked for as long as it does.
            true => None,
            false => entry.expires,
        };
        let expires_at_ns =
            clock::expiry_to_boottime(expires, clock::unix_now(), clock::boottime_ns());
        if let Some(mac) = entry.mac {
            let hits = maps.get_isolated_mac(mac).map_or(0, |v| v.hits);
            maps.set_isolated_mac(
                mac,
                BlockValue {
                    expires_at_ns,
                    hits,
                },
            )
            .map_err(map_err("isolated MACs"))?;
        }
        match entry.kind {
            Kind::Isolation => {
                let host = entry.target.addr();
                let hits = maps.get_isolated(host).map_or(0, |v| v.hits);
                maps.set_isolated(
                    host,
                    BlockValue {
                        expires_at_ns,
                        hits,
                    },
                )
                .map_err(map_err("isolated hosts"))
            }
            Kind::Block => {
                let hits = maps.get_blocked(entry.target).map_or(0, |v| v.hits);
                maps.set_blocked(
                    entry.target,
                    BlockValue {
                        expires_at_ns,
                        hits,
                    },
                )
                .map_err(map_err("blocked ranges"))
            }
        }
    }

    /// Writes the state file. Enforcement never waits for the disk: the
    /// maps were changed first and stay changed; a failed write is counted,
    /// said once, and retried by `retry_save` until it succeeds.
    fn save(&mut self) {
        match state::save(&self.state_file, self.entries.values()) {
            Ok(()) => {
                if self.unsaved {
                    info!("{} written again", self.state_file.display());
                }
                self.unsaved = false;
            }
            Err(e) => {
                self.state_write_failures += 1;
                if !self.unsaved {
                    warn!("{e}; what is in force stays in force, the write is retried each second");
                }
                self.unsaved = true;
            }
        }
    }

    /// Retries a state-file write that failed (each expiry sweep).
    pub fn retry_save(&mut self) {
        if self.unsaved {
            self.save();
        }
    }

    /// Adds (or replaces) an entry (see `add_all`).
    fn add(&mut self, maps: &mut Maps, entry: Entry) -> Result<Entry, EnforceError> {
        self.add_all(maps, vec![entry.clone()])?;
        Ok(entry)
    }

    /// Adds (or replaces) entries, all or none: the maps first, so they are
    /// enforced at once, then one write of the state file (retried if it
    /// fails, see `save`). If a map refuses one (full), what this call
    /// changed is put back as it was.
    fn add_all(&mut self, maps: &mut Maps, entries: Vec<Entry>) -> Result<(), EnforceError> {
        let mut changed = Vec::with_capacity(entries.len());
        for entry in entries {
            if let Err(e) = self.apply(maps, &entry) {
                warn!(
                    "{} {} refused ({e}); undoing this change",
                    entry.kind.label(),
                    entry.target
                );
                self.undo(maps, changed);
                return Err(e);
            }
            let key = (entry.kind, entry.target);
            changed.push((key, self.entries.insert(key, entry)));
        }
        self.save();
        Ok(())
    }

    /// Puts back the records and map entries that `add_all` replaced
    /// (`Some`) or added (`None`), latest first. Best effort: it runs after
    /// a failure, whose error is the one reported.
    fn undo(&mut self, maps: &mut Maps, changed: Vec<((Kind, IpNet), Option<Entry>)>) {
        for (key, before) in changed.into_iter().rev() {
            let _ = match before {
                Some(previous) => {
                    let applied = self.apply(maps, &previous);
                    self.entries.insert(key, previous);
                    applied
                }
                None => match self.entries.remove(&key) {
                    Some(added) => self.unapply(maps, &added),
                    None => Ok(()),
                },
            };
        }
    }

    /// Isolates `host`, and with `mac` (the MAC bound to it on a switched
    /// segment) every frame from that MAC on switched ports.
    pub fn isolate(
        &mut self,
        maps: &mut Maps,
        host: IpAddr,
        mac: Option<[u8; 6]>,
        ttl: Option<Duration>,
        reason: &str,
        origin: Origin,
    ) -> Result<Entry, EnforceError> {
        check_host(host)?;
        let mut entry = Entry::new(
            Kind::Isolation,
            IpNet::from(host),
            ttl,
            reason,
            origin,
            clock::unix_now(),
        );
        entry.mac = mac;
        self.stamp(&mut entry, origin.scope)?;
        let entry = self.add(maps, entry)?;
        self.journal(Journaled::Decided(entry.clone()));
        Ok(entry)
    }

    pub fn block(
        &mut self,
        maps: &mut Maps,
        net: IpNet,
        ttl: Option<Duration>,
        reason: &str,
        origin: Origin,
    ) -> Result<Entry, EnforceError> {
        check_range(net)?;
        let mut entry = Entry::new(Kind::Block, net, ttl, reason, origin, clock::unix_now());
        self.stamp(&mut entry, origin.scope)?;
        let entry = self.add(maps, entry)?;
        self.journal(Journaled::Decided(entry.clone()));
        Ok(entry)
    }

    /// Blocks many ranges at once, all or none (see `add_all`).
    pub fn block_many(
        &mut self,
        maps: &mut Maps,
        nets: &[IpNet],
        ttl: Option<Duration>,
        reason: &str,
        origin: Origin,
    ) -> Result<usize, EnforceError> {
        for net in nets {
            check_range(*net)?;
        }
        let now = clock::unix_now();
        let mut entries = Vec::with_capacity(nets.len());
        for net in nets {
            let mut entry = Entry::new(Kind::Block, *net, ttl, reason, origin, now);
            self.stamp(&mut entry, origin.scope)?;
            entries.push(entry);
        }
        self.add_all(maps, entries.clone())?;
        for entry in entries {
            self.journal(Journaled::Decided(entry));
        }
        info!("blocked {} ranges at once ({reason})", nets.len());
        Ok(nets.len())
    }

    /// Removes an entry: the map first (a release works while the disk is
    /// full), then the state file.
    fn remove(
        &mut self,
        maps: &mut Maps,
        kind: Kind,
        target: IpNet,
    ) -> Result<Entry, EnforceError> {
        let Some(entry) = self.entries.remove(&(kind, target)) else {
            return Err(EnforceError::NotFound {
                what: match kind {
                    Kind::Isolation => "isolated",
                    Kind::Block => "blocked",
                },
                target,
            });
        };
        if let Err(e) = self.unapply(maps, &entry) {
            self.entries.insert((kind, target), entry);
            return Err(e);
        }
        self.save();
        Ok(entry)
    }

    /// Whether an entry of `kind` exists for exactly `target`.
    pub fn has(&self, kind: Kind, target: IpNet) -> bool {
        self.entries.contains_key(&(kind, target))
    }

    pub fn release(&mut self, maps: &mut Maps, host: IpAddr) -> Result<Entry, EnforceError> {
        self.withdraw(maps, Kind::Isolation, IpNet::from(host))
    }

    pub fn unblock(&mut self, maps: &mut Maps, net: IpNet) -> Result<Entry, EnforceError> {
        self.withdraw(maps, Kind::Block, net)
    }

    /// An operator's release or unblock: in fleet mode, published as a
    /// release in the entry's scope, which this gateway must be allowed to
    /// publish in (else the fleet would put it back).
    fn withdraw(
        &mut self,
        maps: &mut Maps,
        kind: Kind,
        target: IpNet,
    ) -> Result<Entry, EnforceError> {
        if let (
            Some(side),
            Some(Entry {
                fleet: Some(tag), ..
            }),
        ) = (&self.fleet, self.entries.get(&(kind, target)))
        {
            if !side.config.publish.contains(&tag.scope) {
                return Err(EnforceError::Refused {
                    target: target.to_string(),
                    problem: format!(
                        "it is a {} decision of {}/{}, and this gateway does not publish {} decisions ([fleet] publish): a gateway that does must lift it",
                        tag.scope.label(),
                        tag.site,
                        tag.gateway,
                        tag.scope.label()
                    ),
                });
            }
        }
        let entry = self.remove(maps, kind, target)?;
        self.journal(Journaled::Released(entry.clone()));
        Ok(entry)
    }

    /// Drops entries whose time is up (the datapath already ignores them).
    pub fn expire(&mut self, maps: &mut Maps, unix_now: u64) -> Result<Vec<Entry>, EnforceError> {
        let due: Vec<(Kind, IpNet)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expired(unix_now))
            .map(|(k, _)| *k)
            .collect();
        let mut removed = Vec::new();
        for (kind, target) in due {
            let entry = self.remove(maps, kind, target)?;
            info!("{} of {target} expired", kind.label());
            self.journal(Journaled::Expired(entry.clone()));
            removed.push(entry);
        }
        Ok(removed)
    }

    pub fn list(&self, maps: &Maps, filter: &crate::control::ListFilter) -> Vec<Listed> {
        self.entries
            .values()
            .filter(|entry| filter.matches(entry))
            .map(|entry| {
                let value = match entry.kind {
                    Kind::Isolation => maps.get_isolated(entry.target.addr()),
                    Kind::Block => maps.get_blocked(entry.target),
                };
                Listed {
                    entry: entry.clone(),
                    hits: value.map_or(0, |v| v.hits),
                    mac_hits: entry
                        .mac
                        .map(|mac| maps.get_isolated_mac(mac).map_or(0, |v| v.hits)),
                    in_datapath: value.is_some(),
                }
            })
            .collect()
    }

    /// Whether a feed lists exactly `net`.
    pub fn in_feed(&self, net: &IpNet) -> bool {
        self.feeds.values().any(|r| r.contains(net))
    }

    /// The feeds that list exactly `net`.
    pub fn feeds_listing(&self, net: &IpNet) -> Vec<String> {
        self.feeds
            .iter()
            .filter(|(_, r)| r.contains(net))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// A feed's ranges as applied, if it is.
    pub fn feed(&self, name: &str) -> Option<&Ranges> {
        self.feeds.get(name)
    }

    /// Makes feed `name` list exactly `ranges`, as one unit: the ranges it
    /// adds are blocked and those it drops lifted (unless another feed or a
    /// record holds them), all or none; the state file is not touched.
    pub fn set_feed(
        &mut self,
        maps: &mut Maps,
        name: &str,
        ranges: Ranges,
    ) -> Result<Diff, EnforceError> {
        let empty = Ranges::default();
        let diff = self.feeds.get(name).unwrap_or(&empty).diff(&ranges);
        for net in &diff.added {
            check_range(*net)?;
        }
        let in_use = maps.blocked_count();
        let limit = sensor_common::MAX_BLOCKED_RANGES as usize;
        if in_use + diff.added.len() > limit {
            return Err(EnforceError::Refused {
                target: format!("feed {name}"),
                problem: format!(
                    "{} more blocked ranges would pass the datapath's {limit} ({in_use} in use); nothing changed",
                    diff.added.len()
                ),
            });
        }
        let old = self.feeds.insert(name.to_string(), ranges);
        if let Err(e) = self.apply_feed_diff(maps, &diff) {
            warn!("feed {name} refused ({e}); undoing this change");
            match old {
                Some(old) => self.feeds.insert(name.to_string(), old),
                None => self.feeds.remove(name),
            };
            let undo = Diff {
                added: diff.removed.clone(),
                removed: diff.added.clone(),
            };
            let _ = self.apply_feed_diff(maps, &undo);
            return Err(e);
        }
        // Ranges adopted without a record that a feed now explains.
        let before = self.entries.len();
        let feeds = &self.feeds;
        self.entries.retain(|(kind, target), entry| {
            !(entry.origin == ADOPTED
                && *kind == Kind::Block
                && feeds.values().any(|r| r.contains(target)))
        });
        if self.entries.len() != before {
            self.save();
        }
        Ok(diff)
    }

    /// Takes feed `name` out: the ranges only it listed are lifted.
    pub fn retire_feed(&mut self, maps: &mut Maps, name: &str) -> Result<Diff, EnforceError> {
        let diff = self.set_feed(maps, name, Ranges::default())?;
        self.feeds.remove(name);
        Ok(diff)
    }

    /// Applies a feed change, with the feed's new ranges already in place.
    fn apply_feed_diff(&self, maps: &mut Maps, diff: &Diff) -> Result<(), EnforceError> {
        let mut lift = Vec::new();
        for net in &diff.removed {
            if self.in_feed(net) {
                continue;
            }
            match self.entries.get(&(Kind::Block, *net)) {
                // Back to the record's own expiry.
                Some(entry) => self.apply(maps, entry)?,
                None => lift.push(*net),
            }
        }
        maps.remove_blocked_many(&lift)
            .map_err(map_err("blocked ranges"))?;
        let added = diff.added.iter().map(|net| (*net, 0)).collect();
        maps.set_blocked_many(added)
            .map_err(map_err("blocked ranges"))
    }

    /// Fleet mode from now on: new entries are stamped with their scope and
    /// this gateway, and every change is journaled for the fleet task.
    pub fn join_fleet(&mut self, config: &FleetConfig, local: Vec<IpNet>) {
        self.fleet = Some(FleetSide {
            gateway: config.gateway_name(),
            config: config.clone(),
            local,
            journal: Vec::new(),
        });
    }

    /// The site's own ranges changed (a reload): see `FleetSide::local`.
    pub fn set_fleet_local(&mut self, local: Vec<IpNet>) {
        if let Some(side) = &mut self.fleet {
            side.local = local;
        }
    }

    /// Stamps a new entry with its place in the fleet; refuses a scope
    /// this gateway may not publish in.
    fn stamp(&self, entry: &mut Entry, scope: Option<Scope>) -> Result<(), EnforceError> {
        let Some(side) = &self.fleet else {
            return match scope {
                None => Ok(()),
                Some(_) => Err(EnforceError::Refused {
                    target: entry.target.to_string(),
                    problem: "a scope needs fleet mode ([fleet] in the configuration)".into(),
                }),
            };
        };
        let scope = side
            .config
            .scope_of(entry.kind, entry.target, scope, &side.local)
            .map_err(|problem| EnforceError::Refused {
                target: entry.target.to_string(),
                problem,
            })?;
        entry.fleet = Some(FleetTag {
            scope,
            site: side.config.site.clone(),
            gateway: side.gateway.clone(),
            revision: None,
        });
        Ok(())
    }

    fn journal(&mut self, change: Journaled) {
        let tagged = match &change {
            Journaled::Decided(e) | Journaled::Released(e) | Journaled::Expired(e) => {
                e.fleet.is_some()
            }
        };
        if let (Some(side), true) = (&mut self.fleet, tagged) {
            side.journal.push(change);
        }
    }

    /// The changes made since the last call, oldest first.
    pub fn take_journal(&mut self) -> Vec<Journaled> {
        self.fleet
            .as_mut()
            .map(|side| std::mem::take(&mut side.journal))
            .unwrap_or_default()
    }

    /// The entries the fleet knows of or decided (tagged).
    pub fn fleet_entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().filter(|e| e.fleet.is_some())
    }

    /// Applies a decision of the fleet: added, or put in place of the
    /// fleet's earlier one; an entry this gateway made outside the fleet
    /// stays as it is. Returns whether the maps changed.
    pub fn apply_decision(&mut self, maps: &mut Maps, entry: Entry) -> Result<bool, EnforceError> {
        let key = (entry.kind, entry.target);
        match self.entries.get_mut(&key) {
            Some(Entry { fleet: None, .. }) => return Ok(false),
            // The same decision (this gateway's own, echoed back with its
            // revision): only the revision is new; the local facts (the
            // incident, the MAC) stay.
            Some(old) if same_decision(old, &entry) => {
                let revision = entry.fleet.and_then(|t| t.revision);
                let tag = old.fleet.as_mut().expect("tagged");
                if tag.revision != revision {
                    tag.revision = revision;
                    self.save();
                }
                return Ok(false);
            }
            _ => {}
        }
        self.add(maps, entry)?;
        Ok(true)
    }

    /// Lifts what the fleet no longer decides for a target: only an entry
    /// the fleet has acknowledged (one still waiting to be published is
    /// newer than anything the fleet says).
    pub fn lift_decision(
        &mut self,
        maps: &mut Maps,
        kind: Kind,
        target: IpNet,
    ) -> Result<Option<Entry>, EnforceError> {
        let acknowledged = self
            .entries
            .get(&(kind, target))
            .and_then(|e| e.fleet.as_ref())
            .is_some_and(|tag| tag.revision.is_some());
        if !acknowledged {
            return Ok(None);
        }
        self.remove(maps, kind, target).map(Some)
    }

    /// What is in force: isolations by their records, blocked ranges by
    /// the datapath (records and feeds together).
    pub fn counts(&self, maps: &Maps) -> Counts {
        let mut counts = Counts::default();
        for ((kind, target), entry) in &self.entries {
            if entry.origin == ADOPTED {
                counts.adopted += 1;
            }
            match (kind, target) {
                (Kind::Isolation, IpNet::V4(_)) => counts.isolated_v4 += 1,
                (Kind::Isolation, IpNet::V6(_)) => counts.isolated_v6 += 1,
                (Kind::Block, _) => {}
            }
        }
        (counts.blocked_v4, counts.blocked_v6) = maps.blocked_counts();
        counts.feed_ranges = self.feeds.values().map(Ranges::len).sum();
        counts.state_write_failures = self.state_write_failures;
        counts.state_unsaved = self.unsaved;
        counts
    }
}

/// Whether two entries are the same decision: what the fleet shares of
/// them is equal, whatever their revisions and local facts.
fn same_decision(a: &Entry, b: &Entry) -> bool {
    let shared = |e: &Entry| {
        (
            e.kind,
            e.target,
            e.origin.clone(),
            e.reason.clone(),
            e.created,
            e.expires,
            e.fleet
                .as_ref()
                .map(|t| (t.scope, t.site.clone(), t.gateway.clone())),
        )
    };
    shared(a) == shared(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_addresses_that_are_not_hosts() {
        for bad in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "ff02::1"] {
            assert!(check_host(bad.parse().unwrap()).is_err(), "{bad}");
        }
        assert!(check_host("10.0.0.1".parse().unwrap()).is_ok());
    }

    #[test]
    fn refuses_ranges_with_host_bits_or_everything() {
        let e = check_range("10.0.0.1/8".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("10.0.0.0/8"), "{e}");
        assert!(check_range("0.0.0.0/0".parse().unwrap()).is_err());
        assert!(check_range("10.0.0.0/8".parse().unwrap()).is_ok());
    }
}
