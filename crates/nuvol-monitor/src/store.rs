//! The rings on disk: one redb table of rows keyed time-major,
//! `(step, row, series)` → [`StoredPoint`] (see [`crate::rings`] for why
//! that order). A series is `DEVICE \0 METRIC`.
//!
//! Writes come in batches (the points that closed since the last flush,
//! one transaction); reads are point lookups, one per row of a ring. A
//! row that does not decode is skipped and counted, never a panic; a file
//! that is not a redb database is an error at open (the component then
//! moves it aside and starts an empty one, keeping the old file).

use crate::rings::{rows_of, Closed, StoredPoint, RESOLUTIONS};
use redb::{Database, ReadableDatabase, TableDefinition};
use std::path::{Path, PathBuf};

/// The store's page cache.
pub const CACHE_BYTES: usize = 4 << 20;

const ROWS: TableDefinition<(u32, u16, &str), &[u8]> = TableDefinition::new("rows");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the monitoring store {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("monitoring store: {0}")]
    Db(String),
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// The series key of a device's metric.
pub fn series_key(device: &str, metric: &str) -> String {
    format!("{device}\0{metric}")
}

pub struct RingStore {
    db: Database,
}

impl RingStore {
    pub fn open(path: &Path) -> Result<RingStore, StoreError> {
        // redb caches up to 1 GiB by default: as the rings fill, the
        // agent's memory would follow the file. Rows are written once per
        // slot and read only when someone looks at a device.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        let tx = db.begin_write().map_err(db_err)?;
        tx.open_table(ROWS).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(RingStore { db })
    }

    /// Write closed points, `(series, point)`, in one transaction.
    pub fn write(&self, rows: &[(String, Closed)]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(ROWS).map_err(db_err)?;
            for (series, c) in rows {
                t.insert(
                    (c.step, c.row, series.as_str()),
                    c.stored.encode().as_slice(),
                )
                .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Every stored row of one ring of `series` (rows that do not decode
    /// are left out and counted in the second value).
    pub fn ring(&self, series: &str, step: u32) -> Result<(Vec<StoredPoint>, usize), StoreError> {
        let Some(rows) = rows_of(step) else {
            return Ok((Vec::new(), 0));
        };
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(ROWS).map_err(db_err)?;
        let mut out = Vec::new();
        let mut bad = 0;
        for row in 0..rows {
            if let Some(v) = t.get((step, row, series)).map_err(db_err)? {
                match StoredPoint::decode(v.value()) {
                    Ok(p) => out.push(p),
                    Err(_) => bad += 1,
                }
            }
        }
        Ok((out, bad))
    }

    /// The rows of `series` for the slots `at` falls in, one per
    /// resolution: what an open point resumes from after a restart.
    pub fn open_rows(&self, series: &str, at: u64) -> Result<Vec<(u32, StoredPoint)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(ROWS).map_err(db_err)?;
        let mut out = Vec::new();
        for (step, rows) in RESOLUTIONS {
            let row = crate::rings::row(at / u64::from(step), rows);
            if let Some(v) = t.get((step, row, series)).map_err(db_err)? {
                if let Ok(p) = StoredPoint::decode(v.value()) {
                    out.push((step, p));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rings::{window, Open};

    const T0: u64 = 1_764_547_200;

    #[test]
    fn closed_points_are_kept_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.redb");
        let key = series_key("r1", "rtt_ms");
        {
            let store = RingStore::open(&path).unwrap();
            let mut open = Open::new();
            let mut rows = Vec::new();
            for i in 0..30u64 {
                for c in open.add(T0 + i * 60, i as f64) {
                    rows.push((key.clone(), c));
                }
            }
            store.write(&rows).unwrap();
            store
                .write(
                    &open
                        .pending()
                        .into_iter()
                        .map(|c| (key.clone(), c))
                        .collect::<Vec<_>>(),
                )
                .unwrap();
        }
        let store = RingStore::open(&path).unwrap();
        let (stored, bad) = store.ring(&key, 300).unwrap();
        assert_eq!(bad, 0);
        let now = T0 + 29 * 60;
        let w = window(300, 288, now / 300, stored, None);
        // 30 one-minute samples: six 5-minute points of five samples.
        assert_eq!(w.len(), 6, "{w:?}");
        assert!(w.iter().all(|(_, p)| p.count == 5));
        assert_eq!(w[0].1.min, 0.0);
        assert_eq!(w[5].1.max, 29.0);
        // The open rows resume: the 30-minute point holds all 30.
        let mut open = Open::new();
        for (step, p) in store.open_rows(&key, now).unwrap() {
            open.resume(step, p, now);
        }
        assert_eq!(open.open(1800).unwrap().point.count, 30);
        assert!(store.ring("other\0x", 300).unwrap().0.is_empty());
    }

    #[test]
    fn a_corrupt_row_is_skipped_and_a_corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.redb");
        let store = RingStore::open(&path).unwrap();
        {
            let tx = store.db.begin_write().unwrap();
            {
                let mut t = tx.open_table(ROWS).unwrap();
                t.insert((300u32, 1u16, "d\0m"), [1u8, 2, 3].as_slice())
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        assert_eq!(store.ring("d\0m", 300).unwrap(), (Vec::new(), 1));
        drop(store);
        let junk = dir.path().join("junk.redb");
        std::fs::write(&junk, b"not a database at all, just text").unwrap();
        let err = RingStore::open(&junk).err().unwrap();
        assert!(err.to_string().contains("junk.redb"), "{err}");
    }
}
