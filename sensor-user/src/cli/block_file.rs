//! `sensorctl block --file`: a threat feed of ranges, checked whole (every
//! bad line named) before anything is sent, then loaded in chunks with
//! progress on stderr.

use std::{path::Path, time::Duration};

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use serde_json::json;

use super::{parse_cidr, Cli};
use crate::{
    control::{Request, BLOCK_CHUNK},
    enforcer::range_problem,
};

/// Bad lines reported before giving up on a file.
const MAX_REPORTED: usize = 10;

/// The ranges in a feed: one CIDR or address per line, blank lines and
/// `#` comments ignored, duplicates dropped. Any bad line fails the whole
/// file, with the first `MAX_REPORTED` named by line number.
pub fn parse_feed(text: &str) -> Result<Vec<IpNet>, String> {
    let mut nets = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut bad = Vec::new();
    let mut bad_count = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let problem = match parse_cidr(line) {
            Err(e) => Some(e),
            Ok(net) => match range_problem(net) {
                Some(problem) => Some(format!("{net} {problem}")),
                None => {
                    if seen.insert(net) {
                        nets.push(net);
                    }
                    None
                }
            },
        };
        if let Some(problem) = problem {
            bad_count += 1;
            if bad.len() < MAX_REPORTED {
                bad.push(format!("line {}: {problem}", n + 1));
            }
        }
    }
    if bad_count > 0 {
        let more = bad_count - bad.len();
        let mut message = bad.join("\n");
        if more > 0 {
            message.push_str(&format!("\n... and {more} more bad lines"));
        }
        return Err(format!(
            "{bad_count} bad line(s), nothing was blocked:\n{message}"
        ));
    }
    Ok(nets)
}

pub fn run(cli: &Cli, path: &Path, ttl: Option<Duration>, reason: Option<String>) -> Result<()> {
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
    fn bad_lines_are_named_and_fail_the_whole_file() {
        let e = parse_feed("198.51.100.0/24\nnot-an-ip\n198.51.100.7/24\n0.0.0.0/0\n").unwrap_err();
        assert!(e.starts_with("3 bad line(s), nothing was blocked"), "{e}");
        assert!(
            e.contains("line 2: \"not-an-ip\" is not an address or a CIDR"),
            "{e}"
        );
        assert!(
            e.contains(
                "line 3: \"198.51.100.7/24\" has host bits set; did you mean 198.51.100.0/24?"
            ),
            "{e}"
        );
        assert!(
            e.contains("line 4: 0.0.0.0/0 would block every address"),
            "{e}"
        );
        let many: String = (0..25).map(|i| format!("bad{i}\n")).collect();
        assert!(parse_feed(&many)
            .unwrap_err()
            .ends_with("... and 15 more bad lines"));
    }
}
