//! One frame of each link type, decoded and tracked.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sensor_user::detect::capture::{decode, FlowTracker, Link};

fuzz_target!(|data: &[u8]| {
    for link in [Link::Ethernet, Link::LinuxSll, Link::LinuxSll2, Link::RawIp, Link::Loopback] {
        let mut tracker = FlowTracker::default();
        if let Ok(p) = decode(link, 1, data.len() as u64 + 7, data) {
            tracker.packet(&p, &mut |_| {});
        }
        if let Ok(p) = decode(link, 2, data.len() as u64, data) {
            tracker.packet(&p, &mut |_| {});
        }
        tracker.finish(&mut |_| {});
    }
});
