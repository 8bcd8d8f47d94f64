#![no_main]
//! Go-compatible LZW: bounded decompression of anything, round trips.
use libfuzzer_sys::fuzz_target;
use nuvol_wire::lzw;

fuzz_target!(|data: &[u8]| {
    let _ = lzw::decompress(data, 1 << 20);
    let c = lzw::compress(data);
    assert_eq!(lzw::decompress(&c, data.len() + 1).unwrap(), data);
});
