//! An async SNMP v1/v2c client for one device: sysUpTime and, per
//! interface, ifOperStatus and the octet counters.
//!
//! The PDU decoder is the `snmp2` crate's; this module encodes the requests
//! (GET, GETNEXT, GETBULK: a few lines of BER), runs the UDP exchange, and
//! adds timeouts and retries, the 64-bit to 32-bit fallback, the ifIndex
//! walk, and typed errors. OIDs are numeric (Debian ships no IF-MIB text).
//! snmp2's own session is not used: it allocates two 64 KiB buffers per
//! session, and a monitor opens a session per probe, up to
//! [`crate::component::MAX_SNMP`] at once.
//!
//! - 64-bit `ifHCInOctets`/`ifHCOutOctets` first (v2c); when the agent
//!   answers noSuchObject/noSuchInstance, the 32-bit `ifInOctets`/
//!   `ifOutOctets`. SNMPv1 has no Counter64: 32-bit only.
//! - No interfaces listed: walk `ifIndex` (GETBULK in v2c, GETNEXT in v1),
//!   at most [`MAX_INTERFACES`].
//! - Each attempt runs on a fresh session (a fresh UDP socket) after a
//!   timeout, so a late answer to an abandoned request is never taken for
//!   the answer to the next one.
//! - A v2c agent drops requests with a wrong community: that is
//!   [`SnmpError::NoAnswer`], like an unreachable device.

use crate::counters::Point;
use crate::devices::{Device, SnmpVersion};
use snmp2::{Pdu, Value};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;
use tracing::{debug, warn};

/// sysUpTime.0
pub const SYS_UPTIME: &[u64] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
/// ifIndex (ifTable column 1).
pub const IF_INDEX: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 1];
/// ifTable columns: ifOperStatus (8), ifInOctets (10), ifOutOctets (16).
const IF_TABLE: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1];
/// ifXTable columns: ifHCInOctets (6), ifHCOutOctets (10).
const IFX_TABLE: &[u64] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1];

/// The walk's bound: a bigger table is cut (with a warning).
pub const MAX_INTERFACES: usize = 256;
/// Interfaces per GET (3 varbinds each): well inside a 1500-byte answer.
const IFS_PER_GET: usize = 10;
/// GETBULK repetitions per request in the ifIndex walk.
const BULK: u32 = 32;

/// Timeout and retries.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long to wait for each answer.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(1),
            retries: 1,
        }
    }
}

/// One interface's reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfSample {
    pub index: u32,
    /// ifOperStatus is up(1).
    pub oper_up: bool,
    pub in_octets: u64,
    pub out_octets: u64,
    /// 64-bit counters (else 32-bit).
    pub hc: bool,
}

/// One device's reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// sysUpTime.0, centiseconds.
    pub uptime_cs: u32,
    pub interfaces: Vec<IfSample>,
    /// Listed interfaces the agent does not have.
    pub missing: Vec<u32>,
}

impl Sample {
    /// The counters of interface `index`, for [`crate::counters`].
    pub fn point(&self, index: u32) -> Option<Point> {
        self.interfaces
            .iter()
            .find(|i| i.index == index)
            .map(|i| Point {
                uptime_cs: self.uptime_cs,
                in_octets: i.in_octets,
                out_octets: i.out_octets,
                hc: i.hc,
            })
    }
}

/// A response that is not what was asked for, or not SNMP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Garbage(pub String);

#[derive(Debug, thiserror::Error)]
pub enum SnmpError {
    #[error("device {0} has no SNMP settings")]
    NotConfigured(String),
    #[error(
        "no answer from {addr} after {attempts} tries of {}ms (wrong community, hung agent or unreachable){}",
        timeout.as_millis(),
        if *refused { "; an ICMP unreachable came back (nothing listens there, or no route)" } else { "" }
    )]
    NoAnswer {
        addr: SocketAddr,
        attempts: u32,
        timeout: Duration,
        /// An ICMP port unreachable came back (nothing listens there).
        refused: bool,
    },
    #[error("socket for {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("garbage from {addr}: {what}")]
    Garbage { addr: SocketAddr, what: Garbage },
    #[error("{addr} answered error-status {name} ({status}) at varbind {index}")]
    Agent {
        addr: SocketAddr,
        status: u32,
        name: &'static str,
        index: u32,
    },
}

/// A varbind's value, owned (the crate's borrows the session's buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Int(i64),
    Counter32(u32),
    Counter64(u64),
    Ticks(u32),
    /// noSuchObject or noSuchInstance.
    NoSuch,
    EndOfMib,
    /// Anything else, as text (for error messages).
    Other(String),
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Int(n) => write!(f, "INTEGER {n}"),
            Val::Counter32(n) => write!(f, "Counter32 {n}"),
            Val::Counter64(n) => write!(f, "Counter64 {n}"),
            Val::Ticks(n) => write!(f, "TimeTicks {n}"),
            Val::NoSuch => f.write_str("noSuchObject/noSuchInstance"),
            Val::EndOfMib => f.write_str("endOfMibView"),
            Val::Other(s) => f.write_str(s),
        }
    }
}

/// A decoded response PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub req_id: i32,
    pub error_status: u32,
    pub error_index: u32,
    pub varbinds: Vec<(Vec<u64>, Val)>,
}

fn val(v: &Value<'_>) -> Val {
    match v {
        Value::Integer(n) => Val::Int(*n),
        Value::Counter32(n) => Val::Counter32(*n),
        Value::Counter64(n) => Val::Counter64(*n),
        Value::Timeticks(n) => Val::Ticks(*n),
        Value::NoSuchObject | Value::NoSuchInstance => Val::NoSuch,
        Value::EndOfMibView => Val::EndOfMib,
        other => {
            let mut s = format!("{other:?}");
            if s.len() > 80 {
                let mut cut = 80;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push('…');
            }
            Val::Other(s)
        }
    }
}

fn convert(pdu: &Pdu<'_>) -> Result<Response, Garbage> {
    let mut varbinds = Vec::new();
    for (oid, v) in pdu.varbinds.clone() {
        let Some(arcs) = oid.iter() else {
            return Err(Garbage(format!("an OID arc above 2^64 in {oid}")));
        };
        varbinds.push((arcs.collect(), val(&v)));
    }
    Ok(Response {
        req_id: pdu.req_id,
        error_status: pdu.error_status,
        error_index: pdu.error_index,
        varbinds,
    })
}

/// Decodes a response datagram (v1/v2c): the decoder the client uses,
/// exposed for fuzzing. Never panics.
pub fn decode_response(bytes: &[u8]) -> Result<Response, Garbage> {
    let pdu = Pdu::from_bytes(bytes).map_err(|e| Garbage(format!("undecodable: {e}")))?;
    if pdu.message_type != snmp2::MessageType::Response {
        return Err(Garbage(format!("a {:?}, not a response", pdu.message_type)));
    }
    convert(&pdu)
}

fn status_name(s: u32) -> &'static str {
    const NAMES: [&str; 19] = [
        "noError",
        "tooBig",
        "noSuchName",
        "badValue",
        "readOnly",
        "genErr",
        "noAccess",
        "wrongType",
        "wrongLength",
        "wrongEncoding",
        "wrongValue",
        "noCreation",
        "inconsistentValue",
        "resourceUnavailable",
        "commitFailed",
        "undoFailed",
        "authorizationError",
        "notWritable",
        "inconsistentName",
    ];
    NAMES.get(s as usize).copied().unwrap_or("unknown")
}

/// The largest UDP payload over IPv4: an answer of any size is read whole.
const MAX_DATAGRAM: usize = 65_507;

/// The one receive buffer of every session. A session reads a datagram into
/// it and decodes it into an owned [`Response`] without yielding, so one
/// buffer serves all the sessions open at once (snmp2's `AsyncSession`
/// allocates a 64 KiB receive and a 64 KiB send buffer per session: 3 MiB
/// with 24 sessions open).
static RECV_BUF: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

// BER, as much of it as a request needs (snmp2's encoder is crate-private
// and writes into a 64 KiB buffer per session).
const TAG_INTEGER: u8 = 0x02;
const TAG_OCTETS: u8 = 0x04;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const PDU_GET: u8 = 0xa0;
const PDU_GETNEXT: u8 = 0xa1;
const PDU_GETBULK: u8 = 0xa5;

fn ber_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

fn ber_int(out: &mut Vec<u8>, n: i64) {
    let b = n.to_be_bytes();
    let mut i = 0;
    // Minimal two's complement: drop a leading byte that only repeats the
    // sign of the next one.
    while i < 7 && ((b[i] == 0 && b[i + 1] & 0x80 == 0) || (b[i] == 0xff && b[i + 1] & 0x80 != 0)) {
        i += 1;
    }
    ber_tlv(out, TAG_INTEGER, &b[i..]);
}

/// An OID's content octets; `Garbage` for arcs no OID can have.
fn ber_oid(arcs: &[u64]) -> Result<Vec<u8>, Garbage> {
    let bad = || Garbage(format!("OID {} does not encode", dotted(arcs)));
    let [a, b, rest @ ..] = arcs else {
        return Err(bad());
    };
    if *a > 2 || (*a < 2 && *b >= 40) {
        return Err(bad());
    }
    let first = (a * 40).checked_add(*b).ok_or_else(bad)?;
    let mut out = Vec::with_capacity(arcs.len() + 4);
    for &arc in std::iter::once(&first).chain(rest) {
        let mut groups = [0u8; 10];
        let mut n = 0;
        let mut v = arc;
        loop {
            groups[n] = (v & 0x7f) as u8;
            n += 1;
            v >>= 7;
            if v == 0 {
                break;
            }
        }
        for (k, g) in groups[..n].iter().rev().enumerate() {
            out.push(if k + 1 < n { g | 0x80 } else { *g });
        }
    }
    Ok(out)
}

/// A v1/v2c request message: every OID with a NULL value.
fn encode_request(
    version: SnmpVersion,
    community: &[u8],
    req_id: i32,
    req: &Req<'_>,
) -> Result<Vec<u8>, Garbage> {
    let (tag, oids, a, b): (u8, Vec<&[u64]>, i64, i64) = match req {
        Req::Get(oids) => (PDU_GET, oids.iter().map(Vec::as_slice).collect(), 0, 0),
        Req::Next(from) => (PDU_GETNEXT, vec![from], 0, 0),
        // non-repeaters 0, max-repetitions BULK.
        Req::Bulk(from) => (PDU_GETBULK, vec![from], 0, i64::from(BULK)),
    };
    if oids.is_empty() {
        return Err(Garbage("a request without OIDs".into()));
    }
    let mut varbinds = Vec::new();
    for o in oids {
        let mut vb = Vec::new();
        ber_tlv(&mut vb, TAG_OID, &ber_oid(o)?);
        ber_tlv(&mut vb, TAG_NULL, &[]);
        ber_tlv(&mut varbinds, TAG_SEQUENCE, &vb);
    }
    let mut pdu = Vec::with_capacity(varbinds.len() + 16);
    ber_int(&mut pdu, i64::from(req_id));
    ber_int(&mut pdu, a);
    ber_int(&mut pdu, b);
    ber_tlv(&mut pdu, TAG_SEQUENCE, &varbinds);
    let mut msg = Vec::with_capacity(pdu.len() + community.len() + 16);
    ber_int(
        &mut msg,
        match version {
            SnmpVersion::V1 => 0,
            SnmpVersion::V2c => 1,
        },
    );
    ber_tlv(&mut msg, TAG_OCTETS, community);
    ber_tlv(&mut msg, tag, &pdu);
    let mut out = Vec::with_capacity(msg.len() + 4);
    ber_tlv(&mut out, TAG_SEQUENCE, &msg);
    Ok(out)
}

enum Req<'a> {
    Get(&'a [Vec<u64>]),
    Next(&'a [u64]),
    Bulk(&'a [u64]),
}

/// Why one request/answer exchange gave no answer to use.
enum Failed {
    /// The socket reported an error: on a connected UDP socket, an ICMP
    /// port unreachable.
    Refused,
    /// An answer with another request id (a late one).
    OtherRequest,
    Garbage(Garbage),
}

/// The answer to request `req_id` in `bytes`, checked as snmp2's session
/// checked it (a response, the request's id, the community sent).
fn take_answer(bytes: &[u8], req_id: i32, community: &[u8]) -> Result<Response, Failed> {
    let undecodable =
        |e: snmp2::Error| Failed::Garbage(Garbage(format!("undecodable answer: {e}")));
    let pdu = Pdu::from_bytes(bytes).map_err(undecodable)?;
    if pdu.message_type != snmp2::MessageType::Response {
        return Err(undecodable(snmp2::Error::AsnWrongType));
    }
    if pdu.req_id != req_id {
        return Err(Failed::OtherRequest);
    }
    if pdu.community != community {
        return Err(undecodable(snmp2::Error::CommunityMismatch));
    }
    convert(&pdu).map_err(Failed::Garbage)
}

/// Read one waiting datagram into the shared buffer and decode it; `None`
/// when none is waiting after all. Synchronous, so the buffer is never held
/// across an await.
fn recv_answer(
    socket: &tokio::net::UdpSocket,
    req_id: i32,
    community: &[u8],
) -> Option<Result<Response, Failed>> {
    let mut buf = RECV_BUF
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if buf.len() < MAX_DATAGRAM {
        buf.resize(MAX_DATAGRAM, 0);
    }
    match socket.try_recv(&mut buf) {
        Ok(n) => Some(take_answer(&buf[..n], req_id, community)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(_) => Some(Err(Failed::Refused)),
    }
}

/// Send one request and wait for the datagram that comes back.
async fn exchange(
    socket: &tokio::net::UdpSocket,
    request: &[u8],
    req_id: i32,
    community: &[u8],
) -> Result<Response, Failed> {
    socket.send(request).await.map_err(|_| Failed::Refused)?;
    loop {
        socket.readable().await.map_err(|_| Failed::Refused)?;
        if let Some(answer) = recv_answer(socket, req_id, community) {
            return answer;
        }
    }
}

/// One agent, one request at a time.
struct Client {
    addr: SocketAddr,
    version: SnmpVersion,
    community: Vec<u8>,
    opts: Options,
    /// A UDP socket connected to the agent (so the kernel drops datagrams
    /// from anyone else, and reports an ICMP unreachable as an error).
    socket: Option<tokio::net::UdpSocket>,
    req_id: i32,
}

impl Client {
    fn garbage(&self, what: impl Into<String>) -> SnmpError {
        SnmpError::Garbage {
            addr: self.addr,
            what: Garbage(what.into()),
        }
    }

    async fn open(&mut self) -> Result<(), SnmpError> {
        if self.socket.is_none() {
            let io = |source| SnmpError::Io {
                addr: self.addr,
                source,
            };
            let unspecified: SocketAddr = match self.addr {
                SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let s = tokio::net::UdpSocket::bind(unspecified).await.map_err(io)?;
            s.connect(self.addr).await.map_err(io)?;
            self.socket = Some(s);
        }
        Ok(())
    }

    async fn ask(&mut self, req: Req<'_>) -> Result<Response, SnmpError> {
        let mut refused = false;
        let attempts = self.opts.retries + 1;
        let timeout = self.opts.timeout;
        for attempt in 1..=attempts {
            // A new id per attempt, so a late answer to an earlier one is
            // told apart.
            let req_id = self.req_id;
            self.req_id = self.req_id.wrapping_add(1) & 0x3fff_ffff;
            let request = encode_request(self.version, &self.community, req_id, &req)
                .map_err(|g| self.garbage(g.0))?;
            self.open().await?;
            let Some(s) = self.socket.as_ref() else {
                return Err(self.garbage("no session"));
            };
            let answer =
                tokio::time::timeout(timeout, exchange(s, &request, req_id, &self.community)).await;
            match answer {
                Ok(Ok(resp)) => {
                    if resp.error_status != 0 {
                        return Err(SnmpError::Agent {
                            addr: self.addr,
                            status: resp.error_status,
                            name: status_name(resp.error_status),
                            index: resp.error_index,
                        });
                    }
                    return Ok(resp);
                }
                Ok(Err(Failed::Garbage(g))) => return Err(self.garbage(g.0)),
                Ok(Err(Failed::Refused)) => {
                    // On a connected UDP socket, an ICMP port unreachable.
                    refused = true;
                    debug!(addr = %self.addr, attempt, "SNMP request refused");
                    // Wait as a lost answer would: no burst at a closed port.
                    tokio::time::sleep(timeout).await;
                }
                Ok(Err(Failed::OtherRequest)) => {
                    debug!(addr = %self.addr, attempt, "SNMP answer to another request");
                }
                Err(_) => debug!(addr = %self.addr, attempt, "SNMP request timed out"),
            }
            // A fresh socket for the next attempt.
            self.socket = None;
        }
        Err(SnmpError::NoAnswer {
            addr: self.addr,
            attempts,
            timeout,
            refused,
        })
    }

    /// A GET whose answer must name exactly the OIDs asked, in order.
    async fn get(&mut self, oids: &[Vec<u64>]) -> Result<Vec<Val>, SnmpError> {
        let resp = self.ask(Req::Get(oids)).await?;
        if resp.varbinds.len() != oids.len() {
            return Err(self.garbage(format!(
                "{} varbinds in the answer to a GET of {}",
                resp.varbinds.len(),
                oids.len()
            )));
        }
        let mut out = Vec::with_capacity(oids.len());
        for (asked, (got, v)) in oids.iter().zip(resp.varbinds) {
            if *asked != got {
                return Err(self.garbage(format!(
                    "asked for {}, answered {}",
                    dotted(asked),
                    dotted(&got)
                )));
            }
            out.push(v);
        }
        Ok(out)
    }

    /// The ifIndex column, in order, at most [`MAX_INTERFACES`].
    async fn walk_indexes(&mut self) -> Result<Vec<u32>, SnmpError> {
        let mut out = Vec::new();
        let mut cur = IF_INDEX.to_vec();
        loop {
            let resp = match self.version {
                SnmpVersion::V2c => self.ask(Req::Bulk(&cur)).await,
                SnmpVersion::V1 => self.ask(Req::Next(&cur)).await,
            };
            let resp = match resp {
                // SNMPv1's end of the MIB.
                Err(SnmpError::Agent { status: 2, .. }) if self.version == SnmpVersion::V1 => {
                    return Ok(out)
                }
                r => r?,
            };
            if resp.varbinds.is_empty() {
                return Err(self.garbage("an empty answer to a walk"));
            }
            for (o, v) in resp.varbinds {
                if v == Val::EndOfMib || o.len() != IF_INDEX.len() + 1 || !o.starts_with(IF_INDEX) {
                    return Ok(out);
                }
                if o <= cur {
                    return Err(self.garbage(format!(
                        "the walk went backwards: {} after {}",
                        dotted(&o),
                        dotted(&cur)
                    )));
                }
                let index = o
                    .last()
                    .and_then(|&i| u32::try_from(i).ok())
                    .ok_or_else(|| self.garbage(format!("ifIndex {} is not a u32", dotted(&o))))?;
                out.push(index);
                cur = o;
                if out.len() >= MAX_INTERFACES {
                    warn!(addr = %self.addr, "more than {MAX_INTERFACES} interfaces: the rest are left out");
                    return Ok(out);
                }
            }
        }
    }
}

fn rand_req_id() -> i32 {
    // Not security: the request id only pairs answers with requests.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos & 0x3fff_ffff) as i32
}

fn dotted(o: &[u64]) -> String {
    o.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

fn col(table: &[u64], column: u64, index: u32) -> Vec<u64> {
    let mut o = table.to_vec();
    o.push(column);
    o.push(u64::from(index));
    o
}

/// One device's uptime and interface counters.
pub async fn sample(device: &Device, opts: &Options) -> Result<Sample, SnmpError> {
    let Some(snmp) = &device.snmp else {
        return Err(SnmpError::NotConfigured(device.id.clone()));
    };
    let mut c = Client {
        addr: SocketAddr::V4(SocketAddrV4::new(device.address, snmp.port)),
        version: snmp.version,
        community: snmp.community.as_bytes().to_vec(),
        opts: opts.clone(),
        socket: None,
        req_id: rand_req_id(),
    };
    let uptime_cs = match c.get(&[SYS_UPTIME.to_vec()]).await?.first() {
        Some(Val::Ticks(t)) => *t,
        Some(other) => return Err(c.garbage(format!("sysUpTime.0 is {other}, expected TimeTicks"))),
        None => return Err(c.garbage("no sysUpTime.0 in the answer")),
    };
    let mut indexes = if device.interfaces.is_empty() {
        c.walk_indexes().await?
    } else {
        device.interfaces.clone()
    };
    indexes.truncate(MAX_INTERFACES);

    let mut sample = Sample {
        uptime_cs,
        interfaces: Vec::new(),
        missing: Vec::new(),
    };
    let hc = c.version == SnmpVersion::V2c;
    for chunk in indexes.chunks(IFS_PER_GET) {
        let oids: Vec<Vec<u64>> = chunk
            .iter()
            .flat_map(|&i| {
                if hc {
                    [
                        col(IF_TABLE, 8, i),
                        col(IFX_TABLE, 6, i),
                        col(IFX_TABLE, 10, i),
                    ]
                } else {
                    [
                        col(IF_TABLE, 8, i),
                        col(IF_TABLE, 10, i),
                        col(IF_TABLE, 16, i),
                    ]
                }
            })
            .collect();
        let vals = c.get(&oids).await?;
        let mut fallback = Vec::new();
        for (&index, v) in chunk.iter().zip(vals.chunks(3)) {
            // `get` checked the answer has 3 varbinds per interface.
            let [status, inn, out] = v else {
                return Err(c.garbage("an answer cut short"));
            };
            let oper_up = match status {
                Val::Int(s) => *s == 1,
                Val::NoSuch => {
                    sample.missing.push(index);
                    continue;
                }
                other => {
                    return Err(
                        c.garbage(format!("ifOperStatus.{index} is {other}, expected INTEGER"))
                    )
                }
            };
            match (inn, out, hc) {
                (Val::Counter64(i), Val::Counter64(o), true) => sample.interfaces.push(IfSample {
                    index,
                    oper_up,
                    in_octets: *i,
                    out_octets: *o,
                    hc: true,
                }),
                (Val::Counter32(i), Val::Counter32(o), false) => sample.interfaces.push(IfSample {
                    index,
                    oper_up,
                    in_octets: u64::from(*i),
                    out_octets: u64::from(*o),
                    hc: false,
                }),
                (Val::NoSuch, _, true) | (_, Val::NoSuch, true) => fallback.push((index, oper_up)),
                (Val::NoSuch, _, false) | (_, Val::NoSuch, false) => sample.missing.push(index),
                (i, o, _) => {
                    let want = if hc { "Counter64" } else { "Counter32" };
                    return Err(c.garbage(format!(
                        "the octet counters of interface {index} are {i} and {o}, expected {want}"
                    )));
                }
            }
        }
        // 32-bit counters for the interfaces without HC ones.
        for (index, oper_up) in fallback {
            let vals = c
                .get(&[col(IF_TABLE, 10, index), col(IF_TABLE, 16, index)])
                .await?;
            let [inn, out] = vals.as_slice() else {
                return Err(c.garbage("an answer cut short"));
            };
            match (inn, out) {
                (Val::Counter32(i), Val::Counter32(o)) => sample.interfaces.push(IfSample {
                    index,
                    oper_up,
                    in_octets: u64::from(*i),
                    out_octets: u64::from(*o),
                    hc: false,
                }),
                (Val::NoSuch, _) | (_, Val::NoSuch) => sample.missing.push(index),
                (i, o) => {
                    return Err(c.garbage(format!(
                        "ifInOctets.{index}/ifOutOctets.{index} are {i} and {o}, expected Counter32"
                    )))
                }
            }
        }
    }
    sample.interfaces.sort_by_key(|i| i.index);
    if !sample.missing.is_empty() {
        warn!(device = %device.id, missing = ?sample.missing, "interfaces the agent does not have");
    }
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::Snmp;
    use rand::{Rng, SeedableRng};
    use std::net::Ipv4Addr;

    // A minimal BER writer for test answers (snmp2's is crate-private).
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        let n = content.len();
        if n < 128 {
            v.push(n as u8);
        } else {
            v.extend([0x82, (n >> 8) as u8, n as u8]);
        }
        v.extend(content);
        v
    }
    fn int(n: i64) -> Vec<u8> {
        let b = n.to_be_bytes();
        let mut i = 0;
        while i < 7
            && ((b[i] == 0 && b[i + 1] & 0x80 == 0) || (b[i] == 0xff && b[i + 1] & 0x80 != 0))
        {
            i += 1;
        }
        tlv(0x02, &b[i..])
    }
    fn oid_ber(arcs: &[u64]) -> Vec<u8> {
        let mut c = vec![(arcs[0] * 40 + arcs[1]) as u8];
        for &a in &arcs[2..] {
            let mut bytes = vec![(a & 0x7f) as u8];
            let mut a = a >> 7;
            while a > 0 {
                bytes.push((a & 0x7f) as u8 | 0x80);
                a >>= 7;
            }
            bytes.reverse();
            c.extend(bytes);
        }
        tlv(0x06, &c)
    }
    fn response(req_id: i32, varbinds: &[(Vec<u64>, Vec<u8>)]) -> Vec<u8> {
        let vbs: Vec<u8> = varbinds
            .iter()
            .flat_map(|(o, v)| tlv(0x30, &[oid_ber(o), v.clone()].concat()))
            .collect();
        let pdu = [int(i64::from(req_id)), int(0), int(0), tlv(0x30, &vbs)].concat();
        tlv(
            0x30,
            &[int(1), tlv(0x04, b"public"), tlv(0xa2, &pdu)].concat(),
        )
    }

    #[test]
    fn decodes_a_response() {
        let bytes = response(
            7,
            &[
                (SYS_UPTIME.to_vec(), tlv(0x43, &[0x01, 0x00])),
                (col(IFX_TABLE, 6, 1), tlv(0x46, &[0x01, 0, 0, 0, 0, 0])),
                (col(IFX_TABLE, 10, 1), tlv(0x81, &[])),
            ],
        );
        let r = decode_response(&bytes).unwrap();
        assert_eq!(r.req_id, 7);
        assert_eq!(
            r.varbinds,
            vec![
                (SYS_UPTIME.to_vec(), Val::Ticks(256)),
                (col(IFX_TABLE, 6, 1), Val::Counter64(1 << 40)),
                (col(IFX_TABLE, 10, 1), Val::NoSuch),
            ]
        );
    }

    /// 10 000 random and mutated datagrams: errors, never a panic.
    #[test]
    fn decode_never_panics() {
        let valid = response(
            1,
            &[
                (SYS_UPTIME.to_vec(), tlv(0x43, &[0x7f])),
                (
                    col(IF_TABLE, 10, 2),
                    tlv(0x41, &[0x00, 0xff, 0xff, 0xff, 0xff]),
                ),
                (col(IF_TABLE, 8, 2), int(1)),
            ],
        );
        let mut rng = rand::rngs::SmallRng::seed_from_u64(12);
        for n in 0..10_000 {
            let bytes: Vec<u8> = if n % 2 == 0 {
                let len = rng.gen_range(0..200);
                (0..len).map(|_| rng.gen()).collect()
            } else {
                let mut b = valid.clone();
                for _ in 0..rng.gen_range(1..6) {
                    match rng.gen_range(0..3) {
                        0 => {
                            let i = rng.gen_range(0..b.len());
                            b[i] = rng.gen();
                        }
                        1 => b.truncate(rng.gen_range(0..b.len().max(1))),
                        _ => {
                            let i = rng.gen_range(0..=b.len());
                            b.insert(i, rng.gen());
                        }
                    }
                    if b.is_empty() {
                        break;
                    }
                }
                b
            };
            let _ = decode_response(&bytes);
        }
    }

    /// A fake agent answering each OID with `value(oid)` (sysUpTime: 16).
    async fn fake_agent(value: fn(&[u64]) -> Vec<u8>) -> u16 {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = sock.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(req) = Pdu::from_bytes(&buf[..n]) else {
                    continue;
                };
                let vbs: Vec<(Vec<u64>, Vec<u8>)> = req
                    .varbinds
                    .clone()
                    .filter_map(|(o, _)| o.iter().map(|i| i.collect()))
                    .map(|o: Vec<u64>| {
                        let v = if o == SYS_UPTIME {
                            tlv(0x43, &[0x10])
                        } else {
                            value(&o)
                        };
                        (o, v)
                    })
                    .collect();
                let _ = sock.send_to(&response(req.req_id, &vbs), peer).await;
            }
        });
        port
    }

    /// An agent that drops the first request and answers the others
    /// (sysUpTime only).
    async fn dropping_agent() -> u16 {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = sock.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            let mut first = true;
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                let Ok(req) = Pdu::from_bytes(&buf[..n]) else {
                    continue;
                };
                if std::mem::take(&mut first) {
                    continue;
                }
                let vbs = vec![(SYS_UPTIME.to_vec(), tlv(0x43, &[0x20]))];
                let _ = sock.send_to(&response(req.req_id, &vbs), peer).await;
            }
        });
        port
    }

    #[test]
    fn requests_decode_as_snmp2_reads_them() {
        // 30 OIDs: the varbind list needs a long-form length.
        let oids: Vec<Vec<u64>> = (1..=10)
            .flat_map(|i| {
                [
                    col(IF_TABLE, 8, i),
                    col(IFX_TABLE, 6, i),
                    col(IFX_TABLE, 10, i),
                ]
            })
            .collect();
        let bytes =
            encode_request(SnmpVersion::V2c, b"bench", 0x1234_5678, &Req::Get(&oids)).unwrap();
        let pdu = Pdu::from_bytes(&bytes).unwrap();
        assert_eq!(pdu.message_type, snmp2::MessageType::GetRequest);
        assert_eq!(pdu.version().unwrap(), snmp2::Version::V2C);
        assert_eq!((pdu.req_id, pdu.community), (0x1234_5678, &b"bench"[..]));
        let got: Vec<Vec<u64>> = pdu
            .varbinds
            .clone()
            .map(|(o, v)| {
                assert!(matches!(v, Value::Null));
                o.iter().unwrap().collect()
            })
            .collect();
        assert_eq!(got, oids);
        // Large arcs (several base-128 groups) and GETNEXT in v1.
        let big = [1, 3, 6, 1, 4, 1, 2_000_000, u64::from(u32::MAX), 0];
        let bytes = encode_request(SnmpVersion::V1, b"public", 1, &Req::Next(&big)).unwrap();
        let pdu = Pdu::from_bytes(&bytes).unwrap();
        assert_eq!(pdu.message_type, snmp2::MessageType::GetNextRequest);
        assert_eq!(pdu.version().unwrap(), snmp2::Version::V1);
        let (o, _) = pdu.varbinds.clone().next().unwrap();
        assert_eq!(o.iter().unwrap().collect::<Vec<u64>>(), big.to_vec());
        let bytes = encode_request(SnmpVersion::V2c, b"public", 9, &Req::Bulk(IF_INDEX)).unwrap();
        let pdu = Pdu::from_bytes(&bytes).unwrap();
        assert_eq!(pdu.message_type, snmp2::MessageType::GetBulkRequest);
        // OIDs that cannot be encoded are refused, not sent.
        for bad in [&[1u64][..], &[3, 1], &[1, 40], &[2, u64::MAX]] {
            assert!(ber_oid(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_lost_request_is_retried() {
        let mut d = dev(dropping_agent().await);
        d.interfaces = vec![];
        let opts = Options {
            timeout: Duration::from_millis(200),
            retries: 1,
        };
        // sysUpTime comes on the retry; the walk's GETBULK then gets a
        // sysUpTime varbind, outside ifIndex: the end of the walk.
        let s = sample(&d, &opts).await.unwrap();
        assert_eq!(s.uptime_cs, 32);
        assert!(s.interfaces.is_empty());
        // Without retries the lost request is the end.
        let opts = Options {
            timeout: Duration::from_millis(200),
            retries: 0,
        };
        let d = dev(dropping_agent().await);
        let e = sample(&d, &opts).await.unwrap_err();
        assert!(
            matches!(
                e,
                SnmpError::NoAnswer {
                    attempts: 1,
                    refused: false,
                    ..
                }
            ),
            "{e}"
        );
    }

    fn dev(port: u16) -> Device {
        Device {
            id: "fake".into(),
            title: String::new(),
            address: Ipv4Addr::LOCALHOST,
            snmp: Some(Snmp {
                community: "public".into(),
                port,
                version: SnmpVersion::V2c,
            }),
            interfaces: vec![3],
        }
    }

    #[tokio::test]
    async fn a_string_for_a_counter_is_garbage() {
        let port = fake_agent(|o| {
            if o.starts_with(&col(IF_TABLE, 8, 3)) {
                int(1)
            } else {
                tlv(0x04, b"hello")
            }
        })
        .await;
        let e = sample(&dev(port), &Options::default()).await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, SnmpError::Garbage { .. }), "{msg}");
        assert!(msg.starts_with("garbage from 127.0.0.1:"), "{msg}");
        assert!(
            msg.contains(
                "interface 3 are OCTET STRING: hello and OCTET STRING: hello, expected Counter64"
            ),
            "{msg}"
        );
        eprintln!("{msg}");
    }

    #[tokio::test]
    async fn no_hc_counters_fall_back_to_32_bit() {
        let port = fake_agent(|o| {
            if o.starts_with(IFX_TABLE) {
                tlv(0x81, &[]) // noSuchInstance
            } else if o.starts_with(&col(IF_TABLE, 8, 3)) {
                int(1)
            } else {
                tlv(0x41, &[0x00, 0xff, 0xff, 0xff, 0xf0])
            }
        })
        .await;
        let s = sample(&dev(port), &Options::default()).await.unwrap();
        assert_eq!(s.uptime_cs, 16);
        assert_eq!(
            s.interfaces,
            vec![IfSample {
                index: 3,
                oper_up: true,
                in_octets: 0xffff_fff0,
                out_octets: 0xffff_fff0,
                hc: false
            }]
        );
    }

    #[tokio::test]
    async fn an_interface_the_agent_lacks_is_missing() {
        let port = fake_agent(|_| tlv(0x81, &[])).await;
        let s = sample(&dev(port), &Options::default()).await.unwrap();
        assert!(s.interfaces.is_empty());
        assert_eq!(s.missing, vec![3]);
    }
}
