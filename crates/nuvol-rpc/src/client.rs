//! An async client of serf's RPC protocol, for the `nuvol` CLI and tests.
//! Works against a nuvol agent or a real serf agent.

use crate::value::*;
use rmpv::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Largest response value accepted.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Error connecting to agent at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The agent answered with an error.
    #[error("{0}")]
    Remote(String),
    #[error("RPC protocol error: {0}")]
    Protocol(String),
    #[error("timed out waiting for the agent")]
    Timeout,
}

impl From<ReadError> for ClientError {
    fn from(e: ReadError) -> Self {
        ClientError::Protocol(e.to_string())
    }
}

/// A member as the RPC reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    pub status: String,
    /// `[pmin, pmax, pcur, dmin, dmax, dcur]`
    pub vsn: [u8; 6],
}

impl Member {
    pub fn from_value(v: &Value) -> Member {
        let b = get_bytes(v, "Addr");
        let addr = match b.len() {
            4 => Some(IpAddr::from([b[0], b[1], b[2], b[3]])),
            16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b);
                let v6 = std::net::Ipv6Addr::from(a);
                Some(
                    v6.to_ipv4_mapped()
                        .map(IpAddr::V4)
                        .unwrap_or(IpAddr::V6(v6)),
                )
            }
            _ => None,
        };
        let u8f = |k: &str| get_u64(v, k).min(255) as u8;
        Member {
            name: get_str(v, "Name"),
            addr,
            port: get_u64(v, "Port").min(u16::MAX as u64) as u16,
            tags: get_str_map(v, "Tags"),
            status: get_str(v, "Status"),
            vsn: [
                u8f("ProtocolMin"),
                u8f("ProtocolMax"),
                u8f("ProtocolCur"),
                u8f("DelegateMin"),
                u8f("DelegateMax"),
                u8f("DelegateCur"),
            ],
        }
    }

    /// `ip:port` as Go's net.TCPAddr prints it.
    pub fn addr_string(&self) -> String {
        match self.addr {
            Some(ip) => SocketAddr::new(ip, self.port).to_string(),
            None => format!(":{}", self.port),
        }
    }
}

/// Result of a key operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyResponse {
    pub messages: BTreeMap<String, String>,
    pub keys: BTreeMap<String, i64>,
    pub num_nodes: i64,
    pub num_err: i64,
    pub num_resp: i64,
    /// The agent's error, if the operation failed somewhere.
    pub error: Option<String>,
}

/// A Vivaldi coordinate as the RPC carries it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Coordinate {
    pub vec: Vec<f64>,
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

impl Coordinate {
    /// Serf's DistanceTo, in seconds.
    pub fn distance_to(&self, other: &Coordinate) -> Option<f64> {
        if self.vec.len() != other.vec.len() {
            return None;
        }
        let d: f64 = self
            .vec
            .iter()
            .zip(&other.vec)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt()
            + self.height
            + other.height;
        let adjusted = d + self.adjustment + other.adjustment;
        Some(if adjusted > 0.0 { adjusted } else { d })
    }
}

/// One record of a running query.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryEvent {
    Ack(String),
    Response { from: String, payload: Vec<u8> },
    Done,
}

/// One record of an event stream (`stream` command), kept generic.
pub type StreamRecord = Value;

/// Parameters of a query.
#[derive(Debug, Clone, Default)]
pub struct QueryRequest {
    pub name: String,
    pub payload: Vec<u8>,
    pub filter_nodes: Vec<String>,
    pub filter_tags: BTreeMap<String, String>,
    pub request_ack: bool,
    pub relay_factor: u8,
    pub timeout: Duration,
}

pub struct RpcClient {
    rd: ValueReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    seq: u64,
}

impl RpcClient {
    /// Connect, handshake and authenticate if a key is given.
    pub async fn connect(
        addr: &str,
        auth: Option<&str>,
        timeout: Duration,
    ) -> Result<RpcClient, ClientError> {
        let conn_err = |reason: String| ClientError::Connect {
            addr: addr.to_owned(),
            reason,
        };
        let sa: SocketAddr = addr
            .parse()
            .map_err(|_| conn_err("not a valid IP:PORT address".into()))?;
        let sock = tokio::time::timeout(timeout, TcpStream::connect(sa))
            .await
            .map_err(|_| conn_err("connection timed out".into()))?
            .map_err(|e| conn_err(e.to_string()))?;
        let (rd, wr) = sock.into_split();
        let mut c = RpcClient {
            rd: ValueReader::new(rd, MAX_RESPONSE),
            wr,
            seq: 0,
        };
        let hs = map(vec![("Version", Value::from(crate::IPC_VERSION))]);
        tokio::time::timeout(timeout, c.call("handshake", Some(hs), false))
            .await
            .map_err(|_| ClientError::Timeout)??;
        if let Some(k) = auth.filter(|k| !k.is_empty()) {
            let a = map(vec![("AuthKey", s(k))]);
            tokio::time::timeout(timeout, c.call("auth", Some(a), false))
                .await
                .map_err(|_| ClientError::Timeout)??;
        }
        Ok(c)
    }

    async fn send(&mut self, cmd: &str, body: Option<Value>) -> Result<u64, ClientError> {
        self.seq += 1;
        let h = request(cmd, self.seq);
        let bytes = match &body {
            Some(b) => encode(&[&h, b]),
            None => encode(&[&h]),
        };
        self.wr
            .write_all(&bytes)
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(self.seq)
    }

    /// Read the next response header for `seq` (skipping stray stream records).
    async fn read_header(&mut self, seq: u64) -> Result<String, ClientError> {
        loop {
            let h = self.rd.next().await?;
            if get_u64(&h, "Seq") == seq {
                return Ok(get_str(&h, "Error"));
            }
        }
    }

    /// Send a command and read its reply (and body, when the command has one).
    async fn call(
        &mut self,
        cmd: &str,
        body: Option<Value>,
        has_body: bool,
    ) -> Result<Option<Value>, ClientError> {
        let seq = self.send(cmd, body).await?;
        let err = self.read_header(seq).await?;
        // serf sends some bodies even with an error; only read them when the
        // call succeeded or the command always has one.
        let resp = if has_body
            && (err.is_empty()
                || matches!(
                    cmd,
                    "join" | "install-key" | "use-key" | "remove-key" | "list-keys"
                )) {
            Some(self.rd.next().await?)
        } else {
            None
        };
        if !err.is_empty() {
            return Err(ClientError::Remote(err));
        }
        Ok(resp)
    }

    pub async fn members(&mut self) -> Result<Vec<Member>, ClientError> {
        let r = self.call("members", None, true).await?;
        Ok(members_of(r.as_ref()))
    }

    pub async fn members_filtered(
        &mut self,
        tags: &BTreeMap<String, String>,
        status: &str,
        name: &str,
    ) -> Result<Vec<Member>, ClientError> {
        let body = map(vec![
            ("Tags", str_map(tags)),
            ("Status", s(status)),
            ("Name", s(name)),
        ]);
        let r = self.call("members-filtered", Some(body), true).await?;
        Ok(members_of(r.as_ref()))
    }

    pub async fn join(&mut self, addrs: &[String], replay: bool) -> Result<i64, ClientError> {
        let body = map(vec![
            ("Existing", str_list(addrs)),
            ("Replay", Value::Boolean(replay)),
        ]);
        let r = self.call("join", Some(body), true).await?;
        Ok(r.map(|v| get_i64(&v, "Num")).unwrap_or(0))
    }

    pub async fn leave(&mut self) -> Result<(), ClientError> {
        self.call("leave", None, false).await.map(|_| ())
    }

    pub async fn force_leave(&mut self, node: &str, prune: bool) -> Result<(), ClientError> {
        let body = map(vec![("Node", s(node)), ("Prune", Value::Boolean(prune))]);
        self.call("force-leave", Some(body), false)
            .await
            .map(|_| ())
    }

    pub async fn update_tags(
        &mut self,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), ClientError> {
        let body = map(vec![
            ("Tags", str_map(set)),
            ("DeleteTags", str_list(delete)),
        ]);
        self.call("tags", Some(body), false).await.map(|_| ())
    }

    pub async fn user_event(
        &mut self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<(), ClientError> {
        let body = map(vec![
            ("Name", s(name)),
            ("Payload", Value::Binary(payload.to_vec())),
            ("Coalesce", Value::Boolean(coalesce)),
        ]);
        self.call("event", Some(body), false).await.map(|_| ())
    }

    /// `install-key`, `use-key`, `remove-key` or `list-keys`.
    pub async fn key_command(
        &mut self,
        cmd: &str,
        key: Option<&str>,
    ) -> Result<KeyResponse, ClientError> {
        let body = key.map(|k| map(vec![("Key", s(k))]));
        let seq = self.send(cmd, body).await?;
        let err = self.read_header(seq).await?;
        let v = self.rd.next().await?;
        let mut keys = BTreeMap::new();
        if let Some(Value::Map(m)) = get(&v, "Keys") {
            for (k, n) in m {
                if let Some(k) = k.as_str() {
                    keys.insert(k.to_owned(), n.as_i64().unwrap_or(0));
                }
            }
        }
        Ok(KeyResponse {
            messages: get_str_map(&v, "Messages"),
            keys,
            num_nodes: get_i64(&v, "NumNodes"),
            num_err: get_i64(&v, "NumErr"),
            num_resp: get_i64(&v, "NumResp"),
            error: (!err.is_empty()).then_some(err),
        })
    }

    pub async fn stats(
        &mut self,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>, ClientError> {
        let r = self.call("stats", None, true).await?;
        let mut out = BTreeMap::new();
        if let Some(Value::Map(m)) = r {
            for (k, v) in m {
                let Some(k) = k.as_str() else { continue };
                let mut inner = BTreeMap::new();
                if let Value::Map(im) = v {
                    for (ik, iv) in im {
                        if let Some(ik) = ik.as_str() {
                            let val = iv
                                .as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| iv.to_string());
                            inner.insert(ik.to_owned(), val);
                        }
                    }
                }
                out.insert(k.to_owned(), inner);
            }
        }
        Ok(out)
    }

    pub async fn get_coordinate(&mut self, node: &str) -> Result<Option<Coordinate>, ClientError> {
        let body = map(vec![("Node", s(node))]);
        let r = self.call("get-coordinate", Some(body), true).await?;
        let Some(r) = r else { return Ok(None) };
        if !get_bool(&r, "Ok") {
            return Ok(None);
        }
        let Some(c) = get(&r, "Coord") else {
            return Ok(None);
        };
        let vec = match get(c, "Vec") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| match x {
                    Value::F64(f) => *f,
                    Value::F32(f) => *f as f64,
                    Value::Integer(i) => i.as_f64().unwrap_or(0.0),
                    _ => 0.0,
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Some(Coordinate {
            vec,
            error: get_f64(c, "Error"),
            adjustment: get_f64(c, "Adjustment"),
            height: get_f64(c, "Height"),
        }))
    }

    /// Start a query; then call [`RpcClient::next_query_event`] until `Done`.
    pub async fn query(&mut self, q: &QueryRequest) -> Result<u64, ClientError> {
        let body = map(vec![
            ("FilterNodes", str_list(&q.filter_nodes)),
            ("FilterTags", str_map(&q.filter_tags)),
            ("RequestAck", Value::Boolean(q.request_ack)),
            ("RelayFactor", Value::from(q.relay_factor)),
            (
                "Timeout",
                Value::from(q.timeout.as_nanos().min(i64::MAX as u128) as i64),
            ),
            ("Name", s(&q.name)),
            ("Payload", Value::Binary(q.payload.clone())),
        ]);
        let seq = self.send("query", Some(body)).await?;
        let err = self.read_header(seq).await?;
        if !err.is_empty() {
            return Err(ClientError::Remote(err));
        }
        Ok(seq)
    }

    pub async fn next_query_event(&mut self, seq: u64) -> Result<QueryEvent, ClientError> {
        let err = self.read_header(seq).await?;
        if !err.is_empty() {
            return Err(ClientError::Remote(err));
        }
        let rec = self.rd.next().await?;
        Ok(match get_str(&rec, "Type").as_str() {
            "ack" => QueryEvent::Ack(get_str(&rec, "From")),
            "response" => QueryEvent::Response {
                from: get_str(&rec, "From"),
                payload: get_bytes(&rec, "Payload"),
            },
            "done" => QueryEvent::Done,
            other => {
                return Err(ClientError::Protocol(format!(
                    "unknown query record {other:?}"
                )))
            }
        })
    }

    /// Subscribe to log lines at `level` or above; read with [`RpcClient::next_record`].
    pub async fn monitor(&mut self, level: &str) -> Result<u64, ClientError> {
        let body = map(vec![("LogLevel", s(level))]);
        let seq = self.send("monitor", Some(body)).await?;
        let err = self.read_header(seq).await?;
        if !err.is_empty() {
            return Err(ClientError::Remote(err));
        }
        Ok(seq)
    }

    /// Subscribe to events matching `filter` (serf's event filter syntax).
    pub async fn stream(&mut self, filter: &str) -> Result<u64, ClientError> {
        let body = map(vec![("Type", s(filter))]);
        let seq = self.send("stream", Some(body)).await?;
        let err = self.read_header(seq).await?;
        if !err.is_empty() {
            return Err(ClientError::Remote(err));
        }
        Ok(seq)
    }

    /// The next record of a stream started with `monitor` or `stream`.
    pub async fn next_record(&mut self, seq: u64) -> Result<StreamRecord, ClientError> {
        let err = self.read_header(seq).await?;
        if !err.is_empty() {
            return Err(ClientError::Remote(err));
        }
        Ok(self.rd.next().await?)
    }

    /// Answer a query received on an event stream.
    pub async fn respond(&mut self, id: u64, payload: &[u8]) -> Result<(), ClientError> {
        let body = map(vec![
            ("ID", Value::from(id)),
            ("Payload", Value::Binary(payload.to_vec())),
        ]);
        self.call("respond", Some(body), false).await.map(|_| ())
    }
}

fn members_of(v: Option<&Value>) -> Vec<Member> {
    match v.and_then(|v| get(v, "Members")) {
        Some(Value::Array(a)) => a.iter().map(Member::from_value).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_from_value_handles_both_ip_forms() {
        let v4 = map(vec![
            ("Name", s("a")),
            ("Addr", Value::Binary(vec![127, 0, 0, 1])),
            ("Port", Value::from(7946)),
            ("Status", s("alive")),
        ]);
        let m = Member::from_value(&v4);
        assert_eq!(m.addr_string(), "127.0.0.1:7946");
        let mapped = map(vec![(
            "Addr",
            Value::Binary(
                std::net::Ipv4Addr::new(10, 0, 0, 2)
                    .to_ipv6_mapped()
                    .octets()
                    .to_vec(),
            ),
        )]);
        assert_eq!(
            Member::from_value(&mapped).addr,
            Some("10.0.0.2".parse().unwrap())
        );
    }

    #[test]
    fn coordinate_distance() {
        let a = Coordinate {
            vec: vec![0.0, 0.0],
            error: 1.0,
            adjustment: 0.0,
            height: 0.001,
        };
        let b = Coordinate {
            vec: vec![0.003, 0.004],
            ..a.clone()
        };
        assert!((a.distance_to(&b).unwrap() - 0.007).abs() < 1e-12);
    }
}
