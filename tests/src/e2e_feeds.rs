//! Threat feeds as operators subscribe to them: a feed published over HTTP
//! (a real server in the lab's internet, answering conditional requests as
//! publishers do) is fetched on its schedule, applied as a diff, kept
//! across restarts and an outage of its publisher, retired and resumed with
//! one command each; and a million-range feed is loaded and retired within
//! the targets (under 5 s, under 64 B of sensord's memory per range).

use std::{path::Path, time::Instant};

use crate::support::lab::{self, metric, ping, wait_for, Job};

/// The feed's publisher: a Python HTTP server on the lab's web host that
/// serves `dir`'s files with an ETag (a hash of the content) and a
/// Last-Modified, answers If-None-Match and If-Modified-Since with 304 as
/// RFC 9110 says (If-None-Match wins when both are sent), and logs each
/// request with its validators and answer.
fn publisher(lab: &labnet::Lab, dir: &Path) -> Job {
    let script = format!(
        r#"
import email.utils, hashlib, http.server, os
DIR = {dir:?}
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = os.path.join(DIR, os.path.basename(self.path))
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        try:
            body = open(path, "rb").read()
        except OSError:
            code, body = 404, b""
        else:
            etag = '"%s"' % hashlib.sha256(body).hexdigest()[:16]
            mtime = int(os.stat(path).st_mtime)
            if inm is not None:
                code = 304 if inm == etag else 200
            elif ims is not None:
                since = email.utils.parsedate_to_datetime(ims).timestamp()
                code = 304 if mtime <= since else 200
            else:
                code = 200
        with open(os.path.join(DIR, "requests.log"), "a") as log:
            log.write("%s inm=%s ims=%s -> %d\n" % (self.path, inm, ims, code))
        self.send_response(code)
        if code != 404:
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", email.utils.formatdate(mtime, usegmt=True))
        if code == 200:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if code == 200:
            self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("0.0.0.0", 8081), H).serve_forever()
"#,
        dir = dir.display().to_string()
    );
    let job = Job::new(
        lab.host("web")
            .netns
            .spawn(
                "/usr/bin/python3",
                &["-c", &script],
                &lab.dir.join("logs/publisher.log"),
            )
            .unwrap(),
    );
    lab::wait_listening(lab, "web", 8081, "the feed publisher");
    job
}

fn feeds(lab: &labnet::Lab) -> serde_json::Value {
    lab::sensorctl_json(lab, &["feeds"])[0].clone()
}

/// Whether a ping from office1 to `addr` is dropped at the gateway as a
/// blocked destination (for addresses no lab host answers).
fn dropped_to(lab: &labnet::Lab, addr: &str) -> bool {
    let drops = || {
        metric(
            &lab.metrics().unwrap(),
            "sensor_packets_total",
            &[("verdict", "drop"), ("reason", "blocked_destination")],
        )
    };
    let before = drops();
    ping(lab, "office1", addr);
    drops() > before
}

fn requests(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("requests.log"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

const FEED: &str = r#"
[[feed]]
name = "drop"
url = "http://203.0.113.80:8081/drop.txt"
refresh = "2s"
"#;

#[test]
fn an_http_feed_is_fetched_conditionally_applied_as_a_diff_kept_and_retired() {
    let lab = lab::start("feed", FEED);
    let site = lab.dir.join("publisher");
    std::fs::create_dir_all(&site).unwrap();
    // The publisher is not up yet: the refresh fails, is said, and nothing
    // is blocked.
    assert!(
        wait_for(10, || feeds(&lab)["error"].is_string()).is_some(),
        "{}",
        feeds(&lab)
    );
    assert!(ping(&lab, "office1", "203.0.113.66"));
    // Spamhaus DROP's layout, with a range overlapping the inside.
    std::fs::write(
        site.join("drop.txt"),
        "; Spamhaus DROP List - lab copy\n203.0.113.66/32 ; SBL1\n198.51.100.0/24 ; SBL2\n10.10.0.0/24 ; SBL3\n",
    )
    .unwrap();
    let _publisher = publisher(&lab, &site);
    assert!(
        wait_for(40, || feeds(&lab)["entries"] == 2).is_some(),
        "{}",
        feeds(&lab)
    );
    let status = feeds(&lab);
    assert_eq!(status["error"], serde_json::Value::Null, "{status}");
    assert_eq!(status["skipped"]["count"], 1, "the inside range: {status}");
    assert!(!ping(&lab, "office1", "203.0.113.66"), "the C&C is blocked");
    assert!(ping(&lab, "office1", "203.0.113.53"));
    // Each later refresh asks with the copy's validators and gets a 304.
    assert!(
        wait_for(15, || requests(&site)
            .iter()
            .filter(|r| r.ends_with("-> 304"))
            .count()
            >= 2)
        .is_some(),
        "{:?}",
        requests(&site)
    );
    let conditional = requests(&site);
    assert!(
        conditional
            .iter()
            .filter(|r| r.ends_with("-> 304"))
            .all(|r| r.contains("inm=\"") && !r.contains("ims=None")),
        "{conditional:?}"
    );
    let text = lab.metrics().unwrap();
    let m = |name: &str, labels: &[(&str, &str)]| metric(&text, name, labels);
    assert_eq!(m("sensor_feed_entries", &[("feed", "drop")]), 2);
    assert_eq!(m("sensor_feed_skipped_entries", &[("feed", "drop")]), 1);
    assert!(
        m(
            "sensor_feed_refreshes_total",
            &[("feed", "drop"), ("result", "failed")]
        ) >= 1
    );
    assert!(
        m(
            "sensor_feed_refreshes_total",
            &[("feed", "drop"), ("result", "unchanged")]
        ) >= 2
    );
    assert_eq!(
        m(
            "sensor_feed_refreshes_total",
            &[("feed", "drop"), ("result", "updated")]
        ),
        1
    );
    assert!(
        m(
            "sensor_feed_last_success_timestamp_seconds",
            &[("feed", "drop")]
        ) > 1_700_000_000
    );

    // A new version: the C&C leaves the list, 192.0.2.0/24 joins it (and
    // the resolver, which is exempt, so skipped). A refresh asked for now
    // applies it; only the change touches the maps.
    std::fs::write(
        site.join("drop.txt"),
        "; Spamhaus DROP List - lab copy\n198.51.100.0/24 ; SBL2\n192.0.2.0/24 ; SBL4\n203.0.113.53/32 ; SBL5\n",
    )
    .unwrap();
    assert!(!dropped_to(&lab, "192.0.2.1"));
    lab.sensorctl(&["feeds", "refresh", "drop"]).unwrap();
    let status = feeds(&lab);
    assert_eq!(status["entries"], 2, "{status}");
    assert_eq!(
        status["skipped"]["count"], 1,
        "the exempt resolver: {status}"
    );
    assert!(
        ping(&lab, "office1", "203.0.113.66"),
        "lifted with the new version"
    );
    assert!(
        dropped_to(&lab, "192.0.2.1"),
        "blocked with the new version"
    );
    assert!(ping(&lab, "office1", "203.0.113.53"));
    let listed = lab::sensorctl_json(&lab, &["list", "--feed", "drop"]);
    assert_eq!(lab::targets(&listed), ["192.0.2.0/24", "198.51.100.0/24"]);
    assert_eq!(listed[0]["origin"], "feed:drop");
    // Feed ranges are not records: the state file does not hold them, and
    // an operator's unblock says whose they are.
    let state = std::fs::read_to_string(lab.state_file()).unwrap();
    assert!(!state.contains("192.0.2.0"), "{state}");
    let refused = lab.sensorctl(&["unblock", "192.0.2.0/24"]).unwrap_err();
    assert!(
        format!("{refused:#}").contains("blocked by feed drop"),
        "{refused:#}"
    );

    // sensord restarts while the publisher is down: the cached copy is
    // enforced at once, and the failed refresh leaves it in force.
    drop(_publisher);
    lab.stop_sensord(libc::SIGTERM).unwrap();
    lab.start_sensord().unwrap();
    assert!(dropped_to(&lab, "192.0.2.1"), "the copy is enforced");
    assert!(wait_for(10, || feeds(&lab)["error"].is_string()).is_some());
    assert_eq!(feeds(&lab)["entries"], 2);
    assert!(
        dropped_to(&lab, "192.0.2.1"),
        "a failed refresh changes nothing"
    );

    // Retired with one command: lifted at once, and still retired after a
    // restart; resumed with another.
    let out = lab.sensorctl(&["feeds", "retire", "drop"]).unwrap();
    assert!(out.contains("2 entries out of force"), "{out}");
    assert!(!dropped_to(&lab, "192.0.2.1"));
    lab.stop_sensord(libc::SIGTERM).unwrap();
    lab.start_sensord().unwrap();
    assert_eq!(feeds(&lab)["retired"], true);
    assert!(!dropped_to(&lab, "192.0.2.1"), "still retired");
    let audit = lab::sensorctl_json(&lab, &["audit"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "feed_retire"
                && r["actor"].as_str().unwrap().starts_with("root")),
        "{audit}"
    );
    let _publisher = publisher(&lab, &site);
    lab.sensorctl(&["feeds", "resume", "drop"]).unwrap();
    assert_eq!(feeds(&lab)["entries"], 2);
    assert!(dropped_to(&lab, "192.0.2.1"));

    // Removed from the configuration: retired and forgotten at the reload.
    std::fs::write(lab.config_path(), lab.sensord_config("")).unwrap();
    lab.sensorctl(&["reload"]).unwrap();
    assert!(!dropped_to(&lab, "192.0.2.1"));
    assert_eq!(lab::sensorctl_json(&lab, &["feeds"]), serde_json::json!([]));
}

/// sensord's resident memory, from /proc.
fn sensord_rss_kib(lab: &labnet::Lab) -> u64 {
    let pid = std::fs::read_to_string(lab.dir.join("sensord.pid")).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Ranges of the large feed: shaped like a real one (mostly single hosts,
/// some /24s, a few wider), spread over the public IPv4 space.
const LARGE: usize = 1_000_000;

#[test]
fn a_million_range_feed_loads_and_retires_within_the_targets() {
    let lab = lab::start("bigfeed", "");
    let ranges =
        crate::bench::load::distinct_feed_ranges(&mut crate::bench::load::Rng(0xfeed), LARGE);
    let text: String = ranges.iter().map(|n| format!("{n}\n")).collect();
    let file = lab.dir.join("big-feed.txt");
    std::fs::write(&file, text).unwrap();
    // Settled memory before: what the lab's traffic so far made sensord
    // allocate is part of the baseline.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let before = sensord_rss_kib(&lab);
    let config = lab.sensord_config(&format!(
        "[[feed]]\nname = \"big\"\nfile = {:?}\nrefresh = \"1h\"\n",
        file.display().to_string()
    ));
    std::fs::write(lab.config_path(), config).unwrap();
    let started = Instant::now();
    lab.sensorctl(&["reload"]).unwrap();
    let loaded = wait_for(60, || feeds(&lab)["entries"] == LARGE);
    let load_secs = started.elapsed().as_secs_f64();
    assert!(loaded.is_some(), "{}", feeds(&lab));
    // The copy is written and the memory handed back after the apply.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let after = sensord_rss_kib(&lab);
    let per_range = (after.saturating_sub(before) * 1024) as f64 / LARGE as f64;
    let status = lab::sensorctl_json(&lab, &["status"]);
    let state_bytes = std::fs::metadata(lab.state_file()).unwrap().len();
    eprintln!(
        "1M-range feed: loaded in {load_secs:.2} s; sensord {before} KiB -> {after} KiB ({per_range:.1} B per range); state file {state_bytes} B; {}",
        status["entries"]
    );
    assert_eq!(status["entries"]["feed_ranges"], LARGE);
    assert!(load_secs < 5.0, "loaded in {load_secs:.2} s");
    assert!(per_range < 64.0, "{per_range:.1} B per range");
    assert!(state_bytes < 4096, "the state file holds no feed range");
    // Enforced: a packet to a listed host is dropped at the gateway.
    let listed = ranges.iter().find(|n| n.prefix_len() == 32).unwrap().addr();
    assert!(
        dropped_to(&lab, &listed.to_string()),
        "a packet to {listed} is dropped"
    );
    let listed_json = lab.sensorctl(&["--json", "list", "--feed", "big"]).unwrap();
    let listed_count = serde_json::from_str::<serde_json::Value>(&listed_json)
        .unwrap()
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listed_count, LARGE);

    let started = Instant::now();
    let out = lab.sensorctl(&["feeds", "retire", "big"]).unwrap();
    let retire_secs = started.elapsed().as_secs_f64();
    eprintln!("retired in {retire_secs:.2} s: {out}");
    let log = std::fs::read_to_string(lab.sensord_log()).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("feed big")) {
        eprintln!("{line}");
    }
    assert!(
        out.contains(&format!("{LARGE} entries out of force")),
        "{out}"
    );
    assert!(retire_secs < 5.0, "retired in {retire_secs:.2} s");
    assert_eq!(
        lab::sensorctl_json(&lab, &["status"])["entries"]["feed_ranges"],
        0
    );
    let text = lab.metrics().unwrap();
    assert_eq!(
        metric(&text, "sensor_map_entries", &[("map", "blocked_v4")]),
        0
    );
    assert!(
        !dropped_to(&lab, &listed.to_string()),
        "lifted with the feed"
    );
}
