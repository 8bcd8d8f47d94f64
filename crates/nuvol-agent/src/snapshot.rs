//! The member snapshot, in serf's `-snapshot` text format so a file can move
//! between serf and nuvol: one record a line, `alive: NAME ADDR:PORT`,
//! `not-alive: NAME`, `clock: N`, `event-clock: N`, `query-clock: N`,
//! `leave`, and `#` comments. Appends are flushed; when the file grows past a
//! limit it is compacted atomically (temp file + rename), so a crash leaves
//! either the old or the new file.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Compact once the file is larger than this.
const COMPACT_THRESHOLD: u64 = 128 * 1024;

/// What a previous run left behind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Previous {
    pub alive: BTreeMap<String, SocketAddr>,
    pub clock: u64,
    pub event_clock: u64,
    pub query_clock: u64,
    /// The last run ended with a graceful leave.
    pub left: bool,
    /// Lines that could not be parsed (skipped).
    pub bad_lines: usize,
}

pub struct Snapshot {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    state: Previous,
}

/// Parse a snapshot's text. Unknown or damaged lines are skipped (a torn last
/// line after a crash is expected), never fatal.
pub fn parse(text: &str) -> Previous {
    let mut p = Previous::default();
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "leave" {
            p.left = true;
            p.alive.clear();
            continue;
        }
        let Some((key, val)) = line.split_once(": ") else {
            p.bad_lines += 1;
            continue;
        };
        match key {
            "alive" => match val.rsplit_once(' ') {
                Some((name, addr)) => match addr.parse::<SocketAddr>() {
                    Ok(a) => {
                        p.left = false;
                        p.alive.insert(name.to_owned(), a);
                    }
                    Err(_) => p.bad_lines += 1,
                },
                None => p.bad_lines += 1,
            },
            "not-alive" => {
                p.alive.remove(val);
            }
            "clock" | "event-clock" | "query-clock" => match val.parse::<u64>() {
                Ok(v) => {
                    let slot = match key {
                        "clock" => &mut p.clock,
                        "event-clock" => &mut p.event_clock,
                        _ => &mut p.query_clock,
                    };
                    *slot = (*slot).max(v);
                }
                Err(_) => p.bad_lines += 1,
            },
            // serf also records coordinates; we recompute them.
            "coordinate" => {}
            _ => p.bad_lines += 1,
        }
    }
    p
}

impl Snapshot {
    /// Open (creating) the snapshot at `path` and read what it holds.
    pub fn open(path: &Path) -> std::io::Result<(Snapshot, Previous)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let text = match std::fs::read(path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let prev = parse(&text);
        if prev.bad_lines > 0 {
            tracing::warn!(path = %path.display(), lines = prev.bad_lines, "skipped damaged snapshot lines");
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let size = file.metadata()?.len();
        let mut state = prev.clone();
        state.left = false;
        let mut s = Snapshot {
            path: path.to_owned(),
            file,
            size,
            state,
        };
        // A torn last line must not glue onto the next record.
        if !text.is_empty() && !text.ends_with('\n') {
            s.append("\n")?;
        }
        Ok((s, prev))
    }

    fn append(&mut self, line: &str) -> std::io::Result<()> {
        crate::fsutil::io_delay();
        self.file.write_all(line.as_bytes())?;
        self.file.flush()?;
        self.size += line.len() as u64;
        if self.size > COMPACT_THRESHOLD {
            self.compact()?;
        }
        Ok(())
    }

    pub fn alive(&mut self, name: &str, addr: SocketAddr) -> std::io::Result<()> {
        if self.state.alive.get(name) == Some(&addr) {
            return Ok(());
        }
        self.state.alive.insert(name.to_owned(), addr);
        self.append(&format!("alive: {name} {addr}\n"))
    }

    pub fn not_alive(&mut self, name: &str) -> std::io::Result<()> {
        if self.state.alive.remove(name).is_none() {
            return Ok(());
        }
        self.append(&format!("not-alive: {name}\n"))
    }

    pub fn clocks(&mut self, clock: u64, event: u64, query: u64) -> std::io::Result<()> {
        let mut lines = String::new();
        if clock > self.state.clock {
            self.state.clock = clock;
            lines.push_str(&format!("clock: {clock}\n"));
        }
        if event > self.state.event_clock {
            self.state.event_clock = event;
            lines.push_str(&format!("event-clock: {event}\n"));
        }
        if query > self.state.query_clock {
            self.state.query_clock = query;
            lines.push_str(&format!("query-clock: {query}\n"));
        }
        if lines.is_empty() {
            return Ok(());
        }
        self.append(&lines)
    }

    /// Record a graceful leave and make it durable.
    pub fn leave(&mut self) -> std::io::Result<()> {
        self.state.alive.clear();
        self.append("leave\n")?;
        self.file.sync_all()
    }

    /// Rewrite the file with just the current state.
    pub fn compact(&mut self) -> std::io::Result<()> {
        let mut text = String::from("# nuvol snapshot (serf format)\n");
        for (name, addr) in &self.state.alive {
            text.push_str(&format!("alive: {name} {addr}\n"));
        }
        text.push_str(&format!(
            "clock: {}\nevent-clock: {}\nquery-clock: {}\n",
            self.state.clock, self.state.event_clock, self.state.query_clock
        ));
        crate::fsutil::write_atomic(&self.path, text.as_bytes(), 0o600)?;
        self.file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        self.size = text.len() as u64;
        Ok(())
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("snap");
        {
            let (mut s, prev) = Snapshot::open(&p).unwrap();
            assert_eq!(prev, Previous::default());
            s.alive("a", "127.0.0.1:7946".parse().unwrap()).unwrap();
            s.alive("b", "127.0.0.2:7946".parse().unwrap()).unwrap();
            s.not_alive("a").unwrap();
            s.clocks(5, 3, 2).unwrap();
        }
        // Simulate a crash mid-line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"alive: c 127.0")
            .unwrap();
        let (mut s, prev) = Snapshot::open(&p).unwrap();
        assert_eq!(prev.alive.len(), 1);
        assert_eq!(prev.alive["b"], "127.0.0.2:7946".parse().unwrap());
        assert_eq!((prev.clock, prev.event_clock, prev.query_clock), (5, 3, 2));
        assert_eq!(prev.bad_lines, 1);
        assert!(!prev.left);
        s.alive("d", "127.0.0.4:1".parse().unwrap()).unwrap();
        s.compact().unwrap();
        s.leave().unwrap();
        drop(s);
        let (_, prev) = Snapshot::open(&p).unwrap();
        assert!(prev.left);
        assert!(prev.alive.is_empty());
        assert_eq!(prev.clock, 5);
    }

    #[test]
    fn reads_serf_written_lines() {
        let text =
            "alive: serf1 127.0.0.1:7946\ncoordinate: {\"Vec\":[0]}\nclock: 3\nnot-alive: x\n";
        let p = parse(text);
        assert_eq!(p.alive.len(), 1);
        assert_eq!(p.clock, 3);
        assert_eq!(p.bad_lines, 0);
    }
}
