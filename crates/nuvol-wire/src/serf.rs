//! Serf's messages (serf v0.9.x), carried as memberlist user messages:
//! `[serf type:u8][msgpack struct]`.

use crate::msgpack::{as_string, as_u64, read_value, DecodeError, Fields, Writer};
use rmpv::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// First byte of encoded tags (protocol >= 3); older peers carry only a role.
pub const TAG_MAGIC_BYTE: u8 = 255;
/// Serf's ping payload version (the Vivaldi coordinate in acks).
pub const PING_VERSION: u8 = 1;
/// Query flag: the sender wants an ack.
pub const QUERY_FLAG_ACK: u32 = 1;
/// Query flag: don't re-broadcast (used for relays).
pub const QUERY_FLAG_NO_BROADCAST: u32 = 2;
/// Prefix of Serf's internal query names.
pub const INTERNAL_QUERY_PREFIX: &str = "_serf_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SerfType {
    Leave = 0,
    Join = 1,
    PushPull = 2,
    UserEvent = 3,
    Query = 4,
    QueryResponse = 5,
    ConflictResponse = 6,
    KeyRequest = 7,
    KeyResponse = 8,
    Relay = 9,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub ltime: u64,
    pub node: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leave {
    pub ltime: u64,
    pub node: String,
    pub prune: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserEventItem {
    pub name: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserEvents {
    pub ltime: u64,
    pub events: Vec<UserEventItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SerfPushPull {
    pub ltime: u64,
    pub status_ltimes: BTreeMap<String, u64>,
    pub left_members: Vec<String>,
    pub event_ltime: u64,
    pub events: Vec<UserEvents>,
    pub query_ltime: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEvent {
    pub ltime: u64,
    pub name: String,
    pub payload: Vec<u8>,
    /// "can coalesce"
    pub cc: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Nodes(Vec<String>),
    Tag { tag: String, expr: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub ltime: u64,
    pub id: u32,
    pub addr: IpAddr,
    pub port: u16,
    pub source_node: String,
    pub filters: Vec<Filter>,
    pub flags: u32,
    pub relay_factor: u8,
    /// Go `time.Duration`, nanoseconds.
    pub timeout_ns: i64,
    pub name: String,
    pub payload: Vec<u8>,
}

impl Query {
    pub fn wants_ack(&self) -> bool {
        self.flags & QUERY_FLAG_ACK != 0
    }
    pub fn no_broadcast(&self) -> bool {
        self.flags & QUERY_FLAG_NO_BROADCAST != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResponse {
    pub ltime: u64,
    pub id: u32,
    pub from: String,
    pub flags: u32,
    pub payload: Vec<u8>,
}

impl QueryResponse {
    pub fn is_ack(&self) -> bool {
        self.flags & QUERY_FLAG_ACK != 0
    }
}

/// A relayed message: deliver `inner` (a whole serf message) to `dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub dest: SocketAddr,
    pub dest_name: String,
    pub inner: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerfMessage {
    Leave(Leave),
    Join(Join),
    PushPull(SerfPushPull),
    UserEvent(UserEvent),
    Query(Query),
    QueryResponse(QueryResponse),
    Relay(Relay),
}

/// A member as Serf encodes it (conflict query responses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub name: String,
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    pub status: u8,
    /// `[pmin, pmax, pcur, dmin, dmax, dcur]`
    pub vsn: [u8; 6],
}

/// A key-management request payload (`_serf_install-key` etc.).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequest {
    pub key: Vec<u8>,
}

/// A key-management response payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyResponse {
    pub result: bool,
    pub message: String,
    pub keys: Vec<String>,
    pub primary_key: String,
}

/// Vivaldi coordinate as Serf sends it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WireCoordinate {
    pub vec: Vec<f64>,
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

// ------------------------------------------------------------------ encode

impl SerfMessage {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            SerfMessage::Leave(m) => {
                let mut w = Writer::with_prefix(SerfType::Leave as u8);
                w.map(3)
                    .key("LTime")
                    .uint(m.ltime)
                    .key("Node")
                    .str(&m.node)
                    .key("Prune")
                    .bool(m.prune);
                w.into_bytes()
            }
            SerfMessage::Join(m) => {
                let mut w = Writer::with_prefix(SerfType::Join as u8);
                w.map(2).key("LTime").uint(m.ltime).key("Node").str(&m.node);
                w.into_bytes()
            }
            SerfMessage::PushPull(m) => {
                let mut w = Writer::with_prefix(SerfType::PushPull as u8);
                w.map(6).key("LTime").uint(m.ltime).key("StatusLTimes");
                w.map(m.status_ltimes.len());
                for (k, v) in &m.status_ltimes {
                    w.str(k).uint(*v);
                }
                w.key("LeftMembers").str_array(&m.left_members);
                w.key("EventLTime").uint(m.event_ltime);
                w.key("Events").array(m.events.len());
                for e in &m.events {
                    w.map(2).key("LTime").uint(e.ltime).key("Events");
                    w.array(e.events.len());
                    for ev in &e.events {
                        w.map(2).key("Name").str(&ev.name).key("Payload");
                        w.opt_bytes((!ev.payload.is_empty()).then_some(&ev.payload[..]));
                    }
                }
                w.key("QueryLTime").uint(m.query_ltime);
                w.into_bytes()
            }
            SerfMessage::UserEvent(m) => {
                let mut w = Writer::with_prefix(SerfType::UserEvent as u8);
                w.map(4).key("LTime").uint(m.ltime).key("Name").str(&m.name);
                w.key("Payload")
                    .opt_bytes((!m.payload.is_empty()).then_some(&m.payload[..]));
                w.key("CC").bool(m.cc);
                w.into_bytes()
            }
            SerfMessage::Query(q) => {
                let mut w = Writer::with_prefix(SerfType::Query as u8);
                w.map(11)
                    .key("LTime")
                    .uint(q.ltime)
                    .key("ID")
                    .uint(q.id as u64);
                w.key("Addr").ip(q.addr).key("Port").uint(q.port as u64);
                w.key("SourceNode").str(&q.source_node);
                w.key("Filters");
                if q.filters.is_empty() {
                    w.nil();
                } else {
                    w.array(q.filters.len());
                    for f in &q.filters {
                        w.bytes(&encode_filter(f));
                    }
                }
                w.key("Flags").uint(q.flags as u64);
                w.key("RelayFactor").uint(q.relay_factor as u64);
                w.key("Timeout").int(q.timeout_ns);
                w.key("Name").str(&q.name);
                w.key("Payload")
                    .opt_bytes((!q.payload.is_empty()).then_some(&q.payload[..]));
                w.into_bytes()
            }
            SerfMessage::QueryResponse(r) => {
                let mut w = Writer::with_prefix(SerfType::QueryResponse as u8);
                w.map(5)
                    .key("LTime")
                    .uint(r.ltime)
                    .key("ID")
                    .uint(r.id as u64);
                w.key("From").str(&r.from).key("Flags").uint(r.flags as u64);
                w.key("Payload")
                    .opt_bytes((!r.payload.is_empty()).then_some(&r.payload[..]));
                w.into_bytes()
            }
            SerfMessage::Relay(r) => {
                let mut w = Writer::with_prefix(SerfType::Relay as u8);
                w.map(2).key("DestAddr").map(3);
                w.key("IP").ip(r.dest.ip());
                w.key("Port").uint(r.dest.port() as u64);
                w.key("Zone").str("");
                w.key("DestName").str(&r.dest_name);
                let mut out = w.into_bytes();
                out.extend_from_slice(&r.inner);
                out
            }
        }
    }
}

pub fn encode_filter(f: &Filter) -> Vec<u8> {
    match f {
        Filter::Nodes(nodes) => {
            let mut w = Writer::with_prefix(0);
            w.str_array(nodes);
            w.into_bytes()
        }
        Filter::Tag { tag, expr } => {
            let mut w = Writer::with_prefix(1);
            w.map(2).key("Tag").str(tag).key("Expr").str(expr);
            w.into_bytes()
        }
    }
}

/// Serf's tag encoding: magic byte then a msgpack `map[string]string`.
pub fn encode_tags(tags: &BTreeMap<String, String>) -> Vec<u8> {
    let mut w = Writer::with_prefix(TAG_MAGIC_BYTE);
    w.str_map(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    w.into_bytes()
}

/// Decode a member's meta into tags. Meta without the magic byte is a
/// pre-protocol-3 "role".
pub fn decode_tags(meta: &[u8]) -> Result<BTreeMap<String, String>, DecodeError> {
    let mut tags = BTreeMap::new();
    if meta.first() != Some(&TAG_MAGIC_BYTE) {
        let role = String::from_utf8(meta.to_vec()).map_err(|_| DecodeError::Invalid("role"))?;
        tags.insert("role".to_owned(), role);
        return Ok(tags);
    }
    let mut rest = &meta[1..];
    let v = read_value(&mut rest)?;
    match v {
        Value::Map(entries) => {
            for (k, v) in entries {
                let (Some(k), Some(v)) = (as_string(&k), as_string(&v)) else {
                    return Err(DecodeError::Invalid("tag is not a string"));
                };
                tags.insert(k, v);
            }
            Ok(tags)
        }
        Value::Nil => Ok(tags),
        _ => Err(DecodeError::NotAMap("tags")),
    }
}

impl MemberRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_prefix(SerfType::ConflictResponse as u8);
        w.map(11).key("Name").str(&self.name).key("Addr");
        match self.addr {
            Some(a) => w.ip(a),
            None => w.nil(),
        };
        w.key("Port").uint(self.port as u64);
        w.key("Tags")
            .str_map(self.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        w.key("Status").uint(self.status as u64);
        for (k, v) in [
            "ProtocolMin",
            "ProtocolMax",
            "ProtocolCur",
            "DelegateMin",
            "DelegateMax",
            "DelegateCur",
        ]
        .iter()
        .zip(self.vsn)
        {
            w.key(k).uint(v as u64);
        }
        w.into_bytes()
    }

    /// Decode `[6][msgpack Member]` (Go encodes a nil member as nil).
    pub fn decode(buf: &[u8]) -> Result<Option<Self>, DecodeError> {
        let (&t, mut body) = buf.split_first().ok_or(DecodeError::Empty)?;
        if t != SerfType::ConflictResponse as u8 {
            return Err(DecodeError::UnknownType(t));
        }
        let v = read_value(&mut body)?;
        if v.is_nil() {
            return Ok(None);
        }
        let f = Fields::new(&v, "Member")?;
        let mut tags = BTreeMap::new();
        for (k, v) in f.map("Tags")? {
            if let (Some(k), Some(v)) = (as_string(k), as_string(v)) {
                tags.insert(k, v);
            }
        }
        Ok(Some(MemberRecord {
            name: f.string("Name")?,
            addr: f.ip("Addr")?,
            port: f.u16("Port")?,
            tags,
            status: f.u8("Status")?,
            vsn: [
                f.u8("ProtocolMin")?,
                f.u8("ProtocolMax")?,
                f.u8("ProtocolCur")?,
                f.u8("DelegateMin")?,
                f.u8("DelegateMax")?,
                f.u8("DelegateCur")?,
            ],
        }))
    }
}

impl KeyRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_prefix(SerfType::KeyRequest as u8);
        w.map(1).key("Key").bytes(&self.key);
        w.into_bytes()
    }
    /// Decode `[7][msgpack]`.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (_, mut body) = buf.split_first().ok_or(DecodeError::Empty)?;
        let v = read_value(&mut body)?;
        Ok(KeyRequest {
            key: Fields::new(&v, "keyRequest")?.bytes("Key")?,
        })
    }
}

impl KeyResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_prefix(SerfType::KeyResponse as u8);
        w.map(4)
            .key("Result")
            .bool(self.result)
            .key("Message")
            .str(&self.message)
            .key("Keys");
        if self.keys.is_empty() {
            w.nil();
        } else {
            w.str_array(&self.keys);
        }
        w.key("PrimaryKey").str(&self.primary_key);
        w.into_bytes()
    }
    /// Decode `[8][msgpack]`.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (&t, mut body) = buf.split_first().ok_or(DecodeError::Empty)?;
        if t != SerfType::KeyResponse as u8 {
            return Err(DecodeError::UnknownType(t));
        }
        let v = read_value(&mut body)?;
        let f = Fields::new(&v, "nodeKeyResponse")?;
        Ok(KeyResponse {
            result: f.bool("Result")?,
            message: f.string("Message")?,
            keys: f.str_array("Keys")?,
            primary_key: f.string("PrimaryKey")?,
        })
    }
}

impl WireCoordinate {
    fn write(&self, w: &mut Writer) {
        w.map(4).key("Vec").array(self.vec.len());
        for x in &self.vec {
            w.f64(*x);
        }
        w.key("Error").f64(self.error);
        w.key("Adjustment").f64(self.adjustment);
        w.key("Height").f64(self.height);
    }
    fn read(v: &Value) -> Result<Self, DecodeError> {
        let f = Fields::new(v, "Coordinate")?;
        let vec = f
            .array("Vec")?
            .iter()
            .map(|x| match x {
                Value::F64(f) => Ok(*f),
                Value::F32(f) => Ok(*f as f64),
                Value::Integer(i) => i.as_f64().ok_or(DecodeError::Invalid("coordinate")),
                _ => Err(DecodeError::Invalid("coordinate component")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WireCoordinate {
            vec,
            error: f.f64("Error")?,
            adjustment: f.f64("Adjustment")?,
            height: f.f64("Height")?,
        })
    }
    /// Serf's ack payload: `[PING_VERSION][msgpack Coordinate]`.
    pub fn encode_ping_payload(&self) -> Vec<u8> {
        let mut w = Writer::with_prefix(PING_VERSION);
        self.write(&mut w);
        w.into_bytes()
    }
    pub fn decode_ping_payload(buf: &[u8]) -> Result<Self, DecodeError> {
        let (&ver, mut body) = buf.split_first().ok_or(DecodeError::Empty)?;
        if ver != PING_VERSION {
            return Err(DecodeError::Invalid("unsupported ping version"));
        }
        Self::read(&read_value(&mut body)?)
    }
}

// ------------------------------------------------------------------ decode

/// Decode one Serf message (the payload of a memberlist user message).
pub fn decode(buf: &[u8]) -> Result<SerfMessage, DecodeError> {
    let (&t, mut body) = buf.split_first().ok_or(DecodeError::Empty)?;
    if t == SerfType::Relay as u8 {
        let hv = read_value(&mut body)?;
        let h = Fields::new(&hv, "relayHeader")?;
        let dest = h
            .value("DestAddr")
            .ok_or(DecodeError::Invalid("relay without destination"))?;
        let d = Fields::new(dest, "UDPAddr")?;
        let ip = d
            .ip("IP")?
            .ok_or(DecodeError::Invalid("relay without destination"))?;
        let port = d.u16("Port")?;
        if body.is_empty() {
            return Err(DecodeError::Truncated);
        }
        return Ok(SerfMessage::Relay(Relay {
            dest: SocketAddr::new(ip, port),
            dest_name: h.string("DestName")?,
            inner: body.to_vec(),
        }));
    }
    let v = read_value(&mut body)?;
    Ok(match t {
        0 => {
            let f = Fields::new(&v, "messageLeave")?;
            SerfMessage::Leave(Leave {
                ltime: f.u64("LTime")?,
                node: f.string("Node")?,
                prune: f.bool("Prune")?,
            })
        }
        1 => {
            let f = Fields::new(&v, "messageJoin")?;
            SerfMessage::Join(Join {
                ltime: f.u64("LTime")?,
                node: f.string("Node")?,
            })
        }
        2 => {
            let f = Fields::new(&v, "messagePushPull")?;
            let mut status_ltimes = BTreeMap::new();
            for (k, v) in f.map("StatusLTimes")? {
                let (Some(k), Some(v)) = (as_string(k), as_u64(v)) else {
                    return Err(DecodeError::FieldType {
                        msg: "messagePushPull",
                        field: "StatusLTimes",
                    });
                };
                status_ltimes.insert(k, v);
            }
            let mut events = Vec::new();
            for e in f.array("Events")? {
                if e.is_nil() {
                    continue;
                }
                let ef = Fields::new(e, "userEvents")?;
                let mut items = Vec::new();
                for it in ef.array("Events")? {
                    let itf = Fields::new(it, "userEvent")?;
                    items.push(UserEventItem {
                        name: itf.string("Name")?,
                        payload: itf.bytes("Payload")?,
                    });
                }
                events.push(UserEvents {
                    ltime: ef.u64("LTime")?,
                    events: items,
                });
            }
            SerfMessage::PushPull(SerfPushPull {
                ltime: f.u64("LTime")?,
                status_ltimes,
                left_members: f.str_array("LeftMembers")?,
                event_ltime: f.u64("EventLTime")?,
                events,
                query_ltime: f.u64("QueryLTime")?,
            })
        }
        3 => {
            let f = Fields::new(&v, "messageUserEvent")?;
            SerfMessage::UserEvent(UserEvent {
                ltime: f.u64("LTime")?,
                name: f.string("Name")?,
                payload: f.bytes("Payload")?,
                cc: f.bool("CC")?,
            })
        }
        4 => {
            let f = Fields::new(&v, "messageQuery")?;
            let mut filters = Vec::new();
            for raw in f.array("Filters")? {
                let b = crate::msgpack::as_bytes(raw).ok_or(DecodeError::FieldType {
                    msg: "messageQuery",
                    field: "Filters",
                })?;
                filters.push(decode_filter(b)?);
            }
            SerfMessage::Query(Query {
                ltime: f.u64("LTime")?,
                id: f.u32("ID")?,
                addr: f
                    .ip("Addr")?
                    .ok_or(DecodeError::Invalid("query without source address"))?,
                port: f.u16("Port")?,
                source_node: f.string("SourceNode")?,
                filters,
                flags: f.u32("Flags")?,
                relay_factor: f.u8("RelayFactor")?,
                timeout_ns: f.i64("Timeout")?,
                name: f.string("Name")?,
                payload: f.bytes("Payload")?,
            })
        }
        5 => {
            let f = Fields::new(&v, "messageQueryResponse")?;
            SerfMessage::QueryResponse(QueryResponse {
                ltime: f.u64("LTime")?,
                id: f.u32("ID")?,
                from: f.string("From")?,
                flags: f.u32("Flags")?,
                payload: f.bytes("Payload")?,
            })
        }
        other => return Err(DecodeError::UnknownType(other)),
    })
}

pub fn decode_filter(buf: &[u8]) -> Result<Filter, DecodeError> {
    let (&t, mut body) = buf.split_first().ok_or(DecodeError::Empty)?;
    let v = read_value(&mut body)?;
    match t {
        0 => match v {
            Value::Array(items) => Ok(Filter::Nodes(
                items
                    .iter()
                    .map(|i| as_string(i).ok_or(DecodeError::Invalid("node filter")))
                    .collect::<Result<_, _>>()?,
            )),
            Value::Nil => Ok(Filter::Nodes(Vec::new())),
            _ => Err(DecodeError::Invalid("node filter")),
        },
        1 => {
            let f = Fields::new(&v, "filterTag")?;
            Ok(Filter::Tag {
                tag: f.string("Tag")?,
                expr: f.string("Expr")?,
            })
        }
        other => Err(DecodeError::UnknownType(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(m: SerfMessage) {
        assert_eq!(decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn round_trips() {
        rt(SerfMessage::Join(Join {
            ltime: 5,
            node: "a".into(),
        }));
        rt(SerfMessage::Leave(Leave {
            ltime: 6,
            node: "a".into(),
            prune: true,
        }));
        rt(SerfMessage::UserEvent(UserEvent {
            ltime: 1,
            name: "deploy".into(),
            payload: b"v1".to_vec(),
            cc: true,
        }));
        rt(SerfMessage::Query(Query {
            ltime: 3,
            id: 99,
            addr: "127.0.0.1".parse().unwrap(),
            port: 7946,
            source_node: "a".into(),
            filters: vec![
                Filter::Nodes(vec!["x".into(), "y".into()]),
                Filter::Tag {
                    tag: "role".into(),
                    expr: "^web$".into(),
                },
            ],
            flags: QUERY_FLAG_ACK,
            relay_factor: 2,
            timeout_ns: 5_000_000_000,
            name: "uptime".into(),
            payload: vec![],
        }));
        rt(SerfMessage::QueryResponse(QueryResponse {
            ltime: 3,
            id: 99,
            from: "b".into(),
            flags: 0,
            payload: b"up".to_vec(),
        }));
        let mut st = BTreeMap::new();
        st.insert("a".to_string(), 4u64);
        rt(SerfMessage::PushPull(SerfPushPull {
            ltime: 9,
            status_ltimes: st,
            left_members: vec!["z".into()],
            event_ltime: 2,
            events: vec![UserEvents {
                ltime: 1,
                events: vec![UserEventItem {
                    name: "e".into(),
                    payload: vec![1],
                }],
            }],
            query_ltime: 7,
        }));
        rt(SerfMessage::Relay(Relay {
            dest: "127.0.0.2:7946".parse().unwrap(),
            dest_name: "b".into(),
            inner: vec![5, 0x80],
        }));
    }

    #[test]
    fn tags_and_records() {
        let mut tags = BTreeMap::new();
        tags.insert("role".to_string(), "web".to_string());
        tags.insert("dc".to_string(), "bcn".to_string());
        let enc = encode_tags(&tags);
        assert_eq!(enc[0], TAG_MAGIC_BYTE);
        assert_eq!(decode_tags(&enc).unwrap(), tags);
        assert_eq!(decode_tags(b"db").unwrap()["role"], "db");
        assert!(decode_tags(&[255, 0xc1]).is_err());
        let rec = MemberRecord {
            name: "a".into(),
            addr: Some("10.0.0.1".parse().unwrap()),
            port: 1,
            tags,
            status: 1,
            vsn: [1, 5, 2, 2, 5, 4],
        };
        assert_eq!(MemberRecord::decode(&rec.encode()).unwrap(), Some(rec));
        let kr = KeyResponse {
            result: true,
            message: "m".into(),
            keys: vec!["k".into()],
            primary_key: "k".into(),
        };
        assert_eq!(KeyResponse::decode(&kr.encode()).unwrap(), kr);
        let kq = KeyRequest { key: vec![1; 32] };
        assert_eq!(KeyRequest::decode(&kq.encode()).unwrap(), kq);
        let c = WireCoordinate {
            vec: vec![0.5; 8],
            error: 1.5,
            adjustment: 0.0,
            height: 1e-5,
        };
        assert_eq!(
            WireCoordinate::decode_ping_payload(&c.encode_ping_payload()).unwrap(),
            c
        );
    }

    #[test]
    fn garbage_is_rejected() {
        for b in [
            &[][..],
            &[42, 0x80],
            &[3, 0xc1],
            &[9, 0x80],
            &[4, 0x81, 0xa1, b'I'],
        ] {
            assert!(decode(b).is_err(), "{b:?}");
        }
    }
}
