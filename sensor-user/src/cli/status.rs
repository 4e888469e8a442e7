//! status and stats.

use anyhow::Result;

use super::{table, Cli};
use crate::control::Request;

pub fn status(cli: &Cli) -> Result<()> {
    let s = cli.call(&Request::Status)?;
    if cli.json {
        println!("{s}");
        return Ok(());
    }
    println!(
        "sensord {}  mode: {}  up {}s",
        s["version"].as_str().unwrap_or("?"),
        s["mode"].as_str().unwrap_or("?"),
        s["uptime_secs"]
    );
    let e = &s["entries"];
    println!(
        "isolated hosts: {} IPv4, {} IPv6 (capacity {} each)",
        e["isolated_v4"], e["isolated_v6"], s["capacity"]["isolated_hosts"]
    );
    println!(
        "blocked ranges: {} IPv4, {} IPv6 (capacity {} each)",
        e["blocked_v4"], e["blocked_v6"], s["capacity"]["blocked_ranges"]
    );
    let rows: Vec<Vec<String>> = s["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            vec![
                i["interface"].as_str().unwrap_or("?").to_string(),
                i["ifindex"].to_string(),
                i["mode"].as_str().unwrap_or("?").to_string(),
            ]
        })
        .collect();
    table::print(&["INTERFACE", "IFINDEX", "XDP MODE"], &rows);
    let taps: Vec<Vec<String>> = s["taps"]["queues"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|q| {
            let lost = ["lost_no_socket", "lost_ring_full", "lost_no_buffer"]
                .iter()
                .map(|k| q[*k].as_u64().unwrap_or(0))
                .sum::<u64>();
            vec![
                q["interface"].as_str().unwrap_or("?").to_string(),
                q["queue"].to_string(),
                q["mode"].as_str().unwrap_or("?").to_string(),
                q["frames"].to_string(),
                q["read"].to_string(),
                lost.to_string(),
            ]
        })
        .collect();
    if !taps.is_empty() {
        println!(
            "\ntaps ({} traffic):",
            s["taps"]["traffic"].as_str().unwrap_or("?")
        );
        table::print(&["TAP", "QUEUE", "AF_XDP", "FRAMES", "READ", "LOST"], &taps);
    }
    Ok(())
}

pub fn stats(cli: &Cli) -> Result<()> {
    let s = cli.call(&Request::Stats)?;
    if cli.json {
        println!("{s}");
        return Ok(());
    }
    let mut rows = Vec::new();
    for iface in s["interfaces"].as_array().into_iter().flatten() {
        for c in iface["counters"].as_array().into_iter().flatten() {
            rows.push(vec![
                iface["interface"].as_str().unwrap_or("?").to_string(),
                c["verdict"].as_str().unwrap_or("?").to_string(),
                c["reason"].as_str().unwrap_or("?").to_string(),
                c["packets"].to_string(),
                c["bytes"].to_string(),
            ]);
        }
    }
    table::print(
        &["INTERFACE", "VERDICT", "REASON", "PACKETS", "BYTES"],
        &rows,
    );
    Ok(())
}
