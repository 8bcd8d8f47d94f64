//! A fake in-memory backend and a server harness.
#![allow(dead_code)]

use futures::future::BoxFuture;
use nuvol_api::{AgentInfo, ApiError, ApiEvent, Backend, MemberInfo};
use nuvol_catalog::{CheckView, Filter, Health, ServiceDef, ServiceEntry, Source, Status};
use prometheus_client::metrics::gauge::Gauge;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, oneshot};

pub const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const ME: &str = "alpha";

pub struct Fake {
    pub services: Mutex<Vec<ServiceEntry>>,
    /// Every call that changes state, as "publish type/port" or
    /// "unpublish type/port".
    pub calls: Mutex<Vec<String>>,
    pub events: broadcast::Sender<ApiEvent>,
}

pub fn entry(
    node: &str,
    stype: &str,
    port: u16,
    status: Status,
    checks: Vec<CheckView>,
) -> ServiceEntry {
    ServiceEntry {
        node: node.into(),
        stype: stype.into(),
        description: format!("{stype} on {node}"),
        host: format!("{node}.test.local"),
        ip: "10.0.0.1".into(),
        port,
        cloud: "test".into(),
        txt: vec![("a".into(), "1".into())],
        status,
        source: Source::Nuvol,
        checks,
    }
}

pub fn check(kind: &str, target: &str, status: Health) -> CheckView {
    CheckView {
        kind: kind.into(),
        target: target.into(),
        status,
        output: "ok".into(),
        updated_ms: 1_700_000_000_000,
    }
}

impl Fake {
    pub fn new(event_capacity: usize) -> Arc<Fake> {
        let services = vec![
            entry(
                ME,
                "http",
                80,
                Status::Passing,
                vec![check("tcp", "127.0.0.1:80", Health::Passing)],
            ),
            entry(
                "beta",
                "ssh",
                22,
                Status::Critical,
                vec![check("script", "true", Health::Critical)],
            ),
            entry("gamma", "web", 8080, Status::Unavailable, vec![]),
        ];
        Arc::new(Fake {
            services: Mutex::new(services),
            calls: Mutex::new(Vec::new()),
            events: broadcast::channel(event_capacity).0,
        })
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Backend for Fake {
    fn agent(&self) -> AgentInfo {
        AgentInfo {
            name: ME.into(),
            addr: "10.0.0.1".into(),
            port: 7946,
            version: "0.1.0".into(),
            data_dir: "/var/lib/nuvol".into(),
            cloud: "test".into(),
            tags: BTreeMap::from([("role".to_owned(), "node".to_owned())]),
            http_addr: "127.0.0.1:8500".into(),
            dns_addr: None,
        }
    }

    fn members(&self) -> BoxFuture<'_, Result<Vec<MemberInfo>, ApiError>> {
        Box::pin(async {
            Ok(["alpha", "beta"]
                .iter()
                .map(|n| MemberInfo {
                    name: (*n).into(),
                    addr: "10.0.0.1".into(),
                    port: 7946,
                    status: "alive".into(),
                    tags: BTreeMap::new(),
                })
                .collect())
        })
    }

    fn services(&self, filter: &Filter) -> Vec<ServiceEntry> {
        let all = self.services.lock().map(|s| s.clone()).unwrap_or_default();
        all.into_iter().filter(|e| filter.matches(e)).collect()
    }

    fn publish(&self, def: ServiceDef) -> BoxFuture<'_, Result<ServiceEntry, ApiError>> {
        Box::pin(async move {
            self.calls
                .lock()
                .map_err(|_| ApiError::Internal("poisoned".into()))?
                .push(format!("publish {}", def.key()));
            let mut e = entry(ME, &def.stype, def.port, Status::Passing, vec![]);
            e.description = def.description.clone();
            e.txt = def.txt.clone();
            e.checks = def
                .checks
                .iter()
                .map(|c| check(c.kind.name(), c.kind.target(), Health::Passing))
                .collect();
            let mut s = self
                .services
                .lock()
                .map_err(|_| ApiError::Internal("poisoned".into()))?;
            s.retain(|x| !(x.node == ME && x.key() == e.key()));
            s.push(e.clone());
            Ok(e)
        })
    }

    fn unpublish(&self, stype: String, port: u16) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(async move {
            self.calls
                .lock()
                .map_err(|_| ApiError::Internal("poisoned".into()))?
                .push(format!("unpublish {stype}/{port}"));
            let mut s = self
                .services
                .lock()
                .map_err(|_| ApiError::Internal("poisoned".into()))?;
            let before = s.len();
            s.retain(|x| !(x.node == ME && x.stype.eq_ignore_ascii_case(&stype) && x.port == port));
            if s.len() == before {
                return Err(ApiError::NotFound(format!(
                    "no service {stype}/{port} on this node"
                )));
            }
            Ok(())
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<ApiEvent> {
        self.events.subscribe()
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let g = Gauge::<i64>::default();
        g.set(2);
        registry.register("fake_backend_members", "Members (fake)", g);
    }
}

pub struct Harness {
    pub addr: SocketAddr,
    pub base: String,
    pub fake: Arc<Fake>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), ApiError>>>,
}

pub async fn start() -> Harness {
    start_with(Fake::new(64)).await
}

pub async fn start_with(fake: Arc<Fake>) -> Harness {
    let server = nuvol_api::bind("127.0.0.1:0".parse().unwrap(), TOKEN.into(), fake.clone())
        .await
        .unwrap();
    let addr = server.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Harness {
        addr,
        base: format!("http://{addr}"),
        fake,
        stop: Some(tx),
        task: Some(task),
    }
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn client(&self) -> nuvol_api::ApiClient {
        nuvol_api::ApiClient::new(&self.base, Some(TOKEN.into())).unwrap()
    }

    pub fn anon(&self) -> nuvol_api::ApiClient {
        nuvol_api::ApiClient::new(&self.base, None).unwrap()
    }

    /// Signal shutdown and wait for `run` to return.
    pub async fn stop(&mut self) -> Result<(), ApiError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => t.await.unwrap(),
            None => Ok(()),
        }
    }
}
