//! Cloudy's service records as `avahi-ps` stores them in the Serf tag
//! `services`: a JSON array of objects with string fields `s` (type), `d`
//! (description, spaces as `_`), `m` (host, `<node>.<cloud>.local`), `i`
//! (IP), `p` (port), `e` (device / micro-cloud name) and `t` (TXT, `k=v`
//! pairs joined by spaces), bzip2-compressed and base64-encoded without line
//! wraps so that it fits Serf's 512-byte tag buffer.

use base64::Engine;
use serde_json::{json, Value};
use std::io::{Read, Write};

/// Largest decompressed tag accepted (the compressed tag is < 512 bytes; this
/// bounds a decompression bomb).
const MAX_JSON: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("invalid service type {0:?}: use letters, digits and '-'")]
    BadType(String),
    #[error("invalid port {0:?}: must be 1-65535")]
    BadPort(String),
    #[error("invalid TXT record {0:?}: expected k=v pairs joined by '&'")]
    BadTxt(String),
    #[error("invalid {0}: {1}")]
    BadField(String, String),
    #[error("invalid description: {0}")]
    BadDescription(String),
    #[error("services tag is not valid base64: {0}")]
    Base64(String),
    #[error("services tag is not valid bzip2: {0}")]
    Bzip2(String),
    #[error("services tag decompresses to more than {MAX_JSON} bytes")]
    TooLarge,
    #[error("services tag is not a JSON array of services: {0}")]
    Json(String),
}

impl From<nuvol_checks::model::CheckError> for CatalogError {
    fn from(e: nuvol_checks::model::CheckError) -> Self {
        CatalogError::BadField(e.0, e.1)
    }
}

/// One published service, as avahi-ps describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudyService {
    /// `s`: the avahi-ps type, `[A-Za-z0-9-]+`.
    pub stype: String,
    /// `d`: the description (avahi-ps replaces spaces with `_`).
    pub description: String,
    /// `m`: `<node>.<cloud>.local`.
    pub host: String,
    /// `i`: the IP address.
    pub ip: String,
    /// `p`: the port.
    pub port: u16,
    /// `e`: the device / micro-cloud name.
    pub cloud: String,
    /// `t`: TXT entries, in order.
    pub txt: Vec<(String, String)>,
}

/// Check an avahi-ps service type.
pub fn validate_type(t: &str) -> Result<(), CatalogError> {
    if !t.is_empty() && t.len() <= 63 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(())
    } else {
        Err(CatalogError::BadType(t.to_owned()))
    }
}

/// Parse a port argument (1-65535).
pub fn parse_port(p: &str) -> Result<u16, CatalogError> {
    match p.trim().parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(CatalogError::BadPort(p.to_owned())),
    }
}

/// Parse avahi-ps's TXT argument: `a=1&b=2`.
pub fn parse_txt_arg(s: &str) -> Result<Vec<(String, String)>, CatalogError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split('&')
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| CatalogError::BadTxt(s.to_owned()))?;
            if k.is_empty() || k.contains(char::is_whitespace) || v.contains(char::is_whitespace) {
                return Err(CatalogError::BadTxt(s.to_owned()));
            }
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Parse the `t` field: `k=v` pairs joined by spaces; a bare word is a key
/// with an empty value (as DNS-SD allows).
pub fn parse_txt_field(s: &str) -> Vec<(String, String)> {
    s.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect()
}

impl CloudyService {
    /// avahi-ps's publish: description with spaces as `_`.
    pub fn new(
        description: &str,
        stype: &str,
        port: u16,
        txt: Vec<(String, String)>,
        node: &str,
        cloud: &str,
        ip: &str,
    ) -> Result<Self, CatalogError> {
        validate_type(stype)?;
        if description.trim().is_empty() || description.len() > 255 {
            return Err(CatalogError::BadDescription(
                "must be 1 to 255 bytes".to_owned(),
            ));
        }
        if port == 0 {
            return Err(CatalogError::BadPort("0".into()));
        }
        Ok(CloudyService {
            stype: stype.to_owned(),
            description: description.trim().replace(' ', "_"),
            host: format!("{node}.{cloud}.local"),
            ip: ip.to_owned(),
            port,
            cloud: cloud.to_owned(),
            txt,
        })
    }

    pub fn txt_string(&self) -> String {
        self.txt
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn to_json(&self) -> Value {
        json!({
            "s": self.stype,
            "d": self.description,
            "m": self.host,
            "i": self.ip,
            "p": self.port.to_string(),
            "e": self.cloud,
            "t": self.txt_string(),
        })
    }

    fn from_json(v: &Value) -> Option<CloudyService> {
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let port = match v.get("p")? {
            Value::String(s) => s.trim().parse::<u16>().ok()?,
            Value::Number(n) => u16::try_from(n.as_u64()?).ok()?,
            _ => return None,
        };
        let stype = field("s")?;
        validate_type(&stype).ok()?;
        if port == 0 {
            return None;
        }
        Some(CloudyService {
            stype,
            description: field("d")?,
            host: field("m")?,
            ip: field("i")?,
            port,
            cloud: field("e").unwrap_or_default(),
            txt: parse_txt_field(&field("t").unwrap_or_default()),
        })
    }
}

/// `base64(bzip2(json))` of the given services.
pub fn encode_services(services: &[CloudyService]) -> String {
    let json = Value::Array(services.iter().map(CloudyService::to_json).collect()).to_string();
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    // Writing into a Vec does not fail.
    let _ = enc.write_all(json.as_bytes());
    let compressed = enc.finish().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(compressed)
}

/// The tag value for `services` that `fits`: the longest prefix of
/// `services` whose encoding is accepted. Returns the value and how many
/// services it carries.
pub fn encode_services_fitting(
    services: &[CloudyService],
    fits: impl Fn(&str) -> bool,
) -> (String, usize) {
    // Compressed size is not monotonic in the count, but close enough that a
    // downward scan from a binary-search bound is exact and cheap.
    let (mut lo, mut hi) = (0usize, services.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(&encode_services(&services[..mid])) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut n = lo;
    // Try a few more in case compression made a larger prefix fit.
    for k in (lo + 1..=services.len().min(lo + 4)).rev() {
        if fits(&encode_services(&services[..k])) {
            n = k;
            break;
        }
    }
    (encode_services(&services[..n]), n)
}

/// Decoded tag: the valid services and how many entries were skipped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub services: Vec<CloudyService>,
    pub skipped: usize,
}

/// Decode a `services` tag. Entries with missing or invalid fields are
/// skipped (and counted); a tag that is not base64/bzip2/JSON is an error.
pub fn decode_services(tag: &str) -> Result<Decoded, CatalogError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(tag.trim())
        .map_err(|e| CatalogError::Base64(e.to_string()))?;
    let mut dec = bzip2::read::BzDecoder::new(&raw[..]).take(MAX_JSON as u64 + 1);
    let mut json = Vec::new();
    dec.read_to_end(&mut json)
        .map_err(|e| CatalogError::Bzip2(e.to_string()))?;
    if json.len() > MAX_JSON {
        return Err(CatalogError::TooLarge);
    }
    let v: Value = serde_json::from_slice(&json).map_err(|e| CatalogError::Json(e.to_string()))?;
    let Value::Array(items) = v else {
        return Err(CatalogError::Json("not an array".into()));
    };
    let mut out = Decoded::default();
    for it in &items {
        match CloudyService::from_json(it) {
            Some(s) => out.services.push(s),
            None => out.skipped += 1,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(i: usize) -> CloudyService {
        CloudyService::new(
            &format!("web server {i}"),
            "http",
            8000 + i as u16,
            vec![("path".into(), format!("/{i}"))],
            "pi1",
            "guifi",
            "10.1.2.3",
        )
        .unwrap()
    }

    #[test]
    fn round_trip_in_cloudy_encoding() {
        let s = vec![svc(1), svc(2)];
        let tag = encode_services(&s);
        assert!(!tag.contains('\n'));
        let d = decode_services(&tag).unwrap();
        assert_eq!(d.services, s);
        assert_eq!(d.skipped, 0);
        assert_eq!(s[0].description, "web_server_1");
        assert_eq!(s[0].host, "pi1.guifi.local");
        // The exact JSON Cloudy's GUI reads.
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&tag)
            .unwrap();
        let mut json = String::new();
        bzip2::read::BzDecoder::new(&raw[..])
            .read_to_string(&mut json)
            .unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v[0],
            json!({"s":"http","d":"web_server_1","m":"pi1.guifi.local","i":"10.1.2.3","p":"8001","e":"guifi","t":"path=/1"})
        );
    }

    #[test]
    fn arguments_are_validated() {
        assert!(validate_type("http-alt2").is_ok());
        for bad in ["", "_http._tcp", "a b", "é"] {
            assert!(validate_type(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_port("80").unwrap(), 80);
        for bad in ["0", "65536", "-1", "x"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_txt_arg("a=1&b=2").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        for bad in ["a", "=1", "a=1&", "a=1 2"] {
            assert!(parse_txt_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_tags_are_errors_or_skipped() {
        assert!(matches!(
            decode_services("!!!"),
            Err(CatalogError::Base64(_))
        ));
        assert!(matches!(
            decode_services("aGVsbG8="),
            Err(CatalogError::Bzip2(_))
        ));
        let bz = |s: &str| {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
            e.write_all(s.as_bytes()).unwrap();
            base64::engine::general_purpose::STANDARD.encode(e.finish().unwrap())
        };
        assert!(matches!(
            decode_services(&bz("{not json")),
            Err(CatalogError::Json(_))
        ));
        assert!(matches!(
            decode_services(&bz("{}")),
            Err(CatalogError::Json(_))
        ));
        let d = decode_services(&bz(
            r#"[{"s":"ssh","d":"x","m":"a.b.local","i":"1.2.3.4","p":"22","e":"b","t":""},
                {"s":"ssh","d":"missing port"},
                {"s":"bad type!","d":"x","m":"m","i":"i","p":"1"},
                {"s":"web","d":"x","m":"m","i":"i","p":99999}]"#,
        ))
        .unwrap();
        assert_eq!(d.services.len(), 1);
        assert_eq!(d.skipped, 3);
        // A bzip2 bomb is cut off.
        let bomb = bz(&"[".repeat(MAX_JSON * 2));
        assert_eq!(decode_services(&bomb), Err(CatalogError::TooLarge));
    }

    #[test]
    fn fitting_keeps_what_fits_under_a_budget() {
        let many: Vec<CloudyService> = (0..100).map(svc).collect();
        let (tag, n) = encode_services_fitting(&many, |v| v.len() <= 400);
        assert!(tag.len() <= 400);
        assert!(n > 0 && n < 100, "{n}");
        assert_eq!(decode_services(&tag).unwrap().services, many[..n].to_vec());
        let (_, all) = encode_services_fitting(&many[..2], |v| v.len() <= 400);
        assert_eq!(all, 2);
    }
}
