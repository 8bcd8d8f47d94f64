#![no_main]
//! Catalog input from other nodes: the Cloudy `services` tag (any string a
//! peer gossips) and the full-list pull reply. Neither may panic; a decoded
//! reply re-encodes to something that decodes the same.
use libfuzzer_sys::fuzz_target;
use nuvol_catalog::{cloudy, sync};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = cloudy::decode_services(s);
    }
    let mut reply = sync::PULL_REQUEST.to_vec();
    reply.extend_from_slice(data);
    if let Ok((d, list)) = sync::decode_reply(&reply) {
        let again = sync::decode_reply(&sync::encode_reply(&d, &list)).expect("re-decodes");
        assert_eq!(again, (d, list));
    }
    let _ = sync::decode_reply(data);
});
