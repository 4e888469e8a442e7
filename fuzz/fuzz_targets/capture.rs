//! A capture file: every frame read is decoded and fed to the flow tracker.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sensor_user::detect::{capture, pcapfile};

fuzz_target!(|data: &[u8]| {
    let mut tracker = capture::FlowTracker::default();
    let _ = pcapfile::read_bytes(data, &mut |frame| {
        if let Some(link) = capture::Link::from_linktype(frame.link.0) {
            if let Ok(p) = capture::decode(link, frame.ts, frame.orig_len as u64, frame.data) {
                tracker.packet(&p, &mut |_| {});
            }
        }
    });
    tracker.finish(&mut |_| {});
});
