//! The interface the agent implements: [`Backend`], and the records it
//! returns.

use crate::error::ApiError;
use futures::future::BoxFuture;
use nuvol_catalog::{Filter, ServiceDef, ServiceEntry};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the API needs from the agent. The server holds an
/// `Arc<dyn Backend>`; every method is called from request handlers, so the
/// synchronous ones must be cheap snapshots (no I/O, no waiting on the
/// driver task for long).
pub trait Backend: Send + Sync + 'static {
    /// This agent (`GET /v1/agent`).
    fn agent(&self) -> AgentInfo;
    /// The cluster's members as this node sees them (`GET /v1/members`).
    fn members(&self) -> BoxFuture<'_, Result<Vec<MemberInfo>, ApiError>>;
    /// A snapshot of the cluster-wide catalog, filtered by type and node.
    fn services(&self, filter: &Filter) -> Vec<ServiceEntry>;
    /// Publish a service on this node (replacing one with the same type and
    /// port). The API has already run [`ServiceDef::validate`].
    fn publish(&self, def: ServiceDef) -> BoxFuture<'_, Result<ServiceEntry, ApiError>>;
    /// Remove this node's service `stype`/`port`; [`ApiError::NotFound`] if
    /// this node does not publish it.
    fn unpublish(&self, stype: String, port: u16) -> BoxFuture<'_, Result<(), ApiError>>;
    /// A new subscription to the agent's events (`GET /v1/events`).
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ApiEvent>;
    /// Called once when the server is bound: register the agent's
    /// collectors (members by status, gossip counters, catalog sizes, check
    /// states...). `/metrics` encodes this registry.
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry);
}

/// This agent (`GET /v1/agent`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AgentInfo {
    pub name: String,
    pub addr: String,
    pub port: u16,
    pub version: String,
    pub data_dir: String,
    pub cloud: String,
    pub tags: BTreeMap<String, String>,
    /// Where this API listens.
    pub http_addr: String,
    /// Where the DNS interface listens, if enabled.
    pub dns_addr: Option<String>,
}

/// One cluster member (`GET /v1/members`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub name: String,
    pub addr: String,
    pub port: u16,
    /// `alive`, `leaving`, `left` or `failed`.
    pub status: String,
    pub tags: BTreeMap<String, String>,
}

/// One event of the stream (`GET /v1/events`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ApiEvent {
    /// `member-join`, `member-failed`, `service-published`,
    /// `service-removed`, `check-changed`, ... (`lagged` is sent by the API
    /// itself when a subscriber fell behind).
    pub event: String,
    pub data: serde_json::Value,
}

/// One health check, flattened out of the catalog (`GET /v1/checks`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CheckInfo {
    pub node: String,
    #[serde(rename = "type")]
    pub stype: String,
    pub port: u16,
    /// `tcp`, `http` or `script`.
    pub kind: String,
    /// The address, URL or command.
    pub target: String,
    pub status: nuvol_catalog::Health,
    pub output: String,
    /// Milliseconds since the Unix epoch.
    pub updated_ms: u64,
}
