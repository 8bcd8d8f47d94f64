//! The records the API's own routes return.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use nuvol_catalog::api::CheckInfo;

/// This agent (`GET /v1/agent`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AgentInfo {
    pub name: String,
    pub addr: String,
    pub port: u16,
    pub version: String,
    pub data_dir: String,
    pub cloud: String,
    /// The node's live tags (its own and the components').
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

/// One component of the agent (`GET /v1/agent/components`).
pub type ComponentInfo = nuvol_agent::ComponentStatus;
