//! Mirror-port mode: interfaces that receive copies of other hosts'
//! traffic (a switch's SPAN port). The tap program sends every frame to
//! an AF_XDP socket per receive queue; one reader thread turns frames into
//! detection events (`feed`) for the same engine the inline datapath feeds.

pub mod feed;
pub mod xsk;

use anyhow::{bail, Context, Result};
use aya::{
    maps::{MapData, PerCpuArray, XskMap},
    programs::Xdp,
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
    read: Vec<u64>,
    /// Queues whose socket reported an error, no longer polled.
    failed: Vec<bool>,
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
        let xdp: &mut Xdp = program
            .program_mut(TAP_PROGRAM_NAME)
            .context("the eBPF object has no tap program")?
            .try_into()?;
        let (_, xdp_mode) = datapath::attach_in_mode(xdp, interface, mode)?;
        Ok(Tap {
            interface: interface.to_owned(),
            xdp_mode,
            read: vec![0; queues.len()],
            failed: vec![false; queues.len()],
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
            .zip(&self.read)
            .map(|(q, read)| {
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
                    read: *read,
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
    traffic: TapTraffic,
}

impl TapReader {
    pub fn new(taps: Vec<Tap>, feed: TapFeed, traffic: TapTraffic) -> TapReader {
        TapReader {
            taps,
            feed,
            traffic,
        }
    }

    /// Waits up to `timeout_ms` for frames on any queue, then reads what
    /// is there into events; returns the frames read.
    pub fn poll(&mut self, timeout_ms: i32, now: Nanos, emit: &mut dyn FnMut(Event)) -> u64 {
        let live: Vec<(usize, usize)> = self
            .taps
            .iter()
            .enumerate()
            .flat_map(|(t, tap)| {
                (0..tap.queues.len())
                    .filter(|q| !tap.failed[*q])
                    .map(move |q| (t, q))
            })
            .collect();
        let mut fds: Vec<libc::pollfd> = live
            .iter()
            .map(|&(t, q)| libc::pollfd {
                fd: self.taps[t].queues[q].fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of pollfd of the given length
        // (with none, poll only sleeps).
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ready <= 0 {
            return 0;
        }
        // A socket whose interface went away reports an error for ever:
        // stop polling it (instead of spinning) and say so once.
        for (fd, &(t, q)) in fds.iter().zip(&live) {
            if fd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                let tap = &mut self.taps[t];
                tap.failed[q] = true;
                log::warn!(
                    "{}: the AF_XDP socket of queue {} failed (interface gone?); no longer read",
                    tap.interface,
                    tap.queues[q].queue
                );
            }
        }
        let mut total = 0u64;
        let feed = &mut self.feed;
        for tap in &mut self.taps {
            for (queue, read) in tap.queues.iter_mut().zip(tap.read.iter_mut()) {
                let n = queue.read(READ_BUDGET, &mut |frame| feed.frame(now, frame, emit));
                *read += u64::from(n);
                total += u64::from(n);
            }
        }
        total
    }

    /// Ends idle flows.
    pub fn tick(&mut self, now: Nanos, emit: &mut dyn FnMut(Event)) {
        self.feed.tick(now, emit);
    }

    pub fn status(&self) -> TapStatus {
        TapStatus {
            traffic: Some(self.traffic),
            queues: self.taps.iter().flat_map(Tap::status).collect(),
            feed: self.feed.counts,
            open_flows: self.feed.open_flows(),
            flows_evicted: self.feed.flows_evicted(),
        }
    }

    pub fn taps(&self) -> &[Tap] {
        &self.taps
    }
}
