//! `sensorctl feeds`: the threat feeds' state, and refreshing, retiring and
//! resuming one.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use super::{table, Cli};
use crate::{clock, control::Request};

#[derive(clap::Subcommand, Debug)]
pub enum FeedAction {
    /// Ask the publishers now rather than at the next scheduled refresh,
    /// and wait for their answers.
    ///
    /// Example: sensorctl feeds refresh spamhaus-drop
    Refresh {
        /// The feed (every feed if not given).
        name: Option<String>,
        /// Return at once instead of waiting for the answers.
        #[arg(long)]
        no_wait: bool,
    },
    /// Take a feed's entries out at once (a feed that blocks too much);
    /// it stays out, across restarts, until resumed.
    ///
    /// Example: sensorctl feeds retire spamhaus-drop
    Retire {
        /// The feed, as `sensorctl feeds` names it.
        name: String,
    },
    /// Put a retired feed back: it is fetched again at once.
    ///
    /// Example: sensorctl feeds resume spamhaus-drop
    Resume {
        /// The retired feed.
        name: String,
    },
}

/// How long `refresh` and `resume` wait for the publishers' answers.
const WAIT: Duration = Duration::from_secs(300);

pub fn run(cli: &Cli, action: Option<&FeedAction>) -> Result<()> {
    match action {
        None => status(cli, None),
        Some(FeedAction::Refresh { name, no_wait }) => {
            let before = cli.call(&Request::Feeds)?;
            let result = cli.call(&Request::FeedRefresh { name: name.clone() })?;
            let asked: Vec<String> = result["refreshing"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect();
            if *no_wait {
                println!("refreshing: {}", asked.join(", "));
                return Ok(());
            }
            wait_and_show(cli, &before, &asked)
        }
        Some(FeedAction::Retire { name }) => {
            let result = cli.call(&Request::FeedRetire { name: name.clone() })?;
            if cli.json {
                println!("{result}");
            } else {
                println!(
                    "feed {name} retired: {} entries out of force; it stays out until sensorctl feeds resume {name}",
                    result["lifted"]
                );
            }
            Ok(())
        }
        Some(FeedAction::Resume { name }) => {
            let before = cli.call(&Request::Feeds)?;
            cli.call(&Request::FeedResume { name: name.clone() })?;
            wait_and_show(cli, &before, std::slice::from_ref(name))
        }
    }
}

fn attempts(feeds: &Value, name: &str) -> u64 {
    feeds
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["name"] == name)
        .and_then(|f| f["attempts"].as_u64())
        .unwrap_or(0)
}

/// Waits until each of `names` was tried once more than in `before`, then
/// shows them; an error if one failed.
fn wait_and_show(cli: &Cli, before: &Value, names: &[String]) -> Result<()> {
    let started = Instant::now();
    let mut said = false;
    let now = loop {
        let now = cli.call(&Request::Feeds)?;
        if names
            .iter()
            .all(|n| attempts(&now, n) > attempts(before, n))
        {
            break now;
        }
        if started.elapsed() > WAIT {
            bail!(
                "no answer within {}s from: {}",
                WAIT.as_secs(),
                names.join(", ")
            );
        }
        if !said && started.elapsed() > Duration::from_secs(2) {
            eprintln!("waiting for {} ...", names.join(", "));
            said = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    show(cli, &now, Some(names))?;
    let failed: Vec<String> = now
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| names.iter().any(|n| f["name"] == n.as_str()))
        .filter_map(|f| Some(format!("{}: {}", f["name"].as_str()?, f["error"].as_str()?)))
        .collect();
    if !failed.is_empty() {
        bail!(
            "refresh failed (the version in force stays):\n{}",
            failed.join("\n")
        );
    }
    Ok(())
}

fn status(cli: &Cli, names: Option<&[String]>) -> Result<()> {
    let feeds = cli.call(&Request::Feeds)?;
    show(cli, &feeds, names)
}

fn show(cli: &Cli, feeds: &Value, names: Option<&[String]>) -> Result<()> {
    let shown: Vec<&Value> = feeds
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| names.is_none_or(|n| n.iter().any(|n| f["name"] == n.as_str())))
        .collect();
    if cli.json {
        println!("{}", Value::Array(shown.into_iter().cloned().collect()));
        return Ok(());
    }
    if shown.is_empty() {
        println!("no feeds are configured ([[feed]] in the configuration)");
        return Ok(());
    }
    let time = |v: &Value| v.as_u64().map_or("never".into(), clock::format_unix);
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|f| {
            let state = if f["retired"] == true {
                "retired".to_string()
            } else if let Some(e) = f["error"].as_str() {
                format!("failing: {e}")
            } else {
                match f["next_refresh_secs"].as_u64() {
                    Some(s) => format!(
                        "ok, next in {}",
                        humantime::format_duration(Duration::from_secs(s))
                    ),
                    None => "ok".into(),
                }
            };
            vec![
                table::cell(&f["name"]),
                table::cell(&f["action"]),
                table::cell(&f["source"]),
                table::cell(&f["format"]),
                table::cell(&f["entries"]),
                table::cell(&f["skipped"]["count"]),
                time(&f["checked"]),
                time(&f["updated"]),
                state,
            ]
        })
        .collect();
    table::print(
        &[
            "FEED", "ACTION", "SOURCE", "FORMAT", "ENTRIES", "SKIPPED", "CHECKED", "UPDATED",
            "STATE",
        ],
        &rows,
    );
    for f in &shown {
        if let Some(first) = f["skipped"]["first"].as_array().filter(|a| !a.is_empty()) {
            let first: Vec<String> = first.iter().map(table::cell).collect();
            println!(
                "{} skipped, first: {}",
                table::cell(&f["name"]),
                first.join("; ")
            );
        }
    }
    Ok(())
}
