//! DCE/RPC request PDUs in an SMB or TCP payload sample, and an ICMP
//! error's quoted datagram.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sensor_user::detect::{event, lateral};

fuzz_target!(|data: &[u8]| {
    let _ = lateral::request_opnums(data);
    let _ = event::refused(data);
});
