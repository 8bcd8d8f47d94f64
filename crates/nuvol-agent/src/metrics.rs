//! Prometheus metrics of the agent: membership, gossip traffic, probe
//! round-trip times, catalog sizes and check states.
//!
//! The gossip core lives on its own task, so a sampler copies its counters
//! into registered metrics once a second instead of reading them at scrape
//! time; a scrape never waits on the core.

use crate::catalog::Catalog;
use crate::runtime::AgentHandle;
use nuvol_catalog::{Filter, Health};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirLabel {
    direction: String,
}

/// The agent's metrics, registered once and refreshed by [`Metrics::run`].
#[derive(Clone)]
pub struct Metrics {
    members: Family<StatusLabel, Gauge>,
    packets: Family<DirLabel, Counter>,
    dropped: Counter,
    decrypt_failures: Counter,
    probes: Counter,
    probe_failures: Counter,
    probe_rtt: Histogram,
    catalog_nodes: Gauge,
    catalog_services: Family<StatusLabel, Gauge>,
    local_checks: Family<StatusLabel, Gauge>,
    pulls: Family<StatusLabel, Counter>,
    last: Arc<std::sync::Mutex<Last>>,
}

#[derive(Default)]
struct Last {
    packets_in: u64,
    packets_out: u64,
    dropped: u64,
    decrypt: u64,
    probes: u64,
    probe_failures: u64,
    pulls_ok: u64,
    pulls_failed: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            members: Family::default(),
            packets: Family::default(),
            dropped: Counter::default(),
            decrypt_failures: Counter::default(),
            probes: Counter::default(),
            probe_failures: Counter::default(),
            probe_rtt: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            catalog_nodes: Gauge::default(),
            catalog_services: Family::default(),
            local_checks: Family::default(),
            pulls: Family::default(),
            last: Arc::default(),
        }
    }

    /// Register everything under `nuvol_`.
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("nuvol");
        r.register("members", "Cluster members by status", self.members.clone());
        r.register(
            "gossip_packets",
            "Gossip UDP packets by direction",
            self.packets.clone(),
        );
        r.register(
            "gossip_dropped_packets",
            "Gossip packets dropped (malformed, wrong key, oversized)",
            self.dropped.clone(),
        );
        r.register(
            "gossip_decrypt_failures",
            "Gossip packets that failed to decrypt",
            self.decrypt_failures.clone(),
        );
        r.register(
            "probes",
            "Failure-detector probes sent",
            self.probes.clone(),
        );
        r.register(
            "probe_failures",
            "Failure-detector probes without an ack",
            self.probe_failures.clone(),
        );
        r.register(
            "probe_rtt_seconds",
            "Round-trip time of acknowledged direct probes",
            self.probe_rtt.clone(),
        );
        r.register(
            "catalog_nodes",
            "Nodes known to the service catalog",
            self.catalog_nodes.clone(),
        );
        r.register(
            "catalog_services",
            "Services in the catalog by status",
            self.catalog_services.clone(),
        );
        r.register(
            "checks",
            "This node's health checks by status",
            self.local_checks.clone(),
        );
        r.register(
            "catalog_pulls",
            "Full service-list pulls from nuvol peers by result",
            self.pulls.clone(),
        );
    }

    /// Refresh from the agent and the catalog every second, until the agent stops.
    pub async fn run(self, agent: AgentHandle, catalog: Catalog) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let snap = agent
                .call(|c| {
                    let g = &mut c.gossip;
                    let (total, failed, left) = g.counts();
                    let alive = total.saturating_sub(failed + left);
                    let rtts = g.stats.take_rtts();
                    let s = &g.stats;
                    (
                        (alive, failed, left),
                        (
                            s.packets_in,
                            s.packets_out,
                            s.packets_dropped,
                            s.decrypt_failures,
                        ),
                        (s.probes, s.probe_failures),
                        rtts,
                    )
                })
                .await;
            let Ok(((alive, failed, left), (pin, pout, dropped, decrypt), (probes, pfail), rtts)) =
                snap
            else {
                return;
            };
            self.set_status(&self.members, "alive", alive);
            self.set_status(&self.members, "failed", failed);
            self.set_status(&self.members, "left", left);
            for r in rtts {
                self.probe_rtt.observe(r.as_secs_f64());
            }
            let cs = catalog.stats();
            let (ok, bad) = (
                cs.pulls_ok.load(Ordering::Relaxed),
                cs.pulls_failed.load(Ordering::Relaxed),
            );
            {
                let mut last = match self.last.lock() {
                    Ok(l) => l,
                    Err(p) => p.into_inner(),
                };
                let inc = |c: &Counter, now: u64, prev: &mut u64| {
                    c.inc_by(now.saturating_sub(*prev));
                    *prev = now;
                };
                inc(
                    &self.packets.get_or_create(&DirLabel {
                        direction: "in".into(),
                    }),
                    pin,
                    &mut last.packets_in,
                );
                inc(
                    &self.packets.get_or_create(&DirLabel {
                        direction: "out".into(),
                    }),
                    pout,
                    &mut last.packets_out,
                );
                inc(&self.dropped, dropped, &mut last.dropped);
                inc(&self.decrypt_failures, decrypt, &mut last.decrypt);
                inc(&self.probes, probes, &mut last.probes);
                inc(&self.probe_failures, pfail, &mut last.probe_failures);
                inc(
                    &self.pulls.get_or_create(&StatusLabel {
                        status: "ok".into(),
                    }),
                    ok,
                    &mut last.pulls_ok,
                );
                inc(
                    &self.pulls.get_or_create(&StatusLabel {
                        status: "failed".into(),
                    }),
                    bad,
                    &mut last.pulls_failed,
                );
            }
            let (nodes, _) = catalog.sizes();
            self.catalog_nodes.set(nodes as i64);
            let entries = catalog.entries(&Filter::default());
            for st in ["passing", "warning", "critical", "unavailable"] {
                let n = entries.iter().filter(|e| e.status.as_str() == st).count();
                self.set_status(&self.catalog_services, st, n);
            }
            let me = catalog.node_name().to_owned();
            for h in [Health::Passing, Health::Warning, Health::Critical] {
                let n = entries
                    .iter()
                    .filter(|e| e.node == me)
                    .flat_map(|e| e.checks.iter())
                    .filter(|c| c.status == h)
                    .count();
                self.set_status(&self.local_checks, h.as_str(), n);
            }
        }
    }

    fn set_status(&self, f: &Family<StatusLabel, Gauge>, status: &str, n: usize) {
        f.get_or_create(&StatusLabel {
            status: status.to_owned(),
        })
        .set(n as i64);
    }
}
