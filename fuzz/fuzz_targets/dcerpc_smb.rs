//! DCE/RPC PDUs in an SMB or TCP payload sample, and an ICMP error's
//! quoted datagram.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sensor_user::detect::{dcerpc, event};

fuzz_target!(|data: &[u8]| {
    let _ = dcerpc::pdus(data);
    let _ = event::refused(data);
});
