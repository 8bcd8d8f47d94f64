//! Whether this node may claim a VIP: what it tracks is healthy and it is
//! not on the minority side of a partition. Sans-I/O: the component feeds
//! it the catalog's health and the gossip membership; the answer goes to
//! [`Router::set_fault`](crate::router::Router::set_fault).
//!
//! Quorum is the core's rule ([`nuvol_agent::quorum`]), the one fencing
//! uses too: a strict majority of the gossip members that have not left;
//! exactly half only with a reachable gateway tie-breaker (`tie_breaker`)
//! or a witness node that makes the count odd.

pub use nuvol_agent::quorum::{Standing, TieBreaker};

/// One tracked service or app, by its catalog health on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// `service web` or `app nextcloud`, as shown in the reason.
    pub what: String,
    /// `None`: not running or not published on this node.
    pub healthy: Option<bool>,
}

/// `Some(reason)` when the node must not claim the VIP.
pub fn fault(standing: Standing, tie: TieBreaker, tracked: &[Tracked]) -> Option<String> {
    for t in tracked {
        match t.healthy {
            Some(true) => {}
            Some(false) => return Some(format!("{} is unhealthy on this node", t.what)),
            None => return Some(format!("{} does not run on this node", t.what)),
        }
    }
    nuvol_agent::quorum::check(standing, tie).err()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(alive: usize, known: usize) -> Standing {
        Standing { alive, known }
    }

    #[test]
    fn majority_minority_and_ties() {
        assert_eq!(fault(s(1, 1), TieBreaker::None, &[]), None, "a single node");
        assert_eq!(fault(s(2, 3), TieBreaker::None, &[]), None);
        assert_eq!(fault(s(0, 0), TieBreaker::None, &[]), None, "self counts");
        let minority = fault(s(1, 3), TieBreaker::None, &[]).unwrap();
        assert!(minority.contains("minority side"), "{minority}");
        let tie = fault(s(1, 2), TieBreaker::None, &[]).unwrap();
        assert!(tie.contains("no tie-breaker"), "{tie}");
        assert_eq!(
            fault(s(1, 2), TieBreaker::Gateway { reachable: true }, &[]),
            None
        );
        assert!(fault(s(2, 4), TieBreaker::Gateway { reachable: false }, &[]).is_some());
        // A witness makes it 2 of 3 on the side that keeps it.
        assert_eq!(fault(s(2, 3), TieBreaker::None, &[]), None);
        // Even a reachable gateway does not save a minority.
        assert!(fault(s(1, 3), TieBreaker::Gateway { reachable: true }, &[]).is_some());
    }

    #[test]
    fn tracked_health() {
        let t = |h| Tracked {
            what: "app web".into(),
            healthy: h,
        };
        assert_eq!(fault(s(1, 1), TieBreaker::None, &[t(Some(true))]), None);
        assert_eq!(
            fault(s(1, 1), TieBreaker::None, &[t(Some(false))]).as_deref(),
            Some("app web is unhealthy on this node")
        );
        assert_eq!(
            fault(s(1, 1), TieBreaker::None, &[t(None)]).as_deref(),
            Some("app web does not run on this node")
        );
    }
}
