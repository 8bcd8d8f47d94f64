//! The nuvol agent: binds the gossip sockets, drives the sans-I/O core with
//! tokio, serves Serf's RPC protocol, runs event handler scripts and keeps the
//! snapshot.

pub mod api_backend;
pub mod catalog;
pub mod config;
pub mod dns;
pub mod handlers;
pub mod lan;
pub mod logs;
pub mod metrics;
pub mod rpc_server;
pub mod runtime;
pub mod snapshot;
pub mod util;

pub use config::{AgentConfig, FileConfig};
pub use runtime::{start, AgentError, AgentHandle, QueryUpdate, Running};

use nuvol_gossip::Event;
use tokio::sync::mpsc;

/// Run the configured event handlers for each event, in order (as serf does).
/// A query's handler output is sent as the response.
pub(crate) async fn handler_task(agent: AgentHandle, mut rx: mpsc::Receiver<Event>) {
    let specs: Vec<handlers::HandlerSpec> = agent
        .config
        .event_handlers
        .iter()
        .filter_map(|h| handlers::HandlerSpec::parse(h).ok())
        .collect();
    while let Some(ev) = rx.recv().await {
        let Ok((name, tags)) = agent
            .call(|c| (c.gossip.name().to_owned(), c.gossip.tags().clone()))
            .await
        else {
            return;
        };
        for spec in specs.iter().filter(|s| s.wants(&ev)) {
            let timeout = match &ev {
                // A query answer after its deadline is useless.
                Event::Query { .. } => Some(std::time::Duration::from_secs(30)),
                _ => None,
            };
            match handlers::invoke(&spec.script, &name, &tags, &ev, timeout).await {
                Ok((out, truncated)) => {
                    if truncated {
                        tracing::warn!(script = %spec.script, "handler output truncated to {} bytes", handlers::MAX_OUTPUT);
                    }
                    if let Event::Query { id, .. } = &ev {
                        if !out.is_empty() {
                            if let Err(e) = agent.respond(id.0, out).await {
                                tracing::warn!(error = %e, "failed to respond to query");
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(script = %spec.script, error = %e, "event handler failed")
                }
            }
        }
    }
}
