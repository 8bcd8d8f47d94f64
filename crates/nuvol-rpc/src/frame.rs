//! Framing without trusting the input: msgpack values are cut out of a byte
//! buffer incrementally. A structural scan checks every length the input
//! claims against a size cap *before* anything is allocated or decoded, so
//! garbage yields a typed [`FrameError`], a partial value yields "need more
//! bytes", and nothing panics.
//!
//! The scan is resumable: when a value arrives in many small pieces, each
//! call continues where the previous one stopped instead of starting over.

use rmpv::Value;
use std::io::Cursor;

/// Deepest nesting of arrays and maps accepted (serf's messages nest 4 deep).
pub const MAX_DEPTH: usize = 64;

/// Why bytes could not be framed as msgpack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The value is (or claims to be) larger than the cap.
    #[error("message larger than {max} bytes")]
    TooLarge { max: usize },
    /// Arrays and maps nested deeper than [`MAX_DEPTH`].
    #[error("message nested deeper than {max} levels")]
    TooDeep { max: usize },
    /// A marker msgpack does not define (0xc1).
    #[error("invalid msgpack marker 0x{marker:02x} at byte {offset}")]
    InvalidMarker { marker: u8, offset: usize },
    /// The structure scanned fine but the decoder refused it.
    #[error("malformed msgpack: {0}")]
    Malformed(String),
}

/// Result of one decoding attempt on a buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<T> {
    /// A whole value, which used the first `consumed` bytes.
    Complete { value: T, consumed: usize },
    /// The buffer holds only the beginning of a value.
    NeedMore,
}

/// Resumable structural scanner over one msgpack value.
#[derive(Debug, Default, Clone)]
struct Scanner {
    /// Bytes of the value scanned so far (a position in the buffer).
    pos: usize,
    /// Elements still expected by each open array or map.
    stack: Vec<u64>,
}

enum Step {
    Done(usize),
    NeedMore,
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

impl Scanner {
    /// Continue scanning `buf` (which must start where the value starts and
    /// only ever grow between calls).
    fn scan(&mut self, buf: &[u8], max: usize) -> Result<Step, FrameError> {
        loop {
            let pos = self.pos;
            let Some(&m) = buf.get(pos) else {
                return Ok(Step::NeedMore);
            };
            // (header length, payload length, child count)
            let (hdr, payload, children): (usize, u64, u64) = match m {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, 0, 0),
                0x80..=0x8f => (1, 0, 2 * u64::from(m & 0x0f)),
                0x90..=0x9f => (1, 0, u64::from(m & 0x0f)),
                0xa0..=0xbf => (1, u64::from(m & 0x1f), 0),
                0xc1 => {
                    return Err(FrameError::InvalidMarker {
                        marker: m,
                        offset: pos,
                    })
                }
                0xca => (5, 0, 0),
                0xcb => (9, 0, 0),
                0xcc | 0xd0 => (2, 0, 0),
                0xcd | 0xd1 => (3, 0, 0),
                0xce | 0xd2 => (5, 0, 0),
                0xcf | 0xd3 => (9, 0, 0),
                0xd4 => (3, 0, 0),
                0xd5 => (4, 0, 0),
                0xd6 => (6, 0, 0),
                0xd7 => (10, 0, 0),
                0xd8 => (18, 0, 0),
                0xc4 | 0xd9 | 0xc7 => {
                    // bin8 / str8 / ext8: one length byte (ext adds a type byte)
                    let extra = usize::from(m == 0xc7);
                    let Some(len) = buf.get(pos + 1) else {
                        return Ok(Step::NeedMore);
                    };
                    (2 + extra, u64::from(*len), 0)
                }
                0xc5 | 0xda | 0xc8 => {
                    let extra = usize::from(m == 0xc8);
                    let Some(len) = buf.get(pos + 1..pos + 3) else {
                        return Ok(Step::NeedMore);
                    };
                    (3 + extra, be(len), 0)
                }
                0xc6 | 0xdb | 0xc9 => {
                    let extra = usize::from(m == 0xc9);
                    let Some(len) = buf.get(pos + 1..pos + 5) else {
                        return Ok(Step::NeedMore);
                    };
                    (5 + extra, be(len), 0)
                }
                0xdc => {
                    let Some(n) = buf.get(pos + 1..pos + 3) else {
                        return Ok(Step::NeedMore);
                    };
                    (3, 0, be(n))
                }
                0xdd => {
                    let Some(n) = buf.get(pos + 1..pos + 5) else {
                        return Ok(Step::NeedMore);
                    };
                    (5, 0, be(n))
                }
                0xde => {
                    let Some(n) = buf.get(pos + 1..pos + 3) else {
                        return Ok(Step::NeedMore);
                    };
                    (3, 0, 2 * be(n))
                }
                0xdf => {
                    let Some(n) = buf.get(pos + 1..pos + 5) else {
                        return Ok(Step::NeedMore);
                    };
                    (5, 0, 2 * be(n))
                }
            };
            // Every child takes at least one byte: a claimed count is a
            // claimed size too. Check claims before waiting for them.
            let end = (pos as u64)
                .saturating_add(hdr as u64)
                .saturating_add(payload)
                .saturating_add(children);
            if end > max as u64 {
                return Err(FrameError::TooLarge { max });
            }
            let item_end = pos + hdr + payload as usize;
            if buf.len() < item_end {
                return Ok(Step::NeedMore);
            }
            self.pos = item_end;
            if children > 0 {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(FrameError::TooDeep { max: MAX_DEPTH });
                }
                self.stack.push(children);
                continue;
            }
            // A complete element: close every container it completes.
            loop {
                match self.stack.last_mut() {
                    None => return Ok(Step::Done(self.pos)),
                    Some(left) => {
                        *left -= 1;
                        if *left == 0 {
                            self.stack.pop();
                        } else {
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Decode the msgpack value at the start of `buf`, if it is all there.
///
/// Stateless: a partial value is rescanned from the start on the next call;
/// use [`FrameDecoder`] to read a stream.
pub fn decode_value(buf: &[u8], max: usize) -> Result<Decoded<Value>, FrameError> {
    let mut s = Scanner::default();
    match s.scan(buf, max)? {
        Step::NeedMore => Ok(Decoded::NeedMore),
        Step::Done(n) => Ok(Decoded::Complete {
            value: decode_exact(&buf[..n])?,
            consumed: n,
        }),
    }
}

/// Decode a slice the scanner found to hold exactly one value.
fn decode_exact(bytes: &[u8]) -> Result<Value, FrameError> {
    let mut cur = Cursor::new(bytes);
    rmpv::decode::read_value_with_max_depth(&mut cur, MAX_DEPTH + 2)
        .map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Encode one value.
pub fn encode_value(v: &Value) -> Vec<u8> {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut buf, v);
    buf
}

/// Cuts msgpack values out of a byte stream fed in arbitrary pieces.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    max: usize,
    scan: Scanner,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder refusing values larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max,
            scan: Scanner::default(),
            failed: None,
        }
    }

    /// The size cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Append received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as values.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole value, `Ok(None)` if more bytes are needed. After an
    /// error the stream cannot be resynchronised: every later call returns
    /// the same error.
    pub fn decode(&mut self) -> Result<Option<Value>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.decode_inner();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn decode_inner(&mut self) -> Result<Option<Value>, FrameError> {
        let pending = &self.buf[self.start..];
        match self.scan.scan(pending, self.max)? {
            Step::NeedMore => Ok(None),
            Step::Done(n) => {
                let v = decode_exact(&pending[..n])?;
                self.start += n;
                self.scan = Scanner::default();
                Ok(Some(v))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        Value::Map(vec![
            (Value::from("Name"), Value::from("n1")),
            (Value::from("Payload"), Value::Binary(vec![1, 2, 3])),
            (
                Value::from("List"),
                Value::Array(vec![
                    Value::from(1),
                    Value::from(-300),
                    Value::F64(1.5),
                    Value::Nil,
                    Value::Map(vec![]),
                    Value::Array(vec![]),
                    Value::Ext(5, vec![9; 3]),
                    Value::from(u64::MAX),
                    Value::from("x".repeat(300)),
                    Value::Binary(vec![7; 70000]),
                ]),
            ),
        ])
    }

    #[test]
    fn whole_and_partial() {
        let v = sample();
        let bytes = encode_value(&v);
        match decode_value(&bytes, 1 << 20).unwrap() {
            Decoded::Complete { value, consumed } => {
                assert_eq!(value, v);
                assert_eq!(consumed, bytes.len());
            }
            Decoded::NeedMore => panic!("complete value reported partial"),
        }
        for cut in [0, 1, 5, 100, bytes.len() - 1] {
            assert_eq!(
                decode_value(&bytes[..cut], 1 << 20).unwrap(),
                Decoded::NeedMore
            );
        }
    }

    #[test]
    fn stream_fed_byte_by_byte() {
        let a = sample();
        let b = Value::from("second");
        let mut bytes = encode_value(&a);
        bytes.extend(encode_value(&b));
        let mut d = FrameDecoder::new(1 << 20);
        let mut out = Vec::new();
        for chunk in bytes.chunks(7) {
            d.feed(chunk);
            while let Some(v) = d.decode().unwrap() {
                out.push(v);
            }
        }
        assert_eq!(out, vec![a, b]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn claims_are_checked_before_waiting() {
        // str32 claiming 4 GiB: refused at once, not after buffering.
        let r = decode_value(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'], 1024);
        assert_eq!(r, Err(FrameError::TooLarge { max: 1024 }));
        // array32 with 2^32-1 elements (each at least one byte).
        let r = decode_value(&[0xdd, 0xff, 0xff, 0xff, 0xff], 1 << 20);
        assert_eq!(r, Err(FrameError::TooLarge { max: 1 << 20 }));
        // map32 likewise.
        let r = decode_value(&[0xdf, 0x10, 0, 0, 0], 1 << 20);
        assert_eq!(r, Err(FrameError::TooLarge { max: 1 << 20 }));
        // A fitting claim just waits.
        assert_eq!(
            decode_value(&[0xdb, 0, 0, 0, 10], 1024),
            Ok(Decoded::NeedMore)
        );
    }

    #[test]
    fn garbage_is_typed() {
        assert_eq!(
            decode_value(&[0x91, 0xc1], 100),
            Err(FrameError::InvalidMarker {
                marker: 0xc1,
                offset: 1
            })
        );
        let deep = vec![0x91u8; MAX_DEPTH + 1];
        assert_eq!(
            decode_value(&deep, 1 << 20),
            Err(FrameError::TooDeep { max: MAX_DEPTH })
        );
        let mut d = FrameDecoder::new(100);
        d.feed(&[0xc1]);
        assert!(d.decode().is_err());
        // Sticky: the stream cannot be trusted after garbage.
        d.feed(&[0xc0]);
        assert!(d.decode().is_err());
    }

    #[test]
    fn never_panics_on_any_short_input() {
        // Every 1- and 2-byte prefix, and a few with trailing noise.
        for a in 0..=255u8 {
            let _ = decode_value(&[a], 64);
            for b in 0..=255u8 {
                let _ = decode_value(&[a, b], 64);
                let _ = decode_value(&[a, b, 0xff, 0x00, 0x7f, 0x80, 0x01], 64);
            }
        }
        // A simple xorshift over random buffers.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20000 {
            let mut buf = Vec::new();
            let len = (x % 40) as usize;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let _ = decode_value(&buf, 256);
            let mut d = FrameDecoder::new(256);
            for c in buf.chunks(3) {
                d.feed(c);
                while let Ok(Some(_)) = d.decode() {}
            }
        }
    }
}
