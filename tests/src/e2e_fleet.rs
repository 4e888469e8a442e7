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
//!   writing as another) or by every gateway (a trusted site gone bad);
//! - ten gateways: a fleet-wide block reaches all, a site decision stays
//!   on its site.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Operation;

use labnet::{
    fleet::{TEN_GATEWAYS, THREE_CITIES},
    Lab,
};
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

/// Waits until `lab`'s gateway has read the fleet's decisions: until it
/// is connected, `fleet status` says so and fails.
fn wait_synced(lab: &Lab) {
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

/// Every gateway's report in `lab`'s `fleet status`, once all `count`
/// report and have read the bucket's latest revision.
fn wait_all_report(fleet: &Fleet, lab: &Lab, count: usize) {
    let mut status = Value::Null;
    let settled = wait_for(NODE_LOSS_SECS, || {
        status = lab
            .sensorctl(&["--json", "fleet", "status"])
            .ok()
            .and_then(|out| serde_json::from_str(&out).ok())
            .unwrap_or_default();
        let gateways = status["gateways"].as_array().cloned().unwrap_or_default();
        gateways.len() == count && gateways.iter().all(|g| g["lag"] == 0)
    });
    assert!(settled.is_some(), "{status}\n{}", explain(fleet));
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
        wait_synced(lab);
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

    // A block of a site's own range means something there only: it stays
    // on its gateway by default, and a wider scope is refused.
    let own = "10.10.0.128/25";
    let wider = a.sensorctl(&["block", own, "--scope", "site"]);
    let message = format!("{wider:?}");
    assert!(message.contains("never shared"), "{message}");
    a.sensorctl(&["block", own, "--reason", "quarantine range"])
        .unwrap();
    let mine = wait_for(5, || {
        fleet_list(a)["decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["target"] == own && d["scope"] == "gateway" && d["in_force_here"] == true)
    });
    assert!(mine.is_some(), "{}", fleet_list(a));
    std::thread::sleep(Duration::from_secs(1));
    // (Shared, it would have been refused there: it overlaps their inside
    // too. Keys spell a target with `_` for `.`.)
    let own_token = own.replace('.', "_");
    for lab in [b, c] {
        let list = fleet_list(lab);
        assert!(!blocks(lab, own), "{} took a's own range", lab.prefix);
        assert!(
            !list["refused"].to_string().contains(&own_token),
            "{} was asked to take a's own range: {list}",
            lab.prefix
        );
    }
    a.sensorctl(&["unblock", own]).unwrap();

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
    eprintln!("with nats1 killed, a block reached a and b after {flowed:?}");

    // The servers speak TLS only: a client that does not trust their CA
    // (here, a password thief in the cloud) is not connected.
    let mut untrusting = fleet_lab::client(&fleet, "city-b", "city-b");
    untrusting.tls_ca_file = None;
    let plain = in_netns(fleet.cloud.switch.name(), None, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(runtime
            .block_on(FleetClient::connect(&untrusting, "untrusting"))
            .err()
            .map(|e| e.to_string()))
    })
    .unwrap();
    assert!(plain.is_some(), "a client without the fleet's CA connected");

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
    wait_all_report(&fleet, c, 3);
    let metrics = b.metrics().unwrap();
    assert!(
        metrics.contains("sensor_fleet{figure=\"connected\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_prefecture_s_block_reaches_nine_towns_and_a_town_s_isolation_stays_home() {
    // Ten real gateways, each with its own datapath and lab, on one
    // three-node cluster: the prefecture's may decide for the fleet, the
    // towns for themselves. The prefecture fetches a block list and shares
    // it; the towns take it from the fleet.
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("drop.txt");
    std::fs::write(&list, "# the SOC's list\n198.51.100.0/24\n10.10.0.0/24\n").unwrap();
    let fleet = fleet_lab::start_with("fx", &TEN_GATEWAYS, |site| match site.fleet_wide {
        true => format!(
            "[[feed]]\nname = \"drop\"\nfile = {:?}\nrefresh = \"1s\"\nshare = \"fleet\"\n",
            list.display()
        ),
        false => "[[feed]]\nname = \"drop\"\nshared_by = \"pref\"\nrefresh = \"1s\"\n".into(),
    });
    for site in &fleet.sites {
        wait_synced(&site.lab);
    }
    let pref = fleet.site("pref");
    let towns: Vec<&Lab> = fleet.sites[1..].iter().map(|s| &s.lab).collect();
    assert!(
        ping(towns[4], "office1", C2),
        "the C&C answers before any block"
    );

    // A C&C blocked by the prefecture: in force at all nine towns.
    let target = format!("{C2}/32");
    let asked = Instant::now();
    pref.sensorctl(&["block", C2, "--reason", "C&C seen by the SOC"])
        .unwrap();
    let everywhere = wait_for(10, || towns.iter().all(|lab| blocks(lab, &target)));
    let took = asked.elapsed();
    assert!(
        everywhere.is_some(),
        "the block did not reach every town:\n{}",
        explain(&fleet)
    );
    eprintln!("block in force at 9 other gateways after {took:?}");
    for lab in &towns {
        assert!(
            !ping(lab, "office1", C2),
            "{} still reaches the C&C",
            lab.prefix
        );
    }

    // A town's isolation stays in that town; the others hear of it.
    let town3 = fleet.site("town-3");
    town3
        .sensorctl(&["isolate", "10.10.0.12", "--reason", "ransomware note"])
        .unwrap();
    let heard = wait_for(10, || {
        fleet_list(pref)["decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["target"] == "10.10.0.12/32" && d["site"] == "town-3")
    });
    assert!(heard.is_some(), "the prefecture never heard of it");
    assert!(isolated(town3).iter().any(|h| h == "10.10.0.12"));
    for site in fleet.sites.iter().filter(|s| s.name != "town-3") {
        assert!(
            !isolated(&site.lab).iter().any(|h| h == "10.10.0.12"),
            "{} isolated town-3's host",
            site.name
        );
    }
    // A block with a time limit expires everywhere, and the prefecture's
    // gateway then tidies its key out of the bucket (a purge, not a
    // release).
    pref.sensorctl(&[
        "block",
        "192.0.2.0/24",
        "--ttl",
        "4s",
        "--reason",
        "for a moment",
    ])
    .unwrap();
    let arrived = wait_for(3, || towns.iter().all(|lab| blocks(lab, "192.0.2.0/24")));
    assert!(
        arrived.is_some(),
        "the timed block did not reach every town"
    );
    let expired = wait_for(20, || towns.iter().all(|lab| !blocks(lab, "192.0.2.0/24")));
    assert!(expired.is_some(), "a town kept the expired block");
    let tidied = wait_for(20, || {
        as_client(&fleet, "soc", "soc", |client| {
            Box::pin(async move {
                let buckets = client.buckets().await.unwrap();
                let entry = buckets
                    .decisions
                    .entry("fleet.pref.block.192_0_2_0/24")
                    .await;
                matches!(entry, Ok(Some(e)) if e.operation == Operation::Purge)
            })
        })
    });
    assert!(
        tidied.is_some(),
        "the expired decision stayed in the bucket"
    );

    // A town may not decide for the fleet.
    let refused = towns[0].sensorctl(&["block", "198.51.100.0/24", "--scope", "fleet"]);
    assert!(format!("{refused:?}").contains("does not publish fleet"));

    // The prefecture lifts its block: lifted everywhere.
    pref.sensorctl(&["unblock", C2]).unwrap();
    let lifted = wait_for(10, || towns.iter().all(|lab| !blocks(lab, &target)));
    assert!(lifted.is_some(), "a town kept the lifted block");
    for lab in &towns {
        assert!(
            ping(lab, "office1", C2),
            "{} cannot reach it again",
            lab.prefix
        );
    }

    // The shared list: in force at every town, less what overlaps its
    // inside (each gateway's own checks).
    let feed_of = |lab: &Lab| -> Value {
        sensorctl_json(lab, &["feeds"])
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["name"] == "drop")
            .cloned()
            .unwrap_or_default()
    };
    let taken = wait_for(20, || {
        towns
            .iter()
            .all(|lab| feed_of(lab)["entries"] == 1 && blocks_by_feed(lab, "198.51.100.0/24"))
    });
    assert!(
        taken.is_some(),
        "the shared list did not reach every town: {}\n{}",
        feed_of(towns[8]),
        explain(&fleet)
    );
    assert_eq!(
        feed_of(towns[0])["skipped"]["count"],
        1,
        "{}",
        feed_of(towns[0])
    );
    // A new version, with the C&C: every town drops it.
    std::fs::write(&list, "198.51.100.0/24\n10.10.0.0/24\n203.0.113.66\n").unwrap();
    let updated = wait_for(20, || towns.iter().all(|lab| feed_of(lab)["entries"] == 2));
    assert!(
        updated.is_some(),
        "the new version did not reach every town"
    );
    for lab in &towns {
        assert!(
            !ping(lab, "office1", C2),
            "{} ignores the shared list",
            lab.prefix
        );
    }
    // A town's credentials cannot share for the prefecture.
    let forged = as_client(&fleet, "town-1", "town-1", |client| {
        Box::pin(async move {
            client
                .share_feed("sensor.feeds.fleet.pref.drop", "gw1", b"0.0.0.0/1\n")
                .await
                .is_err()
        })
    });
    assert!(forged, "the servers let a town share as the prefecture");
    assert!(feed_of(towns[3])["entries"] == 2);

    // Every gateway reports, and has read the latest revision.
    wait_all_report(&fleet, pref, 10);
}

/// Whether `lab`'s datapath drops `range` for a feed.
fn blocks_by_feed(lab: &Lab, range: &str) -> bool {
    sensorctl_json(lab, &["list", "--feed", "drop"])
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["target"] == range && e["in_datapath"] == true)
}
