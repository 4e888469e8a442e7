//! The benchmark chart: ns per packet of each program on each packet class,
//! one panel per map filling, as a plain SVG (no fonts or libraries needed
//! to view it).

use std::fmt::Write;

use serde_json::Value;

const PROGRAMS: [(&str, &str, &str); 4] = [
    ("floor", "floor (XDP_PASS)", "#9e9e9e"),
    ("sensor", "sensor", "#1f77b4"),
    ("sensor_telemetry", "sensor + telemetry", "#aec7e8"),
    ("xdp_filter", "xdp-filter", "#ff7f0e"),
];

const BAR: f64 = 9.0;
const GROUP_GAP: f64 = 14.0;
const PANEL_HEIGHT: f64 = 220.0;
const LEFT: f64 = 60.0;

/// An SVG of `xdp_per_packet.json` (median ns per packet).
pub fn xdp_svg(doc: &Value) -> Option<String> {
    let sizes = doc["sizes"].as_array()?;
    let first = sizes.first()?["results"].as_array()?;
    let cases = first.len();
    let max_ns = sizes
        .iter()
        .flat_map(|s| s["results"].as_array().into_iter().flatten())
        .flat_map(|r| {
            PROGRAMS
                .iter()
                .map(move |(k, _, _)| r[*k]["median_ns"].as_f64().unwrap_or(0.0))
        })
        .fold(1.0, f64::max);
    let scale_max = (max_ns / 100.0).ceil() * 100.0;
    let group = PROGRAMS.len() as f64 * BAR + GROUP_GAP;
    let width = LEFT + cases as f64 * group + 20.0;
    let panel_total = PANEL_HEIGHT + 90.0;
    let height = 50.0 + sizes.len() as f64 * panel_total + 30.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="20" font-size="14">XDP per-packet cost, BPF_PROG_TEST_RUN, median ns (lower is better)</text>
"#
    );
    for (i, (_, label, color)) in PROGRAMS.iter().enumerate() {
        let x = LEFT + i as f64 * 150.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="30" width="10" height="10" fill="{color}"/><text x="{}" y="39">{label}</text>"#,
            x + 14.0
        );
    }
    for (p, size) in sizes.iter().enumerate() {
        let top = 50.0 + p as f64 * panel_total + 20.0;
        let base = top + PANEL_HEIGHT;
        let entries = size["entries"].as_u64().unwrap_or(0);
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="{}" font-size="12">maps holding {entries} isolated hosts and {entries} blocked ranges</text>"#,
            top - 6.0
        );
        for tick in 0..=4 {
            let v = scale_max * tick as f64 / 4.0;
            let y = base - PANEL_HEIGHT * tick as f64 / 4.0;
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{v:.0}</text>"##,
                width - 20.0,
                LEFT - 4.0,
                y + 4.0
            );
        }
        for (c, row) in size["results"].as_array()?.iter().enumerate() {
            let x0 = LEFT + c as f64 * group + GROUP_GAP / 2.0;
            for (i, (key, _, color)) in PROGRAMS.iter().enumerate() {
                let ns = row[*key]["median_ns"].as_f64().unwrap_or(0.0);
                let h = PANEL_HEIGHT * ns / scale_max;
                let _ = writeln!(
                    svg,
                    r#"<rect x="{}" y="{}" width="{BAR}" height="{h}" fill="{color}"><title>{} {key}: {ns:.0} ns</title></rect>"#,
                    x0 + i as f64 * BAR,
                    base - h,
                    row["packet"].as_str().unwrap_or("")
                );
            }
            let label_x = x0 + 2.0 * BAR;
            let _ = writeln!(
                svg,
                r#"<text x="{label_x}" y="{}" transform="rotate(30 {label_x} {})">{}</text>"#,
                base + 12.0,
                base + 12.0,
                row["packet"].as_str().unwrap_or("")
            );
        }
    }
    svg.push_str("</svg>\n");
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bar_per_program_and_packet_scaled_to_the_largest() {
        let row = |packet: &str, ns: f64| {
            serde_json::json!({
                "packet": packet,
                "floor": {"median_ns": ns / 4.0}, "sensor": {"median_ns": ns / 2.0},
                "sensor_telemetry": {"median_ns": ns}, "xdp_filter": {"median_ns": ns / 2.0},
            })
        };
        let doc = serde_json::json!({"sizes": [
            {"entries": 0, "results": [row("a", 400.0), row("b", 200.0)]},
        ]});
        let svg = xdp_svg(&doc).unwrap();
        assert_eq!(svg.matches("<title>").count(), 8);
        // The largest bar (400 ns, the scale's top) fills the panel.
        assert!(svg.contains(&format!(
            r#"height="{PANEL_HEIGHT}" fill="{}""#,
            PROGRAMS[2].2
        )));
        assert!(svg.contains("a sensor: 200 ns"));
        assert!(xdp_svg(&serde_json::json!({})).is_none());
    }
}
