//! One AF_XDP socket on one receive queue of a tap, through `xdpilone`:
//! a UMEM of frames we own, the fill ring we hand them to the kernel on,
//! and the receive ring the tap program's redirects land in.

use std::{num::NonZeroU32, os::fd::RawFd, ptr::NonNull};

use anyhow::{anyhow, Result};
use xdpilone::{
    xdp::XdpStatisticsV2, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, User,
};

/// Frames of the UMEM (each `FRAME_SIZE` bytes): what the kernel can hold
/// for us while we are busy.
pub const FRAMES: u32 = 4096;
const FRAME_SIZE: u32 = 4096;
/// The receive ring: frames written and not yet read, at most.
pub const RX_RING: u32 = 2048;

/// `sockaddr_xdp` bind flags (linux/if_xdp.h; xdpilone leaves them to us).
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const SOL_XDP: libc::c_int = 283;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;

/// How frames reach the UMEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureMode {
    /// The driver writes into our frames directly.
    ZeroCopy,
    /// The kernel copies each frame (drivers without AF_XDP support, veth).
    Copy,
}

impl CaptureMode {
    pub fn label(self) -> &'static str {
        match self {
            CaptureMode::ZeroCopy => "zero-copy",
            CaptureMode::Copy => "copy",
        }
    }
}

/// Page-aligned anonymous memory for the UMEM, unmapped on drop.
struct Area {
    ptr: NonNull<[u8]>,
}

impl Area {
    fn new(len: usize) -> Result<Area> {
        // SAFETY: an anonymous private mapping; checked for failure.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(anyhow!(
                "cannot map {len} bytes for the UMEM: {}",
                std::io::Error::last_os_error()
            ));
        }
        let slice = std::ptr::slice_from_raw_parts_mut(ptr as *mut u8, len);
        Ok(Area {
            ptr: NonNull::new(slice).expect("mmap does not return NULL on success"),
        })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once; the socket using it is
        // closed first (field order in `XskQueue`).
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.ptr.len()) };
    }
}

/// What the socket's kernel counters say was lost on this queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SocketLosses {
    /// Redirected, but the receive ring was full (we read too slowly).
    pub ring_full: u64,
    /// Redirected, but no free frame was on the fill ring (idem).
    pub no_buffer: u64,
}

/// An open, bound socket on one queue.
pub struct XskQueue {
    pub queue: u32,
    pub mode: CaptureMode,
    /// Frames read so far.
    pub frames_read: u64,
    rx: RingRx,
    fill: xdpilone::DeviceQueue,
    user: User,
    /// Frames read in this round, to hand back to the fill ring (kept to
    /// spare an allocation per round).
    done: Vec<u64>,
    // Dropped after the rings and sockets above, which use it.
    _umem: Umem,
    area: Area,
}

// SAFETY: the UMEM and rings point into mappings (our area, the kernel's
// rings) valid in every thread of the process; an `XskQueue` is used by
// one thread at a time (the tap reader, which it is moved to once), so
// the single-producer/single-consumer ring protocol holds.
unsafe impl Send for XskQueue {}

impl XskQueue {
    /// Opens a socket on `ifindex`'s `queue`: zero-copy if the driver can,
    /// else copy mode.
    pub fn open(ifindex: u32, queue: u32) -> Result<XskQueue> {
        match Self::open_with(ifindex, queue, XDP_ZEROCOPY) {
            Ok(q) => Ok(q),
            Err(_) => Self::open_with(ifindex, queue, XDP_COPY),
        }
    }

    fn open_with(ifindex: u32, queue: u32, bind_flags: u16) -> Result<XskQueue> {
        let errno = |what: &'static str| move |e: xdpilone::Errno| anyhow!("{what}: {e}");
        let area = Area::new((FRAMES * FRAME_SIZE) as usize)?;
        let config = UmemConfig {
            fill_size: FRAMES,
            complete_size: 64,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page aligned, FRAMES * FRAME_SIZE long, and
        // outlives the UMEM (field order).
        let umem = unsafe { Umem::new(config, area.ptr) }.map_err(errno("registering the UMEM"))?;
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex).map_err(errno("interface"))?;
        info.set_queue(queue);
        let socket = Socket::with_shared(&info, &umem).map_err(errno("AF_XDP socket"))?;
        let mut fill = umem.fq_cq(&socket).map_err(errno("fill ring"))?;
        let user = umem
            .rx_tx(
                &socket,
                &SocketConfig {
                    rx_size: NonZeroU32::new(RX_RING),
                    tx_size: None,
                    bind_flags,
                },
            )
            .map_err(errno("receive ring"))?;
        let rx = user.map_rx().map_err(errno("mapping the receive ring"))?;
        // Every frame to the kernel before binding: it may fill them all.
        {
            let mut writer = fill.fill(FRAMES);
            writer.insert((0..FRAMES).map(|i| u64::from(i * FRAME_SIZE)));
            writer.commit();
        }
        umem.bind(&user).map_err(errno("binding to the queue"))?;
        let mode = if zero_copy(rx.as_raw_fd()) {
            CaptureMode::ZeroCopy
        } else {
            CaptureMode::Copy
        };
        Ok(XskQueue {
            queue,
            mode,
            frames_read: 0,
            rx,
            fill,
            user,
            done: Vec::with_capacity(FRAMES as usize),
            _umem: umem,
            area,
        })
    }

    /// The socket, for the XSKMAP and for poll(2).
    pub fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Hands up to `max` received frames to `frame` and gives their buffers
    /// back to the kernel; returns how many.
    pub fn read(&mut self, max: u32, frame: &mut dyn FnMut(&[u8])) -> u32 {
        let base = self.area.ptr.as_ptr() as *const u8;
        let size = self.area.ptr.len() as u64;
        let done = &mut self.done;
        done.clear();
        {
            let mut reader = self.rx.receive(max);
            while let Some(desc) = reader.read() {
                let (addr, len) = (desc.addr, u64::from(desc.len));
                if addr.checked_add(len).is_some_and(|end| end <= size) {
                    // SAFETY: in bounds of our mapping (checked), and the
                    // kernel does not write a frame it has handed us until
                    // we put it back on the fill ring below.
                    let data = unsafe {
                        std::slice::from_raw_parts(base.add(addr as usize), len as usize)
                    };
                    frame(data);
                }
                done.push(addr & !u64::from(FRAME_SIZE - 1));
            }
            reader.release();
        }
        let n = done.len() as u32;
        self.frames_read += u64::from(n);
        if n > 0 {
            let mut writer = self.fill.fill(n);
            writer.insert(done.iter().copied());
            writer.commit();
        }
        n
    }

    /// The kernel's loss counters of this socket.
    pub fn losses(&self) -> SocketLosses {
        let stats: XdpStatisticsV2 = self.user.statistics_v2().unwrap_or_default();
        SocketLosses {
            ring_full: stats.rx_ring_full,
            no_buffer: stats.rx_dropped,
        }
    }
}

/// Whether the kernel bound this socket in zero-copy mode.
fn zero_copy(fd: RawFd) -> bool {
    let mut options: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `options`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            &mut options as *mut u32 as *mut libc::c_void,
            &mut len,
        )
    };
    rc == 0 && options & XDP_OPTIONS_ZEROCOPY != 0
}
