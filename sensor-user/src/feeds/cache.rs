//! Each feed's applied copy and record, under the state directory
//! (`feeds/NAME.txt` and `feeds/NAME.json`), written atomically: the copy
//! is what a restart applies before asking the publisher anything.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    format::{Format, Skipped},
    source::Validators,
};

/// A feed's record: where its copy came from and how its refreshes went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    /// The URL or file the copy came from (validators hold for it only).
    pub source: String,
    pub validators: Validators,
    /// The format the copy was read as.
    pub format: Option<Format>,
    pub skipped: Skipped,
    /// Unix seconds: last answer from the publisher (changed or not) ...
    pub checked: Option<u64>,
    /// ... last change applied ...
    pub updated: Option<u64>,
    /// ... and last attempt, with its error if it failed.
    pub attempted: Option<u64>,
    pub error: Option<String>,
    /// Retired by an operator: applied nowhere until resumed.
    pub retired: bool,
}

fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.json")),
        dir.join(format!("{name}.txt")),
    )
}

/// A feed's record and applied copy (`None` if there is no record; an
/// empty copy if there is none yet).
pub fn load(dir: &Path, name: &str) -> Result<Option<(Meta, String)>, String> {
    let (meta_path, text_path) = paths(dir, name);
    let meta = match std::fs::read_to_string(&meta_path) {
        Ok(text) => serde_json::from_str::<Meta>(&text)
            .map_err(|e| format!("{} is not valid: {e}", meta_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", meta_path.display())),
    };
    let text = match std::fs::read_to_string(&text_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", text_path.display())),
    };
    Ok(Some((meta, text)))
}

/// Writes a feed's record, and with `text` its applied copy first.
pub fn save(dir: &Path, name: &str, meta: &Meta, text: Option<&str>) -> Result<(), String> {
    let (meta_path, text_path) = paths(dir, name);
    if let Some(text) = text {
        crate::state::write_atomic(&text_path, text.as_bytes()).map_err(|e| e.to_string())?;
    }
    let json = serde_json::to_vec_pretty(meta).map_err(|e| e.to_string())?;
    crate::state::write_atomic(&meta_path, &json).map_err(|e| e.to_string())
}

/// Forgets a feed: its record and copy.
pub fn remove(dir: &Path, name: &str) {
    let (meta_path, text_path) = paths(dir, name);
    let _ = std::fs::remove_file(text_path);
    let _ = std::fs::remove_file(meta_path);
}

/// The feeds that have a record in `dir`.
pub fn names(dir: &Path) -> Vec<String> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = read
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_and_copy_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "drop").unwrap(), None);
        let meta = Meta {
            source: "https://example.org/drop.txt".into(),
            validators: Validators {
                etag: Some("\"abc\"".into()),
                last_modified: None,
            },
            checked: Some(5),
            ..Default::default()
        };
        save(dir.path(), "drop", &meta, Some("198.51.100.0/24\n")).unwrap();
        let (back, text) = load(dir.path(), "drop").unwrap().unwrap();
        assert_eq!(back, meta);
        assert_eq!(text, "198.51.100.0/24\n");
        assert_eq!(names(dir.path()), ["drop"]);
        remove(dir.path(), "drop");
        assert!(names(dir.path()).is_empty());
    }
}
