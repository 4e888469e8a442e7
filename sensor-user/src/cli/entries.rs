//! isolate, release, block, unblock and list.

use anyhow::Result;
use serde_json::Value;

use super::{table, Cli, Command};
use crate::{
    clock,
    control::{self, Request},
};

pub fn change(cli: &Cli, command: &Command) -> Result<()> {
    let request = match command {
        Command::Isolate {
            ip,
            ttl,
            reason,
            scope,
        } => Request::Isolate {
            ip: *ip,
            ttl_secs: ttl.map(|t| t.as_secs()),
            reason: reason.clone(),
            scope: *scope,
        },
        Command::Release { ip, false_positive } => Request::Release {
            ip: *ip,
            false_positive: *false_positive,
        },
        Command::Block {
            cidr: Some(cidr),
            ttl,
            reason,
            scope,
            ..
        } => Request::Block {
            cidr: *cidr,
            ttl_secs: ttl.map(|t| t.as_secs()),
            reason: reason.clone(),
            scope: *scope,
        },
        Command::Unblock { cidr } => Request::Unblock { cidr: *cidr },
        _ => unreachable!("run() sends only changes here"),
    };
    let verb = match command {
        Command::Isolate { .. } => "isolated",
        Command::Release { .. } => "released",
        Command::Block { .. } => "blocked",
        _ => "unblocked",
    };
    let entry = cli.call(&request)?;
    if cli.json {
        println!("{entry}");
    } else {
        let expires = match entry["expires"].as_u64() {
            Some(at) => format!(" until {}", clock::format_unix(at)),
            None => String::new(),
        };
        let verb = if entry["not_isolated"] == true {
            "not isolated:"
        } else {
            verb
        };
        let mac = match entry["mac"].as_str() {
            Some(mac) if verb == "isolated" => format!(" and every frame from its MAC {mac}"),
            _ => String::new(),
        };
        println!(
            "{verb} {}{mac}{expires}",
            entry["target"].as_str().unwrap_or("?")
        );
        if let Some(ids) = entry["false_positive_incidents"].as_array() {
            let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            println!(
                "marked false positive: incident(s) {}; their detectors no longer act on this host",
                if ids.is_empty() {
                    "none open".into()
                } else {
                    ids.join(", ")
                }
            );
        }
    }
    Ok(())
}

use super::table::cell as text;

fn time(v: &Value) -> String {
    v.as_u64().map_or("never".into(), clock::format_unix)
}

/// Filters of `list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only isolations or only blocks.
    #[arg(long, value_parser = ["isolation", "block"])]
    kind: Option<String>,
    /// Only entries made by this origin: operator, adopted, auto:beacon, or
    /// auto:* for every automatic one.
    #[arg(long)]
    origin: Option<String>,
    /// Only entries whose reason holds this text (any case).
    #[arg(long)]
    reason: Option<String>,
    /// Instead of the isolations and blocks: the ranges this feed blocks.
    #[arg(long, conflicts_with_all = ["kind", "origin", "reason"])]
    feed: Option<String>,
}

pub fn list(cli: &Cli, args: &ListArgs) -> Result<()> {
    let filter = control::ListFilter {
        kind: args.kind.as_deref().map(|k| match k {
            "isolation" => crate::state::Kind::Isolation,
            _ => crate::state::Kind::Block,
        }),
        origin: args.origin.clone(),
        reason: args.reason.clone(),
        feed: args.feed.clone(),
    };
    let entries = cli.call(&Request::List { filter })?;
    if cli.json {
        println!("{entries}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                text(&e["kind"]),
                text(&e["target"]),
                text(&e["mac"]),
                text(&e["origin"]),
                text(&e["reason"]),
                time(&e["created"]),
                time(&e["expires"]),
                match e["mac_hits"].as_u64() {
                    Some(by_mac) => format!("{} + {by_mac} by MAC", text(&e["hits"])),
                    None => text(&e["hits"]),
                },
            ]
        })
        .collect();
    if rows.is_empty() {
        println!(
            "no isolations or blocks{}",
            match (&args.kind, &args.origin, &args.reason, &args.feed) {
                (None, None, None, None) => "",
                _ => " match",
            }
        );
        return Ok(());
    }
    table::print(
        &[
            "KIND", "TARGET", "MAC", "ORIGIN", "REASON", "CREATED", "EXPIRES", "HITS",
        ],
        &rows,
    );
    Ok(())
}
