//! The metrics component: the gossip layer's metrics (members by status,
//! traffic, drops, probes and their round-trip times, suspicions) and
//! `GET /metrics`, which serves everything every component registered
//! (OpenMetrics text).
//!
//! The core lives on its own thread, so a sampler copies its counters into
//! the registered metrics once a second; a scrape never waits on the core.

use crate::component::{BuildError, Component, ComponentError};
use crate::config::NoSettings;
use crate::http::{Access, ApiError, HttpRoute};
use crate::registry::{BuildCtx, Registry, RunCtx};
use axum::http::{header, Method};
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The OpenAPI fragment of `GET /metrics`.
pub const OPENAPI: &str = include_str!("metrics.openapi.json");

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirLabel {
    direction: String,
}

/// A counter fed from a cumulative value kept elsewhere (a core's stats,
/// a server's atomics), sampled now and then.
#[derive(Clone, Default, Debug)]
pub struct Fed {
    counter: Counter,
    last: Arc<std::sync::atomic::AtomicU64>,
}

impl Fed {
    /// The counter to register.
    pub fn counter(&self) -> Counter {
        self.counter.clone()
    }

    /// Advance the counter to the cumulative value `now`.
    pub fn feed(&self, now: u64) {
        let prev = self.last.swap(now, std::sync::atomic::Ordering::Relaxed);
        self.counter.inc_by(now.saturating_sub(prev));
    }
}

/// The metrics component.
pub struct Metrics {
    members: Family<StatusLabel, Gauge>,
    packets_in: Fed,
    packets_out: Fed,
    dropped: Fed,
    decrypt_failures: Fed,
    decode_failures: Fed,
    streams_dropped: Fed,
    udp_send_errors: Fed,
    probes: Fed,
    probe_failures: Fed,
    suspicions: Fed,
    refutations: Fed,
    log_lines_missed: Fed,
    health: Gauge,
    probe_rtt: Histogram,
    served: Arc<OnceLock<Arc<Registry>>>,
}

impl Component for Metrics {
    type Config = NoSettings;
    const NAME: &'static str = "metrics";

    fn build(_: NoSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        let packets = Family::<DirLabel, Counter>::default();
        let direction = |d: &str| Fed {
            counter: packets
                .get_or_create(&DirLabel {
                    direction: d.into(),
                })
                .clone(),
            last: Arc::default(),
        };
        let m = Metrics {
            members: Family::default(),
            packets_in: direction("in"),
            packets_out: direction("out"),
            dropped: Fed::default(),
            decrypt_failures: Fed::default(),
            decode_failures: Fed::default(),
            streams_dropped: Fed::default(),
            udp_send_errors: Fed::default(),
            probes: Fed::default(),
            probe_failures: Fed::default(),
            suspicions: Fed::default(),
            refutations: Fed::default(),
            log_lines_missed: Fed::default(),
            health: Gauge::default(),
            probe_rtt: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            served: Arc::default(),
        };
        let r = ctx.metrics();
        r.register("members", "Cluster members by status", m.members.clone());
        r.register("gossip_packets", "Gossip UDP packets by direction", packets);
        r.register(
            "gossip_dropped_packets",
            "Gossip packets dropped (malformed, wrong key, oversized)",
            m.dropped.counter.clone(),
        );
        r.register(
            "gossip_decrypt_failures",
            "Gossip packets that failed to decrypt",
            m.decrypt_failures.counter.clone(),
        );
        r.register(
            "gossip_decode_failures",
            "Gossip packets that failed to decode",
            m.decode_failures.counter.clone(),
        );
        r.register(
            "gossip_streams_dropped",
            "Gossip TCP streams refused (bad key, garbage, no encryption)",
            m.streams_dropped.counter.clone(),
        );
        r.register(
            "gossip_udp_send_errors",
            "Gossip UDP sends that failed",
            m.udp_send_errors.counter.clone(),
        );
        r.register(
            "probes",
            "Failure-detector probes sent",
            m.probes.counter.clone(),
        );
        r.register(
            "probe_failures",
            "Failure-detector probes without an ack",
            m.probe_failures.counter.clone(),
        );
        r.register(
            "gossip_suspicions",
            "Members this node began to suspect",
            m.suspicions.counter.clone(),
        );
        r.register(
            "gossip_refutations",
            "Suspicions of this node it refuted",
            m.refutations.counter.clone(),
        );
        r.register(
            "log_lines_missed",
            "Log lines slow `monitor` subscribers missed",
            m.log_lines_missed.counter.clone(),
        );
        r.register(
            "gossip_health_score",
            "Lifeguard awareness (0 is healthy)",
            m.health.clone(),
        );
        r.register(
            "probe_rtt_seconds",
            "Round-trip time of acknowledged direct probes",
            m.probe_rtt.clone(),
        );
        let served = m.served.clone();
        ctx.http_route(HttpRoute::new(
            Method::GET,
            "/metrics",
            Access::View,
            axum::routing::get(move || {
                let served = served.clone();
                async move { scrape(served.get()) }
            }),
        ))?;
        ctx.openapi(OPENAPI)?;
        Ok(Some(m))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let _ = self.served.set(ctx.registry().clone());
        let cluster = ctx.cluster().clone();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        ctx.ready();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = ctx.stopping() => return Ok(()),
            }
            let Ok(g) = cluster.sample().await else {
                return Ok(());
            };
            let alive = g.members.saturating_sub(g.failed + g.left);
            for (st, n) in [("alive", alive), ("failed", g.failed), ("left", g.left)] {
                self.members
                    .get_or_create(&StatusLabel { status: st.into() })
                    .set(n as i64);
            }
            let s = &g.core;
            self.packets_in.feed(s.packets_in);
            self.packets_out.feed(s.packets_out);
            self.dropped.feed(s.packets_dropped);
            self.decrypt_failures.feed(s.decrypt_failures);
            self.decode_failures.feed(s.decode_failures);
            self.streams_dropped
                .feed(s.streams_dropped + g.streams_dropped);
            self.udp_send_errors.feed(g.udp_send_errors);
            self.probes.feed(s.probes);
            self.probe_failures.feed(s.probe_failures);
            self.suspicions.feed(s.suspicions);
            self.refutations.feed(s.refutations);
            self.log_lines_missed.feed(crate::logs::missed());
            self.health.set(i64::from(g.health_score));
            for r in &g.core.recent_rtts {
                self.probe_rtt.observe(r.as_secs_f64());
            }
        }
    }
}

fn scrape(registry: Option<&Arc<Registry>>) -> axum::response::Response {
    let Some(registry) = registry else {
        return ApiError::Unavailable("metrics are not ready yet".into()).into_response();
    };
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry.metrics()) {
        return ApiError::Internal(format!("cannot encode metrics: {e}")).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
