//! `cargo xtask bench --only tap`: frames per second from a mirror port
//! into the detection engine on one core, read through AF_XDP (the tap
//! program and sensord's own reader, `sensor_user::tap`) and, on the same
//! traffic in the same run, through a plain AF_PACKET socket. Each frame is
//! decoded, tracked as a flow and its events go through the engine.
//!
//! A namespace holds a veth pair: the generator (XDP live frames, CPU 1)
//! sends 60-byte UDP frames spread over `flows` source ports into one end;
//! the reader (CPU 0) reads the other. Figures per method: frames read per
//! second of the run, the reader thread's CPU time per frame, the whole
//! machine's busy CPU time per frame (the kernel's delivery included), and
//! the share of frames lost because the reader fell behind. Rounds are
//! interleaved (AF_XDP, AF_PACKET, AF_XDP, ...) and the median is kept.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use clap::Parser;
use labnet::Netns;
use sensor_tests::{
    bench::{
        netns::{busy_cpu_ns, if_index, in_netns, spawn_in_netns, udp_frame},
        peers, summary,
    },
    support::{bpffs::TempBpffs, unique_name},
};
use sensor_user::{
    config::XdpModeSetting,
    datapath::{sensor_object, Datapath},
    detect::{DetectionConfig, Engine, Event},
    tap::{Tap, TapFeed, TapReader, TapTraffic},
};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Frames the generator sends per run.
    #[arg(long, default_value_t = 2_000_000)]
    frames: u32,
    /// Runs per method; the median is kept.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Flows the frames are spread over (UDP source ports).
    #[arg(long, default_value_t = 1024)]
    flows: u32,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq)]
enum Method {
    AfXdp,
    AfPacket,
}

impl Method {
    fn label(self) -> &'static str {
        match self {
            Method::AfXdp => "AF_XDP (sensord's tap)",
            Method::AfPacket => "AF_PACKET socket",
        }
    }
}

struct Run {
    mfps: f64,
    reader_ns_per_frame: f64,
    machine_ns_per_frame: f64,
    lost_share: f64,
    events: u64,
}

/// What the reader did.
struct Read {
    frames: u64,
    lost: u64,
    cpu_ns: u64,
    events: u64,
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Reads the tap through sensord's AF_XDP reader into an engine until
/// `stop`, once `ready` has been raised.
fn read_af_xdp(pin_dir: PathBuf, ready: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> Result<Read> {
    let datapath =
        Datapath::load_object(&pin_dir, sensor_object()?).context("loading the datapath")?;
    let tap = Tap::open(&datapath, "tap0", XdpModeSetting::Native).context("opening the tap")?;
    let mut reader = TapReader::new(vec![tap], TapFeed::new(TapTraffic::All, &[]));
    let mut engine = EngineSink::new()?;
    ready.store(true, Ordering::Release);
    let (frames, cpu_ns) = read_until_stopped(&stop, |now| {
        reader.poll(10, now, &mut |e| engine.observe(e))
    });
    let status = reader.status();
    let lost = status
        .queues
        .iter()
        .map(|q| q.lost_no_socket + q.lost_ring_full + q.lost_no_buffer)
        .sum();
    Ok(Read {
        frames,
        lost,
        cpu_ns,
        events: engine.events,
    })
}

/// An engine fed as sensord feeds it, counting the events.
struct EngineSink {
    engine: Engine,
    events: u64,
}

impl EngineSink {
    fn new() -> Result<EngineSink> {
        Ok(EngineSink {
            engine: Engine::new(&DetectionConfig::default())?,
            events: 0,
        })
    }

    fn observe(&mut self, event: Event) {
        self.events += 1;
        self.engine.observe(&event);
    }
}

/// Calls `round` (which waits up to 10 ms for frames and reads what there
/// is, given the time) until `stop` is raised and a round finds nothing;
/// the frames read and this thread's CPU time.
fn read_until_stopped(stop: &AtomicBool, mut round: impl FnMut(u64) -> u64) -> (u64, u64) {
    let cpu0 = thread_cpu_ns();
    let mut frames = 0;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let n = round(now);
        frames += n;
        if n == 0 && stopping {
            return (frames, thread_cpu_ns() - cpu0);
        }
    }
}

/// The same, through a plain AF_PACKET socket bound to the tap: one
/// recv(2) per frame.
fn read_af_packet(ready: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> Result<Read> {
    let protocol = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket calls on a descriptor we own and close below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, protocol as i32) };
    ensure!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol;
    addr.sll_ifindex = if_index("tap0")? as i32;
    let size: libc::c_int = 64 << 20;
    // SAFETY: as above; the pointers are to live locals of the right size.
    unsafe {
        let rc = libc::bind(
            fd,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        ensure!(
            rc == 0,
            "binding to tap0: {}",
            std::io::Error::last_os_error()
        );
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const _ as *const libc::c_void,
            4,
        );
    }
    let mut feed = TapFeed::new(TapTraffic::All, &[]);
    let mut engine = EngineSink::new()?;
    let mut buf = vec![0u8; 2048];
    ready.store(true, Ordering::Release);
    let (frames, cpu_ns) = read_until_stopped(&stop, |now| {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 10) };
        let mut got = 0;
        loop {
            // SAFETY: recv into our buffer, at most its length.
            let n = unsafe {
                libc::recv(
                    fd,
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                return got;
            }
            got += 1;
            feed.frame(now, &buf[..n as usize], &mut |e| engine.observe(e));
        }
    });
    let mut stats = [0u32; 2];
    let mut len = 8u32;
    // SAFETY: PACKET_STATISTICS fills a tpacket_stats (two u32s).
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            stats.as_mut_ptr() as *mut libc::c_void,
            &mut len,
        );
        libc::close(fd);
    }
    Ok(Read {
        frames,
        lost: u64::from(stats[1]),
        cpu_ns,
        events: engine.events,
    })
}

fn measure(
    netns: &str,
    pin_dir: &std::path::Path,
    method: Method,
    frame: &[u8],
    args: &Args,
) -> Result<Run> {
    let (ready, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (r, s) = (ready.clone(), stop.clone());
    let pin_dir = pin_dir.to_owned();
    let reader = spawn_in_netns(netns, Some(0), move || match method {
        Method::AfXdp => read_af_xdp(pin_dir, r, s),
        Method::AfPacket => read_af_packet(r, s),
    });
    while !ready.load(Ordering::Acquire) {
        if reader.is_finished() {
            let failed = reader
                .join()
                .map_err(|_| anyhow::anyhow!("the reader panicked"))?;
            return Err(failed
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the reader stopped")))
            .context(format!("{}: setting up the reader", method.label()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (frame, frames, flows) = (frame.to_vec(), args.frames, args.flows);
    let (wall, busy) = in_netns(netns, Some(1), move || {
        let generator = peers::XdpGenerator::load_spread(if_index("gen0")?, &frame, flows)?;
        let busy0 = busy_cpu_ns();
        let started = Instant::now();
        generator.send(&frame, frames)?;
        let wall = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(300)); // the reader drains
        Ok((wall, busy_cpu_ns() - busy0))
    })?;
    stop.store(true, Ordering::Release);
    let read = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader panicked"))??;
    ensure!(read.frames > 0, "{}: no frame was read", method.label());
    Ok(Run {
        mfps: read.frames as f64 / wall / 1e6,
        reader_ns_per_frame: read.cpu_ns as f64 / read.frames as f64,
        machine_ns_per_frame: busy as f64 / read.frames as f64,
        lost_share: read.lost as f64 / f64::from(args.frames),
        events: read.events,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tag = unique_name("tb");
    let netns = Netns::create(&tag)?;
    netns.ip(&[
        "link", "add", "gen0", "type", "veth", "peer", "name", "tap0",
    ])?;
    for dev in ["gen0", "tap0"] {
        netns.sysctl(&format!("net.ipv6.conf.{dev}.disable_ipv6"), "1")?;
        netns.ip(&["link", "set", dev, "up"])?;
    }
    // The generator's frames leave gen0 by XDP redirect; a veth delivers
    // redirected frames only when its peer has an XDP program, which the
    // AF_XDP runs give tap0. For the AF_PACKET runs a pass-through one.
    let bpffs = TempBpffs::new();
    let frame = udp_frame(
        "02:00:00:00:00:02",
        "02:00:00:00:00:01",
        "10.10.0.11",
        "10.10.0.12",
    )?;
    let mut runs: Vec<(Method, Run)> = Vec::new();
    for round in 0..args.rounds {
        for method in [Method::AfXdp, Method::AfPacket] {
            eprintln!("round {}: {} ...", round + 1, method.label());
            let floor = (method == Method::AfPacket)
                .then(|| attach_floor(&tag))
                .transpose()?;
            runs.push((
                method,
                measure(&tag, &bpffs.pin_dir(), method, &frame, &args)?,
            ));
            drop(floor);
        }
    }
    println!(
        "\nmirror port to detection engine, one reader core, {} frames over {} flows x {} runs, median",
        args.frames, args.flows, args.rounds
    );
    println!(
        "{:<24} {:>10} {:>16} {:>17} {:>8} {:>10}",
        "method", "Mframes/s", "reader ns/frame", "machine ns/frame", "lost", "events"
    );
    let mut doc = Vec::new();
    for method in [Method::AfXdp, Method::AfPacket] {
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|(m, _)| *m == method)
            .map(|(_, r)| r)
            .collect();
        let med = |f: fn(&Run) -> f64| summary(mine.iter().map(|r| f(r)).collect());
        let (mfps, reader, machine, lost) = (
            med(|r| r.mfps),
            med(|r| r.reader_ns_per_frame),
            med(|r| r.machine_ns_per_frame),
            med(|r| r.lost_share),
        );
        println!(
            "{:<24} {:>10.2} {:>16.0} {:>17.0} {:>7.1}% {:>10}",
            method.label(),
            mfps.1,
            reader.1,
            machine.1,
            lost.1 * 100.0,
            mine.first().map_or(0, |r| r.events)
        );
        doc.push(json!({
            "method": method.label(),
            "mframes_per_s": {"min": mfps.0, "median": mfps.1, "max": mfps.2},
            "reader_ns_per_frame": {"min": reader.0, "median": reader.1, "max": reader.2},
            "machine_ns_per_frame": {"min": machine.0, "median": machine.1, "max": machine.2},
            "lost_share": {"min": lost.0, "median": lost.1, "max": lost.2},
        }));
    }
    if let Some(path) = &args.json {
        let out = json!({"frames": args.frames, "flows": args.flows, "rounds": args.rounds, "methods": doc});
        std::fs::write(path, serde_json::to_vec_pretty(&out)?)?;
    }
    drop(netns);
    Ok(())
}

/// An XDP_PASS program on tap0, so redirected frames reach its stack.
fn attach_floor(netns: &str) -> Result<aya::Ebpf> {
    in_netns(netns, None, || {
        let mut ebpf = peers::floor();
        let program: &mut aya::programs::Xdp =
            ebpf.program_mut("floor_pass").unwrap().try_into()?;
        program.attach("tap0", aya::programs::XdpMode::Driver)?;
        Ok(ebpf)
    })
}
