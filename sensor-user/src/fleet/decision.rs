//! A decision as the fleet shares it: a key in the decisions bucket that
//! says where it applies and who may write it, and a JSON value with the
//! rest. NATS permissions on the key's subject (`$KV.<bucket>.<key>`) are
//! what stop a gateway from deciding as another site (docs/fleet.md); a
//! receiver checks everything else itself, with the rules that hold for
//! `sensorctl` input and for feeds.
//!
//! Keys (targets written as one subject token: `.` becomes `_`, `:` `-`):
//!
//! ```text
//! fleet.<site>.<kind>.<target>              every gateway that accepts it
//! site.<site>.<kind>.<target>               the site's gateways
//! gateway.<site>.<gateway>.<kind>.<target>  that gateway only
//! ```

use std::{fmt, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{name_problem, origin_class, Accept, Scope};
use crate::state::{Entry, Kind};

/// The bucket's key of a decision.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub scope: Scope,
    /// The site that decided it (and, but for fleet scope, where it applies).
    pub site: String,
    /// For gateway scope: the gateway.
    pub gateway: Option<String>,
    pub kind: Kind,
    pub target: IpNet,
}

/// The decisions that compete for one target: the latest revision among
/// a group's keys is in force. A fleet-wide group holds one key per site.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Group {
    pub place: Place,
    pub kind: Kind,
    pub target: IpNet,
}

/// Where a group applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    Fleet,
    Site(String),
    Gateway(String, String),
}

/// `203.0.113.0/24` as `203_0_113_0/24`, `fd00::1/128` as `fd00--1/128`
/// (and `::ffff:1.2.3.4/128` as `--ffff-1_2_3_4/128`): one subject token,
/// each character mapped back one way.
fn target_token(net: &IpNet) -> String {
    net.to_string().replace('.', "_").replace(':', "-")
}

/// The inverse of `target_token`; only the canonical form is read.
fn parse_target(token: &str) -> Option<IpNet> {
    let net: IpNet = token.replace('-', ":").replace('_', ".").parse().ok()?;
    (target_token(&net) == token).then_some(net)
}

impl Key {
    pub fn text(&self) -> String {
        let kind = self.kind.label();
        let target = target_token(&self.target);
        match (&self.scope, &self.gateway) {
            (Scope::Gateway, Some(gw)) => format!("gateway.{}.{gw}.{kind}.{target}", self.site),
            (scope, _) => format!("{}.{}.{kind}.{target}", scope.label(), self.site),
        }
    }

    /// Reads a key; `None` for anything else in the bucket.
    pub fn parse(text: &str) -> Option<Key> {
        let parts: Vec<&str> = text.split('.').collect();
        let (scope, site, gateway, kind, target) = match parts.as_slice() {
            ["gateway", site, gw, kind, target] => (Scope::Gateway, site, Some(gw), kind, target),
            [scope, site, kind, target] => (Scope::parse(scope).ok()?, site, None, kind, target),
            _ => return None,
        };
        if scope == Scope::Gateway && gateway.is_none() {
            return None;
        }
        if name_problem(site).is_some() || gateway.is_some_and(|g| name_problem(g).is_some()) {
            return None;
        }
        let kind = match *kind {
            "isolation" => Kind::Isolation,
            "block" => Kind::Block,
            _ => return None,
        };
        Some(Key {
            scope,
            site: site.to_string(),
            gateway: gateway.map(|g| g.to_string()),
            kind,
            target: parse_target(target)?,
        })
    }

    pub fn group(&self) -> Group {
        let place = match self.scope {
            Scope::Fleet => Place::Fleet,
            Scope::Site => Place::Site(self.site.clone()),
            Scope::Gateway => {
                Place::Gateway(self.site.clone(), self.gateway.clone().unwrap_or_default())
            }
        };
        Group {
            place,
            kind: self.kind,
            target: self.target,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// A decision's value in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub kind: Kind,
    pub target: IpNet,
    pub scope: Scope,
    pub site: String,
    pub gateway: String,
    /// "operator", "auto:DETECTOR" or "feed:NAME".
    pub origin: String,
    pub reason: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; `None` is permanent.
    pub expires: Option<u64>,
    /// The deciding gateway's incident behind an automatic action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}

/// The longest value a receiver reads: a decision is a few hundred bytes.
pub const MAX_VALUE: usize = 4096;
const MAX_REASON: usize = 512;
const MAX_ORIGIN: usize = 80;

impl Decision {
    /// The decision `entry` is, made at this gateway in `scope`.
    pub fn of_entry(entry: &Entry, scope: Scope, site: &str, gateway: &str) -> Decision {
        Decision {
            kind: entry.kind,
            target: entry.target,
            scope,
            site: site.to_string(),
            gateway: gateway.to_string(),
            origin: entry.origin.clone(),
            reason: entry.reason.clone(),
            created: entry.created,
            expires: entry.expires,
            incident: None,
        }
    }

    pub fn key(&self) -> Key {
        Key {
            scope: self.scope,
            site: self.site.clone(),
            gateway: (self.scope == Scope::Gateway).then(|| self.gateway.clone()),
            kind: self.kind,
            target: self.target,
        }
    }

    pub fn expired(&self, unix_now: u64) -> bool {
        self.expires.is_some_and(|e| e <= unix_now)
    }
}

/// What a receiver holds a decision against.
pub struct Checks<'a> {
    pub accept: &'a Accept,
    /// The inside and the exempt ranges: never blocked from afar.
    pub protected: &'a [IpNet],
    /// Hosts never isolated (exempt ranges and `response.never_isolate`).
    pub never_isolate: &'a [IpNet],
}

impl Checks<'_> {
    /// Why `value`, read under `key`, is refused; `Ok` with the decision
    /// when it may apply here. A refusal means a broken or forged writer;
    /// a decision that is only not for this gateway is not refused here.
    /// `guard_inside`: a block must also keep off this gateway's inside and
    /// exempt ranges. It need not when the decision applies elsewhere (it
    /// is only shown here), nor under this gateway's own gateway-scope key,
    /// which only its credentials may write: a block of its own site's
    /// ranges stays on its gateway (`FleetConfig::scope_of`) and is its
    /// operator's to make.
    pub fn check(&self, key: &Key, value: &[u8], guard_inside: bool) -> Result<Decision, String> {
        if value.len() > MAX_VALUE {
            return Err(format!("{} bytes is longer than a decision", value.len()));
        }
        let d: Decision =
            serde_json::from_slice(value).map_err(|e| format!("not a decision: {e}"))?;
        if d.key() != *key {
            return Err(format!(
                "its value says {} (another site's, scope's or target's key)",
                d.key()
            ));
        }
        if let Some(problem) = name_problem(&d.gateway) {
            return Err(format!("gateway: {problem}"));
        }
        let printable = |s: &str| !s.chars().any(char::is_control);
        if d.reason.len() > MAX_REASON || !printable(&d.reason) {
            return Err("its reason is too long or holds control characters".into());
        }
        if d.origin.len() > MAX_ORIGIN
            || !printable(&d.origin)
            || origin_class(&d.origin) == "other"
        {
            return Err(format!("{:?} is not an origin", d.origin));
        }
        if let Some(problem) = self.target_problem(d.kind, d.target, guard_inside) {
            return Err(problem);
        }
        Ok(d)
    }

    /// What `sensorctl` would refuse, and what no other gateway may do
    /// here: block the inside, a range wider than a feed may hold, or
    /// isolate what is exempt.
    fn target_problem(&self, kind: Kind, target: IpNet, guard_inside: bool) -> Option<String> {
        match kind {
            Kind::Isolation => {
                if target.prefix_len() != target.max_prefix_len() {
                    return Some(format!("{target} is not a host"));
                }
                let host: IpAddr = target.addr();
                if let Err(e) = crate::enforcer::check_host(host) {
                    return Some(e.to_string());
                }
                self.never_isolate
                    .iter()
                    .find(|n| n.contains(&host))
                    .map(|n| format!("{host} is in {n}, which is never isolated"))
            }
            Kind::Block => crate::enforcer::range_problem(target)
                .map(|p| format!("{target} {p}"))
                .or_else(|| {
                    guard_inside
                        .then(|| crate::feeds::untrusted_range_problem(target, self.protected))
                        .flatten()
                }),
        }
    }

    /// Whether this gateway takes a checked decision of another gateway
    /// (`[fleet.accept]`; its own are always taken).
    pub fn accepts(&self, d: &Decision) -> bool {
        let a = self.accept;
        let site_ok = d.scope != Scope::Fleet || a.sites.iter().any(|s| s == "*" || *s == d.site);
        site_ok
            && a.kinds.contains(&d.kind)
            && a.scopes.contains(&d.scope)
            && a.origins.iter().any(|o| o == origin_class(&d.origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(scope: Scope, kind: Kind, target: &str) -> Decision {
        Decision {
            kind,
            target: target.parse().unwrap(),
            scope,
            site: "city-a".into(),
            gateway: "gw1".into(),
            origin: "auto:beacon".into(),
            reason: "incident 4: beacon (score 95)".into(),
            created: 1_700_000_000,
            expires: None,
            incident: None,
        }
    }

    #[test]
    fn keys_read_back_as_written() {
        for (scope, kind, target) in [
            (Scope::Fleet, Kind::Block, "203.0.113.0/24"),
            (Scope::Site, Kind::Isolation, "10.10.0.11/32"),
            (Scope::Gateway, Kind::Block, "2001:db8::/48"),
            (Scope::Fleet, Kind::Isolation, "fd00:10::11/128"),
            (Scope::Site, Kind::Block, "::ffff:1.2.3.0/120"),
        ] {
            let key = decision(scope, kind, target).key();
            let text = key.text();
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b)),
                "{text} is not a NATS KV key"
            );
            assert_eq!(Key::parse(&text), Some(key), "{text}");
        }
        assert_eq!(
            decision(Scope::Fleet, Kind::Block, "203.0.113.66/32")
                .key()
                .text(),
            "fleet.city-a.block.203_0_113_66/32"
        );
        assert_eq!(
            decision(Scope::Gateway, Kind::Isolation, "10.0.0.1/32")
                .key()
                .text(),
            "gateway.city-a.gw1.isolation.10_0_0_1/32"
        );
    }

    #[test]
    fn keys_that_are_not_decisions_are_ignored() {
        for text in [
            "fleet.city-a.block",
            "planet.city-a.block.1_2_3_4/32",
            "fleet.city-a.purge.1_2_3_4/32",
            "fleet.*.block.1_2_3_4/32",
            "fleet.city-a.block.1_2_3_4/33",
            "gateway.city-a.block.1_2_3_4/32",
            "fleet.city-a.block.1_2_3_04/32",
        ] {
            assert_eq!(Key::parse(text), None, "{text}");
        }
    }

    fn checks<'a>(accept: &'a Accept, protected: &'a [IpNet]) -> Checks<'a> {
        Checks {
            accept,
            protected,
            never_isolate: protected,
        }
    }

    #[test]
    fn a_forged_or_dangerous_decision_is_refused() {
        let accept = Accept::default();
        let protected: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let c = checks(&accept, &protected);
        let good = decision(Scope::Fleet, Kind::Block, "203.0.113.66/32");
        let value = serde_json::to_vec(&good).unwrap();
        assert_eq!(c.check(&good.key(), &value, true), Ok(good.clone()));

        // A value under another site's key: written where the writer may
        // write, claiming to be someone else.
        let mut other = good.clone();
        other.site = "city-b".into();
        let e = c.check(&other.key(), &value, true).unwrap_err();
        assert!(e.contains("another site"), "{e}");

        for (target, why) in [
            ("0.0.0.0/0", "every address"),
            ("0.0.0.0/1", "wider than /8"),
            ("10.20.0.0/16", "overlaps 10.0.0.0/8"),
            ("16.0.0.0/4", "wider"),
            ("203.0.113.1/24", "host bits"),
        ] {
            let mut bad = good.clone();
            bad.target = target.parse().unwrap();
            let e = c.check(&bad.key(), &serde_json::to_vec(&bad).unwrap(), true);
            assert!(
                e.as_ref().is_err_and(|e| e.contains(why)),
                "{target}: {e:?}"
            );
        }
        // This gateway's own gateway-scope key: a block of its own site's
        // range is its operator's (sensorctl's checks apply, no more).
        let mut own = decision(Scope::Gateway, Kind::Block, "10.20.0.0/16");
        let local = |d: &Decision| c.check(&d.key(), &serde_json::to_vec(d).unwrap(), false);
        assert_eq!(local(&own), Ok(own.clone()));
        own.target = "0.0.0.0/0".parse().unwrap();
        assert!(local(&own).is_err());
        let mut isolate = decision(Scope::Site, Kind::Isolation, "10.1.2.3/32");
        let e = c.check(&isolate.key(), &serde_json::to_vec(&isolate).unwrap(), true);
        assert!(e.is_err_and(|e| e.contains("never isolated")));
        isolate.target = "224.0.0.1/32".parse().unwrap();
        let e = c.check(&isolate.key(), &serde_json::to_vec(&isolate).unwrap(), true);
        assert!(e.is_err_and(|e| e.contains("multicast")));

        let mut shouting = good.clone();
        shouting.reason = "\u{1b}[2Jcleared".into();
        let e = c.check(&good.key(), &serde_json::to_vec(&shouting).unwrap(), true);
        assert!(e.is_err_and(|e| e.contains("control characters")));
        assert!(c.check(&good.key(), b"{\"kind\":", true).is_err());
        assert!(c
            .check(&good.key(), &vec![b' '; MAX_VALUE + 1], true)
            .is_err());
    }

    #[test]
    fn accept_filters_by_site_kind_scope_and_origin() {
        let protected = [];
        let mut accept = Accept {
            sites: vec!["city-b".into()],
            ..Accept::default()
        };
        let d = decision(Scope::Fleet, Kind::Block, "203.0.113.66/32");
        assert!(!checks(&accept, &protected).accepts(&d));
        // Site scope is the own site's business whatever `sites` says.
        assert!(checks(&accept, &protected).accepts(&decision(
            Scope::Site,
            Kind::Block,
            "203.0.113.66/32"
        )));
        accept.sites = vec!["*".into()];
        assert!(checks(&accept, &protected).accepts(&d));
        accept.origins = vec!["operator".into()];
        assert!(!checks(&accept, &protected).accepts(&d));
        accept.origins = vec!["auto".into()];
        accept.kinds = vec![Kind::Isolation];
        assert!(!checks(&accept, &protected).accepts(&d));
    }
}
