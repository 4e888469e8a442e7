//! `sensorctl fleet`: the fleet as this gateway's sensord sees it (every
//! decision in force, every gateway's status, every site's incidents), and
//! `init`, which creates the fleet's buckets with the administrator's
//! credentials.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{table, Cli};
use crate::{clock, control::Request};

#[derive(clap::Subcommand, Debug)]
pub enum FleetAction {
    /// Every decision in force anywhere in the fleet, with the site and
    /// gateway that made it, and the decisions refused here.
    ///
    /// Example: sensorctl fleet list
    List,
    /// Every gateway: when it last reported, how far behind the fleet's
    /// latest decision it is (lag, in revisions), its decisions in force,
    /// outbox and errors.
    ///
    /// Example: sensorctl fleet status
    Status,
    /// The fleet's incidents, newest first: the latest alert document of
    /// each, with its site and gateway.
    ///
    /// Example: sensorctl fleet incidents --site city-a --limit 20
    Incidents {
        /// Only this site's.
        #[arg(long)]
        site: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Create the fleet's buckets and incidents stream where missing,
    /// connecting as the [fleet] table of CONFIG says (the administrator's
    /// credentials). Once per fleet.
    ///
    /// Example: sensorctl fleet init --config /etc/sensor/fleet-admin.toml
    Init {
        /// A configuration file with a [fleet] table (servers,
        /// credentials, TLS).
        #[arg(long)]
        config: PathBuf,
        /// Copies of each bucket: 3 on a three-node cluster (the default),
        /// 1 on a single server.
        #[arg(long, default_value_t = 3)]
        replicas: usize,
    },
}

pub fn run(cli: &Cli, action: &FleetAction) -> Result<()> {
    match action {
        FleetAction::List => list(cli),
        FleetAction::Status => status(cli),
        FleetAction::Incidents { site, limit } => incidents(cli, site.clone(), *limit),
        FleetAction::Init { config, replicas } => init(config, *replicas),
    }
}

fn list(cli: &Cli) -> Result<()> {
    let result = cli.call(&Request::FleetList)?;
    if cli.json {
        println!("{result}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = result["decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            vec![
                table::cell(&d["kind"]),
                table::cell(&d["target"]),
                table::cell(&d["scope"]),
                format!("{}/{}", table::cell(&d["site"]), table::cell(&d["gateway"])),
                table::cell(&d["origin"]),
                if d["in_force_here"] == true {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                until(&d["expires"]),
                table::cell(&d["revision"]),
                table::cell(&d["reason"]),
            ]
        })
        .collect();
    table::print_or(
        &[
            "KIND",
            "TARGET",
            "SCOPE",
            "DECIDED BY",
            "ORIGIN",
            "HERE",
            "UNTIL",
            "REV",
            "REASON",
        ],
        &rows,
        "no decision is in force in the fleet",
    );
    let refused: Vec<Vec<String>> = result["refused"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                table::cell(&r["key"]),
                table::cell(&r["revision"]),
                table::cell(&r["why"]),
            ]
        })
        .collect();
    if !refused.is_empty() {
        println!();
        println!("refused here:");
        table::print(&["KEY", "REV", "WHY"], &refused);
    }
    Ok(())
}

fn until(expires: &Value) -> String {
    match expires.as_u64() {
        Some(at) => clock::format_unix(at),
        None => "permanent".into(),
    }
}

fn status(cli: &Cli) -> Result<()> {
    let result = cli.call(&Request::FleetStatus)?;
    if cli.json {
        println!("{result}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = result["gateways"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            vec![
                table::cell(&g["site"]),
                table::cell(&g["gateway"]),
                format!("{}s ago", table::cell(&g["last_seen_secs"])),
                table::cell(&g["lag"]),
                table::cell(&g["decisions_in_force"]),
                table::cell(&g["outbox"]),
                table::cell(&g["refused"]),
                table::cell(&g["errors"]),
                table::cell(&g["last_error"]),
            ]
        })
        .collect();
    println!("fleet revision {}", result["revision"]);
    table::print_or(
        &[
            "SITE",
            "GATEWAY",
            "LAST SEEN",
            "LAG",
            "IN FORCE",
            "OUTBOX",
            "REFUSED",
            "ERRORS",
            "LAST ERROR",
        ],
        &rows,
        "no gateway has reported yet",
    );
    Ok(())
}

fn incidents(cli: &Cli, site: Option<String>, limit: usize) -> Result<()> {
    let result = cli.call(&Request::FleetIncidents {
        site,
        limit: Some(limit),
    })?;
    if cli.json {
        println!("{result}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = result
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let i = &d["sensor"]["incident"];
            let f = &d["sensor"]["fleet"];
            vec![
                table::cell(&f["site"]),
                table::cell(&f["gateway"]),
                table::cell(&i["id"]),
                table::cell(&d["@timestamp"]),
                table::cell(&i["status"]),
                table::cell(&i["score"]),
                table::cell(&d["source"]["ip"]),
                table::cell(&d["destination"]["ip"]),
                table::cell(&i["detectors"]),
                table::cell(&d["event"]["action"]),
            ]
        })
        .collect();
    table::print_or(
        &[
            "SITE",
            "GATEWAY",
            "ID",
            "UPDATED",
            "STATUS",
            "SCORE",
            "HOST",
            "PEER",
            "DETECTORS",
            "LAST",
        ],
        &rows,
        "no incident in the fleet",
    );
    Ok(())
}

fn init(path: &std::path::Path, replicas: usize) -> Result<()> {
    if !(1..=5).contains(&replicas) {
        bail!("--replicas: 1 to 5 copies");
    }
    let config = crate::config::Config::load(path)?;
    let fleet = config
        .fleet
        .with_context(|| format!("{}: no [fleet] table", path.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client =
            crate::fleet::client::FleetClient::connect(&fleet, "sensorctl fleet init").await?;
        let made = client.create(replicas).await?;
        if made.is_empty() {
            println!("the fleet's buckets and stream are there already");
        } else {
            println!("created {} with {replicas} replica(s)", made.join(", "));
        }
        anyhow::Ok(())
    })
}
