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
    #[arg(long)]
    limit: Option<usize>,
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
        limit: f.limit,
    };
    let incidents = cli.call(&Request::Incidents { filter })?;
    if cli.json {
        println!("{incidents}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = incidents
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let mut status = format!("{}, {}", text(&i["status"]), text(&i["triage"]));
            if i["false_positive"] == true {
                status.push_str(" (false positive)");
            }
            vec![
                text(&i["id"]),
                text(&i["host"]),
                format!("{} {}", text(&i["score"]), text(&i["severity"])),
                status,
                text(&i["first_seen"]),
                text(&i["last_seen"]),
                text(&i["detectors"]),
                text(&i["actions"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no incidents");
        return Ok(());
    }
    table::print(
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
    );
    Ok(())
}

pub fn show(cli: &Cli, id: u64) -> Result<()> {
    let i = cli.call(&Request::Incident { id })?;
    if cli.json {
        println!("{i}");
        return Ok(());
    }
    println!(
        "incident {} on {}: score {} ({}), {}, triage {}{}",
        text(&i["id"]),
        text(&i["host"]),
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
        text(&i["first_seen"]),
        text(&i["last_seen"])
    );
    println!("  detectors  {}", text(&i["detectors"]));
    println!("  techniques {}", text(&i["techniques"]));
    let named = |p: &Value| {
        let peer = text(p);
        let name = i["names"].get(&peer).and_then(Value::as_str);
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
    for t in i["timeline"].as_array().into_iter().flatten() {
        if t["type"] == "evidence" {
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
