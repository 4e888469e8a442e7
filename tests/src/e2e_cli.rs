//! sensorctl's errors and exit codes, against a real daemon and without one.

use std::process::Command;

use crate::support::{bin_dir, lab};

fn sensorctl(socket: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin_dir().join("sensorctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("running sensorctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One request line straight to the control socket; the reply line.
fn raw_request(socket: &std::path::Path, line: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    writeln!(stream, "{line}").unwrap();
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).unwrap();
    reply
}

#[test]
fn check_config_catches_what_a_start_would_refuse() {
    let dir = std::env::temp_dir().join(crate::support::unique_name("checkcfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let check = |text: &str| {
        let path = dir.join("sensord.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(bin_dir().join("sensord"))
            .arg("--config")
            .arg(&path)
            .arg("--check-config")
            .output()
            .expect("running sensord");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let state = dir.join("state.json");
    let (ok, err) = check(&format!(
        "interfaces = [\"lo\", \"nosuch0\"]\nstate_file = {state:?}\n"
    ));
    assert!(!ok && err.contains("no interface \"nosuch0\""), "{err}");
    let (ok, err) = check(&format!(
        "state_file = {state:?}\n[detection.intel]\nfiles = [\"/nonexistent/list.txt\"]\n"
    ));
    assert!(!ok && err.contains("detection.intel.files"), "{err}");
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let (ok, err) = check(&format!("state_file = {:?}\n", file.join("state.json")));
    assert!(
        !ok && err.contains("state_file") && err.contains("not a directory"),
        "{err}"
    );
    let (ok, err) = check(&format!(
        "state_file = {state:?}\n[detection.scan]\nports = 0\n"
    ));
    assert!(!ok && err.contains("detection.scan.ports"), "{err}");
    let (ok, err) = check(&format!("interfaces = [\"lo\"]\nstate_file = {state:?}\n"));
    assert!(ok, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn versions_name_their_program_and_completions_are_printed() {
    for program in ["sensord", "sensorctl"] {
        let out = Command::new(bin_dir().join(program))
            .arg("--version")
            .output()
            .expect("running --version");
        let text = String::from_utf8_lossy(&out.stdout);
        let expected = format!("{program} {}", env!("CARGO_PKG_VERSION"));
        assert!(text.starts_with(&expected), "{text}");
    }
    let nowhere = std::path::Path::new("/run/no-such-sensord.sock");
    let (code, script, _) = sensorctl(nowhere, &["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(script.contains("complete -F"), "{script}");
    assert!(script.contains("isolate"), "{script}");
    let (code, _, err) = sensorctl(nowhere, &["completions", "tcsh"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn no_daemon_is_a_clear_error_with_its_own_exit_code() {
    let (code, _, err) = sensorctl(
        std::path::Path::new("/run/no-such-sensord.sock"),
        &["status"],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("sensord is not running"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    // The same from a command that adds context of its own.
    let feed = std::env::temp_dir().join(crate::support::unique_name("feed.txt"));
    std::fs::write(&feed, "198.51.100.0/24\n").unwrap();
    let (code, _, err) = sensorctl(
        std::path::Path::new("/run/no-such-sensord.sock"),
        &["block", "--file", &feed.to_string_lossy()],
    );
    let _ = std::fs::remove_file(&feed);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("sensord is not running"), "{err}");
}

#[test]
fn bad_input_and_unknown_entries_are_refused() {
    let lab = lab::start("cli", "");
    let socket = lab.control_socket();
    let (code, _, err) = sensorctl(&socket, &["isolate", "10.0.0.300"]);
    assert_eq!(code, 2, "usage error: {err}");
    // A range with host bits is refused as it is read (the rule every
    // list follows), before the daemon is asked.
    let (code, _, err) = sensorctl(&socket, &["block", "10.1.2.3/8"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean 10.0.0.0/8"), "{err}");
    let (code, _, err) = sensorctl(&socket, &["release", "10.10.0.99"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not isolated"), "{err}");
    let (code, _, err) = sensorctl(&socket, &["isolate", "224.0.0.1"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = sensorctl(&socket, &["isolate", "10.10.0.11", "--ttl", "soon"]);
    assert_eq!(code, 2, "{err}");
    // TTLs past ten years: refused, not overflowed into "isolated" with
    // nothing enforced, nor a panic.
    for ttl in ["18446744073709551615s", "99999999d"] {
        let (code, _, err) = sensorctl(&socket, &["isolate", "10.10.0.11", "--ttl", ttl]);
        assert_eq!(code, 2, "{ttl}: {err}");
        assert!(err.contains("ten years"), "{ttl}: {err}");
    }
    // The same straight on the socket, past sensorctl's checks.
    let reply = raw_request(
        &socket,
        r#"{"command":"isolate","ip":"10.10.0.11","ttl_secs":18446744073709551615}"#,
    );
    assert!(reply.contains("ten years"), "{reply}");
    let reply = raw_request(&socket, r#"{"command":"block","cidr":"10.1.2.3/8"}"#);
    assert!(reply.contains("did you mean 10.0.0.0/8"), "{reply}");
    // Nothing was changed by the refused requests.
    let (code, out, _) = sensorctl(&socket, &["--json", "list"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "[]");
    // The socket is root-only.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn json_output_of_every_command_parses() {
    let lab = lab::start("json", "");
    let socket = lab.control_socket();
    for args in [
        vec!["isolate", "10.10.0.12", "--ttl", "1h", "--reason", "x"],
        vec!["block", "198.51.100.0/24"],
        vec!["status"],
        vec!["list"],
        vec!["stats"],
        vec!["unblock", "198.51.100.0/24"],
        vec!["release", "10.10.0.12"],
    ] {
        let mut full = vec!["--json"];
        full.extend(&args);
        let (code, out, err) = sensorctl(&socket, &full);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
    }
}

/// A threat feed loaded with `block --file`: a file with a bad line is
/// refused whole, naming the line; a good one blocks every range in it
/// (traffic to the listed web server stops) and lists them with the reason.
#[test]
fn a_feed_file_is_checked_whole_then_blocked() {
    let lab = lab::start("feed", "");
    let socket = lab.control_socket();
    let web = lab.host("web").ipv4.to_string();
    let url = format!("http://{web}/");
    assert!(lab::http(&lab, "office1", &url), "web reachable first");

    let dir = std::env::temp_dir().join(format!("sensor-feed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, format!("{web}\n203.0.113.0/24\n198.51.100.9/24\n")).unwrap();
    let (code, _, err) = sensorctl(&socket, &["block", "--file", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("line 3: \"198.51.100.9/24\" has host bits set"),
        "{err}"
    );
    let (_, out, _) = sensorctl(&socket, &["--json", "list"]);
    assert_eq!(out.trim(), "[]", "nothing blocked from a bad file");
    assert!(lab::http(&lab, "office1", &url));

    let good = dir.join("feed.txt");
    let mut feed = format!("# test feed\n{web}\n203.0.113.0/24\n");
    for i in 0..2000 {
        feed.push_str(&format!("100.{}.{}.0/24\n", 64 + i / 256, i % 256));
    }
    std::fs::write(&good, feed).unwrap();
    let (code, out, err) = sensorctl(
        &socket,
        &[
            "--json",
            "block",
            "--file",
            good.to_str().unwrap(),
            "--reason",
            "intel feed",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["blocked"], 2002);
    assert!(
        !lab::http(&lab, "office1", &url),
        "the listed server is cut off"
    );
    let (_, out, _) = sensorctl(&socket, &["--json", "list"]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(list.len(), 2002);
    assert!(list.iter().all(|e| e["reason"] == "intel feed"));
    let _ = std::fs::remove_dir_all(&dir);
}
