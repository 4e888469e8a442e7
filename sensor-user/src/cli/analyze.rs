//! analyze: the detection engine on a capture file, offline.

use std::path::PathBuf;

use anyhow::Result;
use ipnet::IpNet;

use super::table;
use crate::{
    config::Config,
    detect::{incident::peer_label, Incident},
    offline::{self, Settings},
};

#[derive(clap::Args, Debug)]
pub struct Options {
    /// A pcap or pcapng file.
    pub file: PathBuf,
    /// Take the detection settings (and what is internal) from this sensord
    /// configuration.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// What is inside the network (repeatable); overrides the configuration.
    /// Default: the private ranges (RFC 1918, RFC 6598, ULA).
    #[arg(long, value_name = "CIDR")]
    pub internal: Vec<IpNet>,
}

/// Packet time (ns since the epoch) as RFC 3339 with milliseconds.
fn time(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn run(options: &Options, json: bool) -> Result<()> {
    let mut settings = match &options.config {
        Some(path) => {
            let config = Config::load(path)?;
            Settings {
                detection: config.detection,
                response: config.response,
                segments: config.segments,
            }
        }
        None => Settings::default(),
    };
    if !options.internal.is_empty() {
        settings.detection.internal = options.internal.clone();
    }
    let offline::Analysis { incidents, stats } = offline::analyze(&options.file, &settings, true)?;
    let name = options.file.display();
    if stats.cut_bytes > 0 {
        eprintln!(
            "warning: {name} ends mid-record (cut short?): analysed the {} packets before the cut, {} bytes after it unread",
            stats.packets, stats.cut_bytes
        );
    }
    if stats.unjudged > 0 {
        eprintln!(
            "warning: {name}: {} packets cut by the snap length before their transport header were not judged",
            stats.unjudged
        );
    }
    if stats.unknown_interface > 0 {
        eprintln!(
            "warning: {name}: {} packets name an interface the file never describes; skipped",
            stats.unknown_interface
        );
    }
    if stats.packets > 0 && stats.undecodable == stats.packets {
        eprintln!("warning: {name}: none of its {} packets is IP or ARP on a link type sensorctl reads (Ethernet, Linux cooked v1/v2, raw IP, loopback)", stats.packets);
    }
    if json {
        // The alert document, dated by the capture's clock.
        let observer = crate::alerts::Observer::local(None);
        for incident in &incidents {
            let doc = crate::alerts::document(
                incident,
                crate::alerts::Change::Snapshot,
                incident.last_seen,
                &observer,
            );
            println!("{doc}");
        }
        return Ok(());
    }
    eprintln!(
        "{name}: {} packets ({} not IP, {} shorter than on the wire), {} events, {} incidents",
        stats.packets,
        stats.undecodable,
        stats.snapped,
        stats.events,
        incidents.len()
    );
    print_incidents(&incidents);
    Ok(())
}

/// What sensord would have done about the incident's host, and when.
fn response(incident: &Incident) -> String {
    match offline::isolated_at(incident) {
        Some(ts) => format!("isolate at {}", time(ts)),
        None if incident.actions.iter().any(|a| a.action == "withheld") => "withheld".into(),
        None => "alert".into(),
    }
}

fn print_incidents(incidents: &[Incident]) {
    let rows: Vec<Vec<String>> = incidents
        .iter()
        .map(|i| {
            vec![
                i.id.to_string(),
                i.host.to_string(),
                i.severity.to_string(),
                i.score.to_string(),
                time(i.first_seen),
                time(i.last_seen),
                i.detectors.iter().copied().collect::<Vec<_>>().join(","),
                i.peers
                    .iter()
                    .take(3)
                    .map(|p| peer_label(p, i.names.get(p).map(String::as_str)))
                    .collect::<Vec<_>>()
                    .join(","),
                response(i),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no incidents");
        return;
    }
    table::print(
        &[
            "ID",
            "HOST",
            "SEVERITY",
            "SCORE",
            "FIRST SEEN",
            "LAST SEEN",
            "DETECTORS",
            "PEERS",
            "RESPONSE",
        ],
        &rows,
    );
    for i in incidents {
        println!(
            "\nincident {} ({}, {}):",
            i.id,
            i.host,
            i.techniques.iter().copied().collect::<Vec<_>>().join(" ")
        );
        for e in &i.evidence {
            println!("  {}  {:<20} {}", time(e.ts), e.detector, e.summary);
        }
        for a in &i.actions {
            println!(
                "  {}  {:<20} {}: {}",
                time(a.ts),
                a.action,
                a.target,
                a.detail
            );
        }
    }
}
