//! A small typed client of the API, for the CLI and tests.

use crate::backend::{AgentInfo, ApiEvent, CheckInfo, ComponentInfo, MemberInfo};
use nuvol_agent::http::ErrorBody;
use nuvol_catalog::{Filter, Health, ServiceDef, ServiceEntry, Status};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Time allowed to connect to the agent.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one call (event streams have none).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest line of an event stream accepted.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Why a call failed. `Display` is one line meant for users
/// (`error: {e}`).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The agent answered with an error; `message` is its own.
    #[error("{message}")]
    Api {
        status: u16,
        message: String,
        field: Option<String>,
    },
    /// No agent there: connection refused, host unreachable, DNS failure.
    #[error("cannot reach the nuvol agent at {url} (is it running?): {reason}")]
    Unreachable { url: String, reason: String },
    /// The agent took too long.
    #[error("the nuvol agent at {url} did not answer in time")]
    Timeout { url: String },
    /// Another transport failure (connection reset mid-response...).
    #[error("HTTP error talking to the nuvol agent: {0}")]
    Http(String),
    /// The agent's answer was not what the API promises.
    #[error("unexpected answer from the nuvol agent: {0}")]
    Decode(String),
    /// The base URL is unusable.
    #[error("invalid agent API address {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// True for a 401: no or a wrong token.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }
    /// True for a 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    fn from_reqwest(url: &Url, e: reqwest::Error) -> Self {
        let url = url.as_str().to_owned();
        if e.is_timeout() {
            ClientError::Timeout { url }
        } else if e.is_connect() {
            ClientError::Unreachable {
                url,
                reason: root_cause(&e),
            }
        } else if e.is_decode() {
            ClientError::Decode(root_cause(&e))
        } else {
            ClientError::Http(root_cause(&e))
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A client of one agent's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// `base` is like `http://127.0.0.1:8500`; `token` is needed for writes
    /// (see [`crate::token::read_token`]).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let bad = |reason: String| ClientError::BadUrl {
            url: base.to_owned(),
            reason,
        };
        let mut url = Url::parse(base).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("expected an http:// or https:// URL".into()));
        }
        if url.cannot_be_a_base() {
            return Err(bad("not a base URL".into()));
        }
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Http(root_cause(&e)))?;
        Ok(ApiClient {
            base: url,
            token,
            http,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::BadUrl {
                url: self.base.to_string(),
                reason: "not a base URL".into(),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, url);
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    async fn send(
        &self,
        rb: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = rb
            .send()
            .await
            .map_err(|e| ClientError::from_reqwest(url, e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| ClientError::from_reqwest(url, e))?;
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => ClientError::Api {
                status: status.as_u16(),
                message: b.error,
                field: b.field,
            },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                message: format!(
                    "HTTP {status}{}",
                    if text.trim().is_empty() {
                        String::new()
                    } else {
                        format!(": {}", text.trim().chars().take(200).collect::<String>())
                    }
                ),
                field: None,
            },
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&ServiceDef>,
    ) -> Result<T, ClientError> {
        let mut rb = self.request(method, url.clone()).timeout(CALL_TIMEOUT);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = self.send(rb, &url).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::from_reqwest(&url, e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// A call of a route this client has no method for (another
    /// component's): `segments` under the base URL, `query` pairs, an
    /// optional JSON body, the answer decoded from JSON (a 204 or an empty
    /// body decodes as `null`). `timeout` defaults to [`CALL_TIMEOUT`].
    pub async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        timeout: Option<Duration>,
    ) -> Result<T, ClientError> {
        let mut url = self.url(segments)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut rb = self
            .request(method, url.clone())
            .timeout(timeout.unwrap_or(CALL_TIMEOUT));
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = self.send(rb, &url).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::from_reqwest(&url, e))?;
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Like [`ApiClient::call_json`] but the answer is returned as it comes
    /// (a long-lived stream such as followed logs), with no timeout.
    pub async fn call_stream(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<reqwest::Response, ClientError> {
        let mut url = self.url(segments)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let rb = self.request(method, url.clone());
        self.send(rb, &url).await
    }

    /// `GET /v1/agent`.
    pub async fn agent(&self) -> Result<AgentInfo, ClientError> {
        self.call(Method::GET, self.url(&["v1", "agent"])?, None)
            .await
    }

    /// `GET /v1/agent/components`.
    pub async fn components(&self) -> Result<Vec<ComponentInfo>, ClientError> {
        self.call(Method::GET, self.url(&["v1", "agent", "components"])?, None)
            .await
    }

    /// `GET /v1/members`.
    pub async fn members(&self) -> Result<Vec<MemberInfo>, ClientError> {
        self.call(Method::GET, self.url(&["v1", "members"])?, None)
            .await
    }

    /// `GET /v1/services` filtered by type and node.
    pub async fn services(&self, filter: &Filter) -> Result<Vec<ServiceEntry>, ClientError> {
        self.services_with_status(filter, None).await
    }

    /// `GET /v1/services` filtered by type, node and status.
    pub async fn services_with_status(
        &self,
        filter: &Filter,
        status: Option<Status>,
    ) -> Result<Vec<ServiceEntry>, ClientError> {
        let mut url = self.url(&["v1", "services"])?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(t) = &filter.stype {
                q.append_pair("type", t);
            }
            if let Some(n) = &filter.node {
                q.append_pair("node", n);
            }
            if let Some(s) = status {
                q.append_pair("status", s.as_str());
            }
        }
        clear_empty_query(&mut url);
        self.call(Method::GET, url, None).await
    }

    /// `GET /v1/services/{node}/{type}/{port}`.
    pub async fn service(
        &self,
        node: &str,
        stype: &str,
        port: u16,
    ) -> Result<ServiceEntry, ClientError> {
        let port = port.to_string();
        let url = self.url(&["v1", "services", node, stype, &port])?;
        self.call(Method::GET, url, None).await
    }

    /// `POST /v1/services`: publish on the agent's node (needs the token).
    pub async fn publish(&self, def: &ServiceDef) -> Result<ServiceEntry, ClientError> {
        let url = self.url(&["v1", "services"])?;
        self.call(Method::POST, url, Some(def)).await
    }

    /// Remove one of the agent's own services (needs the token): asks the
    /// agent its name, then `DELETE /v1/services/{node}/{type}/{port}`.
    pub async fn unpublish(&self, stype: &str, port: u16) -> Result<(), ClientError> {
        let node = self.agent().await?.name;
        self.unpublish_on(&node, stype, port).await
    }

    /// `DELETE /v1/services/{node}/{type}/{port}` (403 unless `node` is the
    /// agent's own).
    pub async fn unpublish_on(
        &self,
        node: &str,
        stype: &str,
        port: u16,
    ) -> Result<(), ClientError> {
        let port = port.to_string();
        let url = self.url(&["v1", "services", node, stype, &port])?;
        let rb = self
            .request(Method::DELETE, url.clone())
            .timeout(CALL_TIMEOUT);
        self.send(rb, &url).await?;
        Ok(())
    }

    /// `GET /v1/checks`.
    pub async fn checks(&self) -> Result<Vec<CheckInfo>, ClientError> {
        self.checks_filtered(None, None).await
    }

    /// `GET /v1/checks?node=&status=`.
    pub async fn checks_filtered(
        &self,
        node: Option<&str>,
        status: Option<Health>,
    ) -> Result<Vec<CheckInfo>, ClientError> {
        let mut url = self.url(&["v1", "checks"])?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(n) = node {
                q.append_pair("node", n);
            }
            if let Some(s) = status {
                q.append_pair("status", s.as_str());
            }
        }
        clear_empty_query(&mut url);
        self.call(Method::GET, url, None).await
    }

    /// `GET /v1/events`: the agent's event stream.
    pub async fn events(&self) -> Result<EventStream, ClientError> {
        let url = self.url(&["v1", "events"])?;
        let rb = self
            .request(Method::GET, url.clone())
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let resp = self.send(rb, &url).await?;
        if resp.status() != StatusCode::OK {
            return Err(ClientError::Decode(format!(
                "event stream answered {}",
                resp.status()
            )));
        }
        Ok(EventStream {
            resp,
            url,
            buf: Vec::new(),
            event: None,
            data: String::new(),
        })
    }
}

fn clear_empty_query(url: &mut Url) {
    if url.query() == Some("") {
        url.set_query(None);
    }
}

/// An open event stream ([`ApiClient::events`]).
#[derive(Debug)]
pub struct EventStream {
    resp: reqwest::Response,
    url: Url,
    buf: Vec<u8>,
    event: Option<String>,
    data: String,
}

impl EventStream {
    /// The next event; `None` when the agent closed the stream. Keep-alive
    /// comments are skipped; a `lagged` event says events were missed.
    pub async fn next(&mut self) -> Option<Result<ApiEvent, ClientError>> {
        loop {
            while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if let Some(ev) = self.line(&line) {
                    return Some(ev);
                }
            }
            if self.buf.len() > MAX_EVENT_BYTES {
                return Some(Err(ClientError::Decode("event line too long".into())));
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => return None,
                Err(e) => return Some(Err(ClientError::from_reqwest(&self.url, e))),
            }
        }
    }

    /// Feed one line; a blank line completes an event.
    fn line(&mut self, line: &[u8]) -> Option<Result<ApiEvent, ClientError>> {
        let line = String::from_utf8_lossy(line);
        if line.is_empty() {
            let event = self.event.take();
            let data = std::mem::take(&mut self.data);
            if event.is_none() && data.is_empty() {
                return None;
            }
            let data = if data.is_empty() {
                Ok(serde_json::Value::Null)
            } else {
                serde_json::from_str(&data)
            };
            return Some(
                data.map(|data| ApiEvent {
                    event: event.unwrap_or_else(|| "message".to_owned()),
                    data,
                })
                .map_err(|e| ClientError::Decode(format!("event data is not JSON: {e}"))),
            );
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((&line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value);
            }
            _ => {}
        }
        None
    }
}
