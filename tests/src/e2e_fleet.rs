//! Fleet mode with real servers: three sites, each a lab with its own
//! gateway, sharing decisions through a three-node NATS JetStream cluster
//! (Debian's nats-server) with one NATS user per site whose permissions
//! are docs/fleet.md's.
//!
//! - a block decided at one site drops traffic at the others;
//! - a gateway cut off keeps enforcing; what it decides meanwhile is
//!   published when its link returns, and what was released elsewhere
//!   meanwhile is not revived;
//! - killing one server changes nothing;
//! - forged and dangerous decisions are refused: by the servers (a site
//!   writing as another) or by every gateway (a trusted site gone bad).

use std::time::{Duration, Instant};

use labnet::{fleet::THREE_CITIES, Lab};
use sensor_user::fleet::{
    client::FleetClient,
    decision::{Decision, Key},
    Scope,
};
use serde_json::Value;

use crate::{
    bench::netns::in_netns,
    support::{
        fleet::{self as fleet_lab, Fleet},
        lab::{background, http, isolated, ping, sensorctl_json, wait_for},
    },
};

const C2: &str = "203.0.113.66";

/// How long decisions may take to flow again after a server is killed.
/// Enforcement never waits; propagation does, while the servers place the
/// gateways' watches again: nats-server 2.9 may first place a new watch on
/// the dead server, and that request times out (5 s) until the cluster
/// marks it offline. Seen in the tests: up to about 20 s.
const NODE_LOSS_SECS: u64 = 60;

/// Whether `lab`'s gateway has a block of exactly `target` in force.
fn blocks(lab: &Lab, target: &str) -> bool {
    sensorctl_json(lab, &["list", "--kind", "block"])
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["target"] == target)
}

/// Each site's fleet log lines and what its gateway has read, for a
/// failure's message.
fn explain(fleet: &Fleet) -> String {
    let mut out = String::new();
    for site in &fleet.sites {
        let log = std::fs::read_to_string(site.lab.sensord_log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("fleet")).collect();
        let list = site
            .lab
            .sensorctl(&["--json", "fleet", "list"])
            .unwrap_or_default();
        out.push_str(&format!("== {}\n{}\n{list}\n", site.name, lines.join("\n")));
    }
    for node in 1..=3 {
        let log = fleet.cloud.dir.join("logs").join(format!("nats{node}.log"));
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        out.push_str(&format!(
            "== nats{node}\n{}\n",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    out
}

fn fleet_list(lab: &Lab) -> Value {
    sensorctl_json(lab, &["fleet", "list"])
}

/// Runs `f` with a NATS client of its own inside the cloud (as `user`
/// with `site`'s [fleet] table): what a forger holding those credentials
/// can do.
fn as_client<T: Send + 'static>(
    fleet: &Fleet,
    user: &str,
    site: &str,
    f: impl FnOnce(FleetClient) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>
        + Send
        + 'static,
) -> T {
    let config = fleet_lab::client(fleet, user, site);
    in_netns(fleet.cloud.switch.name(), None, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let client = FleetClient::connect(&config, "forger").await?;
            Ok(f(client).await)
        })
    })
    .unwrap()
}

fn forged(target: &str, site: &str, scope: Scope) -> Decision {
    Decision {
        kind: sensor_user::state::Kind::Block,
        target: target.parse().unwrap(),
        scope,
        site: site.into(),
        gateway: "gw1".into(),
        origin: "operator".into(),
        reason: "forged".into(),
        created: sensor_user::clock::unix_now(),
        expires: None,
        incident: None,
    }
}

#[test]
fn a_fleet_shares_blocks_survives_partitions_and_node_loss_and_refuses_forgeries() {
    let fleet = fleet_lab::start("fl", &THREE_CITIES, "");
    let (a, b, c) = (
        fleet.site("city-a"),
        fleet.site("city-b"),
        fleet.site("city-c"),
    );
    for lab in [a, b, c] {
        // Until it is connected, `fleet status` says so and fails.
        let synced = wait_for(30, || {
            lab.sensorctl(&["--json", "fleet", "status"])
                .ok()
                .and_then(|out| serde_json::from_str::<Value>(&out).ok())
                .is_some_and(|s| s["this_gateway"]["synced"] == true)
        });
        assert!(
            synced.is_some(),
            "{} never read the fleet: {}",
            lab.prefix,
            std::fs::read_to_string(lab.sensord_log()).unwrap_or_default()
        );
    }
    assert!(ping(b, "office1", C2), "the C&C answers before any block");

    // 1. A C&C blocked at city-a (fleet-wide, the default for a block of a
    // site that may) is dropped at city-b and city-c within a second.
    let asked = Instant::now();
    a.sensorctl(&["block", C2, "--reason", "C&C of incident 4"])
        .unwrap();
    let seen = wait_for(5, || {
        blocks(b, &format!("{C2}/32")) && blocks(c, &format!("{C2}/32"))
    });
    let took = asked.elapsed();
    assert!(seen.is_some(), "the block did not reach b and c");
    assert!(took < Duration::from_secs(1), "propagation took {took:?}");
    assert!(!ping(b, "office1", C2), "city-b still reaches the C&C");
    let listed = fleet_list(c);
    let decision = listed["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["target"] == format!("{C2}/32"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(decision["site"], "city-a");
    assert_eq!(decision["scope"], "fleet");
    assert_eq!(decision["in_force_here"], true);

    // A site that may not decide for the fleet is told so, and nothing
    // changes anywhere.
    let refused = b.sensorctl(&["block", "198.51.100.0/24", "--scope", "fleet"]);
    let message = format!("{refused:?}");
    assert!(message.contains("does not publish fleet"), "{message}");

    // 2. city-b is cut off. Meanwhile city-a lifts the C&C block and blocks
    // another range, and city-b's operator isolates a host (site scope).
    let nb = fleet.number("city-b");
    fleet.cloud.cut(nb).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    a.sensorctl(&["unblock", C2]).unwrap();
    a.sensorctl(&["block", "198.51.100.0/24", "--reason", "second C&C"])
        .unwrap();
    b.sensorctl(&["isolate", "10.10.0.12", "--reason", "found offline"])
        .unwrap();
    assert!(
        wait_for(5, || !blocks(c, &format!("{C2}/32"))).is_some(),
        "c did not lift the block"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        blocks(b, &format!("{C2}/32")),
        "cut off, b keeps enforcing what it had"
    );
    assert!(
        !blocks(b, "198.51.100.0/24"),
        "b cannot have heard of the new block"
    );

    // The link returns: b applies what it missed, publishes what it
    // decided, and does not revive the lifted block.
    fleet.cloud.restore(nb).unwrap();
    let converged = wait_for(20, || {
        !blocks(b, &format!("{C2}/32")) && blocks(b, "198.51.100.0/24")
    });
    assert!(converged.is_some(), "b did not catch up: {}", fleet_list(b));
    let published = wait_for(20, || {
        fleet_list(a)["decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| {
                d["target"] == "10.10.0.12/32" && d["site"] == "city-b" && d["scope"] == "site"
            })
    });
    assert!(
        published.is_some(),
        "b's offline decision never reached the fleet"
    );
    // Site scope: city-a and city-c do not isolate city-b's host.
    assert!(!sensorctl_json(a, &["list", "--kind", "isolation"])
        .to_string()
        .contains("10.10.0.12"));
    for lab in [a, b, c] {
        assert!(
            !blocks(lab, &format!("{C2}/32")),
            "{} revived the lifted block",
            lab.prefix
        );
    }

    // 3. One server killed: decisions still flow.
    let mut fleet = fleet;
    fleet.cloud.kill_node(0).unwrap();
    let (a, b, c) = (
        fleet.site("city-a"),
        fleet.site("city-b"),
        fleet.site("city-c"),
    );
    c.sensorctl(&["block", "192.0.2.0/24", "--reason", "while nats1 is down"])
        .unwrap();
    let flowed = wait_for(NODE_LOSS_SECS, || {
        blocks(a, "192.0.2.0/24") && blocks(b, "192.0.2.0/24")
    });
    assert!(
        flowed.is_some(),
        "with a server down, the block did not reach a and b:\n{}",
        explain(&fleet)
    );

    // 4. Forgeries. city-b's credentials cannot write as city-a, nor
    // fleet-wide: the servers refuse, nothing arrives.
    let results = as_client(&fleet, "city-b", "city-b", |client| {
        Box::pin(async move {
            let buckets = client.buckets().await.unwrap();
            let as_a = buckets
                .put(&forged("198.18.0.0/24", "city-a", Scope::Fleet))
                .await;
            let fleet_wide = buckets
                .put(&forged("198.18.1.0/24", "city-b", Scope::Fleet))
                .await;
            (as_a.is_err(), fleet_wide.is_err())
        })
    });
    assert_eq!(
        results,
        (true, true),
        "the servers let city-b write as others"
    );
    // city-a gone bad (it may write fleet-wide): a block of half the
    // internet, one of the inside, and one claiming to be city-c's are
    // refused by every gateway.
    let wrote = as_client(&fleet, "city-a", "city-a", |client| {
        Box::pin(async move {
            let buckets = client.buckets().await.unwrap();
            let mut ok = 0;
            for d in [
                forged("0.0.0.0/1", "city-a", Scope::Fleet),
                forged("10.0.0.0/8", "city-a", Scope::Fleet),
            ] {
                ok += buckets.put(&d).await.is_ok() as u32;
            }
            // A value saying city-c under city-a's own key.
            let key = Key {
                site: "city-a".into(),
                ..forged("198.18.2.0/24", "city-c", Scope::Fleet).key()
            };
            let value =
                serde_json::to_vec(&forged("198.18.2.0/24", "city-c", Scope::Fleet)).unwrap();
            ok += buckets
                .decisions
                .put(key.text(), value.into())
                .await
                .is_ok() as u32;
            ok
        })
    });
    assert_eq!(wrote, 3, "city-a may write its own fleet-wide keys");
    let refused = wait_for(NODE_LOSS_SECS, || {
        [a, b, c].iter().all(|lab| {
            fleet_list(lab)["refused"]
                .as_array()
                .is_some_and(|r| r.len() >= 3)
        })
    });
    assert!(
        refused.is_some(),
        "not every gateway refused the three:\n{}",
        explain(&fleet)
    );
    for lab in [a, b, c] {
        for target in ["0.0.0.0/1", "10.0.0.0/8", "198.18.2.0/24"] {
            assert!(!blocks(lab, target), "{} applied {target}", lab.prefix);
        }
        assert!(
            ping(lab, "office1", "203.0.113.80"),
            "{} lost the internet",
            lab.prefix
        );
    }

    // 5. Incidents: a scan at city-a is caught and isolated there (site
    // scope: nowhere else), and its incident reaches the fleet's stream,
    // seen from city-c with its site and gateway; every document matches
    // the alert schema (`sensorctl_json`).
    assert!(
        http(a, "office3", "http://203.0.113.80/"),
        "office3 proves its address"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let scan = background(a, "office3", "scan", "nmap -sS -n -Pn -p 1-3000 10.20.0.21");
    let caught = wait_for(20, || isolated(a).iter().any(|h| h == "10.10.0.13"));
    drop(scan);
    assert!(caught.is_some(), "city-a did not isolate the scanner");
    // (A read may time out while the servers elect new stream leaders
    // after the loss of nats1: it is asked again.)
    let reached = wait_for(NODE_LOSS_SECS, || {
        let Ok(out) = c.sensorctl(&["--json", "fleet", "incidents"]) else {
            return false;
        };
        let docs: Vec<Value> = serde_json::from_str(&out).unwrap_or_default();
        docs.iter().for_each(crate::support::schema::check);
        docs.iter()
            .any(|d| d["sensor"]["fleet"]["site"] == "city-a" && d["source"]["ip"] == "10.10.0.13")
    });
    assert!(
        reached.is_some(),
        "city-a's incident never reached the fleet's stream"
    );
    assert!(
        !isolated(c).iter().any(|h| h == "10.10.0.13"),
        "a site isolation left its site"
    );

    // 6. The fleet's view: every gateway reports, and has read the
    // bucket's latest revision.
    let mut status = Value::Null;
    let settled = wait_for(NODE_LOSS_SECS, || {
        status = c
            .sensorctl(&["--json", "fleet", "status"])
            .ok()
            .and_then(|out| serde_json::from_str(&out).ok())
            .unwrap_or_default();
        let gateways = status["gateways"].as_array().cloned().unwrap_or_default();
        gateways.len() == 3 && gateways.iter().all(|g| g["lag"] == 0)
    });
    assert!(settled.is_some(), "{status}\n{}", explain(&fleet));
    let metrics = b.metrics().unwrap();
    assert!(
        metrics.contains("sensor_fleet{figure=\"connected\"} 1"),
        "{metrics}"
    );
}
