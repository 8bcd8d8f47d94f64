//! A deliberately simple LZW decoder with the observable behaviour of Go's
//! `compress/lzw` reader (LSB, 8-bit literals), used as an oracle for
//! `nuvol_wire::lzw::decompress` by the tests and the `lzw_decompress` fuzz
//! target. Written from the format's rules, one code at a time:
//!
//! - 256 resets the dictionary and the width (9 bits); 257 ends the stream;
//! - every other code adds the entry `(previous code, first byte of this
//!   code's expansion)` at the next free slot, unless it follows a reset;
//! - a code equal to the next free slot expands to `previous + first byte of
//!   previous` (the KwKwK case);
//! - the width grows when the next free slot reaches `1 << width`; at 12 bits
//!   a full dictionary stops growing until the next reset (deferred clear);
//! - a code above the next free slot is invalid; running out of input before
//!   the end code is an unexpected EOF. Bytes after the end code are ignored.
//!
//! Its agreement with Go 1.19 itself was checked on 20,000+ random code
//! streams (see tests/fixtures/README.md).

#![allow(dead_code)]

#[derive(Debug, PartialEq, Eq)]
pub enum RefError {
    InvalidCode,
    UnexpectedEof,
    TooLarge,
}

const CLEAR: u32 = 256;
const EOF: u32 = 257;
const MAX_WIDTH: u32 = 12;

pub fn decode(data: &[u8], max_out: usize) -> Result<Vec<u8>, RefError> {
    // prefix[c], suffix[c]: entry c is expansion(prefix[c]) + suffix[c].
    let mut prefix = vec![0u32; 1 << MAX_WIDTH];
    let mut suffix = vec![0u8; 1 << MAX_WIDTH];
    let mut width = 9u32;
    let mut next = EOF + 1; // next free slot once a previous code exists
    let mut prev: Option<u32> = None;
    let (mut bits, mut nbits, mut pos) = (0u64, 0u32, 0usize);
    let mut out = Vec::new();
    let mut scratch = Vec::new();

    // Expansion of an existing code, walking the prefix chain.
    let expand = |code: u32, prefix: &[u32], suffix: &[u8], buf: &mut Vec<u8>| {
        buf.clear();
        let mut c = code;
        // Each entry's prefix is a smaller code, so this ends; bound it anyway.
        for _ in 0..(1 << MAX_WIDTH) {
            if c < CLEAR {
                buf.push(c as u8);
                break;
            }
            buf.push(suffix[c as usize]);
            c = prefix[c as usize];
        }
        buf.reverse();
    };

    loop {
        while nbits < width {
            let Some(&b) = data.get(pos) else {
                return Err(RefError::UnexpectedEof);
            };
            bits |= u64::from(b) << nbits;
            nbits += 8;
            pos += 1;
        }
        let code = (bits & ((1 << width) - 1)) as u32;
        bits >>= width;
        nbits -= width;

        if code == CLEAR {
            width = 9;
            next = EOF + 1;
            prev = None;
            continue;
        }
        if code == EOF {
            return Ok(out);
        }
        // With a previous code, `next` is the slot this code will fill; the
        // highest readable code is `next` (KwKwK). Without one (right after
        // a reset, or while the full dictionary waits for a clear), codes up
        // to `next - 1` exist.
        let highest = if prev.is_some() { next } else { next - 1 };
        if code > highest {
            return Err(RefError::InvalidCode);
        }
        match prev {
            Some(p) if code == next => {
                expand(p, &prefix, &suffix, &mut scratch);
                let first = scratch[0];
                scratch.push(first);
            }
            _ => expand(code, &prefix, &suffix, &mut scratch),
        }
        if let Some(p) = prev {
            if next < (1 << MAX_WIDTH) {
                prefix[next as usize] = p;
                suffix[next as usize] = scratch[0];
            }
        }
        if out.len() + scratch.len() > max_out {
            return Err(RefError::TooLarge);
        }
        out.extend_from_slice(&scratch);

        // Advance: after a reset the first code takes no slot.
        if prev.is_some() {
            next += 1;
        }
        prev = Some(code);
        if next >= (1 << width) {
            if width < MAX_WIDTH {
                width += 1;
            } else {
                // Full: stop adding entries until a clear code.
                next = 1 << MAX_WIDTH;
                prev = None;
            }
        }
    }
}
