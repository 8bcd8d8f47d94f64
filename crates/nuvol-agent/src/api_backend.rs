//! The REST API's view of the agent: [`nuvol_api::Backend`] over the
//! gossip handle and the catalog.

use crate::catalog::{Catalog, CatalogOpError};
use crate::metrics::Metrics;
use crate::runtime::{AgentError, AgentHandle};
use futures::future::BoxFuture;
use nuvol_api::{AgentInfo, ApiError, ApiEvent, Backend, MemberInfo};
use nuvol_catalog::{CatalogError, Filter, ServiceDef, ServiceEntry};
use std::net::SocketAddr;
use tokio::sync::broadcast;

pub struct AgentBackend {
    agent: AgentHandle,
    catalog: Catalog,
    metrics: Metrics,
    advertise: SocketAddr,
    http_addr: SocketAddr,
    dns_addr: Option<SocketAddr>,
    events: broadcast::Sender<ApiEvent>,
}

impl AgentBackend {
    /// Also starts forwarding catalog events to API subscribers.
    pub fn new(
        agent: AgentHandle,
        catalog: Catalog,
        metrics: Metrics,
        advertise: SocketAddr,
        http_addr: SocketAddr,
        dns_addr: Option<SocketAddr>,
    ) -> AgentBackend {
        let (events, _) = broadcast::channel(1024);
        let tx = events.clone();
        let mut rx = catalog.subscribe();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => {
                        let _ = tx.send(ApiEvent {
                            event: e.event.to_owned(),
                            data: e.data,
                        });
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "API event forwarder lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        AgentBackend {
            agent,
            catalog,
            metrics,
            advertise,
            http_addr,
            dns_addr,
            events,
        }
    }
}

fn op_error(e: CatalogOpError) -> ApiError {
    match e {
        CatalogOpError::Invalid(c) => catalog_error(c),
        CatalogOpError::NotFound(m) => ApiError::NotFound(format!("no published service {m}")),
        e @ CatalogOpError::FromFile { .. } => ApiError::Forbidden(e.to_string()),
        CatalogOpError::Store(s) => ApiError::Internal(s.to_string()),
        CatalogOpError::Agent(AgentError::Stopped) => {
            ApiError::Unavailable("the agent is stopping".into())
        }
        CatalogOpError::Agent(a) => ApiError::Internal(a.to_string()),
    }
}

fn catalog_error(c: CatalogError) -> ApiError {
    let field = match &c {
        CatalogError::BadType(_) => "type",
        CatalogError::BadPort(_) => "port",
        CatalogError::BadTxt(_) => "txt",
        CatalogError::BadDescription(_) => "description",
        CatalogError::BadField(f, _) => f.as_str(),
        _ => "body",
    }
    .to_owned();
    ApiError::BadRequest {
        field,
        message: c.to_string(),
    }
}

impl Backend for AgentBackend {
    fn agent(&self) -> AgentInfo {
        let cfg = &self.agent.config;
        AgentInfo {
            name: cfg.node_name.clone(),
            addr: self.advertise.ip().to_string(),
            port: self.advertise.port(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            data_dir: cfg.data_dir.display().to_string(),
            cloud: cfg.cloud.clone(),
            tags: cfg.tags.clone(),
            http_addr: self.http_addr.to_string(),
            dns_addr: self.dns_addr.map(|a| a.to_string()),
        }
    }

    fn members(&self) -> BoxFuture<'_, Result<Vec<MemberInfo>, ApiError>> {
        Box::pin(async move {
            let ms = self
                .agent
                .members()
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            Ok(ms
                .into_iter()
                .map(|m| MemberInfo {
                    name: m.name,
                    addr: m.addr.ip().to_string(),
                    port: m.addr.port(),
                    status: m.status.as_str().to_owned(),
                    tags: m.tags,
                })
                .collect())
        })
    }

    fn services(&self, filter: &Filter) -> Vec<ServiceEntry> {
        self.catalog.entries(filter)
    }

    fn publish(&self, def: ServiceDef) -> BoxFuture<'_, Result<ServiceEntry, ApiError>> {
        Box::pin(async move { self.catalog.publish(def).await.map_err(op_error) })
    }

    fn unpublish(&self, stype: String, port: u16) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(async move {
            self.catalog
                .unpublish(&stype, Some(port))
                .await
                .map(|_| ())
                .map_err(op_error)
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<ApiEvent> {
        self.events.subscribe()
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }
}
