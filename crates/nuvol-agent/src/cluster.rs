//! [`Cluster`]: the narrow interface every component uses to reach the
//! gossip layer. It is a set of typed operations sent to the driver over the
//! bounded channel `gossip-input`, and subscriptions to its events; no
//! component runs code on the driver or sees the core's state.
//!
//! Architecture Invariant: the gossip driver only ever does the core's own
//! work. Anything that may take time (sealing a large reply, a TCP exchange,
//! a file write, a script) happens in the caller's task or on another thread.

use crate::chan::{Bus, BusRx, ChannelCounters, Tx};
use crate::snapshot::Previous;
use nuvol_gossip::{Event, GossipError, KeyOp, KeyOpResult, Member, QueryParams, StreamCodec};
use nuvol_wire::memberlist::{StreamFrame, StreamMsg};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// First byte of the payload of a memberlist user-message stream that
/// belongs to nuvol (outside serf's message type range, which ends at 9);
/// the second byte is the stream protocol a component registered.
pub const APP_STREAM: u8 = 0xC8;

/// Largest stream frame read from a peer.
pub const MAX_STREAM_FRAME: usize = 16 * 1024 * 1024;

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The agent is stopping or has stopped; nothing changed.
    #[error("the agent has stopped")]
    Stopped,
    /// The core refused; nothing changed.
    #[error(transparent)]
    Gossip(#[from] GossipError),
    /// A component owns this tag key; nothing changed.
    #[error("tag {key:?} belongs to the {owner} component, which sets it itself")]
    TagOwned { key: String, owner: &'static str },
    /// A component wrote a tag key it does not own; nothing changed.
    #[error("the {owner} component does not own tag {key:?}")]
    TagNotOwned { key: String, owner: &'static str },
    /// The tags changed since the caller read them; nothing changed, read
    /// and try again.
    #[error("the tags changed meanwhile")]
    TagsChanged,
    /// No address could be joined (the message says why, as serf's does).
    #[error("{0}")]
    Join(String),
    /// A TCP exchange with a peer failed.
    #[error("{addr}: {message}")]
    Transport { addr: SocketAddr, message: String },
    /// The peer answered with memberlist's error reply.
    #[error("{addr}: remote error: {message}")]
    Remote { addr: SocketAddr, message: String },
}

/// Where a running query reports; see [`Cluster::query`].
#[derive(Debug)]
pub struct QueryStream {
    /// Acks and responses, in arrival order.
    pub updates: tokio::sync::mpsc::Receiver<QueryUpdate>,
    /// Resolves when the query's deadline passed, after the last update was
    /// queued, with how many updates did not fit the queue.
    pub done: oneshot::Receiver<QueryDone>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueryUpdate {
    Ack(String),
    Response { from: String, payload: Vec<u8> },
}

/// The end of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueryDone {
    /// Acks and responses dropped because the reader was too slow (they
    /// were also counted on the channel `query-updates` and logged).
    pub dropped: u64,
}

/// An inbound query whose name a component registered
/// ([`crate::BuildCtx::query_handler`]); answer with [`Cluster::respond`].
#[derive(Debug, Clone)]
pub struct InboundQuery {
    pub id: u64,
    pub name: String,
    pub payload: Vec<u8>,
    pub source_node: String,
}

/// The node's tags and a version that changes with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagsSnapshot {
    pub version: u64,
    pub tags: BTreeMap<String, String>,
}

/// A snapshot of the gossip layer's state and counters (for `info`,
/// metrics and status pages).
#[derive(Debug, Clone, Default)]
pub struct GossipStats {
    pub name: String,
    pub members: usize,
    pub failed: usize,
    pub left: usize,
    pub health_score: u32,
    pub member_time: u64,
    pub event_time: u64,
    pub query_time: u64,
    pub intent_queue: usize,
    pub event_queue: usize,
    pub query_queue: usize,
    pub encrypted: bool,
    pub core: nuvol_gossip::Stats,
    pub udp_send_errors: u64,
    pub stream_errors: u64,
    /// Inbound streams that failed to open off the driver (bad key,
    /// garbage), on top of the core's own count.
    pub streams_dropped: u64,
}

/// Network coordinate of a node (Vivaldi), as the core keeps it.
pub use nuvol_gossip::coordinate::Coordinate;

/// Why the agent stopped on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// A graceful leave requested over RPC finished.
    Left,
    /// The core decided to stop (serf's name-conflict resolution).
    Core(String),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Left => f.write_str("left"),
            StopReason::Core(r) => f.write_str(r),
        }
    }
}

/// Counters kept outside the core.
#[derive(Debug, Default)]
pub(crate) struct DriverStats {
    pub udp_send_errors: AtomicU64,
    pub stream_errors: AtomicU64,
    pub streams_dropped: AtomicU64,
}

impl DriverStats {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the driver is asked to do. Each carries its reply channel.
pub(crate) enum Op {
    Members(oneshot::Sender<Vec<Member>>),
    LocalMember(oneshot::Sender<Option<Member>>),
    Tags(oneshot::Sender<TagsSnapshot>),
    SetUserTags {
        set: BTreeMap<String, String>,
        delete: Vec<String>,
        reply: oneshot::Sender<Result<(), ClusterError>>,
    },
    SetOwnedTags {
        owner: &'static str,
        version: u64,
        values: BTreeMap<String, String>,
        reply: oneshot::Sender<Result<(), ClusterError>>,
    },
    StartPushPull {
        addr: SocketAddr,
        join: bool,
        ignore_old: bool,
        reply: oneshot::Sender<(u64, Vec<u8>)>,
    },
    AfterJoin,
    Leave(oneshot::Sender<Result<oneshot::Receiver<()>, GossipError>>),
    UserEvent {
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
        reply: oneshot::Sender<Result<(), GossipError>>,
    },
    ForceLeave {
        node: String,
        prune: bool,
        reply: oneshot::Sender<Result<(), GossipError>>,
    },
    Query {
        name: String,
        payload: Vec<u8>,
        params: QueryParams,
        reply: oneshot::Sender<Result<QueryStream, GossipError>>,
    },
    Respond {
        id: u64,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<(), GossipError>>,
    },
    KeyOperation {
        op: KeyOp,
        key: Vec<u8>,
        reply: oneshot::Sender<Result<oneshot::Receiver<KeyOpResult>, GossipError>>,
    },
    Coordinate {
        node: String,
        reply: oneshot::Sender<Option<Coordinate>>,
    },
    Coordinates(oneshot::Sender<Vec<(String, Coordinate)>>),
    Stats {
        /// Move the probe round-trip times recorded since the last such
        /// call into the answer (`core.recent_rtts`).
        drain_rtts: bool,
        reply: oneshot::Sender<GossipStats>,
    },
    Shutdown(StopReason),
    /// Flush and end the driver (the last step of the agent's shutdown).
    Stop(oneshot::Sender<()>),
}

/// Inputs of the driver: network input and operations.
pub(crate) enum Input {
    Packet(SocketAddr, Vec<u8>),
    Stream {
        from: SocketAddr,
        msg: StreamMsg,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    PushPullReply {
        token: u64,
        result: Result<StreamFrame, String>,
        done: Option<oneshot::Sender<Result<(), GossipError>>>,
    },
    TcpPing {
        seq: u32,
        contacted: bool,
    },
    Op(Op),
}

pub(crate) struct Shared {
    pub tx: Tx<Input>,
    pub name: String,
    pub advertise: SocketAddr,
    pub bound: SocketAddr,
    pub tcp_timeout: Duration,
    pub codec: watch::Receiver<StreamCodec>,
    pub member_events: Bus<Event>,
    pub events: Bus<Event>,
    pub stopped: watch::Receiver<Option<StopReason>>,
    pub previous: Option<Previous>,
    pub owned: Arc<std::sync::OnceLock<HashMap<String, &'static str>>>,
    pub stats: Arc<DriverStats>,
    pub query_updates: ChannelCounters,
    pub leave_hooks: std::sync::Mutex<Vec<HookEntry>>,
}

/// A registered [`LeaveHook`]: whose, how long it may take, where to ask.
#[derive(Clone)]
pub(crate) struct HookEntry {
    name: String,
    timeout: Duration,
    tx: tokio::sync::mpsc::Sender<oneshot::Sender<()>>,
}

/// Work a component does before this node leaves the cluster gracefully,
/// while gossip still reaches the others (a Swarm node drained through a
/// manager, say). [`Cluster::leave`] asks every hook and waits for each
/// to be done, or for its timeout, before the leave goes out; on every
/// path: `nuvol leave`, SIGTERM with `leave_on_terminate`, a shutdown
/// with leave.
#[derive(Debug)]
pub struct LeaveHook {
    rx: tokio::sync::mpsc::Receiver<oneshot::Sender<()>>,
}

impl LeaveHook {
    /// Resolves when a leave starts. Answer with [`LeaveDone::done`] (or
    /// drop it) once the work is finished.
    pub async fn requested(&mut self) -> LeaveDone {
        match self.rx.recv().await {
            Some(tx) => LeaveDone(Some(tx)),
            // The cluster handle is gone: no leave will come.
            None => std::future::pending().await,
        }
    }
}

/// The answer to a leave request; dropping it counts as done.
#[derive(Debug)]
pub struct LeaveDone(Option<oneshot::Sender<()>>);

impl LeaveDone {
    pub fn done(mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// A cheap, cloneable handle to the gossip layer.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.shared.name)
            .field("advertise", &self.shared.advertise)
            .finish()
    }
}

impl Cluster {
    async fn ask<R>(&self, make: impl FnOnce(oneshot::Sender<R>) -> Op) -> Result<R, ClusterError> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Input::Op(make(tx)))
            .await
            .map_err(|_| ClusterError::Stopped)?;
        rx.await.map_err(|_| ClusterError::Stopped)
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The address other nodes reach this one at.
    pub fn advertise(&self) -> SocketAddr {
        self.shared.advertise
    }

    /// The gossip address actually bound.
    pub fn bound(&self) -> SocketAddr {
        self.shared.bound
    }

    /// What the snapshot held when the agent started (for rejoining).
    pub fn previous(&self) -> Option<&Previous> {
        self.shared.previous.as_ref()
    }

    /// Tag keys owned by components, and their owners (empty until the
    /// agent has started).
    pub fn owned_tags(&self) -> HashMap<String, &'static str> {
        self.shared.owned.get().cloned().unwrap_or_default()
    }

    pub async fn members(&self) -> Result<Vec<Member>, ClusterError> {
        self.ask(Op::Members).await
    }

    pub async fn local_member(&self) -> Result<Member, ClusterError> {
        self.ask(Op::LocalMember)
            .await?
            .ok_or(ClusterError::Stopped)
    }

    /// The node's current tags and their version.
    pub async fn tags(&self) -> Result<TagsSnapshot, ClusterError> {
        self.ask(Op::Tags).await
    }

    /// Member events as the core reports them, before serf's coalescing
    /// (channel `member-events`).
    pub fn member_events(&self) -> BusRx<Event> {
        self.shared.member_events.subscribe()
    }

    /// Member, user and query events after serf's coalescing, as serf's
    /// agent hands them to event handlers and RPC streams (channel
    /// `events`). Queries registered by components are not in it.
    pub fn events(&self) -> BusRx<Event> {
        self.shared.events.subscribe()
    }

    /// Set and delete the user's tags (serf's `tags` command). Keys a
    /// component owns are refused with [`ClusterError::TagOwned`]. The tags
    /// file, if any, gets the user's tags.
    pub async fn set_user_tags(
        &self,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<(), ClusterError> {
        if let Some((key, owner)) = set.keys().chain(delete.iter()).find_map(|k| {
            let owner = self.shared.owned.get()?.get(k)?;
            Some((k.clone(), *owner))
        }) {
            return Err(ClusterError::TagOwned { key, owner });
        }
        self.ask(|reply| Op::SetUserTags { set, delete, reply })
            .await?
    }

    pub(crate) async fn set_owned_tags(
        &self,
        owner: &'static str,
        version: u64,
        values: BTreeMap<String, String>,
    ) -> Result<(), ClusterError> {
        self.ask(|reply| Op::SetOwnedTags {
            owner,
            version,
            values,
            reply,
        })
        .await?
    }

    /// Join the cluster through `addrs` (serf's `Join`): a push/pull with
    /// each, stopping at the first address of each name that answers.
    /// Returns how many were reached.
    pub async fn join(&self, addrs: &[String], replay: bool) -> Result<usize, ClusterError> {
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
            return Err(ClusterError::Join(if last_err.is_empty() {
                "no addresses to join".into()
            } else {
                last_err
            }));
        }
        self.shared
            .tx
            .send(Input::Op(Op::AfterJoin))
            .await
            .map_err(|_| ClusterError::Stopped)?;
        Ok(ok)
    }

    async fn push_pull(
        &self,
        addr: SocketAddr,
        join: bool,
        ignore_old: bool,
    ) -> Result<(), ClusterError> {
        let (token, data) = self
            .ask(|reply| Op::StartPushPull {
                addr,
                join,
                ignore_old,
                reply,
            })
            .await?;
        let result = crate::driver::stream_exchange(addr, &data, self.shared.tcp_timeout).await;
        let (done_tx, done_rx) = oneshot::channel();
        self.shared
            .tx
            .send(Input::PushPullReply {
                token,
                result,
                done: Some(done_tx),
            })
            .await
            .map_err(|_| ClusterError::Stopped)?;
        done_rx
            .await
            .map_err(|_| ClusterError::Stopped)?
            .map_err(Into::into)
    }

    /// Leave gracefully; resolves when the leave has propagated (or the
    /// core gave up waiting). The [`LeaveHook`]s run first.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        self.run_leave_hooks().await;
        let done = self.ask(Op::Leave).await??;
        done.await.map_err(|_| ClusterError::Stopped)
    }

    /// Register work to do before a graceful leave, given at most
    /// `timeout`. A hook whose owner is gone (its [`LeaveHook`] dropped,
    /// as when a component restarts and registers again) is skipped.
    pub fn before_leave(&self, name: &str, timeout: Duration) -> LeaveHook {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut hooks = self
            .shared
            .leave_hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hooks.retain(|h| !h.tx.is_closed());
        hooks.push(HookEntry {
            name: name.to_owned(),
            timeout,
            tx,
        });
        LeaveHook { rx }
    }

    /// The longest a leave's hooks may take.
    pub fn leave_hooks_budget(&self) -> Duration {
        self.hooks()
            .iter()
            .map(|h| h.timeout)
            .max()
            .unwrap_or_default()
    }

    fn hooks(&self) -> Vec<HookEntry> {
        self.shared
            .leave_hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|h| !h.tx.is_closed())
            .cloned()
            .collect()
    }

    async fn run_leave_hooks(&self) {
        let waits = self.hooks().into_iter().map(|h| async move {
            let (done_tx, done_rx) = oneshot::channel();
            let asked = tokio::time::timeout(h.timeout, h.tx.send(done_tx)).await;
            if !matches!(asked, Ok(Ok(()))) {
                return;
            }
            tracing::info!(hook = %h.name, "before leaving: waiting for {}", h.name);
            if tokio::time::timeout(h.timeout, done_rx).await.is_err() {
                tracing::warn!(hook = %h.name, "{} did not finish within {:?}; leaving anyway", h.name, h.timeout);
            }
        });
        futures::future::join_all(waits).await;
    }

    pub async fn user_event(
        &self,
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
    ) -> Result<(), ClusterError> {
        Ok(self
            .ask(|reply| Op::UserEvent {
                name,
                payload,
                coalesce,
                reply,
            })
            .await??)
    }

    /// Serf's `force-leave`.
    pub async fn force_leave(&self, node: String, prune: bool) -> Result<(), ClusterError> {
        Ok(self
            .ask(|reply| Op::ForceLeave { node, prune, reply })
            .await??)
    }

    /// Start a query; acks and responses arrive on the stream until done.
    pub async fn query(
        &self,
        name: String,
        payload: Vec<u8>,
        params: QueryParams,
    ) -> Result<QueryStream, ClusterError> {
        Ok(self
            .ask(|reply| Op::Query {
                name,
                payload,
                params,
                reply,
            })
            .await??)
    }

    /// Answer an inbound query (from an event or a registered handler).
    pub async fn respond(&self, id: u64, payload: Vec<u8>) -> Result<(), ClusterError> {
        Ok(self
            .ask(|reply| Op::Respond { id, payload, reply })
            .await??)
    }

    /// A cluster-wide key operation (serf's `keys`).
    pub async fn key_op(&self, op: KeyOp, key: Vec<u8>) -> Result<KeyOpResult, ClusterError> {
        let rx = self
            .ask(|reply| Op::KeyOperation { op, key, reply })
            .await??;
        rx.await.map_err(|_| ClusterError::Stopped)
    }

    pub async fn coordinate(&self, node: String) -> Result<Option<Coordinate>, ClusterError> {
        self.ask(|reply| Op::Coordinate { node, reply }).await
    }

    /// Every known coordinate, this node's first (empty when coordinates
    /// are off): one request for a whole page of nodes.
    pub async fn coordinates(&self) -> Result<Vec<(String, Coordinate)>, ClusterError> {
        self.ask(Op::Coordinates).await
    }

    /// The gossip layer's counters (`core.recent_rtts` is empty).
    pub async fn stats(&self) -> Result<GossipStats, ClusterError> {
        self.ask(|reply| Op::Stats {
            drain_rtts: false,
            reply,
        })
        .await
    }

    /// The counters, and in `core.recent_rtts` the round-trip times of the
    /// direct probes since the last call (for one metrics exporter): one
    /// request a sample.
    pub async fn sample(&self) -> Result<GossipStats, ClusterError> {
        self.ask(|reply| Op::Stats {
            drain_rtts: true,
            reply,
        })
        .await
    }

    /// Ask the agent to stop (e.g. after a leave requested over RPC).
    pub async fn request_stop(&self, reason: StopReason) {
        let _ = self.shared.tx.send(Input::Op(Op::Shutdown(reason))).await;
    }

    /// Resolves when the agent is asked to stop, with why.
    pub async fn stopped(&self) -> StopReason {
        let mut rx = self.shared.stopped.clone();
        loop {
            if let Some(r) = rx.borrow().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                return StopReason::Core("the gossip driver ended".into());
            }
        }
    }

    /// Send a nuvol application stream (`payload` starts with
    /// [`APP_STREAM`] and the protocol byte) to the node at `to` and return
    /// its reply payload. Sealed and opened as push/pull is, in the
    /// caller's task.
    pub async fn app_request(
        &self,
        to: SocketAddr,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, ClusterError> {
        let codec = self.shared.codec.borrow().clone();
        let data = codec.seal(StreamMsg::User(payload).encode());
        let frame = crate::driver::stream_exchange(to, &data, self.shared.tcp_timeout)
            .await
            .map_err(|message| ClusterError::Transport { addr: to, message })?;
        match codec.open(frame).map_err(ClusterError::Gossip)? {
            StreamMsg::User(b) => Ok(b),
            StreamMsg::Err(message) => Err(ClusterError::Remote { addr: to, message }),
            _ => Err(ClusterError::Transport {
                addr: to,
                message: "unexpected reply".into(),
            }),
        }
    }
}

/// Resolve `HOST[:PORT]` (default port 7946).
async fn resolve(a: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(sa) = a.parse::<SocketAddr>() {
        return Ok(vec![sa]);
    }
    let with_port = if a
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        a.to_string()
    } else {
        format!("{a}:7946")
    };
    tokio::net::lookup_host(with_port)
        .await
        .map(|i| i.collect())
        .map_err(|e| format!("cannot resolve {a:?}: {e}"))
}

/// Keys owned by one component, and the only way to write them.
#[derive(Clone, Debug)]
pub struct OwnedTags {
    pub(crate) owner: &'static str,
    pub(crate) keys: Vec<String>,
    pub(crate) cluster: Cluster,
}

impl OwnedTags {
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Set this owner's keys to `values` (keys it owns that are absent are
    /// deleted), if the tags are still at `version`, else
    /// [`ClusterError::TagsChanged`]. Fails, changing nothing, if the
    /// result is over serf's 512-byte limit.
    pub async fn replace(
        &self,
        version: u64,
        values: BTreeMap<String, String>,
    ) -> Result<(), ClusterError> {
        if let Some(key) = values.keys().find(|k| !self.keys.contains(k)) {
            return Err(ClusterError::TagNotOwned {
                key: key.clone(),
                owner: self.owner,
            });
        }
        self.cluster
            .set_owned_tags(self.owner, version, values)
            .await
    }

    /// The node's tags (every key) and their version.
    pub async fn current(&self) -> Result<TagsSnapshot, ClusterError> {
        self.cluster.tags().await
    }

    /// Set one owned key to `value` (`None` deletes it), keeping this
    /// owner's other keys, retried while other writers change the tags;
    /// nothing is written when the key already has that value.
    pub async fn set(&self, key: &str, value: Option<String>) -> Result<(), ClusterError> {
        loop {
            let current = self.current().await?;
            if current.tags.get(key) == value.as_ref() {
                return Ok(());
            }
            let mut values: BTreeMap<String, String> = self
                .keys
                .iter()
                .filter_map(|k| current.tags.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            match &value {
                Some(v) => values.insert(key.to_owned(), v.clone()),
                None => values.remove(key),
            };
            match self.replace(current.version, values).await {
                Ok(()) => return Ok(()),
                Err(ClusterError::TagsChanged) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
