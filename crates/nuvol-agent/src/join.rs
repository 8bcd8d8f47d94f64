//! Joining the cluster: from the snapshot of the last run, through `--join`
//! at start (a failure stops the agent, as serf's `-join` does) and through
//! `--retry-join` until it works. Listed last in the binary, so a node joins
//! once its other components (the catalog) are ready.
//!
//! The bootstrap addresses a user saves at run time (the dashboard's
//! settings page, as Cloudy's Serf settings page did when Guifi.net's
//! bootstrap server moved) live in `DATA_DIR/join.json` ([`SavedJoin`]);
//! at start they are retried like `--retry-join`, never fatal.

use crate::component::{BuildError, Component, ComponentError};
use crate::config::{ConfigError, Validate};
use crate::registry::{BuildCtx, RunCtx};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file, in the data dir, holding the saved bootstrap addresses.
pub const SAVED_JOIN_FILE: &str = "join.json";
/// Most saved addresses.
pub const MAX_SAVED_JOIN: usize = 16;

/// Bootstrap addresses saved at run time.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedJoin {
    pub addrs: Vec<String>,
}

/// Why saved join addresses could not be read, checked or written.
#[derive(Debug, thiserror::Error)]
pub enum SavedJoinError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a saved join file: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// `index` is the position of the bad address.
    #[error("{message}")]
    Invalid { index: usize, message: String },
}

/// Check one join address: `IP:PORT`, `[IPv6]:PORT`, `HOST` or `HOST:PORT`.
pub fn check_join_addr(a: &str) -> Result<(), String> {
    if a.is_empty() {
        return Err("an address is empty".into());
    }
    if a.len() > 255 {
        return Err("an address is longer than 255 characters".into());
    }
    if a.parse::<std::net::SocketAddr>().is_ok() || a.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = match a.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (a, None),
    };
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("{a:?}: the port must be 1-65535")),
            Ok(_) => {}
        }
    }
    let host_ok = !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if host_ok {
        Ok(())
    } else {
        Err(format!("{a:?} is not IP:PORT, HOST or HOST:PORT"))
    }
}

impl SavedJoin {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(SAVED_JOIN_FILE)
    }

    /// Addresses checked, trimmed and de-duplicated.
    pub fn new(addrs: impl IntoIterator<Item = String>) -> Result<Self, SavedJoinError> {
        let mut out: Vec<String> = Vec::new();
        for (index, a) in addrs.into_iter().enumerate() {
            let a = a.trim().to_owned();
            check_join_addr(&a).map_err(|message| SavedJoinError::Invalid { index, message })?;
            if !out.contains(&a) {
                out.push(a);
            }
        }
        if out.len() > MAX_SAVED_JOIN {
            return Err(SavedJoinError::Invalid {
                index: MAX_SAVED_JOIN,
                message: format!("at most {MAX_SAVED_JOIN} addresses"),
            });
        }
        Ok(SavedJoin { addrs: out })
    }

    /// The saved addresses (none when the file does not exist). A file
    /// that does not parse is an error naming it; it is left as it is.
    pub fn load(data_dir: &Path) -> Result<Self, SavedJoinError> {
        let path = Self::path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(SavedJoinError::Io { path, source }),
        };
        let raw: SavedJoin = serde_json::from_str(&text).map_err(|e| SavedJoinError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Self::new(raw.addrs).map_err(|e| SavedJoinError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    /// Replace the file atomically.
    pub fn save(&self, data_dir: &Path) -> Result<(), SavedJoinError> {
        let path = Self::path(data_dir);
        let text = serde_json::to_vec_pretty(self).map_err(|e| SavedJoinError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        crate::fsutil::write_atomic(&path, &text, 0o644)
            .map_err(|source| SavedJoinError::Io { path, source })
    }
}

crate::settings! {
    /// Joining the cluster.
    pub struct JoinSettings in "join", "Joining" {
        /// Join this node at start, IP:PORT or HOST[:PORT] (repeatable); the
        /// agent stops if none answers.
        join: Vec<String> = Vec::new(), flag "join";
        /// Join this node, retrying until it works (repeatable).
        retry_join: Vec<String> = Vec::new(), flag "retry-join";
        /// Time between retry-join attempts.
        retry_interval: Duration = Duration::from_secs(30), flag "retry-interval";
        /// Give up retry-join after this many attempts (0: never).
        retry_max: u32 = 0, flag "retry-max";
        /// Replay past user events when joining.
        replay: bool = false, flag "replay";
        /// Rejoin the cluster from the snapshot even after a graceful leave.
        rejoin: bool = false, flag "rejoin";
    }
}

impl Validate for JoinSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.retry_interval.is_zero() && !self.retry_join.is_empty() {
            return Err(ConfigError::invalid::<Self>(
                "retry_interval",
                "must be more than 0s",
            ));
        }
        Ok(())
    }
}

/// The join component.
pub struct Join {
    cfg: JoinSettings,
    /// The start-up joins ran (a restart does not repeat them).
    started: bool,
}

impl Component for Join {
    type Config = JoinSettings;
    const NAME: &'static str = "join";
    /// A `--join` that fails stops the agent, as serf's does.
    const CRITICAL: bool = true;

    fn build(cfg: JoinSettings, _ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        Ok(Some(Join {
            cfg,
            started: false,
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let cluster = ctx.cluster().clone();
        let mut tasks = tokio::task::JoinSet::new();
        if !self.started {
            self.started = true;
            let rejoin: Vec<String> = match cluster.previous() {
                Some(p) if !p.left || self.cfg.rejoin => p
                    .alive
                    .iter()
                    .filter(|(n, _)| n.as_str() != cluster.name())
                    .map(|(_, a)| a.to_string())
                    .collect(),
                _ => Vec::new(),
            };
            if !rejoin.is_empty() {
                let c = cluster.clone();
                tasks.spawn(async move {
                    for a in rejoin {
                        match c.join(std::slice::from_ref(&a), false).await {
                            Ok(_) => {
                                tracing::info!(addr = %a, "re-joined from snapshot");
                                return;
                            }
                            Err(e) => {
                                tracing::debug!(addr = %a, error = %e, "snapshot re-join failed")
                            }
                        }
                    }
                    tracing::warn!("failed to re-join any previously known node");
                });
            }
            if !self.cfg.join.is_empty() {
                let n = cluster.join(&self.cfg.join, self.cfg.replay).await?;
                tracing::info!(joined = n, "joined cluster");
            }
        }
        ctx.ready();
        let mut retry = self.cfg.retry_join.clone();
        let data_dir = ctx.registry().node.data_dir.clone();
        match tokio::task::spawn_blocking(move || SavedJoin::load(&data_dir)).await {
            Ok(Ok(saved)) => {
                for a in saved.addrs {
                    if !retry.contains(&a) {
                        retry.push(a);
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "ignoring the saved join addresses"),
            Err(e) => tracing::warn!(error = %e, "reading the saved join addresses failed"),
        }
        if !retry.is_empty() {
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                let r = tokio::select! {
                    r = cluster.join(&retry, self.cfg.replay) => r,
                    () = ctx.stopping() => return Ok(()),
                };
                match r {
                    Ok(n) => {
                        tracing::info!(joined = n, "retry-join succeeded");
                        break;
                    }
                    Err(e) => tracing::warn!(attempt, error = %e, "retry-join failed"),
                }
                if self.cfg.retry_max > 0 && attempt >= self.cfg.retry_max {
                    tracing::error!("retry-join: giving up after {attempt} attempts");
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(self.cfg.retry_interval) => {}
                    () = ctx.stopping() => return Ok(()),
                }
            }
        }
        // Keep the snapshot re-join going until it is done or we stop.
        tokio::select! {
            _ = async { while tasks.join_next().await.is_some() {} } => {}
            () = ctx.stopping() => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_addresses_are_checked() {
        for ok in [
            "10.0.0.1:7946",
            "10.0.0.1",
            "[::1]:7946",
            "::1",
            "node-1.guifi.net",
            "bootstrap:7946",
        ] {
            assert_eq!(check_join_addr(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "host:0",
            "host:99999",
            "a b",
            "-x.net",
            "<script>",
            "h:p",
            "a..b",
        ] {
            assert!(check_join_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn saved_join_round_trips_and_rejects_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SavedJoin::load(dir.path()).unwrap(), SavedJoin::default());
        let s = SavedJoin::new([
            " 10.0.0.1:7946".into(),
            "10.0.0.1:7946".into(),
            "b.net".into(),
        ])
        .unwrap();
        assert_eq!(s.addrs, ["10.0.0.1:7946", "b.net"]);
        s.save(dir.path()).unwrap();
        assert_eq!(SavedJoin::load(dir.path()).unwrap(), s);
        let e = SavedJoin::new(["ok.net".into(), "bad host".into()]).unwrap_err();
        assert!(matches!(e, SavedJoinError::Invalid { index: 1, .. }), "{e}");
        std::fs::write(SavedJoin::path(dir.path()), b"{garbage").unwrap();
        let e = SavedJoin::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("join.json"), "{e}");
        // The corrupt file is left for the user to look at.
        assert_eq!(
            std::fs::read(SavedJoin::path(dir.path())).unwrap(),
            b"{garbage"
        );
    }
}
