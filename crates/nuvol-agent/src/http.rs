//! HTTP routes components register ([`HttpRoute`]), the error every route
//! returns ([`ApiError`], one status per variant, `{"error", "field"}` on
//! the wire), and [`router`], which puts registered routes behind the
//! agent's access rule and request metrics. The REST API component serves
//! the result; tests serve it without a socket.
//!
//! Access: each route declares the permission it needs ([`Access`]:
//! view, operate, admin). Viewing needs no credentials at this layer (a
//! component may add its own rule, as the dashboard does by client
//! address); operating and administering need a [`Principal`] of that role:
//! `Authorization: Bearer <token>` (compared in constant time; the token's
//! holder is an admin), or one an [`Authenticator`] a component registered
//! recognises (the dashboard's session cookie). A request with a cookie
//! credential that may change state must also carry that session's CSRF
//! token (header `X-CSRF-Token` or form field `_csrf`), and a state-changing
//! request without a bearer token is refused when the browser says it comes
//! from another site (`Sec-Fetch-Site`, `Origin`). The handler never runs
//! for a refused request: 401 without credentials, 403 with too few rights
//! or a bad CSRF token.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A request (up to its response headers) taking longer gets a 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The `route` label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// The permission a route needs. Ordered: an admin may operate, an
/// operator may view. Roles for users and groups map onto these later
/// without touching routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// Read state: anyone who can reach the API (components may narrow it).
    View,
    /// Change the cluster's or the node's state (publish, tags, events,
    /// queries, joins).
    Operate,
    /// Change the agent's own configuration and keys.
    Admin,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::View => "view",
            Access::Operate => "operate",
            Access::Admin => "admin",
        }
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer` with the API token.
    Token,
    /// A browser session (a cookie): state-changing requests need `csrf`.
    Session { id: Arc<str>, csrf: Arc<str> },
}

/// Who is calling, as the router established it; handlers find it in the
/// request's extensions (`Option<Extension<Principal>>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The most this caller may do.
    pub role: Access,
    pub via: Credential,
}

impl Principal {
    /// The session's CSRF token, for forms.
    pub fn csrf(&self) -> Option<&str> {
        match &self.via {
            Credential::Session { csrf, .. } => Some(csrf),
            Credential::Token => None,
        }
    }
}

/// A component's way of recognising callers besides the API token (the
/// dashboard's sessions). Called for every request without a valid bearer
/// token; it must not block.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate(&self, parts: &axum::http::request::Parts) -> Option<Principal>;
}

/// What the router checks credentials against.
#[derive(Clone)]
pub struct Auth {
    token: Arc<str>,
    others: Vec<Arc<dyn Authenticator>>,
    /// Host names answered besides IP literals and localhost.
    hosts: Arc<[String]>,
}

impl Auth {
    /// The API token alone.
    pub fn token(token: Arc<str>) -> Self {
        Auth::with(token, Vec::new())
    }

    /// The API token and the authenticators components registered.
    pub fn with(token: Arc<str>, others: Vec<Arc<dyn Authenticator>>) -> Self {
        Auth {
            token,
            others,
            hosts: Arc::from(Vec::new()),
        }
    }

    /// Also answer to these host names (lower case), e.g. the node's DNS
    /// name; see [`host_allowed`].
    pub fn hosts(mut self, hosts: Vec<String>) -> Self {
        self.hosts = hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        self
    }

    /// True when `given` is the API token (constant time).
    pub fn is_token(&self, given: &str) -> bool {
        bool::from(given.as_bytes().ct_eq(self.token.as_bytes()))
    }
}

/// Name of the form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "_csrf";
/// Header that carries the CSRF token (scripts).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// One route a component serves.
#[derive(Clone)]
pub struct HttpRoute {
    /// `GET`, `POST`, ... as the OpenAPI document spells it (upper case).
    pub method: Method,
    /// An axum path template, e.g. `/v1/services/{node}/{type}/{port}`.
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter,
    /// A REST API route (documented in the OpenAPI document), or a page
    /// for browsers (the dashboard's HTML, assets, forms).
    pub kind: RouteKind,
}

/// What a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// JSON, part of the REST API and of its OpenAPI document.
    Api,
    /// HTML, assets and forms for browsers; not in the OpenAPI document.
    Page,
}

impl HttpRoute {
    /// A REST API route.
    pub fn new(method: Method, path: &'static str, access: Access, handler: MethodRouter) -> Self {
        HttpRoute {
            method,
            path,
            access,
            handler,
            kind: RouteKind::Api,
        }
    }

    /// A route serving browsers rather than API clients.
    pub fn page(method: Method, path: &'static str, access: Access, handler: MethodRouter) -> Self {
        HttpRoute {
            kind: RouteKind::Page,
            ..HttpRoute::new(method, path, access, handler)
        }
    }
}

impl std::fmt::Debug for HttpRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({:?}, {:?})",
            self.method, self.path, self.access, self.kind
        )
    }
}

/// An error a route reports; each variant maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400; `field` names the offending field or parameter.
    #[error("{message}")]
    BadRequest { field: String, message: String },
    /// 401.
    #[error("{0}")]
    Unauthorized(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 409: the request conflicts with the state (e.g. a tag a component owns).
    #[error("{0}")]
    Conflict(String),
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// 421: the request names a host this agent does not answer to.
    #[error("{0}")]
    Misdirected(String),
    /// 503 (e.g. the agent is shutting down, or the port is taken at bind).
    #[error("{0}")]
    Unavailable(String),
    /// 500.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest { .. } => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::TooLarge(_) => 413,
            ApiError::Misdirected(_) => 421,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }

    /// The field a 400 names.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The JSON body sent for this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.to_string(),
            field: self.field().map(str::to_owned),
        }
    }
}

impl From<crate::ClusterError> for ApiError {
    fn from(e: crate::ClusterError) -> Self {
        use crate::ClusterError as C;
        match e {
            C::Stopped => ApiError::Unavailable("the agent is stopping".into()),
            e @ (C::TagOwned { .. } | C::TagNotOwned { .. } | C::TagsChanged) => {
                ApiError::Conflict(e.to_string())
            }
            e => ApiError::Internal(e.to_string()),
        }
    }
}

/// Every error response: `{"error": "...", "field": "..."}` (`field` only
/// when one is at fault).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(m) = &self {
            tracing::error!(error = %m, "HTTP API: internal error");
        }
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

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

/// The API's request metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: DurationFamily,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(new_histogram),
        }
    }
}

impl HttpMetrics {
    /// Register as `nuvol_api_requests` and `nuvol_api_request_duration_seconds`.
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("api");
        r.register(
            "requests",
            "HTTP API requests by method, route template and status",
            self.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "HTTP API request durations (up to the response headers) by method and route template",
            self.durations.clone(),
        );
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
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
}

/// Serve `routes` with their access rules and `metrics`; anything else is a
/// JSON 404 (or 405 for a known path).
pub fn router(routes: Vec<HttpRoute>, auth: Auth, metrics: HttpMetrics) -> Router {
    let mut r = Router::new();
    // One MethodRouter per path: merge the methods registered for it.
    let mut paths: Vec<(&'static str, MethodRouter)> = Vec::new();
    for route in routes {
        let handler = match route.access {
            Access::View => route.handler,
            need => route
                .handler
                .layer(axum::middleware::from_fn_with_state(need, require)),
        };
        match paths.iter_mut().find(|(p, _)| *p == route.path) {
            Some((_, existing)) => {
                let prev = std::mem::take(existing);
                *existing = prev.merge(handler);
            }
            None => paths.push((route.path, handler)),
        }
    }
    for (path, handler) in paths {
        r = r.route(path, handler);
    }
    r.fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(auth, authenticate))
        // Responses compressed for clients that accept gzip (a page of
        // 2,000 services is 1.2 MB of HTML, 49 KB gzipped); tower-http's
        // default predicate leaves event streams, images and small bodies
        // alone, so live updates are not buffered.
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(metrics, observe))
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Marks a request whose bearer token was wrong (for the 401's message).
#[derive(Clone, Copy)]
struct BadToken;

/// Establish the [`Principal`], and refuse cross-site and CSRF-less
/// state-changing requests before any route runs.
async fn authenticate(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    if !host_allowed(&parts.headers, &auth.hosts) {
        return refuse(
            &parts.headers,
            ApiError::Misdirected(
                "this agent does not answer to that host name; use its address, or add the name to [api] hosts"
                    .into(),
            ),
        );
    }
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim().to_owned())
        });
    let mut principal = None;
    if let Some(t) = &bearer {
        if auth.is_token(t) {
            principal = Some(Principal {
                role: Access::Admin,
                via: Credential::Token,
            });
        } else {
            parts.extensions.insert(BadToken);
        }
    }
    if principal.is_none() {
        principal = auth.others.iter().find_map(|a| a.authenticate(&parts));
    }
    let safe = is_safe(&parts.method);
    let mut body = axum::body::Body::from_stream(body.into_data_stream());
    if !safe
        && !matches!(
            principal,
            Some(Principal {
                via: Credential::Token,
                ..
            })
        )
    {
        if let Some(why) = cross_site(&parts) {
            return refuse(&parts.headers, ApiError::Forbidden(why));
        }
        if let Some(Principal {
            via: Credential::Session { csrf, .. },
            ..
        }) = &principal
        {
            let (ok, rebuilt) = csrf_matches(&parts, body, csrf).await;
            body = rebuilt;
            if !ok {
                return refuse(
                    &parts.headers,
                    ApiError::Forbidden(
                        "missing or invalid CSRF token: reload the page and try again".into(),
                    ),
                );
            }
        }
    }
    if let Some(p) = principal {
        parts.extensions.insert(p);
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Whether the `Host` header names this agent: an IP literal, `localhost`,
/// an mDNS `.local` name, or one of `extra`. A page of another site whose name was rebound to
/// this address (DNS rebinding) sends its own name and is refused, so it
/// can read neither the API nor the dashboard.
pub fn host_allowed(headers: &axum::http::HeaderMap, extra: &[String]) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        // HTTP/1.0 without Host: not a browser.
        return true;
    };
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        return rest
            .split_once(']')
            .is_some_and(|(v6, _)| v6.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h)
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        // mDNS names resolve on the LAN only: a site on the internet cannot
        // rebind one.
        || name.ends_with(".local")
        || extra.iter().any(|e| e == name)
}

/// Why a state-changing browser request comes from another site, if it does.
fn cross_site(parts: &axum::http::request::Parts) -> Option<String> {
    let h = &parts.headers;
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return Some(format!(
                "cross-site request refused (Sec-Fetch-Site: {site})"
            ));
        }
    }
    let origin = h.get(header::ORIGIN).and_then(|v| v.to_str().ok())?;
    if origin == "null" {
        return Some("request from an opaque origin refused".into());
    }
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok())?;
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    (!origin_host.eq_ignore_ascii_case(host))
        .then(|| format!("cross-origin request refused (Origin: {origin})"))
}

/// Whether the request carries `csrf` (header, or the form field of a
/// urlencoded body, which is read and handed on unchanged).
async fn csrf_matches(
    parts: &axum::http::request::Parts,
    body: axum::body::Body,
    csrf: &str,
) -> (bool, axum::body::Body) {
    let eq = |given: &str| bool::from(given.as_bytes().ct_eq(csrf.as_bytes()));
    if let Some(v) = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        return (eq(v), body);
    }
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return (false, body);
    }
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => {
            let ok = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                .ok()
                .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == CSRF_FIELD))
                .is_some_and(|(_, v)| eq(&v));
            (ok, axum::body::Body::from(bytes))
        }
        Err(_) => (false, axum::body::Body::empty()),
    }
}

/// The per-route check: the principal's role must reach `need`.
async fn require(State(need): State<Access>, req: Request, next: Next) -> Response {
    match req.extensions().get::<Principal>() {
        Some(p) if p.role >= need => next.run(req).await,
        Some(p) => refuse(
            req.headers(),
            ApiError::Forbidden(format!(
                "this needs the {} permission; this session has {}",
                need.as_str(),
                p.role.as_str()
            )),
        ),
        None => unauthorized(&req),
    }
}

fn unauthorized(req: &Request) -> Response {
    refuse(
        req.headers(),
        ApiError::Unauthorized(
            if req.extensions().get::<BadToken>().is_some() {
                "invalid API token"
            } else {
                "this request needs the API token (Authorization: Bearer <token>; see <data_dir>/api-token)"
            }
            .into(),
        ),
    )
}

/// A refusal: JSON for API clients, a small HTML page (with a way to log
/// in) for a browser's form post, which would otherwise show raw JSON.
fn refuse(headers: &axum::http::HeaderMap, e: ApiError) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if !wants_html {
        return e.into_response();
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Not allowed</title></head><body><main><h1>Not allowed</h1><p>{}</p>\
         <p><a href=\"/login\">Log in</a> · <a href=\"/\">Home</a></p></main></body></html>",
        escape_html(&e.to_string())
    );
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    resp
}

/// Escape text for HTML (the refusal page is the core's only HTML).
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Metrics, tracing and the request timeout.
async fn observe(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED.to_owned());
    let start = Instant::now();
    let resp = match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Unavailable("request timed out".into()).into_response(),
    };
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    m.observe(method.as_str(), &route, status, elapsed.as_secs_f64());
    tracing::debug!(%method, %route, status, elapsed_ms = elapsed.as_millis() as u64, "HTTP API request");
    resp
}

async fn no_route(req: Request) -> Response {
    // Whatever the path, a method that may change state needs credentials
    // (a wrong method on a known path is a 401, not a hint).
    if !is_safe(req.method()) && req.extensions().get::<Principal>().is_none() {
        return unauthorized(&req);
    }
    ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    if !is_safe(req.method()) && req.extensions().get::<Principal>().is_none() {
        return unauthorized(&req);
    }
    let (method, uri) = (req.method(), req.uri());
    let mut resp = (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(ErrorBody {
            error: format!("method {method} not allowed on {}", uri.path()),
            field: None,
        }),
    )
        .into_response();
    resp.headers_mut().remove(header::WWW_AUTHENTICATE);
    resp
}

/// A JSON body, or an error naming the field at fault (`type`,
/// `checks[1].interval`, `body` for malformed JSON).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let v: T = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
    de.end()
        .map_err(|e| ApiError::bad("body", format!("invalid JSON: {e}")))?;
    Ok(v)
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

/// The request body, or a 413 / 400.
pub fn body_bytes(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("request body larger than {MAX_BODY_BYTES} bytes"))
        } else {
            ApiError::bad("body", e.body_text())
        }
    })
}

/// Parse a query string, rejecting parameters not in `allowed` and repeated
/// ones; empty values count as absent.
pub fn parse_query(
    raw: Option<String>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
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
            ));
        }
        if out.iter().any(|(ek, _)| *ek == k) {
            return Err(ApiError::bad(
                k.clone(),
                format!("{k:?} given more than once"),
            ));
        }
        if !v.is_empty() {
            out.push((k, v));
        }
    }
    Ok(out)
}

/// The value of `k` in a parsed query.
pub fn query_param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str())
}

/// Percent-encode one path segment.
pub fn encode_segment(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    #[tokio::test]
    async fn access_rules_and_fallbacks() {
        let routes = vec![
            HttpRoute::new(Method::GET, "/r", Access::View, get(|| async { "read" })),
            HttpRoute::new(
                Method::POST,
                "/r",
                Access::Operate,
                post(|| async { "wrote" }),
            ),
        ];
        let app = router(
            routes,
            Auth::token(Arc::from("tok")),
            HttpMetrics::default(),
        );
        let call = |method: &str, path: &str, token: Option<&str>| {
            let mut b = axum::http::Request::builder().method(method).uri(path);
            if let Some(t) = token {
                b = b.header("authorization", format!("Bearer {t}"));
            }
            let app = app.clone();
            let req = b.body(axum::body::Body::empty()).unwrap();
            async move { app.oneshot(req).await.unwrap().status().as_u16() }
        };
        assert_eq!(call("GET", "/r", None).await, 200);
        assert_eq!(call("POST", "/r", None).await, 401);
        assert_eq!(call("POST", "/r", Some("bad")).await, 401);
        assert_eq!(call("POST", "/r", Some("tok")).await, 200);
        assert_eq!(call("DELETE", "/r", Some("tok")).await, 405);
        assert_eq!(call("DELETE", "/r", None).await, 401);
        assert_eq!(call("GET", "/nope", None).await, 404);
    }

    /// A cookie `s=ok` is an operator's session with CSRF token `c1`.
    struct Cookies;
    impl Authenticator for Cookies {
        fn authenticate(&self, parts: &axum::http::request::Parts) -> Option<Principal> {
            let c = parts.headers.get(header::COOKIE)?.to_str().ok()?;
            (c == "s=ok").then(|| Principal {
                role: Access::Operate,
                via: Credential::Session {
                    id: Arc::from("ok"),
                    csrf: Arc::from("c1"),
                },
            })
        }
    }

    #[tokio::test]
    async fn sessions_need_csrf_and_the_right_role() {
        use axum::extract::Form;
        use std::collections::HashMap;
        let routes = vec![
            HttpRoute::new(
                Method::POST,
                "/op",
                Access::Operate,
                post(|Form(f): Form<HashMap<String, String>>| async move {
                    // The handler still sees the whole form.
                    f.get("x").cloned().unwrap_or_default()
                }),
            ),
            HttpRoute::new(
                Method::POST,
                "/admin",
                Access::Admin,
                post(|| async { "admin" }),
            ),
            HttpRoute::new(
                Method::POST,
                "/login",
                Access::View,
                post(|| async { "in" }),
            ),
        ];
        let app = router(
            routes,
            Auth::with(Arc::from("tok"), vec![Arc::new(Cookies)]),
            HttpMetrics::default(),
        );
        let call = |path: &str, headers: &[(&str, &str)], body: &str| {
            let mut b = axum::http::Request::builder().method("POST").uri(path);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            let req = b.body(axum::body::Body::from(body.to_owned())).unwrap();
            let app = app.clone();
            async move {
                let resp = app.oneshot(req).await.unwrap();
                let status = resp.status().as_u16();
                let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        let form = ("content-type", "application/x-www-form-urlencoded");
        let cookie = ("cookie", "s=ok");
        // No credentials: 401; a cookie without CSRF: 403.
        assert_eq!(call("/op", &[form], "x=1").await.0, 401);
        assert_eq!(call("/op", &[form, cookie], "x=1").await.0, 403);
        assert_eq!(call("/op", &[form, cookie], "x=1&_csrf=bad").await.0, 403);
        assert_eq!(
            call("/op", &[form, cookie], "x=1&_csrf=c1").await,
            (200, "1".into())
        );
        assert_eq!(
            call("/op", &[form, cookie, ("x-csrf-token", "c1")], "x=2").await,
            (200, "2".into())
        );
        // Another site's page posting with the victim's cookie.
        let cross = ("sec-fetch-site", "cross-site");
        assert_eq!(
            call("/op", &[form, cookie, cross], "x=1&_csrf=c1").await.0,
            403
        );
        let origin = [
            ("host", "127.0.0.1:7000"),
            ("origin", "http://evil.example"),
        ];
        assert_eq!(
            call("/op", &[form, cookie, origin[0], origin[1]], "x=1&_csrf=c1")
                .await
                .0,
            403
        );
        let same = [
            ("host", "127.0.0.1:7000"),
            ("origin", "http://127.0.0.1:7000"),
        ];
        assert_eq!(
            call("/op", &[form, cookie, same[0], same[1]], "x=1&_csrf=c1")
                .await
                .0,
            200
        );
        // An operator is not an admin; the token's holder is.
        assert_eq!(call("/admin", &[form, cookie], "_csrf=c1").await.0, 403);
        assert_eq!(
            call("/admin", &[("authorization", "Bearer tok")], "")
                .await
                .0,
            200
        );
        // A browser's refused form post gets a page, not JSON.
        let (status, body) = call("/op", &[form, ("accept", "text/html,*/*")], "x=<b>").await;
        assert_eq!(status, 401);
        assert!(
            body.starts_with("<!DOCTYPE html>") && body.contains("/login"),
            "{body}"
        );
        // A view route takes posts without credentials, but not cross-site.
        assert_eq!(call("/login", &[form], "").await.0, 200);
        assert_eq!(call("/login", &[form, cross], "").await.0, 403);
    }

    #[test]
    fn json_errors_name_fields() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u16,
            b: Vec<Inner>,
        }
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            c: String,
        }
        let f = |s: &str| {
            parse_json::<T>(s.as_bytes())
                .unwrap_err()
                .field()
                .map(str::to_owned)
        };
        assert_eq!(f("{"), Some("body".into()));
        assert_eq!(f(r#"{"a":1,"b":[{"c":"x","d":1}]}"#), Some("b[0].d".into()));
        assert_eq!(f(r#"{"b":[]}"#), Some("a".into()));
        assert_eq!(f(r#"{"a":"x","b":[]}"#), Some("a".into()));
        assert_eq!(f(r#"{"a":1,"b":[]} x"#), Some("body".into()));
    }

    #[test]
    fn hosts() {
        let h = |v: &str| {
            let mut m = axum::http::HeaderMap::new();
            m.insert(header::HOST, v.parse().unwrap());
            host_allowed(&m, &["pi1.guifi.net".to_owned()])
        };
        for ok in [
            "127.0.0.1:7000",
            "10.0.0.5",
            "[::1]:7000",
            "localhost:7000",
            "PI1.guifi.net:7000",
            "raspberrypi.local:7000",
        ] {
            assert!(h(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7000",
            "[::1",
            "[evil]:80",
            "127.0.0.1.evil.example",
        ] {
            assert!(!h(bad), "{bad}");
        }
        assert!(host_allowed(&axum::http::HeaderMap::new(), &[]));
    }

    #[tokio::test]
    async fn other_host_names_are_refused() {
        let routes = vec![HttpRoute::new(
            Method::GET,
            "/r",
            Access::View,
            get(|| async { "read" }),
        )];
        let app = router(
            routes,
            Auth::token(Arc::from("tok")).hosts(vec!["Pi1.local".into()]),
            HttpMetrics::default(),
        );
        for (host, want) in [
            ("127.0.0.1:7000", 200),
            ("pi1.local:7000", 200),
            ("evil.example", 421),
        ] {
            let req = axum::http::Request::builder()
                .uri("/r")
                .header("host", host)
                .body(axum::body::Body::empty())
                .unwrap();
            let status = app.clone().oneshot(req).await.unwrap().status().as_u16();
            assert_eq!(status, want, "{host}");
        }
    }

    #[tokio::test]
    async fn bodies_are_gzipped_for_clients_that_ask_but_not_event_streams() {
        let big = "x".repeat(10_000);
        let routes = vec![
            HttpRoute::new(
                Method::GET,
                "/big",
                Access::View,
                get(move || async move { big }),
            ),
            HttpRoute::new(
                Method::GET,
                "/sse",
                Access::View,
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "text/event-stream")],
                        "data: x\n\n".repeat(1000),
                    )
                }),
            ),
        ];
        let app = router(
            routes,
            Auth::token(Arc::from("tok")),
            HttpMetrics::default(),
        );
        let get_enc = |path: &'static str, gzip: bool| {
            let app = app.clone();
            async move {
                let mut b = axum::http::Request::builder().uri(path);
                if gzip {
                    b = b.header("accept-encoding", "gzip");
                }
                let resp = app
                    .oneshot(b.body(axum::body::Body::empty()).unwrap())
                    .await
                    .unwrap();
                let enc = resp
                    .headers()
                    .get(header::CONTENT_ENCODING)
                    .map(|v| v.to_str().unwrap().to_owned());
                let len = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .unwrap()
                    .len();
                (enc, len)
            }
        };
        let (enc, len) = get_enc("/big", true).await;
        assert_eq!(enc.as_deref(), Some("gzip"));
        assert!(len < 1000, "{len}");
        assert_eq!(get_enc("/big", false).await, (None, 10_000));
        assert_eq!(get_enc("/sse", true).await.0, None);
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }
}
