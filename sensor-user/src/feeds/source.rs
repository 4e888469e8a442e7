//! Getting a feed's current text: over HTTP(S) with the validators of the
//! copy in hand (`If-None-Match`, `If-Modified-Since`), so an unchanged
//! feed costs a 304 and no download; or from a local file, unchanged while
//! its modification time is.

use std::{io::Read, path::Path, time::Duration};

use serde::{Deserialize, Serialize};

/// What identifies the copy in hand to its publisher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// HTTP's `Last-Modified`, or a file's modification time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

pub enum Fetched {
    /// The publisher's copy is the one in hand.
    Unchanged,
    Changed {
        text: String,
        validators: Validators,
    },
}

/// A feed body larger than this is refused: the largest published block
/// lists are a few MB, and a million ranges some 20 MB.
pub const MAX_BODY: u64 = 256 << 20;

/// How long one download may take, all told.
const TIMEOUT: Duration = Duration::from_secs(120);

/// `url` shown without its path and query, which may carry a key.
pub fn redact(url: &str) -> String {
    crate::alerts::webhook::redact(url)
}

/// Fetches `url`; `have` are the validators of the copy in hand, if any.
pub fn fetch_url(url: &str, have: Option<&Validators>) -> Result<Fetched, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(TIMEOUT)
        .user_agent(concat!("sensord/", env!("CARGO_PKG_VERSION")))
        .build();
    let mut request = agent.get(url);
    if let Some(have) = have {
        if let Some(etag) = &have.etag {
            request = request.set("If-None-Match", etag);
        }
        if let Some(since) = &have.last_modified {
            request = request.set("If-Modified-Since", since);
        }
    }
    let shown = redact(url);
    let response = match request.call() {
        Ok(response) => response,
        Err(ureq::Error::Status(code, response)) => {
            return Err(format!(
                "{shown} answered {code} {}",
                response.status_text()
            ))
        }
        Err(ureq::Error::Transport(e)) => {
            return Err(format!("{shown}: {}", e.kind()).replace(url, &shown))
        }
    };
    if response.status() == 304 {
        return Ok(Fetched::Unchanged);
    }
    let validators = Validators {
        etag: response.header("etag").map(str::to_string),
        last_modified: response.header("last-modified").map(str::to_string),
    };
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{shown}: reading the body: {e}"))?;
    if bytes.len() as u64 > MAX_BODY {
        return Err(format!("{shown}: the body passes {MAX_BODY} bytes"));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{shown}: the body is not UTF-8 text"))?;
    Ok(Fetched::Changed { text, validators })
}

/// Reads `path`, unless its modification time is the one in `have`.
pub fn fetch_file(path: &Path, have: Option<&Validators>) -> Result<Fetched, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if meta.len() > MAX_BODY {
        return Err(format!("{shown}: the file passes {MAX_BODY} bytes"));
    }
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| format!("{}.{:09}", d.as_secs(), d.subsec_nanos()));
    if modified.is_some() && have.and_then(|h| h.last_modified.as_ref()) == modified.as_ref() {
        return Ok(Fetched::Unchanged);
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    Ok(Fetched::Changed {
        text,
        validators: Validators {
            etag: None,
            last_modified: modified,
        },
    })
}
