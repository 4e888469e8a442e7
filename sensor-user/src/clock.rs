//! Time: the datapath judges expiry on `CLOCK_BOOTTIME`; people and the state
//! file use Unix time. Conversions happen here only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds on `CLOCK_BOOTTIME`, the clock of `bpf_ktime_get_boot_ns`.
pub fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_BOOTTIME) cannot fail");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The datapath's expiry for a Unix-time expiry: `None` (never) is 0. An
/// expiry already past maps to 1 ns, which the datapath treats as lapsed.
pub fn expiry_to_boottime(expires_unix: Option<u64>, unix_now: u64, boot_now_ns: u64) -> u64 {
    match expires_unix {
        None => 0,
        Some(at) if at <= unix_now => 1,
        Some(at) => boot_now_ns.saturating_add((at - unix_now).saturating_mul(1_000_000_000)),
    }
}

/// Unix seconds as RFC 3339, for tables.
pub fn format_unix(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_is_zero() {
        assert_eq!(expiry_to_boottime(None, 1000, 5), 0);
    }

    #[test]
    fn future_expiry_is_offset_from_boot_now() {
        assert_eq!(expiry_to_boottime(Some(1010), 1000, 7), 7 + 10_000_000_000);
    }

    #[test]
    fn past_expiry_is_already_lapsed() {
        assert_eq!(expiry_to_boottime(Some(999), 1000, 7), 1);
        assert_eq!(expiry_to_boottime(Some(1000), 1000, 7), 1);
    }

    #[test]
    fn boottime_moves_forward() {
        let a = boottime_ns();
        let b = boottime_ns();
        assert!(b >= a && a > 0);
    }

    #[test]
    fn rfc3339() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
    }
}
