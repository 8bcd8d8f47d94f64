//! The rings on disk, packed: the points that close together share one
//! value.
//!
//! Table `points`: `(step, row, bucket)` → a blob of entries `(series id
//! u32, StoredPoint)` sorted by id. A series (one metric of one device,
//! `DEVICE \0 METRIC`) gets a small id once, in table `series`; its bucket
//! is a stable hash of its device ([`BUCKETS`] of them), so all of a
//! device's series sit in the same blob of a row, and reading a device's
//! charts is one lookup per row. Keys are time-major (see
//! [`crate::rings`]): the points closing at one slot boundary are a few
//! hundred neighbouring values, rewritten in one transaction per flush.
//!
//! Why packed: one redb row per point (the first layout) cost about 100
//! bytes on disk for a 22-byte point (key with the series name, B-tree
//! slot, page slack); here a point is 26 bytes in a value of a few
//! hundred (BENCHMARKS.md, "The ring store on disk").
//!
//! A blob rewrite drops the entries left from an older lap of the ring
//! (a row's slots differ by multiples of its ring's rows, so an entry
//! older than the newest written is outside every window), so a removed
//! device's points go away by themselves within one lap.
//!
//! Reads are point lookups; an entry or blob that does not decode is
//! skipped and counted, never a panic, and a write replaces a corrupt blob.
//! A file that is not a redb database is an error at open (the component
//! then moves it aside and starts an empty one, keeping the old file). A
//! store of the first layout (table `rows`) is converted at open.

use crate::rings::{rows_of, Closed, StoredPoint, RESOLUTIONS, STORED_BYTES};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    TableHandle,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The store's page cache.
pub const CACHE_BYTES: usize = 4 << 20;

/// Buckets per row: a blob holds about 1/BUCKETS of the series (1,000
/// devices of 12 metrics: about 47 entries, 1.2 KB). Fixed for a store's
/// life: a series' bucket is part of where its points are.
pub const BUCKETS: u16 = 256;

/// Bytes of one entry in a blob: the series id and its point.
pub const ENTRY_BYTES: usize = 4 + STORED_BYTES;

const POINTS: TableDefinition<(u32, u16, u16), &[u8]> = TableDefinition::new("points");
const SERIES: TableDefinition<&str, u32> = TableDefinition::new("series");
/// The first layout, one row per point; converted at open.
const LEGACY_ROWS: TableDefinition<(u32, u16, &str), &[u8]> = TableDefinition::new("rows");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the monitoring store {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("monitoring store: {0}")]
    Db(String),
    #[error("monitoring store: more series than ids")]
    Full,
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// The series key of a device's metric.
pub fn series_key(device: &str, metric: &str) -> String {
    format!("{device}\0{metric}")
}

/// The bucket of a series: a stable hash (xxHash64, seed 0) of its
/// device, so a device's series share one.
pub fn bucket_of(series: &str) -> u16 {
    let device = series.split('\0').next().unwrap_or(series);
    let h = xxhash_rust::xxh64::xxh64(device.as_bytes(), 0);
    u16::try_from(h % u64::from(BUCKETS)).unwrap_or(0)
}

/// A blob's entries; the second value counts entries that do not decode
/// (a blob whose length is not whole entries counts as one, and yields
/// nothing).
fn decode_blob(b: &[u8]) -> (Vec<(u32, StoredPoint)>, usize) {
    if !b.len().is_multiple_of(ENTRY_BYTES) {
        return (Vec::new(), 1);
    }
    let mut out = Vec::with_capacity(b.len() / ENTRY_BYTES);
    let mut bad = 0;
    for e in b.chunks_exact(ENTRY_BYTES) {
        let id = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        match StoredPoint::decode(&e[4..]) {
            Ok(p) => out.push((id, p)),
            Err(_) => bad += 1,
        }
    }
    (out, bad)
}

/// The entry of `id` in a blob: a binary search over its sorted entries
/// (a blob that is not sorted, being corrupt, at worst misses it).
/// `Err(())` when the blob or the entry does not decode.
fn find(b: &[u8], id: u32) -> Result<Option<StoredPoint>, ()> {
    if !b.len().is_multiple_of(ENTRY_BYTES) {
        return Err(());
    }
    let entry = |i: usize| &b[i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES];
    let (mut lo, mut hi) = (0, b.len() / ENTRY_BYTES);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let e = entry(mid);
        let at = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        match at.cmp(&id) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => {
                return StoredPoint::decode(&e[4..]).map(Some).map_err(|_| ())
            }
        }
    }
    Ok(None)
}

/// Merge new points into a blob's entries: an entry older than the newest
/// new point by a whole lap (or more) is dropped, a new point replaces its
/// series' entry unless that one is of a later slot (a clock that stepped
/// back never rewrites history). Returns the new blob.
fn merge(old: Vec<(u32, StoredPoint)>, new: &[(u32, StoredPoint)], rows: u16) -> Vec<u8> {
    let newest = new.iter().map(|(_, p)| p.slot).max().unwrap_or(0);
    let lap = u64::from(rows.max(1));
    let mut by_id: BTreeMap<u32, StoredPoint> = old
        .into_iter()
        .filter(|(_, p)| p.slot + lap > newest)
        .collect();
    for (id, p) in new {
        match by_id.get(id) {
            Some(o) if o.slot > p.slot => {}
            _ => {
                by_id.insert(*id, *p);
            }
        }
    }
    let mut b = Vec::with_capacity(by_id.len() * ENTRY_BYTES);
    for (id, p) in by_id {
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&p.encode());
    }
    b
}

/// The id of `series`, given one if it has none.
fn id_of(series_t: &mut Table<&str, u32>, series: &str) -> Result<u32, StoreError> {
    if let Some(id) = series_t.get(series).map_err(db_err)? {
        return Ok(id.value());
    }
    // Ids are never taken back, so the count is the next free one.
    let id = u32::try_from(series_t.len().map_err(db_err)?).map_err(|_| StoreError::Full)?;
    series_t.insert(series, id).map_err(db_err)?;
    Ok(id)
}

/// Write points grouped by (step, row, bucket) into `points`.
fn write_groups(
    points: &mut Table<(u32, u16, u16), &[u8]>,
    groups: BTreeMap<(u32, u16, u16), Vec<(u32, StoredPoint)>>,
) -> Result<(), StoreError> {
    for ((step, row, bucket), new) in groups {
        let Some(rows) = rows_of(step) else { continue };
        let old = match points.get((step, row, bucket)).map_err(db_err)? {
            // A corrupt blob is replaced: what decodes of it is kept.
            Some(v) => decode_blob(v.value()).0,
            None => Vec::new(),
        };
        let blob = merge(old, &new, rows);
        points
            .insert((step, row, bucket), blob.as_slice())
            .map_err(db_err)?;
    }
    Ok(())
}

/// The id of `series` in a read transaction, if it has one.
fn series_id(tx: &redb::ReadTransaction, series: &str) -> Result<Option<u32>, StoreError> {
    Ok(tx
        .open_table(SERIES)
        .map_err(db_err)?
        .get(series)
        .map_err(db_err)?
        .map(|v| v.value()))
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
        let legacy = tx
            .list_tables()
            .map_err(db_err)?
            .any(|t| t.name() == LEGACY_ROWS.name());
        {
            let mut points = tx.open_table(POINTS).map_err(db_err)?;
            let mut series = tx.open_table(SERIES).map_err(db_err)?;
            if legacy {
                let n = convert_legacy(&tx, &mut points, &mut series)?;
                tracing::info!(
                    points = n,
                    "monitor: ring store converted to the packed layout"
                );
            }
        }
        if legacy {
            tx.delete_table(LEGACY_ROWS).map_err(db_err)?;
        }
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
            let mut points = tx.open_table(POINTS).map_err(db_err)?;
            let mut series_t = tx.open_table(SERIES).map_err(db_err)?;
            // A series closes up to one point per resolution in a batch.
            let mut ids: HashMap<&str, u32> = HashMap::new();
            let mut groups: BTreeMap<(u32, u16, u16), Vec<(u32, StoredPoint)>> = BTreeMap::new();
            for (series, c) in rows {
                let id = match ids.get(series.as_str()) {
                    Some(id) => *id,
                    None => {
                        let id = id_of(&mut series_t, series)?;
                        ids.insert(series, id);
                        id
                    }
                };
                groups
                    .entry((c.step, c.row, bucket_of(series)))
                    .or_default()
                    .push((id, c.stored));
            }
            write_groups(&mut points, groups)?;
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
        let Some(id) = series_id(&tx, series)? else {
            return Ok((Vec::new(), 0));
        };
        let bucket = bucket_of(series);
        let t = tx.open_table(POINTS).map_err(db_err)?;
        let mut out = Vec::new();
        let mut bad = 0;
        for row in 0..rows {
            if let Some(v) = t.get((step, row, bucket)).map_err(db_err)? {
                match find(v.value(), id) {
                    Ok(Some(p)) => out.push(p),
                    Ok(None) => {}
                    Err(()) => bad += 1,
                }
            }
        }
        Ok((out, bad))
    }

    /// The rows of `series` for the slots `at` falls in, one per
    /// resolution: what an open point resumes from after a restart.
    pub fn open_rows(&self, series: &str, at: u64) -> Result<Vec<(u32, StoredPoint)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let Some(id) = series_id(&tx, series)? else {
            return Ok(Vec::new());
        };
        let bucket = bucket_of(series);
        let t = tx.open_table(POINTS).map_err(db_err)?;
        let mut out = Vec::new();
        for (step, rows) in RESOLUTIONS {
            let row = crate::rings::row(at / u64::from(step), rows);
            if let Some(v) = t.get((step, row, bucket)).map_err(db_err)? {
                if let Ok(Some(p)) = find(v.value(), id) {
                    out.push((step, p));
                }
            }
        }
        Ok(out)
    }
}

/// Move the first layout's rows (one per point, keyed by the series'
/// name) into packed blobs; one (step, row) at a time, as they come in key
/// order, so memory is bounded by one row of every series. Rows that do
/// not decode are dropped. Returns the points moved.
fn convert_legacy(
    tx: &redb::WriteTransaction,
    points: &mut Table<(u32, u16, u16), &[u8]>,
    series_t: &mut Table<&str, u32>,
) -> Result<u64, StoreError> {
    let legacy = tx.open_table(LEGACY_ROWS).map_err(db_err)?;
    let mut moved = 0;
    let mut current: Option<(u32, u16)> = None;
    let mut groups: BTreeMap<(u32, u16, u16), Vec<(u32, StoredPoint)>> = BTreeMap::new();
    for item in legacy.iter().map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        let (step, row, series) = k.value();
        if current != Some((step, row)) {
            write_groups(points, std::mem::take(&mut groups))?;
            current = Some((step, row));
        }
        let Ok(p) = StoredPoint::decode(v.value()) else {
            continue;
        };
        let id = id_of(series_t, series)?;
        groups
            .entry((step, row, bucket_of(series)))
            .or_default()
            .push((id, p));
        moved += 1;
    }
    write_groups(points, groups)?;
    Ok(moved)
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
    fn a_corrupt_blob_is_skipped_then_replaced_and_a_corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.redb");
        let store = RingStore::open(&path).unwrap();
        let key = series_key("d", "m");
        let point = |slot| StoredPoint {
            slot,
            point: crate::rings::Point {
                count: 1,
                mean: 1.0,
                min: 1.0,
                max: 1.0,
            },
        };
        let closed = |slot: u64| Closed {
            step: 300,
            row: crate::rings::row(slot, 288),
            stored: point(slot),
        };
        store.write(&[(key.clone(), closed(1))]).unwrap();
        {
            let tx = store.db.begin_write().unwrap();
            {
                let mut t = tx.open_table(POINTS).unwrap();
                t.insert((300u32, 1u16, bucket_of(&key)), [1u8, 2, 3].as_slice())
                    .unwrap();
                // A whole entry whose point does not decode.
                let mut e = vec![0u8; ENTRY_BYTES];
                e[4..].copy_from_slice(&point(2).encode());
                e[12] = 0; // count 0
                e[13] = 0;
                t.insert((300u32, 2u16, bucket_of(&key)), e.as_slice())
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        assert_eq!(store.ring(&key, 300).unwrap(), (Vec::new(), 2));
        // A write over the corrupt blob replaces it.
        store.write(&[(key.clone(), closed(1))]).unwrap();
        assert_eq!(store.ring(&key, 300).unwrap(), (vec![point(1)], 1));
        drop(store);
        let junk = dir.path().join("junk.redb");
        std::fs::write(&junk, b"not a database at all, just text").unwrap();
        let err = RingStore::open(&junk).err().unwrap();
        assert!(err.to_string().contains("junk.redb"), "{err}");
    }

    fn p(slot: u64, v: f32) -> StoredPoint {
        StoredPoint {
            slot,
            point: crate::rings::Point {
                count: 1,
                mean: v,
                min: v,
                max: v,
            },
        }
    }

    #[test]
    fn many_series_share_blobs_and_each_reads_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = RingStore::open(&dir.path().join("m.redb")).unwrap();
        // More devices than buckets, so blobs hold several devices.
        let keys: Vec<String> = (0..600)
            .flat_map(|d| ["rtt_ms", "loss"].map(|m| series_key(&format!("dev{d}"), m)))
            .collect();
        for slot in 0..3u64 {
            let rows: Vec<(String, Closed)> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    (
                        k.clone(),
                        Closed {
                            step: 1800,
                            row: crate::rings::row(slot, 336),
                            stored: p(slot, i as f32),
                        },
                    )
                })
                .collect();
            store.write(&rows).unwrap();
        }
        for (i, k) in keys.iter().enumerate() {
            let (got, bad) = store.ring(k, 1800).unwrap();
            assert_eq!(bad, 0);
            assert_eq!(got, vec![p(0, i as f32), p(1, i as f32), p(2, i as f32)]);
        }
        assert!(store.ring("nobody\0rtt_ms", 1800).unwrap().0.is_empty());
        assert!(store.ring(&keys[0], 1234).unwrap().0.is_empty());
    }

    #[test]
    fn a_rewrite_drops_older_laps_and_never_goes_back_in_time() {
        let old = vec![
            (1, p(5, 1.0)),
            (2, p(5 + 288, 2.0)),
            (3, p(5 + 2 * 288, 3.0)),
        ];
        // Series 4 writes slot 5 + 2 laps: series 1's and 2's entries are
        // from older laps (outside every window now), series 3's is current.
        let b = merge(old.clone(), &[(4, p(5 + 2 * 288, 4.0))], 288);
        let (entries, bad) = decode_blob(&b);
        assert_eq!(bad, 0);
        assert_eq!(entries, vec![(3, p(581, 3.0)), (4, p(581, 4.0))]);
        // A point of an earlier slot than the stored one is not written.
        let b = merge(old, &[(3, p(5, 9.0))], 288);
        assert_eq!(find(&b, 3), Ok(Some(p(581, 3.0))));
        assert_eq!(find(&b, 9), Ok(None));
        assert_eq!(find(&b[1..], 3), Err(()));
    }

    #[test]
    fn a_store_of_the_first_layout_is_converted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.redb");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(LEGACY_ROWS).unwrap();
                for slot in 0..4u64 {
                    for d in ["a", "b"] {
                        let v = p(slot, slot as f32);
                        t.insert(
                            (
                                300u32,
                                crate::rings::row(slot, 288),
                                series_key(d, "rtt_ms").as_str(),
                            ),
                            v.encode().as_slice(),
                        )
                        .unwrap();
                    }
                }
                t.insert((300u32, 9u16, "a\0rtt_ms"), [0u8; 3].as_slice())
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        let store = RingStore::open(&path).unwrap();
        for d in ["a", "b"] {
            let (got, bad) = store.ring(&series_key(d, "rtt_ms"), 300).unwrap();
            assert_eq!(bad, 0);
            assert_eq!(got, (0..4).map(|s| p(s, s as f32)).collect::<Vec<_>>());
        }
        drop(store);
        // Converted once: the old table is gone, a reopen keeps the points.
        let store = RingStore::open(&path).unwrap();
        let tx = store.db.begin_read().unwrap();
        assert!(!tx.list_tables().unwrap().any(|t| t.name() == "rows"));
        drop(tx);
        assert_eq!(store.ring("a\0rtt_ms", 300).unwrap().0.len(), 4);
    }
}
