//! The monitoring pack (packaging/monitoring/) against a real Prometheus:
//! promtool checks the rules and runs their unit tests; a Prometheus
//! server in the lab scrapes sensord (in a one-site fleet) while the lab
//! is attacked, and every dashboard query, every recorded series and every
//! metric an alert watches has data.

use std::{path::Path, process::Command};

use serde_json::Value;

use crate::support::{
    fleet::{self, SiteSpec},
    lab::{self, assert_isolated_within, http, ping, run, wait_for},
};

fn pack() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/monitoring"
    ))
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(pack())
        .output()
        .expect("promtool (Debian's prometheus, which cargo xtask setup installs)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The rules file as JSON (PyYAML reads it).
fn rules() -> Value {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(pack().join("sensor-rules.yml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The metric names an expression reads (sensor_*, process_*, up).
fn metric_names(expr: &str) -> Vec<String> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let bytes = expr.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && word(bytes[i]) {
            i += 1;
        }
        let token = &expr[start..i];
        let metric = token.starts_with("sensor_") || token.starts_with("process_") || token == "up";
        // A label name or a function is followed by '=' or '('.
        let next = bytes.get(i).copied();
        if metric && next != Some(b'(') && next != Some(b'=') {
            names.push(token.to_string());
        }
        if i == start {
            i += 1;
        }
    }
    names
}

#[test]
fn the_rules_pass_promtool_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", "sensor-rules.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "sensor-rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has a unit test.
    let tests = std::fs::read_to_string(pack().join("sensor-rules.test.yml")).unwrap();
    let rules = rules();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            if let Some(alert) = rule["alert"].as_str() {
                let tested = tests.contains(&format!("alertname: {alert}\n"));
                let long = matches!(alert, "SensorAdoptedEntries" | "SensorMonitorModeForLong");
                assert!(tested || long, "{alert} has no unit test");
            }
        }
    }
}

#[test]
fn prometheus_scrapes_sensord_and_every_dashboard_query_has_data() {
    // A feed, and a gateway in a (one-site) fleet, so their series have
    // data too.
    let feed = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(feed.path(), "198.51.100.0/24\n").unwrap();
    let site = SiteSpec {
        name: "city-a",
        fleet_wide: true,
    };
    let fleet = fleet::start_with("prom", &[site], |_| {
        format!(
            "{}\n[[feed]]\nname = \"local\"\nfile = {:?}\n",
            lab::ISOLATE_POLICY,
            feed.path().display().to_string()
        )
    });
    let lab = &fleet.sites[0].lab;
    let dir = lab.dir.join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files: [{:?}]\n\
         scrape_configs:\n  - job_name: sensor\n    static_configs:\n      - targets: [{:?}]\n",
        pack().join("sensor-rules.yml"),
        lab.metrics_address.to_string()
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let listen = "127.0.0.1:19090";
    let mut prometheus = lab
        .gateway
        .spawn(
            "prometheus",
            &[
                &format!("--config.file={}", dir.join("prometheus.yml").display()),
                &format!("--storage.tsdb.path={}", dir.join("data").display()),
                &format!("--web.listen-address={listen}"),
            ],
            &lab.dir.join("logs/prometheus.log"),
        )
        .unwrap();
    let query = |expr: &str| -> Value {
        let out = lab
            .gateway
            .exec(
                "curl",
                &[
                    "-s",
                    "-m",
                    "5",
                    "--data-urlencode",
                    &format!("query={expr}"),
                    &format!("http://{listen}/api/v1/query"),
                ],
            )
            .unwrap_or_default();
        serde_json::from_str(&out).unwrap_or(Value::Null)
    };
    let has_data = |expr: &str| {
        let answer = query(expr);
        answer["status"] == "success"
            && answer["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
    };
    assert!(
        wait_for(30, || has_data("up{job=\"sensor\"} == 1")).is_some(),
        "Prometheus never scraped sensord:\n{}",
        std::fs::read_to_string(lab.dir.join("logs/prometheus.log")).unwrap_or_default()
    );

    // What the panels show: an attack isolated, a separated segment
    // probed, ordinary browsing.
    assert!(http(lab, "office1", "http://203.0.113.80/"));
    run(
        lab,
        "office1",
        "nmap -sS -n -Pn -p 1-200 --max-retries 1 10.20.0.21",
    );
    assert_isolated_within(lab, "10.10.0.11", 10, "nmap -sS");
    assert!(!ping(lab, "web", "10.20.0.21"), "records is separated");
    assert!(http(lab, "office2", "http://203.0.113.80/"));

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(pack().join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 15, "{exprs:?}");
    let rules = rules();
    let mut watched: Vec<String> = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            match rule["record"].as_str() {
                Some(record) => exprs.push(record.to_string()),
                None => watched.extend(metric_names(rule["expr"].as_str().unwrap())),
            }
        }
    }
    watched.sort();
    watched.dedup();
    for name in &watched {
        exprs.push(if name == "up" {
            "up{job=\"sensor\"}".into()
        } else {
            name.clone()
        });
    }
    let mut empty: Vec<String> = Vec::new();
    for expr in &exprs {
        if wait_for(30, || has_data(expr)).is_none() {
            empty.push(format!("{expr}: {}", query(expr)));
        }
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );
}
