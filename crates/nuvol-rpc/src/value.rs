//! Building and reading serf RPC maps with `rmpv`, and reading values off a
//! stream without trusting it.

use crate::frame::{FrameDecoder, FrameError};
use rmpv::Value;
use std::collections::BTreeMap;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A string value.
pub fn s(v: &str) -> Value {
    Value::from(v)
}

/// A Go struct as a map.
pub fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (s(k), v)).collect())
}

pub fn str_map(m: &BTreeMap<String, String>) -> Value {
    Value::Map(m.iter().map(|(k, v)| (s(k), s(v))).collect())
}

pub fn str_list(v: &[String]) -> Value {
    Value::Array(v.iter().map(|x| s(x)).collect())
}

pub fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Map(m) => m
            .iter()
            .find_map(|(k, val)| (k.as_str() == Some(key)).then_some(val)),
        _ => None,
    }
}

pub fn get_str(v: &Value, key: &str) -> String {
    match get(v, key) {
        Some(Value::String(s)) => s.as_str().unwrap_or_default().to_owned(),
        Some(Value::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

pub fn get_bytes(v: &Value, key: &str) -> Vec<u8> {
    match get(v, key) {
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(Value::Binary(b)) => b.clone(),
        _ => Vec::new(),
    }
}

pub fn get_u64(v: &Value, key: &str) -> u64 {
    get(v, key).and_then(Value::as_u64).unwrap_or(0)
}

pub fn get_i64(v: &Value, key: &str) -> i64 {
    get(v, key).and_then(Value::as_i64).unwrap_or(0)
}

pub fn get_f64(v: &Value, key: &str) -> f64 {
    match get(v, key) {
        Some(Value::F64(f)) => *f,
        Some(Value::F32(f)) => *f as f64,
        Some(Value::Integer(i)) => i.as_f64().unwrap_or(0.0),
        _ => 0.0,
    }
}

pub fn get_bool(v: &Value, key: &str) -> bool {
    get(v, key).and_then(Value::as_bool).unwrap_or(false)
}

pub fn get_str_list(v: &Value, key: &str) -> Vec<String> {
    match get(v, key) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| match x {
                Value::String(s) => s.as_str().map(str::to_owned),
                Value::Binary(b) => String::from_utf8(b.clone()).ok(),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub fn get_str_map(v: &Value, key: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(Value::Map(m)) = get(v, key) {
        for (k, val) in m {
            if let (Some(k), Some(val)) = (k.as_str(), val.as_str()) {
                out.insert(k.to_owned(), val.to_owned());
            }
        }
    }
    out
}

/// Encode values back to back.
pub fn encode(values: &[&Value]) -> Vec<u8> {
    let mut buf = Vec::new();
    for v in values {
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut buf, v);
    }
    buf
}

/// A response header.
pub fn header(seq: u64, err: &str) -> Value {
    map(vec![("Seq", Value::from(seq)), ("Error", s(err))])
}

/// A request header.
pub fn request(command: &str, seq: u64) -> Value {
    map(vec![("Command", s(command)), ("Seq", Value::from(seq))])
}

/// Why a value could not be read off a stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("read failed: {0}")]
    Io(String),
}

/// Reads msgpack values one at a time from a byte stream, buffering partial
/// input, with a cap on the size of one value (see [`crate::frame`]).
pub struct ValueReader<R> {
    inner: R,
    frames: FrameDecoder,
}

impl<R: AsyncRead + Unpin> ValueReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        ValueReader {
            inner,
            frames: FrameDecoder::new(max),
        }
    }

    /// Append bytes as if they had been read (for tests and fuzzing).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.frames.feed(bytes);
    }

    /// Try to take one value from what is buffered (`Ok(None)`: need more).
    pub fn try_next(&mut self) -> Result<Option<Value>, ReadError> {
        Ok(self.frames.decode()?)
    }

    /// The next value, reading as needed.
    pub async fn next(&mut self) -> Result<Value, ReadError> {
        loop {
            if let Some(v) = self.try_next()? {
                return Ok(v);
            }
            let mut chunk = [0u8; 8192];
            let n = self
                .inner
                .read(&mut chunk)
                .await
                .map_err(|e| ReadError::Io(e.to_string()))?;
            if n == 0 {
                return Err(ReadError::Closed);
            }
            self.frames.feed(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_values_split_anywhere() {
        let a = request("members", 1);
        let b = map(vec![("Version", Value::from(1))]);
        let bytes = encode(&[&a, &b]);
        for cut in 0..bytes.len() {
            let (first, second) = bytes.split_at(cut);
            let data = [first, second].concat();
            let mut r = ValueReader::new(&data[..], 1024);
            assert_eq!(r.next().await.unwrap(), a);
            assert_eq!(r.next().await.unwrap(), b);
            assert_eq!(r.next().await, Err(ReadError::Closed));
        }
    }

    #[tokio::test]
    async fn garbage_and_oversize_are_errors() {
        let mut r = ValueReader::new(&[0xc1u8, 0, 0][..], 1024);
        assert!(r.next().await.is_err());
        // A string header claiming 1 MiB that never arrives.
        let mut big = vec![0xdb, 0, 0x10, 0, 0];
        big.extend(vec![b'x'; 2000]);
        let mut r = ValueReader::new(&big[..], 1024);
        assert_eq!(
            r.next().await,
            Err(ReadError::Frame(FrameError::TooLarge { max: 1024 }))
        );
    }

    #[test]
    fn accessors() {
        let v = map(vec![
            ("Name", s("x")),
            (
                "Tags",
                str_map(&BTreeMap::from([("a".to_string(), "b".to_string())])),
            ),
            ("List", str_list(&["p".to_string()])),
            ("N", Value::from(5)),
        ]);
        assert_eq!(get_str(&v, "Name"), "x");
        assert_eq!(get_str_map(&v, "Tags")["a"], "b");
        assert_eq!(get_str_list(&v, "List"), vec!["p"]);
        assert_eq!(get_u64(&v, "N"), 5);
        assert_eq!(get_str(&v, "Missing"), "");
    }
}
