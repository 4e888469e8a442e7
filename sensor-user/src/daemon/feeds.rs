//! sensord's side of the threat feeds: opening them at start, refreshing
//! them on schedule (fetched and read off the lock, applied under it, the
//! copy written after), the operators' requests, and reloads.

use std::time::Duration;

use log::{info, warn};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{Sensor, Shared};
use crate::{
    clock,
    config::Config,
    datapath::Maps,
    enforcer::Enforcer,
    feeds::{self, cache, Action, FeedConfig, Feeds, Outcome, Ranges, Refreshed},
    fleet::{
        client::FleetClient,
        shared_feeds::{feed_subject, subjects_to_read},
        Scope,
    },
    metrics::{FeedFigures, Metrics},
    store::AuditRecord,
};

/// How often the schedule is looked at.
const FEED_TICK: Duration = Duration::from_secs(1);

/// Opens the feeds' cached copies and the enforcer with them; feeds no
/// longer configured are retired (their ranges lifted, their copy
/// removed), with a line each.
pub fn open(
    maps: &mut Maps,
    config: &Config,
    metrics: &Metrics,
) -> anyhow::Result<(Feeds, Enforcer)> {
    let dir = Feeds::dir_for(&config.state_file);
    let opened = Feeds::open(&dir, &config.feeds, &config.feed_protected());
    let loaded: usize = opened.ranges.iter().map(|(_, r)| r.len()).sum();
    let mut enforcer = Enforcer::open(maps, &config.state_file, opened.ranges)?;
    if loaded > 0 {
        info!(
            "feeds: {loaded} ranges re-applied from the cached copies in {}",
            dir.display()
        );
    }
    for name in opened.orphans {
        let lifted = enforcer.retire_feed(maps, &name).map(|d| d.removed.len());
        match lifted {
            Ok(n) => warn!("feed {name} is no longer configured: retired, {n} ranges lifted"),
            Err(e) => warn!("feed {name} is no longer configured; retiring it failed: {e}"),
        }
        cache::remove(&dir, &name);
    }
    for name in opened.feeds.names() {
        metrics.feed_configured(&name);
    }
    Ok((opened.feeds, enforcer))
}

impl Sensor {
    /// Entries a feed has in force.
    fn feed_entries(&self, name: &str) -> usize {
        match self.feeds.feeds.get(name) {
            Some(f) if f.config.action == Action::Alert => f.intel.as_ref().map_or(0, |e| e.len()),
            _ => self.enforcer.feed(name).map_or(0, Ranges::len),
        }
    }

    pub(super) fn feed_figures(&self) -> Vec<FeedFigures> {
        self.feeds
            .feeds
            .values()
            .map(|f| FeedFigures {
                name: f.config.name.clone(),
                entries: self.feed_entries(&f.config.name),
                skipped: f.meta.skipped.count,
                checked: f.meta.checked,
                updated: f.meta.updated,
                retired: f.meta.retired,
            })
            .collect()
    }

    /// `sensorctl feeds`.
    pub(super) fn feeds_status(&self) -> Value {
        json!(self
            .feeds
            .feeds
            .values()
            .map(|f| f.status(self.feed_entries(&f.config.name)))
            .collect::<Vec<_>>())
    }

    /// Loads the intel lists afresh: the configured files and the alert
    /// feeds. On an error the lists in force stay.
    pub(super) fn refresh_intel(&mut self) -> Result<usize, String> {
        let Some(detection) = self.detection.as_mut() else {
            return Ok(0);
        };
        let loaded = crate::detect::intel::IntelLists::load(&self.config.detection.intel.files);
        let result = if loaded.is_ok() { "ok" } else { "failed" };
        self.metrics
            .intel_reloads
            .with_label_values(&[result])
            .inc();
        let mut lists = loaded.map_err(|e| format!("{e:#} (the previous lists stay in force)"))?;
        for entries in self.feeds.intel() {
            lists.add(entries);
        }
        let entries = lists.entries;
        detection.engine.intel.set_lists(lists);
        Ok(entries)
    }

    /// Applies a refresh's outcome to feed `name`; returns the copy to
    /// write (the record, and the text of a new version), if any.
    fn apply_feed(
        &mut self,
        name: &str,
        outcome: Outcome,
    ) -> Option<(cache::Meta, Option<String>)> {
        let feed = self.feeds.feeds.get_mut(name)?;
        feed.running = false;
        feed.attempts += 1;
        if feed.meta.retired {
            return None;
        }
        let config = feed.config.clone();
        let (result, error, text) = match outcome {
            Outcome::Unchanged => (Refreshed::Unchanged, None, None),
            Outcome::Failed(e) => (Refreshed::Failed, Some(e), None),
            Outcome::Changed {
                mut entries,
                text,
                validators,
                took,
            } => {
                let applying = std::time::Instant::now();
                let applied = match config.action {
                    Action::Block => {
                        let ranges = Ranges::new(std::mem::take(&mut entries.nets));
                        let maps = &mut self.datapath.maps;
                        self.enforcer
                            .set_feed(maps, name, ranges)
                            .map(|d| format!("+{} -{} ranges", d.added.len(), d.removed.len()))
                            .map_err(|e| e.to_string())
                    }
                    Action::Alert => {
                        let count = entries.len();
                        let feed = self.feeds.feeds.get_mut(name)?;
                        let before = feed.intel.replace(entries.clone());
                        match self.refresh_intel() {
                            Ok(_) => Ok(format!("{count} entries")),
                            Err(e) => {
                                self.feeds.feeds.get_mut(name)?.intel = before;
                                Err(e)
                            }
                        }
                    }
                };
                match applied {
                    Ok(change) => {
                        let feed = self.feeds.feeds.get_mut(name)?;
                        feed.meta.validators = validators;
                        feed.unshared = feed.config.share.is_some();
                        feed.share_next = std::time::Instant::now();
                        feed.meta.format = Some(entries.format);
                        feed.meta.skipped = entries.skipped.clone();
                        let in_force = self.feed_entries(name);
                        info!(
                            "feed {name}: new version applied ({change}, {in_force} in force, {} skipped; fetched and read in {:.2} s, applied in {:.2} s)",
                            entries.skipped.count,
                            took.as_secs_f64(),
                            applying.elapsed().as_secs_f64()
                        );
                        self.audit_feed(
                            name,
                            "feed-update",
                            &format!("{change}, {in_force} in force"),
                            "ok",
                        );
                        (Refreshed::Updated, None, Some(text))
                    }
                    Err(e) => (Refreshed::Failed, Some(e), None),
                }
            }
        };
        let feed = self.feeds.feeds.get_mut(name)?;
        feeds::record(&mut feed.meta, &config, result, error.clone());
        feed.schedule(result != Refreshed::Failed);
        self.metrics
            .feed_refreshes
            .with_label_values(&[name, result.label()])
            .inc();
        if let Some(e) = &error {
            let feed = &self.feeds.feeds[name];
            let retry = feed
                .next_due
                .saturating_duration_since(std::time::Instant::now());
            warn!(
                "feed {name}: refresh failed: {e}; the version in force stays ({} entries), next try in {}",
                self.feed_entries(name),
                humantime::format_duration(Duration::from_secs(retry.as_secs()))
            );
            if feed.failures == 1 {
                self.audit_feed(name, "feed-update", "refresh", e);
            }
        }
        Some((self.feeds.feeds[name].meta.clone(), text))
    }

    fn audit_feed(&mut self, name: &str, action: &str, detail: &str, outcome: &str) {
        let record = AuditRecord {
            ts: clock::unix_now_ns(),
            actor: format!("feed:{name}"),
            action: action.into(),
            target: name.into(),
            detail: detail.into(),
            outcome: outcome.into(),
        };
        let written = self.store.audit(&[record]);
        self.count_store_write(written.is_ok());
    }

    /// `sensorctl feeds refresh [NAME]`: due now.
    pub(super) fn feed_refresh(&mut self, name: Option<&str>) -> Result<Value, String> {
        let names = match name {
            Some(n) => vec![self.feeds.get_mut(n)?.config.name.clone()],
            None => self.feeds.names(),
        };
        let mut asked = Vec::new();
        for n in &names {
            let feed = self.feeds.get_mut(n)?;
            if feed.meta.retired {
                if name.is_some() {
                    return Err(format!("feed {n} is retired (sensorctl feeds resume {n})"));
                }
                continue;
            }
            feed.next_due = std::time::Instant::now();
            asked.push(n.clone());
        }
        self.feeds.wake.notify_one();
        Ok(json!({"refreshing": asked}))
    }

    /// `sensorctl feeds retire NAME`: its entries leave at once, and it
    /// stays retired (across restarts) until resumed.
    pub(super) fn feed_retire(&mut self, name: &str) -> Result<Value, String> {
        let feed = self.feeds.get_mut(name)?;
        if feed.meta.retired {
            return Err(format!("feed {name} is already retired"));
        }
        let action = feed.config.action;
        let lifted = match action {
            Action::Block => self
                .enforcer
                .retire_feed(&mut self.datapath.maps, name)
                .map_err(|e| e.to_string())?
                .removed
                .len(),
            Action::Alert => {
                let count = self
                    .feeds
                    .get_mut(name)?
                    .intel
                    .take()
                    .map_or(0, |e| e.len());
                self.refresh_intel()?;
                count
            }
        };
        let feed = self.feeds.get_mut(name)?;
        feed.meta.retired = true;
        feed.running = false;
        // The copy goes: resuming fetches afresh.
        feed.meta.checked = None;
        feed.meta.validators = Default::default();
        let meta = feed.meta.clone();
        cache::save(&self.feeds.dir, name, &meta, Some(""))?;
        Ok(json!({"feed": name, "retired": true, "lifted": lifted}))
    }

    /// `sensorctl feeds resume NAME`: fetched again at once.
    pub(super) fn feed_resume(&mut self, name: &str) -> Result<Value, String> {
        let feed = self.feeds.get_mut(name)?;
        if !feed.meta.retired {
            return Err(format!("feed {name} is not retired"));
        }
        feed.meta.retired = false;
        feed.failures = 0;
        feed.next_due = std::time::Instant::now();
        let meta = feed.meta.clone();
        cache::save(&self.feeds.dir, name, &meta, None)?;
        self.feeds.wake.notify_one();
        Ok(json!({"feed": name, "retired": false}))
    }

    /// A reload's new `[[feed]]` tables: new feeds are fetched at once,
    /// removed ones retired and forgotten, and a feed whose source, format
    /// or action changed is fetched afresh (a changed action first lifts
    /// what the old one applied).
    pub(super) fn reconfigure_feeds(&mut self, new: &[FeedConfig]) -> Result<(), String> {
        let removed: Vec<String> = self
            .feeds
            .names()
            .into_iter()
            .filter(|n| !new.iter().any(|f| &f.name == n))
            .collect();
        for name in removed {
            if let Some(feed) = self.feeds.feeds.get(&name) {
                if feed.config.action == Action::Block {
                    let lifted = self
                        .enforcer
                        .retire_feed(&mut self.datapath.maps, &name)
                        .map_err(|e| format!("feed {name}: {e}"))?;
                    info!(
                        "feed {name} removed from the configuration: {} ranges lifted",
                        lifted.removed.len()
                    );
                }
            }
            self.feeds.feeds.remove(&name);
            cache::remove(&self.feeds.dir, &name);
            self.metrics.feed_removed(&name);
        }
        let mut intel_changed = false;
        for config in new {
            match self.feeds.feeds.get_mut(&config.name) {
                Some(feed) if feed.config == *config => {}
                Some(feed) => {
                    let refetch = feed.config.url != config.url
                        || feed.config.file != config.file
                        || feed.config.shared_by != config.shared_by
                        || feed.config.format != config.format
                        || feed.config.action != config.action;
                    if feed.config.action != config.action {
                        match feed.config.action {
                            Action::Block => {
                                self.enforcer
                                    .retire_feed(&mut self.datapath.maps, &config.name)
                                    .map_err(|e| format!("feed {}: {e}", config.name))?;
                            }
                            Action::Alert => intel_changed = true,
                        }
                    }
                    let feed = self.feeds.feeds.get_mut(&config.name).expect("present");
                    if feed.config.action != config.action {
                        feed.intel = None;
                    }
                    feed.config = config.clone();
                    // (A version already shared is not sent again.)
                    feed.unshared = config.share.is_some();
                    if refetch {
                        feed.meta.validators = Default::default();
                        feed.meta.checked = None;
                        feed.next_due = std::time::Instant::now();
                    }
                }
                None => {
                    self.feeds
                        .feeds
                        .insert(config.name.clone(), feeds::Feed::new(config.clone()));
                    self.metrics.feed_configured(&config.name);
                }
            }
        }
        if intel_changed {
            self.refresh_intel()?;
        }
        self.config.feeds = new.to_vec();
        self.feeds.wake.notify_one();
        Ok(())
    }

    /// `sensorctl list --feed NAME`: the feed's ranges as entries.
    pub(super) fn list_feed(&self, name: &str) -> Result<Value, String> {
        let feed = self
            .feeds
            .feeds
            .get(name)
            .ok_or_else(|| format!("there is no feed {name:?} (sensorctl feeds lists them)"))?;
        let created = feed.meta.updated.unwrap_or(0);
        let ranges = self.enforcer.feed(name).cloned().unwrap_or_default();
        let maps = &self.datapath.maps;
        Ok(json!(ranges
            .iter()
            .map(|net| {
                let value = maps.get_blocked(net);
                json!({
                    "kind": "block",
                    "target": net,
                    "origin": format!("feed:{name}"),
                    "reason": format!("listed by feed {name}"),
                    "created": created,
                    "expires": null,
                    "hits": value.map_or(0, |v| v.hits),
                    "in_datapath": value.is_some(),
                })
            })
            .collect::<Vec<_>>()))
    }
}

/// Refreshes the feeds that are due, one at a time: fetched and read on a
/// blocking thread, applied under the lock, the copy written after.
pub(super) async fn feed_loop(sensor: Shared, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(FEED_TICK);
    let wake = sensor.lock().expect("sensor lock").feeds.wake.clone();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wake.notified() => {}
            _ = stop.changed() => return,
        }
        let (due, protected, fleet) = {
            let mut s = sensor.lock().expect("sensor lock");
            let fleet = s.fleet_feed_link();
            (
                s.feeds.take_due(fleet.is_some()),
                s.config.feed_protected(),
                fleet,
            )
        };
        for (config, have) in due {
            let name = config.name.clone();
            let protected = protected.clone();
            let started = std::time::Instant::now();
            let fetched = match (&config.shared_by, &fleet) {
                (Some(site), Some(link)) => {
                    let subjects = subjects_to_read(&link.site, site, &config.name);
                    Some(link.client.fetch_feed(&subjects, have.as_ref()).await)
                }
                _ => None,
            };
            let outcome = tokio::task::spawn_blocking(move || match fetched {
                Some(fetched) => feeds::read_fetched(&config, fetched, &protected, started),
                None => feeds::refresh(&config, have.as_ref(), &protected),
            })
            .await
            .unwrap_or_else(|e| Outcome::Failed(format!("the refresh panicked: {e}")));
            let (dir, copy) = {
                let mut s = sensor.lock().expect("sensor lock");
                (s.feeds.dir.clone(), s.apply_feed(&name, outcome))
            };
            let Some((meta, text)) = copy else { continue };
            let written = tokio::task::spawn_blocking(move || {
                let saved = cache::save(&dir, &name, &meta, text.as_deref());
                // A large version's text and reading are freed: give the
                // memory back (glibc keeps it in its arenas otherwise).
                // SAFETY: malloc_trim only releases free memory.
                unsafe { libc::malloc_trim(0) };
                saved.map_err(|e| (name, e))
            })
            .await;
            if let Ok(Err((name, e))) = written {
                warn!("feed {name}: writing its copy failed ({e}); a restart applies the previous copy");
            }
        }
        if let Some(link) = &fleet {
            share_feeds(&sensor, link).await;
        }
    }
}

/// What the feeds need of the fleet's connection.
pub(super) struct FeedLink {
    pub client: std::sync::Arc<FleetClient>,
    pub site: String,
    pub gateway: String,
}

/// How long a failed share waits before it is tried again.
const SHARE_RETRY: Duration = Duration::from_secs(5);

/// Sends each `share` feed's version in force to the fleet, if it has not
/// been sent (read from its applied copy, off the lock).
async fn share_feeds(sensor: &Shared, link: &FeedLink) {
    let (dir, pending) = {
        let s = sensor.lock().expect("sensor lock");
        let now = std::time::Instant::now();
        let pending: Vec<(String, Scope)> = s
            .feeds
            .feeds
            .values()
            .filter(|f| f.unshared && !f.meta.retired && f.share_next <= now)
            .filter_map(|f| f.config.share.map(|scope| (f.config.name.clone(), scope)))
            .collect();
        (s.feeds.dir.clone(), pending)
    };
    for (name, scope) in pending {
        let subject = feed_subject(scope, &link.site, &name);
        let copy = {
            let (dir, name) = (dir.clone(), name.clone());
            tokio::task::spawn_blocking(move || cache::load(&dir, &name)).await
        };
        let shared = match copy {
            Ok(Ok(Some((_, text)))) => link
                .client
                .share_feed(&subject, &link.gateway, text.as_bytes())
                .await
                .map_err(|e| e.to_string()),
            Ok(Ok(None)) => Err("no applied copy to share".into()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(format!("reading the copy panicked: {e}")),
        };
        let mut s = sensor.lock().expect("sensor lock");
        let Some(feed) = s.feeds.feeds.get_mut(&name) else {
            continue;
        };
        match shared {
            Ok(version) => {
                info!(
                    "feed {name}: version {} shared with the {} on {subject}",
                    &version[..12],
                    scope.label()
                );
                feed.unshared = false;
                feed.share_error = None;
            }
            Err(e) => {
                if feed.share_error.as_ref() != Some(&e) {
                    warn!(
                        "feed {name}: sharing it failed: {e}; retrying every {} s",
                        SHARE_RETRY.as_secs()
                    );
                }
                feed.share_error = Some(e);
                feed.share_next = std::time::Instant::now() + SHARE_RETRY;
            }
        }
    }
}
