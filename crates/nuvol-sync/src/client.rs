//! Syncthing's REST API, the calls nuvol makes (`X-API-Key` header).

use crate::error::SyncError;
use crate::plan::StConfig;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// One request's time limit.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A client of one Syncthing.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    addr: SocketAddr,
    key: String,
}

/// `GET /rest/system/status`, the part used.
#[derive(Debug, Clone, Deserialize)]
pub struct SystemStatus {
    #[serde(rename = "myID")]
    pub my_id: String,
}

/// `GET /rest/system/version`, the part used.
#[derive(Debug, Clone, Deserialize)]
pub struct Version {
    pub version: String,
}

/// `GET /rest/db/status?folder=ID`, the parts used.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DbStatus {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub need_total_items: u64,
    #[serde(default)]
    pub need_files: u64,
    #[serde(default)]
    pub need_bytes: u64,
    #[serde(default)]
    pub in_sync_files: u64,
    #[serde(default)]
    pub global_files: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub pull_errors: u64,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub invalid: String,
}

/// `GET /rest/db/completion?folder=ID&device=ID`, the parts used.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Completion {
    #[serde(default)]
    pub completion: f64,
    #[serde(default)]
    pub need_items: u64,
    #[serde(default)]
    pub need_deletes: u64,
}

/// `GET /rest/system/connections`, the parts used.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Connections {
    #[serde(default)]
    pub connections: std::collections::BTreeMap<String, Connection>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Connection {
    #[serde(default)]
    pub connected: bool,
}

impl Client {
    pub fn new(addr: SocketAddr, key: String) -> Result<Client, SyncError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| SyncError::Api {
                addr,
                message: e.to_string(),
            })?;
        Ok(Client { http, addr, key })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, SyncError> {
        let url = format!("http://{}{path}", self.addr);
        let mut req = self
            .http
            .request(method, &url)
            .query(query)
            .header("X-API-Key", &self.key);
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b);
        }
        let resp = req.send().await.map_err(|e| SyncError::Unreachable {
            addr: self.addr,
            message: describe(&e),
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(SyncError::KeyRefused { addr: self.addr });
        }
        let bytes = resp.bytes().await.map_err(|e| SyncError::Unreachable {
            addr: self.addr,
            message: describe(&e),
        })?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(SyncError::Api {
                addr: self.addr,
                message: format!("{path}: {status}: {}", text.trim()),
            });
        }
        Ok(bytes.to_vec())
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, SyncError> {
        let b = self.call(Method::GET, path, query, None).await?;
        serde_json::from_slice(&b).map_err(|e| SyncError::Api {
            addr: self.addr,
            message: format!("{path}: unexpected answer: {e}"),
        })
    }

    pub async fn status(&self) -> Result<SystemStatus, SyncError> {
        self.get("/rest/system/status", &[]).await
    }

    pub async fn version(&self) -> Result<Version, SyncError> {
        self.get("/rest/system/version", &[]).await
    }

    pub async fn config(&self) -> Result<StConfig, SyncError> {
        self.get("/rest/config", &[]).await
    }

    pub async fn put_config(&self, c: &StConfig) -> Result<(), SyncError> {
        let body = serde_json::to_vec(c).map_err(|e| SyncError::Api {
            addr: self.addr,
            message: e.to_string(),
        })?;
        self.call(Method::PUT, "/rest/config", &[], Some(body))
            .await
            .map(|_| ())
    }

    pub async fn db_status(&self, folder: &str) -> Result<DbStatus, SyncError> {
        self.get("/rest/db/status", &[("folder", folder)]).await
    }

    pub async fn completion(&self, folder: &str, device: &str) -> Result<Completion, SyncError> {
        self.get(
            "/rest/db/completion",
            &[("folder", folder), ("device", device)],
        )
        .await
    }

    pub async fn connections(&self) -> Result<Connections, SyncError> {
        self.get("/rest/system/connections", &[]).await
    }
}

/// A reqwest error with its causes (connection refused, ...).
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
