//! The state file: every isolation and block with the metadata the datapath
//! does not hold (origin, reason, times). Written atomically (temporary file,
//! fsync, rename), so a crash leaves either the old or the new file whole.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is not valid: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What an entry does in the datapath.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A host cut off in both directions (exemptions aside).
    Isolation,
    /// A range whose traffic is dropped in both directions.
    Block,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Isolation => "isolation",
            Kind::Block => "block",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: Kind,
    /// For an isolation, a host (/32 or /128).
    pub target: IpNet,
    /// Who made it: "operator" (sensorctl), "adopted" (found in the pinned
    /// maps without a record), later the detector's name.
    pub origin: String,
    pub reason: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; `None` is permanent.
    pub expires: Option<u64>,
    /// The incident behind an automatic action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<u64>,
    /// For an isolation on a switched segment: the MAC bound to the host,
    /// whose frames are dropped on switched ports whatever address they
    /// carry.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::bindings::mac_serde::option"
    )]
    pub mac: Option<[u8; 6]>,
    /// In fleet mode: where the decision applies, which gateway made it,
    /// and its revision in the fleet once published (docs/fleet.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::fleet::FleetTag>,
}

impl Entry {
    pub fn expired(&self, unix_now: u64) -> bool {
        self.expires.is_some_and(|at| at <= unix_now)
    }
}

const STATE_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    entries: Vec<Entry>,
}

/// Reads the state file; a missing file is an empty state.
pub fn load(path: &Path) -> Result<Vec<Entry>, StateError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let file: StateFile = serde_json::from_str(&text).map_err(|source| StateError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    Ok(file.entries)
}

/// Replaces the state file with `entries`, atomically. Streamed to the
/// file: with a million-range feed loaded the file is some 200 MB, and
/// neither a copy of the entries nor of the text is held in memory.
pub fn save<'a>(
    path: &Path,
    entries: impl IntoIterator<Item = &'a Entry>,
) -> Result<(), StateError> {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        version: u32,
        entries: Vec<&'a Entry>,
    }
    let file = Borrowed {
        version: STATE_VERSION,
        entries: entries.into_iter().collect(),
    };
    write_atomic_with(path, |out| {
        serde_json::to_writer_pretty(out, &file).map_err(std::io::Error::from)
    })
}

/// Replaces `path` with `bytes`: temporary file, fsync, rename, so a crash
/// leaves the old or the new file whole.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    write_atomic_with(path, |out| out.write_all(bytes))
}

/// `write_atomic`, with the content written by `write` through a buffer.
fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&fs::File>) -> std::io::Result<()>,
) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    let out = fs::File::create(&tmp).map_err(err)?;
    let mut buffered = std::io::BufWriter::with_capacity(1 << 20, &out);
    write(&mut buffered).map_err(err)?;
    buffered.flush().map_err(err)?;
    drop(buffered);
    out.sync_all().map_err(err)?;
    drop(out);
    fs::rename(&tmp, path).map_err(err)?;
    // Make the rename itself durable.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(target: &str) -> Entry {
        Entry {
            kind: Kind::Isolation,
            target: target.parse().unwrap(),
            origin: "operator".into(),
            reason: "test".into(),
            created: 100,
            expires: Some(200),
            incident: None,
            mac: None,
            fleet: None,
        }
    }

    #[test]
    fn missing_file_is_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&dir.path().join("none.json")).unwrap().is_empty());
    }

    #[test]
    fn round_trip_and_no_leftover_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let entries = vec![entry("10.0.0.1/32"), entry("2001:db8::/32")];
        save(&path, &entries).unwrap();
        assert_eq!(load(&path).unwrap(), entries);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["state.json"]);
    }

    #[test]
    fn an_isolation_keeps_its_mac_and_a_bad_mac_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let with_mac = Entry {
            mac: Some([2, 0, 0, 0, 0, 0x11]),
            ..entry("10.0.0.1/32")
        };
        save(&path, &[with_mac.clone(), entry("10.0.0.2/32")]).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""mac": "02:00:00:00:00:11""#), "{text}");
        assert_eq!(text.matches("\"mac\"").count(), 1, "{text}");
        assert_eq!(load(&path).unwrap()[0], with_mac);
        fs::write(&path, text.replace("02:00:00:00:00:11", "02:00:zz")).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("not a MAC address"), "{e}");
    }

    #[test]
    fn corrupt_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"{ not json").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("not valid"), "{e}");
    }

    #[test]
    fn expiry() {
        let e = entry("10.0.0.1/32");
        assert!(!e.expired(199));
        assert!(e.expired(200));
        let permanent = Entry { expires: None, ..e };
        assert!(!permanent.expired(u64::MAX));
    }
}
