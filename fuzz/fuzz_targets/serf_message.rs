#![no_main]
//! Serf messages carried in memberlist user messages, tags, filters, key
//! responses, conflict records and coordinates in acks.
use libfuzzer_sys::fuzz_target;
use nuvol_wire::serf;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = serf::decode(data) {
        assert_eq!(serf::decode(&m.encode()).expect("re-encoded decodes"), m);
    }
    if let Ok(t) = serf::decode_tags(data) {
        if data.first() == Some(&serf::TAG_MAGIC_BYTE) {
            assert_eq!(serf::decode_tags(&serf::encode_tags(&t)).unwrap(), t);
        }
    }
    let _ = serf::decode_filter(data);
    let _ = serf::MemberRecord::decode(data);
    let _ = serf::KeyResponse::decode(data);
    let _ = serf::KeyRequest::decode(data);
    let _ = serf::WireCoordinate::decode_ping_payload(data);
});
