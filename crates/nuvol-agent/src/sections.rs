//! The core's own config sections: `[agent]` (the process) and `[gossip]`
//! (membership). Components declare theirs next to their code.

use crate::config::{Addr, ConfigError, Secret, Section, Tags, Validate};
use nuvol_gossip::Profile;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

crate::settings! {
    /// The agent process.
    pub struct AgentSettings in "agent", "Agent" {
        /// Where nuvol keeps its state (default: /var/lib/nuvol as root,
        /// ~/.local/share/nuvol otherwise, or $NUVOL_DATA_DIR).
        data_dir: PathBuf = default_data_dir(), flag "data-dir";
        /// Log level: trace, debug, info, warn or err.
        log_level: String = "info".into(), flag "log-level";
        /// Leave the cluster gracefully on SIGTERM.
        leave_on_terminate: bool = false, flag "leave-on-terminate";
        /// Do not leave gracefully on SIGINT.
        skip_leave_on_interrupt: bool = false, flag "skip-leave-on-interrupt";
        /// How long components get to finish their work when the agent stops.
        drain_timeout: Duration = Duration::from_secs(5), flag "drain-timeout";
    }
}

impl Validate for AgentSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if crate::logs::parse_level(&self.log_level).is_none() {
            return Err(ConfigError::invalid::<Self>(
                "log_level",
                format!(
                    "unknown level {:?} (trace, debug, info, warn, err)",
                    self.log_level
                ),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid::<Self>(
                "data_dir",
                "must not be empty",
            ));
        }
        Ok(())
    }
}

impl AgentSettings {
    /// The level for `tracing` (serf's names; validated at load).
    pub fn tracing_level(&self) -> tracing::Level {
        crate::logs::parse_level(&self.log_level).unwrap_or(tracing::Level::INFO)
    }
}

crate::settings! {
    /// Gossip: membership, failure detection, tags and encryption (serf's
    /// agent flags).
    pub struct GossipSettings in "gossip", "Gossip" {
        /// Node name, unique in the cluster (default: the host name).
        node: String = hostname(), flag "node";
        /// Gossip address for UDP and TCP, IP:PORT (Guifi.net's Cloudy uses
        /// port 5000).
        bind: Addr<7946> = Addr::any(), flag "bind";
        /// Address advertised to other nodes, IP:PORT (default: the bind
        /// address, or with 0.0.0.0 the address of the interface that holds
        /// the default route).
        advertise: Option<Addr<0>> = None, flag "advertise";
        /// Gossip encryption key (base64, from `nuvol keygen`).
        encrypt: Option<Secret> = None, flag "encrypt", env "NUVOL_ENCRYPT_KEY";
        /// Keyring file (JSON list of base64 keys, the first is primary).
        keyring_file: Option<PathBuf> = None, flag "keyring-file";
        /// Tags of this node (KEY=VALUE flags, a table in the file).
        tags: Tags = Tags::default(), flag "tag";
        /// Tags file (a JSON object), kept up to date on `nuvol tags`.
        tags_file: Option<PathBuf> = None, flag "tags-file";
        /// Timing profile: lan, wan or local (Cloudy uses wan).
        profile: Profile = Profile::Lan, flag "profile";
        /// Serf protocol version, 2 to 5 (Cloudy uses 4).
        protocol: u8 = nuvol_gossip::config::SERF_PROTOCOL_MAX, flag "protocol";
        /// Snapshot file (default: DATA_DIR/serf.snapshot).
        snapshot: Option<PathBuf> = None, flag "snapshot";
        /// Time between reconnect attempts to failed nodes (default: the
        /// profile's).
        reconnect_interval: Option<Duration> = None, flag "reconnect-interval";
        /// Time after which a failed node is reaped (default 24h).
        reconnect_timeout: Option<Duration> = None, flag "reconnect-timeout";
        /// Time after which a left node is reaped (default 24h).
        tombstone_timeout: Option<Duration> = None, flag "tombstone-timeout";
        /// Do not compute network coordinates.
        disable_coordinates: bool = false, flag "disable-coordinates";
    }
}

impl Validate for GossipSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.node.is_empty() || self.node.len() > 128 {
            return Err(ConfigError::invalid::<Self>(
                "node",
                "node name must be 1 to 128 bytes",
            ));
        }
        let range =
            nuvol_gossip::config::SERF_PROTOCOL_MIN..=nuvol_gossip::config::SERF_PROTOCOL_MAX;
        if !range.contains(&self.protocol) {
            return Err(ConfigError::invalid::<Self>(
                "protocol",
                format!(
                    "{} is not supported ({} to {})",
                    self.protocol,
                    range.start(),
                    range.end()
                ),
            ));
        }
        if let Some(k) = &self.encrypt {
            nuvol_wire::security::parse_key(&k.0)
                .map_err(|e| ConfigError::invalid::<Self>("encrypt", e))?;
        }
        let tags = self.initial_tags()?;
        let meta = nuvol_gossip::encode_meta(self.protocol, &tags);
        if meta.len() > nuvol_wire::memberlist::META_MAX_SIZE {
            return Err(ConfigError::invalid::<Self>(
                "tags",
                format!(
                    "encoded length of tags exceeds limit of {} bytes",
                    nuvol_wire::memberlist::META_MAX_SIZE
                ),
            ));
        }
        self.core_config()
            .validate()
            .map_err(|e| ConfigError::invalid::<Self>("profile", e))
    }
}

impl GossipSettings {
    /// The tags to start with: the tags file's, then the configured ones.
    pub fn initial_tags(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut tags = match &self.tags_file {
            Some(tf) => {
                read_tags_file(tf).map_err(|e| ConfigError::invalid::<Self>("tags_file", e))?
            }
            None => BTreeMap::new(),
        };
        tags.extend(self.tags.0.clone());
        Ok(tags)
    }

    /// The sans-I/O core's configuration.
    pub fn core_config(&self) -> nuvol_gossip::Config {
        let mut c = nuvol_gossip::Config::new(self.node.clone(), self.profile);
        c.protocol = self.protocol;
        c.disable_coordinates = self.disable_coordinates;
        if let Some(d) = self.reconnect_interval {
            c.reconnect_interval = d;
        }
        if let Some(d) = self.reconnect_timeout {
            c.reconnect_timeout = d;
        }
        if let Some(d) = self.tombstone_timeout {
            c.tombstone_timeout = d;
        }
        c
    }

    /// The snapshot file: configured, or `serf.snapshot` in the data dir.
    pub fn snapshot_path(&self, data_dir: &Path) -> PathBuf {
        self.snapshot
            .clone()
            .unwrap_or_else(|| data_dir.join("serf.snapshot"))
    }
}

/// The default data directory: `$NUVOL_DATA_DIR`, else `/var/lib/nuvol` for
/// root, else `$XDG_DATA_HOME/nuvol` or `~/.local/share/nuvol`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NUVOL_DATA_DIR") {
        return PathBuf::from(d);
    }
    if rustix::process::geteuid().is_root() {
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

/// A tags file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TagsFileError {
    pub path: PathBuf,
    pub message: String,
}

/// Read a tags file: a JSON object of string values (serf's `-tags-file`).
pub fn read_tags_file(path: &Path) -> Result<BTreeMap<String, String>, TagsFileError> {
    let err = |message: String| TagsFileError {
        path: path.to_owned(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(BTreeMap::new()),
        Ok(text) => serde_json::from_str(&text).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Write a tags file atomically (temp file + rename).
pub fn write_tags_file(path: &Path, tags: &BTreeMap<String, String>) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(tags).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(path, text.as_bytes(), 0o644)
}

/// The core sections' keys, for checks of the example file.
pub fn core_keys() -> Vec<(&'static str, &'static [crate::config::Key])> {
    vec![
        (AgentSettings::NAME, AgentSettings::keys()),
        (GossipSettings::NAME, GossipSettings::keys()),
    ]
}
