//! Deterministic simulations of the membership core: no sockets, virtual time.

mod support;

use nuvol_gossip::{MemberStatus, Profile};
use std::time::Duration;
use support::Sim;

const SECOND: Duration = Duration::from_secs(1);

fn join_all(sim: &mut Sim) {
    for i in 1..sim.nodes.len() {
        assert!(sim.join(i, (i - 1) / 2), "node {i} failed to join");
        sim.run_for(Duration::from_millis(10));
    }
}

#[test]
fn small_cluster_converges_and_detects_failure() {
    let mut sim = Sim::new(5, Profile::Lan, 1);
    join_all(&mut sim);
    let t = sim.run_until_pred(30 * SECOND, 100 * Duration::from_millis(1), Sim::converged);
    assert!(t.is_some(), "5 nodes did not converge");
    sim.down[3] = true;
    let t = sim.run_until_pred(60 * SECOND, SECOND, |s| {
        (0..5)
            .filter(|&i| i != 3)
            .all(|i| s.status(i, 3) == Some(MemberStatus::Failed))
    });
    assert!(t.is_some(), "killed node not detected as failed everywhere");
}

#[test]
fn graceful_leave_is_left_everywhere() {
    let mut sim = Sim::new(4, Profile::Lan, 2);
    join_all(&mut sim);
    assert!(sim
        .run_until_pred(30 * SECOND, SECOND, Sim::converged)
        .is_some());
    sim.nodes[2].leave().unwrap();
    sim.run_for(Duration::from_millis(1));
    let t = sim.run_until_pred(30 * SECOND, SECOND / 10, |s| {
        (0..4)
            .filter(|&i| i != 2)
            .all(|i| s.status(i, 2) == Some(MemberStatus::Left))
    });
    assert!(t.is_some(), "leave did not propagate");
    assert_eq!(
        sim.failures_seen(),
        0,
        "a leaving node must not be seen as failed"
    );
}

#[test]
fn user_events_reach_everyone_once() {
    let mut sim = Sim::new(10, Profile::Lan, 3);
    join_all(&mut sim);
    assert!(sim
        .run_until_pred(30 * SECOND, SECOND, Sim::converged)
        .is_some());
    sim.nodes[4].user_event("deploy", b"v2", false).unwrap();
    sim.run_for(Duration::from_millis(1));
    sim.run_for(10 * SECOND);
    let mut seen: Vec<usize> = sim
        .user_events
        .iter()
        .filter(|(_, n)| n == "deploy")
        .map(|(i, _)| *i)
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        (0..10).collect::<Vec<_>>(),
        "each node sees the event exactly once"
    );
}

/// Every packet delivered twice (replayed half a second later): events are
/// still seen once, nobody is declared failed, tags still converge.
#[test]
fn replayed_packets_change_nothing() {
    let mut sim = Sim::new(8, Profile::Lan, 9);
    sim.replay = true;
    join_all(&mut sim);
    assert!(sim
        .run_until_pred(30 * SECOND, SECOND, Sim::converged)
        .is_some());
    sim.nodes[3].user_event("once", b"", false).unwrap();
    sim.run_for(10 * SECOND);
    let seen = sim.user_events.iter().filter(|(_, n)| n == "once").count();
    assert_eq!(seen, 8, "each node exactly once despite replays");
    sim.run_for(60 * SECOND);
    assert_eq!(sim.failures_seen(), 0);
    assert!(sim.converged());
}

#[test]
fn tags_propagate() {
    let mut sim = Sim::new(6, Profile::Lan, 4);
    join_all(&mut sim);
    assert!(sim
        .run_until_pred(30 * SECOND, SECOND, Sim::converged)
        .is_some());
    let mut tags = std::collections::BTreeMap::new();
    tags.insert("role".to_string(), "db".to_string());
    sim.nodes[5].set_tags(tags).unwrap();
    let t = sim.run_until_pred(30 * SECOND, SECOND / 10, |s| {
        (0..6).all(|i| {
            s.nodes[i]
                .members()
                .iter()
                .any(|m| m.name == "node5" && m.tags.get("role").map(String::as_str) == Some("db"))
        })
    });
    assert!(t.is_some(), "tag change did not reach every node");
}

/// 200 nodes, LAN timings, 5% packet loss: everyone converges and nobody is
/// wrongly declared failed. Then a partition into halves, and healing.
#[test]
fn two_hundred_nodes_loss_partition_heal() {
    let n = 200;
    let mut sim = Sim::new(n, Profile::Lan, 42);
    sim.latency = Duration::from_millis(2);
    sim.jitter = Duration::from_millis(8);
    join_all(&mut sim);
    let t = sim.run_until_pred(120 * SECOND, SECOND, Sim::converged);
    assert!(t.is_some(), "200 nodes did not converge");

    // 5% loss for two minutes: no false failures.
    sim.loss = 0.05;
    let before = sim.failures_seen();
    sim.run_for(120 * SECOND);
    assert_eq!(
        sim.failures_seen() - before,
        0,
        "members wrongly declared failed at 5% loss"
    );
    assert!(sim.converged());

    // Partition into two halves: each side sees the other failed.
    for i in 0..n {
        sim.group[i] = (i % 2) as u8;
    }
    let t = sim.run_until_pred(180 * SECOND, SECOND, |s| {
        (0..n).step_by(37).all(|o| {
            s.nodes[o]
                .members()
                .iter()
                .filter(|m| m.status == MemberStatus::Failed)
                .count()
                == n / 2
        })
    });
    assert!(t.is_some(), "partition not detected");

    // Heal: Serf's reconnect brings both halves back together.
    sim.group.iter_mut().for_each(|g| *g = 0);
    let t = sim.run_until_pred(600 * SECOND, SECOND, Sim::converged);
    assert!(t.is_some(), "cluster did not converge after healing");
}

/// The benchmark's scenario: 49 nodes join one seed at the same instant.
/// Returns the simulated time each seed took to converge.
fn simultaneous_join_times(seeds: std::ops::Range<u64>) -> Vec<Duration> {
    seeds
        .map(|seed| {
            let mut sim = Sim::new(50, Profile::Lan, seed);
            for i in 1..50 {
                assert!(sim.join(i, 0), "node {i} failed to join");
            }
            sim.run_until_pred(120 * SECOND, SECOND / 10, Sim::converged)
                .unwrap_or(Duration::MAX)
        })
        .collect()
}

/// The same scenario on 60 seeds: without nuvol's post-join push/pull, 10
/// of 60 took 3.4–16 s (a member missed until the periodic anti-entropy;
/// serf shows the same tail in the bench); with it the worst seed of 100
/// took 1.9 s. Simulated time, deterministic per seed.
#[test]
fn simultaneous_join_converges_without_waiting_for_anti_entropy() {
    let t = simultaneous_join_times(0..60);
    let slow: Vec<_> = t
        .iter()
        .enumerate()
        .filter(|(_, d)| **d > 3 * SECOND)
        .collect();
    assert!(slow.is_empty(), "seeds converging after 3 s: {slow:?}");
}

#[test]
#[ignore = "measurement: prints the convergence time of 20 seeds"]
fn simultaneous_join_tail_report() {
    let mut t = simultaneous_join_times(0..20);
    t.sort();
    eprintln!("{t:?}");
}
