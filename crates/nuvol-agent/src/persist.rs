//! The gossip layer's disk writes, on their own thread: the snapshot's
//! appends and compactions, the keyring file and the tags file.
//!
//! Architecture Invariant: the gossip thread never writes a file, fsyncs or
//! waits on a disk. The driver hands each write to this thread over the
//! bounded channel `persist` without waiting; if the disk is so slow that the
//! channel fills, writes are dropped and counted (serf's snapshotter drops
//! too), and the failure detector keeps its timing. Rewrites of a whole file
//! (keyring, tags) queued back to back are coalesced into the last one.

use crate::chan::{Channels, Tx};
use crate::snapshot::Snapshot;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::sync::oneshot;

/// Depth of the queue to the writer thread.
const DEPTH: usize = 4096;

#[derive(Debug)]
pub(crate) enum PersistOp {
    Alive(String, SocketAddr),
    NotAlive(String),
    Clocks(u64, u64, u64),
    /// Record a graceful leave (durably), then answer.
    Leave(oneshot::Sender<()>),
    /// The keyring file's new content.
    Keyring(String),
    /// The tags file's new content (the user's tags, never owned ones),
    /// and who waits for it to be written.
    Tags(BTreeMap<String, String>, Option<oneshot::Sender<()>>),
    /// Flush the snapshot to disk, then answer.
    Sync(oneshot::Sender<()>),
}

pub(crate) struct Files {
    pub snapshot: Option<Snapshot>,
    pub keyring_file: Option<PathBuf>,
    pub tags_file: Option<PathBuf>,
}

/// Start the writer thread. It ends when every sender is dropped, after
/// flushing the snapshot.
pub(crate) fn start(
    mut files: Files,
    channels: &Channels,
) -> std::io::Result<(Tx<PersistOp>, std::thread::JoinHandle<()>)> {
    let (tx, mut rx) = channels.mpsc::<PersistOp>("persist", DEPTH);
    let thread = std::thread::Builder::new()
        .name("nuvol-persist".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut batch = vec![first];
                while let Ok(op) = rx.try_recv() {
                    batch.push(op);
                }
                write_batch(&mut files, batch);
            }
            if let Some(s) = files.snapshot.as_mut() {
                if let Err(e) = s.sync() {
                    tracing::error!(error = %e, "snapshot sync failed");
                }
            }
        })?;
    Ok((tx, thread))
}

fn write_batch(files: &mut Files, batch: Vec<PersistOp>) {
    let last_keyring = batch
        .iter()
        .rposition(|op| matches!(op, PersistOp::Keyring(_)));
    let last_tags = batch
        .iter()
        .rposition(|op| matches!(op, PersistOp::Tags(..)));
    // Who waits for a tags write: answered once the last one is on disk.
    let mut waiting = Vec::new();
    for (i, op) in batch.into_iter().enumerate() {
        match op {
            PersistOp::Alive(name, addr) => snapshot(files, |s| s.alive(&name, addr)),
            PersistOp::NotAlive(name) => snapshot(files, |s| s.not_alive(&name)),
            PersistOp::Clocks(c, e, q) => snapshot(files, |s| s.clocks(c, e, q)),
            PersistOp::Leave(done) => {
                snapshot(files, |s| s.leave());
                let _ = done.send(());
            }
            PersistOp::Sync(done) => {
                snapshot(files, |s| s.sync());
                let _ = done.send(());
            }
            PersistOp::Keyring(text) if Some(i) == last_keyring => {
                if let Some(path) = &files.keyring_file {
                    if let Err(e) = crate::fsutil::write_atomic(path, text.as_bytes(), 0o600) {
                        tracing::error!(path = %path.display(), error = %e, "failed to write the keyring file");
                    }
                }
            }
            PersistOp::Tags(tags, done) if Some(i) == last_tags => {
                if let Some(path) = &files.tags_file {
                    if let Err(e) = crate::sections::write_tags_file(path, &tags) {
                        tracing::error!(path = %path.display(), error = %e, "failed to write the tags file");
                    }
                }
                waiting.extend(done);
            }
            // Superseded by a later rewrite in the same batch.
            PersistOp::Keyring(_) => {}
            PersistOp::Tags(_, done) => waiting.extend(done),
        }
    }
    for w in waiting {
        let _ = w.send(());
    }
}

fn snapshot(files: &mut Files, f: impl FnOnce(&mut Snapshot) -> std::io::Result<()>) {
    if let Some(s) = files.snapshot.as_mut() {
        if let Err(e) = f(s) {
            tracing::error!(error = %e, "snapshot write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_in_order_and_coalesces_rewrites() {
        let d = tempfile::tempdir().unwrap();
        let snap = d.path().join("snap");
        let tags = d.path().join("tags.json");
        let (s, _) = Snapshot::open(&snap).unwrap();
        let mut files = Files {
            snapshot: Some(s),
            keyring_file: None,
            tags_file: Some(tags.clone()),
        };
        let t =
            |v: &str| PersistOp::Tags(BTreeMap::from([("role".to_owned(), v.to_owned())]), None);
        write_batch(
            &mut files,
            vec![
                PersistOp::Alive("a".into(), "127.0.0.1:1".parse().unwrap()),
                t("one"),
                PersistOp::NotAlive("a".into()),
                t("two"),
            ],
        );
        let text = std::fs::read_to_string(&snap).unwrap();
        assert_eq!(text, "alive: a 127.0.0.1:1\nnot-alive: a\n");
        assert!(std::fs::read_to_string(&tags).unwrap().contains("two"));
    }
}
