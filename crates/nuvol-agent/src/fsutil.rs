//! File helpers every component uses for what it keeps on disk, and the
//! test hook that slows every such write down.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// Test-only fault injection: with `NUVOL_FAULT_IO_DELAY=2s` in the
/// agent's environment every durable write (snapshot, keyring, tags file,
/// catalog store, token) first sleeps that long. It proves that a slow or
/// stuck disk never reaches the gossip thread (see `tests/slow_disk.rs`
/// of the `nuvol` crate). Unset, it costs one atomic load.
pub const FAULT_IO_DELAY_ENV: &str = "NUVOL_FAULT_IO_DELAY";

/// Sleep for the injected I/O delay, if any. Called on the thread that is
/// about to write, which must therefore never be the gossip thread.
pub fn io_delay() {
    static DELAY: OnceLock<Option<Duration>> = OnceLock::new();
    let d = DELAY.get_or_init(|| {
        let v = std::env::var(FAULT_IO_DELAY_ENV).ok()?;
        match crate::duration::parse(&v) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(value = %v, error = %e, "ignoring {FAULT_IO_DELAY_ENV}");
                None
            }
        }
    });
    if let Some(d) = d {
        std::thread::sleep(*d);
    }
}

/// Write `data` to `path` so that a crash leaves either the old or the new
/// content: write a temp file in the same directory, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    io_delay();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        super::write_atomic(&p, b"one", 0o600).unwrap();
        super::write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
