//! A seeded discrete-event simulation of many gossip cores in virtual time.
//! Packets go through the real codec (and encryption when a keyring is set);
//! links can lose, delay and be cut; streams (push/pull, TCP pings) are
//! delivered as reliable exchanges unless the link is cut.

#![allow(dead_code)]

use nuvol_gossip::{Config, Event, Gossip, MemberEventKind, MemberStatus, Output, Profile};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)),
        7946,
    )
}

fn index_of(a: SocketAddr) -> Option<usize> {
    match a.ip() {
        IpAddr::V4(v) => {
            let o = v.octets();
            Some(((o[1] as usize) << 16) | ((o[2] as usize) << 8) | o[3] as usize)
        }
        _ => None,
    }
}

enum Ev {
    Packet {
        to: usize,
        from: SocketAddr,
        data: Vec<u8>,
    },
    Timer {
        node: usize,
    },
    PushPullReply {
        node: usize,
        token: u64,
        reply: Option<Vec<u8>>,
    },
    TcpPingResult {
        node: usize,
        seq: u32,
        contacted: bool,
    },
    Custom(usize),
}

pub struct Sim {
    pub nodes: Vec<Gossip>,
    pub down: Vec<bool>,
    pub now: Duration,
    queue: BinaryHeap<Reverse<(Duration, u64, usize)>>,
    events: HashMap<usize, Ev>,
    seq: u64,
    next_ev: usize,
    rng: SmallRng,
    pub loss: f64,
    pub latency: Duration,
    pub jitter: Duration,
    /// Partition group of each node; nodes in different groups can't talk.
    pub group: Vec<u8>,
    /// Member events seen by each node: (time, observer, kind, subject).
    pub member_log: Vec<(Duration, usize, MemberEventKind, String)>,
    pub user_events: Vec<(usize, String)>,
    pub packets_sent: u64,
    pub packets_lost: u64,
    /// Deliver every packet twice, the copy later (a replay).
    pub replay: bool,
}

impl Sim {
    pub fn new(n: usize, profile: Profile, seed: u64) -> Sim {
        Self::with_config(n, seed, |i| Config::new(format!("node{i}"), profile))
    }

    pub fn with_config(n: usize, seed: u64, cfg: impl Fn(usize) -> Config) -> Sim {
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let g = Gossip::new(
                cfg(i),
                addr_of(i),
                BTreeMap::new(),
                None,
                seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                Duration::ZERO,
            )
            .expect("valid config");
            nodes.push(g);
        }
        let mut sim = Sim {
            down: vec![false; n],
            group: vec![0; n],
            nodes,
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            next_ev: 0,
            rng: SmallRng::seed_from_u64(seed),
            loss: 0.0,
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(2),
            member_log: Vec::new(),
            user_events: Vec::new(),
            packets_sent: 0,
            packets_lost: 0,
            replay: false,
        };
        for i in 0..n {
            sim.schedule_timer(i);
        }
        sim
    }

    fn push(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        let id = self.next_ev;
        self.next_ev += 1;
        self.events.insert(id, ev);
        self.queue.push(Reverse((at, self.seq, id)));
    }

    fn schedule_timer(&mut self, node: usize) {
        let t = self.nodes[node].poll_timeout().max(self.now);
        self.push(t, Ev::Timer { node });
    }

    fn link_ok(&self, a: usize, b: usize) -> bool {
        !self.down[a] && !self.down[b] && self.group[a] == self.group[b]
    }

    fn delay(&mut self) -> Duration {
        let j = self.jitter.as_micros() as u64;
        self.latency + Duration::from_micros(if j > 0 { self.rng.gen_range(0..j) } else { 0 })
    }

    /// Node `i` joins through node `j` (a push/pull join, then the join intent).
    pub fn join(&mut self, i: usize, j: usize) -> bool {
        let (token, data) = self.nodes[i].start_push_pull(addr_of(j), true, true);
        let reply = self.stream_to(i, j, &data);
        let ok = reply.is_some();
        let msg = reply.and_then(|r| open(&mut self.nodes[i], &r));
        let now = self.now;
        let r = self.nodes[i].handle_push_pull_reply(
            token,
            msg.ok_or(nuvol_gossip::GossipError::Transport("unreachable".into())),
            now,
        );
        if ok && r.is_ok() {
            self.nodes[i].after_join();
        }
        self.after_input(i);
        self.after_input(j);
        ok && r.is_ok()
    }

    /// Deliver a stream from i to j synchronously, returning j's reply bytes.
    fn stream_to(&mut self, i: usize, j: usize, data: &[u8]) -> Option<Vec<u8>> {
        if !self.link_ok(i, j) {
            return None;
        }
        let (frame, _) = nuvol_wire::memberlist::parse_stream(data).ok()??;
        let now = self.now;
        let msg = self.nodes[j].open_stream(frame).ok()?;
        let reply = self.nodes[j].handle_stream(addr_of(i), msg, now);
        self.after_input(j);
        reply
    }

    fn after_input(&mut self, i: usize) {
        let outs = self.nodes[i].drain_outputs();
        for o in outs {
            self.route(i, o);
        }
        self.schedule_timer(i);
    }

    fn route(&mut self, i: usize, o: Output) {
        match o {
            Output::Packet { to, data } => {
                self.packets_sent += 1;
                let Some(j) = index_of(to) else { return };
                if j >= self.nodes.len() || !self.link_ok(i, j) {
                    self.packets_lost += 1;
                    return;
                }
                if self.loss > 0.0 && self.rng.gen_bool(self.loss) {
                    self.packets_lost += 1;
                    return;
                }
                let at = self.now + self.delay();
                if self.replay {
                    let later = at + Duration::from_millis(500);
                    self.push(
                        later,
                        Ev::Packet {
                            to: j,
                            from: addr_of(i),
                            data: data.clone(),
                        },
                    );
                }
                self.push(
                    at,
                    Ev::Packet {
                        to: j,
                        from: addr_of(i),
                        data,
                    },
                );
            }
            Output::PushPull { token, to, data } => {
                let reply = index_of(to).and_then(|j| {
                    if j < self.nodes.len() {
                        self.stream_to(i, j, &data)
                    } else {
                        None
                    }
                });
                let at = self.now + self.delay() * 2;
                self.push(
                    at,
                    Ev::PushPullReply {
                        node: i,
                        token,
                        reply,
                    },
                );
            }
            Output::TcpPing { seq, to, .. } => {
                let contacted =
                    index_of(to).is_some_and(|j| j < self.nodes.len() && self.link_ok(i, j));
                let at = self.now + self.delay() * 2;
                self.push(
                    at,
                    Ev::TcpPingResult {
                        node: i,
                        seq,
                        contacted,
                    },
                );
            }
            Output::Event(Event::Member { kind, members }) => {
                for m in members {
                    self.member_log.push((self.now, i, kind, m.name));
                }
            }
            Output::Event(Event::User { name, .. }) => self.user_events.push((i, name)),
            _ => {}
        }
    }

    /// Run until virtual time `until`.
    pub fn run_until(&mut self, until: Duration) {
        while let Some(Reverse((at, _, id))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            let Some(ev) = self.events.remove(&id) else {
                continue;
            };
            self.now = self.now.max(at);
            let now = self.now;
            match ev {
                Ev::Timer { node } => {
                    if self.nodes[node].poll_timeout() > now {
                        continue; // stale timer; a fresh one is queued
                    }
                    if self.down[node] {
                        continue;
                    }
                    self.nodes[node].handle_timeout(now);
                    self.after_input(node);
                }
                Ev::Packet { to, from, data } => {
                    if self.down[to] {
                        continue;
                    }
                    self.nodes[to].handle_packet(from, &data, now);
                    self.after_input(to);
                }
                Ev::PushPullReply { node, token, reply } => {
                    if self.down[node] {
                        continue;
                    }
                    let msg = reply.and_then(|r| open(&mut self.nodes[node], &r));
                    let _ = self.nodes[node].handle_push_pull_reply(
                        token,
                        msg.ok_or(nuvol_gossip::GossipError::Transport("unreachable".into())),
                        now,
                    );
                    self.after_input(node);
                }
                Ev::TcpPingResult {
                    node,
                    seq,
                    contacted,
                } => {
                    self.nodes[node].handle_tcp_ping_result(seq, contacted, now);
                    self.after_input(node);
                }
                Ev::Custom(_) => {}
            }
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Status of `subject` as seen by `observer`.
    pub fn status(&self, observer: usize, subject: usize) -> Option<MemberStatus> {
        let name = format!("node{subject}");
        self.nodes[observer]
            .members()
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| m.status)
    }

    /// True when every up node sees exactly the up nodes as alive and the
    /// down ones as not alive.
    pub fn converged(&self) -> bool {
        let up: Vec<usize> = (0..self.nodes.len()).filter(|i| !self.down[*i]).collect();
        up.iter().all(|&o| {
            let members = self.nodes[o].members();
            let alive = members
                .iter()
                .filter(|m| m.status == MemberStatus::Alive)
                .count();
            alive == up.len()
                && members.iter().all(|m| {
                    let idx: usize = m.name[4..].parse().unwrap_or(usize::MAX);
                    let up = !self.down.get(idx).copied().unwrap_or(true);
                    (m.status == MemberStatus::Alive) == up
                })
        })
    }

    /// Run in steps until `pred` holds or `limit` passes; returns the time taken.
    pub fn run_until_pred(
        &mut self,
        limit: Duration,
        step: Duration,
        pred: impl Fn(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now - start < limit {
            if pred(self) {
                return Some(self.now - start);
            }
            self.run_for(step);
        }
        pred(self).then(|| self.now - start)
    }

    pub fn failures_seen(&self) -> usize {
        self.member_log
            .iter()
            .filter(|(_, _, k, _)| *k == MemberEventKind::Failed)
            .count()
    }
}

fn open(g: &mut Gossip, bytes: &[u8]) -> Option<nuvol_wire::memberlist::StreamMsg> {
    let (frame, _) = nuvol_wire::memberlist::parse_stream(bytes).ok()??;
    g.open_stream(frame).ok()
}
