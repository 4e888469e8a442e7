//! The incident store: one SQLite database that keeps incidents with their
//! evidence and actions, the operators' false-positive marks, and the audit
//! log of every operator and automatic action (who, when, what). It
//! survives restarts and upgrades, so incident ids are stable; closed
//! incidents and audit records older than the retention are pruned.
//!
//! The database is sensord's alone (it runs as root, in its state
//! directory); sensorctl reads it through the control API. Writes are
//! grouped in one transaction at most once a second, in WAL mode, so a crash
//! loses at most that second and never leaves a half-written incident.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::{Path, PathBuf},
};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::detect::{
    incident::{severity, Action, Triage},
    registry::intern,
    Evidence, Incident, Nanos,
};

/// `[incidents]` in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The database file. Default: next to the state file, incidents.db.
    pub database: Option<PathBuf>,
    /// Closed incidents and audit records are kept this many days
    /// (default 365: a year of history for audits and reports).
    pub retention_days: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            database: None,
            retention_days: 365,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("incident store {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("incident store {path} was written by a newer sensord (schema {found}, this one knows {known})")]
    Newer {
        path: String,
        found: u32,
        known: u32,
    },
}

/// The schema's version, in SQLite's `user_version`. A change adds a step
/// to `migrate`, so an upgrade keeps every incident.
const SCHEMA_VERSION: u32 = 1;

const SCHEMA_V1: &str = "
CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL,
    host TEXT NOT NULL,
    score INTEGER NOT NULL,
    status TEXT NOT NULL,
    triage TEXT NOT NULL,
    false_positive INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,   -- Unix nanoseconds
    last_seen INTEGER NOT NULL,
    opened INTEGER NOT NULL,
    detectors TEXT NOT NULL,       -- JSON array
    techniques TEXT NOT NULL,      -- JSON array
    peers TEXT NOT NULL,           -- JSON array
    names TEXT NOT NULL            -- JSON object: peer -> name
);
CREATE INDEX incidents_host ON incidents(host);
CREATE INDEX incidents_last_seen ON incidents(last_seen);
CREATE TABLE evidence (
    incident INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    detector TEXT NOT NULL,
    technique TEXT NOT NULL,
    score INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    since INTEGER NOT NULL,
    peers TEXT NOT NULL,           -- JSON array
    count INTEGER NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (incident, position)
);
CREATE TABLE actions (
    incident INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (incident, position)
);
CREATE TABLE false_positives (
    host TEXT NOT NULL,
    detector TEXT NOT NULL,
    created INTEGER NOT NULL,
    actor TEXT NOT NULL,
    incident INTEGER,
    PRIMARY KEY (host, detector)
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_ts ON audit(ts);
";

/// One audit record: who did what to what, when, and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix nanoseconds.
    pub ts: u64,
    /// "root (uid 0)" for an operator, "auto:beacon" for the response
    /// policy, "sensord" for expiry.
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    /// "ok", or the error.
    pub outcome: String,
}

/// An operator's mark: `detector` no longer acts on `host`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FalsePositive {
    pub host: IpAddr,
    pub detector: String,
    /// Unix nanoseconds.
    pub created: u64,
    pub actor: String,
    /// The incident it was marked from.
    pub incident: Option<u64>,
}

/// What `incidents` lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentFilter {
    pub host: Option<IpAddr>,
    pub min_score: Option<u8>,
    /// "open" or "closed".
    pub status: Option<String>,
    /// "new", "acknowledged" or "closed".
    pub triage: Option<String>,
    /// A detector pattern (`allow::detector_matches`).
    pub detector: Option<String>,
    /// Only incidents with evidence at or after this (Unix nanoseconds).
    pub since: Option<u64>,
    /// At most this many, the newest.
    pub limit: Option<usize>,
}

pub struct Store {
    conn: Connection,
    path: String,
}

fn ns(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn json_text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("a plain value serialises")
}

fn from_json<T: for<'de> Deserialize<'de> + Default>(text: &str) -> T {
    serde_json::from_str(text).unwrap_or_default()
}

impl Store {
    /// Opens (creating, or migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let shown = path.display().to_string();
        let conn = Connection::open(path).map_err(|source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        })?;
        Store::setup(conn, shown)
    }

    /// A store that lives in memory (tests, and `analyze`).
    pub fn in_memory() -> Store {
        let conn = Connection::open_in_memory().expect("an in-memory database");
        Store::setup(conn, ":memory:".into()).expect("the schema applies")
    }

    fn setup(conn: Connection, path: String) -> Result<Store, StoreError> {
        let mut store = Store { conn, path };
        store.migrate()?;
        Ok(store)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        // WAL: readers never wait for the writer, and a commit is one
        // append; NORMAL sync is durable across a crash of sensord, and
        // loses at most the last commits on power loss.
        self.conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
            )
            .map_err(self.err())?;
        let version: u32 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(self.err())?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                path: self.path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            let tx = self
                .conn
                .transaction()
                .map_err(|source| StoreError::Sqlite {
                    path: self.path.clone(),
                    source,
                })?;
            tx.execute_batch(SCHEMA_V1)
                .and_then(|_| tx.pragma_update(None, "user_version", 1))
                .and_then(|_| tx.commit())
                .map_err(|source| StoreError::Sqlite {
                    path: self.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Writes `incidents` whole (row, evidence, actions), in one transaction.
    pub fn save_incidents<'a>(
        &mut self,
        incidents: impl IntoIterator<Item = &'a Incident>,
    ) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let mut saved = 0;
        {
            let mut row = tx
                .prepare_cached(
                    "INSERT INTO incidents (id, host, score, status, triage, false_positive, \
                     first_seen, last_seen, opened, detectors, techniques, peers, names, uid) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
                     ON CONFLICT(id) DO UPDATE SET host = ?2, score = ?3, status = ?4, \
                     triage = ?5, false_positive = ?6, first_seen = ?7, last_seen = ?8, \
                     opened = ?9, detectors = ?10, techniques = ?11, peers = ?12, names = ?13, \
                     uid = ?14",
                )
                .map_err(err)?;
            let mut clear_evidence = tx
                .prepare_cached("DELETE FROM evidence WHERE incident = ?1")
                .map_err(err)?;
            let mut evidence = tx
                .prepare_cached(
                    "INSERT INTO evidence (incident, position, detector, technique, score, ts, \
                     since, peers, count, summary) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(err)?;
            // Actions only grow: those already stored stay.
            let mut action = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO actions (incident, position, ts, action, target, detail) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(err)?;
            for i in incidents {
                let id = ns(i.id);
                row.execute(params![
                    id,
                    i.host.to_string(),
                    i.score,
                    i.status,
                    i.triage.label(),
                    i.false_positive,
                    ns(i.first_seen),
                    ns(i.last_seen),
                    ns(i.opened),
                    json_text(&i.detectors),
                    json_text(&i.techniques),
                    json_text(&i.peers),
                    json_text(&i.names),
                    i.uid,
                ])
                .map_err(err)?;
                clear_evidence.execute([id]).map_err(err)?;
                for (n, e) in i.evidence.iter().enumerate() {
                    evidence
                        .execute(params![
                            id,
                            n as i64,
                            e.detector,
                            e.technique,
                            e.score,
                            ns(e.ts),
                            ns(e.since),
                            json_text(&e.peers),
                            ns(e.count),
                            e.summary,
                        ])
                        .map_err(err)?;
                }
                for (n, a) in i.actions.iter().enumerate() {
                    action
                        .execute(params![
                            id,
                            n as i64,
                            ns(a.ts),
                            a.action,
                            a.target,
                            a.detail
                        ])
                        .map_err(err)?;
                }
                saved += 1;
            }
        }
        tx.commit().map_err(err)?;
        Ok(saved)
    }

    /// The highest incident id ever stored (0 for none): new ids follow it.
    pub fn last_incident_id(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM incidents", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|v| v as u64)
            .map_err(self.err())
    }

    /// One incident, whole.
    pub fn incident(&self, id: u64) -> Result<Option<Incident>, StoreError> {
        let found = self
            .conn
            .query_row(
                &format!("{SELECT_INCIDENT} WHERE id = ?1"),
                [ns(id)],
                incident_row,
            )
            .optional()
            .map_err(self.err())?;
        found.map(|i| self.fill(i)).transpose()
    }

    /// Incidents matching `filter`, oldest first, whole.
    pub fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, StoreError> {
        let mut sql = format!("{SELECT_INCIDENT} WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
            args.push(v);
            sql.push_str(&format!(" AND {clause} ?{}", args.len()));
        };
        if let Some(host) = filter.host {
            arg(&mut sql, "host =", host.to_string().into());
        }
        if let Some(s) = filter.min_score {
            arg(&mut sql, "score >=", i64::from(s).into());
        }
        if let Some(s) = &filter.status {
            arg(&mut sql, "status =", s.clone().into());
        }
        if let Some(t) = &filter.triage {
            arg(&mut sql, "triage =", t.clone().into());
        }
        if let Some(since) = filter.since {
            arg(&mut sql, "last_seen >=", ns(since).into());
        }
        sql.push_str(" ORDER BY id DESC");
        let mut statement = self.conn.prepare(&sql).map_err(self.err())?;
        let rows = statement
            .query_map(rusqlite::params_from_iter(args), incident_row)
            .map_err(self.err())?;
        let mut found = Vec::new();
        for row in rows {
            let i = row.map_err(self.err())?;
            let wanted = filter.detector.as_deref().is_none_or(|d| {
                i.detectors
                    .iter()
                    .any(|x| crate::detect::allow::detector_matches(d, x))
            });
            if wanted {
                found.push(self.fill(i)?);
            }
            if filter.limit.is_some_and(|l| found.len() >= l) {
                break;
            }
        }
        found.reverse();
        Ok(found)
    }

    /// Open incidents, whole: what a restarted sensord takes back.
    pub fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.incidents(&IncidentFilter {
            status: Some("open".into()),
            ..Default::default()
        })
    }

    /// Adds an incident's evidence and actions to its row.
    fn fill(&self, mut i: Incident) -> Result<Incident, StoreError> {
        let id = ns(i.id);
        let host = i.host;
        let mut evidence = self
            .conn
            .prepare_cached(
                "SELECT detector, technique, score, ts, since, peers, count, summary \
                 FROM evidence WHERE incident = ?1 ORDER BY position",
            )
            .map_err(self.err())?;
        i.evidence = evidence
            .query_map([id], |r| {
                Ok(Evidence {
                    host,
                    detector: intern(&r.get::<_, String>(0)?),
                    technique: intern(&r.get::<_, String>(1)?),
                    score: r.get(2)?,
                    ts: r.get::<_, i64>(3)? as u64,
                    since: r.get::<_, i64>(4)? as u64,
                    peers: from_json(&r.get::<_, String>(5)?),
                    count: r.get::<_, i64>(6)? as u64,
                    summary: r.get(7)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.err())?;
        let mut actions = self
            .conn
            .prepare_cached(
                "SELECT ts, action, target, detail FROM actions WHERE incident = ?1 \
                 ORDER BY position",
            )
            .map_err(self.err())?;
        i.actions = actions
            .query_map([id], |r| {
                Ok(Action {
                    ts: r.get::<_, i64>(0)? as u64,
                    action: r.get(1)?,
                    target: r.get(2)?,
                    detail: r.get(3)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.err())?;
        Ok(i)
    }

    /// Appends `records` to the audit log, in one transaction (a feed's
    /// million entries expiring at once is one write).
    pub fn audit(&mut self, records: &[AuditRecord]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO audit (ts, actor, action, target, detail, outcome) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(err)?;
            for r in records {
                insert
                    .execute(params![
                        ns(r.ts),
                        r.actor,
                        r.action,
                        r.target,
                        r.detail,
                        r.outcome
                    ])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Audit records at or after `since` (Unix nanoseconds), oldest first,
    /// at most `limit` (the newest).
    pub fn audit_log(&self, since: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT ts, actor, action, target, detail, outcome FROM audit \
                 WHERE ts >= ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let mut records = statement
            .query_map(params![ns(since), limit as i64], |r| {
                Ok(AuditRecord {
                    ts: r.get::<_, i64>(0)? as u64,
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                    detail: r.get(4)?,
                    outcome: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.err())?;
        records.reverse();
        Ok(records)
    }

    pub fn false_positives(&self) -> Result<Vec<FalsePositive>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT host, detector, created, actor, incident FROM false_positives \
                 ORDER BY host, detector",
            )
            .map_err(self.err())?;
        let marks = statement
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    FalsePositive {
                        host: IpAddr::from([0, 0, 0, 0]),
                        detector: r.get(1)?,
                        created: r.get::<_, i64>(2)? as u64,
                        actor: r.get(3)?,
                        incident: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                    },
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.err())?;
        // Addresses were written by `mark_false_positive`; a row that does
        // not read as one cannot match a host and is skipped.
        Ok(marks
            .into_iter()
            .filter_map(|(host, mark)| host.parse().ok().map(|host| FalsePositive { host, ..mark }))
            .collect())
    }

    /// Adds marks (one per detector); an existing mark stays as it was.
    pub fn mark_false_positive(&mut self, marks: &[FalsePositive]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        for m in marks {
            tx.execute(
                "INSERT OR IGNORE INTO false_positives (host, detector, created, actor, incident) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    m.host.to_string(),
                    m.detector,
                    ns(m.created),
                    m.actor,
                    m.incident.map(ns)
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Removes `host`'s marks (only `detector`'s, if given); returns how
    /// many went.
    pub fn undo_false_positive(
        &mut self,
        host: IpAddr,
        detector: Option<&str>,
    ) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM false_positives WHERE host = ?1 AND (?2 IS NULL OR detector = ?2)",
                params![host.to_string(), detector],
            )
            .map_err(self.err())
    }

    /// Forgets closed incidents last seen, and audit records made, before
    /// `before` (Unix nanoseconds). Returns (incidents, audit records).
    pub fn prune(&mut self, before: u64) -> Result<(usize, usize), StoreError> {
        let incidents = self
            .conn
            .execute(
                "DELETE FROM incidents WHERE status = 'closed' AND last_seen < ?1",
                [ns(before)],
            )
            .map_err(self.err())?;
        let audit = self
            .conn
            .execute("DELETE FROM audit WHERE ts < ?1", [ns(before)])
            .map_err(self.err())?;
        Ok((incidents, audit))
    }
}

const SELECT_INCIDENT: &str = "SELECT id, host, score, status, triage, false_positive, \
    first_seen, last_seen, opened, detectors, techniques, peers, names, uid FROM incidents";

/// An incident from its row, without evidence and actions (`fill`).
fn incident_row(r: &rusqlite::Row) -> rusqlite::Result<Incident> {
    let host: String = r.get(1)?;
    let bad = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("{what} is not valid").into(),
        )
    };
    let score: u8 = r.get(2)?;
    let detectors: Vec<String> = from_json(&r.get::<_, String>(9)?);
    let techniques: Vec<String> = from_json(&r.get::<_, String>(10)?);
    Ok(Incident {
        id: r.get::<_, i64>(0)? as u64,
        uid: r.get(13)?,
        host: host.parse().map_err(|_| bad("host"))?,
        score,
        severity: severity(score),
        status: if r.get::<_, String>(3)? == "open" {
            "open"
        } else {
            "closed"
        },
        triage: Triage::parse(&r.get::<_, String>(4)?).ok_or_else(|| bad("triage"))?,
        false_positive: r.get(5)?,
        first_seen: r.get::<_, i64>(6)? as u64,
        last_seen: r.get::<_, i64>(7)? as u64,
        opened: r.get::<_, i64>(8)? as u64,
        detectors: detectors.iter().map(|n| intern(n)).collect::<BTreeSet<_>>(),
        techniques: techniques.iter().map(|n| intern(n)).collect(),
        peers: from_json(&r.get::<_, String>(11)?),
        names: from_json::<BTreeMap<String, String>>(&r.get::<_, String>(12)?),
        evidence: Vec::new(),
        actions: Vec::new(),
    })
}

/// Nanoseconds since the epoch for `days` days ago, for `prune`.
pub fn retention_cutoff(now: Nanos, days: u64) -> Nanos {
    now.saturating_sub(days.saturating_mul(86_400 * 1_000_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Incidents;

    fn book_with(host: &str, detector: &'static str, ts: Nanos) -> Incidents {
        let mut book = Incidents::default();
        book.add(Evidence {
            host: host.parse().unwrap(),
            detector,
            technique: "T1071.001",
            score: 90,
            ts,
            since: ts - 1_000,
            peers: vec!["203.0.113.66:443".into()],
            count: 20,
            summary: "20 connections every 5s".into(),
        });
        book
    }

    #[test]
    fn an_incident_reads_back_as_it_was_written() {
        let mut store = Store::in_memory();
        let mut book = book_with("10.10.0.11", "beacon", 5_000_000_000);
        let id = book.take_changed()[0];
        let i = book.get_mut(id).unwrap();
        i.names.insert("203.0.113.66".into(), "c2.example".into());
        i.actions.push(Action {
            ts: 6,
            action: "isolate".into(),
            target: "10.10.0.11".into(),
            detail: "rule 0".into(),
        });
        let written = i.clone();
        store.save_incidents([&written]).unwrap();
        assert_eq!(store.incident(id).unwrap().unwrap(), written);
        assert_eq!(store.last_incident_id().unwrap(), id);
        // Saved again with more: actions already there stay, new ones join.
        let mut grown = written.clone();
        grown.actions.push(Action {
            ts: 7,
            action: "note".into(),
            target: String::new(),
            detail: "root: looking".into(),
        });
        grown.triage = Triage::Acknowledged;
        store.save_incidents([&grown]).unwrap();
        assert_eq!(store.incident(id).unwrap().unwrap(), grown);
    }

    #[test]
    fn it_survives_reopening_and_keeps_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("incidents.db");
        let mut book = book_with("10.10.0.11", "scan.vertical", 5_000);
        let id = book.take_changed()[0];
        Store::open(&path)
            .unwrap()
            .save_incidents([book.get(id).unwrap()])
            .unwrap();
        let store = Store::open(&path).unwrap();
        let open = store.open_incidents().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].detectors.iter().next(), Some(&"scan.vertical"));
        let mut restored = Incidents::default();
        restored.restore(open, store.last_incident_id().unwrap());
        restored.get_mut(id).unwrap().status = "closed";
        let next = restored
            .add(Evidence {
                host: "10.10.0.11".parse().unwrap(),
                detector: "beacon",
                technique: "T1071",
                score: 90,
                ts: 10_000,
                since: 10_000,
                peers: vec![],
                count: 1,
                summary: String::new(),
            })
            .unwrap();
        assert_eq!(next, id + 1, "ids go on after a restart");
    }

    #[test]
    fn filters_select_incidents() {
        let mut store = Store::in_memory();
        let mut a = book_with("10.0.0.1", "beacon", 1_000);
        let mut b = book_with("10.0.0.2", "scan.vertical", 2_000);
        let (a_id, b_id) = (a.take_changed()[0], b.take_changed()[0]);
        let ia = a.get(a_id).unwrap().clone();
        let mut ib = b.get(b_id).unwrap().clone();
        ib.id = 2;
        ib.status = "closed";
        ib.triage = Triage::Closed;
        store.save_incidents([&ia, &ib]).unwrap();
        fn ids_in(store: &Store, f: IncidentFilter) -> Vec<u64> {
            store.incidents(&f).unwrap().iter().map(|i| i.id).collect()
        }
        let ids = |f| ids_in(&store, f);
        assert_eq!(ids(IncidentFilter::default()), vec![1, 2]);
        let scans = IncidentFilter {
            detector: Some("scan.*".into()),
            ..Default::default()
        };
        assert_eq!(ids(scans), vec![2]);
        let open = IncidentFilter {
            status: Some("open".into()),
            ..Default::default()
        };
        assert_eq!(ids(open), vec![1]);
        let closed = IncidentFilter {
            triage: Some("closed".into()),
            ..Default::default()
        };
        assert_eq!(ids(closed), vec![2]);
        let newest = IncidentFilter {
            limit: Some(1),
            ..Default::default()
        };
        assert_eq!(ids(newest), vec![2]);
        // Pruning forgets the closed one only.
        assert_eq!(store.prune(u64::MAX / 2).unwrap().0, 1);
        assert_eq!(ids_in(&store, IncidentFilter::default()), vec![1]);
    }

    #[test]
    fn marks_and_audit_records_round_trip() {
        let mut store = Store::in_memory();
        let mark = |d: &str| FalsePositive {
            host: "10.0.0.5".parse().unwrap(),
            detector: d.into(),
            created: 1,
            actor: "root (uid 0)".into(),
            incident: Some(3),
        };
        store
            .mark_false_positive(&[mark("beacon"), mark("scan.vertical")])
            .unwrap();
        assert_eq!(store.false_positives().unwrap().len(), 2);
        let host = "10.0.0.5".parse().unwrap();
        assert_eq!(store.undo_false_positive(host, Some("beacon")).unwrap(), 1);
        assert_eq!(
            store.false_positives().unwrap(),
            vec![mark("scan.vertical")]
        );
        assert_eq!(store.undo_false_positive(host, None).unwrap(), 1);
        let record = AuditRecord {
            ts: 10,
            actor: "root (uid 0)".into(),
            action: "isolate".into(),
            target: "10.0.0.5".into(),
            detail: "ttl 1h".into(),
            outcome: "ok".into(),
        };
        store
            .audit(&[
                record.clone(),
                AuditRecord {
                    ts: 20,
                    ..record.clone()
                },
            ])
            .unwrap();
        assert_eq!(store.audit_log(0, 10).unwrap().len(), 2);
        assert_eq!(store.audit_log(15, 10).unwrap()[0].ts, 20);
        assert_eq!(store.audit_log(0, 1).unwrap()[0].ts, 20, "the newest");
    }

    #[test]
    fn a_newer_schema_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("incidents.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let e = Store::open(&path).err().unwrap().to_string();
        assert!(e.contains("newer sensord"), "{e}");
    }
}
