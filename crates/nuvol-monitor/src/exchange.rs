//! Which device set the monitors use, sans-I/O.
//!
//! Each monitor holds one device set with a **generation** (seconds since
//! the epoch when a node's own source, its CNML or TOML list, last
//! changed) and advertises `(generation, digest)` in its `monitor` tag.
//! The newest pair wins: a monitor that sees a newer one among the alive
//! monitors fetches that set from its holder (an application stream over
//! the gossip transport, encrypted with the gossip key), checks the
//! digest, and keeps it in `DATA_DIR/monitor-devices.json`. A node that
//! configures no devices adopts whatever set the others have.
//!
//! Across restarts the stored generation is kept while the node's source
//! is unchanged (same digest), so restarting a node with an old config
//! never overrides a newer set; an edited source gets a newer generation
//! than any seen, so an operator's change spreads to every monitor.

use crate::devices::DeviceSet;
use serde::{Deserialize, Serialize};

/// What a monitor keeps (and sends to a peer that asks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Stored {
    pub generation: u64,
    /// The digest of this node's own source when it was last loaded.
    pub source_digest: String,
    pub set: DeviceSet,
}

/// The state to start with: `source` is what this node's config gives
/// (`has_source`: a CNML file or devices are configured), `stored` what
/// it kept, `now` the clock in seconds.
pub fn start(source: DeviceSet, has_source: bool, stored: Option<Stored>, now: u64) -> Stored {
    let source_digest = source.digest();
    match stored {
        // Unchanged source: keep what was held (possibly a newer set
        // adopted from a peer).
        Some(s) if s.source_digest == source_digest => s,
        Some(s) if !has_source => Stored { source_digest, ..s },
        None if !has_source => Stored {
            generation: 0,
            source_digest,
            set: source,
        },
        prev => Stored {
            generation: now.max(prev.map_or(0, |s| s.generation + 1)),
            source_digest,
            set: source,
        },
    }
}

/// The holder to fetch from: the alive monitor advertising the newest
/// `(generation, digest)`, if newer than `mine` (equal pairs: the lowest
/// name).
pub fn fetch_from<'a>(mine: (u64, &str), peers: &'a [(String, u64, String)]) -> Option<&'a str> {
    peers
        .iter()
        .filter(|(_, g, d)| (*g, d.as_str()) > mine)
        .max_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)).then_with(|| b.0.cmp(&a.0)))
        .map(|(n, _, _)| n.as_str())
}

/// Check a fetched set against what its holder advertised.
pub fn accept(got: Stored, generation: u64, digest: &str) -> Result<Stored, String> {
    if got.generation != generation {
        return Err(format!(
            "the peer sent generation {}, its tag says {generation}",
            got.generation
        ));
    }
    let d = got.set.digest();
    if d != digest {
        return Err(format!(
            "the peer sent a set of digest {d}, its tag says {digest}"
        ));
    }
    // Re-sort and dedupe: never trust the peer's order.
    let set = DeviceSet::new(got.set.devices);
    if set.digest() != digest {
        return Err("the peer's set is not in canonical order".into());
    }
    Ok(Stored { set, ..got })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::Device;

    fn set(ids: &[&str]) -> DeviceSet {
        DeviceSet::new(
            ids.iter()
                .enumerate()
                .map(|(i, id)| Device {
                    id: (*id).into(),
                    title: String::new(),
                    address: std::net::Ipv4Addr::new(10, 0, 0, u8::try_from(i + 1).unwrap()),
                    snmp: None,
                    interfaces: Vec::new(),
                })
                .collect(),
        )
    }

    #[test]
    fn restarts_keep_the_generation_and_an_edited_source_is_newer() {
        let a = set(&["r1", "r2"]);
        let first = start(a.clone(), true, None, 1000);
        assert_eq!(first.generation, 1000);
        // Restarted later with the same config: the same generation.
        let again = start(a.clone(), true, Some(first.clone()), 5000);
        assert_eq!(again, first);
        // A newer set adopted from a peer is kept over an unchanged source.
        let adopted = Stored {
            generation: 2000,
            set: set(&["r9"]),
            ..first.clone()
        };
        assert_eq!(start(a.clone(), true, Some(adopted.clone()), 5000), adopted);
        // An edited source: newer than anything held, even with a clock
        // behind.
        let b = set(&["r1", "r2", "r3"]);
        let edited = start(b.clone(), true, Some(adopted), 1500);
        assert_eq!(edited.generation, 2001);
        assert_eq!(edited.set, b);
        // No source: generation 0, then whatever was adopted.
        let none = start(DeviceSet::default(), false, None, 7000);
        assert_eq!(none.generation, 0);
        let kept = Stored {
            generation: 3000,
            source_digest: "x".into(),
            set: b.clone(),
        };
        let s = start(DeviceSet::default(), false, Some(kept), 7000);
        assert_eq!((s.generation, s.set), (3000, b));
    }

    #[test]
    fn the_newest_holder_is_asked_and_what_it_sends_is_checked() {
        let peers = vec![
            ("b".to_owned(), 10, "00000000000000aa".to_owned()),
            ("c".to_owned(), 20, "00000000000000bb".to_owned()),
            ("a".to_owned(), 20, "00000000000000bb".to_owned()),
            ("d".to_owned(), 5, "00000000000000ff".to_owned()),
        ];
        assert_eq!(fetch_from((10, "00000000000000aa"), &peers), Some("a"));
        assert_eq!(fetch_from((20, "00000000000000bb"), &peers), None);
        assert_eq!(fetch_from((30, "0000000000000000"), &peers), None);
        let s = Stored {
            generation: 20,
            source_digest: String::new(),
            set: set(&["r1"]),
        };
        let d = s.set.digest();
        assert!(accept(s.clone(), 20, &d).is_ok());
        assert!(accept(s.clone(), 21, &d)
            .unwrap_err()
            .contains("generation"));
        assert!(accept(s.clone(), 20, "0000000000000000")
            .unwrap_err()
            .contains("digest"));
        // Out of order on the wire: refused (its digest differs anyway).
        let mut shuffled = set(&["r1", "r2"]);
        let d2 = shuffled.digest();
        shuffled.devices.reverse();
        let bad = Stored {
            generation: 20,
            source_digest: String::new(),
            set: shuffled,
        };
        assert!(accept(bad, 20, &d2).is_err());
    }
}
