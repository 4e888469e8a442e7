//! The decisions bucket as one gateway sees it, and what is in force here.
//!
//! The rule (docs/fleet.md): within a group (one target, one kind, one
//! place), the entry with the latest revision wins. A release is a
//! deletion: its delete marker is an entry too, so a release beats every
//! older decision for the target, and a later decision beats the release.
//! A purge (tidying a key away) removes the key and decides nothing.
//! Revisions are the bucket's stream sequence: one order for every key.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::decision::{Checks, Decision, Group, Key, Place};
use super::Scope;
use crate::state::Kind;

/// The latest entry of one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Latest {
    /// A decision that passed the checks.
    Decided(Decision),
    /// A valid decision this gateway does not take (`[fleet.accept]`):
    /// it beats older entries and applies elsewhere, not here.
    NotAccepted(Decision),
    /// A decision refused by the checks (a forged or broken writer): it
    /// still beats older entries, so it cannot revive them, but applies
    /// nowhere.
    Refused(String),
    /// A delete marker: a release.
    Released,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub revision: u64,
    pub latest: Latest,
}

/// What is in force here for one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// This decision applies here.
    Apply { decision: Decision, revision: u64 },
    /// Nothing applies here any more.
    Lift { kind: Kind, target: IpNet },
}

/// One site and gateway's view of the bucket.
#[derive(Debug, Default)]
pub struct View {
    site: String,
    gateway: String,
    keys: BTreeMap<Key, Revision>,
    groups: BTreeMap<Group, BTreeSet<Key>>,
    /// The latest revision seen.
    pub revision: u64,
    /// Decisions refused (counted for the metrics).
    pub refused: u64,
}

/// What `record` made of an entry, for the logs and metrics.
pub enum Recorded {
    Ok,
    Refused { key: String, why: String },
    Ignored,
}

impl View {
    pub fn new(site: &str, gateway: &str) -> View {
        View {
            site: site.into(),
            gateway: gateway.into(),
            ..View::default()
        }
    }

    /// Whether a group's decisions apply at this gateway.
    fn applies_here(&self, place: &Place) -> bool {
        match place {
            Place::Fleet => true,
            Place::Site(site) => *site == self.site,
            Place::Gateway(site, gw) => *site == self.site && *gw == self.gateway,
        }
    }

    /// Takes in one entry of the bucket: `value` is `None` for a delete
    /// marker; `purged` for a purge marker (the key is forgotten).
    pub fn record(
        &mut self,
        key_text: &str,
        revision: u64,
        value: Option<&[u8]>,
        purged: bool,
        checks: &Checks,
    ) -> (Recorded, Option<(Kind, IpNet)>) {
        self.revision = self.revision.max(revision);
        let Some(key) = Key::parse(key_text) else {
            return (Recorded::Ignored, None);
        };
        let touched = Some((key.kind, key.target));
        let group = key.group();
        if purged {
            self.keys.remove(&key);
            if let Some(keys) = self.groups.get_mut(&group) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.groups.remove(&group);
                }
            }
            return (Recorded::Ok, touched);
        }
        if self.keys.get(&key).is_some_and(|r| r.revision >= revision) {
            return (Recorded::Ignored, None); // a replay of what is known
        }
        let (latest, recorded) = match value {
            None => (Latest::Released, Recorded::Ok),
            Some(bytes) => match checks.check(&key, bytes, self.guards_inside(&key)) {
                Ok(d) if self.own(&d) || checks.accepts(&d) => (Latest::Decided(d), Recorded::Ok),
                Ok(d) => (Latest::NotAccepted(d), Recorded::Ok),
                Err(why) => {
                    self.refused += 1;
                    (
                        Latest::Refused(why.clone()),
                        Recorded::Refused {
                            key: key_text.to_string(),
                            why,
                        },
                    )
                }
            },
        };
        self.groups.entry(group).or_default().insert(key.clone());
        self.keys.insert(key, Revision { revision, latest });
        (recorded, touched)
    }

    /// Whether this very gateway made `d`.
    fn own(&self, d: &Decision) -> bool {
        d.site == self.site && d.gateway == self.gateway
    }

    /// Whether a block under `key` must keep off this gateway's inside
    /// (`Checks::check`): it applies here, and is not under this gateway's
    /// own gateway-scope key (which only its credentials may write).
    fn guards_inside(&self, key: &Key) -> bool {
        let own_key = key.scope == Scope::Gateway
            && key.site == self.site
            && key.gateway.as_deref() == Some(self.gateway.as_str());
        self.applies_here(&key.group().place) && !own_key
    }

    /// The latest entry of a group, if it has any.
    fn latest(&self, group: &Group) -> Option<&Revision> {
        self.groups
            .get(group)?
            .iter()
            .filter_map(|k| self.keys.get(k))
            .max_by_key(|r| r.revision)
    }

    /// The decision in force here for `kind` on `target` at `unix_now`:
    /// among the groups that apply here, the latest decision of each group
    /// whose latest entry is a decision, and of those the latest.
    pub fn in_force(&self, kind: Kind, target: IpNet, unix_now: u64) -> Option<(&Decision, u64)> {
        let places = [
            Place::Fleet,
            Place::Site(self.site.clone()),
            Place::Gateway(self.site.clone(), self.gateway.clone()),
        ];
        places
            .into_iter()
            .filter(|p| self.applies_here(p))
            .filter_map(|place| {
                let r = self.latest(&Group {
                    place,
                    kind,
                    target,
                })?;
                match &r.latest {
                    Latest::Decided(d) if !d.expired(unix_now) => Some((d, r.revision)),
                    _ => None,
                }
            })
            .max_by_key(|(_, revision)| *revision)
    }

    /// What is in force here for `kind` on `target`, as an outcome.
    pub fn outcome(&self, kind: Kind, target: IpNet, unix_now: u64) -> Outcome {
        match self.in_force(kind, target, unix_now) {
            Some((d, revision)) => Outcome::Apply {
                decision: d.clone(),
                revision,
            },
            None => Outcome::Lift { kind, target },
        }
    }

    /// Every (kind, target) the bucket has anything about.
    pub fn targets(&self) -> BTreeSet<(Kind, IpNet)> {
        self.groups.keys().map(|g| (g.kind, g.target)).collect()
    }

    /// Every decision in force anywhere in the fleet (for `sensorctl fleet
    /// list`): each group's latest entry when it is a decision.
    pub fn decisions(&self, unix_now: u64) -> Vec<(&Decision, u64)> {
        self.groups
            .keys()
            .filter_map(|g| self.latest(g))
            .filter_map(|r| match &r.latest {
                Latest::Decided(d) | Latest::NotAccepted(d) if !d.expired(unix_now) => {
                    Some((d, r.revision))
                }
                _ => None,
            })
            .collect()
    }

    /// The refused entries that are their group's latest (for `sensorctl
    /// fleet list --refused`).
    pub fn refusals(&self) -> Vec<(String, u64, &str)> {
        self.keys
            .iter()
            .filter_map(|(k, r)| match &r.latest {
                Latest::Refused(why) => Some((k.text(), r.revision, why.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The revision of the key a decision of this gateway would be
    /// written under, if the bucket holds it.
    pub fn revision_of(&self, key: &Key) -> Option<u64> {
        self.keys.get(key).map(|r| r.revision)
    }

    /// Whether `key`, at `revision`, is the only key of its group: tidying
    /// it away then revives no older decision of the group.
    pub fn alone_in_group(&self, key: &Key, revision: u64) -> bool {
        self.revision_of(key) == Some(revision)
            && self
                .groups
                .get(&key.group())
                .is_some_and(|keys| keys.len() == 1)
    }

    /// Whether the latest entry of `key` is a release.
    pub fn released(&self, key: &Key) -> bool {
        self.keys
            .get(key)
            .is_some_and(|r| r.latest == Latest::Released)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{Accept, Scope};

    fn decision(scope: Scope, site: &str, gw: &str, target: &str) -> Decision {
        Decision {
            kind: Kind::Block,
            target: target.parse().unwrap(),
            scope,
            site: site.into(),
            gateway: gw.into(),
            origin: "operator".into(),
            reason: "test".into(),
            created: 100,
            expires: None,
            incident: None,
        }
    }

    struct Bucket {
        view: View,
        revision: u64,
        accept: Accept,
    }

    impl Bucket {
        fn new() -> Bucket {
            Bucket {
                view: View::new("city-b", "gw1"),
                revision: 0,
                accept: Accept::default(),
            }
        }
        fn put(&mut self, d: &Decision) {
            self.revision += 1;
            let checks = Checks {
                accept: &self.accept,
                protected: &[],
                never_isolate: &[],
            };
            let value = serde_json::to_vec(d).unwrap();
            self.view
                .record(&d.key().text(), self.revision, Some(&value), false, &checks);
        }
        fn delete(&mut self, d: &Decision) {
            self.revision += 1;
            let checks = Checks {
                accept: &self.accept,
                protected: &[],
                never_isolate: &[],
            };
            self.view
                .record(&d.key().text(), self.revision, None, false, &checks);
        }
        fn in_force(&self, target: &str) -> Option<String> {
            self.view
                .in_force(Kind::Block, target.parse().unwrap(), 1000)
                .map(|(d, _)| format!("{}/{}", d.site, d.gateway))
        }
    }

    const T: &str = "203.0.113.66/32";

    #[test]
    fn the_latest_revision_wins_and_a_release_beats_an_older_decision() {
        let mut b = Bucket::new();
        let by_a = decision(Scope::Fleet, "city-a", "gw1", T);
        let by_c = decision(Scope::Fleet, "city-c", "gw9", T);
        b.put(&by_a);
        assert_eq!(b.in_force(T).as_deref(), Some("city-a/gw1"));
        b.put(&by_c);
        assert_eq!(b.in_force(T).as_deref(), Some("city-c/gw9"));
        // city-c releases: its delete marker is the latest, so city-a's
        // older decision does not come back.
        b.delete(&by_c);
        assert_eq!(b.in_force(T), None);
        // A later decision beats the release.
        b.put(&by_a);
        assert_eq!(b.in_force(T).as_deref(), Some("city-a/gw1"));
    }

    #[test]
    fn an_expired_decision_is_tidied_only_when_no_older_one_would_return() {
        let mut b = Bucket::new();
        let by_b = decision(Scope::Fleet, "city-b", "gw1", T);
        b.put(&by_b);
        let key = by_b.key();
        assert!(b.view.alone_in_group(&key, 1));
        assert!(!b.view.alone_in_group(&key, 0), "not its latest revision");
        // Another site's decision in the group: tidying city-b's newer one
        // would let it apply again.
        let by_a = decision(Scope::Fleet, "city-a", "gw1", "198.51.100.0/24");
        b.put(&by_a);
        b.put(&decision(Scope::Fleet, "city-a", "gw1", T));
        b.put(&by_b);
        assert!(!b.view.alone_in_group(&key, 4));
    }

    #[test]
    fn the_inside_is_guarded_against_what_applies_here_from_others() {
        let view = View::new("city-b", "gw1");
        let key = |scope, site: &str, gw: &str| decision(scope, site, gw, T).key();
        assert!(view.guards_inside(&key(Scope::Fleet, "city-a", "gw1")));
        assert!(view.guards_inside(&key(Scope::Site, "city-b", "gw2")));
        assert!(!view.guards_inside(&key(Scope::Gateway, "city-b", "gw1")));
        assert!(!view.guards_inside(&key(Scope::Site, "city-a", "gw1")));
        assert!(!view.guards_inside(&key(Scope::Gateway, "city-b", "gw2")));
    }

    #[test]
    fn only_the_groups_of_this_site_and_gateway_apply() {
        let mut b = Bucket::new();
        b.put(&decision(Scope::Site, "city-a", "gw1", T));
        b.put(&decision(Scope::Gateway, "city-b", "gw2", T));
        assert_eq!(b.in_force(T), None, "other site's and other gateway's");
        b.put(&decision(Scope::Site, "city-b", "gw2", T));
        assert_eq!(b.in_force(T).as_deref(), Some("city-b/gw2"));
        // A fleet release does not lift the site's own decision: groups
        // are separate, and any group in force blocks.
        let fleet = decision(Scope::Fleet, "city-a", "gw1", T);
        b.put(&fleet);
        b.delete(&fleet);
        assert_eq!(b.in_force(T).as_deref(), Some("city-b/gw2"));
        assert_eq!(b.view.decisions(1000).len(), 3);
        // This gateway's own gateway-scope decisions apply here, though
        // `[fleet.accept] scopes` does not name "gateway".
        const MINE: &str = "198.51.100.7/32";
        b.put(&decision(Scope::Gateway, "city-b", "gw1", MINE));
        assert_eq!(b.in_force(MINE).as_deref(), Some("city-b/gw1"));
    }

    #[test]
    fn a_refused_entry_wins_its_group_but_applies_nowhere() {
        let mut b = Bucket::new();
        b.put(&decision(Scope::Fleet, "city-a", "gw1", T));
        let mut wide = decision(Scope::Fleet, "city-c", "gw1", T);
        wide.origin = "a robot".into();
        b.put(&wide);
        assert_eq!(b.in_force(T), None);
        assert_eq!(b.view.refused, 1);
        assert_eq!(b.view.refusals().len(), 1);
    }

    #[test]
    fn expired_decisions_and_replays_change_nothing() {
        let mut b = Bucket::new();
        let mut d = decision(Scope::Fleet, "city-a", "gw1", T);
        d.expires = Some(500);
        b.put(&d);
        assert_eq!(b.in_force(T), None, "expired at 500, now is 1000");
        let checks = Checks {
            accept: &b.accept,
            protected: &[],
            never_isolate: &[],
        };
        let (recorded, touched) = b.view.record(&d.key().text(), 1, None, false, &checks);
        assert!(matches!(recorded, Recorded::Ignored) && touched.is_none());
    }
}
