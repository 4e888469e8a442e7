//! "First dropped packet", measured with a UDP stream: a sender on one
//! host sends a datagram every 0.5 ms; a receiver on another stamps each
//! arrival in its log. The first dropped datagram is the one after the last
//! arrival, so a drop is dated to within one gap of the stream.

use labnet::Lab;

use crate::support::lab::{background, Job};

/// The receiver: port 9999, one line per arrival, "SOURCE UNIX_NS".
const RECEIVER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9999))
while True:
    data, (host, _) = s.recvfrom(64)
    sys.stdout.write(f"{host} {time.time_ns()}\n")
    sys.stdout.flush()
"#;

/// Starts the receiver on `host` (its log: logs/receiver.log).
pub fn receiver(lab: &Lab, host: &str) -> Job {
    background(lab, host, "receiver", &format!("python3 -c '{RECEIVER}'"))
}

/// Starts a sender on `host` to `to`:9999, one datagram every 0.5 ms.
pub fn sender(lab: &Lab, host: &str, name: &str, to: &str) -> Job {
    let script = format!(
        "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nwhile True:\n    s.sendto(b\"x\", (\"{to}\", 9999))\n    time.sleep(0.0005)\n"
    );
    background(lab, host, name, &format!("python3 -c '{script}'"))
}

/// Arrival times (unix ns) in the receiver's log, from `from` or anyone.
pub fn arrivals(lab: &Lab, from: Option<&str>) -> Vec<u64> {
    let log = std::fs::read_to_string(lab.dir.join("logs/receiver.log")).unwrap_or_default();
    log.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(h, _)| from.is_none_or(|f| *h == f))
        .filter_map(|(_, t)| t.trim().parse().ok())
        .collect()
}

/// The median gap between arrivals: the resolution of "first drop".
pub fn median_gap(times: &[u64]) -> u64 {
    let mut gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    gaps.get(gaps.len() / 2).copied().unwrap_or(0)
}

/// For each (asked, lifted) window of a decision, the time from asking to
/// the first datagram dropped: the one after the last arrival before the
/// decision was lifted. `None` for a window in which nothing was dropped.
pub fn first_drops(times: &[u64], windows: &[(u64, u64)]) -> Vec<Option<f64>> {
    let gap = median_gap(times);
    windows
        .iter()
        .map(|(asked, lifted)| {
            let last = times
                .iter()
                .rfind(|t| *t < lifted)
                .copied()
                .unwrap_or(*asked);
            // Arrivals up to the lift: nothing was dropped.
            (last + gap * 4 < *lifted).then(|| (last.max(*asked) + gap - asked) as f64 / 1e6)
        })
        .collect()
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
