//! Serf's msgpack RPC ("IPC") protocol, used by `serf`'s CLI and by nuvol's.
//!
//! The wire format is go-msgpack with `WriteExt: true` (the current msgpack
//! spec: `str8`, `bin`), Go structs as maps keyed by field name. Requests are
//! a header `{Command, Seq}` plus an optional body; responses a header
//! `{Seq, Error}` plus an optional body; streams (`monitor`, `stream`,
//! `query`) repeat records under their request's `Seq`.
//!
//! - [`frame`]: cutting msgpack values out of bytes without trusting them
//!   (incremental, size-capped, typed errors, no panics).
//! - [`types`]: typed bodies of every request, response and stream record.
//! - [`proto`]: command names, which have bodies, serf's error strings.
//! - [`client`]: an async client ([`RpcClient`]) for every command, with
//!   streams for logs, events and query answers.
//! - [`server`]: reading typed requests and writing responses, for agents.
//! - [`value`]: loose accessors on `rmpv` values and a stream reader
//!   ([`value::ValueReader`]) shared by the above.

pub mod client;
pub mod frame;
pub mod proto;
pub mod server;
pub mod types;
pub mod value;

/// The msgpack value type this crate's API uses.
pub use rmpv;

pub use client::{
    ClientConfig, ClientError, EventStream, LogStream, NodeResponse, QueryEvent, QueryResult,
    QueryStream, RpcClient, StreamHandle,
};
pub use frame::{decode_value, Decoded, FrameDecoder, FrameError};
pub use proto::{Command, IPC_VERSION};
pub use types::{
    Body, Coordinate, DecodeError, KeyResponse, Member, MemberEventRecord, QueryEventRecord,
    QueryRequest, Stats, StreamEvent, UserEventRecord,
};
