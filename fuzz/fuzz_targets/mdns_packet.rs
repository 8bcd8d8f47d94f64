//! mDNS packets from the LAN, parsed by the `mdns-sd` version nuvol ships
//! (through its `unstable-fuzz-api` entry point, the parser its daemon runs
//! on every datagram). Release builds abort on panic, so a panic in this
//! third-party parser would take the whole agent down: this target is run to
//! show that the pinned version does not (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mdns_sd::fuzz_api::parse_packet(data);
});
