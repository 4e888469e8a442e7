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

/// Nanoseconds since the Unix epoch (the detection engine's time).
pub fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as u64
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

/// The longest TTL an isolation or block may have: ten years. Past that,
/// "permanent" says what is meant, and expiry arithmetic stays far from
/// overflowing.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 366 * 86_400);

/// A TTL as every input takes it (sensorctl, the control socket, response
/// rules, the state file): at least a second, at most `MAX_TTL`.
pub fn check_ttl(ttl: Duration) -> Result<Duration, String> {
    if ttl < Duration::from_secs(1) {
        return Err("a TTL must be at least one second".into());
    }
    if ttl > MAX_TTL {
        return Err(format!(
            "a TTL of {} is longer than the limit of ten years; use permanent for no expiry",
            humantime::format_duration(Duration::from_secs(ttl.as_secs()))
        ));
    }
    Ok(ttl)
}

/// Unix seconds as RFC 3339, for tables; a time past year 9999 (which
/// RFC 3339 cannot write) as its number.
pub fn format_unix(secs: u64) -> String {
    const YEAR_10000: u64 = 253_402_300_800;
    if secs >= YEAR_10000 {
        return format!("{secs} (Unix time)");
    }
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
        assert_eq!(format_unix(u64::MAX), "18446744073709551615 (Unix time)");
    }

    #[test]
    fn ttls_are_bounded() {
        assert!(check_ttl(Duration::from_secs(3600)).is_ok());
        assert!(check_ttl(MAX_TTL).is_ok());
        assert!(check_ttl(Duration::ZERO).is_err());
        let e = check_ttl(Duration::from_secs(u64::MAX)).unwrap_err();
        assert!(e.contains("ten years"), "{e}");
    }
}
