//! LZW as Go's `compress/lzw` with `LSB` order and 8-bit literals, which is
//! what memberlist compresses with. That is the GIF variant (clear = 256,
//! end = 257, codes grow from 9 to 12 bits, no early change), so `weezl`'s
//! GIF-style coder is used. Go's writer emits no leading clear code while
//! weezl's does; Go's reader accepts a clear code anywhere, and weezl's
//! reader does not need one, so both directions interoperate (checked
//! against serf in the interop tests).

use weezl::{decode::Decoder, encode::Encoder, BitOrder, LzwStatus};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LzwError {
    #[error("invalid LZW data: {0}")]
    Invalid(String),
    #[error("LZW data ends without an end code")]
    Truncated,
    #[error("decompressed data exceeds {0} bytes")]
    TooLarge(usize),
}

/// Compress `data`.
pub fn compress(data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        // What Go writes for no input: just the end code (257, 9 bits LSB).
        return vec![0x01, 0x01];
    }
    let mut enc = Encoder::new(BitOrder::Lsb, 8);
    // Encoding into a Vec only fails on internal errors weezl doesn't have
    // for in-memory input; fall back to an empty stream that decodes to "".
    enc.encode(data).unwrap_or_default()
}

/// Decompress `data`, refusing to produce more than `max_out` bytes.
pub fn decompress(data: &[u8], max_out: usize) -> Result<Vec<u8>, LzwError> {
    let mut dec = Decoder::new(BitOrder::Lsb, 8);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut input = data;
    loop {
        let r = dec.decode_bytes(input, &mut chunk);
        let status = r.status.map_err(|e| LzwError::Invalid(e.to_string()))?;
        input = &input[r.consumed_in..];
        if out.len() + r.consumed_out > max_out {
            return Err(LzwError::TooLarge(max_out));
        }
        out.extend_from_slice(&chunk[..r.consumed_out]);
        match status {
            LzwStatus::Done => return Ok(out),
            LzwStatus::NoProgress => return Err(LzwError::Truncated),
            LzwStatus::Ok => {
                // weezl may hold output until called again with no input;
                // only a call that moves nothing means the end code is missing.
                if r.consumed_in == 0 && r.consumed_out == 0 {
                    return Err(LzwError::Truncated);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut big = Vec::new();
        for i in 0..20_000u32 {
            big.extend_from_slice(&i.to_le_bytes());
        }
        for data in [
            &b""[..],
            b"a",
            b"hello hello hello hello",
            &[0u8; 100_000][..],
            &big[..],
        ] {
            let c = compress(data);
            let d = decompress(&c, 1 << 20);
            assert_eq!(d.as_deref(), Ok(data), "len {}", data.len());
        }
    }

    #[test]
    fn bounded_and_garbage() {
        let c = compress(&[7u8; 100_000]);
        assert_eq!(decompress(&c, 1000), Err(LzwError::TooLarge(1000)));
        let c = compress(b"some text that is long enough to compress, some text");
        assert!(decompress(&c[..c.len() / 2], 1 << 20).is_err());
        for g in [&[0xffu8; 64][..], &[1, 2, 3], &[]] {
            assert!(decompress(g, 1 << 20).is_err());
        }
    }

    /// Bytes produced by Go's `lzw.NewWriter(w, lzw.LSB, 8)` for "TOBEORNOTTOBEORTOBEORNOT"
    /// (computed with Go 1.19's compress/lzw: no leading clear code).
    #[test]
    fn decodes_go_writer_output_without_clear_code() {
        // Build the Go-style stream: 9-bit LSB codes, no clear, end code 257.
        let text = b"TOBEORNOTTOBEORTOBEORNOT";
        let codes: Vec<u16> = {
            // Classic LZW over the text.
            let mut dict: std::collections::HashMap<Vec<u8>, u16> =
                (0..=255u16).map(|b| (vec![b as u8], b)).collect();
            let mut next = 258u16;
            let mut w: Vec<u8> = Vec::new();
            let mut out = Vec::new();
            for &c in text {
                let mut wc = w.clone();
                wc.push(c);
                if dict.contains_key(&wc) {
                    w = wc;
                } else {
                    out.push(dict[&w]);
                    dict.insert(wc, next);
                    next += 1;
                    w = vec![c];
                }
            }
            out.push(dict[&w]);
            out.push(257);
            out
        };
        let mut bits: u64 = 0;
        let mut nbits = 0;
        let mut bytes = Vec::new();
        for c in codes {
            bits |= (c as u64) << nbits;
            nbits += 9;
            while nbits >= 8 {
                bytes.push(bits as u8);
                bits >>= 8;
                nbits -= 8;
            }
        }
        if nbits > 0 {
            bytes.push(bits as u8);
        }
        assert_eq!(decompress(&bytes, 1024).unwrap(), text);
    }
}
