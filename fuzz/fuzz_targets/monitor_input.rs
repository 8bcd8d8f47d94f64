//! What network monitoring reads from peers and sources: the `monitor`
//! tag, a device set a peer sends (JSON, then checked against its tag),
//! CNML, and a stored ring row (a corrupt file must be an error too).
//! The first byte picks the decoder. Nothing may panic; an
//! accepted tag is written back the same way; an accepted device set has
//! the digest its tag claims, in canonical order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nuvol_monitor::component::{parse_tag, tag_value};
use nuvol_monitor::devices::{parse_cnml, Snmp};
use nuvol_monitor::exchange::{accept, Stored};
use nuvol_monitor::rings::StoredPoint;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 4 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Some((w, g, d)) = parse_tag(text) {
                assert_eq!(parse_tag(&tag_value(w, g, &d)), Some((w, g, d)));
            }
        }
        1 => {
            if let Ok(s) = serde_json::from_slice::<Stored>(rest) {
                let (g, d) = (s.generation, s.set.digest());
                if let Ok(ok) = accept(s, g, &d) {
                    assert_eq!(ok.set.digest(), d);
                    assert!(ok.set.devices.windows(2).all(|w| w[0].id < w[1].id));
                }
            }
        }
        3 => {
            if let Ok(p) = StoredPoint::decode(rest) {
                assert_eq!(StoredPoint::decode(&p.encode()), Ok(p));
            }
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            if let Ok((set, report)) = parse_cnml(&text, &Snmp::default()) {
                assert!(set.devices.len() <= report.seen);
            }
        }
    }
});
