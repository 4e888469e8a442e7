//! Mirror-port mode: interfaces that receive copies of other hosts'
//! traffic (a switch's SPAN port). The tap program sends every frame to
//! an AF_XDP socket per receive queue; one reader thread turns frames into
//! detection events (`feed`) for the same engine the inline datapath feeds.

pub mod feed;
pub mod xsk;

use anyhow::{bail, Context, Result};
use aya::{
    maps::{MapData, PerCpuArray, XskMap},
    Ebpf,
};
use sensor_common::{map_names, TapCounters, MAX_TAP_QUEUES, TAP_PROGRAM_NAME};
use serde::Serialize;

use crate::{
    config::XdpModeSetting,
    datapath::{self, Datapath},
    detect::{Event, Nanos},
};
pub use feed::{FeedCounts, TapFeed, TapTraffic};
pub use xsk::{CaptureMode, XskQueue};

/// One receive queue of a tap, as the metrics and `sensorctl status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct QueueStatus {
    pub interface: String,
    pub queue: u32,
    pub mode: CaptureMode,
    /// Frames the tap program saw.
    pub frames: u64,
    /// Frames the reader took from the socket.
    pub read: u64,
    /// Frames lost: no socket on the queue, receive ring full, no free
    /// buffer on the fill ring (the last two: the reader fell behind).
    pub lost_no_socket: u64,
    pub lost_ring_full: u64,
    pub lost_no_buffer: u64,
}

/// Every tap's figures, refreshed by the reader.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TapStatus {
    pub traffic: Option<TapTraffic>,
    pub queues: Vec<QueueStatus>,
    #[serde(skip)]
    pub feed: FeedCounts,
    pub open_flows: usize,
    pub flows_evicted: u64,
}

/// One tap: its program instance (attached for as long as this lives),
/// and a socket per receive queue.
pub struct Tap {
    pub interface: String,
    /// "native" or "generic".
    pub xdp_mode: &'static str,
    queues: Vec<XskQueue>,
    counters: PerCpuArray<MapData, TapCounters>,
    // Dropping these closes the socket map and detaches the program.
    _sockets: XskMap<MapData>,
    _program: Ebpf,
}

/// Receive queues of an interface: its channels as ethtool reports them
/// (`ETHTOOL_GCHANNELS`, which answers in the caller's namespace), or one
/// for a driver without channels.
fn rx_queues(interface: &str) -> Result<u32> {
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolChannels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    let mut channels = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    // SAFETY: a zeroed ifreq with the name copied in (shorter than
    // IFNAMSIZ, checked by the configuration) and a pointer to a live
    // ethtool_channels, for one ioctl on a socket closed right after.
    let rc = unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr
            .ifr_name
            .iter_mut()
            .zip(interface.bytes().take(libc::IFNAMSIZ - 1))
        {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = &mut channels as *mut EthtoolChannels as *mut libc::c_char;
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let rc = libc::ioctl(fd, SIOCETHTOOL, &mut ifr);
        libc::close(fd);
        rc
    };
    if rc != 0 {
        return Ok(1);
    }
    Ok((channels.rx_count + channels.combined_count).max(1))
}

impl Tap {
    /// Opens a socket on every receive queue of `interface`, then attaches
    /// the tap program (so frames find their sockets from the first one).
    pub fn open(datapath: &Datapath, interface: &str, mode: XdpModeSetting) -> Result<Tap> {
        let ifindex = datapath::if_index(interface)?;
        let queue_count = rx_queues(interface)?;
        if queue_count > MAX_TAP_QUEUES {
            bail!("{interface} has {queue_count} receive queues; a tap reads at most {MAX_TAP_QUEUES}");
        }
        let mut program = datapath.load_tap_program()?;
        let mut take = |name: &str| {
            program
                .take_map(name)
                .with_context(|| format!("the eBPF object has no map {name}"))
        };
        let mut sockets = XskMap::try_from(take(map_names::TAP_SOCKETS)?)?;
        let counters = PerCpuArray::try_from(take(map_names::TAP_COUNTERS)?)?;
        let mut queues = Vec::new();
        for queue in 0..queue_count {
            let socket = XskQueue::open(ifindex, queue).with_context(|| {
                format!("{interface}: opening an AF_XDP socket on queue {queue}")
            })?;
            sockets
                .set(queue, socket.fd(), 0)
                .with_context(|| format!("{interface}: registering the socket of queue {queue}"))?;
            queues.push(socket);
        }
        let xdp = datapath::xdp_program(&mut program, TAP_PROGRAM_NAME)?;
        let (_, xdp_mode) = datapath::attach_in_mode(xdp, interface, mode)?;
        Ok(Tap {
            interface: interface.to_owned(),
            xdp_mode,
            queues,
            counters,
            _sockets: sockets,
            _program: program,
        })
    }

    pub fn queues(&self) -> impl Iterator<Item = &XskQueue> {
        self.queues.iter()
    }

    fn status(&self) -> Vec<QueueStatus> {
        self.queues
            .iter()
            .map(|q| {
                let counters = self
                    .counters
                    .get(&q.queue, 0)
                    .map(|per_cpu| {
                        per_cpu
                            .iter()
                            .fold(TapCounters::default(), |sum, c| TapCounters {
                                frames: sum.frames + c.frames,
                                no_socket: sum.no_socket + c.no_socket,
                            })
                    })
                    .unwrap_or_default();
                let losses = q.losses();
                QueueStatus {
                    interface: self.interface.clone(),
                    queue: q.queue,
                    mode: q.mode,
                    frames: counters.frames,
                    read: q.frames_read,
                    lost_no_socket: counters.no_socket,
                    lost_ring_full: losses.ring_full,
                    lost_no_buffer: losses.no_buffer,
                }
            })
            .collect()
    }
}

/// Frames handed over per queue per round, so one busy queue does not
/// starve the others.
const READ_BUDGET: u32 = 256;

/// Every tap's sockets, read by one thread into one feed.
pub struct TapReader {
    taps: Vec<Tap>,
    feed: TapFeed,
    /// One per queue of every tap, in order.
    fds: Vec<libc::pollfd>,
    /// Whether the last round read anything: then the rings are read again
    /// at once, without a system call.
    busy: bool,
}

impl TapReader {
    pub fn new(taps: Vec<Tap>, feed: TapFeed) -> TapReader {
        let fds = taps
            .iter()
            .flat_map(|t| t.queues())
            .map(|q| libc::pollfd {
                fd: q.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        TapReader {
            taps,
            feed,
            fds,
            busy: false,
        }
    }

    /// Reads what the queues hold into events, after waiting up to
    /// `timeout_ms` for frames if the last round found none; returns the
    /// frames read. (A socket whose interface went away is never readable
    /// again: it costs nothing.)
    pub fn poll(&mut self, timeout_ms: i32, now: Nanos, emit: &mut dyn FnMut(Event)) -> u64 {
        if !self.busy {
            // SAFETY: `fds` is a valid array of pollfd of the given length.
            let ready = unsafe {
                libc::poll(
                    self.fds.as_mut_ptr(),
                    self.fds.len() as libc::nfds_t,
                    timeout_ms,
                )
            };
            if ready <= 0 {
                return 0;
            }
        }
        let mut total = 0u64;
        let feed = &mut self.feed;
        for queue in self.taps.iter_mut().flat_map(|t| t.queues.iter_mut()) {
            let n = queue.read(READ_BUDGET, &mut |frame| feed.frame(now, frame, emit));
            total += u64::from(n);
        }
        self.busy = total > 0;
        total
    }

    /// Ends idle flows.
    pub fn tick(&mut self, now: Nanos, emit: &mut dyn FnMut(Event)) {
        self.feed.tick(now, emit);
    }

    pub fn status(&self) -> TapStatus {
        TapStatus {
            traffic: Some(self.feed.traffic()),
            queues: self.taps.iter().flat_map(Tap::status).collect(),
            feed: self.feed.counts,
            open_flows: self.feed.open_flows(),
            flows_evicted: self.feed.flows_evicted(),
        }
    }
}
