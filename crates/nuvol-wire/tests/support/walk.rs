//! An independent, test-only walker over memberlist's packet framing, built
//! on `nuvol_wire::{security, lzw}` and plain `rmpv` (deliberately not on
//! `nuvol_wire::memberlist`, so the golden tests check the crypto and
//! compression layers on their own). Every step is strict: a byte the walker
//! does not understand is an error, so a fixture that decodes proves the
//! layers underneath produced exactly what serf put on the wire.

#![allow(dead_code)]

use nuvol_wire::{lzw, security::Keyring};
use rmpv::Value;

// memberlist v0.2.2 message types (net.go).
pub const PING: u8 = 0;
pub const INDIRECT_PING: u8 = 1;
pub const ACK: u8 = 2;
pub const SUSPECT: u8 = 3;
pub const ALIVE: u8 = 4;
pub const DEAD: u8 = 5;
pub const PUSH_PULL: u8 = 6;
pub const COMPOUND: u8 = 7;
pub const USER: u8 = 8;
pub const COMPRESS: u8 = 9;
pub const ENCRYPT: u8 = 10;
pub const NACK: u8 = 11;
pub const HAS_CRC: u8 = 12;
pub const ERR: u8 = 13;

/// One message found inside a packet or stream, after every envelope.
#[derive(Debug, Clone)]
pub struct Msg {
    /// The envelopes it was found in, outermost first, e.g. "crc/compress/compound".
    pub path: String,
    pub ty: u8,
    /// msgpack values decoded from the body (a push/pull has several).
    pub values: Vec<Value>,
    /// For user messages: Serf's message type and its msgpack body.
    pub serf: Option<(u8, Value)>,
}

/// Largest decompressed payload accepted (memberlist has no limit; the
/// fixtures are tiny).
const MAX_DECOMPRESSED: usize = 10 << 20;

fn read_one(buf: &mut &[u8]) -> Result<Value, String> {
    rmpv::decode::read_value(buf).map_err(|e| format!("msgpack: {e}"))
}

/// Decode exactly one msgpack value filling `body`.
fn read_exact_one(body: &[u8]) -> Result<Value, String> {
    let mut rd = body;
    let v = read_one(&mut rd)?;
    if !rd.is_empty() {
        return Err(format!("{} bytes after the msgpack value", rd.len()));
    }
    Ok(v)
}

pub fn map_get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// The LZW bytes of memberlist's `compress` envelope: the bytes after the
/// type byte are a msgpack map `{"Algo": 0 (LZW), "Buf": <compressed>}`.
pub fn envelope_buf(body: &[u8]) -> Result<Vec<u8>, String> {
    let v = read_exact_one(body)?;
    let algo = map_get(&v, "Algo").and_then(Value::as_u64);
    if algo != Some(0) {
        return Err(format!("compress envelope with Algo {algo:?}"));
    }
    map_get(&v, "Buf")
        .and_then(|b| match b {
            Value::Binary(b) => Some(b.clone()),
            // go-msgpack without WriteExt writes []byte as a raw string.
            Value::String(s) => Some(s.as_bytes().to_vec()),
            _ => None,
        })
        .ok_or_else(|| "compress envelope without Buf".to_string())
}

/// Undo memberlist's `compress` envelope.
pub fn uncompress_envelope(body: &[u8]) -> Result<Vec<u8>, String> {
    lzw::decompress(&envelope_buf(body)?, MAX_DECOMPRESSED).map_err(|e| e.to_string())
}

/// Every LZW stream found in a (decrypted) packet or stream plaintext, for
/// re-compressing: CRC and compound envelopes are looked through.
pub fn compressed_bufs(buf: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let Some((&ty, body)) = buf.split_first() else {
        return Ok(vec![]);
    };
    match ty {
        HAS_CRC if body.len() >= 4 => compressed_bufs(&body[4..]),
        COMPRESS => {
            let lzw_bytes = envelope_buf(body)?;
            let inner = lzw::decompress(&lzw_bytes, MAX_DECOMPRESSED).map_err(|e| e.to_string())?;
            let mut all = vec![lzw_bytes];
            all.extend(compressed_bufs(&inner)?);
            Ok(all)
        }
        COMPOUND => {
            let (&n, rest) = body.split_first().ok_or("short compound")?;
            let n = usize::from(n);
            let (lens, mut parts) = rest.split_at((2 * n).min(rest.len()));
            let mut all = vec![];
            for l in lens.chunks(2) {
                let l = usize::from(u16::from_be_bytes([l[0], l.get(1).copied().unwrap_or(0)]));
                let (part, more) = parts.split_at(l.min(parts.len()));
                all.extend(compressed_bufs(part)?);
                parts = more;
            }
            Ok(all)
        }
        _ => Ok(vec![]),
    }
}

/// Walk a decrypted UDP packet (or any message buffer).
pub fn walk_packet(buf: &[u8], path: &str, out: &mut Vec<Msg>) -> Result<(), String> {
    let (&ty, body) = buf.split_first().ok_or("empty message")?;
    let sub = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}/{name}")
        }
    };
    match ty {
        HAS_CRC => {
            if body.len() < 4 {
                return Err("short CRC envelope".into());
            }
            let (crc, rest) = body.split_at(4);
            let want = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
            if crc32fast::hash(rest) != want {
                return Err("CRC mismatch".into());
            }
            walk_packet(rest, &sub("crc"), out)
        }
        COMPRESS => walk_packet(&uncompress_envelope(body)?, &sub("compress"), out),
        COMPOUND => {
            let (&n, rest) = body.split_first().ok_or("short compound")?;
            let n = usize::from(n);
            if rest.len() < 2 * n {
                return Err("compound lengths truncated".into());
            }
            let (lens, mut parts) = rest.split_at(2 * n);
            for l in lens.chunks(2) {
                let l = usize::from(u16::from_be_bytes([l[0], l[1]]));
                if parts.len() < l {
                    return Err("compound part truncated".into());
                }
                let (part, more) = parts.split_at(l);
                walk_packet(part, &sub("compound"), out)?;
                parts = more;
            }
            if !parts.is_empty() {
                return Err("bytes after compound parts".into());
            }
            Ok(())
        }
        USER => {
            let serf = walk_serf(body)?;
            out.push(Msg {
                path: path.to_string(),
                ty,
                values: vec![],
                serf: Some(serf),
            });
            Ok(())
        }
        PUSH_PULL => {
            let values = walk_push_pull(body)?;
            out.push(Msg {
                path: path.to_string(),
                ty,
                values,
                serf: None,
            });
            Ok(())
        }
        PING | INDIRECT_PING | ACK | SUSPECT | ALIVE | DEAD | NACK | ERR => {
            let v = read_exact_one(body)?;
            out.push(Msg {
                path: path.to_string(),
                ty,
                values: vec![v],
                serf: None,
            });
            Ok(())
        }
        ENCRYPT => Err("encryptMsg inside a packet".into()),
        t => Err(format!("unknown memberlist message type {t}")),
    }
}

/// Serf's payload of a memberlist user message: `[serf type][msgpack]`;
/// relays (9) carry a header and then another Serf message.
pub fn walk_serf(body: &[u8]) -> Result<(u8, Value), String> {
    let (&st, rest) = body.split_first().ok_or("empty user message")?;
    if st > 9 {
        return Err(format!("unknown serf message type {st}"));
    }
    if st == 9 {
        let mut rd = rest;
        let _hdr = read_one(&mut rd)?;
        return walk_serf(rd);
    }
    Ok((st, read_exact_one(rest)?))
}

/// `[pushPullHeader][Nodes × pushNodeState][UserStateLen bytes]`.
pub fn walk_push_pull(body: &[u8]) -> Result<Vec<Value>, String> {
    let mut rd = body;
    let hdr = read_one(&mut rd)?;
    let nodes = map_get(&hdr, "Nodes")
        .and_then(Value::as_u64)
        .ok_or("push/pull header without Nodes")?;
    let user_len = map_get(&hdr, "UserStateLen")
        .and_then(Value::as_u64)
        .ok_or("push/pull header without UserStateLen")? as usize;
    let mut values = vec![hdr];
    for _ in 0..nodes {
        let st = read_one(&mut rd)?;
        for field in [
            "Name",
            "Addr",
            "Port",
            "Meta",
            "Incarnation",
            "State",
            "Vsn",
        ] {
            if map_get(&st, field).is_none() {
                return Err(format!("pushNodeState without {field}"));
            }
        }
        values.push(st);
    }
    if rd.len() != user_len {
        return Err(format!(
            "user state: {} bytes left, header says {user_len}",
            rd.len()
        ));
    }
    if user_len > 0 {
        let (st, v) = walk_serf(rd)?;
        if st != 2 {
            return Err(format!("serf user state of type {st}, want push/pull (2)"));
        }
        values.push(v);
    }
    Ok(values)
}

/// A whole TCP stream as one side sent it: `[10][len:u32 BE][sealed]` when
/// encrypted (the 5-byte header is the AAD), then the plaintext starts with
/// the message type (compress → push/pull for state exchanges). Returns the
/// messages and the number of stream bytes used.
pub fn walk_stream(
    stream: &[u8],
    keyring: Option<&Keyring>,
    out: &mut Vec<Msg>,
) -> Result<usize, String> {
    match (stream.first(), keyring) {
        (Some(&ENCRYPT), Some(kr)) => {
            if stream.len() < 5 {
                return Err("short stream header".into());
            }
            let len = u32::from_be_bytes([stream[1], stream[2], stream[3], stream[4]]) as usize;
            let end = 5usize.checked_add(len).ok_or("length overflow")?;
            let sealed = stream.get(5..end).ok_or("stream shorter than its header")?;
            let plain = kr
                .decrypt(sealed, &stream[..5])
                .map_err(|e| e.to_string())?;
            walk_stream_plain(&plain, "encrypt", out)?;
            Ok(end)
        }
        (Some(&ENCRYPT), None) => Err("encrypted stream but no keyring".into()),
        (Some(_), _) => {
            walk_stream_plain(stream, "", out)?;
            Ok(stream.len())
        }
        (None, _) => Err("empty stream".into()),
    }
}

fn walk_stream_plain(plain: &[u8], path: &str, out: &mut Vec<Msg>) -> Result<(), String> {
    let (&ty, body) = plain.split_first().ok_or("empty stream plaintext")?;
    if ty == COMPRESS {
        let inner = uncompress_envelope(body)?;
        let p = if path.is_empty() {
            "compress".to_string()
        } else {
            format!("{path}/compress")
        };
        return walk_packet(&inner, &p, out);
    }
    walk_packet(plain, path, out)
}

/// Decrypt a UDP packet (no AAD) and walk it.
pub fn walk_udp(packet: &[u8], keyring: Option<&Keyring>) -> Result<Vec<Msg>, String> {
    let mut out = Vec::new();
    match keyring {
        Some(kr) => {
            let plain = kr.decrypt(packet, &[]).map_err(|e| e.to_string())?;
            walk_packet(&plain, "", &mut out)?;
        }
        None => walk_packet(packet, "", &mut out)?,
    }
    Ok(out)
}
