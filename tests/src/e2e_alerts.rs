//! Alerts reach a SIEM whole: a signed webhook across a receiver outage
//! and a restart of sensord loses none, and syslog delivers RFC 5424
//! messages over UDP, TCP and TLS to a real collector (rsyslog). Every
//! alert is valid against the published schema.

use std::{collections::BTreeSet, path::Path, process::Command};

use crate::support::{
    lab::{self, assert_isolated_within, http, metric, run, wait_for},
    schema,
};

const SECRET: &str = "lab-webhook-key-0123456789";

/// The webhook receiver: a Python HTTP server in the gateway's namespace
/// that checks each POST's signature and appends "ok BODY" or "bad BODY"
/// to `out`.
fn webhook_receiver(lab: &labnet::Lab, out: &Path) -> std::process::Child {
    let script = format!(
        r#"
import hashlib, hmac, http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        want = "sha256=" + hmac.new({SECRET:?}.encode(), body, hashlib.sha256).hexdigest()
        good = hmac.compare_digest(want, self.headers.get("X-Sensor-Signature-256", ""))
        good = good and self.headers.get("Authorization") == "Bearer lab"
        with open({out:?}, "a") as f:
            f.write(("ok " if good else "bad ") + body.decode() + "\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", 8099), H).serve_forever()
"#,
        out = out.display().to_string()
    );
    lab.gateway
        .spawn(
            "/usr/bin/python3",
            &["-c", &script],
            &lab.dir.join("logs/webhook.log"),
        )
        .unwrap()
}

fn scan(lab: &labnet::Lab, host: &str, address: &str) {
    assert!(http(lab, host, "http://203.0.113.80/"), "{host} browses");
    run(
        lab,
        host,
        "nmap -sS -n -Pn -p 1-200 --max-retries 1 10.20.0.21",
    );
    assert_isolated_within(lab, address, 10, "a scan");
}

fn event_ids(docs: &[serde_json::Value]) -> BTreeSet<String> {
    docs.iter()
        .map(|d| d["event"]["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_signed_webhook_gets_every_alert_across_an_outage_and_a_restart() {
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), SECRET).unwrap();
    let key = key_file.path();
    let config = format!(
        "{}\n[alerts]\nobserver_name = \"city hall\"\nwebhook = \"http://127.0.0.1:8099/hook/T0K3N\"\n\
         webhook_secret_file = {key:?}\nwebhook_headers = {{ Authorization = \"Bearer lab\" }}\n",
        lab::ISOLATE_POLICY
    );
    let lab = lab::start("hook", &config);
    // The receiver is down: alerts wait in the spool.
    scan(&lab, "office1", "10.10.0.11");
    let waiting = || {
        metric(
            &lab.metrics().unwrap(),
            "sensor_alerts_waiting",
            &[("sink", "webhook")],
        )
    };
    assert!(wait_for(10, || waiting() > 0).is_some());
    assert!(
        wait_for(10, || metric(
            &lab.metrics().unwrap(),
            "sensor_alerts_total",
            &[("sink", "webhook"), ("result", "retried")]
        ) > 0)
        .is_some(),
        "sends were tried and failed"
    );
    let log = std::fs::read_to_string(lab.dir.join("logs/sensord.log")).unwrap_or_default();
    assert!(
        !log.contains("T0K3N"),
        "the URL's token is never logged:\n{log}"
    );
    assert!(!log.contains(SECRET));

    // sensord restarts meanwhile; then the receiver comes back.
    lab.stop_sensord(libc::SIGTERM).unwrap();
    lab.start_sensord().unwrap();
    scan(&lab, "office2", "10.10.0.12");
    let received = lab.dir.join("webhook.out");
    let mut receiver = webhook_receiver(&lab, &received);
    let sent = lab::alerts(&lab);
    assert!(sent.len() >= 2, "{sent:?}");
    let got = || -> Vec<String> {
        std::fs::read_to_string(&received)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    };
    let all_in = wait_for(60, || got().len() >= sent.len());
    let _ = receiver.kill();
    let _ = receiver.wait();
    let lines = got();
    assert!(
        all_in.is_some(),
        "{} of {} alerts arrived",
        lines.len(),
        sent.len()
    );
    let mut docs = Vec::new();
    for line in &lines {
        let body = line
            .strip_prefix("ok ")
            .unwrap_or_else(|| panic!("a bad signature or header: {line}"));
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        schema::check(&doc);
        assert_eq!(doc["observer"]["name"], "city hall");
        docs.push(doc);
    }
    assert_eq!(event_ids(&docs), event_ids(&sent), "every alert, once");
    assert_eq!(docs.len(), sent.len(), "none twice");
}

/// A CA and a certificate for "syslog.lab", made with openssl.
fn certificates(dir: &Path) {
    let sh = |script: &str| {
        let status = Command::new("sh")
            .args(["-c", script])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=lab-ca");
    sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=syslog.lab");
    sh("printf 'subjectAltName=DNS:syslog.lab\\n' > san.ext && \
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out server.pem -days 2 -extfile san.ext");
}

/// rsyslog in the gateway's namespace: UDP 5514, TCP 5515, TLS 6514, each
/// message written as PRI|APP-NAME|MSGID|HOSTNAME|MSG to `out`.
fn collector(lab: &labnet::Lab, dir: &Path, out: &Path) -> std::process::Child {
    let d = dir.display();
    let conf = format!(
        r#"
global(workDirectory="{d}" maxMessageSize="64k"
       defaultNetstreamDriverCAFile="{d}/ca.pem"
       defaultNetstreamDriverCertFile="{d}/server.pem"
       defaultNetstreamDriverKeyFile="{d}/server.key")
module(load="imudp")
module(load="imtcp" maxSessions="10")
template(name="fields" type="string" string="%pri%|%app-name%|%msgid%|%hostname%|%msg%\n")
ruleset(name="out") {{ action(type="omfile" file="{out}" template="fields") }}
input(type="imudp" address="127.0.0.1" port="5514" ruleset="out")
input(type="imtcp" address="127.0.0.1" port="5515" ruleset="out")
input(type="imtcp" address="127.0.0.1" port="6514" ruleset="out"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")
"#,
        out = out.display()
    );
    let path = dir.join("rsyslog.conf");
    std::fs::write(&path, conf).unwrap();
    let child = lab
        .gateway
        .spawn(
            "rsyslogd",
            &[
                "-n",
                "-f",
                path.to_str().unwrap(),
                "-i",
                dir.join("rsyslog.pid").to_str().unwrap(),
            ],
            &lab.dir.join("logs/rsyslog.log"),
        )
        .unwrap();
    for port in [5515, 6514] {
        let listening = wait_for(10, || {
            lab.gateway
                .exec("ss", &["-Hltn", &format!("sport = :{port}")])
                .is_ok_and(|o| !o.trim().is_empty())
        });
        assert!(listening.is_some(), "rsyslog listens on {port}");
    }
    child
}

#[test]
fn syslog_delivers_rfc_5424_over_udp_tcp_and_tls() {
    let lab = lab::start("syslog", lab::ISOLATE_POLICY);
    let dir = lab.dir.join("syslog");
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let out = dir.join("received.log");
    let mut rsyslog = collector(&lab, &dir, &out);
    let transports = [
        ("udp", "127.0.0.1:5514", "office1", "10.10.0.11"),
        ("tcp", "127.0.0.1:5515", "office2", "10.10.0.12"),
        ("tls", "127.0.0.1:6514", "office3", "10.10.0.13"),
    ];
    for (transport, address, host, ip) in transports {
        lab.stop_sensord(libc::SIGTERM).unwrap();
        let extra = format!(
            "{}\n[alerts.syslog]\naddress = {address:?}\ntransport = {transport:?}\n\
             ca_file = {:?}\nserver_name = \"syslog.lab\"\nfacility = \"local0\"\n",
            lab::ISOLATE_POLICY,
            dir.join("ca.pem")
        );
        std::fs::write(lab.config_path(), lab.sensord_config(&extra)).unwrap();
        lab.start_sensord().unwrap();
        scan(&lab, host, ip);
        let arrived = wait_for(20, || {
            std::fs::read_to_string(&out)
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains(&format!("\"ip\":\"{ip}\"")))
        });
        assert!(
            arrived.is_some(),
            "{transport}: no alert about {ip} reached rsyslog:\n{}",
            std::fs::read_to_string(lab.dir.join("logs/rsyslog.log")).unwrap_or_default()
        );
    }
    let _ = rsyslog.kill();
    let _ = rsyslog.wait();
    let text = std::fs::read_to_string(&out).unwrap();
    for line in text.lines() {
        let fields: Vec<&str> = line.splitn(5, '|').collect();
        let [pri, app, msgid, hostname, msg] = fields[..] else {
            panic!("{line}");
        };
        // local0 (16) x 8 + critical (2), warning (4) or notice (5).
        assert!(["130", "132", "133"].contains(&pri), "{line}");
        assert_eq!(app, "sensord");
        assert!(msgid.starts_with("incident-"), "{line}");
        let doc: serde_json::Value = serde_json::from_str(msg.trim()).unwrap();
        schema::check(&doc);
        assert_eq!(doc["event"]["action"], msgid);
        assert_eq!(doc["observer"]["hostname"], hostname);
    }
}
