//! Threat feeds: named lists operators subscribe to (`[[feed]]`), fetched
//! on a schedule and applied as one unit each.
//!
//! A feed's life: its text is fetched (`source`, conditional on the copy in
//! hand), read (`format`), cleared of what a feed must never do (`admit`),
//! and applied: a `block` feed's ranges go to the datapath through the
//! enforcer as a diff against its previous version; an `alert` feed's
//! entries join the intel lists detection watches. The applied text is then
//! cached under the state directory (`cache`), so a restart applies the
//! same feed at once, without the network, and asks the publisher only
//! whether it changed.

pub mod cache;
pub mod format;
pub mod ranges;
pub mod source;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use ranges::Ranges;

use self::{
    cache::Meta,
    format::{Entries, Format},
    source::{Fetched, Validators},
};

/// What a feed's entries are for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Its address ranges are dropped in the datapath.
    #[default]
    Block,
    /// Its addresses, domains and fingerprints join the intel lists:
    /// contact raises an incident, which the response rules act on.
    Alert,
}

/// `[[feed]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Names its metrics, its cached copy and its entries' origin.
    pub name: String,
    /// An http:// or https:// URL ...
    #[serde(default)]
    pub url: Option<String>,
    /// ... or a local file ...
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// ... or the version the fleet's site of this name shares under this
    /// feed's name (`share` there; docs/fleet.md).
    #[serde(default)]
    pub shared_by: Option<String>,
    /// Each new version fetched here is shared with the fleet, for its
    /// other gateways to take (`shared_by`): "site" or "fleet".
    #[serde(default)]
    pub share: Option<crate::fleet::Scope>,
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub action: Action,
    /// How often the publisher is asked for a newer version.
    /// (`default_refresh` when not given.)
    #[serde(default)]
    pub refresh: Option<String>,
}

/// A publisher is asked hourly; the fleet, whose check is one small
/// request, every minute.
fn default_refresh(shared: bool) -> &'static str {
    match shared {
        true => "1m",
        false => "1h",
    }
}

/// The shortest refresh: a feed is a list, not a stream.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// A failed refresh is tried again after this, doubling up to the refresh.
const RETRY_FIRST: Duration = Duration::from_secs(30);

/// Feed ranges wider than these are refused: no published block list holds
/// one, and a broken or hostile feed must not cut the gateway off from a
/// large part of the internet.
pub const WIDEST_V4: u8 = 8;
pub const WIDEST_V6: u8 = 12;

impl FeedConfig {
    /// The refresh period (checked by `validate`).
    pub fn refresh_every(&self) -> Duration {
        humantime::parse_duration(self.refresh_text()).unwrap_or(Duration::from_secs(3600))
    }

    /// The refresh period as configured, or its default.
    pub fn refresh_text(&self) -> &str {
        self.refresh
            .as_deref()
            .unwrap_or(default_refresh(self.shared_by.is_some()))
    }

    /// Where it comes from, as logs and `sensorctl feeds` show it (a URL
    /// without its path and query, which may carry a key).
    pub fn shown_source(&self) -> String {
        match (&self.url, &self.file, &self.shared_by) {
            (Some(url), _, _) => source::redact(url),
            (None, Some(file), _) => file.display().to_string(),
            (None, None, Some(site)) => format!("the fleet (shared by {site})"),
            (None, None, None) => String::new(),
        }
    }

    /// What identifies the source: a change of URL or file drops the
    /// validators of the old one.
    fn source_key(&self) -> String {
        match (&self.url, &self.file, &self.shared_by) {
            (Some(url), _, _) => url.clone(),
            (None, Some(file), _) => format!("file:{}", file.display()),
            (None, None, Some(site)) => format!("fleet:{site}"),
            (None, None, None) => String::new(),
        }
    }

    /// Checks one `[[feed]]` table; `(key, problem)` on error.
    pub fn validate(&self, i: usize) -> Result<(), (String, String)> {
        let key = |k: &str| format!("feed[{i}].{k}");
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && !self.name.starts_with('.');
        if !name_ok {
            return Err((
                key("name"),
                format!(
                    "{:?} is not a feed name: 1 to 64 letters, digits, '-', '_' or '.'",
                    self.name
                ),
            ));
        }
        let sources = [
            self.url.is_some(),
            self.file.is_some(),
            self.shared_by.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err((key("url"), "give one of url, file or shared_by".into()));
        }
        if let Some(site) = &self.shared_by {
            if let Some(problem) = crate::fleet::name_problem(site) {
                return Err((key("shared_by"), problem));
            }
            if self.share.is_some() {
                return Err((
                    key("share"),
                    "a feed taken from the fleet is not shared again: its site shares it".into(),
                ));
            }
        }
        if self.share == Some(crate::fleet::Scope::Gateway) {
            return Err((
                key("share"),
                "\"site\" or \"fleet\": a feed is shared with other gateways".into(),
            ));
        }
        match (&self.url, &self.file) {
            (Some(url), None) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err((
                    key("url"),
                    format!(
                        "{:?} is not an http:// or https:// URL",
                        source::redact(url)
                    ),
                ))
            }
            _ => {}
        }
        let every = humantime::parse_duration(self.refresh_text())
            .map_err(|e| (key("refresh"), format!("{:?}: {e}", self.refresh_text())))?;
        if every < MIN_REFRESH {
            return Err((key("refresh"), "must be 1s or more".into()));
        }
        Ok(())
    }
}

/// Checks the `[[feed]]` tables together: each valid, names distinct.
pub fn validate(feeds: &[FeedConfig]) -> Result<(), (String, String)> {
    for (i, feed) in feeds.iter().enumerate() {
        feed.validate(i)?;
        if feeds[..i].iter().any(|f| f.name == feed.name) {
            return Err((
                format!("feed[{i}].name"),
                format!("{:?} names two feeds", feed.name),
            ));
        }
    }
    Ok(())
}

/// What a range blocked by someone other than this gateway's operator (a
/// feed, another gateway of the fleet) must never be: wider than
/// `WIDEST_V4`/`WIDEST_V6`, or overlapping the inside (`protected`: the
/// internal and exempt ranges).
pub fn untrusted_range_problem(net: IpNet, protected: &[IpNet]) -> Option<String> {
    let widest = match net {
        IpNet::V4(_) => WIDEST_V4,
        IpNet::V6(_) => WIDEST_V6,
    };
    if net.prefix_len() < widest {
        Some(format!("{net} is wider than /{widest}"))
    } else {
        protected
            .iter()
            .find(|p| p.contains(&net) || net.contains(*p))
            .map(|p| format!("{net} overlaps {p}, an internal or exempt range"))
    }
}

/// Drops what a feed must never do, counting it in `skipped`: block or
/// flag the inside (`protected`: the internal and exempt ranges), or a
/// range wider than `WIDEST_V4`/`WIDEST_V6`.
pub fn admit(entries: &mut Entries, protected: &[IpNet]) {
    let skipped = &mut entries.skipped;
    entries.nets.retain(|net| {
        let Some(why) = untrusted_range_problem(*net, protected) else {
            return true;
        };
        skipped.count += 1;
        if skipped.first.len() < 5 {
            skipped.first.push(why);
        }
        false
    });
}

/// Reads a feed's text and clears it (`admit`).
pub fn read(text: &str, feed: &FeedConfig, protected: &[IpNet]) -> Result<Entries, String> {
    let mut entries = format::parse(text, feed.format).map_err(|e| e.to_string())?;
    admit(&mut entries, protected);
    if feed.action == Action::Block {
        let names = entries.domains.len() + entries.fingerprints.len();
        if names > 0 {
            entries.skipped.count += names;
            if entries.skipped.first.len() < 5 {
                entries.skipped.first.push(format!(
                    "{names} domain(s) or fingerprint(s): a block feed drops addresses; an alert feed watches for names"
                ));
            }
            entries.domains.clear();
            entries.fingerprints.clear();
        }
    }
    Ok(entries)
}

/// What the refresh of one feed came to, before it is applied.
pub enum Outcome {
    Unchanged,
    Changed {
        entries: Entries,
        text: String,
        validators: Validators,
        /// Fetching and reading it.
        took: Duration,
    },
    Failed(String),
}

/// Fetches and reads a feed (blocking: run it off the async runtime).
/// `have`: the validators of the copy in hand.
pub fn refresh(feed: &FeedConfig, have: Option<&Validators>, protected: &[IpNet]) -> Outcome {
    let started = Instant::now();
    let fetched = match (&feed.url, &feed.file) {
        (Some(url), _) => source::fetch_url(url, have),
        (None, Some(file)) => source::fetch_file(file, have),
        (None, None) => Err("no source".into()),
    };
    read_fetched(feed, fetched, protected, started)
}

/// Reads what was fetched for `feed` (a download, a file, or a version
/// from the fleet) since `started`.
pub fn read_fetched(
    feed: &FeedConfig,
    fetched: Result<Fetched, String>,
    protected: &[IpNet],
    started: Instant,
) -> Outcome {
    match fetched {
        Err(e) => Outcome::Failed(e),
        Ok(Fetched::Unchanged) => Outcome::Unchanged,
        Ok(Fetched::Changed { text, validators }) => match read(&text, feed, protected) {
            Ok(entries) if entries.is_empty() && !text.trim().is_empty() => {
                Outcome::Failed(format!(
                    "nothing usable in {} bytes ({} entries skipped{}); the previous version stays",
                    text.len(),
                    entries.skipped.count,
                    entries
                        .skipped
                        .first
                        .first()
                        .map(|f| format!(", first: {f}"))
                        .unwrap_or_default()
                ))
            }
            Ok(entries) => Outcome::Changed {
                entries,
                text,
                validators,
                took: started.elapsed(),
            },
            Err(e) => Outcome::Failed(format!("{e}; the previous version stays")),
        },
    }
}

/// One feed as sensord runs it.
#[derive(Debug)]
pub struct Feed {
    pub config: FeedConfig,
    pub meta: Meta,
    /// An alert feed's entries, for the intel lists (a block feed's
    /// ranges live in the enforcer).
    pub intel: Option<Entries>,
    pub next_due: Instant,
    pub failures: u32,
    /// A refresh is under way (fetched off the lock).
    pub running: bool,
    /// Refreshes tried since sensord started (`sensorctl feeds refresh`
    /// waits for the next).
    pub attempts: u64,
    /// With `share`: the version in force is still to be sent to the
    /// fleet; the last failure to send it, and when to try again.
    pub unshared: bool,
    pub share_error: Option<String>,
    pub share_next: Instant,
}

impl Feed {
    /// A feed due at once, with no copy in hand.
    pub fn new(config: FeedConfig) -> Feed {
        Feed {
            config,
            meta: Meta::default(),
            intel: None,
            next_due: Instant::now(),
            failures: 0,
            running: false,
            attempts: 0,
            unshared: false,
            share_error: None,
            share_next: Instant::now(),
        }
    }

    /// After an attempt: when to ask again.
    pub fn schedule(&mut self, ok: bool) {
        let every = self.config.refresh_every();
        let wait = if ok {
            self.failures = 0;
            every
        } else {
            self.failures = self.failures.saturating_add(1);
            RETRY_FIRST
                .saturating_mul(1 << (self.failures - 1).min(16))
                .min(every)
        };
        self.next_due = Instant::now() + wait;
    }

    /// The validators to send, if the copy in hand came from this source.
    pub fn validators(&self) -> Option<&Validators> {
        (self.meta.source == self.config.source_key() && self.meta.checked.is_some())
            .then_some(&self.meta.validators)
    }

    pub fn status(&self, applied: usize) -> Value {
        let now = Instant::now();
        json!({
            "name": self.config.name,
            "source": self.config.shown_source(),
            "action": self.config.action,
            "format": self.meta.format.unwrap_or(self.config.format).label(),
            "refresh": self.config.refresh_text(),
            "entries": applied,
            "skipped": self.meta.skipped,
            "checked": self.meta.checked,
            "updated": self.meta.updated,
            "attempted": self.meta.attempted,
            "error": self.meta.error,
            "retired": self.meta.retired,
            "attempts": self.attempts,
            "share": self.config.share,
            "share_pending": self.unshared,
            "share_error": self.share_error,
            "next_refresh_secs": (!self.meta.retired)
                .then(|| self.next_due.saturating_duration_since(now).as_secs()),
        })
    }
}

/// The configured feeds, by name.
#[derive(Debug, Default)]
pub struct Feeds {
    pub dir: PathBuf,
    pub feeds: BTreeMap<String, Feed>,
    /// Wakes the refresh loop when a feed becomes due out of schedule.
    pub wake: std::sync::Arc<tokio::sync::Notify>,
}

/// What `Feeds::open` found in the cache.
pub struct Opened {
    pub feeds: Feeds,
    /// The block feeds' ranges as last applied, for `Enforcer::open`.
    pub ranges: Vec<(String, Ranges)>,
    /// Cached feeds no longer configured: applied at start (so their
    /// ranges are not adopted), then retired.
    pub orphans: Vec<String>,
}

impl Feeds {
    /// The feeds' directory beside the state file.
    pub fn dir_for(state_file: &Path) -> PathBuf {
        state_file.with_file_name("feeds")
    }

    /// Reads every cached feed: the configured ones (retired ones stay
    /// out) and the orphans. A cached copy that cannot be read is said
    /// and skipped: the feed is fetched again.
    pub fn open(dir: &Path, configs: &[FeedConfig], protected: &[IpNet]) -> Opened {
        let mut feeds = Feeds {
            dir: dir.to_owned(),
            ..Default::default()
        };
        let mut ranges = Vec::new();
        for config in configs {
            let mut feed = Feed::new(config.clone());
            match cache::load(dir, &config.name) {
                Ok(Some((meta, text))) => {
                    feed.meta = meta;
                    if !feed.meta.retired && feed.meta.source == config.source_key() {
                        match read(&text, config, protected) {
                            Ok(entries) => {
                                // Shared again if the fleet lost it (a
                                // version already there is not resent).
                                feed.unshared = config.share.is_some();
                                let due = feed.meta.checked.map_or(0, |c| {
                                    (c + config.refresh_every().as_secs())
                                        .saturating_sub(crate::clock::unix_now())
                                });
                                feed.next_due = Instant::now() + Duration::from_secs(due);
                                match config.action {
                                    Action::Block => ranges
                                        .push((config.name.clone(), Ranges::new(entries.nets))),
                                    Action::Alert => feed.intel = Some(entries),
                                }
                            }
                            Err(e) => log::warn!(
                                "feed {}: cached copy unreadable ({e}); fetched again",
                                config.name
                            ),
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => log::warn!("feed {}: {e}; fetched again", config.name),
            }
            feeds.feeds.insert(config.name.clone(), feed);
        }
        let mut orphans = Vec::new();
        for name in cache::names(dir) {
            if feeds.feeds.contains_key(&name) {
                continue;
            }
            if let Ok(Some((meta, text))) = cache::load(dir, &name) {
                let as_block = FeedConfig {
                    name: name.clone(),
                    url: None,
                    file: None,
                    shared_by: None,
                    share: None,
                    format: meta.format.unwrap_or_default(),
                    action: Action::Block,
                    refresh: None,
                };
                if let (false, Ok(entries)) = (meta.retired, read(&text, &as_block, protected)) {
                    ranges.push((name.clone(), Ranges::new(entries.nets)));
                }
            }
            orphans.push(name);
        }
        Opened {
            feeds,
            ranges,
            orphans,
        }
    }

    pub fn get_mut(&mut self, name: &str) -> Result<&mut Feed, String> {
        self.feeds
            .get_mut(name)
            .ok_or_else(|| format!("there is no feed {name:?} (sensorctl feeds lists them)"))
    }

    /// Feeds due for a refresh now, marked as running.
    /// `fleet_connected`: a feed taken from the fleet waits for the
    /// connection rather than failing.
    pub fn take_due(&mut self, fleet_connected: bool) -> Vec<(FeedConfig, Option<Validators>)> {
        let now = Instant::now();
        self.feeds
            .values_mut()
            .filter(|f| !f.meta.retired && !f.running && f.next_due <= now)
            .filter(|f| fleet_connected || f.config.shared_by.is_none())
            .map(|f| {
                f.running = true;
                (f.config.clone(), f.validators().cloned())
            })
            .collect()
    }

    /// The alert feeds' entries, for the intel lists.
    pub fn intel(&self) -> impl Iterator<Item = &Entries> {
        self.feeds.values().filter_map(|f| f.intel.as_ref())
    }

    /// Names of the configured feeds.
    pub fn names(&self) -> Vec<String> {
        self.feeds.keys().cloned().collect()
    }

    /// Writes a feed's record (and, with `text`, its applied copy).
    pub fn save(&self, name: &str, text: Option<&str>) -> Result<(), String> {
        let feed = self.feeds.get(name).ok_or("no such feed")?;
        cache::save(&self.dir, name, &feed.meta, text)
    }
}

/// What a feed outcome did, for logs, metrics and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    Updated,
    Unchanged,
    Failed,
}

impl Refreshed {
    pub fn label(self) -> &'static str {
        match self {
            Refreshed::Updated => "updated",
            Refreshed::Unchanged => "unchanged",
            Refreshed::Failed => "failed",
        }
    }

    pub const ALL: [Refreshed; 3] = [Refreshed::Updated, Refreshed::Unchanged, Refreshed::Failed];
}

/// Stamps a feed's record after an attempt.
pub fn record(meta: &mut Meta, feed: &FeedConfig, outcome: Refreshed, error: Option<String>) {
    let now = crate::clock::unix_now();
    meta.attempted = Some(now);
    meta.source = feed.source_key();
    match outcome {
        Refreshed::Failed => meta.error = error,
        Refreshed::Unchanged => {
            meta.checked = Some(now);
            meta.error = None;
        }
        Refreshed::Updated => {
            meta.checked = Some(now);
            meta.updated = Some(now);
            meta.error = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(extra: &str) -> FeedConfig {
        toml::from_str(&format!("name = \"drop\"\n{extra}")).unwrap()
    }

    #[test]
    fn a_feed_names_one_source_and_a_sane_refresh() {
        assert!(feed("url = \"https://example.org/drop.txt\"")
            .validate(0)
            .is_ok());
        let e = feed("").validate(0).unwrap_err();
        assert_eq!(e.0, "feed[0].url");
        let e = feed("url = \"ftp://x\"").validate(0).unwrap_err();
        assert!(e.1.contains("not an http"), "{e:?}");
        let e = feed("file = \"/x\"\nrefresh = \"soon\"")
            .validate(0)
            .unwrap_err();
        assert_eq!(e.0, "feed[0].refresh");
        let mut bad = feed("file = \"/x\"");
        bad.name = "../etc".into();
        assert!(bad.validate(0).is_err());
        let twice = [feed("file = \"/x\""), feed("file = \"/y\"")];
        assert!(validate(&twice).unwrap_err().1.contains("names two feeds"));
    }

    #[test]
    fn a_feed_from_the_fleet_names_its_site_and_is_not_shared_again() {
        let taken = feed("shared_by = \"pref\"");
        assert!(taken.validate(0).is_ok());
        assert_eq!(taken.refresh_every(), Duration::from_secs(60));
        assert_eq!(taken.shown_source(), "the fleet (shared by pref)");
        let both = feed("url = \"https://x/y\"\nshared_by = \"pref\"");
        assert!(both.validate(0).unwrap_err().1.contains("one of"));
        let dotted = feed("shared_by = \"a.b\"").validate(0).unwrap_err();
        assert_eq!(dotted.0, "feed[0].shared_by");
        let again = feed("shared_by = \"pref\"\nshare = \"fleet\"");
        assert_eq!(again.validate(0).unwrap_err().0, "feed[0].share");
        let shared = feed("file = \"/x\"\nshare = \"fleet\"");
        assert!(shared.validate(0).is_ok());
        assert_eq!(shared.refresh_every(), Duration::from_secs(3600));
        let alone = feed("file = \"/x\"\nshare = \"gateway\"").validate(0);
        assert_eq!(alone.unwrap_err().0, "feed[0].share");
    }

    #[test]
    fn a_feed_never_blocks_the_inside_or_half_the_internet() {
        let internal: Vec<IpNet> = vec!["10.10.0.0/16".parse().unwrap()];
        let text = "10.0.0.0/8\n10.10.5.0/24\n64.0.0.0/2\n198.51.100.0/24\nevil.example\n";
        let e = read(text, &feed("file = \"/x\""), &internal).unwrap();
        let nets: Vec<String> = e.nets.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["198.51.100.0/24"]);
        assert!(e.domains.is_empty(), "a block feed holds no names");
        assert_eq!(e.skipped.count, 4, "{:?}", e.skipped);
        let alert = read(text, &feed("file = \"/x\"\naction = \"alert\""), &internal).unwrap();
        assert_eq!(alert.domains, ["evil.example"]);
    }

    #[test]
    fn failures_retry_sooner_than_the_refresh() {
        let mut f = Feed::new(feed("file = \"/x\"\nrefresh = \"1h\""));
        f.schedule(false);
        let wait = f.next_due - Instant::now();
        assert!(wait <= RETRY_FIRST && wait > RETRY_FIRST / 2, "{wait:?}");
        for _ in 0..20 {
            f.schedule(false);
        }
        assert!(f.next_due - Instant::now() <= Duration::from_secs(3600));
        f.schedule(true);
        assert_eq!(f.failures, 0);
    }
}
