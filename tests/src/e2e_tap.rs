//! Mirror-port mode in the lab: the office hosts hang off an access switch
//! whose SPAN port copies every frame to sensord's tap. Traffic between
//! two office hosts never reaches the gateway; the tap sees it, the same
//! detectors judge it, and the host is isolated at the gateway.

use crate::support::lab::{
    self, assert_isolated_within, background, detectors, http, incidents_of, metric, ping, run,
    wait_for,
};

/// Isolate on any clear detection. Two admin-port peers make a fan-out
/// here: the office has only three hosts (the default is five).
fn policy() -> String {
    format!(
        "[detection.lateral]\nfanout_hosts = 2\n{}",
        lab::ISOLATE_POLICY
    )
}

fn tap_metric(lab: &labnet::Lab, name: &str, label: (&str, &str)) -> u64 {
    let text = lab.metrics().expect("scraping the metrics");
    metric(
        &text,
        name,
        &[("interface", labnet::lab::OFFICE_TAP), label],
    )
}

#[test]
fn east_west_scan_and_smb_fanout_are_caught_on_the_tap_and_isolated_at_the_gateway() {
    let lab = lab::start("tapew", &policy());
    // Completed handshakes through the gateway prove the hosts' addresses.
    for host in ["office1", "office2"] {
        assert!(http(&lab, host, "http://203.0.113.80/"), "{host} browses");
    }
    // office2 serves files over TLS, under a name office1 uses (SNI), and
    // a web page.
    let _tls = background(
        &lab,
        "office2",
        "tls",
        "socat TCP-LISTEN:8443,fork,reuseaddr EXEC:'sleep 3'",
    );
    let _web = background(&lab, "office2", "web", "python3 -m http.server 8080");
    for port in [":8443", ":8080"] {
        let up = wait_for(10, || {
            !run(&lab, "office2", &format!("ss -Hlnt sport = {port}"))
                .trim()
                .is_empty()
        });
        assert!(up.is_some(), "office2 does not listen on {port}");
    }
    run(
        &lab,
        "office1",
        "timeout 2 openssl s_client -connect 10.10.0.12:8443 -servername files.office.lab </dev/null",
    );
    let gateway_before = metric(
        &lab.metrics().unwrap(),
        "sensor_packets_total",
        &[("interface", "office")],
    );
    let read_before = tap_metric(&lab, "sensor_tap_frames_total", ("stage", "read"));

    run(
        &lab,
        "office1",
        "nmap -sS -n -Pn -p 1-200 --max-retries 1 10.10.0.12",
    );
    assert_isolated_within(&lab, "10.10.0.11", 15, "east-west nmap -sS");
    assert!(detectors(&lab, "10.10.0.11").contains(&"scan.vertical".into()));
    let incident = &incidents_of(&lab, "10.10.0.11")[0];
    assert_eq!(
        lab::name_of(incident, "10.10.0.12").as_deref(),
        Some("files.office.lab"),
        "the scanned host is named by the TLS server name office1 used: {incident}"
    );

    // The scan's 200-odd probes and answers came through the tap, not the
    // gateway: its office port saw a handful of packets at most.
    // (The tap's counters are published once a second.)
    let read_now = || tap_metric(&lab, "sensor_tap_frames_total", ("stage", "read")) - read_before;
    wait_for(5, || read_now() >= 200);
    let read = read_now();
    let gateway = metric(
        &lab.metrics().unwrap(),
        "sensor_packets_total",
        &[("interface", "office")],
    ) - gateway_before;
    assert!(read >= 200, "the tap read {read} frames of the scan");
    assert!(
        gateway < 50,
        "the gateway's office port saw {gateway} packets of an east-west scan"
    );
    // Isolated at the gateway: cut off from the internet, while its own
    // segment's switch still carries its frames.
    assert!(
        !http(&lab, "office1", "http://203.0.113.80/"),
        "office1 -> web after isolation"
    );
    assert!(
        ping(&lab, "office3", "10.10.0.11"),
        "east-west does not cross the gateway"
    );

    // The Nmap Scripting Engine announces itself in its HTTP requests.
    run(
        &lab,
        "office1",
        "nmap -sT -n -Pn -p 8080 --script http-title 10.10.0.12",
    );
    let found = wait_for(10, || {
        detectors(&lab, "10.10.0.11").contains(&"scan.web".into())
    });
    assert!(
        found.is_some(),
        "NSE's user agent: {:?}",
        incidents_of(&lab, "10.10.0.11")
    );

    // office2 reaches for SMB on both its neighbours.
    run(
        &lab,
        "office2",
        "for h in 10.10.0.11 10.10.0.13; do nc -z -w 1 $h 445; done",
    );
    assert_isolated_within(&lab, "10.10.0.12", 15, "SMB fan-out");
    assert!(
        detectors(&lab, "10.10.0.12").contains(&"lateral.fanout".into()),
        "{:?}",
        incidents_of(&lab, "10.10.0.12")
    );
    assert!(
        incidents_of(&lab, "10.10.0.13").is_empty(),
        "office3 did nothing: {:?}",
        incidents_of(&lab, "10.10.0.13")
    );
}

#[test]
fn tap_losses_are_counted_exactly_when_the_reader_stops() {
    let lab = lab::start("taploss", "");
    let seen = |lab: &labnet::Lab| tap_metric(lab, "sensor_tap_frames_total", ("stage", "seen"));
    let read = |lab: &labnet::Lab| tap_metric(lab, "sensor_tap_frames_total", ("stage", "read"));
    let lost = |lab: &labnet::Lab| {
        let text = lab.metrics().expect("scraping the metrics");
        metric(
            &text,
            "sensor_tap_frames_lost_total",
            &[("interface", labnet::lab::OFFICE_TAP)],
        )
    };
    // Counters settle (the reader publishes them once a second).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (seen0, read0, lost0) = (seen(&lab), read(&lab), lost(&lab));

    let pid: i32 = std::fs::read_to_string(lab.dir.join("sensord.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the sensord this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    const FRAMES: u64 = 6000;
    // Frames straight out of the switch's SPAN port: each reaches the tap.
    let sent = lab.switch.command("/usr/bin/python3").args([
        "-c",
        &format!(
            "from scapy.all import *\n\
             f = Ether(src='02:00:00:00:00:01', dst='02:00:00:00:00:02') / \
             IP(src='10.10.0.11', dst='10.10.0.12') / UDP(sport=4000, dport=5000) / Raw(b'x' * 64)\n\
             sendp([f] * {FRAMES}, iface='span', verbose=False)"
        ),
    ]).status();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(
        sent.expect("running scapy").success(),
        "scapy could not send"
    );
    std::thread::sleep(std::time::Duration::from_millis(2500));

    // The lab's own frames may add to `seen`; the sums hold regardless.
    let seen = seen(&lab) - seen0;
    let read = read(&lab) - read0;
    let lost = lost(&lab) - lost0;
    assert!(
        seen >= FRAMES,
        "the tap program saw {seen} of {FRAMES} frames"
    );
    assert_eq!(
        read + lost,
        seen,
        "every frame is read or counted lost (read {read}, lost {lost})"
    );
    let ring = u64::from(sensor_user::tap::xsk::RX_RING);
    assert!(
        lost >= FRAMES - ring,
        "only {lost} lost while the reader was stopped"
    );
    assert!(
        read >= ring,
        "the full ring was drained after the reader resumed: {read}"
    );
}

/// Host discovery inside the segment: `nmap -sn` on the office subnet asks
/// for every address by ARP. Only the tap sees those frames.
#[test]
fn arp_sweep_inside_the_office_is_caught_on_the_tap() {
    let lab = lab::start("taparp", &policy());
    assert!(
        http(&lab, "office3", "http://203.0.113.80/"),
        "office3 browses"
    );
    run(&lab, "office3", "nmap -sn -n 10.10.0.0/24");
    assert_isolated_within(&lab, "10.10.0.13", 15, "ARP sweep");
    let found = detectors(&lab, "10.10.0.13");
    assert!(found.contains(&"scan.arp".into()), "{found:?}");
    assert!(
        incidents_of(&lab, "10.10.0.11").is_empty() && incidents_of(&lab, "10.10.0.12").is_empty(),
        "the hosts that answered did nothing"
    );
}
