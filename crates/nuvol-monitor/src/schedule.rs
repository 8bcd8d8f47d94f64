//! When to probe each owned device, sans-I/O.
//!
//! A device this node starts owning (at start, or taking over from a
//! monitor that failed) is due at once, so a takeover leaves no gap
//! longer than failure detection; then every `interval` after its last
//! due time. A probe that overruns does not pile up: missed rounds are
//! skipped, not run back to back. A device no longer owned is forgotten.
//! The I/O layer bounds how many probes run at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Scheduler {
    interval: Duration,
    next: BTreeMap<String, Instant>,
}

impl Scheduler {
    pub fn new(interval: Duration) -> Scheduler {
        Scheduler {
            interval: interval.max(Duration::from_millis(100)),
            next: BTreeMap::new(),
        }
    }

    /// The devices owned now: new ones are due at `now`, others keep
    /// their time, the rest are forgotten. Returns the new ones.
    pub fn set_owned<'a>(
        &mut self,
        now: Instant,
        owned: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        let owned: std::collections::BTreeSet<&str> = owned.into_iter().collect();
        self.next.retain(|d, _| owned.contains(d.as_str()));
        let mut new = Vec::new();
        for d in owned {
            if !self.next.contains_key(d) {
                self.next.insert(d.to_owned(), now);
                new.push(d.to_owned());
            }
        }
        new
    }

    /// The devices due at `now`, each moved to its next round.
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for (d, at) in &mut self.next {
            if *at <= now {
                out.push(d.clone());
                let mut next = *at + self.interval;
                if next <= now {
                    // Overran a whole round or more: the next one from now.
                    let behind =
                        now.duration_since(*at).as_nanos() / self.interval.as_nanos().max(1);
                    let rounds = u32::try_from(behind + 1).unwrap_or(u32::MAX);
                    next = *at + self.interval.saturating_mul(rounds);
                }
                *at = next;
            }
        }
        out
    }

    /// When the next device is due.
    pub fn next_wake(&self) -> Option<Instant> {
        self.next.values().min().copied()
    }

    /// This device is owned (scheduled).
    pub fn contains(&self, id: &str) -> bool {
        self.next.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.next.len()
    }

    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_devices_are_due_at_once_then_every_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut sc = Scheduler::new(s(60));
        assert_eq!(sc.set_owned(t0, ["a", "b"]), ["a", "b"]);
        assert_eq!(sc.due(t0), ["a", "b"]);
        assert!(sc.due(t0 + s(59)).is_empty());
        assert_eq!(sc.next_wake(), Some(t0 + s(60)));
        // A takeover at t0 + 30: "c" due at once, the others keep time.
        assert_eq!(sc.set_owned(t0 + s(30), ["a", "b", "c"]), ["c"]);
        assert_eq!(sc.due(t0 + s(30)), ["c"]);
        assert_eq!(sc.due(t0 + s(60)), ["a", "b"]);
        assert_eq!(sc.due(t0 + s(90)), ["c"]);
        // No longer owned: forgotten; owned again: due at once.
        sc.set_owned(t0 + s(100), ["a", "c"]);
        assert_eq!(sc.len(), 2);
        assert_eq!(sc.set_owned(t0 + s(101), ["a", "b", "c"]), ["b"]);
        assert_eq!(sc.due(t0 + s(101)), ["b"]);
    }

    #[test]
    fn an_overrun_skips_missed_rounds() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut sc = Scheduler::new(s(10));
        sc.set_owned(t0, ["a"]);
        assert_eq!(sc.due(t0), ["a"]);
        // Asleep for 35 s: one probe now, the next at t0 + 40.
        assert_eq!(sc.due(t0 + s(35)), ["a"]);
        assert!(sc.due(t0 + s(39)).is_empty());
        assert_eq!(sc.due(t0 + s(40)), ["a"]);
        assert!(Scheduler::new(s(1)).is_empty());
    }
}
