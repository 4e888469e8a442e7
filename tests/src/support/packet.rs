//! Crafted packets for BPF_PROG_TEST_RUN: Ethernet, VLAN tags, IPv4 with
//! options and fragments, IPv6 with extension headers, TCP, UDP, ICMP.
//! Checksums are left zero: the datapath does not verify them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP for IPv4, ICMPv6 for IPv6.
    Icmp {
        kind: u8,
        code: u8,
    },
    /// A protocol number we do not parse, with some payload.
    Other(u8),
}

impl L4 {
    fn protocol(self, v6: bool) -> u8 {
        match self {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Icmp { .. } if v6 => 58,
            L4::Icmp { .. } => 1,
            L4::Other(p) => p,
        }
    }

    fn bytes(self) -> Vec<u8> {
        match self {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => {
                let mut b = vec![0u8; 20];
                b[0..2].copy_from_slice(&sport.to_be_bytes());
                b[2..4].copy_from_slice(&dport.to_be_bytes());
                b[12] = 5 << 4;
                b[13] = flags;
                b
            }
            L4::Udp { sport, dport } => {
                let mut b = vec![0u8; 8];
                b[0..2].copy_from_slice(&sport.to_be_bytes());
                b[2..4].copy_from_slice(&dport.to_be_bytes());
                b[4..6].copy_from_slice(&8u16.to_be_bytes());
                b
            }
            L4::Icmp { kind, code } => vec![kind, code, 0, 0, 0, 0, 0, 0],
            L4::Other(_) => vec![0xab; 12],
        }
    }
}

/// An IPv6 extension header to put before the transport header.
#[derive(Clone, Copy, Debug)]
pub enum Ext {
    HopByHop,
    Routing,
    DestOpts,
    /// A fragment header; `offset` in 8-byte units (0 = first fragment).
    Fragment {
        offset: u16,
    },
    /// A fragment header with the "more fragments" flag as given.
    FragmentOf {
        offset: u16,
        more: bool,
    },
    Ah,
}

impl Ext {
    fn number(self) -> u8 {
        match self {
            Ext::HopByHop => 0,
            Ext::Routing => 43,
            Ext::Fragment { .. } | Ext::FragmentOf { .. } => 44,
            Ext::Ah => 51,
            Ext::DestOpts => 60,
        }
    }

    fn bytes(self, next: u8) -> Vec<u8> {
        match self {
            // 16 bytes: len field 1 means (1 + 1) * 8.
            Ext::HopByHop | Ext::Routing | Ext::DestOpts => {
                let mut b = vec![0u8; 16];
                b[0] = next;
                b[1] = 1;
                b
            }
            Ext::Fragment { offset } => Ext::FragmentOf {
                offset,
                more: false,
            }
            .bytes(next),
            Ext::FragmentOf { offset, more } => {
                let mut b = vec![0u8; 8];
                b[0] = next;
                b[2..4].copy_from_slice(&(offset << 3 | more as u16).to_be_bytes());
                b
            }
            // 12 bytes: len field 1 means (1 + 2) * 4.
            Ext::Ah => {
                let mut b = vec![0u8; 12];
                b[0] = next;
                b[1] = 1;
                b
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    /// Outer first: (TPID, VLAN id).
    pub vlans: Vec<(u16, u16)>,
    /// IPv4 options, in 4-byte words (0..=10).
    pub ipv4_option_words: u8,
    /// IPv4 fragment offset in 8-byte units (0 = first or unfragmented).
    pub ipv4_frag_offset: u16,
    pub ipv6_ext: Vec<Ext>,
    /// Carry only these bytes of the transport header and payload
    /// (start, length), as one fragment of the whole (`fragment`).
    pub fragment: Option<(usize, usize)>,
    /// TCP sequence and acknowledgment numbers.
    pub tcp_numbers: (u32, u32),
    /// The frame's source MAC.
    pub src_mac: [u8; 6],
    /// Transport payload after the TCP or UDP header.
    pub payload: Vec<u8>,
    /// Zero bytes after the IP packet up to this frame length (Ethernet's
    /// minimum frame is 60 bytes without the FCS).
    pub min_frame: usize,
}

impl Packet {
    pub fn new(src: &str, dst: &str, l4: L4) -> Packet {
        Packet {
            src: src.parse().expect("source address"),
            dst: dst.parse().expect("destination address"),
            l4,
            vlans: Vec::new(),
            ipv4_option_words: 0,
            ipv4_frag_offset: 0,
            ipv6_ext: Vec::new(),
            fragment: None,
            tcp_numbers: (0, 0),
            src_mac: [0x02, 0, 0, 0, 0, 0x02],
            payload: Vec::new(),
            min_frame: 0,
        }
    }

    pub fn payload(mut self, bytes: &[u8]) -> Packet {
        self.payload = bytes.to_vec();
        self
    }

    /// Pads the frame with zeros to `len` bytes, as a NIC pads short frames.
    pub fn padded(mut self, len: usize) -> Packet {
        self.min_frame = len;
        self
    }

    /// The same packet with other ports (TCP or UDP).
    pub fn ports(mut self, s: u16, d: u16) -> Packet {
        match &mut self.l4 {
            L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => {
                *sport = s;
                *dport = d;
            }
            _ => {}
        }
        self
    }

    /// The same packet the other way round (addresses and ports swapped).
    pub fn reply(mut self, flags: u8) -> Packet {
        std::mem::swap(&mut self.src, &mut self.dst);
        match &mut self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags: f,
            } => {
                std::mem::swap(sport, dport);
                *f = flags;
            }
            L4::Udp { sport, dport } => std::mem::swap(sport, dport),
            _ => {}
        }
        self.payload.clear();
        self
    }

    pub fn tcp(src: &str, dst: &str) -> Packet {
        Packet::new(
            src,
            dst,
            L4::Tcp {
                sport: 40000,
                dport: 443,
                flags: 0x02,
            },
        )
    }

    /// The same TCP packet with other flags (e.g. 0x10, a mid-flow ACK).
    pub fn tcp_flags(mut self, new: u8) -> Packet {
        if let L4::Tcp { flags, .. } = &mut self.l4 {
            *flags = new;
        }
        self
    }

    pub fn udp(src: &str, dst: &str) -> Packet {
        Packet::new(
            src,
            dst,
            L4::Udp {
                sport: 40000,
                dport: 53,
            },
        )
    }

    pub fn icmp(src: &str, dst: &str) -> Packet {
        let v6 = src.contains(':');
        Packet::new(
            src,
            dst,
            L4::Icmp {
                kind: if v6 { 128 } else { 8 },
                code: 0,
            },
        )
    }

    pub fn vlan(mut self, tpid: u16, id: u16) -> Packet {
        self.vlans.push((tpid, id));
        self
    }

    pub fn ipv4_options(mut self, words: u8) -> Packet {
        self.ipv4_option_words = words;
        self
    }

    pub fn ipv4_fragment(mut self, offset: u16) -> Packet {
        self.ipv4_frag_offset = offset;
        self
    }

    /// The frame's source MAC.
    pub fn from_mac(mut self, mac: [u8; 6]) -> Packet {
        self.src_mac = mac;
        self
    }

    /// TCP sequence and acknowledgment numbers.
    pub fn numbers(mut self, seq: u32, ack: u32) -> Packet {
        self.tcp_numbers = (seq, ack);
        self
    }

    /// One fragment of this packet: bytes `start..start + len` of its
    /// transport header and payload (`start` a multiple of 8), with the
    /// "more fragments" flag set when bytes remain after them.
    pub fn fragment(mut self, start: usize, len: usize) -> Packet {
        self.fragment = Some((start, len));
        self
    }

    pub fn ext(mut self, ext: Ext) -> Packet {
        self.ipv6_ext.push(ext);
        self
    }

    /// Offset of the end of the IP addresses: from here on the datapath
    /// knows who talks to whom.
    pub fn addresses_end(&self) -> usize {
        let l2 = 14 + 4 * self.vlans.len();
        match self.src {
            IpAddr::V4(_) => l2 + 20 + 4 * self.ipv4_option_words as usize,
            IpAddr::V6(_) => l2 + 40,
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let v6 = self.src.is_ipv6();
        let ethertype = if v6 { ETH_P_IPV6 } else { ETH_P_IP };
        let mut b = vec![0x02, 0, 0, 0, 0, 0x01];
        b.extend_from_slice(&self.src_mac);
        for (tpid, id) in &self.vlans {
            b.extend_from_slice(&tpid.to_be_bytes());
            b.extend_from_slice(&id.to_be_bytes());
        }
        b.extend_from_slice(&ethertype.to_be_bytes());
        let mut l4 = self.l4.bytes();
        if let L4::Tcp { .. } = self.l4 {
            l4[4..8].copy_from_slice(&self.tcp_numbers.0.to_be_bytes());
            l4[8..12].copy_from_slice(&self.tcp_numbers.1.to_be_bytes());
        }
        if let L4::Udp { .. } = self.l4 {
            l4[4..6].copy_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
        }
        l4.extend_from_slice(&self.payload);
        let mut this = self.clone();
        if let Some((start, len)) = self.fragment {
            let end = (start + len).min(l4.len());
            let more = end < l4.len();
            let offset = (start / 8) as u16;
            this.ipv4_frag_offset = offset | if more { 0x2000 } else { 0 };
            this.ipv6_ext.push(Ext::FragmentOf { offset, more });
            l4 = l4[start..end].to_vec();
        }
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => b.extend(this.ipv4(s, d, &l4)),
            (IpAddr::V6(s), IpAddr::V6(d)) => b.extend(this.ipv6(s, d, &l4)),
            _ => panic!("mixed address families"),
        }
        if b.len() < self.min_frame {
            b.resize(self.min_frame, 0);
        }
        b
    }

    fn ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8]) -> Vec<u8> {
        let ihl = 5 + self.ipv4_option_words;
        let header_len = ihl as usize * 4;
        let mut h = vec![0u8; header_len];
        h[0] = 0x40 | ihl;
        h[2..4].copy_from_slice(&((header_len + l4.len()) as u16).to_be_bytes());
        h[6..8].copy_from_slice(&self.ipv4_frag_offset.to_be_bytes());
        h[8] = 64;
        h[9] = self.l4.protocol(false);
        h[12..16].copy_from_slice(&src.octets());
        h[16..20].copy_from_slice(&dst.octets());
        // Options: NOPs (1).
        for byte in &mut h[20..] {
            *byte = 1;
        }
        h.extend_from_slice(l4);
        h
    }

    fn ipv6(&self, src: Ipv6Addr, dst: Ipv6Addr, l4: &[u8]) -> Vec<u8> {
        let mut payload = Vec::new();
        let numbers: Vec<u8> = self
            .ipv6_ext
            .iter()
            .map(|e| e.number())
            .chain(std::iter::once(self.l4.protocol(true)))
            .collect();
        for (i, ext) in self.ipv6_ext.iter().enumerate() {
            payload.extend(ext.bytes(numbers[i + 1]));
        }
        payload.extend_from_slice(l4);
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        h[6] = numbers[0];
        h[7] = 64;
        h[8..24].copy_from_slice(&src.octets());
        h[24..40].copy_from_slice(&dst.octets());
        h.extend(payload);
        h
    }
}

/// An ARP request: not IP, passed untouched.
pub fn arp() -> Vec<u8> {
    let mut b = vec![0xff; 6];
    b.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    b.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    b.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    b.extend_from_slice(&[0u8; 20]);
    b
}
