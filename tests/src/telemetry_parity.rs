//! One packet-to-event rule: the same packets go through the eBPF telemetry
//! program (BPF_PROG_TEST_RUN, then the ring buffer and the flow table are
//! read as sensord reads them) and through the capture/tap decoder and flow
//! tracker, and must give the same events and the same flow records. So
//! what `sensorctl analyze` finds in a capture is what sensord sees live.
//!
//! Left out on purpose: ARP requests (the datapath passes non-IP frames
//! untouched; only taps and captures see them) and timestamps (the kernel's
//! clock against packet time).

use std::path::PathBuf;

use sensor_user::{
    detect::{
        capture::{decode, FlowTracker, Link},
        pcapfile, Event, Kind,
    },
    telemetry::{decode as telemetry, Clocks},
};

use crate::support::{
    fixture::Fixture,
    packet::{Ext, Packet, ETH_P_8021Q, L4},
};

/// An event without its time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    kind: String,
    src: String,
    dst: String,
    protocol: u8,
    payload: Vec<u8>,
}

fn seen(e: &Event) -> Seen {
    Seen {
        kind: format!("{:?}", e.kind),
        src: format!("{}:{}", e.src, e.sport),
        dst: format!("{}:{}", e.dst, e.dport),
        protocol: e.protocol,
        payload: e.payload.clone(),
    }
}

/// A flow record without its times.
fn record(e: &Event) -> String {
    let Kind::FlowEnd(f) = &e.kind else {
        unreachable!()
    };
    format!(
        "{}:{} > {}:{} proto {} packets {}/{} bytes {}/{} answered {} data {}/{} proven {}",
        e.src,
        e.sport,
        e.dst,
        e.dport,
        e.protocol,
        f.orig_packets,
        f.resp_packets,
        f.orig_bytes,
        f.resp_bytes,
        f.answered,
        f.orig_data,
        f.resp_data,
        f.proven
    )
}

/// Events and flow records from the eBPF program.
fn through_datapath(frames: &[Vec<u8>]) -> (Vec<Seen>, Vec<String>) {
    through_datapath_paced(frames, |_| 0)
}

/// The same, waiting `pause_ms(i)` before frame `i` (the datapath reads the
/// kernel's clock).
fn through_datapath_paced(
    frames: &[Vec<u8>],
    pause_ms: impl Fn(usize) -> u64,
) -> (Vec<Seen>, Vec<String>) {
    let mut f = Fixture::new();
    f.dp.maps.set_telemetry(true).expect("telemetry on");
    let mut maps = f.dp.take_telemetry().expect("telemetry maps");
    let mut ring = maps.ring.take().expect("the ring");
    let clocks = Clocks::now();
    let mut events = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        std::thread::sleep(std::time::Duration::from_millis(pause_ms(i)));
        f.run(frame);
        while let Some(item) = ring.next() {
            let (event, _) = telemetry::event(&item, &clocks).expect("a record of ours");
            events.push(seen(&event));
        }
    }
    // Far in the future: every flow has ended.
    let poll = maps.poll_flows(&clocks, u64::MAX / 2, &mut 0);
    let mut flows: Vec<String> = poll.ended.iter().map(record).collect();
    flows.sort();
    (events, flows)
}

/// Events and flow records from the decoder, a millisecond apart.
fn through_decoder(frames: &[Vec<u8>]) -> (Vec<Seen>, Vec<String>) {
    through_decoder_paced(frames, |_| 0)
}

/// The same, with `pause_ms(i)` more packet time before frame `i`.
fn through_decoder_paced(
    frames: &[Vec<u8>],
    pause_ms: impl Fn(usize) -> u64,
) -> (Vec<Seen>, Vec<String>) {
    let mut tracker = FlowTracker::default();
    let mut all = Vec::new();
    let mut ts = 1_700_000_000_000_000_000u64;
    for (i, frame) in frames.iter().enumerate() {
        ts += 1_000_000 + pause_ms(i) * 1_000_000;
        if let Ok(p) = decode(Link::Ethernet, ts, frame.len() as u64, frame) {
            tracker.packet(&p, &mut |e| all.push(e));
        }
    }
    tracker.finish(&mut |e| all.push(e));
    let events = all
        .iter()
        // `Proven` is the decoder's form of sensord's flow-table poll:
        // compared with the flow records' proof below.
        .filter(|e| !matches!(e.kind, Kind::FlowEnd(_) | Kind::ArpRequest | Kind::Proven))
        .map(seen)
        .collect();
    let mut flows: Vec<String> = all
        .iter()
        .filter(|e| matches!(e.kind, Kind::FlowEnd(_)))
        .map(record)
        .collect();
    flows.sort();
    (events, flows)
}

fn assert_same(name: &str, frames: &[Vec<u8>]) {
    let (dp_events, dp_flows) = through_datapath(frames);
    let (dec_events, dec_flows) = through_decoder(frames);
    // The first difference, so a long capture's failure reads at a glance.
    if let Some(at) =
        (0..dp_events.len().max(dec_events.len())).find(|i| dp_events.get(*i) != dec_events.get(*i))
    {
        panic!(
            "{name}: events differ at {at} of {} (datapath) and {} (decoder):\n  datapath: {:?}\n  decoder:  {:?}",
            dp_events.len(),
            dec_events.len(),
            dp_events.get(at),
            dec_events.get(at)
        );
    }
    assert_eq!(dp_flows, dec_flows, "{name}: flow records differ");
}

const A: &str = "10.0.0.1";
const B: &str = "10.0.0.2";

fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Packet {
    Packet::new(
        src,
        dst,
        L4::Tcp {
            sport,
            dport,
            flags,
        },
    )
    .padded(60)
}

/// A whole TCP conversation: handshake, data both ways, FIN both ways, the
/// last ACK (which must join the closed flow, not start one), with the
/// sequence numbers real stacks use (the responder's wrap around 2^32):
/// the client acknowledges the response, which proves its address.
fn conversation(src: &str, dst: &str, dport: u16, request: &[u8]) -> Vec<Vec<u8>> {
    answered(src, dst, dport, request, b"response bytes")
}

/// `conversation` with the server's answer given.
fn answered(src: &str, dst: &str, dport: u16, request: &[u8], response: &[u8]) -> Vec<Vec<u8>> {
    let (c, s) = (1000u32, 0xffff_fff0u32);
    let (r, n) = (request.len() as u32, response.len() as u32);
    let syn = tcp(src, dst, 40001, dport, 0x02);
    let client =
        |flags: u8, seq: u32, ack: u32| tcp(src, dst, 40001, dport, flags).numbers(seq, ack);
    let server = |flags: u8, seq: u32, ack: u32| syn.clone().reply(flags).numbers(seq, ack);
    let s1 = s.wrapping_add(1);
    vec![
        client(0x02, c, 0).build(),
        server(0x12, s, c + 1).build(),
        client(0x10, c + 1, s1).build(),
        client(0x18, c + 1, s1).payload(request).build(),
        server(0x18, s1, c + 1 + r).payload(response).build(),
        client(0x11, c + 1 + r, s1.wrapping_add(n)).build(),
        server(0x11, s1.wrapping_add(n), c + 2 + r).build(),
        client(0x10, c + 2 + r, s1.wrapping_add(n + 1)).build(),
    ]
}

fn dns_query(name: &str) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m
}

#[test]
fn every_tcp_flag_combination_gives_the_same_events() {
    // Each combination on a flow of its own (and again on the same flow).
    let mut frames = Vec::new();
    for flags in 0..=255u8 {
        let p = tcp(A, B, 10000 + flags as u16, 80, flags);
        frames.push(p.build());
        frames.push(p.build());
    }
    assert_same("flag combinations", &frames);
}

#[test]
fn conversations_retransmissions_and_resets() {
    let mut frames = conversation(A, B, 443, b"\x16\x03\x01\x00\x05\x01hello");
    // A ClientHello answered by a ServerHello (sampled: its certificate
    // follows), and one answered by something else (not sampled).
    let server_hello = b"\x16\x03\x03\x00\x04\x02\x00\x00\x00";
    frames.extend(answered(
        A,
        B,
        4041,
        b"\x16\x03\x01\x00\x05\x01hello",
        server_hello,
    ));
    frames.extend(answered(
        A,
        B,
        4042,
        b"\x16\x03\x01\x00\x05\x01hello",
        b"\x15\x03\x03alert",
    ));
    // SSH: the server's identification string comes first and is not
    // sampled; the client's, which follows, is.
    let mut ssh = answered(A, B, 2222, b"SSH-2.0-client\r\n", b"SSH-2.0-server\r\n");
    ssh.swap(3, 4);
    frames.extend(ssh);
    // An HTTP request on another flow, its SYN retransmitted.
    let mut http = conversation(A, B, 8080, b"GET / HTTP/1.1\r\nHost: c2.example\r\n\r\n");
    http.insert(1, http[0].clone());
    frames.extend(http);
    // A forger's retries: SYN, RST, SYN, RST (two packets each way) prove
    // nothing; nor does an acknowledgment guessed past what was sent.
    for _ in 0..2 {
        frames.push(tcp(A, B, 40050, 8443, 0x02).numbers(5, 0).build());
        frames.push(tcp(B, A, 8443, 40050, 0x14).numbers(0, 6).build());
    }
    frames.push(tcp(A, B, 40060, 8443, 0x02).numbers(5, 0).build());
    frames.push(tcp(B, A, 8443, 40060, 0x12).numbers(7000, 6).build());
    frames.push(
        tcp(B, A, 8443, 40060, 0x18)
            .numbers(7001, 6)
            .payload(b"hi")
            .build(),
    );
    frames.push(tcp(A, B, 40060, 8443, 0x10).numbers(6, 9000).build());
    // Refused: SYN, RST-ACK; then a late RST with no flow.
    frames.push(tcp(A, B, 40100, 23, 0x02).build());
    frames.push(tcp(B, A, 23, 40100, 0x14).build());
    frames.push(tcp(B, A, 23, 40100, 0x04).build());
    // Picked up mid-way: data first.
    frames.push(tcp(A, B, 40200, 22, 0x18).payload(b"SSH-2.0-x\r\n").build());
    // A bare ACK of no flow starts none.
    frames.push(tcp(A, B, 40300, 22, 0x10).build());
    // SMB: sampled throughout.
    frames.extend(conversation(
        A,
        B,
        445,
        b"\x00\x00\x00\x10\xfeSMB some bytes",
    ));
    // DCE/RPC bind on a dynamic port; an association picked up at an
    // alter-context.
    frames.extend(conversation(A, B, 49670, &[5, 0, 11, 3, 16, 0, 0, 0]));
    frames.extend(conversation(A, B, 49671, &[5, 0, 14, 3, 16, 0, 0, 0]));
    // Kerberos: a request longer than a sample is sampled at its end.
    let long: Vec<u8> = (0..1600u32).map(|i| (i % 251) as u8).collect();
    frames.extend(conversation(A, B, 88, &long));
    assert_same("conversations", &frames);
    let (events, flows) = through_datapath(&frames);
    let answers: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "Data" && e.src.starts_with(B))
        .filter(|e| {
            [443, 4041, 4042, 8080]
                .iter()
                .any(|p| e.src.ends_with(&format!(":{p}")))
        })
        .map(|e| e.src.as_str())
        .collect();
    assert_eq!(
        answers,
        [format!("{B}:4041")],
        "only the ServerHello is sampled"
    );
    let ssh: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "Data" && (e.src.ends_with(":2222") || e.dst.ends_with(":2222")))
        .map(|e| e.src.as_str())
        .collect();
    assert_eq!(
        ssh,
        [format!("{A}:40001")],
        "only the client's SSH banner is sampled"
    );
    let proven: Vec<&String> = flows
        .iter()
        .filter(|f| f.ends_with("proven true"))
        .collect();
    // The nine conversations; neither the forger's retries nor its guess.
    assert_eq!(proven.len(), 9, "{flows:#?}");
    // The decoder says so at the proving packet, once per flow, naming
    // the initiator: the same flows.
    let mut tracker = FlowTracker::default();
    let mut announced = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let ts = 1_700_000_000_000_000_000 + i as u64 * 1_000_000;
        if let Ok(p) = decode(Link::Ethernet, ts, frame.len() as u64, frame) {
            tracker.packet(&p, &mut |e| {
                if e.kind == Kind::Proven {
                    announced.push(format!("{}:{} > {}:{}", e.src, e.sport, e.dst, e.dport));
                }
            });
        }
    }
    announced.sort();
    let mut expected: Vec<String> = proven
        .iter()
        .map(|f| f.split(" proto").next().unwrap_or_default().to_string())
        .collect();
    expected.sort();
    assert_eq!(announced, expected);
}

#[test]
fn flows_waking_after_an_idle_gap_are_marked_alike() {
    // A TCP conversation whose server answers after a pause (as a
    // heartbeat's answer would come), and a UDP socket whose peer answers
    // after the same pause: each wakes once, named by its initiator.
    let tcp = conversation(A, B, 8443, b"ping");
    let udp = Packet::udp(A, B).ports(50010, 4444).payload(b"beat");
    let mut frames: Vec<Vec<u8>> = tcp[..4].to_vec();
    frames.push(udp.build());
    let pause_at = frames.len();
    frames.extend(tcp[4..].iter().cloned());
    frames.push(udp.clone().reply(0).payload(b"ack").build());
    let pause = |i: usize| if i == pause_at { 5_200 } else { 0 };
    let (dp_events, dp_flows) = through_datapath_paced(&frames, pause);
    let (dec_events, dec_flows) = through_decoder_paced(&frames, pause);
    assert_eq!(dp_events, dec_events);
    assert_eq!(dp_flows, dec_flows);
    let wakes: Vec<(String, String)> = dec_events
        .iter()
        .filter(|e| e.kind == "Wake")
        .map(|e| (e.src.clone(), e.dst.clone()))
        .collect();
    assert_eq!(
        wakes,
        [
            (format!("{A}:40001"), format!("{B}:8443")),
            (format!("{A}:50010"), format!("{B}:4444"))
        ]
    );
}

#[test]
fn udp_dns_and_icmp() {
    let query = Packet::udp(A, "10.0.0.53")
        .ports(50000, 53)
        .payload(&dns_query("www.example.com"))
        .padded(60);
    let frames = vec![
        query.build(),
        query
            .clone()
            .reply(0)
            .payload(&dns_query("www.example.com"))
            .build(),
        // A short datagram, padded by the NIC: the padding is no payload.
        Packet::udp(A, B)
            .ports(50001, 123)
            .payload(b"ntp")
            .padded(60)
            .build(),
        Packet::udp(A, B).ports(50002, 161).padded(60).build(),
        // Kerberos datagrams: a request longer than a sample (its end is
        // sampled), the KDC's answer (its start).
        Packet::udp(A, B)
            .ports(50004, 88)
            .payload(&(0..700u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
            .build(),
        Packet::udp(B, A)
            .ports(88, 50004)
            .payload(&(0..700u32).map(|i| (i % 241) as u8).collect::<Vec<u8>>())
            .build(),
        // Echo request and reply; an unreachable quoting a UDP probe.
        Packet::icmp(A, B).padded(60).build(),
        Packet::new(B, A, L4::Icmp { kind: 0, code: 0 })
            .padded(60)
            .build(),
        Packet::new(B, A, L4::Icmp { kind: 3, code: 3 })
            .payload(&Packet::udp(A, B).ports(50003, 9).build()[14..])
            .build(),
        // The same over IPv6.
        Packet::icmp("2001:db8::1", "2001:db8::2").build(),
        Packet::new("2001:db8::2", "2001:db8::1", L4::Icmp { kind: 1, code: 4 }).build(),
        Packet::udp("2001:db8::1", "2001:db8::53")
            .payload(&dns_query("example.org"))
            .build(),
    ];
    assert_same("udp, dns, icmp", &frames);
}

#[test]
fn vlan_tags_ipv6_extension_headers_and_ipv4_options() {
    let frames = vec![
        tcp(A, B, 40001, 80, 0x02).vlan(ETH_P_8021Q, 10).build(),
        tcp(B, A, 80, 40001, 0x12).vlan(ETH_P_8021Q, 10).build(),
        tcp(A, B, 40002, 80, 0x02).ipv4_options(3).build(),
        Packet::new(
            "2001:db8::1",
            "2001:db8::2",
            L4::Tcp {
                sport: 40003,
                dport: 80,
                flags: 0x02,
            },
        )
        .ext(Ext::HopByHop)
        .ext(Ext::DestOpts)
        .build(),
        Packet::udp("2001:db8::1", "2001:db8::2")
            .ext(Ext::Routing)
            .payload(&dns_query("a.example"))
            .build(),
    ];
    assert_same("vlan, extension headers, options", &frames);
}

#[test]
fn probes_outside_connections_and_fragments() {
    let mut frames = Vec::new();
    // FIN, NULL, Xmas, Maimon and ACK probes to a closed port, each
    // refused; then the same to an open one, unanswered.
    for (i, flags) in [0x01u8, 0x00, 0x29, 0x11, 0x10].into_iter().enumerate() {
        let probe = tcp(A, B, 41000 + i as u16, 25, flags);
        frames.push(probe.build());
        frames.push(probe.clone().reply(0x04).build());
        frames.push(tcp(A, B, 41100 + i as u16, 80, flags).build());
    }
    // A keepalive ACK of a connection no longer tracked, acknowledged.
    let keepalive = tcp(A, B, 41200, 5432, 0x10);
    frames.push(keepalive.build());
    frames.push(keepalive.clone().reply(0x10).build());
    // `nmap -f`: a SYN in three fragments (8 + 8 + 4 bytes of header),
    // over IPv4 and IPv6, padded to the Ethernet minimum; `--mtu 16`.
    for (src, dst) in [(A, B), ("2001:db8::1", "2001:db8::2")] {
        let syn = tcp(src, dst, 41300, 8080, 0x02);
        frames.push(syn.clone().fragment(0, 8).build());
        frames.push(syn.clone().fragment(8, 8).build());
        frames.push(syn.clone().fragment(16, 8).build());
        frames.push(syn.clone().ports(41301, 8081).fragment(0, 16).build());
        // A first fragment that holds the whole header: a SYN as any other.
        frames.push(
            syn.clone()
                .ports(41302, 8082)
                .payload(&[7; 40])
                .fragment(0, 24)
                .build(),
        );
        frames.push(syn.reply(0x14).ports(8082, 41302).build());
    }
    // UDP in fragments: the first holds the header, the rest none.
    let big = Packet::udp(A, B).ports(41400, 53).payload(&[1; 64]);
    frames.push(big.clone().fragment(0, 32).build());
    frames.push(big.fragment(32, 40).build());
    assert_same("probes and fragments", &frames);
    let (events, _) = through_datapath(&frames);
    let count = |kind: &str| events.iter().filter(|e| e.kind == kind).count();
    assert_eq!(count("Probe"), 12, "{events:#?}");
    assert_eq!(count("Fragment"), 4, "{events:#?}");
    assert_eq!(count("Syn"), 2, "{events:#?}");
}

/// The longest Ethernet frame on the wire: 1,500 bytes of MTU, the
/// header and two VLAN tags.
const MAX_WIRE_FRAME: usize = 1522;

/// Frames of a shared capture (Ethernet only), as long as they could have
/// crossed a wire.
fn capture(file: &str) -> Option<Vec<Vec<u8>>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/pcaps")
        .join(file);
    if !path.exists() {
        eprintln!("skipped: {} is not there", path.display());
        return None;
    }
    let mut frames = Vec::new();
    pcapfile::read(&path, false, &mut |f| {
        assert_eq!(f.link.0, 1);
        // A capture taken with segmentation offload holds frames longer
        // than any on the wire; BPF_PROG_TEST_RUN takes one page at most.
        if f.data.len() <= MAX_WIRE_FRAME {
            frames.push(f.data.to_vec());
        }
    })
    .unwrap();
    Some(frames)
}

#[test]
fn shared_captures_give_the_same_events() {
    for file in [
        "c2/slips_test-cc-capture-1_periodic2s.pcap",
        "c2/corelight_asyncrat_tls_4041.pcap",
        "recon/esnet_masscan_tcp_0_1000.pcap",
        "dns_tunnel/dmachard_iodine.pcap",
        "recon/slips_test12-icmp-portscan.pcap",
        "credential_access/otrf_rubeus_asktgt_rc4_ptt.pcap",
        "credential_access/sbousseaden_dcshadow_drsuapi_replica_add.pcapng",
    ] {
        if let Some(frames) = capture(file) {
            assert_same(file, &frames);
        }
    }
}

/// A direct-TCP SMB2 message: session header, SMB2 header (`command`, a
/// response when `response`), then `body`.
fn smb2(command: u16, response: bool, body: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\xfeSMB");
    h[4] = 64;
    h[12..14].copy_from_slice(&command.to_le_bytes());
    h[16] = response as u8;
    let len = (64 + body.len()) as u32;
    let mut m = len.to_be_bytes().to_vec();
    m[0] = 0;
    m.extend(h);
    m.extend_from_slice(body);
    m
}

/// An SMB2 WRITE (or IOCTL) body whose data, at Windows's offset, is
/// `data`.
fn smb2_with_data(command: u16, data: &[u8]) -> Vec<u8> {
    let (fixed, offset_at, offset) = if command == 9 {
        (48, 2, 0x70u32)
    } else {
        (56, 24, 0x78)
    };
    let mut body = vec![0u8; fixed];
    body[offset_at..offset_at + 4].copy_from_slice(&offset.to_le_bytes());
    if command == 9 {
        // WRITE's DataOffset is a u16, followed by the length.
        body[offset_at + 2..offset_at + 4].copy_from_slice(&0u16.to_le_bytes());
    }
    body.resize(offset as usize - 64, 0);
    body.extend_from_slice(data);
    smb2(command, false, &body)
}

#[test]
fn long_connections_keep_sampling_what_opens_a_call_or_a_file() {
    let (c, s) = (1000u32, 5000u32);
    let mut frames = Vec::new();
    let mut seq = c + 1;
    let mut send = |frames: &mut Vec<Vec<u8>>, dport: u16, payload: &[u8]| {
        frames.push(
            tcp(A, B, 40400, dport, 0x18)
                .numbers(seq, s + 1)
                .payload(payload)
                .build(),
        );
        seq += payload.len() as u32;
    };
    let syn = tcp(A, B, 40400, 445, 0x02);
    frames.push(syn.clone().numbers(c, 0).build());
    frames.push(syn.reply(0x12).numbers(s, c + 1).build());
    // Past the first 32 samples of an SMB connection ...
    for _ in 0..34 {
        send(&mut frames, 445, &smb2(8, false, &[0u8; 48]));
    }
    let rpc_request = [
        5u8, 0, 0, 3, 0x10, 0, 0, 0, 24, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0,
    ];
    // ... a tree connect, a create, a pipe write carrying an RPC request
    // and an IOCTL carrying one are sampled; a file write, a read and a
    // short packet are not.
    send(
        &mut frames,
        445,
        &smb2(
            3,
            false,
            &[9, 0, 0, 0, 72, 0, 8, 0, b'\\', 0, b'C', 0, b'$', 0, 0, 0],
        ),
    );
    send(&mut frames, 445, &smb2(5, false, &[0u8; 60]));
    send(&mut frames, 445, &smb2_with_data(9, &rpc_request));
    send(&mut frames, 445, &smb2_with_data(11, &rpc_request));
    send(
        &mut frames,
        445,
        &smb2_with_data(9, b"MZ file contents ........"),
    );
    send(&mut frames, 445, &smb2(8, false, &[0u8; 48]));
    send(&mut frames, 445, b"short");
    assert_same("long smb connection", &frames);
    let (events, _) = through_datapath(&frames);
    let data = events.iter().filter(|e| e.kind == "Data").count();
    assert_eq!(data, 32 + 4, "{events:#?}");
}
