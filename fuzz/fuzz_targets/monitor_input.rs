//! What network monitoring reads from peers and sources: the `monitor`
//! tag, a device set a peer sends (JSON, then checked against its tag),
//! CNML, a stored ring row, and the samples requests and replies
//! owners exchange (a corrupt file must be an error too).
//! The first byte picks the decoder. Nothing may panic; an
//! accepted tag is written back the same way; an accepted device set has
//! the digest its tag claims, in canonical order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nuvol_monitor::component::{parse_tag, tag_value};
use nuvol_monitor::devices::{parse_cnml, Snmp};
use nuvol_monitor::exchange::{accept, Stored};
use nuvol_monitor::rings::StoredPoint;
use nuvol_monitor::service::{summarize, SamplesReply, SamplesRequest};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 6 {
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
        4 => {
            // What a node asks an owner for (application stream 4).
            if let Ok(r) = serde_json::from_slice::<SamplesRequest>(rest) {
                let back = serde_json::to_vec(&r).unwrap();
                assert!(serde_json::from_slice::<SamplesRequest>(&back).is_ok());
            }
        }
        5 => {
            // An owner's answer: summarised like the API does.
            if let Ok(r) = serde_json::from_slice::<SamplesReply>(rest) {
                let d = nuvol_monitor::devices::Device {
                    id: r.samples.keys().next().cloned().unwrap_or_default(),
                    title: String::new(),
                    address: std::net::Ipv4Addr::LOCALHOST,
                    snmp: None,
                    interfaces: Vec::new(),
                };
                let owners: Vec<String> = r.samples.values().map(|s| s.monitor.clone()).collect();
                let replies = std::collections::BTreeMap::from([(
                    owners.first().cloned().unwrap_or_default(),
                    Ok(r),
                )]);
                let s = summarize(
                    &d,
                    owners,
                    &replies,
                    1_800_000_000,
                    std::time::Duration::from_secs(120),
                );
                let _ = serde_json::to_string(&s).unwrap();
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
