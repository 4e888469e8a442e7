//! Fills the sensor's maps with many random entries (not one hot key), away
//! from the addresses the benchmark's packets use.

use std::{net::IpAddr, time::Instant};

use ipnet::{IpNet, Ipv4Net};
use sensor_common::BlockValue;
use sensor_user::{config::Config, datapath::Maps};

use super::{BLOCKED_HOST, ISOLATED_HOST};

/// xorshift64*: deterministic, so runs are comparable.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Random IPv4 addresses from 100.64.0.0/10 and 172.16.0.0/12, which the
/// benchmark's packets never use.
fn random_v4(rng: &mut Rng) -> u32 {
    let r = rng.next();
    if r & 1 == 0 {
        0x6440_0000 | (r >> 8) as u32 & 0x003f_ffff
    } else {
        0xac10_0000 | (r >> 8) as u32 & 0x000f_ffff
    }
}

pub fn segments() -> Config {
    Config::from_toml(
        r#"
        [[segment]]
        name = "internet"
        cidrs = ["0.0.0.0/0", "::/0"]
        [[segment]]
        name = "office"
        cidrs = ["10.10.0.0/16", "fd00:10::/48"]
        [[segment]]
        name = "records"
        cidrs = ["10.20.0.0/16", "fd00:20::/48"]
        [policy]
        allow = [["office", "internet"], ["office", "records"]]
        "#,
    )
    .expect("benchmark segments")
}

/// Loads `isolated` random hosts and `blocked` random ranges (lengths /16
/// to /32), plus the segment policy and the two entries the drop cases hit. Returns seconds
/// spent loading each.
pub fn fill(maps: &mut Maps, isolated: usize, blocked: usize) -> (f64, f64) {
    let config = segments();
    maps.sync_segments(&config.segments, &config.policy)
        .expect("segments");
    let mut rng = Rng(0x5eed_0000_0000_0042);
    let value = BlockValue::default();

    let start = Instant::now();
    let mut loaded = 0;
    while loaded < isolated {
        let host = IpAddr::from(random_v4(&mut rng).to_be_bytes());
        if maps.get_isolated(host).is_none() {
            maps.set_isolated(host, value)
                .expect("isolating a random host");
            loaded += 1;
        }
    }
    maps.set_isolated(ISOLATED_HOST.parse().unwrap(), value)
        .unwrap();
    let isolated_secs = start.elapsed().as_secs_f64();

    let start = Instant::now();
    for _ in 0..blocked {
        let len = 16 + (rng.next() % 17) as u8;
        let net = Ipv4Net::new(random_v4(&mut rng).into(), len)
            .unwrap()
            .trunc();
        maps.set_blocked(IpNet::V4(net), value)
            .expect("blocking a random range");
    }
    let host: IpAddr = BLOCKED_HOST.parse().unwrap();
    maps.set_blocked(IpNet::new(host, 24).unwrap().trunc(), value)
        .unwrap();
    (isolated_secs, start.elapsed().as_secs_f64())
}
