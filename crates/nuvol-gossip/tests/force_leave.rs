//! Force-leave of a node this agent does not know, in virtual time: as in
//! serf (`forceLeave` in serf/serf.go), it is accepted and the leave intent
//! is broadcast, so members that still know the node mark it left.
//!
//! node0 = A (asked to force-leave), node1 = B (knows the target),
//! node2 = T (the target). T joins B and dies; B sees it failed; then A
//! joins B. A's member list never holds T (memberlist does not create
//! members from the dead entries of a push/pull), yet force-leave on A
//! reaches B.

mod support;

use nuvol_gossip::{MemberEventKind, MemberStatus, Profile};
use std::time::Duration;
use support::Sim;

const SECOND: Duration = Duration::from_secs(1);
const STEP: Duration = Duration::from_millis(100);

/// A knows B, B knows T as failed, A does not know T.
fn target_known_to_b_only(seed: u64) -> Sim {
    let mut sim = Sim::new(3, Profile::Local, seed);
    assert!(sim.join(2, 1), "T failed to join B");
    let both = sim.run_until_pred(30 * SECOND, STEP, |s| {
        s.status(1, 2) == Some(MemberStatus::Alive) && s.status(2, 1) == Some(MemberStatus::Alive)
    });
    assert!(both.is_some(), "B and T did not see each other");
    sim.down[2] = true;
    let failed = sim.run_until_pred(60 * SECOND, STEP, |s| {
        s.status(1, 2) == Some(MemberStatus::Failed)
    });
    assert!(failed.is_some(), "B did not see T fail");
    assert!(sim.join(0, 1), "A failed to join B");
    let joined = sim.run_until_pred(30 * SECOND, STEP, |s| {
        s.status(0, 1) == Some(MemberStatus::Alive) && s.status(1, 0) == Some(MemberStatus::Alive)
    });
    assert!(joined.is_some(), "A and B did not see each other");
    // Gossip a while longer: A still must not have learnt T.
    sim.run_for(5 * SECOND);
    assert_eq!(
        sim.status(0, 2),
        None,
        "A knows T; the scenario needs it not to"
    );
    assert_eq!(sim.status(1, 2), Some(MemberStatus::Failed));
    sim
}

#[test]
fn force_leave_of_an_unknown_node_makes_a_member_that_knows_it_mark_it_left() {
    for seed in 1..=5 {
        let mut sim = target_known_to_b_only(seed);
        sim.nodes[0]
            .force_leave("node2", false)
            .expect("force-leave of a node A does not know is accepted");
        let left = sim.run_until_pred(30 * SECOND, STEP, |s| {
            s.status(1, 2) == Some(MemberStatus::Left)
        });
        assert!(left.is_some(), "seed {seed}: B did not mark T left");
        assert!(
            sim.member_log
                .iter()
                .any(|(_, obs, k, n)| *obs == 1 && *k == MemberEventKind::Leave && n == "node2"),
            "seed {seed}: B emitted no leave event for T"
        );
        // A records only the intent, as serf does: T is still not a member.
        assert_eq!(sim.status(0, 2), None, "seed {seed}");
        // And B stays alive on both sides: the intent named T only.
        assert_eq!(sim.status(0, 1), Some(MemberStatus::Alive), "seed {seed}");
        assert_eq!(sim.status(1, 0), Some(MemberStatus::Alive), "seed {seed}");
    }
}

#[test]
fn force_leave_prune_of_an_unknown_node_makes_a_member_that_knows_it_erase_it() {
    for seed in 11..=13 {
        let mut sim = target_known_to_b_only(seed);
        sim.nodes[0]
            .force_leave("node2", true)
            .expect("force-leave --prune of a node A does not know is accepted");
        let gone = sim.run_until_pred(30 * SECOND, STEP, |s| s.status(1, 2).is_none());
        assert!(gone.is_some(), "seed {seed}: B did not erase T");
        assert_eq!(sim.status(0, 2), None, "seed {seed}");
    }
}

#[test]
fn force_leave_of_a_node_nobody_knows_changes_nothing() {
    let mut sim = Sim::new(2, Profile::Local, 21);
    // Alone: accepted, nothing to broadcast to.
    sim.nodes[0]
        .force_leave("ghost", false)
        .expect("accepted when alone");
    assert!(sim.join(1, 0));
    let t = sim.run_until_pred(30 * SECOND, STEP, Sim::converged);
    assert!(t.is_some(), "two nodes did not converge");
    // With a peer: accepted and broadcast; the peer knows no ghost either.
    sim.nodes[0]
        .force_leave("ghost", false)
        .expect("accepted with a peer");
    sim.run_for(10 * SECOND);
    for i in 0..2 {
        let names: Vec<String> = sim.nodes[i].members().into_iter().map(|m| m.name).collect();
        assert_eq!(names.len(), 2, "node{i}: {names:?}");
        assert!(!names.iter().any(|n| n == "ghost"), "node{i}: {names:?}");
    }
    assert!(
        sim.converged(),
        "a ghost's leave intent disturbed the cluster"
    );
}
