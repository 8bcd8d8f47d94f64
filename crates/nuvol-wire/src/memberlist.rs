//! memberlist's messages (HashiCorp memberlist v0.2.x, the layer under Serf).
//!
//! A UDP packet (after decryption) is `[hasCrc=12][crc32 BE]`-optionally-prefixed,
//! then one message: `[type:u8][msgpack struct]`. Envelopes nest: compound
//! (`[7][n][n × len:u16 BE][parts]`) and compress (`[9]{Algo, Buf}`).
//! A TCP stream carries `[type][msgpack...]`, optionally inside an encrypt
//! envelope `[10][len:u32 BE][ciphertext]` (handled by the caller).

use crate::msgpack::{read_value, DecodeError, Fields, Writer};
use std::net::IpAddr;

/// Maximum size of a node's meta data (Serf's encoded tags).
pub const META_MAX_SIZE: usize = 512;
/// Largest push/pull state memberlist accepts.
pub const MAX_PUSH_STATE_BYTES: usize = 20 * 1024 * 1024;
/// Limit on a decompressed UDP payload (a UDP datagram is at most 64 KiB).
pub const MAX_DECOMPRESSED_PACKET: usize = 1024 * 1024;
/// Envelopes (compound/compress) nested deeper than this are rejected.
const MAX_ENVELOPE_DEPTH: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MsgType {
    Ping = 0,
    IndirectPing = 1,
    Ack = 2,
    Suspect = 3,
    Alive = 4,
    Dead = 5,
    PushPull = 6,
    Compound = 7,
    User = 8,
    Compress = 9,
    Encrypt = 10,
    Nack = 11,
    HasCrc = 12,
    Err = 13,
}

impl MsgType {
    pub fn from_u8(b: u8) -> Option<Self> {
        use MsgType::*;
        Some(match b {
            0 => Ping,
            1 => IndirectPing,
            2 => Ack,
            3 => Suspect,
            4 => Alive,
            5 => Dead,
            6 => PushPull,
            7 => Compound,
            8 => User,
            9 => Compress,
            10 => Encrypt,
            11 => Nack,
            12 => HasCrc,
            13 => Err,
            _ => return None,
        })
    }
}

/// memberlist's node states as they travel in push/pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStateKind {
    Alive = 0,
    Suspect = 1,
    Dead = 2,
    Left = 3,
}

impl NodeStateKind {
    fn from_u64(v: u64) -> Option<Self> {
        Some(match v {
            0 => Self::Alive,
            1 => Self::Suspect,
            2 => Self::Dead,
            3 => Self::Left,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ping {
    pub seq_no: u32,
    /// Target node name; empty for "whoever is there" (join by address).
    pub node: String,
    pub source_addr: Option<IpAddr>,
    pub source_port: u16,
    pub source_node: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndirectPing {
    pub seq_no: u32,
    pub target: IpAddr,
    pub port: u16,
    pub node: String,
    pub nack: bool,
    pub source_addr: Option<IpAddr>,
    pub source_port: u16,
    pub source_node: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ack {
    pub seq_no: u32,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspect {
    pub incarnation: u32,
    pub node: String,
    pub from: String,
}

/// Also used for `dead` (same fields); a dead message whose `from` equals
/// `node` means the node left gracefully.
pub type Dead = Suspect;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alive {
    pub incarnation: u32,
    pub node: String,
    pub addr: IpAddr,
    pub port: u16,
    pub meta: Vec<u8>,
    /// `[pmin, pmax, pcur, dmin, dmax, dcur]`.
    pub vsn: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushNodeState {
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    pub meta: Vec<u8>,
    pub incarnation: u32,
    pub state: NodeStateKind,
    pub vsn: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPull {
    pub join: bool,
    pub nodes: Vec<PushNodeState>,
    /// The delegate's (Serf's) state, opaque here.
    pub user_state: Vec<u8>,
}

/// One decoded memberlist message (envelopes already opened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Ping(Ping),
    IndirectPing(IndirectPing),
    Ack(Ack),
    Nack(u32),
    Suspect(Suspect),
    Alive(Alive),
    Dead(Dead),
    /// A delegate (Serf) message.
    User(Vec<u8>),
    Err(String),
}

// ------------------------------------------------------------------ encode

fn opt_source(w: &mut Writer, addr: Option<IpAddr>, port: u16, node: &str) -> usize {
    // omitempty fields: count and emit only the present ones.
    let mut n = 0;
    if let Some(a) = addr {
        w.key("SourceAddr").ip(a);
        n += 1;
    }
    if port != 0 {
        w.key("SourcePort").uint(port as u64);
        n += 1;
    }
    if !node.is_empty() {
        w.key("SourceNode").str(node);
        n += 1;
    }
    n
}

fn source_count(addr: Option<IpAddr>, port: u16, node: &str) -> usize {
    addr.is_some() as usize + (port != 0) as usize + (!node.is_empty()) as usize
}

impl Message {
    /// Encode as `[type][msgpack]`.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Ping(p) => {
                let mut w = Writer::with_prefix(MsgType::Ping as u8);
                w.map(2 + source_count(p.source_addr, p.source_port, &p.source_node));
                w.key("SeqNo").uint(p.seq_no as u64);
                w.key("Node").str(&p.node);
                opt_source(&mut w, p.source_addr, p.source_port, &p.source_node);
                w.into_bytes()
            }
            Message::IndirectPing(p) => {
                let mut w = Writer::with_prefix(MsgType::IndirectPing as u8);
                w.map(5 + source_count(p.source_addr, p.source_port, &p.source_node));
                w.key("SeqNo").uint(p.seq_no as u64);
                w.key("Target").ip(p.target);
                w.key("Port").uint(p.port as u64);
                w.key("Node").str(&p.node);
                w.key("Nack").bool(p.nack);
                opt_source(&mut w, p.source_addr, p.source_port, &p.source_node);
                w.into_bytes()
            }
            Message::Ack(a) => {
                let mut w = Writer::with_prefix(MsgType::Ack as u8);
                w.map(2).key("SeqNo").uint(a.seq_no as u64).key("Payload");
                if a.payload.is_empty() {
                    w.nil();
                } else {
                    w.bytes(&a.payload);
                }
                w.into_bytes()
            }
            Message::Nack(seq) => {
                let mut w = Writer::with_prefix(MsgType::Nack as u8);
                w.map(1).key("SeqNo").uint(*seq as u64);
                w.into_bytes()
            }
            Message::Suspect(s) => encode_suspect_like(MsgType::Suspect, s),
            Message::Dead(s) => encode_suspect_like(MsgType::Dead, s),
            Message::Alive(a) => {
                let mut w = Writer::with_prefix(MsgType::Alive as u8);
                w.map(6);
                w.key("Incarnation").uint(a.incarnation as u64);
                w.key("Node").str(&a.node);
                w.key("Addr").ip(a.addr);
                w.key("Port").uint(a.port as u64);
                w.key("Meta")
                    .opt_bytes((!a.meta.is_empty()).then_some(&a.meta[..]));
                w.key("Vsn").bytes(&a.vsn);
                w.into_bytes()
            }
            Message::User(b) => {
                let mut v = Vec::with_capacity(b.len() + 1);
                v.push(MsgType::User as u8);
                v.extend_from_slice(b);
                v
            }
            Message::Err(e) => {
                let mut w = Writer::with_prefix(MsgType::Err as u8);
                w.map(1).key("Error").str(e);
                w.into_bytes()
            }
        }
    }
}

fn encode_suspect_like(t: MsgType, s: &Suspect) -> Vec<u8> {
    let mut w = Writer::with_prefix(t as u8);
    w.map(3);
    w.key("Incarnation").uint(s.incarnation as u64);
    w.key("Node").str(&s.node);
    w.key("From").str(&s.from);
    w.into_bytes()
}

/// Bundle several encoded messages into one compound message.
/// At most 255 parts, each at most 65535 bytes; extra parts are the caller's
/// to send separately (see `compound_chunks`).
pub fn make_compound(parts: &[Vec<u8>]) -> Vec<u8> {
    let n = parts.len().min(255);
    let total: usize = parts[..n].iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(2 + 2 * n + total);
    out.push(MsgType::Compound as u8);
    out.push(n as u8);
    for p in &parts[..n] {
        out.extend_from_slice(&(p.len().min(u16::MAX as usize) as u16).to_be_bytes());
    }
    for p in &parts[..n] {
        out.extend_from_slice(p);
    }
    out
}

/// Per-message overhead inside a compound message.
pub const COMPOUND_OVERHEAD: usize = 2;
/// Fixed overhead of a compound message header.
pub const COMPOUND_HEADER_OVERHEAD: usize = 2;

/// `[hasCrc][crc32 BE][msg]` — memberlist adds it when the receiver's max
/// protocol version is >= 5.
pub fn add_crc(msg: &[u8]) -> Vec<u8> {
    let crc = crc32fast::hash(msg);
    let mut out = Vec::with_capacity(msg.len() + 5);
    out.push(MsgType::HasCrc as u8);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// `[compress]{Algo: 0 (LZW), Buf: lzw(msg)}`.
pub fn compress(msg: &[u8]) -> Vec<u8> {
    let comp = crate::lzw::compress(msg);
    let mut w = Writer::with_prefix(MsgType::Compress as u8);
    w.map(2).key("Algo").uint(0).key("Buf").bytes(&comp);
    w.into_bytes()
}

fn decompress_body(body: &mut &[u8], max: usize) -> Result<Vec<u8>, DecodeError> {
    let v = read_value(body)?;
    let f = Fields::new(&v, "compress")?;
    let algo = f.u64("Algo")?;
    if algo != 0 {
        return Err(DecodeError::UnknownCompression(algo));
    }
    let buf = f.bytes("Buf")?;
    let out =
        crate::lzw::decompress(&buf, max).map_err(|e| DecodeError::Decompress(e.to_string()))?;
    if out.is_empty() {
        return Err(DecodeError::Invalid("empty decompressed payload"));
    }
    Ok(out)
}

// ------------------------------------------------------------------ decode

/// Decode a (decrypted) UDP packet into its messages, opening the CRC,
/// compress and compound envelopes. An envelope error fails the whole packet;
/// inside a compound, a bad part is reported in `errors` while the good parts
/// are still returned (memberlist handles parts independently too).
pub fn decode_packet(buf: &[u8]) -> Result<DecodedPacket, DecodeError> {
    let mut out = DecodedPacket::default();
    let body = if buf.len() >= 5 && buf[0] == MsgType::HasCrc as u8 {
        let expected = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        if crc32fast::hash(&buf[5..]) != expected {
            return Err(DecodeError::BadChecksum);
        }
        &buf[5..]
    } else {
        buf
    };
    decode_into(body, 0, &mut out)?;
    Ok(out)
}

#[derive(Debug, Default)]
pub struct DecodedPacket {
    pub messages: Vec<Message>,
    /// Errors of individual compound parts (the packet's other parts are kept).
    pub errors: Vec<DecodeError>,
}

fn decode_into(buf: &[u8], depth: usize, out: &mut DecodedPacket) -> Result<(), DecodeError> {
    if depth > MAX_ENVELOPE_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    let (&t, mut body) = buf.split_first().ok_or(DecodeError::Empty)?;
    match MsgType::from_u8(t) {
        Some(MsgType::Compound) => {
            let (&n, rest) = body.split_first().ok_or(DecodeError::Truncated)?;
            let n = n as usize;
            if rest.len() < 2 * n {
                return Err(DecodeError::Truncated);
            }
            let (lens, mut data) = rest.split_at(2 * n);
            for i in 0..n {
                let len = u16::from_be_bytes([lens[2 * i], lens[2 * i + 1]]) as usize;
                if data.len() < len {
                    // memberlist counts the rest as truncated and drops them.
                    out.errors.push(DecodeError::Truncated);
                    break;
                }
                let (part, rest) = data.split_at(len);
                data = rest;
                if let Err(e) = decode_into(part, depth + 1, out) {
                    out.errors.push(e);
                }
            }
            Ok(())
        }
        Some(MsgType::Compress) => {
            let inner = decompress_body(&mut body, MAX_DECOMPRESSED_PACKET)?;
            decode_into(&inner, depth + 1, out)
        }
        Some(MsgType::HasCrc) | Some(MsgType::Encrypt) | Some(MsgType::PushPull) => {
            Err(DecodeError::Invalid("envelope not allowed here"))
        }
        Some(kind) => {
            out.messages.push(decode_message(kind, body)?);
            Ok(())
        }
        None => Err(DecodeError::UnknownType(t)),
    }
}

fn decode_message(kind: MsgType, mut body: &[u8]) -> Result<Message, DecodeError> {
    if kind == MsgType::User {
        return Ok(Message::User(body.to_vec()));
    }
    let v = read_value(&mut body)?;
    Ok(match kind {
        MsgType::Ping => Message::Ping(decode_ping(&v)?),
        MsgType::IndirectPing => {
            let f = Fields::new(&v, "indirectPingReq")?;
            Message::IndirectPing(IndirectPing {
                seq_no: f.u32("SeqNo")?,
                target: f
                    .ip("Target")?
                    .ok_or(DecodeError::Invalid("indirect ping without target"))?,
                port: f.u16("Port")?,
                node: f.string("Node")?,
                nack: f.bool("Nack")?,
                source_addr: f.ip("SourceAddr")?,
                source_port: f.u16("SourcePort")?,
                source_node: f.string("SourceNode")?,
            })
        }
        MsgType::Ack => Message::Ack(decode_ack(&v)?),
        MsgType::Nack => Message::Nack(Fields::new(&v, "nackResp")?.u32("SeqNo")?),
        MsgType::Suspect => Message::Suspect(decode_suspect(&v, "suspect")?),
        MsgType::Dead => Message::Dead(decode_suspect(&v, "dead")?),
        MsgType::Alive => {
            let f = Fields::new(&v, "alive")?;
            Message::Alive(Alive {
                incarnation: f.u32("Incarnation")?,
                node: f.string("Node")?,
                addr: f
                    .ip("Addr")?
                    .ok_or(DecodeError::Invalid("alive without address"))?,
                port: f.u16("Port")?,
                meta: f.bytes("Meta")?,
                vsn: f.bytes("Vsn")?,
            })
        }
        MsgType::Err => Message::Err(Fields::new(&v, "errResp")?.string("Error")?),
        _ => return Err(DecodeError::Invalid("not a packet message")),
    })
}

fn decode_ping(v: &rmpv::Value) -> Result<Ping, DecodeError> {
    let f = Fields::new(v, "ping")?;
    Ok(Ping {
        seq_no: f.u32("SeqNo")?,
        node: f.string("Node")?,
        source_addr: f.ip("SourceAddr")?,
        source_port: f.u16("SourcePort")?,
        source_node: f.string("SourceNode")?,
    })
}

fn decode_ack(v: &rmpv::Value) -> Result<Ack, DecodeError> {
    let f = Fields::new(v, "ackResp")?;
    Ok(Ack {
        seq_no: f.u32("SeqNo")?,
        payload: f.bytes("Payload")?,
    })
}

fn decode_suspect(v: &rmpv::Value, msg: &'static str) -> Result<Suspect, DecodeError> {
    let f = Fields::new(v, msg)?;
    Ok(Suspect {
        incarnation: f.u32("Incarnation")?,
        node: f.string("Node")?,
        from: f.string("From")?,
    })
}

// ------------------------------------------------------------------ streams

/// The 5-byte header of an encrypted stream frame: `[10][len:u32 BE]`; it is
/// also the AEAD's associated data.
pub fn encrypted_stream_header(ciphertext_len: usize) -> [u8; 5] {
    let l = (ciphertext_len as u32).to_be_bytes();
    [MsgType::Encrypt as u8, l[0], l[1], l[2], l[3]]
}

/// What arrives first on a TCP stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamFrame {
    /// `[10][len][ciphertext]`: the caller decrypts `ciphertext` with `aad`
    /// and parses the plaintext with [`parse_stream_plain`].
    Encrypted {
        aad: [u8; 5],
        ciphertext: Vec<u8>,
    },
    Plain(StreamMsg),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamMsg {
    PushPull(PushPull),
    /// TCP fallback probe.
    Ping(Ping),
    /// Reply to a TCP ping.
    Ack(Ack),
    User(Vec<u8>),
    Err(String),
}

/// Parse the start of a stream. `Ok(None)`: need more bytes. On success also
/// returns how many bytes were consumed.
pub fn parse_stream(buf: &[u8]) -> Result<Option<(StreamFrame, usize)>, DecodeError> {
    let Some(&t) = buf.first() else {
        return Ok(None);
    };
    if t == MsgType::Encrypt as u8 {
        if buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len > MAX_PUSH_STATE_BYTES {
            return Err(DecodeError::TooLarge(len));
        }
        if buf.len() < 5 + len {
            return Ok(None);
        }
        let mut aad = [0u8; 5];
        aad.copy_from_slice(&buf[..5]);
        return Ok(Some((
            StreamFrame::Encrypted {
                aad,
                ciphertext: buf[5..5 + len].to_vec(),
            },
            5 + len,
        )));
    }
    match parse_plain(buf, 0) {
        Ok((m, used)) => Ok(Some((StreamFrame::Plain(m), used))),
        Err(DecodeError::Truncated) => {
            if buf.len() > MAX_PUSH_STATE_BYTES {
                Err(DecodeError::TooLarge(buf.len()))
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(e),
    }
}

/// Parse a complete (decrypted) stream payload.
pub fn parse_stream_plain(buf: &[u8]) -> Result<StreamMsg, DecodeError> {
    parse_plain(buf, 0).map(|(m, _)| m)
}

fn parse_plain(buf: &[u8], depth: usize) -> Result<(StreamMsg, usize), DecodeError> {
    if depth > 1 {
        return Err(DecodeError::TooDeep);
    }
    let (&t, rest) = buf.split_first().ok_or(DecodeError::Truncated)?;
    let mut cur = rest;
    let msg = match MsgType::from_u8(t) {
        Some(MsgType::Compress) => {
            let inner = decompress_body(&mut cur, MAX_PUSH_STATE_BYTES)?;
            // The compressed buffer must hold a whole message.
            let (m, _) = parse_plain(&inner, depth + 1).map_err(|e| match e {
                DecodeError::Truncated => DecodeError::Invalid("truncated compressed stream"),
                e => e,
            })?;
            m
        }
        Some(MsgType::PushPull) => {
            let hv = read_value(&mut cur)?;
            let h = Fields::new(&hv, "pushPullHeader")?;
            let nodes = h.i64("Nodes")?;
            let user_len = h.i64("UserStateLen")?;
            let join = h.bool("Join")?;
            if !(0..=(MAX_PUSH_STATE_BYTES as i64)).contains(&nodes)
                || !(0..=(MAX_PUSH_STATE_BYTES as i64)).contains(&user_len)
            {
                return Err(DecodeError::FieldRange {
                    msg: "pushPullHeader",
                    field: "Nodes",
                });
            }
            let mut out = Vec::with_capacity((nodes as usize).min(1024));
            for _ in 0..nodes {
                let v = read_value(&mut cur)?;
                let f = Fields::new(&v, "pushNodeState")?;
                out.push(PushNodeState {
                    name: f.string("Name")?,
                    addr: f
                        .ip("Addr")?
                        .ok_or(DecodeError::Invalid("push node state without address"))?,
                    port: f.u16("Port")?,
                    meta: f.bytes("Meta")?,
                    incarnation: f.u32("Incarnation")?,
                    state: NodeStateKind::from_u64(f.u64("State")?).ok_or(
                        DecodeError::FieldRange {
                            msg: "pushNodeState",
                            field: "State",
                        },
                    )?,
                    vsn: f.bytes("Vsn")?,
                });
            }
            let user_len = user_len as usize;
            if cur.len() < user_len {
                return Err(DecodeError::Truncated);
            }
            let user_state = cur[..user_len].to_vec();
            cur = &cur[user_len..];
            StreamMsg::PushPull(PushPull {
                join,
                nodes: out,
                user_state,
            })
        }
        Some(MsgType::Ping) => StreamMsg::Ping(decode_ping(&read_value(&mut cur)?)?),
        Some(MsgType::Ack) => StreamMsg::Ack(decode_ack(&read_value(&mut cur)?)?),
        Some(MsgType::Err) => {
            let v = read_value(&mut cur)?;
            StreamMsg::Err(Fields::new(&v, "errResp")?.string("Error")?)
        }
        Some(MsgType::User) => {
            let v = read_value(&mut cur)?;
            let len = Fields::new(&v, "userMsgHeader")?.i64("UserMsgLen")?;
            if !(0..=(MAX_PUSH_STATE_BYTES as i64)).contains(&len) {
                return Err(DecodeError::TooLarge(len.max(0) as usize));
            }
            let len = len as usize;
            if cur.len() < len {
                return Err(DecodeError::Truncated);
            }
            let b = cur[..len].to_vec();
            cur = &cur[len..];
            StreamMsg::User(b)
        }
        Some(_) => return Err(DecodeError::Invalid("unexpected stream message type")),
        None => return Err(DecodeError::UnknownType(t)),
    };
    Ok((msg, buf.len() - cur.len()))
}

impl PushPull {
    /// Encode as a plain stream payload `[6][header][nodes...][user state]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_prefix(MsgType::PushPull as u8);
        w.map(3)
            .key("Nodes")
            .uint(self.nodes.len() as u64)
            .key("UserStateLen")
            .uint(self.user_state.len() as u64)
            .key("Join")
            .bool(self.join);
        for n in &self.nodes {
            w.map(7);
            w.key("Name").str(&n.name);
            w.key("Addr").ip(n.addr);
            w.key("Port").uint(n.port as u64);
            w.key("Meta")
                .opt_bytes((!n.meta.is_empty()).then_some(&n.meta[..]));
            w.key("Incarnation").uint(n.incarnation as u64);
            w.key("State").uint(n.state as u64);
            w.key("Vsn").bytes(&n.vsn);
        }
        let mut out = w.into_bytes();
        out.extend_from_slice(&self.user_state);
        out
    }
}

impl StreamMsg {
    /// Encode a stream message (not push/pull) as `[type][msgpack...]`.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            StreamMsg::PushPull(p) => p.encode(),
            StreamMsg::Ping(p) => Message::Ping(p.clone()).encode(),
            StreamMsg::Ack(a) => Message::Ack(a.clone()).encode(),
            StreamMsg::Err(e) => Message::Err(e.clone()).encode(),
            StreamMsg::User(b) => {
                let mut w = Writer::with_prefix(MsgType::User as u8);
                w.map(1).key("UserMsgLen").uint(b.len() as u64);
                let mut out = w.into_bytes();
                out.extend_from_slice(b);
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive() -> Alive {
        Alive {
            incarnation: 3,
            node: "n1".into(),
            addr: "127.0.0.1".parse().unwrap(),
            port: 7946,
            meta: vec![255, 0x80],
            vsn: vec![1, 5, 2, 2, 5, 4],
        }
    }

    #[test]
    fn messages_round_trip() {
        let msgs = vec![
            Message::Ping(Ping {
                seq_no: 9,
                node: "b".into(),
                source_addr: Some("10.1.2.3".parse().unwrap()),
                source_port: 5000,
                source_node: "a".into(),
            }),
            Message::Ping(Ping {
                seq_no: 1,
                ..Default::default()
            }),
            Message::IndirectPing(IndirectPing {
                seq_no: 2,
                target: "::1".parse().unwrap(),
                port: 1,
                node: "c".into(),
                nack: true,
                source_addr: None,
                source_port: 0,
                source_node: String::new(),
            }),
            Message::Ack(Ack {
                seq_no: 4,
                payload: vec![1, 2, 3],
            }),
            Message::Nack(77),
            Message::Suspect(Suspect {
                incarnation: 1,
                node: "x".into(),
                from: "y".into(),
            }),
            Message::Dead(Suspect {
                incarnation: 1,
                node: "x".into(),
                from: "x".into(),
            }),
            Message::Alive(alive()),
            Message::User(vec![3, 0x80]),
            Message::Err("boom".into()),
        ];
        for m in &msgs {
            let enc = m.encode();
            let dec = decode_packet(&enc).unwrap();
            assert_eq!(dec.messages, vec![m.clone()]);
        }
        let parts: Vec<Vec<u8>> = msgs.iter().map(Message::encode).collect();
        let comp = make_compound(&parts);
        let dec = decode_packet(&add_crc(&compress(&comp))).unwrap();
        assert_eq!(dec.messages, msgs);
        assert!(dec.errors.is_empty());
    }

    #[test]
    fn bad_crc_and_garbage_are_errors() {
        let mut p = add_crc(&Message::Nack(1).encode());
        *p.last_mut().unwrap() ^= 1;
        assert_eq!(decode_packet(&p).unwrap_err(), DecodeError::BadChecksum);
        assert!(decode_packet(&[]).is_err());
        assert!(decode_packet(&[99]).is_err());
        assert!(decode_packet(&[7, 3, 0]).is_err());
        assert!(decode_packet(&[4, 0x81]).is_err());
    }

    #[test]
    fn compound_keeps_good_parts() {
        let good = Message::Nack(5).encode();
        let bad = vec![4u8, 0xc1];
        let dec = decode_packet(&make_compound(&[bad, good])).unwrap();
        assert_eq!(dec.messages, vec![Message::Nack(5)]);
        assert_eq!(dec.errors.len(), 1);
    }

    #[test]
    fn push_pull_stream_incremental() {
        let a = alive();
        let pp = PushPull {
            join: true,
            nodes: vec![PushNodeState {
                name: a.node.clone(),
                addr: a.addr,
                port: a.port,
                meta: a.meta.clone(),
                incarnation: 1,
                state: NodeStateKind::Suspect,
                vsn: a.vsn.clone(),
            }],
            user_state: vec![2, 0x80, 1, 2, 3],
        };
        let enc = pp.encode();
        for cut in 0..enc.len() {
            assert_eq!(parse_stream(&enc[..cut]).unwrap(), None, "cut {cut}");
        }
        let (frame, used) = parse_stream(&enc).unwrap().unwrap();
        assert_eq!(used, enc.len());
        assert_eq!(frame, StreamFrame::Plain(StreamMsg::PushPull(pp.clone())));
        let (frame, _) = parse_stream(&compress(&enc)).unwrap().unwrap();
        assert_eq!(frame, StreamFrame::Plain(StreamMsg::PushPull(pp)));
        let user = StreamMsg::User(vec![1, 2, 3]);
        assert_eq!(parse_stream_plain(&user.encode()).unwrap(), user);
    }

    #[test]
    fn encrypted_stream_frame() {
        let mut buf = encrypted_stream_header(3).to_vec();
        assert_eq!(parse_stream(&buf).unwrap(), None);
        buf.extend_from_slice(&[1, 2, 3, 4]);
        let (f, used) = parse_stream(&buf).unwrap().unwrap();
        assert_eq!(used, 8);
        assert!(
            matches!(f, StreamFrame::Encrypted { ref ciphertext, .. } if ciphertext == &[1,2,3])
        );
        let huge = encrypted_stream_header(usize::MAX >> 33);
        assert!(parse_stream(&huge).is_err());
    }
}
