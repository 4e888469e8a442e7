//! An outlet: a sink that is sent to over the network (the webhook,
//! syslog), fed from its spool by a thread of its own, oldest alert first.
//! A failed send is retried with exponential back-off (1 s doubling to
//! 5 min), so an outage costs the receiver nothing when it comes back and
//! loses no alert; a receiver that refuses an alert for good (an HTTP 4xx
//! other than 408 and 429) has it dropped, counted and logged.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        mpsc::{Receiver, RecvTimeoutError},
        Arc,
    },
    time::Duration,
};

use log::{info, warn};

use super::spool::Spool;

/// Why a send failed.
#[derive(Debug)]
pub enum SendError {
    /// Worth retrying: the receiver is down, slow, or overloaded.
    Retry(String),
    /// The receiver refused this alert: retrying would not help.
    Refused(String),
}

/// Something alerts are sent to.
pub trait Sink: Send {
    fn send(&mut self, alert: &[u8]) -> Result<(), SendError>;
    /// The receiver as logs may name it: no credentials, no path.
    fn describe(&self) -> String;
    /// The longest wait between retries.
    fn max_backoff(&self) -> Duration {
        MAX_BACKOFF
    }
}

/// An outlet's figures, for the metrics.
#[derive(Debug, Default)]
pub struct OutletStats {
    pub sent: AtomicU64,
    /// Sends that failed and were retried.
    pub retried: AtomicU64,
    /// Alerts the receiver refused, and alerts a full spool could not take.
    pub refused: AtomicU64,
    pub dropped: AtomicU64,
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Sends the spool's alerts to `sink` until `wake` is closed (sensord
/// stopping): new alerts wake it; a failure waits out the back-off.
pub fn run(
    name: &str,
    mut sink: Box<dyn Sink>,
    spool: Arc<Spool>,
    wake: Receiver<()>,
    stats: Arc<OutletStats>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut failing = false;
    loop {
        let Some((n, alert)) = spool.oldest() else {
            match wake.recv_timeout(Duration::from_secs(1)) {
                Err(RecvTimeoutError::Disconnected) => return,
                _ => continue,
            }
        };
        match sink.send(&alert) {
            Ok(()) => {
                spool.done(n);
                stats.sent.fetch_add(1, Relaxed);
                if failing {
                    info!("{name}: {} takes alerts again", sink.describe());
                }
                failing = false;
                backoff = FIRST_BACKOFF;
            }
            Err(SendError::Refused(why)) => {
                spool.done(n);
                stats.refused.fetch_add(1, Relaxed);
                warn!(
                    "{name}: {} refused an alert ({why}); it is dropped",
                    sink.describe()
                );
            }
            Err(SendError::Retry(why)) => {
                stats.retried.fetch_add(1, Relaxed);
                if !failing {
                    warn!(
                        "{name}: {} failed ({why}); retrying with back-off up to {}s, \
                         alerts wait in {}",
                        sink.describe(),
                        sink.max_backoff().as_secs(),
                        spool.dir().display()
                    );
                }
                failing = true;
                if let Err(RecvTimeoutError::Disconnected) = sleep_or_stop(&wake, backoff) {
                    return;
                }
                backoff = (backoff * 2).min(sink.max_backoff());
            }
        }
    }
}

/// Waits `pause`, or returns at once when the sender side is gone. New
/// alerts do not cut a back-off short.
fn sleep_or_stop(wake: &Receiver<()>, pause: Duration) -> Result<(), RecvTimeoutError> {
    let until = std::time::Instant::now() + pause;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match wake.recv_timeout(left) {
            Err(RecvTimeoutError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            _ => continue,
        }
    }
}
