//! End to end on veth: a gateway namespace forwards between a generator and
//! a sink, with one filter at a time on its ingress port: none, the sensor
//! (sensord, telemetry off and on), xdp-filter, an nftables netdev-ingress
//! rule and an iptables raw-table rule (nf_tables and legacy back ends).
//! For each, a generator sends packets that the filter drops, then packets it
//! lets through to be forwarded. Run by `cargo xtask bench`.
//!
//! The generator is BPF_PROG_TEST_RUN in live-frames mode redirecting
//! frames into the veth, as xdp-trafficgen does: the gateway's port
//! receives XDP frames as from a NIC driver, and a program is always
//! attached there so that veth runs its XDP receive path (the floor,
//! XDP_PASS, for "none" and the netfilter rows). A packet-socket generator
//! (trafgen) would hand veth socket buffers, which it must copy into an XDP
//! buffer before any XDP program sees them: that measures veth's copy, a
//! cost a NIC does not have, rather than the filters.
//!
//! On veth the receiving side runs in the sender's softirq, on the sender's
//! CPU, so one generator pinned to one core carries the whole per-packet
//! cost: generation, the filter and (for passed packets) forwarding. The
//! comparison is therefore CPU time per packet over the whole machine
//! (/proc/stat, busy time over the run divided by packets sent), and the
//! rate one core reaches; the generator's share is the same in every row,
//! so differences between rows are the filters'.

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use clap::Parser;
use labnet::{cmd, Netns};
use sensor_tests::{
    bench::{
        netns::{busy_cpu_ns, if_index, in_netns, udp_frame},
        peers, summary,
    },
    support::{bpffs::TempBpffs, unique_name},
};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Packets per run.
    #[arg(long, default_value_t = 2_000_000)]
    packets: u64,
    /// Runs per (filter, traffic); the median is kept.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

const GEN_IP: &str = "10.10.0.2";
const PASS_SRC: &str = "10.10.0.5";
const DROP_SRC: &str = "10.10.0.66";
const SINK_IP: &str = "10.20.0.2";
/// Where the packets go: routed to the sink's port, but not the sink's own
/// address, so the sink discards them at once (no forwarding, no answer).
const TARGET_IP: &str = "10.20.0.99";

const FILTERS: [&str; 7] = [
    "none",
    "sensor",
    "sensor+telemetry",
    "xdp-filter",
    "nftables netdev ingress",
    "iptables raw (nf_tables)",
    "iptables raw (legacy)",
];

/// Generator -- gateway (ingress port `in0`, filters here) -- sink.
struct Net {
    generator: Netns,
    gateway: Netns,
    sink: Netns,
    gw_mac: String,
    gen_mac: String,
}

fn build_net(tag: &str) -> Result<Net> {
    let generator = Netns::create(&format!("{tag}-gen"))?;
    let gateway = Netns::create(&format!("{tag}-gw"))?;
    let sink = Netns::create(&format!("{tag}-sink"))?;
    for (ns, dev, peer_ns, peer) in [
        (&generator, "veth0", &gateway, "in0"),
        (&gateway, "out0", &sink, "veth0"),
    ] {
        ns.ip(&[
            "link",
            "add",
            dev,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "netns",
            peer_ns.name(),
        ])?;
        ns.ip(&["link", "set", dev, "up"])?;
        peer_ns.ip(&["link", "set", peer, "up"])?;
    }
    generator.ip(&["addr", "add", &format!("{GEN_IP}/24"), "dev", "veth0"])?;
    gateway.ip(&["addr", "add", "10.10.0.1/24", "dev", "in0"])?;
    gateway.ip(&["addr", "add", "10.20.0.1/24", "dev", "out0"])?;
    sink.ip(&["addr", "add", &format!("{SINK_IP}/24"), "dev", "veth0"])?;
    sink.ip(&["route", "add", "default", "via", "10.20.0.1"])?;
    gateway.sysctl("net.ipv4.ip_forward", "1")?;
    gateway.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
    gateway.sysctl("net.ipv4.conf.in0.rp_filter", "0")?;
    let sink_mac = mac(&sink, "veth0")?;
    gateway.ip(&[
        "neigh",
        "replace",
        TARGET_IP,
        "lladdr",
        &sink_mac,
        "dev",
        "out0",
        "nud",
        "permanent",
    ])?;
    let gw_mac = mac(&gateway, "in0")?;
    let gen_mac = mac(&generator, "veth0")?;
    Ok(Net {
        generator,
        gateway,
        sink,
        gw_mac,
        gen_mac,
    })
}

fn mac(ns: &Netns, dev: &str) -> Result<String> {
    let links: serde_json::Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", dev])?)?;
    Ok(links[0]["address"].as_str().context("no MAC")?.to_string())
}

/// Packets a link has received.
fn rx_packets(ns: &Netns, dev: &str) -> Result<u64> {
    let links: serde_json::Value =
        serde_json::from_str(&ns.ip(&["-j", "-s", "link", "show", dev])?)?;
    Ok(links[0]["stats64"]["rx"]["packets"].as_u64().unwrap_or(0))
}

struct Run {
    mpps: f64,
    cpu_ns_per_packet: f64,
    /// Share of the packets sent that reached the sink.
    reached_sink: f64,
}

/// Sends `packets` from the generator on CPU 1 and measures. The generator
/// program is loaded before the clock starts.
fn send(net: &Net, frame: &[u8], packets: u64) -> Result<Run> {
    let sink_rx0 = rx_packets(&net.sink, "veth0")?;
    let frame = frame.to_vec();
    let (wall, busy) = in_netns(net.generator.name(), Some(1), move || {
        let generator = peers::XdpGenerator::load(if_index("veth0")?, &frame)?;
        let busy0 = busy_cpu_ns();
        let started = Instant::now();
        generator.send(&frame, packets as u32)?;
        let wall = started.elapsed().as_secs_f64();
        sleep(Duration::from_millis(50)); // the last softirq work
        Ok((wall, busy_cpu_ns() - busy0))
    })?;
    let sink_rx1 = rx_packets(&net.sink, "veth0")?;
    Ok(Run {
        mpps: packets as f64 / wall / 1e6,
        cpu_ns_per_packet: busy as f64 / packets as f64,
        reached_sink: (sink_rx1 - sink_rx0) as f64 / packets as f64,
    })
}

/// What keeps a filter in place while it is measured.
enum Guard {
    Nothing,
    Sensord(#[allow(dead_code)] Sensord),
    Floor(#[allow(dead_code)] aya::Ebpf),
}

/// The floor (XDP_PASS) on the gateway's port, so that veth takes its XDP
/// receive path for filters that are not XDP programs themselves.
fn attach_floor(net: &Net) -> Result<Guard> {
    let ebpf = in_netns(net.gateway.name(), None, || {
        let mut ebpf = peers::floor();
        let program: &mut aya::programs::Xdp =
            ebpf.program_mut("floor_pass").unwrap().try_into()?;
        program.attach("in0", aya::programs::XdpMode::Driver)?;
        Ok(ebpf)
    })?;
    Ok(Guard::Floor(ebpf))
}

/// Puts one filter on the gateway's ingress port, dropping `DROP_SRC`.
fn install(net: &Net, filter: &str, work: &Path) -> Result<Guard> {
    let gw = &net.gateway;
    let is_xdp = matches!(filter, "sensor" | "sensor+telemetry" | "xdp-filter");
    let guard = if !is_xdp {
        attach_floor(net)?
    } else {
        Guard::Nothing
    };
    match filter {
        "none" => {}
        "sensor" | "sensor+telemetry" => {
            let sensord = Sensord::start(gw, work, filter == "sensor+telemetry")?;
            sensord.ctl(&["isolate", DROP_SRC, "--reason", "bench"])?;
            return Ok(Guard::Sensord(sensord));
        }
        "xdp-filter" => {
            let script = format!(
                "mount -t bpf bpf /sys/fs/bpf && xdp-filter load in0 --mode native \
                 && xdp-filter ip {DROP_SRC} --mode src"
            );
            cmd::run(gw.command("sh").args(["-c", &script]))?;
        }
        "nftables netdev ingress" => {
            let rules = format!(
                "table netdev bench {{\n chain ingress {{\n  type filter hook ingress device in0 priority 0;\n  ip saddr {DROP_SRC} drop\n }}\n}}\n"
            );
            let path = work.join("bench.nft");
            std::fs::write(&path, rules)?;
            gw.exec("nft", &["-f", &path.to_string_lossy()])?;
        }
        "iptables raw (nf_tables)" | "iptables raw (legacy)" => {
            let rule = [
                "-t",
                "raw",
                "-A",
                "PREROUTING",
                "-s",
                DROP_SRC,
                "-j",
                "DROP",
            ];
            gw.exec(iptables(filter), &rule)?;
        }
        other => anyhow::bail!("unknown filter {other}"),
    }
    Ok(guard)
}

/// The iptables binary of an iptables row (its back end).
fn iptables(filter: &str) -> &'static str {
    if filter.ends_with("(legacy)") {
        "iptables-legacy"
    } else {
        "iptables-nft"
    }
}

fn uninstall(net: &Net, filter: &str) -> Result<()> {
    let gw = &net.gateway;
    match filter {
        "xdp-filter" => {
            // Its own records live in a bpffs that `ip netns exec` does not
            // keep; detaching from the link is what counts.
            gw.ip(&["link", "set", "dev", "in0", "xdp", "off"])?;
        }
        "nftables netdev ingress" => {
            gw.exec("nft", &["delete", "table", "netdev", "bench"])?;
        }
        "iptables raw (nf_tables)" | "iptables raw (legacy)" => {
            gw.exec(iptables(filter), &["-t", "raw", "-F"])?;
        }
        _ => {}
    }
    Ok(())
}

/// sensord on the gateway's ingress port, with its own bpffs; removes its
/// program and pins when dropped.
struct Sensord {
    child: std::process::Child,
    socket: PathBuf,
    _bpffs: TempBpffs,
}

impl Sensord {
    fn start(gw: &Netns, work: &Path, telemetry: bool) -> Result<Sensord> {
        let bpffs = TempBpffs::new();
        let socket = work.join("sensord.sock");
        let config = work.join("sensord.toml");
        std::fs::write(
            &config,
            format!(
                "interfaces = [\"in0\"]\nmetrics_address = \"127.0.0.1:0\"\ncontrol_socket = {socket:?}\n\
                 state_file = {state:?}\npin_dir = {pins:?}\non_exit = \"remove\"\n\
                 [[segment]]\nname = \"office\"\ncidrs = [\"10.10.0.0/16\"]\n\
                 [[segment]]\nname = \"records\"\ncidrs = [\"10.20.0.0/16\"]\n\
                 [policy]\nallow = [[\"office\", \"records\"]]\n\
                 [detection]\nenabled = {telemetry}\n",
                state = work.join("state.json"),
                pins = bpffs.pin_dir(),
            ),
        )?;
        let _ = std::fs::remove_file(work.join("state.json"));
        let bin = sensor_tests::support::bin_dir().join("sensord");
        let child = gw.spawn(
            &bin,
            &["--config", &config.to_string_lossy()],
            &work.join("sensord.log"),
        )?;
        let sensord = Sensord {
            child,
            socket,
            _bpffs: bpffs,
        };
        for _ in 0..300 {
            if sensord.ctl(&["status"]).is_ok() {
                return Ok(sensord);
            }
            sleep(Duration::from_millis(100));
        }
        anyhow::bail!(
            "sensord did not start: {}",
            std::fs::read_to_string(work.join("sensord.log")).unwrap_or_default()
        )
    }

    fn ctl(&self, args: &[&str]) -> Result<String> {
        cmd::run(
            Command::new(sensor_tests::support::bin_dir().join("sensorctl"))
                .arg("--socket")
                .arg(&self.socket)
                .args(args),
        )
    }
}

impl Drop for Sensord {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tag = unique_name("vb");
    let net = build_net(&tag)?;
    let work = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(&work)?;
    let configs = [
        (
            "drop",
            udp_frame(&net.gw_mac, &net.gen_mac, DROP_SRC, TARGET_IP)?,
        ),
        (
            "forward",
            udp_frame(&net.gw_mac, &net.gen_mac, PASS_SRC, TARGET_IP)?,
        ),
    ];

    let mut rows = Vec::new();
    for filter in FILTERS {
        eprintln!("{filter} ...");
        let guard = install(&net, filter, &work)?;
        // Warm up (neighbour entries, caches).
        send(&net, &configs[1].1, 10_000)?;
        for (traffic, config) in &configs {
            let mut runs = Vec::new();
            for _ in 0..args.rounds {
                runs.push(send(&net, config, args.packets)?);
            }
            let (_, forwarded_share, _) = summary(runs.iter().map(|r| r.reached_sink).collect());
            // A filter that drops must drop, one that passes must forward.
            let expected_forwarding = *traffic == "forward" || filter == "none";
            ensure!(
                (forwarded_share > 0.9) == expected_forwarding,
                "{filter}, {traffic}: {:.0}% of the packets reached the sink",
                forwarded_share * 100.0
            );
            rows.push((filter, *traffic, runs, forwarded_share));
        }
        drop(guard);
        uninstall(&net, filter)?;
    }

    println!(
        "\nend to end on veth, one generator core (XDP live frames), {} packets x {} runs, median",
        args.packets, args.rounds
    );
    println!(
        "{:<26} {:<8} {:>8} {:>14} {:>12} {:>12}",
        "filter", "traffic", "Mpps", "CPU ns/packet", "vs none", "reached sink"
    );
    let median = |runs: &[Run], f: fn(&Run) -> f64| summary(runs.iter().map(f).collect());
    let baseline = |traffic: &str| {
        rows.iter()
            .find(|(f, t, _, _)| *f == "none" && *t == traffic)
            .map(|(_, _, runs, _)| median(runs, |r| r.cpu_ns_per_packet).1)
            .unwrap_or(1.0)
    };
    let mut out = Vec::new();
    for (filter, traffic, runs, share) in &rows {
        let mpps = median(runs, |r| r.mpps);
        let ns = median(runs, |r| r.cpu_ns_per_packet);
        println!(
            "{filter:<26} {traffic:<8} {:>8.3} {:>14.0} {:>12.2} {:>11.0}%",
            mpps.1,
            ns.1,
            ns.1 / baseline(traffic),
            share * 100.0
        );
        out.push(json!({
            "filter": filter, "traffic": traffic,
            "mpps": {"min": mpps.0, "median": mpps.1, "max": mpps.2},
            "cpu_ns_per_packet": {"min": ns.0, "median": ns.1, "max": ns.2},
            "cpu_over_none": ns.1 / baseline(traffic),
            "reached_sink": share,
        }));
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "benchmark": "veth_end_to_end",
            "generator": "xdp_live_frames",
            "packets": args.packets, "rounds": args.rounds,
            "results": out,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
        eprintln!("wrote {}", path.display());
    }
    let _ = std::fs::remove_dir_all(&work);
    drop(net);
    Ok(())
}
