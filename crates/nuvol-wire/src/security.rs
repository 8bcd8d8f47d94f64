//! memberlist's payload encryption and keyring.
//!
//! AES-GCM with a 16, 24 or 32-byte key (serf's `keygen` makes 32). A sealed
//! message is `[version][nonce:12][ciphertext][tag:16]`; version 0 pads the
//! plaintext PKCS#7-style to the AES block size, version 1 (memberlist
//! protocol >= 1, what serf sends) does not. UDP packets have no associated
//! data; TCP streams use their 5-byte `[10][len]` header.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;

const NONCE_SIZE: usize = 12;
const TAG_SIZE: usize = 16;
const BLOCK_SIZE: usize = 16;
const VERSION_SIZE: usize = 1;

type Aes192Gcm = aes_gcm::AesGcm<aes_gcm::aes::Aes192, aes_gcm::aead::consts::U12>;

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum SecurityError {
    #[error("key size must be 16, 24 or 32 bytes")]
    KeySize,
    #[error("key is not valid base64: {0}")]
    KeyBase64(String),
    #[error("no keys in the keyring")]
    Empty,
    #[error("Requested key is not in the keyring")]
    NotInstalled,
    #[error("Removing the primary key is not allowed")]
    RemovePrimary,
    #[error("cannot decrypt: payload too small")]
    TooSmall,
    #[error("cannot decrypt: unsupported encryption version {0}")]
    Version(u8),
    #[error("No installed keys could decrypt the message")]
    NoKeyDecrypts,
    #[error("invalid keyring file: {0}")]
    File(String),
}

/// A gossip encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} bytes)", self.0.len())
    }
}

impl Key {
    pub fn new(bytes: &[u8]) -> Result<Key, SecurityError> {
        match bytes.len() {
            16 | 24 | 32 => Ok(Key(bytes.to_vec())),
            _ => Err(SecurityError::KeySize),
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.clone()
    }
}

impl std::ops::Deref for Key {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// Parse a base64 (standard alphabet) key as `serf keygen` prints it.
pub fn parse_key(s: &str) -> Result<Key, SecurityError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| SecurityError::KeyBase64(e.to_string()))?;
    Key::new(&raw)
}

/// Encode a key as base64.
pub fn encode_key(k: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// A new random 32-byte key.
pub fn generate_key() -> Key {
    let mut k = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut k);
    Key(k)
}

/// Bytes added by encryption (worst case for version 0).
pub fn encrypted_overhead(version: u8) -> usize {
    match version {
        0 => VERSION_SIZE + NONCE_SIZE + TAG_SIZE + BLOCK_SIZE,
        _ => VERSION_SIZE + NONCE_SIZE + TAG_SIZE,
    }
}

/// Exact sealed length of a `len`-byte plaintext.
pub fn encrypted_length(version: u8, len: usize) -> usize {
    match version {
        0 => VERSION_SIZE + NONCE_SIZE + len + (BLOCK_SIZE - len % BLOCK_SIZE) + TAG_SIZE,
        _ => VERSION_SIZE + NONCE_SIZE + len + TAG_SIZE,
    }
}

fn seal(key: &[u8], nonce: &[u8; NONCE_SIZE], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let n = Nonce::from_slice(nonce);
    let p = Payload { msg, aad };
    match key.len() {
        16 => Aes128Gcm::new_from_slice(key).ok()?.encrypt(n, p).ok(),
        24 => Aes192Gcm::new_from_slice(key).ok()?.encrypt(n, p).ok(),
        32 => Aes256Gcm::new_from_slice(key).ok()?.encrypt(n, p).ok(),
        _ => None,
    }
}

fn open(key: &[u8], nonce: &[u8], ct: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let n = Nonce::from_slice(nonce);
    let p = Payload { msg: ct, aad };
    match key.len() {
        16 => Aes128Gcm::new_from_slice(key).ok()?.decrypt(n, p).ok(),
        24 => Aes192Gcm::new_from_slice(key).ok()?.decrypt(n, p).ok(),
        32 => Aes256Gcm::new_from_slice(key).ok()?.decrypt(n, p).ok(),
        _ => None,
    }
}

/// Seal `msg` with `key` as encryption `version` (0 or 1).
pub fn encrypt(version: u8, key: &Key, msg: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_SIZE];
    rand::thread_rng().fill_bytes(&mut nonce);
    let plain;
    let body = if version == 0 {
        let pad = BLOCK_SIZE - msg.len() % BLOCK_SIZE;
        let mut p = msg.to_vec();
        p.extend(std::iter::repeat_n(pad as u8, pad));
        plain = p;
        &plain[..]
    } else {
        msg
    };
    // Keys are validated on construction, so sealing cannot fail.
    let ct = seal(key, &nonce, body, aad).unwrap_or_default();
    let mut out = Vec::with_capacity(VERSION_SIZE + NONCE_SIZE + ct.len());
    out.push(if version == 0 { 0 } else { 1 });
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Open a sealed message with one of `keys`.
pub fn decrypt<'a>(
    keys: impl IntoIterator<Item = &'a Key>,
    msg: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, SecurityError> {
    if msg.len() < VERSION_SIZE + NONCE_SIZE + TAG_SIZE {
        return Err(SecurityError::TooSmall);
    }
    let version = msg[0];
    if version > 1 {
        return Err(SecurityError::Version(version));
    }
    let nonce = &msg[VERSION_SIZE..VERSION_SIZE + NONCE_SIZE];
    let ct = &msg[VERSION_SIZE + NONCE_SIZE..];
    for k in keys {
        if let Some(plain) = open(k, nonce, ct, aad) {
            if version == 0 {
                return unpad(plain);
            }
            return Ok(plain);
        }
    }
    Err(SecurityError::NoKeyDecrypts)
}

fn unpad(mut p: Vec<u8>) -> Result<Vec<u8>, SecurityError> {
    let Some(&pad) = p.last() else {
        return Err(SecurityError::TooSmall);
    };
    let pad = pad as usize;
    if pad == 0 || pad > BLOCK_SIZE || pad > p.len() {
        return Err(SecurityError::NoKeyDecrypts);
    }
    p.truncate(p.len() - pad);
    Ok(p)
}

/// The set of keys a node accepts; the primary (first) one encrypts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyring {
    /// `keys[0]` is the primary key.
    keys: Vec<Key>,
}

impl Keyring {
    /// A keyring of `keys` with `primary` (installed if missing) first.
    pub fn new(keys: Vec<Key>, primary: Key) -> Result<Keyring, SecurityError> {
        let mut kr = Keyring {
            keys: vec![primary.clone()],
        };
        for k in keys {
            if k != primary && !kr.keys.contains(&k) {
                kr.keys.push(k);
            }
        }
        Ok(kr)
    }

    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// All keys, primary first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Install a key (no-op if present). State changes only on success.
    pub fn add_key(&mut self, key: &[u8]) -> Result<(), SecurityError> {
        let k = Key::new(key)?;
        if !self.keys.contains(&k) {
            self.keys.push(k);
        }
        Ok(())
    }

    /// Make an installed key the primary.
    pub fn use_key(&mut self, key: &[u8]) -> Result<(), SecurityError> {
        let pos = self
            .keys
            .iter()
            .position(|k| k.as_bytes() == key)
            .ok_or(SecurityError::NotInstalled)?;
        let k = self.keys.remove(pos);
        self.keys.insert(0, k);
        Ok(())
    }

    /// Remove a key that is not the primary.
    pub fn remove_key(&mut self, key: &[u8]) -> Result<(), SecurityError> {
        if self.keys[0].as_bytes() == key {
            return Err(SecurityError::RemovePrimary);
        }
        self.keys.retain(|k| k.as_bytes() != key);
        Ok(())
    }

    /// Seal with the primary key (encryption version 1, as serf sends).
    pub fn encrypt_primary(&self, msg: &[u8], aad: &[u8]) -> Vec<u8> {
        encrypt(1, &self.keys[0], msg, aad)
    }

    /// Open with any installed key, primary first.
    pub fn decrypt(&self, msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecurityError> {
        decrypt(&self.keys, msg, aad)
    }

    /// serf's keyring file: a JSON array of base64 keys, primary first.
    pub fn from_file_json(text: &str) -> Result<Keyring, SecurityError> {
        let list = parse_json_string_array(text).map_err(SecurityError::File)?;
        let mut keys = Vec::new();
        for s in &list {
            keys.push(parse_key(s).map_err(|e| SecurityError::File(format!("{s:?}: {e}")))?);
        }
        let Some(primary) = keys.first().cloned() else {
            return Err(SecurityError::Empty);
        };
        Keyring::new(keys, primary)
    }

    pub fn to_file_json(&self) -> String {
        let items: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("  \"{}\"", encode_key(k)))
            .collect();
        format!("[\n{}\n]\n", items.join(",\n"))
    }
}

/// Parse a JSON array of strings without escapes beyond `\"` and `\\`
/// (base64 never needs them); anything else is an error.
fn parse_json_string_array(text: &str) -> Result<Vec<String>, String> {
    let t = text.trim();
    let inner = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or("expected a JSON array of base64 keys")?;
    let mut out = Vec::new();
    for part in inner.split(',') {
        let p = part.trim();
        if p.is_empty() {
            if inner.trim().is_empty() {
                break;
            }
            return Err("empty entry in key list".into());
        }
        let s = p
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .ok_or_else(|| format!("expected a string, got {p:?}"))?;
        if s.contains('"') || s.contains('\\') {
            return Err(format!("unexpected escape in {s:?}"));
        }
        out.push(s.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(b: u8, n: usize) -> Key {
        Key::new(&vec![b; n]).unwrap()
    }

    #[test]
    fn both_versions_round_trip_with_every_key_size() {
        for n in [16, 24, 32] {
            let key = k(1, n);
            for v in [0u8, 1] {
                for msg in [&b""[..], b"x", &[9u8; 16][..], &[3u8; 1000][..]] {
                    let c = encrypt(v, &key, msg, b"aad");
                    assert_eq!(c.len(), encrypted_length(v, msg.len()));
                    assert_eq!(decrypt([&key], &c, b"aad").unwrap(), msg);
                    assert!(decrypt([&key], &c, b"other").is_err());
                }
            }
        }
    }

    #[test]
    fn wrong_key_tampered_truncated() {
        let c = encrypt(1, &k(1, 32), b"secret", &[]);
        assert_eq!(
            decrypt([&k(2, 32)], &c, &[]),
            Err(SecurityError::NoKeyDecrypts)
        );
        let mut t = c.clone();
        t[20] ^= 1;
        assert!(decrypt([&k(1, 32)], &t, &[]).is_err());
        assert_eq!(
            decrypt([&k(1, 32)], &c[..10], &[]),
            Err(SecurityError::TooSmall)
        );
        let mut v = c.clone();
        v[0] = 7;
        assert_eq!(
            decrypt([&k(1, 32)], &v, &[]),
            Err(SecurityError::Version(7))
        );
    }

    #[test]
    fn keyring_rotation() {
        let mut kr = Keyring::new(vec![], k(1, 32)).unwrap();
        let c = kr.encrypt_primary(b"m", &[]);
        kr.add_key(&[2; 32]).unwrap();
        assert_eq!(kr.add_key(&[2; 5]), Err(SecurityError::KeySize));
        assert_eq!(kr.keys().len(), 2);
        kr.use_key(&[2; 32]).unwrap();
        assert_eq!(kr.primary(), &k(2, 32));
        assert_eq!(kr.decrypt(&c, &[]).unwrap(), b"m", "old key still decrypts");
        assert_eq!(kr.remove_key(&[2; 32]), Err(SecurityError::RemovePrimary));
        kr.remove_key(&[1; 32]).unwrap();
        assert!(kr.decrypt(&c, &[]).is_err());
        assert_eq!(kr.use_key(&[9; 32]), Err(SecurityError::NotInstalled));
    }

    #[test]
    fn keys_and_files() {
        let g = generate_key();
        let s = encode_key(&g);
        assert_eq!(parse_key(&s).unwrap(), g);
        assert!(matches!(
            parse_key("not base64!"),
            Err(SecurityError::KeyBase64(_))
        ));
        assert_eq!(parse_key("AAAA"), Err(SecurityError::KeySize));
        let mut kr = Keyring::new(vec![], k(1, 16)).unwrap();
        kr.add_key(&[2; 32]).unwrap();
        let text = kr.to_file_json();
        assert_eq!(Keyring::from_file_json(&text).unwrap(), kr);
        assert!(Keyring::from_file_json("[]").is_err());
        assert!(Keyring::from_file_json("{\"a\":1}").is_err());
        assert!(Keyring::from_file_json("[\"@@@\"]").is_err());
    }
}
