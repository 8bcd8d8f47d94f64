#![no_main]
//! What reaches the dashboard from outside: form bodies, query strings,
//! `Accept-Language`, cookies, `Host`, join addresses (none may panic), and
//! text other nodes control in names, descriptions and TXT (it never
//! becomes markup).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nuvol_dashboard::fuzzing::request(data);
    if let Ok(s) = std::str::from_utf8(data) {
        nuvol_dashboard::fuzzing::escaping(s);
    }
});
