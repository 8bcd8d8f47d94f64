#![no_main]
//! AES-GCM payloads: any input to the keyring's decrypt is an error or the
//! plaintext, never a panic.
use libfuzzer_sys::fuzz_target;
use nuvol_wire::security::{Key, Keyring};

fuzz_target!(|data: &[u8]| {
    let Ok(k1) = Key::new(&[7u8; 32]) else { return };
    let Ok(k2) = Key::new(&[9u8; 16]) else { return };
    let Ok(kr) = Keyring::new(vec![k2], k1) else { return };
    let _ = kr.decrypt(data, &[]);
    let _ = kr.decrypt(data, &[10, 0, 0, 0, 1]);
    let sealed = kr.encrypt_primary(data, b"aad");
    assert_eq!(kr.decrypt(&sealed, b"aad").unwrap(), data);
});
