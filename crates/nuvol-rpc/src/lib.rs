//! Serf's msgpack RPC ("IPC") protocol, used by `serf`'s CLI and by nuvol's.
//!
//! The wire format is go-msgpack with `WriteExt: true` (the current msgpack
//! spec: `str8`, `bin`), Go structs as maps keyed by field name. Requests are
//! a header `{Command, Seq}` plus an optional body; responses a header
//! `{Seq, Error}` plus an optional body; streams repeat records under their
//! request's `Seq`.
//!
//! - [`value`]: building and reading those maps, and an incremental,
//!   size-bounded reader of msgpack values from a socket (shared by the
//!   agent's server and this crate's client).
//! - [`client`]: an async client for every command.

pub mod client;
pub mod value;

pub use client::{
    ClientError, Coordinate, KeyResponse, Member, QueryEvent, QueryRequest, RpcClient, StreamRecord,
};

/// The only IPC version serf defines.
pub const IPC_VERSION: i64 = 1;
