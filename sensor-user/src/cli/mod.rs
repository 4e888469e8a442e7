//! sensorctl's commands: parse, call the control API, print a table for
//! people or JSON for scripts.

mod analyze;
mod block_file;
mod entries;
mod feeds;
mod fleet;
mod incidents;
mod status;
mod table;
mod triage;

use std::{net::IpAddr, path::PathBuf, time::Duration};

use anyhow::Result;
use clap::{Parser, Subcommand};
use ipnet::IpNet;

use crate::paths;

/// Admin CLI for sensord.
///
/// Example: sensorctl isolate 10.10.0.11 --ttl 1h --reason "beaconing to 203.0.113.66"
#[derive(Parser, Debug)]
#[command(name = "sensorctl", version = crate::VERSION)]
pub struct Cli {
    /// sensord's control socket. Default: the root socket, or for a user
    /// other than root and a command that only reads, the read-only one
    /// (/run/sensor/readonly.sock, for members of sensord's readonly_group).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the daemon's mode, interfaces and map fill.
    Status,
    /// Cut a host off in both directions (exemptions aside).
    ///
    /// Example: sensorctl isolate 10.10.0.11 --ttl 30m --reason "scan"
    Isolate {
        /// The host to cut off: an IPv4 or IPv6 address, e.g. 10.10.0.11.
        ip: IpAddr,
        /// How long, e.g. 90s, 30m, 12h, 7d; permanent if not given.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
        /// Why: kept with the entry, shown by list and in the state file.
        #[arg(long)]
        reason: Option<String>,
        /// In fleet mode: where it applies: gateway, site (the default) or
        /// fleet.
        #[arg(long, value_parser = crate::fleet::Scope::parse)]
        scope: Option<crate::fleet::Scope>,
    },
    /// Lift an isolation.
    ///
    /// Example: sensorctl release 10.10.0.11 --false-positive
    Release {
        /// The isolated host to let back: its IPv4 or IPv6 address.
        ip: IpAddr,
        /// Mark the host's open incidents as false positives: their
        /// detectors no longer isolate it.
        #[arg(long)]
        false_positive: bool,
    },
    /// Incidents found by live detection, newest last.
    ///
    /// Example: sensorctl incidents --min-score 80 --status open
    Incidents(incidents::Filter),
    /// Re-read the threat-intelligence list files only.
    ReloadIntel,
    /// Re-read sensord's configuration file (as SIGHUP and systemctl
    /// reload do): detection thresholds, allowlists, intel lists, response
    /// rules and retention take effect at once; other changes are named and
    /// wait for a restart.
    Reload,
    /// One incident with its timeline of evidence and actions.
    ///
    /// Example: sensorctl incident 3
    Incident {
        /// The incident's number (sensorctl incidents lists them).
        id: u64,
    },
    /// Drop all traffic to and from a range, or every range in a file.
    ///
    /// Example: sensorctl block 198.51.100.0/24 --reason "C&C range"
    ///
    /// Example: sensorctl block --file feed.txt --ttl 1d --reason "intel feed"
    Block {
        /// The range to drop: a CIDR such as 198.51.100.0/24, or one address.
        #[arg(value_parser = parse_cidr, required_unless_present = "file")]
        cidr: Option<IpNet>,
        /// A list of ranges in any format a feed can have (one CIDR,
        /// address or range per line, Spamhaus DROP, DShield, FireHOL,
        /// abuse.ch CSV or JSON). The whole file is checked before anything
        /// is sent; then it is loaded in chunks of 100,000, each all or
        /// none, with progress on stderr. (A list kept up to date by its
        /// publisher is better subscribed to as a [[feed]].)
        #[arg(long, conflicts_with = "cidr")]
        file: Option<std::path::PathBuf>,
        /// How long, e.g. 90s, 30m, 12h, 7d; permanent if not given.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
        /// Why: kept with the entry, shown by list and in the state file.
        #[arg(long)]
        reason: Option<String>,
        /// In fleet mode: where it applies: gateway, site or fleet (the
        /// default where this gateway may publish fleet-wide).
        #[arg(long, value_parser = crate::fleet::Scope::parse)]
        scope: Option<crate::fleet::Scope>,
    },
    /// Lift a range block.
    ///
    /// Example: sensorctl unblock 198.51.100.0/24
    Unblock {
        /// The blocked range to lift, as it was blocked (sensorctl list shows them).
        #[arg(value_parser = parse_cidr)]
        cidr: IpNet,
    },
    /// Isolations and blocks with origin, reason, times and hits.
    ///
    /// Example: sensorctl list --origin 'auto:*' --kind isolation
    List(entries::ListArgs),
    /// Acknowledge an incident: someone is on it.
    ///
    /// Example: sensorctl ack 12 --note "calling the user"
    Ack {
        /// The incident's number.
        id: u64,
        /// What was found or is being done, for the timeline.
        #[arg(long)]
        note: Option<String>,
    },
    /// Add a note to an incident's timeline.
    ///
    /// Example: sensorctl note 12 "user confirms opening invoice.pdf.exe"
    Note {
        /// The incident's number.
        id: u64,
        /// The note: printable text, up to 2000 characters.
        text: String,
    },
    /// Close an incident: dealt with. Later evidence opens a new one.
    ///
    /// Example: sensorctl close 12 --reason "host reimaged"
    Close {
        /// The incident's number.
        id: u64,
        /// Why, for the timeline.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reopen a closed incident.
    ///
    /// Example: sensorctl reopen 12 --note "the beacon is back"
    Reopen {
        /// The incident's number.
        id: u64,
        /// Why, for the timeline.
        #[arg(long)]
        note: Option<String>,
    },
    /// The false-positive marks (release --false-positive makes them), or
    /// undo some.
    ///
    /// Example: sensorctl false-positives undo 10.10.0.11 --detector beacon
    FalsePositives {
        #[command(subcommand)]
        action: Option<triage::MarkAction>,
    },
    /// The audit log: who isolated, released, blocked, triaged what, and
    /// every automatic action, oldest first.
    ///
    /// Example: sensorctl audit --since 24h
    Audit {
        /// Only records this recent, e.g. 30m, 24h, 7d.
        #[arg(long, value_parser = parse_ttl)]
        since: Option<Duration>,
        /// At most this many records, the newest.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// The threat feeds: source, entries in force, last refresh, errors;
    /// or refresh, retire or resume one.
    ///
    /// Example: sensorctl feeds retire spamhaus-drop
    Feeds {
        #[command(subcommand)]
        action: Option<feeds::FeedAction>,
    },
    /// Fleet mode: the decisions in force across the fleet, every
    /// gateway's status, the fleet's incidents; or create the fleet's
    /// buckets.
    ///
    /// Example: sensorctl fleet incidents --site city-a
    Fleet {
        #[command(subcommand)]
        action: fleet::FleetAction,
    },
    /// Packet counters per interface, verdict and reason.
    Stats,
    /// Run the detection engine on a capture file and print its incidents
    /// (no daemon needed; --json prints one incident per line).
    ///
    /// Example: sensorctl analyze last-week.pcap --internal 10.0.0.0/8
    Analyze(analyze::Options),
    /// Print a shell completion script.
    ///
    /// Example: sensorctl completions bash > /etc/bash_completion.d/sensorctl
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (sensorctl.1 and one per command) to a
    /// directory: the package build's, not an operator's.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

impl Cli {
    /// Sends `request` to sensord over the right socket (`socket`).
    pub fn call(&self, request: &crate::control::Request) -> Result<serde_json::Value> {
        crate::control::call(&self.socket_for(request), request)
    }

    fn socket_for(&self, request: &crate::control::Request) -> PathBuf {
        if let Some(socket) = &self.socket {
            return socket.clone();
        }
        // SAFETY: geteuid has no failure mode.
        let root = unsafe { libc::geteuid() } == 0;
        if request.is_read_only() && !root {
            paths::DEFAULT_READONLY_SOCKET.into()
        } else {
            paths::DEFAULT_CONTROL_SOCKET.into()
        }
    }
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?}: {e} (try 90s, 30m, 12h or 7d)"))?;
    crate::clock::check_ttl(ttl)
}

/// A CIDR, or a bare address meaning that one host (`nets::parse`).
pub(crate) fn parse_cidr(text: &str) -> Result<IpNet, String> {
    crate::nets::parse(text)
}

pub fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Status => status::status(cli),
        Command::Stats => status::stats(cli),
        Command::List(args) => entries::list(cli, args),
        Command::Ack { .. }
        | Command::Note { .. }
        | Command::Close { .. }
        | Command::Reopen { .. } => triage::step(cli, &cli.command),
        Command::FalsePositives { action } => triage::marks(cli, action.as_ref()),
        Command::Feeds { action } => feeds::run(cli, action.as_ref()),
        Command::Fleet { action } => fleet::run(cli, action),
        Command::Audit { since, limit } => triage::audit(cli, *since, *limit),
        Command::Analyze(options) => analyze::run(options, cli.json),
        Command::Incidents(filter) => incidents::list(cli, filter),
        Command::Incident { id } => incidents::show(cli, *id),
        Command::ReloadIntel => incidents::reload_intel(cli),
        Command::Reload => incidents::reload(cli),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "sensorctl", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => write_manual(<Cli as clap::CommandFactory>::command(), dir, "1"),
        Command::Block {
            file: Some(path),
            ttl,
            reason,
            scope,
            ..
        } => block_file::run(cli, path, *ttl, reason.clone(), *scope),
        command => entries::change(cli, command),
    }
}

/// Writes `command`'s manual page, and one for each visible subcommand
/// (`name-sub.section`), into `dir`.
pub fn write_manual(command: clap::Command, dir: &std::path::Path, section: &str) -> Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = command.get_name().to_string();
    let write = |page: clap::Command, file: String| -> Result<()> {
        let mut roff = Vec::new();
        clap_mangen::Man::new(page)
            .section(section)
            .render(&mut roff)?;
        let path = dir.join(file);
        std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))
    };
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = format!("{name}-{}", sub.get_name());
        write(
            sub.clone().name(sub_name.clone()),
            format!("{sub_name}.{section}"),
        )?;
    }
    write(command, format!("{name}.{section}"))
}

/// Exit codes: 1 the daemon refused or failed the request, 3 the daemon
/// could not be reached (`control::Unreachable`, wherever it sits in the
/// error's chain). (clap uses 2 for usage errors.)
pub fn exit_code(error: &anyhow::Error) -> u8 {
    let unreachable = error
        .chain()
        .any(|cause| cause.is::<crate::control::Unreachable>());
    if unreachable {
        3
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_cidr_parsing() {
        assert_eq!(parse_ttl("30m").unwrap(), Duration::from_secs(1800));
        assert!(parse_ttl("soon").is_err());
        assert!(parse_ttl("0s").is_err());
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("10.0.0.7").unwrap().to_string(), "10.0.0.7/32");
        assert!(parse_cidr("10.0.0.0/40").is_err());
    }

    #[test]
    fn every_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && !arg.is_hide_set() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(
            &<Cli as clap::CommandFactory>::command(),
            "sensorctl",
            &mut missing,
        );
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn invalid_address_is_a_usage_error() {
        let e = Cli::try_parse_from(["sensorctl", "isolate", "10.0.0.300"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
