//! Kerberos messages in a payload sample (either framing), and request
//! bodies found in a sample's tail.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sensor_user::detect::kerberos;

fuzz_target!(|data: &[u8]| {
    let _ = kerberos::parse(data);
    let _ = kerberos::request_tail(data);
});
