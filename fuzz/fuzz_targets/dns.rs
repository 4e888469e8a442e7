//! A DNS message: the question, the answers, the name's split and entropy.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sensor_user::detect::dns;

fuzz_target!(|data: &[u8]| {
    if let Some(q) = dns::parse(data) {
        let (_domain, sub) = dns::split_name(&q.name);
        let _ = dns::entropy(&sub);
        assert!(!q.name.chars().any(char::is_control), "names are escaped when read");
    }
    let _ = dns::answers(data);
});
