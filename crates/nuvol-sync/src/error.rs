//! Why sync does not work on this node; every variant names its cause.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    #[error("syncthing not found (install Debian's syncthing or set [sync] syncthing): {program}")]
    NotFound { program: String },
    #[error("Syncthing at {addr} refused the API key")]
    KeyRefused { addr: SocketAddr },
    #[error("Syncthing at {addr} does not answer: {message}")]
    Unreachable { addr: SocketAddr, message: String },
    #[error("Syncthing at {addr}: {message}")]
    Api { addr: SocketAddr, message: String },
    #[error("Syncthing exited ({status}){}", last_line(.log))]
    Exited { status: String, log: String },
    #[error("cannot start {program}: {message}")]
    Spawn { program: String, message: String },
    #[error("{}: {message}", .path.display())]
    Io { path: PathBuf, message: String },
    #[error("no folder {0:?} in [sync] folders")]
    UnknownFolder(String),
}

fn last_line(log: &str) -> String {
    match log.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(l) => format!(": {}", l.trim()),
        None => String::new(),
    }
}
