//! Which side of a partition this node is on: the one rule the floating
//! IPs (may this node claim a VIP?) and fencing (must this node stop its
//! copies of singleton services?) share. Plain values in, an answer out.
//!
//! Counted over the gossip members that have not left (alive, suspect or
//! failed; a reaped or departed member no longer counts):
//! - more than half alive (this node included): the majority side;
//! - fewer than half: the minority side, the other side has the majority;
//! - exactly half (a two-node cluster that lost its peer, or a 2 + 2
//!   split): the majority side only with a tie-breaker. Either a witness
//!   node, a nuvol agent that runs nothing else, whose membership makes
//!   the count odd (so there is no exact half any more), or a gateway
//!   address this node can reach: the side that still reaches the LAN's
//!   router wins. Without one the answer is "no majority", rather than risk
//!   a split brain silently.

use nuvol_gossip::{Member, MemberStatus};

/// The gossip membership as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Alive members, this node included.
    pub alive: usize,
    /// Members that have not left (alive + suspect + failed).
    pub known: usize,
}

impl Standing {
    /// Count `members` (this node's own member list, itself included).
    pub fn of(members: &[Member]) -> Standing {
        let alive = members
            .iter()
            .filter(|m| m.status == MemberStatus::Alive)
            .count();
        let known = members
            .iter()
            .filter(|m| matches!(m.status, MemberStatus::Alive | MemberStatus::Failed))
            .count();
        Standing { alive, known }
    }
}

/// The tie-breaker's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieBreaker {
    /// None configured.
    None,
    /// A gateway, and whether it answered the last probe.
    Gateway { reachable: bool },
}

/// `Ok(())` on the majority side; `Err(reason)` otherwise, the reason
/// worded for a status line.
pub fn check(standing: Standing, tie: TieBreaker) -> Result<(), String> {
    let Standing { alive, known } = standing;
    // This node is always alive in its own view.
    let alive = alive.max(1);
    let known = known.max(alive);
    if alive * 2 > known {
        return Ok(());
    }
    if alive * 2 < known {
        return Err(format!(
            "minority side of a partition: {alive} of {known} members alive"
        ));
    }
    match tie {
        TieBreaker::Gateway { reachable: true } => Ok(()),
        TieBreaker::Gateway { reachable: false } => Err(format!(
            "no majority ({alive} of {known} members alive) and the tie-breaker gateway does not answer"
        )),
        TieBreaker::None => Err(format!(
            "no majority ({alive} of {known} members alive) and no tie-breaker: set tie_breaker to a gateway address or add a witness node"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn s(alive: usize, known: usize) -> Standing {
        Standing { alive, known }
    }

    #[test]
    fn majority_minority_and_ties() {
        assert_eq!(check(s(1, 1), TieBreaker::None), Ok(()), "a single node");
        assert_eq!(check(s(2, 3), TieBreaker::None), Ok(()));
        assert_eq!(check(s(0, 0), TieBreaker::None), Ok(()), "self counts");
        assert_eq!(check(s(3, 2), TieBreaker::None), Ok(()), "known >= alive");
        let minority = check(s(1, 3), TieBreaker::None).unwrap_err();
        assert_eq!(
            minority,
            "minority side of a partition: 1 of 3 members alive"
        );
        let tie = check(s(1, 2), TieBreaker::None).unwrap_err();
        assert!(tie.contains("no tie-breaker"), "{tie}");
        assert_eq!(
            check(s(1, 2), TieBreaker::Gateway { reachable: true }),
            Ok(())
        );
        let down = check(s(2, 4), TieBreaker::Gateway { reachable: false }).unwrap_err();
        assert!(down.contains("gateway does not answer"), "{down}");
        // Even a reachable gateway does not save a minority.
        assert!(check(s(1, 3), TieBreaker::Gateway { reachable: true }).is_err());
        assert!(check(s(3, 5), TieBreaker::None).is_ok());
        assert!(check(s(2, 5), TieBreaker::Gateway { reachable: true }).is_err());
    }

    #[test]
    fn standing_counts_members_that_have_not_left() {
        let m = |name: &str, status| Member {
            name: name.into(),
            addr: "127.0.0.1:7946".parse().unwrap(),
            tags: BTreeMap::new(),
            status,
            vsn: [0; 6],
        };
        let members = [
            m("a", MemberStatus::Alive),
            m("b", MemberStatus::Alive),
            m("c", MemberStatus::Failed),
            m("d", MemberStatus::Left),
            m("e", MemberStatus::Leaving),
            m("f", MemberStatus::None),
        ];
        assert_eq!(Standing::of(&members), s(2, 3));
        assert_eq!(Standing::of(&[]), s(0, 0));
    }
}
