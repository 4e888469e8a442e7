//! Incidents persist and are triaged: they survive a restart with their
//! ids and their operators' steps; every operator and automatic action goes
//! into the audit log; the SOC's read-only socket lets its members look,
//! never act.

use std::process::Command;

use crate::support::{
    lab::{self, assert_isolated_within, http, incidents_of, run, sensorctl_json},
    unique_name,
};

/// A system group and a user in it, for the test's life (removed even when
/// the test fails).
struct SocUser {
    group: String,
    user: String,
}

impl SocUser {
    fn new() -> SocUser {
        // Group and user names are at most 32 characters.
        let group = unique_name("soc");
        let user = format!("{group}u");
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        assert!(ok(Command::new("groupadd").args(["--system", &group])));
        let soc = SocUser { group, user };
        assert!(ok(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "-G",
            &soc.group,
            &soc.user
        ])));
        soc
    }

    /// sensorctl run as this user: (exit code, stdout, stderr).
    fn sensorctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new("runuser")
            .args(["-u", &self.user, "--"])
            .arg(crate::support::bin_dir().join("sensorctl"))
            .args(args)
            .output()
            .expect("runuser runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }
}

impl Drop for SocUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.user).status();
        let _ = Command::new("groupdel").arg(&self.group).status();
    }
}

fn actions_of(incident: &serde_json::Value) -> Vec<String> {
    incident["sensor"]["incident"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{} {}",
                t["action"].as_str().unwrap(),
                t["detail"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn incidents_survive_a_restart_with_their_triage_and_the_audit_log_names_who() {
    let soc = SocUser::new();
    let readonly = std::env::temp_dir().join(format!("{}.sock", soc.group));
    let lab = lab::start(
        "triage",
        &format!(
            "readonly_group = {:?}\nreadonly_socket = {:?}\n{}",
            soc.group,
            readonly,
            lab::ISOLATE_POLICY
        ),
    );
    assert!(
        http(&lab, "office1", "http://203.0.113.80/"),
        "office1 browses"
    );
    run(
        &lab,
        "office1",
        "nmap -sS -n -Pn -p 1-200 --max-retries 1 10.20.0.21",
    );
    assert_isolated_within(&lab, "10.10.0.11", 10, "nmap -sS");
    let id = incidents_of(&lab, "10.10.0.11")[0]["id"].as_u64().unwrap();
    let id_text = id.to_string();
    lab.sensorctl(&["ack", &id_text, "--note", "calling the user"])
        .unwrap();
    lab.sensorctl(&["note", &id_text, "user ran a port scanner"])
        .unwrap();

    // A restart keeps the incident, its id, its triage and its timeline.
    let before = sensorctl_json(&lab, &["incident", &id_text]);
    lab.stop_sensord(libc::SIGTERM).unwrap();
    lab.start_sensord().unwrap();
    let after = sensorctl_json(&lab, &["incident", &id_text]);
    let (before_i, after_i) = (&before["sensor"]["incident"], &after["sensor"]["incident"]);
    assert_eq!(after_i["triage"], "acknowledged", "{after}");
    assert_eq!(after_i["detectors"], before_i["detectors"]);
    assert_eq!(after_i["uid"], before_i["uid"]);
    assert_eq!(actions_of(&after), actions_of(&before));
    let actions = actions_of(&after);
    assert!(
        actions.iter().any(|a| a.starts_with("isolate rule 0")),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| a == "note root (uid 0): user ran a port scanner"),
        "{actions:?}"
    );

    // New incidents after the restart take new ids.
    assert!(
        http(&lab, "office2", "http://203.0.113.80/"),
        "office2 browses"
    );
    run(
        &lab,
        "office2",
        "nmap -sS -n -Pn -p 1-200 --max-retries 1 10.20.0.21",
    );
    assert_isolated_within(&lab, "10.10.0.12", 10, "nmap -sS after the restart");
    let second = incidents_of(&lab, "10.10.0.12")[0]["id"].as_u64().unwrap();
    assert!(
        second > id,
        "ids go on after a restart: {second} after {id}"
    );

    // Close and reopen; the triage filter finds it.
    lab.sensorctl(&["close", &id_text, "--reason", "scanner removed"])
        .unwrap();
    let closed = sensorctl_json(&lab, &["incidents", "--triage", "closed"]);
    let closed: Vec<u64> = closed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sensor"]["incident"]["id"].as_u64().unwrap())
        .collect();
    assert_eq!(closed, vec![id]);
    let again = lab.sensorctl(&["close", &id_text]).unwrap_err().to_string();
    assert!(again.contains("already closed"), "{again}");
    lab.sensorctl(&["reopen", &id_text]).unwrap();

    // The audit log: the automatic isolations, then the operator's steps.
    let audit = sensorctl_json(&lab, &["audit"]);
    let records: Vec<(String, String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap().to_string();
            (
                field("actor"),
                field("action"),
                field("target"),
                field("outcome"),
            )
        })
        .collect();
    let has = |actor: &str, action: &str, target: &str| {
        records
            .iter()
            .any(|r| r.0.starts_with(actor) && r.1 == action && r.2 == target && r.3 == "ok")
    };
    let incident = format!("incident {id}");
    assert!(has("auto:scan", "isolate", "10.10.0.11"), "{records:?}");
    assert!(has("auto:scan", "isolate", "10.10.0.12"), "{records:?}");
    for step in ["acknowledge", "note", "close", "reopen"] {
        assert!(has("root (uid 0)", step, &incident), "{step}: {records:?}");
    }
    assert!(
        records
            .iter()
            .any(|r| r.1 == "close" && r.3.contains("already closed")),
        "a refused step is audited with its error: {records:?}"
    );

    // Each change went out as an alert, valid against the schema, with
    // the incident's uid and the gateway named.
    let alerts: Vec<_> = lab::alerts(&lab)
        .into_iter()
        .filter(|a| a["sensor"]["incident"]["id"] == id)
        .collect();
    let steps: Vec<&str> = alerts
        .iter()
        .filter_map(|a| a["sensor"]["action"]["action"].as_str())
        .collect();
    for step in ["isolate", "acknowledge", "note", "close", "reopen"] {
        assert!(steps.contains(&step), "{step}: {steps:?}");
    }
    let uids: std::collections::BTreeSet<_> = alerts
        .iter()
        .map(|a| a["sensor"]["incident"]["uid"].to_string())
        .collect();
    assert_eq!(uids.len(), 1, "one uid per incident, restart or not");
    let ids: std::collections::BTreeSet<_> = alerts
        .iter()
        .map(|a| a["event"]["id"].to_string())
        .collect();
    assert_eq!(ids.len(), alerts.len(), "every alert has its own event.id");

    // The read-only socket: its group's members look, and cannot act.
    let socket = readonly.to_str().unwrap();
    let (code, out, err) = soc.sensorctl(&["--socket", socket, "--json", "incidents"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("\"id\":{id}")), "{out}");
    let (code, _, err) = soc.sensorctl(&["--socket", socket, "isolate", "10.10.0.13"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("read-only"), "{err}");
    let (code, _, err) = soc.sensorctl(&["--socket", socket, "close", &id_text]);
    assert_eq!(code, 1, "{err}");
    let control = lab.control_socket();
    let (code, _, err) = soc.sensorctl(&["--socket", control.to_str().unwrap(), "list"]);
    assert_eq!(code, 3, "the root socket refuses the group: {err}");
    assert!(lab::isolated(&lab).iter().all(|h| h != "10.10.0.13/32"));
}
