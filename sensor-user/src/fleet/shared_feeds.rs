//! Threat feeds fetched once and shared as a unit (docs/fleet.md, "Shared
//! feeds").
//!
//! The gateway whose `[[feed]]` has `share` sends each version it applied
//! to the `SENSOR_FEEDS` stream, on `sensor.feeds.<scope>.<site>.<feed>`,
//! in chunks (a NATS message is at most 1 MiB by default; a feed up to
//! 256 MiB). Every chunk names the version (the SHA-256 of the whole
//! text) and its place (`3/7`); the first also rolls the subject up
//! (`Nats-Rollup: sub`), so the stream keeps each feed's latest version
//! only. The servers' permissions let a site write its own subjects only,
//! and fleet-wide ones only if it may decide for the fleet.
//!
//! A gateway whose `[[feed]]` names the sharing site (`shared_by`) asks
//! for the last chunk (one small request: is there a new version?), then
//! reads the version whole, checks it (every chunk, in order, and the
//! digest) and applies it as it would a download: its own checks decide
//! what it takes.

use async_nats::{jetstream, HeaderMap};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{
    client::{FleetClient, FleetError, REQUEST_TIMEOUT},
    Scope,
};
use crate::feeds::source::{Fetched, Validators, MAX_BODY};

pub const FEEDS: &str = "SENSOR_FEEDS";
pub const FEED_SUBJECTS: &str = "sensor.feeds.>";

/// A chunk's payload: half the servers' default largest message.
const CHUNK: usize = 512 * 1024;
/// Chunks a version may have: what `MAX_BODY` needs.
const MAX_CHUNKS: usize = (MAX_BODY as usize).div_ceil(CHUNK);

const VERSION: &str = "Sensor-Feed-Version";
const PART: &str = "Sensor-Feed-Chunk";
const GATEWAY: &str = "Sensor-Feed-Gateway";

/// Where `site` shares feed `name` in `scope`.
pub fn feed_subject(scope: Scope, site: &str, name: &str) -> String {
    format!("sensor.feeds.{}.{site}.{name}", scope.label())
}

/// Where a gateway of `own_site` looks for feed `name` shared by `site`:
/// its own site's versions are shared in either scope; another site's
/// reach it only fleet-wide.
pub fn subjects_to_read(own_site: &str, site: &str, name: &str) -> Vec<String> {
    let mut subjects = vec![feed_subject(Scope::Fleet, site, name)];
    if own_site == site {
        subjects.push(feed_subject(Scope::Site, site, name));
    }
    subjects
}

/// A version's name: the SHA-256 of its text, in hex.
pub fn version_of(text: &[u8]) -> String {
    Sha256::digest(text)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A chunk's place, `i/n` (1-based), when it is well formed and bounded.
fn parse_part(text: &str) -> Option<(usize, usize)> {
    let (i, n) = text.split_once('/')?;
    let (i, n) = (i.parse().ok()?, n.parse().ok()?);
    (1..=n).contains(&i).then_some(())?;
    (n <= MAX_CHUNKS).then_some((i, n))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.as_str().to_string())
}

/// What the last chunk on a subject says.
struct Latest {
    subject: String,
    sequence: u64,
    version: String,
    part: (usize, usize),
}

impl FleetClient {
    async fn feeds_stream(&self) -> Result<jetstream::stream::Stream, FleetError> {
        self.js
            .get_stream(FEEDS)
            .await
            .map_err(|e| FleetError::Nats {
                what: "opening the feeds stream".into(),
                message: format!("{e} (create it with `sensorctl fleet init`, docs/fleet.md)"),
            })
    }

    /// The last chunk on `subject`, if any.
    async fn latest_chunk(
        &self,
        stream: &jetstream::stream::Stream,
        subject: &str,
    ) -> Result<Option<Latest>, FleetError> {
        use jetstream::stream::LastRawMessageErrorKind;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Some(Latest {
                subject: subject.to_string(),
                sequence: m.sequence,
                version: header(&m.headers, VERSION).unwrap_or_default(),
                part: header(&m.headers, PART)
                    .as_deref()
                    .and_then(parse_part)
                    .unwrap_or((0, 0)),
            })),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(FleetError::Nats {
                what: format!("reading {subject}"),
                message: e.to_string(),
            }),
        }
    }

    /// Shares `text` as the version of the feed on `subject`, unless that
    /// version is already the one there. Returns the version.
    pub async fn share_feed(
        &self,
        subject: &str,
        gateway: &str,
        text: &[u8],
    ) -> Result<String, FleetError> {
        let version = version_of(text);
        let stream = self.feeds_stream().await?;
        let there = self.latest_chunk(&stream, subject).await?;
        if there.is_some_and(|l| l.version == version && l.part.0 == l.part.1) {
            return Ok(version);
        }
        let chunks: Vec<&[u8]> = match text.is_empty() {
            true => vec![&[]],
            false => text.chunks(CHUNK).collect(),
        };
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut headers = HeaderMap::new();
            headers.insert(VERSION, version.as_str());
            headers.insert(PART, format!("{}/{n}", i + 1));
            headers.insert(GATEWAY, gateway);
            if i == 0 {
                // The previous version goes as this one starts.
                headers.insert("Nats-Rollup", "sub");
            }
            let what = || format!("sharing {subject} (chunk {}/{n})", i + 1);
            let ack = self
                .js
                .publish_with_headers(subject.to_string(), headers, chunk.to_vec().into())
                .await
                .map_err(|e| FleetError::Nats {
                    what: what(),
                    message: e.to_string(),
                })?;
            ack.await.map_err(|e| FleetError::Nats {
                what: what(),
                message: self.explain(e.to_string(), subject),
            })?;
        }
        Ok(version)
    }

    /// The latest complete version shared on any of `subjects` (the one
    /// written last), unless it is the version in hand (`have`'s etag).
    pub async fn fetch_feed(
        &self,
        subjects: &[String],
        have: Option<&Validators>,
    ) -> Result<Fetched, String> {
        let stream = self.feeds_stream().await.map_err(|e| e.to_string())?;
        let mut newest: Option<Latest> = None;
        for subject in subjects {
            let latest = self
                .latest_chunk(&stream, subject)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(l) = latest {
                if newest.as_ref().is_none_or(|n| l.sequence > n.sequence) {
                    newest = Some(l);
                }
            }
        }
        let Some(latest) = newest else {
            return Err(format!("nothing shared yet on {}", subjects.join(" or ")));
        };
        if have.and_then(|h| h.etag.as_deref()) == Some(latest.version.as_str()) {
            return Ok(Fetched::Unchanged);
        }
        let (last, n) = latest.part;
        if n == 0 || last != n {
            return Err(format!(
                "the version on {} is being sent or malformed; the one in force stays",
                latest.subject
            ));
        }
        let text = self.read_version(&stream, &latest, n).await?;
        let text = String::from_utf8(text)
            .map_err(|_| format!("the version on {} is not UTF-8 text", latest.subject))?;
        Ok(Fetched::Changed {
            text,
            validators: Validators {
                etag: Some(latest.version),
                last_modified: None,
            },
        })
    }

    /// Reads the `n` chunks of `latest`'s version, checking each one's
    /// place and the whole's digest.
    async fn read_version(
        &self,
        stream: &jetstream::stream::Stream,
        latest: &Latest,
        n: usize,
    ) -> Result<Vec<u8>, String> {
        let failed = |e: String| format!("reading {}: {e}", latest.subject);
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: latest.subject.clone(),
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut text = Vec::new();
        let mut next = 1;
        while next <= n {
            let message = match tokio::time::timeout(REQUEST_TIMEOUT, messages.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(failed(e.to_string())),
                Ok(None) | Err(_) => return Err(failed(format!("chunk {next}/{n} never came"))),
            };
            let headers = message.headers.clone().unwrap_or_default();
            if header(&headers, VERSION).as_deref() != Some(latest.version.as_str()) {
                // A newer version started meanwhile: try again later.
                return Err(failed("a newer version is being sent".into()));
            }
            if header(&headers, PART).as_deref().and_then(parse_part) != Some((next, n)) {
                return Err(failed(format!("chunk {next}/{n} is missing")));
            }
            text.extend_from_slice(&message.payload);
            if text.len() as u64 > MAX_BODY {
                return Err(failed(format!("the version passes {MAX_BODY} bytes")));
            }
            next += 1;
        }
        if version_of(&text) != latest.version {
            return Err(failed(
                "the version's digest does not match its text".into(),
            ));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_bounded_and_in_range() {
        assert_eq!(parse_part("1/1"), Some((1, 1)));
        assert_eq!(parse_part("3/7"), Some((3, 7)));
        for bad in ["0/1", "2/1", "1/0", "x/2", "1", "1/99999999", "-1/2"] {
            assert_eq!(parse_part(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_site_reads_its_own_shares_in_both_scopes_and_others_fleet_wide_only() {
        assert_eq!(
            subjects_to_read("town-1", "pref", "drop"),
            vec!["sensor.feeds.fleet.pref.drop"]
        );
        assert_eq!(
            subjects_to_read("pref", "pref", "drop"),
            vec![
                "sensor.feeds.fleet.pref.drop",
                "sensor.feeds.site.pref.drop"
            ]
        );
        assert_eq!(version_of(b"").len(), 64);
    }
}
