//! The built-in lab, brought up per test with a unique name, and the probes
//! the tests run from its hosts with real tools.

use labnet::{Lab, LabOptions};

use super::{bin_dir, unique_name};

/// A lab with sensord running; everything is removed when it is dropped.
pub fn start(tag: &str, extra_config: &str) -> Lab {
    start_lab(tag, extra_config, false)
}

/// `start`, with the lab's Active Directory domain controller (dc1).
pub fn start_with_domain(tag: &str, extra_config: &str) -> Lab {
    start_lab(tag, extra_config, true)
}

fn start_lab(tag: &str, extra_config: &str, domain: bool) -> Lab {
    let lab = Lab::create(&LabOptions {
        prefix: unique_name(tag),
        extra_config: extra_config.into(),
        bin_dir: bin_dir(),
        domain,
    })
    .unwrap_or_else(|e| panic!("building the lab failed: {e:#}"));
    lab.start_sensord()
        .unwrap_or_else(|e| panic!("starting sensord failed: {e:#}"));
    lab
}

/// An HTTP GET from a host succeeds (curl, 2 s timeout).
pub fn http(lab: &Lab, from: &str, url: &str) -> bool {
    lab.host(from)
        .netns
        .succeeds("curl", &["-sS", "-o", "/dev/null", "-m", "2", url])
}

/// One ICMP echo from a host is answered (ping or ping -6, 1 s timeout).
pub fn ping(lab: &Lab, from: &str, to: &str) -> bool {
    lab.host(from)
        .netns
        .succeeds("ping", &["-c", "1", "-W", "1", to])
}

/// A UDP query from a host to the lab's resolver gets an answer (dig).
pub fn dns(lab: &Lab, from: &str, name: &str) -> bool {
    lab.host(from)
        .netns
        .exec(
            "dig",
            &["+short", "+time=1", "+tries=1", "@203.0.113.53", name],
        )
        .map(|out| !out.trim().is_empty())
        .unwrap_or(false)
}

/// Sends a datagram from a host to a UDP echo server and waits for it back.
pub fn udp_echo(lab: &Lab, from: &str, to: &str, port: u16) -> bool {
    let target = if to.contains(':') {
        format!("UDP6:[{to}]:{port}")
    } else {
        format!("UDP4:{to}:{port}")
    };
    let out = lab
        .host(from)
        .netns
        .command("sh")
        .args([
            "-c",
            &format!("echo lab-echo | timeout 3 socat -T1 - {target}"),
        ])
        .output()
        .expect("running socat");
    String::from_utf8_lossy(&out.stdout).contains("lab-echo")
}

/// Starts a UDP echo server on a host (socat), for `udp_echo`.
#[must_use = "the server stops when the job is dropped"]
pub fn start_udp_echo(lab: &Lab, on: &str, port: u16) -> Job {
    let log = lab.dir.join("logs").join(format!("udp-echo-{on}.log"));
    let job = lab
        .host(on)
        .netns
        .spawn(
            "socat",
            &[&format!("UDP6-RECVFROM:{port},fork,reuseaddr"), "PIPE"],
            &log,
        )
        .map(Job)
        .expect("starting socat");
    for _ in 0..50 {
        let listening = lab
            .host(on)
            .netns
            .exec("ss", &["-Hlnu", "sport", "=", &format!(":{port}")]);
        if listening.map(|o| !o.trim().is_empty()).unwrap_or(false) {
            return job;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the UDP echo server on {on} did not start");
}

/// The value of one sample of a metric in the text format, 0 if absent.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// `sensorctl --json ARGS` parsed. Incident documents (from `incidents`,
/// `incident` and the triage steps) are checked against the published
/// schema, docs/alert.schema.json.
pub fn sensorctl_json(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let out = lab
        .sensorctl(&full)
        .unwrap_or_else(|e| panic!("sensorctl {args:?} failed: {e:#}"));
    let value: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("sensorctl {args:?} printed no JSON ({e}): {out}"));
    match args.first().copied() {
        Some("incidents") => value
            .as_array()
            .unwrap()
            .iter()
            .for_each(super::schema::check),
        Some("incident" | "ack" | "note" | "close" | "reopen") => super::schema::check(&value),
        Some("fleet") if args.get(1) == Some(&"incidents") => value
            .as_array()
            .unwrap()
            .iter()
            .for_each(super::schema::check),
        _ => {}
    }
    value
}

/// The alerts sensord wrote to its alert file, each checked against the
/// published schema.
pub fn alerts(lab: &Lab) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(lab.dir.join("alerts.jsonl")).unwrap_or_default();
    text.lines()
        .map(|line| {
            let doc: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("an alert line is not JSON ({e}): {line}"));
            super::schema::check(&doc);
            doc
        })
        .collect()
}

/// Runs a shell script in a host's namespace in the background (killed with
/// the lab's namespaces); its output goes to logs/NAME.log.
pub fn background(lab: &Lab, on: &str, name: &str, script: &str) -> Job {
    let log = lab.dir.join("logs").join(format!("{name}.log"));
    Job(lab
        .host(on)
        .netns
        .spawn("sh", &["-c", script], &log)
        .unwrap_or_else(|e| panic!("starting {name} on {on}: {e:#}")))
}

/// A program started in a host's namespace, in a process group of its
/// own: the whole group is killed, and reaped, when the job is dropped
/// (also on a failed assertion), so nothing outlives its test.
pub struct Job(std::process::Child);

impl Job {
    /// A job of a child started in a process group of its own
    /// (`Netns::spawn`).
    pub fn new(child: std::process::Child) -> Job {
        Job(child)
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group the job was started in.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Runs a shell script in a host's namespace and waits for it.
pub fn run(lab: &Lab, on: &str, script: &str) -> String {
    let out = lab
        .host(on)
        .netns
        .command("sh")
        .args(["-c", script])
        .output()
        .expect("running sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The targets of a `sensorctl list --json` answer, in order.
pub fn targets(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["target"].as_str().map(String::from))
        .collect()
}

/// Hosts sensord has isolated (targets of isolation entries).
pub fn isolated(lab: &Lab) -> Vec<String> {
    sensorctl_json(lab, &["list"])
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "isolation")
        .filter_map(|e| {
            e["target"]
                .as_str()
                .map(|t| t.trim_end_matches("/32").to_string())
        })
        .collect()
}

/// Waits up to `secs` for `done`; returns how long it took, or None.
pub fn wait_for(secs: u64, mut done: impl FnMut() -> bool) -> Option<std::time::Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(secs) {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    None
}

/// The incidents about `host`: each document's `sensor.incident` (id,
/// detectors, evidence, actions, ...).
pub fn incidents_of(lab: &Lab, host: &str) -> Vec<serde_json::Value> {
    sensorctl_json(lab, &["incidents", "--host", host])
        .as_array()
        .into_iter()
        .flatten()
        .map(|doc| doc["sensor"]["incident"].clone())
        .collect()
}

/// One incident's `sensor.incident`.
pub fn incident(lab: &Lab, id: &serde_json::Value) -> serde_json::Value {
    sensorctl_json(lab, &["incident", &id.to_string()])["sensor"]["incident"].clone()
}

/// The name the traffic gave `peer`, in an incident's `names`.
pub fn name_of(incident: &serde_json::Value, peer: &str) -> Option<String> {
    incident["names"]
        .as_array()?
        .iter()
        .find(|n| n["peer"] == peer)
        .and_then(|n| n["name"].as_str().map(String::from))
}

/// Starts sshd (password authentication on, no account to log in to) on a
/// host, listening on port 22.
#[must_use = "sshd stops when the job is dropped"]
pub fn start_sshd(lab: &Lab, on: &str) -> Job {
    let dir = lab.dir.join(format!("sshd-{on}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let key = dir.join("host_key");
    let config = dir.join("sshd_config");
    if !key.exists() {
        lab.gateway
            .exec(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-f",
                    &key.to_string_lossy(),
                ],
            )
            .expect("ssh-keygen");
    }
    std::fs::write(
        &config,
        format!(
            "Port 22\nHostKey {}\nPidFile {}\nPasswordAuthentication yes\n\
             UsePAM no\nStrictModes no\nMaxStartups 100\nLogLevel ERROR\n",
            key.display(),
            dir.join("sshd.pid").display()
        ),
    )
    .unwrap();
    let log = lab.dir.join("logs").join(format!("sshd-{on}.log"));
    let job = lab
        .host(on)
        .netns
        .spawn(
            "/usr/sbin/sshd",
            &["-D", "-e", "-f", &config.to_string_lossy()],
            &log,
        )
        .map(Job)
        .expect("starting sshd");
    wait_listening(lab, on, 22, "sshd");
    job
}

/// Waits up to 10 s for a TCP listener on `port` in a host; fails the
/// test naming `what` if none comes.
pub fn wait_listening(lab: &Lab, on: &str, port: u16, what: &str) {
    let listening = wait_for(10, || {
        lab.host(on)
            .netns
            .exec("ss", &["-Hlnt", "sport", "=", &format!(":{port}")])
            .map(|o| !o.trim().is_empty())
            .unwrap_or(false)
    });
    assert!(listening.is_some(), "{what} on {on} did not start");
}

/// Ordinary office traffic from a host, forever: web pages and DNS look-ups
/// at irregular intervals, a 4 MB download now and then, NTP-style polls.
pub fn benign_traffic(lab: &Lab, on: &str) -> Job {
    let script = "i=0; while true; do i=$((i+1)); \
        curl -s -o /dev/null -m 3 http://203.0.113.80/; \
        dig +short +time=1 +tries=1 @203.0.113.53 web.lab >/dev/null; \
        dig +short +time=1 +tries=1 @203.0.113.53 office$((i % 3 + 1)).lab >/dev/null; \
        echo ntp | socat -T1 - UDP4:203.0.113.53:123 >/dev/null 2>&1; \
        [ $((i % 4)) -eq 0 ] && curl -s -o /dev/null -m 10 http://203.0.113.80/big.bin; \
        sleep $(awk -v r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ') 'BEGIN{printf \"%.2f\", 0.2 + (r % 300) / 100}'); \
        done";
    background(lab, on, &format!("benign-{on}"), script)
}

/// The detectors of every incident about `host`.
pub fn detectors(lab: &Lab, host: &str) -> Vec<String> {
    incidents_of(lab, host)
        .iter()
        .flat_map(|i| i["detectors"].as_array().cloned().unwrap_or_default())
        .filter_map(|d| d.as_str().map(String::from))
        .collect()
}

/// Fails the test unless `host` is isolated within `secs`.
pub fn assert_isolated_within(lab: &Lab, host: &str, secs: u64, what: &str) {
    let took = wait_for(secs, || isolated(lab).iter().any(|h| h == host));
    assert!(
        took.is_some(),
        "{what}: {host} was not isolated within {secs}s; incidents: {:?}; sensord log:\n{}",
        incidents_of(lab, host),
        std::fs::read_to_string(lab.sensord_log()).unwrap_or_default()
    );
}

/// A response policy for the lab's tests: isolate on any clear detection
/// (score 70 and more) for ten minutes.
pub const ISOLATE_POLICY: &str = r#"
[response]
[[response.rule]]
detectors = ["*"]
min_score = 70
action = "isolate"
ttl = "10m"
"#;
