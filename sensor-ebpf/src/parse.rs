//! Header parsing. Every read is bounds-checked against the end of the packet
//! and every loop has a fixed maximum, so no packet can make the parser read
//! out of bounds or run long.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use sensor_common::telemetry::is_tiny_fragment;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const VLAN_HLEN: usize = 4;
/// 802.1Q and 802.1ad (QinQ): at most two tags.
const MAX_VLAN_TAGS: usize = 2;

const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
/// How many IPv6 extension headers we walk before giving up on L4.
const MAX_IPV6_EXT_HEADERS: usize = 8;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_MH: u8 = 135;

use sensor_common::telemetry::TCP_MIN_HLEN;
const UDP_HLEN: usize = 8;
const ICMP_MIN_HLEN: usize = 4;

/// The packet's addresses, in network byte order.
pub enum Addrs {
    V4 { src: [u8; 4], dst: [u8; 4] },
    V6 { src: [u8; 16], dst: [u8; 16] },
}

/// The transport header of a TCP, UDP or ICMP packet.
#[derive(Clone, Copy)]
pub struct L4 {
    pub protocol: u8,
    pub sport: u16,
    /// ICMP: the type.
    pub dport: u16,
    pub tcp_flags: u8,
    /// TCP sequence and acknowledgment numbers (0 for other protocols).
    pub seq: u32,
    pub ack: u32,
    /// Where the transport payload starts, from the start of the frame.
    pub payload_offset: usize,
    /// A tiny first fragment (`telemetry::is_tiny_fragment`): ports only
    /// (0 when even those are cut), no flags.
    pub tiny_fragment: bool,
}

/// What the parser learned about an IP packet.
pub struct IpPacket {
    pub addrs: Addrs,
    /// False when the transport header was expected but cut short, or hidden
    /// behind more extension headers than we walk. The addresses are still
    /// enforced: a malformed L4 header must not open a way past a block.
    pub l4_complete: bool,
    /// TCP, UDP and ICMP headers, when complete (for telemetry).
    pub l4: Option<L4>,
    /// Where the IP packet ends by its own length field, from the start of
    /// the frame: bytes past it (the padding of a short Ethernet frame)
    /// are no payload. `u16::MAX`: the frame's end (an IPv6 jumbogram).
    pub ip_end: u16,
}

pub enum Parsed {
    NotIp,
    Ip(IpPacket),
}

/// The headers ended before the IP addresses could be read.
pub struct Truncated;

/// A position in the packet; each read checks `offset + size <= end`.
struct Cursor {
    start: usize,
    end: usize,
}

impl Cursor {
    #[inline(always)]
    fn new(ctx: &XdpContext) -> Self {
        Cursor {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// A pointer to a `T` at `offset`, if the whole `T` lies inside the packet.
    #[inline(always)]
    fn ptr_at<T>(&self, offset: usize) -> Result<*const T, Truncated> {
        if self.start + offset + size_of::<T>() > self.end {
            return Err(Truncated);
        }
        Ok((self.start + offset) as *const T)
    }

    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Result<T, Truncated> {
        let ptr = self.ptr_at::<T>(offset)?;
        // SAFETY: ptr_at checked that the bytes are inside the packet.
        Ok(unsafe { core::ptr::read_unaligned(ptr) })
    }

    #[inline(always)]
    fn read_be16(&self, offset: usize) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(self.read::<[u8; 2]>(offset)?))
    }

    #[inline(always)]
    fn has(&self, offset: usize, len: usize) -> bool {
        self.start + offset + len <= self.end
    }
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Parsed, Truncated> {
    let cur = Cursor::new(ctx);
    let mut proto = cur.read_be16(12)?;
    let mut offset = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        proto = cur.read_be16(offset + 2)?;
        offset += VLAN_HLEN;
    }
    match proto {
        ETH_P_IP => parse_ipv4(&cur, offset).map(Parsed::Ip),
        ETH_P_IPV6 => parse_ipv6(&cur, offset).map(Parsed::Ip),
        // A third tag is deeper than we walk: we cannot see the addresses.
        ETH_P_8021Q | ETH_P_8021AD => Err(Truncated),
        _ => Ok(Parsed::NotIp),
    }
}

/// The fixed part of an IPv4 header.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv4Header {
    version_ihl: u8,
    tos: u8,
    total_len: [u8; 2],
    id: [u8; 2],
    frag_off: [u8; 2],
    ttl: u8,
    protocol: u8,
    checksum: [u8; 2],
    src: [u8; 4],
    dst: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv6Header {
    version_class_flow: [u8; 4],
    payload_len: [u8; 2],
    next_header: u8,
    hop_limit: u8,
    src: [u8; 16],
    dst: [u8; 16],
}

/// The first bytes of any IPv6 extension header (and of a fragment header).
#[repr(C)]
#[derive(Clone, Copy)]
struct ExtHeader {
    next_header: u8,
    len: u8,
    frag_off: [u8; 2],
}

// Each header is read whole through one checked pointer: a separate
// length check could let the compiler drop the per-field checks, which
// the verifier needs to see next to each access.

#[inline(always)]
fn parse_ipv4(cur: &Cursor, offset: usize) -> Result<IpPacket, Truncated> {
    let ip: Ipv4Header = cur.read(offset)?;
    let header_len = ((ip.version_ihl & 0x0f) as usize) * 4;
    if ip.version_ihl >> 4 != 4 || header_len < IPV4_MIN_HLEN || !cur.has(offset, header_len) {
        return Err(Truncated);
    }
    let addrs = Addrs::V4 {
        src: ip.src,
        dst: ip.dst,
    };
    let ip_end = end_of(offset + u16::from_be_bytes(ip.total_len) as usize);
    // Fragment offset (low 13 bits): only the first fragment has an L4
    // header; "more fragments" (0x2000) says whether it is one of several.
    let frag_off = u16::from_be_bytes(ip.frag_off);
    if frag_off & 0x1fff != 0 {
        return Ok(IpPacket {
            addrs,
            l4_complete: true,
            l4: None,
            ip_end,
        });
    }
    let more_fragments = frag_off & 0x2000 != 0;
    let (l4_complete, l4) = transport(
        cur,
        offset + header_len,
        ip.protocol,
        ip_end as usize,
        more_fragments,
    );
    Ok(IpPacket {
        addrs,
        l4_complete,
        l4,
        ip_end,
    })
}

#[inline(always)]
fn parse_ipv6(cur: &Cursor, offset: usize) -> Result<IpPacket, Truncated> {
    let ip: Ipv6Header = cur.read(offset)?;
    if ip.version_class_flow[0] >> 4 != 6 {
        return Err(Truncated);
    }
    let addrs = Addrs::V6 {
        src: ip.src,
        dst: ip.dst,
    };
    // A payload length of 0 is a jumbogram's: the frame's end stands.
    let ip_end = match u16::from_be_bytes(ip.payload_len) as usize {
        0 => u16::MAX,
        len => end_of(offset + IPV6_HLEN + len),
    };
    let mut next = ip.next_header;
    let mut l4_offset = offset + IPV6_HLEN;
    let mut more_fragments = false;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if !is_ipv6_extension(next) {
            break;
        }
        let ext: ExtHeader = match cur.read(l4_offset) {
            Ok(ext) => ext,
            Err(_) => {
                return Ok(IpPacket {
                    addrs,
                    l4_complete: false,
                    l4: None,
                    ip_end,
                })
            }
        };
        let header_len = match next {
            IPPROTO_AH => (ext.len as usize + 2) * 4,
            IPPROTO_FRAGMENT => {
                if u16::from_be_bytes(ext.frag_off) & 0xfff8 != 0 {
                    // A later fragment: no transport header to look for.
                    return Ok(IpPacket {
                        addrs,
                        l4_complete: true,
                        l4: None,
                        ip_end,
                    });
                }
                // The M flag: the first of several fragments.
                more_fragments = u16::from_be_bytes(ext.frag_off) & 1 != 0;
                8
            }
            _ => (ext.len as usize + 1) * 8,
        };
        next = ext.next_header;
        l4_offset += header_len;
    }
    let (l4_complete, l4) = transport(cur, l4_offset, next, ip_end as usize, more_fragments);
    Ok(IpPacket {
        addrs,
        l4_complete,
        l4,
        ip_end,
    })
}

/// An IP packet's end as a frame offset, `u16::MAX` past that.
#[inline(always)]
fn end_of(offset: usize) -> u16 {
    if offset < u16::MAX as usize {
        offset as u16
    } else {
        u16::MAX
    }
}

#[inline(always)]
fn is_ipv6_extension(next_header: u8) -> bool {
    matches!(
        next_header,
        IPPROTO_HOPOPTS
            | IPPROTO_ROUTING
            | IPPROTO_FRAGMENT
            | IPPROTO_AH
            | IPPROTO_DSTOPTS
            | IPPROTO_MH
    )
}

/// The transport header that `protocol` announces: whether it fits in the
/// packet (the frame, and the IP packet's own length: `ip_end`), and its
/// fields for TCP, UDP and ICMP. Protocols we do not parse count as
/// complete; a chain of extension headers longer than we walk does not.
/// `more_fragments`: the packet is the first of several fragments.
#[inline(always)]
fn transport(
    cur: &Cursor,
    offset: usize,
    protocol: u8,
    ip_end: usize,
    more_fragments: bool,
) -> (bool, Option<L4>) {
    let l4 = |sport: u16, dport: u16, tcp_flags: u8, len: usize| L4 {
        protocol,
        sport,
        dport,
        tcp_flags,
        seq: 0,
        ack: 0,
        payload_offset: offset + len,
        tiny_fragment: false,
    };
    let transport_len = ip_end.saturating_sub(offset);
    if is_tiny_fragment(protocol, more_fragments, transport_len) {
        // Ports when the fragment holds them; the flags are elsewhere.
        let ports = match cur.read::<[u8; 4]>(offset) {
            Ok(p) if transport_len >= 4 => (
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            ),
            _ => (0, 0),
        };
        let tiny = L4 {
            tiny_fragment: true,
            ..l4(ports.0, ports.1, 0, transport_len)
        };
        return (false, Some(tiny));
    }
    match protocol {
        IPPROTO_TCP => match cur.read::<[u8; TCP_MIN_HLEN]>(offset) {
            // Data offset: the header is at least 20 bytes and all inside.
            Ok(tcp) => {
                let len = ((tcp[12] >> 4) as usize) * 4;
                if len < TCP_MIN_HLEN || !cur.has(offset, len) || offset + len > ip_end {
                    return (false, None);
                }
                let ports = (
                    u16::from_be_bytes([tcp[0], tcp[1]]),
                    u16::from_be_bytes([tcp[2], tcp[3]]),
                );
                let number =
                    |i: usize| u32::from_be_bytes([tcp[i], tcp[i + 1], tcp[i + 2], tcp[i + 3]]);
                let header = L4 {
                    seq: number(4),
                    ack: number(8),
                    ..l4(ports.0, ports.1, tcp[13], len)
                };
                (true, Some(header))
            }
            Err(_) => (false, None),
        },
        // A header past the IP packet's end (in the frame's padding) is none.
        IPPROTO_UDP => match cur.read::<[u8; UDP_HLEN]>(offset) {
            Ok(udp) if transport_len >= UDP_HLEN => {
                let ports = (
                    u16::from_be_bytes([udp[0], udp[1]]),
                    u16::from_be_bytes([udp[2], udp[3]]),
                );
                (true, Some(l4(ports.0, ports.1, 0, UDP_HLEN)))
            }
            _ => (false, None),
        },
        IPPROTO_ICMP | IPPROTO_ICMPV6 => match cur.read::<[u8; ICMP_MIN_HLEN]>(offset) {
            // ICMP: the code as the "source port", the type as the
            // "destination port".
            Ok(icmp) if transport_len >= ICMP_MIN_HLEN => (
                true,
                Some(l4(icmp[1] as u16, icmp[0] as u16, 0, ICMP_MIN_HLEN)),
            ),
            _ => (false, None),
        },
        // More extension headers than we walk.
        p if is_ipv6_extension(p) => (false, None),
        _ => (true, None),
    }
}
