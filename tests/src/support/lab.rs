//! The built-in lab, brought up per test with a unique name, and the probes
//! the tests run from its hosts with real tools.

use labnet::{Lab, LabOptions};

use super::{bin_dir, unique_name};

/// A lab with sensord running; everything is removed when it is dropped.
pub fn start(tag: &str, extra_config: &str) -> Lab {
    let lab = Lab::create(&LabOptions {
        prefix: unique_name(tag),
        extra_config: extra_config.into(),
        bin_dir: bin_dir(),
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
pub fn start_udp_echo(lab: &Lab, on: &str, port: u16) {
    let log = lab.dir.join("logs").join(format!("udp-echo-{on}.log"));
    lab.host(on)
        .netns
        .spawn(
            "socat",
            &[&format!("UDP6-RECVFROM:{port},fork,reuseaddr"), "PIPE"],
            &log,
        )
        .expect("starting socat");
    for _ in 0..50 {
        let listening = lab
            .host(on)
            .netns
            .exec("ss", &["-Hlnu", "sport", "=", &format!(":{port}")]);
        if listening.map(|o| !o.trim().is_empty()).unwrap_or(false) {
            return;
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

/// `sensorctl --json ARGS` parsed.
pub fn sensorctl_json(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let out = lab
        .sensorctl(&full)
        .unwrap_or_else(|e| panic!("sensorctl {args:?} failed: {e:#}"));
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("sensorctl {args:?} printed no JSON ({e}): {out}"))
}
