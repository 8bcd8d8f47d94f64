#![no_main]
//! memberlist TCP stream frames (push/pull, ping, user, error, encrypted),
//! read the way the agent reads a stream: bytes arrive in pieces, after
//! each piece `parse_stream` is asked about the buffer, `Ok(None)` means
//! "read more", and a complete frame is taken off the front.
//!
//! Feeding the bytes split at arbitrary points (one byte at a time, and in
//! pieces whose sizes come from the input's first byte) must give the same
//! frames, and the same error or the same incomplete tail, as parsing the
//! whole buffer at once. Plain frames must also re-encode to what decodes
//! to the same message.
use libfuzzer_sys::fuzz_target;
use nuvol_wire::memberlist::{parse_stream, parse_stream_plain, StreamFrame};
use nuvol_wire::msgpack::DecodeError;

#[derive(Debug, PartialEq)]
enum End {
    /// The stream was refused with this error.
    Error(DecodeError),
    /// This many bytes are left waiting for more.
    Pending(usize),
}

/// What reading a stream gave: its frames in order, then how it ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<StreamFrame>,
    end: End,
}

fn read<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut buf: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match parse_stream(&buf) {
                Ok(Some((frame, used))) => {
                    assert!(
                        used > 0 && used <= buf.len(),
                        "used {used} of {}",
                        buf.len()
                    );
                    frames.push(frame);
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(e) => {
                    // How large the buffer had grown is the one thing that
                    // depends on where the pieces were cut.
                    let e = match e {
                        DecodeError::TooLarge(_) => DecodeError::TooLarge(0),
                        e => e,
                    };
                    return Outcome {
                        frames,
                        end: End::Error(e),
                    };
                }
            }
        }
    }
    Outcome {
        frames,
        end: End::Pending(buf.len()),
    }
}

/// `data` cut into pieces of 1 to 16 bytes, sizes from a generator seeded
/// with `seed`.
fn pieces(data: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut x = u32::from(seed) | 0x9e37_0000;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = (x % 16 + 1) as usize;
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

fuzz_target!(|input: &[u8]| {
    let Some((&seed, data)) = input.split_first() else {
        return;
    };
    let whole = read([data]);
    let bytewise = read(data.chunks(1));
    assert_eq!(bytewise, whole, "one byte at a time vs whole");
    let chunked = read(pieces(data, seed));
    assert_eq!(chunked, whole, "pieces (seed {seed}) vs whole");
    for frame in &whole.frames {
        if let StreamFrame::Plain(m) = frame {
            let again = parse_stream_plain(&m.encode()).expect("re-encoded stream decodes");
            assert_eq!(&again, m);
        }
    }
});
