//! RRD-like rings of samples, sans-I/O: fixed size whatever the uptime,
//! sized for an SD card.
//!
//! A [`Series`] (one metric of one device: RTT, loss, an interface's
//! traffic) holds one [`Ring`] per resolution ([`RESOLUTIONS`]: 5-minute
//! points for a day, 30-minute for a week, 2-hour for a month, daily for
//! a year, as MRTG/snpservices keep them). Adding a sample updates the
//! current point of every ring (count, mean, min, max); a sample in a
//! later slot starts a new point, and slots skipped are left empty
//! (unknown, as RRD's `UNKNOWN`), so a ring always covers exactly its
//! span. A sample older than a ring's current slot is dropped by that
//! ring (a clock stepping back never rewrites history).
//!
//! The binary form ([`Series::encode`], [`Series::decode`]) is what the
//! store keeps: a version byte, then per ring its step, row count and
//! current slot, then 14 bytes per row. Decoding checks every length and
//! value, so a corrupt record is an error, never a panic.

/// (step in seconds, rows): 5 min × 288 = 1 day, 30 min × 336 = 1 week,
/// 2 h × 360 = 30 days, 1 day × 365 = 1 year.
pub const RESOLUTIONS: [(u32, u16); 4] = [(300, 288), (1800, 336), (7200, 360), (86_400, 365)];

const VERSION: u8 = 1;
const ROW_BYTES: usize = 14;

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
        self.count = self.count.saturating_add(1);
    }
}

/// One resolution: `rows` points of `step` seconds, the newest at `slot`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ring {
    pub step: u32,
    /// The current slot (its start divided by `step`); 0 before any sample.
    slot: u64,
    /// Oldest first; always `rows` long.
    points: std::collections::VecDeque<Point>,
}

impl Ring {
    pub fn new(step: u32, rows: u16) -> Ring {
        Ring {
            step: step.max(1),
            slot: 0,
            points: vec![Point::default(); usize::from(rows.max(1))].into(),
        }
    }

    pub fn rows(&self) -> usize {
        self.points.len()
    }

    fn add(&mut self, at: u64, v: f32) {
        let slot = at / u64::from(self.step);
        if self.slot == 0 && self.points.iter().all(|p| p.count == 0) {
            self.slot = slot;
        }
        if slot < self.slot {
            return;
        }
        let advance = slot - self.slot;
        let rows = self.points.len() as u64;
        for _ in 0..advance.min(rows) {
            self.points.pop_front();
            self.points.push_back(Point::default());
        }
        self.slot = slot;
        if let Some(p) = self.points.back_mut() {
            p.add(v);
        }
    }

    /// `(slot start in seconds, point)`, oldest first, empty slots included.
    pub fn points(&self) -> impl Iterator<Item = (u64, Point)> + '_ {
        let rows = self.points.len() as u64;
        let step = u64::from(self.step);
        self.points.iter().enumerate().map(move |(i, p)| {
            let slot = (self.slot + 1 + i as u64).saturating_sub(rows);
            (slot * step, *p)
        })
    }

    /// The newest point with samples, with its slot start.
    pub fn last(&self) -> Option<(u64, Point)> {
        self.points().filter(|(_, p)| p.count > 0).last()
    }
}

/// One metric's rings, at every resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub rings: Vec<Ring>,
}

impl Default for Series {
    fn default() -> Self {
        Series::new()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RingError {
    #[error("series record: {0}")]
    Corrupt(String),
}

impl Series {
    pub fn new() -> Series {
        Series {
            rings: RESOLUTIONS.iter().map(|(s, r)| Ring::new(*s, *r)).collect(),
        }
    }

    /// A sample at `at` (seconds since the epoch). NaN and infinities are
    /// ignored.
    pub fn add(&mut self, at: u64, v: f64) {
        if !v.is_finite() {
            return;
        }
        // f32 is the stored precision (RRD keeps doubles; half the bytes
        // on an SD card, and RTTs and rates need no more).
        let v = v as f32;
        for r in &mut self.rings {
            r.add(at, v);
        }
    }

    /// The ring with this step.
    pub fn ring(&self, step: u32) -> Option<&Ring> {
        self.rings.iter().find(|r| r.step == step)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION, u8::try_from(self.rings.len()).unwrap_or(u8::MAX)];
        for r in self.rings.iter().take(usize::from(u8::MAX)) {
            out.extend_from_slice(&r.step.to_le_bytes());
            out.extend_from_slice(&u16::try_from(r.rows()).unwrap_or(u16::MAX).to_le_bytes());
            out.extend_from_slice(&r.slot.to_le_bytes());
            for p in r.points.iter().take(usize::from(u16::MAX)) {
                out.extend_from_slice(&p.count.to_le_bytes());
                out.extend_from_slice(&p.mean.to_le_bytes());
                out.extend_from_slice(&p.min.to_le_bytes());
                out.extend_from_slice(&p.max.to_le_bytes());
            }
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Series, RingError> {
        let bad = |m: &str| RingError::Corrupt(m.to_owned());
        let mut rest = b;
        let mut take = |n: usize| -> Result<&[u8], RingError> {
            if rest.len() < n {
                return Err(bad("truncated"));
            }
            let (h, t) = rest.split_at(n);
            rest = t;
            Ok(h)
        };
        let head = take(2)?;
        if head[0] != VERSION {
            return Err(RingError::Corrupt(format!("unknown version {}", head[0])));
        }
        let n = head[1];
        let mut rings = Vec::new();
        for _ in 0..n {
            let h = take(14)?;
            let step = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let rows = u16::from_le_bytes([h[4], h[5]]);
            let mut s = [0u8; 8];
            s.copy_from_slice(&h[6..14]);
            let slot = u64::from_le_bytes(s);
            if step == 0 || rows == 0 {
                return Err(bad("a ring with no step or no rows"));
            }
            let body = take(usize::from(rows) * ROW_BYTES)?;
            let f = |c: &[u8]| f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let points = body
                .chunks_exact(ROW_BYTES)
                .map(|c| {
                    let p = Point {
                        count: u16::from_le_bytes([c[0], c[1]]),
                        mean: f(&c[2..6]),
                        min: f(&c[6..10]),
                        max: f(&c[10..14]),
                    };
                    if p.count == 0 {
                        // Unknown: whatever the bytes say, the canonical
                        // empty point.
                        Ok(Point::default())
                    } else if !(p.mean.is_finite() && p.min.is_finite() && p.max.is_finite()) {
                        Err(bad("a point that is not a number"))
                    } else {
                        Ok(p)
                    }
                })
                .collect::<Result<_, _>>()?;
            rings.push(Ring { step, slot, points });
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(Series { rings })
    }

    /// Bytes of the encoded default series (what one metric costs on
    /// disk).
    pub fn encoded_len() -> usize {
        2 + RESOLUTIONS
            .iter()
            .map(|(_, r)| 14 + usize::from(*r) * ROW_BYTES)
            .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_764_547_200; // a day boundary (2025-12-01 00:00 UTC)

    #[test]
    fn samples_fill_points_and_skipped_slots_stay_unknown() {
        let mut s = Series::new();
        s.add(T0 + 10, 10.0);
        s.add(T0 + 70, 20.0);
        s.add(T0 + 130, 30.0);
        let five = s.ring(300).unwrap();
        let (at, p) = five.last().unwrap();
        assert_eq!(at, T0);
        assert_eq!(p.count, 3);
        assert!((p.mean - 20.0).abs() < 1e-4);
        assert_eq!((p.min, p.max), (10.0, 30.0));
        // 20 minutes later: three empty slots between.
        s.add(T0 + 1210, 5.0);
        let pts: Vec<(u64, Point)> = s.ring(300).unwrap().points().collect();
        assert_eq!(pts.len(), 288);
        let tail: Vec<(u64, u16)> = pts[pts.len() - 5..]
            .iter()
            .map(|(t, p)| (*t, p.count))
            .collect();
        assert_eq!(
            tail,
            [
                (T0, 3),
                (T0 + 300, 0),
                (T0 + 600, 0),
                (T0 + 900, 0),
                (T0 + 1200, 1)
            ]
        );
        // The 30-minute ring has all four samples in one point.
        let (at, p) = s.ring(1800).unwrap().last().unwrap();
        assert_eq!((at, p.count, p.min, p.max), (T0, 4, 5.0, 30.0));
    }

    #[test]
    fn a_ring_keeps_exactly_its_span_and_ignores_the_past() {
        let mut s = Series::new();
        // Two days of 5-minute samples.
        for i in 0..(2 * 288) {
            s.add(T0 + i * 300, i as f64);
        }
        let five = s.ring(300).unwrap();
        let pts: Vec<(u64, Point)> = five.points().collect();
        assert_eq!(pts.len(), 288);
        assert_eq!(pts[0].0, T0 + 288 * 300, "the oldest is a day back");
        assert!(pts.iter().all(|(_, p)| p.count == 1));
        // A clock that steps back: ignored.
        s.add(T0, -1.0);
        assert_eq!(s.ring(300).unwrap().points().collect::<Vec<_>>(), pts);
        // After 400 days of silence every ring holds the new sample only
        // (even the daily ring forgets what is older than a year).
        s.add(T0 + 400 * 86_400, 7.0);
        let five = s.ring(300).unwrap();
        assert_eq!(five.points().filter(|(_, p)| p.count > 0).count(), 1);
        let daily = s.ring(86_400).unwrap();
        assert_eq!(daily.points().filter(|(_, p)| p.count > 0).count(), 1);
        // NaN is not a sample.
        s.add(T0 + 400 * 86_400 + 1, f64::NAN);
        assert_eq!(s.ring(300).unwrap().last().unwrap().1.count, 1);
    }

    #[test]
    fn records_round_trip_and_corrupt_ones_are_errors() {
        let mut s = Series::new();
        for i in 0..1000 {
            s.add(T0 + i * 97, (i % 13) as f64);
        }
        let b = s.encode();
        assert_eq!(b.len(), Series::encoded_len());
        assert!(b.len() < 20_000, "{} bytes per metric", b.len());
        assert_eq!(Series::decode(&b).unwrap(), s);
        assert!(Series::decode(&b[..b.len() - 1]).is_err());
        let mut longer = b.clone();
        longer.push(0);
        assert!(Series::decode(&longer).is_err());
        let mut v = b.clone();
        v[0] = 9;
        assert!(Series::decode(&v)
            .unwrap_err()
            .to_string()
            .contains("version"));
        assert!(Series::decode(&[]).is_err());
        // A NaN in a point with samples.
        let mut nan = b.clone();
        let at = 2 + 14 + 287 * 14 + 2;
        nan[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(Series::decode(&nan).is_err());
        // The same bytes in an empty point: decoded as the empty point.
        let mut empty = Series::new().encode();
        empty[2 + 14 + 2..2 + 14 + 6].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(Series::decode(&empty).unwrap(), Series::new());
    }

    #[test]
    fn random_records_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let good = Series::new().encode();
        for _ in 0..3000 {
            let mut v = good.clone();
            for _ in 0..rng.gen_range(1..8) {
                let i = rng.gen_range(0..v.len());
                v[i] = rng.gen();
            }
            v.truncate(rng.gen_range(0..=v.len()));
            let _ = Series::decode(&v);
        }
    }
}
