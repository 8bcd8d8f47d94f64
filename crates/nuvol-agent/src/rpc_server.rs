//! Serf's msgpack RPC ("IPC") protocol, server side, so both `nuvol` and
//! Debian's `serf` CLI can drive a nuvol agent. Requests are decoded into
//! `nuvol_rpc::server::Request` and answered with `nuvol_rpc::types` bodies;
//! this module only maps them onto the agent. Streams (`stream`, `monitor`,
//! `query`) keep sending records under their request's `Seq`.
//!
//! Bad input from a client (garbage, oversized values, unknown commands)
//! closes that client's connection with a log line; the agent is unaffected.

use crate::runtime::{AgentError, AgentHandle, QueryUpdate};
use nuvol_gossip::{Event, KeyOp, KeyOpResult, QueryParams};
use nuvol_rpc::proto::Command;
use nuvol_rpc::server::{encode_reply, encode_response, Request, RequestReader};
use nuvol_rpc::types::*;
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

fn err_text<T>(r: &Result<T, AgentError>) -> String {
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
    agent: AgentHandle,
    out: mpsc::Sender<Vec<u8>>,
    handshake_done: bool,
    did_auth: bool,
    /// Event streams by seq; aborted on `stop` or disconnect.
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

type Reader = RequestReader<tokio::net::tcp::OwnedReadHalf>;

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
        let mut reader = RequestReader::new(rd, MAX_REQUEST);
        let mut c = Client {
            agent,
            out,
            handshake_done: false,
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
            let auth_key = self.agent.config.rpc_auth.clone();
            if auth_key.is_some()
                && !self.did_auth
                && cmd != Command::Auth
                && cmd != Command::Handshake
            {
                // As serf: refuse without reading the body.
                self.reply(seq, "Authentication required").await?;
                continue;
            }
            let req = rd.read_body(cmd).await.map_err(|e| e.to_string())?;
            self.handle(seq, req, auth_key).await?;
        }
    }

    async fn handle(
        &mut self,
        seq: u64,
        req: Request,
        auth_key: Option<String>,
    ) -> Result<(), String> {
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
                let err = if auth_key.is_none() || Some(a.auth_key) == auth_key {
                    self.did_auth = true;
                    ""
                } else {
                    "Invalid authentication token"
                };
                self.reply(seq, err).await
            }
            Request::Event(e) => {
                let r = self.agent.user_event(e.name, e.payload, e.coalesce).await;
                self.reply(seq, &err_text(&r)).await
            }
            Request::ForceLeave(f) => {
                let r = self.agent.force_leave(f.node, f.prune).await;
                self.reply(seq, &err_text(&r)).await
            }
            Request::Join(j) => {
                let r = self.agent.join(&j.existing, j.replay).await;
                let num = *r.as_ref().unwrap_or(&0) as i32;
                self.send(encode_reply(seq, &err_text(&r), &JoinResponse { num }))
                    .await
            }
            Request::Members => {
                let members = self.agent.members().await.map_err(|e| e.to_string())?;
                let body = MembersResponse {
                    members: members.iter().map(rpc_member).collect(),
                };
                self.send(encode_reply(seq, "", &body)).await
            }
            Request::MembersFiltered(f) => {
                let members = self.agent.members().await.map_err(|e| e.to_string())?;
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
                let r = self.agent.set_tags(t.tags, t.delete_tags).await;
                self.reply(seq, &err_text(&r)).await
            }
            Request::Leave => {
                let r = self.agent.leave().await;
                self.reply(seq, &err_text(&r)).await?;
                // serf shuts the agent down after a leave.
                self.agent.shutdown("left").await;
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
                self.reply(seq, "").await?;
                let h = tokio::spawn(event_stream(
                    self.agent.clone(),
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
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
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
                match self.agent.query(q.name, q.payload, params).await {
                    Ok(rx) => {
                        self.reply(seq, "").await?;
                        tokio::spawn(query_stream(rx, self.out.clone(), seq));
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
                    Some(inner) => err_text(&self.agent.respond(inner, r.payload).await),
                    None => "No pending queries matching ID".to_string(),
                };
                self.reply(seq, &err).await
            }
            Request::Stats => {
                let stats = self.stats().await.map_err(|e| e.to_string())?;
                self.send(encode_reply(seq, "", &stats)).await
            }
            Request::GetCoordinate(c) => {
                let node = c.node;
                let found = self
                    .agent
                    .call(move |c| c.gossip.coordinate(&node))
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
        match self.agent.key_op(op, raw).await {
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

    async fn stats(&self) -> Result<Stats, AgentError> {
        let handlers = self.agent.config.event_handlers.clone();
        // Lets `nuvol publish|services ...` given only --rpc-addr find the
        // REST API and its token.
        let mut nuvol = BTreeMap::new();
        if let Some(a) = self.agent.config.http_addr {
            nuvol.insert("http_addr".to_owned(), a.to_string());
        }
        nuvol.insert(
            "data_dir".to_owned(),
            self.agent.config.data_dir.display().to_string(),
        );
        self.agent
            .call(move |c| {
                let g = &c.gossip;
                let (members, failed, left) = g.counts();
                let (iq, eq, qq) = g.queue_depths();
                let (clock, eclock, qclock) = g.clocks();
                let st = &g.stats;
                let section = |pairs: Vec<(&str, String)>| -> BTreeMap<String, String> {
                    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                };
                let mut out = BTreeMap::new();
                out.insert(
                    "agent".to_owned(),
                    section(vec![("name", g.name().to_owned())]),
                );
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
                        ("members", members.to_string()),
                        ("failed", failed.to_string()),
                        ("left", left.to_string()),
                        ("health_score", g.health_score().to_string()),
                        ("member_time", clock.to_string()),
                        ("event_time", eclock.to_string()),
                        ("query_time", qclock.to_string()),
                        ("intent_queue", iq.to_string()),
                        ("event_queue", eq.to_string()),
                        ("query_queue", qq.to_string()),
                        ("encrypted", g.encryption_enabled().to_string()),
                        ("packets_in", st.packets_in.to_string()),
                        ("packets_out", st.packets_out.to_string()),
                        ("packets_dropped", st.packets_dropped.to_string()),
                        ("decrypt_failures", st.decrypt_failures.to_string()),
                        ("decode_failures", st.decode_failures.to_string()),
                        ("streams_dropped", st.streams_dropped.to_string()),
                    ]),
                );
                out.insert("tags".to_owned(), g.tags().clone());
                out.insert("nuvol".to_owned(), nuvol);
                out.insert(
                    "event_handlers".to_owned(),
                    handlers.iter().map(|h| (h.clone(), h.clone())).collect(),
                );
                Stats(out)
            })
            .await
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

async fn query_stream(mut rx: mpsc::Receiver<QueryUpdate>, out: mpsc::Sender<Vec<u8>>, seq: u64) {
    while let Some(u) = rx.recv().await {
        let done = u == QueryUpdate::Done;
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
            QueryUpdate::Done => QueryRecord {
                record_type: QUERY_RECORD_DONE.into(),
                from: String::new(),
                payload: Vec::new(),
            },
        };
        if out.send(encode_reply(seq, "", &rec)).await.is_err() || done {
            return;
        }
    }
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
