//! Helpers of the benchmarks that run traffic through namespaces.

use anyhow::{ensure, Context, Result};

/// Runs `f` on a thread inside network namespace `name` (pinned to `cpu`).
pub fn in_netns<T: Send + 'static>(
    name: &str,
    cpu: Option<usize>,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    spawn_in_netns(name, cpu, f)
        .join()
        .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
}

/// Starts `f` on a thread inside network namespace `name` (pinned to `cpu`).
pub fn spawn_in_netns<T: Send + 'static>(
    name: &str,
    cpu: Option<usize>,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> std::thread::JoinHandle<Result<T>> {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        // SAFETY: setns on an fd we own, for this thread only.
        let rc = unsafe {
            libc::unshare(libc::CLONE_FS);
            libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET)
        };
        ensure!(rc == 0, "setns {path}: {}", std::io::Error::last_os_error());
        if let Some(cpu) = cpu {
            // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            }
        }
        f()
    })
}

/// Busy CPU time of the whole machine, in ns (from /proc/stat).
pub fn busy_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...; USER_HZ is 100.
    let busy: u64 = [0, 1, 2, 5, 6]
        .iter()
        .map(|i| fields.get(*i).copied().unwrap_or(0))
        .sum();
    busy * (1_000_000_000 / 100)
}

pub fn if_index(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    ensure!(index != 0, "no interface {name}");
    Ok(index)
}

/// A 60-byte UDP frame from `src` to `dst`, with a valid IPv4 checksum
/// (a gateway forwards it).
pub fn udp_frame(dst_mac: &str, src_mac: &str, src: &str, dst: &str) -> Result<Vec<u8>> {
    let mac = |m: &str| -> Result<Vec<u8>> {
        m.split(':')
            .map(|b| u8::from_str_radix(b, 16).map_err(Into::into))
            .collect()
    };
    let mut f = mac(dst_mac)?;
    f.extend(mac(src_mac)?);
    f.extend([0x08, 0x00]);
    let src: std::net::Ipv4Addr = src.parse()?;
    let dst: std::net::Ipv4Addr = dst.parse()?;
    let mut ip = vec![0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip.extend(src.octets());
    ip.extend(dst.octets());
    let sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(w[0]) << 8 | u32::from(w[1]))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let checksum = !((folded & 0xffff) + (folded >> 16)) as u16;
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    f.extend(ip);
    f.extend([0x9c, 0x40, 0, 9, 0, 26, 0, 0]); // UDP 40000 -> 9, no checksum
    f.extend([0x41; 18]);
    Ok(f)
}
