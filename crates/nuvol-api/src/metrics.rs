//! `/metrics`: the backend's collectors plus the API's own request metrics.

use crate::backend::Backend;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    method: String,
    route: String,
}

type DurationFamily = Family<DurationLabels, Histogram, fn() -> Histogram>;

fn new_histogram() -> Histogram {
    // 1 ms to ~16 s.
    Histogram::new(exponential_buckets(0.001, 4.0, 8))
}

/// The registry served at `/metrics`, and the API's own metrics in it.
pub(crate) struct ApiMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: DurationFamily,
}

impl ApiMetrics {
    pub(crate) fn new(backend: &dyn Backend) -> Self {
        let mut registry = Registry::default();
        backend.register_metrics(&mut registry);
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: DurationFamily = Family::new_with_constructor(new_histogram);
        registry.register(
            "nuvol_api_requests",
            "HTTP API requests by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "nuvol_api_request_duration_seconds",
            "HTTP API request durations (up to the response headers) by method and route template",
            durations.clone(),
        );
        ApiMetrics {
            registry,
            requests,
            durations,
        }
    }

    /// Count one request. `route` is the matched template (bounded set).
    pub(crate) fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        // Clients can send any method name: keep the label set bounded.
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "OTHER",
        };
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.durations
            .get_or_create(&DurationLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// The OpenMetrics text of everything registered.
    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
