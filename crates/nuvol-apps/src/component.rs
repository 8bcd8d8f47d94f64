//! The apps component: `[apps]` settings, the `/v1/apps` routes, the
//! `nv-apps` tag (this node runs apps; the number installed), the stream
//! protocol other nodes list this node's apps with, and the run loop that
//! connects to the engine and reconciles.

use crate::driver::{Engine, Router};
use crate::error::AppError;
use crate::ha::Ha;
use crate::manager::{AppSummary, Fut, Install, Manager, Published, Publisher, APP_TXT};
use crate::process::{ProcessSettings, Processes};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::future::BoxFuture;
use futures::StreamExt;
use nuvol_agent::config::{ConfigError, Validate};
use nuvol_agent::http::{
    body_bytes, parse_json, parse_query, query_param, Access, ApiError, HttpRoute,
};
use nuvol_agent::{
    BuildCtx, BuildError, Cluster, Component, ComponentError, OwnedTags, RunCtx, StreamError,
    StreamHandler,
};
use nuvol_catalog::component::Catalog;
use nuvol_catalog::model::ServiceDef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The stream protocol of `GET /v1/apps?all=true`: the request is
/// `[APP_STREAM, APPS_LIST]`, the reply this node's apps as JSON.
pub const APPS_LIST: u8 = 2;
/// The tag of nodes that have apps installed (its value: how many); set
/// only while there is at least one.
pub const APPS_TAG: &str = "nv-apps";
/// Largest list reply accepted from a peer.
const MAX_LIST_REPLY: usize = 1024 * 1024;

nuvol_agent::settings! {
    /// Apps: Compose definitions run on this node's container engine.
    pub struct AppsSettings in "apps", "Apps" {
        /// Run apps on this node.
        enable: bool = true, flag "apps";
        /// The engine's socket: Docker's (default /var/run/docker.sock, or
        /// DOCKER_HOST when it is unix://) or Podman's
        /// (/run/podman/podman.sock).
        docker_socket: String = String::new(), flag "docker-socket";
        /// Time between two looks at the engine (containers that crashed,
        /// checks that fail, a daemon that restarted).
        reconcile_every: Duration = Duration::from_secs(5), flag "apps-reconcile-every";
        /// Directories of app templates (*.yml or an index.json) listed in
        /// the store besides the built-in ones (repeatable).
        store_dirs: Vec<String> = Vec::new(), flag "apps-store-dir";
        /// Store URLs: an index.json listing templates, fetched over
        /// HTTP(S) and kept in DATA_DIR/apps-store for offline use
        /// (repeatable).
        store_urls: Vec<String> = Vec::new(), flag "apps-store-url";
        /// The user process apps run as when a service gives no user:
        /// (a name, NAME:GROUP or a uid).
        process_user: String = "nobody".to_owned(), flag "apps-process-user";
        /// Let process apps run as root (user: root, or process_user =
        /// "root"). Off: such an install is refused.
        process_allow_root: bool = false, flag "apps-process-allow-root";
        /// A process app's log file is rotated at this many bytes.
        process_log_max: u64 = 1024 * 1024, flag "apps-process-log-max";
        /// Rotated log files kept per process.
        process_log_keep: u64 = 3, flag "apps-process-log-keep";
    }
}

impl Validate for AppsSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        for u in &self.store_urls {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(ConfigError::invalid::<Self>(
                    "store_urls",
                    format!("{u:?} is not an http:// or https:// URL"),
                ));
            }
        }
        if self.process_user.trim().is_empty() {
            return Err(ConfigError::invalid::<Self>("process_user", "is empty"));
        }
        if self.process_log_keep == 0 || self.process_log_keep > 100 {
            return Err(ConfigError::invalid::<Self>(
                "process_log_keep",
                "must be 1 to 100",
            ));
        }
        if self.process_log_max < 4096 {
            return Err(ConfigError::invalid::<Self>(
                "process_log_max",
                "must be at least 4096 bytes",
            ));
        }
        if self.reconcile_every < Duration::from_secs(1) {
            return Err(ConfigError::invalid::<Self>(
                "reconcile_every",
                "must be at least 1s",
            ));
        }
        Ok(())
    }
}

/// What the routes share with the run loop: the manager once the engine
/// is reached.
#[derive(Default)]
struct Shared {
    manager: RwLock<Option<Manager>>,
    /// Why there is none (for 503 answers).
    error: RwLock<Option<String>>,
}

impl Shared {
    fn manager(&self) -> Result<Manager, AppError> {
        if let Some(m) = self.manager.read().ok().and_then(|g| g.clone()) {
            return Ok(m);
        }
        let why = self
            .error
            .read()
            .ok()
            .and_then(|g| g.clone())
            .unwrap_or_else(|| "starting".into());
        Err(AppError::Unavailable(why))
    }

    fn get(&self) -> Result<Manager, ApiError> {
        self.manager().map_err(api_error)
    }
}

/// The component.
pub struct Apps {
    cfg: AppsSettings,
    shared: Arc<Shared>,
    node: String,
    data_dir: PathBuf,
    catalog: Option<Catalog>,
    tag: OwnedTags,
    ha: Arc<Ha>,
}

/// How often every node looks for HA app tasks on its Docker.
const HA_PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The catalog as the manager's [`Publisher`].
struct CatalogPublisher(Catalog);

impl Publisher for CatalogPublisher {
    fn publish(&self, def: ServiceDef) -> Fut<'_, ()> {
        Box::pin(async move {
            self.0
                .publish(def)
                .await
                .map(|_| ())
                .map_err(|e| AppError::Other(format!("catalog: {e}")))
        })
    }
    fn unpublish(&self, stype: String, port: u16) -> Fut<'_, ()> {
        Box::pin(async move {
            self.0
                .unpublish(&stype, Some(port))
                .await
                .map(|_| ())
                .map_err(|e| AppError::Other(format!("catalog: {e}")))
        })
    }
    fn local(&self) -> Vec<Published> {
        let me = self.0.node_name().to_owned();
        self.0
            .entries(&nuvol_catalog::Filter {
                stype: None,
                node: Some(me),
            })
            .into_iter()
            .map(|e| Published {
                stype: e.stype,
                port: e.port,
                txt: e.txt,
                status: e.status,
            })
            .collect()
    }
}

fn api_error(e: AppError) -> ApiError {
    let msg = e.to_string();
    match e.status() {
        400 => {
            let field = match &e {
                AppError::Invalid { field, .. } => field.clone(),
                AppError::Unsupported { key, .. } => key.clone(),
                AppError::MissingParam(p) | AppError::UnknownParam(p) => format!("params.{p}"),
                AppError::Archive { .. } => "path".into(),
                _ => "definition".into(),
            };
            ApiError::bad(field, msg)
        }
        404 => ApiError::NotFound(msg),
        409 => ApiError::Conflict(msg),
        // An image that is not there: the request cannot be carried out
        // here, as a conflict with the node's state.
        422 => ApiError::Conflict(msg),
        503 => ApiError::Unavailable(msg),
        _ => ApiError::Internal(msg),
    }
}

/// Answers `[APP_STREAM, APPS_LIST]` with this node's apps (and the HA
/// apps, when it is a Swarm manager).
struct ListHandler(Arc<Shared>, Arc<Ha>);

impl StreamHandler for ListHandler {
    fn handle(
        &self,
        _from: SocketAddr,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Arc<Vec<u8>>, StreamError>> {
        let shared = self.0.clone();
        let ha = self.1.clone();
        Box::pin(async move {
            if request != [nuvol_agent::APP_STREAM, APPS_LIST] {
                return Err(StreamError::Refused("unknown apps request".into()));
            }
            let m = shared.get().map_err(|_| StreamError::NotReady)?;
            let mut list = m.list();
            list.extend(ha.list().await);
            serde_json::to_vec(&list)
                .map(Arc::new)
                .map_err(|e| StreamError::Refused(e.to_string()))
        })
    }
}

#[derive(Clone)]
struct Ctx {
    shared: Arc<Shared>,
    cluster: Cluster,
    node: String,
    store: Arc<crate::appstore::Store>,
    ha: Arc<Ha>,
    catalog: Option<Catalog>,
}

impl Ctx {
    /// Install on this node's engine, or as an HA app (`ha`, or
    /// `x-nuvol.ha` in the definition) on the Swarm.
    async fn install(&self, req: Install, ha: bool) -> Result<AppSummary, AppError> {
        let m = self.shared.manager()?;
        let (meta, _) = crate::compose::read_meta(&req.definition)?;
        if !(ha || meta.ha) {
            let name = req.name.clone().unwrap_or_else(|| meta.id.clone());
            if !name.is_empty() && self.ha.has(&name).await {
                return Err(AppError::Exists(name));
            }
            return m.install(req).await;
        }
        let name = match (&req.name, meta.id.is_empty()) {
            (Some(n), _) => n.clone(),
            (None, false) => meta.id.clone(),
            (None, true) => {
                return Err(AppError::invalid(
                    "name",
                    "the definition has no x-nuvol.id: give a name (--name)",
                ))
            }
        };
        crate::meta::validate_name("name", &name)?;
        if ["restore", "store"].contains(&name.as_str()) {
            return Err(AppError::invalid(
                "name",
                format!("{name:?} is reserved (a route of the REST API or the dashboard)"),
            ));
        }
        if m.list().iter().any(|a| a.name == name) {
            return Err(AppError::Exists(name));
        }
        if !req.files.is_empty() {
            return Err(AppError::invalid(
                "files",
                "an HA app cannot have files in the app's directory (it exists on one node only)",
            ));
        }
        self.ha
            .install(&name, req.definition, &req.params, &req.source)
            .await
    }

    /// The catalog's entries of app `name`, every node's (`TYPE/PORT@NODE`).
    fn published_anywhere(&self, name: &str) -> Vec<(String, nuvol_catalog::model::Status)> {
        let Some(cat) = &self.catalog else {
            return Vec::new();
        };
        cat.entries(&nuvol_catalog::Filter {
            stype: None,
            node: None,
        })
        .into_iter()
        .filter(|e| e.txt.iter().any(|(k, v)| k == APP_TXT && v == name))
        .map(|e| (format!("{}/{}@{}", e.stype, e.port, e.node), e.status))
        .collect()
    }

    async fn status(&self, name: &str) -> Result<crate::manager::AppStatus, AppError> {
        match self.shared.manager()?.status(name).await {
            // Not this node's app: maybe an HA app (the Swarm's answer,
            // or why it cannot give one); with Swarm off, "no app named".
            Err(AppError::NotFound(_)) if self.ha.swarm_on() => {
                self.ha.status(name, self.published_anywhere(name)).await
            }
            r => r,
        }
    }

    async fn remove(&self, name: &str, purge: bool) -> Result<(), AppError> {
        match self.shared.manager()?.remove(name, purge).await {
            Err(AppError::NotFound(_)) if self.ha.has(name).await => self.ha.remove(name).await,
            r => r,
        }
    }

    /// `e` for an operation on `name`, or, when `name` is not this
    /// node's app but an HA app, why the operation is not for HA apps.
    async fn not_for_ha(&self, name: &str, e: AppError) -> AppError {
        if matches!(e, AppError::NotFound(_)) && self.ha.has(name).await {
            AppError::Conflict(format!(
                "{name} is an HA app (Swarm services): Swarm keeps it running; to change it, \
                 remove it and install it again"
            ))
        } else {
            e
        }
    }

    /// This node's apps and the HA apps (on a Swarm manager).
    async fn list(&self) -> Result<Vec<AppSummary>, AppError> {
        let mut l = self.shared.manager()?.list();
        l.extend(self.ha.list().await);
        Ok(l)
    }
}

impl Component for Apps {
    type Config = AppsSettings;
    const NAME: &'static str = "apps";

    fn build(cfg: AppsSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        if !cfg.enable {
            return Ok(None);
        }
        let shared = Arc::new(Shared::default());
        let mut store = crate::appstore::Store::new();
        for d in &cfg.store_dirs {
            store.add_dir(PathBuf::from(d));
        }
        for u in &cfg.store_urls {
            store.add_url(u.clone());
        }
        store.cache_dir(ctx.data_dir().join("apps-store"));
        let socket = (!cfg.docker_socket.is_empty()).then(|| cfg.docker_socket.clone());
        let ha = Arc::new(Ha::new(socket_path(socket.as_deref()), ctx.node_name()));
        let catalog: Option<Catalog> = ctx.get::<Catalog>();
        let c = Ctx {
            shared: shared.clone(),
            cluster: ctx.cluster(),
            node: ctx.node_name().to_owned(),
            store: Arc::new(store),
            ha: ha.clone(),
            catalog: catalog.clone(),
        };
        ctx.provide(AppsHandle(c.clone()));
        for r in routes(c) {
            ctx.http_route(r)?;
        }
        ctx.openapi(OPENAPI)?;
        ctx.stream_protocol(APPS_LIST, Arc::new(ListHandler(shared.clone(), ha.clone())))?;
        let tag = ctx.own_tags(&[APPS_TAG])?;
        Ok(Some(Apps {
            cfg,
            shared,
            node: ctx.node_name().to_owned(),
            data_dir: ctx.data_dir().to_owned(),
            catalog,
            tag,
            ha,
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let socket = (!self.cfg.docker_socket.is_empty()).then(|| self.cfg.docker_socket.clone());
        // Process apps run whether or not there is a container engine; no
        // engine installed is a normal state of a node, not a failure: the
        // socket is looked for at each pass (an engine installed later),
        // without a failed component and a log line per retry.
        let path = socket_path(socket.as_deref());
        let cfg = ProcessSettings {
            user: self.cfg.process_user.clone(),
            allow_root: self.cfg.process_allow_root,
            log_max: self.cfg.process_log_max,
            log_keep: usize::try_from(self.cfg.process_log_keep).unwrap_or(3),
        };
        let (node, dir) = (self.node.clone(), self.data_dir.clone());
        let processes = tokio::task::spawn_blocking(move || Processes::open(&dir, &node, cfg))
            .await
            .map_err(|e| ComponentError::msg(format!("apps processes: {e}")))??;
        processes.spawn_housekeeping();
        let router = Arc::new(Router::new(processes));
        let mut told = false;
        let connect = {
            let router = router.clone();
            let node = self.node.clone();
            let shared = self.shared.clone();
            move || {
                let router = router.clone();
                let node = node.clone();
                let shared = shared.clone();
                let path = path.clone();
                async move {
                    if router.has_docker() {
                        return true;
                    }
                    if !path.exists() {
                        let why = format!(
                            "no container engine at {} (install Docker or Podman, or set [apps] docker_socket)",
                            path.display()
                        );
                        router.set_docker_missing(why);
                        return false;
                    }
                    match crate::docker::Docker::connect(Some(&path.to_string_lossy()), &node).await
                    {
                        Ok(d) => {
                            router.set_docker(Arc::new(d));
                            true
                        }
                        Err(e) => {
                            if let Ok(mut g) = shared.error.write() {
                                *g = Some(e.to_string());
                            }
                            router.set_docker_missing(e.to_string());
                            false
                        }
                    }
                }
            }
        };
        if !connect().await && !told {
            tracing::info!(
                "apps: no container engine yet (process apps run; Docker apps wait for it)"
            );
            told = true;
        }
        let engine = router.clone() as Arc<dyn Engine>;
        let publisher = self
            .catalog
            .clone()
            .map(|c| Arc::new(CatalogPublisher(c)) as Arc<dyn Publisher>);
        let (node, dir) = (self.node.clone(), self.data_dir.clone());
        let manager =
            tokio::task::spawn_blocking(move || Manager::open(&node, &dir, engine, publisher))
                .await
                .map_err(|e| ComponentError::msg(format!("apps store: {e}")))??;
        if let Ok(mut g) = self.shared.manager.write() {
            *g = Some(manager.clone());
        }
        // HA apps: the swarm component's handle (it is built after this
        // one), and the publisher of the HA tasks running here.
        self.ha
            .set_swarm(ctx.registry().get::<nuvol_swarm::SwarmHandle>());
        if let Some(pb) = self.catalog.clone().map(CatalogPublisher) {
            let ha = self.ha.clone();
            let stop = ctx.stop_token();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(HA_PUBLISH_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut last: Option<String> = None;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let r = ha.publish_pass(&pb).await.err().map(|e| e.to_string());
                    if r != last {
                        if let Some(e) = &r {
                            tracing::debug!(error = %e, "apps: cannot look for HA tasks");
                        }
                        last = r;
                    }
                }
            });
        }
        ctx.ready();
        let mut tick = tokio::time::interval(self.cfg.reconcile_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Owned tags start unset after a restart (they are never in the
        // tags file), and a node without apps sets none: serf peers and
        // nodes without apps see no extra tag, and `list --all` asks only
        // nodes that have some.
        let mut tagged: usize = 0;
        let mut last_error: Option<String> = None;
        loop {
            tokio::select! {
                () = ctx.stopping() => break,
                _ = tick.tick() => {}
                () = manager.kicked() => {}
            }
            if !connect().await && !told {
                tracing::info!(
                    "apps: no container engine yet (process apps run; Docker apps wait for it)"
                );
                told = true;
            }
            match manager.reconcile().await {
                Ok(_) => {
                    last_error = None;
                    if let Ok(mut g) = self.shared.error.write() {
                        *g = None;
                    }
                }
                Err(e) => {
                    // Once per cause (a missing engine fails every pass).
                    let why = e.to_string();
                    if last_error.as_deref() != Some(why.as_str()) {
                        tracing::warn!(error = %why, "apps: cannot reconcile");
                        last_error = Some(why);
                    }
                    if let Ok(mut g) = self.shared.error.write() {
                        *g = Some(e.to_string());
                    }
                }
            }
            let n = manager.list().len();
            if tagged != n {
                let mine = if n == 0 {
                    BTreeMap::new()
                } else {
                    BTreeMap::from([(APPS_TAG.to_owned(), n.to_string())])
                };
                if let Ok(cur) = self.tag.current().await {
                    if self.tag.replace(cur.version, mine).await.is_ok() {
                        tagged = n;
                    }
                }
            }
        }
        if let Ok(mut g) = self.shared.manager.write() {
            *g = None;
        }
        // The apps keep running: stopping the agent is not stopping them.
        Ok(())
    }
}

/// The engine socket's path: the setting, else `DOCKER_HOST` when it is a
/// `unix://` address, else Docker's default.
fn socket_path(setting: Option<&str>) -> PathBuf {
    let from_env = std::env::var("DOCKER_HOST").ok();
    let s = setting
        .map(str::to_owned)
        .or_else(|| from_env.filter(|h| h.starts_with("unix://")))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    PathBuf::from(s.strip_prefix("unix://").unwrap_or(&s))
}

/// What the dashboard (or another component) uses of the apps: the
/// store, this node's and every node's apps, status, logs and the
/// operations; provided by the component's `build`. Cheap to clone.
/// Every call made while the component has no engine yet answers
/// [`AppError::Unavailable`] with the reason.
#[derive(Clone)]
pub struct AppsHandle(Ctx);

impl AppsHandle {
    /// This node's name.
    pub fn node(&self) -> &str {
        &self.0.node
    }

    /// `Ok` when the engine is reached, else why not.
    pub fn ready(&self) -> Result<(), AppError> {
        self.0.shared.manager().map(|_| ())
    }

    /// Every template of the store (with whether it runs on this CPU),
    /// and the sources or templates that could not be read.
    pub async fn store(&self) -> (Vec<crate::appstore::StoreEntry>, Vec<String>) {
        self.0.store.list().await
    }

    /// The store's template `id`.
    pub async fn template(&self, id: &str) -> Result<crate::appstore::StoreEntry, AppError> {
        crate::meta::validate_name("id", id)?;
        self.0.store.find(id).await
    }

    /// Install the store's template `id` as `name` (default: the id), as
    /// `POST /v1/store/{id}/install` does.
    pub async fn install_template(
        &self,
        id: &str,
        name: Option<String>,
        params: BTreeMap<String, String>,
    ) -> Result<AppSummary, AppError> {
        self.0.shared.manager()?;
        let e = self.template(id).await?;
        self.0
            .install(
                Install {
                    name: name.or(Some(e.id.clone())),
                    definition: e.definition,
                    source: format!("store:{}", e.id),
                    params,
                    files: BTreeMap::new(),
                },
                false,
            )
            .await
    }

    /// This node's apps.
    pub fn list(&self) -> Result<Vec<AppSummary>, AppError> {
        Ok(self.0.shared.manager()?.list())
    }

    /// The apps of every nuvol node (`GET /v1/apps?all=true`).
    pub async fn list_all(&self) -> Result<AllApps, AppError> {
        list_all(&self.0).await
    }

    pub async fn status(&self, name: &str) -> Result<crate::manager::AppStatus, AppError> {
        crate::meta::validate_name("name", name)?;
        self.0.status(name).await
    }

    pub async fn start(&self, name: &str) -> Result<AppSummary, AppError> {
        crate::meta::validate_name("name", name)?;
        self.0.shared.manager()?.start(name).await
    }

    pub async fn stop(&self, name: &str) -> Result<AppSummary, AppError> {
        crate::meta::validate_name("name", name)?;
        self.0.shared.manager()?.stop(name).await
    }

    pub async fn restart(&self, name: &str) -> Result<AppSummary, AppError> {
        crate::meta::validate_name("name", name)?;
        self.0.shared.manager()?.restart(name).await
    }

    pub async fn remove(&self, name: &str, purge: bool) -> Result<(), AppError> {
        crate::meta::validate_name("name", name)?;
        self.0.remove(name, purge).await
    }

    /// The main service's log: the last `tail` lines, then (with
    /// `follow`) new ones as they are written.
    pub async fn logs(
        &self,
        name: &str,
        tail: usize,
        follow: bool,
    ) -> Result<crate::driver::LogStream, AppError> {
        crate::meta::validate_name("name", name)?;
        self.0
            .shared
            .manager()?
            .logs(name, None, tail.min(MAX_TAIL), follow)
            .await
    }
}

/// The `/v1/apps` part of the OpenAPI document.
pub const OPENAPI: &str = include_str!("../openapi.json");

fn routes(c: Ctx) -> Vec<HttpRoute> {
    use axum::routing::{delete, get, post};
    let r = |m: Method, p: &'static str, a: Access, h: axum::routing::MethodRouter<Ctx>| {
        HttpRoute::new(m, p, a, h.with_state(c.clone()))
    };
    vec![
        r(Method::GET, "/v1/store", Access::View, get(store_list)),
        r(
            Method::POST,
            "/v1/store/{id}/install",
            Access::Operate,
            post(store_install),
        ),
        r(Method::GET, "/v1/apps", Access::View, get(list)),
        r(Method::POST, "/v1/apps", Access::Operate, post(install)),
        r(Method::GET, "/v1/apps/{name}", Access::View, get(status)),
        r(
            Method::DELETE,
            "/v1/apps/{name}",
            Access::Operate,
            delete(remove),
        ),
        r(
            Method::POST,
            "/v1/apps/{name}/start",
            Access::Operate,
            post(start),
        ),
        r(
            Method::POST,
            "/v1/apps/{name}/stop",
            Access::Operate,
            post(stop),
        ),
        r(
            Method::POST,
            "/v1/apps/{name}/restart",
            Access::Operate,
            post(restart),
        ),
        r(Method::GET, "/v1/apps/{name}/logs", Access::View, get(logs)),
        r(
            Method::POST,
            "/v1/apps/{name}/upgrade",
            Access::Operate,
            post(upgrade),
        ),
        r(
            Method::POST,
            "/v1/apps/{name}/backup",
            Access::Operate,
            post(backup),
        ),
        r(
            Method::POST,
            "/v1/apps/restore",
            Access::Operate,
            post(restore),
        ),
    ]
}

/// One node's part of `GET /v1/apps?all=true`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeError {
    pub node: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllApps {
    pub apps: Vec<AppSummary>,
    /// Nodes that could not be asked.
    pub errors: Vec<NodeError>,
}

async fn list(State(c): State<Ctx>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q = parse_query(raw, &["all"])?;
    let all = match query_param(&q, "all") {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(v) => return Err(ApiError::bad("all", format!("{v:?}: true or false"))),
    };
    if !all {
        return Ok(Json(c.list().await.map_err(api_error)?).into_response());
    }
    Ok(Json(list_all(&c).await.map_err(api_error)?).into_response())
}

/// This node's apps and those of every alive node with the `nv-apps` tag
/// (asked over [`APPS_LIST`]), sorted by node and name.
async fn list_all(c: &Ctx) -> Result<AllApps, AppError> {
    let mut apps = c.list().await?;
    let mut errors = Vec::new();
    let members = c
        .cluster
        .members()
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    let peers: Vec<(String, SocketAddr)> = members
        .into_iter()
        .filter(|p| {
            p.name != c.node
                && p.status == nuvol_gossip::MemberStatus::Alive
                && p.tags.contains_key(APPS_TAG)
        })
        .map(|p| (p.name, p.addr))
        .collect();
    // At most 8 at once, each bounded by the cluster's stream timeout.
    let results: Vec<(String, Result<Vec<AppSummary>, String>)> = futures::stream::iter(peers)
        .map(|(name, addr)| {
            let cl = c.cluster.clone();
            async move {
                let r = cl
                    .app_request(addr, vec![nuvol_agent::APP_STREAM, APPS_LIST])
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|b| {
                        if b.len() > MAX_LIST_REPLY {
                            return Err("reply too large".into());
                        }
                        serde_json::from_slice::<Vec<AppSummary>>(&b)
                            .map_err(|e| format!("bad reply: {e}"))
                    });
                (name, r)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (node, r) in results {
        match r {
            // A peer speaks for its own apps only.
            // HA apps are the Swarm's: the same from every manager.
            Ok(list) => {
                for a in list {
                    if a.ha {
                        if !apps.iter().any(|b| b.ha && b.name == a.name) {
                            apps.push(a);
                        }
                    } else if a.node == node {
                        apps.push(a);
                    }
                }
            }
            Err(error) => errors.push(NodeError { node, error }),
        }
    }
    apps.sort_by(|a, b| (&a.node, &a.name).cmp(&(&b.node, &b.name)));
    Ok(AllApps { apps, errors })
}

/// `POST /v1/apps`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallBody {
    #[serde(default)]
    name: Option<String>,
    /// The Compose text.
    compose: String,
    #[serde(default)]
    env_files: BTreeMap<String, String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    source: String,
    /// Run it as an HA app (Swarm services).
    #[serde(default)]
    ha: bool,
}

async fn install(
    State(c): State<Ctx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let b: InstallBody = parse_json(&body)?;
    let source = if b.source.is_empty() {
        "api".to_owned()
    } else {
        b.source
    };
    let s = c
        .install(
            Install {
                name: b.name,
                definition: crate::compose::Definition {
                    compose: b.compose,
                    env_files: b.env_files,
                },
                source,
                params: b.params,
                files: BTreeMap::new(),
            },
            b.ha,
        )
        .await
        .map_err(api_error)?;
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    crate::meta::validate_name("name", name).map_err(api_error)
}

async fn status(State(c): State<Ctx>, Path(name): Path<String>) -> Result<Response, ApiError> {
    check_name(&name)?;
    let s = c.status(&name).await.map_err(api_error)?;
    Ok(Json(s).into_response())
}

async fn remove(
    State(c): State<Ctx>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    let q = parse_query(raw, &["purge"])?;
    let purge = match query_param(&q, "purge") {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(v) => return Err(ApiError::bad("purge", format!("{v:?}: true or false"))),
    };
    c.remove(&name, purge).await.map_err(api_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn start(State(c): State<Ctx>, Path(name): Path<String>) -> Result<Response, ApiError> {
    check_name(&name)?;
    let r = c.shared.get()?.start(&name).await;
    let s = match r {
        Ok(s) => s,
        Err(e) => return Err(api_error(c.not_for_ha(&name, e).await)),
    };
    Ok(Json(s).into_response())
}

async fn stop(State(c): State<Ctx>, Path(name): Path<String>) -> Result<Response, ApiError> {
    check_name(&name)?;
    let r = c.shared.get()?.stop(&name).await;
    let s = match r {
        Ok(s) => s,
        Err(e) => return Err(api_error(c.not_for_ha(&name, e).await)),
    };
    Ok(Json(s).into_response())
}

async fn restart(State(c): State<Ctx>, Path(name): Path<String>) -> Result<Response, ApiError> {
    check_name(&name)?;
    let r = c.shared.get()?.restart(&name).await;
    let s = match r {
        Ok(s) => s,
        Err(e) => return Err(api_error(c.not_for_ha(&name, e).await)),
    };
    Ok(Json(s).into_response())
}

/// Lines kept by default in `logs`.
const DEFAULT_TAIL: usize = 100;
/// The most lines `logs` returns from the past.
const MAX_TAIL: usize = 10_000;

async fn logs(
    State(c): State<Ctx>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    let q = parse_query(raw, &["tail", "follow", "service"])?;
    let tail = match query_param(&q, "tail") {
        None | Some("") => DEFAULT_TAIL,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= MAX_TAIL)
            .ok_or_else(|| ApiError::bad("tail", format!("{t:?}: 0 to {MAX_TAIL}")))?,
    };
    let follow = match query_param(&q, "follow") {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(v) => return Err(ApiError::bad("follow", format!("{v:?}: true or false"))),
    };
    let service = query_param(&q, "service").filter(|s| !s.is_empty());
    let stream = c
        .shared
        .get()?
        .logs(&name, service, tail, follow)
        .await
        .map_err(api_error)?;
    let body = stream.map(|r| match r {
        Ok(l) => {
            let mut t = l.text;
            if !t.ends_with('\n') {
                t.push('\n');
            }
            Ok::<_, std::io::Error>(Bytes::from(t))
        }
        Err(e) => Err(std::io::Error::other(e.to_string())),
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// A template as `GET /v1/store` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreItem {
    pub id: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    pub architectures: Vec<String>,
    /// Whether it runs on this node's CPU.
    pub runs_here: bool,
    /// `built-in`, a directory or a URL.
    pub source: String,
    /// Served from the offline cache (its URL could not be fetched).
    pub cached: bool,
    pub parameters: Vec<crate::meta::Param>,
    /// Service types it publishes.
    pub publishes: Vec<String>,
}

/// `GET /v1/store`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreList {
    pub templates: Vec<StoreItem>,
    /// Sources or templates that could not be read.
    pub problems: Vec<String>,
}

fn lang_of(q: &[(String, String)]) -> String {
    query_param(q, "lang").unwrap_or("en").to_owned()
}

async fn store_list(State(c): State<Ctx>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q = parse_query(raw, &["category", "all", "lang"])?;
    let all = match query_param(&q, "all") {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(v) => return Err(ApiError::bad("all", format!("{v:?}: true or false"))),
    };
    let category = query_param(&q, "category").filter(|c| !c.is_empty());
    let lang = lang_of(&q);
    let (entries, problems) = c.store.list().await;
    let templates = entries
        .into_iter()
        .filter(|e| all || e.runs_here)
        .filter(|e| category.is_none_or(|c| e.meta.category.eq_ignore_ascii_case(c)))
        .map(|e| StoreItem {
            title: {
                let t = e.meta.title.get(&lang);
                if t.is_empty() {
                    e.id.clone()
                } else {
                    t.to_owned()
                }
            },
            description: e.meta.description.get(&lang).to_owned(),
            category: e.meta.category.clone(),
            version: e.meta.version.clone(),
            icon: e.meta.icon.clone(),
            architectures: e.meta.architectures.clone(),
            runs_here: e.runs_here,
            source: e.source.to_string(),
            cached: e.cached,
            parameters: e.meta.parameters.clone(),
            publishes: e.meta.publish.iter().map(|p| p.stype.clone()).collect(),
            id: e.id,
        })
        .collect();
    Ok(Json(StoreList {
        templates,
        problems,
    })
    .into_response())
}

/// `POST /v1/store/{id}/install`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreInstallBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    /// Run it as an HA app (Swarm services).
    #[serde(default)]
    ha: bool,
}

async fn store_install(
    State(c): State<Ctx>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    crate::meta::validate_name("id", &id).map_err(api_error)?;
    let body = body_bytes(body)?;
    let b: StoreInstallBody = if body.is_empty() {
        StoreInstallBody {
            name: None,
            params: BTreeMap::new(),
            ha: false,
        }
    } else {
        parse_json(&body)?
    };
    c.shared.get()?;
    let e = c.store.find(&id).await.map_err(api_error)?;
    let s = c
        .install(
            Install {
                name: b.name.or(Some(e.id.clone())),
                definition: e.definition,
                source: format!("store:{}", e.id),
                params: b.params,
                files: BTreeMap::new(),
            },
            b.ha,
        )
        .await
        .map_err(api_error)?;
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

/// The longest an upgrade may wait for the new version (seconds).
const MAX_UPGRADE_TIMEOUT: u64 = 3600;

/// `POST /v1/apps/{name}/upgrade`: a new definition and/or parameter
/// values; with neither, the stored definition planned again.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpgradeBody {
    #[serde(default)]
    compose: Option<String>,
    #[serde(default)]
    env_files: BTreeMap<String, String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    /// Seconds the new version has to become healthy.
    #[serde(default)]
    timeout: Option<u64>,
}

async fn upgrade(
    State(c): State<Ctx>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    let body = body_bytes(body)?;
    // An empty body is an upgrade with nothing changed.
    let b: UpgradeBody = if body.iter().all(u8::is_ascii_whitespace) {
        UpgradeBody {
            compose: None,
            env_files: BTreeMap::new(),
            params: BTreeMap::new(),
            timeout: None,
        }
    } else {
        parse_json(&body)?
    };
    let timeout = match b.timeout {
        None => crate::manager::UPGRADE_TIMEOUT,
        Some(t) if (1..=MAX_UPGRADE_TIMEOUT).contains(&t) => Duration::from_secs(t),
        Some(t) => {
            return Err(ApiError::bad(
                "timeout",
                format!("{t}: 1 to {MAX_UPGRADE_TIMEOUT} seconds"),
            ))
        }
    };
    if b.compose.is_none() && !b.env_files.is_empty() {
        return Err(ApiError::bad("env_files", "given without compose"));
    }
    let def = b.compose.map(|compose| crate::compose::Definition {
        compose,
        env_files: b.env_files,
    });
    let m = c.shared.get()?;
    detached(
        async move { m.upgrade(&name, def, b.params, timeout).await },
        StatusCode::OK,
    )
    .await
}

/// How long a long operation's request waits before answering 202: less
/// than the API's request timeout, which would otherwise cut it.
const DETACH_AFTER: Duration = Duration::from_secs(25);

/// Run `op` in its own task, so that it completes even if the request
/// ends (an upgrade or a restore cut midway would leave an app half
/// done); answer its result if it ends within [`DETACH_AFTER`], else 202
/// (the operation goes on; `GET /v1/apps/{name}` tells how it ended).
async fn detached<T: Serialize + Send + 'static>(
    op: impl std::future::Future<Output = Result<T, AppError>> + Send + 'static,
    ok: StatusCode,
) -> Result<Response, ApiError> {
    let mut task = tokio::spawn(op);
    match tokio::time::timeout(DETACH_AFTER, &mut task).await {
        Ok(Ok(r)) => Ok((ok, Json(r.map_err(api_error)?)).into_response()),
        Ok(Err(e)) => Err(ApiError::Internal(format!("the operation's task: {e}"))),
        Err(_) => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "pending": true,
                "message": "still running on the agent; it goes on (GET /v1/apps/{name} tells how it ended)",
            })),
        )
            .into_response()),
    }
}

/// `POST /v1/apps/{name}/backup`: the archive is written on the agent's
/// host, at `path`, by the agent's user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    path: PathBuf,
}

async fn backup(
    State(c): State<Ctx>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    let body = body_bytes(body)?;
    let b: BackupBody = parse_json(&body)?;
    let m = c.shared.get()?;
    detached(
        async move { m.backup(&name, &b.path).await },
        StatusCode::CREATED,
    )
    .await
}

/// `POST /v1/apps/restore`: an archive on the agent's host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    path: PathBuf,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

async fn restore(
    State(c): State<Ctx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let b: RestoreBody = parse_json(&body)?;
    if !b.path.is_absolute() {
        return Err(ApiError::bad("path", "give an absolute path"));
    }
    if let Some(n) = &b.name {
        check_name(n)?;
    }
    let m = c.shared.get()?;
    detached(
        async move { m.restore(&b.path, b.name, b.params).await },
        StatusCode::CREATED,
    )
    .await
}
