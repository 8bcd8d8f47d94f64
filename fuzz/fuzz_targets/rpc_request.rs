#![no_main]
//! The RPC server's input: msgpack values read incrementally with a size
//! cap, then the accessors the server uses on them.
use libfuzzer_sys::fuzz_target;
use nuvol_rpc::value::{self, ValueReader};

fuzz_target!(|data: &[u8]| {
    let mut r = ValueReader::new(&[][..], 4096);
    // Feed in two pieces to exercise partial reads.
    let (a, b) = data.split_at(data.len() / 2);
    r.feed(a);
    let mut values = Vec::new();
    while let Ok(Some(v)) = r.try_next() {
        values.push(v);
    }
    r.feed(b);
    while let Ok(Some(v)) = r.try_next() {
        values.push(v);
    }
    for v in &values {
        let _ = value::get_str(v, "Command");
        let _ = value::get_u64(v, "Seq");
        let _ = value::get_str_map(v, "Tags");
        let _ = value::get_str_list(v, "Existing");
        let _ = value::get_bytes(v, "Payload");
        let _ = value::get_f64(v, "Error");
    }
});
