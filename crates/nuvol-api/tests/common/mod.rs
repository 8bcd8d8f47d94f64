//! A fake in-memory catalog behind the real API component of a real
//! in-process agent.
#![allow(dead_code)]

use futures::future::BoxFuture;
use nuvol_agent::chan::Bus;
use nuvol_agent::components::Metrics;
use nuvol_agent::config::NoSettings;
use nuvol_agent::http::ApiError;
use nuvol_agent::{
    AgentBuilder, AgentEvent, BuildCtx, BuildError, Component, ComponentError, RunCtx, RunningAgent,
};
use nuvol_api::Api;
use nuvol_catalog::api::CatalogApi;
use nuvol_catalog::{CheckView, Filter, Health, ServiceDef, ServiceEntry, Source, Status};
use prometheus_client::metrics::gauge::Gauge;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

pub const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const ME: &str = "alpha";

pub struct Fake {
    pub services: Mutex<Vec<ServiceEntry>>,
    /// Every call that changes state, as "publish type/port" or
    /// "unpublish type/port".
    pub calls: Mutex<Vec<String>>,
    /// The agent's event bus, once built.
    pub bus: OnceLock<Bus<AgentEvent>>,
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
    pub fn new() -> Arc<Fake> {
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
            bus: OnceLock::new(),
        })
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl CatalogApi for Fake {
    fn node_name(&self) -> String {
        ME.into()
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
}

/// The fake as a component: the catalog's real routes and OpenAPI fragment
/// over the fake, and a metric of its own.
pub struct FakeCatalog;

impl Component for FakeCatalog {
    type Config = NoSettings;
    const NAME: &'static str = "fake-catalog";

    fn build(_: NoSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        let fake = ctx
            .get::<Arc<Fake>>()
            .ok_or_else(|| BuildError::new("no fake provided"))?;
        for r in nuvol_catalog::api::routes(fake.clone()) {
            ctx.http_route(r)?;
        }
        ctx.openapi(nuvol_catalog::api::OPENAPI)?;
        let g = Gauge::<i64>::default();
        g.set(2);
        ctx.metrics()
            .register("fake_backend_members", "Members (fake)", g);
        let _ = fake.bus.set(ctx.events());
        Ok(Some(FakeCatalog))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        ctx.ready();
        ctx.stopping().await;
        Ok(())
    }
}

fn builder(fake: &Arc<Fake>) -> AgentBuilder {
    AgentBuilder::new()
        .provide(fake.clone())
        .with::<FakeCatalog>()
        .with::<Api>()
        .with::<Metrics>()
}

pub struct Harness {
    pub addr: SocketAddr,
    pub base: String,
    pub fake: Arc<Fake>,
    pub agent: Option<RunningAgent>,
    beta: Option<RunningAgent>,
    _dirs: Vec<tempfile::TempDir>,
}

pub async fn start() -> Harness {
    start_with(Fake::new()).await
}

/// A data dir holding the test's token (the API reuses an existing one).
pub fn data_dir_with_token(token: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("api-token"), token).unwrap();
    d
}

/// Agent "alpha" (the fake catalog, the API, metrics) and a second member,
/// "beta", joined to it.
pub async fn start_with(fake: Arc<Fake>) -> Harness {
    let dir = data_dir_with_token(TOKEN);
    let cfg = builder(&fake)
        .configure_from(
            "",
            &[
                "--node=alpha",
                "--bind=127.0.0.1:0",
                "--profile=local",
                "--tag=role=node",
                "--http-addr=127.0.0.1:0",
                &format!("--data-dir={}", dir.path().display()),
            ],
        )
        .unwrap();
    let agent = cfg.start().await.unwrap();
    let beta_dir = tempfile::tempdir().unwrap();
    let beta = AgentBuilder::new()
        .configure_from(
            "",
            &[
                "--node=beta",
                "--bind=127.0.0.1:0",
                "--profile=local",
                &format!("--data-dir={}", beta_dir.path().display()),
            ],
        )
        .unwrap()
        .start()
        .await
        .unwrap();
    beta.cluster()
        .join(&[agent.cluster().bound().to_string()], false)
        .await
        .unwrap();
    for _ in 0..400 {
        let ms = agent.cluster().members().await.unwrap();
        if ms
            .iter()
            .filter(|m| m.status == nuvol_gossip::MemberStatus::Alive)
            .count()
            == 2
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let addr: SocketAddr = agent
        .registry()
        .info
        .get("http_addr")
        .expect("the API listens")
        .parse()
        .unwrap();
    Harness {
        addr,
        base: format!("http://{addr}"),
        fake,
        agent: Some(agent),
        beta: Some(beta),
        _dirs: vec![dir, beta_dir],
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

    /// An event on the agent's bus (what components emit).
    pub fn emit(&self, event: &str, data: serde_json::Value) {
        self.fake.bus.get().expect("built").send(AgentEvent {
            event: event.into(),
            data,
        });
    }

    /// Stop both agents.
    pub async fn stop(&mut self) {
        if let Some(a) = self.agent.take() {
            a.shutdown(false).await;
        }
        if let Some(b) = self.beta.take() {
            b.shutdown(false).await;
        }
    }
}
