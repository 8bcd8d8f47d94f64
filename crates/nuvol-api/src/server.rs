//! The HTTP server: routes, auth, metrics, the event stream.

use crate::backend::{Backend, CheckInfo};
use crate::error::{ApiError, ErrorBody};
use crate::metrics::ApiMetrics;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, RawQuery, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use nuvol_catalog::cloudy::validate_type;
use nuvol_catalog::{CatalogError, Filter, Health, ServiceDef, ServiceEntry, Status};
use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A request (up to its response headers) taking longer gets a 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// After the shutdown signal, connections get this long to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The OpenAPI document served at `/v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// The `route` label of requests no route matched.
const UNMATCHED: &str = "unmatched";

struct Inner {
    backend: Arc<dyn Backend>,
    token: String,
    metrics: ApiMetrics,
    shutdown: watch::Receiver<bool>,
}

type AppState = Arc<Inner>;

/// The router and the list of what it serves, built together so they cannot
/// disagree.
struct Table {
    router: Router<AppState>,
    routes: Vec<(&'static str, &'static str)>,
}

impl Table {
    /// `name` is `filter`'s method as the OpenAPI document spells it; the
    /// live-router test catches a mismatch (405).
    fn add<H, T>(
        mut self,
        filter: MethodFilter,
        name: &'static str,
        path: &'static str,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, on(filter, handler));
        self.routes.push((name, path));
        self
    }
}

fn table() -> Table {
    Table {
        router: Router::new(),
        routes: Vec::new(),
    }
    .add(MethodFilter::GET, "GET", "/v1/agent", get_agent)
    .add(MethodFilter::GET, "GET", "/v1/members", get_members)
    .add(MethodFilter::GET, "GET", "/v1/services", list_services)
    .add(MethodFilter::POST, "POST", "/v1/services", publish)
    .add(
        MethodFilter::GET,
        "GET",
        "/v1/services/{node}/{type}/{port}",
        get_service,
    )
    .add(
        MethodFilter::DELETE,
        "DELETE",
        "/v1/services/{node}/{type}/{port}",
        unpublish,
    )
    .add(MethodFilter::GET, "GET", "/v1/checks", list_checks)
    .add(MethodFilter::GET, "GET", "/v1/events", events)
    .add(MethodFilter::GET, "GET", "/v1/openapi.json", openapi)
    .add(MethodFilter::GET, "GET", "/metrics", metrics)
}

/// Every `(method, path template)` the server serves (for the OpenAPI
/// coverage test and documentation).
pub fn routes() -> Vec<(&'static str, &'static str)> {
    table().routes
}

fn router(state: AppState) -> Router {
    table()
        .router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// A bound API server; [`ApiServer::run`] serves it.
pub struct ApiServer {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    router: Router,
    shutdown: watch::Sender<bool>,
}

/// Bind the API to `addr`. Write requests need `Authorization: Bearer
/// <token>`. The backend's metrics are registered here, once.
pub async fn bind(
    addr: SocketAddr,
    token: String,
    backend: Arc<dyn Backend>,
) -> Result<ApiServer, ApiError> {
    if token.is_empty() {
        return Err(ApiError::Internal("the API token is empty".into()));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot listen on {addr}: {e}")))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| ApiError::Internal(format!("cannot read the API's address: {e}")))?;
    let metrics = ApiMetrics::new(backend.as_ref());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let state = Arc::new(Inner {
        backend,
        token,
        metrics,
        shutdown: shutdown_rx,
    });
    tracing::info!(addr = %local_addr, "HTTP API listening");
    Ok(ApiServer {
        listener,
        local_addr,
        router: router(state),
        shutdown,
    })
}

impl ApiServer {
    /// The address bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serve until `shutdown` completes, then stop accepting, end event
    /// streams and give open requests [`SHUTDOWN_GRACE`] to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ApiError> {
        let ApiServer {
            listener,
            local_addr,
            router,
            shutdown: stop,
        } = self;
        let mut stop_rx = stop.subscribe();
        let serve = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|stopped| *stopped).await;
            })
            .into_future();
        let mut serve = std::pin::pin!(serve);
        let mut shutdown = std::pin::pin!(shutdown);
        let io_err = |e: std::io::Error| ApiError::Internal(format!("HTTP API failed: {e}"));
        tokio::select! {
            r = &mut serve => return r.map_err(io_err),
            () = &mut shutdown => {}
        }
        tracing::info!(addr = %local_addr, "HTTP API shutting down");
        stop.send_replace(true);
        match tokio::time::timeout(SHUTDOWN_GRACE, serve).await {
            Ok(r) => r.map_err(io_err),
            Err(_) => {
                tracing::warn!("HTTP API: connections still open after the grace period; closing");
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Errors as responses.

/// An error response: an [`ApiError`], or one the HTTP layer makes itself.
struct HttpError {
    status: StatusCode,
    body: ErrorBody,
}

impl HttpError {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        HttpError {
            status,
            body: ErrorBody {
                error: error.into(),
                field: None,
            },
        }
    }
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        if let ApiError::Internal(m) = &e {
            tracing::error!(error = %m, "HTTP API: internal error");
        }
        HttpError {
            status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: e.body(),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        HttpError::from(self).into_response()
    }
}

async fn no_route(method: Method, uri: axum::http::Uri) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed on {}", uri.path()),
    )
}

// ---------------------------------------------------------------------------
// Middleware.

/// Reads are open; anything else needs the bearer token.
async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim())
        });
    let ok = given.is_some_and(|t| bool::from(t.as_bytes().ct_eq(st.token.as_bytes())));
    if ok {
        return next.run(req).await;
    }
    let msg = if given.is_some() {
        "invalid API token"
    } else {
        "this request needs the API token (Authorization: Bearer <token>; see <data_dir>/api-token)"
    };
    let mut resp = HttpError::new(StatusCode::UNAUTHORIZED, msg).into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// Metrics, tracing and the request timeout.
async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED.to_owned());
    let start = Instant::now();
    let resp = match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "request timed out").into_response()
        }
    };
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    st.metrics
        .observe(method.as_str(), &route, status, elapsed.as_secs_f64());
    tracing::debug!(%method, %route, status, elapsed_ms = elapsed.as_millis() as u64, "HTTP API request");
    resp
}

// ---------------------------------------------------------------------------
// Query parameters.

/// Parse a query string, rejecting parameters not in `allowed` and repeated
/// ones; empty values count as absent.
fn parse_query(raw: Option<String>, allowed: &[&str]) -> Result<Vec<(String, String)>, HttpError> {
    let raw = raw.unwrap_or_default();
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(&raw).map_err(|e| ApiError::bad("query", e.to_string()))?;
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in pairs {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad(
                k.clone(),
                format!(
                    "unknown query parameter {k:?} (expected one of: {})",
                    allowed.join(", ")
                ),
            )
            .into());
        }
        if out.iter().any(|(ek, _)| *ek == k) {
            return Err(ApiError::bad(k.clone(), format!("{k:?} given more than once")).into());
        }
        if !v.is_empty() {
            out.push((k, v));
        }
    }
    Ok(out)
}

fn get_param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str())
}

fn parse_status(s: &str) -> Result<Status, ApiError> {
    match s {
        "passing" => Ok(Status::Passing),
        "warning" => Ok(Status::Warning),
        "critical" => Ok(Status::Critical),
        "unavailable" => Ok(Status::Unavailable),
        _ => Err(ApiError::bad(
            "status",
            format!("invalid status {s:?}: expected passing, warning, critical or unavailable"),
        )),
    }
}

fn parse_health(s: &str) -> Result<Health, ApiError> {
    match s {
        "passing" => Ok(Health::Passing),
        "warning" => Ok(Health::Warning),
        "critical" => Ok(Health::Critical),
        _ => Err(ApiError::bad(
            "status",
            format!("invalid status {s:?}: expected passing, warning or critical"),
        )),
    }
}

fn check_type(t: &str) -> Result<(), ApiError> {
    validate_type(t).map_err(ApiError::from)
}

fn parse_port(p: &str) -> Result<u16, ApiError> {
    nuvol_catalog::cloudy::parse_port(p).map_err(ApiError::from)
}

// ---------------------------------------------------------------------------
// Handlers.

async fn get_agent(State(st): State<AppState>) -> Response {
    Json(st.backend.agent()).into_response()
}

async fn get_members(State(st): State<AppState>) -> Result<Response, HttpError> {
    let members = st.backend.members().await?;
    Ok(Json(members).into_response())
}

async fn list_services(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let q = parse_query(raw, &["type", "node", "status"])?;
    let stype = get_param(&q, "type");
    if let Some(t) = stype {
        check_type(t)?;
    }
    let status = get_param(&q, "status").map(parse_status).transpose()?;
    let filter = Filter {
        stype: stype.map(str::to_owned),
        node: get_param(&q, "node").map(str::to_owned),
    };
    // The backend applies type and node; status is the API's own filter.
    let mut list = st.backend.services(&filter);
    if let Some(s) = status {
        list.retain(|e| e.status == s);
    }
    Ok(Json(list).into_response())
}

async fn publish(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {MAX_BODY_BYTES} bytes"),
            )
        } else {
            HttpError::from(ApiError::bad("body", e.body_text()))
        }
    })?;
    let def = parse_service_def(&body)?;
    validate_def(&def)?;
    let entry = st.backend.publish(def).await?;
    let location = format!(
        "/v1/services/{}/{}/{}",
        encode_segment(&entry.node),
        encode_segment(&entry.stype),
        entry.port
    );
    let mut resp = (StatusCode::CREATED, Json(entry)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// Decode a [`ServiceDef`], naming the field at fault on error.
pub(crate) fn parse_service_def(body: &[u8]) -> Result<ServiceDef, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let def: ServiceDef = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
    de.end()
        .map_err(|e| ApiError::bad("body", format!("invalid JSON: {e}")))?;
    Ok(def)
}

fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if !inner.is_data() {
        return ApiError::bad("body", format!("invalid JSON: {inner}"));
    }
    let msg = inner.to_string();
    // Unknown and missing fields are reported at the parent's path.
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|p| msg.strip_prefix(p))
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_owned());
    let root = path == "." || path.is_empty();
    // The path ends with an unknown field's name already, not with a
    // missing one's.
    let field = match (named, root) {
        (Some(n), true) => n,
        (Some(n), false) if path == n || path.ends_with(&format!(".{n}")) => path,
        (Some(n), false) => format!("{path}.{n}"),
        (None, true) => "body".to_owned(),
        (None, false) => path,
    };
    let message = if field == "port" && !msg.starts_with("missing") {
        "invalid port: must be 1-65535".to_owned()
    } else {
        format!("invalid {field}: {msg}")
    };
    ApiError::bad(field, message)
}

/// [`ServiceDef::validate`], naming a failing check's field as
/// `checks[i].field`.
pub(crate) fn validate_def(def: &ServiceDef) -> Result<(), ApiError> {
    match def.validate() {
        Ok(()) => Ok(()),
        Err(e @ CatalogError::BadField(..)) => {
            for (i, c) in def.checks.iter().enumerate() {
                if let Err(CatalogError::BadField(f, m)) = c.validate() {
                    let field = format!("checks[{i}].{f}");
                    return Err(ApiError::bad(
                        field.clone(),
                        format!("invalid {field}: {m}"),
                    ));
                }
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn find_service(
    st: &Inner,
    node: &str,
    stype: &str,
    port: &str,
) -> Result<(u16, Option<ServiceEntry>), ApiError> {
    check_type(stype)?;
    let port = parse_port(port)?;
    let filter = Filter {
        stype: Some(stype.to_owned()),
        node: Some(node.to_owned()),
    };
    let found = st
        .backend
        .services(&filter)
        .into_iter()
        .find(|e| e.port == port && filter.matches(e));
    Ok((port, found))
}

async fn get_service(
    State(st): State<AppState>,
    Path((node, stype, port)): Path<(String, String, String)>,
) -> Result<Response, HttpError> {
    match find_service(&st, &node, &stype, &port)? {
        (_, Some(e)) => Ok(Json(e).into_response()),
        (port, None) => {
            Err(ApiError::NotFound(format!("no service {stype}/{port} on node {node:?}")).into())
        }
    }
}

async fn unpublish(
    State(st): State<AppState>,
    Path((node, stype, port)): Path<(String, String, String)>,
) -> Result<Response, HttpError> {
    check_type(&stype)?;
    let port = parse_port(&port)?;
    let me = st.backend.agent().name;
    if node != me {
        return Err(ApiError::Forbidden(format!(
            "service {stype}/{port} belongs to node {node:?}; only that node can remove it (this is {me:?})"
        ))
        .into());
    }
    st.backend.unpublish(stype, port).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_checks(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let q = parse_query(raw, &["node", "status"])?;
    let status = get_param(&q, "status").map(parse_health).transpose()?;
    let filter = Filter {
        stype: None,
        node: get_param(&q, "node").map(str::to_owned),
    };
    let checks: Vec<CheckInfo> = st
        .backend
        .services(&filter)
        .into_iter()
        .filter(|e| filter.matches(e))
        .flat_map(|e| {
            let (node, stype, port) = (e.node, e.stype, e.port);
            e.checks.into_iter().map(move |c| CheckInfo {
                node: node.clone(),
                stype: stype.clone(),
                port,
                kind: c.kind,
                target: c.target,
                status: c.status,
                output: c.output,
                updated_ms: c.updated_ms,
            })
        })
        .filter(|c| status.is_none_or(|s| c.status == s))
        .collect();
    Ok(Json(checks).into_response())
}

async fn events(State(st): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = st.backend.subscribe();
    let mut stop = st.shutdown.clone();
    let stream = BroadcastStream::new(rx)
        .map(|item| {
            let (name, data) = match item {
                Ok(ev) => (ev.event, ev.data),
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "HTTP API: event subscriber lagged");
                    ("lagged".to_owned(), serde_json::json!({ "missed": n }))
                }
            };
            let ev = Event::default().event(sanitize_event_name(&name));
            Ok(ev
                .json_data(&data)
                .unwrap_or_else(|_| Event::default().event("error").data("{}")))
        })
        .take_until(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// An SSE event name cannot hold line breaks.
fn sanitize_event_name(name: &str) -> String {
    name.chars().filter(|c| !matches!(c, '\n' | '\r')).collect()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn metrics(State(st): State<AppState>) -> Result<Response, HttpError> {
    let text = st
        .metrics
        .encode()
        .map_err(|e| ApiError::Internal(format!("cannot encode metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        Body::from(text),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_fields() {
        let f = |s: &str| {
            parse_service_def(s.as_bytes())
                .err()
                .and_then(|e| e.field().map(str::to_owned))
        };
        assert_eq!(f("{"), Some("body".into()));
        assert_eq!(f("[]"), Some("body".into()));
        assert_eq!(
            f(r#"{"type":"a","description":"d","port":1,"checks":[{"tcp":"a:1","bogus":1}]}"#),
            Some("checks[0].bogus".into())
        );
        assert_eq!(
            f(r#"{"type":"a","port":1,"checks":[]}"#),
            Some("description".into())
        );
        assert_eq!(
            f(r#"{"type":"a","description":"d","port":1,"bogus":1}"#),
            Some("bogus".into())
        );
        assert_eq!(f(r#"{"type":"a","description":"d"}"#), Some("port".into()));
        assert_eq!(
            f(r#"{"type":"a","description":"d","port":70000}"#),
            Some("port".into())
        );
        assert_eq!(
            f(r#"{"type":"a","description":"d","port":"x"}"#),
            Some("port".into())
        );
        assert_eq!(
            f(r#"{"type":1,"description":"d","port":1}"#),
            Some("type".into())
        );
        assert_eq!(
            f(r#"{"type":"a","description":"d","port":1,"txt":{"a":1}}"#),
            Some("txt.a".into())
        );
        assert_eq!(
            f(r#"{"type":"a","description":"d","port":1,"checks":[{"tcp":"a:1","script":"x"}]}"#),
            Some("checks[0]".into())
        );
        assert_eq!(
            f(r#"{"type":"a","description":"d","port":1} x"#),
            Some("body".into())
        );
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }
}
