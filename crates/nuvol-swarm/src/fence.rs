//! Fencing, sans-I/O: a node cut off from the majority stops its copies of
//! singleton services (containers labelled `nuvol.ha.singleton=true`), so
//! that the copy Swarm starts on the majority side is the only one that
//! runs. Driven by the quorum answer ([`nuvol_agent::quorum::check`]) and
//! the clock the component passes in; it never reads one itself.
//!
//! - on the majority side: [`Verdict::Run`];
//! - on the minority side for less than `after` (a blip, a suspicion that
//!   is refuted): [`Verdict::Waiting`], nothing is stopped;
//! - for `after` or longer: [`Verdict::Fenced`]; every pass while fenced
//!   stops the singleton containers that run (the local Swarm agent may
//!   start them again), until the majority is back. Nothing is restarted
//!   by the fence: once back, Swarm's own scheduling decides.

use std::time::Duration;
use tokio::time::Instant;

/// The container label that marks a copy of a singleton service.
pub const SINGLETON_LABEL: &str = "nuvol.ha.singleton";

/// What the node must do with its singleton containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Majority side: leave them alone.
    Run,
    /// Minority side for less than the grace period: leave them alone for
    /// `left` more.
    Waiting { reason: String, left: Duration },
    /// Minority side past the grace period: stop them.
    Fenced { reason: String },
}

/// The fence's state: since when this node is on the minority side.
#[derive(Debug, Clone)]
pub struct Fence {
    after: Duration,
    since: Option<Instant>,
}

impl Fence {
    /// A fence that acts once the node has been on the minority side for
    /// `after`.
    pub fn new(after: Duration) -> Fence {
        Fence { after, since: None }
    }

    /// The verdict at `now`, given the quorum answer (`Err(reason)`: not
    /// on the majority side).
    pub fn observe(&mut self, now: Instant, quorum: Result<(), String>) -> Verdict {
        match quorum {
            Ok(()) => {
                self.since = None;
                Verdict::Run
            }
            Err(reason) => {
                let since = *self.since.get_or_insert(now);
                let waited = now.saturating_duration_since(since);
                if waited >= self.after {
                    Verdict::Fenced { reason }
                } else {
                    Verdict::Waiting {
                        reason,
                        left: self.after - waited,
                    }
                }
            }
        }
    }

    /// Whether the last verdict was [`Verdict::Fenced`] (as of `now`).
    pub fn fenced(&self, now: Instant) -> bool {
        self.since
            .is_some_and(|s| now.saturating_duration_since(s) >= self.after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nuvol_agent::quorum::{check, Standing, TieBreaker};

    fn q(alive: usize, known: usize) -> Result<(), String> {
        check(Standing { alive, known }, TieBreaker::None)
    }

    #[test]
    fn a_blip_is_forgiven_a_partition_is_fenced() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut f = Fence::new(s(5));
        assert_eq!(f.observe(t0, q(3, 3)), Verdict::Run);
        // Cut off: 1 of 3 alive. Waiting through the grace period.
        match f.observe(t0 + s(1), q(1, 3)) {
            Verdict::Waiting { reason, left } => {
                assert!(reason.contains("minority side"), "{reason}");
                assert_eq!(left, s(5));
            }
            v => panic!("{v:?}"),
        }
        assert!(!f.fenced(t0 + s(2)));
        assert!(matches!(
            f.observe(t0 + s(4), q(1, 3)),
            Verdict::Waiting { left, .. } if left == s(2)
        ));
        // Back before the grace period ends: nothing was fenced, and the
        // clock starts again at the next cut.
        assert_eq!(f.observe(t0 + s(5), q(3, 3)), Verdict::Run);
        assert!(matches!(
            f.observe(t0 + s(7), q(1, 3)),
            Verdict::Waiting { .. }
        ));
        assert!(matches!(
            f.observe(t0 + s(11), q(1, 3)),
            Verdict::Waiting { .. }
        ));
        assert!(matches!(
            f.observe(t0 + s(12), q(1, 3)),
            Verdict::Fenced { .. }
        ));
        assert!(f.fenced(t0 + s(12)));
        // Stays fenced on every pass until the majority is back.
        assert!(matches!(
            f.observe(t0 + s(60), q(1, 3)),
            Verdict::Fenced { .. }
        ));
        assert_eq!(f.observe(t0 + s(61), q(2, 3)), Verdict::Run);
        assert!(!f.fenced(t0 + s(61)));
    }

    #[test]
    fn the_quorum_rule_decides_who_is_fenced() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        let fenced = |alive, known| {
            let mut f = Fence::new(Duration::ZERO);
            f.observe(t0, q(alive, known));
            matches!(f.observe(later, q(alive, known)), Verdict::Fenced { .. })
        };
        assert!(!fenced(1, 1), "a single node is its own majority");
        assert!(!fenced(2, 3), "the majority side of 3");
        assert!(fenced(1, 3), "the minority side of 3");
        assert!(fenced(1, 2), "half, without a tie-breaker");
        assert!(fenced(2, 4));
        assert!(!fenced(3, 5));
        // A zero grace period fences at once.
        let mut f = Fence::new(Duration::ZERO);
        assert!(matches!(f.observe(t0, q(1, 3)), Verdict::Fenced { .. }));
    }
}
