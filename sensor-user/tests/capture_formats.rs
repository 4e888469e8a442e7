//! The same traffic in every form a user may bring it must give the same
//! incidents: a shared capture rewritten as pcapng (microsecond and other
//! clocks, offsets, several interfaces), as big-endian and nanosecond pcap,
//! cut by a snap length, cut mid-record, and as `tcpdump -i any` writes it
//! (Linux cooked v1 and v2). The rewriting is done here, byte by byte, from
//! the formats' specifications (pcap: tcpdump.org's pcap-savefile(5);
//! pcapng: draft-ietf-opsawg-pcapng; SLL and SLL2: tcpdump.org's
//! LINKTYPE_LINUX_SLL and LINKTYPE_LINUX_SLL2 pages).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use sensor_user::{
    detect::{capture::CaptureStats, pcapfile, DetectionConfig, Incident},
    offline::{self, Settings},
};

fn analyze_file(
    path: &Path,
    config: &DetectionConfig,
) -> anyhow::Result<(Vec<Incident>, CaptureStats)> {
    let a = offline::analyze(path, &Settings::detection(config.clone()), false)?;
    Ok((a.incidents, a.stats))
}

fn shared(file: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/pcaps")
        .join(file);
    if !path.exists() {
        // A checkout without the shared captures (CI always has them).
        eprintln!("skipped: {} is not there", path.display());
        return None;
    }
    Some(path)
}

/// A frame as read: Unix ns, length on the wire, the Ethernet bytes.
#[derive(Clone)]
struct Frame {
    ts: u64,
    orig_len: u32,
    data: Vec<u8>,
}

fn frames(path: &Path) -> Vec<Frame> {
    let mut out = Vec::new();
    pcapfile::read(path, false, &mut |f| {
        assert_eq!(f.link.0, 1, "the originals are Ethernet");
        out.push(Frame {
            ts: f.ts,
            orig_len: f.orig_len,
            data: f.data.to_vec(),
        })
    })
    .unwrap();
    out
}

#[derive(Clone, Copy)]
struct Order(bool);
const LE: Order = Order(false);
const BE: Order = Order(true);

impl Order {
    fn u16(self, v: u16) -> [u8; 2] {
        if self.0 {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn u32(self, v: u32) -> [u8; 4] {
        if self.0 {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
}

/// A pcap file: `nanos` picks the nanosecond magic.
fn pcap(frames: &[Frame], order: Order, nanos: bool, linktype: u32, snaplen: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(order.u32(if nanos { 0xa1b23c4d } else { 0xa1b2c3d4 }));
    out.extend(order.u16(2));
    out.extend(order.u16(4));
    out.extend([0; 8]);
    out.extend(order.u32(snaplen));
    out.extend(order.u32(linktype));
    for f in frames {
        let sub = if nanos {
            f.ts % 1_000_000_000
        } else {
            f.ts % 1_000_000_000 / 1000
        };
        let data = &f.data[..f.data.len().min(snaplen as usize)];
        out.extend(order.u32((f.ts / 1_000_000_000) as u32));
        out.extend(order.u32(sub as u32));
        out.extend(order.u32(data.len() as u32));
        out.extend(order.u32(f.orig_len));
        out.extend(data);
    }
    out
}

fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let padded = body.len().div_ceil(4) * 4;
    let len = (12 + padded) as u32;
    out.extend(kind.to_le_bytes());
    out.extend(len.to_le_bytes());
    out.extend(body);
    out.extend(std::iter::repeat_n(0u8, padded - body.len()));
    out.extend(len.to_le_bytes());
}

/// An interface: link type, `if_tsresol` (None: the default, µs),
/// `if_tsoffset` in seconds.
struct Interface {
    linktype: u16,
    tsresol: Option<u8>,
    tsoffset: i64,
}

fn section(out: &mut Vec<u8>, interfaces: &[Interface]) {
    let mut shb = Vec::new();
    shb.extend(0x1a2b3c4du32.to_le_bytes());
    shb.extend(1u16.to_le_bytes());
    shb.extend(0u16.to_le_bytes());
    shb.extend((-1i64).to_le_bytes());
    block(out, 0x0a0d0d0a, &shb);
    for i in interfaces {
        let mut idb = Vec::new();
        idb.extend(i.linktype.to_le_bytes());
        idb.extend(0u16.to_le_bytes());
        idb.extend(0u32.to_le_bytes());
        if let Some(r) = i.tsresol {
            idb.extend(9u16.to_le_bytes());
            idb.extend(1u16.to_le_bytes());
            idb.extend([r, 0, 0, 0]);
        }
        if i.tsoffset != 0 {
            idb.extend(14u16.to_le_bytes());
            idb.extend(8u16.to_le_bytes());
            idb.extend(i.tsoffset.to_le_bytes());
        }
        idb.extend([0; 4]);
        block(out, 1, &idb);
    }
}

/// An enhanced packet block on `interface`, the time in `units` per second
/// less `offset` seconds.
fn epb(
    out: &mut Vec<u8>,
    interface: u32,
    units: u64,
    offset: i64,
    ts: u64,
    orig: u32,
    data: &[u8],
) {
    let ticks =
        ((ts as i128 - offset as i128 * 1_000_000_000) * units as i128 / 1_000_000_000) as u64;
    let mut body = Vec::new();
    body.extend(interface.to_le_bytes());
    body.extend(((ticks >> 32) as u32).to_le_bytes());
    body.extend((ticks as u32).to_le_bytes());
    body.extend((data.len() as u32).to_le_bytes());
    body.extend(orig.to_le_bytes());
    body.extend(data);
    block(out, 6, &body);
}

/// The Ethernet header's type and what follows it.
fn ether(f: &Frame) -> (u16, &[u8]) {
    (u16::from_be_bytes([f.data[12], f.data[13]]), &f.data[14..])
}

/// As `tcpdump -i any` writes it with libpcap < 1.10: Linux cooked v1.
fn sll(f: &Frame) -> Frame {
    let (ether_type, rest) = ether(f);
    let mut d = Vec::new();
    d.extend(0u16.to_be_bytes()); // sent to us
    d.extend(1u16.to_be_bytes()); // ARPHRD_ETHER
    d.extend(6u16.to_be_bytes());
    d.extend(&f.data[6..12]);
    d.extend([0, 0]);
    d.extend(ether_type.to_be_bytes());
    d.extend(rest);
    Frame {
        ts: f.ts,
        orig_len: f.orig_len + 2,
        data: d,
    }
}

/// Linux cooked v2 (libpcap 1.10 and later).
fn sll2(f: &Frame) -> Frame {
    let (ether_type, rest) = ether(f);
    let mut d = Vec::new();
    d.extend(ether_type.to_be_bytes());
    d.extend([0, 0]);
    d.extend(3u32.to_be_bytes()); // interface index
    d.extend(1u16.to_be_bytes());
    d.push(0);
    d.push(6);
    d.extend(&f.data[6..12]);
    d.extend([0, 0]);
    d.extend(rest);
    Frame {
        ts: f.ts,
        orig_len: f.orig_len + 6,
        data: d,
    }
}

/// The parts of an incident that must not change with the file's form.
fn essence(incidents: &[Incident]) -> Vec<String> {
    let mut out: Vec<String> = incidents
        .iter()
        .map(|i| {
            format!(
                "{} score {} first {} detectors {:?} peers {:?}",
                i.host,
                i.score,
                (i.first_seen + 500) / 1000,
                i.detectors,
                i.peers
            )
        })
        .collect();
    out.sort();
    out
}

fn incidents(path: &Path, internal: &str) -> Vec<Incident> {
    let config = DetectionConfig {
        internal: vec![internal.parse().unwrap()],
        ..Default::default()
    };
    analyze_file(path, &config)
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
        .0
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Every variant of one capture gives the original's incidents.
fn same_incidents_in_every_form(file: &str, internal: &str) {
    let Some(original) = shared(file) else { return };
    let expected = essence(&incidents(&original, internal));
    assert!(!expected.is_empty(), "{file} gives no incident to compare");
    let f = frames(&original);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut variants = vec![
        write(d, "be_us.pcap", &pcap(&f, BE, false, 1, 65535)),
        write(d, "le_ns.pcap", &pcap(&f, LE, true, 1, 65535)),
        write(d, "be_ns.pcap", &pcap(&f, BE, true, 1, 65535)),
        // tcpdump -s 96
        write(d, "snap96.pcap", &pcap(&f, LE, false, 1, 96)),
        write(
            d,
            "sll.pcap",
            &pcap(
                &f.iter().map(sll).collect::<Vec<_>>(),
                LE,
                false,
                113,
                65535,
            ),
        ),
        write(
            d,
            "sll2.pcap",
            &pcap(
                &f.iter().map(sll2).collect::<Vec<_>>(),
                LE,
                false,
                276,
                65535,
            ),
        ),
    ];
    // pcapng as dumpcap writes it: microseconds, the default clock.
    let mut ng = Vec::new();
    section(
        &mut ng,
        &[Interface {
            linktype: 1,
            tsresol: Some(6),
            tsoffset: 0,
        }],
    );
    for x in &f {
        epb(&mut ng, 0, 1_000_000, 0, x.ts, x.orig_len, &x.data);
    }
    variants.push(write(d, "us.pcapng", &ng));
    // Two sections; the second with two interfaces (Ethernet in
    // 2^-30 s ticks with an offset, and Linux cooked v2 in ns),
    // frames alternating between them.
    let mut ng = Vec::new();
    let half = f.len() / 2;
    section(
        &mut ng,
        &[Interface {
            linktype: 1,
            tsresol: None,
            tsoffset: 0,
        }],
    );
    for x in &f[..half] {
        epb(&mut ng, 0, 1_000_000, 0, x.ts, x.orig_len, &x.data);
    }
    section(
        &mut ng,
        &[
            Interface {
                linktype: 1,
                tsresol: Some(0x80 | 30),
                tsoffset: 1_000_000_000,
            },
            Interface {
                linktype: 276,
                tsresol: Some(9),
                tsoffset: 0,
            },
        ],
    );
    for (n, x) in f[half..].iter().enumerate() {
        if n % 2 == 0 {
            epb(
                &mut ng,
                0,
                1 << 30,
                1_000_000_000,
                x.ts,
                x.orig_len,
                &x.data,
            );
        } else {
            let c = sll2(x);
            epb(&mut ng, 1, 1_000_000_000, 0, c.ts, c.orig_len, &c.data);
        }
    }
    variants.push(write(d, "mixed.pcapng", &ng));
    for v in &variants {
        assert_eq!(
            essence(&incidents(v, internal)),
            expected,
            "{}",
            v.display()
        );
    }
    // Cut mid-way through the last record: everything before it counts.
    let whole = pcap(&f, LE, false, 1, 65535);
    let cut = write(
        d,
        "cut.pcap",
        &whole[..whole.len() - f.last().unwrap().data.len() / 2],
    );
    let config = DetectionConfig {
        internal: vec![internal.parse().unwrap()],
        ..Default::default()
    };
    let (found, stats) = analyze_file(&cut, &config).unwrap();
    assert_eq!(stats.packets as usize, f.len() - 1);
    assert!(stats.cut_bytes > 0);
    assert_eq!(essence(&found), expected, "cut file");
}

#[test]
fn a_beacon_reads_the_same_in_every_form() {
    same_incidents_in_every_form(
        "c2/slips_test-cc-capture-1_periodic2s.pcap",
        "147.32.0.0/16",
    );
}

#[test]
fn a_port_scan_reads_the_same_in_every_form() {
    same_incidents_in_every_form("recon/esnet_masscan_tcp_0_1000.pcap", "172.31.0.0/16");
}

#[test]
fn a_beacon_is_dated_by_its_first_connection() {
    let Some(file) = shared("c2/slips_test-cc-capture-1_periodic2s.pcap") else {
        return;
    };
    let found = incidents(&file, "147.32.0.0/16");
    let beacon = found
        .iter()
        .find(|i| i.detectors.contains("beacon"))
        .expect("a beacon incident");
    let first_packet = frames(&file)[0].ts;
    // The capture opens with the beacon's traffic; the beacon is concluded
    // after its twentieth connection (every ~2.2 s), some 40 s later.
    assert!(
        beacon.first_seen.abs_diff(first_packet) < 30_000_000_000,
        "first seen {} vs first packet {first_packet}",
        beacon.first_seen
    );
    let concluded = beacon.evidence[0].ts;
    assert!(concluded - beacon.first_seen > 30_000_000_000);
}

fn sensorctl_analyze(path: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sensorctl"))
        .arg("analyze")
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn unreadable_input_is_one_clear_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "text.pcap",
            b"hello, this is not a capture\n".to_vec(),
            "neither a pcap nor a pcapng",
        ),
        ("empty.pcap", Vec::new(), "is empty"),
    ];
    for (name, bytes, says) in cases {
        let path = write(dir.path(), name, &bytes);
        let out = sensorctl_analyze(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.contains(says), "{name}: {stderr}");
    }
    let out = sensorctl_analyze(&dir.path().join("missing.pcap"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn a_cut_file_warns_and_succeeds() {
    let Some(file) = shared("recon/esnet_masscan_tcp_0_1000.pcap") else {
        return;
    };
    let bytes = std::fs::read(&file).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = write(dir.path(), "cut.pcap", &bytes[..bytes.len() - 7]);
    let out = sensorctl_analyze(&cut);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("ends mid-record"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("scan.vertical"));
}

#[test]
fn frames_of_unknown_link_types_are_counted_not_misread() {
    let Some(file) = shared("recon/esnet_masscan_tcp_0_1000.pcap") else {
        return;
    };
    let f = frames(&file);
    let dir = tempfile::tempdir().unwrap();
    // LINKTYPE_IEEE802_11 (105): nothing we decode.
    let path = write(dir.path(), "wifi.pcap", &pcap(&f, LE, false, 105, 65535));
    let (found, stats) = analyze_file(&path, &DetectionConfig::default()).unwrap();
    assert!(found.is_empty());
    assert_eq!(stats.undecodable, stats.packets);
    let out = sensorctl_analyze(&path);
    assert!(String::from_utf8_lossy(&out.stderr).contains("none of its"));
}
