//! The Serf layer: Lamport clocks, member status with join/leave intents,
//! user events, queries (including Serf's internal ones: conflict resolution
//! and key management), reaping and reconnecting, graceful leave.

use crate::broadcast::Queue;
use crate::config::Config;
use crate::core::{Gossip, GossipError, NodeState};
use crate::types::*;
use nuvol_wire::memberlist::META_MAX_SIZE;
use nuvol_wire::serf::{
    self as sw, Filter, KeyRequest, KeyResponse, MemberRecord, SerfMessage, WireCoordinate,
    QUERY_FLAG_ACK, QUERY_FLAG_NO_BROADCAST,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

/// Encode tags as member meta for the given Serf protocol.
pub fn encode_meta(protocol: u8, tags: &BTreeMap<String, String>) -> Vec<u8> {
    if protocol < 3 {
        return tags.get("role").cloned().unwrap_or_default().into_bytes();
    }
    sw::encode_tags(tags)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SerfRunState {
    Alive,
    Leaving,
    Left,
    Shutdown,
}

#[derive(Debug, Clone)]
pub(crate) struct MemberState {
    pub member: Member,
    pub status_ltime: u64,
    pub leave_time: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntentKind {
    Join,
    Leave,
}

#[derive(Debug, Clone)]
struct Intent {
    kind: IntentKind,
    ltime: u64,
    at: Duration,
}

#[derive(Debug, Clone)]
struct InboundQuery {
    ltime: u64,
    id: u32,
    addr: SocketAddr,
    source_node: String,
    deadline: Duration,
    relay_factor: u8,
    name: String,
    responded: bool,
}

#[derive(Debug, Clone)]
enum QueryKind {
    User,
    Key(KeyOpResult),
    Conflict { responses: usize, matching: usize },
}

#[derive(Debug, Clone)]
struct OutboundQuery {
    ltime: u64,
    id: u32,
    deadline: Duration,
    acks: HashSet<String>,
    responses: HashSet<String>,
    kind: QueryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeavePhase {
    /// Waiting for the serf leave intent to be broadcast.
    Intent { notify: u64, until: Duration },
    /// Waiting for memberlist's dead("left") broadcast.
    Dead { notify: u64, until: Duration },
    /// Staying up to answer probes.
    Propagate { until: Duration },
}

pub(crate) struct SerfState {
    pub state: SerfRunState,
    pub clock: u64,
    pub event_clock: u64,
    pub query_clock: u64,
    pub members: HashMap<String, MemberState>,
    pub tags: BTreeMap<String, String>,
    recent_intents: HashMap<String, Intent>,
    event_buffer: Vec<Option<sw::UserEvents>>,
    event_min_time: u64,
    query_buffer: Vec<Option<(u64, Vec<u32>)>>,
    query_min_time: u64,
    pub broadcasts: Queue,
    pub event_broadcasts: Queue,
    pub query_broadcasts: Queue,
    pub event_join_ignore: bool,
    inbound: HashMap<u64, InboundQuery>,
    outbound: HashMap<u64, OutboundQuery>,
    next_handle: u64,
    next_reap: Duration,
    next_reconnect: Duration,
    leave: Option<LeavePhase>,
    /// Pending prunes of leaving members: (name, when).
    prunes: Vec<(String, Duration)>,
    conflict_query_running: bool,
}

impl SerfState {
    pub fn new(cfg: &Config, tags: BTreeMap<String, String>, now: Duration) -> Self {
        SerfState {
            state: SerfRunState::Alive,
            // Serf starts its clocks at 1 so a default LTime of 0 is stale.
            clock: 1,
            event_clock: 1,
            query_clock: 1,
            members: HashMap::new(),
            tags,
            recent_intents: HashMap::new(),
            event_buffer: vec![None; cfg.event_buffer.max(1)],
            event_min_time: 0,
            query_buffer: vec![None; cfg.query_buffer.max(1)],
            query_min_time: 0,
            broadcasts: Queue::default(),
            event_broadcasts: Queue::default(),
            query_broadcasts: Queue::default(),
            event_join_ignore: false,
            inbound: HashMap::new(),
            outbound: HashMap::new(),
            next_handle: 0,
            next_reap: now + cfg.reap_interval,
            next_reconnect: now + cfg.reconnect_interval,
            leave: None,
            prunes: Vec::new(),
            conflict_query_running: false,
        }
    }
}

fn witness(clock: &mut u64, v: u64) {
    if v >= *clock {
        *clock = v + 1;
    }
}

impl Gossip {
    // ------------------------------------------------------------ queries about members

    /// All members Serf knows, including failed and left ones.
    pub fn members(&self) -> Vec<Member> {
        let mut v: Vec<Member> = self
            .serf
            .members
            .values()
            .map(|m| m.member.clone())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn local_member(&self) -> Option<Member> {
        self.serf
            .members
            .get(&self.cfg.node_name)
            .map(|m| m.member.clone())
    }

    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.serf.tags
    }

    pub fn clocks(&self) -> (u64, u64, u64) {
        (
            self.serf.clock,
            self.serf.event_clock,
            self.serf.query_clock,
        )
    }

    /// Restore Lamport clocks from a snapshot.
    pub fn restore_clocks(&mut self, clock: u64, event_clock: u64, query_clock: u64) {
        witness(&mut self.serf.clock, clock);
        witness(&mut self.serf.event_clock, event_clock);
        witness(&mut self.serf.query_clock, query_clock);
        // Serf ignores events older than what it had seen before a restart.
        self.serf.event_min_time = self.serf.event_min_time.max(event_clock.saturating_add(1));
        self.serf.query_min_time = self.serf.query_min_time.max(query_clock.saturating_add(1));
    }

    pub fn is_alive(&self) -> bool {
        self.serf.state == SerfRunState::Alive
    }

    pub fn state_str(&self) -> &'static str {
        match self.serf.state {
            SerfRunState::Alive => "alive",
            SerfRunState::Leaving => "leaving",
            SerfRunState::Left => "left",
            SerfRunState::Shutdown => "shutdown",
        }
    }

    /// Queue depths (intent, event, query) for stats.
    pub fn queue_depths(&self) -> (usize, usize, usize) {
        (
            self.serf.broadcasts.len(),
            self.serf.event_broadcasts.len(),
            self.serf.query_broadcasts.len(),
        )
    }

    pub fn counts(&self) -> (usize, usize, usize) {
        let failed = self
            .serf
            .members
            .values()
            .filter(|m| m.member.status == MemberStatus::Failed)
            .count();
        let left = self
            .serf
            .members
            .values()
            .filter(|m| m.member.status == MemberStatus::Left)
            .count();
        (self.serf.members.len(), failed, left)
    }

    // ------------------------------------------------------------ memberlist → serf

    fn member_from_node(&self, n: &NodeState, status: MemberStatus) -> Member {
        let tags = match sw::decode_tags(&n.meta) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(node = %n.name, error = %e, "failed to decode tags");
                BTreeMap::new()
            }
        };
        Member {
            name: n.name.clone(),
            addr: n.addr,
            tags,
            status,
            vsn: n.vsn,
        }
    }

    fn emit_member(&mut self, kind: MemberEventKind, m: Member) {
        self.stats.member_events += 1;
        self.out.push(Output::Event(Event::Member {
            kind,
            members: vec![m],
        }));
    }

    pub(crate) fn serf_node_join(&mut self, name: &str) {
        let Some(n) = self.node_map.get(name).cloned() else {
            return;
        };
        let mut m = self.member_from_node(&n, MemberStatus::Alive);
        let intent = self.serf.recent_intents.get(name).cloned();
        let ms = match self.serf.members.get_mut(name) {
            None => {
                let mut st = MemberState {
                    member: m.clone(),
                    status_ltime: 0,
                    leave_time: Duration::ZERO,
                };
                if let Some(i) = intent {
                    st.status_ltime = i.ltime;
                    if i.kind == IntentKind::Leave {
                        st.member.status = MemberStatus::Leaving;
                    }
                }
                self.serf.members.insert(name.to_owned(), st);
                self.serf.members.get(name)
            }
            Some(st) => {
                st.member.status = MemberStatus::Alive;
                st.leave_time = Duration::ZERO;
                st.member.addr = m.addr;
                st.member.tags = std::mem::take(&mut m.tags);
                st.member.vsn = m.vsn;
                Some(&*st)
            }
        };
        if let Some(ms) = ms {
            let member = ms.member.clone();
            tracing::info!(node = %member.name, addr = %member.addr, "EventMemberJoin");
            self.out.push(Output::SnapshotAlive {
                name: member.name.clone(),
                addr: member.addr,
            });
            self.emit_member(MemberEventKind::Join, member);
        }
    }

    pub(crate) fn serf_node_leave(&mut self, name: &str) {
        let now = self.now;
        let Some(ms) = self.serf.members.get_mut(name) else {
            return;
        };
        let kind = match ms.member.status {
            MemberStatus::Leaving => {
                ms.member.status = MemberStatus::Left;
                ms.leave_time = now;
                MemberEventKind::Leave
            }
            MemberStatus::Alive => {
                ms.member.status = MemberStatus::Failed;
                ms.leave_time = now;
                MemberEventKind::Failed
            }
            _ => return,
        };
        let member = ms.member.clone();
        tracing::info!(node = %member.name, "{}", if kind == MemberEventKind::Leave { "EventMemberLeave" } else { "EventMemberFailed" });
        self.out.push(Output::SnapshotNotAlive {
            name: member.name.clone(),
        });
        self.emit_member(kind, member);
    }

    pub(crate) fn serf_node_update(&mut self, name: &str) {
        let Some(n) = self.node_map.get(name).cloned() else {
            return;
        };
        let m = self.member_from_node(&n, MemberStatus::Alive);
        let Some(ms) = self.serf.members.get_mut(name) else {
            return;
        };
        ms.member.addr = m.addr;
        ms.member.tags = m.tags;
        ms.member.vsn = m.vsn;
        let member = ms.member.clone();
        tracing::info!(node = %member.name, "EventMemberUpdate");
        self.emit_member(MemberEventKind::Update, member);
    }

    pub(crate) fn serf_node_conflict(&mut self, existing: &NodeState, other: SocketAddr) {
        if existing.name != self.cfg.node_name {
            tracing::warn!(node = %existing.name, mine = %existing.addr, theirs = %other,
                "name conflict for node");
            return;
        }
        tracing::error!(theirs = %other, "node name conflicts with another node");
        if self.cfg.enable_name_conflict_resolution && !self.serf.conflict_query_running {
            self.serf.conflict_query_running = true;
            let payload = self.cfg.node_name.clone().into_bytes();
            if let Err(e) = self.start_query(
                "_serf_conflict",
                payload,
                QueryParams::default(),
                QueryKind::Conflict {
                    responses: 0,
                    matching: 0,
                },
            ) {
                tracing::error!(error = %e, "failed to start name resolution query");
            }
        }
    }

    // ------------------------------------------------------------ intents

    fn upsert_intent(&mut self, node: &str, kind: IntentKind, ltime: u64) -> bool {
        let now = self.now;
        match self.serf.recent_intents.get(node) {
            Some(i) if i.ltime >= ltime => false,
            _ => {
                self.serf.recent_intents.insert(
                    node.to_owned(),
                    Intent {
                        kind,
                        ltime,
                        at: now,
                    },
                );
                true
            }
        }
    }

    fn handle_join_intent(&mut self, j: &sw::Join) -> bool {
        witness(&mut self.serf.clock, j.ltime);
        let Some(ms) = self.serf.members.get_mut(&j.node) else {
            return self.upsert_intent(&j.node, IntentKind::Join, j.ltime);
        };
        if j.ltime <= ms.status_ltime {
            return false;
        }
        ms.status_ltime = j.ltime;
        if ms.member.status == MemberStatus::Leaving {
            ms.member.status = MemberStatus::Alive;
        }
        true
    }

    fn handle_leave_intent(&mut self, l: &sw::Leave) -> bool {
        witness(&mut self.serf.clock, l.ltime);
        let now = self.now;
        let alive_self = self.serf.state == SerfRunState::Alive;
        let Some(ms) = self.serf.members.get_mut(&l.node) else {
            return self.upsert_intent(&l.node, IntentKind::Leave, l.ltime);
        };
        if l.ltime <= ms.status_ltime {
            return false;
        }
        if l.node == self.cfg.node_name && alive_self {
            // Someone thinks we left: refute with a join intent.
            let t = self.serf.clock;
            self.broadcast_join(t);
            return false;
        }
        ms.status_ltime = l.ltime;
        match ms.member.status {
            MemberStatus::Alive => {
                ms.member.status = MemberStatus::Leaving;
                if l.prune {
                    self.schedule_prune(&l.node, true);
                }
                true
            }
            MemberStatus::Failed => {
                ms.member.status = MemberStatus::Left;
                ms.leave_time = now;
                let member = ms.member.clone();
                tracing::info!(node = %member.name, "EventMemberLeave (forced)");
                self.emit_member(MemberEventKind::Leave, member);
                if l.prune {
                    self.schedule_prune(&l.node, false);
                }
                true
            }
            MemberStatus::Leaving | MemberStatus::Left => {
                if l.prune {
                    self.schedule_prune(&l.node, false);
                }
                true
            }
            MemberStatus::None => false,
        }
    }

    fn schedule_prune(&mut self, node: &str, leaving: bool) {
        let delay = if leaving {
            self.cfg.broadcast_timeout + self.cfg.leave_propagate_delay
        } else {
            Duration::ZERO
        };
        self.serf.prunes.push((node.to_owned(), self.now + delay));
    }

    fn erase_node(&mut self, name: &str) {
        if let Some(ms) = self.serf.members.remove(name) {
            if let Some(c) = self.coord.as_mut() {
                c.forget_node(name);
            }
            self.coord_cache.remove(name);
            tracing::info!(node = %name, "EventMemberReap");
            self.emit_member(MemberEventKind::Reap, ms.member);
        }
    }

    fn broadcast_join(&mut self, ltime: u64) {
        let j = sw::Join {
            ltime,
            node: self.cfg.node_name.clone(),
        };
        witness(&mut self.serf.clock, ltime);
        self.handle_join_intent(&j);
        let raw = SerfMessage::Join(j).encode();
        self.serf.broadcasts.push(None, raw, None);
    }

    /// Call after a successful join (memberlist push/pull) to announce it.
    pub fn after_join(&mut self) {
        let t = self.serf.clock;
        self.broadcast_join(t);
    }

    // ------------------------------------------------------------ user messages

    pub(crate) fn serf_notify_msg(&mut self, from: SocketAddr, buf: &[u8]) {
        let msg = match sw::decode(buf) {
            Ok(m) => m,
            Err(e) => {
                self.stats.decode_failures += 1;
                tracing::debug!(%from, error = %e, "dropping malformed serf message");
                return;
            }
        };
        match msg {
            SerfMessage::Leave(l) => {
                if self.handle_leave_intent(&l) {
                    self.serf.broadcasts.push(None, buf.to_vec(), None);
                }
            }
            SerfMessage::Join(j) => {
                if self.handle_join_intent(&j) {
                    self.serf.broadcasts.push(None, buf.to_vec(), None);
                }
            }
            SerfMessage::UserEvent(e) => {
                if self.handle_user_event(&e) {
                    self.serf.event_broadcasts.push(None, buf.to_vec(), None);
                }
            }
            SerfMessage::Query(q) => {
                if self.handle_query(&q) {
                    self.serf.query_broadcasts.push(None, buf.to_vec(), None);
                }
            }
            SerfMessage::QueryResponse(r) => self.handle_query_response(r),
            SerfMessage::Relay(r) => {
                // Forward the inner message to its destination.
                let mut b = vec![nuvol_wire::memberlist::MsgType::User as u8];
                b.extend_from_slice(&r.inner);
                let pmax = self.pmax_of(&r.dest_name);
                self.send_raw(r.dest, pmax, b);
            }
            SerfMessage::PushPull(_) => {
                tracing::debug!(%from, "unexpected serf push/pull as a message");
            }
        }
        self.prune_queues();
    }

    fn prune_queues(&mut self) {
        let max = self.cfg.max_queue_depth;
        self.serf.broadcasts.prune(max);
        self.serf.event_broadcasts.prune(max);
        self.serf.query_broadcasts.prune(max);
    }

    pub(crate) fn serf_get_broadcasts(&mut self, overhead: usize, limit: usize) -> Vec<Vec<u8>> {
        let n = self.serf.members.len();
        let max = crate::config::retransmit_limit(self.cfg.retransmit_mult, n);
        let mut msgs = self.serf.broadcasts.take(overhead, limit, max);
        let mut used: usize = msgs.iter().map(|m| m.len() + overhead).sum();
        let q = self
            .serf
            .query_broadcasts
            .take(overhead, limit.saturating_sub(used), max);
        used += q.iter().map(|m| m.len() + overhead).sum::<usize>();
        msgs.extend(q);
        let e = self
            .serf
            .event_broadcasts
            .take(overhead, limit.saturating_sub(used), max);
        msgs.extend(e);
        msgs
    }

    // ------------------------------------------------------------ push/pull user state

    pub(crate) fn serf_local_state(&mut self, _join: bool) -> Vec<u8> {
        let mut status_ltimes = BTreeMap::new();
        let mut left = Vec::new();
        for (name, ms) in &self.serf.members {
            status_ltimes.insert(name.clone(), ms.status_ltime);
            if ms.member.status == MemberStatus::Left {
                left.push(name.clone());
            }
        }
        left.sort();
        let events = self.serf.event_buffer.iter().flatten().cloned().collect();
        SerfMessage::PushPull(sw::SerfPushPull {
            ltime: self.serf.clock,
            status_ltimes,
            left_members: left,
            event_ltime: self.serf.event_clock,
            events,
            query_ltime: self.serf.query_clock,
        })
        .encode()
    }

    pub(crate) fn serf_merge_remote_state(&mut self, buf: &[u8], join: bool) {
        let pp = match sw::decode(buf) {
            Ok(SerfMessage::PushPull(pp)) => pp,
            Ok(_) => {
                tracing::debug!("remote state is not a serf push/pull");
                return;
            }
            Err(e) => {
                self.stats.decode_failures += 1;
                tracing::debug!(error = %e, "failed to decode remote serf state");
                return;
            }
        };
        if pp.ltime > 0 {
            witness(&mut self.serf.clock, pp.ltime - 1);
        }
        if pp.event_ltime > 0 {
            witness(&mut self.serf.event_clock, pp.event_ltime - 1);
        }
        if pp.query_ltime > 0 {
            witness(&mut self.serf.query_clock, pp.query_ltime - 1);
        }
        let left: HashSet<&String> = pp.left_members.iter().collect();
        for name in &pp.left_members {
            let l = sw::Leave {
                ltime: pp.status_ltimes.get(name).copied().unwrap_or(0),
                node: name.clone(),
                prune: false,
            };
            self.handle_leave_intent(&l);
        }
        for (name, lt) in &pp.status_ltimes {
            if left.contains(name) {
                continue;
            }
            let j = sw::Join {
                ltime: *lt,
                node: name.clone(),
            };
            self.handle_join_intent(&j);
        }
        if join && self.serf.event_join_ignore && pp.event_ltime > self.serf.event_min_time {
            self.serf.event_min_time = pp.event_ltime;
        }
        for evs in &pp.events {
            for e in &evs.events {
                let ue = sw::UserEvent {
                    ltime: evs.ltime,
                    name: e.name.clone(),
                    payload: e.payload.clone(),
                    cc: false,
                };
                self.handle_user_event(&ue);
            }
        }
    }

    // ------------------------------------------------------------ user events

    fn handle_user_event(&mut self, e: &sw::UserEvent) -> bool {
        witness(&mut self.serf.event_clock, e.ltime);
        if e.ltime < self.serf.event_min_time {
            return false;
        }
        let len = self.serf.event_buffer.len() as u64;
        let cur = self.serf.event_clock;
        if cur > len && e.ltime < cur - len {
            tracing::warn!(name = %e.name, ltime = e.ltime, current = cur, "received old event");
            return false;
        }
        let idx = (e.ltime % len) as usize;
        let item = sw::UserEventItem {
            name: e.name.clone(),
            payload: e.payload.clone(),
        };
        match &mut self.serf.event_buffer[idx] {
            Some(seen) if seen.ltime == e.ltime => {
                if seen.events.contains(&item) {
                    return false;
                }
                seen.events.push(item);
            }
            slot => {
                *slot = Some(sw::UserEvents {
                    ltime: e.ltime,
                    events: vec![item],
                });
            }
        }
        self.stats.user_events += 1;
        self.out.push(Output::Event(Event::User {
            ltime: e.ltime,
            name: e.name.clone(),
            payload: e.payload.clone(),
            coalesce: e.cc,
        }));
        true
    }

    /// Broadcast a user event (serf's `UserEvent`).
    pub fn user_event(
        &mut self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<(), GossipError> {
        let limit = self.cfg.user_event_size_limit;
        if name.len() + payload.len() > limit {
            return Err(GossipError::UserEventTooLarge { limit });
        }
        let e = sw::UserEvent {
            ltime: self.serf.event_clock,
            name: name.to_owned(),
            payload: payload.to_vec(),
            cc: coalesce,
        };
        let raw = SerfMessage::UserEvent(e.clone()).encode();
        if raw.len() > limit {
            return Err(GossipError::UserEventEncodedTooLarge { limit });
        }
        self.serf.event_clock += 1;
        self.handle_user_event(&e);
        self.serf.event_broadcasts.push(None, raw, None);
        self.prune_queues();
        Ok(())
    }

    // ------------------------------------------------------------ queries

    /// serf's DefaultQueryTimeout: gossip_interval * mult * ceil(log10(n+1)).
    pub fn default_query_timeout(&self) -> Duration {
        let n = self.num_alive();
        let scale = ((n as f64 + 1.0).log10().ceil() as u32).max(1);
        self.cfg.gossip_interval * self.cfg.query_timeout_mult * scale
    }

    /// Start a user query. Responses come back as `Output::Query*`.
    pub fn query(
        &mut self,
        name: &str,
        payload: Vec<u8>,
        params: QueryParams,
    ) -> Result<QueryHandle, GossipError> {
        self.start_query(name, payload, params, QueryKind::User)
    }

    fn start_query(
        &mut self,
        name: &str,
        payload: Vec<u8>,
        params: QueryParams,
        kind: QueryKind,
    ) -> Result<QueryHandle, GossipError> {
        let mut filters = Vec::new();
        if !params.filter_nodes.is_empty() {
            filters.push(Filter::Nodes(params.filter_nodes.clone()));
        }
        for (tag, expr) in &params.filter_tags {
            if let Err(e) = regex_lite::Regex::new(expr) {
                return Err(GossipError::BadFilter {
                    tag: tag.clone(),
                    reason: e.to_string(),
                });
            }
            filters.push(Filter::Tag {
                tag: tag.clone(),
                expr: expr.clone(),
            });
        }
        let timeout = if params.timeout.is_zero() {
            self.default_query_timeout()
        } else {
            params.timeout
        };
        use rand::Rng;
        let q = sw::Query {
            ltime: self.serf.query_clock,
            id: self.rng.gen::<u32>() & 0x7fff_ffff,
            addr: self.advertise.ip(),
            port: self.advertise.port(),
            source_node: self.cfg.node_name.clone(),
            filters,
            flags: if params.request_ack {
                QUERY_FLAG_ACK
            } else {
                0
            },
            relay_factor: params.relay_factor,
            timeout_ns: timeout.as_nanos().min(i64::MAX as u128) as i64,
            name: name.to_owned(),
            payload,
        };
        let raw = SerfMessage::Query(q.clone()).encode();
        if raw.len() > self.cfg.query_size_limit {
            return Err(GossipError::QueryTooLarge {
                limit: self.cfg.query_size_limit,
            });
        }
        self.serf.query_clock += 1;
        self.serf.next_handle += 1;
        let handle = self.serf.next_handle;
        // Only one outstanding query per LTime is tracked by responses.
        self.serf.outbound.retain(|_, o| o.ltime != q.ltime);
        self.serf.outbound.insert(
            handle,
            OutboundQuery {
                ltime: q.ltime,
                id: q.id,
                deadline: self.now + timeout,
                acks: HashSet::new(),
                responses: HashSet::new(),
                kind,
            },
        );
        self.stats.queries += 1;
        self.handle_query(&q);
        self.serf.query_broadcasts.push(None, raw, None);
        self.prune_queues();
        Ok(QueryHandle(handle))
    }

    fn should_process_query(&self, filters: &[Filter]) -> bool {
        for f in filters {
            match f {
                Filter::Nodes(nodes) => {
                    if !nodes.iter().any(|n| n == &self.cfg.node_name) {
                        return false;
                    }
                }
                Filter::Tag { tag, expr } => {
                    let value = self.serf.tags.get(tag).map(String::as_str).unwrap_or("");
                    match regex_lite::Regex::new(expr) {
                        Ok(re) if re.is_match(value) => {}
                        Ok(_) => return false,
                        Err(e) => {
                            tracing::warn!(expr = %expr, error = %e, "failed to compile filter regex");
                            return false;
                        }
                    }
                }
            }
        }
        true
    }

    fn handle_query(&mut self, q: &sw::Query) -> bool {
        witness(&mut self.serf.query_clock, q.ltime);
        if q.ltime < self.serf.query_min_time {
            return false;
        }
        let len = self.serf.query_buffer.len() as u64;
        let cur = self.serf.query_clock;
        if cur > len && q.ltime < cur - len {
            tracing::warn!(name = %q.name, ltime = q.ltime, current = cur, "received old query");
            return false;
        }
        let idx = (q.ltime % len) as usize;
        match &mut self.serf.query_buffer[idx] {
            Some((lt, ids)) if *lt == q.ltime => {
                if ids.contains(&q.id) {
                    return false;
                }
                ids.push(q.id);
            }
            slot => *slot = Some((q.ltime, vec![q.id])),
        }
        let rebroadcast = q.flags & QUERY_FLAG_NO_BROADCAST == 0;
        if !self.should_process_query(&q.filters) {
            return rebroadcast;
        }
        let dest = SocketAddr::new(q.addr, q.port);
        if q.wants_ack() {
            let ack = sw::QueryResponse {
                ltime: q.ltime,
                id: q.id,
                from: self.cfg.node_name.clone(),
                flags: QUERY_FLAG_ACK,
                payload: Vec::new(),
            };
            self.send_query_response(dest, &q.source_node, q.relay_factor, &ack);
        }
        self.serf.next_handle += 1;
        let handle = self.serf.next_handle;
        let timeout = Duration::from_nanos(q.timeout_ns.max(0) as u64);
        self.serf.inbound.insert(
            handle,
            InboundQuery {
                ltime: q.ltime,
                id: q.id,
                addr: dest,
                source_node: q.source_node.clone(),
                deadline: self.now + timeout,
                relay_factor: q.relay_factor,
                name: q.name.clone(),
                responded: false,
            },
        );
        if q.name.starts_with(sw::INTERNAL_QUERY_PREFIX) {
            self.handle_internal_query(handle, q);
        } else {
            self.out.push(Output::Event(Event::Query {
                id: InboundQueryId(handle),
                ltime: q.ltime,
                name: q.name.clone(),
                payload: q.payload.clone(),
                source_node: q.source_node.clone(),
            }));
        }
        rebroadcast
    }

    fn send_query_response(
        &mut self,
        dest: SocketAddr,
        dest_name: &str,
        relay_factor: u8,
        r: &sw::QueryResponse,
    ) {
        let raw = SerfMessage::QueryResponse(r.clone()).encode();
        let mut b = vec![nuvol_wire::memberlist::MsgType::User as u8];
        b.extend_from_slice(&raw);
        let pmax = self.pmax_of(dest_name);
        self.send_raw(dest, pmax, b);
        if relay_factor == 0 {
            return;
        }
        let alive: Vec<(String, SocketAddr, u8)> = self
            .serf
            .members
            .values()
            .filter(|m| m.member.status == MemberStatus::Alive)
            .filter(|m| m.member.vsn[1] >= 5 && m.member.name != self.cfg.node_name)
            .map(|m| (m.member.name.clone(), m.member.addr, m.member.vsn[1]))
            .collect();
        if self.serf.members.len() < relay_factor as usize + 1 {
            return;
        }
        let relay = SerfMessage::Relay(sw::Relay {
            dest,
            dest_name: dest_name.to_owned(),
            inner: raw,
        })
        .encode();
        if relay.len() > self.cfg.query_response_size_limit {
            tracing::error!("relayed response exceeds limit");
            return;
        }
        use rand::seq::SliceRandom;
        let mut picks = alive;
        picks.sort();
        picks.shuffle(&mut self.rng);
        for (_, addr, pmax) in picks.into_iter().take(relay_factor as usize) {
            let mut b = vec![nuvol_wire::memberlist::MsgType::User as u8];
            b.extend_from_slice(&relay);
            self.send_raw(addr, Some(pmax), b);
        }
    }

    /// Answer an incoming query (serf's `Query.Respond`).
    pub fn respond(&mut self, id: InboundQueryId, payload: Vec<u8>) -> Result<(), GossipError> {
        let now = self.now;
        let Some(q) = self.serf.inbound.get(&id.0).cloned() else {
            return Err(GossipError::UnknownQuery);
        };
        if q.responded {
            return Err(GossipError::ResponseAlreadySent);
        }
        if now > q.deadline {
            return Err(GossipError::ResponseTimeout);
        }
        let r = sw::QueryResponse {
            ltime: q.ltime,
            id: q.id,
            from: self.cfg.node_name.clone(),
            flags: 0,
            payload,
        };
        let len = SerfMessage::QueryResponse(r.clone()).encode().len();
        if len > self.cfg.query_response_size_limit {
            return Err(GossipError::ResponseTooLarge {
                limit: self.cfg.query_response_size_limit,
            });
        }
        if let Some(q) = self.serf.inbound.get_mut(&id.0) {
            q.responded = true;
        }
        self.send_query_response(q.addr, &q.source_node, q.relay_factor, &r);
        Ok(())
    }

    /// Name of an inbound query (for handlers).
    pub fn inbound_query_name(&self, id: InboundQueryId) -> Option<&str> {
        self.serf.inbound.get(&id.0).map(|q| q.name.as_str())
    }

    fn handle_query_response(&mut self, r: sw::QueryResponse) {
        let Some((&handle, q)) = self
            .serf
            .outbound
            .iter_mut()
            .find(|(_, q)| q.ltime == r.ltime)
        else {
            tracing::debug!(ltime = r.ltime, from = %r.from, "reply for a non-running query");
            return;
        };
        if q.id != r.id || self.now > q.deadline {
            return;
        }
        if r.is_ack() {
            if q.acks.insert(r.from.clone()) && matches!(q.kind, QueryKind::User) {
                self.out.push(Output::QueryAck {
                    handle: QueryHandle(handle),
                    from: r.from,
                });
            }
            return;
        }
        if !q.responses.insert(r.from.clone()) {
            return;
        }
        match &mut q.kind {
            QueryKind::User => self.out.push(Output::QueryResponse {
                handle: QueryHandle(handle),
                from: r.from,
                payload: r.payload,
            }),
            QueryKind::Key(res) => {
                res.num_resp += 1;
                match KeyResponse::decode(&r.payload) {
                    Err(_) => {
                        res.messages.insert(
                            r.from.clone(),
                            format!("Invalid key query response type: {:?}", r.payload),
                        );
                        res.num_err += 1;
                    }
                    Ok(kr) => {
                        if !kr.result {
                            res.messages.insert(r.from.clone(), kr.message.clone());
                            res.num_err += 1;
                        } else if !kr.message.is_empty() {
                            res.messages.insert(r.from.clone(), kr.message.clone());
                        }
                        for k in kr.keys {
                            *res.keys.entry(k).or_default() += 1;
                        }
                        if !kr.primary_key.is_empty() {
                            *res.primary_keys.entry(kr.primary_key).or_default() += 1;
                        }
                    }
                }
                if res.num_resp >= res.num_nodes {
                    self.finish_query(handle);
                }
            }
            QueryKind::Conflict {
                responses,
                matching,
            } => {
                if let Ok(Some(rec)) = MemberRecord::decode(&r.payload) {
                    *responses += 1;
                    if rec.addr == Some(self.advertise.ip()) && rec.port == self.advertise.port() {
                        *matching += 1;
                    }
                }
            }
        }
    }

    fn finish_query(&mut self, handle: u64) {
        let Some(q) = self.serf.outbound.remove(&handle) else {
            return;
        };
        match q.kind {
            QueryKind::User => self.out.push(Output::QueryDone {
                handle: QueryHandle(handle),
            }),
            QueryKind::Key(result) => self.out.push(Output::KeyOpDone {
                handle: QueryHandle(handle),
                result,
            }),
            QueryKind::Conflict {
                responses,
                matching,
            } => {
                self.serf.conflict_query_running = false;
                let majority = responses / 2 + 1;
                if matching >= majority {
                    tracing::info!(matching, responses, "majority in name conflict resolution");
                } else {
                    tracing::warn!(
                        matching,
                        responses,
                        "minority in name conflict resolution, quitting"
                    );
                    self.serf.state = SerfRunState::Shutdown;
                    self.out.push(Output::Shutdown {
                        reason: format!(
                            "name conflict: minority in conflict resolution [{matching} / {responses}]"
                        ),
                    });
                }
            }
        }
    }

    // ------------------------------------------------------------ internal queries

    fn handle_internal_query(&mut self, handle: u64, q: &sw::Query) {
        let id = InboundQueryId(handle);
        let name = &q.name[sw::INTERNAL_QUERY_PREFIX.len()..];
        match name {
            "ping" => {}
            "conflict" => {
                let node = String::from_utf8_lossy(&q.payload).into_owned();
                if node == self.cfg.node_name {
                    return;
                }
                let rec = self.serf.members.get(&node).map(|ms| MemberRecord {
                    name: ms.member.name.clone(),
                    addr: Some(ms.member.addr.ip()),
                    port: ms.member.addr.port(),
                    tags: ms.member.tags.clone(),
                    status: ms.member.status as u8,
                    vsn: ms.member.vsn,
                });
                let payload = match rec {
                    Some(r) => r.encode(),
                    None => vec![sw::SerfType::ConflictResponse as u8, 0xc0],
                };
                if let Err(e) = self.respond(id, payload) {
                    tracing::error!(error = %e, "failed to respond to conflict query");
                }
            }
            "install-key" | "use-key" | "remove-key" | "list-keys" => {
                let resp = self.handle_key_query(name, &q.payload);
                let mut resp = resp;
                let mut payload = resp.encode();
                // Trim the key list until the response fits (serf does the same).
                while payload.len() + 64 > self.cfg.query_response_size_limit
                    && !resp.keys.is_empty()
                {
                    resp.keys.pop();
                    resp.message = "truncated key list response, showing first keys only".into();
                    payload = resp.encode();
                }
                if let Err(e) = self.respond(id, payload) {
                    tracing::error!(error = %e, "failed to respond to key query");
                }
            }
            other => tracing::warn!(query = %other, "unhandled internal query"),
        }
    }

    fn handle_key_query(&mut self, op: &str, payload: &[u8]) -> KeyResponse {
        let mut resp = KeyResponse::default();
        let Some(kr) = self.keyring.as_mut() else {
            resp.message = "No keyring to modify (encryption not enabled)".into();
            return resp;
        };
        if op == "list-keys" {
            resp.keys = kr
                .keys()
                .iter()
                .map(|k| nuvol_wire::security::encode_key(k))
                .collect();
            resp.primary_key = nuvol_wire::security::encode_key(kr.primary());
            resp.result = true;
            return resp;
        }
        let req = match KeyRequest::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                resp.message = format!("Failed to decode key request: {e}");
                return resp;
            }
        };
        let r = match op {
            "install-key" => kr.add_key(&req.key).map_err(|e| e.to_string()),
            "use-key" => kr.use_key(&req.key).map_err(|e| e.to_string()),
            _ => kr.remove_key(&req.key).map_err(|e| e.to_string()),
        };
        match r {
            Ok(()) => {
                resp.result = true;
                self.out.push(Output::KeyringChanged);
            }
            Err(e) => resp.message = e,
        }
        resp
    }

    /// Start a cluster-wide key operation (serf's KeyManager).
    pub fn key_op(&mut self, op: KeyOp, key: &[u8]) -> Result<QueryHandle, GossipError> {
        let payload = if op == KeyOp::List {
            Vec::new()
        } else {
            KeyRequest { key: key.to_vec() }.encode()
        };
        let result = KeyOpResult {
            num_nodes: self.num_alive(),
            ..Default::default()
        };
        self.start_query(
            op.query_name(),
            payload,
            QueryParams::default(),
            QueryKind::Key(result),
        )
    }

    // ------------------------------------------------------------ tags

    /// Replace the local tags and announce them (serf's SetTags).
    pub fn set_tags(&mut self, tags: BTreeMap<String, String>) -> Result<(), GossipError> {
        let meta = encode_meta(self.cfg.protocol, &tags);
        if meta.len() > META_MAX_SIZE {
            return Err(GossipError::TagsTooLarge {
                limit: META_MAX_SIZE,
            });
        }
        self.serf.tags = tags;
        self.set_alive(meta);
        Ok(())
    }

    // ------------------------------------------------------------ leave

    /// Start a graceful leave; `Output::LeaveDone` follows when finished.
    pub fn leave(&mut self) -> Result<(), GossipError> {
        if self.serf.state != SerfRunState::Alive {
            return Err(GossipError::NotAlive);
        }
        self.serf.state = SerfRunState::Leaving;
        let l = sw::Leave {
            ltime: self.serf.clock,
            node: self.cfg.node_name.clone(),
            prune: false,
        };
        self.serf.clock += 1;
        self.handle_leave_intent(&l);
        let others_alive =
            self.serf.members.values().any(|m| {
                m.member.name != self.cfg.node_name && m.member.status == MemberStatus::Alive
            });
        self.serf.next_handle += 1;
        let notify = self.serf.next_handle;
        if others_alive {
            let raw = SerfMessage::Leave(l).encode();
            self.serf.broadcasts.push(None, raw, Some(notify));
            self.serf.leave = Some(LeavePhase::Intent {
                notify,
                until: self.now + self.cfg.broadcast_timeout,
            });
        } else {
            self.leave_memberlist();
        }
        Ok(())
    }

    fn leave_memberlist(&mut self) {
        self.serf.next_handle += 1;
        let notify = self.serf.next_handle;
        let others = self
            .node_map
            .values()
            .any(|n| n.name != self.cfg.node_name && n.state == crate::core::State::Alive);
        self.ml_leave(notify);
        if others {
            self.serf.leave = Some(LeavePhase::Dead {
                notify,
                until: self.now + self.cfg.broadcast_timeout,
            });
        } else {
            self.serf.leave = Some(LeavePhase::Propagate {
                until: self.now + self.cfg.leave_propagate_delay,
            });
        }
    }

    pub(crate) fn broadcast_finished(&mut self, id: u64) {
        match self.serf.leave {
            Some(LeavePhase::Intent { notify, .. }) if notify == id => self.leave_memberlist(),
            Some(LeavePhase::Dead { notify, .. }) if notify == id => {
                self.serf.leave = Some(LeavePhase::Propagate {
                    until: self.now + self.cfg.leave_propagate_delay,
                });
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------ force-leave

    /// Force a failed member into the left state (serf's RemoveFailedNode,
    /// `forceLeave` in serf/serf.go). As in serf, a node this agent does
    /// not know is not an error: the leave intent is recorded and broadcast
    /// all the same, so members that still know the node mark it left.
    pub fn force_leave(&mut self, node: &str, prune: bool) -> Result<(), GossipError> {
        let l = sw::Leave {
            ltime: self.serf.clock,
            node: node.to_owned(),
            prune,
        };
        self.serf.clock += 1;
        self.handle_leave_intent(&l);
        let has_others =
            self.serf.members.values().any(|m| {
                m.member.name != self.cfg.node_name && m.member.status == MemberStatus::Alive
            });
        if has_others {
            let raw = SerfMessage::Leave(l).encode();
            self.serf.broadcasts.push(None, raw, None);
        }
        Ok(())
    }

    // ------------------------------------------------------------ coordinates

    pub(crate) fn ack_payload(&self) -> Vec<u8> {
        match &self.coord {
            Some(c) => {
                let co = c.get_coordinate();
                WireCoordinate {
                    vec: co.vec.clone(),
                    error: co.error,
                    adjustment: co.adjustment,
                    height: co.height,
                }
                .encode_ping_payload()
            }
            None => Vec::new(),
        }
    }

    pub(crate) fn ping_complete(&mut self, node: &str, rtt: Duration, payload: &[u8]) {
        let Some(client) = self.coord.as_mut() else {
            return;
        };
        let wc = match WireCoordinate::decode_ping_payload(payload) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(node, error = %e, "bad coordinate in ack");
                return;
            }
        };
        let other = crate::coordinate::Coordinate {
            vec: wc.vec,
            error: wc.error,
            adjustment: wc.adjustment,
            height: wc.height,
        };
        match client.update(node, &other, rtt, &mut self.rng) {
            Ok(_) => {
                self.coord_cache.insert(node.to_owned(), other);
            }
            Err(e) => tracing::trace!(node, error = %e, "rejected coordinate"),
        }
    }

    /// Every coordinate known: our own first (when coordinates are on),
    /// then the cached ones of other nodes.
    pub fn coordinates(&self) -> Vec<(String, crate::coordinate::Coordinate)> {
        let Some(c) = self.coord.as_ref() else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(self.coord_cache.len() + 1);
        out.push((self.cfg.node_name.clone(), c.get_coordinate().clone()));
        out.extend(
            self.coord_cache
                .iter()
                .filter(|(n, _)| **n != self.cfg.node_name)
                .map(|(n, c)| (n.clone(), c.clone())),
        );
        out
    }

    /// Our own coordinate, or a cached one of another node.
    pub fn coordinate(&self, node: &str) -> Option<crate::coordinate::Coordinate> {
        let c = self.coord.as_ref()?;
        if node == self.cfg.node_name {
            return Some(c.get_coordinate().clone());
        }
        self.coord_cache.get(node).cloned()
    }

    // ------------------------------------------------------------ timers

    pub(crate) fn serf_poll_timeout(&self) -> Duration {
        let mut t = self.serf.next_reap.min(self.serf.next_reconnect);
        for q in self.serf.outbound.values() {
            t = t.min(q.deadline);
        }
        for (_, at) in &self.serf.prunes {
            t = t.min(*at);
        }
        match self.serf.leave {
            Some(LeavePhase::Intent { until, .. })
            | Some(LeavePhase::Dead { until, .. })
            | Some(LeavePhase::Propagate { until }) => t = t.min(until),
            None => {}
        }
        t
    }

    pub(crate) fn serf_timers(&mut self, now: Duration) {
        // Query deadlines.
        let due: Vec<u64> = self
            .serf
            .outbound
            .iter()
            .filter(|(_, q)| q.deadline <= now)
            .map(|(h, _)| *h)
            .collect();
        for h in due {
            self.finish_query(h);
        }
        self.serf
            .inbound
            .retain(|_, q| q.deadline + Duration::from_secs(1) > now);
        // Prunes.
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.serf.prunes)
            .into_iter()
            .partition(|(_, at)| *at <= now);
        self.serf.prunes = keep;
        for (name, _) in due {
            self.erase_node(&name);
        }
        // Leave phases.
        match self.serf.leave {
            Some(LeavePhase::Intent { until, .. }) if until <= now => {
                tracing::warn!("timeout while waiting for graceful leave");
                self.leave_memberlist();
            }
            Some(LeavePhase::Dead { until, .. }) if until <= now => {
                tracing::warn!("timeout waiting for leave broadcast");
                self.serf.leave = Some(LeavePhase::Propagate {
                    until: now + self.cfg.leave_propagate_delay,
                });
            }
            Some(LeavePhase::Propagate { until }) if until <= now => {
                self.serf.leave = None;
                self.serf.state = SerfRunState::Left;
                self.out.push(Output::LeaveDone);
            }
            _ => {}
        }
        if now >= self.serf.next_reap {
            self.serf.next_reap = now + self.cfg.reap_interval;
            self.reap(now);
        }
        if now >= self.serf.next_reconnect {
            self.serf.next_reconnect = now + self.cfg.reconnect_interval;
            self.reconnect();
        }
    }

    fn reap(&mut self, now: Duration) {
        let reconnect = self.cfg.reconnect_timeout;
        let tombstone = self.cfg.tombstone_timeout;
        let gone: Vec<String> = self
            .serf
            .members
            .values()
            .filter(|m| match m.member.status {
                MemberStatus::Failed => now.saturating_sub(m.leave_time) > reconnect,
                MemberStatus::Left => now.saturating_sub(m.leave_time) > tombstone,
                _ => false,
            })
            .map(|m| m.member.name.clone())
            .collect();
        for name in gone {
            self.erase_node(&name);
        }
        let timeout = self.cfg.recent_intent_timeout;
        self.serf
            .recent_intents
            .retain(|_, i| now.saturating_sub(i.at) <= timeout);
    }

    fn reconnect(&mut self) {
        use rand::Rng;
        if self.serf.state != SerfRunState::Alive {
            return;
        }
        let mut failed: Vec<(String, SocketAddr)> = self
            .serf
            .members
            .values()
            .filter(|m| m.member.status == MemberStatus::Failed)
            .map(|m| (m.member.name.clone(), m.member.addr))
            .collect();
        if failed.is_empty() {
            return;
        }
        failed.sort();
        let (total, nfailed, nleft) = self.counts();
        let alive = (total - nfailed - nleft).max(1) as f32;
        let prob = nfailed as f32 / alive;
        if self.rng.gen::<f32>() > prob {
            tracing::debug!("forgoing reconnect for random throttling");
            return;
        }
        let (name, addr) = failed[self.rng.gen_range(0..failed.len())].clone();
        tracing::info!(node = %name, %addr, "attempting reconnect");
        let (token, data) = self.start_push_pull(addr, true, false);
        self.out.push(Output::PushPull {
            token,
            to: addr,
            data,
        });
    }
}
