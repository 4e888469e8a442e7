//! What keeps sensord's listeners (the metrics port, the control socket)
//! from being starved or used to starve it: a cap on the connections served
//! at once (past it, a new one is closed at once, holding nothing), a time
//! limit on reading each request, bounded requests, and accept errors that
//! back off instead of spinning (and are logged at most every 10 s). Any
//! local user can open connections to the metrics port; none of this lets
//! them take the file descriptors or the time that enforcement needs.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use log::warn;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::{watch, Semaphore},
};

/// Connections served at once, per listener.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client has to send its whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest HTTP request head taken on the metrics port.
const MAX_HEAD: usize = 8 * 1024;

/// Backs off after accept errors (out of descriptors, mostly): 10 ms
/// doubling to 1 s, reset by the next success.
pub struct AcceptBackoff {
    what: &'static str,
    delay: Duration,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl AcceptBackoff {
    pub fn new(what: &'static str) -> AcceptBackoff {
        AcceptBackoff {
            what,
            delay: Duration::ZERO,
            last_log: None,
            unlogged: 0,
        }
    }

    pub fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// Logs (rate-limited) and sleeps before the next accept.
    pub async fn failed(&mut self, error: &std::io::Error) {
        self.delay = (self.delay * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let due = self
            .last_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if due {
            let also = match self.unlogged {
                0 => String::new(),
                n => format!(" ({n} more since the last report)"),
            };
            warn!("{} accept: {error}{also}; backing off", self.what);
            self.last_log = Some(Instant::now());
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        tokio::time::sleep(self.delay).await;
    }
}

/// Accepts connections until `stop`, each handled on a task of its own:
/// at most `MAX_CONNECTIONS` at once (past it, a connection is closed at
/// once), accept errors backed off.
pub async fn serve<C, A, AF, H, HF>(
    what: &'static str,
    mut accept: A,
    mut stop: watch::Receiver<bool>,
    handle: H,
) where
    A: FnMut() -> AF,
    AF: Future<Output = std::io::Result<C>>,
    H: Fn(C) -> HF,
    HF: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = AcceptBackoff::new(what);
    loop {
        let connection = tokio::select! {
            accepted = accept() => match accepted {
                Ok(c) => { backoff.succeeded(); c }
                Err(e) => { backoff.failed(&e).await; continue; }
            },
            _ = stop.changed() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let work = handle(connection);
        tokio::spawn(async move {
            work.await;
            drop(slot);
        });
    }
}

/// Reads an HTTP request head (up to the blank line), at most `MAX_HEAD`
/// bytes.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(head).ok()
}

/// Serves one metrics connection: `GET /metrics` gets `body()`, anything
/// else an error; then the connection closes.
pub async fn serve_metrics_request(
    mut stream: tokio::net::TcpStream,
    body: impl FnOnce() -> String,
) {
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await;
    let request_line = match &head {
        Ok(Some(h)) => h.lines().next().unwrap_or(""),
        _ => "",
    };
    let mut words = request_line.split(' ');
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, content) = match (head.is_ok(), method, path) {
        (false, _, _) => ("408 Request Timeout", String::new()),
        (true, "GET", "/metrics") => ("200 OK", body()),
        (true, "GET", _) => ("404 Not Found", "try /metrics\n".into()),
        _ => ("400 Bad Request", String::new()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{content}",
        content.len()
    );
    let write = stream.write_all(response.as_bytes());
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, write).await;
}
