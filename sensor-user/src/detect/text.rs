//! Text from the network made safe to show: a DNS name, a Host header or a
//! user agent may hold escape sequences that would drive an operator's
//! terminal, or line breaks that would forge log lines. Every string the
//! engine takes from packets goes through `printable` once, where it is
//! read, so incidents, tables, alerts and logs only ever hold the safe form.

use std::fmt::Write;

/// `s` with every control character (C0, DEL, C1) and every Unicode
/// format character that reorders or hides text (bidirectional overrides
/// and isolates, zero-width marks) written as `\u{XX}`; a backslash as
/// `\\`, so that the escaped form is never ambiguous.
pub fn printable(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if needs_escape(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// UTF-16LE bytes as a string (NTLM and SMB2 names); an odd last byte
/// and unpaired surrogates are lost, never fatal.
pub fn utf16le(raw: &[u8]) -> String {
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn escapes_what_drives_a_terminal_or_forges_a_line() {
        assert_eq!(printable("www.example.com"), "www.example.com");
        assert_eq!(printable("a\u{1b}[31mred"), "a\\u{1b}[31mred");
        assert_eq!(printable("x\r\nFAKE"), "x\\u{d}\\u{a}FAKE");
        assert_eq!(printable("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(printable("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert_eq!(printable("a\\b"), "a\\\\b");
        assert_eq!(printable("a\\u{1b}"), "a\\\\u{1b}");
        assert_eq!(
            printable("Mozilla/5.0 (X11; Linux)"),
            "Mozilla/5.0 (X11; Linux)"
        );
    }
}
