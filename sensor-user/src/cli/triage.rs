//! ack, note, close, reopen, false-positives and audit: the operators'
//! work on incidents, and the record of it.

use std::{net::IpAddr, time::Duration};

use anyhow::Result;
use serde_json::Value;

use super::{table, Cli, Command};
use crate::{
    clock,
    control::{Request, TriageStep},
};

#[derive(clap::Subcommand, Debug)]
pub enum MarkAction {
    /// List the marks (the default).
    List,
    /// Remove a host's marks, so its detectors act on it again.
    Undo {
        /// The host whose marks go.
        host: IpAddr,
        /// Only this detector's mark (all of the host's if not given).
        #[arg(long)]
        detector: Option<String>,
    },
}

use super::table::cell as text;

fn time_ns(v: &Value) -> String {
    v.as_u64()
        .map_or("-".into(), |ns| clock::format_unix(ns / 1_000_000_000))
}

pub fn step(cli: &Cli, command: &Command) -> Result<()> {
    let triage = |id: &u64, step, note: &Option<String>| Request::Triage {
        id: *id,
        step,
        note: note.clone(),
    };
    let (request, done) = match command {
        Command::Ack { id, note } => (triage(id, TriageStep::Acknowledge, note), "acknowledged"),
        Command::Close { id, reason } => (triage(id, TriageStep::Close, reason), "closed"),
        Command::Reopen { id, note } => (triage(id, TriageStep::Reopen, note), "reopened"),
        Command::Note { id, text } => (
            Request::Note {
                id: *id,
                text: text.clone(),
            },
            "noted",
        ),
        _ => unreachable!("run() sends only triage steps here"),
    };
    let doc = cli.call(&request)?;
    let incident = &doc["sensor"]["incident"];
    if cli.json {
        println!("{doc}");
    } else {
        println!(
            "incident {} {done}: status {}, triage {}",
            text(&incident["id"]),
            text(&incident["status"]),
            text(&incident["triage"])
        );
    }
    Ok(())
}

pub fn marks(cli: &Cli, action: Option<&MarkAction>) -> Result<()> {
    if let Some(MarkAction::Undo { host, detector }) = action {
        let r = cli.call(&Request::UndoFalsePositive {
            host: *host,
            detector: detector.clone(),
        })?;
        if cli.json {
            println!("{r}");
        } else {
            println!(
                "removed {} false-positive mark(s) of {host}: its detectors act on it again",
                text(&r["removed"])
            );
        }
        return Ok(());
    }
    let marks = cli.call(&Request::FalsePositives)?;
    if cli.json {
        println!("{marks}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = marks
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            vec![
                text(&m["host"]),
                text(&m["detector"]),
                time_ns(&m["created"]),
                text(&m["actor"]),
                text(&m["incident"]),
            ]
        })
        .collect();
    table::print_or(
        &["HOST", "DETECTOR", "MARKED", "BY", "INCIDENT"],
        &rows,
        "no false-positive marks",
    );
    Ok(())
}

pub fn audit(cli: &Cli, since: Option<Duration>, limit: usize) -> Result<()> {
    let since_secs = since.map(|d| clock::unix_now().saturating_sub(d.as_secs()));
    let records = cli.call(&Request::Audit {
        since_secs,
        limit: Some(limit),
    })?;
    if cli.json {
        println!("{records}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = records
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                time_ns(&r["ts"]),
                text(&r["actor"]),
                text(&r["action"]),
                text(&r["target"]),
                text(&r["detail"]),
                text(&r["outcome"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no audit records");
        return Ok(());
    }
    table::print(
        &["TIME", "WHO", "ACTION", "TARGET", "DETAIL", "OUTCOME"],
        &rows,
    );
    Ok(())
}
