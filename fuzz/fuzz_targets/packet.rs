#![no_main]
//! memberlist UDP packets: CRC, compress and compound envelopes, every message.
use libfuzzer_sys::fuzz_target;
use nuvol_wire::memberlist::decode_packet;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = decode_packet(data) {
        // Whatever decodes must re-encode and decode to the same messages.
        for m in p.messages {
            let again = decode_packet(&m.encode()).expect("re-encoded message decodes");
            assert_eq!(again.messages, vec![m]);
        }
    }
});
