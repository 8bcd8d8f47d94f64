//! Agent configuration: a TOML file, overridden by command-line flags, with
//! defaults that make a useful single node.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_BIND_PORT: u16 = 7946;
pub const DEFAULT_RPC_ADDR: &str = "127.0.0.1:7373";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// The agent's settings. Every field has a default; a TOML file may set any
/// of them (unknown keys are refused), flags override the file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub node_name: Option<String>,
    /// `IP:PORT`, `IP` or `:PORT`.
    pub bind: Option<String>,
    pub advertise: Option<String>,
    pub join: Vec<String>,
    pub retry_join: Vec<String>,
    pub retry_interval: Option<String>,
    pub retry_max: Option<u32>,
    pub replay_on_join: Option<bool>,
    pub rejoin_after_leave: Option<bool>,
    pub rpc_addr: Option<String>,
    pub rpc_auth: Option<String>,
    pub encrypt_key: Option<String>,
    pub keyring_file: Option<PathBuf>,
    pub tags: BTreeMap<String, String>,
    pub tags_file: Option<PathBuf>,
    pub profile: Option<String>,
    pub protocol: Option<u8>,
    pub data_dir: Option<PathBuf>,
    pub snapshot_path: Option<PathBuf>,
    pub event_handlers: Vec<String>,
    pub log_level: Option<String>,
    pub reconnect_interval: Option<String>,
    pub reconnect_timeout: Option<String>,
    pub tombstone_timeout: Option<String>,
    pub disable_coordinates: Option<bool>,
    pub leave_on_terminate: Option<bool>,
    pub skip_leave_on_interrupt: Option<bool>,
    /// REST API address (default: the RPC address's IP, port 7000); "" disables.
    pub http_addr: Option<String>,
    /// DNS address (default: the RPC address's IP, port 8600); "" disables.
    pub dns_addr: Option<String>,
    /// DNS domain (default `nuvol`).
    pub domain: Option<String>,
    /// Directory of service files, reloaded on SIGHUP.
    pub services_dir: Option<PathBuf>,
    /// Micro-cloud name in Cloudy records (default `nuvol`).
    pub cloud: Option<String>,
    /// Announce published services with mDNS / DNS-SD (default true).
    pub mdns: Option<bool>,
    /// Import services announced on the LAN with mDNS (default false).
    pub mdns_import: Option<bool>,
    /// How long a failed or departed node's services stay listed (default 24h).
    pub catalog_remove_after: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Overlay `other` (flags) on top of `self` (file).
    pub fn merge(mut self, other: FileConfig) -> FileConfig {
        macro_rules! over {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        over!(
            node_name,
            bind,
            advertise,
            retry_interval,
            retry_max,
            replay_on_join,
            rejoin_after_leave,
            rpc_addr,
            rpc_auth,
            encrypt_key,
            keyring_file,
            tags_file,
            profile,
            protocol,
            data_dir,
            snapshot_path,
            log_level,
            reconnect_interval,
            reconnect_timeout,
            tombstone_timeout,
            disable_coordinates,
            leave_on_terminate,
            skip_leave_on_interrupt,
            http_addr,
            dns_addr,
            domain,
            services_dir,
            cloud,
            mdns,
            mdns_import,
            catalog_remove_after
        );
        self.join.extend(other.join);
        self.retry_join.extend(other.retry_join);
        self.tags.extend(other.tags);
        self.event_handlers.extend(other.event_handlers);
        self
    }
}

/// Validated, resolved configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub bind: SocketAddr,
    pub advertise: Option<SocketAddr>,
    pub join: Vec<String>,
    pub retry_join: Vec<String>,
    pub retry_interval: Duration,
    pub retry_max: u32,
    pub replay_on_join: bool,
    pub rejoin_after_leave: bool,
    pub rpc_addr: SocketAddr,
    pub rpc_auth: Option<String>,
    pub encrypt_key: Option<String>,
    pub keyring_file: Option<PathBuf>,
    pub tags: BTreeMap<String, String>,
    pub tags_file: Option<PathBuf>,
    pub profile: nuvol_gossip::Profile,
    pub protocol: u8,
    pub data_dir: PathBuf,
    pub snapshot_path: Option<PathBuf>,
    pub event_handlers: Vec<String>,
    pub log_level: String,
    pub reconnect_interval: Option<Duration>,
    pub reconnect_timeout: Option<Duration>,
    pub tombstone_timeout: Option<Duration>,
    pub disable_coordinates: bool,
    pub leave_on_terminate: bool,
    pub skip_leave_on_interrupt: bool,
    pub http_addr: Option<SocketAddr>,
    pub dns_addr: Option<SocketAddr>,
    pub domain: String,
    pub services_dir: Option<PathBuf>,
    pub cloud: String,
    pub mdns: bool,
    pub mdns_import: bool,
    pub catalog_remove_after: Duration,
}

/// Parse a Go-style duration: `1h2m3s`, `500ms`, `1.5s`, `30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        if num_end == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("unknown unit {u:?} in duration {s:?}")),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > 1e9 {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parse a bind/advertise address: `IP:PORT`, `IP` (default port) or `:PORT`.
pub fn parse_addr(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    if let Some(port) = s.strip_prefix(':') {
        let p: u16 = port.parse().map_err(|_| format!("invalid port in {s:?}"))?;
        return Ok(SocketAddr::new([0, 0, 0, 0].into(), p));
    }
    if let Some(ip) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        if let Ok(ip) = ip.parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, default_port));
        }
    }
    Err(format!("invalid address {s:?} (expected IP:PORT)"))
}

/// The default data directory: `$NUVOL_DATA_DIR`, else `/var/lib/nuvol` for
/// root, else `$XDG_DATA_HOME/nuvol` or `~/.local/share/nuvol`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NUVOL_DATA_DIR") {
        return PathBuf::from(d);
    }
    // SAFETY-free check of effective uid through the environment is not
    // reliable; use the metadata of the home directory instead.
    let is_root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::env::var("HOME").map(|h| h == "/root").unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/nuvol");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("nuvol");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".local/share/nuvol");
    }
    PathBuf::from("nuvol-data")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "nuvol".to_owned())
}

/// Read a tags file: a JSON object of string values (serf's `-tags-file`).
pub fn read_tags_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(BTreeMap::new()),
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| invalid("tags_file", format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(invalid("tags_file", format!("{}: {e}", path.display()))),
    }
}

/// Write a tags file atomically (temp file + rename).
pub fn write_tags_file(path: &Path, tags: &BTreeMap<String, String>) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(tags).map_err(std::io::Error::other)?;
    crate::util::write_atomic(path, text.as_bytes(), 0o644)
}

impl FileConfig {
    /// Resolve defaults and validate.
    pub fn resolve(self) -> Result<AgentConfig, ConfigError> {
        let node_name = self.node_name.unwrap_or_else(hostname);
        if node_name.is_empty() || node_name.len() > 128 {
            return Err(invalid("node", "node name must be 1 to 128 bytes"));
        }
        let bind = parse_addr(self.bind.as_deref().unwrap_or("0.0.0.0"), DEFAULT_BIND_PORT)
            .map_err(|e| invalid("bind", e))?;
        let advertise = self
            .advertise
            .as_deref()
            .map(|a| parse_addr(a, bind.port()))
            .transpose()
            .map_err(|e| invalid("advertise", e))?;
        let rpc_addr = parse_addr(self.rpc_addr.as_deref().unwrap_or(DEFAULT_RPC_ADDR), 7373)
            .map_err(|e| invalid("rpc-addr", e))?;
        let profile: nuvol_gossip::Profile = self
            .profile
            .as_deref()
            .unwrap_or("lan")
            .parse()
            .map_err(|e: String| invalid("profile", e))?;
        let protocol = self
            .protocol
            .unwrap_or(nuvol_gossip::config::SERF_PROTOCOL_MAX);
        if !(nuvol_gossip::config::SERF_PROTOCOL_MIN..=nuvol_gossip::config::SERF_PROTOCOL_MAX)
            .contains(&protocol)
        {
            return Err(invalid(
                "protocol",
                format!("{protocol} is not supported (2 to 5)"),
            ));
        }
        let dur =
            |field: &'static str, v: Option<String>| -> Result<Option<Duration>, ConfigError> {
                v.map(|s| parse_duration(&s).map_err(|e| invalid(field, e)))
                    .transpose()
            };
        let retry_interval =
            dur("retry-interval", self.retry_interval)?.unwrap_or(Duration::from_secs(30));
        if let Some(k) = &self.encrypt_key {
            nuvol_wire::security::parse_key(k).map_err(|e| invalid("encrypt", e.to_string()))?;
        }
        for h in &self.event_handlers {
            crate::handlers::HandlerSpec::parse(h).map_err(|e| invalid("event-handler", e))?;
        }
        let log_level = self
            .log_level
            .unwrap_or_else(|| "info".into())
            .to_lowercase();
        if !["trace", "debug", "info", "warn", "err", "error"].contains(&log_level.as_str()) {
            return Err(invalid("log-level", format!("unknown level {log_level:?}")));
        }
        let mut tags = BTreeMap::new();
        if let Some(tf) = &self.tags_file {
            tags = read_tags_file(tf)?;
        }
        tags.extend(self.tags);
        let meta = nuvol_gossip::encode_meta(protocol, &tags);
        if meta.len() > nuvol_wire::memberlist::META_MAX_SIZE {
            return Err(invalid(
                "tags",
                format!(
                    "encoded length of tags exceeds limit of {} bytes",
                    nuvol_wire::memberlist::META_MAX_SIZE
                ),
            ));
        }
        // The API and DNS listen on the RPC address's IP by default, so
        // that agents given distinct RPC addresses do not collide.
        let local_addr =
            |field: &'static str, v: Option<String>, port: u16| match v.as_deref().map(str::trim) {
                Some("") => Ok(None),
                Some(a) => parse_addr(a, port).map(Some).map_err(|e| invalid(field, e)),
                None => Ok(Some(SocketAddr::new(rpc_addr.ip(), port))),
            };
        let http_addr = local_addr("http-addr", self.http_addr, 7000)?;
        let dns_addr = local_addr("dns-addr", self.dns_addr, 8600)?;
        let domain = self
            .domain
            .unwrap_or_else(|| "nuvol".into())
            .trim_matches('.')
            .to_ascii_lowercase();
        if domain.is_empty()
            || domain.len() > 200
            || !domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
        {
            return Err(invalid(
                "domain",
                format!("{domain:?} is not a valid DNS domain"),
            ));
        }
        let cloud = self.cloud.unwrap_or_else(|| "nuvol".into());
        if cloud.is_empty() || cloud.len() > 63 || cloud.contains(char::is_whitespace) {
            return Err(invalid("cloud", "must be 1 to 63 bytes without spaces"));
        }
        let catalog_remove_after = dur("catalog-remove-after", self.catalog_remove_after)?
            .unwrap_or(Duration::from_secs(24 * 3600));
        Ok(AgentConfig {
            http_addr,
            dns_addr,
            domain,
            services_dir: self.services_dir,
            cloud,
            mdns: self.mdns.unwrap_or(true),
            mdns_import: self.mdns_import.unwrap_or(false),
            catalog_remove_after,
            node_name,
            bind,
            advertise,
            join: self.join,
            retry_join: self.retry_join,
            retry_interval,
            retry_max: self.retry_max.unwrap_or(0),
            replay_on_join: self.replay_on_join.unwrap_or(false),
            rejoin_after_leave: self.rejoin_after_leave.unwrap_or(false),
            rpc_addr,
            rpc_auth: self.rpc_auth.filter(|s| !s.is_empty()),
            encrypt_key: self.encrypt_key,
            keyring_file: self.keyring_file,
            tags,
            tags_file: self.tags_file,
            profile,
            protocol,
            data_dir: self.data_dir.unwrap_or_else(default_data_dir),
            snapshot_path: self.snapshot_path,
            event_handlers: self.event_handlers,
            log_level,
            reconnect_interval: dur("reconnect-interval", self.reconnect_interval)?,
            reconnect_timeout: dur("reconnect-timeout", self.reconnect_timeout)?,
            tombstone_timeout: dur("tombstone-timeout", self.tombstone_timeout)?,
            disable_coordinates: self.disable_coordinates.unwrap_or(false),
            leave_on_terminate: self.leave_on_terminate.unwrap_or(false),
            skip_leave_on_interrupt: self.skip_leave_on_interrupt.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("127.0.0.1:5000", 1).unwrap().port(), 5000);
        assert_eq!(parse_addr("127.0.0.1", 7946).unwrap().port(), 7946);
        assert_eq!(parse_addr(":5000", 1).unwrap().port(), 5000);
        assert!(parse_addr("nonsense:", 1).is_err());
        assert!(parse_addr("1.2.3.4:99999", 1).is_err());
    }

    #[test]
    fn file_refuses_unknown_keys_and_flags_override() {
        assert!(FileConfig::parse("nodename = 'x'").is_err());
        let f =
            FileConfig::parse("node_name = 'a'\nprofile = 'wan'\n[tags]\nrole = 'web'").unwrap();
        let flags = FileConfig {
            node_name: Some("b".into()),
            ..Default::default()
        };
        let c = f.merge(flags).resolve().unwrap();
        assert_eq!(c.node_name, "b");
        assert_eq!(c.profile, nuvol_gossip::Profile::Wan);
        assert_eq!(c.tags["role"], "web");
    }

    #[test]
    fn rejects_bad_values() {
        let bad = |f: FileConfig| f.resolve().is_err();
        assert!(bad(FileConfig {
            protocol: Some(9),
            ..Default::default()
        }));
        assert!(bad(FileConfig {
            profile: Some("fast".into()),
            ..Default::default()
        }));
        assert!(bad(FileConfig {
            encrypt_key: Some("nope".into()),
            ..Default::default()
        }));
        let mut tags = BTreeMap::new();
        tags.insert("big".to_string(), "x".repeat(600));
        assert!(bad(FileConfig {
            tags,
            ..Default::default()
        }));
    }

    #[test]
    fn catalog_settings() {
        let c = FileConfig {
            rpc_addr: Some("127.1.2.3:7373".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.http_addr, Some("127.1.2.3:7000".parse().unwrap()));
        assert_eq!(c.dns_addr, Some("127.1.2.3:8600".parse().unwrap()));
        assert_eq!(c.domain, "nuvol");
        assert!(c.mdns && !c.mdns_import);
        let c = FileConfig {
            http_addr: Some("".into()),
            dns_addr: Some("127.0.0.1:53".into()),
            domain: Some("Home.Lan.".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.http_addr, None);
        assert_eq!(c.dns_addr.unwrap().port(), 53);
        assert_eq!(c.domain, "home.lan");
        for bad in [
            FileConfig {
                domain: Some("a..b".into()),
                ..Default::default()
            },
            FileConfig {
                domain: Some("ex ample".into()),
                ..Default::default()
            },
            FileConfig {
                dns_addr: Some("nope:".into()),
                ..Default::default()
            },
            FileConfig {
                cloud: Some("two words".into()),
                ..Default::default()
            },
            FileConfig {
                catalog_remove_after: Some("soon".into()),
                ..Default::default()
            },
        ] {
            assert!(bad.resolve().is_err());
        }
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../../nuvol.example.toml");
        FileConfig::parse(text).unwrap().resolve().unwrap();
    }
}
