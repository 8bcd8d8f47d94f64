//! MessagePack as HashiCorp's `go-msgpack` writes it for memberlist and Serf.
//!
//! Written by hand on purpose: memberlist and Serf encode with
//! `codec.MsgpackHandle{}` (WriteExt = false), i.e. the *old* msgpack spec where
//! strings and byte slices are both "raw" (fixraw / raw16 / raw32) and `str8` /
//! `bin*` markers do not exist. `rmp`'s writers emit `str8`/`bin8`, which such
//! peers may mis-read, so encoding is done here with exact markers. Decoding is
//! lenient (any spec) and goes through `rmpv`, which bounds preallocation.
//!
//! Go structs are maps keyed by the field name; missing keys decode to zero
//! values and unknown keys are ignored, exactly as Go does.

use rmpv::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A decoding failure of network input. No state is changed by a failed decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("truncated message")]
    Truncated,
    #[error("invalid msgpack: {0}")]
    Msgpack(String),
    #[error("expected a map for {0}")]
    NotAMap(&'static str),
    #[error("field {field} of {msg} has the wrong type")]
    FieldType {
        msg: &'static str,
        field: &'static str,
    },
    #[error("field {field} of {msg} is out of range")]
    FieldRange {
        msg: &'static str,
        field: &'static str,
    },
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("invalid address of {0} bytes")]
    BadAddress(usize),
    #[error("bad checksum")]
    BadChecksum,
    #[error("message too large ({0} bytes)")]
    TooLarge(usize),
    #[error("unsupported compression algorithm {0}")]
    UnknownCompression(u64),
    #[error("decompression failed: {0}")]
    Decompress(String),
    #[error("nesting too deep")]
    TooDeep,
    #[error("{0}")]
    Invalid(&'static str),
}

/// Maximum nesting accepted when decoding network input.
pub const MAX_DEPTH: usize = 32;

/// Decode one msgpack value from the front of `buf`, advancing it.
pub fn read_value(buf: &mut &[u8]) -> Result<Value, DecodeError> {
    match buf.first() {
        None => return Err(DecodeError::Truncated),
        // rmpv reads the never-used marker 0xc1 as nil; Go refuses it.
        Some(0xc1) => return Err(DecodeError::Msgpack("reserved marker 0xc1".into())),
        Some(_) => {}
    }
    rmpv::decode::read_value_with_max_depth(buf, MAX_DEPTH).map_err(|e| match e {
        rmpv::decode::Error::InvalidMarkerRead(ref io)
        | rmpv::decode::Error::InvalidDataRead(ref io)
            if io.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            DecodeError::Truncated
        }
        rmpv::decode::Error::DepthLimitExceeded => DecodeError::TooDeep,
        other => DecodeError::Msgpack(other.to_string()),
    })
}

// ---------------------------------------------------------------- writing

/// Append-only writer for go-msgpack's old-spec encoding.
#[derive(Default, Debug, Clone)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_prefix(byte: u8) -> Self {
        Self { buf: vec![byte] }
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
    pub fn map(&mut self, n: usize) -> &mut Self {
        if n < 16 {
            self.buf.push(0x80 | n as u8);
        } else if n <= u16::MAX as usize {
            self.buf.push(0xde);
            self.buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.buf.push(0xdf);
            self.buf.extend_from_slice(&(n as u32).to_be_bytes());
        }
        self
    }
    pub fn array(&mut self, n: usize) -> &mut Self {
        if n < 16 {
            self.buf.push(0x90 | n as u8);
        } else if n <= u16::MAX as usize {
            self.buf.push(0xdc);
            self.buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.buf.push(0xdd);
            self.buf.extend_from_slice(&(n as u32).to_be_bytes());
        }
        self
    }
    fn raw_header(&mut self, n: usize) {
        if n < 32 {
            self.buf.push(0xa0 | n as u8);
        } else if n <= u16::MAX as usize {
            self.buf.push(0xda);
            self.buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.buf.push(0xdb);
            self.buf.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    /// A Go `string`.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    /// A Go `[]byte` (also raw in the old spec).
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.raw_header(b.len());
        self.buf.extend_from_slice(b);
        self
    }
    /// A Go `[]byte` that may be nil.
    pub fn opt_bytes(&mut self, b: Option<&[u8]>) -> &mut Self {
        match b {
            Some(b) => self.bytes(b),
            None => self.nil(),
        }
    }
    pub fn nil(&mut self) -> &mut Self {
        self.buf.push(0xc0);
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(if v { 0xc3 } else { 0xc2 });
        self
    }
    pub fn uint(&mut self, v: u64) -> &mut Self {
        if v < 128 {
            self.buf.push(v as u8);
        } else if v <= u8::MAX as u64 {
            self.buf.extend_from_slice(&[0xcc, v as u8]);
        } else if v <= u16::MAX as u64 {
            self.buf.push(0xcd);
            self.buf.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= u32::MAX as u64 {
            self.buf.push(0xce);
            self.buf.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            self.buf.push(0xcf);
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
        self
    }
    pub fn int(&mut self, v: i64) -> &mut Self {
        if v >= 0 {
            return self.uint(v as u64);
        }
        if v >= -32 {
            self.buf.push(v as i8 as u8);
        } else if v >= i8::MIN as i64 {
            self.buf.extend_from_slice(&[0xd0, v as i8 as u8]);
        } else if v >= i16::MIN as i64 {
            self.buf.push(0xd1);
            self.buf.extend_from_slice(&(v as i16).to_be_bytes());
        } else if v >= i32::MIN as i64 {
            self.buf.push(0xd2);
            self.buf.extend_from_slice(&(v as i32).to_be_bytes());
        } else {
            self.buf.push(0xd3);
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
        self
    }
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.buf.push(0xcb);
        self.buf.extend_from_slice(&v.to_bits().to_be_bytes());
        self
    }
    /// A key of a struct-as-map.
    pub fn key(&mut self, k: &str) -> &mut Self {
        self.str(k)
    }
    /// A Go `map[string]string`, keys sorted for deterministic output.
    pub fn str_map<'a, I>(&mut self, entries: I) -> &mut Self
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut v: Vec<(&str, &str)> = entries.into_iter().collect();
        v.sort_unstable();
        self.map(v.len());
        for (k, val) in v {
            self.str(k).str(val);
        }
        self
    }
    /// A Go `[]string`.
    pub fn str_array<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        self.array(items.len());
        for s in items {
            self.str(s.as_ref());
        }
        self
    }
    /// Go `net.IP`: 4 bytes for IPv4 (as `To4()`), 16 for IPv6.
    pub fn ip(&mut self, ip: IpAddr) -> &mut Self {
        match ip {
            IpAddr::V4(v4) => self.bytes(&v4.octets()),
            IpAddr::V6(v6) => self.bytes(&v6.octets()),
        }
    }
}

// ---------------------------------------------------------------- reading

/// Field access on a decoded Go struct (a msgpack map with string keys).
pub struct Fields<'a> {
    msg: &'static str,
    entries: &'a [(Value, Value)],
}

impl<'a> Fields<'a> {
    pub fn new(v: &'a Value, msg: &'static str) -> Result<Self, DecodeError> {
        match v {
            Value::Map(entries) => Ok(Fields { msg, entries }),
            // Go encodes a nil pointer / empty struct as nil in some places.
            Value::Nil => Ok(Fields { msg, entries: &[] }),
            _ => Err(DecodeError::NotAMap(msg)),
        }
    }

    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.entries.iter().find_map(|(k, v)| {
            let key = match k {
                Value::String(s) => s.as_bytes(),
                Value::Binary(b) => b.as_slice(),
                _ => return None,
            };
            (key == field.as_bytes()).then_some(v)
        })
    }

    fn err(&self, field: &'static str) -> DecodeError {
        DecodeError::FieldType {
            msg: self.msg,
            field,
        }
    }
    fn range(&self, field: &'static str) -> DecodeError {
        DecodeError::FieldRange {
            msg: self.msg,
            field,
        }
    }

    pub fn u64(&self, field: &'static str) -> Result<u64, DecodeError> {
        match self.get(field) {
            None | Some(Value::Nil) => Ok(0),
            Some(Value::Integer(i)) => i.as_u64().ok_or_else(|| self.range(field)),
            Some(_) => Err(self.err(field)),
        }
    }
    pub fn i64(&self, field: &'static str) -> Result<i64, DecodeError> {
        match self.get(field) {
            None | Some(Value::Nil) => Ok(0),
            Some(Value::Integer(i)) => i.as_i64().ok_or_else(|| self.range(field)),
            Some(_) => Err(self.err(field)),
        }
    }
    pub fn u32(&self, field: &'static str) -> Result<u32, DecodeError> {
        u32::try_from(self.u64(field)?).map_err(|_| self.range(field))
    }
    pub fn u16(&self, field: &'static str) -> Result<u16, DecodeError> {
        u16::try_from(self.u64(field)?).map_err(|_| self.range(field))
    }
    pub fn u8(&self, field: &'static str) -> Result<u8, DecodeError> {
        u8::try_from(self.u64(field)?).map_err(|_| self.range(field))
    }
    pub fn f64(&self, field: &'static str) -> Result<f64, DecodeError> {
        match self.get(field) {
            None | Some(Value::Nil) => Ok(0.0),
            Some(Value::F64(f)) => Ok(*f),
            Some(Value::F32(f)) => Ok(*f as f64),
            Some(Value::Integer(i)) => i.as_f64().ok_or_else(|| self.range(field)),
            Some(_) => Err(self.err(field)),
        }
    }
    pub fn bool(&self, field: &'static str) -> Result<bool, DecodeError> {
        match self.get(field) {
            None | Some(Value::Nil) => Ok(false),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(_) => Err(self.err(field)),
        }
    }
    /// A Go string. Invalid UTF-8 is rejected (names and tags must be text).
    pub fn string(&self, field: &'static str) -> Result<String, DecodeError> {
        match self.get(field) {
            None | Some(Value::Nil) => Ok(String::new()),
            Some(v) => as_string(v).ok_or_else(|| self.err(field)),
        }
    }
    /// A Go `[]byte` (raw, str or bin); nil decodes as empty.
    pub fn bytes(&self, field: &'static str) -> Result<Vec<u8>, DecodeError> {
        match self.get(field) {
            None | Some(Value::Nil) => Ok(Vec::new()),
            Some(v) => as_bytes(v)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| self.err(field)),
        }
    }
    /// A Go `net.IP`, or `None` when absent/empty.
    pub fn ip(&self, field: &'static str) -> Result<Option<IpAddr>, DecodeError> {
        let b = self.bytes(field)?;
        if b.is_empty() {
            return Ok(None);
        }
        ip_from_bytes(&b).map(Some)
    }
    pub fn value(&self, field: &'static str) -> Option<&'a Value> {
        self.get(field)
    }
    pub fn str_array(&self, field: &'static str) -> Result<Vec<String>, DecodeError> {
        match self.get(field) {
            None | Some(Value::Nil) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| as_string(v).ok_or_else(|| self.err(field)))
                .collect(),
            Some(_) => Err(self.err(field)),
        }
    }
    pub fn array(&self, field: &'static str) -> Result<&'a [Value], DecodeError> {
        match self.get(field) {
            None | Some(Value::Nil) => Ok(&[]),
            Some(Value::Array(items)) => Ok(items.as_slice()),
            Some(_) => Err(self.err(field)),
        }
    }
    pub fn map(&self, field: &'static str) -> Result<&'a [(Value, Value)], DecodeError> {
        match self.get(field) {
            None | Some(Value::Nil) => Ok(&[]),
            Some(Value::Map(entries)) => Ok(entries.as_slice()),
            Some(_) => Err(self.err(field)),
        }
    }
}

pub fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => s.as_str().map(str::to_owned),
        Value::Binary(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

pub fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::String(s) => Some(s.as_bytes()),
        Value::Binary(b) => Some(b.as_slice()),
        _ => None,
    }
}

pub fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(i) => i.as_u64(),
        _ => None,
    }
}

/// Parse a Go `net.IP` (4 bytes, or 16 with IPv4-mapped addresses folded to IPv4).
pub fn ip_from_bytes(b: &[u8]) -> Result<IpAddr, DecodeError> {
    match b.len() {
        4 => Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            let v6 = Ipv6Addr::from(a);
            Ok(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            })
        }
        n => Err(DecodeError::BadAddress(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_use_old_spec_raw_markers() {
        let mut w = Writer::new();
        w.str(&"x".repeat(31));
        assert_eq!(w.buf[0], 0xa0 | 31);
        let mut w = Writer::new();
        w.str(&"x".repeat(32));
        assert_eq!(w.buf[0], 0xda, "no str8 in go-msgpack's old spec");
        let mut w = Writer::new();
        w.bytes(&[1u8; 200]);
        assert_eq!(&w.buf[..3], &[0xda, 0, 200]);
    }

    #[test]
    fn ints_round_trip_through_rmpv() {
        for v in [
            0i64,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            -1,
            -32,
            -33,
            -129,
            -40000,
            i64::MIN,
            i64::MAX,
        ] {
            let mut w = Writer::new();
            w.int(v);
            let got = read_value(&mut w.buf.as_slice()).unwrap();
            assert_eq!(got.as_i64(), Some(v), "value {v}");
        }
    }

    #[test]
    fn fields_decode_struct_map() {
        let mut w = Writer::new();
        w.map(4)
            .key("SeqNo")
            .uint(7)
            .key("Node")
            .str("a")
            .key("Addr")
            .ip("10.0.0.1".parse().unwrap())
            .key("Junk")
            .bool(true);
        let v = read_value(&mut w.buf.as_slice()).unwrap();
        let f = Fields::new(&v, "t").unwrap();
        assert_eq!(f.u32("SeqNo").unwrap(), 7);
        assert_eq!(f.string("Node").unwrap(), "a");
        assert_eq!(f.ip("Addr").unwrap(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(f.u32("Missing").unwrap(), 0);
        assert!(f.string("SeqNo").is_err());
    }

    #[test]
    fn truncated_is_an_error() {
        let mut w = Writer::new();
        w.str("hello world");
        let cut = &w.buf[..4];
        assert_eq!(read_value(&mut &cut[..]), Err(DecodeError::Truncated));
        assert_eq!(read_value(&mut &[][..]), Err(DecodeError::Truncated));
    }

    #[test]
    fn mapped_ipv4_folds() {
        let v6: Ipv6Addr = "::ffff:1.2.3.4".parse().unwrap();
        assert_eq!(
            ip_from_bytes(&v6.octets()).unwrap(),
            IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert!(ip_from_bytes(&[1, 2, 3]).is_err());
    }
}
