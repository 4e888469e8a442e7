//! `cargo xtask lab --fleet`: three municipalities, each with its own
//! gateway and segments, sharing a three-node NATS JetStream cluster in a
//! "shared cloud" namespace (docs/fleet.md). The story: a beacon found at
//! city A gets its C&C blocked at B and C within a second; city B's link
//! is cut and its operator acts meanwhile; the link returns and the fleet
//! converges; `sensorctl fleet incidents` shows all of it; a block list
//! fetched at city A is shared with B and C.

use std::{
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use labnet::{
    fleet::{FleetLab, THREE_CITIES},
    Lab,
};

use crate::{
    build,
    lab::{indent, reaches, spawn_beacon, Story, LAB_POLICY},
    setup,
    test::require_root,
};

/// The fleet lab's name: `sensor-fleet0-*` for the sites' namespaces,
/// `sensor-fleetc-*` for the cloud's.
const PREFIX: &str = "sensor-fleet";
const C2: &str = "203.0.113.66";

fn blocks(lab: &Lab, target: &str) -> bool {
    lab.sensorctl(&["--json", "list", "--kind", "block"])
        .is_ok_and(|l| l.contains(&format!("\"{target}\"")))
}

fn isolates(lab: &Lab, host: &str) -> bool {
    lab.sensorctl(&["--json", "list", "--kind", "isolation"])
        .is_ok_and(|l| l.contains(&format!("\"{host}/32\"")))
}

fn wait(secs: u64, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if done() {
            return Some(start.elapsed());
        }
        sleep(Duration::from_millis(50));
    }
    None
}

pub fn story() -> Result<()> {
    require_root("cargo xtask lab --fleet")?;
    setup::tools()?;
    let bin_dir = build::run(&build::Options::default())?;
    println!("building three municipalities and their shared cloud (three NATS servers)");
    // city-a fetches its SOC's block list and shares it; the others take it.
    let soc_list = std::path::PathBuf::from(format!("/run/{PREFIX}-soc-list.txt"));
    std::fs::write(&soc_list, "# the SOC's list\n198.51.100.0/24\n")?;
    let fleet = FleetLab::create_with(
        PREFIX,
        &THREE_CITIES,
        |site| {
            let feed = match site.name {
                "city-a" => format!("file = {:?}\nshare = \"fleet\"", soc_list.display()),
                _ => "shared_by = \"city-a\"".into(),
            };
            format!("{LAB_POLICY}\n[[feed]]\nname = \"soc-list\"\n{feed}\nrefresh = \"2s\"\n")
        },
        &bin_dir,
    )?;
    let (a, b, c) = (
        fleet.site("city-a"),
        fleet.site("city-b"),
        fleet.site("city-c"),
    );
    let mut s = Story::default();
    println!(
        "\nThe fleet: servers {} in the cloud namespaces {}-*; each city is a lab of its own \
         (gateway netns {}, {}, {}).",
        fleet.cloud.servers().join(", "),
        fleet.cloud.prefix,
        a.gateway.name(),
        b.gateway.name(),
        c.gateway.name()
    );
    s.say("Every gateway joins the fleet and reads its decisions.");
    let joined = wait(30, || {
        [a, b, c].iter().all(|lab| {
            lab.sensorctl(&["--json", "fleet", "status"])
                .is_ok_and(|t| t.contains("\"synced\":true"))
        })
    });
    s.expect_took(
        "city-a, city-b and city-c are in the fleet",
        joined,
        "after they started",
    );
    println!(
        "   $ sensorctl fleet status\n{}",
        indent(&c.sensorctl(&["fleet", "status"])?)
    );

    s.say(
        "city-a's office2 is infected: every second or so, with jitter, it calls its C&C \
         server. city-a's policy isolates it and blocks the C&C, for the whole fleet.",
    );
    s.expect(
        "city-a's office2 browses first",
        reaches(a, "office2", "http://203.0.113.80/"),
    );
    s.expect(
        "city-b's office1 reaches the C&C host before",
        reaches(b, "office1", "http://203.0.113.66:8080/"),
    );
    let beacon = spawn_beacon(
        a,
        "office2",
        "curl -s -o /dev/null -m 2 http://203.0.113.66:8080/beacon",
    )?;
    println!("   (a beacon is judged after 20 connections: about 20 seconds)");
    let blocked_at_a = wait(60, || blocks(a, &format!("{C2}/32")));
    drop(beacon);
    s.expect_took(
        "city-a blocked the C&C 203.0.113.66",
        blocked_at_a,
        "after beaconing began",
    );
    let everywhere = wait(5, || {
        blocks(b, &format!("{C2}/32")) && blocks(c, &format!("{C2}/32"))
    });
    s.expect(
        &format!(
            "city-b and city-c block it too, within {} ms of city-a's block being seen (sensorctl polled every 50 ms)",
            everywhere.map_or(0, |t| t.as_millis())
        ),
        everywhere.is_some_and(|t| t < Duration::from_secs(1)),
    );
    s.expect(
        "city-b's office1 -> the C&C is dropped",
        !reaches(b, "office1", "http://203.0.113.66:8080/"),
    );
    s.expect(
        "city-a's office2 is isolated (on its own site only)",
        isolates(a, "10.10.0.12") && !isolates(b, "10.10.0.12"),
    );
    println!(
        "   $ sensorctl fleet list  (at city-c)\n{}",
        indent(&c.sensorctl(&["fleet", "list"])?)
    );

    s.say("city-b's link to the cloud is cut. Its gateway keeps enforcing what it has.");
    let nb = fleet.number("city-b");
    fleet.cloud.cut(nb)?;
    sleep(Duration::from_secs(3));
    s.expect(
        "city-b still drops the C&C",
        !reaches(b, "office1", "http://203.0.113.66:8080/"),
    );
    s.say("Meanwhile city-b's operator isolates office3; city-a, done cleaning up, lifts the C&C block.");
    println!(
        "   city-b $ {}",
        b.sensorctl(&[
            "isolate",
            "10.10.0.13",
            "--reason",
            "lab: user reported ransom note"
        ])?
        .trim()
    );
    println!(
        "   city-a $ {}",
        a.sensorctl(&["unblock", "203.0.113.66/32"])?.trim()
    );
    s.expect(
        "city-c lifts the block",
        wait(5, || !blocks(c, &format!("{C2}/32"))).is_some(),
    );
    sleep(Duration::from_secs(1));
    s.expect(
        "cut off, city-b still blocks it (it cannot know)",
        blocks(b, &format!("{C2}/32")),
    );

    s.say("The link returns: city-b catches up and publishes what it decided.");
    fleet.cloud.restore(nb)?;
    let converged = wait(20, || !blocks(b, &format!("{C2}/32")));
    s.expect_took(
        "city-b lifts the block released elsewhere (not revived anywhere)",
        converged,
        "after the link returned",
    );
    let published = wait(20, || {
        a.sensorctl(&["--json", "fleet", "list"])
            .is_ok_and(|l| l.contains("\"10.10.0.13/32\"") && l.contains("city-b"))
    });
    s.expect_took(
        "city-b's offline isolation of office3 reached the fleet",
        published,
        "after the link returned",
    );
    s.expect(
        "no site revived the C&C block",
        [a, b, c]
            .iter()
            .all(|lab| !blocks(lab, &format!("{C2}/32"))),
    );
    println!(
        "   $ sensorctl fleet list  (at city-a)\n{}",
        indent(&a.sensorctl(&["fleet", "list"])?)
    );

    s.say("The SOC's view: every site's incidents, and every gateway.");
    let seen = wait(20, || {
        c.sensorctl(&["--json", "fleet", "incidents"])
            .is_ok_and(|t| t.contains("city-a"))
    });
    s.expect_took(
        "city-a's incident is in the fleet's incidents, seen from city-c",
        seen,
        "",
    );
    println!(
        "   $ sensorctl fleet incidents\n{}",
        indent(&c.sensorctl(&["fleet", "incidents"])?)
    );
    println!(
        "   $ sensorctl fleet status\n{}",
        indent(&c.sensorctl(&["fleet", "status"])?)
    );

    s.say(
        "city-a fetches its SOC's block list and shares it with the fleet: city-b and \
         city-c take each version from the cloud, never from the SOC.",
    );
    let feed_entries = |lab: &Lab| -> usize {
        lab.sensorctl(&["--json", "feeds"])
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.as_array()?.first()?["entries"].as_u64())
            .unwrap_or(0) as usize
    };
    s.expect(
        "city-b and city-c block the list's range",
        wait(20, || feed_entries(b) == 1 && feed_entries(c) == 1).is_some(),
    );
    std::fs::write(&soc_list, "198.51.100.0/24\n192.0.2.0/24\n")?;
    println!("   (the SOC adds 192.0.2.0/24 to its list)");
    let followed = wait(20, || feed_entries(b) == 2 && feed_entries(c) == 2);
    s.expect_took(
        "city-b and city-c apply the new version",
        followed,
        "after the list changed",
    );
    println!(
        "   $ sensorctl feeds  (at city-b)\n{}",
        indent(&b.sensorctl(&["feeds"])?)
    );

    println!("\nCleaning up the fleet lab.");
    for site in &fleet.sites {
        site.lab.stop_sensord(libc::SIGTERM)?;
    }
    drop(fleet);
    let _ = std::fs::remove_file(&soc_list);
    if s.failures > 0 {
        bail!(
            "{} step(s) of the fleet story did not behave as expected",
            s.failures
        );
    }
    println!("The fleet story held: every expectation was met.");
    Ok(())
}
