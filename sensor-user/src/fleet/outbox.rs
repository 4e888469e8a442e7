//! What this gateway decided that the fleet has not acknowledged yet: kept
//! in a file (written whole, atomically, on every change) so that nothing
//! decided while the link is down, or before a restart, is lost. Sent in
//! order once the link is back; each acknowledged operation leaves.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::decision::{Decision, Key};
use crate::state::{self, StateError};

/// One change to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// Write the decision under its key.
    Put { decision: Decision },
    /// Release: a delete marker under this gateway's key for the target.
    Release { key: String },
    /// Tidy an expired decision of this gateway's out of the bucket: a
    /// purge of its key, if `revision` is still its latest.
    Tidy { key: String, revision: u64 },
}

impl Op {
    pub fn key_text(&self) -> String {
        match self {
            Op::Put { decision } => decision.key().text(),
            Op::Release { key } | Op::Tidy { key, .. } => key.clone(),
        }
    }

    pub fn key(&self) -> Option<Key> {
        Key::parse(&self.key_text())
    }
}

pub struct Outbox {
    path: PathBuf,
    ops: Vec<Op>,
}

impl Outbox {
    /// Loads the outbox left by an earlier run (none: empty).
    pub fn open(path: &Path) -> Result<Outbox, StateError> {
        let ops = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: path.into(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        Ok(Outbox {
            path: path.into(),
            ops,
        })
    }

    /// Queues `op`; an earlier operation on the same key is superseded
    /// (only the last one matters: the latest revision wins).
    pub fn push(&mut self, op: Op) -> Result<(), StateError> {
        let key = op.key_text();
        self.ops.retain(|o| o.key_text() != key);
        self.ops.push(op);
        self.save()
    }

    pub fn front(&self) -> Option<&Op> {
        self.ops.first()
    }

    /// Drops the front operation once the fleet has it (or refused it
    /// for good), if it is still `op`.
    pub fn done(&mut self, op: &Op) -> Result<(), StateError> {
        if self.ops.first() == Some(op) {
            self.ops.remove(0);
            self.save()?;
        }
        Ok(())
    }

    /// Whether an operation on this key waits to be sent: what the fleet
    /// says of it may be older than what this gateway decided.
    /// (A tidying changes nothing in force: it never holds a key back.)
    pub fn pending(&self, key: &str) -> bool {
        self.ops
            .iter()
            .any(|o| !matches!(o, Op::Tidy { .. }) && o.key_text() == key)
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn save(&self) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(&self.ops).expect("ops serialize");
        state::write_atomic(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fleet::Scope, state::Kind};

    #[test]
    fn the_outbox_survives_a_restart_and_keeps_the_last_op_per_key() {
        let dir = tempdir();
        let path = dir.join("outbox.json");
        let d = Decision {
            kind: Kind::Block,
            target: "203.0.113.66/32".parse().unwrap(),
            scope: Scope::Fleet,
            site: "a".into(),
            gateway: "g".into(),
            origin: "operator".into(),
            reason: "r".into(),
            created: 1,
            expires: None,
            incident: None,
        };
        let key = d.key().text();
        let mut outbox = Outbox::open(&path).unwrap();
        outbox
            .push(Op::Put {
                decision: d.clone(),
            })
            .unwrap();
        outbox
            .push(Op::Release {
                key: "site.a.block.1_2_3_4/32".into(),
            })
            .unwrap();
        outbox.push(Op::Release { key: key.clone() }).unwrap();
        drop(outbox);
        let mut outbox = Outbox::open(&path).unwrap();
        assert_eq!(outbox.len(), 2);
        assert!(outbox.pending(&key));
        let first = outbox.front().cloned().unwrap();
        assert_eq!(first.key_text(), "site.a.block.1_2_3_4/32");
        outbox.done(&first).unwrap();
        assert_eq!(
            Outbox::open(&path).unwrap().front(),
            Some(&Op::Release { key })
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("outbox-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
