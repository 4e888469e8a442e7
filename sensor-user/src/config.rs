//! sensord's TOML configuration: parsing, defaults and validation.
//!
//! Parsing (serde) catches unknown keys and wrong types; [`Config::validate`]
//! then checks meaning (addresses, names, limits) and names the key at fault.

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use sensor_common::MAX_SEGMENTS;
use serde::Deserialize;

use crate::paths;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// What the datapath does with a packet that matches a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Drop it.
    #[default]
    Enforce,
    /// Count it as "would drop", and pass it (a safe roll-out).
    Monitor,
}

/// How to attach the XDP program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    /// Native (driver) mode, falling back to generic mode with a warning.
    #[default]
    Auto,
    /// Native mode only: fail if the driver has no XDP support.
    Native,
    /// Generic (skb) mode: works on every interface, slower.
    Generic,
}

/// What sensord does with the program and the pinned maps when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnExit {
    /// Leave the program attached and the maps pinned: enforcement goes on
    /// while the daemon is down, and a restart adopts it without a gap.
    #[default]
    Keep,
    /// Detach the program and remove the pinned maps.
    Remove,
}

/// Whether flows between two different segments pass when no rule names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PolicyDefault {
    /// Separated unless an `allow` pair names them (strict separation).
    #[default]
    Deny,
    /// Allowed unless a `deny` pair names them.
    Allow,
}

/// The file as written. Every key has a default (see docs/configuration.md).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub interfaces: Vec<String>,
    pub taps: Vec<String>,
    pub tap_traffic: crate::tap::TapTraffic,
    pub xdp_mode: XdpModeSetting,
    pub mode: Mode,
    pub metrics_address: Option<String>,
    pub control_socket: Option<PathBuf>,
    pub readonly_socket: Option<PathBuf>,
    pub readonly_group: Option<String>,
    pub state_file: Option<PathBuf>,
    pub pin_dir: Option<PathBuf>,
    pub on_exit: OnExit,
    pub exempt: Vec<String>,
    pub segment: Vec<RawSegment>,
    pub policy: RawPolicy,
    pub anti_spoofing: AntiSpoofing,
    pub detection: crate::detect::DetectionConfig,
    pub response: crate::response::ResponseConfig,
    pub alerts: crate::alerts::AlertConfig,
    pub incidents: crate::store::StoreConfig,
    pub feed: Vec<crate::feeds::FeedConfig>,
    pub fleet: Option<crate::fleet::FleetConfig>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RawSegment {
    pub name: String,
    pub cidrs: Vec<String>,
    /// The gateway ports (of `interfaces`) this segment's hosts come in on:
    /// a source address of this segment on another port, or another
    /// segment's address on these, is forged.
    pub ports: Vec<String>,
    /// The hosts are on the gateway's link or behind a switch (each frame's
    /// source MAC is its sender's), not behind a router: addresses are
    /// bound to MACs. Needs `ports`.
    pub switched: bool,
}

/// `[anti_spoofing]`: what the datapath does with forged sources.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AntiSpoofing {
    /// Drop packets with a forged source (as uRPF does); false: count and
    /// pass them. Either way they are never evidence against the address
    /// they carry. Default true.
    pub drop: bool,
}

impl Default for AntiSpoofing {
    fn default() -> Self {
        AntiSpoofing { drop: true }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RawPolicy {
    pub default: PolicyDefault,
    pub allow: Vec<[String; 2]>,
    pub deny: Vec<[String; 2]>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub interfaces: Vec<String>,
    /// Mirror-port interfaces: read through AF_XDP, never enforced on.
    pub taps: Vec<String>,
    /// Which tap frames feed detection (`Auto` resolved).
    pub tap_traffic: crate::tap::TapTraffic,
    pub xdp_mode: XdpModeSetting,
    pub mode: Mode,
    pub metrics_address: SocketAddr,
    pub control_socket: PathBuf,
    /// The socket that serves only requests that read (status, lists,
    /// incidents, the audit log), to members of `readonly_group`: the
    /// SOC's access. Bound only when a group is named.
    pub readonly_socket: PathBuf,
    pub readonly_group: Option<String>,
    pub state_file: PathBuf,
    pub pin_dir: PathBuf,
    pub on_exit: OnExit,
    pub exempt: Vec<IpNet>,
    pub segments: Vec<Segment>,
    pub policy: SegmentPolicy,
    pub anti_spoofing: AntiSpoofing,
    pub detection: crate::detect::DetectionConfig,
    pub response: crate::response::ResponseConfig,
    pub alerts: crate::alerts::AlertConfig,
    pub incidents: crate::store::StoreConfig,
    /// `[[feed]]`: threat feeds.
    pub feeds: Vec<crate::feeds::FeedConfig>,
    /// `[fleet]`: decisions and incidents shared with other gateways.
    pub fleet: Option<crate::fleet::FleetConfig>,
    /// The file it was read from (`load`), which a reload reads again.
    pub source: Option<PathBuf>,
}

impl Config {
    /// What this configuration means, for `sensord --check-config`: where
    /// it attaches, which segments may talk, what is exempt, what detection
    /// does about what it finds, and where alerts go.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        let list = |items: &[String]| match items.is_empty() {
            true => "none".to_string(),
            false => items.join(", "),
        };
        line(format!(
            "mode: {} (on exit: {})",
            match self.mode {
                Mode::Enforce => "enforce: drops what the policy forbids",
                Mode::Monitor => "monitor: counts what it would drop, passes it",
            },
            match self.on_exit {
                OnExit::Keep => "enforcement stays",
                OnExit::Remove => "detach and remove the maps",
            }
        ));
        line(format!("interfaces: {}", list(&self.interfaces)));
        line(format!("taps: {}", list(&self.taps)));
        for s in &self.segments {
            let cidrs: Vec<String> = s.cidrs.iter().map(|c| c.to_string()).collect();
            line(format!(
                "segment {} (id {}): {}",
                s.name,
                s.id,
                cidrs.join(", ")
            ));
        }
        for (i, a) in self.segments.iter().enumerate() {
            for b in &self.segments[i + 1..] {
                let verdict = match self.policy.allows(a.id, b.id) {
                    true => "allowed",
                    false => "separated",
                };
                line(format!("policy: {} <-> {}: {verdict}", a.name, b.name));
            }
        }
        let exempt: Vec<String> = self.exempt.iter().map(|n| n.to_string()).collect();
        line(format!("exempt from isolation: {}", list(&exempt)));
        if !self.detection.enabled {
            line("detection: off".into());
        } else {
            line(format!(
                "detection: on; {} allowlist rule(s); incidents merge within {} s",
                self.detection.allow.len(),
                self.detection.incident_merge_secs
            ));
            let response = &self.response;
            line(format!(
                "response: {}{}",
                match response.mode {
                    crate::response::ResponseMode::Act => "acts",
                    crate::response::ResponseMode::AlertOnly => "alerts only (changes nothing)",
                },
                match response.require_verified {
                    true => ", only on hosts that proved their address",
                    false => "",
                }
            ));
            for (i, r) in response.rules.iter().enumerate() {
                let segments = match r.segments.is_empty() {
                    true => "any segment".to_string(),
                    false => r.segments.join(", "),
                };
                let action = serde_json::to_value(r.action).unwrap_or_default();
                line(format!(
                    "response rule {i}: {} at score {}+ in {segments}: {} for {}",
                    r.detectors.join(", "),
                    r.min_score,
                    action.as_str().unwrap_or("?"),
                    r.ttl
                ));
            }
        }
        let file = self
            .alerts
            .file
            .clone()
            .unwrap_or_else(|| self.state_file.with_file_name("alerts.jsonl"));
        line(format!(
            "incidents: {}, closed ones kept {} days",
            self.incident_database().display(),
            self.incidents.retention_days
        ));
        line(format!(
            "read-only control socket: {}",
            match &self.readonly_group {
                Some(group) => format!("{} for group {group}", self.readonly_socket.display()),
                None => "none (no readonly_group)".into(),
            }
        ));
        line(format!(
            "alerts: {}{}",
            file.display(),
            match (&self.alerts.webhook, &self.alerts.syslog) {
                (Some(_), Some(_)) => ", a webhook and syslog",
                (Some(_), None) => ", and a webhook",
                (None, Some(_)) => ", and syslog",
                (None, None) => "",
            }
        ));
        if let Some(fleet) = &self.fleet {
            let scopes: Vec<&str> = fleet.publish.iter().map(|s| s.label()).collect();
            line(format!(
                "fleet: site {}, gateway {}, via {}; publishes {} decisions; blocks go to the {}, isolations to the {}",
                fleet.site,
                fleet.gateway_name(),
                fleet.servers.join(", "),
                scopes.join(", "),
                fleet.default_scope(crate::state::Kind::Block).label(),
                fleet.default_scope(crate::state::Kind::Isolation).label(),
            ));
        }
        for f in &self.feeds {
            line(format!(
                "feed {}: {} from {}, every {}",
                f.name,
                match f.action {
                    crate::feeds::Action::Block => "blocks its ranges",
                    crate::feeds::Action::Alert => "alerts on contact with its entries",
                },
                f.shown_source(),
                f.refresh_text()
            ));
        }
        out
    }

    /// What a feed may never block or flag: the inside (`internal`, the
    /// segments' own ranges by default) and the exempt ranges.
    pub fn feed_protected(&self) -> Vec<IpNet> {
        let mut ranges = self.detection.internal.clone();
        ranges.extend(self.exempt.iter().copied());
        ranges
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// 1-based: 0 is "in no segment" in the datapath.
    pub id: u32,
    pub name: String,
    pub cidrs: Vec<IpNet>,
    /// Gateway ports its hosts come in on (`RawSegment::ports`).
    pub ports: Vec<String>,
    pub switched: bool,
}

/// The segment whose longest range holds `addr`; with `own`, only a
/// segment's own ranges count, not a catch-all such as the internet's
/// 0.0.0.0/0.
pub fn segment_of(segments: &[Segment], addr: std::net::IpAddr, own: bool) -> Option<&str> {
    segments
        .iter()
        .flat_map(|s| s.cidrs.iter().map(move |c| (c, s.name.as_str())))
        .filter(|(c, _)| c.contains(&addr) && !(own && c.prefix_len() == 0))
        .max_by_key(|(c, _)| c.prefix_len())
        .map(|(_, name)| name)
}

/// The own ranges of the switched segments (catch-alls left out): the
/// addresses that are bound to MACs, for the bindings and for detection.
pub fn switched_ranges(segments: &[Segment]) -> Vec<IpNet> {
    segments
        .iter()
        .filter(|s| s.switched)
        .flat_map(|s| s.cidrs.iter().copied())
        .filter(|c| c.prefix_len() > 0)
        .collect()
}

/// The allow matrix: `allowed[(a, b)]` for segment ids a != b. Pairs are
/// symmetric: the datapath is stateless, so a reply must be allowed too.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SegmentPolicy {
    pub allowed: BTreeMap<(u32, u32), bool>,
}

impl SegmentPolicy {
    pub fn allows(&self, src: u32, dst: u32) -> bool {
        src == dst || self.allowed.get(&(src, dst)).copied().unwrap_or(false)
    }

    /// The datapath's row for `src`: bit `d` set when `src` may reach `d`.
    pub fn row(&self, src: u32) -> u64 {
        (0..MAX_SEGMENTS)
            .filter(|dst| self.allows(src, *dst))
            .fold(0u64, |row, dst| row | (1u64 << dst))
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        Ok(Config {
            source: Some(path.to_owned()),
            ..config
        })
    }

    /// The settings that differ in `new` and take a restart to change:
    /// everything but detection's (thresholds, allowlists, lists), the
    /// response rules and the retention, which a reload applies.
    pub fn needs_restart(&self, new: &Config) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut differ = |key: &'static str, same: bool| {
            if !same {
                keys.push(key);
            }
        };
        differ("interfaces", self.interfaces == new.interfaces);
        differ(
            "taps",
            self.taps == new.taps && self.tap_traffic == new.tap_traffic,
        );
        differ("xdp_mode", self.xdp_mode == new.xdp_mode);
        differ("mode", self.mode == new.mode);
        differ(
            "metrics_address",
            self.metrics_address == new.metrics_address,
        );
        differ(
            "control_socket",
            self.control_socket == new.control_socket
                && self.readonly_socket == new.readonly_socket
                && self.readonly_group == new.readonly_group,
        );
        differ("state_file", self.state_file == new.state_file);
        differ("pin_dir", self.pin_dir == new.pin_dir);
        differ("on_exit", self.on_exit == new.on_exit);
        differ("exempt", self.exempt == new.exempt);
        differ("segment", self.segments == new.segments);
        differ("policy", self.policy == new.policy);
        differ("anti_spoofing", self.anti_spoofing == new.anti_spoofing);
        differ("alerts", self.alerts == new.alerts);
        differ("fleet", self.fleet == new.fleet);
        differ(
            "incidents.database",
            self.incident_database() == new.incident_database(),
        );
        differ(
            "detection.enabled",
            self.detection.enabled == new.detection.enabled,
        );
        keys
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        raw.validate()
    }
}

fn parse_cidr(key: &str, text: &str) -> Result<IpNet, ConfigError> {
    crate::nets::parse(text).map_err(|problem| invalid(key, problem))
}

/// Deserializes a list of addresses or CIDRs as `parse_cidr` reads them
/// (a bare address is the host itself), for tables serde reads directly.
pub fn nets<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let texts: Vec<String> = serde::Deserialize::deserialize(d)?;
    texts
        .iter()
        .map(|t| {
            parse_cidr("", t).map_err(|e| match e {
                ConfigError::Invalid { problem, .. } => serde::de::Error::custom(problem),
                other => serde::de::Error::custom(other),
            })
        })
        .collect()
}

impl RawConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut seen_ifaces = HashSet::new();
        let listed = self
            .interfaces
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("interfaces[{i}]"), n));
        let tapped = self
            .taps
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("taps[{i}]"), n));
        for (key, name) in listed.chain(tapped) {
            if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ']) {
                return Err(invalid(key, format!("{name:?} is not an interface name")));
            }
            if !seen_ifaces.insert(name.as_str()) {
                return Err(invalid(
                    key,
                    format!("{name:?} is listed twice (an interface is inline or a tap, not both)"),
                ));
            }
        }
        if !self.taps.is_empty() && !self.detection.enabled {
            return Err(invalid(
                "taps",
                "taps only feed detection, which is off (detection.enabled = false)",
            ));
        }
        let metrics_text = self
            .metrics_address
            .unwrap_or_else(|| paths::DEFAULT_METRICS_ADDRESS.to_string());
        let metrics_address = metrics_text.parse().map_err(|_| {
            invalid(
                "metrics_address",
                format!("{metrics_text:?} is not an address:port such as 127.0.0.1:9464"),
            )
        })?;
        let exempt = self
            .exempt
            .iter()
            .enumerate()
            .map(|(i, text)| parse_cidr(&format!("exempt[{i}]"), text))
            .collect::<Result<Vec<_>, _>>()?;
        if exempt.len() > sensor_common::MAX_EXEMPT_RANGES as usize {
            return Err(invalid("exempt", "too many ranges"));
        }

        let segments = validate_segments(&self.segment, &self.interfaces)?;
        let policy = validate_policy(&self.policy, &segments)?;
        self.detection
            .validate()
            .map_err(|(key, problem)| invalid(key, problem))?;
        let names: Vec<String> = segments.iter().map(|s| s.name.clone()).collect();
        self.response
            .validate(&names)
            .map_err(|(key, problem)| invalid(key, problem))?;
        if let Some(url) = &self.alerts.webhook {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "alerts.webhook",
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        crate::feeds::validate(&self.feed).map_err(|(key, problem)| invalid(key, problem))?;
        if let Some(i) = self
            .feed
            .iter()
            .position(|f| f.action == crate::feeds::Action::Alert)
            .filter(|_| !self.detection.enabled)
        {
            return Err(invalid(
                format!("feed[{i}].action"),
                "an alert feed feeds detection, which is off (detection.enabled = false)",
            ));
        }
        if let Some(fleet) = &self.fleet {
            fleet
                .validate()
                .map_err(|(key, problem)| invalid(key, problem))?;
            for (i, f) in self.feed.iter().enumerate() {
                if let Some(scope) = f.share {
                    fleet
                        .publishes(scope)
                        .map_err(|problem| invalid(format!("feed[{i}].share"), problem))?;
                }
            }
        } else if let Some(i) = self.response.rules.iter().position(|r| r.scope.is_some()) {
            return Err(invalid(
                format!("response.rule[{i}].scope"),
                "a scope needs fleet mode ([fleet])",
            ));
        } else if let Some(i) = self
            .feed
            .iter()
            .position(|f| f.share.is_some() || f.shared_by.is_some())
        {
            return Err(invalid(
                format!("feed[{i}]"),
                "share and shared_by need fleet mode ([fleet])",
            ));
        }
        if self.incidents.retention_days == 0 {
            return Err(invalid(
                "incidents.retention_days",
                String::from("0 would forget every closed incident at once; it must be 1 or more"),
            ));
        }
        if self.readonly_group.as_deref() == Some("") {
            return Err(invalid(
                "readonly_group",
                String::from("empty: name a group, or leave the key out"),
            ));
        }
        let state_file: PathBuf = self
            .state_file
            .unwrap_or_else(|| paths::DEFAULT_STATE_FILE.into());
        let incidents = crate::store::StoreConfig {
            database: Some(
                self.incidents
                    .database
                    .unwrap_or_else(|| state_file.with_file_name("incidents.db")),
            ),
            ..self.incidents
        };
        Ok(Config {
            tap_traffic: self.tap_traffic.resolve(!self.interfaces.is_empty()),
            interfaces: self.interfaces,
            taps: self.taps,
            xdp_mode: self.xdp_mode,
            mode: self.mode,
            metrics_address,
            control_socket: self
                .control_socket
                .unwrap_or_else(|| paths::DEFAULT_CONTROL_SOCKET.into()),
            readonly_socket: self
                .readonly_socket
                .unwrap_or_else(|| paths::DEFAULT_READONLY_SOCKET.into()),
            readonly_group: self.readonly_group,
            state_file,
            incidents,
            pin_dir: self
                .pin_dir
                .unwrap_or_else(|| paths::DEFAULT_PIN_DIR.into()),
            on_exit: self.on_exit,
            exempt,
            detection: detection_config(self.detection, &segments),
            response: self.response,
            alerts: self.alerts,
            segments,
            policy,
            anti_spoofing: self.anti_spoofing,
            feeds: self.feed,
            fleet: self.fleet,
            source: None,
        })
    }
}

impl Config {
    /// The incident store's file (resolved by `RawConfig::resolve`).
    pub fn incident_database(&self) -> PathBuf {
        self.incidents
            .database
            .clone()
            .unwrap_or_else(|| self.state_file.with_file_name("incidents.db"))
    }

    /// What a start would refuse that only the machine can tell: interfaces
    /// that do not exist, intel lists that do not load, directories sensord
    /// could not write. One line each; empty when a start can go ahead.
    /// `sensord --check-config` prints them, and sensord checks them before
    /// it touches any interface, so a start that fails attaches nothing.
    pub fn preflight(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let ports = self.interfaces.iter().map(|n| ("interfaces", n));
        let taps = self.taps.iter().map(|n| ("taps", n));
        for (key, name) in ports.chain(taps) {
            if crate::datapath::if_index(name).is_err() {
                problems.push(format!(
                    "{key}: there is no interface {name:?} on this machine"
                ));
            }
        }
        if let Err(e) = crate::detect::intel::IntelLists::load(&self.detection.intel.files) {
            problems.push(format!("detection.intel.files: {e:#}"));
        }
        if let Err(e) = self.alerts.webhook_secret() {
            problems.push(e);
        }
        for (key, path) in self.fleet.iter().flat_map(|f| f.files()) {
            if let Err(e) = std::fs::metadata(path) {
                problems.push(format!("{key}: {}: {e}", path.display()));
            }
        }
        if let Some(Err(e)) = self.alerts.syslog.as_ref().map(|s| s.validate()) {
            problems.push(format!("alerts.syslog: {e}"));
        }
        let mut places = vec![
            ("state_file", self.state_file.clone()),
            ("control_socket", self.control_socket.clone()),
            ("incidents.database", self.incident_database()),
        ];
        if let Some(group) = &self.readonly_group {
            if let Err(e) = crate::control::group_id(group) {
                problems.push(format!("readonly_group: {e}"));
            }
            places.push(("readonly_socket", self.readonly_socket.clone()));
        }
        if let Some(file) = &self.alerts.file {
            places.push(("alerts.file", file.clone()));
        }
        for (key, path) in places {
            if let Some(problem) = unwritable_parent(&path) {
                problems.push(format!("{key}: {problem}"));
            }
        }
        problems
    }
}

/// Why the directory of `path` could not be written (or made), if so: the
/// nearest existing ancestor must be a directory this process may write.
fn unwritable_parent(path: &Path) -> Option<String> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty())?;
    let existing = parent.ancestors().find(|a| a.exists())?;
    if !existing.is_dir() {
        return Some(format!("{} is not a directory", existing.display()));
    }
    let c = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a valid NUL-terminated path.
    let writable = unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0;
    (!writable).then(|| format!("{} is not writable", existing.display()))
}

/// The detection settings; "internal" defaults to the segments' ranges
/// (all but catch-alls such as 0.0.0.0/0, which stand for the internet).
fn detection_config(
    mut detection: crate::detect::DetectionConfig,
    segments: &[Segment],
) -> crate::detect::DetectionConfig {
    if detection.internal.is_empty() {
        detection.internal = segments
            .iter()
            .flat_map(|s| s.cidrs.iter().copied())
            .filter(|c| c.prefix_len() > 0)
            .collect();
    }
    detection
}

fn validate_segments(raw: &[RawSegment], inline: &[String]) -> Result<Vec<Segment>, ConfigError> {
    if raw.len() >= MAX_SEGMENTS as usize {
        return Err(invalid(
            "segment",
            format!("at most {} segments", MAX_SEGMENTS - 1),
        ));
    }
    let mut names = HashSet::new();
    let mut owner_of: BTreeMap<IpNet, String> = BTreeMap::new();
    let mut port_of: BTreeMap<&str, &str> = BTreeMap::new();
    let mut segments = Vec::new();
    for (i, seg) in raw.iter().enumerate() {
        let key = format!("segment[{i}]");
        if seg.name.is_empty()
            || !seg
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                format!("{key}.name"),
                format!(
                    "{:?} is not a segment name (letters, digits, '-' and '_')",
                    seg.name
                ),
            ));
        }
        if !names.insert(seg.name.clone()) {
            return Err(invalid(
                format!("{key}.name"),
                format!("segment {:?} is defined twice", seg.name),
            ));
        }
        if seg.cidrs.is_empty() {
            return Err(invalid(
                format!("{key}.cidrs"),
                "a segment needs at least one CIDR",
            ));
        }
        let mut cidrs = Vec::new();
        for (j, text) in seg.cidrs.iter().enumerate() {
            let ckey = format!("{key}.cidrs[{j}]");
            let net = parse_cidr(&ckey, text)?;
            if let Some(other) = owner_of.insert(net, seg.name.clone()) {
                return Err(invalid(
                    ckey,
                    format!("{net} is already in segment {other:?}"),
                ));
            }
            cidrs.push(net);
        }
        for (j, port) in seg.ports.iter().enumerate() {
            let pkey = format!("{key}.ports[{j}]");
            if !inline.contains(port) {
                return Err(invalid(
                    pkey,
                    format!(
                        "{port:?} is not one of `interfaces` (a segment's ports are inline ports)"
                    ),
                ));
            }
            if let Some(other) = port_of.insert(port, &seg.name) {
                return Err(invalid(
                    pkey,
                    format!("{port:?} is already a port of segment {other:?}"),
                ));
            }
        }
        if seg.switched && seg.ports.is_empty() {
            return Err(invalid(
                format!("{key}.switched"),
                "a switched segment needs its `ports` (where its hosts' frames come in)",
            ));
        }
        segments.push(Segment {
            id: i as u32 + 1,
            name: seg.name.clone(),
            cidrs,
            ports: seg.ports.clone(),
            switched: seg.switched,
        });
    }
    Ok(segments)
}

fn validate_policy(raw: &RawPolicy, segments: &[Segment]) -> Result<SegmentPolicy, ConfigError> {
    let id_of = |key: &str, name: &str| {
        segments
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.id)
            .ok_or_else(|| invalid(key, format!("no segment is named {name:?}")))
    };
    let mut policy = SegmentPolicy::default();
    let default = raw.default == PolicyDefault::Allow;
    for a in segments {
        for b in segments {
            if a.id != b.id {
                policy.allowed.insert((a.id, b.id), default);
            }
        }
    }
    let rules = [("allow", &raw.allow, true), ("deny", &raw.deny, false)];
    for (list, pairs, allowed) in rules {
        for (i, [a, b]) in pairs.iter().enumerate() {
            let key = format!("policy.{list}[{i}]");
            let (a, b) = (id_of(&key, a)?, id_of(&key, b)?);
            if a == b {
                return Err(invalid(key, "a segment always reaches itself"));
            }
            policy.allowed.insert((a, b), allowed);
            policy.allowed.insert((b, a), allowed);
        }
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../docs/examples/sensord.toml");

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn feeds_are_checked_with_the_rest() {
        let base = "[[segment]]\nname = \"office\"\ncidrs = [\"10.10.0.0/16\"]\n";
        let feed = "[[feed]]\nname = \"drop\"\nurl = \"https://example.org/drop.txt\"\n";
        let cfg = Config::from_toml(&format!("{feed}{base}")).unwrap();
        assert_eq!(cfg.feeds[0].name, "drop");
        assert_eq!(cfg.feed_protected()[0].to_string(), "10.10.0.0/16");
        assert!(cfg
            .describe()
            .contains("feed drop: blocks its ranges from https://example.org/..."));
        let e = Config::from_toml(&format!("{feed}{feed}{base}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("names two feeds"), "{e}");
        let off = format!("[detection]\nenabled = false\n{feed}action = \"alert\"\n{base}");
        let e = Config::from_toml(&off).unwrap_err().to_string();
        assert!(e.starts_with("feed[0].action"), "{e}");
        // Sharing needs a fleet, and the right to publish in the scope.
        let shared = format!("{feed}share = \"fleet\"\n");
        let e = Config::from_toml(&format!("{shared}{base}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("need fleet mode"), "{e}");
        let fleet = "[fleet]\nservers = [\"tls://n:4222\"]\nsite = \"a\"\n";
        let e = Config::from_toml(&format!("{shared}{base}{fleet}"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("feed[0].share"), "{e}");
        let site = format!("{feed}share = \"site\"\n{base}{fleet}");
        assert!(Config::from_toml(&site).is_ok());
    }

    #[test]
    fn detection_internal_defaults_to_the_segments() {
        let cfg = Config::from_toml(EXAMPLE).unwrap();
        let internal: Vec<String> = cfg
            .detection
            .internal
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(internal, ["10.10.0.0/16", "fd00:10::/48", "10.20.0.0/16"]);
        let e = err("[detection.scan]\nports = \"many\"");
        assert!(e.contains("ports"), "{e}");
        let e = err("[detection]\nsensitivity = 3");
        assert!(e.contains("sensitivity"), "{e}");
    }

    #[test]
    fn response_and_alert_errors_name_the_key() {
        let e = err("[[response.rule]]\nttl = \"soon\"");
        assert!(e.starts_with("response.rule[0].ttl:"), "{e}");
        let e = err("[[response.rule]]\nsegments = [\"dmz\"]");
        assert!(
            e.contains("response.rule[0].segments") && e.contains("dmz"),
            "{e}"
        );
        let e = err("[[response.rule]]\naction = \"nuke\"");
        assert!(e.contains("nuke"), "{e}");
        let e = err("[alerts]\nwebhook = \"ftp://x\"");
        assert!(e.starts_with("alerts.webhook:"), "{e}");
        let e = err("[detection.scan]\nports = 0");
        assert!(e.starts_with("detection.scan.ports:"), "{e}");
        let e = err("[detection.beacon]\nmin_score = 0.0");
        assert!(e.starts_with("detection.beacon.min_score:"), "{e}");
        let e = err("[detection.exfiltration]\nmin_pcr = 2.0");
        assert!(e.starts_with("detection.exfiltration.min_pcr:"), "{e}");
        let e = err("[[response.rule]]\nttl = \"99999999d\"");
        assert!(e.contains("ten years"), "{e}");
        let cfg = Config::from_toml("").unwrap();
        assert!(cfg.detection.enabled, "detection is on by default");
        assert_eq!(cfg.response.rules.len(), 1, "one default rule");
    }

    #[test]
    fn documented_example_parses() {
        let cfg = Config::from_toml(EXAMPLE).expect("docs/examples/sensord.toml must be valid");
        assert_eq!(cfg.segments.len(), 3);
        let id = |n: &str| cfg.segments.iter().find(|s| s.name == n).unwrap().id;
        assert!(cfg.policy.allows(id("office"), id("internet")));
        assert!(!cfg.policy.allows(id("records"), id("internet")));
        assert!(!cfg.policy.allows(id("internet"), id("records")));
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let cfg = Config::from_toml("").unwrap();
        assert_eq!(cfg.mode, Mode::Enforce);
        assert_eq!(cfg.on_exit, OnExit::Keep);
        assert_eq!(cfg.pin_dir, PathBuf::from(paths::DEFAULT_PIN_DIR));
        assert_eq!(
            cfg.metrics_address.to_string(),
            paths::DEFAULT_METRICS_ADDRESS
        );
        assert!(cfg.interfaces.is_empty());
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        assert!(err("interface = [\"eth0\"]").contains("interface"));
    }

    #[test]
    fn bad_cidr_names_the_key() {
        let e = err("[[segment]]\nname = \"a\"\ncidrs = [\"10.0.0.0/33\"]");
        assert!(e.starts_with("segment[0].cidrs[0]:"), "{e}");
        let e = err("exempt = [\"10.0.0.1/24\"]");
        assert!(e.contains("host bits") && e.contains("10.0.0.0/24"), "{e}");
    }

    #[test]
    fn bare_address_is_a_host_range() {
        let cfg = Config::from_toml("exempt = [\"10.0.0.53\", \"2001:db8::53\"]").unwrap();
        assert_eq!(cfg.exempt[0].to_string(), "10.0.0.53/32");
        assert_eq!(cfg.exempt[1].to_string(), "2001:db8::53/128");
        // Every list of addresses reads them so (nets::parse).
        let cfg = Config::from_toml(
            "[detection]\ninternal = [\"10.0.0.0/8\", \"192.0.2.7\"]\n\
             [[detection.allow]]\nhosts = [\"10.0.0.9\"]\n\
             [detection.roles]\ndomain_controllers = [\"10.0.0.2\"]\n\
             [response]\nnever_isolate = [\"10.0.0.1\"]\n",
        )
        .unwrap();
        assert_eq!(cfg.detection.internal[1].to_string(), "192.0.2.7/32");
        assert_eq!(cfg.detection.allow[0].hosts[0].to_string(), "10.0.0.9/32");
        assert_eq!(cfg.response.never_isolate[0].to_string(), "10.0.0.1/32");
        let e = err("[response]\nnever_isolate = [\"10.0.0.1/24\"]");
        assert!(e.contains("host bits"), "{e}");
    }

    #[test]
    fn a_reload_names_what_takes_a_restart() {
        let old = Config::from_toml("interfaces = []\n").unwrap();
        let new = Config::from_toml(
            "mode = \"monitor\"\non_exit = \"remove\"\n[detection.scan]\nports = 30\n\
             [response]\nmode = \"alert_only\"\n",
        )
        .unwrap();
        assert_eq!(old.needs_restart(&new), vec!["mode", "on_exit"]);
        assert!(old.needs_restart(&old.clone()).is_empty());
    }

    #[test]
    fn policy_must_name_known_segments() {
        let e = err("[[segment]]\nname = \"a\"\ncidrs = [\"10.0.0.0/8\"]\n[policy]\nallow = [[\"a\", \"b\"]]");
        assert!(
            e.starts_with("policy.allow[0]:") && e.contains("\"b\""),
            "{e}"
        );
    }

    #[test]
    fn same_cidr_in_two_segments_is_refused() {
        let e = err("[[segment]]\nname = \"a\"\ncidrs = [\"10.0.0.0/8\"]\n[[segment]]\nname = \"b\"\ncidrs = [\"10.0.0.0/8\"]");
        assert!(e.starts_with("segment[1].cidrs[0]:"), "{e}");
    }

    #[test]
    fn duplicate_interfaces_and_names_are_refused() {
        assert!(err("interfaces = [\"eth0\", \"eth0\"]").starts_with("interfaces[1]"));
        assert!(err("interfaces = [\"a/b\"]").starts_with("interfaces[0]"));
        let e = err("[[segment]]\nname = \"a\"\ncidrs = [\"10.0.0.0/8\"]\n[[segment]]\nname = \"a\"\ncidrs = [\"11.0.0.0/8\"]");
        assert!(e.starts_with("segment[1].name"), "{e}");
    }

    #[test]
    fn taps_are_checked_and_their_traffic_follows_the_inline_interfaces() {
        let e = err("interfaces = [\"eth0\"]\ntaps = [\"eth0\"]");
        assert!(
            e.starts_with("taps[0]") && e.contains("inline or a tap"),
            "{e}"
        );
        assert!(err("taps = [\"\"]").starts_with("taps[0]"));
        let e = err("taps = [\"span0\"]\n[detection]\nenabled = false");
        assert!(e.starts_with("taps:"), "{e}");
        let tap_only = Config::from_toml("taps = [\"span0\"]").unwrap();
        assert_eq!(tap_only.tap_traffic, crate::tap::TapTraffic::All);
        let both = Config::from_toml("interfaces = [\"eth0\"]\ntaps = [\"span0\"]").unwrap();
        assert_eq!(both.tap_traffic, crate::tap::TapTraffic::EastWest);
        let forced = Config::from_toml("interfaces = [\"eth0\"]\ntap_traffic = \"all\"").unwrap();
        assert_eq!(forced.tap_traffic, crate::tap::TapTraffic::All);
        assert!(err("tap_traffic = \"north-south\"").contains("tap_traffic"));
    }

    #[test]
    fn bad_enum_and_address_values_are_refused() {
        assert!(err("mode = \"block\"").contains("mode"));
        assert!(err("metrics_address = \"localhost\"").starts_with("metrics_address:"));
    }

    #[test]
    fn a_rule_naming_no_detector_is_refused_with_the_closest_name() {
        let e = err("[response]\n[[response.rule]]\ndetectors = [\"beecon\"]\n");
        assert!(e.starts_with("response.rule[0].detectors[0]:"), "{e}");
        assert!(e.contains("did you mean \"beacon\""), "{e}");
        let e = err("[detection]\n[[detection.allow]]\ndetectors = [\"scna.*\"]\n");
        assert!(e.starts_with("detection.allow[0].detectors[0]:"), "{e}");
    }

    #[test]
    fn check_config_describes_the_policy_in_force() {
        let text = "interfaces = []\nmode = \"monitor\"\n[[segment]]\nname = \"a\"\ncidrs = [\"10.0.0.0/8\"]\n[[segment]]\nname = \"b\"\ncidrs = [\"11.0.0.0/8\"]\n[policy]\nallow = [[\"a\", \"b\"]]\n[response]\n[[response.rule]]\ndetectors = [\"scan.*\"]\naction = \"alert\"\n";
        let described = Config::from_toml(text).unwrap().describe();
        for expected in [
            "mode: monitor",
            "policy: a <-> b: allowed",
            "response rule 0: scan.* at score 70+ in any segment: alert for 1h",
            "alerts: /var/lib/sensor/alerts.jsonl",
        ] {
            assert!(
                described.contains(expected),
                "{expected:?} in:\n{described}"
            );
        }
    }

    #[test]
    fn default_allow_with_deny_pairs() {
        let text = "[[segment]]\nname = \"a\"\ncidrs = [\"10.0.0.0/8\"]\n[[segment]]\nname = \"b\"\ncidrs = [\"11.0.0.0/8\"]\n[[segment]]\nname = \"c\"\ncidrs = [\"12.0.0.0/8\"]\n[policy]\ndefault = \"allow\"\ndeny = [[\"a\", \"c\"]]";
        let cfg = Config::from_toml(text).unwrap();
        assert!(cfg.policy.allows(1, 2));
        assert!(!cfg.policy.allows(1, 3) && !cfg.policy.allows(3, 1));
        // Row bits: segment 1 reaches itself and 2, not 3.
        assert_eq!(cfg.policy.row(1) & 0b1110, 0b0110);
    }
}
