//! Which monitors own which device, sans-I/O.
//!
//! Every monitor computes the owners of every device from the same inputs
//! (the device ids and the monitors that count, with their weights), so
//! no node coordinates with another: this is DIMON's "assign" without its
//! database.
//!
//! **The hash (specified, stable).** For a device id `d`, a monitor name
//! `m` of weight `w` (1 to [`MAX_WEIGHT`]) and each copy `j` in `0..w`:
//!
//! ```text
//! h(d, m, j) = xxHash64(seed 0) over  d ‖ 0x00 ‖ m ‖ 0x00 ‖ j (u32, little-endian)
//! score(d, m) = max over j of h(d, m, j)
//! ```
//!
//! A device's owners are the `k` monitors with the highest scores (equal
//! scores: the lower name first), in that order. This is rendezvous
//! (highest random weight) hashing with a weight of `w` copies: a monitor
//! of weight `w` ranks first for a device with probability `w / Σw`. It is
//! integer-only, so every node on every architecture ranks alike (the
//! usual weighted score `-w / ln(u)` needs a logarithm, whose last bit
//! differs between maths libraries).
//!
//! **Properties** (tested below): when a monitor goes, only the devices it
//! owned move, and each of them gains exactly one new owner (the next in
//! its ranking); when one comes, it takes devices only where it ranks in
//! the top `k`, each losing exactly one owner. Both sides of a partition
//! compute owners over the monitors they see, so every device stays
//! watched on each side.
//!
//! **Churn from flapping** is damped by [`Eligibility`]: a monitor counts
//! only once it has been alive without a break for `settle`, and leaves
//! the set the moment it is not alive.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use xxhash_rust::xxh64::xxh64;

/// The largest weight (copies hashed per monitor and device).
pub const MAX_WEIGHT: u32 = 64;

/// A monitor that may own devices.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Monitor {
    /// Its gossip member name.
    pub name: String,
    /// Its share, 1 to [`MAX_WEIGHT`] (clamped).
    pub weight: u32,
}

impl Monitor {
    pub fn new(name: impl Into<String>, weight: u32) -> Monitor {
        Monitor {
            name: name.into(),
            weight,
        }
    }
}

/// `score(d, m)` of the module's doc.
pub fn score(device: &str, monitor: &str, weight: u32) -> u64 {
    let mut buf = Vec::with_capacity(device.len() + monitor.len() + 6);
    buf.extend_from_slice(device.as_bytes());
    buf.push(0);
    buf.extend_from_slice(monitor.as_bytes());
    buf.push(0);
    let base = buf.len();
    let mut best = 0;
    for j in 0..weight.clamp(1, MAX_WEIGHT) {
        buf.truncate(base);
        buf.extend_from_slice(&j.to_le_bytes());
        best = best.max(xxh64(&buf, 0));
    }
    best
}

/// The `k` owners of `device`, best first (fewer when there are fewer
/// monitors; a name listed twice counts once, with its first weight).
pub fn owners(device: &str, monitors: &[Monitor], k: usize) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut ranked: Vec<(u64, &str)> = monitors
        .iter()
        .filter(|m| seen.insert(m.name.as_str()))
        .map(|m| (score(device, &m.name, m.weight), m.name.as_str()))
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    ranked
        .into_iter()
        .take(k)
        .map(|(_, n)| n.to_owned())
        .collect()
}

/// The owners of every device: device id → owners, best first.
pub fn assignment<'a>(
    devices: impl IntoIterator<Item = &'a str>,
    monitors: &[Monitor],
    k: usize,
) -> BTreeMap<String, Vec<String>> {
    devices
        .into_iter()
        .map(|d| (d.to_owned(), owners(d, monitors, k)))
        .collect()
}

/// Which monitors count, from the alive ones over time (the caller feeds
/// each membership view with [`Eligibility::observe`]).
///
/// A monitor counts once it has been alive for `settle` without a break;
/// it stops counting as soon as a view lacks it. While no monitor has
/// settled (this node just started: a cluster starting, or this node
/// joining one), every alive monitor counts, so devices are watched from
/// the start; the monitors seen in that phase keep counting when it ends,
/// so the set does not shrink to the one that happened to be seen first
/// (each node sees itself a moment before its peers).
#[derive(Debug, Clone)]
pub struct Eligibility {
    settle: Duration,
    /// Alive monitors: since when, their weight, and whether they were
    /// seen while nobody had settled.
    alive: BTreeMap<String, (Instant, u32, bool)>,
}

impl Eligibility {
    pub fn new(settle: Duration) -> Eligibility {
        Eligibility {
            settle,
            alive: BTreeMap::new(),
        }
    }

    /// The monitors alive in the latest view (this node included when it
    /// is a monitor). A new weight does not restart the clock.
    pub fn observe(&mut self, now: Instant, alive: &[Monitor]) {
        self.alive
            .retain(|name, _| alive.iter().any(|m| m.name == *name));
        // Nobody settled yet: the monitors seen now settle together.
        let cold = !self
            .alive
            .values()
            .any(|(since, _, _)| self.settled(now, *since));
        for m in alive {
            self.alive
                .entry(m.name.clone())
                .and_modify(|(_, w, _)| *w = m.weight)
                .or_insert((now, m.weight, cold));
        }
    }

    fn settled(&self, now: Instant, since: Instant) -> bool {
        now.saturating_duration_since(since) >= self.settle
    }

    /// The monitors that count now, by name.
    pub fn monitors(&self, now: Instant) -> Vec<Monitor> {
        let all = || {
            self.alive
                .iter()
                .map(|(n, (_, w, _))| Monitor::new(n.clone(), *w))
        };
        let any_settled = self
            .alive
            .values()
            .any(|(since, _, _)| self.settled(now, *since));
        if !any_settled {
            return all().collect();
        }
        self.alive
            .iter()
            .filter(|(_, (since, _, cold))| *cold || self.settled(now, *since))
            .map(|(n, (_, w, _))| Monitor::new(n.clone(), *w))
            .collect()
    }

    /// When the next alive monitor settles (the set may change then).
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        self.alive
            .values()
            .filter(|(since, _, cold)| !cold && !self.settled(now, *since))
            .map(|(since, _, _)| *since + self.settle)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeSet;

    fn monitors(n: usize) -> Vec<Monitor> {
        (0..n)
            .map(|i| Monitor::new(format!("mon-{i}"), 1))
            .collect()
    }

    fn devices(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{}", 1000 + i * 7)).collect()
    }

    #[test]
    fn the_hash_is_xxhash64_with_seed_zero_over_the_specified_bytes() {
        // xxHash64's published test vector.
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        // score = xxh64("d" 0x00 "m" 0x00 j_le32), the maximum over copies.
        let one = xxh64(b"d\0m\0\0\0\0\0", 0);
        let two = xxh64(b"d\0m\0\x01\0\0\0", 0);
        assert_eq!(score("d", "m", 1), one);
        assert_eq!(score("d", "m", 2), one.max(two));
        assert_eq!(score("d", "m", 0), one, "weight 0 counts as 1");
        assert_eq!(score("d", "m", 1000), score("d", "m", MAX_WEIGHT));
    }

    #[test]
    fn owners_are_deterministic_distinct_and_order_free() {
        let ms = monitors(7);
        let mut shuffled = ms.clone();
        shuffled.reverse();
        shuffled.push(ms[2].clone());
        for d in devices(300) {
            let a = owners(&d, &ms, 3);
            assert_eq!(a, owners(&d, &shuffled, 3), "{d}");
            assert_eq!(a.len(), 3);
            assert_eq!(a.iter().collect::<BTreeSet<_>>().len(), 3, "{a:?}");
            // The first owners of a larger k are the smaller k's owners.
            assert_eq!(owners(&d, &ms, 5)[..3], a[..]);
        }
        assert_eq!(owners("x", &ms[..1], 2), ["mon-0"]);
        assert!(owners("x", &[], 2).is_empty());
    }

    #[test]
    fn a_monitor_that_goes_moves_only_its_devices_each_gaining_one_owner() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        for round in 0..20 {
            let n = rng.gen_range(3..12);
            let k = rng.gen_range(1..=3.min(n - 1));
            let ms: Vec<Monitor> = (0..n)
                .map(|i| Monitor::new(format!("m{round}-{i}"), rng.gen_range(1..4)))
                .collect();
            let ds = devices(500);
            let before = assignment(ds.iter().map(String::as_str), &ms, k);
            let gone = rng.gen_range(0..n);
            let rest: Vec<Monitor> = ms
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != gone)
                .map(|(_, m)| m.clone())
                .collect();
            let after = assignment(ds.iter().map(String::as_str), &rest, k);
            let name = &ms[gone].name;
            for d in &ds {
                let (b, a) = (&before[d], &after[d]);
                if b.contains(name) {
                    let kept: Vec<&String> = b.iter().filter(|o| *o != name).collect();
                    let new: Vec<&String> = a.iter().filter(|o| !b.contains(o)).collect();
                    assert_eq!(new.len(), 1, "{d}: {b:?} -> {a:?}");
                    assert!(kept.iter().all(|o| a.contains(o)), "{d}: {b:?} -> {a:?}");
                } else {
                    assert_eq!(a, b, "{d}: untouched devices keep their owners");
                }
            }
            // And back: the comeback takes exactly the devices it had.
            let again = assignment(ds.iter().map(String::as_str), &ms, k);
            assert_eq!(again, before);
        }
    }

    #[test]
    fn weights_give_proportional_shares() {
        let ms = vec![
            Monitor::new("a", 1),
            Monitor::new("b", 2),
            Monitor::new("c", 3),
            Monitor::new("d", 4),
        ];
        let ds = devices(20_000);
        let mut first: BTreeMap<String, usize> = BTreeMap::new();
        let mut any: BTreeMap<String, usize> = BTreeMap::new();
        for d in &ds {
            let o = owners(d, &ms, 2);
            *first.entry(o[0].clone()).or_default() += 1;
            for x in o {
                *any.entry(x).or_default() += 1;
            }
        }
        for m in &ms {
            let share = first[&m.name] as f64 / ds.len() as f64;
            let want = f64::from(m.weight) / 10.0;
            assert!(
                (share - want).abs() < 0.02,
                "{}: first place {share:.3}, expected {want:.3}",
                m.name
            );
        }
        // With k = 2 a heavier monitor still owns more.
        let counts: Vec<usize> = ms.iter().map(|m| any[&m.name]).collect();
        assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), 2 * ds.len());
        // Equal weights: within 5 % of an equal share.
        let eq = monitors(5);
        let mut c: BTreeMap<String, usize> = BTreeMap::new();
        for d in &ds {
            for x in owners(d, &eq, 2) {
                *c.entry(x).or_default() += 1;
            }
        }
        for (name, n) in c {
            let share = n as f64 / (2 * ds.len()) as f64;
            assert!((share - 0.2).abs() < 0.01, "{name}: {share:.3}");
        }
    }

    #[test]
    fn a_flapping_monitor_counts_only_after_settling() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut e = Eligibility::new(s(30));
        let ab = [Monitor::new("a", 1), Monitor::new("b", 1)];
        e.observe(t0, &ab);
        // Nobody settled yet: everyone alive counts.
        assert_eq!(e.monitors(t0).len(), 2);
        // ... and keep counting: nothing changes when they settle.
        assert_eq!(e.next_change(t0), None);
        let t1 = t0 + s(40);
        e.observe(t1, &ab);
        assert_eq!(e.monitors(t1), ab);
        // c joins: not counted until it has been alive for 30 s.
        let abc = [ab[0].clone(), ab[1].clone(), Monitor::new("c", 1)];
        e.observe(t1, &abc);
        assert_eq!(e.monitors(t1 + s(29)), ab);
        // It flaps: gone, back, gone, back: the clock restarts each time.
        e.observe(t1 + s(29), &ab);
        e.observe(t1 + s(31), &abc);
        assert_eq!(e.monitors(t1 + s(35)), ab);
        e.observe(t1 + s(50), &ab);
        e.observe(t1 + s(52), &abc);
        assert_eq!(e.next_change(t1 + s(52)), Some(t1 + s(82)));
        assert_eq!(e.monitors(t1 + s(81)), ab);
        assert_eq!(e.monitors(t1 + s(82)), abc);
        // A monitor that fails leaves at once.
        e.observe(t1 + s(90), &abc[1..]);
        assert_eq!(e.monitors(t1 + s(90)), abc[1..]);
        // A new weight keeps its clock.
        let heavier = [Monitor::new("b", 3), abc[2].clone()];
        e.observe(t1 + s(91), &heavier);
        assert_eq!(e.monitors(t1 + s(91)), heavier);
    }

    #[test]
    fn the_monitors_seen_at_the_start_settle_together() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let mut e = Eligibility::new(s(30));
        // This node sees itself first, its peers 50 ms later.
        let me = [Monitor::new("me", 1)];
        e.observe(t0, &me);
        let all = [
            Monitor::new("me", 1),
            Monitor::new("p1", 1),
            Monitor::new("p2", 1),
        ];
        e.observe(t0 + ms(50), &all);
        assert_eq!(e.monitors(t0 + ms(50)), all);
        // When "me" settles, the peers seen meanwhile still count: no
        // moment with "me" alone.
        assert_eq!(e.monitors(t0 + s(30)), all);
        assert_eq!(e.next_change(t0 + s(30)), None);
        // A monitor that comes later waits for its settle time.
        let four = [
            all[0].clone(),
            all[1].clone(),
            all[2].clone(),
            Monitor::new("p3", 1),
        ];
        e.observe(t0 + s(40), &four);
        assert_eq!(e.monitors(t0 + s(69)), all);
        assert_eq!(e.monitors(t0 + s(70)), four);
        // A cold monitor that fails and comes back is new: it waits.
        e.observe(t0 + s(80), &four[1..]);
        e.observe(t0 + s(81), &four);
        assert_eq!(e.monitors(t0 + s(82)), four[1..]);
        assert_eq!(e.monitors(t0 + s(111)), four);
    }
}
