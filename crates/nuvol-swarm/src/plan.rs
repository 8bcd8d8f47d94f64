//! The sans-I/O planner: from what gossip says of the swarm-enabled
//! members (their `swarm` tags), this node's local Swarm state and, on the
//! Swarm's leader, the Swarm's node list, to the one action to take now.
//!
//! - nobody alive is in a swarm: the lowest node name among the alive
//!   swarm-enabled members initialises one (every node computes the same
//!   name from the same view, so one view never yields two inits), once it
//!   has been up long enough to have heard of the others (`may_init`);
//! - this node is not in a swarm and a member manages one: join (the
//!   tokens are asked of the managers over gossip);
//! - the leader keeps `min(managers, usable nodes)` reachable managers:
//!   promotes ready workers of alive members (lowest names first), demotes
//!   managers that are down once replaced (and extras, highest names
//!   first, never itself), and removes down nodes whose gossip member left
//!   or was reaped (a down manager is demoted first, as Swarm requires);
//! - beside the action, the leader keeps the [`LEADER_LABEL`] node label on
//!   itself alone ([`leader_marks`]), so that one-replica HA services,
//!   constrained to nodes without it, run off the raft leader: losing the
//!   node that runs such a task then never costs a raft election before
//!   Swarm reschedules it (the leader's dispatcher notices a dead follower
//!   after a few heartbeats; a new leader first waits twice as long for
//!   every node). The leader marks itself only while another usable node
//!   can take the task.

use std::collections::BTreeMap;

/// The gossip tag key.
pub const SWARM_TAG: &str = "swarm";

/// The node label the raft leader keeps on itself (value `true`).
pub const LEADER_LABEL: &str = "nuvol.swarm.leader";

/// The placement constraint that keeps a task off the marked leader (a
/// node without the label matches).
pub const OFF_LEADER_CONSTRAINT: &str = "node.labels.nuvol.swarm.leader!=true";

/// What a member's `swarm` tag says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// A manager of the swarm, with its Swarm node id (`m:ID`).
    Manager(String),
    /// A worker (`w:ID`).
    Worker(String),
    /// Swarm on, not in a swarm (yet) (`-`).
    Out,
    /// Swarm on, but the engine is unusable or in an error state (`e`).
    Error,
}

impl Tag {
    pub fn value(&self) -> String {
        match self {
            Tag::Manager(id) => format!("m:{id}"),
            Tag::Worker(id) => format!("w:{id}"),
            Tag::Out => "-".into(),
            Tag::Error => "e".into(),
        }
    }

    /// Parse a tag value; `None` for anything else (ignored).
    pub fn parse(v: &str) -> Option<Tag> {
        let id_ok = |id: &str| {
            !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
        };
        match v {
            "-" => Some(Tag::Out),
            "e" => Some(Tag::Error),
            _ => {
                if let Some(id) = v.strip_prefix("m:") {
                    id_ok(id).then(|| Tag::Manager(id.to_owned()))
                } else if let Some(id) = v.strip_prefix("w:") {
                    id_ok(id).then(|| Tag::Worker(id.to_owned()))
                } else {
                    None
                }
            }
        }
    }

    /// The Swarm node id it names, if in a swarm.
    pub fn node_id(&self) -> Option<&str> {
        match self {
            Tag::Manager(id) | Tag::Worker(id) => Some(id),
            Tag::Out | Tag::Error => None,
        }
    }
}

/// A gossip member, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    /// Alive in gossip (not failed, leaving or left).
    pub alive: bool,
    /// It left gracefully (its Swarm node may go).
    pub left: bool,
    /// Its `swarm` tag (`None`: swarm off there, or an unreadable tag).
    pub tag: Option<Tag>,
}

/// This node's Swarm state, as its engine says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// Not in a swarm.
    Inactive,
    /// Joining (or reconnecting).
    Pending,
    /// In a swarm.
    Active {
        node_id: String,
        manager: bool,
        leader: bool,
    },
    /// The engine reports an error (or a locked swarm).
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Manager,
    Worker,
}

/// One node of the Swarm's node list (the leader's view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub role: Role,
    /// Availability `active` (not drained or paused).
    pub active: bool,
    /// Status `ready`.
    pub ready: bool,
    /// A manager whose raft is reachable.
    pub reachable: bool,
    /// Not ready for long enough (the component's clock): a node no member
    /// claims is only removed then, since a joining node is listed before
    /// its member's tag names it.
    pub stale: bool,
    /// It carries [`LEADER_LABEL`].
    pub marked: bool,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Initialise a swarm here.
    Init,
    /// Join the swarm; ask these members (managers) for the tokens.
    Join {
        ask: Vec<String>,
    },
    Promote(Vec<String>),
    Demote(Vec<String>),
    Remove(Vec<String>),
}

impl Action {
    /// Its name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Nothing => "nothing",
            Action::Init => "init",
            Action::Join { .. } => "join",
            Action::Promote(_) => "promote",
            Action::Demote(_) => "demote",
            Action::Remove(_) => "remove",
        }
    }
}

/// Everything the planner looks at.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// This node's gossip name.
    pub me: &'a str,
    /// The other members (this node excluded).
    pub peers: &'a [Peer],
    pub local: &'a Local,
    /// The Swarm's nodes (read on the leader only; empty elsewhere).
    pub nodes: &'a [Node],
    /// `[swarm] managers`.
    pub managers: u32,
    /// This node has been in the cluster long enough to see the others
    /// (nodes started together must not each initialise a swarm before
    /// gossip told them about each other).
    pub may_init: bool,
}

/// The one action for this view.
pub fn plan(i: &Inputs<'_>) -> Action {
    match i.local {
        Local::Pending | Local::Error(_) => Action::Nothing,
        Local::Inactive => plan_out(i),
        Local::Active {
            node_id, leader, ..
        } => {
            if *leader {
                plan_leader(i, node_id)
            } else {
                Action::Nothing
            }
        }
    }
}

fn plan_out(i: &Inputs<'_>) -> Action {
    let alive = || i.peers.iter().filter(|p| p.alive);
    let mut managers: Vec<String> = alive()
        .filter(|p| matches!(p.tag, Some(Tag::Manager(_))))
        .map(|p| p.name.clone())
        .collect();
    if !managers.is_empty() {
        managers.sort();
        return Action::Join { ask: managers };
    }
    if alive().any(|p| matches!(p.tag, Some(Tag::Worker(_)))) {
        // A swarm without a visible manager: wait for one rather than
        // start a second swarm.
        return Action::Nothing;
    }
    let lowest = alive()
        .filter(|p| p.tag.is_some())
        .map(|p| p.name.as_str())
        .min();
    match lowest {
        Some(other) if other < i.me => Action::Nothing,
        _ if !i.may_init => Action::Nothing,
        _ => Action::Init,
    }
}

fn plan_leader(i: &Inputs<'_>, me_id: &str) -> Action {
    // Swarm node id -> the member that claims it.
    let mut owner: BTreeMap<&str, &Peer> = BTreeMap::new();
    for p in i.peers {
        if let Some(id) = p.tag.as_ref().and_then(Tag::node_id) {
            owner.insert(id, p);
        }
    }
    let name_of = |n: &Node| -> String {
        if n.id == me_id {
            i.me.to_owned()
        } else {
            owner
                .get(n.id.as_str())
                .map(|p| p.name.clone())
                .unwrap_or_default()
        }
    };
    let member_alive =
        |n: &Node| n.id == me_id || owner.get(n.id.as_str()).is_some_and(|p| p.alive);
    let gone = |n: &Node| {
        n.id != me_id
            && match owner.get(n.id.as_str()) {
                Some(p) => p.left && !p.alive,
                None => n.stale,
            }
    };
    let healthy = |n: &Node| n.role == Role::Manager && n.ready && n.reachable;
    let usable = |n: &Node| n.ready && n.active && member_alive(n);

    let healthy_count = i.nodes.iter().filter(|n| healthy(n)).count();
    let usable_count = i
        .nodes
        .iter()
        .filter(|n| usable(n) || (healthy(n) && n.id == me_id))
        .count();
    let target = usize::try_from(i.managers.max(1))
        .unwrap_or(usize::MAX)
        .min(usable_count.max(1));

    // 1. Fault tolerance first: promote ready workers of alive members.
    if healthy_count < target {
        let mut cands: Vec<(String, &str)> = i
            .nodes
            .iter()
            .filter(|n| n.role == Role::Worker && usable(n))
            .map(|n| (name_of(n), n.id.as_str()))
            .collect();
        cands.sort();
        let want: Vec<String> = cands
            .into_iter()
            .take(target - healthy_count)
            .map(|(_, id)| id.to_owned())
            .collect();
        if !want.is_empty() {
            return Action::Promote(want);
        }
    }
    // 2. Managers that are down, once the healthy ones are enough (or the
    //    member is gone for good); then extra healthy ones.
    let mut demote: Vec<(String, String)> = i
        .nodes
        .iter()
        .filter(|n| n.role == Role::Manager && !healthy(n) && n.id != me_id)
        .filter(|n| healthy_count >= target || gone(n))
        // Raft must keep a quorum of the managers after the change.
        .map(|n| (name_of(n), n.id.clone()))
        .collect();
    if demote.is_empty() && healthy_count > target {
        let mut extra: Vec<(String, String)> = i
            .nodes
            .iter()
            .filter(|n| healthy(n) && n.id != me_id)
            .map(|n| (name_of(n), n.id.clone()))
            .collect();
        extra.sort();
        extra.reverse();
        extra.truncate(healthy_count - target);
        demote = extra;
    }
    if !demote.is_empty() {
        let total_managers = i.nodes.iter().filter(|n| n.role == Role::Manager).count();
        // Demoting an unreachable manager shrinks raft; keep a majority of
        // the remaining ones healthy.
        demote.sort();
        let mut ids = Vec::new();
        let mut remaining = total_managers;
        let mut healthy_left = healthy_count;
        for (_, id) in demote {
            let is_healthy = i.nodes.iter().any(|n| n.id == id && healthy(n));
            let after_total = remaining - 1;
            let after_healthy = healthy_left - usize::from(is_healthy);
            if after_healthy * 2 > after_total && after_healthy >= 1 {
                remaining = after_total;
                healthy_left = after_healthy;
                ids.push(id);
            }
        }
        if !ids.is_empty() {
            return Action::Demote(ids);
        }
    }
    // 3. Down workers whose member left or was reaped.
    let mut remove: Vec<String> = i
        .nodes
        .iter()
        .filter(|n| n.role == Role::Worker && !n.ready && gone(n))
        .map(|n| n.id.clone())
        .collect();
    if !remove.is_empty() {
        remove.sort();
        return Action::Remove(remove);
    }
    Action::Nothing
}

/// On the leader: the [`LEADER_LABEL`] changes to make, `(node id, set)`.
/// The leader is marked while another node is usable (ready, active, its
/// member alive: a one-replica task can run there); every other node is
/// unmarked (a former leader); with `enabled` off (`[swarm]
/// singletons_off_leader`) every node is unmarked. Nothing elsewhere.
pub fn leader_marks(i: &Inputs<'_>, enabled: bool) -> Vec<(String, bool)> {
    let Local::Active {
        node_id: me_id,
        leader: true,
        ..
    } = i.local
    else {
        return Vec::new();
    };
    let alive_ids: Vec<&str> = i
        .peers
        .iter()
        .filter(|p| p.alive)
        .filter_map(|p| p.tag.as_ref().and_then(Tag::node_id))
        .collect();
    let other_usable = i
        .nodes
        .iter()
        .any(|n| n.id != *me_id && n.ready && n.active && alive_ids.contains(&n.id.as_str()));
    let mut out = Vec::new();
    for n in i.nodes {
        let want = enabled && n.id == *me_id && other_usable;
        if n.marked != want {
            out.push((n.id.clone(), want));
        }
    }
    out
}

/// The peers from the members (this node and members without a readable
/// `swarm` tag are kept out, except that gone members are kept with their
/// tag so that their Swarm node can be removed).
pub fn peers(members: &[nuvol_gossip::Member], me: &str) -> Vec<Peer> {
    use nuvol_gossip::MemberStatus;
    members
        .iter()
        .filter(|m| m.name != me)
        .filter_map(|m| {
            let tag = m.tags.get(SWARM_TAG).and_then(|v| Tag::parse(v))?;
            Some(Peer {
                name: m.name.clone(),
                alive: m.status == MemberStatus::Alive,
                left: matches!(m.status, MemberStatus::Left | MemberStatus::Leaving),
                tag: Some(tag),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    fn peer(name: &str, tag: Tag) -> Peer {
        Peer {
            name: name.into(),
            alive: true,
            left: false,
            tag: Some(tag),
        }
    }

    fn node(id: &str, role: Role) -> Node {
        Node {
            id: id.into(),
            role,
            active: true,
            ready: true,
            reachable: role == Role::Manager,
            stale: false,
            marked: false,
        }
    }

    fn leader(id: &str) -> Local {
        Local::Active {
            node_id: id.into(),
            manager: true,
            leader: true,
        }
    }

    fn run(me: &str, peers: &[Peer], local: &Local, nodes: &[Node], managers: u32) -> Action {
        plan(&Inputs {
            me,
            peers,
            local,
            nodes,
            managers,
            may_init: true,
        })
    }

    fn marks(me: &str, peers: &[Peer], local: &Local, nodes: &[Node]) -> Vec<(String, bool)> {
        marks_if(me, peers, local, nodes, true)
    }

    fn marks_if(
        me: &str,
        peers: &[Peer],
        local: &Local,
        nodes: &[Node],
        enabled: bool,
    ) -> Vec<(String, bool)> {
        leader_marks(
            &Inputs {
                me,
                peers,
                local,
                nodes,
                managers: 3,
                may_init: true,
            },
            enabled,
        )
    }

    #[test]
    fn the_constraint_names_the_label() {
        assert_eq!(
            OFF_LEADER_CONSTRAINT,
            format!("node.labels.{LEADER_LABEL}!=true")
        );
    }

    #[test]
    fn the_leader_marks_itself_alone_while_another_node_can_run_a_task() {
        let peers = [
            peer("b", Tag::Manager("B".into())),
            peer("c", Tag::Manager("C".into())),
        ];
        let mut nodes = vec![
            node("A", Role::Manager),
            node("B", Role::Manager),
            node("C", Role::Manager),
        ];
        // A new leader: marks itself, unmarks the former leader.
        nodes[1].marked = true;
        assert_eq!(
            marks("a", &peers, &leader("A"), &nodes),
            [("A".to_owned(), true), ("B".to_owned(), false)]
        );
        nodes[0].marked = true;
        nodes[1].marked = false;
        assert!(
            marks("a", &peers, &leader("A"), &nodes).is_empty(),
            "settled"
        );
        // Not the leader: nothing, whatever the labels say.
        let follower = Local::Active {
            node_id: "B".into(),
            manager: true,
            leader: false,
        };
        nodes[0].marked = false;
        assert!(marks("b", &peers, &follower, &nodes).is_empty());
        nodes[0].marked = true;
        // No other node usable (down in Swarm, drained, or its member
        // failed in gossip): the leader unmarks itself, or the task would
        // have nowhere to run.
        let mut down = nodes.clone();
        down[1].ready = false;
        down[2].active = false;
        assert_eq!(
            marks("a", &peers, &leader("A"), &down),
            [("A".to_owned(), false)]
        );
        let mut failed = peers.clone();
        failed[0].alive = false;
        failed[1].alive = false;
        assert_eq!(
            marks("a", &failed, &leader("A"), &nodes),
            [("A".to_owned(), false)]
        );
        // One of them is enough; a worker counts.
        let mut one = nodes.clone();
        one[1].ready = false;
        one[2].role = Role::Worker;
        assert!(marks("a", &peers, &leader("A"), &one).is_empty());
        // A single-node swarm is never marked.
        assert_eq!(
            marks("a", &[], &leader("A"), &nodes[..1]),
            [("A".to_owned(), false)]
        );
        // Turned off: the marks go.
        assert_eq!(
            marks_if("a", &peers, &leader("A"), &nodes, false),
            [("A".to_owned(), false)]
        );
    }

    #[test]
    fn tags_round_trip_and_bad_ones_are_ignored() {
        for t in [
            Tag::Manager("abc123".into()),
            Tag::Worker("XYZ".into()),
            Tag::Out,
            Tag::Error,
        ] {
            assert_eq!(Tag::parse(&t.value()), Some(t));
        }
        for bad in ["", "m:", "x:abc", "m:a b", "w:../", "manager"] {
            assert_eq!(Tag::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn one_node_initialises_once_it_may() {
        assert_eq!(run("a", &[], &Local::Inactive, &[], 3), Action::Init);
        let early = Inputs {
            me: "a",
            peers: &[],
            local: &Local::Inactive,
            nodes: &[],
            managers: 3,
            may_init: false,
        };
        assert_eq!(plan(&early), Action::Nothing);
    }

    #[test]
    fn only_the_lowest_name_initialises_from_one_view() {
        let names = ["c", "a", "e", "b", "d"];
        let mut inits = 0;
        for me in names {
            let peers: Vec<Peer> = names
                .iter()
                .filter(|n| **n != me)
                .map(|n| peer(n, Tag::Out))
                .collect();
            if run(me, &peers, &Local::Inactive, &[], 3) == Action::Init {
                assert_eq!(me, "a");
                inits += 1;
            }
        }
        assert_eq!(inits, 1);
    }

    #[test]
    fn dead_or_swarmless_members_do_not_block_the_init() {
        let mut dead = peer("a", Tag::Out);
        dead.alive = false;
        let off = Peer {
            name: "b".into(),
            alive: true,
            left: false,
            tag: None,
        };
        assert_eq!(
            run("c", &[dead, off], &Local::Inactive, &[], 3),
            Action::Init
        );
    }

    #[test]
    fn a_node_out_of_the_swarm_joins_through_the_managers() {
        let peers = [
            peer("b", Tag::Manager("B".into())),
            peer("a", Tag::Manager("A".into())),
            peer("c", Tag::Worker("C".into())),
        ];
        assert_eq!(
            run("z", &peers, &Local::Inactive, &[], 3),
            Action::Join {
                ask: vec!["a".into(), "b".into()]
            }
        );
        // Even the lowest name joins instead of starting a second swarm.
        assert!(matches!(
            run("0", &peers, &Local::Inactive, &[], 3),
            Action::Join { .. }
        ));
        // Only workers visible: wait.
        let workers = [peer("c", Tag::Worker("C".into()))];
        assert_eq!(
            run("0", &workers, &Local::Inactive, &[], 3),
            Action::Nothing
        );
    }

    #[test]
    fn pending_error_and_non_leaders_do_nothing() {
        let peers = [peer("b", Tag::Worker("B".into()))];
        let nodes = [node("A", Role::Manager), node("B", Role::Worker)];
        for local in [
            Local::Pending,
            Local::Error("locked".into()),
            Local::Active {
                node_id: "A".into(),
                manager: true,
                leader: false,
            },
        ] {
            assert_eq!(run("a", &peers, &local, &nodes, 3), Action::Nothing);
        }
    }

    #[test]
    fn the_leader_promotes_up_to_the_target_lowest_names_first() {
        for n in 1..=7usize {
            let names: Vec<String> = (0..n).map(|k| format!("n{k}")).collect();
            let ids: Vec<String> = (0..n).map(|k| format!("ID{k}")).collect();
            let peers: Vec<Peer> = (1..n)
                .map(|k| peer(&names[k], Tag::Worker(ids[k].clone())))
                .collect();
            let mut nodes = vec![node(&ids[0], Role::Manager)];
            nodes.extend((1..n).map(|k| node(&ids[k], Role::Worker)));
            let a = run(&names[0], &peers, &leader(&ids[0]), &nodes, 3);
            let want = n.min(3) - 1;
            if want == 0 {
                assert_eq!(a, Action::Nothing, "n={n}");
            } else {
                assert_eq!(a, Action::Promote(ids[1..=want].to_vec()), "n={n}");
            }
        }
    }

    #[test]
    fn a_failed_manager_is_replaced_then_demoted() {
        let mut peers = vec![
            peer("b", Tag::Manager("B".into())),
            peer("c", Tag::Manager("C".into())),
            peer("d", Tag::Worker("D".into())),
        ];
        peers[0].alive = false;
        let mut nodes = vec![
            node("A", Role::Manager),
            node("B", Role::Manager),
            node("C", Role::Manager),
            node("D", Role::Worker),
        ];
        nodes[1].ready = false;
        nodes[1].reachable = false;
        let l = leader("A");
        assert_eq!(
            run("a", &peers, &l, &nodes, 3),
            Action::Promote(vec!["D".into()])
        );
        nodes[3].role = Role::Manager;
        nodes[3].reachable = true;
        assert_eq!(
            run("a", &peers, &l, &nodes, 3),
            Action::Demote(vec!["B".into()])
        );
        nodes[1].role = Role::Worker;
        nodes[1].reachable = false;
        // Failed but not reaped: kept (it may come back).
        assert_eq!(run("a", &peers, &l, &nodes, 3), Action::Nothing);
        // Reaped (gone from the member list): removed once down for long
        // (a joining node is listed before its member claims it).
        peers.remove(0);
        assert_eq!(run("a", &peers, &l, &nodes, 3), Action::Nothing);
        nodes[1].stale = true;
        assert_eq!(
            run("a", &peers, &l, &nodes, 3),
            Action::Remove(vec!["B".into()])
        );
    }

    #[test]
    fn with_two_nodes_left_a_dead_manager_is_demoted_keeping_a_quorum() {
        let mut peers = vec![
            peer("b", Tag::Manager("B".into())),
            peer("c", Tag::Manager("C".into())),
        ];
        peers[1].alive = false;
        let mut nodes = vec![
            node("A", Role::Manager),
            node("B", Role::Manager),
            node("C", Role::Manager),
        ];
        nodes[2].ready = false;
        nodes[2].reachable = false;
        // Target min(3, 2 usable) = 2 healthy: the dead one can go (2 of 2).
        assert_eq!(
            run("a", &peers, &leader("A"), &nodes, 3),
            Action::Demote(vec!["C".into()])
        );
    }

    #[test]
    fn a_demotion_that_would_lose_the_quorum_is_not_made() {
        // 3 managers, 2 unreachable: demoting either leaves 1 of 2.
        let peers = vec![];
        let mut nodes = vec![
            node("A", Role::Manager),
            node("B", Role::Manager),
            node("C", Role::Manager),
        ];
        for n in &mut nodes[1..] {
            n.ready = false;
            n.reachable = false;
        }
        for n in &mut nodes[1..] {
            n.stale = true;
        }
        // Their members are gone: 1 demotion keeps 1 of 2 healthy (no
        // majority), so none is made.
        assert_eq!(run("a", &peers, &leader("A"), &nodes, 3), Action::Nothing);
    }

    #[test]
    fn extra_managers_are_demoted_highest_names_first_never_the_leader() {
        let peers = vec![
            peer("b", Tag::Manager("B".into())),
            peer("c", Tag::Manager("C".into())),
        ];
        let nodes = vec![
            node("A", Role::Manager),
            node("B", Role::Manager),
            node("C", Role::Manager),
        ];
        assert_eq!(
            run("a", &peers, &leader("A"), &nodes, 1),
            Action::Demote(vec!["B".into(), "C".into()])
        );
        assert_eq!(
            run("z", &peers, &leader("A"), &nodes, 2),
            Action::Demote(vec!["C".into()])
        );
    }

    #[test]
    fn a_left_member_s_down_worker_is_removed() {
        let mut gone = peer("b", Tag::Worker("B".into()));
        gone.alive = false;
        gone.left = true;
        let mut nodes = vec![node("A", Role::Manager), node("B", Role::Worker)];
        // Still ready (draining, leaving): not yet.
        assert_eq!(
            run("a", &[gone.clone()], &leader("A"), &nodes, 3),
            Action::Nothing
        );
        nodes[1].ready = false;
        assert_eq!(
            run("a", &[gone], &leader("A"), &nodes, 3),
            Action::Remove(vec!["B".into()])
        );
    }

    #[test]
    fn a_converged_swarm_is_left_alone() {
        let peers = vec![
            peer("b", Tag::Manager("B".into())),
            peer("c", Tag::Manager("C".into())),
            peer("d", Tag::Worker("D".into())),
        ];
        let nodes = vec![
            node("A", Role::Manager),
            node("B", Role::Manager),
            node("C", Role::Manager),
            node("D", Role::Worker),
        ];
        for _ in 0..3 {
            assert_eq!(run("a", &peers, &leader("A"), &nodes, 3), Action::Nothing);
        }
    }

    /// A toy world: nodes run the planner in random orders with the
    /// swarm's state applied as the engine would; every run converges to
    /// one swarm with min(3, n) managers.
    #[test]
    fn random_orders_converge_to_one_swarm() {
        #[derive(Clone)]
        struct W {
            // per node: swarm id it is in, and its node id
            inside: Vec<Option<(usize, String)>>,
            roles: BTreeMap<String, Role>,
            swarms: usize,
        }
        for seed in 0..300u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let n = rng.gen_range(1..=7usize);
            let names: Vec<String> = (0..n).map(|k| format!("node{k}")).collect();
            let mut w = W {
                inside: vec![None; n],
                roles: BTreeMap::new(),
                swarms: 0,
            };
            let mut order: Vec<usize> = (0..n).collect();
            for _round in 0..40 {
                order.shuffle(&mut rng);
                for &k in &order {
                    let tag_of = |j: usize, w: &W| match &w.inside[j] {
                        None => Tag::Out,
                        Some((_, id)) => match w.roles.get(id) {
                            Some(Role::Manager) => Tag::Manager(id.clone()),
                            _ => Tag::Worker(id.clone()),
                        },
                    };
                    let peers: Vec<Peer> = (0..n)
                        .filter(|j| *j != k)
                        .map(|j| peer(&names[j], tag_of(j, &w)))
                        .collect();
                    // The leader: the first manager of the swarm by id.
                    let local = match &w.inside[k] {
                        None => Local::Inactive,
                        Some((_, id)) => {
                            let first = w
                                .roles
                                .iter()
                                .find(|(_, r)| **r == Role::Manager)
                                .map(|(i, _)| i.clone());
                            Local::Active {
                                node_id: id.clone(),
                                manager: w.roles.get(id) == Some(&Role::Manager),
                                leader: first.as_deref() == Some(id.as_str()),
                            }
                        }
                    };
                    let nodes: Vec<Node> = w.roles.iter().map(|(id, r)| node(id, *r)).collect();
                    match run(&names[k], &peers, &local, &nodes, 3) {
                        Action::Nothing => {}
                        Action::Init => {
                            w.swarms += 1;
                            let id = format!("ID{k}");
                            w.roles.insert(id.clone(), Role::Manager);
                            w.inside[k] = Some((w.swarms, id));
                        }
                        Action::Join { ask } => {
                            assert!(!ask.is_empty());
                            let id = format!("ID{k}");
                            w.roles.insert(id.clone(), Role::Worker);
                            w.inside[k] = Some((w.swarms, id));
                        }
                        Action::Promote(ids) => {
                            for id in ids {
                                w.roles.insert(id, Role::Manager);
                            }
                        }
                        Action::Demote(ids) => {
                            for id in ids {
                                w.roles.insert(id, Role::Worker);
                            }
                        }
                        Action::Remove(ids) => panic!("nothing to remove: {ids:?} (seed {seed})"),
                    }
                }
            }
            assert_eq!(w.swarms, 1, "seed {seed}");
            assert!(w.inside.iter().all(Option::is_some), "seed {seed}");
            let managers = w.roles.values().filter(|r| **r == Role::Manager).count();
            assert_eq!(managers, n.min(3), "seed {seed} n {n}");
        }
    }
}
