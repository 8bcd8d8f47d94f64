//! The gossip thread: one OS thread with its own single-threaded tokio
//! runtime, running the driver of the sans-I/O core and the UDP and TCP
//! loops. Nothing else runs there, so load on the REST API, the dashboard or
//! a slow disk cannot delay a probe or its ack.
//!
//! Architecture Invariants:
//! - Only the driver task touches the [`Gossip`] value. Everything else
//!   sends it inputs over the bounded channel `gossip-input`; UDP input that
//!   does not fit is dropped and counted, the socket reader never waits.
//! - The gossip thread never blocks: disk writes go to the persist thread
//!   ([`crate::persist`]); nuvol application streams (a component's
//!   protocol) are handled, and their replies sealed, on the components'
//!   runtime; sends never wait.
//! - When the driver ends, the runtime is dropped and with it every task of
//!   the thread (the accept loop, stream tasks): nothing is left behind.

use crate::chan::{Bus, Channels, Tx};
use crate::cluster::{
    ClusterError, DriverStats, GossipStats, InboundQuery, Input, Op, QueryDone, QueryStream,
    QueryUpdate, Shared, StopReason, TagsSnapshot, APP_STREAM, MAX_STREAM_FRAME,
};
use crate::persist::PersistOp;
use crate::registry::StreamHandlers;
use nuvol_gossip::{Event, Gossip, GossipError, KeyOpResult, Output, QueryHandle, StreamCodec};
use nuvol_wire::memberlist::{parse_stream, StreamFrame, StreamMsg};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Depth of the driver's input channel; UDP packets beyond it are dropped.
const INPUT_DEPTH: usize = 4096;
/// Largest datagram read.
const MAX_UDP: usize = 65536;
/// Concurrent inbound streams accepted (memberlist allows 128 push/pulls).
const MAX_STREAMS: usize = 128;
/// Depth of each query's update channel.
const QUERY_DEPTH: usize = 1024;
/// Depth of the subscriptions to the cluster's events.
/// (Every slot is allocated and written at start: 256 keeps the agent small.)
const EVENT_DEPTH: usize = 256;

/// The gossip sockets, bound before the components are built so that a
/// taken port stops the agent before anything else starts.
pub(crate) struct Sockets {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    pub bound: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot bind {what} on {addr}: {error}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// Bind UDP and TCP on the same address. With port 0 the TCP side may find
/// the port the kernel gave UDP taken: try other ports then.
pub(crate) fn bind(addr: SocketAddr) -> Result<Sockets, BindError> {
    let mut attempt = 0;
    loop {
        match bind_once(addr) {
            Err(BindError::Bind {
                what: "TCP gossip",
                error,
                ..
            }) if addr.port() == 0
                && error.kind() == std::io::ErrorKind::AddrInUse
                && attempt < 16 =>
            {
                attempt += 1;
            }
            r => return r,
        }
    }
}

fn bind_once(addr: SocketAddr) -> Result<Sockets, BindError> {
    let udp = std::net::UdpSocket::bind(addr).map_err(|error| BindError::Bind {
        what: "UDP gossip",
        addr,
        error,
    })?;
    let bound = udp.local_addr().map_err(|error| BindError::Bind {
        what: "UDP gossip",
        addr,
        error,
    })?;
    let tcp = std::net::TcpListener::bind(bound).map_err(|error| BindError::Bind {
        what: "TCP gossip",
        addr: bound,
        error,
    })?;
    for r in [udp.set_nonblocking(true), tcp.set_nonblocking(true)] {
        r.map_err(|error| BindError::Bind {
            what: "gossip",
            addr: bound,
            error,
        })?;
    }
    Ok(Sockets { udp, tcp, bound })
}

/// The driver's side of a [`crate::Cluster`], created with it and consumed
/// by [`launch`].
pub(crate) struct Seed {
    rx: mpsc::Receiver<Input>,
    stop_tx: watch::Sender<Option<StopReason>>,
    codec_tx: watch::Sender<StreamCodec>,
}

pub(crate) struct SharedParts {
    pub name: String,
    pub advertise: SocketAddr,
    pub bound: SocketAddr,
    pub tcp_timeout: Duration,
    pub codec: StreamCodec,
    pub previous: Option<crate::snapshot::Previous>,
}

/// Create the channels between the cluster handle and the driver.
pub(crate) fn prepare(parts: SharedParts, channels: &Channels) -> (Shared, Seed) {
    let (tx, rx) = channels.mpsc::<Input>("gossip-input", INPUT_DEPTH);
    let (stop_tx, stopped) = watch::channel(None);
    let (codec_tx, codec) = watch::channel(parts.codec);
    let shared = Shared {
        tx,
        name: parts.name,
        advertise: parts.advertise,
        bound: parts.bound,
        tcp_timeout: parts.tcp_timeout,
        codec,
        member_events: channels.broadcast("member-events", EVENT_DEPTH),
        events: channels.broadcast("events", EVENT_DEPTH),
        stopped,
        previous: parts.previous,
        owned: Default::default(),
        stats: Arc::new(DriverStats::default()),
        query_updates: channels.counters("query-updates", QUERY_DEPTH),
        leave_hooks: Default::default(),
    };
    (
        shared,
        Seed {
            rx,
            stop_tx,
            codec_tx,
        },
    )
}

/// What the driver needs besides the core.
pub(crate) struct Launch {
    pub gossip: Gossip,
    pub sockets: Sockets,
    pub persist: Option<Tx<PersistOp>>,
    pub streams: StreamHandlers,
    pub queries: HashMap<String, Tx<InboundQuery>>,
    /// The components' runtime, where application streams are handled.
    pub app_runtime: tokio::runtime::Handle,
}

/// Start the gossip thread. It ends after [`Op::Stop`], or when every
/// handle to the cluster is gone.
pub(crate) fn launch(
    shared: &Arc<Shared>,
    seed: Seed,
    l: Launch,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("nuvol-gossip".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the gossip runtime");
                    let _ = seed.stop_tx.send(Some(StopReason::Core(format!(
                        "cannot start the gossip runtime: {e}"
                    ))));
                    return;
                }
            };
            rt.block_on(run(shared, seed, l));
            // Dropping the runtime ends the UDP and TCP loops and every
            // stream task.
        })
}

async fn run(shared: Arc<Shared>, seed: Seed, l: Launch) {
    let udp = match UdpSocket::from_std(l.sockets.udp) {
        Ok(u) => Arc::new(u),
        Err(e) => {
            let _ = seed
                .stop_tx
                .send(Some(StopReason::Core(format!("gossip UDP socket: {e}"))));
            return;
        }
    };
    let tcp = match TcpListener::from_std(l.sockets.tcp) {
        Ok(t) => t,
        Err(e) => {
            let _ = seed
                .stop_tx
                .send(Some(StopReason::Core(format!("gossip TCP socket: {e}"))));
            return;
        }
    };
    let timeout = l.gossip.config().tcp_timeout;
    let cfg = l.gossip.config().clone();
    tokio::spawn(udp_loop(udp.clone(), shared.tx.clone()));
    tokio::spawn(tcp_loop(
        tcp,
        shared.clone(),
        Arc::new(l.streams),
        l.app_runtime,
        timeout,
    ));
    let tags_version = 1;
    let driver = Driver {
        gossip: l.gossip,
        start: Instant::now(),
        udp,
        tx: shared.tx.clone(),
        member_events: shared.member_events.clone(),
        events: shared.events.clone(),
        coalescer: nuvol_gossip::coalesce::Coalescer::new(
            cfg.coalesce_period,
            cfg.quiescent_period,
            cfg.user_coalesce_period,
            cfg.user_quiescent_period,
        ),
        queries: HashMap::new(),
        key_ops: HashMap::new(),
        leave_waiters: Vec::new(),
        persist: l.persist,
        tags_version,
        owned: shared.owned.clone(),
        query_handlers: l.queries,
        codec_tx: seed.codec_tx,
        stop_tx: seed.stop_tx,
        stats: shared.stats.clone(),
        query_counters: shared.query_updates.clone(),
    };
    drop(shared);
    driver.run(seed.rx).await;
}

async fn udp_loop(udp: Arc<UdpSocket>, tx: Tx<Input>) {
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        match udp.recv_from(&mut buf).await {
            Ok((n, from)) => {
                // A full queue drops the packet (counted on `gossip-input`).
                if tx.try_send(Input::Packet(from, buf[..n].to_vec())).is_err() && tx.is_closed() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "UDP receive error");
                if tx.is_closed() {
                    return;
                }
            }
        }
    }
}

async fn tcp_loop(
    tcp: TcpListener,
    shared: Arc<Shared>,
    streams: Arc<StreamHandlers>,
    app_runtime: tokio::runtime::Handle,
    timeout: Duration,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS));
    loop {
        let (s, from) = match tcp.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            DriverStats::inc(&shared.stats.stream_errors);
            tracing::error!(%from, "too many concurrent streams");
            continue;
        };
        let shared = shared.clone();
        let streams = streams.clone();
        let app_runtime = app_runtime.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_stream(s, from, shared, streams, app_runtime, timeout).await;
        });
    }
}

async fn serve_stream(
    mut s: TcpStream,
    from: SocketAddr,
    shared: Arc<Shared>,
    streams: Arc<StreamHandlers>,
    app_runtime: tokio::runtime::Handle,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    let frame = match read_frame(&mut s, deadline).await {
        Ok(f) => f,
        Err(e) => {
            DriverStats::inc(&shared.stats.stream_errors);
            tracing::debug!(%from, error = %e, "dropping stream");
            return;
        }
    };
    let codec = shared.codec.borrow().clone();
    let reply = match codec.open(frame) {
        Ok(StreamMsg::User(b)) if b.first() == Some(&APP_STREAM) => {
            // A component's protocol: handled, and its reply sealed, on the
            // components' runtime, never on this thread.
            let handler = b.get(1).and_then(|p| streams.get(p)).cloned();
            let job = app_runtime.spawn(async move {
                let out = match handler {
                    Some(h) => match h.handle(from, b).await {
                        Ok(reply) => codec.seal(StreamMsg::User(reply.as_ref().clone()).encode()),
                        Err(e) => codec.seal_error(&e.to_string()),
                    },
                    None => codec.seal_error("no handler for this stream protocol"),
                };
                Some(out)
            });
            job.await.ok().flatten()
        }
        Ok(msg) => {
            let (rtx, rrx) = oneshot::channel();
            if shared
                .tx
                .send(Input::Stream {
                    from,
                    msg,
                    reply: rtx,
                })
                .await
                .is_err()
            {
                return;
            }
            rrx.await.ok().flatten()
        }
        Err(e) => {
            DriverStats::inc(&shared.stats.streams_dropped);
            tracing::error!(%from, error = %e, "failed to receive stream");
            Some(codec.seal_error(&e.to_string()))
        }
    };
    if let Some(reply) = reply {
        let _ = tokio::time::timeout_at(deadline, s.write_all(&reply)).await;
        let _ = s.shutdown().await;
    }
}

/// Connect, write `data`, read one stream frame back.
pub(crate) async fn stream_exchange(
    addr: SocketAddr,
    data: &[u8],
    timeout: Duration,
) -> Result<StreamFrame, String> {
    let deadline = Instant::now() + timeout;
    let mut s = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| "connection timed out".to_string())?
        .map_err(|e| e.to_string())?;
    tokio::time::timeout_at(deadline, s.write_all(data))
        .await
        .map_err(|_| "write timed out".to_string())?
        .map_err(|e| e.to_string())?;
    read_frame(&mut s, deadline).await
}

async fn read_frame(s: &mut TcpStream, deadline: Instant) -> Result<StreamFrame, String> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match parse_stream(&buf) {
            Ok(Some((f, _))) => return Ok(f),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .map_err(|_| "read timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "connection closed".into()
            } else {
                "connection closed mid-message".into()
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_STREAM_FRAME {
            return Err(format!("stream frame larger than {MAX_STREAM_FRAME} bytes"));
        }
    }
}

/// A query this node started, until its deadline.
struct PendingQuery {
    updates: mpsc::Sender<QueryUpdate>,
    done: oneshot::Sender<QueryDone>,
    dropped: u64,
}

impl PendingQuery {
    fn new() -> (PendingQuery, QueryStream) {
        let (utx, urx) = mpsc::channel(QUERY_DEPTH);
        let (dtx, drx) = oneshot::channel();
        (
            PendingQuery {
                updates: utx,
                done: dtx,
                dropped: 0,
            },
            QueryStream {
                updates: urx,
                done: drx,
            },
        )
    }

    /// Queue an ack or response without waiting; one that does not fit is
    /// counted (here, for the done record, and on `query-updates`).
    fn push(&mut self, u: QueryUpdate, counters: &crate::chan::ChannelCounters) {
        match self.updates.try_send(u) {
            Ok(()) => counters.sent(),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                counters.dropped(1);
            }
            // The reader went away; nothing to tell.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// The deadline passed: the stream ends after what is queued, then
    /// `done` says how much did not fit. Never dropped.
    fn finish(self) {
        if self.dropped > 0 {
            tracing::warn!(
                dropped = self.dropped,
                "query updates dropped: the reader was too slow"
            );
        }
        let _ = self.done.send(QueryDone {
            dropped: self.dropped,
        });
    }
}

struct Driver {
    gossip: Gossip,
    start: Instant,
    udp: Arc<UdpSocket>,
    tx: Tx<Input>,
    member_events: Bus<Event>,
    events: Bus<Event>,
    coalescer: nuvol_gossip::coalesce::Coalescer,
    queries: HashMap<QueryHandle, PendingQuery>,
    key_ops: HashMap<QueryHandle, oneshot::Sender<KeyOpResult>>,
    leave_waiters: Vec<oneshot::Sender<()>>,
    persist: Option<Tx<PersistOp>>,
    tags_version: u64,
    owned: Arc<std::sync::OnceLock<HashMap<String, &'static str>>>,
    query_handlers: HashMap<String, Tx<InboundQuery>>,
    codec_tx: watch::Sender<StreamCodec>,
    stop_tx: watch::Sender<Option<StopReason>>,
    stats: Arc<DriverStats>,
    query_counters: crate::chan::ChannelCounters,
}

impl Driver {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn persist(&self, op: PersistOp) {
        if let Some(p) = &self.persist {
            // Never waits: a full queue drops the write (counted on `persist`).
            if p.try_send(op).is_err() {
                tracing::warn!("disk writer queue full: a snapshot or file write was dropped");
            }
        }
    }

    fn owned(&self) -> &HashMap<String, &'static str> {
        static EMPTY: std::sync::OnceLock<HashMap<String, &'static str>> =
            std::sync::OnceLock::new();
        self.owned
            .get()
            .unwrap_or_else(|| EMPTY.get_or_init(HashMap::new))
    }

    fn user_tags(&self) -> BTreeMap<String, String> {
        let owned = self.owned();
        self.gossip
            .tags()
            .iter()
            .filter(|(k, _)| !owned.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn set_tags(&mut self, tags: BTreeMap<String, String>) -> Result<bool, ClusterError> {
        if &tags == self.gossip.tags() {
            return Ok(false);
        }
        self.gossip.set_tags(tags)?;
        self.tags_version += 1;
        Ok(true)
    }

    fn route(&mut self) {
        for o in self.gossip.drain_outputs() {
            match o {
                Output::Packet { to, data } => {
                    if let Err(e) = self.udp.try_send_to(&data, to) {
                        DriverStats::inc(&self.stats.udp_send_errors);
                        tracing::debug!(%to, error = %e, "UDP send failed");
                    }
                }
                Output::PushPull { token, to, data } => {
                    let tx = self.tx.clone();
                    let timeout = self.gossip.config().tcp_timeout;
                    tokio::spawn(async move {
                        let result = stream_exchange(to, &data, timeout).await;
                        if let Err(e) = &result {
                            tracing::debug!(%to, error = %e, "push/pull failed");
                        }
                        let _ = tx
                            .send(Input::PushPullReply {
                                token,
                                result,
                                done: None,
                            })
                            .await;
                    });
                }
                Output::TcpPing {
                    seq,
                    to,
                    data,
                    deadline,
                } => {
                    let tx = self.tx.clone();
                    let remaining = deadline.saturating_sub(self.now());
                    tokio::spawn(async move {
                        let contacted = match stream_exchange(to, &data, remaining).await {
                            Ok(StreamFrame::Plain(StreamMsg::Ack(a))) => a.seq_no == seq,
                            // Encrypted acks are checked loosely: a reply at all means contact.
                            Ok(StreamFrame::Encrypted { .. }) => true,
                            _ => false,
                        };
                        let _ = tx.send(Input::TcpPing { seq, contacted }).await;
                    });
                }
                Output::Event(ev) => self.event(ev),
                Output::QueryAck { handle, from } => {
                    self.query_update(handle, QueryUpdate::Ack(from))
                }
                Output::QueryResponse {
                    handle,
                    from,
                    payload,
                } => self.query_update(handle, QueryUpdate::Response { from, payload }),
                Output::QueryDone { handle } => {
                    if let Some(q) = self.queries.remove(&handle) {
                        q.finish();
                    }
                }
                Output::KeyOpDone { handle, result } => {
                    if let Some(tx) = self.key_ops.remove(&handle) {
                        let _ = tx.send(result);
                    }
                }
                Output::KeyringChanged => {
                    let codec = self.gossip.stream_codec();
                    self.codec_tx.send_replace(codec);
                    if let Some(kr) = self.gossip.keyring() {
                        self.persist(PersistOp::Keyring(kr.to_file_json()));
                    }
                }
                Output::LeaveDone => {
                    for w in self.leave_waiters.drain(..) {
                        let _ = w.send(());
                    }
                }
                Output::Shutdown { reason } => {
                    tracing::error!(%reason, "agent shutting down");
                    self.stop_tx.send_replace(Some(StopReason::Core(reason)));
                }
                Output::SnapshotAlive { name, addr } => self.persist(PersistOp::Alive(name, addr)),
                Output::SnapshotNotAlive { name } => self.persist(PersistOp::NotAlive(name)),
            }
        }
    }

    fn query_update(&mut self, handle: QueryHandle, u: QueryUpdate) {
        if let Some(q) = self.queries.get_mut(&handle) {
            q.push(u, &self.query_counters);
        }
    }

    fn event(&mut self, ev: Event) {
        if let Event::Query {
            id,
            name,
            payload,
            source_node,
            ..
        } = &ev
        {
            if let Some(h) = self.query_handlers.get(name) {
                let _ = h.try_send(InboundQuery {
                    id: id.0,
                    name: name.clone(),
                    payload: payload.clone(),
                    source_node: source_node.clone(),
                });
                return;
            }
        }
        let now = self.now();
        if let Event::Member { .. } = &ev {
            // In-process consumers (the catalog) see member changes at
            // once; coalescing is for handlers and RPC streams, as in
            // serf's agent.
            self.member_events.send(ev.clone());
        }
        if let Some(ev) = self.coalescer.push(ev, now) {
            self.events.send(ev);
        }
    }

    fn op(&mut self, op: Op) -> Option<oneshot::Sender<()>> {
        match op {
            Op::Members(r) => {
                let _ = r.send(self.gossip.members());
            }
            Op::LocalMember(r) => {
                let _ = r.send(self.gossip.local_member());
            }
            Op::Tags(r) => {
                let _ = r.send(TagsSnapshot {
                    version: self.tags_version,
                    tags: self.gossip.tags().clone(),
                });
            }
            Op::SetUserTags { set, delete, reply } => {
                let mut tags = self.gossip.tags().clone();
                for d in &delete {
                    tags.remove(d);
                }
                tags.extend(set);
                match self.set_tags(tags) {
                    // Answered once the tags file has them (the disk
                    // writer replies; this thread never waits).
                    Ok(true) if self.persist.is_some() => {
                        let (done, written) = oneshot::channel();
                        self.persist(PersistOp::Tags(self.user_tags(), Some(done)));
                        tokio::spawn(async move {
                            let _ = written.await;
                            let _ = reply.send(Ok(()));
                        });
                    }
                    r => {
                        let _ = reply.send(r.map(|_| ()));
                    }
                }
            }
            Op::SetOwnedTags {
                owner,
                version,
                values,
                reply,
            } => {
                let r = if version != self.tags_version {
                    Err(ClusterError::TagsChanged)
                } else {
                    let owned = self.owned();
                    let mut tags: BTreeMap<String, String> = self
                        .gossip
                        .tags()
                        .iter()
                        .filter(|(k, _)| owned.get(*k) != Some(&owner))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    tags.extend(values);
                    self.set_tags(tags).map(|_| ())
                };
                let _ = reply.send(r);
            }
            Op::StartPushPull {
                addr,
                join,
                ignore_old,
                reply,
            } => {
                let _ = reply.send(self.gossip.start_push_pull(addr, join, ignore_old));
            }
            Op::AfterJoin => self.gossip.after_join(),
            Op::Leave(reply) => {
                let (tx, rx) = oneshot::channel();
                let r = self.gossip.leave();
                if r.is_ok() {
                    let (ack, _) = oneshot::channel();
                    self.persist(PersistOp::Leave(ack));
                    self.leave_waiters.push(tx);
                }
                let _ = reply.send(r.map(|_| rx));
            }
            Op::UserEvent {
                name,
                payload,
                coalesce,
                reply,
            } => {
                let _ = reply.send(self.gossip.user_event(&name, &payload, coalesce));
            }
            Op::ForceLeave { node, prune, reply } => {
                let _ = reply.send(self.gossip.force_leave(&node, prune));
            }
            Op::Query {
                name,
                payload,
                params,
                reply,
            } => {
                let r = self.gossip.query(&name, payload, params).map(|h| {
                    let (pending, stream) = PendingQuery::new();
                    self.queries.insert(h, pending);
                    stream
                });
                let _ = reply.send(r);
            }
            Op::Respond { id, payload, reply } => {
                let _ = reply.send(
                    self.gossip
                        .respond(nuvol_gossip::InboundQueryId(id), payload),
                );
            }
            Op::KeyOperation { op, key, reply } => {
                let r = if self.gossip.keyring().is_none() {
                    Err(GossipError::NoKeyring)
                } else {
                    self.gossip.key_op(op, &key).map(|h| {
                        let (tx, rx) = oneshot::channel();
                        self.key_ops.insert(h, tx);
                        rx
                    })
                };
                let _ = reply.send(r);
            }
            Op::Coordinate { node, reply } => {
                let _ = reply.send(self.gossip.coordinate(&node));
            }
            Op::Coordinates(reply) => {
                let _ = reply.send(self.gossip.coordinates());
            }
            Op::Stats { drain_rtts, reply } => {
                let rtts = if drain_rtts {
                    self.gossip.stats.take_rtts()
                } else {
                    Vec::new()
                };
                let g = &self.gossip;
                let (members, failed, left) = g.counts();
                let (iq, eq, qq) = g.queue_depths();
                let (c, e, q) = g.clocks();
                let mut core = g.stats.clone();
                core.recent_rtts = rtts;
                use std::sync::atomic::Ordering::Relaxed;
                let _ = reply.send(GossipStats {
                    name: g.name().to_owned(),
                    members,
                    failed,
                    left,
                    health_score: g.health_score(),
                    member_time: c,
                    event_time: e,
                    query_time: q,
                    intent_queue: iq,
                    event_queue: eq,
                    query_queue: qq,
                    encrypted: g.encryption_enabled(),
                    core,
                    udp_send_errors: self.stats.udp_send_errors.load(Relaxed),
                    stream_errors: self.stats.stream_errors.load(Relaxed),
                    streams_dropped: self.stats.streams_dropped.load(Relaxed),
                });
            }
            Op::Shutdown(reason) => {
                self.stop_tx.send_replace(Some(reason));
            }
            Op::Stop(ack) => return Some(ack),
        }
        None
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut clock_save = tokio::time::interval(Duration::from_secs(1));
        let mut saved_clocks = (0, 0, 0);
        let stop = loop {
            let mut next = self.gossip.poll_timeout();
            if let Some(t) = self.coalescer.poll_timeout() {
                next = next.min(t);
            }
            let wake = self.start + next;
            let mut stop = None;
            tokio::select! {
                input = rx.recv() => {
                    let Some(input) = input else { break None };
                    let now = self.now();
                    match input {
                        Input::Packet(from, data) => self.gossip.handle_packet(from, &data, now),
                        Input::Stream { from, msg, reply } => {
                            let _ = reply.send(self.gossip.handle_stream(from, msg, now));
                        }
                        Input::PushPullReply { token, result, done } => {
                            let opened = result
                                .map_err(GossipError::Transport)
                                .and_then(|f| self.gossip.open_stream(f));
                            let r = self.gossip.handle_push_pull_reply(token, opened, now);
                            if let Some(d) = done {
                                let _ = d.send(r);
                            }
                        }
                        Input::TcpPing { seq, contacted } => {
                            self.gossip.handle_tcp_ping_result(seq, contacted, now)
                        }
                        Input::Op(op) => stop = self.op(op),
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = self.now();
                    self.gossip.handle_timeout(now);
                    for ev in self.coalescer.poll(now) {
                        self.events.send(ev);
                    }
                }
                _ = clock_save.tick() => {
                    // Only when they moved: no wakeup of the disk thread
                    // for nothing.
                    let clocks = self.gossip.clocks();
                    if clocks != saved_clocks {
                        saved_clocks = clocks;
                        self.persist(PersistOp::Clocks(clocks.0, clocks.1, clocks.2));
                    }
                }
            }
            self.route();
            if stop.is_some() {
                break stop;
            }
        };
        // Make the snapshot durable before the thread ends.
        let (tx, rx_sync) = oneshot::channel();
        self.persist(PersistOp::Sync(tx));
        drop(self.persist.take());
        let _ = tokio::time::timeout(Duration::from_secs(5), rx_sync).await;
        if let Some(ack) = stop {
            let _ = ack.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn query_updates_that_do_not_fit_are_counted_and_done_always_arrives() {
        let channels = Channels::default();
        let counters = channels.counters("query-updates", QUERY_DEPTH);
        let (mut q, mut stream) = PendingQuery::new();
        // A reader that does not read: the queue fills, the rest is counted.
        for i in 0..QUERY_DEPTH + 5 {
            q.push(QueryUpdate::Ack(format!("n{i}")), &counters);
        }
        q.finish();
        let mut got = 0;
        while let Some(u) = stream.updates.recv().await {
            assert_eq!(u, QueryUpdate::Ack(format!("n{got}")), "in order");
            got += 1;
        }
        assert_eq!(got, QUERY_DEPTH);
        assert_eq!(stream.done.await.unwrap(), QueryDone { dropped: 5 });
        assert_eq!(counters.dropped_total(), 5);
    }
}
