//! A private bpffs mount per test: pins made in it vanish when it is
//! unmounted on drop, even when the test panics.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

pub struct TempBpffs {
    dir: PathBuf,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Default for TempBpffs {
    fn default() -> Self {
        Self::new()
    }
}

impl TempBpffs {
    pub fn new() -> TempBpffs {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/run/sensor-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the bpffs mount point");
        let ok = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()
            .expect("running mount")
            .success();
        assert!(
            ok,
            "mounting bpffs on {} failed (are we root?)",
            dir.display()
        );
        TempBpffs { dir }
    }

    /// A pin directory inside the mount.
    pub fn pin_dir(&self) -> PathBuf {
        self.dir.join("sensor")
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempBpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
