//! The formats operators subscribe to, read into addresses, domains and TLS
//! client fingerprints. One reader for every use: threat feeds, intel lists
//! and `sensorctl block --file`.
//!
//! - `list`: one entry a line, `#` and `;` start a comment. An address, a
//!   CIDR, a range (`198.51.100.0-198.51.100.255`, or two addresses as the
//!   first two fields), a domain, a hosts-file line (`0.0.0.0 evil.example`)
//!   or a JA3/JA4 fingerprint as the first field. This covers plain and
//!   CIDR lists, FireHOL netsets, Spamhaus DROP/EDROP text
//!   (`1.10.16.0/20 ; SBL256894`), DShield's block list (start, end,
//!   netblock, ... tab-separated), hosts files and abuse.ch's SSLBL.
//! - `csv`: abuse.ch CSV exports (Feodo Tracker, ThreatFox, URLhaus, SSLBL),
//!   read by their header's column names, which may sit in a `#` comment.
//! - `json`: abuse.ch JSON exports and Spamhaus's DROP JSON (one object a
//!   line), read by their keys at any depth.
//!
//! From a URL only an address host is taken: a URL names one page, and a
//! malware page on a shared site (a code host, a file share) does not make
//! the whole domain malicious.

use std::{net::IpAddr, str::FromStr};

use ipnet::{IpNet, IpSubnets, Ipv4Subnets, Ipv6Subnets};
use serde::{Deserialize, Serialize};

/// How a feed's text is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `json` if the text starts with `{` or `[`, `csv` if a header names a
    /// known column, else `list`.
    #[default]
    Auto,
    #[serde(alias = "plain", alias = "cidr", alias = "netset", alias = "hosts")]
    #[serde(alias = "spamhaus", alias = "dshield", alias = "firehol")]
    List,
    #[serde(alias = "abusech-csv")]
    Csv,
    #[serde(alias = "abusech-json", alias = "spamhaus-json")]
    Json,
}

impl Format {
    pub fn label(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::List => "list",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
            .map_err(|_| format!("{s:?} is not a feed format (auto, list, csv or json)"))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("no column of the CSV header names addresses, domains or fingerprints (header: {0})")]
    NoColumn(String),
}

/// Entries that could not be used, counted, with the first few named.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub count: usize,
    pub first: Vec<String>,
}

/// Skipped entries named in `Skipped::first`.
const NAMED_SKIPS: usize = 5;

impl Skipped {
    fn add(&mut self, what: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.len() < NAMED_SKIPS {
            self.first.push(what());
        }
    }
}

/// What a feed lists. `nets` are sorted and distinct.
#[derive(Debug, Default, Clone)]
pub struct Entries {
    pub format: Format,
    pub nets: Vec<IpNet>,
    pub domains: Vec<String>,
    pub fingerprints: Vec<String>,
    pub skipped: Skipped,
}

impl Entries {
    pub fn len(&self) -> usize {
        self.nets.len() + self.domains.len() + self.fingerprints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads `text` as `format` (`Auto`: as it looks).
pub fn parse(text: &str, format: Format) -> Result<Entries, FormatError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let format = match format {
        Format::Auto => sniff(text),
        f => f,
    };
    let mut entries = Entries {
        format,
        ..Default::default()
    };
    match format {
        Format::Auto | Format::List => {
            for (n, line) in text.lines().enumerate() {
                list_line(line, n + 1, &mut entries);
            }
        }
        Format::Csv => csv(text, &mut entries)?,
        Format::Json => json(text, &mut entries)?,
    }
    entries.nets.sort_unstable();
    entries.nets.dedup();
    entries.domains.sort_unstable();
    entries.domains.dedup();
    entries.fingerprints.sort_unstable();
    entries.fingerprints.dedup();
    Ok(entries)
}

fn sniff(text: &str) -> Format {
    let start = text.trim_start();
    if start.starts_with('{') || start.starts_with('[') {
        Format::Json
    } else if text.lines().take(50).any(|l| csv_header(l).is_some()) {
        Format::Csv
    } else {
        Format::List
    }
}

/// A JA3 (32 hex digits, as abuse.ch's SSLBL lists them) or a JA4
/// (`t13d1516h2_8daaf6152771_e5627efa2ab1`, as FoxIO's JA4+ database does).
pub fn is_fingerprint(field: &str) -> bool {
    let ja3 = field.len() == 32 && field.bytes().all(|b| b.is_ascii_hexdigit());
    ja3 || is_ja4(field)
}

/// A JA4 TLS client fingerprint: the transport, version, SNI, counts and
/// ALPN, then two 12-digit hashes.
fn is_ja4(field: &str) -> bool {
    let b = field.as_bytes();
    b.len() == 36
        && matches!(b[0], b't' | b'q' | b'd')
        && matches!(b[3], b'd' | b'i')
        && b[4..8].iter().all(u8::is_ascii_digit)
        && b[10] == b'_'
        && b[23] == b'_'
        && b[11..23].iter().chain(&b[24..]).all(u8::is_ascii_hexdigit)
}

/// A name that can be a domain: dotted, no path, no spaces, not an address.
fn is_domain(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    name.contains('.')
        && name.parse::<IpAddr>().is_err()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !name.starts_with('.')
}

/// An address or CIDR, refused with its reason when the host bits are set.
fn net(text: &str) -> Option<Result<IpNet, String>> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(Ok(IpNet::from(addr)));
    }
    let net = text.parse::<IpNet>().ok()?;
    Some(match crate::nets::host_bits(net) {
        Some(problem) => Err(problem),
        None => Ok(net),
    })
}

/// The CIDRs covering `first..=last`, if both are addresses of one family
/// in order.
fn range(first: &str, last: &str) -> Option<Vec<IpNet>> {
    let subnets = match (first.parse::<IpAddr>().ok()?, last.parse::<IpAddr>().ok()?) {
        (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => IpSubnets::from(Ipv4Subnets::new(a, b, 0)),
        (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => IpSubnets::from(Ipv6Subnets::new(a, b, 0)),
        _ => return None,
    };
    Some(subnets.collect())
}

fn list_line(line: &str, n: usize, out: &mut Entries) {
    let line = line.split(['#', ';']).next().unwrap_or("").trim();
    if line.is_empty() {
        return;
    }
    let first = line.split([',', ' ', '\t']).next().unwrap_or("");
    if is_fingerprint(first) {
        out.fingerprints.push(first.to_ascii_lowercase());
        return;
    }
    let mut words = line.split_whitespace();
    let one = words.next().unwrap_or("");
    let two = words.next();
    let skip = |out: &mut Entries, why: &str| {
        out.skipped.add(|| format!("line {n}: {line:?} {why}"));
    };
    match (net(one), two) {
        (Some(Err(problem)), _) => skip(out, &problem),
        (Some(Ok(_)), Some("-")) => match words.next().and_then(|last| range(one, last)) {
            Some(nets) => out.nets.extend(nets),
            None => skip(out, "is not a range of addresses"),
        },
        // DShield: start, end, netblock, ...; hosts files: address, name.
        (Some(Ok(a)), Some(two)) if a.addr().is_unspecified() || a.addr().is_loopback() => {
            if is_domain(two) {
                out.domains
                    .push(two.trim_end_matches('.').to_ascii_lowercase());
            }
            // Else a hosts file's own line (`127.0.0.1 localhost`).
        }
        (Some(Ok(_)), Some(two)) => match range(one, two) {
            Some(nets) => out.nets.extend(nets),
            None => skip(out, "is not a range or a hosts-file line"),
        },
        (Some(Ok(net)), None) => out.nets.push(net),
        (None, _) => match one.split_once('-').and_then(|(a, b)| range(a, b)) {
            Some(nets) => out.nets.extend(nets),
            None if two.is_none() && is_domain(one) => out
                .domains
                .push(one.trim_end_matches('.').to_ascii_lowercase()),
            None => skip(out, "is not an address, range, domain or fingerprint"),
        },
    }
}

/// What a column (CSV) or key (JSON) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Address,
    /// abuse.ch's `ioc_value`: typed by the `ioc_type` column when there
    /// is one, else by its look.
    Indicator,
    IndicatorType,
    Url,
    Fingerprint,
    Domain,
}

/// The column names abuse.ch and Spamhaus use for what a feed lists.
fn column(name: &str) -> Option<Column> {
    Some(
        match name.trim().trim_matches('"').to_ascii_lowercase().as_str() {
            "dst_ip" | "dstip" | "ip_address" | "ip" | "ipaddress" | "cidr" | "ip_range" => {
                Column::Address
            }
            "ioc_value" | "ioc" => Column::Indicator,
            "ioc_type" => Column::IndicatorType,
            "url" => Column::Url,
            "ja3_md5" | "ja3" | "ja4" => Column::Fingerprint,
            "domain" => Column::Domain,
            _ => return None,
        },
    )
}

/// A CSV header (maybe in a `#` comment): its columns, if one is known.
fn csv_header(line: &str) -> Option<Vec<Option<Column>>> {
    let line = line.trim_start_matches(['#', ' ', '\t']);
    let columns: Vec<Option<Column>> = split_csv(line).iter().map(|f| column(f)).collect();
    (columns.len() >= 2
        && columns
            .iter()
            .any(|c| c.is_some_and(|c| c != Column::IndicatorType)))
    .then_some(columns)
}

/// One CSV line's fields: commas outside double quotes separate, quotes
/// are removed (`""` inside quotes is one quote).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields.iter_mut().for_each(|f| *f = f.trim().to_string());
    fields
}

fn csv(text: &str, out: &mut Entries) -> Result<(), FormatError> {
    let mut header: Option<Vec<Option<Column>>> = None;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if header.is_none() || line.trim_start().starts_with('#') {
            if let Some(h) = csv_header(line) {
                header = Some(h);
            }
            continue;
        }
        let columns = header.as_ref().expect("a header was read");
        let fields = split_csv(line);
        let field = |c: Column| {
            columns
                .iter()
                .position(|k| *k == Some(c))
                .and_then(|i| fields.get(i))
                .map(String::as_str)
        };
        let kind = field(Column::IndicatorType);
        for (i, value) in fields.iter().enumerate() {
            match columns.get(i).copied().flatten() {
                Some(c) if c != Column::IndicatorType => {
                    indicator(c, value, kind, &format!("line {}", n + 1), out)
                }
                _ => {}
            }
        }
    }
    match header {
        Some(_) => Ok(()),
        None => Err(FormatError::NoColumn(
            text.lines().next().unwrap_or("").chars().take(80).collect(),
        )),
    }
}

fn json(text: &str, out: &mut Entries) -> Result<(), FormatError> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => walk(&value, 0, out),
        // Spamhaus's DROP JSON is one object a line.
        Err(whole) => {
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                    FormatError::Json(if n == 0 {
                        whole.to_string()
                    } else {
                        format!("line {}: {e}", n + 1)
                    })
                })?;
                walk(&value, 0, out);
            }
        }
    }
    Ok(())
}

/// Nesting followed into a JSON document (abuse.ch's go three deep).
const MAX_JSON_DEPTH: usize = 8;

fn walk(value: &serde_json::Value, depth: usize, out: &mut Entries) {
    use serde_json::Value;
    if depth > MAX_JSON_DEPTH {
        return;
    }
    match value {
        Value::Array(items) => items.iter().for_each(|v| walk(v, depth + 1, out)),
        Value::Object(map) => {
            let kind = map
                .iter()
                .find(|(k, _)| column(k) == Some(Column::IndicatorType))
                .and_then(|(_, v)| v.as_str());
            for (key, v) in map {
                match (column(key), v) {
                    (Some(Column::IndicatorType), _) => {}
                    (Some(c), Value::String(s)) => indicator(c, s, kind, "record", out),
                    (_, Value::Array(_) | Value::Object(_)) => walk(v, depth + 1, out),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// One CSV field or JSON value in a column that names an indicator.
fn indicator(column: Column, value: &str, kind: Option<&str>, at: &str, out: &mut Entries) {
    let value = value.trim();
    if value.is_empty() {
        return;
    }
    let mut skip = |why: &str| out.skipped.add(|| format!("{at}: {value:?} {why}"));
    let column = match (column, kind.map(str::to_ascii_lowercase).as_deref()) {
        (Column::Indicator, Some("ip:port" | "ip")) => Column::Address,
        (Column::Indicator, Some("domain")) => Column::Domain,
        (Column::Indicator, Some("url")) => Column::Url,
        (Column::Indicator, Some(other)) if other.contains("hash") => {
            return skip("is a file hash, not an address, domain or fingerprint")
        }
        (c, _) => c,
    };
    match column {
        Column::Address | Column::Indicator => match net(without_port(value)) {
            Some(Ok(n)) => out.nets.push(n),
            Some(Err(problem)) => skip(&problem),
            None if column == Column::Indicator && is_domain(value) => out
                .domains
                .push(value.trim_end_matches('.').to_ascii_lowercase()),
            None => skip("is not an address"),
        },
        Column::Domain if is_domain(value) => out
            .domains
            .push(value.trim_end_matches('.').to_ascii_lowercase()),
        Column::Domain => skip("is not a domain"),
        Column::Fingerprint if is_fingerprint(value) => {
            out.fingerprints.push(value.to_ascii_lowercase())
        }
        Column::Fingerprint => skip("is not a JA3 or JA4 fingerprint"),
        Column::Url => match url_host(value).map(|h| h.parse::<IpAddr>()) {
            Some(Ok(addr)) => out.nets.push(IpNet::from(addr)),
            Some(Err(_)) => {
                skip("names a page on a named host; only address hosts are taken from URLs")
            }
            None => skip("is not a URL"),
        },
        Column::IndicatorType => {}
    }
}

/// `198.51.100.7:443` or `[2001:db8::1]:443` without the port.
fn without_port(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match value.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => value,
    }
}

/// The host of `scheme://host[:port]/...`.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    Some(without_port(authority)).filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(e: &Entries) -> Vec<String> {
        e.nets.iter().map(|n| n.to_string()).collect()
    }

    // The samples follow each publisher's documented layout; the values are
    // documentation addresses (RFC 5737, RFC 3849) and example domains.

    #[test]
    fn spamhaus_drop_text() {
        let text = "; Spamhaus DROP List 2026/11/30 - (c) 2026 The Spamhaus Project SLU\n; https://www.spamhaus.org/drop/drop.txt\n; Last-Modified: Mon, 30 Nov 2026 10:00:00 GMT\n; Expires: Tue, 01 Dec 2026 00:00:00 GMT\n198.51.100.0/24 ; SBL256894\n203.0.113.0/25 ; SBL306785\n";
        let e = parse(text, Format::Auto).unwrap();
        assert_eq!(e.format, Format::List);
        assert_eq!(nets(&e), ["198.51.100.0/24", "203.0.113.0/25"]);
        assert_eq!(e.skipped.count, 0);
    }

    #[test]
    fn spamhaus_drop_json_one_object_a_line() {
        let text = "{\"cidr\":\"198.51.100.0/24\",\"sblid\":\"SBL256894\",\"rir\":\"apnic\"}\n{\"cidr\":\"2001:db8:bad::/48\",\"sblid\":\"SBL1\",\"rir\":\"ripencc\"}\n{\"type\":\"metadata\",\"timestamp\":1795000000,\"size\":123,\"records\":2,\"copyright\":\"(c) 2026 The Spamhaus Project SLU\",\"terms\":\"https://www.spamhaus.org/drop/terms/\"}\n";
        let e = parse(text, Format::Auto).unwrap();
        assert_eq!(e.format, Format::Json);
        assert_eq!(nets(&e), ["198.51.100.0/24", "2001:db8:bad::/48"]);
        assert_eq!(e.skipped.count, 0);
    }

    #[test]
    fn dshield_block_list() {
        let text = "#\n#   DShield.org Recommended Block List\n#   (c) 2026 DShield.org\n#\nStart\tEnd\tNetblock\tAttacks\tName\tCountry\temail\n198.51.100.0\t198.51.100.255\t24\t12345\tEXAMPLE-NET\tZZ\tabuse@example.org\n203.0.113.0\t203.0.113.127\t25\t678\t\t\t\n";
        let e = parse(text, Format::Auto).unwrap();
        assert_eq!(nets(&e), ["198.51.100.0/24", "203.0.113.0/25"]);
        // The column header is the one line that lists nothing.
        assert_eq!(e.skipped.count, 1, "{:?}", e.skipped);
    }

    #[test]
    fn firehol_netset_ranges_and_hosts_files() {
        let text = "#\n# firehol_level1\n#\n198.51.100.0/24\n192.0.2.7\n203.0.113.0-203.0.113.3\n127.0.0.1 localhost\n0.0.0.0 evil.example\n0.0.0.0 0.0.0.0\n";
        let e = parse(text, Format::List).unwrap();
        assert_eq!(
            nets(&e),
            ["192.0.2.7/32", "198.51.100.0/24", "203.0.113.0/30"]
        );
        assert_eq!(e.domains, ["evil.example"]);
        assert_eq!(e.skipped.count, 0, "{:?}", e.skipped);
    }

    #[test]
    fn bad_lines_are_counted_and_named_not_fatal() {
        let text = "198.51.100.7/24\nnot an entry\n198.51.100.0/24\n";
        let e = parse(text, Format::List).unwrap();
        assert_eq!(nets(&e), ["198.51.100.0/24"]);
        assert_eq!(e.skipped.count, 2);
        assert!(
            e.skipped.first[0].contains("did you mean 198.51.100.0/24"),
            "{:?}",
            e.skipped
        );
        assert!(e.skipped.first[1].starts_with("line 2:"), "{:?}", e.skipped);
    }

    #[test]
    fn feodo_tracker_csv_with_its_commented_header() {
        let text = "################################################################\n# abuse.ch Feodo Tracker Botnet C2 IP Blocklist (CSV)          #\n################################################################\n#\n# \"first_seen_utc\",\"dst_ip\",\"dst_port\",\"c2_status\",\"last_online\",\"malware\"\n\"2026-01-17 07:30:05\",\"198.51.100.32\",\"4643\",\"online\",\"2026-11-29\",\"Dridex\"\n\"2026-02-01 10:00:00\",\"203.0.113.9\",\"443\",\"offline\",\"2026-11-01\",\"QakBot\"\n# END 2 entries\n";
        let e = parse(text, Format::Auto).unwrap();
        assert_eq!(e.format, Format::Csv);
        assert_eq!(nets(&e), ["198.51.100.32/32", "203.0.113.9/32"]);
        assert!(e.domains.is_empty());
        assert_eq!(e.skipped.count, 0);
    }

    #[test]
    fn threatfox_csv_reads_each_indicator_by_its_type() {
        let text = "# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\",\"threat_type\",\"fk_malware\",\"malware_alias\",\"malware_printable\",\"last_seen_utc\",\"confidence_level\",\"reference\",\"tags\",\"anonymous\",\"reporter\"\n\"2026-11-29 10:00:00\", \"1\", \"198.51.100.7:443\", \"ip:port\", \"botnet_cc\", \"win.cobalt_strike\", \"\", \"Cobalt Strike\", \"\", \"100\", \"https://example.com/report\", \"cs\", \"0\", \"someone\"\n\"2026-11-29 10:01:00\", \"2\", \"evil.example\", \"domain\", \"botnet_cc\", \"x\", \"\", \"X\", \"\", \"75\", \"\", \"\", \"0\", \"someone\"\n\"2026-11-29 10:02:00\", \"3\", \"http://203.0.113.5:8080/bad.exe\", \"url\", \"payload_delivery\", \"x\", \"\", \"X\", \"\", \"50\", \"\", \"\", \"0\", \"someone\"\n\"2026-11-29 10:03:00\", \"4\", \"https://files.example.org/a.zip\", \"url\", \"payload_delivery\", \"x\", \"\", \"X\", \"\", \"50\", \"\", \"\", \"0\", \"someone\"\n\"2026-11-29 10:04:00\", \"5\", \"0123456789abcdef0123456789abcdef\", \"md5_hash\", \"payload\", \"x\", \"\", \"X\", \"\", \"50\", \"\", \"\", \"0\", \"someone\"\n";
        let e = parse(text, Format::Auto).unwrap();
        assert_eq!(e.format, Format::Csv);
        assert_eq!(nets(&e), ["198.51.100.7/32", "203.0.113.5/32"]);
        // The reference column's URL is not an indicator.
        assert_eq!(e.domains, ["evil.example"]);
        // Not a fingerprint although it looks like one: its type says hash.
        assert!(e.fingerprints.is_empty());
        assert_eq!(e.skipped.count, 2, "{:?}", e.skipped);
    }

    #[test]
    fn sslbl_ja3_csv() {
        let text = "# ja3_md5,Firstseen,Lastseen,Listingreason\nada70206e40642a3e4461f35503241d5,2017-07-14 18:08:13,2019-07-27 20:42:54,Dridex\n";
        let e = parse(text, Format::Auto).unwrap();
        assert_eq!(e.fingerprints, ["ada70206e40642a3e4461f35503241d5"]);
    }

    #[test]
    fn abuse_ch_json_exports() {
        let feodo = r#"[{"ip_address":"198.51.100.32","port":4643,"status":"online","hostname":"host.example.net","as_number":64500,"as_name":"EXAMPLE","country":"ZZ","first_seen":"2026-01-17 07:30:05","last_online":"2026-11-29","malware":"Dridex"}]"#;
        let e = parse(feodo, Format::Auto).unwrap();
        assert_eq!(nets(&e), ["198.51.100.32/32"]);
        // The C2's reverse name is not listed as a domain.
        assert!(e.domains.is_empty());
        let threatfox = r#"{"1": [{"ioc_value": "evil.example", "ioc_type": "domain", "threat_type": "botnet_cc", "reference": "https://example.com/r"}], "2": [{"ioc_value": "203.0.113.9:8443", "ioc_type": "ip:port"}]}"#;
        let e = parse(threatfox, Format::Json).unwrap();
        assert_eq!(nets(&e), ["203.0.113.9/32"]);
        assert_eq!(e.domains, ["evil.example"]);
        assert!(matches!(
            parse("{\"a\": ", Format::Json),
            Err(FormatError::Json(_))
        ));
    }

    #[test]
    fn a_csv_without_a_known_column_is_an_error() {
        let e = parse("name,score\nx,1\n", Format::Csv).unwrap_err();
        assert!(matches!(e, FormatError::NoColumn(_)), "{e}");
    }

    #[test]
    fn formats_by_name() {
        assert_eq!("spamhaus".parse::<Format>().unwrap(), Format::List);
        assert_eq!("abusech-csv".parse::<Format>().unwrap(), Format::Csv);
        assert!("xml".parse::<Format>().is_err());
    }
}
