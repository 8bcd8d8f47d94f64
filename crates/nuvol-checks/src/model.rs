//! The health checks' data model: what a check is ([`CheckDef`]), its
//! result ([`CheckState`], [`Health`]). The catalog attaches checks to the
//! services it publishes.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A health state, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Passing,
    Warning,
    Critical,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Passing => "passing",
            Health::Warning => "warning",
            Health::Critical => "critical",
        }
    }
}

/// What a check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// Passing when a TCP connection to `addr` (`host:port`) succeeds.
    Tcp { addr: String },
    /// `GET url` (http or https); passing when the status equals `status`
    /// (default 200), critical otherwise or on error. `tls_skip_verify`
    /// accepts self-signed certificates (common on home boards).
    Http {
        url: String,
        status: u16,
        tls_skip_verify: bool,
    },
    /// `sh -c command`: exit 0 passing, 1 warning, anything else (or a
    /// timeout) critical, as Consul's script checks. Output is kept up to
    /// [`MAX_CHECK_OUTPUT`] bytes.
    Script { command: String },
}

impl CheckKind {
    /// `tcp`, `http` or `script`.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Http { .. } => "http",
            CheckKind::Script { .. } => "script",
        }
    }
    /// The address, URL or command.
    pub fn target(&self) -> &str {
        match self {
            CheckKind::Tcp { addr } => addr,
            CheckKind::Http { url, .. } => url,
            CheckKind::Script { command } => command,
        }
    }
}

/// Captured check output is cut to this many bytes.
pub const MAX_CHECK_OUTPUT: usize = 4096;

/// A health check attached to a service. In JSON and TOML it reads as
/// Consul's: exactly one of `tcp = "host:port"`, `http = "URL"` (with
/// optional `status` and `tls_skip_verify`) or `script = "command"`, plus
/// `interval` and `timeout` (Go durations: "10s", "1m30s").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CheckRepr", into = "CheckRepr")]
pub struct CheckDef {
    pub kind: CheckKind,
    /// Time between runs.
    pub interval: Duration,
    /// A run taking longer is critical.
    pub timeout: Duration,
}

/// An optional field that, when present, must hold a value (`null` is an
/// error, as the OpenAPI document says).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckRepr {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    tcp: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    http: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    status: Option<u16>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    tls_skip_verify: Option<bool>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    script: Option<String>,
    #[serde(with = "nuvol_agent::duration::serde", default = "default_interval")]
    interval: Duration,
    #[serde(with = "nuvol_agent::duration::serde", default = "default_timeout")]
    timeout: Duration,
}

impl TryFrom<CheckRepr> for CheckDef {
    type Error = String;
    fn try_from(r: CheckRepr) -> Result<Self, String> {
        let kind = match (r.tcp, r.http, r.script) {
            (Some(addr), None, None) => CheckKind::Tcp { addr },
            (None, Some(url), None) => CheckKind::Http {
                url,
                status: r.status.unwrap_or(200),
                tls_skip_verify: r.tls_skip_verify.unwrap_or(false),
            },
            (None, None, Some(command)) => CheckKind::Script { command },
            _ => return Err("a check needs exactly one of `tcp`, `http` or `script`".into()),
        };
        if !matches!(kind, CheckKind::Http { .. })
            && (r.status.is_some() || r.tls_skip_verify.is_some())
        {
            return Err("`status` and `tls_skip_verify` apply to `http` checks only".into());
        }
        Ok(CheckDef {
            kind,
            interval: r.interval,
            timeout: r.timeout,
        })
    }
}

impl From<CheckDef> for CheckRepr {
    fn from(c: CheckDef) -> CheckRepr {
        let mut r = CheckRepr {
            tcp: None,
            http: None,
            status: None,
            tls_skip_verify: None,
            script: None,
            interval: c.interval,
            timeout: c.timeout,
        };
        match c.kind {
            CheckKind::Tcp { addr } => r.tcp = Some(addr),
            CheckKind::Http {
                url,
                status,
                tls_skip_verify,
            } => {
                r.http = Some(url);
                r.status = Some(status);
                r.tls_skip_verify = Some(tls_skip_verify);
            }
            CheckKind::Script { command } => r.script = Some(command),
        }
        r
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A check that does not validate: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {0}: {1}")]
pub struct CheckError(pub String, pub String);

impl CheckDef {
    pub fn validate(&self) -> Result<(), CheckError> {
        let bad = |f: &str, m: &str| Err(CheckError(f.to_owned(), m.to_owned()));
        if self.interval < Duration::from_secs(1) || self.interval > Duration::from_secs(86_400) {
            return bad("interval", "must be between 1s and 24h");
        }
        if self.timeout < Duration::from_millis(10) || self.timeout > self.interval {
            return bad("timeout", "must be at least 10ms and at most the interval");
        }
        match &self.kind {
            CheckKind::Tcp { addr } => {
                if addr
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
                {
                    return bad("tcp", "expected host:port");
                }
            }
            CheckKind::Http { url, status, .. } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2048
                {
                    return bad("http", "expected an http:// or https:// URL");
                }
                if !(100..=599).contains(status) {
                    return bad("status", "expected an HTTP status 100-599");
                }
            }
            CheckKind::Script { command } => {
                if command.trim().is_empty() || command.len() > 4096 {
                    return bad("script", "must be 1 to 4096 bytes");
                }
            }
        }
        Ok(())
    }
}

/// The latest result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckState {
    pub status: Health,
    /// Output or error text, at most [`MAX_CHECK_OUTPUT`] bytes.
    pub output: String,
    /// When it was produced, milliseconds since the Unix epoch.
    pub updated_ms: u64,
}
