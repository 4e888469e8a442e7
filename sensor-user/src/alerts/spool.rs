//! A spool on disk: alerts wait in it, one file each, until their sink has
//! them, so an outage of the receiver or a restart of sensord loses none.
//! Files are named by a sequence number and sent oldest first; each is
//! written whole (temporary file, fsync, rename) before it is queued.

use std::{
    collections::VecDeque,
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::Mutex,
};

pub struct Spool {
    dir: PathBuf,
    /// Sequence numbers of the waiting files, oldest first, and the next.
    queue: Mutex<(VecDeque<u64>, u64)>,
    max: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool {0} holds {1} alerts already: the newest is dropped")]
    Full(PathBuf, usize),
    #[error("spool {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

impl Spool {
    /// Opens (creating) the spool in `dir`, taking up what an earlier run
    /// left in it; `max` files at most.
    pub fn open(dir: &Path, max: usize) -> Result<Spool, SpoolError> {
        let io = |e| SpoolError::Io(dir.to_owned(), e);
        fs::create_dir_all(dir).map_err(io)?;
        let mut waiting: Vec<u64> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            let name = name.to_string_lossy();
            match name.strip_suffix(".json").and_then(|n| n.parse().ok()) {
                Some(n) => waiting.push(n),
                // A write cut short by a crash: never queued, so never sent.
                None if name.ends_with(".tmp") => {
                    let _ = fs::remove_file(dir.join(name.as_ref()));
                }
                None => {}
            }
        }
        waiting.sort_unstable();
        let next = waiting.last().map_or(0, |n| n + 1);
        Ok(Spool {
            dir: dir.to_owned(),
            queue: Mutex::new((waiting.into(), next)),
            max,
        })
    }

    fn path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:020}.json"))
    }

    /// Writes `bytes` to the spool, durably, and queues it.
    pub fn push(&self, bytes: &[u8]) -> Result<(), SpoolError> {
        let mut queue = self.queue.lock().expect("spool lock");
        if queue.0.len() >= self.max {
            return Err(SpoolError::Full(self.dir.clone(), queue.0.len()));
        }
        let n = queue.1;
        let path = self.path(n);
        let tmp = path.with_extension("tmp");
        let io = |e| SpoolError::Io(self.dir.clone(), e);
        let mut file = fs::File::create(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        queue.1 += 1;
        queue.0.push_back(n);
        Ok(())
    }

    /// The oldest waiting alert: its number and bytes.
    pub fn oldest(&self) -> Option<(u64, Vec<u8>)> {
        loop {
            let n = *self.queue.lock().expect("spool lock").0.front()?;
            match fs::read(self.path(n)) {
                Ok(bytes) => return Some((n, bytes)),
                // Removed by hand: nothing to send.
                Err(_) => self.done(n),
            }
        }
    }

    /// The sink has alert `n`: it leaves the spool.
    pub fn done(&self, n: u64) {
        let mut queue = self.queue.lock().expect("spool lock");
        if queue.0.front() == Some(&n) {
            queue.0.pop_front();
        }
        drop(queue);
        let _ = fs::remove_file(self.path(n));
    }

    /// Alerts waiting.
    pub fn len(&self) -> usize {
        self.queue.lock().expect("spool lock").0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_wait_in_order_and_survive_a_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 10).unwrap();
        spool.push(b"one").unwrap();
        spool.push(b"two").unwrap();
        let (n, bytes) = spool.oldest().unwrap();
        assert_eq!(bytes, b"one");
        spool.done(n);
        drop(spool);
        std::fs::write(dir.path().join("00000000000000000009.tmp"), b"cut").unwrap();
        let spool = Spool::open(dir.path(), 10).unwrap();
        assert_eq!(spool.len(), 1, "the cut write is not an alert");
        spool.push(b"three").unwrap();
        let (n, bytes) = spool.oldest().unwrap();
        assert_eq!(bytes, b"two");
        spool.done(n);
        assert_eq!(spool.oldest().unwrap().1, b"three");
    }

    #[test]
    fn a_full_spool_refuses_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 2).unwrap();
        spool.push(b"a").unwrap();
        spool.push(b"b").unwrap();
        let e = spool.push(b"c").unwrap_err().to_string();
        assert!(e.contains("dropped"), "{e}");
        assert_eq!(spool.oldest().unwrap().1, b"a");
    }
}
