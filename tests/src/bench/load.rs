//! Fills the sensor's maps with many random entries (not one hot key), away
//! from the addresses the benchmark's packets use, shaped like what an
//! operator loads: isolated hosts are inside hosts, blocked ranges look like
//! a threat-intelligence feed spread over the public address space.

use std::{net::IpAddr, time::Instant};

use ipnet::{IpNet, Ipv4Net};
use sensor_common::BlockValue;
use sensor_user::{config::Config, datapath::Maps};

/// xorshift64*: deterministic, so runs are comparable.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A random inside host: 100.64.0.0/10 or 172.16.0.0/12, which the
/// benchmark's packets never use.
pub fn random_inside_host(rng: &mut Rng) -> u32 {
    let r = rng.next_u64();
    if r & 1 == 0 {
        0x6440_0000 | (r >> 8) as u32 & 0x003f_ffff
    } else {
        0xac10_0000 | (r >> 8) as u32 & 0x000f_ffff
    }
}

/// Ranges a random blocked range must stay out of: the inside hosts' space,
/// the segments the packets come from, the packets' own outside /16s, and
/// what is not public unicast.
const KEEP_OUT: [(u32, u8); 10] = [
    (0x0000_0000, 8),  // 0/8
    (0x0a00_0000, 8),  // 10/8: office and records segments
    (0x6440_0000, 10), // 100.64/10: inside hosts
    (0x7f00_0000, 8),  // loopback
    (0xac10_0000, 12), // 172.16/12: inside hosts
    (0xc0a8_0000, 16), // 192.168/16
    (0x5db8_0000, 16), // 93.184/16: the packets' internet host
    (0xc633_6400, 24), // 198.51.100/24: the drop case's blocked range
    (0xe000_0000, 3),  // multicast and reserved
    (0xa9fe_0000, 16), // link-local
];

fn kept_out(net: Ipv4Net) -> bool {
    KEEP_OUT.iter().any(|&(addr, len)| {
        let keep = Ipv4Net::new(addr.into(), len).unwrap();
        keep.contains(&net) || net.contains(&keep)
    })
}

/// A random range as a threat feed lists them: 80% single hosts (/32), 15%
/// /24s, 5% /16 to /23.
pub fn random_feed_range(rng: &mut Rng) -> Ipv4Net {
    loop {
        let r = rng.next_u64();
        let len = match r % 100 {
            0..=79 => 32,
            80..=94 => 24,
            _ => 16 + (r >> 8) as u8 % 8,
        };
        let net = Ipv4Net::new(((r >> 32) as u32).into(), len)
            .unwrap()
            .trunc();
        if !kept_out(net) {
            return net;
        }
    }
}

/// `n` distinct random feed ranges.
pub fn distinct_feed_ranges(rng: &mut Rng, n: usize) -> Vec<Ipv4Net> {
    let mut seen = std::collections::HashSet::new();
    let mut ranges = Vec::with_capacity(n);
    while ranges.len() < n {
        let net = random_feed_range(rng);
        if seen.insert(net) {
            ranges.push(net);
        }
    }
    ranges
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

/// What `fill` loaded: how long each part took, and one random isolated
/// host and one random blocked range for the drop cases to hit.
pub struct Loaded {
    pub isolated_secs: f64,
    pub blocked_secs: f64,
    pub some_isolated: Option<IpAddr>,
    pub some_blocked: Option<Ipv4Net>,
}

/// Loads the segment policy, `isolated` random inside hosts and `blocked`
/// random feed ranges (distinct), reporting progress on stderr.
pub fn fill(maps: &mut Maps, isolated: usize, blocked: usize, seed: u64) -> Loaded {
    let config = segments();
    maps.sync_segments(&config.segments, &config.policy)
        .expect("segments");
    let mut rng = Rng(seed);
    let value = BlockValue::default();
    let pick = (rng.next_u64() as usize) % isolated.max(1);

    let start = Instant::now();
    let mut some_isolated = None;
    let mut loaded = 0;
    while loaded < isolated {
        let host = IpAddr::from(random_inside_host(&mut rng).to_be_bytes());
        if maps.get_isolated(host).is_none() {
            maps.set_isolated(host, value)
                .expect("isolating a random host");
            if loaded == pick {
                some_isolated = Some(host);
            }
            loaded += 1;
            progress("isolated hosts", loaded, isolated);
        }
    }
    let isolated_secs = start.elapsed().as_secs_f64();

    let pick = (rng.next_u64() as usize) % blocked.max(1);
    let ranges = distinct_feed_ranges(&mut rng, blocked);
    let start = Instant::now();
    for (loaded, net) in ranges.iter().enumerate() {
        maps.set_blocked(IpNet::V4(*net), value)
            .expect("blocking a random range");
        progress("blocked ranges", loaded + 1, blocked);
    }
    Loaded {
        isolated_secs,
        blocked_secs: start.elapsed().as_secs_f64(),
        some_isolated,
        some_blocked: ranges.get(pick).copied(),
    }
}

fn progress(what: &str, done: usize, total: usize) {
    if done.is_multiple_of(100_000) || done == total && total >= 100_000 {
        eprintln!("  {what}: {done}/{total}");
    }
}
