//! The apps of this node at run time: the operations (install, start,
//! stop, restart, remove, logs, status) and the reconcile pass that keeps
//! the engine and the community catalog in line with the stored desired
//! state. Engine-agnostic (an [`Engine`]) and catalog-agnostic (a
//! [`Publisher`]), so it is tested against the real Docker Engine without
//! an agent; the component wires it into one.

use crate::compose::{self, Definition};
use crate::driver::{Engine, Health, LogStream, Observed, RunState};
use crate::error::AppError;
use crate::meta::{this_arch, Meta, ParamKind};
use crate::plan::{AppPlan, Proto};
use crate::reconcile::{app_state, Action, AppState, Desired, Reconciler, Want};
use crate::state::{AppRecord, State};
use nuvol_catalog::model::{CheckDef, CheckKind, ServiceDef, Status};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The TXT entry that marks a catalog service as an app's.
pub const APP_TXT: &str = "app";
/// How long a published health check may be critical before the app's
/// container is treated as unhealthy (and restarted by its policy).
pub const CRITICAL_GRACE: Duration = Duration::from_secs(30);
/// How long `stop` lets a container end before the engine kills it.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A boxed future (the trait stays object-safe).
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send + 'a>>;

/// A service of this node in the catalog, as the manager needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub stype: String,
    pub port: u16,
    pub txt: Vec<(String, String)>,
    pub status: Status,
}

/// The community catalog, as the manager uses it.
pub trait Publisher: Send + Sync + 'static {
    fn publish(&self, def: ServiceDef) -> Fut<'_, ()>;
    fn unpublish(&self, stype: String, port: u16) -> Fut<'_, ()>;
    /// This node's services.
    fn local(&self) -> Vec<Published>;
}

/// What to install.
#[derive(Debug, Clone, Default)]
pub struct Install {
    /// Default: the definition's `x-nuvol.id`.
    pub name: Option<String>,
    pub definition: Definition,
    /// Where it came from (shown in lists).
    pub source: String,
    pub params: BTreeMap<String, String>,
    /// Files to place in the app's own directory before it starts
    /// (`./conf` bind mounts), by relative path.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// One app in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSummary {
    pub name: String,
    pub node: String,
    pub state: AppState,
    pub want: Want,
    pub version: String,
    pub source: String,
    #[serde(default)]
    pub title: String,
    /// Why it is failed, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One container of an app, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub service: String,
    pub container: Option<String>,
    pub image: String,
    pub state: Option<RunState>,
    pub health: Option<Health>,
    pub exit_code: Option<i64>,
    pub restarts: u64,
    /// `HOST:CONTAINER/PROTO`.
    pub ports: Vec<String>,
}

/// `nuvol app status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStatus {
    #[serde(flatten)]
    pub summary: AppSummary,
    pub services: Vec<ServiceStatus>,
    /// Catalog services of the app: `TYPE/PORT` and their health.
    pub published: Vec<(String, Status)>,
    /// Parameter values; passwords shown as `********`.
    pub params: BTreeMap<String, String>,
    pub meta: Meta,
}

/// An installed app with what is derived from it.
struct Entry {
    record: AppRecord,
    /// None: the stored definition no longer plans (the reason).
    plan: Result<(AppPlan, Meta), String>,
}

struct Inner {
    node: String,
    apps_dir: PathBuf,
    engine: Arc<dyn Engine>,
    state: State,
    publisher: Option<Arc<dyn Publisher>>,
    apps: Mutex<BTreeMap<String, Entry>>,
    busy: Mutex<BTreeMap<String, &'static str>>,
    reconciler: Mutex<Reconciler>,
    observed: Mutex<Vec<Observed>>,
    critical: Mutex<BTreeMap<(String, u16), Instant>>,
    kick: tokio::sync::Notify,
}

/// The apps of this node. Cheap to clone.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Marks an app busy for as long as it lives.
struct BusyGuard {
    inner: Arc<Inner>,
    name: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        lock(&self.inner.busy).remove(&self.name);
        self.inner.kick.notify_one();
    }
}

fn plan_record(r: &AppRecord) -> Result<(AppPlan, Meta), String> {
    compose::plan(&r.name, &r.definition, &r.params)
        .map(|(p, m, _)| (p, m))
        .map_err(|e| e.to_string())
}

impl Manager {
    /// Open the store in `data_dir` (`apps.redb`, app directories under
    /// `apps/`) and load what is installed. Rows that do not parse and
    /// definitions that no longer plan are logged and kept.
    pub fn open(
        node: &str,
        data_dir: &Path,
        engine: Arc<dyn Engine>,
        publisher: Option<Arc<dyn Publisher>>,
    ) -> Result<Manager, AppError> {
        let state =
            State::open(&data_dir.join("apps.redb")).map_err(|e| AppError::Store(e.to_string()))?;
        let (records, bad) = state.list().map_err(|e| AppError::Store(e.to_string()))?;
        for b in bad {
            tracing::error!(app = %b.key, error = %b.error, "unreadable app in the apps store; kept, not run");
        }
        let mut apps = BTreeMap::new();
        for r in records {
            let plan = plan_record(&r);
            if let Err(e) = &plan {
                tracing::error!(app = %r.name, error = %e, "stored app no longer plans; kept, not run");
            }
            apps.insert(r.name.clone(), Entry { record: r, plan });
        }
        // The first pass after the agent starts adopts (the board or the
        // engine may have restarted meanwhile).
        let mut reconciler = Reconciler::default();
        reconciler.adopt_next();
        Ok(Manager {
            inner: Arc::new(Inner {
                node: node.to_owned(),
                apps_dir: data_dir.join("apps"),
                engine,
                state,
                publisher,
                apps: Mutex::new(apps),
                busy: Mutex::new(BTreeMap::new()),
                reconciler: Mutex::new(reconciler),
                observed: Mutex::new(Vec::new()),
                critical: Mutex::new(BTreeMap::new()),
                kick: tokio::sync::Notify::new(),
            }),
        })
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.inner.engine
    }

    /// The directory of an app's own files (`./` bind mounts, backups).
    pub fn app_dir(&self, name: &str) -> PathBuf {
        self.inner.apps_dir.join(name)
    }

    /// Resolves when an operation asks for a reconcile pass.
    pub async fn kicked(&self) {
        self.inner.kick.notified().await;
    }

    fn busy(&self, name: &str, what: &'static str) -> Result<BusyGuard, AppError> {
        let mut b = lock(&self.inner.busy);
        if let Some(op) = b.get(name) {
            return Err(AppError::Busy(name.to_owned(), (*op).to_owned()));
        }
        b.insert(name.to_owned(), what);
        Ok(BusyGuard {
            inner: self.inner.clone(),
            name: name.to_owned(),
        })
    }

    fn planned(&self, name: &str) -> Result<(AppRecord, AppPlan, Meta), AppError> {
        let apps = lock(&self.inner.apps);
        let e = apps
            .get(name)
            .ok_or_else(|| AppError::NotFound(name.to_owned()))?;
        match &e.plan {
            Ok((p, m)) => Ok((e.record.clone(), p.clone(), m.clone())),
            Err(why) => Err(AppError::Other(format!(
                "{name}'s stored definition no longer plans: {why}"
            ))),
        }
    }

    async fn observed_of(&self, app: &str) -> Result<Vec<Observed>, AppError> {
        Ok(self
            .inner
            .engine
            .list()
            .await?
            .into_iter()
            .filter(|o| o.node == self.inner.node && o.app == app)
            .collect())
    }

    /// Install an app and start it. On any failure nothing of it is left
    /// (containers, networks, new volumes, its directory) and no other app
    /// is touched.
    pub async fn install(&self, req: Install) -> Result<AppSummary, AppError> {
        let (declared, _) = compose::read_meta(&req.definition)?;
        let name = match (&req.name, declared.id.is_empty()) {
            (Some(n), _) => n.clone(),
            (None, false) => declared.id.clone(),
            (None, true) => {
                return Err(AppError::invalid(
                    "name",
                    "the definition has no x-nuvol.id: give a name (--name)",
                ))
            }
        };
        crate::meta::validate_name("name", &name)?;
        let (plan, meta, values) = compose::plan(&name, &req.definition, &req.params)?;
        if !meta.runs_on(this_arch()) {
            return Err(AppError::Arch {
                app: name,
                wants: meta.architectures.join(", "),
                arch: this_arch().to_owned(),
            });
        }
        let _guard = self.busy(&name, "installing")?;
        if lock(&self.inner.apps).contains_key(&name) {
            return Err(AppError::Exists(name));
        }
        self.check_ports(&name, &plan)?;
        for f in req.files.keys() {
            if f.split('/').any(|c| c == ".." || c.is_empty()) || f.starts_with('/') {
                return Err(AppError::invalid(
                    "files",
                    format!("{f:?} is not a relative path"),
                ));
            }
        }
        // Every image first: nothing is created for an app that cannot run.
        for c in &plan.containers {
            if self.inner.engine.image_id(&c.image).await?.is_none() {
                self.inner.engine.pull(&c.image).await?;
            }
        }
        if !self.observed_of(&name).await?.is_empty() {
            return Err(AppError::Other(format!(
                "containers labelled as app {name} exist on this node's engine; remove them first"
            )));
        }
        let dir = self.app_dir(&name);
        let dir_existed = dir.exists();
        let vols_before: BTreeSet<String> = self
            .inner
            .engine
            .volumes(&name)
            .await?
            .into_iter()
            .collect();
        let r = self.bring_up(&name, &plan, &dir, &req.files).await;
        if let Err(e) = r {
            tracing::warn!(app = %name, error = %e, "install failed; removing what it created");
            self.tear_down(&name, &vols_before, !dir_existed).await;
            return Err(e);
        }
        let record = AppRecord {
            name: name.clone(),
            source: req.source.clone(),
            definition: req.definition.clone(),
            params: values,
            want: Want::Running,
            version: meta.version.clone(),
            installed_at: now_secs(),
            previous: None,
        };
        if let Err(e) = self.inner.state.put(&record) {
            self.tear_down(&name, &vols_before, !dir_existed).await;
            return Err(AppError::Store(e.to_string()));
        }
        lock(&self.inner.apps).insert(
            name.clone(),
            Entry {
                record,
                plan: Ok((plan, meta)),
            },
        );
        tracing::info!(app = %name, "installed");
        drop(_guard);
        self.summary(&name).await
    }

    /// Host ports of `plan` taken by another app or by a service this node
    /// publishes that is not one of its apps'.
    fn check_ports(&self, name: &str, plan: &AppPlan) -> Result<(), AppError> {
        let apps = lock(&self.inner.apps);
        for (port, proto, _) in plan.host_ports() {
            for (other, e) in apps.iter().filter(|(n, _)| n.as_str() != name) {
                if let Ok((p, _)) = &e.plan {
                    if p.host_ports()
                        .iter()
                        .any(|(q, pr, _)| *q == port && *pr == proto)
                    {
                        return Err(AppError::PortTaken {
                            port,
                            proto: proto.as_str().into(),
                            by: format!("app {other}"),
                        });
                    }
                }
            }
            if let Some(pb) = &self.inner.publisher {
                if let Some(s) = pb.local().iter().find(|s| {
                    s.port == port && !s.txt.iter().any(|(k, v)| k == APP_TXT && v == name)
                }) {
                    return Err(AppError::PortTaken {
                        port,
                        proto: proto.as_str().into(),
                        by: format!("the {} service this node publishes", s.stype),
                    });
                }
            }
        }
        Ok(())
    }

    async fn bring_up(
        &self,
        name: &str,
        plan: &AppPlan,
        dir: &Path,
        files: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(), AppError> {
        let e = &self.inner.engine;
        std::fs::create_dir_all(dir)
            .map_err(|err| AppError::Other(format!("cannot create {}: {err}", dir.display())))?;
        for (rel, bytes) in files {
            let p = dir.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(|err| {
                    AppError::Other(format!("cannot create {}: {err}", parent.display()))
                })?;
            }
            std::fs::write(&p, bytes)
                .map_err(|err| AppError::Other(format!("cannot write {}: {err}", p.display())))?;
        }
        for n in &plan.networks {
            e.ensure_network(name, n).await?;
        }
        for v in &plan.volumes {
            e.ensure_volume(name, v).await?;
        }
        let order = plan.order()?;
        let mut ids = Vec::new();
        for c in &order {
            ids.push(e.create(name, c, dir).await?);
        }
        for id in &ids {
            e.start(id).await?;
        }
        Ok(())
    }

    /// Remove an app's containers and networks, the volumes not in `keep`
    /// (all of them when `keep` is None: --purge), and its directory.
    async fn tear_down(&self, name: &str, keep: &BTreeSet<String>, remove_dir: bool) {
        let e = &self.inner.engine;
        match self.observed_of(name).await {
            Ok(list) => {
                for o in list {
                    if let Err(err) = e.remove(&o.id).await {
                        tracing::warn!(app = %name, container = %o.id, error = %err, "cannot remove container");
                    }
                }
            }
            Err(err) => tracing::warn!(app = %name, error = %err, "cannot list containers"),
        }
        if let Ok(nets) = e.networks(name).await {
            for n in nets {
                if let Err(err) = e.remove_network(&n).await {
                    tracing::warn!(app = %name, network = %n, error = %err, "cannot remove network");
                }
            }
        }
        if let Ok(vols) = e.volumes(name).await {
            for v in vols.into_iter().filter(|v| !keep.contains(v)) {
                if let Err(err) = e.remove_volume(&v).await {
                    tracing::warn!(app = %name, volume = %v, error = %err, "cannot remove volume");
                }
            }
        }
        if remove_dir {
            let dir = self.app_dir(name);
            if let Err(err) = std::fs::remove_dir_all(&dir) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %err, "cannot remove app directory");
                }
            }
        }
    }

    async fn set_want(&self, name: &str, want: Want) -> Result<AppRecord, AppError> {
        let mut r = self.planned(name)?.0;
        if r.want != want {
            r.want = want;
            self.inner
                .state
                .put(&r)
                .map_err(|e| AppError::Store(e.to_string()))?;
            if let Some(e) = lock(&self.inner.apps).get_mut(name) {
                e.record.want = want;
            }
        }
        Ok(r)
    }

    /// Start an app (and keep it running).
    pub async fn start(&self, name: &str) -> Result<AppSummary, AppError> {
        let guard = self.busy(name, "starting")?;
        self.set_want(name, Want::Running).await?;
        let (_, plan, _) = self.planned(name)?;
        let observed = self.observed_of(name).await?;
        for c in plan.order()? {
            let h = c.hash();
            if let Some(o) = observed
                .iter()
                .find(|o| o.service == c.service && o.spec == h)
            {
                match o.state {
                    RunState::Running | RunState::Restarting => {}
                    RunState::Paused => self.inner.engine.unpause(&o.id).await?,
                    _ => self.inner.engine.start(&o.id).await?,
                }
            }
        }
        // Missing containers are the reconciler's to create.
        drop(guard);
        self.reconcile().await?;
        self.summary(name).await
    }

    /// Stop an app (and keep it stopped, across restarts).
    pub async fn stop(&self, name: &str) -> Result<AppSummary, AppError> {
        let guard = self.busy(name, "stopping")?;
        self.set_want(name, Want::Stopped).await?;
        let (_, plan, _) = self.planned(name)?;
        let observed = self.observed_of(name).await?;
        // Dependents first.
        for c in plan.order()?.iter().rev() {
            for o in observed.iter().filter(|o| o.service == c.service) {
                if matches!(
                    o.state,
                    RunState::Running | RunState::Restarting | RunState::Paused
                ) {
                    self.inner.engine.stop(&o.id, stop_timeout(c)).await?;
                }
            }
        }
        drop(guard);
        self.reconcile().await?;
        self.summary(name).await
    }

    /// Restart every container of a running app, in dependency order.
    pub async fn restart(&self, name: &str) -> Result<AppSummary, AppError> {
        let guard = self.busy(name, "restarting")?;
        self.set_want(name, Want::Running).await?;
        let (_, plan, _) = self.planned(name)?;
        let observed = self.observed_of(name).await?;
        for c in plan.order()? {
            let h = c.hash();
            if let Some(o) = observed
                .iter()
                .find(|o| o.service == c.service && o.spec == h)
            {
                self.inner.engine.restart(&o.id, stop_timeout(c)).await?;
            }
        }
        drop(guard);
        self.reconcile().await?;
        self.summary(name).await
    }

    /// Remove an app: its containers and networks, and its catalog
    /// services. Volumes and its directory stay unless `purge`.
    pub async fn remove(&self, name: &str, purge: bool) -> Result<(), AppError> {
        let guard = self.busy(name, "removing")?;
        if !lock(&self.inner.apps).contains_key(name) {
            return Err(AppError::NotFound(name.to_owned()));
        }
        // Forget it first: a crash midway leaves strays the reconciler
        // removes, never an app that comes back.
        self.inner
            .state
            .remove(name)
            .map_err(|e| AppError::Store(e.to_string()))?;
        lock(&self.inner.apps).remove(name);
        let keep: BTreeSet<String> = if purge {
            BTreeSet::new()
        } else {
            self.inner
                .engine
                .volumes(name)
                .await
                .unwrap_or_default()
                .into_iter()
                .collect()
        };
        self.tear_down(name, &keep, purge).await;
        self.sync_catalog().await;
        tracing::info!(app = %name, purge, "removed");
        drop(guard);
        Ok(())
    }

    /// Log lines of the app's main service (or `service`).
    pub async fn logs(
        &self,
        name: &str,
        service: Option<&str>,
        tail: usize,
        follow: bool,
    ) -> Result<LogStream, AppError> {
        let (_, plan, _) = self.planned(name)?;
        let svc = service.unwrap_or(&plan.main).to_owned();
        let spec = plan
            .container(&svc)
            .ok_or_else(|| AppError::invalid("service", format!("{name} has no service {svc}")))?;
        let h = spec.hash();
        let observed = self.observed_of(name).await?;
        let o = observed
            .iter()
            .find(|o| o.service == svc && o.spec == h)
            .ok_or_else(|| AppError::Other(format!("{name}/{svc} has no container yet")))?;
        self.inner.engine.logs(&o.id, tail, follow).await
    }

    fn state_of(&self, name: &str, observed: &[Observed]) -> (AppState, Option<String>) {
        if let Some(op) = lock(&self.inner.busy).get(name) {
            match *op {
                "installing" => return (AppState::Installing, None),
                "upgrading" => return (AppState::Upgrading, None),
                _ => {}
            }
        }
        let apps = lock(&self.inner.apps);
        match apps.get(name) {
            None => (AppState::Failed, Some("not installed".into())),
            Some(Entry { plan: Err(e), .. }) => (AppState::Failed, Some(e.clone())),
            Some(Entry {
                plan: Ok((p, _)),
                record,
            }) => (app_state(p, record.want, observed), None),
        }
    }

    async fn summary(&self, name: &str) -> Result<AppSummary, AppError> {
        let observed = self.observed_of(name).await?;
        let (state, error) = self.state_of(name, &observed);
        let apps = lock(&self.inner.apps);
        let e = apps
            .get(name)
            .ok_or_else(|| AppError::NotFound(name.to_owned()))?;
        Ok(self.summary_of(e, state, error))
    }

    fn summary_of(&self, e: &Entry, state: AppState, error: Option<String>) -> AppSummary {
        AppSummary {
            name: e.record.name.clone(),
            node: self.inner.node.clone(),
            state,
            want: e.record.want,
            version: e.record.version.clone(),
            source: e.record.source.clone(),
            title: e
                .plan
                .as_ref()
                .map(|(_, m)| m.title.get("en").to_owned())
                .unwrap_or_default(),
            error,
        }
    }

    /// Every app of this node, from the last reconcile pass's view of the
    /// engine (no engine call).
    pub fn list(&self) -> Vec<AppSummary> {
        let observed = lock(&self.inner.observed).clone();
        let names: Vec<String> = lock(&self.inner.apps).keys().cloned().collect();
        let mut out = Vec::new();
        for n in names {
            let (state, error) = self.state_of(&n, &observed);
            if let Some(e) = lock(&self.inner.apps).get(&n) {
                out.push(self.summary_of(e, state, error));
            }
        }
        out
    }

    /// Everything about one app, with a fresh look at the engine.
    pub async fn status(&self, name: &str) -> Result<AppStatus, AppError> {
        let observed = self.observed_of(name).await?;
        let summary = self.summary(name).await?;
        let (record, plan, meta) = self.planned(name)?;
        let services = plan
            .containers
            .iter()
            .map(|c| {
                let h = c.hash();
                let o = observed
                    .iter()
                    .find(|o| o.service == c.service && o.spec == h);
                ServiceStatus {
                    service: c.service.clone(),
                    container: o.map(|o| o.id.chars().take(12).collect()),
                    image: c.image.clone(),
                    state: o.map(|o| o.state),
                    health: o.map(|o| o.health),
                    exit_code: o.and_then(|o| o.exit_code),
                    restarts: o.map_or(0, |o| o.restart_count),
                    ports: c
                        .ports
                        .iter()
                        .map(|p| format!("{}:{}/{}", p.host, p.container, p.proto.as_str()))
                        .collect(),
                }
            })
            .collect();
        let published = self
            .inner
            .publisher
            .as_ref()
            .map(|pb| {
                pb.local()
                    .into_iter()
                    .filter(|s| s.txt.iter().any(|(k, v)| k == APP_TXT && v == name))
                    .map(|s| (format!("{}/{}", s.stype, s.port), s.status))
                    .collect()
            })
            .unwrap_or_default();
        let params = record
            .params
            .iter()
            .map(|(k, v)| {
                let secret = meta
                    .parameters
                    .iter()
                    .any(|p| &p.name == k && p.kind == ParamKind::Password);
                (
                    k.clone(),
                    if secret { "********".into() } else { v.clone() },
                )
            })
            .collect();
        Ok(AppStatus {
            summary,
            services,
            published,
            params,
            meta,
        })
    }

    /// One reconcile pass: look at the engine, act, publish what runs and
    /// unpublish what does not. Returns the actions taken.
    pub async fn reconcile(&self) -> Result<Vec<Action>, AppError> {
        let listed = match self.inner.engine.list().await {
            Ok(l) => l,
            Err(e) => {
                // The engine may be restarting: adopt when it is back.
                lock(&self.inner.reconciler).adopt_next();
                return Err(e);
            }
        };
        let mut observed: Vec<Observed> = listed
            .into_iter()
            .filter(|o| o.node == self.inner.node)
            .collect();
        self.overlay_catalog_health(&mut observed);
        let busy: BTreeSet<String> = lock(&self.inner.busy).keys().cloned().collect();
        let entries: Vec<(AppPlan, Want)> = lock(&self.inner.apps)
            .values()
            .filter_map(|e| {
                e.plan
                    .as_ref()
                    .ok()
                    .map(|(p, _)| (p.clone(), e.record.want))
            })
            .collect();
        // Apps whose definition no longer plans are kept as they are.
        let broken: BTreeSet<String> = lock(&self.inner.apps)
            .values()
            .filter(|e| e.plan.is_err())
            .map(|e| e.record.name.clone())
            .collect();
        let busy: BTreeSet<String> = busy.union(&broken).cloned().collect();
        let desired: Vec<Desired> = entries
            .iter()
            .map(|(p, w)| Desired { plan: p, want: *w })
            .collect();
        let actions = lock(&self.inner.reconciler).plan(Instant::now(), &desired, &observed, &busy);
        for a in &actions {
            if let Err(e) = self.apply(a, &entries).await {
                tracing::warn!(action = ?a, error = %e, "reconcile action failed");
            } else {
                tracing::info!(action = ?a, "reconciled");
            }
        }
        if !actions.is_empty() {
            observed = self
                .inner
                .engine
                .list()
                .await?
                .into_iter()
                .filter(|o| o.node == self.inner.node)
                .collect();
        }
        *lock(&self.inner.observed) = observed;
        self.sync_catalog().await;
        Ok(actions)
    }

    async fn apply(&self, a: &Action, entries: &[(AppPlan, Want)]) -> Result<(), AppError> {
        let e = &self.inner.engine;
        match a {
            Action::EnsureNetwork { app, net } => e.ensure_network(app, net).await,
            Action::EnsureVolume { app, vol } => e.ensure_volume(app, vol).await,
            Action::Create { app, service } => {
                let Some((p, _)) = entries.iter().find(|(p, _)| &p.app == app) else {
                    return Ok(());
                };
                let Some(spec) = p.container(service) else {
                    return Ok(());
                };
                let dir = self.app_dir(app);
                std::fs::create_dir_all(&dir).map_err(|err| {
                    AppError::Other(format!("cannot create {}: {err}", dir.display()))
                })?;
                e.create(app, spec, &dir).await.map(|_| ())
            }
            Action::Start { id, .. } => e.start(id).await,
            Action::Unpause { id, .. } => e.unpause(id).await,
            Action::Stop { id, .. } => e.stop(id, STOP_TIMEOUT).await,
            Action::Restart { id, .. } => e.restart(id, STOP_TIMEOUT).await,
            Action::Remove { id, .. } => e.remove(id).await,
        }
    }

    /// A published check critical for [`CRITICAL_GRACE`] makes its
    /// service's container unhealthy for the reconciler.
    fn overlay_catalog_health(&self, observed: &mut [Observed]) {
        let Some(pb) = &self.inner.publisher else {
            return;
        };
        let now = Instant::now();
        let local = pb.local();
        let mut crit = lock(&self.inner.critical);
        let mut seen = BTreeSet::new();
        let apps = lock(&self.inner.apps);
        for s in &local {
            let Some(app) = s.txt.iter().find(|(k, _)| k == APP_TXT).map(|(_, v)| v) else {
                continue;
            };
            let key = (app.clone(), s.port);
            if s.status != Status::Critical {
                continue;
            }
            seen.insert(key.clone());
            let since = *crit.entry(key).or_insert(now);
            if now.saturating_duration_since(since) < CRITICAL_GRACE {
                continue;
            }
            let Some(Entry {
                plan: Ok((plan, meta)),
                ..
            }) = apps.get(app)
            else {
                continue;
            };
            let service = meta
                .publish
                .iter()
                .find(|p| p.port == s.port)
                .and_then(|p| p.service.clone())
                .unwrap_or_else(|| plan.main.clone());
            for o in observed
                .iter_mut()
                .filter(|o| &o.app == app && o.service == service && o.state == RunState::Running)
            {
                o.health = Health::Unhealthy;
            }
        }
        crit.retain(|k, _| seen.contains(k));
    }

    /// The catalog services apps should have now: those of apps that
    /// should run and whose containers are up.
    fn wanted_services(&self) -> Vec<ServiceDef> {
        let observed = lock(&self.inner.observed).clone();
        let apps = lock(&self.inner.apps);
        let busy = lock(&self.inner.busy).clone();
        let mut out = Vec::new();
        for (name, e) in apps.iter() {
            let Ok((plan, meta)) = &e.plan else { continue };
            if e.record.want != Want::Running || busy.contains_key(name) {
                continue;
            }
            let st = app_state(plan, e.record.want, &observed);
            if !matches!(
                st,
                AppState::Running | AppState::Unhealthy | AppState::Starting
            ) {
                continue;
            }
            for p in &meta.publish {
                let proto = plan
                    .host_ports()
                    .iter()
                    .find(|(port, _, _)| *port == p.port)
                    .map_or(Proto::Tcp, |(_, pr, _)| *pr);
                let mut txt: Vec<(String, String)> =
                    p.txt.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                txt.retain(|(k, _)| k != APP_TXT);
                txt.push((APP_TXT.to_owned(), name.clone()));
                let checks = if !p.checks.is_empty() {
                    p.checks.clone()
                } else if proto == Proto::Tcp {
                    vec![CheckDef {
                        kind: CheckKind::Tcp {
                            addr: format!("127.0.0.1:{}", p.port),
                        },
                        interval: Duration::from_secs(10),
                        timeout: Duration::from_secs(2),
                    }]
                } else {
                    Vec::new()
                };
                out.push(ServiceDef {
                    stype: p.stype.clone(),
                    description: p
                        .description
                        .clone()
                        .filter(|d| !d.trim().is_empty())
                        .unwrap_or_else(|| {
                            let t = meta.title.get("en");
                            if t.is_empty() {
                                name.clone()
                            } else {
                                t.to_owned()
                            }
                        }),
                    port: p.port,
                    txt,
                    checks,
                });
            }
        }
        out
    }

    /// Publish what runs, unpublish what does not (only services marked
    /// as apps').
    async fn sync_catalog(&self) {
        let Some(pb) = self.inner.publisher.clone() else {
            return;
        };
        let wanted = self.wanted_services();
        let local = pb.local();
        let busy = lock(&self.inner.busy).clone();
        for s in &local {
            let Some(app) = s.txt.iter().find(|(k, _)| k == APP_TXT).map(|(_, v)| v) else {
                continue;
            };
            if busy.contains_key(app) {
                continue;
            }
            if !wanted
                .iter()
                .any(|w| w.stype == s.stype && w.port == s.port)
            {
                match pb.unpublish(s.stype.clone(), s.port).await {
                    Ok(()) => {
                        tracing::info!(app = %app, service = %format!("{}/{}", s.stype, s.port), "unpublished")
                    }
                    Err(e) => tracing::warn!(app = %app, error = %e, "cannot unpublish"),
                }
            }
        }
        for w in wanted {
            let same = local
                .iter()
                .any(|s| s.stype == w.stype && s.port == w.port && s.txt == w.txt);
            if same {
                continue;
            }
            let what = format!("{}/{}", w.stype, w.port);
            match pb.publish(w).await {
                Ok(()) => tracing::info!(service = %what, "published"),
                Err(e) => tracing::warn!(service = %what, error = %e, "cannot publish"),
            }
        }
    }
}

fn stop_timeout(c: &crate::plan::ContainerSpec) -> Duration {
    c.stop_timeout.unwrap_or(STOP_TIMEOUT)
}
