//! Public types of the gossip core: members, events and outputs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Serf's member status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    None = 0,
    Alive = 1,
    Leaving = 2,
    Left = 3,
    Failed = 4,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::None => "none",
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cluster member as Serf reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub addr: SocketAddr,
    pub tags: BTreeMap<String, String>,
    pub status: MemberStatus,
    /// `[pmin, pmax, pcur, dmin, dmax, dcur]`
    pub vsn: [u8; 6],
}

/// Kinds of member events (serf's EventType names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberEventKind {
    Join,
    Leave,
    Failed,
    Update,
    Reap,
}

impl MemberEventKind {
    /// serf's `SERF_EVENT` value.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberEventKind::Join => "member-join",
            MemberEventKind::Leave => "member-leave",
            MemberEventKind::Failed => "member-failed",
            MemberEventKind::Update => "member-update",
            MemberEventKind::Reap => "member-reap",
        }
    }
}

/// Handle of an incoming query this node may answer with [`crate::Gossip::respond`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboundQueryId(pub u64);

/// Handle of a query this node started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryHandle(pub u64);

/// Something that happened in the cluster, for handlers and event streams.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Member {
        kind: MemberEventKind,
        members: Vec<Member>,
    },
    User {
        ltime: u64,
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
    },
    Query {
        id: InboundQueryId,
        ltime: u64,
        name: String,
        payload: Vec<u8>,
        source_node: String,
    },
}

/// What the outside world should do for the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send one UDP datagram.
    Packet {
        to: SocketAddr,
        data: Vec<u8>,
    },
    /// Open a TCP stream to `to`, write `data`, read one stream message back
    /// and pass it to [`crate::Gossip::handle_push_pull_reply`] with `token`.
    PushPull {
        token: u64,
        to: SocketAddr,
        data: Vec<u8>,
    },
    /// TCP fallback probe: connect, write `data`, expect an ack for `seq`
    /// before `deadline`; report with [`crate::Gossip::handle_tcp_ping_result`].
    TcpPing {
        seq: u32,
        to: SocketAddr,
        data: Vec<u8>,
        deadline: Duration,
    },
    Event(Event),
    QueryAck {
        handle: QueryHandle,
        from: String,
    },
    QueryResponse {
        handle: QueryHandle,
        from: String,
        payload: Vec<u8>,
    },
    QueryDone {
        handle: QueryHandle,
    },
    /// The result of a key operation started with [`crate::Gossip::key_op`].
    KeyOpDone {
        handle: QueryHandle,
        result: KeyOpResult,
    },
    /// The local keyring changed (write the keyring file).
    KeyringChanged,
    /// A graceful leave finished: the agent may exit.
    LeaveDone,
    /// Serf's name-conflict resolution decided this node must stop.
    Shutdown {
        reason: String,
    },
    /// A member's address or status changed (for the snapshot).
    SnapshotAlive {
        name: String,
        addr: SocketAddr,
    },
    SnapshotNotAlive {
        name: String,
    },
}

/// Aggregated result of a cluster-wide key operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyOpResult {
    pub messages: BTreeMap<String, String>,
    pub keys: BTreeMap<String, usize>,
    pub primary_keys: BTreeMap<String, usize>,
    pub num_nodes: usize,
    pub num_resp: usize,
    pub num_err: usize,
}

/// Key operations, as `serf keys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOp {
    Install,
    Use,
    Remove,
    List,
}

impl KeyOp {
    pub fn query_name(self) -> &'static str {
        match self {
            KeyOp::Install => "_serf_install-key",
            KeyOp::Use => "_serf_use-key",
            KeyOp::Remove => "_serf_remove-key",
            KeyOp::List => "_serf_list-keys",
        }
    }
}

/// Parameters of a query, as serf's `QueryParam`.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    pub filter_nodes: Vec<String>,
    /// tag name → regular expression
    pub filter_tags: BTreeMap<String, String>,
    pub request_ack: bool,
    pub relay_factor: u8,
    /// Zero means serf's default timeout.
    pub timeout: Duration,
}

/// Counters of the core, for `info`/metrics.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub packets_dropped: u64,
    pub decrypt_failures: u64,
    pub decode_failures: u64,
    pub streams_in: u64,
    pub streams_dropped: u64,
    pub probes: u64,
    pub probe_failures: u64,
    /// Members this node began to suspect (its own probes or others' word).
    pub suspicions: u64,
    /// Suspicions of this node that it refuted.
    pub refutations: u64,
    pub member_events: u64,
    pub user_events: u64,
    pub queries: u64,
    /// Round-trip times of successful direct probes since the last
    /// [`Stats::take_rtts`] (at most [`Stats::MAX_RTTS`] kept).
    pub recent_rtts: Vec<std::time::Duration>,
}

impl Stats {
    pub const MAX_RTTS: usize = 1024;

    pub fn record_rtt(&mut self, rtt: std::time::Duration) {
        if self.recent_rtts.len() < Self::MAX_RTTS {
            self.recent_rtts.push(rtt);
        }
    }

    /// Drain the recorded probe round-trip times (for a metrics exporter).
    pub fn take_rtts(&mut self) -> Vec<std::time::Duration> {
        std::mem::take(&mut self.recent_rtts)
    }
}
