//! `cargo xtask eval`: detection quality on public captures of other
//! networks and tools. Every capture of `pcaps/manifest.tsv` (labelled:
//! the bad host, its category and technique) and of
//! `pcaps/benign_corpus/manifest.tsv` (ordinary traffic: any incident is a
//! false one) goes through the offline engine and the replayed default
//! response policy, with the row's `internal` ranges. The harness judges;
//! it tunes nothing.
//!
//! With `--gate DOC`, it fails when a capture the committed DOC lists as
//! detected (or as isolated) no longer is, or when a benign capture raises an
//! incident that would isolate.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result};
use clap::Parser;
use ipnet::IpNet;
use sensor_user::{
    detect::{
        capture::{self, Link},
        pcapfile, DetectionConfig, Incident, Nanos,
    },
    offline::{self, Settings},
};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// The shared captures (with manifest.tsv and benign_corpus/).
    #[arg(long)]
    pcaps: PathBuf,
    /// Where to write every result.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where to write the Markdown report.
    #[arg(long)]
    doc: Option<PathBuf>,
    /// Fail on regressions against this report (read before `--doc`
    /// overwrites it).
    #[arg(long)]
    gate: Option<PathBuf>,
}

/// One capture's verdict.
#[derive(Debug, Clone, serde::Serialize)]
struct Outcome {
    file: String,
    category: String,
    /// Labelled captures: the attacker, and the technique it uses.
    bad_host: Option<IpAddr>,
    technique: String,
    packets: u64,
    /// An incident names the bad host.
    detected: bool,
    /// The default response policy would isolate the bad host.
    would_isolate: bool,
    detectors: BTreeSet<String>,
    techniques: BTreeSet<String>,
    /// Packet-time seconds from the bad host's first packet to its first
    /// evidence, and to the isolation decision.
    detect_secs: Option<f64>,
    isolate_secs: Option<f64>,
    /// Incidents about other hosts (on benign captures: false incidents).
    other_incidents: usize,
    /// Of those, how many would isolate their host.
    other_isolating: usize,
    other_detectors: BTreeSet<String>,
    error: Option<String>,
}

fn internal_ranges(text: &str) -> Result<Vec<IpNet>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "-")
        .map(|s| s.parse().with_context(|| format!("bad range {s:?}")))
        .collect()
}

/// When `host` first sent a packet (ARP included), in packet time.
fn first_packet_of(path: &Path, host: IpAddr) -> Option<Nanos> {
    let mut first = None;
    pcapfile::read(path, false, &mut |f| {
        if first.is_some() {
            return;
        }
        let Some(link) = Link::from_linktype(f.link.0) else {
            return;
        };
        if let Ok(p) = capture::decode(link, f.ts, f.orig_len as u64, f.data) {
            if p.src == host {
                first = Some(p.ts);
            }
        }
    })
    .ok()?;
    first
}

fn secs(from: Nanos, to: Nanos) -> f64 {
    (to as f64 - from as f64) / 1e9
}

fn judge(
    pcaps: &Path,
    file: &str,
    category: &str,
    bad_host: Option<IpAddr>,
    technique: &str,
    internal: &str,
) -> Outcome {
    let mut out = Outcome {
        file: file.to_string(),
        category: category.to_string(),
        bad_host,
        technique: technique.to_string(),
        packets: 0,
        detected: false,
        would_isolate: false,
        detectors: BTreeSet::new(),
        techniques: BTreeSet::new(),
        detect_secs: None,
        isolate_secs: None,
        other_incidents: 0,
        other_isolating: 0,
        other_detectors: BTreeSet::new(),
        error: None,
    };
    let path = pcaps.join(file);
    let detection = match internal_ranges(internal) {
        Ok(internal) => DetectionConfig {
            internal,
            ..Default::default()
        },
        Err(e) => {
            out.error = Some(format!("{e:#}"));
            return out;
        }
    };
    let analysis = match offline::analyze(&path, &Settings::detection(detection), false) {
        Ok(a) => a,
        Err(e) => {
            out.error = Some(format!("{e:#}"));
            return out;
        }
    };
    out.packets = analysis.stats.packets;
    let (mine, others): (Vec<&Incident>, Vec<&Incident>) = analysis
        .incidents
        .iter()
        .partition(|i| Some(i.host) == bad_host);
    out.other_incidents = others.len();
    out.other_isolating = others
        .iter()
        .filter(|i| offline::isolated_at(i).is_some())
        .count();
    out.other_detectors = others
        .iter()
        .flat_map(|i| i.detectors.iter().map(|d| d.to_string()))
        .collect();
    if let Some(host) = bad_host {
        out.detected = !mine.is_empty();
        out.detectors = mine
            .iter()
            .flat_map(|i| i.detectors.iter().map(|d| d.to_string()))
            .collect();
        out.techniques = mine
            .iter()
            .flat_map(|i| i.techniques.iter().map(|t| t.to_string()))
            .collect();
        let isolated = mine.iter().filter_map(|i| offline::isolated_at(i)).min();
        out.would_isolate = isolated.is_some();
        let evidence = mine.iter().map(|i| i.opened).min();
        if let Some(first) = first_packet_of(&path, host) {
            out.detect_secs = evidence.map(|t| secs(first, t));
            out.isolate_secs = isolated.map(|t| secs(first, t));
        }
    }
    out
}

/// Rows of a tab-separated manifest, by column name.
fn manifest(path: &Path) -> Result<Vec<BTreeMap<String, String>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    Ok(lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            header
                .iter()
                .zip(l.split('\t').chain(std::iter::repeat("")))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect())
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn seconds(s: Option<f64>) -> String {
    s.map_or("-".into(), |s| format!("{s:.1} s"))
}

fn list(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "-".into()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// The Markdown report: totals per category, every labelled capture, and
/// the benign captures that raised anything.
fn report(attacks: &[Outcome], benign: &[Outcome]) -> String {
    let mut md = String::new();
    md.push_str("# Detection quality\n\n");
    md.push_str(
        "Written by `cargo xtask eval` (tests/src/bin/eval.rs), which runs every capture of \
         `../shared/pcaps/manifest.tsv` and `../shared/pcaps/benign_corpus/manifest.tsv` through \
         the offline engine (`sensorctl analyze`'s) with the default detection settings and the \
         default response policy replayed on packet time, with each row's `internal` ranges. \
         These captures come from other networks and other tools; nothing was tuned on them. \
         CI runs the same command and fails when a capture listed here as detected, or as \
         would isolate, no longer is, or when a benign capture raises an incident that would isolate.\n\n",
    );
    md.push_str(
        "- **detected**: an incident names the capture's bad host.\n\
         - **would isolate**: the default policy (score 70 and more, host proven by \
         acknowledged TCP data) would isolate the bad host.\n\
         - **to detection / to isolation**: packet time from the bad host's first packet to \
         its first evidence, and to the isolation decision.\n\n",
    );
    md.push_str("## Totals\n\n| category | captures | detected | would isolate | median to detection |\n| --- | --- | --- | --- | --- |\n");
    let mut categories: BTreeMap<&str, Vec<&Outcome>> = BTreeMap::new();
    for o in attacks {
        categories.entry(&o.category).or_default().push(o);
    }
    let total = |rows: &[&Outcome]| {
        format!(
            "| {} | {} | {} | {} |",
            rows.len(),
            rows.iter().filter(|o| o.detected).count(),
            rows.iter().filter(|o| o.would_isolate).count(),
            seconds(median(rows.iter().filter_map(|o| o.detect_secs).collect()))
        )
    };
    for (category, rows) in &categories {
        md.push_str(&format!("| {category} {}\n", total(rows)));
    }
    let all: Vec<&Outcome> = attacks.iter().collect();
    md.push_str(&format!("| **all** {}\n\n", total(&all)));
    let with_incidents: Vec<&Outcome> = benign.iter().filter(|o| o.other_incidents > 0).collect();
    let incidents: usize = benign.iter().map(|o| o.other_incidents).sum();
    let isolating: usize = benign.iter().map(|o| o.other_isolating).sum();
    let errors = benign.iter().filter(|o| o.error.is_some()).count();
    md.push_str(&format!(
        "Benign captures: {} files, {} false incidents in {} files, {} of them would isolate; {} files unreadable.\n\n",
        benign.len(),
        incidents,
        with_incidents.len(),
        isolating,
        errors
    ));
    md.push_str("## Labelled captures\n\n| capture | bad host | technique | detected | would isolate | detectors | techniques | to detection | to isolation | other incidents |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for o in attacks {
        md.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            o.file,
            o.bad_host.map_or("-".into(), |h| h.to_string()),
            o.technique,
            yes(o.detected),
            yes(o.would_isolate),
            match &o.error {
                Some(e) => format!("error: {e}"),
                None => list(&o.detectors),
            },
            list(&o.techniques),
            seconds(o.detect_secs),
            seconds(o.isolate_secs),
            o.other_incidents
        ));
    }
    md.push_str("\n## Benign captures with incidents or errors\n\n");
    let listed: Vec<&Outcome> = benign
        .iter()
        .filter(|o| o.other_incidents > 0 || o.error.is_some())
        .collect();
    if listed.is_empty() {
        md.push_str("None.\n");
    } else {
        md.push_str("| capture | false incidents | would isolate | detectors |\n| --- | --- | --- | --- |\n");
        for o in listed {
            md.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                o.file,
                o.other_incidents,
                o.other_isolating,
                match &o.error {
                    Some(e) => format!("error: {e}"),
                    None => list(&o.other_detectors),
                }
            ));
        }
    }
    md
}

/// Captures a report lists as detected.
/// Labelled captures the report marks "yes" in column `column` (1: the
/// capture, 4: detected, 5: would isolate).
fn marked_in(doc: &str, column: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_labelled = false;
    for line in doc.lines() {
        if line.starts_with("## ") {
            in_labelled = line == "## Labelled captures";
        }
        if !in_labelled || !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "", capture, bad host, technique, detected, would isolate, ...
        if cells.get(column) == Some(&"yes") {
            out.insert(cells[1].trim_matches('`').to_string());
        }
    }
    out
}

const DETECTED: usize = 4;
const WOULD_ISOLATE: usize = 5;

fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let baseline = match &args.gate {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the committed report {}", path.display()))?,
        ),
        None => None,
    };
    let mut attacks = Vec::new();
    let mut benign = Vec::new();
    for row in manifest(&args.pcaps.join("manifest.tsv"))? {
        let host = row["bad_host"].parse::<IpAddr>().ok();
        let o = judge(
            &args.pcaps,
            &row["file"],
            &row["category"],
            host,
            &row["technique"],
            &row["internal"],
        );
        // A labelled capture without a bad host is benign traffic.
        if host.is_some() {
            attacks.push(o);
        } else {
            benign.push(o);
        }
    }
    let corpus = args.pcaps.join("benign_corpus");
    let rows = manifest(&corpus.join("manifest.tsv"))?;
    for (n, row) in rows.iter().enumerate() {
        if n % 100 == 0 {
            eprintln!("benign corpus: {n} of {} captures", rows.len());
        }
        let mut o = judge(&corpus, &row["file"], "benign", None, "-", &row["internal"]);
        o.file = format!("benign_corpus/{}", o.file);
        benign.push(o);
    }

    println!(
        "{:<72} {:<16} {:<8} {:<8} {:<10} detectors",
        "capture", "bad host", "detected", "isolate", "to detect"
    );
    for o in &attacks {
        println!(
            "{:<72} {:<16} {:<8} {:<8} {:<10} {}",
            o.file,
            o.bad_host.map_or("-".into(), |h| h.to_string()),
            yes(o.detected),
            yes(o.would_isolate),
            seconds(o.detect_secs),
            o.error.clone().unwrap_or_else(|| list(&o.detectors))
        );
    }
    let md = report(&attacks, &benign);
    let totals: String = md
        .split("## Totals\n\n")
        .nth(1)
        .and_then(|t| t.split("## Labelled").next())
        .unwrap_or_default()
        .to_string();
    println!("\n{totals}");
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(
            path,
            serde_json::to_string_pretty(&json!({ "labelled": attacks, "benign": benign }))?,
        )?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.doc {
        std::fs::write(path, &md)?;
        println!("wrote {}", path.display());
    }

    let mut failures = Vec::new();
    if let Some(baseline) = baseline {
        for (column, what) in [(DETECTED, "detected"), (WOULD_ISOLATE, "isolated")] {
            let now = marked_in(&md, column);
            for file in marked_in(&baseline, column) {
                if !now.contains(&file) {
                    failures.push(format!("{file}: {what} before, no longer {what}"));
                }
            }
        }
    }
    for o in benign.iter().filter(|o| o.other_isolating > 0) {
        failures.push(format!(
            "{}: benign traffic raised {} incident(s) that would isolate ({})",
            o.file,
            o.other_isolating,
            list(&o.other_detectors)
        ));
    }
    if failures.is_empty() {
        println!("eval: no regression");
        return Ok(ExitCode::SUCCESS);
    }
    for f in &failures {
        eprintln!("eval: {f}");
    }
    Ok(ExitCode::FAILURE)
}
