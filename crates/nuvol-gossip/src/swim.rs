//! SWIM with Lifeguard, as memberlist implements it: probes, indirect probes,
//! TCP fallback probes, suspicion with confirmations, refutation, and the
//! alive/suspect/dead state transitions.

use crate::core::{AckHandler, Gossip, NodeState, Probe, State, Suspicion};
use nuvol_wire::memberlist::{self as ml, Message};
use std::net::SocketAddr;
use std::time::Duration;

impl Gossip {
    pub(crate) fn next_seq(&mut self) -> u32 {
        self.seq_no = self.seq_no.wrapping_add(1);
        self.seq_no
    }

    fn next_incarnation(&mut self) -> u32 {
        self.incarnation = self.incarnation.wrapping_add(1);
        self.incarnation
    }

    fn skip_incarnation(&mut self, offset: u32) -> u32 {
        self.incarnation = self.incarnation.wrapping_add(offset);
        self.incarnation
    }

    fn awareness_delta(&mut self, delta: i32) {
        let max = self.cfg.awareness_max_multiplier.saturating_sub(1) as i64;
        let v = (self.awareness as i64 + delta as i64).clamp(0, max);
        self.awareness = v as u32;
    }

    fn scale_timeout(&self, t: Duration) -> Duration {
        t * (self.awareness + 1)
    }

    /// memberlist's setAlive / UpdateNode: (re)announce ourselves with `meta`
    /// at a new incarnation.
    pub(crate) fn set_alive(&mut self, meta: Vec<u8>) {
        let inc = self.next_incarnation();
        let a = ml::Alive {
            incarnation: inc,
            node: self.cfg.node_name.clone(),
            addr: self.advertise.ip(),
            port: self.advertise.port(),
            meta,
            vsn: self.cfg.vsn().to_vec(),
        };
        self.alive_node(&a, true);
    }

    pub(crate) fn alive_node(&mut self, a: &ml::Alive, bootstrap: bool) {
        let is_local = a.node == self.cfg.node_name;
        if self.ml_left && is_local {
            return;
        }
        if a.node.is_empty() {
            return;
        }
        if a.vsn.len() >= 3 {
            let (pmin, pmax) = (a.vsn[0], a.vsn[1]);
            if pmin == 0 || pmax == 0 || pmin > pmax {
                tracing::warn!(node = %a.node, "ignoring alive message: bad protocol versions");
                return;
            }
        }
        if a.vsn.len() < 6 {
            // Serf installs an alive delegate, which requires the versions.
            tracing::warn!(node = %a.node, "ignoring alive message: versions missing");
            return;
        }
        let addr = SocketAddr::new(a.addr, a.port);
        let now = self.now;
        let mut updates_node = false;
        if !self.node_map.contains_key(&a.node) {
            let mut vsn = [0u8; 6];
            vsn.copy_from_slice(&a.vsn[..6]);
            self.node_map.insert(
                a.node.clone(),
                NodeState {
                    name: a.node.clone(),
                    addr,
                    meta: a.meta.clone(),
                    incarnation: 0,
                    state: State::Dead,
                    state_change: now,
                    vsn,
                },
            );
            // Insert at a random position so probing order is random.
            use rand::Rng;
            let n = self.nodes.len();
            let off = if n == 0 { 0 } else { self.rng.gen_range(0..=n) };
            self.nodes.push(a.node.clone());
            self.nodes.swap(off, n);
        } else if let Some(state) = self.node_map.get(&a.node) {
            if state.addr != addr {
                // memberlist's DeadNodeReclaimTime is 0 in Serf: only left nodes may move.
                if state.state == State::Left {
                    tracing::info!(node = %a.node, old = %state.addr, new = %addr, "updating address of left node");
                    updates_node = true;
                } else {
                    tracing::error!(node = %a.node, mine = %state.addr, theirs = %addr,
                        "conflicting address for node");
                    let existing = state.clone();
                    self.serf_node_conflict(&existing, addr);
                    return;
                }
            }
        }
        let Some(state) = self.node_map.get(&a.node) else {
            return;
        };
        if a.incarnation <= state.incarnation && !is_local && !updates_node {
            return;
        }
        if a.incarnation < state.incarnation && is_local {
            return;
        }
        self.suspicions.remove(&a.node);
        let old_state = state.state;
        let old_meta = state.meta.clone();
        if !bootstrap && is_local {
            if a.incarnation == state.incarnation
                && a.meta == state.meta
                && a.vsn[..] == state.vsn[..]
            {
                return;
            }
            let inc = state.incarnation.max(a.incarnation);
            self.refute(inc.max(a.incarnation));
            tracing::warn!("refuting an alive message for ourselves");
        } else {
            self.broadcast_about(&a.node, Message::Alive(a.clone()), None);
            if let Some(state) = self.node_map.get_mut(&a.node) {
                state.vsn.copy_from_slice(&a.vsn[..6]);
                state.incarnation = a.incarnation;
                state.meta = a.meta.clone();
                state.addr = addr;
                if state.state != State::Alive {
                    state.state = State::Alive;
                    state.state_change = now;
                }
            }
            if is_local {
                self.incarnation = self.incarnation.max(a.incarnation);
            }
        }
        if old_state.dead_or_left() {
            self.serf_node_join(&a.node);
        } else if old_meta != a.meta {
            self.serf_node_update(&a.node);
        }
    }

    fn refute(&mut self, accused: u32) {
        let mut inc = self.next_incarnation();
        if accused >= inc {
            inc = self.skip_incarnation(accused - inc + 1);
        }
        self.awareness_delta(1);
        let me = self.cfg.node_name.clone();
        let Some(state) = self.node_map.get_mut(&me) else {
            return;
        };
        state.incarnation = inc;
        let a = ml::Alive {
            incarnation: inc,
            node: me.clone(),
            addr: state.addr.ip(),
            port: state.addr.port(),
            meta: state.meta.clone(),
            vsn: state.vsn.to_vec(),
        };
        self.broadcast_about(&me, Message::Alive(a), None);
    }

    pub(crate) fn suspect_node(&mut self, s: &ml::Suspect) {
        let Some(state) = self.node_map.get(&s.node) else {
            return;
        };
        if s.incarnation < state.incarnation {
            return;
        }
        if let Some(susp) = self.suspicions.get_mut(&s.node) {
            if susp.confirm(&s.from) {
                self.broadcast_about(&s.node, Message::Suspect(s.clone()), None);
            }
            return;
        }
        if state.state != State::Alive {
            return;
        }
        if s.node == self.cfg.node_name {
            self.stats.refutations += 1;
            self.refute(s.incarnation);
            tracing::warn!(from = %s.from, "refuting a suspect message");
            return;
        }
        self.stats.suspicions += 1;
        self.broadcast_about(&s.node, Message::Suspect(s.clone()), None);
        self.set_state(&s.node, s.incarnation, State::Suspect);
        let now = self.now;
        let n = self.est_num_nodes();
        let mut k = self.cfg.suspicion_mult.saturating_sub(2);
        if n < 2 || n - 2 < k {
            k = 0;
        }
        let min =
            crate::config::suspicion_timeout(self.cfg.suspicion_mult, n, self.cfg.probe_interval);
        let max = min * self.cfg.suspicion_max_timeout_mult;
        self.suspicions
            .insert(s.node.clone(), Suspicion::new(&s.from, k, min, max, now));
    }

    pub(crate) fn suspicion_expired(&mut self, name: &str) {
        let Some(susp) = self.suspicions.remove(name) else {
            return;
        };
        let Some(state) = self.node_map.get(name) else {
            return;
        };
        if state.state == State::Suspect && state.state_change == susp.change {
            tracing::info!(node = %name, confirmations = susp.n, "marking node as failed, suspect timeout reached");
            let d = ml::Dead {
                incarnation: state.incarnation,
                node: name.to_owned(),
                from: self.cfg.node_name.clone(),
            };
            self.dead_node(&d);
        }
    }

    pub(crate) fn dead_node(&mut self, d: &ml::Dead) {
        self.dead_node_notify(d, None)
    }

    pub(crate) fn dead_node_notify(&mut self, d: &ml::Dead, notify: Option<u64>) {
        let Some(state) = self.node_map.get(&d.node) else {
            return;
        };
        if d.incarnation < state.incarnation {
            return;
        }
        self.suspicions.remove(&d.node);
        if state.state.dead_or_left() {
            return;
        }
        if d.node == self.cfg.node_name && !self.ml_left {
            self.refute(d.incarnation);
            tracing::warn!(from = %d.from, "refuting a dead message");
            return;
        }
        self.broadcast_about(&d.node, Message::Dead(d.clone()), notify);
        let new = if d.node == d.from {
            State::Left
        } else {
            State::Dead
        };
        self.set_state(&d.node, d.incarnation, new);
        self.serf_node_leave(&d.node);
    }

    /// Queue a memberlist message about `node`, replacing older ones about it.
    fn broadcast_about(&mut self, node: &str, msg: Message, notify: Option<u64>) {
        self.ml_broadcasts
            .push(Some(node.to_owned()), msg.encode(), notify);
    }

    /// Record a state change of `node` at the current time.
    fn set_state(&mut self, node: &str, incarnation: u32, state: State) {
        let now = self.now;
        if let Some(n) = self.node_map.get_mut(node) {
            n.incarnation = incarnation;
            n.state = state;
            n.state_change = now;
        }
    }

    /// memberlist's Leave: broadcast our own death (as "left").
    pub(crate) fn ml_leave(&mut self, notify: u64) {
        self.ml_left = true;
        let me = self.cfg.node_name.clone();
        let inc = self.node_map.get(&me).map(|s| s.incarnation).unwrap_or(0);
        let d = ml::Dead {
            incarnation: inc,
            node: me.clone(),
            from: me,
        };
        self.dead_node_notify(&d, Some(notify));
    }

    // ------------------------------------------------------------ probing

    /// memberlist's probe(): pick the next node round-robin and probe it.
    pub(crate) fn probe_next(&mut self) {
        let mut checked = 0;
        loop {
            if checked >= self.nodes.len() {
                return;
            }
            if self.probe_index >= self.nodes.len() {
                self.reset_nodes();
                self.probe_index = 0;
                checked += 1;
                continue;
            }
            let name = self.nodes[self.probe_index].clone();
            self.probe_index += 1;
            let skip = name == self.cfg.node_name
                || self
                    .node_map
                    .get(&name)
                    .is_none_or(|n| n.state.dead_or_left());
            if skip {
                checked += 1;
                continue;
            }
            self.probe_node(&name);
            return;
        }
    }

    /// Drop nodes dead for longer than gossip_to_the_dead_time and shuffle.
    fn reset_nodes(&mut self) {
        use rand::seq::SliceRandom;
        let now = self.now;
        let dead_time = self.cfg.gossip_to_the_dead_time;
        let me = self.cfg.node_name.clone();
        let node_map = &mut self.node_map;
        self.nodes.retain(|n| {
            let gone = node_map.get(n).is_none_or(|s| {
                s.name != me
                    && s.state.dead_or_left()
                    && now.saturating_sub(s.state_change) > dead_time
            });
            if gone {
                node_map.remove(n);
            }
            !gone
        });
        self.nodes.shuffle(&mut self.rng);
    }

    fn probe_node(&mut self, name: &str) {
        let Some(node) = self.node_map.get(name).cloned() else {
            return;
        };
        self.stats.probes += 1;
        let interval = self.scale_timeout(self.cfg.probe_interval);
        let seq = self.next_seq();
        let ping = ml::Ping {
            seq_no: seq,
            node: node.name.clone(),
            source_addr: Some(self.advertise.ip()),
            source_port: self.advertise.port(),
            source_node: self.cfg.node_name.clone(),
        };
        let now = self.now;
        self.ack_handlers.insert(seq, AckHandler::Probe);
        self.probe = Some(Probe {
            seq,
            target: node.name.clone(),
            sent: now,
            indirect_at: Some(now + self.cfg.probe_timeout),
            deadline: now + interval,
            expected_nacks: 0,
            nacks: 0,
            tcp_contacted: false,
        });
        if node.state == State::Alive {
            self.send_msg(node.addr, Some(node.pmax()), &Message::Ping(ping));
        } else {
            let s = ml::Suspect {
                incarnation: node.incarnation,
                node: node.name.clone(),
                from: self.cfg.node_name.clone(),
            };
            let compound =
                ml::make_compound(&[Message::Ping(ping).encode(), Message::Suspect(s).encode()]);
            self.send_raw(node.addr, Some(node.pmax()), compound);
        }
    }

    /// Advance the current probe: go indirect after the probe timeout, give
    /// up at the deadline.
    pub(crate) fn probe_timers(&mut self, now: Duration) {
        let Some(p) = &self.probe else {
            return;
        };
        if p.indirect_at.is_some_and(|t| t <= now) {
            let seq = p.seq;
            let target = p.target.clone();
            let deadline = p.deadline;
            if let Some(p) = self.probe.as_mut() {
                p.indirect_at = None;
            }
            tracing::debug!(node = %target, "failed ping (timeout reached)");
            self.go_indirect(seq, &target, deadline);
        }
        let Some(p) = &self.probe else {
            return;
        };
        if p.deadline <= now {
            let Some(p) = self.probe.take() else {
                return;
            };
            self.ack_handlers.remove(&p.seq);
            if p.tcp_contacted {
                tracing::warn!(node = %p.target,
                    "was able to connect over TCP but UDP probes failed, network may be misconfigured");
                self.awareness_delta(-1);
                return;
            }
            let delta = if p.expected_nacks > 0 {
                p.expected_nacks.saturating_sub(p.nacks) as i32
            } else {
                1
            };
            self.awareness_delta(delta);
            self.stats.probe_failures += 1;
            let Some(node) = self.node_map.get(&p.target) else {
                return;
            };
            tracing::info!(node = %p.target, "suspect has failed, no acks received");
            let s = ml::Suspect {
                incarnation: node.incarnation,
                node: p.target.clone(),
                from: self.cfg.node_name.clone(),
            };
            self.suspect_node(&s);
        }
    }

    fn go_indirect(&mut self, seq: u32, target: &str, deadline: Duration) {
        use rand::seq::SliceRandom;
        let Some(node) = self.node_map.get(target).cloned() else {
            return;
        };
        let me = self.cfg.node_name.clone();
        let mut peers: Vec<(SocketAddr, u8)> = self
            .node_map
            .values()
            .filter(|n| n.name != me && n.name != target && n.state == State::Alive)
            .map(|n| (n.addr, n.pmax()))
            .collect();
        peers.sort_unstable();
        peers.shuffle(&mut self.rng);
        peers.truncate(self.cfg.indirect_checks);
        let mut expected = 0;
        for (addr, pmax) in peers {
            let nack = pmax >= 4;
            expected += nack as usize;
            let ind = ml::IndirectPing {
                seq_no: seq,
                target: node.addr.ip(),
                port: node.addr.port(),
                node: node.name.clone(),
                nack,
                source_addr: Some(self.advertise.ip()),
                source_port: self.advertise.port(),
                source_node: me.clone(),
            };
            self.send_msg(addr, Some(pmax), &Message::IndirectPing(ind));
        }
        if let Some(p) = self.probe.as_mut() {
            p.expected_nacks = expected;
        }
        if !self.cfg.disable_tcp_pings && node.pmax() >= 3 {
            let ping = ml::Ping {
                seq_no: seq,
                node: node.name.clone(),
                source_addr: Some(self.advertise.ip()),
                source_port: self.advertise.port(),
                source_node: me,
            };
            let data = self.seal_stream(Message::Ping(ping).encode());
            self.out.push(crate::types::Output::TcpPing {
                seq,
                to: node.addr,
                data,
                deadline,
            });
        }
    }

    /// Result of a TCP fallback probe requested with `Output::TcpPing`.
    pub fn handle_tcp_ping_result(&mut self, seq: u32, contacted: bool, now: Duration) {
        self.now = now.max(self.now);
        if let Some(p) = self.probe.as_mut() {
            if p.seq == seq && contacted {
                p.tcp_contacted = true;
            }
        }
    }

    pub(crate) fn handle_ping(&mut self, from: SocketAddr, p: ml::Ping) {
        if !p.node.is_empty() && p.node != self.cfg.node_name {
            tracing::warn!(%from, node = %p.node, "got ping for unexpected node");
            return;
        }
        let payload = self.ack_payload();
        let ack = Message::Ack(ml::Ack {
            seq_no: p.seq_no,
            payload,
        });
        let to = match p.source_addr {
            Some(ip) if p.source_port != 0 => SocketAddr::new(ip, p.source_port),
            _ => from,
        };
        let pmax = if p.source_node.is_empty() {
            None
        } else {
            self.pmax_of(&p.source_node)
        };
        self.send_msg(to, pmax, &ack);
    }

    pub(crate) fn handle_indirect_ping(&mut self, from: SocketAddr, ind: ml::IndirectPing) {
        let local_seq = self.next_seq();
        let requester = match ind.source_addr {
            Some(ip) if ind.source_port != 0 => SocketAddr::new(ip, ind.source_port),
            _ => from,
        };
        let requester_pmax = self.pmax_of(&ind.source_node).unwrap_or(0);
        let ping = ml::Ping {
            seq_no: local_seq,
            node: ind.node.clone(),
            source_addr: Some(self.advertise.ip()),
            source_port: self.advertise.port(),
            source_node: self.cfg.node_name.clone(),
        };
        self.ack_handlers.insert(
            local_seq,
            AckHandler::Relay {
                requester,
                requester_pmax,
                seq: ind.seq_no,
                nack: ind.nack,
                deadline: self.now + self.cfg.probe_timeout,
            },
        );
        let target = SocketAddr::new(ind.target, ind.port);
        let pmax = self.pmax_of(&ind.node);
        self.send_msg(target, pmax, &Message::Ping(ping));
    }

    pub(crate) fn handle_ack(&mut self, ack: ml::Ack) {
        match self.ack_handlers.remove(&ack.seq_no) {
            Some(AckHandler::Probe) => {
                let Some(p) = self.probe.take() else {
                    return;
                };
                if p.seq != ack.seq_no {
                    self.probe = Some(p);
                    return;
                }
                self.awareness_delta(-1);
                let rtt = self.now.saturating_sub(p.sent);
                self.stats.record_rtt(rtt);
                // Only a direct ack carries the payload; relayed acks don't.
                if !ack.payload.is_empty() {
                    self.ping_complete(&p.target, rtt, &ack.payload);
                }
            }
            Some(AckHandler::Relay {
                requester,
                requester_pmax,
                seq,
                ..
            }) => {
                let m = Message::Ack(ml::Ack {
                    seq_no: seq,
                    payload: Vec::new(),
                });
                self.send_msg(requester, Some(requester_pmax), &m);
            }
            None => {}
        }
    }

    pub(crate) fn handle_nack(&mut self, seq: u32) {
        if let Some(p) = self.probe.as_mut() {
            if p.seq == seq {
                p.nacks += 1;
            }
        }
    }
}
