//! Types and constants shared by the XDP program (`sensor-ebpf`) and the
//! daemon (`sensor-user`). Every struct is `#[repr(C)]`, `Copy` and free of
//! implicit padding, so both sides agree on its bytes.
//!
//! Byte order: every address in a map key is in **network byte order**, the
//! order in which it sits in the packet. An IPv4 key is the four address bytes
//! read as a native `u32` (`u32::from_ne_bytes(addr.octets())`); an IPv6 key
//! is the sixteen address bytes as they are.
#![no_std]

/// Map names, as they appear in the object file and under the pin directory.
pub mod map_names {
    pub const ADDRESSES_V4: &str = "ADDRESSES_V4";
    pub const ADDRESSES_V6: &str = "ADDRESSES_V6";
    pub const SUMMARY_V4: &str = "SUMMARY_V4";
    pub const HOSTS_V4: &str = "HOSTS_V4";
    pub const EXEMPT_V4: &str = "EXEMPT_V4";
    pub const EXEMPT_V6: &str = "EXEMPT_V6";
    pub const SEGMENT_POLICY: &str = "SEGMENT_POLICY";
    pub const SETTINGS: &str = "SETTINGS";
    pub const IFACE_COUNTERS: &str = "IFACE_COUNTERS";
    pub const IFACE_NAMES: &str = "IFACE_NAMES";
    pub const TELEMETRY: &str = "TELEMETRY";
    pub const FLOWS: &str = "FLOWS";
    pub const TELEMETRY_STATS: &str = "TELEMETRY_STATS";
    pub const TELEMETRY_PROG: &str = "TELEMETRY_PROG";
    /// Until 0.1 the verdict alone went to the telemetry program here; the
    /// pin is only removed now (`PACKET_SCRATCH` replaced it).
    pub const VERDICT_SCRATCH: &str = "VERDICT_SCRATCH";
    pub const PACKET_SCRATCH: &str = "PACKET_SCRATCH";
    pub const PORTS: &str = "PORTS";
    pub const BINDINGS_V4: &str = "BINDINGS_V4";
    pub const BINDINGS_V6: &str = "BINDINGS_V6";
    pub const ISOLATED_MACS: &str = "ISOLATED_MACS";
    /// Mirror mode (not pinned: one pair per tap, owned by the daemon).
    pub const TAP_SOCKETS: &str = "TAP_SOCKETS";
    pub const TAP_COUNTERS: &str = "TAP_COUNTERS";
}

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "sensor_xdp";
/// The telemetry program it tail-calls.
pub const TELEMETRY_PROGRAM_NAME: &str = "sensor_telemetry";
/// The mirror-port program: every frame into the AF_XDP socket of its queue.
pub const TAP_PROGRAM_NAME: &str = "sensor_tap";

/// Receive queues a tap can read (one AF_XDP socket each).
pub const MAX_TAP_QUEUES: u32 = 64;

/// Per-CPU counters of one tap receive queue (`TAP_COUNTERS`, by queue).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapCounters {
    /// Frames the tap program saw on this queue.
    pub frames: u64,
    /// Frames dropped because no socket was bound to the queue (the
    /// daemon was starting, stopping, or could not open it).
    pub no_socket: u64,
}

/// How many hosts may be isolated (IPv4 and IPv6 each).
pub const MAX_ISOLATED_HOSTS: u32 = 1 << 20;
/// Capacity of each blocked-range table (IPv4 and IPv6 each).
pub const MAX_BLOCKED_RANGES: u32 = 1 << 20;
/// Capacity of each address trie: every isolated host, blocked range and
/// segment range. (The trie allocates entries as they are added.)
pub const MAX_ADDRESS_PREFIXES: u32 = MAX_ISOLATED_HOSTS + MAX_BLOCKED_RANGES + MAX_SEGMENT_RANGES;
/// Capacity of `HOSTS_V4`: every isolated host and single-host block.
pub const MAX_HOSTS_V4: u32 = MAX_ISOLATED_HOSTS + MAX_BLOCKED_RANGES;
/// Capacity of each exemption LPM trie.
pub const MAX_EXEMPT_RANGES: u32 = 1024;
/// How many segment CIDRs a configuration may have (each family).
pub const MAX_SEGMENT_RANGES: u32 = 16384;
/// Segment ids run from 1 to `MAX_SEGMENTS - 1`; 0 means "in no segment".
/// One policy row is a `u64` bitmap, hence 64.
pub const MAX_SEGMENTS: u32 = 64;
/// Interfaces the program can keep counters for (one slot each).
pub const MAX_INTERFACES: u32 = 256;
/// Name of the read-only global that tells a program instance its
/// interface's counter slot. One instance is loaded per interface, so the
/// slot is a constant the verifier knows, and the counter lookup is a plain
/// array access.
pub const IFACE_SLOT_GLOBAL: &str = "IFACE_SLOT";

/// Expiry and hit count of an isolation or a block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockValue {
    /// When the entry stops applying, in `CLOCK_BOOTTIME` nanoseconds
    /// (`bpf_ktime_get_boot_ns`); 0 means never. The datapath honours it
    /// itself, so an expired block lapses even while the daemon is down.
    pub expires_at_ns: u64,
    /// Packets this entry has matched (dropped, or counted in monitor mode).
    pub hits: u64,
}

/// `AddressInfo::flags`: the prefix is a blocked range, or lies inside one.
pub const ADDRESS_BLOCKED: u32 = 1;
/// `AddressInfo::flags`: the prefix is itself a blocked range (not only a
/// segment range inside one).
pub const ADDRESS_IS_BLOCK: u32 = 2;
/// `AddressInfo::flags`: the prefix is itself a segment range.
pub const ADDRESS_IS_SEGMENT: u32 = 4;
/// `AddressInfo::flags`: the prefix is an isolated host (/32 or /128).
pub const ADDRESS_ISOLATED: u32 = 8;

/// Value of the address tries (`ADDRESSES_V4`, `ADDRESSES_V6`): everything
/// the datapath knows about a prefix, so one longest-prefix lookup per
/// address answers "isolated?", "blocked?" and "which segment?".
///
/// The daemon keeps the trie flat: it holds every isolated host, blocked
/// range and segment range, and each entry carries the segment of the
/// longest segment range containing it and the block state of the blocked
/// ranges containing it. The longest match for an address is then right for
/// all three questions.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressInfo {
    /// Segment id, 0 for none.
    pub segment: u32,
    /// `ADDRESS_*` bits.
    pub flags: u32,
    /// When `ADDRESS_BLOCKED`: when the block lapses, and the packets this
    /// entry matched as blocked.
    pub block: BlockValue,
    /// When `ADDRESS_ISOLATED`: when the isolation lapses, and the packets
    /// this entry matched as isolated.
    pub isolation: BlockValue,
}

/// Entries of `SUMMARY_V4`: one per /16 of the IPv4 space.
pub const SUMMARY_V4_ENTRIES: u32 = 1 << 16;
/// `SummaryV4::flags`: the summary is written and exact: an address whose
/// /24 bit is clear is in no isolation or block and in `segment`. Without
/// it (a zeroed, never written entry) every address goes to the trie.
pub const SUMMARY_EXACT: u32 = 1;

/// Value of `SUMMARY_V4`, indexed by an address's first two bytes: the
/// fast answer for the common packet, whose addresses are near no isolated
/// host, no blocked range and no segment boundary. One array read instead
/// of a trie walk whose depth grows with the number of entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SummaryV4 {
    /// Segment of every address of the /16 whose /24 bit is clear.
    pub segment: u32,
    /// `SUMMARY_*` bits.
    pub flags: u32,
    /// Bit `n` (word `n / 64`, bit `n % 64`) set: addresses in the /16's
    /// `n`th /24 must be looked up in the trie (something there is
    /// isolated, blocked, or in a segment range longer than /16).
    pub trie_24: [u64; 4],
}

impl SummaryV4 {
    /// The `SUMMARY_V4` index of an address (network order bytes): its /16.
    #[inline(always)]
    pub fn index(addr: &[u8; 4]) -> u32 {
        (addr[0] as u32) << 8 | addr[1] as u32
    }

    /// Whether this summary answers for an address of its /16 whose third
    /// byte is `third_byte` (else the trie must).
    #[inline(always)]
    pub fn answers(&self, third_byte: u8) -> bool {
        let word = (third_byte >> 6) as usize & 3;
        self.flags & SUMMARY_EXACT != 0 && self.trie_24[word] >> (third_byte & 63) & 1 == 0
    }
}

/// `SETTINGS[0].flags`: count what would be dropped, but pass it.
pub const SETTINGS_FLAG_MONITOR: u32 = 1;
/// `SETTINGS[0].flags`: track flows and send telemetry for detection.
pub const SETTINGS_FLAG_TELEMETRY: u32 = 2;
/// `SETTINGS[0].flags`: drop packets with a forged source (`Reason::Spoofed`);
/// without it they are counted and passed.
pub const SETTINGS_FLAG_DROP_SPOOFED: u32 = 4;
/// `SETTINGS[0].flags`: `ISOLATED_MACS` holds entries, so frames on
/// switched ports have their source MAC looked up (and a gateway that
/// isolates no MAC pays nothing for the check).
pub const SETTINGS_FLAG_ISOLATED_MACS: u32 = 8;

/// Isolated MAC addresses at most (`ISOLATED_MACS`).
pub const MAX_ISOLATED_MACS: u32 = 1 << 14;

/// The key of a MAC address in `ISOLATED_MACS`: its six bytes, then two
/// zero bytes.
#[inline(always)]
pub fn mac_key(mac: [u8; 6]) -> [u8; 8] {
    [mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0]
}

/// Layer-2 bindings kept per family: addresses of switched segments with the
/// MAC address that owns them.
pub const MAX_BINDINGS: u32 = 1 << 16;

/// `PortInfo::flags`: the port's segment is switched: its hosts are on the
/// gateway's link (or behind a switch), so each frame's source MAC is its
/// sender's and addresses are bound to MACs (`BINDINGS_*`).
pub const PORT_SWITCHED: u32 = 1;

/// What a gateway port is (`PORTS`, by counter slot): the segment whose hosts
/// it connects, for the ingress check. A source address of another segment
/// arriving on it is forged (strict reverse-path filtering by segment, as
/// uRPF, RFC 3704). Segment 0: the port is no segment's, nothing is checked.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortInfo {
    pub segment: u32,
    /// `PORT_*` bits.
    pub flags: u32,
}

/// The MAC address an address is bound to (`BINDINGS_*`), padded to 8.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Binding {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Sources the ingress check leaves alone: they name no host of any
/// segment (the unspecified address of a DHCP client, link-local addresses
/// of neighbour discovery and autoconfiguration). Network-order bytes.
#[inline(always)]
pub fn is_unchecked_source_v4(addr: &[u8; 4]) -> bool {
    addr[0] == 0 || (addr[0] == 169 && addr[1] == 254)
}

#[inline(always)]
pub fn is_unchecked_source_v6(addr: &[u8; 16]) -> bool {
    let unspecified = addr.iter().all(|b| *b == 0);
    unspecified || (addr[0] == 0xfe && addr[1] & 0xc0 == 0x80)
}

/// Telemetry from the datapath to the detection engine: events through a
/// ring buffer, per-flow counters in an LRU table the daemon reads. (An
/// LRU table is right here: a flow evicted under pressure loses counters,
/// never a block.)
pub mod telemetry {
    /// Size of the ring buffer (a power of two, in bytes).
    pub const RING_BYTES: u32 = 4 << 20;
    /// Flows tracked at once.
    pub const FLOW_ENTRIES: u32 = 1 << 17;
    /// Payload bytes copied into a DNS or data-sample event.
    pub const PAYLOAD_MAX: usize = 512;
    /// Payload samples per flow of the inspected protocols.
    pub const DATA_SAMPLES: u8 = 32;

    // Which TCP flows get payload samples: the datapath and the capture
    // reader apply these same tests.

    /// The Kerberos KDC's port [RFC 4120 7.2.3].
    pub const KERBEROS_PORT: u16 = 88;

    /// LDAP [RFC 4511 5.2, IANA].
    pub const LDAP_PORT: u16 = 389;
    /// SMB over TCP [MS-SMB2 2.1].
    pub const SMB_PORT: u16 = 445;
    /// FTP's control connection [RFC 959]: its commands name uploads.
    pub const FTP_PORT: u16 = 21;
    /// MySQL's and PostgreSQL's servers (IANA).
    pub const MYSQL_PORT: u16 = 3306;
    pub const POSTGRES_PORT: u16 = 5432;

    /// Flows on these ports are sampled throughout (up to `DATA_SAMPLES`):
    /// Kerberos, DCE/RPC endpoint mapper, NetBIOS session, LDAP, SMB, and
    /// the logons of FTP, MySQL and PostgreSQL.
    pub const INSPECT_PORTS: [u16; 8] = [
        KERBEROS_PORT,
        135,
        139,
        LDAP_PORT,
        SMB_PORT,
        FTP_PORT,
        MYSQL_PORT,
        POSTGRES_PORT,
    ];

    #[inline(always)]
    pub fn is_inspect_port(port: u16) -> bool {
        port == INSPECT_PORTS[0]
            || port == INSPECT_PORTS[1]
            || port == INSPECT_PORTS[2]
            || port == INSPECT_PORTS[3]
            || port == INSPECT_PORTS[4]
            || port == INSPECT_PORTS[5]
            || port == INSPECT_PORTS[6]
            || port == INSPECT_PORTS[7]
    }

    /// Whether a UDP datagram becomes a data event with its payload, as a
    /// DNS message becomes a DNS event: Kerberos, one message a datagram.
    #[inline(always)]
    pub fn is_sampled_datagram(sport: u16, dport: u16) -> bool {
        sport == KERBEROS_PORT || dport == KERBEROS_PORT
    }

    /// Whether a payload longer than a sample is sampled at its end rather
    /// than its start: a Kerberos request (to the KDC) carries its
    /// ticket-granting ticket first and its body, what the detectors read,
    /// last [RFC 4120 5.4.1].
    #[inline(always)]
    pub fn samples_tail(dport: u16) -> bool {
        dport == KERBEROS_PORT
    }

    /// Where a sample of a payload of `len` bytes starts, and its length:
    /// its first `PAYLOAD_MAX` bytes, or with `tail` its last.
    #[inline(always)]
    pub fn sample_span(len: usize, tail: bool) -> (usize, usize) {
        if len > PAYLOAD_MAX {
            (if tail { len - PAYLOAD_MAX } else { 0 }, PAYLOAD_MAX)
        } else {
            (0, len)
        }
    }

    /// DCE/RPC's major version and its bind PDU type [C706 12.6.4.1].
    pub const DCERPC_VERSION: u8 = 5;
    pub const DCERPC_PTYPE_BIND: u8 = 11;

    /// Bytes of a payload's start `is_dcerpc_pdu` needs.
    pub const DCERPC_HEAD: usize = 5;

    /// A connection-oriented DCE/RPC PDU (version 5.0 or 5.1) starts the
    /// payload: the flow is sampled throughout (RPC services listen on
    /// dynamic ports). Any of the types an association carries counts
    /// (request 0, response 2, bind 11, bind_ack 12, bind_nak 13,
    /// alter_context 14 and its response 15), so a connection picked up
    /// mid-way (a restart, a capture started late) is followed too; the
    /// data representation must be one in use (little- or big-endian
    /// integers, ASCII) [C706 12.6.3.1, 14.1].
    #[inline(always)]
    pub fn is_dcerpc_pdu(head: &[u8]) -> bool {
        if head.len() < DCERPC_HEAD || head[0] != DCERPC_VERSION || head[1] > 1 {
            return false;
        }
        let ptype = head[2];
        let co_type = ptype == 0 || ptype == 2 || (DCERPC_PTYPE_BIND..=15).contains(&ptype);
        co_type && (head[4] == 0x10 || head[4] == 0x00)
    }

    // Past its first `DATA_SAMPLES`, an inspected flow still sends the
    // packets that open what the detectors follow for a connection's
    // life: a client's DCE/RPC request, bind or alter-context; an SMB2
    // TREE_CONNECT or CREATE request; an SMB2 WRITE or IOCTL request that
    // carries a DCE/RPC PDU to a named pipe [MS-SMB2 2.2.21, 2.2.31].
    // Bulk data (file contents, RPC fragments after the first) is never
    // sampled past the limit.

    /// A DCE/RPC request, bind or alter-context (a client's PDU) starts
    /// the payload (`DCERPC_HEAD` bytes).
    #[inline(always)]
    pub fn is_dcerpc_call(head: &[u8]) -> bool {
        is_dcerpc_pdu(head) && (head[2] == 0 || head[2] == DCERPC_PTYPE_BIND || head[2] == 14)
    }

    /// Bytes `smb2_request` needs: the session header and the SMB2 header.
    pub const SMB2_HEAD: usize = 72;
    pub const SMB2_TREE_CONNECT: u16 = 3;
    pub const SMB2_CREATE: u16 = 5;
    pub const SMB2_WRITE: u16 = 9;
    pub const SMB2_IOCTL: u16 = 11;

    /// The command of the SMB2 request that starts the payload (a
    /// direct-TCP session header, then an SMB2 header without the
    /// response flag).
    #[inline(always)]
    pub fn smb2_request(head: &[u8]) -> Option<u16> {
        if head.len() < SMB2_HEAD
            || head[0] != 0
            || head[4] != 0xfe
            || head[5] != b'S'
            || head[6] != b'M'
            || head[7] != b'B'
            || head[20] & 1 != 0
        {
            return None;
        }
        Some(u16::from_le_bytes([head[16], head[17]]))
    }

    /// Bytes `smb2_carries_rpc` needs.
    pub const SMB2_RPC_HEAD: usize = 136;

    /// Where Windows places a WRITE's data and an IOCTL's input (offsets
    /// from the SMB2 header [MS-SMB2 2.2.21, 2.2.31]); other offsets are
    /// not followed.
    const SMB2_WRITE_DATA: usize = 0x70;
    const SMB2_IOCTL_INPUT: usize = 0x78;

    /// An SMB2 WRITE or IOCTL request (`command`) whose data is a DCE/RPC
    /// client PDU: a call to a named pipe.
    #[inline(always)]
    pub fn smb2_carries_rpc(head: &[u8], command: u16) -> bool {
        if head.len() < SMB2_RPC_HEAD {
            return false;
        }
        let at = |offset: usize| 4 + offset;
        match command {
            SMB2_WRITE => {
                u16::from_le_bytes([head[4 + 64 + 2], head[4 + 64 + 3]]) as usize == SMB2_WRITE_DATA
                    && is_dcerpc_call(&head[at(SMB2_WRITE_DATA)..at(SMB2_WRITE_DATA) + DCERPC_HEAD])
            }
            SMB2_IOCTL => {
                u32::from_le_bytes([
                    head[4 + 64 + 24],
                    head[4 + 64 + 25],
                    head[4 + 64 + 26],
                    head[4 + 64 + 27],
                ]) as usize
                    == SMB2_IOCTL_INPUT
                    && is_dcerpc_call(
                        &head[at(SMB2_IOCTL_INPUT)..at(SMB2_IOCTL_INPUT) + DCERPC_HEAD],
                    )
            }
            _ => false,
        }
    }

    /// Whether a packet past an inspected flow's first `DATA_SAMPLES` is
    /// sampled, from its payload's first bytes (as many as there are, up
    /// to `SMB2_RPC_HEAD`).
    #[inline(always)]
    pub fn is_control_message(head: &[u8]) -> bool {
        if head.len() >= DCERPC_HEAD && is_dcerpc_call(&head[..DCERPC_HEAD]) {
            return true;
        }
        match smb2_request(head) {
            Some(SMB2_TREE_CONNECT | SMB2_CREATE) => true,
            Some(command) => smb2_carries_rpc(head, command),
            None => false,
        }
    }

    /// Bytes of a payload's start `is_opening` needs.
    pub const OPENING_HEAD: usize = 6;

    /// HTTP request lines, and the SSH identification string both ends
    /// send first [RFC 4253 4.2], by their first four bytes.
    const OPENINGS: [u32; 10] = [
        u32::from_ne_bytes(*b"SSH-"),
        u32::from_ne_bytes(*b"GET "),
        u32::from_ne_bytes(*b"POST"),
        u32::from_ne_bytes(*b"HEAD"),
        u32::from_ne_bytes(*b"PUT "),
        u32::from_ne_bytes(*b"DELE"),
        u32::from_ne_bytes(*b"OPTI"),
        u32::from_ne_bytes(*b"PATC"),
        u32::from_ne_bytes(*b"CONN"),
        u32::from_ne_bytes(*b"TRAC"),
    ];

    /// A TLS handshake record holding a ClientHello starts the payload.
    #[inline(always)]
    pub fn is_client_hello(head: &[u8]) -> bool {
        head.len() >= OPENING_HEAD && head[0] == 0x16 && head[1] == 0x03 && head[5] == 0x01
    }

    /// A TLS handshake record holding a ServerHello starts the payload.
    #[inline(always)]
    pub fn is_server_hello(head: &[u8]) -> bool {
        head.len() >= OPENING_HEAD && head[0] == 0x16 && head[1] == 0x03 && head[5] == 0x02
    }

    /// A TLS ClientHello, an HTTP request line or an SSH identification
    /// string starts the payload: any other flow gets this one sample, for
    /// the names and the protocol in it.
    #[inline(always)]
    pub fn is_opening(head: &[u8]) -> bool {
        if head.len() < OPENING_HEAD {
            return false;
        }
        let word = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]);
        is_client_hello(head) || OPENINGS.contains(&word)
    }

    /// A TCP packet's payload as the sampling rule sees it: predicates on
    /// its first bytes. The datapath reads them from the packet in bounded
    /// steps, the decoder from the captured slice.
    pub trait PayloadView {
        fn is_dcerpc_pdu(&self) -> bool;
        fn is_opening(&self) -> bool;
        fn is_client_hello(&self) -> bool;
        fn is_server_hello(&self) -> bool;
        fn is_control_message(&self) -> bool;
    }

    impl PayloadView for [u8] {
        fn is_dcerpc_pdu(&self) -> bool {
            is_dcerpc_pdu(self)
        }
        fn is_opening(&self) -> bool {
            is_opening(self)
        }
        fn is_client_hello(&self) -> bool {
            is_client_hello(self)
        }
        fn is_server_hello(&self) -> bool {
            is_server_hello(self)
        }
        fn is_control_message(&self) -> bool {
            is_control_message(self)
        }
    }

    /// Whether a TCP packet that carries payload is sampled (a data event
    /// with its payload), updating its flow's `inspect` state and
    /// `samples` count: a flow on an inspected port, or one whose first
    /// payload is a DCE/RPC PDU (RPC services listen on dynamic ports), up
    /// to `DATA_SAMPLES` packets, and past those the packets
    /// `is_control_message` names; any other flow's opening by its
    /// initiator (TLS, HTTP, SSH), and the ServerHello that answers a
    /// ClientHello (`INSPECT_HELLO`).
    #[inline(always)]
    pub fn wants_sample<P: PayloadView + ?Sized>(
        inspect: &mut u8,
        samples: &mut u8,
        ports: (u16, u16),
        from_initiator: bool,
        payload: &P,
    ) -> bool {
        if *inspect == INSPECT_HELLO {
            if from_initiator {
                return false;
            }
            *inspect = INSPECT_NO;
            let answered = payload.is_server_hello();
            *samples += answered as u8;
            return answered;
        }
        if *samples >= DATA_SAMPLES {
            return *inspect == INSPECT_YES && payload.is_control_message();
        }
        if *inspect == INSPECT_UNKNOWN {
            if is_inspect_port(ports.0) || is_inspect_port(ports.1) || payload.is_dcerpc_pdu() {
                *inspect = INSPECT_YES;
            } else {
                *inspect = INSPECT_NO;
                // Any other flow: one sample of the initiator's opening,
                // for the server name, user agent and protocol in it. An
                // opening from the responder (an SSH server speaks first)
                // leaves the choice to the initiator's first payload.
                if payload.is_opening() {
                    if !from_initiator {
                        *inspect = INSPECT_UNKNOWN;
                        return false;
                    }
                    if payload.is_client_hello() {
                        *inspect = INSPECT_HELLO;
                    }
                    *samples += 1;
                    return true;
                }
            }
        }
        if *inspect != INSPECT_YES {
            return false;
        }
        *samples += 1;
        true
    }

    // The packet-to-event rule: the datapath's telemetry and the capture
    // and tap decoder both follow these, so a capture analysed offline
    // gives the events sensord sees live.

    pub const PROTO_ICMP: u8 = 1;
    pub const PROTO_TCP: u8 = 6;
    pub const PROTO_UDP: u8 = 17;
    pub const PROTO_ICMPV6: u8 = 58;
    pub const TCP_FIN: u8 = 0x01;
    pub const TCP_SYN: u8 = 0x02;
    pub const TCP_RST: u8 = 0x04;
    pub const TCP_ACK: u8 = 0x10;
    pub const DNS_PORT: u16 = 53;

    /// Flows with no packet for this long end: UDP and ICMP after a minute,
    /// TCP after five (no FIN or RST seen).
    pub const UDP_IDLE_NS: u64 = 60_000_000_000;
    pub const TCP_IDLE_NS: u64 = 300_000_000_000;
    /// A closed TCP flow (both FINs, or a RST) stays this long, so its last
    /// ACK joins it rather than starting a new one.
    pub const CLOSED_LINGER_NS: u64 = 2_000_000_000;

    /// A tracked flow whose next packet carrying data comes after this
    /// long without any packet "wakes": one `EVENT_WAKE`, named by the
    /// flow's initiator, marks the activity. A heartbeat or a poll inside
    /// one kept-open connection (a RAT's keepalive, an HTTP agent on a
    /// persistent session, a UDP beacon on one socket) then shows its
    /// rhythm as new connections do; a flow gives at most one mark per
    /// gap, so the cost stays bounded. 2 s: under the fastest heartbeats
    /// C&C frameworks default to (Empire's and STRRAT's 5 s), above the
    /// pauses within a page load.
    pub const WAKE_GAP_NS: u64 = 2_000_000_000;

    /// Whether a packet that carries transport payload (`has_data`), after
    /// `idle_ns` without a packet, wakes its flow. A TCP keep-alive
    /// without data [RFC 1122 4.2.3.6] is the transport's, not an
    /// application's message, and wakes nothing. (One with a garbage
    /// octet looks like a 1-byte message, which C&C servers send as their
    /// heartbeat, unless sequence numbers are followed: it wakes.)
    #[inline(always)]
    pub fn is_wake(idle_ns: u64, has_data: bool) -> bool {
        has_data && idle_ns >= WAKE_GAP_NS
    }

    /// How long a flow with no packet lasts before it ends.
    #[inline(always)]
    pub fn flow_timeout_ns(protocol: u8, closed: bool) -> u64 {
        match protocol {
            PROTO_TCP if closed => CLOSED_LINGER_NS,
            PROTO_TCP => TCP_IDLE_NS,
            _ => UDP_IDLE_NS,
        }
    }

    /// The event a TCP packet becomes: at most one, the first of SYN,
    /// SYN-ACK, RST, probe, FIN that applies; 0 for none. `stray`: the
    /// packet belongs to no tracked flow and starts none (`starts_flow`).
    /// A stray packet that is not a SYN or a RST is a probe: the FIN, NULL,
    /// Xmas, Maimon, ACK and Window scans send nothing else (nmap's
    /// port-scanning techniques), and ordinary traffic sends such packets
    /// only inside connections.
    #[inline(always)]
    pub fn tcp_event(flags: u8, stray: bool) -> u8 {
        if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
            EVENT_SYN
        } else if flags & TCP_SYN != 0 {
            EVENT_SYN_ACK
        } else if flags & TCP_RST != 0 {
            EVENT_RST
        } else if stray {
            EVENT_PROBE
        } else if flags & TCP_FIN != 0 {
            EVENT_FIN
        } else {
            0
        }
    }

    /// The smallest TCP header.
    pub const TCP_MIN_HLEN: usize = 20;

    /// A first fragment (offset 0, more to come) too short to hold the
    /// whole TCP header: RFC 1858's "tiny fragment", which no ordinary
    /// stack sends and which scanners use (`nmap -f`, `--mtu 8`) to hide
    /// the flags from filters. `transport_len`: the fragment's bytes after
    /// the IP headers. Such a fragment becomes an `EVENT_FRAGMENT` (with
    /// its ports when it holds them) and tracks no flow.
    #[inline(always)]
    pub fn is_tiny_fragment(protocol: u8, first_of_several: bool, transport_len: usize) -> bool {
        protocol == PROTO_TCP && first_of_several && transport_len < TCP_MIN_HLEN
    }

    /// Whether payload in this protocol is data a side sent (`FLOW_DATA_*`,
    /// a flow picked up mid-way): TCP and UDP; ICMP's is a quoted header.
    #[inline(always)]
    pub fn carries_data(protocol: u8) -> bool {
        protocol == PROTO_TCP || protocol == PROTO_UDP
    }

    /// Whether a packet of no tracked flow starts one. A TCP flow starts
    /// with a SYN, or (picked up mid-way) with data; a bare ACK or RST after
    /// a flow ended must not start a new one.
    #[inline(always)]
    pub fn starts_flow(protocol: u8, tcp_flags: u8, has_payload: bool) -> bool {
        protocol != PROTO_TCP || tcp_flags & TCP_SYN != 0 || has_payload
    }

    /// ICMP echo requests start ICMP flows; other types answer them.
    #[inline(always)]
    pub fn is_echo_request(protocol: u8, icmp_type: u16) -> bool {
        (protocol == PROTO_ICMP && icmp_type == 8) || (protocol == PROTO_ICMPV6 && icmp_type == 128)
    }

    /// Destination unreachable: how closed UDP ports answer a scan.
    #[inline(always)]
    pub fn is_unreachable(protocol: u8, icmp_type: u16) -> bool {
        (protocol == PROTO_ICMP && icmp_type == 3) || (protocol == PROTO_ICMPV6 && icmp_type == 1)
    }

    /// Whether a packet becomes telemetry at all: every TCP and UDP packet;
    /// of ICMP, echo requests and unreachables only (replies and the rest
    /// belong to what they answer).
    #[inline(always)]
    pub fn is_observed(protocol: u8, icmp_type: u16) -> bool {
        (protocol != PROTO_ICMP && protocol != PROTO_ICMPV6)
            || is_echo_request(protocol, icmp_type)
            || is_unreachable(protocol, icmp_type)
    }

    pub const EVENT_SYN: u8 = 1;
    pub const EVENT_SYN_ACK: u8 = 2;
    pub const EVENT_RST: u8 = 3;
    pub const EVENT_FIN: u8 = 4;
    pub const EVENT_FLOW_START: u8 = 5;
    pub const EVENT_DNS: u8 = 6;
    pub const EVENT_DATA: u8 = 7;
    /// ICMP destination unreachable (v4 type 3, v6 type 1): the payload
    /// holds the rest of the ICMP header and the datagram it refuses.
    pub const EVENT_ICMP_ERROR: u8 = 8;
    /// A TCP packet of no connection that is not a SYN or a RST (see
    /// `tcp_event`).
    pub const EVENT_PROBE: u8 = 9;
    /// A tiny first fragment (see `is_tiny_fragment`); ports 0 when the
    /// fragment is too short to hold them.
    pub const EVENT_FRAGMENT: u8 = 10;
    /// A packet with a forged source (`Reason::Spoofed`): reported with the
    /// MAC and port it came from, never tracked, never evidence against the
    /// address it carries.
    pub const EVENT_SPOOFED: u8 = 11;
    /// A tracked flow active again after `WAKE_GAP_NS` idle (`is_wake`):
    /// addresses and ports are the initiator's then the responder's,
    /// whichever side sent the packet.
    pub const EVENT_WAKE: u8 = 12;

    /// `EventHeader::flags`: the source is bound on a switched segment and
    /// the frame came from its MAC: the address is proven.
    pub const EVENT_FLAG_BOUND: u8 = 1;

    /// `FlowStats::flags`
    pub const FLOW_ANSWERED: u8 = 1;
    pub const FLOW_FIN_A: u8 = 2;
    pub const FLOW_FIN_B: u8 = 4;
    pub const FLOW_RST: u8 = 8;
    /// `a` (resp. `b`) sent transport payload: more than a handshake. A
    /// login attempt, a request, a guess all need it.
    pub const FLOW_DATA_A: u8 = 16;
    pub const FLOW_DATA_B: u8 = 32;
    /// The responder's sequence numbers are anchored, by its SYN-ACK or,
    /// in a flow picked up after its handshake, by its first data seen:
    /// `HandshakeProof` follows them.
    pub const FLOW_SYN_ACK: u8 = 64;
    /// The initiator acknowledged data the responder sent, with the right
    /// sequence numbers (`HandshakeProof`): it receives what is sent to its
    /// address.
    pub const FLOW_PROVEN: u8 = 128;

    /// `FlowStats::inspect`
    pub const INSPECT_UNKNOWN: u8 = 0;
    pub const INSPECT_YES: u8 = 1;
    pub const INSPECT_NO: u8 = 2;
    /// Opened by the initiator's TLS ClientHello: the responder's first
    /// payload is sampled too when it opens with a ServerHello (its
    /// certificate follows in TLS 1.2 and earlier), then `INSPECT_NO`.
    pub const INSPECT_HELLO: u8 = 3;

    /// Indexes of `TELEMETRY_STATS` (per-CPU `u64`s).
    pub const STAT_EVENTS: u32 = 0;
    /// Events that did not fit in the ring buffer (userspace too slow).
    pub const STAT_EVENTS_LOST: u32 = 1;
    pub const STAT_FLOWS_CREATED: u32 = 2;
    pub const STAT_FLOW_INSERT_FAILED: u32 = 3;
    pub const STAT_COUNT: u32 = 4;
}

/// What the enforcement program parsed and decided about a packet, handed
/// to the telemetry program it tail-calls (a per-CPU slot of
/// `PACKET_SCRATCH`), so the packet is parsed once. Addresses as two native
/// words of their network-order bytes (IPv4 in the low half of the first).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParsedPacket {
    pub src: [u64; 2],
    pub dst: [u64; 2],
    pub sport: u16,
    /// ICMP: the type (`sport` the code).
    pub dport: u16,
    /// Where the transport payload starts, from the start of the frame.
    pub payload_offset: u16,
    /// Where the IP packet ends by its own length (Ethernet padding after
    /// it is no payload); `u16::MAX` for "the frame's end".
    pub ip_end: u16,
    /// TCP sequence and acknowledgment numbers (host order).
    pub seq: u32,
    pub ack: u32,
    pub family: u8,
    pub protocol: u8,
    pub tcp_flags: u8,
    /// `Verdict` and `Reason` as numbers.
    pub verdict: u8,
    pub reason: u8,
    /// 1: a tiny first fragment (`telemetry::is_tiny_fragment`).
    pub tiny_fragment: u8,
    /// `telemetry::EVENT_FLAG_*`
    pub event_flags: u8,
    pub _pad: u8,
}

/// The fixed part of every telemetry event. Addresses in network order;
/// IPv4 in the first four bytes (`family` 4), IPv6 whole (`family` 6).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// `bpf_ktime_get_boot_ns` when the packet arrived.
    pub ts_ns: u64,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Host order. ICMP: `dport` is the type, `sport` the code.
    pub sport: u16,
    pub dport: u16,
    pub family: u8,
    pub protocol: u8,
    /// `telemetry::EVENT_*`
    pub kind: u8,
    pub tcp_flags: u8,
    /// The packet's verdict and reason (a dropped flow is telemetry too).
    pub verdict: u8,
    pub reason: u8,
    /// Bytes of `PayloadEvent::payload` in use.
    pub payload_len: u16,
    pub packet_len: u32,
    /// The interface the frame came in on.
    pub ifindex: u32,
    /// The frame's source MAC.
    pub src_mac: [u8; 6],
    /// `telemetry::EVENT_FLAG_*`
    pub flags: u8,
    // Two fields, not `[u8; 5]`: the datapath zeroes them with two stores
    // rather than a byte-loop call.
    pub _pad: u8,
    pub _pad2: u32,
}

/// An event carrying payload (DNS messages, data samples).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PayloadEvent {
    pub header: EventHeader,
    pub payload: [u8; telemetry::PAYLOAD_MAX],
}

/// A flow, either way round: `(a, a_port) <= (b, b_port)`. Aligned to 8
/// so that the datapath fills the addresses with two word stores each
/// (byte stores cost about 15 ns a packet).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub a: [u8; 16],
    pub b: [u8; 16],
    pub a_port: u16,
    pub b_port: u16,
    pub protocol: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Whether a TCP flow's initiator really owns its address: it acknowledged
/// data the responder sent, with the responder's sequence numbers. Those
/// start from the responder's initial sequence number, which only the
/// receiver of its SYN-ACK knows, so a forger who sends with another
/// host's address and never sees the answers cannot acknowledge them.
/// Retransmitted SYNs and RSTs, however many, prove nothing. A flow
/// picked up after its handshake (a capture started late, a sensor
/// restarted, a SYN-ACK lost) is anchored at the responder's first data
/// instead: only a receiver of those bytes can acknowledge them, and a
/// blind forger's segments draw only empty answers (challenge ACKs, RSTs
/// [RFC 5961]). (Packets forged in the responder's name are the ingress
/// check's to stop: they arrive on the wrong segment's port.)
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeProof {
    /// The sequence number of the responder's latest SYN-ACK.
    pub resp_isn: u32,
    /// One past the last byte the responder sent, contiguously from its SYN.
    pub resp_end: u32,
}

impl HandshakeProof {
    /// Follows one TCP packet of the flow; `flags` are the flow's
    /// `FLOW_*` bits, returned with `FLOW_SYN_ACK` and `FLOW_PROVEN` as
    /// they now stand. Sequence arithmetic wraps (RFC 1982).
    #[inline(always)]
    pub fn follow(
        &mut self,
        flags: u8,
        from_initiator: bool,
        tcp_flags: u8,
        seq: u32,
        ack: u32,
        payload_len: u32,
    ) -> u8 {
        use telemetry::*;
        let syn_ack = TCP_SYN | TCP_ACK;
        if !from_initiator {
            if tcp_flags & syn_ack == syn_ack {
                self.resp_isn = seq;
                self.resp_end = seq.wrapping_add(1).wrapping_add(payload_len);
                return flags | FLOW_SYN_ACK;
            }
            if flags & FLOW_SYN_ACK == 0 {
                // No SYN-ACK seen: the first data anchors the numbers.
                if payload_len > 0 && tcp_flags & (TCP_SYN | TCP_RST) == 0 {
                    self.resp_isn = seq.wrapping_sub(1);
                    self.resp_end = seq.wrapping_add(payload_len);
                    return flags | FLOW_SYN_ACK;
                }
                return flags;
            }
            // Data that continues what was seen: a segment starting past
            // the end (a gap, or a number made up) moves nothing.
            let base = self.resp_isn.wrapping_add(1);
            let end = seq.wrapping_add(payload_len);
            if payload_len > 0
                && seq.wrapping_sub(base) <= self.resp_end.wrapping_sub(base)
                && end.wrapping_sub(base) > self.resp_end.wrapping_sub(base)
            {
                self.resp_end = end;
            }
            return flags;
        }
        if flags & (FLOW_SYN_ACK | FLOW_PROVEN) != FLOW_SYN_ACK || tcp_flags & TCP_ACK == 0 {
            return flags;
        }
        // More than the SYN acknowledged, and nothing beyond what was sent.
        let base = self.resp_isn.wrapping_add(1);
        let acked = ack.wrapping_sub(base);
        if acked > 0 && acked <= self.resp_end.wrapping_sub(base) {
            flags | FLOW_PROVEN
        } else {
            flags
        }
    }
}

/// Counters of one flow. Times are `bpf_ktime_get_coarse_ns` (monotonic).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub first_ns: u64,
    pub last_ns: u64,
    pub a_bytes: u64,
    pub b_bytes: u64,
    pub a_packets: u64,
    pub b_packets: u64,
    /// 1 when `b` sent the first packet.
    pub initiator_is_b: u8,
    /// `telemetry::FLOW_*`
    pub flags: u8,
    pub samples: u8,
    /// `telemetry::INSPECT_*`
    pub inspect: u8,
    pub proof: HandshakeProof,
    pub _pad: u32,
}

/// Global settings, one entry in an array map so they can change at run time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub flags: u32,
    pub _pad: u32,
}

/// Why a packet got its verdict. The values index [`IfaceCounters`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Nothing matched: the packet is allowed.
    Allowed = 0,
    /// The source address is an isolated host.
    IsolatedSource = 1,
    /// The destination address is an isolated host.
    IsolatedDestination = 2,
    /// The source address is in a blocked range.
    BlockedSource = 3,
    /// The destination address is in a blocked range.
    BlockedDestination = 4,
    /// The segment policy separates the source's and destination's segments.
    SegmentPolicy = 5,
    /// The headers could not be parsed far enough; passed (fail open).
    ParseError = 6,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...): passed untouched.
    NotIp = 7,
    /// The source address is forged: another segment's address on this
    /// port, or on a switched segment a frame whose source MAC is not the
    /// one the address is bound to. Dropped unless `SETTINGS_FLAG_DROP_SPOOFED`
    /// is off (then passed, and counted).
    Spoofed = 8,
}

pub const REASON_COUNT: usize = 9;

impl Reason {
    pub const ALL: [Reason; REASON_COUNT] = [
        Reason::Allowed,
        Reason::IsolatedSource,
        Reason::IsolatedDestination,
        Reason::BlockedSource,
        Reason::BlockedDestination,
        Reason::SegmentPolicy,
        Reason::ParseError,
        Reason::NotIp,
        Reason::Spoofed,
    ];

    /// The label used in metrics and in the CLI.
    pub const fn label(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::IsolatedSource => "isolated_source",
            Reason::IsolatedDestination => "isolated_destination",
            Reason::BlockedSource => "blocked_source",
            Reason::BlockedDestination => "blocked_destination",
            Reason::SegmentPolicy => "segment_policy",
            Reason::ParseError => "parse_error",
            Reason::NotIp => "not_ip",
            Reason::Spoofed => "spoofed_source",
        }
    }
}

/// What happened to the packet.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass = 0,
    Drop = 1,
}

pub const VERDICT_COUNT: usize = 2;

impl Verdict {
    pub const ALL: [Verdict; VERDICT_COUNT] = [Verdict::Pass, Verdict::Drop];

    pub const fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Drop => "drop",
        }
    }
}

/// Index of a (verdict, reason) pair in [`IfaceCounters`].
#[inline(always)]
pub const fn counter_index(verdict: Verdict, reason: Reason) -> usize {
    verdict as usize * REASON_COUNT + reason as usize
}

/// Per-CPU counters of one interface, at the interface's slot.
/// In monitor mode a packet that would be dropped is counted as
/// (pass, its blocking reason).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfaceCounters {
    pub packets: [u64; VERDICT_COUNT * REASON_COUNT],
    pub bytes: [u64; VERDICT_COUNT * REASON_COUNT],
}

impl IfaceCounters {
    pub const ZERO: IfaceCounters = IfaceCounters {
        packets: [0; VERDICT_COUNT * REASON_COUNT],
        bytes: [0; VERDICT_COUNT * REASON_COUNT],
    };
}

impl Default for IfaceCounters {
    fn default() -> Self {
        Self::ZERO
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), Copy, and have no padding.
    unsafe impl aya::Pod for super::BlockValue {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::IfaceCounters {}
    unsafe impl aya::Pod for super::AddressInfo {}
    unsafe impl aya::Pod for super::SummaryV4 {}
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::PayloadEvent {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowStats {}
    unsafe impl aya::Pod for super::TapCounters {}
    unsafe impl aya::Pod for super::ParsedPacket {}
    unsafe impl aya::Pod for super::PortInfo {}
    unsafe impl aya::Pod for super::Binding {}
}

#[cfg(test)]
mod tests {
    #[test]
    fn dcerpc_pdus_are_known_by_version_type_and_representation() {
        use super::telemetry::is_dcerpc_pdu;
        // bind, alter_context, request, response; little- and big-endian.
        for head in [
            [5, 0, 11, 3, 0x10],
            [5, 0, 14, 3, 0x10],
            [5, 0, 0, 3, 0x00],
            [5, 1, 2, 3, 0x10],
        ] {
            assert!(is_dcerpc_pdu(&head), "{head:?}");
        }
        // Connectionless (4), a type an association never carries (16,
        // 20), another representation, a short head.
        for head in [
            [4, 0, 0, 3, 0x10],
            [5, 0, 16, 3, 0x10],
            [5, 0, 20, 3, 0x10],
            [5, 0, 11, 3, 0x01],
        ] {
            assert!(!is_dcerpc_pdu(&head), "{head:?}");
        }
        assert!(!is_dcerpc_pdu(&[5, 0, 11]));
    }

    use super::*;
    use core::mem::size_of;

    #[test]
    fn shared_structs_have_no_padding() {
        assert_eq!(size_of::<BlockValue>(), 16);
        assert_eq!(size_of::<Settings>(), 8);
        assert_eq!(size_of::<AddressInfo>(), 40);
        assert_eq!(size_of::<EventHeader>(), 72);
        assert_eq!(size_of::<PayloadEvent>(), 72 + telemetry::PAYLOAD_MAX);
        assert_eq!(size_of::<PortInfo>(), 8);
        assert_eq!(size_of::<Binding>(), 8);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<FlowStats>(), 64);
        assert_eq!(size_of::<ParsedPacket>(), 56);
        assert_eq!(
            size_of::<IfaceCounters>(),
            2 * 8 * VERDICT_COUNT * REASON_COUNT
        );
    }

    /// Runs packets (from the initiator?, flags, seq, ack, payload length)
    /// through a proof; returns the flags.
    fn prove(packets: &[(bool, u8, u32, u32, u32)]) -> u8 {
        let mut proof = HandshakeProof::default();
        let mut flags = 0;
        for &(from_initiator, tcp, seq, ack, len) in packets {
            flags = proof.follow(flags, from_initiator, tcp, seq, ack, len);
        }
        flags
    }

    const SYN: u8 = telemetry::TCP_SYN;
    const ACK: u8 = telemetry::TCP_ACK;
    const RST: u8 = telemetry::TCP_RST;

    #[test]
    fn acknowledged_data_proves_the_initiator_across_the_wrap() {
        use telemetry::FLOW_PROVEN;
        for isn in [1000u32, u32::MAX - 5] {
            let conversation = [
                (true, SYN, 77, 0, 0),
                (false, SYN | ACK, isn, 78, 0),
                (true, ACK, 78, isn.wrapping_add(1), 0),
                (false, ACK, isn.wrapping_add(1), 78, 100),
                (true, ACK, 78, isn.wrapping_add(101), 0),
            ];
            assert_ne!(prove(&conversation) & FLOW_PROVEN, 0, "isn {isn}");
            // The handshake alone acknowledges no data.
            assert_eq!(prove(&conversation[..3]) & FLOW_PROVEN, 0);
        }
    }

    #[test]
    fn a_flow_picked_up_after_its_handshake_is_proven_by_acknowledged_data() {
        use telemetry::FLOW_PROVEN;
        let picked_up = [
            (true, ACK, 500, 9000, 178),
            (false, ACK, 9000, 678, 312),
            (true, ACK, 678, 9312, 166),
        ];
        assert_ne!(prove(&picked_up) & FLOW_PROVEN, 0);
        // Acknowledging nothing of it, or more than was sent: no.
        for ack in [9000, 9313, 9000 + 0x8000_0000] {
            let guessed = [picked_up[0], picked_up[1], (true, ACK, 678, ack, 0)];
            assert_eq!(prove(&guessed) & FLOW_PROVEN, 0, "ack {ack}");
        }
        // A blind forger's mid-stream segments draw empty answers (a
        // challenge ACK, an RST): nothing to acknowledge.
        let blind = [
            (true, ACK, 500, 1234, 100),
            (false, ACK, 9000, 500, 0),
            (false, RST, 9000, 0, 0),
            (true, ACK, 600, 9000, 0),
            (true, ACK, 600, 9001, 0),
        ];
        assert_eq!(prove(&blind) & FLOW_PROVEN, 0);
    }

    #[test]
    fn a_blind_forger_proves_nothing() {
        use telemetry::FLOW_PROVEN;
        let isn: u32 = 0x1234_5678;
        // SYN, RST, SYN, RST: the old "two packets each way".
        let retries = [
            (true, SYN, 77, 0, 0),
            (false, RST | ACK, 0, 78, 0),
            (true, SYN, 77, 0, 0),
            (false, RST | ACK, 0, 78, 0),
        ];
        assert_eq!(prove(&retries) & FLOW_PROVEN, 0);
        // Guessed acknowledgments: too far, the SYN only, before the SYN.
        for guess in [isn + 1 + 101, isn + 1, isn, isn.wrapping_add(0x8000_0000)] {
            let forged = [
                (true, SYN, 77, 0, 0),
                (false, SYN | ACK, isn, 78, 0),
                (false, ACK, isn + 1, 78, 100),
                (true, ACK, 78, guess, 0),
            ];
            assert_eq!(prove(&forged) & FLOW_PROVEN, 0, "ack {guess:#x}");
        }
        // Responder "data" far from its sequence numbers does not widen
        // what may be acknowledged.
        let widened = [
            (true, SYN, 77, 0, 0),
            (false, SYN | ACK, isn, 78, 0),
            (false, ACK, isn + 0x1000_0000, 78, 1000),
            (true, ACK, 78, isn + 0x1000_0000 + 1000, 0),
        ];
        assert_eq!(prove(&widened) & FLOW_PROVEN, 0);
    }

    #[test]
    fn counter_indices_are_distinct_and_in_range() {
        let mut seen = [false; VERDICT_COUNT * REASON_COUNT];
        for v in Verdict::ALL {
            for r in Reason::ALL {
                let i = counter_index(v, r);
                assert!(!seen[i], "index {i} used twice");
                seen[i] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn reasons_are_listed_in_value_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
