//! Serf's msgpack RPC ("IPC") protocol, server side, so both `nuvol` and
//! Debian's `serf` CLI can drive a nuvol agent. Requests are decoded into
//! `nuvol_rpc::server::Request` and answered with `nuvol_rpc::types` bodies;
//! this module only maps them onto the agent. Streams (`stream`, `monitor`,
//! `query`) keep sending records under their request's `Seq`.
//!
//! Bad input from a client (garbage, oversized values, unknown commands)
//! closes that client's connection with a log line; the agent is unaffected.

use crate::chan::Tx;
use crate::cluster::{Cluster, ClusterError, QueryStream, QueryUpdate};
use crate::component::{BuildError, Component, ComponentError};
use crate::config::{Addr, ConfigError, Secret, Validate};
use crate::registry::{BuildCtx, Registry, RunCtx};
use nuvol_gossip::{Event, KeyOp, KeyOpResult, QueryParams};
use nuvol_rpc::proto::Command;
use nuvol_rpc::server::{encode_reply, encode_response, Request, RequestReader};
use nuvol_rpc::types::*;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Largest single request value accepted from a client.
const MAX_REQUEST: usize = 1024 * 1024;
/// Concurrent RPC clients.
const MAX_CLIENTS: usize = 256;
/// Event streams, monitors and queries one client may have open at once.
pub const MAX_STREAMS_PER_CLIENT: usize = 32;
/// Depth of each client's outgoing queue (a slow client back-pressures its
/// own streams only).
const CLIENT_QUEUE: usize = 1024;

crate::settings! {
    /// Serf's RPC protocol, which the nuvol and serf CLIs speak.
    pub struct RpcSettings in "rpc", "RPC" {
        /// RPC address for the CLI (and serf's own CLI).
        addr: Addr<7373> = Addr::localhost(), flag "rpc-addr", env "NUVOL_RPC_ADDR";
        /// Require this auth key from RPC clients.
        auth: Option<Secret> = None, flag "rpc-auth", env "NUVOL_RPC_AUTH";
    }
}

impl Validate for RpcSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// The RPC address, provided to later components (the REST API and DNS
/// listen on its IP by default, so agents given distinct RPC addresses do
/// not collide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcAddr(pub SocketAddr);

impl RpcAddr {
    /// The IP a local interface (REST API, DNS) listens on by default: the
    /// RPC address's, or loopback without an RPC component before it.
    pub fn default_ip(ctx: &BuildCtx<'_>) -> std::net::IpAddr {
        ctx.get::<RpcAddr>()
            .map(|a| a.0.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
    }
}

/// The serf RPC server component.
pub struct RpcServer {
    addr: SocketAddr,
    auth: Option<Arc<str>>,
}

impl Component for RpcServer {
    type Config = RpcSettings;
    const NAME: &'static str = "rpc";
    /// The control plane: without it neither CLI reaches the agent.
    const CRITICAL: bool = true;

    fn build(config: RpcSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        ctx.provide(RpcAddr(config.addr.0));
        Ok(Some(RpcServer {
            addr: config.addr.0,
            auth: config
                .auth
                .filter(|a| !a.0.is_empty())
                .map(|a| Arc::from(a.0)),
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|e| ComponentError::msg(format!("cannot listen on {}: {e}", self.addr)))?;
        let local = listener.local_addr()?;
        ctx.registry().info.set("rpc_addr", local.to_string());
        tracing::info!(%local, "RPC listening");
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
        let mut clients = tokio::task::JoinSet::new();
        ctx.ready();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = ctx.stopping() => break,
            };
            while clients.try_join_next().is_some() {}
            let (sock, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "RPC accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "too many RPC clients");
                continue;
            };
            let cluster = ctx.cluster().clone();
            let registry = ctx.registry().clone();
            let auth = self.auth.clone();
            clients.spawn(async move {
                let _p = permit;
                tracing::debug!(%peer, "accepted RPC client");
                if let Err(e) = Client::run(cluster, registry, auth, sock).await {
                    tracing::debug!(%peer, error = %e, "RPC client closed");
                }
            });
        }
        // Dropping `clients` closes every connection.
        Ok(())
    }
}

/// A gossip member as the RPC reports it.
pub(crate) fn rpc_member(m: &nuvol_gossip::Member) -> Member {
    Member {
        name: m.name.clone(),
        addr: Some(m.addr.ip()),
        port: m.addr.port(),
        tags: m.tags.clone(),
        status: m.status.as_str().to_owned(),
        protocol_min: m.vsn[0],
        protocol_max: m.vsn[1],
        protocol_cur: m.vsn[2],
        delegate_min: m.vsn[3],
        delegate_max: m.vsn[4],
        delegate_cur: m.vsn[5],
    }
}

fn err_text<T>(r: &Result<T, ClusterError>) -> String {
    match r {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

/// Query IDs handed out to one client (serf numbers them per client).
#[derive(Default)]
struct Pending {
    next: u64,
    ids: HashMap<u64, u64>,
}

impl Pending {
    fn register(&mut self, inner: u64) -> u64 {
        self.next += 1;
        // Queries time out; keep the map bounded.
        if self.ids.len() >= 4096 {
            let oldest = self.next.saturating_sub(4096);
            self.ids.retain(|k, _| *k > oldest);
        }
        self.ids.insert(self.next, inner);
        self.next
    }
}

struct Client {
    cluster: Cluster,
    registry: Arc<Registry>,
    auth: Option<Arc<str>>,
    out: Tx<Vec<u8>>,
    handshake_done: bool,
    did_auth: bool,
    /// Event streams by seq; aborted on `stop` or disconnect.
    streams: HashMap<u64, tokio::task::JoinHandle<()>>,
    monitor: Option<(u64, tokio::task::JoinHandle<()>)>,
    /// Query IDs handed to this client's event streams.
    pending: Arc<std::sync::Mutex<Pending>>,
    /// Running queries of this client (they count towards its limit).
    queries: tokio::task::JoinSet<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        for (_, h) in self.streams.drain() {
            h.abort();
        }
        if let Some((_, h)) = self.monitor.take() {
            h.abort();
        }
    }
}

type Reader = RequestReader<tokio::net::tcp::OwnedReadHalf>;

impl Client {
    async fn run(
        cluster: Cluster,
        registry: Arc<Registry>,
        auth: Option<Arc<str>>,
        sock: TcpStream,
    ) -> Result<(), String> {
        let (rd, mut wr) = sock.into_split();
        let (out, mut out_rx) = registry
            .channels
            .mpsc::<Vec<u8>>("rpc-client-out", CLIENT_QUEUE);
        let writer = tokio::spawn(async move {
            while let Some(b) = out_rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    return;
                }
            }
        });
        let mut reader = RequestReader::new(rd, MAX_REQUEST);
        let mut c = Client {
            cluster,
            registry,
            auth,
            out,
            handshake_done: false,
            did_auth: false,
            streams: HashMap::new(),
            monitor: None,
            pending: Arc::new(std::sync::Mutex::new(Pending::default())),
            queries: tokio::task::JoinSet::new(),
        };
        let r = c.serve(&mut reader).await;
        drop(c);
        let _ = writer.await;
        r
    }

    async fn send(&self, bytes: Vec<u8>) -> Result<(), String> {
        self.out
            .send(bytes)
            .await
            .map_err(|_| "writer closed".to_string())
    }

    async fn reply(&self, seq: u64, err: &str) -> Result<(), String> {
        self.send(encode_response(seq, err, None)).await
    }

    async fn serve(&mut self, rd: &mut Reader) -> Result<(), String> {
        loop {
            let h = rd.read_header().await.map_err(|e| e.to_string())?;
            let seq = h.seq;
            let Some(cmd) = Command::parse(&h.command) else {
                self.reply(seq, "Unsupported command").await?;
                return Err(format!("command '{}' not recognized", h.command));
            };
            if cmd != Command::Handshake && !self.handshake_done {
                self.reply(seq, "Handshake required").await?;
                return Err("handshake required".into());
            }
            if self.auth.is_some()
                && !self.did_auth
                && cmd != Command::Auth
                && cmd != Command::Handshake
            {
                // As serf: refuse without reading the body.
                self.reply(seq, "Authentication required").await?;
                continue;
            }
            let req = rd.read_body(cmd).await.map_err(|e| e.to_string())?;
            self.handle(seq, req).await?;
        }
    }

    /// Streams, monitor and running queries this client holds.
    fn open_streams(&mut self) -> usize {
        self.streams.retain(|_, h| !h.is_finished());
        while self.queries.try_join_next().is_some() {}
        self.streams.len() + usize::from(self.monitor.is_some()) + self.queries.len()
    }

    async fn handle(&mut self, seq: u64, req: Request) -> Result<(), String> {
        match req {
            Request::Handshake(h) => {
                let err = if h.version != nuvol_rpc::IPC_VERSION {
                    "Unsupported IPC version"
                } else if self.handshake_done {
                    "Handshake already performed"
                } else {
                    self.handshake_done = true;
                    ""
                };
                self.reply(seq, err).await
            }
            Request::Auth(a) => {
                // Constant time: the comparison does not tell how much of a
                // guess was right.
                let ok = match &self.auth {
                    None => true,
                    Some(k) => bool::from(a.auth_key.as_bytes().ct_eq(k.as_bytes())),
                };
                let err = if ok {
                    self.did_auth = true;
                    ""
                } else {
                    "Invalid authentication token"
                };
                self.reply(seq, err).await
            }
            Request::Event(e) => {
                let r = self.cluster.user_event(e.name, e.payload, e.coalesce).await;
                self.reply(seq, &err_text(&r)).await
            }
            Request::ForceLeave(f) => {
                let r = self.cluster.force_leave(f.node, f.prune).await;
                self.reply(seq, &err_text(&r)).await
            }
            Request::Join(j) => {
                let r = self.cluster.join(&j.existing, j.replay).await;
                let num = *r.as_ref().unwrap_or(&0) as i32;
                self.send(encode_reply(seq, &err_text(&r), &JoinResponse { num }))
                    .await
            }
            Request::Members => {
                let members = self.cluster.members().await.map_err(|e| e.to_string())?;
                let body = MembersResponse {
                    members: members.iter().map(rpc_member).collect(),
                };
                self.send(encode_reply(seq, "", &body)).await
            }
            Request::MembersFiltered(f) => {
                let members = self.cluster.members().await.map_err(|e| e.to_string())?;
                match filter_members(members, &f.tags, &f.status, &f.name) {
                    Ok(ms) => {
                        let body = MembersResponse {
                            members: ms.iter().map(rpc_member).collect(),
                        };
                        self.send(encode_reply(seq, "", &body)).await
                    }
                    // serf drops the connection on a filter it can't compile.
                    Err(e) => Err(e),
                }
            }
            Request::Tags(t) => {
                let r = self.cluster.set_user_tags(t.tags, t.delete_tags).await;
                self.reply(seq, &err_text(&r)).await
            }
            Request::Leave => {
                let r = self.cluster.leave().await;
                self.reply(seq, &err_text(&r)).await?;
                // serf shuts the agent down after a leave.
                self.cluster
                    .request_stop(crate::cluster::StopReason::Left)
                    .await;
                Ok(())
            }
            Request::InstallKey(k) => self.key_op(seq, KeyOp::Install, Some(k.key)).await,
            Request::UseKey(k) => self.key_op(seq, KeyOp::Use, Some(k.key)).await,
            Request::RemoveKey(k) => self.key_op(seq, KeyOp::Remove, Some(k.key)).await,
            Request::ListKeys => self.key_op(seq, KeyOp::List, None).await,
            Request::Stream(s) => {
                let Ok(filters) = crate::handlers::EventFilter::parse_list(&s.filter) else {
                    return self.reply(seq, "Invalid event filter").await;
                };
                if self.streams.contains_key(&seq) {
                    return self.reply(seq, "Stream with given sequence exists").await;
                }
                if self.open_streams() >= MAX_STREAMS_PER_CLIENT {
                    return self.reply(seq, TOO_MANY_STREAMS).await;
                }
                self.reply(seq, "").await?;
                let h = tokio::spawn(event_stream(
                    self.cluster.clone(),
                    self.out.clone(),
                    seq,
                    filters,
                    self.pending.clone(),
                ));
                self.streams.insert(seq, h);
                Ok(())
            }
            Request::Monitor(m) => {
                let level = m.log_level.to_uppercase();
                let Some(min) = crate::logs::parse_level(&level) else {
                    return self
                        .reply(seq, &format!("Unknown log level: {level}"))
                        .await;
                };
                if self.monitor.is_some() {
                    return self.reply(seq, "Monitor already exists").await;
                }
                if self.open_streams() >= MAX_STREAMS_PER_CLIENT {
                    return self.reply(seq, TOO_MANY_STREAMS).await;
                }
                self.reply(seq, "").await?;
                let out = self.out.clone();
                let mut rx = crate::logs::subscribe();
                let h = tokio::spawn(async move {
                    loop {
                        match rx.recv().await {
                            Ok(l) if l.level <= min => {
                                let b = encode_reply(seq, "", &LogRecord { log: l.line });
                                if out.send(b).await.is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                crate::logs::count_missed(n);
                            }
                            Err(_) => return,
                        }
                    }
                });
                self.monitor = Some((seq, h));
                Ok(())
            }
            Request::Stop(s) => {
                if let Some(h) = self.streams.remove(&s.stop) {
                    h.abort();
                }
                if self.monitor.as_ref().is_some_and(|(m, _)| *m == s.stop) {
                    if let Some((_, h)) = self.monitor.take() {
                        h.abort();
                    }
                }
                self.reply(seq, "").await
            }
            Request::Query(q) => {
                let params = QueryParams {
                    filter_nodes: q.filter_nodes,
                    filter_tags: q.filter_tags,
                    request_ack: q.request_ack,
                    relay_factor: q.relay_factor,
                    timeout: q.timeout,
                };
                if self.open_streams() >= MAX_STREAMS_PER_CLIENT {
                    return self.reply(seq, TOO_MANY_STREAMS).await;
                }
                match self.cluster.query(q.name, q.payload, params).await {
                    Ok(rx) => {
                        self.reply(seq, "").await?;
                        self.queries.spawn(query_stream(rx, self.out.clone(), seq));
                        Ok(())
                    }
                    Err(e) => self.reply(seq, &e.to_string()).await,
                }
            }
            Request::Respond(r) => {
                let inner = self
                    .pending
                    .lock()
                    .ok()
                    .and_then(|p| p.ids.get(&r.id).copied());
                let err = match inner {
                    Some(inner) => err_text(&self.cluster.respond(inner, r.payload).await),
                    None => "No pending queries matching ID".to_string(),
                };
                self.reply(seq, &err).await
            }
            Request::Stats => {
                let stats = self.stats().await.map_err(|e| e.to_string())?;
                self.send(encode_reply(seq, "", &stats)).await
            }
            Request::GetCoordinate(c) => {
                let found = self
                    .cluster
                    .coordinate(c.node)
                    .await
                    .map_err(|e| e.to_string())?;
                let body = match found {
                    Some(c) => CoordinateResponse {
                        coord: Coordinate {
                            vec: c.vec,
                            error: c.error,
                            adjustment: c.adjustment,
                            height: c.height,
                        },
                        ok: true,
                    },
                    None => CoordinateResponse {
                        coord: Coordinate::default(),
                        ok: false,
                    },
                };
                self.send(encode_reply(seq, "", &body)).await
            }
        }
    }

    async fn key_op(&self, seq: u64, op: KeyOp, key: Option<String>) -> Result<(), String> {
        let (res, err) = self.run_key_op(op, key).await;
        let body = KeyResponse {
            messages: res.messages,
            keys: if op == KeyOp::List {
                res.keys.into_iter().map(|(k, n)| (k, n as i64)).collect()
            } else {
                BTreeMap::new()
            },
            num_nodes: res.num_nodes as i64,
            num_err: res.num_err as i64,
            num_resp: res.num_resp as i64,
        };
        self.send(encode_reply(seq, &err, &body)).await
    }

    async fn run_key_op(&self, op: KeyOp, key: Option<String>) -> (KeyOpResult, String) {
        let raw = match key {
            Some(k) => match nuvol_wire::security::parse_key(&k) {
                Ok(k) => k.to_vec(),
                Err(e) => return (KeyOpResult::default(), e.to_string()),
            },
            None => Vec::new(),
        };
        match self.cluster.key_op(op, raw).await {
            Ok(res) => {
                let err = if res.num_err != 0 {
                    format!("{}/{} nodes reported failure", res.num_err, res.num_nodes)
                } else if res.num_resp != res.num_nodes {
                    format!("{}/{} nodes reported success", res.num_resp, res.num_nodes)
                } else {
                    String::new()
                };
                (res, err)
            }
            Err(e) => (KeyOpResult::default(), e.to_string()),
        }
    }

    async fn stats(&self) -> Result<Stats, ClusterError> {
        let g = self.cluster.stats().await?;
        let tags = self.cluster.tags().await?.tags;
        // The components' facts (where the REST API listens, the data dir:
        // `nuvol publish` given only --rpc-addr finds the API and its token
        // this way) and the component table.
        let mut nuvol = self.registry.info.snapshot();
        for c in self.registry.status.snapshot() {
            let mut v = format!("{} restarts={}", c.state.as_str(), c.restarts);
            if let Some(e) = &c.last_error {
                v.push_str(&format!(" last_error={e:?}"));
            }
            nuvol.insert(format!("component.{}", c.name), v);
        }
        let section = |pairs: Vec<(&str, String)>| -> BTreeMap<String, String> {
            pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
        };
        let st = &g.core;
        let mut out = BTreeMap::new();
        out.insert("agent".to_owned(), section(vec![("name", g.name.clone())]));
        out.insert(
            "runtime".to_owned(),
            section(vec![
                ("os", std::env::consts::OS.to_owned()),
                ("arch", std::env::consts::ARCH.to_owned()),
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
                ("implementation", "nuvol".to_owned()),
            ]),
        );
        out.insert(
            "serf".to_owned(),
            section(vec![
                ("members", g.members.to_string()),
                ("failed", g.failed.to_string()),
                ("left", g.left.to_string()),
                ("health_score", g.health_score.to_string()),
                ("member_time", g.member_time.to_string()),
                ("event_time", g.event_time.to_string()),
                ("query_time", g.query_time.to_string()),
                ("intent_queue", g.intent_queue.to_string()),
                ("event_queue", g.event_queue.to_string()),
                ("query_queue", g.query_queue.to_string()),
                ("encrypted", g.encrypted.to_string()),
                ("packets_in", st.packets_in.to_string()),
                ("packets_out", st.packets_out.to_string()),
                ("packets_dropped", st.packets_dropped.to_string()),
                ("decrypt_failures", st.decrypt_failures.to_string()),
                ("decode_failures", st.decode_failures.to_string()),
                (
                    "streams_dropped",
                    (st.streams_dropped + g.streams_dropped).to_string(),
                ),
            ]),
        );
        out.insert("tags".to_owned(), tags);
        out.insert("nuvol".to_owned(), nuvol);
        let handlers = self
            .registry
            .get::<crate::handlers::HandlerList>()
            .unwrap_or_default();
        out.insert(
            "event_handlers".to_owned(),
            handlers.0.iter().map(|h| (h.clone(), h.clone())).collect(),
        );
        Ok(Stats(out))
    }
}

fn filter_members(
    members: Vec<nuvol_gossip::Member>,
    tags: &BTreeMap<String, String>,
    status: &str,
    name: &str,
) -> Result<Vec<nuvol_gossip::Member>, String> {
    let anchored = |e: &str| {
        regex_lite::Regex::new(&format!("^(?:{e})$"))
            .map_err(|e| format!("Failed to compile regex: {e}"))
    };
    let tag_res: Vec<(String, regex_lite::Regex)> = tags
        .iter()
        .map(|(k, e)| anchored(e).map(|r| (k.clone(), r)))
        .collect::<Result<_, _>>()?;
    let status_re = anchored(status)?;
    let name_re = anchored(name)?;
    Ok(members
        .into_iter()
        .filter(|m| {
            tag_res
                .iter()
                .all(|(k, r)| r.is_match(m.tags.get(k).map(String::as_str).unwrap_or("")))
                && (status.is_empty() || status_re.is_match(m.status.as_str()))
                && (name.is_empty() || name_re.is_match(&m.name))
        })
        .collect())
}

/// The reply to a stream request beyond [`MAX_STREAMS_PER_CLIENT`].
const TOO_MANY_STREAMS: &str = "Too many streams on this connection";

/// Forward a query's acks and responses, then its done record. Nothing is
/// dropped here: the client's queue back-pressures this task, and what the
/// driver had to drop (a reader slower than the cluster) is logged with the
/// done record.
async fn query_stream(q: QueryStream, out: Tx<Vec<u8>>, seq: u64) {
    let QueryStream { mut updates, done } = q;
    while let Some(u) = updates.recv().await {
        let rec = match u {
            QueryUpdate::Ack(from) => QueryRecord {
                record_type: QUERY_RECORD_ACK.into(),
                from,
                payload: Vec::new(),
            },
            QueryUpdate::Response { from, payload } => QueryRecord {
                record_type: QUERY_RECORD_RESPONSE.into(),
                from,
                payload,
            },
        };
        if out.send(encode_reply(seq, "", &rec)).await.is_err() {
            return;
        }
    }
    if let Ok(d) = done.await {
        if d.dropped > 0 {
            tracing::warn!(
                seq,
                dropped = d.dropped,
                "query acks/responses dropped before reaching this client"
            );
        }
    }
    let rec = QueryRecord {
        record_type: QUERY_RECORD_DONE.into(),
        from: String::new(),
        payload: Vec::new(),
    };
    let _ = out.send(encode_reply(seq, "", &rec)).await;
}

async fn event_stream(
    cluster: Cluster,
    out: Tx<Vec<u8>>,
    seq: u64,
    filters: Vec<crate::handlers::EventFilter>,
    pending: Arc<std::sync::Mutex<Pending>>,
) {
    let mut rx = cluster.events();
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(crate::chan::RecvError::Lagged(n)) => {
                tracing::warn!(seq, lost = n, "RPC event stream lagging, events dropped");
                continue;
            }
            Err(crate::chan::RecvError::Closed) => return,
        };
        if !filters.iter().any(|f| f.matches(&ev)) {
            continue;
        }
        let bytes = match ev {
            Event::Member { kind, members } => encode_reply(
                seq,
                "",
                &MemberEventRecord {
                    event: kind.as_str().to_owned(),
                    members: members.iter().map(rpc_member).collect(),
                },
            ),
            Event::User {
                ltime,
                name,
                payload,
                coalesce,
            } => encode_reply(
                seq,
                "",
                &UserEventRecord {
                    event: "user".into(),
                    ltime,
                    name,
                    payload,
                    coalesce,
                },
            ),
            Event::Query {
                id,
                ltime,
                name,
                payload,
                ..
            } => {
                let Ok(client_id) = pending.lock().map(|mut p| p.register(id.0)) else {
                    return;
                };
                encode_reply(
                    seq,
                    "",
                    &QueryEventRecord {
                        event: "query".into(),
                        id: client_id,
                        ltime,
                        name,
                        payload,
                    },
                )
            }
        };
        if out.send(bytes).await.is_err() {
            return;
        }
    }
}
