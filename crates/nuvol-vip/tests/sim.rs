//! Seeded simulations of virtual routers on one LAN: real `Router`s, their
//! adverts encoded, delivered (or lost, or cut by a partition) and decoded
//! again, a virtual clock. Each scenario runs for many seeds; what is
//! checked is what users of a floating IP care about: how many nodes hold
//! the address, for how long two do, and how soon a new one takes over.

use nuvol_vip::health::{self, Standing, TieBreaker};
use nuvol_vip::packet::{Advert, MULTICAST};
use nuvol_vip::router::{GarpConfig, Output, Router, RouterConfig, State};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 100);
const VRID: u8 = 51;

struct Node {
    cfg: RouterConfig,
    router: Router,
    /// The host is up (a crashed host holds nothing and hears nothing).
    up: bool,
    /// The VIP is on its interface.
    holds: bool,
    /// When it sent gratuitous ARPs.
    garps: Vec<Instant>,
    /// Its side of a partition (nodes hear only their own side).
    side: u8,
    /// When its last packet arrives.
    last_arrival: Instant,
}

struct Packet {
    at: Instant,
    seq: u64,
    from: usize,
    to: Ipv4Addr,
    bytes: Vec<u8>,
}

struct Net {
    nodes: Vec<Node>,
    rng: SmallRng,
    now: Instant,
    t0: Instant,
    /// Percent of packets lost.
    loss: u32,
    inflight: Vec<Packet>,
    seq: u64,
    /// Time with two or more holders, and with none.
    split: Duration,
    vacant: Duration,
    /// When the holder set last changed, and to what.
    changes: Vec<(Instant, Vec<usize>)>,
}

fn ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 3 + (i / 200) as u8, 1 + (i % 200) as u8)
}

fn config(i: usize, priority: u8, interval: Duration) -> RouterConfig {
    RouterConfig {
        vrid: VRID,
        priority,
        advert_interval: interval,
        preempt: true,
        preempt_delay: Duration::ZERO,
        addresses: vec![VIP],
        local: ip(i),
        unicast_peers: Vec::new(),
        garp: GarpConfig::default(),
    }
}

impl Net {
    fn new(seed: u64, cfgs: Vec<RouterConfig>) -> Net {
        let t0 = Instant::now();
        let nodes = cfgs
            .into_iter()
            .map(|cfg| Node {
                router: Router::new(cfg.clone()).unwrap(),
                cfg,
                up: false,
                holds: false,
                garps: Vec::new(),
                side: 0,
                last_arrival: t0,
            })
            .collect();
        Net {
            nodes,
            rng: SmallRng::seed_from_u64(seed),
            now: t0,
            t0,
            loss: 0,
            inflight: Vec::new(),
            seq: 0,
            split: Duration::ZERO,
            vacant: Duration::ZERO,
            changes: Vec::new(),
        }
    }

    fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up && self.nodes[i].holds)
            .collect()
    }

    fn start(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.router = Router::new(n.cfg.clone()).unwrap();
        n.up = true;
        n.router.start(self.now);
        self.flush(i);
    }

    /// The host dies: no priority-0 advert, the VIP goes with it.
    fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
        self.nodes[i].holds = false;
        self.note_holders();
    }

    fn stop(&mut self, i: usize) {
        self.nodes[i].router.shutdown(self.now);
        self.flush(i);
        self.nodes[i].up = false;
    }

    fn set_fault(&mut self, i: usize, reason: Option<String>) {
        self.nodes[i].router.set_fault(self.now, reason);
        self.flush(i);
    }

    fn flush(&mut self, i: usize) {
        while let Some(o) = self.nodes[i].router.poll_output() {
            match o {
                Output::Send { to, bytes } => {
                    if self.rng.gen_range(0..100) < self.loss {
                        continue;
                    }
                    let delay = Duration::from_micros(self.rng.gen_range(200..2000));
                    // A LAN does not reorder one sender's frames.
                    let at = (self.now + delay).max(self.nodes[i].last_arrival);
                    self.nodes[i].last_arrival = at;
                    self.seq += 1;
                    self.inflight.push(Packet {
                        at,
                        seq: self.seq,
                        from: i,
                        to,
                        bytes,
                    });
                }
                Output::AddAddresses => self.nodes[i].holds = true,
                Output::RemoveAddresses => self.nodes[i].holds = false,
                Output::GratuitousArp { .. } => self.nodes[i].garps.push(self.now),
                Output::StateChanged { .. } | Output::Dropped { .. } => {}
            }
        }
        self.note_holders();
    }

    fn note_holders(&mut self) {
        let h = self.holders();
        if self.changes.last().map(|(_, l)| l) != Some(&h) {
            self.changes.push((self.now, h));
        }
    }

    fn advance_to(&mut self, t: Instant) {
        let dt = t.saturating_duration_since(self.now);
        match self.holders().len() {
            0 => self.vacant += dt,
            1 => {}
            _ => self.split += dt,
        }
        self.now = t;
    }

    /// Run every event up to `until`.
    fn run_until(&mut self, until: Instant) {
        let mut steps = 0u64;
        loop {
            steps += 1;
            if steps > 5_000_000 {
                let states: Vec<_> = self
                    .nodes
                    .iter()
                    .map(|n| {
                        (
                            n.up,
                            n.router.state(),
                            n.router.poll_timeout().map(|t| t - self.t0),
                        )
                    })
                    .collect();
                panic!("runaway at {:?}: {states:?}", self.now - self.t0);
            }
            let timer = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].up)
                .filter_map(|i| self.nodes[i].router.poll_timeout().map(|t| (t, i)))
                .min();
            let packet = self
                .inflight
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| (p.at, p.seq))
                .map(|(k, p)| (p.at, k));
            let next = match (timer, packet) {
                (Some((t, _)), Some((p, _))) => t.min(p),
                (Some((t, _)), None) => t,
                (None, Some((p, _))) => p,
                (None, None) => {
                    self.advance_to(until);
                    return;
                }
            };
            if next > until {
                self.advance_to(until);
                return;
            }
            self.advance_to(next);
            if let Some((p, k)) = packet.filter(|(p, _)| *p == next) {
                let _ = p;
                let pkt = self.inflight.swap_remove(k);
                self.deliver(pkt);
            } else if let Some((_, i)) = timer {
                self.nodes[i].router.handle_timeout(self.now);
                self.flush(i);
            }
        }
    }

    fn deliver(&mut self, p: Packet) {
        let src = self.nodes[p.from].cfg.local;
        let side = self.nodes[p.from].side;
        for i in 0..self.nodes.len() {
            let n = &self.nodes[i];
            if i == p.from || !n.up || n.side != side {
                continue;
            }
            if p.to != MULTICAST && p.to != n.cfg.local {
                continue;
            }
            let (advert, _) = Advert::decode(&p.bytes, src, p.to).expect("own adverts decode");
            self.nodes[i].router.handle_advert(self.now, src, &advert);
            self.flush(i);
        }
    }

    fn master_down(&self, i: usize) -> Duration {
        let iv = self.nodes[i].cfg.advert_interval;
        iv * 3 + iv * (256 - u32::from(self.nodes[i].cfg.priority)) / 256
    }

    /// When the holder set last became exactly `[i]`, after `since`.
    fn took_over(&self, i: usize, since: Instant) -> Option<Instant> {
        self.changes
            .iter()
            .filter(|(t, h)| *t >= since && h.contains(&i))
            .map(|(t, _)| *t)
            .next()
    }
}

/// `n` distinct priorities from 1..=254.
fn priorities(rng: &mut SmallRng, n: usize) -> Vec<u8> {
    let mut all: Vec<u8> = (1..=254).collect();
    all.shuffle(rng);
    all.truncate(n);
    all
}

fn highest(net: &Net, among: impl Iterator<Item = usize>) -> usize {
    among
        .max_by_key(|&i| net.nodes[i].cfg.priority)
        .expect("a node")
}

fn settled_network(seed: u64, n: usize, interval: Duration) -> Net {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let prios = priorities(&mut rng, n);
    let cfgs = (0..n).map(|i| config(i, prios[i], interval)).collect();
    let mut net = Net::new(seed, cfgs);
    // Nodes boot at random moments over three intervals.
    let mut order: Vec<(f64, usize)> = (0..n)
        .map(|i| (rng.gen_range(0.0..3.0) * interval.as_secs_f64(), i))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (t, i) in order {
        net.run_until(net.at(t));
        net.start(i);
    }
    net.run_until(net.at(20.0 * interval.as_secs_f64()));
    net
}

#[test]
fn one_master_and_it_is_the_highest_priority() {
    for seed in 0..300 {
        let n = 2 + (seed as usize % 6);
        let interval = [Duration::from_millis(200), Duration::from_secs(1)][seed as usize % 2];
        let net = settled_network(seed, n, interval);
        let best = highest(&net, 0..n);
        assert_eq!(net.holders(), [best], "seed {seed}");
        for (i, node) in net.nodes.iter().enumerate() {
            let want = if i == best {
                State::Master
            } else {
                State::Backup
            };
            assert_eq!(node.router.state(), want, "seed {seed} node {i}");
            assert_eq!(node.router.master(), Some(ip(best)), "seed {seed} node {i}");
        }
    }
}

#[test]
fn a_crashed_master_is_replaced_within_the_master_down_interval() {
    for seed in 0..300 {
        let n = 2 + (seed as usize % 6);
        let interval = [Duration::from_millis(200), Duration::from_secs(1)][seed as usize % 2];
        let mut net = settled_network(seed, n, interval);
        let old = highest(&net, 0..n);
        let crash_at = net.now;
        let split_before = net.split;
        net.crash(old);
        net.run_until(crash_at + interval * 10);
        let next = highest(&net, (0..n).filter(|&i| i != old));
        assert_eq!(net.holders(), [next], "seed {seed}");
        let took = net.took_over(next, crash_at).expect("took over");
        let bound = net.master_down(next) + interval + Duration::from_millis(5);
        assert!(
            took - crash_at <= bound,
            "seed {seed}: {:?} > {bound:?}",
            took - crash_at
        );
        assert_eq!(net.split, split_before, "seed {seed}: never two holders");
    }
}

#[test]
fn a_graceful_stop_hands_over_after_the_skew_time_only() {
    for seed in 0..300 {
        let n = 2 + (seed as usize % 6);
        let interval = [Duration::from_millis(200), Duration::from_secs(1)][seed as usize % 2];
        let mut net = settled_network(seed, n, interval);
        let old = highest(&net, 0..n);
        let stop_at = net.now;
        net.stop(old);
        net.run_until(stop_at + interval * 10);
        let next = highest(&net, (0..n).filter(|&i| i != old));
        assert_eq!(net.holders(), [next], "seed {seed}");
        let took = net.took_over(next, stop_at).expect("took over");
        // Skew: under one interval; plus delivery.
        let skew = interval * (256 - u32::from(net.nodes[next].cfg.priority)) / 256;
        assert!(
            took - stop_at <= skew + Duration::from_millis(5),
            "seed {seed}: {:?} > {skew:?}",
            took - stop_at
        );
        assert!(
            took - stop_at < net.master_down(next) / 3,
            "seed {seed}: faster than noticing a crash"
        );
    }
}

#[test]
fn a_returning_higher_priority_node_preempts_and_the_old_master_lets_go() {
    for seed in 0..200 {
        let n = 2 + (seed as usize % 4);
        let interval = Duration::from_millis(200);
        let mut net = settled_network(seed, n, interval);
        let best = highest(&net, 0..n);
        net.crash(best);
        net.run_until(net.now + interval * 10);
        let back_at = net.now;
        net.start(best);
        net.run_until(back_at + interval * 10);
        assert_eq!(net.holders(), [best], "seed {seed}");
        // It waits a master-down interval for adverts, then preempts.
        let took = net.took_over(best, back_at).expect("preempted");
        assert!(took - back_at <= net.master_down(best) + Duration::from_millis(5));
    }
}

#[test]
fn a_healed_partition_ends_with_one_master_and_fresh_arps() {
    for seed in 0..200 {
        let n = 2 + (seed as usize % 6);
        let interval = [Duration::from_millis(200), Duration::from_secs(1)][seed as usize % 2];
        let mut net = settled_network(seed, n, interval);
        let mut rng = SmallRng::seed_from_u64(seed);
        // Random sides, both non-empty.
        loop {
            for node in &mut net.nodes {
                node.side = rng.gen_range(0..2);
            }
            let ones = net.nodes.iter().filter(|n| n.side == 1).count();
            if ones > 0 && ones < n {
                break;
            }
        }
        let cut = net.now;
        net.run_until(cut + interval * 10);
        // Plain VRRP: each side elects its own master.
        for side in 0..2 {
            let on_side: Vec<usize> = (0..n).filter(|&i| net.nodes[i].side == side).collect();
            let best = highest(&net, on_side.iter().copied());
            let holders: Vec<usize> = net
                .holders()
                .into_iter()
                .filter(|i| on_side.contains(i))
                .collect();
            assert_eq!(holders, [best], "seed {seed} side {side}");
        }
        for node in &mut net.nodes {
            node.side = 0;
        }
        let heal = net.now;
        net.run_until(heal + interval * 10);
        let best = highest(&net, 0..n);
        assert_eq!(net.holders(), [best], "seed {seed}");
        // Two masters met: the one that stays refreshed the LAN's caches
        // within an interval of the heal.
        assert!(
            net.nodes[best]
                .garps
                .iter()
                .any(|&t| t >= heal && t <= heal + interval + Duration::from_millis(5)),
            "seed {seed}: no gratuitous ARP after the heal"
        );
    }
}

#[test]
fn with_quorum_the_minority_side_never_holds_the_vip() {
    // Gossip notices the partition after `detect`; until then both sides
    // may hold (VRRP alone); after it only the majority side does.
    let detect = Duration::from_secs(2);
    for seed in 0..200 {
        let n = 3 + (seed as usize % 5);
        let interval = Duration::from_secs(1);
        let mut net = settled_network(seed, n, interval);
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut rng);
        let minority: Vec<usize> = idx[..(n - 1) / 2].to_vec();
        for &i in &minority {
            net.nodes[i].side = 1;
        }
        let cut = net.now;
        net.run_until(cut + detect);
        let split_before = net.split;
        for i in 0..n {
            let alive = net
                .nodes
                .iter()
                .filter(|m| m.side == net.nodes[i].side)
                .count();
            let reason = health::fault(Standing { alive, known: n }, TieBreaker::None, &[]);
            assert_eq!(reason.is_some(), minority.contains(&i), "seed {seed}");
            net.set_fault(i, reason);
        }
        net.run_until(cut + interval * 20);
        assert_eq!(
            net.split, split_before,
            "seed {seed}: two holders after detection"
        );
        let majority_best = highest(&net, (0..n).filter(|i| !minority.contains(i)));
        assert_eq!(net.holders(), [majority_best], "seed {seed}");
        for &i in &minority {
            assert_eq!(net.nodes[i].router.state(), State::Fault);
        }
        // Heal: the minority's faults clear; still one master.
        for node in &mut net.nodes {
            node.side = 0;
        }
        for i in 0..n {
            net.set_fault(i, None);
        }
        net.run_until(net.now + interval * 10);
        assert_eq!(net.holders(), [highest(&net, 0..n)], "seed {seed}");
    }
}

#[test]
fn loss_causes_short_splits_only_and_settles_to_one_master() {
    let mut figures = BTreeMap::new();
    for seed in 0..40 {
        let n = 3;
        let interval = Duration::from_millis(200);
        let mut net = settled_network(seed, n, interval);
        let lossy_from = net.now;
        net.loss = 20;
        let lossy_for = Duration::from_secs(600);
        net.run_until(lossy_from + lossy_for);
        let ratio = net.split.as_secs_f64() / lossy_for.as_secs_f64();
        // 20 % loss: three adverts in a row lost to one backup now and
        // then (0.8 %); each such split lasts about one interval.
        assert!(ratio < 0.02, "seed {seed}: split {ratio:.4} of the time");
        net.loss = 0;
        net.run_until(net.now + interval * 10);
        assert_eq!(net.holders(), [highest(&net, 0..n)], "seed {seed}");
        figures.insert(seed, ratio);
    }
    let worst = figures.values().copied().fold(0.0, f64::max);
    println!("20% loss, 3 routers, 200 ms adverts: worst split ratio {worst:.4}");
}

#[test]
fn two_hundred_routers_on_one_lan() {
    let n = 200;
    let interval = Duration::from_millis(200);
    let mut net = settled_network(7, n, interval);
    let best = highest(&net, 0..n);
    assert_eq!(net.holders(), [best]);
    let t = net.now;
    let split_before = net.split;
    net.crash(best);
    net.run_until(t + interval * 10);
    let next = highest(&net, (0..n).filter(|&i| i != best));
    assert_eq!(net.holders(), [next]);
    // With 200 priorities close together skews differ by less than a
    // packet's delivery time: the next in line may take over before the
    // new master's first advert reaches it, for that delivery time only.
    assert!(net.split - split_before < Duration::from_millis(5));
    for (i, node) in net.nodes.iter().enumerate() {
        if node.up {
            assert_eq!(node.router.master(), Some(ip(next)), "node {i}");
        }
    }
}

#[test]
fn misconfigured_intervals_never_give_two_holders() {
    for seed in 0..100 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let prios = priorities(&mut rng, 2);
        let cfgs = vec![
            config(0, prios[0], Duration::from_millis(200)),
            config(1, prios[1], Duration::from_millis(1000)),
        ];
        let mut net = Net::new(seed, cfgs);
        net.start(0);
        net.run_until(net.at(rng.gen_range(0.0..3.0)));
        net.start(1);
        let settle = net.now + Duration::from_secs(10);
        net.run_until(settle);
        let split_then = net.split;
        net.run_until(settle + Duration::from_secs(60));
        assert_eq!(net.split, split_then, "seed {seed}: two holders");
        assert_eq!(net.holders(), [highest(&net, 0..2)], "seed {seed}");
    }
}
