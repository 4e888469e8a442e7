//! incidents and incident ID: what live detection found and did.

use std::net::IpAddr;

use anyhow::Result;
use serde_json::Value;

use super::{table, Cli};
use crate::{control::Request, detect::incident::peer_label, store::IncidentFilter};

#[derive(clap::Args, Debug)]
pub struct Filter {
    /// Only incidents about this host.
    #[arg(long)]
    host: Option<IpAddr>,
    /// Only incidents scoring at least this (0-100).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    min_score: Option<u8>,
    /// open or closed.
    #[arg(long, value_parser = ["open", "closed"])]
    status: Option<String>,
    /// Only incidents with this detector ("scan.*" for every scan detector).
    #[arg(long)]
    detector: Option<String>,
    /// new, acknowledged or closed: where the operators' work stands.
    #[arg(long, value_parser = ["new", "acknowledged", "closed"])]
    triage: Option<String>,
    /// Only incidents with evidence this recent, e.g. 30m, 24h, 7d.
    #[arg(long, value_parser = super::parse_ttl)]
    since: Option<std::time::Duration>,
    /// At most this many incidents, the newest.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
}

use super::table::cell as text;

pub fn list(cli: &Cli, f: &Filter) -> Result<()> {
    let filter = IncidentFilter {
        host: f.host,
        min_score: f.min_score,
        status: f.status.clone(),
        detector: f.detector.clone(),
        triage: f.triage.clone(),
        since: f
            .since
            .map(|d| crate::clock::unix_now_ns().saturating_sub(d.as_nanos() as u64)),
        limit: Some(f.limit),
    };
    let incidents = cli.call(&Request::Incidents { filter })?;
    if cli.json {
        println!("{incidents}");
        return Ok(());
    }
    if incidents.as_array().is_some_and(|a| a.len() == f.limit) {
        eprintln!("the newest {} incidents (--limit N for more)", f.limit);
    }
    let rows: Vec<Vec<String>> = incidents
        .as_array()
        .into_iter()
        .flatten()
        .map(|doc| {
            let i = &doc["sensor"]["incident"];
            let mut status = format!("{}, {}", text(&i["status"]), text(&i["triage"]));
            if i["false_positive"] == true {
                status.push_str(" (false positive)");
            }
            let actions: Vec<String> = i["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| format!("{} {}", text(&a["action"]), text(&a["target"])))
                .collect();
            vec![
                text(&i["id"]),
                text(&doc["source"]["ip"]),
                format!("{} {}", text(&i["score"]), text(&i["severity"])),
                status,
                text(&doc["event"]["start"]),
                text(&doc["event"]["end"]),
                text(&i["detectors"]),
                actions.join(", "),
            ]
        })
        .collect();
    table::print_or(
        &[
            "ID",
            "HOST",
            "SCORE",
            "STATUS",
            "FIRST SEEN",
            "LAST SEEN",
            "DETECTORS",
            "ACTIONS",
        ],
        &rows,
        "no incidents",
    );
    Ok(())
}

/// An incident's evidence and actions, in time order (RFC 3339 times sort
/// as text).
fn timeline(i: &Value) -> Vec<&Value> {
    let list = |key: &str| i[key].as_array().into_iter().flatten();
    let mut all: Vec<&Value> = list("evidence").chain(list("actions")).collect();
    all.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
    all
}

pub fn show(cli: &Cli, id: u64) -> Result<()> {
    let doc = cli.call(&Request::Incident { id })?;
    if cli.json {
        println!("{doc}");
        return Ok(());
    }
    let i = &doc["sensor"]["incident"];
    println!(
        "incident {} on {}: score {} ({}), {}, triage {}{}",
        text(&i["id"]),
        text(&doc["source"]["ip"]),
        text(&i["score"]),
        text(&i["severity"]),
        text(&i["status"]),
        text(&i["triage"]),
        if i["false_positive"] == true {
            ", false positive"
        } else {
            ""
        }
    );
    println!(
        "  first seen {}, last seen {}",
        text(&doc["event"]["start"]),
        text(&doc["event"]["end"])
    );
    println!("  detectors  {}", text(&i["detectors"]));
    println!("  techniques {}", text(&i["techniques"]));
    let named = |p: &Value| {
        let peer = text(p);
        let name = i["names"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["peer"].as_str() == Some(peer.as_str()))
            .and_then(|n| n["name"].as_str());
        peer_label(&peer, name)
    };
    let peers: Vec<String> = i["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(named)
        .collect();
    println!("  peers      {}", peers.join(", "));
    println!("timeline:");
    for t in timeline(i) {
        if t.get("detector").is_some() {
            println!(
                "  {}  {:<20} score {:>3}  {}",
                text(&t["time"]),
                text(&t["detector"]),
                text(&t["score"]),
                text(&t["summary"])
            );
        } else {
            println!(
                "  {}  {:<20} {}  {}",
                text(&t["time"]),
                format!("action: {}", text(&t["action"])),
                text(&t["target"]),
                text(&t["detail"])
            );
        }
    }
    Ok(())
}

pub fn reload_intel(cli: &Cli) -> Result<()> {
    let r = cli.call(&Request::ReloadIntel)?;
    if cli.json {
        println!("{r}");
    } else {
        println!(
            "reloaded {} file(s): {} entries",
            r["files"].as_array().map_or(0, |f| f.len()),
            r["entries"]
        );
    }
    Ok(())
}

pub fn reload(cli: &Cli) -> Result<()> {
    let r = cli.call(&Request::Reload)?;
    if cli.json {
        println!("{r}");
        return Ok(());
    }
    println!(
        "reloaded {}: {} in force",
        text(&r["file"]),
        text(&r["applied"])
    );
    if r["needs_restart"].as_array().is_some_and(|k| !k.is_empty()) {
        println!(
            "changed but not in force until a restart: {}",
            text(&r["needs_restart"])
        );
    }
    Ok(())
}
