//! LZW exactly as memberlist uses it: Go's `compress/lzw` with `lzw.LSB`
//! bit order and 8-bit literals (`compressPayload` / `decompressBuffer`).
//!
//! # Why `weezl`'s GIF coder is the same format
//!
//! Go's `compress/lzw` implements the GIF flavour of LZW, and so does `weezl`
//! when built with [`Decoder::new`] / [`Encoder::new`] (not the TIFF
//! constructors):
//!
//! - codes 0..=255 are literals, 256 is *clear*, 257 is *end of data*, the
//!   first dictionary entry is 258;
//! - codes start 9 bits wide and grow by one bit as soon as the dictionary
//!   holds a code that no longer fits ("no early change", unlike TIFF), up to
//!   12 bits; codes are packed least-significant-bit first;
//! - a clear code resets the dictionary and the width to 9 bits;
//! - when the dictionary is full at 12 bits a decoder keeps reading 12-bit
//!   codes without adding entries until the next clear ("deferred clear").
//!
//! Details that differ between the two encoders, none of which matter to a
//! decoder (checked against Go 1.19's reader, the one serf 0.9.4 is built
//! with, by `tests/golden_lzw.rs` and the `lzw_decompress` fuzz target):
//!
//! - Go >= 1.17 starts every stream with a clear code, as weezl does (older
//!   Go writers did not; both decoders accept a stream without one). An empty
//!   input is therefore `[clear, end]` = `00 03 02` in both.
//! - Go's writer emits its clear code when the *next* entry would be 4095,
//!   weezl one entry later (after using code 4095); a GIF decoder - Go's and
//!   weezl's - accepts either, since entry 4095 is a valid 12-bit code.
//! - weezl's encoder occasionally forgets a dictionary entry (when a prefix
//!   gains many successors) and spells it with shorter codes instead; the
//!   stream is still valid, just not byte-identical to Go's.
//!
//! For inputs that neither fill the dictionary nor hit that case (every
//! memberlist UDP packet, most push/pull states) the output is byte-for-byte
//! what Go writes.

use weezl::{decode::Decoder, encode::Encoder, BitOrder, LzwStatus};

/// Why [`decompress`] refused a stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum LzwError {
    /// A code that is neither a literal, clear, end nor a known entry (Go's
    /// `lzw: invalid code`).
    #[error("invalid LZW data: {0}")]
    Invalid(String),
    /// The input ended before the end code (Go's `unexpected EOF`).
    #[error("LZW data ends without an end code")]
    Truncated,
    /// Decoding would produce more than the caller's limit.
    #[error("decompressed data exceeds {0} bytes")]
    TooLarge(usize),
}

/// Literal width memberlist uses (`lzwLitWidth`).
const LIT_WIDTH: u8 = 8;

/// Compress `data` into a Go-`compress/lzw`-readable stream (LSB, 8-bit).
pub fn compress(data: &[u8]) -> Vec<u8> {
    // weezl only fails for bytes wider than the literal width, impossible
    // with 8-bit literals. Should it ever fail, an empty result makes the
    // receiver reject the message rather than read wrong data.
    Encoder::new(BitOrder::Lsb, LIT_WIDTH)
        .encode(data)
        .unwrap_or_default()
}

/// Decompress a Go `compress/lzw` (LSB, 8-bit) stream, refusing to produce
/// more than `max_out` bytes. Bytes after the end code are ignored, as Go's
/// reader does.
pub fn decompress(data: &[u8], max_out: usize) -> Result<Vec<u8>, LzwError> {
    const CHUNK: usize = 16 * 1024;
    let mut dec = Decoder::new(BitOrder::Lsb, LIT_WIDTH);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; CHUNK.min(max_out.saturating_add(1)).max(1)];
    let mut input = data;
    let mut idle = 0u32;
    loop {
        let r = dec.decode_bytes(input, &mut chunk);
        let status = r.status.map_err(|e| LzwError::Invalid(e.to_string()))?;
        input = input.get(r.consumed_in..).unwrap_or_default();
        let produced = chunk.get(..r.consumed_out).unwrap_or_default();
        if produced.len() > max_out - out.len() {
            return Err(LzwError::TooLarge(max_out));
        }
        out.extend_from_slice(produced);
        match status {
            LzwStatus::Done => return Ok(out),
            LzwStatus::NoProgress => return Err(LzwError::Truncated),
            LzwStatus::Ok => {
                // weezl keeps up to 64 bits of input buffered and may work
                // through them (e.g. consecutive clear codes) in calls that
                // consume and produce nothing but still advance; NoProgress
                // is its "stuck" signal. Bound such calls all the same.
                if r.consumed_in == 0 && r.consumed_out == 0 {
                    idle += 1;
                    if idle > 64 {
                        return Err(LzwError::Truncated);
                    }
                } else {
                    idle = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pack codes LSB-first, 9 to 12 bits wide by the GIF/Go width rules,
    /// for hand-made streams.
    fn pack(codes: &[u16]) -> Vec<u8> {
        let (mut bits, mut n, mut width, mut next) = (0u64, 0u32, 9u32, 258u32);
        let mut out = Vec::new();
        let mut first = true;
        for &c in codes {
            bits |= u64::from(c) << n;
            n += width;
            while n >= 8 {
                out.push(bits as u8);
                bits >>= 8;
                n -= 8;
            }
            if c == 256 {
                width = 9;
                next = 258;
                first = true;
                continue;
            }
            if !first {
                next += 1;
            }
            first = false;
            if next >= (1 << width) && width < 12 {
                width += 1;
            }
        }
        if n > 0 {
            out.push(bits as u8);
        }
        out
    }

    #[test]
    fn round_trips() {
        let mut big = Vec::new();
        for i in 0..20_000u32 {
            big.extend_from_slice(&i.to_le_bytes());
        }
        let mut state = 0x1234_5678u32;
        let random: Vec<u8> = (0..50_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        for data in [
            &b""[..],
            b"a",
            b"ab",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            b"hello hello hello hello",
            &[0u8; 100_000][..],
            &big[..],
            &random[..],
        ] {
            let c = compress(data);
            let d = decompress(&c, data.len());
            assert_eq!(d.as_deref(), Ok(data), "len {}", data.len());
        }
    }

    /// Byte-for-byte what Go 1.19's `lzw.NewWriter(w, lzw.LSB, 8)` writes
    /// (produced with tests/fixtures/lzw/golzw.go).
    #[test]
    fn matches_go_writer_for_small_inputs() {
        assert_eq!(compress(b""), [0x00, 0x03, 0x02]);
        assert_eq!(compress(b"a"), [0x00, 0xc3, 0x04, 0x04]);
        assert_eq!(
            compress(b"TOBEORNOTTOBEORTOBEORNOT"),
            [
                0x00, 0xa9, 0x3c, 0x11, 0x52, 0xe4, 0x89, 0x14, 0x27, 0x4f, 0xa8, 0x08, 0x24, 0x68,
                0x70, 0x61, 0xc1, 0x83, 0x09, 0x03, 0x02
            ]
        );
    }

    #[test]
    fn dictionary_resets_on_long_input() {
        // > 4096 distinct two-byte sequences: the dictionary fills and the
        // encoder must emit clear codes (at 12-bit width) to start over.
        let mut data = Vec::new();
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                data.extend_from_slice(&[a, b]);
            }
        }
        let c = compress(&data);
        assert_eq!(decompress(&c, data.len()).unwrap(), data);
        assert_eq!(
            decompress(&c, data.len() - 1),
            Err(LzwError::TooLarge(data.len() - 1))
        );
    }

    #[test]
    fn bounded_and_garbage() {
        let c = compress(&[7u8; 100_000]);
        assert_eq!(decompress(&c, 1000), Err(LzwError::TooLarge(1000)));
        assert_eq!(decompress(&c, 0), Err(LzwError::TooLarge(0)));
        assert_eq!(decompress(&compress(b""), 0), Ok(vec![]));
        let c = compress(b"some text that is long enough to compress, some text");
        for cut in 0..c.len() {
            assert!(decompress(&c[..cut], 1 << 20).is_err(), "cut at {cut}");
        }
        for g in [&[0xffu8; 64][..], &[1, 2, 3], &[], &[0x00], &[0x00, 0x03]] {
            assert!(decompress(g, 1 << 20).is_err(), "{g:?}");
        }
        // A code beyond the next dictionary slot.
        assert!(matches!(
            decompress(&pack(&[256, 65, 300, 257]), 100),
            Err(LzwError::Invalid(_))
        ));
    }

    #[test]
    fn go_reader_quirks() {
        // Pre-1.17 Go writers: no leading clear code.
        assert_eq!(
            decompress(&pack(&[65, 66, 258, 257]), 100).unwrap(),
            b"ABAB"
        );
        // End code alone (old Go's output for an empty input).
        assert_eq!(decompress(&[0x01, 0x01], 10).unwrap(), b"");
        // A clear right before the end code (Go's writer does this when the
        // last code fills the dictionary), and clears anywhere.
        assert_eq!(
            decompress(&pack(&[256, 65, 256, 256, 66, 256, 257]), 100).unwrap(),
            b"AB"
        );
        // Consecutive clear codes (weezl works through them in calls that
        // neither consume nor produce).
        assert_eq!(decompress(&pack(&[256, 256, 257]), 10).unwrap(), b"");
        assert_eq!(
            decompress(
                &pack(&[256, 256, 256, 256, 256, 256, 256, 256, 256, 65, 257]),
                10
            )
            .unwrap(),
            b"A"
        );
        // The KwKwK case: a code equal to the next free slot.
        assert_eq!(
            decompress(&pack(&[256, 65, 258, 257]), 100).unwrap(),
            b"AAA"
        );
        // Trailing bytes after the end code are ignored.
        let mut c = compress(b"payload");
        c.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(decompress(&c, 100).unwrap(), b"payload");
    }

    #[test]
    fn deferred_clear_when_full() {
        // Fill the dictionary (258..=4095) with literals only, keep sending
        // 12-bit literals without a clear, then use entry 4095.
        let mut codes = vec![256u16];
        let mut expect = Vec::new();
        for i in 0..(4096 - 258 + 1 + 10) {
            let b = (i % 251) as u16;
            codes.push(b);
            expect.push(b as u8);
        }
        // Entry 4095 is (literal #3837, literal #3838).
        codes.push(4095);
        expect.extend_from_slice(&[expect[3837], expect[3838]]);
        codes.push(257);
        assert_eq!(decompress(&pack(&codes), 1 << 20).unwrap(), expect);
    }
}
