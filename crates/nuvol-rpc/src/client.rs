//! An async client of serf's RPC protocol. Works against a nuvol agent or a
//! real serf agent.
//!
//! One background task reads the connection and hands each response to
//! whoever waits on its `Seq`, so calls and streams share one connection and
//! may run concurrently (every method takes `&self`):
//!
//! ```no_run
//! # async fn demo() -> Result<(), nuvol_rpc::ClientError> {
//! use nuvol_rpc::{RpcClient, StreamEvent};
//! let client = RpcClient::connect("127.0.0.1:7373", None).await?;
//! let mut events = client.stream("user").await?;
//! client.user_event("deploy", b"v2", false).await?;
//! while let Some(ev) = events.next().await? {
//!     if let StreamEvent::User(u) = ev {
//!         println!("{} {:?}", u.name, u.payload);
//!     }
//! }
//! # Ok(()) }
//! ```

use crate::frame::{encode_value, FrameError};
use crate::proto::{errors, Command, IPC_VERSION};
use crate::types::*;
use crate::value::{ReadError, ValueReader};
use rmpv::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// serf's client default for connecting and writing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response value accepted by default.
pub const DEFAULT_MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// Stream records buffered per stream before new ones are dropped (serf's
/// client drops too rather than block the connection).
pub const DEFAULT_STREAM_BUFFER: usize = 4096;
/// How long past its own timeout a query may run before the client gives up
/// waiting for the agent's `done` (queries without a timeout: 60 s).
pub const QUERY_GRACE: Duration = Duration::from_secs(5);
const QUERY_DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// What can go wrong talking to an agent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The address is not `HOST:PORT` or does not resolve.
    #[error("invalid agent RPC address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
    /// No TCP connection could be made.
    #[error("Error connecting to the agent at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The agent refused the handshake (e.g. unsupported IPC version).
    #[error("RPC handshake with the agent failed: {0}")]
    Handshake(String),
    /// The agent refused the auth key (or wants one: `Authentication required`).
    #[error("RPC authentication failed: {0}")]
    Auth(String),
    /// The agent answered the command with this error.
    #[error("{0}")]
    Remote(String),
    /// A key command failed; `response` has the per-node messages.
    #[error("{error}")]
    Keyring {
        error: String,
        response: Box<KeyResponse>,
    },
    /// The agent sent bytes that are not msgpack (or too large).
    #[error("malformed data from the agent: {0}")]
    Frame(#[from] FrameError),
    /// The agent sent a body of the wrong shape.
    #[error("unexpected reply from the agent: {0}")]
    Decode(#[from] DecodeError),
    /// The connection ended.
    #[error("the agent closed the connection")]
    Closed,
    #[error("I/O error talking to the agent: {0}")]
    Io(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
}

impl From<ReadError> for ClientError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Closed => ClientError::Closed,
            ReadError::Frame(f) => ClientError::Frame(f),
            ReadError::Io(s) => ClientError::Io(s),
        }
    }
}

/// `io::Error` as a short lowercase reason, without "(os error N)".
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Sent with `auth` after the handshake when set and non-empty.
    pub auth_key: Option<String>,
    /// Bound on connecting, the handshake, authentication and each write.
    pub timeout: Duration,
    /// Bound on waiting for the reply to a call (streams are unbounded).
    /// `None` (the default, like serf's client): wait as long as it takes;
    /// `join` and key commands can take many seconds.
    pub call_timeout: Option<Duration>,
    /// Largest single response value accepted.
    pub max_response: usize,
    /// Records buffered per stream.
    pub stream_buffer: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            auth_key: None,
            timeout: DEFAULT_TIMEOUT,
            call_timeout: None,
            max_response: DEFAULT_MAX_RESPONSE,
            stream_buffer: DEFAULT_STREAM_BUFFER,
        }
    }
}

/// Identifies a running `monitor` or `stream` subscription, for `stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamHandle(pub u64);

/// A response to a query.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeResponse {
    pub from: String,
    pub payload: Vec<u8>,
}

/// One record of a running query.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryEvent {
    Ack(String),
    Response(NodeResponse),
}

/// Everything a query brought back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    /// In arrival order.
    pub acks: Vec<String>,
    /// In arrival order.
    pub responses: Vec<NodeResponse>,
}

struct Reply {
    error: String,
    body: Option<Value>,
}

type StreamItem = Result<Value, ClientError>;

enum Handler {
    Reply {
        expect_body: bool,
        tx: oneshot::Sender<Result<Reply, ClientError>>,
    },
    Stream {
        init: Option<oneshot::Sender<Result<(), ClientError>>>,
        tx: mpsc::Sender<StreamItem>,
        dropped: Arc<AtomicU64>,
    },
}

#[derive(Default)]
struct State {
    handlers: HashMap<u64, Handler>,
    closed: Option<ClientError>,
}

struct Shared {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    state: Mutex<State>,
    seq: AtomicU64,
    config: ClientConfig,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn register(&self, seq: u64, h: Handler) -> Result<(), ClientError> {
        let mut st = self.state();
        if let Some(e) = &st.closed {
            return Err(e.clone());
        }
        st.handlers.insert(seq, h);
        Ok(())
    }

    fn deregister(&self, seq: u64) {
        self.state().handlers.remove(&seq);
    }

    async fn write(&self, seq: u64, cmd: Command, body: Option<&Value>) -> Result<(), ClientError> {
        let mut buf = encode_value(
            &RequestHeader {
                command: cmd.as_str().to_owned(),
                seq,
            }
            .to_value(),
        );
        if let Some(b) = body {
            buf.extend(encode_value(b));
        }
        let fut = async {
            let mut w = self.writer.lock().await;
            w.write_all(&buf).await?;
            w.flush().await
        };
        match tokio::time::timeout(self.config.timeout, fut).await {
            Err(_) => Err(ClientError::Timeout("writing to the agent")),
            Ok(Err(e)) => Err(ClientError::Io(io_reason(&e))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Send a request and wait for its (first) reply.
    async fn call(&self, cmd: Command, body: Option<Value>) -> Result<Reply, ClientError> {
        let seq = self.next_seq();
        let (tx, rx) = oneshot::channel();
        self.register(
            seq,
            Handler::Reply {
                expect_body: cmd.has_response_body(),
                tx,
            },
        )?;
        if let Err(e) = self.write(seq, cmd, body.as_ref()).await {
            self.deregister(seq);
            return Err(e);
        }
        let got = match self.config.call_timeout {
            None => rx.await,
            Some(t) => match tokio::time::timeout(t, rx).await {
                Ok(r) => r,
                Err(_) => {
                    self.deregister(seq);
                    return Err(ClientError::Timeout("waiting for the agent's reply"));
                }
            },
        };
        got.unwrap_or(Err(ClientError::Closed))
    }

    /// Start a stream; returns once the agent accepted it.
    async fn start_stream(
        &self,
        cmd: Command,
        body: Value,
    ) -> Result<(u64, mpsc::Receiver<StreamItem>, Arc<AtomicU64>), ClientError> {
        let seq = self.next_seq();
        let (init_tx, init_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(self.config.stream_buffer.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        self.register(
            seq,
            Handler::Stream {
                init: Some(init_tx),
                tx,
                dropped: dropped.clone(),
            },
        )?;
        if let Err(e) = self.write(seq, cmd, Some(&body)).await {
            self.deregister(seq);
            return Err(e);
        }
        match init_rx.await.unwrap_or(Err(ClientError::Closed)) {
            Ok(()) => Ok((seq, rx, dropped)),
            Err(e) => {
                self.deregister(seq);
                Err(e)
            }
        }
    }

    /// Fail every waiter: the connection is gone.
    fn close_all(&self, err: ClientError) {
        let handlers: Vec<Handler> = {
            let mut st = self.state();
            if st.closed.is_none() {
                st.closed = Some(err.clone());
            }
            st.handlers.drain().map(|(_, h)| h).collect()
        };
        for h in handlers {
            match h {
                Handler::Reply { tx, .. } => {
                    let _ = tx.send(Err(err.clone()));
                }
                Handler::Stream { init, tx, .. } => match init {
                    Some(i) => {
                        let _ = i.send(Err(err.clone()));
                    }
                    None => {
                        let _ = tx.try_send(Err(err.clone()));
                    }
                },
            }
        }
    }
}

/// Aborts the reader task once the client and all its streams are gone.
struct ReaderGuard(tokio::task::JoinHandle<()>);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Action {
    Skip,
    Reply {
        expect_body: bool,
        tx: oneshot::Sender<Result<Reply, ClientError>>,
    },
    Record,
}

async fn read_loop(shared: Arc<Shared>, mut rd: ValueReader<OwnedReadHalf>) {
    let mut pending: Option<Value> = None;
    let err = loop {
        let v = match pending.take() {
            Some(v) => v,
            None => match rd.next().await {
                Ok(v) => v,
                Err(e) => break ClientError::from(e),
            },
        };
        let Some(h) = ResponseHeader::detect(&v) else {
            // A body nobody waits for (a stopped stream, a timed-out call).
            tracing::trace!("skipping a value that is not a response header");
            continue;
        };
        let action = {
            let mut st = shared.state();
            match st.handlers.get_mut(&h.seq) {
                None => Action::Skip,
                Some(Handler::Reply { .. }) => match st.handlers.remove(&h.seq) {
                    Some(Handler::Reply { expect_body, tx }) => Action::Reply { expect_body, tx },
                    _ => Action::Skip,
                },
                Some(Handler::Stream { init, .. }) => {
                    if let Some(i) = init.take() {
                        if h.error.is_empty() {
                            let _ = i.send(Ok(()));
                        } else {
                            let _ = i.send(Err(ClientError::Remote(h.error.clone())));
                            st.handlers.remove(&h.seq);
                        }
                        Action::Skip
                    } else if !h.error.is_empty() {
                        if let Some(Handler::Stream { tx, .. }) = st.handlers.remove(&h.seq) {
                            let _ = tx.try_send(Err(ClientError::Remote(h.error.clone())));
                        }
                        Action::Skip
                    } else {
                        Action::Record
                    }
                }
            }
        };
        match action {
            Action::Skip => {}
            Action::Reply { expect_body, tx } => {
                let mut body = None;
                if expect_body && !errors::has_no_body(&h.error) {
                    match rd.next().await {
                        Ok(b) if ResponseHeader::detect(&b).is_some() => {
                            // No body after all: that was the next header.
                            pending = Some(b);
                        }
                        Ok(b) => body = Some(b),
                        Err(e) => {
                            let e = ClientError::from(e);
                            let _ = tx.send(Err(e.clone()));
                            break e;
                        }
                    }
                }
                let _ = tx.send(Ok(Reply {
                    error: h.error,
                    body,
                }));
            }
            Action::Record => {
                let rec = match rd.next().await {
                    Ok(r) => r,
                    Err(e) => break ClientError::from(e),
                };
                if ResponseHeader::detect(&rec).is_some() {
                    pending = Some(rec);
                    continue;
                }
                let mut st = shared.state();
                let mut gone = false;
                if let Some(Handler::Stream { tx, dropped, .. }) = st.handlers.get(&h.seq) {
                    match tx.try_send(Ok(rec)) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(seq = h.seq, "stream buffer full, dropping a record");
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => gone = true,
                    }
                }
                if gone {
                    st.handlers.remove(&h.seq);
                }
            }
        }
    };
    shared.close_all(err);
}

/// A connection to an agent's RPC port.
#[derive(Clone)]
pub struct RpcClient {
    shared: Arc<Shared>,
    guard: Arc<ReaderGuard>,
    addr: SocketAddr,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Resolve `HOST:PORT` (Go's `net.Dial` syntax, `[v6]:port` for IPv6).
async fn resolve(addr: &str, timeout: Duration) -> Result<Vec<SocketAddr>, ClientError> {
    let bad = |reason: &str| ClientError::BadAddress {
        addr: addr.to_owned(),
        reason: reason.to_owned(),
    };
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(vec![sa]);
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(bad("missing port (expected HOST:PORT)"));
    };
    if host.is_empty() {
        return Err(bad("missing host (expected HOST:PORT)"));
    }
    if port.parse::<u16>().is_err() {
        return Err(bad("port must be a number from 0 to 65535"));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(bad("IPv6 addresses must be written [ADDR]:PORT"));
    }
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host(addr))
        .await
        .map_err(|_| bad("timed out resolving the host"))?
        .map_err(|e| bad(&io_reason(&e)))?
        .collect::<Vec<_>>();
    if found.is_empty() {
        return Err(bad("the host has no addresses"));
    }
    Ok(found)
}

impl RpcClient {
    /// Connect, handshake (IPC version 1) and authenticate if a key is
    /// given, with the default [`ClientConfig`].
    pub async fn connect(addr: &str, auth_key: Option<&str>) -> Result<RpcClient, ClientError> {
        RpcClient::connect_with(
            addr,
            ClientConfig {
                auth_key: auth_key.map(str::to_owned),
                ..ClientConfig::default()
            },
        )
        .await
    }

    /// Connect with explicit settings.
    pub async fn connect_with(addr: &str, config: ClientConfig) -> Result<RpcClient, ClientError> {
        let timeout = config.timeout;
        let targets = resolve(addr, timeout).await?;
        let mut last = String::from("no address to try");
        let mut sock = None;
        for sa in targets {
            match tokio::time::timeout(timeout, TcpStream::connect(sa)).await {
                Ok(Ok(s)) => {
                    sock = Some((s, sa));
                    break;
                }
                Ok(Err(e)) => last = io_reason(&e),
                Err(_) => last = format!("no answer within {timeout:?}"),
            }
        }
        let Some((sock, sa)) = sock else {
            return Err(ClientError::Connect {
                addr: addr.to_owned(),
                reason: last,
            });
        };
        let _ = sock.set_nodelay(true);
        let (rd, wr) = sock.into_split();
        let auth = config.auth_key.clone().filter(|k| !k.is_empty());
        let shared = Arc::new(Shared {
            writer: tokio::sync::Mutex::new(wr),
            state: Mutex::new(State::default()),
            seq: AtomicU64::new(0),
            config,
        });
        let reader = ValueReader::new(rd, shared.config.max_response);
        let task = tokio::spawn(read_loop(shared.clone(), reader));
        let client = RpcClient {
            shared,
            guard: Arc::new(ReaderGuard(task)),
            addr: sa,
        };
        let setup = async {
            let hs = HandshakeRequest {
                version: IPC_VERSION,
            };
            let r = client
                .shared
                .call(Command::Handshake, Some(hs.to_value()))
                .await?;
            if !r.error.is_empty() {
                return Err(ClientError::Handshake(r.error));
            }
            if let Some(key) = auth {
                let a = AuthRequest { auth_key: key };
                let r = client
                    .shared
                    .call(Command::Auth, Some(a.to_value()))
                    .await?;
                if !r.error.is_empty() {
                    return Err(ClientError::Auth(r.error));
                }
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, setup).await {
            Err(_) => Err(ClientError::Timeout("waiting for the agent's handshake")),
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Ok(client),
        }
    }

    /// The address connected to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.state().closed.is_some()
    }

    /// Send a command whose reply has no body.
    async fn simple(&self, cmd: Command, body: Option<Value>) -> Result<(), ClientError> {
        let r = self.shared.call(cmd, body).await?;
        if !r.error.is_empty() {
            return Err(remote(r.error));
        }
        Ok(())
    }

    /// Send a command and decode its body; a remote error wins.
    async fn with_body<T: Body>(
        &self,
        cmd: Command,
        body: Option<Value>,
    ) -> Result<T, ClientError> {
        let r = self.shared.call(cmd, body).await?;
        if !r.error.is_empty() {
            return Err(remote(r.error));
        }
        Ok(T::from_value(r.body.as_ref().unwrap_or(&Value::Nil))?)
    }

    /// All known members.
    pub async fn members(&self) -> Result<Vec<Member>, ClientError> {
        let r: MembersResponse = self.with_body(Command::Members, None).await?;
        Ok(r.members)
    }

    /// Members whose tags, status and name match these regular expressions
    /// (anchored by the agent; empty status or name: any).
    pub async fn members_filtered(
        &self,
        tags: &BTreeMap<String, String>,
        status: &str,
        name: &str,
    ) -> Result<Vec<Member>, ClientError> {
        let req = MembersFilteredRequest {
            tags: tags.clone(),
            status: status.to_owned(),
            name: name.to_owned(),
        };
        let r: MembersResponse = self
            .with_body(Command::MembersFiltered, Some(req.to_value()))
            .await?;
        Ok(r.members)
    }

    /// Join a cluster through these addresses; the number of nodes contacted.
    pub async fn join<S: AsRef<str>>(&self, addrs: &[S], replay: bool) -> Result<i32, ClientError> {
        let req = JoinRequest {
            existing: addrs.iter().map(|a| a.as_ref().to_owned()).collect(),
            replay,
        };
        let r: JoinResponse = self.with_body(Command::Join, Some(req.to_value())).await?;
        Ok(r.num)
    }

    /// Leave the cluster gracefully; the agent then shuts down.
    pub async fn leave(&self) -> Result<(), ClientError> {
        self.simple(Command::Leave, None).await
    }

    /// Force a (failed) member into the `left` state; `prune` also removes it
    /// from the member list at once.
    pub async fn force_leave(&self, node: &str, prune: bool) -> Result<(), ClientError> {
        let req = ForceLeaveRequest {
            node: node.to_owned(),
            prune,
        };
        self.simple(Command::ForceLeave, Some(req.to_value())).await
    }

    /// Set and delete the agent's tags.
    pub async fn update_tags<S: AsRef<str>>(
        &self,
        set: &BTreeMap<String, String>,
        delete: &[S],
    ) -> Result<(), ClientError> {
        let req = TagsRequest {
            tags: set.clone(),
            delete_tags: delete.iter().map(|d| d.as_ref().to_owned()).collect(),
        };
        self.simple(Command::Tags, Some(req.to_value())).await
    }

    /// Send a user event to the cluster.
    pub async fn user_event(
        &self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<(), ClientError> {
        let req = EventRequest {
            name: name.to_owned(),
            payload: payload.to_vec(),
            coalesce,
        };
        self.simple(Command::Event, Some(req.to_value())).await
    }

    async fn key_command(
        &self,
        cmd: Command,
        key: Option<&str>,
    ) -> Result<KeyResponse, ClientError> {
        let body = key.map(|k| KeyRequest { key: k.to_owned() }.to_value());
        let r = self.shared.call(cmd, body).await?;
        let resp = match &r.body {
            Some(b) => KeyResponse::from_value(b)?,
            None => KeyResponse::default(),
        };
        if !r.error.is_empty() {
            if errors::has_no_body(&r.error) {
                return Err(remote(r.error));
            }
            return Err(ClientError::Keyring {
                error: r.error,
                response: Box::new(resp),
            });
        }
        Ok(resp)
    }

    /// Install a key (base64) on every member's keyring.
    pub async fn install_key(&self, key: &str) -> Result<KeyResponse, ClientError> {
        self.key_command(Command::InstallKey, Some(key)).await
    }

    /// Make an installed key the primary one on every member.
    pub async fn use_key(&self, key: &str) -> Result<KeyResponse, ClientError> {
        self.key_command(Command::UseKey, Some(key)).await
    }

    /// Remove a (non-primary) key from every member.
    pub async fn remove_key(&self, key: &str) -> Result<KeyResponse, ClientError> {
        self.key_command(Command::RemoveKey, Some(key)).await
    }

    /// Every key in the cluster with the number of members holding it.
    pub async fn list_keys(&self) -> Result<KeyResponse, ClientError> {
        self.key_command(Command::ListKeys, None).await
    }

    /// The agent's debugging information (`serf info`).
    pub async fn stats(&self) -> Result<Stats, ClientError> {
        self.with_body(Command::Stats, None).await
    }

    /// The agent's cached coordinate of `node`, `None` if it has none.
    pub async fn get_coordinate(&self, node: &str) -> Result<Option<Coordinate>, ClientError> {
        let req = CoordinateRequest {
            node: node.to_owned(),
        };
        let r: CoordinateResponse = self
            .with_body(Command::GetCoordinate, Some(req.to_value()))
            .await?;
        Ok(r.ok.then_some(r.coord))
    }

    /// Stream the agent's log lines at `level` (`TRACE`, `DEBUG`, `INFO`,
    /// `WARN`, `ERR`) or above; serf first replays its recent lines.
    pub async fn monitor(&self, level: &str) -> Result<LogStream, ClientError> {
        let req = MonitorRequest {
            log_level: level.to_owned(),
        };
        let inner = self
            .open_stream(Command::Monitor, req.to_value(), true)
            .await?;
        Ok(LogStream { inner })
    }

    /// Stream events matching `filter` (serf's syntax: `*`, `user`,
    /// `user:NAME`, `query`, `query:NAME`, `member-join`, ..., comma
    /// separated).
    pub async fn stream(&self, filter: &str) -> Result<EventStream, ClientError> {
        let req = StreamRequest {
            filter: filter.to_owned(),
        };
        let inner = self
            .open_stream(Command::Stream, req.to_value(), true)
            .await?;
        Ok(EventStream { inner })
    }

    /// Stop a `monitor` or `stream` subscription (the agent always agrees).
    pub async fn stop(&self, handle: StreamHandle) -> Result<(), ClientError> {
        self.shared.deregister(handle.0);
        self.simple(
            Command::Stop,
            Some(StopRequest { stop: handle.0 }.to_value()),
        )
        .await
    }

    /// Send a query; read acks and responses from the returned stream until
    /// it ends (the agent's `done`).
    pub async fn query(&self, params: &QueryRequest) -> Result<QueryStream, ClientError> {
        let inner = self
            .open_stream(Command::Query, params.to_value(), false)
            .await?;
        let wait = if params.timeout.is_zero() {
            QUERY_DEFAULT_WAIT
        } else {
            params.timeout.saturating_add(QUERY_GRACE)
        };
        Ok(QueryStream {
            inner,
            deadline: Instant::now() + wait,
            done: false,
        })
    }

    /// Answer a query received on an event stream.
    pub async fn respond(&self, id: u64, payload: &[u8]) -> Result<(), ClientError> {
        let req = RespondRequest {
            id,
            payload: payload.to_vec(),
        };
        self.simple(Command::Respond, Some(req.to_value())).await
    }

    async fn open_stream(
        &self,
        cmd: Command,
        body: Value,
        stop_on_drop: bool,
    ) -> Result<StreamInner, ClientError> {
        let (seq, rx, dropped) = self.shared.start_stream(cmd, body).await?;
        Ok(StreamInner {
            seq,
            rx,
            dropped,
            shared: self.shared.clone(),
            guard: self.guard.clone(),
            stop_on_drop,
        })
    }
}

fn remote(error: String) -> ClientError {
    if error == errors::AUTH_REQUIRED || error == errors::INVALID_AUTH_TOKEN {
        ClientError::Auth(error)
    } else {
        ClientError::Remote(error)
    }
}

struct StreamInner {
    seq: u64,
    rx: mpsc::Receiver<StreamItem>,
    dropped: Arc<AtomicU64>,
    shared: Arc<Shared>,
    guard: Arc<ReaderGuard>,
    stop_on_drop: bool,
}

impl StreamInner {
    /// Stop the subscription (no stop on drop) and wait for the agent to confirm.
    async fn stop(mut self) -> Result<(), ClientError> {
        self.stop_on_drop = false;
        let seq = self.seq;
        self.shared.deregister(seq);
        let r = self
            .shared
            .call(Command::Stop, Some(StopRequest { stop: seq }.to_value()))
            .await?;
        if r.error.is_empty() {
            Ok(())
        } else {
            Err(remote(r.error))
        }
    }

    /// Next raw record; `Ok(None)` when the agent closed the connection.
    async fn next(&mut self) -> Result<Option<Value>, ClientError> {
        match self.rx.recv().await {
            None | Some(Err(ClientError::Closed)) => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(v)) => Ok(Some(v)),
        }
    }
}

impl Drop for StreamInner {
    fn drop(&mut self) {
        self.shared.deregister(self.seq);
        if !self.stop_on_drop || self.shared.state().closed.is_some() {
            return;
        }
        // Tell the agent too, if there is a runtime to do it on.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            let guard = self.guard.clone();
            let seq = self.seq;
            rt.spawn(async move {
                let stop = StopRequest { stop: seq }.to_value();
                let _ = tokio::time::timeout(
                    shared.config.timeout,
                    shared.call(Command::Stop, Some(stop)),
                )
                .await;
                drop(guard);
            });
        }
    }
}

/// Log lines from `monitor`. Dropping it stops the subscription.
pub struct LogStream {
    inner: StreamInner,
}

impl LogStream {
    /// The next line; `Ok(None)` once the agent has gone away.
    pub async fn next(&mut self) -> Result<Option<String>, ClientError> {
        match self.inner.next().await? {
            None => Ok(None),
            Some(v) => Ok(Some(LogRecord::from_value(&v)?.log)),
        }
    }

    pub fn handle(&self) -> StreamHandle {
        StreamHandle(self.inner.seq)
    }

    /// Records dropped because the stream was not read fast enough.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Stop the subscription and wait for the agent to confirm.
    pub async fn stop(self) -> Result<(), ClientError> {
        self.inner.stop().await
    }
}

/// Events from `stream`. Dropping it stops the subscription.
pub struct EventStream {
    inner: StreamInner,
}

impl EventStream {
    /// The next event; `Ok(None)` once the agent has gone away.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, ClientError> {
        match self.inner.next().await? {
            None => Ok(None),
            Some(v) => Ok(Some(StreamEvent::from_value(&v)?)),
        }
    }

    /// The next record as sent (a map), for callers that want every field.
    pub async fn next_raw(&mut self) -> Result<Option<Value>, ClientError> {
        self.inner.next().await
    }

    pub fn handle(&self) -> StreamHandle {
        StreamHandle(self.inner.seq)
    }

    /// Records dropped because the stream was not read fast enough.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Stop the subscription and wait for the agent to confirm.
    pub async fn stop(self) -> Result<(), ClientError> {
        self.inner.stop().await
    }
}

/// Acks and responses of a running query.
pub struct QueryStream {
    inner: StreamInner,
    deadline: Instant,
    done: bool,
}

impl QueryStream {
    /// The next ack or response; `Ok(None)` once the query is done. If the
    /// agent never says so, gives up with [`ClientError::Timeout`] a little
    /// after the query's timeout.
    pub async fn next(&mut self) -> Result<Option<QueryEvent>, ClientError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let item = tokio::time::timeout_at(self.deadline, self.inner.rx.recv()).await;
            let v = match item {
                Err(_) => {
                    self.done = true;
                    self.inner.shared.deregister(self.inner.seq);
                    return Err(ClientError::Timeout("waiting for the query to finish"));
                }
                Ok(None) => {
                    self.done = true;
                    return Err(ClientError::Closed);
                }
                Ok(Some(Err(e))) => {
                    self.done = true;
                    return Err(e);
                }
                Ok(Some(Ok(v))) => v,
            };
            let rec = QueryRecord::from_value(&v)?;
            // serf's agent streams a query from a select loop that keeps
            // reading its ack and response channels after serf closed them
            // at the deadline, until its own timer fires: a burst of
            // zero-value records (no `From`). No node has an empty name, so
            // such records carry nothing and are dropped.
            if rec.record_type != QUERY_RECORD_DONE && rec.from.is_empty() {
                continue;
            }
            match rec.record_type.as_str() {
                QUERY_RECORD_ACK => return Ok(Some(QueryEvent::Ack(rec.from))),
                QUERY_RECORD_RESPONSE => {
                    return Ok(Some(QueryEvent::Response(NodeResponse {
                        from: rec.from,
                        payload: rec.payload,
                    })))
                }
                QUERY_RECORD_DONE => {
                    self.done = true;
                    self.inner.shared.deregister(self.inner.seq);
                    return Ok(None);
                }
                other => {
                    // serf's client logs and ignores unknown records.
                    tracing::debug!(record = other, "ignoring unknown query record");
                }
            }
        }
    }

    /// Read everything until the query is done.
    pub async fn collect(mut self) -> Result<QueryResult, ClientError> {
        let mut out = QueryResult::default();
        while let Some(ev) = self.next().await? {
            match ev {
                QueryEvent::Ack(a) => out.acks.push(a),
                QueryEvent::Response(r) => out.responses.push(r),
            }
        }
        Ok(out)
    }

    /// Records dropped because the stream was not read fast enough.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{encode_reply, encode_response, RequestReader};
    use tokio::net::TcpListener;

    /// A scripted fake agent: answers handshake, then runs `script`.
    async fn fake<F, Fut>(script: F) -> String
    where
        F: FnOnce(RequestReader<OwnedReadHalf>, OwnedWriteHalf) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut rd = RequestReader::new(r, 1 << 20);
            let h = rd.read_header().await.unwrap();
            assert_eq!(h.command, "handshake");
            rd.read_body(Command::Handshake).await.unwrap();
            w.write_all(&encode_response(h.seq, "", None))
                .await
                .unwrap();
            script(rd, w).await;
        });
        addr
    }

    #[tokio::test]
    async fn interleaved_stream_and_calls_share_a_connection() {
        let addr = fake(|mut rd, mut w| async move {
            // stream request
            let h = rd.read_header().await.unwrap();
            rd.read_body(Command::Stream).await.unwrap();
            let sseq = h.seq;
            w.write_all(&encode_response(sseq, "", None)).await.unwrap();
            // members request: answer with a stream record in between, and
            // a record for an unknown seq with a body to skip.
            let h = rd.read_header().await.unwrap();
            let rec = UserEventRecord {
                event: "user".into(),
                name: "e1".into(),
                ..Default::default()
            };
            w.write_all(&encode_reply(sseq, "", &rec)).await.unwrap();
            w.write_all(&encode_reply(999, "", &LogRecord { log: "x".into() }))
                .await
                .unwrap();
            let m = MembersResponse {
                members: vec![Member {
                    name: "n".into(),
                    ..Default::default()
                }],
            };
            w.write_all(&encode_reply(h.seq, "", &m)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        })
        .await;
        let c = RpcClient::connect(&addr, None).await.unwrap();
        let mut s = c.stream("user").await.unwrap();
        let ms = c.members().await.unwrap();
        assert_eq!(ms[0].name, "n");
        match s.next().await.unwrap() {
            Some(StreamEvent::User(u)) => assert_eq!(u.name, "e1"),
            other => panic!("{other:?}"),
        }
        // Connection closes: the stream ends.
        assert_eq!(s.next().await.unwrap(), None);
        assert!(c.members().await.is_err());
    }

    #[tokio::test]
    async fn serfs_post_deadline_empty_query_records_are_dropped() {
        let addr = fake(|mut rd, mut w| async move {
            let h = rd.read_header().await.unwrap();
            rd.read_body(Command::Query).await.unwrap();
            w.write_all(&encode_response(h.seq, "", None))
                .await
                .unwrap();
            let rec = |t: &str, from: &str, payload: &[u8]| QueryRecord {
                record_type: t.into(),
                from: from.into(),
                payload: payload.to_vec(),
            };
            let mut records = vec![rec("ack", "n1", b""), rec("response", "n1", b"pong")];
            // What serf's agent sends once its channels are closed.
            for _ in 0..50 {
                records.push(rec("ack", "", b""));
                records.push(rec("response", "", b""));
            }
            records.push(rec("done", "", b""));
            for r in &records {
                w.write_all(&encode_reply(h.seq, "", r)).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        })
        .await;
        let c = RpcClient::connect(&addr, None).await.unwrap();
        let q = QueryRequest {
            name: "ping".into(),
            request_ack: true,
            timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let r = c.query(&q).await.unwrap().collect().await.unwrap();
        assert_eq!(r.acks, vec!["n1".to_string()]);
        assert_eq!(r.responses.len(), 1);
        assert_eq!(r.responses[0].from, "n1");
        assert_eq!(r.responses[0].payload, b"pong");
    }

    #[tokio::test]
    async fn auth_required_has_no_body_and_errors_are_typed() {
        let addr = fake(|mut rd, mut w| async move {
            let h = rd.read_header().await.unwrap();
            w.write_all(&encode_response(h.seq, errors::AUTH_REQUIRED, None))
                .await
                .unwrap();
            let h = rd.read_header().await.unwrap();
            w.write_all(&encode_response(h.seq, "boom", None))
                .await
                .unwrap();
            // garbage ends the connection with a typed error
            rd.read_header().await.unwrap();
            w.write_all(&[0xc1]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        })
        .await;
        let c = RpcClient::connect(&addr, None).await.unwrap();
        assert_eq!(
            c.members().await,
            Err(ClientError::Auth(errors::AUTH_REQUIRED.into()))
        );
        assert_eq!(c.leave().await, Err(ClientError::Remote("boom".into())));
        assert!(matches!(
            c.stats().await,
            Err(ClientError::Frame(FrameError::InvalidMarker { .. }))
        ));
        assert!(c.is_closed());
    }

    #[tokio::test]
    async fn oversized_reply_is_refused_not_buffered() {
        let addr = fake(|mut rd, mut w| async move {
            let h = rd.read_header().await.unwrap();
            // A str32 header claiming 1 GiB, then nothing.
            let mut b = encode_response(h.seq, "", None);
            b.extend([0xdb, 0x40, 0, 0, 0]);
            w.write_all(&b).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        })
        .await;
        let cfg = ClientConfig {
            max_response: 4096,
            ..ClientConfig::default()
        };
        let c = RpcClient::connect_with(&addr, cfg).await.unwrap();
        assert_eq!(
            c.stats().await,
            Err(ClientError::Frame(FrameError::TooLarge { max: 4096 }))
        );
    }

    #[tokio::test]
    async fn query_records_and_done() {
        let addr = fake(|mut rd, mut w| async move {
            let h = rd.read_header().await.unwrap();
            let q = rd.read_body(Command::Query).await.unwrap();
            assert!(
                matches!(q, crate::server::Request::Query(ref r) if r.name == "q" && r.request_ack)
            );
            w.write_all(&encode_response(h.seq, "", None))
                .await
                .unwrap();
            for rec in [
                QueryRecord {
                    record_type: "ack".into(),
                    from: "a".into(),
                    payload: vec![],
                },
                QueryRecord {
                    record_type: "weird".into(),
                    ..Default::default()
                },
                QueryRecord {
                    record_type: "response".into(),
                    from: "a".into(),
                    payload: b"pong".to_vec(),
                },
                QueryRecord {
                    record_type: "done".into(),
                    ..Default::default()
                },
            ] {
                w.write_all(&encode_reply(h.seq, "", &rec)).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        })
        .await;
        let c = RpcClient::connect(&addr, None).await.unwrap();
        let q = c
            .query(&QueryRequest {
                name: "q".into(),
                request_ack: true,
                ..Default::default()
            })
            .await
            .unwrap();
        let r = q.collect().await.unwrap();
        assert_eq!(r.acks, vec!["a"]);
        assert_eq!(
            r.responses,
            vec![NodeResponse {
                from: "a".into(),
                payload: b"pong".to_vec()
            }]
        );
    }

    #[tokio::test]
    async fn query_without_done_times_out() {
        let addr = fake(|mut rd, mut w| async move {
            let h = rd.read_header().await.unwrap();
            rd.read_body(Command::Query).await.unwrap();
            w.write_all(&encode_response(h.seq, "", None))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
        let c = RpcClient::connect(&addr, None).await.unwrap();
        tokio::time::pause();
        let mut q = c
            .query(&QueryRequest {
                name: "q".into(),
                timeout: Duration::from_millis(10),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(matches!(q.next().await, Err(ClientError::Timeout(_))));
    }

    #[tokio::test]
    async fn connect_errors_name_the_address() {
        // A port nothing listens on.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let e = RpcClient::connect(&addr, None).await.unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&addr), "{msg}");
        assert!(msg.contains("connection refused"), "{msg}");
        for bad in [
            "127.0.0.1",
            "127.0.0.1:notaport",
            ":7373",
            "::1:7373",
            "1.2.3.4:99999",
        ] {
            let e = RpcClient::connect(bad, None).await.unwrap_err();
            assert!(matches!(e, ClientError::BadAddress { .. }), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn handshake_refused() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut rd = RequestReader::new(r, 1 << 20);
            let h = rd.read_header().await.unwrap();
            w.write_all(&encode_response(
                h.seq,
                errors::UNSUPPORTED_IPC_VERSION,
                None,
            ))
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        assert_eq!(
            RpcClient::connect(&addr, None).await.unwrap_err(),
            ClientError::Handshake(errors::UNSUPPORTED_IPC_VERSION.into())
        );
    }
}
