//! Whether this node may claim a VIP: what it tracks is healthy and it is
//! not on the minority side of a partition. Sans-I/O: the component feeds
//! it the catalog's health and the gossip membership; the answer goes to
//! [`Router::set_fault`](crate::router::Router::set_fault).
//!
//! Quorum, counted over the gossip members that have not left (alive,
//! suspect or failed; a reaped or departed member no longer counts):
//! - more than half alive (this node included): may claim;
//! - fewer than half: Fault, the other side has the majority;
//! - exactly half (a two-node cluster that lost its peer, or a 2 + 2
//!   split): only with a tie-breaker. Either a witness node, a nuvol agent
//!   that runs nothing else, whose membership makes the count odd (so
//!   there is no exact half any more), or a gateway address this node can
//!   reach (`tie_breaker`): the side that still reaches the LAN's router
//!   keeps the VIP. Without one the router holds back, rather than risk a
//!   split brain silently.

/// The gossip membership as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Alive members, this node included.
    pub alive: usize,
    /// Members that have not left (alive + suspect + failed).
    pub known: usize,
}

/// One tracked service or app, by its catalog health on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// `service web` or `app nextcloud`, as shown in the reason.
    pub what: String,
    /// `None`: not running or not published on this node.
    pub healthy: Option<bool>,
}

/// The tie-breaker's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieBreaker {
    /// None configured.
    None,
    /// A gateway, and whether it answered the last probe.
    Gateway { reachable: bool },
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
    let Standing { alive, known } = standing;
    // This node is always alive in its own view.
    let alive = alive.max(1);
    let known = known.max(alive);
    if alive * 2 > known {
        return None;
    }
    if alive * 2 < known {
        return Some(format!(
            "minority side of a partition: {alive} of {known} members alive"
        ));
    }
    match tie {
        TieBreaker::Gateway { reachable: true } => None,
        TieBreaker::Gateway { reachable: false } => Some(format!(
            "no majority ({alive} of {known} members alive) and the tie-breaker gateway does not answer"
        )),
        TieBreaker::None => Some(format!(
            "no majority ({alive} of {known} members alive) and no tie-breaker: set tie_breaker to a gateway address or add a witness node"
        )),
    }
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
