//! Telemetry records from the datapath, turned into the detection engine's
//! events. Pure functions: the ring reader and the tests share them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sensor_common::{telemetry::*, EventHeader, FlowKey, FlowStats, Reason, Verdict};

use crate::detect::{event::FlowSummary, Event, Kind, Nanos};

/// The clocks of the datapath, mapped onto Unix time (the engine's time,
/// as in capture files).
#[derive(Debug, Clone, Copy, Default)]
pub struct Clocks {
    /// Unix ns minus `CLOCK_BOOTTIME` ns (ring events).
    pub boot_to_unix: i64,
    /// Unix ns minus `CLOCK_MONOTONIC` ns (flow-table times).
    pub mono_to_unix: i64,
}

fn now_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

impl Clocks {
    /// Reads the offsets now (again from time to time: the wall clock may be
    /// stepped by NTP).
    pub fn now() -> Clocks {
        let unix = now_ns(libc::CLOCK_REALTIME);
        Clocks {
            boot_to_unix: unix - now_ns(libc::CLOCK_BOOTTIME),
            mono_to_unix: unix - now_ns(libc::CLOCK_MONOTONIC),
        }
    }

    pub fn boot(&self, ns: u64) -> Nanos {
        (ns as i64 + self.boot_to_unix).max(0) as Nanos
    }

    pub fn mono(&self, ns: u64) -> Nanos {
        (ns as i64 + self.mono_to_unix).max(0) as Nanos
    }

    /// The engine's "now".
    pub fn unix_now(&self) -> Nanos {
        now_ns(libc::CLOCK_REALTIME) as Nanos
    }
}

fn address(family: u8, raw: &[u8; 16]) -> Option<IpAddr> {
    match family {
        4 => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(*raw))),
        _ => None,
    }
}

/// What the datapath decided about the packet behind an event, and where
/// the frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub dropped: bool,
    pub reason: u8,
    /// The frame's source MAC and ingress interface.
    pub mac: [u8; 6],
    pub ifindex: u32,
    /// The source is bound on a switched segment and the frame came from
    /// its MAC (`EVENT_FLAG_BOUND`): its address is proven.
    pub bound: bool,
}

impl Decision {
    pub fn segment_policy(&self) -> bool {
        self.reason == Reason::SegmentPolicy as u8
    }

    /// The source address is forged (`Reason::Spoofed`).
    pub fn spoofed(&self) -> bool {
        self.reason == Reason::Spoofed as u8
    }
}

/// One ring-buffer record as an engine event; `None` for a record that is
/// not one of ours (wrong size, unknown kind or family).
pub fn event(record: &[u8], clocks: &Clocks) -> Option<(Event, Decision)> {
    let size = std::mem::size_of::<EventHeader>();
    if record.len() < size {
        return None;
    }
    // SAFETY: at least `size` bytes; EventHeader is plain old data.
    let h: EventHeader = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
    let kind = match h.kind {
        EVENT_SYN => Kind::Syn,
        EVENT_SYN_ACK => Kind::SynAck,
        EVENT_RST => Kind::Rst,
        EVENT_FIN => Kind::Fin,
        EVENT_FLOW_START => Kind::FlowStart,
        EVENT_DNS => Kind::Dns,
        EVENT_DATA => Kind::Data,
        EVENT_ICMP_ERROR => Kind::IcmpError,
        EVENT_PROBE => Kind::Probe,
        EVENT_FRAGMENT => Kind::Fragment,
        EVENT_SPOOFED => Kind::Spoofed,
        EVENT_WAKE => Kind::Wake,
        _ => return None,
    };
    let payload_len = (h.payload_len as usize).min(PAYLOAD_MAX);
    let payload = record
        .get(size..size + payload_len)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let event = Event {
        ts: clocks.boot(h.ts_ns),
        src: address(h.family, &h.src)?,
        dst: address(h.family, &h.dst)?,
        sport: h.sport,
        dport: h.dport,
        protocol: h.protocol,
        kind,
        payload,
    };
    let decision = Decision {
        dropped: h.verdict == Verdict::Drop as u8,
        reason: h.reason,
        mac: h.src_mac,
        ifindex: h.ifindex,
        bound: h.flags & EVENT_FLAG_BOUND != 0,
    };
    Some((event, decision))
}

/// A flow-table entry, oriented by who sent first.
pub struct Flow {
    pub orig: (IpAddr, u16),
    pub resp: (IpAddr, u16),
    pub protocol: u8,
    pub summary: FlowSummary,
    pub last: Nanos,
    /// Both sides sent FIN, or either sent RST.
    pub closed: bool,
}

impl Flow {
    pub fn end_event(&self) -> Event {
        Event {
            ts: self.last,
            src: self.orig.0,
            dst: self.resp.0,
            sport: self.orig.1,
            dport: self.resp.1,
            protocol: self.protocol,
            kind: Kind::FlowEnd(self.summary),
            payload: Vec::new(),
        }
    }
}

pub fn flow(key: &FlowKey, stats: &FlowStats, clocks: &Clocks) -> Option<Flow> {
    let a = (address(key.family, &key.a)?, key.a_port);
    let b = (address(key.family, &key.b)?, key.b_port);
    let b_first = stats.initiator_is_b != 0;
    let (orig, resp) = if b_first { (b, a) } else { (a, b) };
    let (ob, rb, op, rp) = if b_first {
        (
            stats.b_bytes,
            stats.a_bytes,
            stats.b_packets,
            stats.a_packets,
        )
    } else {
        (
            stats.a_bytes,
            stats.b_bytes,
            stats.a_packets,
            stats.b_packets,
        )
    };
    let fins = FLOW_FIN_A | FLOW_FIN_B;
    let (a_data, b_data) = (
        stats.flags & FLOW_DATA_A != 0,
        stats.flags & FLOW_DATA_B != 0,
    );
    let (orig_data, resp_data) = if b_first {
        (b_data, a_data)
    } else {
        (a_data, b_data)
    };
    Some(Flow {
        orig,
        resp,
        protocol: key.protocol,
        summary: FlowSummary {
            orig_bytes: ob,
            resp_bytes: rb,
            orig_packets: op,
            resp_packets: rp,
            start: clocks.mono(stats.first_ns),
            answered: stats.flags & FLOW_ANSWERED != 0,
            orig_data,
            resp_data,
            proven: stats.flags & FLOW_PROVEN != 0,
        },
        last: clocks.mono(stats.last_ns),
        closed: stats.flags & FLOW_RST != 0 || stats.flags & fins == fins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u8) -> EventHeader {
        let mut h = EventHeader {
            ts_ns: 5_000,
            sport: 40000,
            dport: 53,
            family: 4,
            protocol: 17,
            kind,
            payload_len: 3,
            packet_len: 80,
            ..Default::default()
        };
        h.src[..4].copy_from_slice(&[10, 0, 0, 5]);
        h.dst[..4].copy_from_slice(&[10, 0, 0, 53]);
        h
    }

    fn bytes(h: &EventHeader, payload: &[u8]) -> Vec<u8> {
        // SAFETY: EventHeader is plain old data.
        let raw = unsafe {
            std::slice::from_raw_parts(
                (h as *const EventHeader).cast::<u8>(),
                std::mem::size_of::<EventHeader>(),
            )
        };
        [raw, payload].concat()
    }

    #[test]
    fn ring_records_become_events_on_unix_time() {
        let clocks = Clocks {
            boot_to_unix: 1_000_000,
            mono_to_unix: 0,
        };
        let (e, d) = event(&bytes(&header(EVENT_DNS), b"abcdef"), &clocks).unwrap();
        assert_eq!(e.ts, 1_005_000);
        assert_eq!(e.src, "10.0.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(e.dst, "10.0.0.53".parse::<IpAddr>().unwrap());
        assert_eq!(e.kind, Kind::Dns);
        assert_eq!(e.payload, b"abc", "payload_len bounds the payload");
        assert!(!d.dropped);
    }

    #[test]
    fn foreign_or_short_records_are_refused() {
        let clocks = Clocks::default();
        assert!(event(&[0u8; 10], &clocks).is_none());
        assert!(event(&bytes(&header(99), b""), &clocks).is_none());
        let mut h = header(EVENT_SYN);
        h.family = 9;
        assert!(event(&bytes(&h, b""), &clocks).is_none());
        // A payload length beyond the record is cut, not trusted.
        let mut h = header(EVENT_DNS);
        h.payload_len = 60000;
        assert!(event(&bytes(&h, b"xy"), &clocks)
            .unwrap()
            .0
            .payload
            .is_empty());
    }

    #[test]
    fn flows_are_oriented_by_their_initiator() {
        let mut key = FlowKey {
            a_port: 443,
            b_port: 50000,
            protocol: 6,
            family: 4,
            ..Default::default()
        };
        key.a[..4].copy_from_slice(&[10, 0, 0, 1]);
        key.b[..4].copy_from_slice(&[10, 0, 0, 9]);
        let stats = FlowStats {
            a_bytes: 9000,
            b_bytes: 300,
            a_packets: 7,
            b_packets: 5,
            initiator_is_b: 1,
            flags: FLOW_ANSWERED | FLOW_FIN_A | FLOW_FIN_B,
            ..Default::default()
        };
        let f = flow(&key, &stats, &Clocks::default()).unwrap();
        assert_eq!(f.orig, ("10.0.0.9".parse().unwrap(), 50000));
        assert_eq!((f.summary.orig_bytes, f.summary.resp_bytes), (300, 9000));
        assert!(f.closed && f.summary.answered);
    }
}
