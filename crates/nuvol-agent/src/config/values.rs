//! How each type of setting reads from TOML and from a flag, and how the
//! file's and the flags' values combine.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use toml::Value;

/// Why a value does not fit its setting (the message names no key: the
/// caller adds `section.key`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadValue(pub String);

impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue(s)
    }
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue(s.to_owned())
    }
}

/// A type a setting can have.
pub trait Setting: Sized + Clone + Send + Sync + 'static {
    /// Shown in `--help` (`--bind <ADDR>`).
    const VALUE_NAME: &'static str;
    /// The flag may be repeated (lists, tags); occurrences are merged.
    const REPEATED: bool = false;
    /// The flag may be given without a value, meaning `true`.
    const SWITCH: bool = false;
    fn from_toml(v: Value) -> Result<Self, BadValue>;
    fn from_flag(s: &str) -> Result<Self, BadValue>;
    /// The file's value and the flags' (flags win unless overridden).
    fn merge(file: Option<Self>, flags: Option<Self>) -> Option<Self> {
        flags.or(file)
    }
}

fn found(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

fn string(v: Value, what: &str) -> Result<String, BadValue> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(BadValue(format!(
            "expected {what}, found {}",
            found(&other)
        ))),
    }
}

impl Setting for String {
    const VALUE_NAME: &'static str = "TEXT";
    fn from_toml(v: Value) -> Result<Self, BadValue> {
        string(v, "a string")
    }
    fn from_flag(s: &str) -> Result<Self, BadValue> {
        Ok(s.to_owned())
    }
}

impl Setting for PathBuf {
    const VALUE_NAME: &'static str = "PATH";
    fn from_toml(v: Value) -> Result<Self, BadValue> {
        string(v, "a path string").map(PathBuf::from)
    }
    fn from_flag(s: &str) -> Result<Self, BadValue> {
        Ok(PathBuf::from(s))
    }
}

impl Setting for bool {
    const VALUE_NAME: &'static str = "BOOL";
    const SWITCH: bool = true;
    fn from_toml(v: Value) -> Result<Self, BadValue> {
        match v {
            Value::Boolean(b) => Ok(b),
            other => Err(BadValue(format!(
                "expected true or false, found {}",
                found(&other)
            ))),
        }
    }
    fn from_flag(s: &str) -> Result<Self, BadValue> {
        match s {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(BadValue(format!(
                "invalid value {s:?} (expected true or false)"
            ))),
        }
    }
}

macro_rules! integer {
    ($($t:ty),*) => {$(
        impl Setting for $t {
            const VALUE_NAME: &'static str = "N";
            fn from_toml(v: Value) -> Result<Self, BadValue> {
                match v {
                    Value::Integer(i) => <$t>::try_from(i).map_err(|_| {
                        BadValue(format!("{i} is out of range ({} to {})", <$t>::MIN, <$t>::MAX))
                    }),
                    other => Err(BadValue(format!("expected an integer, found {}", found(&other)))),
                }
            }
            fn from_flag(s: &str) -> Result<Self, BadValue> {
                s.parse().map_err(|_| {
                    BadValue(format!("invalid number {s:?} ({} to {})", <$t>::MIN, <$t>::MAX))
                })
            }
        }
    )*};
}
integer!(u8, u16, u32, u64, usize);

impl Setting for Duration {
    const VALUE_NAME: &'static str = "DURATION";
    fn from_toml(v: Value) -> Result<Self, BadValue> {
        let s = string(v, "a duration string such as \"30s\"")?;
        Self::from_flag(&s)
    }
    fn from_flag(s: &str) -> Result<Self, BadValue> {
        crate::duration::parse(s).map_err(|e| BadValue(e.to_string()))
    }
}

impl Setting for nuvol_gossip::Profile {
    const VALUE_NAME: &'static str = "PROFILE";
    fn from_toml(v: Value) -> Result<Self, BadValue> {
        Self::from_flag(&string(v, "a profile name")?)
    }
    fn from_flag(s: &str) -> Result<Self, BadValue> {
        s.parse().map_err(BadValue)
    }
}

impl<T: Setting> Setting for Option<T> {
    const VALUE_NAME: &'static str = T::VALUE_NAME;
    const REPEATED: bool = T::REPEATED;
    const SWITCH: bool = T::SWITCH;
    fn from_toml(v: Value) -> Result<Self, BadValue> {
        T::from_toml(v).map(Some)
    }
    fn from_flag(s: &str) -> Result<Self, BadValue> {
        T::from_flag(s).map(Some)
    }
}

/// Lists: the file's entries, then the flags' (serf's `-join` adds to the
/// config file's `start_join`).
impl Setting for Vec<String> {
    const VALUE_NAME: &'static str = "VALUE";
    const REPEATED: bool = true;
    fn from_toml(v: Value) -> Result<Self, BadValue> {
        match v {
            Value::Array(items) => items
                .into_iter()
                .map(|i| string(i, "a list of strings"))
                .collect(),
            other => Err(BadValue(format!(
                "expected a list of strings, found {}",
                found(&other)
            ))),
        }
    }
    fn from_flag(s: &str) -> Result<Self, BadValue> {
        Ok(vec![s.to_owned()])
    }
    fn merge(file: Option<Self>, flags: Option<Self>) -> Option<Self> {
        match (file, flags) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            (a, b) => b.or(a),
        }
    }
}

/// Node tags: a table in the file, `KEY=VALUE` flags (repeatable) on the
/// command line; the flags' keys replace the file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(pub BTreeMap<String, String>);

impl Setting for Tags {
    const VALUE_NAME: &'static str = "KEY=VALUE";
    const REPEATED: bool = true;
    fn from_toml(v: Value) -> Result<Self, BadValue> {
        match v {
            Value::Table(t) => t
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k, s)),
                    other => Err(BadValue(format!(
                        "tag {k:?}: expected a string, found {}",
                        found(&other)
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Tags),
            other => Err(BadValue(format!(
                "expected a table of strings, found {}",
                found(&other)
            ))),
        }
    }
    fn from_flag(s: &str) -> Result<Self, BadValue> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| BadValue(format!("invalid tag {s:?}: expected KEY=VALUE")))?;
        Ok(Tags(BTreeMap::from([(k.to_owned(), v.to_owned())])))
    }
    fn merge(file: Option<Self>, flags: Option<Self>) -> Option<Self> {
        match (file, flags) {
            (Some(mut a), Some(b)) => {
                a.0.extend(b.0);
                Some(a)
            }
            (a, b) => b.or(a),
        }
    }
}

/// A secret (a key, a token): never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Setting for Secret {
    const VALUE_NAME: &'static str = "SECRET";
    fn from_toml(v: Value) -> Result<Self, BadValue> {
        string(v, "a string").map(Secret)
    }
    fn from_flag(s: &str) -> Result<Self, BadValue> {
        Ok(Secret(s.to_owned()))
    }
}

/// An address as serf's flags take it: `IP:PORT`, `IP` (port `PORT`),
/// `:PORT` (address 0.0.0.0) or `[IPv6]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr<const PORT: u16>(pub SocketAddr);

impl<const PORT: u16> Addr<PORT> {
    pub const fn new(ip: IpAddr) -> Self {
        Addr(SocketAddr::new(ip, PORT))
    }
    pub const fn any() -> Self {
        Self::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
    pub const fn localhost() -> Self {
        Self::new(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }
}

impl<const PORT: u16> std::str::FromStr for Addr<PORT> {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        parse_addr(s, PORT).map(Addr)
    }
}

impl<const PORT: u16> std::fmt::Display for Addr<PORT> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Parse `IP:PORT`, `IP`, `:PORT` or `[IPv6]` (with `default_port`).
pub fn parse_addr(s: &str, default_port: u16) -> Result<SocketAddr, BadValue> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    if let Some(port) = s.strip_prefix(':') {
        let p: u16 = port
            .parse()
            .map_err(|_| BadValue(format!("invalid port in {s:?}")))?;
        return Ok(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), p));
    }
    if let Some(ip) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        if let Ok(ip) = ip.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, default_port));
        }
    }
    Err(BadValue(format!(
        "invalid address {s:?} (expected IP:PORT)"
    )))
}

impl<const PORT: u16> Setting for Addr<PORT> {
    const VALUE_NAME: &'static str = "ADDR";
    fn from_toml(v: Value) -> Result<Self, BadValue> {
        Self::from_flag(&string(v, "an address string such as \"127.0.0.1:7373\"")?)
    }
    fn from_flag(s: &str) -> Result<Self, BadValue> {
        s.parse()
    }
}

/// A listening address that `""` turns off; port `PORT` when only an IP is
/// given. [`Listen::Default`] leaves the address to the component (e.g. the
/// RPC address's IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen<const PORT: u16> {
    Off,
    Default,
    At(SocketAddr),
}

impl<const PORT: u16> Listen<PORT> {
    /// The address, with `ip` and `PORT` for [`Listen::Default`].
    pub fn resolve(self, ip: IpAddr) -> Option<SocketAddr> {
        match self {
            Listen::Off => None,
            Listen::Default => Some(SocketAddr::new(ip, PORT)),
            Listen::At(a) => Some(a),
        }
    }
}

impl<const PORT: u16> Setting for Listen<PORT> {
    const VALUE_NAME: &'static str = "ADDR";
    fn from_toml(v: Value) -> Result<Self, BadValue> {
        Self::from_flag(&string(v, "an address string (\"\" turns it off)")?)
    }
    fn from_flag(s: &str) -> Result<Self, BadValue> {
        match s.trim() {
            "" => Ok(Listen::Off),
            a => parse_addr(a, PORT).map(Listen::At),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = |s: &str| Addr::<7946>::from_flag(s).map(|a| a.0.to_string());
        assert_eq!(a("127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
        assert_eq!(a("127.0.0.1").unwrap(), "127.0.0.1:7946");
        assert_eq!(a(":5000").unwrap(), "0.0.0.0:5000");
        assert_eq!(a("[::1]").unwrap(), "[::1]:7946");
        assert!(a("nonsense:").is_err());
        assert!(a("1.2.3.4:99999").is_err());
        let l = |s: &str| Listen::<7000>::from_flag(s);
        assert_eq!(l("").unwrap(), Listen::Off);
        assert_eq!(
            l("127.0.0.2").unwrap().resolve(Ipv4Addr::LOCALHOST.into()),
            Some("127.0.0.2:7000".parse().unwrap())
        );
        assert_eq!(
            Listen::<7000>::Default.resolve("127.1.2.3".parse().unwrap()),
            Some("127.1.2.3:7000".parse().unwrap())
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "Secret(***)");
    }
}
