//! RRD-like rings of samples, sans-I/O: fixed size whatever the uptime,
//! sized for an SD card.
//!
//! A series (one metric of one device: RTT, loss, an interface's
//! traffic) has one ring per resolution ([`RESOLUTIONS`]: 5-minute points
//! for a day, 30-minute for a week, 2-hour for a month, daily for a year,
//! as MRTG/snpservices keep them). A point is the samples of one slot
//! (count, mean, min, max); a slot with no sample is unknown (RRD's
//! `UNKNOWN`), so a ring always covers exactly its span.
//!
//! Only the open point of each resolution lives in memory ([`Open`], 4
//! points per series); a point is written to the store once, when its
//! slot closes, at row `slot % rows` of its ring ([`row`]). The store keys
//! rows time-major (resolution, row, series), so the points that close
//! together (every series' 5-minute point, at the same boundary) are
//! neighbours on disk: one small write per boundary, not one rewrite of
//! every ring per probe. A stored row carries its slot ([`StoredPoint`]),
//! so a row left from an older lap of the ring reads as unknown
//! ([`window`]). A sample older than the open slot is dropped (a clock
//! stepping back never rewrites history).
//!
//! [`StoredPoint::decode`] checks every byte: a corrupt row is an error,
//! never a panic.

/// (step in seconds, rows): 5 min × 288 = 1 day, 30 min × 336 = 1 week,
/// 2 h × 360 = 30 days, 1 day × 365 = 1 year.
pub const RESOLUTIONS: [(u32, u16); 4] = [(300, 288), (1800, 336), (7200, 360), (86_400, 365)];

/// Bytes of a stored row: slot (u64), count (u16), mean, min, max (f32).
pub const STORED_BYTES: usize = 22;
/// One point: the samples of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    /// Samples in the slot (0: unknown).
    pub count: u16,
    pub mean: f32,
    pub min: f32,
    pub max: f32,
}

impl Point {
    fn add(&mut self, v: f32) {
        if self.count == 0 {
            *self = Point {
                count: 1,
                mean: v,
                min: v,
                max: v,
            };
            return;
        }
        let n = f32::from(self.count);
        self.mean += (v - self.mean) / (n + 1.0);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        // Rounding never takes the mean outside the samples' range.
        self.mean = self.mean.clamp(self.min, self.max);
        self.count = self.count.saturating_add(1);
    }
}

/// The row of `slot` in a ring of `rows` rows.
pub fn row(slot: u64, rows: u16) -> u16 {
    u16::try_from(slot % u64::from(rows.max(1))).unwrap_or(0)
}

/// The rows of a resolution.
pub fn rows_of(step: u32) -> Option<u16> {
    RESOLUTIONS
        .iter()
        .find(|(s, _)| *s == step)
        .map(|(_, r)| *r)
}

/// A closed (or open) point with its slot, as the store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StoredPoint {
    pub slot: u64,
    pub point: Point,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RingError {
    #[error("stored point: {0}")]
    Corrupt(String),
}

impl StoredPoint {
    pub fn encode(&self) -> [u8; STORED_BYTES] {
        let mut b = [0u8; STORED_BYTES];
        b[..8].copy_from_slice(&self.slot.to_le_bytes());
        b[8..10].copy_from_slice(&self.point.count.to_le_bytes());
        b[10..14].copy_from_slice(&self.point.mean.to_le_bytes());
        b[14..18].copy_from_slice(&self.point.min.to_le_bytes());
        b[18..22].copy_from_slice(&self.point.max.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<StoredPoint, RingError> {
        let bad = |m: &str| RingError::Corrupt(m.to_owned());
        if b.len() != STORED_BYTES {
            return Err(RingError::Corrupt(format!(
                "{} bytes, expected {STORED_BYTES}",
                b.len()
            )));
        }
        let f = |i: usize| f32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut slot = [0u8; 8];
        slot.copy_from_slice(&b[..8]);
        let point = Point {
            count: u16::from_le_bytes([b[8], b[9]]),
            mean: f(10),
            min: f(14),
            max: f(18),
        };
        if point.count == 0 {
            return Err(bad("a stored point with no samples"));
        }
        if !(point.mean.is_finite() && point.min.is_finite() && point.max.is_finite()) {
            return Err(bad("a point that is not a number"));
        }
        if !(point.min <= point.mean && point.mean <= point.max) {
            return Err(bad("a point whose mean is outside its range"));
        }
        Ok(StoredPoint {
            slot: u64::from_le_bytes(slot),
            point,
        })
    }
}

/// A closed point to write: its ring and row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Closed {
    pub step: u32,
    pub row: u16,
    pub stored: StoredPoint,
}

/// One series' open points, one per resolution.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Open {
    points: [StoredPoint; RESOLUTIONS.len()],
}

impl Open {
    pub fn new() -> Open {
        Open::default()
    }

    /// Resume an open point read back from the store (after a restart),
    /// when it is still the slot `at` falls in.
    pub fn resume(&mut self, step: u32, stored: StoredPoint, at: u64) {
        if let Some(i) = RESOLUTIONS.iter().position(|(s, _)| *s == step) {
            if stored.slot == at / u64::from(step) && self.points[i].point.count == 0 {
                self.points[i] = stored;
            }
        }
    }

    /// A sample at `at` (seconds since the epoch); the points it closes.
    /// NaN and infinities are ignored.
    pub fn add(&mut self, at: u64, v: f64) -> Vec<Closed> {
        let mut closed = Vec::new();
        if !v.is_finite() {
            return closed;
        }
        // f32 is the stored precision (RRD keeps doubles; half the bytes
        // on an SD card, and RTTs and rates need no more).
        let v = v as f32;
        for (i, (step, rows)) in RESOLUTIONS.iter().enumerate() {
            let slot = at / u64::from(*step);
            let open = &mut self.points[i];
            if open.point.count > 0 && slot < open.slot {
                continue;
            }
            if open.point.count > 0 && slot > open.slot {
                closed.push(Closed {
                    step: *step,
                    row: row(open.slot, *rows),
                    stored: *open,
                });
                *open = StoredPoint::default();
            }
            open.slot = slot;
            open.point.add(v);
        }
        closed
    }

    /// The open points with samples, as rows to write (at a stop).
    pub fn pending(&self) -> Vec<Closed> {
        RESOLUTIONS
            .iter()
            .zip(&self.points)
            .filter(|(_, p)| p.point.count > 0)
            .map(|((step, rows), p)| Closed {
                step: *step,
                row: row(p.slot, *rows),
                stored: *p,
            })
            .collect()
    }

    /// The open point of resolution `step`.
    pub fn open(&self, step: u32) -> Option<StoredPoint> {
        let i = RESOLUTIONS.iter().position(|(s, _)| *s == step)?;
        let p = self.points[i];
        (p.point.count > 0).then_some(p)
    }
}

/// The points of one ring as of slot `now_slot`, oldest first: the
/// stored rows still inside the ring's span (a row from an older lap is
/// unknown), and the open point (which wins over a row of its slot).
/// Returns `(slot start in seconds, point)`.
pub fn window(
    step: u32,
    rows: u16,
    now_slot: u64,
    stored: impl IntoIterator<Item = StoredPoint>,
    open: Option<StoredPoint>,
) -> Vec<(u64, Point)> {
    let oldest = (now_slot + 1).saturating_sub(u64::from(rows));
    let mut by_slot = std::collections::BTreeMap::new();
    for p in stored {
        if p.slot >= oldest && p.slot <= now_slot {
            by_slot.insert(p.slot, p.point);
        }
    }
    if let Some(o) = open {
        if o.slot >= oldest && o.slot <= now_slot {
            by_slot.insert(o.slot, o.point);
        }
    }
    by_slot
        .into_iter()
        .map(|(slot, p)| (slot * u64::from(step), p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_764_547_200; // a day boundary (2025-12-01 00:00 UTC)

    /// A store of rows as the component keeps them: (step, row) → point.
    #[derive(Default)]
    struct Rows(std::collections::BTreeMap<(u32, u16), StoredPoint>);

    impl Rows {
        fn write(&mut self, closed: Vec<Closed>) {
            for c in closed {
                self.0.insert((c.step, c.row), c.stored);
            }
        }
        fn window(&self, open: &Open, step: u32, now: u64) -> Vec<(u64, Point)> {
            let rows = rows_of(step).unwrap();
            let stored = self
                .0
                .iter()
                .filter(|((s, _), _)| *s == step)
                .map(|(_, p)| *p);
            window(step, rows, now / u64::from(step), stored, open.open(step))
        }
    }

    #[test]
    fn samples_fill_points_and_skipped_slots_stay_unknown() {
        let mut o = Open::new();
        let mut rows = Rows::default();
        for (at, v) in [(10, 10.0), (70, 20.0), (130, 30.0)] {
            assert!(o.add(T0 + at, v).is_empty(), "one slot so far");
        }
        let p = o.open(300).unwrap();
        assert_eq!(p.slot * 300, T0);
        assert_eq!(p.point.count, 3);
        assert!((p.point.mean - 20.0).abs() < 1e-4);
        assert_eq!((p.point.min, p.point.max), (10.0, 30.0));
        // 20 minutes later: the 5-minute point closes, three slots stay
        // unknown; the 30-minute point is still open.
        let closed = o.add(T0 + 1210, 5.0);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].step, 300);
        assert_eq!(closed[0].row, row(T0 / 300, 288));
        rows.write(closed);
        let w = rows.window(&o, 300, T0 + 1210);
        let got: Vec<(u64, u16)> = w.iter().map(|(t, p)| (*t, p.count)).collect();
        assert_eq!(got, [(T0, 3), (T0 + 1200, 1)]);
        let half = o.open(1800).unwrap();
        assert_eq!(
            (
                half.slot * 1800,
                half.point.count,
                half.point.min,
                half.point.max
            ),
            (T0, 4, 5.0, 30.0)
        );
        // NaN is not a sample.
        assert!(o.add(T0 + 1211, f64::NAN).is_empty());
        assert_eq!(o.open(300).unwrap().point.count, 1);
    }

    #[test]
    fn a_ring_keeps_exactly_its_span_and_ignores_the_past() {
        let mut o = Open::new();
        let mut rows = Rows::default();
        // Two days of 5-minute samples.
        for i in 0..(2 * 288) {
            rows.write(o.add(T0 + i * 300, i as f64));
        }
        let now = T0 + (2 * 288 - 1) * 300;
        let w = rows.window(&o, 300, now);
        assert_eq!(w.len(), 288, "a day of points, no more");
        assert_eq!(w[0].0, T0 + 288 * 300, "the oldest is a day back");
        assert!(w.iter().all(|(_, p)| p.count == 1));
        // At most `rows` rows per ring are ever written.
        assert_eq!(rows.0.keys().filter(|(s, _)| *s == 300).count(), 288);
        // A clock that steps back: ignored.
        assert!(o.add(T0, -1.0).is_empty());
        assert_eq!(rows.window(&o, 300, now), w);
        // After 400 days of silence, each ring holds the new sample only
        // (even the daily ring forgets what is older than a year).
        let later = T0 + 400 * 86_400;
        rows.write(o.add(later, 7.0));
        for (step, _) in RESOLUTIONS {
            let w = rows.window(&o, step, later);
            assert_eq!(w.len(), 1, "step {step}: {w:?}");
            assert_eq!(w[0].1.mean, 7.0);
        }
    }

    #[test]
    fn a_restart_resumes_the_open_point() {
        let mut o = Open::new();
        o.add(T0 + 10, 1.0);
        o.add(T0 + 20, 3.0);
        let pending = o.pending();
        assert_eq!(pending.len(), RESOLUTIONS.len());
        let mut back = Open::new();
        for c in &pending {
            back.resume(c.step, c.stored, T0 + 30);
        }
        back.add(T0 + 30, 5.0);
        let p = back.open(300).unwrap().point;
        assert_eq!((p.count, p.min, p.max), (3, 1.0, 5.0));
        // A row of an older slot is not resumed.
        let mut fresh = Open::new();
        for c in &pending {
            fresh.resume(c.step, c.stored, T0 + 400);
        }
        assert_eq!(fresh.open(300), None);
        assert!(fresh.open(1800).is_some(), "same 30-minute slot");
    }

    #[test]
    fn stored_points_round_trip_and_corrupt_ones_are_errors() {
        let mut o = Open::new();
        for i in 0..50 {
            o.add(T0 + i * 7, (i % 13) as f64 * 0.37);
        }
        for c in o.pending() {
            let b = c.stored.encode();
            assert_eq!(StoredPoint::decode(&b), Ok(c.stored));
            assert!(StoredPoint::decode(&b[..STORED_BYTES - 1]).is_err());
            let mut nan = b;
            nan[10..14].copy_from_slice(&f32::NAN.to_le_bytes());
            assert!(StoredPoint::decode(&nan).is_err());
            let mut empty = b;
            empty[8..10].copy_from_slice(&0u16.to_le_bytes());
            assert!(StoredPoint::decode(&empty).is_err());
            let mut outside = b;
            outside[10..14].copy_from_slice(&1e9f32.to_le_bytes());
            assert!(StoredPoint::decode(&outside).is_err());
        }
    }

    #[test]
    fn random_rows_never_panic_and_what_decodes_re_encodes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..5000 {
            let n = rng.gen_range(0..30);
            let v: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            if let Ok(p) = StoredPoint::decode(&v) {
                assert_eq!(StoredPoint::decode(&p.encode()), Ok(p));
            }
        }
    }
}
