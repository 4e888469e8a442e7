//! Fleet mode: gateways share decisions, feeds and incidents through a NATS
//! JetStream cluster (docs/fleet.md).
//!
//! - `decision`: what one gateway tells the others (a key and a value in
//!   the decisions bucket), and the checks a receiver makes;
//! - `view`: the bucket as a gateway sees it, and which decisions are in
//!   force here (the latest revision of each target wins);
//! - `outbox`: what this gateway decided and has not yet had acknowledged,
//!   kept on disk across outages and restarts;
//! - `client`: the NATS connection, shared by sensord and the simulation;
//! - `shared_feeds`: threat feeds fetched by one gateway and shared with
//!   the others, as a unit;
//! - `incidents`: the alert outlet to the incidents stream.
//!
//! Without `[fleet]`, none of this runs and sensord stands alone.

pub mod client;
pub mod decision;
pub mod incidents;
pub mod outbox;
pub mod shared_feeds;
pub mod view;

use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::state::Kind;

/// Where a decision applies.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Only the gateway that decided it (shared for the fleet's view).
    Gateway,
    /// Every gateway of the deciding gateway's site.
    #[default]
    Site,
    /// Every gateway of the fleet that accepts it.
    Fleet,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Gateway, Scope::Site, Scope::Fleet];

    pub fn label(self) -> &'static str {
        match self {
            Scope::Gateway => "gateway",
            Scope::Site => "site",
            Scope::Fleet => "fleet",
        }
    }

    pub fn parse(text: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|s| s.label() == text)
            .ok_or_else(|| format!("{text:?} is not a scope: gateway, site or fleet"))
    }
}

/// An entry's place in the fleet (`state::Entry::fleet`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetTag {
    pub scope: Scope,
    /// The site and gateway that decided it.
    pub site: String,
    pub gateway: String,
    /// The decision's revision in the fleet's bucket; `None` until the
    /// fleet has acknowledged it (decided here, maybe while cut off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
}

/// Where an origin comes from, as `[fleet.accept] origins` names it.
pub fn origin_class(origin: &str) -> &'static str {
    if origin == "operator" {
        "operator"
    } else if origin.starts_with("auto:") {
        "auto"
    } else if origin.starts_with("feed:") {
        "feed"
    } else {
        "other"
    }
}

/// `[fleet]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// NATS server URLs (`nats://host:4222`, `tls://host:4222`); the client
    /// fails over among them.
    pub servers: Vec<String>,
    /// This gateway's site (a municipality, a campus): letters, digits,
    /// '-' and '_'.
    pub site: String,
    /// This gateway's name within its site. Default: the host name.
    pub gateway: Option<String>,
    /// NATS user; its password is read from `password_file`.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// A NATS credentials file (JWT and NKey seed), instead of a user.
    pub credentials_file: Option<PathBuf>,
    /// TLS: the CA that signed the servers' certificates; with a client
    /// certificate and key for mutual TLS. Any of them makes TLS required.
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// The scopes this gateway publishes decisions in. Its NATS
    /// permissions must allow them (docs/fleet.md). Default: gateway and
    /// site; add "fleet" for a site trusted to block for everyone.
    pub publish: Vec<Scope>,
    /// Which decisions of other gateways this gateway applies.
    pub accept: Accept,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            servers: Vec::new(),
            site: String::new(),
            gateway: None,
            user: None,
            password_file: None,
            credentials_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            publish: vec![Scope::Gateway, Scope::Site],
            accept: Accept::default(),
        }
    }
}

/// `[fleet.accept]`: what a gateway applies of what others decided.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Accept {
    /// Sites whose fleet-wide decisions apply here ("*": every site).
    pub sites: Vec<String>,
    pub kinds: Vec<Kind>,
    pub scopes: Vec<Scope>,
    /// "operator", "auto" (detection) and "feed".
    pub origins: Vec<String>,
}

impl Default for Accept {
    fn default() -> Self {
        Accept {
            sites: vec!["*".into()],
            kinds: vec![Kind::Isolation, Kind::Block],
            scopes: vec![Scope::Site, Scope::Fleet],
            origins: vec!["operator".into(), "auto".into(), "feed".into()],
        }
    }
}

/// A site or gateway name: one NATS subject token, shown in alerts.
pub fn name_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    (!ok).then(|| format!("{name:?} is not a name: 1 to 64 letters, digits, '-' or '_'"))
}

impl FleetConfig {
    /// This gateway's name (`gateway`, else the host name made a name).
    pub fn gateway_name(&self) -> String {
        self.gateway.clone().unwrap_or_else(|| {
            let host = crate::alerts::Observer::local(None).hostname;
            let name: String = host
                .chars()
                .map(|c| match c {
                    'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
                    _ => '-',
                })
                .take(64)
                .collect();
            if name.is_empty() {
                "gateway".into()
            } else {
                name
            }
        })
    }

    /// The scope of a new decision of `kind` when none is asked for: an
    /// isolation stays on its site; a block (a C&C server) goes to the
    /// whole fleet when this gateway may publish there.
    pub fn default_scope(&self, kind: Kind) -> Scope {
        let widest = match kind {
            Kind::Isolation => Scope::Site,
            Kind::Block => Scope::Fleet,
        };
        self.publish
            .iter()
            .copied()
            .filter(|s| *s <= widest)
            .max()
            .unwrap_or(Scope::Gateway)
    }

    /// The scope a new decision of `kind` on `target` is published in:
    /// the one `asked` for, or the default. A block another gateway's
    /// checks would refuse (one touching `local`, this site's internal
    /// and exempt ranges, or wider than a feed may be) means something
    /// here only: it stays on this gateway, and a wider scope is refused.
    pub fn scope_of(
        &self,
        kind: Kind,
        target: IpNet,
        asked: Option<Scope>,
        local: &[IpNet],
    ) -> Result<Scope, String> {
        let local_only = match kind {
            Kind::Block => crate::feeds::untrusted_range_problem(target, local),
            Kind::Isolation => None,
        };
        let scope = match (asked, local_only) {
            (Some(wider), Some(why)) if wider != Scope::Gateway => {
                let stays =
                    "such a block is never shared; it stays on this gateway (--scope gateway)";
                return Err(format!("{why}: {stays}"));
            }
            (_, Some(_)) => Scope::Gateway,
            (asked, None) => asked.unwrap_or_else(|| self.default_scope(kind)),
        };
        self.publishes(scope)?;
        Ok(scope)
    }

    /// Whether this gateway may publish in `scope` (`[fleet] publish`).
    pub fn publishes(&self, scope: Scope) -> Result<(), String> {
        match self.publish.contains(&scope) {
            true => Ok(()),
            false => Err(format!(
                "this gateway does not publish {} decisions ([fleet] publish)",
                scope.label()
            )),
        }
    }

    /// Checks `[fleet]`; `(key, problem)` on error.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let key = |k: &str| format!("fleet.{k}");
        if self.servers.is_empty() {
            return Err((key("servers"), "name at least one NATS server".into()));
        }
        for (i, url) in self.servers.iter().enumerate() {
            let known = ["nats://", "tls://"].iter().any(|s| url.starts_with(s));
            if !known || url.len() <= "nats://".len() {
                return Err((
                    key(&format!("servers[{i}]")),
                    format!("{url:?} is not a nats:// or tls:// URL"),
                ));
            }
        }
        if let Some(problem) = name_problem(&self.site) {
            return Err((key("site"), problem));
        }
        if let Some(problem) = self.gateway.as_deref().and_then(name_problem) {
            return Err((key("gateway"), problem));
        }
        if self.user.is_some() != self.password_file.is_some() {
            return Err((
                key("password_file"),
                "give user and password_file together".into(),
            ));
        }
        if self.user.is_some() && self.credentials_file.is_some() {
            return Err((
                key("credentials_file"),
                "give either user and password_file or credentials_file".into(),
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err((
                key("tls_key_file"),
                "give tls_cert_file and tls_key_file together".into(),
            ));
        }
        if self.publish.is_empty() {
            return Err((
                key("publish"),
                "name the scopes this gateway publishes in (at least \"gateway\")".into(),
            ));
        }
        for (i, site) in self.accept.sites.iter().enumerate() {
            if site != "*" {
                if let Some(problem) = name_problem(site) {
                    return Err((key(&format!("accept.sites[{i}]")), problem));
                }
            }
        }
        for (i, origin) in self.accept.origins.iter().enumerate() {
            if !["operator", "auto", "feed"].contains(&origin.as_str()) {
                return Err((
                    key(&format!("accept.origins[{i}]")),
                    format!("{origin:?} is not an origin: operator, auto or feed"),
                ));
            }
        }
        Ok(())
    }

    /// The files a start reads (for `--check-config`): each must be there.
    pub fn files(&self) -> Vec<(&'static str, &PathBuf)> {
        let named = [
            ("fleet.password_file", &self.password_file),
            ("fleet.credentials_file", &self.credentials_file),
            ("fleet.tls_ca_file", &self.tls_ca_file),
            ("fleet.tls_cert_file", &self.tls_cert_file),
            ("fleet.tls_key_file", &self.tls_key_file),
        ];
        named
            .into_iter()
            .filter_map(|(k, p)| p.as_ref().map(|p| (k, p)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<FleetConfig, String> {
        let c: FleetConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|(k, p)| format!("{k}: {p}"))?;
        Ok(c)
    }

    #[test]
    fn a_fleet_needs_servers_and_a_site_named_as_a_token() {
        let ok = config("servers = [\"nats://10.0.0.1:4222\"]\nsite = \"city-a\"").unwrap();
        assert_eq!(ok.publish, vec![Scope::Gateway, Scope::Site]);
        assert_eq!(ok.default_scope(Kind::Block), Scope::Site);
        assert!(config("site = \"a\"")
            .unwrap_err()
            .contains("fleet.servers"));
        let dotted = config("servers = [\"nats://x\"]\nsite = \"city.a\"").unwrap_err();
        assert!(dotted.contains("fleet.site"), "{dotted}");
        let star = config("servers = [\"nats://x\"]\nsite = \"*\"").unwrap_err();
        assert!(star.contains("fleet.site"), "{star}");
        let http = config("servers = [\"http://x\"]\nsite = \"a\"").unwrap_err();
        assert!(http.contains("servers[0]"), "{http}");
    }

    #[test]
    fn blocks_go_fleet_wide_only_where_the_site_may_publish_there() {
        let c = config(
            "servers = [\"tls://x:4222\"]\nsite = \"a\"\npublish = [\"gateway\", \"site\", \"fleet\"]",
        )
        .unwrap();
        assert_eq!(c.default_scope(Kind::Block), Scope::Fleet);
        assert_eq!(c.default_scope(Kind::Isolation), Scope::Site);
    }

    #[test]
    fn a_block_of_the_site_s_own_ranges_stays_on_its_gateway() {
        let c = config(
            "servers = [\"nats://x\"]\nsite = \"a\"\npublish = [\"gateway\", \"site\", \"fleet\"]",
        )
        .unwrap();
        let local: Vec<IpNet> = vec!["10.10.0.0/16".parse().unwrap()];
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let outside = c.scope_of(Kind::Block, net("203.0.113.0/24"), None, &local);
        assert_eq!(outside, Ok(Scope::Fleet));
        for inside in ["10.10.3.0/24", "10.0.0.0/8", "10.10.0.7/32"] {
            let scope = c.scope_of(Kind::Block, net(inside), None, &local);
            assert_eq!(scope, Ok(Scope::Gateway), "{inside}");
            let asked = c.scope_of(Kind::Block, net(inside), Some(Scope::Gateway), &local);
            assert_eq!(asked, Ok(Scope::Gateway), "{inside}");
            let wider = c
                .scope_of(Kind::Block, net(inside), Some(Scope::Site), &local)
                .unwrap_err();
            assert!(wider.contains("never shared"), "{wider}");
        }
        // Too wide for any other gateway to take.
        let wide = c.scope_of(Kind::Block, net("64.0.0.0/4"), None, &local);
        assert_eq!(wide, Ok(Scope::Gateway));
        // An inside host is what isolations are for.
        let isolate = c.scope_of(Kind::Isolation, net("10.10.0.7/32"), None, &local);
        assert_eq!(isolate, Ok(Scope::Site));
        let only_site =
            config("servers = [\"nats://x\"]\nsite = \"a\"\npublish = [\"site\"]").unwrap();
        let refused = only_site.scope_of(Kind::Block, net("10.10.3.0/24"), None, &local);
        assert!(refused.unwrap_err().contains("does not publish gateway"));
    }

    #[test]
    fn credentials_come_in_pairs() {
        let e = config("servers = [\"nats://x\"]\nsite = \"a\"\nuser = \"u\"").unwrap_err();
        assert!(e.contains("password_file"), "{e}");
        let e =
            config("servers = [\"nats://x\"]\nsite = \"a\"\ntls_cert_file = \"/c\"").unwrap_err();
        assert!(e.contains("tls_key_file"), "{e}");
        let e = config("servers = [\"nats://x\"]\nsite = \"a\"\n[accept]\norigins = [\"robot\"]")
            .unwrap_err();
        assert!(e.contains("accept.origins[0]"), "{e}");
    }
}
