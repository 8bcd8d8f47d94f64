//! The agent's DNS interface: derives [`nuvol_dns::DnsView`] snapshots from
//! the catalog (healthy instances only) and the member list, and runs the
//! server.

use crate::catalog::Catalog;
use crate::runtime::AgentHandle;
use nuvol_catalog::{Filter, ServiceEntry};
use nuvol_dns::{DnsConfig, DnsServer, DnsStats, DnsView, Instance};
use nuvol_gossip::MemberStatus;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The DNS view of catalog entries (healthy instances only) and node
/// addresses. Pure, so the benchmark builds its view the same way.
pub fn view_from<'a>(
    entries: &[ServiceEntry],
    nodes: impl IntoIterator<Item = (&'a str, IpAddr)>,
) -> DnsView {
    let mut view = DnsView::default();
    for e in entries {
        if !e.status.is_healthy() {
            continue;
        }
        let Ok(ip) = e.ip.parse::<IpAddr>() else {
            continue;
        };
        view.add_instance(
            &e.stype,
            Instance {
                node: e.node.clone(),
                ip,
                port: e.port,
            },
        );
    }
    for (name, ip) in nodes {
        view.add_node_addr(name, ip);
    }
    view
}

async fn build(catalog: &Catalog, agent: &AgentHandle) -> DnsView {
    let members = agent.members().await.unwrap_or_default();
    view_from(
        &catalog.entries(&Filter::default()),
        members
            .iter()
            .filter(|m| m.status == MemberStatus::Alive)
            .map(|m| (m.name.as_str(), m.addr.ip())),
    )
}

/// Bind the DNS server on `addr` for `domain` and keep its view current.
/// Returns the bound address and the server's counters.
pub async fn start(
    catalog: Catalog,
    agent: AgentHandle,
    addr: SocketAddr,
    domain: String,
) -> Result<(SocketAddr, Arc<DnsStats>), nuvol_dns::DnsError> {
    let (tx, rx) = watch::channel(Arc::new(build(&catalog, &agent).await));
    let server = DnsServer::bind(
        DnsConfig {
            addr,
            domain,
            ..DnsConfig::default()
        },
        rx,
    )
    .await?;
    let local = server.local_addr();
    let stats = server.stats();
    tokio::spawn(async move {
        if let Err(e) = server.run(std::future::pending()).await {
            tracing::error!(error = %e, "DNS server stopped");
        }
    });
    tokio::spawn(async move {
        let mut changes = catalog.changes();
        // Member addresses can change without a catalog change; refresh
        // now and then too.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = tick.tick() => {}
            }
            let view = build(&catalog, &agent).await;
            if tx.send(Arc::new(view)).is_err() {
                return;
            }
        }
    });
    Ok((local, stats))
}
