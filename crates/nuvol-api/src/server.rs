//! The REST API component: binds, serves every registered route and its
//! own, and stops gracefully.

use crate::backend::{AgentInfo, MemberInfo};
use axum::extract::State;
use axum::http::{header, Method};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, StreamExt};
use nuvol_agent::chan::RecvError;
use nuvol_agent::config::{ConfigError, Listen, Validate};
use nuvol_agent::http::{Access, ApiError, HttpMetrics, HttpRoute};
use nuvol_agent::rpc_server::RpcAddr;
use nuvol_agent::{
    AgentEvent, BuildCtx, BuildError, Cluster, Component, ComponentError, Registry, RunCtx,
};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The API's own part of the OpenAPI document (info, shared responses and
/// schemas, its routes); components add theirs.
pub const BASE_OPENAPI: &str = include_str!("../openapi.json");
/// After the stop signal, connections get this long to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

nuvol_agent::settings! {
    /// The REST API (JSON; writes need the token the agent keeps in
    /// DATA_DIR/api-token).
    pub struct ApiSettings in "api", "REST API" {
        /// REST API address (default: the RPC address's IP, port 7000; ""
        /// turns the API off).
        addr: Listen<7000> = Listen::Default, flag "http-addr", env "NUVOL_HTTP_ADDR";
        /// Host names the API and the dashboard answer to besides IP
        /// addresses and localhost (repeatable), e.g. the node's DNS name;
        /// requests naming another host get 421, so a DNS-rebinding page
        /// cannot read them.
        hosts: Vec<String> = Vec::new(), flag "http-host";
    }
}

impl Validate for ApiSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(h) = self.hosts.iter().find(|h| {
            h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }) {
            return Err(ConfigError::invalid::<Self>(
                "hosts",
                format!("{h:?} is not a host name"),
            ));
        }
        Ok(())
    }
}

/// What the API's own routes read, once the agent runs.
struct Live {
    registry: Arc<Registry>,
    http_addr: SocketAddr,
}

#[derive(Clone)]
struct AppState {
    cluster: Cluster,
    live: Arc<OnceLock<Live>>,
    /// Cancelled when the current run stops (ends event streams).
    stop: Arc<std::sync::Mutex<CancellationToken>>,
}

impl AppState {
    fn live(&self) -> Result<&Live, ApiError> {
        self.live
            .get()
            .ok_or_else(|| ApiError::Unavailable("the API is starting".into()))
    }
}

/// The REST API component.
pub struct Api {
    addr: SocketAddr,
    hosts: Vec<String>,
    state: AppState,
    metrics: HttpMetrics,
}

impl Component for Api {
    type Config = ApiSettings;
    const NAME: &'static str = "api";

    fn build(cfg: ApiSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        let Some(addr) = cfg.addr.resolve(RpcAddr::default_ip(ctx)) else {
            return Ok(None);
        };
        let state = AppState {
            cluster: ctx.cluster(),
            live: Arc::default(),
            stop: Arc::default(),
        };
        use axum::routing::get;
        for (path, handler) in [
            ("/v1/agent", get(get_agent)),
            ("/v1/members", get(get_members)),
            ("/v1/agent/components", get(get_components)),
            ("/v1/events", get(events)),
            ("/v1/openapi.json", get(openapi)),
        ] {
            ctx.http_route(HttpRoute::new(
                Method::GET,
                path,
                Access::View,
                handler.with_state(state.clone()),
            ))?;
        }
        let metrics = HttpMetrics::default();
        metrics.register(ctx.metrics());
        Ok(Some(Api {
            addr,
            hosts: cfg.hosts.clone(),
            state,
            metrics,
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let registry = ctx.registry().clone();
        let data_dir = registry.node.data_dir.clone();
        let token = tokio::task::spawn_blocking(move || crate::token::load_or_create(&data_dir))
            .await
            .map_err(ComponentError::from)??;
        // Assembled once here to refuse fragments that do not fit, then on
        // each (rare) request: the parsed document is not kept in memory.
        crate::openapi::assemble(BASE_OPENAPI, registry.openapi())?;
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|e| ComponentError::msg(format!("cannot listen on {}: {e}", self.addr)))?;
        let local = listener.local_addr()?;
        let _ = self.state.live.set(Live {
            registry: registry.clone(),
            http_addr: local,
        });
        let routes: Vec<HttpRoute> = registry.routes().map(|(_, r)| r.clone()).collect();
        let app = nuvol_agent::http::router(
            routes,
            nuvol_agent::http::Auth::with(Arc::from(token), registry.authenticators().to_vec())
                .hosts(self.hosts.clone()),
            self.metrics.clone(),
        );
        registry.info.set("http_addr", local.to_string());
        tracing::info!(addr = %local, "HTTP API listening");
        // Member changes join the components' events on the bus the event
        // stream reads.
        let mut forward = tokio::task::JoinSet::new();
        forward.spawn(forward_members(
            ctx.cluster().clone(),
            registry.events.clone(),
        ));
        let stop = ctx.stop_token();
        let sse_stop = CancellationToken::new();
        *self
            .state
            .stop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = sse_stop.clone();
        let serve = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            stop.cancelled().await;
            // End event streams, which would otherwise keep the server open.
            sse_stop.cancel();
        });
        ctx.ready();
        let stop = ctx.stop_token();
        let mut serve = std::pin::pin!(std::future::IntoFuture::into_future(serve));
        let r = tokio::select! {
            r = &mut serve => r.map_err(ComponentError::from),
            () = stop.cancelled() => {
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut serve).await {
                    Ok(r) => r.map_err(ComponentError::from),
                    Err(_) => {
                        tracing::warn!("HTTP API: connections still open after the grace period; closing");
                        Ok(())
                    }
                }
            }
        };
        registry.info.remove("http_addr");
        r
    }
}

async fn forward_members(cluster: Cluster, bus: nuvol_agent::chan::Bus<AgentEvent>) {
    let mut rx = cluster.member_events();
    loop {
        match rx.recv().await {
            Ok(nuvol_gossip::Event::Member { kind, members }) => {
                for m in members {
                    bus.send(AgentEvent {
                        event: kind.as_str().to_owned(),
                        data: serde_json::json!({
                            "name": m.name,
                            "addr": m.addr.ip().to_string(),
                            "port": m.addr.port(),
                            "status": m.status.as_str(),
                        }),
                    });
                }
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

async fn get_agent(State(st): State<AppState>) -> Result<Response, ApiError> {
    let live = st.live()?;
    let me = st.cluster.local_member().await?;
    let info = &live.registry.info;
    Ok(Json(AgentInfo {
        name: me.name,
        addr: st.cluster.advertise().ip().to_string(),
        port: st.cluster.advertise().port(),
        version: live.registry.node.version.to_owned(),
        data_dir: live.registry.node.data_dir.display().to_string(),
        cloud: info.get("cloud").unwrap_or_default(),
        tags: me.tags,
        http_addr: live.http_addr.to_string(),
        dns_addr: info.get("dns_addr"),
    })
    .into_response())
}

async fn get_members(State(st): State<AppState>) -> Result<Response, ApiError> {
    let ms = st.cluster.members().await?;
    let list: Vec<MemberInfo> = ms
        .into_iter()
        .map(|m| MemberInfo {
            name: m.name,
            addr: m.addr.ip().to_string(),
            port: m.addr.port(),
            status: m.status.as_str().to_owned(),
            tags: m.tags,
        })
        .collect();
    Ok(Json(list).into_response())
}

async fn get_components(State(st): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(st.live()?.registry.status.snapshot()).into_response())
}

async fn openapi(State(st): State<AppState>) -> Result<Response, ApiError> {
    let doc = crate::openapi::assemble(BASE_OPENAPI, st.live()?.registry.openapi())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response())
}

async fn events(
    State(st): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let rx = st.live()?.registry.events.subscribe();
    let counters = rx.counters().clone();
    let stop = st
        .stop
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx.into_inner())
        .map(move |item| {
            let (name, data) = match item {
                Ok(ev) => (ev.event, ev.data),
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                    counters.dropped(n);
                    tracing::debug!(missed = n, "HTTP API: event subscriber lagged");
                    ("lagged".to_owned(), serde_json::json!({ "missed": n }))
                }
            };
            let ev = Event::default().event(sanitize_event_name(&name));
            Ok(ev
                .json_data(&data)
                .unwrap_or_else(|_| Event::default().event("error").data("{}")))
        })
        .take_until(async move { stop.cancelled().await });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// An SSE event name cannot hold line breaks.
fn sanitize_event_name(name: &str) -> String {
    name.chars().filter(|c| !matches!(c, '\n' | '\r')).collect()
}
