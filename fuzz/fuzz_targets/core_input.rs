#![no_main]
//! The whole gossip core fed arbitrary packets and stream frames: it must
//! never panic and must keep its own membership.
use libfuzzer_sys::fuzz_target;
use nuvol_gossip::{Config, Gossip, Profile};
use std::collections::BTreeMap;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let cfg = Config::new("fuzz", Profile::Lan);
    let Ok(mut g) = Gossip::new(
        cfg,
        "127.0.0.1:7946".parse().unwrap(),
        BTreeMap::new(),
        None,
        1,
        Duration::ZERO,
    ) else {
        return;
    };
    let from = "127.0.0.2:7946".parse().unwrap();
    let mut t = Duration::ZERO;
    for chunk in data.split(|b| *b == 0xfe) {
        t += Duration::from_millis(50);
        g.handle_packet(from, chunk, t);
        if let Ok(Some((frame, _))) = nuvol_wire::memberlist::parse_stream(chunk) {
            if let Ok(msg) = g.open_stream(frame) {
                let _ = g.handle_stream(from, msg, t);
            }
        }
        g.handle_timeout(t);
        let _ = g.drain_outputs();
    }
    assert!(g.members().iter().any(|m| m.name == "fuzz"));
});
