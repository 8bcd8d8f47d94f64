#![no_main]
//! memberlist AES-GCM payloads and keys.
//!
//! - Any bytes given to the keyring's decrypt (UDP: no AAD; TCP: 5-byte
//!   header AAD) are an error or a plaintext, never a panic; key and keyring
//!   file parsing never panic either.
//! - Sealing fuzzer-chosen plaintext with a fuzzer-chosen key size, version
//!   and AAD opens to the same plaintext, has the documented length, and
//!   stops opening if any authenticated byte (all but the version byte) is
//!   flipped or the AAD changes.
use libfuzzer_sys::fuzz_target;
use nuvol_wire::security::{
    decrypt, encrypt, encrypted_length, parse_key, Key, Keyring, SecurityError,
};

fuzz_target!(|data: &[u8]| {
    let (Ok(k1), Ok(k2)) = (Key::new(&[7u8; 32]), Key::new(&[9u8; 16])) else {
        return;
    };
    let Ok(kr) = Keyring::new(vec![k2], k1) else {
        return;
    };
    let _ = kr.decrypt(data, &[]);
    let (hdr, body) = data.split_at(data.len().min(5));
    let _ = kr.decrypt(body, hdr);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_key(s);
        let _ = Keyring::from_file_json(s);
    }

    // Round trip: [version][key size][key byte][aad len][flip at][msg...]
    let [v, ks, kb, aad_len, flip, rest @ ..] = data else {
        return;
    };
    let version = v % 2;
    let size = [16, 24, 32][usize::from(*ks % 3)];
    let Ok(key) = Key::new(&vec![*kb; size]) else {
        return;
    };
    let (aad, msg) = rest.split_at(rest.len().min(usize::from(aad_len % 8)));
    let sealed = encrypt(version, &key, msg, aad);
    assert_eq!(sealed.len(), encrypted_length(version, msg.len()));
    assert_eq!(sealed[0], version);
    assert_eq!(decrypt([&key], &sealed, aad).as_deref(), Ok(msg));
    let mut other_aad = aad.to_vec();
    other_aad.push(*flip);
    assert_eq!(
        decrypt([&key], &sealed, &other_aad),
        Err(SecurityError::NoKeyDecrypts)
    );
    let i = 1 + usize::from(*flip) % (sealed.len() - 1);
    let mut tampered = sealed.clone();
    tampered[i] ^= 1;
    assert_eq!(
        decrypt([&key], &tampered, aad),
        Err(SecurityError::NoKeyDecrypts)
    );
    // Only the primary-first keyring order matters, not which key matches.
    let Ok(kr2) = Keyring::new(vec![key.clone()], kr.primary().clone()) else {
        return;
    };
    assert_eq!(kr2.decrypt(&sealed, aad).as_deref(), Ok(msg));
});
