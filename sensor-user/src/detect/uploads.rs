//! Uploads to outside servers over clear-text protocols whose commands say
//! so: an FTP `STOR` (or `APPE`, `STOU`) [RFC 959 4.1.3] and an HTTP `POST`
//! or `PUT` that declares a large body (`exfiltration.upload`, T1048.003,
//! Exfiltration Over Unencrypted Non-C2 Protocol). Credential stealers
//! (Agent Tesla, Snake Keylogger, FormBook's variants) upload what they
//! took by FTP, and a hand-run exfiltration pushes archives with `curl -T`
//! or a form POST. Seen at the command, before the transfer ends: the
//! volume rules (`exfiltration`) judge the bytes once the flow is over.
//!
//! An alert (60), once per (host, server) a day: FTP to the Internet is rare
//! from a managed workstation but not unheard of (a web agency's uploads),
//! and a large HTTP upload may be a legitimate form. It adds up with other
//! evidence on the host; a site that uploads by FTP every day allowlists
//! the server (`detectors = ["exfiltration.upload"]`).

use super::{
    event::{Event, Kind, Nanos, PROTO_TCP, SECOND},
    ftp::{self, FTP_PORT},
    inspect,
    window::OncePer,
    Evidence,
};

/// An HTTP body declared this large is an upload worth naming: ten times
/// what a web form or an API call sends, a tenth of a day's office uploads
/// (the project's choice, docs/detection.md).
pub const HTTP_UPLOAD_BYTES: u64 = 10_000_000;
const SCORE: u8 = 60;
const REPORT_AGAIN_AFTER: Nanos = 24 * 3600 * SECOND;
const PAIRS: usize = 1 << 14;

pub struct UploadDetector {
    pub reported: OncePer,
}

impl Default for UploadDetector {
    fn default() -> Self {
        UploadDetector {
            reported: OncePer::new(REPORT_AGAIN_AFTER, PAIRS),
        }
    }
}

impl UploadDetector {
    /// `outbound`: the source is inside and the destination outside.
    pub fn observe(&mut self, e: &Event, outbound: bool, out: &mut Vec<Evidence>) {
        if e.kind != Kind::Data || e.protocol != PROTO_TCP || !outbound {
            return;
        }
        let server = format!("{}:{}", e.dst, e.dport);
        let summary = if e.dport == FTP_PORT {
            let Some(file) = ftp::stored_file(&e.payload) else {
                return;
            };
            format!("stored {file:?} on the FTP server {server}")
        } else {
            let Some(r) = inspect::http_request(&e.payload) else {
                return;
            };
            let upload = matches!(r.method.as_str(), "POST" | "PUT");
            let Some(bytes) = r
                .content_length
                .filter(|n| upload && *n >= HTTP_UPLOAD_BYTES)
            else {
                return;
            };
            format!(
                "HTTP {} of {:.1} MB to {server}{}",
                r.method,
                bytes as f64 / 1e6,
                r.host.map(|h| format!(" ({h})")).unwrap_or_default()
            )
        };
        if !self.reported.first((e.src, e.dst), e.ts) {
            return;
        }
        out.push(Evidence {
            host: e.src,
            detector: "exfiltration.upload",
            technique: "T1048.003",
            score: SCORE,
            ts: e.ts,
            since: e.ts,
            peers: vec![server],
            count: 1,
            summary,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(dport: u16, payload: &[u8]) -> Event {
        Event {
            ts: SECOND,
            src: "10.0.0.5".parse().unwrap(),
            dst: "198.51.100.7".parse().unwrap(),
            sport: 40000,
            dport,
            protocol: PROTO_TCP,
            kind: Kind::Data,
            payload: payload.to_vec(),
        }
    }

    fn found(events: &[Event]) -> Vec<String> {
        let mut d = UploadDetector::default();
        let mut out = Vec::new();
        for e in events {
            d.observe(e, true, &mut out);
        }
        out.into_iter().map(|e| e.summary).collect()
    }

    #[test]
    fn an_ftp_store_and_a_large_http_put_are_uploads() {
        let ftp = [
            data(21, b"USER anonymous\r\n"),
            data(21, b"STOR passwords_2026.zip\r\n"),
            data(21, b"STOR again.zip\r\n"),
        ];
        assert_eq!(
            found(&ftp),
            ["stored \"passwords_2026.zip\" on the FTP server 198.51.100.7:21"]
        );
        let put = data(
            80,
            b"PUT /up HTTP/1.1\r\nHost: drop.example\r\nContent-Length: 31457280\r\n\r\n",
        );
        assert_eq!(
            found(&[put]),
            ["HTTP PUT of 31.5 MB to 198.51.100.7:80 (drop.example)"]
        );
    }

    #[test]
    fn downloads_small_posts_and_server_replies_are_not() {
        let events = [
            data(21, b"RETR report.pdf\r\n"),
            data(21, b"150 Ok to send data.\r\n"),
            data(80, b"POST /form HTTP/1.1\r\nContent-Length: 2048\r\n\r\n"),
            data(80, b"GET /big.iso HTTP/1.1\r\nHost: mirror.example\r\n\r\n"),
        ];
        assert!(found(&events).is_empty());
    }
}
