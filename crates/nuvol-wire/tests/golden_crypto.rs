//! Golden tests against bytes captured from real serf 0.9.4 agents
//! (memberlist v0.2.2, Go 1.19) on loopback: see tests/fixtures/README.md
//! for how they were made and with which keys.
//!
//! What they prove:
//! - our AES-GCM keyring opens what serf seals, for AES-256 and AES-128
//!   keys, UDP (no associated data) and TCP streams (the `[10][len]` header
//!   as associated data), and rejects it with the wrong key, the wrong AAD
//!   or any flipped byte;
//! - key rotation done by serf itself (`serf keys -install/-use/-remove`)
//!   behaves like our keyring: old packets need the old key, the keyring
//!   tries every key, and serf's keyring file is read and rewritten byte for
//!   byte;
//! - `lzw::decompress` reads Go's LZW as serf sends it (UDP and push/pull),
//!   and `lzw::compress` of the decompressed bytes reproduces serf's
//!   compressed bytes exactly, so Go reads ours as it reads its own;
//! - underneath, every message is valid memberlist framing (types 0..=13,
//!   CRC, compound) carrying valid msgpack (walked strictly by
//!   tests/support/walk.rs).

mod support;

use nuvol_wire::lzw;
use nuvol_wire::security::{
    decrypt, encrypt, encrypted_length, generate_key, parse_key, Key, Keyring, SecurityError,
};
use support::walk::{self, map_get, Msg};

/// AES-256 key the `enc` capture started with (serf keygen output).
const K1: &str = "E6TP4hiX7BaIHRfjgXDkQ5mHBsqNpon+HQl90BILDOQ=";
/// AES-256 key installed and made primary during the `enc` capture.
const K2: &str = "IikrwqihkmPqSlG6LyfUQ/0pUpvAj7/xJs7e6oWLyLA=";
/// AES-128 key of the `enc16` capture.
const K16: &str = "HFePSmwVamvoqMaVsOh4vg==";

fn fixture(name: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/serf/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn key(b64: &str) -> Key {
    parse_key(b64).unwrap()
}

fn ring(keys: &[&str]) -> Keyring {
    let keys: Vec<Key> = keys.iter().map(|k| key(k)).collect();
    Keyring::new(keys.clone(), keys[0].clone()).unwrap()
}

/// `path:type` for each message, with the Serf type for user messages.
fn shape(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .map(|m| {
            let p = if m.path.is_empty() { "-" } else { &m.path };
            match &m.serf {
                Some((st, _)) => format!("{p}:{}/serf{st}", m.ty),
                None => format!("{p}:{}", m.ty),
            }
        })
        .collect()
}

/// UDP fixtures: file, keys that must open it, expected message shape.
const UDP: &[(&str, &[&str], &[&str])] = &[
    (
        "aes256-k1-udp-crc-compound-alive.bin",
        &[K1],
        &["crc/compound:4", "crc/compound:4"],
    ),
    ("aes256-k1-udp-ping.bin", &[K1], &["-:0"]),
    ("aes256-k1-udp-compress-ack.bin", &[K1], &["compress:2"]),
    (
        "aes256-k1-udp-crc-compress-user-event.bin",
        &[K1],
        &["crc/compress:8/serf3"],
    ),
    (
        "aes256-k1-udp-crc-compress-compound.bin",
        &[K1],
        &[
            "crc/compress/compound:8/serf4",
            "crc/compress/compound:8/serf3",
        ],
    ),
    (
        "aes256-k2-udp-crc-compress-user-event.bin",
        &[K2],
        &["crc/compress:8/serf3"],
    ),
    (
        "aes256-k2-udp-compound-ack-dead.bin",
        &[K2],
        &["compound:2", "compound:5"],
    ),
    (
        "aes128-udp-crc-compress-user-event.bin",
        &[K16],
        &["crc/compress:8/serf3"],
    ),
    ("plain-udp-compress-ack.bin", &[], &["compress:2"]),
    (
        "plain-udp-crc-compress-user-event.bin",
        &[],
        &["crc/compress:8/serf3"],
    ),
    (
        "plain-udp-crc-compress-compound.bin",
        &[],
        &[
            "crc/compress/compound:8/serf4",
            "crc/compress/compound:8/serf3",
        ],
    ),
    (
        "plain-udp-compress-compound.bin",
        &[],
        &["compress/compound:0", "compress/compound:8/serf3"],
    ),
];

/// TCP push/pull streams: file, keys, name of the node whose state it carries.
const TCP: &[(&str, &[&str], &str)] = &[
    ("aes256-k1-tcp-push-pull-request.bin", &[K1], "b"),
    ("aes256-k1-tcp-push-pull-response.bin", &[K1], "a"),
    ("aes128-tcp-push-pull-request.bin", &[K16], "b"),
    ("plain-tcp-push-pull-request.bin", &[], "b"),
    ("plain-tcp-push-pull-response.bin", &[], "a"),
];

#[test]
fn serf_udp_packets_decrypt_and_decode() {
    for (name, keys, want) in UDP {
        let pkt = fixture(name);
        let kr = (!keys.is_empty()).then(|| ring(keys));
        if let Some(kr) = &kr {
            // serf seals with encryption version 1: no padding.
            assert_eq!(pkt[0], 1, "{name}");
            let plain = kr.decrypt(&pkt, &[]).unwrap();
            assert_eq!(encrypted_length(1, plain.len()), pkt.len(), "{name}");
            assert!(plain[0] <= 13, "{name}: type {}", plain[0]);
        }
        let msgs = walk::walk_udp(&pkt, kr.as_ref()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(shape(&msgs), *want, "{name}");
        assert!(msgs.iter().all(|m| m.ty <= 13));
    }
}

#[test]
fn serf_user_events_carry_the_sent_payload() {
    let payload = "compress me please ".repeat(20);
    for (name, keys, event) in [
        (
            "aes256-k1-udp-crc-compress-user-event.bin",
            &[K1][..],
            "deploy",
        ),
        ("aes128-udp-crc-compress-user-event.bin", &[K16], "deploy"),
        ("plain-udp-crc-compress-user-event.bin", &[], "deploy"),
        (
            "aes256-k2-udp-crc-compress-user-event.bin",
            &[K2],
            "after-rotation",
        ),
    ] {
        let kr = (!keys.is_empty()).then(|| ring(keys));
        let msgs = walk::walk_udp(&fixture(name), kr.as_ref()).unwrap();
        let (st, body) = msgs[0].serf.as_ref().unwrap();
        assert_eq!(*st, 3, "messageUserEventType");
        assert_eq!(map_get(body, "Name").and_then(|v| v.as_str()), Some(event));
        let p = map_get(body, "Payload").unwrap();
        let p = p
            .as_slice()
            .or_else(|| p.as_str().map(str::as_bytes))
            .unwrap();
        assert_eq!(p, payload.as_bytes(), "{name}");
    }
}

#[test]
fn serf_push_pull_streams_decrypt_with_header_as_aad() {
    for (name, keys, node) in TCP {
        let stream = fixture(name);
        let kr = (!keys.is_empty()).then(|| ring(keys));
        if let Some(kr) = &kr {
            assert_eq!(stream[0], 10, "encryptMsg");
            let len = u32::from_be_bytes(stream[1..5].try_into().unwrap()) as usize;
            assert_eq!(len + 5, stream.len(), "{name}: one sealed message");
            let (hdr, sealed) = stream.split_at(5);
            let plain = kr.decrypt(sealed, hdr).unwrap();
            assert_eq!(encrypted_length(1, plain.len()), len);
            assert_eq!(plain[0], 9, "push/pull state is compressed");
            // The header is authenticated: no AAD, or another length, fails.
            assert_eq!(kr.decrypt(sealed, &[]), Err(SecurityError::NoKeyDecrypts));
            let mut bad = hdr.to_vec();
            bad[4] ^= 1;
            assert_eq!(kr.decrypt(sealed, &bad), Err(SecurityError::NoKeyDecrypts));
        } else {
            assert_eq!(stream[0], 9, "compressMsg");
        }
        let mut msgs = vec![];
        let used = walk::walk_stream(&stream, kr.as_ref(), &mut msgs)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(used, stream.len());
        let want = if kr.is_some() {
            "encrypt/compress:6"
        } else {
            "compress:6"
        };
        assert_eq!(shape(&msgs), [want], "{name}");
        // [header, one node state, Serf's push/pull user state]
        let v = &msgs[0].values;
        assert_eq!(v.len(), 3, "{name}");
        assert_eq!(map_get(&v[0], "Nodes").and_then(|n| n.as_u64()), Some(1));
        assert_eq!(map_get(&v[0], "Join").and_then(|n| n.as_bool()), Some(true));
        assert_eq!(
            map_get(&v[1], "Name").and_then(|n| n.as_str()),
            Some(*node),
            "{name}"
        );
        assert!(map_get(&v[2], "StatusLTimes").is_some(), "{name}");
    }
}

#[test]
fn key_rotation_done_by_serf() {
    let before = [
        "aes256-k1-udp-crc-compound-alive.bin",
        "aes256-k1-udp-ping.bin",
        "aes256-k1-udp-compress-ack.bin",
        "aes256-k1-udp-crc-compress-user-event.bin",
        "aes256-k1-udp-crc-compress-compound.bin",
    ];
    let after = [
        "aes256-k2-udp-crc-compress-user-event.bin",
        "aes256-k2-udp-compound-ack-dead.bin",
    ];
    let k1_only = ring(&[K1]);
    let k2_only = ring(&[K2]);
    // serf's keyring after `keys -install K2` and after `keys -use K2`.
    let installed = ring(&[K1, K2]);
    let used = ring(&[K2, K1]);
    for name in before {
        let p = fixture(name);
        assert!(k1_only.decrypt(&p, &[]).is_ok(), "{name}");
        assert_eq!(k2_only.decrypt(&p, &[]), Err(SecurityError::NoKeyDecrypts));
        // A secondary key still opens old traffic.
        assert_eq!(used.decrypt(&p, &[]), k1_only.decrypt(&p, &[]));
        assert!(installed.decrypt(&p, &[]).is_ok());
    }
    for name in after {
        let p = fixture(name);
        assert!(k2_only.decrypt(&p, &[]).is_ok(), "{name}");
        assert_eq!(k1_only.decrypt(&p, &[]), Err(SecurityError::NoKeyDecrypts));
        assert_eq!(installed.decrypt(&p, &[]), k2_only.decrypt(&p, &[]));
        assert!(used.decrypt(&p, &[]).is_ok());
    }
    // Same through our own rotation API, starting from K1 like agent a.
    let mut kr = ring(&[K1]);
    kr.add_key(&key(K2)).unwrap();
    kr.use_key(&key(K2)).unwrap();
    assert_eq!(kr, used);
    assert_eq!(kr.remove_key(&key(K2)), Err(SecurityError::RemovePrimary));
    kr.remove_key(&key(K1)).unwrap();
    assert_eq!(kr, k2_only);
    assert!(kr.decrypt(&fixture(before[0]), &[]).is_err());
    assert!(kr.decrypt(&fixture(after[0]), &[]).is_ok());
    // Unrelated keys of every size open nothing.
    for wrong in [generate_key(), key(K16), Key::new(&[0u8; 24]).unwrap()] {
        for name in before.iter().chain(&after) {
            assert_eq!(
                decrypt([&wrong], &fixture(name), &[]),
                Err(SecurityError::NoKeyDecrypts)
            );
        }
    }
}

#[test]
fn serf_keyring_files_round_trip_byte_for_byte() {
    for (name, keys) in [
        ("keyring-after-install.json", &[K1, K2][..]),
        ("keyring-after-use.json", &[K2, K1]),
        ("keyring-after-remove.json", &[K2]),
    ] {
        let text = String::from_utf8(fixture(name)).unwrap();
        let kr = Keyring::from_file_json(&text).unwrap();
        assert_eq!(kr, ring(keys), "{name}");
        assert_eq!(kr.to_file_json(), text, "{name}: serf's exact bytes");
    }
}

#[test]
fn tampered_or_truncated_serf_packets_are_rejected() {
    let kr = ring(&[K1]);
    for name in [
        "aes256-k1-udp-ping.bin",
        "aes256-k1-udp-crc-compress-user-event.bin",
    ] {
        let p = fixture(name);
        // Byte 0 (the version) is not authenticated in memberlist's format;
        // every other byte is.
        for i in 1..p.len() {
            for bit in [0x01u8, 0x80] {
                let mut t = p.clone();
                t[i] ^= bit;
                assert_eq!(
                    kr.decrypt(&t, &[]),
                    Err(SecurityError::NoKeyDecrypts),
                    "{name} byte {i}"
                );
            }
        }
        for cut in 0..p.len() {
            assert!(kr.decrypt(&p[..cut], &[]).is_err(), "{name} cut {cut}");
        }
        let mut longer = p.clone();
        longer.push(0);
        assert!(kr.decrypt(&longer, &[]).is_err());
        let mut v2 = p.clone();
        v2[0] = 2;
        assert_eq!(kr.decrypt(&v2, &[]), Err(SecurityError::Version(2)));
    }
    let stream = fixture("aes256-k1-tcp-push-pull-request.bin");
    for i in 5..stream.len() {
        let mut t = stream.clone();
        t[i] ^= 0x10;
        assert!(kr.decrypt(&t[5..], &t[..5]).is_err(), "stream byte {i}");
    }
}

/// Every LZW stream serf sent (UDP and push/pull, encrypted or not): we
/// decompress it, and compressing the result gives serf's bytes back.
#[test]
fn serf_lzw_streams_decompress_and_recompress_identically() {
    let mut seen = 0;
    for (name, keys, _) in UDP {
        let pkt = fixture(name);
        let plain = if keys.is_empty() {
            pkt
        } else {
            ring(keys).decrypt(&pkt, &[]).unwrap()
        };
        for buf in walk::compressed_bufs(&plain).unwrap() {
            let raw = lzw::decompress(&buf, 1 << 20).unwrap();
            assert!(raw[0] <= 13, "{name}");
            assert_eq!(lzw::compress(&raw), buf, "{name}: Go's exact bytes");
            assert!(lzw::decompress(&buf, raw.len() - 1).is_err());
            seen += 1;
        }
    }
    for (name, keys, _) in TCP {
        let stream = fixture(name);
        let plain = if keys.is_empty() {
            stream
        } else {
            ring(keys).decrypt(&stream[5..], &stream[..5]).unwrap()
        };
        let bufs = walk::compressed_bufs(&plain).unwrap();
        assert_eq!(bufs.len(), 1, "{name}");
        let raw = lzw::decompress(&bufs[0], 1 << 20).unwrap();
        assert_eq!(raw[0], 6, "{name}: pushPullMsg");
        assert_eq!(lzw::compress(&raw), bufs[0], "{name}: Go's exact bytes");
        seen += 1;
    }
    assert_eq!(seen, 14, "LZW streams in the fixtures");
}

/// What we seal, memberlist-style, opens the way serf's own packets do
/// (same layout, same keyring path), for both encryption versions.
#[test]
fn our_sealing_matches_serf_layout() {
    let kr = ring(&[K1]);
    let serf_pkt = fixture("aes256-k1-udp-crc-compress-compound.bin");
    let plain = kr.decrypt(&serf_pkt, &[]).unwrap();
    let ours = encrypt(1, &key(K1), &plain, &[]);
    assert_eq!(ours.len(), serf_pkt.len());
    assert_eq!(ours[0], serf_pkt[0]);
    assert_eq!(kr.decrypt(&ours, &[]).unwrap(), plain);
    assert_eq!(
        shape(&walk::walk_udp(&ours, Some(&kr)).unwrap()),
        shape(&walk::walk_udp(&serf_pkt, Some(&kr)).unwrap())
    );
    let v0 = encrypt(0, &key(K1), &plain, &[]);
    assert_eq!(v0.len(), encrypted_length(0, plain.len()));
    assert_eq!(kr.decrypt(&v0, &[]).unwrap(), plain);
    // A stream the way memberlist's encryptLocalState builds it.
    let stream = fixture("aes256-k1-tcp-push-pull-request.bin");
    let plain = kr.decrypt(&stream[5..], &stream[..5]).unwrap();
    let mut hdr = vec![10u8];
    hdr.extend_from_slice(&(encrypted_length(1, plain.len()) as u32).to_be_bytes());
    assert_eq!(hdr, stream[..5]);
    let mut ours = hdr.clone();
    ours.extend(kr.encrypt_primary(&plain, &hdr));
    let mut msgs = vec![];
    assert_eq!(
        walk::walk_stream(&ours, Some(&kr), &mut msgs).unwrap(),
        stream.len()
    );
}
