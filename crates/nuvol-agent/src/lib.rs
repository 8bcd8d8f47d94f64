//! The nuvol agent's core: the gossip thread that drives the sans-I/O
//! Serf/memberlist core ([`driver`]), the narrow [`Cluster`] interface every
//! component uses, the component interface ([`Component`]) and the
//! [`supervisor`] that starts, restarts and stops components, sectioned
//! configuration ([`config`]), and the core's own components: serf's RPC
//! ([`rpc_server`]), event handlers ([`handlers`]), joining ([`join`]),
//! SIGHUP reload ([`reload`]) and metrics ([`metrics`]).
//!
//! Architecture Invariant: this crate depends on no feature crate (catalog,
//! API, DNS, mDNS, checks, ...). Features depend on it and plug in through
//! [`BuildCtx`] registrations.

pub mod advertise;
pub mod chan;
pub mod cluster;
pub mod component;
pub mod config;
pub mod dns;
mod driver;
pub mod duration;
pub mod fsutil;
pub mod handlers;
pub mod http;
pub mod join;
pub mod logs;
pub mod metrics;
mod persist;
pub mod process;
pub mod quorum;
pub mod registry;
pub mod reload;
pub mod rpc_server;
pub mod sections;
pub mod snapshot;
pub mod supervisor;

pub use cluster::{
    Cluster, ClusterError, Coordinate, GossipStats, InboundQuery, LeaveDone, LeaveHook, OwnedTags,
    QueryDone, QueryStream, QueryUpdate, StopReason, TagsSnapshot, APP_STREAM,
};
pub use component::{BuildError, Component, ComponentError, ComponentState, ComponentStatus};
pub use driver::BindError;
pub use registry::{
    AgentEvent, BuildCtx, InfoBoard, NodeInfo, Registry, ReloadHook, RunCtx, StatusBoard,
    StreamError, StreamHandler,
};
pub use supervisor::{AgentBuilder, AgentConfig, RunningAgent, StartError};

/// The core's components, in the order the binary lists them around the
/// features: RPC first (so the CLI reaches a starting agent), then event
/// handlers, then the features, then metrics, reload, and joining last.
pub mod components {
    pub use crate::handlers::Handlers;
    pub use crate::join::Join;
    pub use crate::metrics::Metrics;
    pub use crate::reload::Reload;
    pub use crate::rpc_server::RpcServer;
}
