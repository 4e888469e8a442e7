//! The XDP program loaded into a private bpffs, run with BPF_PROG_TEST_RUN.

use std::time::Duration;

use aya::programs::{TestRun, TestRunOptions};
use sensor_common::{counter_index, BlockValue, Reason, Verdict};
use sensor_user::datapath::{sensor_object, Datapath};

use super::{bpffs::TempBpffs, packet::Packet};

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

pub struct Fixture {
    // Field order is drop order: the program before its bpffs.
    pub dp: Datapath,
    pub bpffs: TempBpffs,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        let bpffs = TempBpffs::new();
        let object = sensor_object().expect("the eBPF object is embedded");
        let dp = Datapath::load_object(&bpffs.pin_dir(), object)
            .unwrap_or_else(|e| panic!("loading the XDP program failed: {e:#}"));
        Fixture { dp, bpffs }
    }

    /// The program's return value for one packet.
    pub fn run(&self, data: &[u8]) -> u32 {
        let opts = TestRunOptions {
            data_in: Some(data),
            repeat: 1,
            ..Default::default()
        };
        self.dp
            .program()
            .test_run(opts)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN failed on {} bytes: {e}", data.len()))
            .return_value
    }

    /// Runs a packet `repeat` times; the kernel's mean time per run.
    pub fn time(&self, data: &[u8], repeat: u32) -> (u32, Duration) {
        let opts = TestRunOptions {
            data_in: Some(data),
            repeat,
            ..Default::default()
        };
        let r = self.dp.program().test_run(opts).expect("BPF_PROG_TEST_RUN");
        (r.return_value, r.duration)
    }

    pub fn verdict(&self, packet: &Packet) -> u32 {
        self.run(&packet.build())
    }

    /// Packets counted with this verdict and reason, over all interfaces.
    pub fn counted(&self, verdict: Verdict, reason: Reason) -> u64 {
        let i = counter_index(verdict, reason);
        self.dp
            .maps
            .counters()
            .iter()
            .map(|(_, c)| c.packets[i])
            .sum()
    }

    pub fn isolate(&mut self, host: &str) {
        self.dp
            .maps
            .set_isolated(host.parse().unwrap(), BlockValue::default())
            .expect("isolating");
    }

    pub fn block(&mut self, net: &str) {
        self.dp
            .maps
            .set_blocked(net.parse().unwrap(), BlockValue::default())
            .expect("blocking");
    }
}
