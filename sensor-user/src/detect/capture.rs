//! Reading pcap and pcapng files into detection events, with the same
//! choice of packets and the same flow accounting the datapath makes live.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufReader, Read},
    net::IpAddr,
    path::Path,
};

use anyhow::{bail, Context, Result};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::{
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
    DataLink,
};

use super::event::{
    Event, FlowSummary, Kind, Nanos, PROTO_ARP, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
    SECOND,
};
use sensor_common::telemetry::{is_dcerpc_bind, is_inspect_port, is_opening, DATA_SAMPLES};

/// A UDP or ICMP flow with no packet for this long has ended.
const UDP_IDLE: Nanos = 60 * SECOND;
/// A TCP flow with no packet for this long has ended (no FIN or RST seen).
const TCP_IDLE: Nanos = 300 * SECOND;
/// DNS messages are kept up to this many bytes (the datapath's sample size).
pub const DNS_SAMPLE: usize = sensor_common::telemetry::PAYLOAD_MAX;
/// TCP payload samples are at most this size (which flows get them, and
/// how many, is `sensor_common::telemetry`'s rule, as in the datapath).
pub const DATA_SAMPLE: usize = sensor_common::telemetry::PAYLOAD_MAX;

/// Counts of what a capture held, for the report.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct CaptureStats {
    pub packets: u64,
    pub undecodable: u64,
    pub events: u64,
}

#[derive(Hash, PartialEq, Eq, Clone, Copy)]
struct FlowKey {
    protocol: u8,
    a: (IpAddr, u16),
    b: (IpAddr, u16),
}

impl FlowKey {
    fn new(protocol: u8, src: (IpAddr, u16), dst: (IpAddr, u16)) -> FlowKey {
        let (a, b) = if src <= dst { (src, dst) } else { (dst, src) };
        FlowKey { protocol, a, b }
    }
}

struct Flow {
    orig: (IpAddr, u16),
    resp: (IpAddr, u16),
    summary: FlowSummary,
    last: Nanos,
    fins: u8,
    /// Payload samples sent so far, and whether the flow is sampled.
    samples: u8,
    inspect: Option<bool>,
}

/// Turns decoded packets into events, tracking flows on packet time.
#[derive(Default)]
pub struct FlowTracker {
    flows: HashMap<FlowKey, Flow>,
    last_sweep: Nanos,
    /// Flows ended early to stay within `MAX_FLOWS`.
    pub evicted: u64,
}

/// Flows tracked at once (as the datapath's flow table): a flood of new
/// flows ends the oldest early instead of growing without bound.
const MAX_FLOWS: usize = 1 << 18;

/// The transport facts of one packet.
pub struct Packet<'a> {
    pub ts: Nanos,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte (0 for other protocols); ICMP: the type in `dport`.
    pub tcp_flags: u8,
    pub len: u64,
    pub payload: &'a [u8],
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

impl FlowTracker {
    /// Feeds one packet; `emit` gets the events it causes, in time order.
    pub fn packet(&mut self, p: &Packet, emit: &mut dyn FnMut(Event)) {
        self.sweep(p.ts, emit);
        if p.protocol == PROTO_ARP {
            // No flow: one event per request.
            emit(Event {
                ts: p.ts,
                src: p.src,
                dst: p.dst,
                sport: 0,
                dport: 0,
                protocol: PROTO_ARP,
                kind: Kind::ArpRequest,
                payload: Vec::new(),
            });
            return;
        }
        let event = |kind: Kind, payload: Vec<u8>| Event {
            ts: p.ts,
            src: p.src,
            dst: p.dst,
            sport: p.sport,
            dport: p.dport,
            protocol: p.protocol,
            kind,
            payload,
        };
        let key = FlowKey::new(p.protocol, (p.src, p.sport), (p.dst, p.dport));
        let is_new = !self.flows.contains_key(&key);
        if is_new && self.flows.len() >= MAX_FLOWS {
            self.evict(emit);
        }
        let flow = self.flows.entry(key).or_insert_with(|| Flow {
            orig: (p.src, p.sport),
            resp: (p.dst, p.dport),
            summary: FlowSummary {
                start: p.ts,
                ..Default::default()
            },
            last: p.ts,
            fins: 0,
            samples: 0,
            inspect: None,
        });
        flow.last = p.ts;
        let from_orig = (p.src, p.sport) == flow.orig;
        if from_orig {
            flow.summary.orig_bytes += p.len;
            flow.summary.orig_packets += 1;
        } else {
            flow.summary.resp_bytes += p.len;
            flow.summary.resp_packets += 1;
            flow.summary.answered = true;
        }
        match p.protocol {
            PROTO_TCP => {
                let f = p.tcp_flags;
                if !p.payload.is_empty() && flow.samples < DATA_SAMPLES {
                    let first = flow.inspect.is_none();
                    let inspect = *flow.inspect.get_or_insert_with(|| {
                        is_inspect_port(p.sport)
                            || is_inspect_port(p.dport)
                            || is_dcerpc_bind(p.payload)
                    });
                    // Any other flow: one sample of a TLS or HTTP opening,
                    // for the server name and user agent in it.
                    let opening = first && !inspect && is_opening(p.payload);
                    if inspect || opening {
                        flow.samples += 1;
                        let n = p.payload.len().min(DATA_SAMPLE);
                        emit(event(Kind::Data, p.payload[..n].to_vec()));
                    }
                }
                if f & SYN != 0 && f & ACK == 0 {
                    emit(event(Kind::Syn, Vec::new()));
                } else if f & SYN != 0 {
                    emit(event(Kind::SynAck, Vec::new()));
                }
                if f & RST != 0 {
                    emit(event(Kind::Rst, Vec::new()));
                }
                if f & FIN != 0 {
                    emit(event(Kind::Fin, Vec::new()));
                    flow.fins += 1;
                }
                if f & RST != 0 || flow.fins >= 2 {
                    self.end(key, emit);
                }
            }
            PROTO_UDP => {
                if is_new {
                    emit(event(Kind::FlowStart, Vec::new()));
                }
                if p.sport == 53 || p.dport == 53 {
                    let n = p.payload.len().min(DNS_SAMPLE);
                    emit(event(Kind::Dns, p.payload[..n].to_vec()));
                }
            }
            PROTO_ICMP | PROTO_ICMPV6
                if matches!((p.protocol, p.dport), (PROTO_ICMP, 3) | (PROTO_ICMPV6, 1)) =>
            {
                let n = p.payload.len().min(DNS_SAMPLE);
                emit(event(Kind::IcmpError, p.payload[..n].to_vec()));
            }
            PROTO_ICMP | PROTO_ICMPV6 if is_new => {
                emit(event(Kind::FlowStart, Vec::new()));
            }
            _ => {}
        }
    }

    fn end(&mut self, key: FlowKey, emit: &mut dyn FnMut(Event)) {
        if let Some(flow) = self.flows.remove(&key) {
            emit(Event {
                ts: flow.last,
                src: flow.orig.0,
                dst: flow.resp.0,
                sport: flow.orig.1,
                dport: flow.resp.1,
                protocol: key.protocol,
                kind: Kind::FlowEnd(flow.summary),
                payload: Vec::new(),
            });
        }
    }

    /// Live: ends flows idle for longer than their timeout, when no packet
    /// has come to do it.
    pub fn tick(&mut self, now: Nanos, emit: &mut dyn FnMut(Event)) {
        self.sweep(now, emit);
    }

    /// How many flows are open.
    pub fn open_flows(&self) -> usize {
        self.flows.len()
    }

    /// Ends flows idle for longer than their timeout (once a second of
    /// packet time).
    fn sweep(&mut self, now: Nanos, emit: &mut dyn FnMut(Event)) {
        if now < self.last_sweep + SECOND {
            return;
        }
        self.last_sweep = now;
        let idle = self.flows_where(|k, f| {
            let timeout = if k.protocol == PROTO_TCP {
                TCP_IDLE
            } else {
                UDP_IDLE
            };
            f.last + timeout < now
        });
        self.end_oldest_first(idle, emit);
    }

    /// Ends every flow still open (the end of a capture).
    pub fn finish(&mut self, emit: &mut dyn FnMut(Event)) {
        let open = self.flows_where(|_, _| true);
        self.end_oldest_first(open, emit);
    }

    /// Makes room at `MAX_FLOWS`: ends the oldest eighth of the flows at
    /// once, so a flood of new flows costs one partial sort per
    /// `MAX_FLOWS / 8` flows rather than a search per flow.
    fn evict(&mut self, emit: &mut dyn FnMut(Event)) {
        let mut all = self.flows_where(|_, _| true);
        let n = (MAX_FLOWS / 8).min(all.len().saturating_sub(1));
        all.select_nth_unstable_by_key(n, |(last, _)| *last);
        all.truncate(n);
        self.evicted += n as u64;
        self.end_oldest_first(all, emit);
    }

    /// The flows `keep` picks, with when each was last seen.
    fn flows_where(&self, keep: impl Fn(&FlowKey, &Flow) -> bool) -> Vec<(Nanos, FlowKey)> {
        self.flows
            .iter()
            .filter(|(k, f)| keep(k, f))
            .map(|(k, f)| (f.last, *k))
            .collect()
    }

    fn end_oldest_first(&mut self, mut flows: Vec<(Nanos, FlowKey)>, emit: &mut dyn FnMut(Event)) {
        flows.sort_by_key(|(last, _)| *last);
        for (_, key) in flows {
            self.end(key, emit);
        }
    }
}

/// Decodes one frame of the given link type into transport facts.
pub fn decode(link: DataLink, ts: Nanos, len: u64, data: &[u8]) -> Option<Packet<'_>> {
    let sliced = match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(data).ok()?,
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(data).ok()?,
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(data).ok()?,
        _ => return None,
    };
    let (src, dst, protocol) = match sliced.net? {
        NetSlice::Ipv4(ip) => (
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
            ip.header().protocol().0,
        ),
        NetSlice::Ipv6(ip) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
            ip.payload().ip_number.0,
        ),
        NetSlice::Arp(arp) => {
            let request = arp.operation() == etherparse::ArpOperation::REQUEST;
            let src: [u8; 4] = arp.sender_protocol_addr().try_into().ok()?;
            let dst: [u8; 4] = arp.target_protocol_addr().try_into().ok()?;
            if !request || arp.proto_addr_type() != etherparse::EtherType::IPV4 {
                return None;
            }
            (IpAddr::from(src), IpAddr::from(dst), PROTO_ARP)
        }
    };
    let mut p = Packet {
        ts,
        src,
        dst,
        protocol,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        len,
        payload: &[],
    };
    match sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            p.sport = tcp.source_port();
            p.dport = tcp.destination_port();
            p.tcp_flags = tcp.slice()[13];
            p.payload = tcp.payload();
        }
        Some(TransportSlice::Udp(udp)) => {
            p.sport = udp.source_port();
            p.dport = udp.destination_port();
            p.payload = udp.payload();
        }
        // Echo requests start an ICMP "flow"; unreachables tell of refused
        // probes (the payload from the rest of the header on, as the
        // datapath sends it); other replies belong to what they answer.
        Some(TransportSlice::Icmpv4(icmp)) => {
            if icmp.type_u8() != 8 && icmp.type_u8() != 3 {
                return None;
            }
            p.dport = icmp.type_u8() as u16;
            p.sport = icmp.code_u8() as u16;
            p.payload = icmp.slice().get(4..).unwrap_or(&[]);
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            if icmp.type_u8() != 128 && icmp.type_u8() != 1 {
                return None;
            }
            p.dport = icmp.type_u8() as u16;
            p.sport = icmp.code_u8() as u16;
            p.payload = icmp.slice().get(4..).unwrap_or(&[]);
        }
        _ => {}
    }
    Some(p)
}

fn nanos(d: std::time::Duration) -> Nanos {
    d.as_nanos() as Nanos
}

/// Reads a pcap or pcapng file (told apart by their magic numbers) and
/// feeds every event to `emit`, in packet-time order.
pub fn read_file(path: &Path, emit: &mut dyn FnMut(Event)) -> Result<CaptureStats> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)
        .with_context(|| format!("{} is too short to be a capture", path.display()))?;
    let file = File::open(path)?;
    let mut stats = CaptureStats::default();
    let mut tracker = FlowTracker::default();
    let mut emit_counted = |e: Event| {
        stats.events += 1;
        emit(e)
    };
    let mut feed = |link: DataLink,
                    ts: Nanos,
                    len: u64,
                    data: &[u8],
                    stats_packets: &mut u64,
                    undecodable: &mut u64| {
        *stats_packets += 1;
        match decode(link, ts, len, data) {
            Some(p) => tracker.packet(&p, &mut emit_counted),
            None => *undecodable += 1,
        }
    };
    let (mut packets, mut undecodable) = (0u64, 0u64);
    match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => {
            let mut reader = PcapNgReader::new(BufReader::new(file))
                .with_context(|| format!("{} is not a valid pcapng file", path.display()))?;
            let mut links = Vec::new();
            while let Some(block) = reader.next_block() {
                match block.with_context(|| format!("reading {}", path.display()))? {
                    Block::InterfaceDescription(idb) => links.push(idb.linktype),
                    Block::EnhancedPacket(epb) => {
                        let link = links
                            .get(epb.interface_id as usize)
                            .copied()
                            .unwrap_or(DataLink::ETHERNET);
                        feed(
                            link,
                            nanos(epb.timestamp),
                            epb.original_len as u64,
                            &epb.data,
                            &mut packets,
                            &mut undecodable,
                        );
                    }
                    _ => {}
                }
            }
        }
        [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0xc3, 0xd4]
        | [0x4d, 0x3c, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d] => {
            let mut reader = PcapReader::new(BufReader::new(file))
                .with_context(|| format!("{} is not a valid pcap file", path.display()))?;
            let link = reader.header().datalink;
            while let Some(packet) = reader.next_packet() {
                let packet = packet.with_context(|| format!("reading {}", path.display()))?;
                feed(
                    link,
                    nanos(packet.timestamp),
                    packet.orig_len as u64,
                    &packet.data,
                    &mut packets,
                    &mut undecodable,
                );
            }
        }
        _ => bail!("{} is neither a pcap nor a pcapng file", path.display()),
    }
    tracker.finish(&mut emit_counted);
    stats.packets = packets;
    stats.undecodable = undecodable;
    Ok(stats)
}
