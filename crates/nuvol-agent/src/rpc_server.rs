//! Serf's msgpack RPC ("IPC") protocol, server side, so both `nuvol` and
//! Debian's `serf` CLI can drive a nuvol agent. Each request is a header map
//! `{Command, Seq}` followed by an optional body; each response is a header
//! `{Seq, Error}` followed by an optional body; streams (`stream`, `monitor`,
//! `query`) keep sending records under their request's `Seq`.
//!
//! Bad input from a client (garbage, oversized values, unknown commands)
//! closes that client's connection with a log line; the agent is unaffected.

use crate::runtime::{AgentError, AgentHandle, QueryUpdate};
use nuvol_gossip::{Event, KeyOp, KeyOpResult, Member, QueryParams};
use nuvol_rpc::value::*;
use rmpv::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Largest single request value accepted from a client.
const MAX_REQUEST: usize = 1024 * 1024;
/// Concurrent RPC clients.
const MAX_CLIENTS: usize = 256;

/// Bind the RPC listener and serve clients in the background.
pub async fn serve(agent: AgentHandle) -> std::io::Result<SocketAddr> {
    let addr = agent.config.rpc_addr;
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "RPC listening");
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    tokio::spawn(async move {
        loop {
            let (sock, peer) = match listener.accept().await {
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
            let agent = agent.clone();
            tokio::spawn(async move {
                let _p = permit;
                tracing::debug!(%peer, "accepted RPC client");
                if let Err(e) = Client::run(agent, sock).await {
                    tracing::debug!(%peer, error = %e, "RPC client closed");
                }
            });
        }
    });
    Ok(local)
}

// ------------------------------------------------------------------ helpers

fn ip_bytes(ip: std::net::IpAddr) -> Value {
    // Go's net.IP for IPv4 as the 16-byte form serf's own RPC sends.
    match ip {
        std::net::IpAddr::V4(v4) => Value::Binary(v4.to_ipv6_mapped().octets().to_vec()),
        std::net::IpAddr::V6(v6) => Value::Binary(v6.octets().to_vec()),
    }
}

pub(crate) fn member_value(m: &Member) -> Value {
    map(vec![
        ("Name", s(&m.name)),
        ("Addr", ip_bytes(m.addr.ip())),
        ("Port", Value::from(m.addr.port())),
        ("Tags", str_map(&m.tags)),
        ("Status", s(m.status.as_str())),
        ("ProtocolMin", Value::from(m.vsn[0])),
        ("ProtocolMax", Value::from(m.vsn[1])),
        ("ProtocolCur", Value::from(m.vsn[2])),
        ("DelegateMin", Value::from(m.vsn[3])),
        ("DelegateMax", Value::from(m.vsn[4])),
        ("DelegateCur", Value::from(m.vsn[5])),
    ])
}

fn err_string(e: &AgentError) -> String {
    e.to_string()
}

// ------------------------------------------------------------------ client

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
    agent: AgentHandle,
    out: mpsc::Sender<Vec<u8>>,
    version: i64,
    did_auth: bool,
    /// Event/log streams by seq; dropping the sender side stops them.
    streams: HashMap<u64, tokio::task::JoinHandle<()>>,
    monitor: Option<(u64, tokio::task::JoinHandle<()>)>,
    /// Query IDs handed to this client's event streams.
    pending: Arc<std::sync::Mutex<Pending>>,
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

impl Client {
    async fn run(agent: AgentHandle, sock: TcpStream) -> Result<(), String> {
        let (rd, mut wr) = sock.into_split();
        let (out, mut out_rx) = mpsc::channel::<Vec<u8>>(1024);
        let writer = tokio::spawn(async move {
            while let Some(b) = out_rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    return;
                }
            }
        });
        let mut reader = ValueReader::new(rd, MAX_REQUEST);
        let mut c = Client {
            agent,
            out,
            version: 0,
            did_auth: false,
            streams: HashMap::new(),
            monitor: None,
            pending: Arc::new(std::sync::Mutex::new(Pending::default())),
        };
        let r = c.serve(&mut reader).await;
        drop(c);
        let _ = writer.await;
        r
    }

    async fn send(&self, seq: u64, err: &str, body: Option<Value>) -> Result<(), String> {
        let h = header(seq, err);
        let bytes = match &body {
            Some(b) => encode(&[&h, b]),
            None => encode(&[&h]),
        };
        self.out
            .send(bytes)
            .await
            .map_err(|_| "writer closed".to_string())
    }

    async fn serve(
        &mut self,
        rd: &mut ValueReader<tokio::net::tcp::OwnedReadHalf>,
    ) -> Result<(), String> {
        loop {
            let h = rd.next().await.map_err(|e| e.to_string())?;
            let command = get_str(&h, "Command");
            let seq = get_u64(&h, "Seq");
            if command != "handshake" && self.version == 0 {
                self.send(seq, "Handshake required", None).await?;
                return Err("handshake required".into());
            }
            let auth_key = self.agent.config.rpc_auth.clone();
            if auth_key.is_some() && !self.did_auth && command != "auth" && command != "handshake" {
                // serf reads no body here either; the client must auth first.
                self.send(seq, "Authentication required", None).await?;
                continue;
            }
            match command.as_str() {
                "handshake" => {
                    let body = rd.next().await.map_err(|e| e.to_string())?;
                    let v = get_i64(&body, "Version");
                    let err = if v != 1 {
                        "Unsupported IPC version"
                    } else if self.version != 0 {
                        "Handshake already performed"
                    } else {
                        self.version = v;
                        ""
                    };
                    self.send(seq, err, None).await?;
                }
                "auth" => {
                    let body = rd.next().await.map_err(|e| e.to_string())?;
                    let key = get_str(&body, "AuthKey");
                    let err = if Some(key) == auth_key || auth_key.is_none() {
                        self.did_auth = true;
                        ""
                    } else {
                        "Invalid authentication token"
                    };
                    self.send(seq, err, None).await?;
                }
                "event" => {
                    let body = rd.next().await.map_err(|e| e.to_string())?;
                    let r = self
                        .agent
                        .user_event(
                            get_str(&body, "Name"),
                            get_bytes(&body, "Payload"),
                            get_bool(&body, "Coalesce"),
                        )
                        .await;
                    self.send(
                        seq,
                        &r.err().map(|e| err_string(&e)).unwrap_or_default(),
                        None,
                    )
                    .await?;
                }
                "force-leave" => {
                    let body = rd.next().await.map_err(|e| e.to_string())?;
                    let r = self
                        .agent
                        .force_leave(get_str(&body, "Node"), get_bool(&body, "Prune"))
                        .await;
                    self.send(
                        seq,
                        &r.err().map(|e| err_string(&e)).unwrap_or_default(),
                        None,
                    )
                    .await?;
                }
                "join" => {
                    let body = rd.next().await.map_err(|e| e.to_string())?;
                    let existing = get_str_list(&body, "Existing");
                    let replay = get_bool(&body, "Replay");
                    let (num, err) = match self.agent.join(&existing, replay).await {
                        Ok(n) => (n, String::new()),
                        Err(e) => (0, err_string(&e)),
                    };
                    self.send(seq, &err, Some(map(vec![("Num", Value::from(num as i64))])))
                        .await?;
                }
                "members" | "members-filtered" => {
                    let filter = if command == "members-filtered" {
                        Some(rd.next().await.map_err(|e| e.to_string())?)
                    } else {
                        None
                    };
                    let members = self.agent.members().await.map_err(|e| e.to_string())?;
                    let (members, err) = match &filter {
                        Some(f) => match filter_members(
                            members,
                            &get_str_map(f, "Tags"),
                            &get_str(f, "Status"),
                            &get_str(f, "Name"),
                        ) {
                            Ok(m) => (m, String::new()),
                            Err(e) => (Vec::new(), e),
                        },
                        None => (members, String::new()),
                    };
                    let list = Value::Array(members.iter().map(member_value).collect());
                    self.send(seq, &err, Some(map(vec![("Members", list)])))
                        .await?;
                }
                "tags" => {
                    let body = rd.next().await.map_err(|e| e.to_string())?;
                    let r = self
                        .agent
                        .set_tags(
                            get_str_map(&body, "Tags"),
                            get_str_list(&body, "DeleteTags"),
                        )
                        .await;
                    self.send(
                        seq,
                        &r.err().map(|e| err_string(&e)).unwrap_or_default(),
                        None,
                    )
                    .await?;
                }
                "leave" => {
                    let r = self.agent.leave().await;
                    self.send(
                        seq,
                        &r.err().map(|e| err_string(&e)).unwrap_or_default(),
                        None,
                    )
                    .await?;
                    // serf shuts the agent down after a leave.
                    self.agent.shutdown("left").await;
                    return Ok(());
                }
                "install-key" | "use-key" | "remove-key" | "list-keys" => {
                    let (op, key) = match command.as_str() {
                        "install-key" => (
                            KeyOp::Install,
                            Some(rd.next().await.map_err(|e| e.to_string())?),
                        ),
                        "use-key" => (
                            KeyOp::Use,
                            Some(rd.next().await.map_err(|e| e.to_string())?),
                        ),
                        "remove-key" => (
                            KeyOp::Remove,
                            Some(rd.next().await.map_err(|e| e.to_string())?),
                        ),
                        _ => (KeyOp::List, None),
                    };
                    let (res, err) = self.key_op(op, key.as_ref()).await;
                    let mut body = vec![
                        ("Messages", str_map(&res.messages)),
                        ("NumNodes", Value::from(res.num_nodes as i64)),
                        ("NumErr", Value::from(res.num_err as i64)),
                        ("NumResp", Value::from(res.num_resp as i64)),
                    ];
                    if op == KeyOp::List {
                        body.insert(
                            1,
                            (
                                "Keys",
                                Value::Map(
                                    res.keys
                                        .iter()
                                        .map(|(k, n)| (s(k), Value::from(*n as i64)))
                                        .collect(),
                                ),
                            ),
                        );
                    }
                    self.send(seq, &err, Some(map(body))).await?;
                }
                "stream" => {
                    let body = rd.next().await.map_err(|e| e.to_string())?;
                    let ty = get_str(&body, "Type");
                    let filters = match crate::handlers::EventFilter::parse_list(&ty) {
                        Ok(f) => f,
                        Err(_) => {
                            self.send(seq, "Invalid event filter", None).await?;
                            continue;
                        }
                    };
                    if self.streams.contains_key(&seq) {
                        self.send(seq, "Stream with given sequence exists", None)
                            .await?;
                        continue;
                    }
                    self.send(seq, "", None).await?;
                    let h = tokio::spawn(event_stream(
                        self.agent.clone(),
                        self.out.clone(),
                        seq,
                        filters,
                        self.pending.clone(),
                    ));
                    self.streams.insert(seq, h);
                }
                "monitor" => {
                    let body = rd.next().await.map_err(|e| e.to_string())?;
                    let level = get_str(&body, "LogLevel").to_uppercase();
                    let Some(min) = crate::logs::parse_level(&level) else {
                        self.send(seq, &format!("Unknown log level: {level}"), None)
                            .await?;
                        continue;
                    };
                    if self.monitor.is_some() {
                        self.send(seq, "Monitor already exists", None).await?;
                        continue;
                    }
                    self.send(seq, "", None).await?;
                    let out = self.out.clone();
                    let mut rx = crate::logs::subscribe();
                    let h = tokio::spawn(async move {
                        loop {
                            match rx.recv().await {
                                Ok(l) => {
                                    if l.level > min {
                                        continue;
                                    }
                                    let b = encode(&[
                                        &header(seq, ""),
                                        &map(vec![("Log", s(&l.line))]),
                                    ]);
                                    if out.send(b).await.is_err() {
                                        return;
                                    }
                                }
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                    continue
                                }
                                Err(_) => return,
                            }
                        }
                    });
                    self.monitor = Some((seq, h));
                }
                "stop" => {
                    let body = rd.next().await.map_err(|e| e.to_string())?;
                    let stop = get_u64(&body, "Stop");
                    if let Some(h) = self.streams.remove(&stop) {
                        h.abort();
                    }
                    if self.monitor.as_ref().is_some_and(|(s, _)| *s == stop) {
                        if let Some((_, h)) = self.monitor.take() {
                            h.abort();
                        }
                    }
                    self.send(seq, "", None).await?;
                }
                "query" => {
                    let body = rd.next().await.map_err(|e| e.to_string())?;
                    let timeout_ns = get_i64(&body, "Timeout").max(0) as u64;
                    let params = QueryParams {
                        filter_nodes: get_str_list(&body, "FilterNodes"),
                        filter_tags: get_str_map(&body, "FilterTags"),
                        request_ack: get_bool(&body, "RequestAck"),
                        relay_factor: get_u64(&body, "RelayFactor").min(255) as u8,
                        timeout: Duration::from_nanos(timeout_ns),
                    };
                    match self
                        .agent
                        .query(get_str(&body, "Name"), get_bytes(&body, "Payload"), params)
                        .await
                    {
                        Ok(mut rx) => {
                            self.send(seq, "", None).await?;
                            let out = self.out.clone();
                            tokio::spawn(async move {
                                while let Some(u) = rx.recv().await {
                                    let rec = match &u {
                                        QueryUpdate::Ack(from) => map(vec![
                                            ("Type", s("ack")),
                                            ("From", s(from)),
                                            ("Payload", Value::Nil),
                                        ]),
                                        QueryUpdate::Response { from, payload } => map(vec![
                                            ("Type", s("response")),
                                            ("From", s(from)),
                                            ("Payload", Value::Binary(payload.clone())),
                                        ]),
                                        QueryUpdate::Done => map(vec![
                                            ("Type", s("done")),
                                            ("From", s("")),
                                            ("Payload", Value::Nil),
                                        ]),
                                    };
                                    if out.send(encode(&[&header(seq, ""), &rec])).await.is_err() {
                                        return;
                                    }
                                    if u == QueryUpdate::Done {
                                        return;
                                    }
                                }
                            });
                        }
                        Err(e) => self.send(seq, &err_string(&e), None).await?,
                    }
                }
                "respond" => {
                    let body = rd.next().await.map_err(|e| e.to_string())?;
                    let id = get_u64(&body, "ID");
                    let inner = self
                        .pending
                        .lock()
                        .ok()
                        .and_then(|p| p.ids.get(&id).copied());
                    let err = match inner {
                        Some(inner) => self
                            .agent
                            .respond(inner, get_bytes(&body, "Payload"))
                            .await
                            .err()
                            .map(|e| err_string(&e))
                            .unwrap_or_default(),
                        None => "No pending queries matching ID".to_string(),
                    };
                    self.send(seq, &err, None).await?;
                }
                "stats" => {
                    let stats = self.stats().await.map_err(|e| e.to_string())?;
                    self.send(seq, "", Some(stats)).await?;
                }
                "get-coordinate" => {
                    let body = rd.next().await.map_err(|e| e.to_string())?;
                    let node = get_str(&body, "Node");
                    let c = self
                        .agent
                        .call(move |c| c.gossip.coordinate(&node))
                        .await
                        .map_err(|e| e.to_string())?;
                    let (coord, ok) = match c {
                        Some(c) => (c, true),
                        None => (
                            nuvol_gossip::coordinate::Coordinate {
                                vec: Vec::new(),
                                error: 0.0,
                                adjustment: 0.0,
                                height: 0.0,
                            },
                            false,
                        ),
                    };
                    let cv = map(vec![
                        (
                            "Vec",
                            Value::Array(coord.vec.iter().map(|x| Value::F64(*x)).collect()),
                        ),
                        ("Error", Value::F64(coord.error)),
                        ("Adjustment", Value::F64(coord.adjustment)),
                        ("Height", Value::F64(coord.height)),
                    ]);
                    self.send(
                        seq,
                        "",
                        Some(map(vec![("Coord", cv), ("Ok", Value::Boolean(ok))])),
                    )
                    .await?;
                }
                other => {
                    self.send(seq, "Unsupported command", None).await?;
                    return Err(format!("command '{other}' not recognized"));
                }
            }
        }
    }

    async fn key_op(&self, op: KeyOp, req: Option<&Value>) -> (KeyOpResult, String) {
        let key = match req {
            Some(v) => {
                let k = get_str(v, "Key");
                match nuvol_wire::security::parse_key(&k) {
                    Ok(k) => k.to_vec(),
                    Err(e) => return (KeyOpResult::default(), e.to_string()),
                }
            }
            None => Vec::new(),
        };
        match self.agent.key_op(op, key).await {
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
            Err(e) => (KeyOpResult::default(), err_string(&e)),
        }
    }

    async fn stats(&self) -> Result<Value, AgentError> {
        let handlers = self.agent.config.event_handlers.clone();
        self.agent
            .call(move |c| {
                let g = &c.gossip;
                let (members, failed, left) = g.counts();
                let (iq, eq, qq) = g.queue_depths();
                let (clock, eclock, qclock) = g.clocks();
                let st = &g.stats;
                let n = |v: u64| s(&v.to_string());
                let agent = map(vec![("name", s(g.name()))]);
                let runtime = map(vec![
                    ("os", s(std::env::consts::OS)),
                    ("arch", s(std::env::consts::ARCH)),
                    ("version", s(env!("CARGO_PKG_VERSION"))),
                    ("implementation", s("nuvol")),
                ]);
                let serf = map(vec![
                    ("members", n(members as u64)),
                    ("failed", n(failed as u64)),
                    ("left", n(left as u64)),
                    ("health_score", n(g.health_score() as u64)),
                    ("member_time", n(clock)),
                    ("event_time", n(eclock)),
                    ("query_time", n(qclock)),
                    ("intent_queue", n(iq as u64)),
                    ("event_queue", n(eq as u64)),
                    ("query_queue", n(qq as u64)),
                    (
                        "encrypted",
                        s(if g.encryption_enabled() {
                            "true"
                        } else {
                            "false"
                        }),
                    ),
                    ("packets_in", n(st.packets_in)),
                    ("packets_out", n(st.packets_out)),
                    ("packets_dropped", n(st.packets_dropped)),
                    ("decrypt_failures", n(st.decrypt_failures)),
                    ("decode_failures", n(st.decode_failures)),
                    ("streams_dropped", n(st.streams_dropped)),
                ]);
                let tags = str_map(g.tags());
                let eh = Value::Map(handlers.iter().map(|h| (s(h), s(h))).collect());
                map(vec![
                    ("agent", agent),
                    ("runtime", runtime),
                    ("serf", serf),
                    ("tags", tags),
                    ("event_handlers", eh),
                ])
            })
            .await
    }
}

fn filter_members(
    members: Vec<Member>,
    tags: &BTreeMap<String, String>,
    status: &str,
    name: &str,
) -> Result<Vec<Member>, String> {
    let anchored = |e: &str| {
        regex::Regex::new(&format!("^(?:{e})$"))
            .map_err(|e| format!("Failed to compile regex: {e}"))
    };
    let tag_res: Vec<(String, regex::Regex)> = tags
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

async fn event_stream(
    agent: AgentHandle,
    out: mpsc::Sender<Vec<u8>>,
    seq: u64,
    filters: Vec<crate::handlers::EventFilter>,
    pending: Arc<std::sync::Mutex<Pending>>,
) {
    let mut rx = agent.subscribe();
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(seq, lost = n, "RPC event stream lagging, events dropped");
                continue;
            }
            Err(_) => return,
        };
        if !filters.iter().any(|f| f.matches(&ev)) {
            continue;
        }
        let rec = match &ev {
            Event::Member { kind, members } => map(vec![
                ("Event", s(kind.as_str())),
                (
                    "Members",
                    Value::Array(members.iter().map(member_value).collect()),
                ),
            ]),
            Event::User {
                ltime,
                name,
                payload,
                coalesce,
            } => map(vec![
                ("Event", s("user")),
                ("LTime", Value::from(*ltime)),
                ("Name", s(name)),
                ("Payload", Value::Binary(payload.clone())),
                ("Coalesce", Value::Boolean(*coalesce)),
            ]),
            Event::Query {
                id,
                ltime,
                name,
                payload,
                ..
            } => {
                let next_id = match pending.lock() {
                    Ok(mut p) => p.register(id.0),
                    Err(_) => return,
                };
                map(vec![
                    ("Event", s("query")),
                    ("ID", Value::from(next_id)),
                    ("LTime", Value::from(*ltime)),
                    ("Name", s(name)),
                    ("Payload", Value::Binary(payload.clone())),
                ])
            }
        };
        if out.send(encode(&[&header(seq, ""), &rec])).await.is_err() {
            return;
        }
    }
}
