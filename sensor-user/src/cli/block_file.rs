//! `sensorctl block --file`: a threat feed of ranges, checked whole (every
//! bad line named) before anything is sent, then loaded in chunks with
//! progress on stderr.

use std::{path::Path, time::Duration};

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use serde_json::json;

use super::Cli;
use crate::{
    control::{Request, BLOCK_CHUNK},
    enforcer::range_problem,
    feeds::format::{self, Format},
};

/// Bad lines reported before giving up on a file.
const MAX_REPORTED: usize = 10;

/// The ranges in a feed, in any format `feeds::format` reads (plain and
/// CIDR lists, Spamhaus DROP, DShield, FireHOL, abuse.ch CSV and JSON).
/// Any entry that cannot be blocked fails the whole file, with the first
/// few named: an operator's file is checked whole before anything changes.
pub fn parse_feed(text: &str) -> Result<Vec<IpNet>, String> {
    let entries = format::parse(text, Format::Auto).map_err(|e| e.to_string())?;
    let mut bad = entries.skipped.first.clone();
    let mut bad_count = entries.skipped.count;
    for net in &entries.nets {
        if let Some(problem) = range_problem(*net) {
            bad_count += 1;
            if bad.len() < MAX_REPORTED {
                bad.push(format!("{net} {problem}"));
            }
        }
    }
    let names = entries.domains.len() + entries.fingerprints.len();
    if names > 0 {
        bad_count += names;
        bad.push(format!(
            "{names} domain(s) or fingerprint(s), which the datapath cannot block (a feed with action = \"alert\" watches for them)"
        ));
    }
    if bad_count > 0 {
        let more = bad_count.saturating_sub(bad.len());
        let mut message = bad.join("\n");
        if more > 0 {
            message.push_str(&format!("\n... and {more} more bad entries"));
        }
        return Err(format!(
            "{bad_count} bad entries, nothing was blocked:\n{message}"
        ));
    }
    Ok(entries.nets)
}

pub fn run(
    cli: &Cli,
    path: &Path,
    ttl: Option<Duration>,
    reason: Option<String>,
    scope: Option<crate::fleet::Scope>,
) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let nets = parse_feed(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if nets.is_empty() {
        bail!("{}: no ranges in the file", path.display());
    }
    let reason = reason.or_else(|| Some(format!("feed {}", path.display())));
    let mut done = 0;
    let mut total = 0;
    for chunk in nets.chunks(BLOCK_CHUNK) {
        let result = cli
            .call(&Request::BlockMany {
                cidrs: chunk.to_vec(),
                ttl_secs: ttl.map(|t| t.as_secs()),
                reason: reason.clone(),
                scope,
            })
            .with_context(|| {
                format!(
                "after {done} of {} ranges were blocked (those stay; re-running the file is safe)",
                nets.len()
            )
            })?;
        done += chunk.len();
        total = result["blocked_total"].as_u64().unwrap_or(0);
        if nets.len() > BLOCK_CHUNK {
            eprintln!("blocked {done}/{} ranges", nets.len());
        }
    }
    if cli.json {
        println!("{}", json!({ "blocked": done, "blocked_total": total }));
    } else {
        println!(
            "blocked {done} ranges from {} ({total} blocked in all)",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_lines_comments_and_duplicates() {
        let nets = parse_feed(
            "# feed\n198.51.100.0/24\n\n203.0.113.7   # a host\n198.51.100.0/24\n2001:db8:bad::/48\n",
        )
        .unwrap();
        let text: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            text,
            ["198.51.100.0/24", "203.0.113.7/32", "2001:db8:bad::/48"]
        );
    }

    #[test]
    fn bad_entries_are_named_and_fail_the_whole_file() {
        let e = parse_feed("198.51.100.0/24\nnot-an-ip\n198.51.100.7/24\n0.0.0.0/0\n").unwrap_err();
        assert!(e.starts_with("3 bad entries, nothing was blocked"), "{e}");
        assert!(e.contains("line 2: \"not-an-ip\" is not an address"), "{e}");
        assert!(
            e.contains(
                "line 3: \"198.51.100.7/24\" has host bits set; did you mean 198.51.100.0/24?"
            ),
            "{e}"
        );
        assert!(e.contains("0.0.0.0/0 would block every address"), "{e}");
        let e = parse_feed("evil.example\n198.51.100.0/24\n").unwrap_err();
        assert!(e.contains("1 domain(s)"), "{e}");
        let many: String = (0..25).map(|i| format!("bad{i}\n")).collect();
        assert!(parse_feed(&many)
            .unwrap_err()
            .ends_with("... and 20 more bad entries"));
    }

    #[test]
    fn published_formats_load() {
        let drop = "; Spamhaus DROP List\n198.51.100.0/24 ; SBL1\n";
        assert_eq!(parse_feed(drop).unwrap().len(), 1);
        let feodo = "# \"first_seen_utc\",\"dst_ip\",\"dst_port\",\"c2_status\",\"last_online\",\"malware\"\n\"2026-01-17 07:30:05\",\"198.51.100.32\",\"4643\",\"online\",\"2026-11-29\",\"Dridex\"\n";
        assert_eq!(parse_feed(feodo).unwrap().len(), 1);
    }
}
