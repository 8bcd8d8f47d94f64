//! The [`Gossip`] state machine: construction, inputs, timers and the byte
//! pipeline (compress → CRC → encrypt) shared by memberlist and Serf logic.

use crate::broadcast::Queue;
use crate::config::Config;
use crate::coordinate;
use crate::types::*;
use nuvol_wire::memberlist::{
    self as ml, make_compound, Message, MsgType, StreamFrame, StreamMsg, COMPOUND_HEADER_OVERHEAD,
    COMPOUND_OVERHEAD,
};
use nuvol_wire::security::Keyring;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

/// Errors returned to callers of the core's commands. None of them changed state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GossipError {
    #[error("Encoded length of tags exceeds limit of {limit} bytes")]
    TagsTooLarge { limit: usize },
    #[error("user event exceeds configured limit of {limit} bytes before encoding")]
    UserEventTooLarge { limit: usize },
    #[error("user event exceeds configured limit of {limit} bytes after encoding")]
    UserEventEncodedTooLarge { limit: usize },
    #[error("query exceeds limit of {limit} bytes")]
    QueryTooLarge { limit: usize },
    #[error("response exceeds limit of {limit} bytes")]
    ResponseTooLarge { limit: usize },
    #[error("response is past the deadline")]
    ResponseTimeout,
    #[error("response already sent")]
    ResponseAlreadySent,
    #[error("unknown query")]
    UnknownQuery,
    #[error("invalid filter regular expression for tag {tag:?}: {reason}")]
    BadFilter { tag: String, reason: String },
    #[error("the agent is leaving or has left")]
    NotAlive,
    #[error("encryption is not enabled")]
    NoKeyring,
    #[error("stream is encrypted but encryption is not configured")]
    UnexpectedEncryption,
    #[error("encryption is configured but the remote stream is not encrypted")]
    MissingEncryption,
    #[error("decryption failed: {0}")]
    Decrypt(String),
    #[error("malformed stream: {0}")]
    Decode(String),
    #[error("remote error: {0}")]
    Remote(String),
    #[error("{0}")]
    Transport(String),
}

/// A memberlist node state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Alive,
    Suspect,
    Dead,
    Left,
}

impl State {
    pub fn dead_or_left(self) -> bool {
        matches!(self, State::Dead | State::Left)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct NodeState {
    pub name: String,
    pub addr: SocketAddr,
    pub meta: Vec<u8>,
    pub incarnation: u32,
    pub state: State,
    pub state_change: Duration,
    pub vsn: [u8; 6],
}

impl NodeState {
    pub fn pmax(&self) -> u8 {
        self.vsn[1]
    }
}

/// Suspicion timer with Lifeguard's confirmations (memberlist suspicion.go).
#[derive(Debug, Clone)]
pub(crate) struct Suspicion {
    pub start: Duration,
    pub k: usize,
    pub n: usize,
    pub min: Duration,
    pub max: Duration,
    pub confirmations: Vec<String>,
    pub deadline: Duration,
    /// `state_change` of the node when suspicion started.
    pub change: Duration,
}

impl Suspicion {
    pub fn new(from: &str, k: usize, min: Duration, max: Duration, now: Duration) -> Self {
        let timeout = if k < 1 { min } else { max };
        Suspicion {
            start: now,
            k,
            n: 0,
            min,
            max,
            confirmations: vec![from.to_owned()],
            deadline: now + timeout,
            change: now,
        }
    }

    /// Record an independent confirmation; returns true if it was new.
    pub fn confirm(&mut self, from: &str) -> bool {
        if self.n >= self.k || self.confirmations.iter().any(|c| c == from) {
            return false;
        }
        self.confirmations.push(from.to_owned());
        self.n += 1;
        let frac = ((self.n as f64) + 1.0).ln() / ((self.k as f64) + 1.0).ln();
        let raw = self.max.as_secs_f64() - frac * (self.max.as_secs_f64() - self.min.as_secs_f64());
        let timeout = Duration::from_millis((1000.0 * raw).floor().max(0.0) as u64).max(self.min);
        self.deadline = self.start + timeout;
        true
    }
}

#[derive(Debug)]
pub(crate) enum AckHandler {
    /// Our own probe of `target`.
    Probe,
    /// An indirect ping we relay for `requester`.
    Relay {
        requester: SocketAddr,
        requester_pmax: u8,
        seq: u32,
        nack: bool,
        deadline: Duration,
    },
}

#[derive(Debug)]
pub(crate) struct Probe {
    pub seq: u32,
    pub target: String,
    pub sent: Duration,
    /// When to go indirect (sent + probe_timeout).
    pub indirect_at: Option<Duration>,
    /// sent + scaled probe interval.
    pub deadline: Duration,
    pub expected_nacks: usize,
    pub nacks: usize,
    pub tcp_contacted: bool,
}

#[derive(Debug)]
pub(crate) struct PendingPushPull {
    pub join: bool,
    pub ignore_old: bool,
}

/// The memberlist-compatible membership core plus the Serf layer.
///
/// Architecture Invariant: no sockets, no clocks, no threads. Time is the
/// `now` argument (a monotonic offset chosen by the driver); randomness comes
/// from a seeded RNG.
pub struct Gossip {
    pub(crate) cfg: Config,
    pub(crate) rng: SmallRng,
    pub(crate) now: Duration,
    pub(crate) advertise: SocketAddr,
    pub(crate) keyring: Option<Keyring>,
    pub(crate) out: Vec<Output>,
    pub stats: Stats,

    // ---- memberlist
    pub(crate) nodes: Vec<String>,
    pub(crate) node_map: HashMap<String, NodeState>,
    pub(crate) probe_index: usize,
    pub(crate) seq_no: u32,
    pub(crate) incarnation: u32,
    pub(crate) awareness: u32,
    pub(crate) suspicions: HashMap<String, Suspicion>,
    pub(crate) ack_handlers: HashMap<u32, AckHandler>,
    pub(crate) probe: Option<Probe>,
    pub(crate) ml_broadcasts: Queue,
    pub(crate) next_probe: Duration,
    pub(crate) next_gossip: Duration,
    pub(crate) next_push_pull: Duration,
    pub(crate) ml_left: bool,
    pub(crate) next_token: u64,
    pub(crate) pending_pp: HashMap<u64, PendingPushPull>,

    // ---- serf
    pub(crate) serf: crate::serf::SerfState,
    pub(crate) coord: Option<coordinate::Client>,
    pub(crate) coord_cache: HashMap<String, coordinate::Coordinate>,
}

impl Gossip {
    /// Create the core for a node advertised at `advertise`. Like memberlist's
    /// `Create`, the local node is immediately alive and a member.
    pub fn new(
        cfg: Config,
        advertise: SocketAddr,
        tags: BTreeMap<String, String>,
        keyring: Option<Keyring>,
        seed: u64,
        now: Duration,
    ) -> Result<Self, GossipError> {
        let meta = crate::serf::encode_meta(cfg.protocol, &tags);
        if meta.len() > ml::META_MAX_SIZE {
            return Err(GossipError::TagsTooLarge {
                limit: ml::META_MAX_SIZE,
            });
        }
        let mut rng = SmallRng::seed_from_u64(seed);
        let coord = (!cfg.disable_coordinates)
            .then(|| coordinate::Client::new(coordinate::Config::default()))
            .and_then(Result::ok);
        use rand::Rng;
        let stagger_pp = if cfg.push_pull_interval.is_zero() {
            Duration::ZERO
        } else {
            rng.gen_range(Duration::ZERO..cfg.push_pull_interval)
        };
        let stagger_probe =
            rng.gen_range(Duration::ZERO..cfg.probe_interval.max(Duration::from_millis(1)));
        let stagger_gossip =
            rng.gen_range(Duration::ZERO..cfg.gossip_interval.max(Duration::from_millis(1)));
        let mut g = Gossip {
            serf: crate::serf::SerfState::new(&cfg, tags, now),
            cfg,
            rng,
            now,
            advertise,
            keyring,
            out: Vec::new(),
            stats: Stats::default(),
            nodes: Vec::new(),
            node_map: HashMap::new(),
            probe_index: 0,
            seq_no: 0,
            incarnation: 0,
            awareness: 0,
            suspicions: HashMap::new(),
            ack_handlers: HashMap::new(),
            probe: None,
            ml_broadcasts: Queue::default(),
            next_probe: now + stagger_probe,
            next_gossip: now + stagger_gossip,
            next_push_pull: now + stagger_pp,
            ml_left: false,
            next_token: 0,
            pending_pp: HashMap::new(),
            coord,
            coord_cache: HashMap::new(),
        };
        g.set_alive(meta);
        Ok(g)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn name(&self) -> &str {
        &self.cfg.node_name
    }
    pub fn advertise(&self) -> SocketAddr {
        self.advertise
    }
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }
    pub fn encryption_enabled(&self) -> bool {
        self.keyring.is_some()
    }
    /// memberlist's health score (Lifeguard awareness; 0 is healthy).
    pub fn health_score(&self) -> u32 {
        self.awareness
    }

    /// Drain what the core wants done.
    pub fn drain_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// The earliest time at which [`Gossip::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Duration {
        let mut t = self.next_gossip.min(self.next_probe);
        if !self.cfg.push_pull_interval.is_zero() {
            t = t.min(self.next_push_pull);
        }
        if let Some(p) = &self.probe {
            t = t.min(p.deadline);
            if let Some(i) = p.indirect_at {
                t = t.min(i);
            }
        }
        for s in self.suspicions.values() {
            t = t.min(s.deadline);
        }
        for h in self.ack_handlers.values() {
            if let AckHandler::Relay { deadline, .. } = h {
                t = t.min(*deadline);
            }
        }
        t.min(self.serf_poll_timeout())
    }

    /// Run every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.now = now.max(self.now);
        let now = self.now;
        // Suspicion timeouts.
        let expired: Vec<String> = self
            .suspicions
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in expired {
            self.suspicion_expired(&name);
        }
        // Relay handlers for indirect pings.
        let due: Vec<u32> = self
            .ack_handlers
            .iter()
            .filter(|(_, h)| matches!(h, AckHandler::Relay { deadline, .. } if *deadline <= now))
            .map(|(s, _)| *s)
            .collect();
        for seq in due {
            if let Some(AckHandler::Relay {
                requester,
                requester_pmax,
                seq: their_seq,
                nack,
                ..
            }) = self.ack_handlers.remove(&seq)
            {
                if nack {
                    self.send_msg(requester, Some(requester_pmax), &Message::Nack(their_seq));
                }
            }
        }
        self.probe_timers(now);
        if now >= self.next_probe {
            self.next_probe = now + self.cfg.probe_interval;
            if self.probe.is_none() && !self.ml_left {
                self.probe_next();
            }
        }
        if now >= self.next_gossip {
            self.next_gossip = now + self.cfg.gossip_interval;
            self.gossip();
        }
        if !self.cfg.push_pull_interval.is_zero() && now >= self.next_push_pull {
            let n = self.node_map.len();
            self.next_push_pull =
                now + crate::config::push_pull_scale(self.cfg.push_pull_interval, n);
            self.periodic_push_pull();
        }
        self.serf_timers(now);
        self.collect_broadcast_notifications();
    }

    // ------------------------------------------------------------ packets

    /// Handle one UDP datagram from `from`.
    pub fn handle_packet(&mut self, from: SocketAddr, data: &[u8], now: Duration) {
        self.now = now.max(self.now);
        self.stats.packets_in += 1;
        let plain;
        let buf = match &self.keyring {
            Some(kr) => match kr.decrypt(data, &[]) {
                Ok(p) => {
                    plain = p;
                    &plain[..]
                }
                Err(e) => {
                    self.stats.decrypt_failures += 1;
                    self.stats.packets_dropped += 1;
                    tracing::debug!(%from, error = %e, "dropping packet: decrypt failed");
                    return;
                }
            },
            None => data,
        };
        let decoded = match ml::decode_packet(buf) {
            Ok(d) => d,
            Err(e) => {
                self.stats.decode_failures += 1;
                self.stats.packets_dropped += 1;
                tracing::debug!(%from, error = %e, "dropping malformed packet");
                return;
            }
        };
        for e in &decoded.errors {
            self.stats.decode_failures += 1;
            tracing::debug!(%from, error = %e, "dropping malformed compound part");
        }
        for msg in decoded.messages {
            self.handle_message(from, msg);
        }
        self.collect_broadcast_notifications();
    }

    fn handle_message(&mut self, from: SocketAddr, msg: Message) {
        match msg {
            Message::Ping(p) => self.handle_ping(from, p),
            Message::IndirectPing(p) => self.handle_indirect_ping(from, p),
            Message::Ack(a) => self.handle_ack(a),
            Message::Nack(seq) => self.handle_nack(seq),
            Message::Suspect(s) => self.suspect_node(&s),
            Message::Alive(a) => self.alive_node(&a, false),
            Message::Dead(d) => self.dead_node(&d),
            Message::User(b) => self.serf_notify_msg(from, &b),
            Message::Err(e) => tracing::debug!(%from, error = %e, "remote error"),
        }
    }

    /// Encode and send a memberlist message over UDP, piggybacking queued
    /// broadcasts in the room left in the packet (memberlist's sendMsg). Pings
    /// and acks carrying gossip are a second dissemination path besides the
    /// gossip timer; without it a burst of joins can leave a few nodes unheard
    /// of until the next push/pull.
    pub(crate) fn send_msg(&mut self, to: SocketAddr, pmax: Option<u8>, msg: &Message) {
        let raw = msg.encode();
        let mut avail = self
            .cfg
            .udp_buffer_size
            .saturating_sub(raw.len() + COMPOUND_HEADER_OVERHEAD);
        if self.keyring.is_some() {
            avail = avail.saturating_sub(nuvol_wire::security::encrypted_overhead(1));
        }
        let extra = self.get_broadcasts(COMPOUND_OVERHEAD, avail);
        if extra.is_empty() {
            self.send_raw(to, pmax, raw);
            return;
        }
        let mut msgs = Vec::with_capacity(extra.len() + 1);
        msgs.push(raw);
        msgs.extend(extra);
        self.send_raw(to, pmax, make_compound(&msgs));
    }

    /// memberlist's rawSendMsgPacket: compress if smaller, CRC for peers that
    /// speak protocol 5, then encrypt.
    pub(crate) fn send_raw(&mut self, to: SocketAddr, pmax: Option<u8>, mut msg: Vec<u8>) {
        if self.cfg.enable_compression {
            let c = ml::compress(&msg);
            if c.len() < msg.len() {
                msg = c;
            }
        }
        if pmax.unwrap_or(0) >= 5 {
            msg = ml::add_crc(&msg);
        }
        if let Some(kr) = &self.keyring {
            msg = kr.encrypt_primary(&msg, &[]);
        }
        self.stats.packets_out += 1;
        self.out.push(Output::Packet { to, data: msg });
    }

    /// The pmax of the node at `addr`, if known (decides the CRC).
    pub(crate) fn pmax_of(&self, name: &str) -> Option<u8> {
        self.node_map.get(name).map(NodeState::pmax)
    }

    // ------------------------------------------------------------ gossip

    pub(crate) fn gossip(&mut self) {
        use rand::seq::SliceRandom;
        let now = self.now;
        let dead_time = self.cfg.gossip_to_the_dead_time;
        let mut candidates: Vec<(SocketAddr, u8)> = self
            .node_map
            .values()
            .filter(|n| n.name != self.cfg.node_name)
            .filter(|n| match n.state {
                State::Alive | State::Suspect => true,
                State::Dead => now.saturating_sub(n.state_change) <= dead_time,
                State::Left => false,
            })
            .map(|n| (n.addr, n.pmax()))
            .collect();
        candidates.sort_unstable();
        candidates.shuffle(&mut self.rng);
        candidates.truncate(self.cfg.gossip_nodes);
        let mut avail = self.cfg.udp_buffer_size - COMPOUND_HEADER_OVERHEAD;
        if self.keyring.is_some() {
            avail -= nuvol_wire::security::encrypted_overhead(1);
        }
        for (addr, pmax) in candidates {
            let msgs = self.get_broadcasts(COMPOUND_OVERHEAD, avail);
            if msgs.is_empty() {
                return;
            }
            let data = if msgs.len() == 1 {
                msgs.into_iter().next().unwrap_or_default()
            } else {
                make_compound(&msgs)
            };
            self.send_raw(addr, Some(pmax), data);
        }
    }

    /// memberlist's getBroadcasts: own messages first, then Serf's (framed as
    /// user messages).
    pub(crate) fn get_broadcasts(&mut self, overhead: usize, limit: usize) -> Vec<Vec<u8>> {
        let n = self.node_map.len();
        let ml_limit = crate::config::retransmit_limit(self.cfg.retransmit_mult, n);
        let mut msgs = self.ml_broadcasts.take(overhead, limit, ml_limit);
        let used: usize = msgs.iter().map(|m| m.len() + overhead).sum();
        let avail = limit.saturating_sub(used);
        if avail > overhead + 1 {
            for m in self.serf_get_broadcasts(overhead + 1, avail) {
                let mut b = Vec::with_capacity(m.len() + 1);
                b.push(MsgType::User as u8);
                b.extend_from_slice(&m);
                msgs.push(b);
            }
        }
        msgs
    }

    pub(crate) fn collect_broadcast_notifications(&mut self) {
        let mut done = self.ml_broadcasts.take_finished();
        done.extend(self.serf.broadcasts.take_finished());
        done.extend(self.serf.event_broadcasts.take_finished());
        done.extend(self.serf.query_broadcasts.take_finished());
        for id in done {
            self.broadcast_finished(id);
        }
    }

    // ------------------------------------------------------------ streams

    pub(crate) fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// What seals and opens this node's streams, as a value another task
    /// can use (the agent opens and seals its application streams off the
    /// driver). Call again after a keyring change.
    pub fn stream_codec(&self) -> StreamCodec {
        StreamCodec {
            compress: self.cfg.enable_compression,
            keyring: self.keyring.clone(),
        }
    }

    /// Seal a stream payload: compress (if enabled) and encrypt.
    pub fn seal_stream(&self, plain: Vec<u8>) -> Vec<u8> {
        seal(self.cfg.enable_compression, self.keyring.as_ref(), plain)
    }

    /// An error reply for a stream we could not handle (memberlist's errResp).
    pub fn seal_error(&self, msg: &str) -> Vec<u8> {
        self.seal_stream(Message::Err(msg.to_owned()).encode())
    }

    /// Open a stream frame read by the driver (see
    /// [`nuvol_wire::memberlist::parse_stream`]): check the encryption policy,
    /// decrypt, decompress, decode.
    pub fn open_stream(&mut self, frame: StreamFrame) -> Result<StreamMsg, GossipError> {
        let r = open(self.keyring.as_ref(), frame);
        if r.is_err() {
            self.stats.streams_dropped += 1;
        }
        r
    }

    /// Handle a stream someone opened to us. Returns the bytes to write back.
    pub fn handle_stream(
        &mut self,
        from: SocketAddr,
        msg: StreamMsg,
        now: Duration,
    ) -> Option<Vec<u8>> {
        self.now = now.max(self.now);
        self.stats.streams_in += 1;
        let reply = match msg {
            StreamMsg::PushPull(pp) => {
                let local = self.local_state(pp.join);
                self.merge_remote_state(&pp);
                Some(self.seal_stream(local))
            }
            StreamMsg::Ping(p) => {
                if !p.node.is_empty() && p.node != self.cfg.node_name {
                    tracing::warn!(%from, node = %p.node, "got TCP ping for unexpected node");
                    None
                } else {
                    let ack = Message::Ack(ml::Ack {
                        seq_no: p.seq_no,
                        payload: Vec::new(),
                    });
                    Some(self.seal_stream(ack.encode()))
                }
            }
            StreamMsg::User(b) => {
                self.serf_notify_msg(from, &b);
                None
            }
            StreamMsg::Ack(_) | StreamMsg::Err(_) => None,
        };
        self.collect_broadcast_notifications();
        reply
    }

    /// Start a push/pull with `to` (join or anti-entropy). Returns the token
    /// and the bytes to send; pass the reply to `handle_push_pull_reply`.
    pub fn start_push_pull(
        &mut self,
        to: SocketAddr,
        join: bool,
        ignore_old: bool,
    ) -> (u64, Vec<u8>) {
        let token = self.token();
        self.pending_pp
            .insert(token, PendingPushPull { join, ignore_old });
        tracing::debug!(%to, join, "initiating push/pull sync");
        let state = self.local_state(join);
        (token, self.seal_stream(state))
    }

    /// The reply (or failure) of a push/pull. Returns whether it succeeded.
    pub fn handle_push_pull_reply(
        &mut self,
        token: u64,
        reply: Result<StreamMsg, GossipError>,
        now: Duration,
    ) -> Result<(), GossipError> {
        self.now = now.max(self.now);
        let Some(p) = self.pending_pp.remove(&token) else {
            return Err(GossipError::UnknownQuery);
        };
        let r = match reply {
            Ok(StreamMsg::PushPull(pp)) => {
                if p.join && p.ignore_old {
                    self.serf.event_join_ignore = true;
                }
                self.merge_remote_state(&pp);
                self.serf.event_join_ignore = false;
                if p.join {
                    self.schedule_post_join_push_pull();
                }
                Ok(())
            }
            Ok(StreamMsg::Err(e)) => Err(GossipError::Remote(e)),
            Ok(_) => Err(GossipError::Decode("expected a push/pull reply".into())),
            Err(e) => Err(e),
        };
        self.collect_broadcast_notifications();
        r
    }

    fn local_state(&mut self, join: bool) -> Vec<u8> {
        let nodes = self
            .nodes
            .iter()
            .filter_map(|n| self.node_map.get(n))
            .map(|n| ml::PushNodeState {
                name: n.name.clone(),
                addr: n.addr.ip(),
                port: n.addr.port(),
                meta: n.meta.clone(),
                incarnation: n.incarnation,
                state: match n.state {
                    State::Alive => ml::NodeStateKind::Alive,
                    State::Suspect => ml::NodeStateKind::Suspect,
                    State::Dead => ml::NodeStateKind::Dead,
                    State::Left => ml::NodeStateKind::Left,
                },
                vsn: n.vsn.to_vec(),
            })
            .collect();
        let user_state = self.serf_local_state(join);
        ml::PushPull {
            join,
            nodes,
            user_state,
        }
        .encode()
    }

    fn merge_remote_state(&mut self, pp: &ml::PushPull) {
        // memberlist's verifyProtocol is skipped: every version 1..=5 is
        // understood here and peers that don't understand us refuse us.
        for r in &pp.nodes {
            let vsn = r.vsn.clone();
            match r.state {
                ml::NodeStateKind::Alive => {
                    let a = ml::Alive {
                        incarnation: r.incarnation,
                        node: r.name.clone(),
                        addr: r.addr,
                        port: if r.port == 0 {
                            self.advertise.port()
                        } else {
                            r.port
                        },
                        meta: r.meta.clone(),
                        vsn,
                    };
                    self.alive_node(&a, false);
                }
                ml::NodeStateKind::Left => {
                    let d = ml::Dead {
                        incarnation: r.incarnation,
                        node: r.name.clone(),
                        from: r.name.clone(),
                    };
                    self.dead_node(&d);
                }
                ml::NodeStateKind::Dead | ml::NodeStateKind::Suspect => {
                    let s = ml::Suspect {
                        incarnation: r.incarnation,
                        node: r.name.clone(),
                        from: self.cfg.node_name.clone(),
                    };
                    self.suspect_node(&s);
                }
            }
        }
        if !pp.user_state.is_empty() {
            self.serf_merge_remote_state(&pp.user_state, pp.join);
        }
    }

    /// One anti-entropy exchange soon after a successful join: nuvol's
    /// addition to memberlist, which leaves it to the periodic timer
    /// (staggered over the whole interval, 60 s at 50 nodes on `lan`).
    ///
    /// When many nodes join at once (a community network coming back after a
    /// power cut), their alive broadcasts compete for the same packets, and
    /// once every peer has sent one `retransmit_limit` times a node that
    /// missed it can only learn of that member through push/pull. Without
    /// this, 14 of 100 simulated simultaneous 50-node joins took 4–28 s
    /// instead of about 1 s (and 3 of 20 real ones in `nuvol-bench
    /// --convergence-runs`); serf has the same tail (61–89 s in 3 of 12).
    /// With it, the worst of 100 took 1.9 s. The exchange comes one to two
    /// probe intervals after the join (the jitter keeps a burst of joiners
    /// from syncing at the same instant), when the broadcasts have mostly
    /// been sent, and it repairs both sides: the joiner's view and the peer's.
    fn schedule_post_join_push_pull(&mut self) {
        use rand::Rng;
        if self.cfg.push_pull_interval.is_zero() {
            return;
        }
        let p = self.cfg.probe_interval.max(Duration::from_millis(1));
        let at = self.now + p + self.rng.gen_range(Duration::ZERO..p);
        self.next_push_pull = self.next_push_pull.min(at);
    }

    fn periodic_push_pull(&mut self) {
        use rand::seq::IteratorRandom;
        let me = &self.cfg.node_name;
        let target = self
            .node_map
            .values()
            .filter(|n| &n.name != me && n.state == State::Alive)
            .map(|n| n.addr)
            .choose(&mut self.rng);
        if let Some(to) = target {
            let (token, data) = self.start_push_pull(to, false, false);
            self.out.push(Output::PushPull { token, to, data });
        }
    }

    /// Number of known memberlist nodes (any state), as memberlist's estimate.
    pub(crate) fn est_num_nodes(&self) -> usize {
        self.node_map.len()
    }

    /// Number of alive memberlist nodes.
    pub fn num_alive(&self) -> usize {
        self.node_map
            .values()
            .filter(|n| n.state != State::Dead && n.state != State::Left)
            .count()
    }
}

/// Seals and opens streams as the node's core does, with a snapshot of its
/// keyring (see [`Gossip::stream_codec`]).
#[derive(Clone, Debug)]
pub struct StreamCodec {
    compress: bool,
    keyring: Option<Keyring>,
}

impl StreamCodec {
    /// The codec of a node with this configuration and keyring.
    pub fn new(cfg: &Config, keyring: Option<Keyring>) -> StreamCodec {
        StreamCodec {
            compress: cfg.enable_compression,
            keyring,
        }
    }

    /// Compress (if enabled) and encrypt a stream payload.
    pub fn seal(&self, plain: Vec<u8>) -> Vec<u8> {
        seal(self.compress, self.keyring.as_ref(), plain)
    }

    /// A memberlist error reply.
    pub fn seal_error(&self, msg: &str) -> Vec<u8> {
        self.seal(Message::Err(msg.to_owned()).encode())
    }

    /// Check the encryption policy, decrypt, decompress and decode a frame.
    pub fn open(&self, frame: StreamFrame) -> Result<StreamMsg, GossipError> {
        open(self.keyring.as_ref(), frame)
    }
}

fn seal(compress: bool, keyring: Option<&Keyring>, plain: Vec<u8>) -> Vec<u8> {
    let mut buf = plain;
    if compress {
        buf = ml::compress(&buf);
    }
    if let Some(kr) = keyring {
        let len = nuvol_wire::security::encrypted_overhead(1) + buf.len();
        let header = ml::encrypted_stream_header(len);
        let ct = kr.encrypt_primary(&buf, &header);
        let mut out = header.to_vec();
        out.extend_from_slice(&ct);
        return out;
    }
    buf
}

fn open(keyring: Option<&Keyring>, frame: StreamFrame) -> Result<StreamMsg, GossipError> {
    match frame {
        StreamFrame::Encrypted { aad, ciphertext } => match keyring {
            None => Err(GossipError::UnexpectedEncryption),
            Some(kr) => kr
                .decrypt(&ciphertext, &aad)
                .map_err(|e| GossipError::Decrypt(e.to_string()))
                .and_then(|plain| {
                    ml::parse_stream_plain(&plain).map_err(|e| GossipError::Decode(e.to_string()))
                }),
        },
        StreamFrame::Plain(m) => {
            if keyring.is_some() {
                Err(GossipError::MissingEncryption)
            } else {
                Ok(m)
            }
        }
    }
}
