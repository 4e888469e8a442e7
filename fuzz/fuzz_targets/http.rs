//! An HTTP request's opening: method, path, Host, User-Agent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sensor_user::detect::inspect;

fuzz_target!(|data: &[u8]| {
    if let Some(r) = inspect::http_request(data) {
        for value in [Some(&r.path), r.host.as_ref(), r.user_agent.as_ref()].into_iter().flatten() {
            assert!(!value.chars().any(char::is_control), "strings are escaped when read");
        }
    }
});
