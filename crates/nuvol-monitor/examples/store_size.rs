//! The ring store's size on disk when every ring is full: `cargo run
//! --release -p nuvol-monitor --example store_size [DEVICES]` (100 by
//! default) writes every row of every resolution for DEVICES devices of 12
//! metrics each (RTT, loss, in/out of 5 interfaces), one transaction per
//! slot boundary as the agent does, then prints the file's size, before
//! and after redb's compaction (BENCHMARKS.md, "Network monitoring").

use nuvol_monitor::rings::{row, Closed, Point, StoredPoint, RESOLUTIONS};
use nuvol_monitor::store::{series_key, RingStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("monitor.redb");
    let store = RingStore::open(&path)?;
    let metrics: Vec<String> = ["rtt_ms".to_owned(), "loss".to_owned()]
        .into_iter()
        .chain((1..=5).flat_map(|i| [format!("if.{i}.in_bps"), format!("if.{i}.out_bps")]))
        .collect();
    let point = Point {
        count: 5,
        mean: 1.5,
        min: 1.0,
        max: 2.0,
    };
    for (step, rows) in RESOLUTIONS {
        for slot in 0..u64::from(rows) {
            let mut batch = Vec::new();
            for d in 0..n {
                for m in &metrics {
                    let stored = StoredPoint { slot, point };
                    let row = row(slot, rows);
                    batch.push((
                        series_key(&(10_000 + d).to_string(), m),
                        Closed { step, row, stored },
                    ));
                }
            }
            store.write(&batch)?;
        }
    }
    drop(store);
    // The writer's memory (the compaction below is not the agent's).
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l[6..].trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let before = std::fs::metadata(&path)?.len();
    let mut db = redb::Database::open(&path)?;
    db.compact()?;
    drop(db);
    let after = std::fs::metadata(&path)?.len();
    println!(
        "{n} devices x {} metrics, every row written: {before} bytes ({} per device); compacted: {after} bytes ({} per device); writer's peak RSS {hwm}",
        metrics.len(),
        before / n.max(1),
        after / n.max(1),
    );
    Ok(())
}
