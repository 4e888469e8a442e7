//! The programs measured beside the sensor's: the floor and xdp-filter.

use std::process::Command;

use aya::{programs::Xdp, Ebpf};
use aya_obj::programs::XdpAttachType;
use labnet::{cmd, Netns};

/// The least flow telemetry can cost, in the floor object (floor.rs): a
/// frame's addresses and ports read; a flow counted; counted with an
/// event; counted with an event gathered into a per-CPU batch.
pub const LEAST_PROGRAMS: [&str; 4] = [
    "least_parse",
    "least_flow",
    "least_flow_event",
    "least_flow_batched_event",
];

/// The ring the `least_*` programs write their events to.
pub const LEAST_EVENTS: &str = "LEAST_EVENTS";

/// The floor (an XDP program that only returns XDP_PASS) and the
/// `LEAST_PROGRAMS`, loaded.
pub fn floor() -> Ebpf {
    let mut ebpf =
        Ebpf::load(sensor_user::datapath::FLOOR_OBJECT).expect("loading the floor object");
    for name in std::iter::once("floor_pass").chain(LEAST_PROGRAMS) {
        let program: &mut Xdp = ebpf.program_mut(name).unwrap().try_into().unwrap();
        program
            .load()
            .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    }
    ebpf
}

pub fn floor_program(ebpf: &Ebpf) -> &Xdp {
    program(ebpf, "floor_pass")
}

/// A loaded program of the floor object, by name.
pub fn program<'a>(ebpf: &'a Ebpf, name: &str) -> &'a Xdp {
    ebpf.program(name).unwrap().try_into().unwrap()
}

/// xdp-filter (xdp-tools) loaded on a private namespace's loopback, with a
/// few rules so its lookups are real; its program reopened from a pin.
pub struct XdpFilter {
    pub program: Xdp,
    _netns: Netns,
}

impl XdpFilter {
    pub fn load(netns_name: &str, pin_dir: &std::path::Path) -> anyhow::Result<XdpFilter> {
        let netns = Netns::create(netns_name)?;
        let script = "mount -t bpf bpf /sys/fs/bpf && xdp-filter load lo --mode skb \
                      && xdp-filter ip 192.0.2.1 && xdp-filter port 9999 \
                      && xdp-filter ether 02:00:00:00:00:99";
        cmd::run(netns.command("sh").args(["-c", script]))?;
        let links: serde_json::Value =
            serde_json::from_str(&netns.ip(&["-j", "link", "show", "lo"])?)?;
        let id = links[0]["xdp"]["prog"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("xdp-filter attached no program: {links}"))?;
        let pin = pin_dir.join("xdp-filter");
        cmd::run(
            Command::new("bpftool")
                .args(["prog", "pin", "id", &id.to_string()])
                .arg(&pin),
        )?;
        let program = Xdp::from_pin(&pin, XdpAttachType::Interface)?;
        std::fs::remove_file(&pin)?;
        Ok(XdpFilter {
            program,
            _netns: netns,
        })
    }
}

/// A traffic generator in the kernel: BPF_PROG_TEST_RUN in live-frames
/// mode runs a program that redirects each frame out of `ifindex`, so the
/// peer receives real XDP frames (no socket buffer, no copy), as from a NIC.
pub struct XdpGenerator {
    ebpf: Ebpf,
}

impl XdpGenerator {
    /// `frame` is sent as it is: exactly 60 bytes.
    pub fn load(ifindex: u32, frame: &[u8]) -> anyhow::Result<XdpGenerator> {
        Self::load_spread(ifindex, frame, 0)
    }

    /// As `load`, a UDP frame whose source port is spread at random over
    /// `ports` values (that many flows).
    pub fn load_spread(ifindex: u32, frame: &[u8], ports: u32) -> anyhow::Result<XdpGenerator> {
        let template: [u8; 60] = frame
            .try_into()
            .map_err(|_| anyhow::anyhow!("the generator sends 60-byte frames"))?;
        let mut ebpf = aya::EbpfLoader::new()
            .override_global("REDIRECT_IFINDEX", &ifindex, true)
            .override_global("FRAME_TEMPLATE", &template, true)
            .override_global("SOURCE_PORTS", &ports, true)
            .load(sensor_user::datapath::FLOOR_OBJECT)?;
        let program: &mut Xdp = ebpf.program_mut("generate_redirect").unwrap().try_into()?;
        program.load()?;
        Ok(XdpGenerator { ebpf })
    }

    /// Sends `packet` `count` times, in batches of 64. The calling thread
    /// must be in the namespace of the interface.
    pub fn send(&self, packet: &[u8], count: u32) -> anyhow::Result<()> {
        use aya::programs::{TestRun, TestRunAttrs, TestRunOptions};
        let program: &Xdp = self.ebpf.program("generate_redirect").unwrap().try_into()?;
        program.test_run(TestRunOptions {
            data_in: Some(packet),
            repeat: count,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..Default::default()
        })?;
        Ok(())
    }
}
