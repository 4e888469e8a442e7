//! The webhook: each alert POSTed as JSON, signed with HMAC-SHA256 when a
//! secret is configured (`X-Sensor-Signature-256: sha256=HEX` over the
//! body, as GitHub signs its webhooks), with the operator's headers.

use std::{collections::BTreeMap, time::Duration};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::outlet::{SendError, Sink};

pub const SIGNATURE_HEADER: &str = "X-Sensor-Signature-256";

pub struct Webhook {
    url: String,
    secret: Option<Vec<u8>>,
    headers: BTreeMap<String, String>,
    agent: ureq::Agent,
}

impl Webhook {
    pub fn new(url: String, secret: Option<Vec<u8>>, headers: BTreeMap<String, String>) -> Webhook {
        Webhook {
            url,
            secret,
            headers,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                .build(),
        }
    }
}

/// `sha256=HEX` of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A URL as logs may show it: scheme, host and port, never the path or
/// query (where tokens live) nor user information.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    format!("{scheme}://{host}/...")
}

impl Sink for Webhook {
    fn send(&mut self, alert: &[u8]) -> Result<(), SendError> {
        let mut request = self
            .agent
            .post(&self.url)
            .set("content-type", "application/json");
        for (name, value) in &self.headers {
            request = request.set(name, value);
        }
        if let Some(secret) = &self.secret {
            request = request.set(SIGNATURE_HEADER, &signature(secret, alert));
        }
        match request.send_bytes(alert) {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(code, _)) if code == 408 || code == 429 || code >= 500 => {
                Err(SendError::Retry(format!("HTTP {code}")))
            }
            Err(ureq::Error::Status(code, _)) => Err(SendError::Refused(format!("HTTP {code}"))),
            // Transport errors name the URL: say only their kind.
            Err(ureq::Error::Transport(t)) => Err(SendError::Retry(t.kind().to_string())),
        }
    }

    fn describe(&self) -> String {
        format!("webhook {}", redact(&self.url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_published_example() {
        // GitHub's documented example: secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        assert_eq!(
            signature(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn logs_never_show_tokens() {
        assert_eq!(
            redact("https://user:pw@soar.example.org:8443/hooks/T0K3N?key=abc"),
            "https://soar.example.org:8443/..."
        );
        assert_eq!(redact("http://10.0.0.5/x"), "http://10.0.0.5/...");
    }
}
