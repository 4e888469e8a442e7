//! Batched map writes (`BPF_MAP_UPDATE_BATCH`, `BPF_MAP_DELETE_BATCH`):
//! one system call for many elements, as a feed of a million ranges needs
//! (one call each costs more than the map's own work). aya offers no batch
//! writes, so this is the raw call; maps or kernels without them get the
//! one-by-one calls from the caller (`Unsupported`).

use std::os::fd::{AsRawFd, BorrowedFd};

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

#[derive(Debug)]
pub enum BatchError {
    /// The map or kernel has no batch writes: write one by one.
    Unsupported,
    /// An element failed with `error` (those before it were written).
    Failed(std::io::Error),
}

/// Elements per call: bounds the kernel's copy of the request.
const PER_CALL: usize = 1 << 14;

fn call(cmd: libc::c_long, attr: &mut BatchAttr) -> Result<(), std::io::Error> {
    // SAFETY: bpf(2) with a batch attribute whose pointers address `count`
    // keys (and values) the caller keeps alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn unsupported(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP))
        || e.raw_os_error() == Some(524) // ENOTSUPP, the kernel's own
}

/// Writes `keys[i] -> values[i]` (any flags: insert or replace).
pub fn update<K: Copy, V: Copy>(
    map: BorrowedFd,
    keys: &[K],
    values: &[V],
) -> Result<(), BatchError> {
    assert_eq!(keys.len(), values.len());
    let mut done = 0;
    while done < keys.len() {
        let n = (keys.len() - done).min(PER_CALL);
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: n as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        if let Err(error) = call(BPF_MAP_UPDATE_BATCH, &mut attr) {
            if done == 0 && attr.count == 0 && unsupported(&error) {
                return Err(BatchError::Unsupported);
            }
            return Err(BatchError::Failed(error));
        }
        done += n;
    }
    Ok(())
}

/// Deletes `keys`; keys that are not there are skipped.
pub fn delete<K: Copy>(map: BorrowedFd, keys: &[K]) -> Result<(), BatchError> {
    let mut done = 0;
    while done < keys.len() {
        let n = (keys.len() - done).min(PER_CALL);
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            count: n as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        match call(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => done += n,
            // The kernel stops at a missing key: step over it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => done += attr.count as usize + 1,
            Err(error) if done == 0 && attr.count == 0 && unsupported(&error) => {
                return Err(BatchError::Unsupported)
            }
            Err(error) => return Err(BatchError::Failed(error)),
        }
    }
    Ok(())
}
