//! An async SNMP v1/v2c client for one device: sysUpTime and, per
//! interface, ifOperStatus and the octet counters.
//!
//! The BER encoding, the PDU decoder and the UDP session are the `snmp2`
//! crate's; this module adds timeouts and retries, the 64-bit to 32-bit
//! fallback, the ifIndex walk, and typed errors. OIDs are numeric (Debian
//! ships no IF-MIB text).
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
use snmp2::{AsyncSession, Oid, Pdu, Value};
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

fn oid(arcs: &[u64]) -> Result<Oid<'static>, Garbage> {
    Oid::from(arcs).map_err(|e| Garbage(format!("OID {} does not encode: {e:?}", dotted(arcs))))
}

enum Req<'a> {
    Get(&'a [Vec<u64>]),
    Next(&'a [u64]),
    Bulk(&'a [u64]),
}

/// One agent, one request at a time.
struct Client {
    addr: SocketAddr,
    version: SnmpVersion,
    community: Vec<u8>,
    opts: Options,
    session: Option<AsyncSession>,
}

impl Client {
    fn garbage(&self, what: impl Into<String>) -> SnmpError {
        SnmpError::Garbage {
            addr: self.addr,
            what: Garbage(what.into()),
        }
    }

    async fn open(&mut self) -> Result<(), SnmpError> {
        if self.session.is_none() {
            let req_id = rand_req_id();
            let s = match self.version {
                SnmpVersion::V1 => AsyncSession::new_v1(self.addr, &self.community, req_id).await,
                SnmpVersion::V2c => AsyncSession::new_v2c(self.addr, &self.community, req_id).await,
            }
            .map_err(|source| SnmpError::Io {
                addr: self.addr,
                source,
            })?;
            self.session = Some(s);
        }
        Ok(())
    }

    async fn ask(&mut self, req: Req<'_>) -> Result<Response, SnmpError> {
        let mut refused = false;
        let attempts = self.opts.retries + 1;
        let timeout = self.opts.timeout;
        for attempt in 1..=attempts {
            let oids = match &req {
                Req::Get(oids) => oids.iter().map(|o| oid(o)).collect(),
                Req::Next(from) | Req::Bulk(from) => oid(from).map(|o| vec![o]),
            };
            let oids: Vec<Oid<'static>> = oids.map_err(|g| self.garbage(g.0))?;
            let refs: Vec<&Oid<'_>> = oids.iter().collect();
            let Some(&first) = refs.first() else {
                return Err(self.garbage("a request without OIDs"));
            };
            self.open().await?;
            let Some(s) = self.session.as_mut() else {
                return Err(self.garbage("no session"));
            };
            let answer = tokio::time::timeout(timeout, async {
                match &req {
                    Req::Get(_) => s.get_many(&refs).await.map(|p| convert(&p)),
                    Req::Next(_) => s.getnext(first).await.map(|p| convert(&p)),
                    Req::Bulk(_) => s.getbulk(&refs, 0, BULK).await.map(|p| convert(&p)),
                }
            })
            .await;
            match answer {
                Ok(Ok(Ok(resp))) => {
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
                Ok(Ok(Err(g))) => return Err(self.garbage(g.0)),
                Ok(Err(snmp2::Error::Send | snmp2::Error::Receive)) => {
                    // On a connected UDP socket, an ICMP port unreachable.
                    refused = true;
                    debug!(addr = %self.addr, attempt, "SNMP request refused");
                    // Wait as a lost answer would: no burst at a closed port.
                    tokio::time::sleep(timeout).await;
                }
                Ok(Err(snmp2::Error::RequestIdMismatch)) => {
                    debug!(addr = %self.addr, attempt, "SNMP answer to another request");
                }
                Ok(Err(e)) => return Err(self.garbage(format!("undecodable answer: {e}"))),
                Err(_) => debug!(addr = %self.addr, attempt, "SNMP request timed out"),
            }
            // A fresh socket for the next attempt.
            self.session = None;
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
        session: None,
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
