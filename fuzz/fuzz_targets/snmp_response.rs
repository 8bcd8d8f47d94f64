//! Whatever a UDP socket an SNMP agent answers on hands the monitor: the
//! response decoder must never panic, and what it decodes is bounded by
//! the datagram (every varbind takes at least a few bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nuvol_monitor::snmp::decode_response;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = decode_response(data) {
        assert!(r.varbinds.len() <= data.len() / 4, "{r:?}");
        for (oid, _) in &r.varbinds {
            assert!(oid.len() <= data.len(), "{oid:?}");
        }
    }
});
