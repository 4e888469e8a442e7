//! A TLS ClientHello's server name, as read from a payload sample.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sensor_user::detect::inspect;

fuzz_target!(|data: &[u8]| {
    let _ = inspect::tls_server_name(data);
    let _ = inspect::server_name(data);
});
