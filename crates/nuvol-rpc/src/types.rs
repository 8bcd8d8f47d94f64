//! Typed request and response bodies of serf's RPC, as serf's `client` and
//! `agent/ipc.go` define them: Go structs encoded by go-msgpack as maps keyed
//! by field name. Like serf's go-msgpack, encoding writes the fields sorted
//! by name (not in declaration order), so our bytes equal serf's.
//!
//! Decoding follows go-msgpack: unknown keys are ignored, missing keys and
//! `nil` leave the zero value, `str` and `bin` are interchangeable
//! (`RawToString`), integers of any width fit if the value is in range; a
//! value of the wrong kind is a [`DecodeError`].

use rmpv::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// A body that does not have the shape its command calls for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{ty}: expected a map, got {got}")]
    NotAMap { ty: &'static str, got: &'static str },
    #[error("{ty}.{field}: expected {expected}, got {got}")]
    WrongType {
        ty: &'static str,
        field: &'static str,
        expected: &'static str,
        got: &'static str,
    },
    #[error("{ty}.{field}: value out of range")]
    OutOfRange {
        ty: &'static str,
        field: &'static str,
    },
}

/// A msgpack body: encode to and decode from an `rmpv` value.
pub trait Body: Sized {
    /// The Go type name, for error messages.
    const TYPE: &'static str;
    fn to_value(&self) -> Value;
    fn from_value(v: &Value) -> Result<Self, DecodeError>;
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "bool",
        Value::Integer(_) => "integer",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "string",
        Value::Binary(_) => "binary",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Ext(..) => "ext",
    }
}

fn s(v: &str) -> Value {
    Value::from(v)
}

fn bin(b: &[u8]) -> Value {
    Value::Binary(b.to_vec())
}

/// A Go struct as go-msgpack writes it: a map with the fields sorted by
/// name (what serf's agent and client put on the wire, byte for byte).
fn map(mut entries: Vec<(&str, Value)>) -> Value {
    entries.sort_by(|a, b| a.0.cmp(b.0));
    Value::Map(entries.into_iter().map(|(k, v)| (s(k), v)).collect())
}

fn str_map(m: &BTreeMap<String, String>) -> Value {
    Value::Map(m.iter().map(|(k, v)| (s(k), s(v))).collect())
}

fn str_list(v: &[String]) -> Value {
    Value::Array(v.iter().map(|x| s(x)).collect())
}

fn str_of(v: &Value) -> Option<String> {
    match v {
        Value::String(st) => Some(match st.as_str() {
            Some(x) => x.to_owned(),
            None => String::from_utf8_lossy(st.as_bytes()).into_owned(),
        }),
        Value::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Nil => Some(String::new()),
        _ => None,
    }
}

/// Reads the fields of one Go struct encoded as a map.
pub(crate) struct Fields<'a> {
    ty: &'static str,
    entries: &'a [(Value, Value)],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(ty: &'static str, v: &'a Value) -> Result<Self, DecodeError> {
        match v {
            Value::Map(m) => Ok(Fields { ty, entries: m }),
            Value::Nil => Ok(Fields { ty, entries: &[] }),
            other => Err(DecodeError::NotAMap {
                ty,
                got: kind(other),
            }),
        }
    }

    /// The value of a key (the last one, like Go, if repeated); `nil` reads
    /// as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| match k {
                Value::String(st) => st.as_bytes() == key.as_bytes(),
                Value::Binary(b) => b.as_slice() == key.as_bytes(),
                _ => false,
            })
            .map(|(_, v)| v)
            .filter(|v| !v.is_nil())
    }

    fn wrong(&self, field: &'static str, expected: &'static str, got: &Value) -> DecodeError {
        DecodeError::WrongType {
            ty: self.ty,
            field,
            expected,
            got: kind(got),
        }
    }

    pub(crate) fn string(&self, field: &'static str) -> Result<String, DecodeError> {
        match self.get(field) {
            None => Ok(String::new()),
            Some(v) => str_of(v).ok_or_else(|| self.wrong(field, "string", v)),
        }
    }

    fn bytes(&self, field: &'static str) -> Result<Vec<u8>, DecodeError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Binary(b)) => Ok(b.clone()),
            Some(Value::String(st)) => Ok(st.as_bytes().to_vec()),
            Some(v) => Err(self.wrong(field, "bytes", v)),
        }
    }

    fn bool(&self, field: &'static str) -> Result<bool, DecodeError> {
        match self.get(field) {
            None => Ok(false),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(v) => Err(self.wrong(field, "bool", v)),
        }
    }

    fn int<T: TryFrom<i64> + TryFrom<u64> + Default>(
        &self,
        field: &'static str,
    ) -> Result<T, DecodeError> {
        let range = || DecodeError::OutOfRange { ty: self.ty, field };
        match self.get(field) {
            None => Ok(T::default()),
            Some(Value::Integer(i)) => {
                if let Some(u) = i.as_u64() {
                    T::try_from(u).map_err(|_| range())
                } else if let Some(n) = i.as_i64() {
                    T::try_from(n).map_err(|_| range())
                } else {
                    Err(range())
                }
            }
            Some(v) => Err(self.wrong(field, "integer", v)),
        }
    }

    fn float(&self, field: &'static str) -> Result<f64, DecodeError> {
        match self.get(field) {
            None => Ok(0.0),
            Some(v) => float_of(v).ok_or_else(|| self.wrong(field, "float", v)),
        }
    }

    fn float_list(&self, field: &'static str) -> Result<Vec<f64>, DecodeError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| float_of(x).ok_or_else(|| self.wrong(field, "float", x)))
                .collect(),
            Some(v) => Err(self.wrong(field, "array", v)),
        }
    }

    fn str_list(&self, field: &'static str) -> Result<Vec<String>, DecodeError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| str_of(x).ok_or_else(|| self.wrong(field, "string", x)))
                .collect(),
            Some(v) => Err(self.wrong(field, "array", v)),
        }
    }

    fn str_map(&self, field: &'static str) -> Result<BTreeMap<String, String>, DecodeError> {
        match self.get(field) {
            None => Ok(BTreeMap::new()),
            Some(Value::Map(m)) => m
                .iter()
                .map(|(k, v)| {
                    let k = str_of(k).ok_or_else(|| self.wrong(field, "string key", k))?;
                    let v = str_of(v).ok_or_else(|| self.wrong(field, "string", v))?;
                    Ok((k, v))
                })
                .collect(),
            Some(v) => Err(self.wrong(field, "map", v)),
        }
    }

    fn int_map(&self, field: &'static str) -> Result<BTreeMap<String, i64>, DecodeError> {
        match self.get(field) {
            None => Ok(BTreeMap::new()),
            Some(Value::Map(m)) => m
                .iter()
                .map(|(k, v)| {
                    let k = str_of(k).ok_or_else(|| self.wrong(field, "string key", k))?;
                    let n = match v {
                        Value::Integer(i) => i
                            .as_i64()
                            .ok_or(DecodeError::OutOfRange { ty: self.ty, field })?,
                        Value::Nil => 0,
                        other => return Err(self.wrong(field, "integer", other)),
                    };
                    Ok((k, n))
                })
                .collect(),
            Some(v) => Err(self.wrong(field, "map", v)),
        }
    }

    fn nested<T: Body>(&self, field: &'static str) -> Result<T, DecodeError> {
        match self.get(field) {
            None => T::from_value(&Value::Nil),
            Some(v) => T::from_value(v),
        }
    }

    fn list<T: Body>(&self, field: &'static str) -> Result<Vec<T>, DecodeError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a.iter().map(T::from_value).collect(),
            Some(v) => Err(self.wrong(field, "array", v)),
        }
    }
}

fn float_of(v: &Value) -> Option<f64> {
    match v {
        Value::F64(f) => Some(*f),
        Value::F32(f) => Some(f64::from(*f)),
        Value::Integer(i) => i.as_f64(),
        Value::Nil => Some(0.0),
        _ => None,
    }
}

/// Defines a body struct: Go field name, Rust field, encoder, decoder.
macro_rules! body {
    (
        $(#[$meta:meta])*
        $name:ident = $go:literal {
            $( $(#[$fmeta:meta])* $go_field:literal => $field:ident : $ty:ty = ($enc:expr, $dec:ident) ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Body for $name {
            const TYPE: &'static str = $go;

            #[allow(clippy::redundant_closure_call)]
            fn to_value(&self) -> Value {
                map(vec![ $( ($go_field, ($enc)(&self.$field)) ),* ])
            }

            #[allow(unused_variables)]
            fn from_value(v: &Value) -> Result<Self, DecodeError> {
                let f = Fields::new($go, v)?;
                Ok($name { $( $field: f.$dec($go_field)?, )* })
            }
        }
    };
}

fn enc_str(v: &str) -> Value {
    s(v)
}
fn enc_bytes(v: &[u8]) -> Value {
    bin(v)
}
fn enc_bool(v: &bool) -> Value {
    Value::Boolean(*v)
}
fn enc_u64(v: &u64) -> Value {
    Value::from(*v)
}
fn enc_i32(v: &i32) -> Value {
    Value::from(*v)
}
fn enc_i64(v: &i64) -> Value {
    Value::from(*v)
}
fn enc_str_map(v: &BTreeMap<String, String>) -> Value {
    str_map(v)
}
fn enc_str_list(v: &[String]) -> Value {
    str_list(v)
}
fn enc_int_map(v: &BTreeMap<String, i64>) -> Value {
    Value::Map(v.iter().map(|(k, n)| (s(k), Value::from(*n))).collect())
}

// ------------------------------------------------------------------ headers

body! {
    /// Sent before each request.
    RequestHeader = "requestHeader" {
        "Command" => command: String = (enc_str, string),
        "Seq" => seq: u64 = (enc_u64, int),
    }
}

body! {
    /// Sent before each response and each stream record.
    ResponseHeader = "responseHeader" {
        "Seq" => seq: u64 = (enc_u64, int),
        "Error" => error: String = (enc_str, string),
    }
}

impl ResponseHeader {
    /// Whether `v` is shaped like a response header: a map whose keys are
    /// only `Seq` and `Error`, with `Seq` present. No body of any command
    /// has that shape, which lets a reader skip bodies it did not expect.
    pub fn detect(v: &Value) -> Option<ResponseHeader> {
        let Value::Map(m) = v else { return None };
        let mut has_seq = false;
        for (k, _) in m {
            match k.as_str() {
                Some("Seq") => has_seq = true,
                Some("Error") => {}
                _ => return None,
            }
        }
        if !has_seq {
            return None;
        }
        ResponseHeader::from_value(v).ok()
    }
}

// ------------------------------------------------------------------ requests

body! {
    HandshakeRequest = "handshakeRequest" {
        "Version" => version: i32 = (enc_i32, int),
    }
}

body! {
    AuthRequest = "authRequest" {
        "AuthKey" => auth_key: String = (enc_str, string),
    }
}

body! {
    CoordinateRequest = "coordinateRequest" {
        "Node" => node: String = (enc_str, string),
    }
}

body! {
    EventRequest = "eventRequest" {
        "Name" => name: String = (enc_str, string),
        "Payload" => payload: Vec<u8> = (enc_bytes, bytes),
        "Coalesce" => coalesce: bool = (enc_bool, bool),
    }
}

body! {
    ForceLeaveRequest = "forceLeaveRequest" {
        "Node" => node: String = (enc_str, string),
        "Prune" => prune: bool = (enc_bool, bool),
    }
}

body! {
    JoinRequest = "joinRequest" {
        "Existing" => existing: Vec<String> = (enc_str_list, str_list),
        "Replay" => replay: bool = (enc_bool, bool),
    }
}

body! {
    JoinResponse = "joinResponse" {
        "Num" => num: i32 = (enc_i32, int),
    }
}

body! {
    /// Tag values, status and name are regular expressions the agent
    /// anchors (`^...$`).
    MembersFilteredRequest = "membersFilteredRequest" {
        "Tags" => tags: BTreeMap<String, String> = (enc_str_map, str_map),
        "Status" => status: String = (enc_str, string),
        "Name" => name: String = (enc_str, string),
    }
}

body! {
    MembersResponse = "membersResponse" {
        "Members" => members: Vec<Member> = (|v: &Vec<Member>| Value::Array(v.iter().map(Member::to_value).collect()), list),
    }
}

body! {
    KeyRequest = "keyRequest" {
        "Key" => key: String = (enc_str, string),
    }
}

body! {
    /// Result of a key operation. `keys` (key → number of nodes that have
    /// it) only comes with `list-keys`; `messages` holds per-node errors.
    KeyResponse = "keyResponse" {
        "Messages" => messages: BTreeMap<String, String> = (enc_str_map, str_map),
        "Keys" => keys: BTreeMap<String, i64> = (enc_int_map, int_map),
        "NumNodes" => num_nodes: i64 = (enc_i64, int),
        "NumErr" => num_err: i64 = (enc_i64, int),
        "NumResp" => num_resp: i64 = (enc_i64, int),
    }
}

body! {
    MonitorRequest = "monitorRequest" {
        "LogLevel" => log_level: String = (enc_str, string),
    }
}

body! {
    /// `filter` is serf's event filter: `*`, `user`, `user:NAME`, `query`,
    /// `query:NAME`, `member-join`, ... comma separated.
    StreamRequest = "streamRequest" {
        "Type" => filter: String = (enc_str, string),
    }
}

body! {
    StopRequest = "stopRequest" {
        "Stop" => stop: u64 = (enc_u64, int),
    }
}

body! {
    TagsRequest = "tagsRequest" {
        "Tags" => tags: BTreeMap<String, String> = (enc_str_map, str_map),
        "DeleteTags" => delete_tags: Vec<String> = (enc_str_list, str_list),
    }
}

/// Parameters of a query (`query` request body).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryRequest {
    /// Only these nodes answer (empty: all).
    pub filter_nodes: Vec<String>,
    /// Only nodes whose tag matches the (anchored) regular expression.
    pub filter_tags: BTreeMap<String, String>,
    pub request_ack: bool,
    /// Responses are also relayed through this many other nodes.
    pub relay_factor: u8,
    /// Zero: the agent's default, which grows with the cluster size.
    pub timeout: Duration,
    pub name: String,
    pub payload: Vec<u8>,
}

impl Body for QueryRequest {
    const TYPE: &'static str = "queryRequest";

    fn to_value(&self) -> Value {
        let ns = i64::try_from(self.timeout.as_nanos()).unwrap_or(i64::MAX);
        map(vec![
            ("FilterNodes", str_list(&self.filter_nodes)),
            ("FilterTags", str_map(&self.filter_tags)),
            ("RequestAck", Value::Boolean(self.request_ack)),
            ("RelayFactor", Value::from(self.relay_factor)),
            ("Timeout", Value::from(ns)),
            ("Name", s(&self.name)),
            ("Payload", bin(&self.payload)),
        ])
    }

    fn from_value(v: &Value) -> Result<Self, DecodeError> {
        let f = Fields::new(Self::TYPE, v)?;
        // time.Duration: int64 nanoseconds; a negative one means "default".
        let ns: i64 = f.int("Timeout")?;
        Ok(QueryRequest {
            filter_nodes: f.str_list("FilterNodes")?,
            filter_tags: f.str_map("FilterTags")?,
            request_ack: f.bool("RequestAck")?,
            relay_factor: f.int("RelayFactor")?,
            timeout: Duration::from_nanos(u64::try_from(ns).unwrap_or(0)),
            name: f.string("Name")?,
            payload: f.bytes("Payload")?,
        })
    }
}

body! {
    /// Answer to a query received on an event stream (`ID` from the record).
    RespondRequest = "respondRequest" {
        "ID" => id: u64 = (enc_u64, int),
        "Payload" => payload: Vec<u8> = (enc_bytes, bytes),
    }
}

// ------------------------------------------------------------------ records

/// `Type` of a query stream record.
pub const QUERY_RECORD_ACK: &str = "ack";
pub const QUERY_RECORD_RESPONSE: &str = "response";
pub const QUERY_RECORD_DONE: &str = "done";

body! {
    /// One record of a running query: `ack`, `response` or `done`.
    QueryRecord = "queryRecord" {
        "Type" => record_type: String = (enc_str, string),
        "From" => from: String = (enc_str, string),
        "Payload" => payload: Vec<u8> = (enc_bytes, bytes),
    }
}

body! {
    /// One line of a `monitor` stream.
    LogRecord = "logRecord" {
        "Log" => log: String = (enc_str, string),
    }
}

body! {
    /// A user event on an event stream (`Event` is `"user"`).
    UserEventRecord = "userEventRecord" {
        "Event" => event: String = (enc_str, string),
        "LTime" => ltime: u64 = (enc_u64, int),
        "Name" => name: String = (enc_str, string),
        "Payload" => payload: Vec<u8> = (enc_bytes, bytes),
        "Coalesce" => coalesce: bool = (enc_bool, bool),
    }
}

body! {
    /// A query on an event stream (`Event` is `"query"`); answer it with
    /// `respond` and this `id` before the query's deadline.
    QueryEventRecord = "queryEventRecord" {
        "Event" => event: String = (enc_str, string),
        "ID" => id: u64 = (enc_u64, int),
        "LTime" => ltime: u64 = (enc_u64, int),
        "Name" => name: String = (enc_str, string),
        "Payload" => payload: Vec<u8> = (enc_bytes, bytes),
    }
}

body! {
    /// A membership event (`member-join`, `member-leave`, `member-failed`,
    /// `member-update`, `member-reap`) on an event stream.
    MemberEventRecord = "memberEventRecord" {
        "Event" => event: String = (enc_str, string),
        "Members" => members: Vec<Member> = (|v: &Vec<Member>| Value::Array(v.iter().map(Member::to_value).collect()), list),
    }
}

/// One record of an event stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Member(MemberEventRecord),
    User(UserEventRecord),
    Query(QueryEventRecord),
    /// An event type this crate does not know, kept as sent.
    Other {
        event: String,
        record: Value,
    },
}

impl StreamEvent {
    /// The record's `Event` field.
    pub fn event_type(&self) -> &str {
        match self {
            StreamEvent::Member(m) => &m.event,
            StreamEvent::User(u) => &u.event,
            StreamEvent::Query(q) => &q.event,
            StreamEvent::Other { event, .. } => event,
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            StreamEvent::Member(m) => m.to_value(),
            StreamEvent::User(u) => u.to_value(),
            StreamEvent::Query(q) => q.to_value(),
            StreamEvent::Other { record, .. } => record.clone(),
        }
    }

    pub fn from_value(v: &Value) -> Result<Self, DecodeError> {
        let event = Fields::new("eventRecord", v)?.string("Event")?;
        Ok(match event.as_str() {
            "user" => StreamEvent::User(UserEventRecord::from_value(v)?),
            "query" => StreamEvent::Query(QueryEventRecord::from_value(v)?),
            e if e.starts_with("member-") => StreamEvent::Member(MemberEventRecord::from_value(v)?),
            _ => StreamEvent::Other {
                event,
                record: v.clone(),
            },
        })
    }
}

// ------------------------------------------------------------------ member

/// A member as the RPC reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Member {
    pub name: String,
    /// Go's `net.IP`, sent as 4 or 16 bytes; IPv4-mapped IPv6 addresses read
    /// as IPv4. `None` if the agent sent no (or an unusable) address.
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    /// `alive`, `leaving`, `left`, `failed` (or `none`).
    pub status: String,
    /// Memberlist protocol range and current version.
    pub protocol_min: u8,
    pub protocol_max: u8,
    pub protocol_cur: u8,
    /// Serf ("delegate") protocol range and current version.
    pub delegate_min: u8,
    pub delegate_max: u8,
    pub delegate_cur: u8,
}

/// Read Go's `net.IP` bytes.
pub fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from([b[0], b[1], b[2], b[3]])),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            let v6 = Ipv6Addr::from(a);
            Some(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            })
        }
        _ => None,
    }
}

/// Go's `net.IP` bytes as serf's agent sends a member's address: 4 bytes
/// for IPv4, 16 for IPv6.
pub fn ip_to_bytes(ip: Option<IpAddr>) -> Vec<u8> {
    match ip {
        Some(IpAddr::V4(v4)) => v4.octets().to_vec(),
        Some(IpAddr::V6(v6)) => v6.octets().to_vec(),
        None => Vec::new(),
    }
}

impl Member {
    /// `ip:port` as Go's `net.TCPAddr` prints it (`[v6]:port`, `:port`
    /// without an address).
    pub fn addr_string(&self) -> String {
        match self.addr {
            Some(ip) => SocketAddr::new(ip, self.port).to_string(),
            None => format!(":{}", self.port),
        }
    }
}

impl Body for Member {
    const TYPE: &'static str = "Member";

    fn to_value(&self) -> Value {
        let addr = if self.addr.is_some() {
            bin(&ip_to_bytes(self.addr))
        } else {
            Value::Nil
        };
        map(vec![
            ("Name", s(&self.name)),
            ("Addr", addr),
            ("Port", Value::from(self.port)),
            ("Tags", str_map(&self.tags)),
            ("Status", s(&self.status)),
            ("ProtocolMin", Value::from(self.protocol_min)),
            ("ProtocolMax", Value::from(self.protocol_max)),
            ("ProtocolCur", Value::from(self.protocol_cur)),
            ("DelegateMin", Value::from(self.delegate_min)),
            ("DelegateMax", Value::from(self.delegate_max)),
            ("DelegateCur", Value::from(self.delegate_cur)),
        ])
    }

    fn from_value(v: &Value) -> Result<Self, DecodeError> {
        let f = Fields::new(Self::TYPE, v)?;
        Ok(Member {
            name: f.string("Name")?,
            addr: ip_from_bytes(&f.bytes("Addr")?),
            port: f.int("Port")?,
            tags: f.str_map("Tags")?,
            status: f.string("Status")?,
            protocol_min: f.int("ProtocolMin")?,
            protocol_max: f.int("ProtocolMax")?,
            protocol_cur: f.int("ProtocolCur")?,
            delegate_min: f.int("DelegateMin")?,
            delegate_max: f.int("DelegateMax")?,
            delegate_cur: f.int("DelegateCur")?,
        })
    }
}

// ------------------------------------------------------------------ coordinates

/// A Vivaldi network coordinate (serf's `coordinate.Coordinate`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Coordinate {
    pub vec: Vec<f64>,
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

impl Coordinate {
    /// Estimated round-trip time to `other` as serf computes it
    /// (`DistanceTo`, truncated to whole nanoseconds like Go's
    /// `time.Duration`); `None` if the dimensions differ.
    pub fn distance_to(&self, other: &Coordinate) -> Option<Duration> {
        if self.vec.len() != other.vec.len() {
            return None;
        }
        let mag = self
            .vec
            .iter()
            .zip(&other.vec)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
        let mut dist = mag + self.height + other.height;
        let adjusted = dist + self.adjustment + other.adjustment;
        if adjusted > 0.0 {
            dist = adjusted;
        }
        let ns = dist * 1.0e9;
        if !ns.is_finite() || ns < 0.0 {
            return Some(Duration::ZERO);
        }
        // `as` saturates and truncates toward zero, like Go's conversion.
        Some(Duration::from_nanos(ns as u64))
    }
}

impl Body for Coordinate {
    const TYPE: &'static str = "Coordinate";

    fn to_value(&self) -> Value {
        map(vec![
            (
                "Vec",
                Value::Array(self.vec.iter().map(|f| Value::F64(*f)).collect()),
            ),
            ("Error", Value::F64(self.error)),
            ("Adjustment", Value::F64(self.adjustment)),
            ("Height", Value::F64(self.height)),
        ])
    }

    fn from_value(v: &Value) -> Result<Self, DecodeError> {
        let f = Fields::new(Self::TYPE, v)?;
        Ok(Coordinate {
            vec: f.float_list("Vec")?,
            error: f.float("Error")?,
            adjustment: f.float("Adjustment")?,
            height: f.float("Height")?,
        })
    }
}

body! {
    /// `ok` is false when the agent has no coordinate for the node.
    CoordinateResponse = "coordinateResponse" {
        "Coord" => coord: Coordinate = (Coordinate::to_value, nested),
        "Ok" => ok: bool = (enc_bool, bool),
    }
}

// ------------------------------------------------------------------ stats

/// `stats` response: section → key → value (serf: `agent`, `runtime`,
/// `serf`, `tags`, `event_handlers`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stats(pub BTreeMap<String, BTreeMap<String, String>>);

impl Stats {
    /// One value, e.g. `get("agent", "name")`.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.0.get(section)?.get(key).map(String::as_str)
    }
}

impl Body for Stats {
    const TYPE: &'static str = "stats";

    fn to_value(&self) -> Value {
        Value::Map(self.0.iter().map(|(k, m)| (s(k), str_map(m))).collect())
    }

    fn from_value(v: &Value) -> Result<Self, DecodeError> {
        let entries: &[(Value, Value)] = match v {
            Value::Map(m) => m,
            Value::Nil => &[],
            other => {
                return Err(DecodeError::NotAMap {
                    ty: Self::TYPE,
                    got: kind(other),
                })
            }
        };
        let mut out = BTreeMap::new();
        for (k, inner) in entries {
            let section = str_of(k).ok_or(DecodeError::WrongType {
                ty: Self::TYPE,
                field: "section",
                expected: "string",
                got: kind(k),
            })?;
            let wrong = |field: &'static str, expected, got: &Value| DecodeError::WrongType {
                ty: Self::TYPE,
                field,
                expected,
                got: kind(got),
            };
            let mut m = BTreeMap::new();
            match inner {
                Value::Nil => {}
                Value::Map(im) => {
                    for (ik, iv) in im {
                        let ik = str_of(ik).ok_or_else(|| wrong("key", "string", ik))?;
                        let iv = match iv {
                            Value::Integer(_)
                            | Value::Boolean(_)
                            | Value::F32(_)
                            | Value::F64(_) => iv.to_string(),
                            other => {
                                str_of(other).ok_or_else(|| wrong("value", "string", other))?
                            }
                        };
                        m.insert(ik, iv);
                    }
                }
                other => return Err(wrong("section", "map", other)),
            }
            out.insert(section, m);
        }
        Ok(Stats(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode_value, encode_value, Decoded};

    fn roundtrip<T: Body + PartialEq + std::fmt::Debug>(x: &T) {
        let bytes = encode_value(&x.to_value());
        let Ok(Decoded::Complete { value, consumed }) = decode_value(&bytes, 1 << 20) else {
            panic!("did not decode");
        };
        assert_eq!(consumed, bytes.len());
        assert_eq!(&T::from_value(&value).unwrap(), x);
    }

    fn member() -> Member {
        Member {
            name: "n1".into(),
            addr: Some("10.0.0.2".parse().unwrap()),
            port: 7946,
            tags: BTreeMap::from([("role".to_string(), "web".to_string())]),
            status: "alive".into(),
            protocol_min: 1,
            protocol_max: 5,
            protocol_cur: 2,
            delegate_min: 2,
            delegate_max: 5,
            delegate_cur: 4,
        }
    }

    #[test]
    fn every_body_roundtrips() {
        roundtrip(&RequestHeader {
            command: "members".into(),
            seq: 7,
        });
        roundtrip(&ResponseHeader {
            seq: u64::MAX,
            error: "boom".into(),
        });
        roundtrip(&HandshakeRequest { version: 1 });
        roundtrip(&AuthRequest {
            auth_key: "k".into(),
        });
        roundtrip(&CoordinateRequest { node: "a".into() });
        roundtrip(&EventRequest {
            name: "deploy".into(),
            payload: b"v2\0\xff".to_vec(),
            coalesce: true,
        });
        roundtrip(&ForceLeaveRequest {
            node: "x".into(),
            prune: true,
        });
        roundtrip(&JoinRequest {
            existing: vec!["1.2.3.4:5".into(), "h".into()],
            replay: true,
        });
        roundtrip(&JoinResponse { num: -1 });
        roundtrip(&MembersFilteredRequest {
            tags: BTreeMap::from([("a".to_string(), "b.*".to_string())]),
            status: "alive".into(),
            name: "n.*".into(),
        });
        roundtrip(&MembersResponse {
            members: vec![member(), Member::default()],
        });
        roundtrip(&KeyRequest { key: "k".into() });
        roundtrip(&KeyResponse {
            messages: BTreeMap::from([("n".to_string(), "err".to_string())]),
            keys: BTreeMap::from([("k".to_string(), 3)]),
            num_nodes: 3,
            num_err: 1,
            num_resp: 2,
        });
        roundtrip(&MonitorRequest {
            log_level: "DEBUG".into(),
        });
        roundtrip(&StreamRequest {
            filter: "user:deploy,member-join".into(),
        });
        roundtrip(&StopRequest { stop: 9 });
        roundtrip(&TagsRequest {
            tags: BTreeMap::from([("a".to_string(), "1".to_string())]),
            delete_tags: vec!["b".into()],
        });
        roundtrip(&QueryRequest {
            filter_nodes: vec!["a".into()],
            filter_tags: BTreeMap::from([("r".to_string(), "w".to_string())]),
            request_ack: true,
            relay_factor: 2,
            timeout: Duration::from_millis(1500),
            name: "q".into(),
            payload: b"p".to_vec(),
        });
        roundtrip(&RespondRequest {
            id: 4,
            payload: b"r".to_vec(),
        });
        roundtrip(&QueryRecord {
            record_type: "response".into(),
            from: "n".into(),
            payload: b"x".to_vec(),
        });
        roundtrip(&LogRecord { log: "line".into() });
        roundtrip(&UserEventRecord {
            event: "user".into(),
            ltime: 3,
            name: "e".into(),
            payload: vec![1],
            coalesce: true,
        });
        roundtrip(&QueryEventRecord {
            event: "query".into(),
            id: 1,
            ltime: 2,
            name: "q".into(),
            payload: vec![],
        });
        roundtrip(&MemberEventRecord {
            event: "member-join".into(),
            members: vec![member()],
        });
        roundtrip(&CoordinateResponse {
            coord: Coordinate {
                vec: vec![0.1, -0.2],
                error: 1.5,
                adjustment: -0.001,
                height: 1e-5,
            },
            ok: true,
        });
        roundtrip(&Stats(BTreeMap::from([(
            "agent".to_string(),
            BTreeMap::from([("name".to_string(), "n".to_string())]),
        )])));
    }

    #[test]
    fn go_leniency() {
        // Missing and nil fields are zero values; unknown keys are ignored;
        // bin reads as string and string as bytes.
        let v = Value::Map(vec![
            (s("Name"), Value::Binary(b"n".to_vec())),
            (s("Payload"), s("p")),
            (s("Coalesce"), Value::Nil),
            (s("Extra"), Value::from(1)),
        ]);
        let e = EventRequest::from_value(&v).unwrap();
        assert_eq!(e.name, "n");
        assert_eq!(e.payload, b"p");
        assert!(!e.coalesce);
        assert_eq!(
            EventRequest::from_value(&Value::Nil).unwrap(),
            EventRequest::default()
        );
    }

    #[test]
    fn wrong_types_are_typed_errors() {
        let v = map(vec![("Port", Value::from(70000))]);
        assert_eq!(
            Member::from_value(&v),
            Err(DecodeError::OutOfRange {
                ty: "Member",
                field: "Port"
            })
        );
        let v = map(vec![("Port", Value::from(-1))]);
        assert!(Member::from_value(&v).is_err());
        let v = map(vec![("Name", Value::from(1))]);
        assert!(matches!(
            Member::from_value(&v),
            Err(DecodeError::WrongType { field: "Name", .. })
        ));
        assert!(matches!(
            Member::from_value(&Value::from(1)),
            Err(DecodeError::NotAMap { .. })
        ));
        let v = map(vec![("Members", Value::from("x"))]);
        assert!(MembersResponse::from_value(&v).is_err());
    }

    #[test]
    fn addresses() {
        let mut m = member();
        m.addr = ip_from_bytes(&[127, 0, 0, 1]);
        assert_eq!(m.addr_string(), "127.0.0.1:7946");
        m.addr = ip_from_bytes(&ip_to_bytes(Some("10.1.2.3".parse().unwrap())));
        assert_eq!(m.addr_string(), "10.1.2.3:7946");
        let mapped = std::net::Ipv4Addr::new(10, 0, 0, 9)
            .to_ipv6_mapped()
            .octets();
        assert_eq!(ip_from_bytes(&mapped), Some("10.0.0.9".parse().unwrap()));
        m.addr = ip_from_bytes(&ip_to_bytes(Some("fe80::1".parse().unwrap())));
        assert_eq!(m.addr_string(), "[fe80::1]:7946");
        m.addr = ip_from_bytes(&[1, 2, 3]);
        assert_eq!(m.addr_string(), ":7946");
    }

    #[test]
    fn stream_events() {
        let u = UserEventRecord {
            event: "user".into(),
            name: "deploy".into(),
            ..Default::default()
        };
        assert_eq!(
            StreamEvent::from_value(&u.to_value()).unwrap(),
            StreamEvent::User(u)
        );
        let m = MemberEventRecord {
            event: "member-failed".into(),
            members: vec![member()],
        };
        assert_eq!(
            StreamEvent::from_value(&m.to_value()).unwrap(),
            StreamEvent::Member(m)
        );
        let o = map(vec![("Event", s("future")), ("X", Value::from(1))]);
        assert!(matches!(
            StreamEvent::from_value(&o).unwrap(),
            StreamEvent::Other { ref event, .. } if event == "future"
        ));
    }

    #[test]
    fn header_detection() {
        let h = ResponseHeader {
            seq: 3,
            error: String::new(),
        };
        assert_eq!(ResponseHeader::detect(&h.to_value()), Some(h));
        assert_eq!(
            ResponseHeader::detect(&LogRecord::default().to_value()),
            None
        );
        assert_eq!(ResponseHeader::detect(&map(vec![("Error", s(""))])), None);
        assert_eq!(ResponseHeader::detect(&Value::from(1)), None);
    }

    #[test]
    fn distance_matches_serf() {
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
        assert_eq!(a.distance_to(&b), Some(Duration::from_nanos(7_000_000)));
        let c = Coordinate {
            vec: vec![0.0],
            ..a.clone()
        };
        assert_eq!(a.distance_to(&c), None);
        // A negative adjustment that would go below zero is ignored.
        let d = Coordinate {
            adjustment: -1.0,
            ..b.clone()
        };
        assert_eq!(a.distance_to(&d), Some(Duration::from_nanos(7_000_000)));
    }
}
