//! DNS names components register: a component that has something to answer
//! under the agent's DNS domain registers a [`DnsSource`] at build; the DNS
//! component merges every source (and the alive members as `NODE.node`)
//! into what it serves.

use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// One instance of a service type (`TYPE.service.DOMAIN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsInstance {
    /// The service type, e.g. `http`.
    pub service: String,
    /// The node publishing it.
    pub node: String,
    pub ip: IpAddr,
    pub port: u16,
}

/// What one component answers: service instances, and extra node
/// addresses (`NODE.node.DOMAIN`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsNames {
    pub instances: Vec<DnsInstance>,
    pub nodes: Vec<(String, IpAddr)>,
}

/// A component's names, kept current by it.
pub type DnsSource = watch::Receiver<Arc<DnsNames>>;
