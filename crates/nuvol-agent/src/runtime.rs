//! The tokio driver of the gossip core. One task owns the [`Gossip`] value and
//! is the only one to touch it; sockets, streams, handlers and RPC clients talk
//! to it through one bounded channel. Its outputs become UDP sends, spawned
//! stream tasks, events for subscribers and replies to waiting callers.

use crate::config::AgentConfig;
use crate::snapshot::Snapshot;
use nuvol_gossip::{
    Config as CoreConfig, Event, Gossip, GossipError, KeyOp, KeyOpResult, Output, QueryHandle,
    QueryParams,
};
use nuvol_wire::memberlist::{parse_stream, StreamFrame, StreamMsg};
use nuvol_wire::security::Keyring;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

/// Depth of the core's input channel; UDP packets beyond it are dropped and counted.
const INPUT_DEPTH: usize = 4096;
/// Largest datagram we read.
const MAX_UDP: usize = 65536;
/// Concurrent inbound streams accepted (memberlist allows 128 push/pulls).
const MAX_STREAMS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("failed to bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid keyring: {0}")]
    Keyring(String),
    #[error(transparent)]
    Gossip(#[from] GossipError),
    #[error("the agent has stopped")]
    Stopped,
    #[error("{0}")]
    Join(String),
    #[error("{0}")]
    Other(String),
}

/// What a running query reports to whoever started it.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryUpdate {
    Ack(String),
    Response { from: String, payload: Vec<u8> },
    Done,
}

type Job = Box<dyn FnOnce(&mut CoreCtx) + Send>;

enum Input {
    Packet(SocketAddr, Vec<u8>),
    Stream {
        from: SocketAddr,
        frame: StreamFrame,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    PushPullReply {
        token: u64,
        result: Result<StreamFrame, String>,
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
    TcpPing {
        seq: u32,
        contacted: bool,
    },
    Job(Job),
}

/// Counters kept by the driver (the core keeps its own in `Gossip::stats`).
#[derive(Debug, Default)]
pub struct DriverStats {
    pub udp_dropped_queue_full: AtomicU64,
    pub udp_send_errors: AtomicU64,
    pub stream_errors: AtomicU64,
}

/// State owned by the core task.
pub struct CoreCtx {
    pub gossip: Gossip,
    start: Instant,
    queries: HashMap<QueryHandle, mpsc::Sender<QueryUpdate>>,
    key_ops: HashMap<QueryHandle, oneshot::Sender<KeyOpResult>>,
    leave_waiters: Vec<oneshot::Sender<()>>,
    snapshot: Option<Snapshot>,
    keyring_file: Option<PathBuf>,
    tags_file: Option<PathBuf>,
    shutdown: Option<String>,
    /// Answers nuvol application streams (see [`APP_STREAM`]).
    app_stream: Option<AppStreamHandler>,
}

/// First byte of the payload of a memberlist user-message stream that
/// belongs to nuvol itself (the catalog's full-list pull) rather than serf.
pub const APP_STREAM: u8 = nuvol_catalog::sync::APP_STREAM;

/// Produces the reply payload to a nuvol application stream (`None`: no reply).
pub type AppStreamHandler = Arc<dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync>;

/// Largest stream frame read from a peer.
const MAX_STREAM_FRAME: usize = 16 * 1024 * 1024;

impl CoreCtx {
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A cheap, cloneable handle to the running agent.
#[derive(Clone)]
pub struct AgentHandle {
    tx: mpsc::Sender<Input>,
    events: broadcast::Sender<Event>,
    raw_members: broadcast::Sender<Event>,
    pub config: Arc<AgentConfig>,
    pub stats: Arc<DriverStats>,
    stopped: tokio::sync::watch::Receiver<Option<String>>,
}

impl AgentHandle {
    /// Run `f` on the core task and return its result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut CoreCtx) -> R + Send + 'static,
    ) -> Result<R, AgentError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |ctx| {
            let _ = tx.send(f(ctx));
        });
        self.tx
            .send(Input::Job(job))
            .await
            .map_err(|_| AgentError::Stopped)?;
        rx.await.map_err(|_| AgentError::Stopped)
    }

    /// Answer nuvol application streams with `h` (replaces any earlier one).
    pub async fn set_app_stream_handler(&self, h: AppStreamHandler) -> Result<(), AgentError> {
        self.call(move |c| c.app_stream = Some(h)).await
    }

    /// Send a nuvol application stream to the node at `to` (its gossip
    /// address) and return the reply payload. Compressed and encrypted as
    /// push/pull is.
    pub async fn app_request(
        &self,
        to: SocketAddr,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, AgentError> {
        let data = self
            .call(move |c| c.gossip.seal_stream(StreamMsg::User(payload).encode()))
            .await?;
        let timeout = self.call(|c| c.gossip.config().tcp_timeout).await?;
        let frame = stream_exchange(to, &data, timeout)
            .await
            .map_err(|e| AgentError::Other(format!("{to}: {e}")))?;
        match self.call(move |c| c.gossip.open_stream(frame)).await?? {
            StreamMsg::User(b) => Ok(b),
            StreamMsg::Err(e) => Err(AgentError::Other(format!("{to}: remote error: {e}"))),
            _ => Err(AgentError::Other(format!("{to}: unexpected reply"))),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Member events as they happen, before serf's coalescing (which
    /// delays them by at least the quiescent period).
    pub fn subscribe_members(&self) -> broadcast::Receiver<Event> {
        self.raw_members.subscribe()
    }

    pub async fn members(&self) -> Result<Vec<nuvol_gossip::Member>, AgentError> {
        self.call(|c| c.gossip.members()).await
    }

    /// Join the cluster through `addrs` (serf's Join). Returns how many were reached.
    pub async fn join(&self, addrs: &[String], replay: bool) -> Result<usize, AgentError> {
        let mut ok = 0;
        let mut last_err = String::new();
        for a in addrs {
            let resolved = match resolve(a).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(addr = %a, error = %e, "failed to resolve join address");
                    last_err = e;
                    continue;
                }
            };
            for addr in resolved {
                match self.push_pull(addr, true, !replay).await {
                    Ok(()) => {
                        ok += 1;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(%addr, error = %e, "failed to join");
                        last_err = format!("failed to join {addr}: {e}");
                    }
                }
            }
        }
        if ok == 0 {
            return Err(AgentError::Join(if last_err.is_empty() {
                "no addresses to join".into()
            } else {
                last_err
            }));
        }
        self.call(|c| c.gossip.after_join()).await?;
        Ok(ok)
    }

    async fn push_pull(
        &self,
        addr: SocketAddr,
        join: bool,
        ignore_old: bool,
    ) -> Result<(), String> {
        let (token, data, timeout) = self
            .call(move |c| {
                let (t, d) = c.gossip.start_push_pull(addr, join, ignore_old);
                (t, d, c.gossip.config().tcp_timeout)
            })
            .await
            .map_err(|e| e.to_string())?;
        let result = stream_exchange(addr, &data, timeout).await;
        let (done_tx, done_rx) = oneshot::channel();
        self.tx
            .send(Input::PushPullReply {
                token,
                result,
                done: Some(done_tx),
            })
            .await
            .map_err(|_| "agent stopped".to_string())?;
        done_rx.await.map_err(|_| "agent stopped".to_string())?
    }

    /// Leave gracefully; resolves when the leave has propagated.
    pub async fn leave(&self) -> Result<(), AgentError> {
        let rx = self
            .call(|c| {
                let (tx, rx) = oneshot::channel();
                if let Some(s) = c.snapshot.as_mut() {
                    if let Err(e) = s.leave() {
                        tracing::error!(error = %e, "failed to record leave in snapshot");
                    }
                }
                let r = c.gossip.leave();
                if r.is_ok() {
                    c.leave_waiters.push(tx);
                }
                r.map(|_| rx)
            })
            .await??;
        rx.await.map_err(|_| AgentError::Stopped)
    }

    pub async fn set_tags(
        &self,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<(), AgentError> {
        self.modify_tags(move |tags| {
            for d in &delete {
                tags.remove(d);
            }
            tags.extend(set);
        })
        .await
    }

    /// Change this node's tags with `f`, atomically on the core task; a
    /// change is gossiped (and written to the tags file) only if the tags
    /// differ. Fails, changing nothing, when the result is over the limit.
    pub async fn modify_tags<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, String>) -> R + Send + 'static,
    ) -> Result<R, AgentError> {
        self.call(move |c| {
            let mut tags = c.gossip.tags().clone();
            let r = f(&mut tags);
            if &tags == c.gossip.tags() {
                return Ok(r);
            }
            c.gossip.set_tags(tags.clone())?;
            if let Some(tf) = &c.tags_file {
                if let Err(e) = crate::config::write_tags_file(tf, &tags) {
                    tracing::error!(error = %e, "failed to write tags file");
                }
            }
            Ok::<R, AgentError>(r)
        })
        .await?
    }

    pub async fn user_event(
        &self,
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
    ) -> Result<(), AgentError> {
        self.call(move |c| c.gossip.user_event(&name, &payload, coalesce))
            .await?
            .map_err(Into::into)
    }

    pub async fn force_leave(&self, node: String, prune: bool) -> Result<(), AgentError> {
        self.call(move |c| c.gossip.force_leave(&node, prune))
            .await?
            .map_err(Into::into)
    }

    /// Start a query; updates arrive on the returned channel until `Done`.
    pub async fn query(
        &self,
        name: String,
        payload: Vec<u8>,
        params: QueryParams,
    ) -> Result<mpsc::Receiver<QueryUpdate>, AgentError> {
        self.call(move |c| {
            let (tx, rx) = mpsc::channel(1024);
            let h = c.gossip.query(&name, payload, params)?;
            c.queries.insert(h, tx);
            Ok::<_, AgentError>(rx)
        })
        .await?
    }

    pub async fn respond(&self, id: u64, payload: Vec<u8>) -> Result<(), AgentError> {
        self.call(move |c| c.gossip.respond(nuvol_gossip::InboundQueryId(id), payload))
            .await?
            .map_err(Into::into)
    }

    pub async fn key_op(&self, op: KeyOp, key: Vec<u8>) -> Result<KeyOpResult, AgentError> {
        let rx = self
            .call(move |c| {
                if c.gossip.keyring().is_none() {
                    return Err(AgentError::Gossip(GossipError::NoKeyring));
                }
                let (tx, rx) = oneshot::channel();
                let h = c.gossip.key_op(op, &key)?;
                c.key_ops.insert(h, tx);
                Ok(rx)
            })
            .await??;
        rx.await.map_err(|_| AgentError::Stopped)
    }

    /// Stop the agent (after a leave through RPC, for instance).
    pub async fn shutdown(&self, reason: &str) {
        let r = reason.to_owned();
        let _ = self.call(move |c| c.shutdown = Some(r)).await;
    }

    /// Resolves when the agent stops on its own (e.g. name conflict, or a
    /// leave requested over RPC, reason "left").
    pub async fn stopped(&self) -> String {
        let mut rx = self.stopped.clone();
        loop {
            if let Some(r) = rx.borrow().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                return "agent stopped".into();
            }
        }
    }
}

/// Resolve `host[:port]` (default port 7946) to addresses.
pub async fn resolve(a: &str) -> Result<Vec<SocketAddr>, String> {
    // serf accepts "name/addr" from reconnect; strip a name prefix.
    let a = a.rsplit('/').next().unwrap_or(a);
    if let Ok(sa) = crate::config::parse_addr(a, crate::config::DEFAULT_BIND_PORT) {
        return Ok(vec![sa]);
    }
    let with_port = if a.contains(':') {
        a.to_owned()
    } else {
        format!("{a}:{}", crate::config::DEFAULT_BIND_PORT)
    };
    tokio::net::lookup_host(with_port)
        .await
        .map(|i| i.collect())
        .map_err(|e| format!("cannot resolve {a:?}: {e}"))
}

/// Connect, write `data`, read one stream frame back.
async fn stream_exchange(
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

struct Driver {
    ctx: CoreCtx,
    udp: Arc<UdpSocket>,
    tx: mpsc::Sender<Input>,
    events: broadcast::Sender<Event>,
    raw_members: broadcast::Sender<Event>,
    handlers: Option<mpsc::Sender<Event>>,
    stats: Arc<DriverStats>,
    stop_tx: tokio::sync::watch::Sender<Option<String>>,
    coalescer: nuvol_gossip::coalesce::Coalescer,
}

impl Driver {
    fn route(&mut self) {
        for o in self.ctx.gossip.drain_outputs() {
            match o {
                Output::Packet { to, data } => {
                    if let Err(e) = self.udp.try_send_to(&data, to) {
                        self.stats.udp_send_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%to, error = %e, "UDP send failed");
                    }
                }
                Output::PushPull { token, to, data } => {
                    let tx = self.tx.clone();
                    let timeout = self.ctx.gossip.config().tcp_timeout;
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
                    let remaining = deadline.saturating_sub(self.ctx.now());
                    tokio::spawn(async move {
                        let contacted = match stream_exchange(to, &data, remaining).await {
                            Ok(StreamFrame::Plain(nuvol_wire::memberlist::StreamMsg::Ack(a))) => {
                                a.seq_no == seq
                            }
                            // Encrypted acks are checked loosely: a reply at all means contact.
                            Ok(StreamFrame::Encrypted { .. }) => true,
                            _ => false,
                        };
                        let _ = tx.send(Input::TcpPing { seq, contacted }).await;
                    });
                }
                Output::Event(ev) => {
                    let now = self.ctx.now();
                    if let Event::Member { .. } = &ev {
                        // In-process consumers (the catalog) see member
                        // changes at once; coalescing is for handlers and
                        // RPC streams, as in serf's agent.
                        let _ = self.raw_members.send(ev.clone());
                    }
                    if let Some(ev) = self.coalescer.push(ev, now) {
                        self.dispatch(ev);
                    }
                }
                Output::QueryAck { handle, from } => {
                    if let Some(tx) = self.ctx.queries.get(&handle) {
                        let _ = tx.try_send(QueryUpdate::Ack(from));
                    }
                }
                Output::QueryResponse {
                    handle,
                    from,
                    payload,
                } => {
                    if let Some(tx) = self.ctx.queries.get(&handle) {
                        let _ = tx.try_send(QueryUpdate::Response { from, payload });
                    }
                }
                Output::QueryDone { handle } => {
                    if let Some(tx) = self.ctx.queries.remove(&handle) {
                        let _ = tx.try_send(QueryUpdate::Done);
                    }
                }
                Output::KeyOpDone { handle, result } => {
                    if let Some(tx) = self.ctx.key_ops.remove(&handle) {
                        let _ = tx.send(result);
                    }
                }
                Output::KeyringChanged => {
                    if let (Some(path), Some(kr)) =
                        (&self.ctx.keyring_file, self.ctx.gossip.keyring())
                    {
                        let text = kr.to_file_json();
                        if let Err(e) = crate::util::write_atomic(path, text.as_bytes(), 0o600) {
                            tracing::error!(error = %e, "failed to write keyring file");
                        }
                    }
                }
                Output::LeaveDone => {
                    for w in self.ctx.leave_waiters.drain(..) {
                        let _ = w.send(());
                    }
                }
                Output::Shutdown { reason } => {
                    tracing::error!(%reason, "agent shutting down");
                    self.ctx.shutdown = Some(reason);
                }
                Output::SnapshotAlive { name, addr } => {
                    if let Some(s) = self.ctx.snapshot.as_mut() {
                        if let Err(e) = s.alive(&name, addr) {
                            tracing::error!(error = %e, "snapshot write failed");
                        }
                    }
                }
                Output::SnapshotNotAlive { name } => {
                    if let Some(s) = self.ctx.snapshot.as_mut() {
                        if let Err(e) = s.not_alive(&name) {
                            tracing::error!(error = %e, "snapshot write failed");
                        }
                    }
                }
            }
        }
    }

    /// Hand an event to RPC stream subscribers and the handler task.
    fn dispatch(&mut self, ev: Event) {
        let _ = self.events.send(ev.clone());
        if let Some(h) = &self.handlers {
            if h.try_send(ev).is_err() {
                tracing::warn!("event handler queue full, dropping event");
            }
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut clock_save = tokio::time::interval(Duration::from_secs(1));
        loop {
            let mut next = self.ctx.gossip.poll_timeout();
            if let Some(t) = self.coalescer.poll_timeout() {
                next = next.min(t);
            }
            let wake = self.ctx.start + next;
            tokio::select! {
                input = rx.recv() => {
                    let Some(input) = input else { return };
                    let now = self.ctx.now();
                    match input {
                        Input::Packet(from, data) => self.ctx.gossip.handle_packet(from, &data, now),
                        Input::Stream { from, frame, reply } => {
                            let r = match self.ctx.gossip.open_stream(frame) {
                                Ok(StreamMsg::User(b)) if b.first() == Some(&APP_STREAM) => {
                                    match &self.ctx.app_stream {
                                        Some(h) => h(&b).map(|out| {
                                            self.ctx.gossip.seal_stream(StreamMsg::User(out).encode())
                                        }),
                                        None => Some(self.ctx.gossip.seal_error("no handler for this stream")),
                                    }
                                }
                                Ok(msg) => self.ctx.gossip.handle_stream(from, msg, now),
                                Err(e) => {
                                    tracing::error!(%from, error = %e, "failed to receive stream");
                                    Some(self.ctx.gossip.seal_error(&e.to_string()))
                                }
                            };
                            let _ = reply.send(r);
                        }
                        Input::PushPullReply { token, result, done } => {
                            let opened = result
                                .map_err(GossipError::Transport)
                                .and_then(|f| self.ctx.gossip.open_stream(f));
                            let r = self.ctx.gossip.handle_push_pull_reply(token, opened, now);
                            if let Some(d) = done {
                                let _ = d.send(r.map_err(|e| e.to_string()));
                            }
                        }
                        Input::TcpPing { seq, contacted } => {
                            self.ctx.gossip.handle_tcp_ping_result(seq, contacted, now)
                        }
                        Input::Job(job) => job(&mut self.ctx),
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = self.ctx.now();
                    self.ctx.gossip.handle_timeout(now);
                    for ev in self.coalescer.poll(now) {
                        self.dispatch(ev);
                    }
                }
                _ = clock_save.tick() => {
                    let (c, e, q) = self.ctx.gossip.clocks();
                    if let Some(s) = self.ctx.snapshot.as_mut() {
                        if let Err(err) = s.clocks(c, e, q) {
                            tracing::error!(error = %err, "snapshot write failed");
                        }
                    }
                }
            }
            self.route();
            if let Some(reason) = self.ctx.shutdown.take() {
                if let Some(s) = self.ctx.snapshot.as_mut() {
                    let _ = s.sync();
                }
                let _ = self.stop_tx.send(Some(reason));
                return;
            }
        }
    }
}

/// Pick an address to advertise when bound to 0.0.0.0: the first private
/// IPv4 address of an interface, as memberlist's GetPrivateIP, else any
/// non-loopback IPv4, else loopback.
fn pick_advertise_ip() -> std::net::IpAddr {
    let addrs = if_addrs::get_if_addrs().unwrap_or_default();
    let v4: Vec<std::net::Ipv4Addr> = addrs
        .iter()
        .filter_map(|i| match i.ip() {
            std::net::IpAddr::V4(v) if !v.is_loopback() => Some(v),
            _ => None,
        })
        .collect();
    v4.iter()
        .find(|v| v.is_private())
        .or_else(|| v4.first())
        .map(|v| std::net::IpAddr::V4(*v))
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// Build the keyring from `-encrypt` and/or `-keyring-file` (serf semantics:
/// the key from -encrypt is installed as primary; the file is written).
fn load_keyring(cfg: &AgentConfig) -> Result<Option<Keyring>, AgentError> {
    let mut kr: Option<Keyring> = None;
    if let Some(path) = &cfg.keyring_file {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                kr = Some(
                    Keyring::from_file_json(&text)
                        .map_err(|e| AgentError::Keyring(format!("{}: {e}", path.display())))?,
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AgentError::Keyring(format!("{}: {e}", path.display()))),
        }
    }
    if let Some(k) = &cfg.encrypt_key {
        let key =
            nuvol_wire::security::parse_key(k).map_err(|e| AgentError::Keyring(e.to_string()))?;
        match kr.as_mut() {
            Some(r) => {
                r.add_key(&key)
                    .map_err(|e| AgentError::Keyring(e.to_string()))?;
                r.use_key(&key)
                    .map_err(|e| AgentError::Keyring(e.to_string()))?;
            }
            None => {
                kr = Some(
                    Keyring::new(vec![key.clone()], key)
                        .map_err(|e| AgentError::Keyring(e.to_string()))?,
                )
            }
        }
        if let (Some(path), Some(r)) = (&cfg.keyring_file, &kr) {
            crate::util::write_atomic(path, r.to_file_json().as_bytes(), 0o600)
                .map_err(|e| AgentError::Keyring(format!("{}: {e}", path.display())))?;
        }
    }
    Ok(kr)
}

/// A started agent: its handle and the addresses it actually bound.
pub struct Running {
    pub handle: AgentHandle,
    pub gossip_addr: SocketAddr,
    pub advertise: SocketAddr,
}

/// Bind the sockets and start the agent's tasks.
pub async fn start(cfg: AgentConfig) -> Result<Running, AgentError> {
    let udp = UdpSocket::bind(cfg.bind)
        .await
        .map_err(|source| AgentError::Bind {
            what: "UDP gossip",
            addr: cfg.bind,
            source,
        })?;
    let bound = udp
        .local_addr()
        .map_err(|e| AgentError::Other(e.to_string()))?;
    let tcp = TcpListener::bind(bound)
        .await
        .map_err(|source| AgentError::Bind {
            what: "TCP gossip",
            addr: bound,
            source,
        })?;
    let advertise = match cfg.advertise {
        Some(a) => a,
        None if bound.ip().is_unspecified() => SocketAddr::new(pick_advertise_ip(), bound.port()),
        None => bound,
    };
    let keyring = load_keyring(&cfg)?;
    let mut core_cfg = CoreConfig::new(cfg.node_name.clone(), cfg.profile);
    core_cfg.protocol = cfg.protocol;
    core_cfg.disable_coordinates = cfg.disable_coordinates;
    if let Some(d) = cfg.reconnect_interval {
        core_cfg.reconnect_interval = d;
    }
    if let Some(d) = cfg.reconnect_timeout {
        core_cfg.reconnect_timeout = d;
    }
    if let Some(d) = cfg.tombstone_timeout {
        core_cfg.tombstone_timeout = d;
    }
    core_cfg.validate().map_err(AgentError::Other)?;

    let (snapshot, previous) = match &cfg.snapshot_path {
        Some(p) => {
            let (s, prev) = Snapshot::open(p)
                .map_err(|e| AgentError::Other(format!("snapshot {}: {e}", p.display())))?;
            (Some(s), Some(prev))
        }
        None => (None, None),
    };
    let core_coalesce = (
        core_cfg.coalesce_period,
        core_cfg.quiescent_period,
        core_cfg.user_coalesce_period,
        core_cfg.user_quiescent_period,
    );
    let start = Instant::now();
    let seed = rand::random::<u64>();
    let mut gossip = Gossip::new(
        core_cfg,
        advertise,
        cfg.tags.clone(),
        keyring,
        seed,
        Duration::ZERO,
    )?;
    if let Some(p) = &previous {
        gossip.restore_clocks(p.clock, p.event_clock, p.query_clock);
    }
    let udp = Arc::new(udp);
    let (tx, rx) = mpsc::channel(INPUT_DEPTH);
    let (events, _) = broadcast::channel(1024);
    let (raw_members, _) = broadcast::channel(1024);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let stats = Arc::new(DriverStats::default());
    let cfg = Arc::new(cfg);
    let handlers = if cfg.event_handlers.is_empty() {
        None
    } else {
        let (htx, hrx) = mpsc::channel(1024);
        Some((htx, hrx))
    };
    let handle = AgentHandle {
        tx: tx.clone(),
        events: events.clone(),
        raw_members: raw_members.clone(),
        config: cfg.clone(),
        stats: stats.clone(),
        stopped: stop_rx,
    };
    let driver = Driver {
        ctx: CoreCtx {
            gossip,
            start,
            queries: HashMap::new(),
            key_ops: HashMap::new(),
            leave_waiters: Vec::new(),
            snapshot,
            keyring_file: cfg.keyring_file.clone(),
            tags_file: cfg.tags_file.clone(),
            shutdown: None,
            app_stream: None,
        },
        udp: udp.clone(),
        tx: tx.clone(),
        events: events.clone(),
        raw_members,
        handlers: handlers.as_ref().map(|(t, _)| t.clone()),
        stats: stats.clone(),
        stop_tx,
        coalescer: nuvol_gossip::coalesce::Coalescer::new(
            core_coalesce.0,
            core_coalesce.1,
            core_coalesce.2,
            core_coalesce.3,
        ),
    };
    tokio::spawn(driver.run(rx));
    tokio::spawn(udp_loop(udp, tx.clone(), stats.clone()));
    tokio::spawn(tcp_loop(
        tcp,
        tx.clone(),
        stats.clone(),
        handle.config.clone(),
    ));
    if let Some((_, hrx)) = handlers {
        tokio::spawn(crate::handler_task(handle.clone(), hrx));
    }
    tracing::info!(node = %cfg.node_name, bind = %bound, %advertise, "nuvol agent started");

    // Rejoin from the snapshot, then the configured joins.
    let mut rejoin: Vec<String> = Vec::new();
    if let Some(p) = previous {
        if !p.left || cfg.rejoin_after_leave {
            rejoin = p
                .alive
                .iter()
                .filter(|(n, _)| **n != cfg.node_name)
                .map(|(_, a)| a.to_string())
                .collect();
        }
    }
    if !rejoin.is_empty() {
        let h = handle.clone();
        tokio::spawn(async move {
            for a in rejoin {
                match h.join(std::slice::from_ref(&a), false).await {
                    Ok(_) => {
                        tracing::info!(addr = %a, "re-joined from snapshot");
                        return;
                    }
                    Err(e) => tracing::debug!(addr = %a, error = %e, "snapshot re-join failed"),
                }
            }
            tracing::warn!("failed to re-join any previously known node");
        });
    }
    Ok(Running {
        handle,
        gossip_addr: bound,
        advertise,
    })
}

async fn udp_loop(udp: Arc<UdpSocket>, tx: mpsc::Sender<Input>, stats: Arc<DriverStats>) {
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        match udp.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if tx.try_send(Input::Packet(from, buf[..n].to_vec())).is_err() {
                    if tx.is_closed() {
                        return;
                    }
                    stats.udp_dropped_queue_full.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%from, "dropping packet: core queue full");
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
    tx: mpsc::Sender<Input>,
    stats: Arc<DriverStats>,
    cfg: Arc<AgentConfig>,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS));
    let timeout = nuvol_gossip::Config::new("x", cfg.profile).tcp_timeout;
    loop {
        let (mut s, from) = match tcp.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            stats.stream_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%from, "too many concurrent streams");
            continue;
        };
        let tx = tx.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let deadline = Instant::now() + timeout;
            let frame = match read_frame(&mut s, deadline).await {
                Ok(f) => f,
                Err(e) => {
                    stats.stream_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%from, error = %e, "dropping stream");
                    return;
                }
            };
            let (rtx, rrx) = oneshot::channel();
            if tx
                .send(Input::Stream {
                    from,
                    frame,
                    reply: rtx,
                })
                .await
                .is_err()
            {
                return;
            }
            if let Ok(Some(reply)) = rrx.await {
                let _ = tokio::time::timeout_at(deadline, s.write_all(&reply)).await;
                let _ = s.shutdown().await;
            }
        });
    }
}
