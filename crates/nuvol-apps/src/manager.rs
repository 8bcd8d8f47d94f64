//! The apps of this node at run time: the operations (install, start,
//! stop, restart, remove, logs, status) and the reconcile pass that keeps
//! the engine and the community catalog in line with the stored desired
//! state. Engine-agnostic (an [`Engine`]) and catalog-agnostic (a
//! [`Publisher`]), so it is tested against the real Docker Engine without
//! an agent; the component wires it into one.

use crate::backup::{self, BackupInfo, ImageRef, Manifest, Unpacked};
use crate::compose::{self, Definition};
use crate::driver::{Engine, Health, LogStream, Observed, RunState};
use crate::error::AppError;
use crate::meta::{this_arch, Meta, ParamKind};
use crate::plan::{AppPlan, ContainerSpec, Driver, Mount, MountSource, Proto, RestartPolicy};
use crate::reconcile::{app_state, Action, AppState, Desired, Reconciler, Want};
use crate::state::{AppRecord, Previous, State};
use nuvol_catalog::model::{CheckDef, CheckKind, ServiceDef, Status};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The TXT entry that marks a catalog service as an app's.
pub const APP_TXT: &str = nuvol_catalog::model::APP_TXT;
/// How long a published health check may be critical before the app's
/// container is treated as unhealthy (and restarted by its policy).
pub const CRITICAL_GRACE: Duration = Duration::from_secs(30);
/// How long `stop` lets a container end before the engine kills it.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an upgrade waits for the new version to be healthy.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often an upgrade looks at the new containers while it waits.
const HEALTH_POLL: Duration = Duration::from_millis(500);
/// Where the temporary container of a backup or a restore mounts the
/// app's volumes (one directory per volume key).
pub(crate) const VOLUMES_MOUNT: &str = "/nuvol-volumes";
/// Names a route shadows: `restore` is a route of the REST API, `store` a page of the dashboard
/// (`/apps/store`).
const RESERVED_NAMES: &[&str] = &["restore", "store"];

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
    /// An HA app (Swarm services, see `crate::ha`): `node` is then the
    /// nodes running its tasks, comma-separated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ha: bool,
    /// The nodes running an HA app's tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
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
    /// What the engine says of it besides its state (a process run
    /// without its limits, one the kernel killed for memory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
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
    /// How the last upgrade since the agent started ended (a client whose
    /// request outlived the API's timeout finds the result here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_upgrade: Option<Outcome>,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Seconds since the Unix epoch, when it started.
    pub started_at: u64,
    pub ok: bool,
    /// The error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
    /// A driver was unreachable in a pass (adopt when all are back).
    was_down: Mutex<bool>,
    critical: Mutex<BTreeMap<(String, u16), Instant>>,
    kick: tokio::sync::Notify,
    last_upgrade: Mutex<BTreeMap<String, Outcome>>,
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
        .map(|(p, m, _)| (pin(p, &r.pinned), m))
        .map_err(|e| e.to_string())
}

/// The plan with the pinned services' images replaced by their ids: what
/// the containers are created from, so their spec hash is the stored
/// record's.
fn pin(mut plan: AppPlan, pinned: &BTreeMap<String, String>) -> AppPlan {
    for c in &mut plan.containers {
        if let Some(id) = pinned.get(&c.service) {
            c.image = id.clone();
        }
    }
    plan
}

/// A container that is created, never started, to reach an app's volumes
/// through the engine's archive API (which works on stopped containers):
/// every named volume of `plan` mounted at `VOLUMES_MOUNT/KEY`, no
/// network, no ports.
fn volumes_container(plan: &AppPlan, what: &str) -> Option<ContainerSpec> {
    let base = plan
        .container(&plan.main)
        .or_else(|| plan.containers.first())?;
    let mounts = plan
        .volumes
        .iter()
        .map(|v| Mount {
            source: MountSource::Volume(v.name.clone()),
            target: format!("{VOLUMES_MOUNT}/{}", v.key),
            read_only: false,
        })
        .collect();
    Some(ContainerSpec {
        // Not a Compose service name (those cannot hold "--"), so never
        // mistaken for one of the app's containers.
        service: format!("--{what}"),
        name: format!("nuvol-{}--{what}", plan.app),
        image: base.image.clone(),
        // Never run; an entrypoint is given for images without one.
        command: None,
        entrypoint: Some(vec!["/nuvol-not-run".into()]),
        env: Vec::new(),
        ports: Vec::new(),
        mounts,
        networks: Vec::new(),
        aliases: Vec::new(),
        network_mode: Some("none".into()),
        restart: RestartPolicy::No,
        health: None,
        labels: BTreeMap::new(),
        depends_on: Vec::new(),
        memory: None,
        nano_cpus: None,
        user: None,
        working_dir: None,
        hostname: None,
        stop_signal: None,
        stop_timeout: None,
        cap_add: Vec::new(),
        cap_drop: Vec::new(),
        read_only: false,
        init: false,
        tty: false,
        extra_hosts: Vec::new(),
    })
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> AppError {
    AppError::Other(format!("{what} {}: {e}", path.display()))
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
                was_down: Mutex::new(false),
                critical: Mutex::new(BTreeMap::new()),
                kick: tokio::sync::Notify::new(),
                last_upgrade: Mutex::new(BTreeMap::new()),
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

    /// The engine of a driver (the router's part, else the one engine).
    fn eng(&self, d: Driver) -> &dyn Engine {
        self.inner.engine.part(d).unwrap_or(&*self.inner.engine)
    }

    /// The driver of an installed app (Docker for one that does not plan).
    fn driver_of(&self, app: &str) -> Driver {
        lock(&self.inner.apps)
            .get(app)
            .and_then(|e| e.plan.as_ref().ok().map(|(p, _)| p.driver()))
            .unwrap_or_default()
    }

    /// Every labelled container (or process) of this engine, each
    /// driver's listed on its own: a driver that cannot be reached is
    /// in the second list with its error, the others' are there.
    async fn list_parts(&self) -> (Vec<Observed>, Vec<(Driver, AppError)>) {
        let e = &self.inner.engine;
        let parts: Vec<(Driver, &dyn Engine)> =
            match (e.part(Driver::Docker), e.part(Driver::Process)) {
                (Some(d), Some(p)) => vec![(Driver::Process, p), (Driver::Docker, d)],
                _ => vec![(Driver::Docker, &**e)],
            };
        let mut listed = Vec::new();
        let mut down = Vec::new();
        for (d, part) in parts {
            match part.list().await {
                Ok(l) => listed.extend(l.into_iter().filter(|o| o.node == self.inner.node)),
                Err(err) => down.push((d, err)),
            }
        }
        (listed, down)
    }

    async fn observed_of(&self, app: &str) -> Result<Vec<Observed>, AppError> {
        self.observed_in(self.driver_of(app), app).await
    }

    async fn observed_in(&self, d: Driver, app: &str) -> Result<Vec<Observed>, AppError> {
        Ok(self
            .eng(d)
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
        self.install_with(req, None, BTreeMap::new()).await
    }

    /// `install`, and for a restore: the volumes and the app directory
    /// filled from `fill` before the containers start, and services
    /// `pinned` to image ids.
    async fn install_with(
        &self,
        req: Install,
        fill: Option<&Unpacked>,
        pinned: BTreeMap<String, String>,
    ) -> Result<AppSummary, AppError> {
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
        if RESERVED_NAMES.contains(&name.as_str()) {
            return Err(AppError::invalid(
                "name",
                format!("{name:?} is reserved (a route of the REST API or the dashboard)"),
            ));
        }
        let (plan, meta, values) = compose::plan(&name, &req.definition, &req.params)?;
        let plan = pin(plan, &pinned);
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
        // Every image (or program) first: nothing is created for an app
        // that cannot run.
        let driver = plan.driver();
        let eng = self.eng(driver);
        for c in &plan.containers {
            if eng.image_id(&c.image).await?.is_none() {
                eng.pull(&c.image).await?;
            }
        }
        if !self.observed_in(driver, &name).await?.is_empty() {
            return Err(AppError::Other(format!(
                "containers labelled as app {name} exist on this node's engine; remove them first"
            )));
        }
        let dir = self.app_dir(&name);
        let dir_existed = dir.exists();
        let vols_before: BTreeSet<String> = eng.volumes(&name).await?.into_iter().collect();
        let r = self.bring_up(&name, &plan, &dir, &req.files, fill).await;
        if let Err(e) = r {
            tracing::warn!(app = %name, error = %e, "install failed; removing what it created");
            self.tear_down(&name, &vols_before, !dir_existed, driver)
                .await;
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
            pinned,
        };
        if let Err(e) = self.inner.state.put(&record) {
            self.tear_down(&name, &vols_before, !dir_existed, driver)
                .await;
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
        fill: Option<&Unpacked>,
    ) -> Result<(), AppError> {
        let e = self.eng(plan.driver());
        if let Some(staged) = fill.and_then(|f| f.app_dir.as_deref()) {
            // The staging directory is on the same file system (under the
            // apps directory): a rename, not a copy.
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|err| io_error("cannot create", parent, err))?;
            }
            std::fs::rename(staged, dir).map_err(|err| io_error("cannot restore", dir, err))?;
        }
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
        if let Some(f) = fill {
            self.fill_volumes(name, plan, dir, f).await?;
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
    async fn tear_down(
        &self,
        name: &str,
        keep: &BTreeSet<String>,
        remove_dir: bool,
        driver: Driver,
    ) {
        let e = self.eng(driver);
        match self.observed_in(driver, name).await {
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
        let driver = self.driver_of(name);
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
            self.eng(driver)
                .volumes(name)
                .await
                .unwrap_or_default()
                .into_iter()
                .collect()
        };
        self.tear_down(name, &keep, purge, driver).await;
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
            ha: false,
            nodes: Vec::new(),
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
                    notes: o
                        .map(|o| self.inner.engine.notes(&o.id))
                        .unwrap_or_default(),
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
            last_upgrade: lock(&self.inner.last_upgrade).get(name).cloned(),
        })
    }

    /// One reconcile pass: look at the engine, act, publish what runs and
    /// unpublish what does not. Returns the actions taken.
    pub async fn reconcile(&self) -> Result<Vec<Action>, AppError> {
        let (listed, down) = self.list_parts().await;
        let all_down = listed.is_empty()
            && !down.is_empty()
            && self.inner.engine.part(Driver::Process).is_none();
        if !down.is_empty() {
            // The engine may be restarting: adopt when it is back (not
            // while it is down: adopting ignores backoffs, and the other
            // driver's apps keep theirs).
            *lock(&self.inner.was_down) = true;
        } else if std::mem::take(&mut *lock(&self.inner.was_down)) {
            lock(&self.inner.reconciler).adopt_next();
        }
        if all_down {
            if let Some((_, e)) = down.into_iter().next() {
                return Err(e);
            }
            return Ok(Vec::new());
        }
        let down_drivers: BTreeSet<&'static str> = down.iter().map(|(d, _)| d.as_str()).collect();
        let mut observed: Vec<Observed> = listed;
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
        // Apps of a driver that cannot be reached are left as they are.
        let unreachable: BTreeSet<String> = entries
            .iter()
            .filter(|(p, _)| down_drivers.contains(p.driver().as_str()))
            .map(|(p, _)| p.app.clone())
            .collect();
        let busy: BTreeSet<String> = busy
            .union(&broken)
            .cloned()
            .chain(unreachable.iter().cloned())
            .collect();
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
            observed = self.list_parts().await.0;
        }
        *lock(&self.inner.observed) = observed;
        self.sync_catalog().await;
        // A driver that is down is an error only when apps need it.
        if !unreachable.is_empty() {
            if let Some((_, e)) = down.into_iter().next() {
                return Err(e);
            }
        }
        Ok(actions)
    }

    async fn apply(&self, a: &Action, entries: &[(AppPlan, Want)]) -> Result<(), AppError> {
        // Ids name their engine (the router routes them); what is created
        // goes to the app's driver.
        let e = &self.inner.engine;
        let made = self.eng(
            entries
                .iter()
                .find(|(p, _)| p.app == a.app())
                .map_or(Driver::Docker, |(p, _)| p.driver()),
        );
        match a {
            Action::EnsureNetwork { app, net } => made.ensure_network(app, net).await,
            Action::EnsureVolume { app, vol } => made.ensure_volume(app, vol).await,
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
                made.create(app, spec, &dir).await.map(|_| ())
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
            out.extend(publish_defs(name, plan, meta).into_iter().map(|(_, d)| d));
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
            // HA apps' entries are the HA publisher's (crate::ha).
            if s.txt.iter().any(|(k, _)| k == crate::ha::HA_TXT) {
                continue;
            }
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

/// The catalog entries of an app's `x-nuvol.publish`, each with the
/// Compose service behind it: TXT `app=NAME` added, the default TCP check
/// when none is given, the title (else the name) as description.
pub(crate) fn publish_defs(name: &str, plan: &AppPlan, meta: &Meta) -> Vec<(String, ServiceDef)> {
    let mut out = Vec::new();
    for p in &meta.publish {
        let proto = plan
            .host_ports()
            .iter()
            .find(|(port, _, _)| *port == p.port)
            .map_or(Proto::Tcp, |(_, pr, _)| *pr);
        let mut txt: Vec<(String, String)> =
            p.txt.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        txt.retain(|(k, _)| k != APP_TXT);
        txt.push((APP_TXT.to_owned(), name.to_owned()));
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
        out.push((
            p.service.clone().unwrap_or_else(|| plan.main.clone()),
            ServiceDef {
                stype: p.stype.clone(),
                description: p
                    .description
                    .clone()
                    .filter(|d| !d.trim().is_empty())
                    .unwrap_or_else(|| {
                        let t = meta.title.get("en");
                        if t.is_empty() {
                            name.to_owned()
                        } else {
                            t.to_owned()
                        }
                    }),
                port: p.port,
                txt,
                checks,
            },
        ));
    }
    out
}

fn stop_timeout(c: &crate::plan::ContainerSpec) -> Duration {
    c.stop_timeout.unwrap_or(STOP_TIMEOUT)
}

/// Upgrades with rollback, backups and restores.
impl Manager {
    /// Store `r` (committed) and what it plans to.
    fn put_record(
        &self,
        r: &AppRecord,
        plan: Result<(AppPlan, Meta), String>,
    ) -> Result<(), AppError> {
        self.inner
            .state
            .put(r)
            .map_err(|e| AppError::Store(e.to_string()))?;
        lock(&self.inner.apps).insert(
            r.name.clone(),
            Entry {
                record: r.clone(),
                plan,
            },
        );
        Ok(())
    }

    /// Upgrade an app to a new definition and/or parameter values (with
    /// neither: the stored definition planned again, e.g. a tag that now
    /// names another local image). The new version must be healthy
    /// within `timeout`, else the old one is brought back and the error
    /// says why. Volumes are never touched.
    pub async fn upgrade(
        &self,
        name: &str,
        new: Option<Definition>,
        set: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<AppSummary, AppError> {
        let started_at = now_secs();
        let r = self.upgrade_inner(name, new, set, timeout).await;
        // Busy and not found are not upgrades that ended.
        if !matches!(r, Err(AppError::Busy(..) | AppError::NotFound(_))) {
            lock(&self.inner.last_upgrade).insert(
                name.to_owned(),
                Outcome {
                    started_at,
                    ok: r.is_ok(),
                    error: r.as_ref().err().map(ToString::to_string),
                },
            );
        }
        r
    }

    async fn upgrade_inner(
        &self,
        name: &str,
        new: Option<Definition>,
        set: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<AppSummary, AppError> {
        let guard = self.busy(name, "upgrading")?;
        let (record, old_plan, old_meta) = self.planned(name)?;
        let definition = new.unwrap_or_else(|| record.definition.clone());
        // The values kept are those of parameters the new version still
        // declares; `set` overrides them.
        let (declared, _) = compose::read_meta(&definition)?;
        let mut given: BTreeMap<String, String> = record
            .params
            .iter()
            .filter(|(k, _)| declared.parameters.iter().any(|p| &p.name == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        given.extend(set);
        let (plan, meta, values) = compose::plan(name, &definition, &given)?;
        if !meta.runs_on(this_arch()) {
            return Err(AppError::Arch {
                app: name.to_owned(),
                wants: meta.architectures.join(", "),
                arch: this_arch().to_owned(),
            });
        }
        self.check_ports(name, &plan)?;
        for c in &plan.containers {
            if self.inner.engine.image_id(&c.image).await?.is_none() {
                self.inner.engine.pull(&c.image).await?;
            }
        }
        // The image each service runs now, by id: a rollback runs these
        // very images even if their tags move meanwhile.
        let observed = self.observed_of(name).await?;
        let mut images = BTreeMap::new();
        for c in &old_plan.containers {
            let h = c.hash();
            let id = match observed
                .iter()
                .find(|o| o.service == c.service && o.spec == h && !o.image_id.is_empty())
            {
                Some(o) => Some(o.image_id.clone()),
                None => self.inner.engine.image_id(&c.image).await?,
            };
            if let Some(id) = id {
                images.insert(c.service.clone(), id);
            }
        }
        let previous = Previous {
            definition: record.definition.clone(),
            params: record.params.clone(),
            version: record.version.clone(),
            images,
        };
        // Recorded before any container is touched. The record stays at
        // the old version until the new one is healthy: an agent that dies
        // midway comes back to the old version, never to an unchecked new
        // one.
        let mut marked = record.clone();
        marked.previous = Some(previous.clone());
        self.put_record(&marked, Ok((old_plan.clone(), old_meta)))?;
        tracing::info!(app = %name, from = %record.version, to = %meta.version, "upgrading");
        let run = record.want == Want::Running;
        let attempt = async {
            self.converge(name, &old_plan, &plan, run).await?;
            if run {
                self.wait_healthy(name, &plan, &meta, timeout).await?;
            }
            Ok::<(), AppError>(())
        }
        .await;
        match attempt {
            Ok(()) => {
                let done = AppRecord {
                    definition,
                    params: values,
                    version: meta.version.clone(),
                    previous: Some(previous),
                    pinned: BTreeMap::new(),
                    ..record
                };
                self.put_record(&done, Ok((plan, meta)))?;
                tracing::info!(app = %name, version = %done.version, "upgraded");
                drop(guard);
                self.reconcile().await?;
                self.summary(name).await
            }
            Err(why) => {
                let why = match why {
                    AppError::Other(s) => s,
                    e => e.to_string(),
                };
                tracing::warn!(app = %name, error = %why, "upgrade failed; rolling back");
                let rollback = match self
                    .roll_back(name, &marked, &previous, &plan, timeout)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(app = %name, version = %record.version, "rolled back");
                        format!("rolled back to version {}", shown_version(&record.version))
                    }
                    Err(e) => {
                        tracing::error!(app = %name, error = %e, "rollback failed");
                        format!(
                            "the rollback to version {} failed too: {e}",
                            shown_version(&record.version)
                        )
                    }
                };
                drop(guard);
                if let Err(e) = self.reconcile().await {
                    tracing::warn!(app = %name, error = %e, "reconcile after the rollback");
                }
                Err(AppError::UpgradeFailed {
                    app: name.to_owned(),
                    why,
                    rollback,
                })
            }
        }
    }

    /// Back to `previous` after a failed upgrade to `failed`: the old
    /// definition and values, each service on the image id it ran (pinned
    /// where its tag has moved since), waited for like the new one was.
    async fn roll_back(
        &self,
        name: &str,
        record: &AppRecord,
        previous: &Previous,
        failed: &AppPlan,
        timeout: Duration,
    ) -> Result<(), AppError> {
        let (plain, _, _) = compose::plan(name, &previous.definition, &previous.params)?;
        let mut pinned = record.pinned.clone();
        for c in &plain.containers {
            if pinned.contains_key(&c.service) {
                continue;
            }
            let Some(id) = previous.images.get(&c.service) else {
                continue;
            };
            let now = self.inner.engine.image_id(&c.image).await?;
            if now.as_deref() != Some(id.as_str()) {
                tracing::info!(app = %name, service = %c.service, image = %c.image, id = %id,
                    "the tag moved since; rolling back to the image id");
                pinned.insert(c.service.clone(), id.clone());
            }
        }
        let back = AppRecord {
            definition: previous.definition.clone(),
            params: previous.params.clone(),
            version: previous.version.clone(),
            pinned,
            // What failed is not kept to roll back to.
            previous: None,
            ..record.clone()
        };
        let (plan, meta) = plan_record(&back).map_err(AppError::Other)?;
        // The stored record plans to exactly the containers made below, so
        // the reconciler leaves them alone once the app is no longer busy.
        self.put_record(&back, Ok((plan.clone(), meta.clone())))?;
        let run = back.want == Want::Running;
        self.converge(name, failed, &plan, run).await?;
        if run {
            self.wait_healthy(name, &plan, &meta, timeout).await?;
        }
        Ok(())
    }

    /// Make the app's containers those of `to`: the ones whose spec hash
    /// differs are stopped (dependents first, in `from`'s order) and
    /// removed, then the missing ones created and (with `run`) started in
    /// dependency order. Volumes are left as they are.
    async fn converge(
        &self,
        name: &str,
        from: &AppPlan,
        to: &AppPlan,
        run: bool,
    ) -> Result<(), AppError> {
        let e = self.eng(to.driver());
        let dir = self.app_dir(name);
        std::fs::create_dir_all(&dir).map_err(|err| io_error("cannot create", &dir, err))?;
        for n in &to.networks {
            e.ensure_network(name, n).await?;
        }
        for v in &to.volumes {
            e.ensure_volume(name, v).await?;
        }
        let observed = self.observed_of(name).await?;
        let wanted = |o: &Observed| {
            to.container(&o.service).map(ContainerSpec::hash) == Some(o.spec.clone())
        };
        let mut stale: Vec<&Observed> = Vec::new();
        if let Ok(order) = from.order() {
            for c in order.iter().rev() {
                stale.extend(
                    observed
                        .iter()
                        .filter(|o| o.service == c.service && !wanted(o)),
                );
            }
        }
        for o in &observed {
            if !wanted(o) && !stale.iter().any(|s| s.id == o.id) {
                stale.push(o);
            }
        }
        for o in stale {
            let t = from
                .container(&o.service)
                .map_or(STOP_TIMEOUT, stop_timeout);
            if matches!(
                o.state,
                RunState::Running | RunState::Restarting | RunState::Paused
            ) {
                e.stop(&o.id, t).await?;
            }
            e.remove(&o.id).await?;
        }
        for c in to.order()? {
            let h = c.hash();
            let current = observed
                .iter()
                .find(|o| o.service == c.service && o.spec == h);
            let (id, state) = match current {
                Some(o) => (o.id.clone(), o.state),
                None => (e.create(name, c, &dir).await?, RunState::Created),
            };
            if run {
                match state {
                    RunState::Running | RunState::Restarting => {}
                    RunState::Paused => e.unpause(&id).await?,
                    _ => e.start(&id).await?,
                }
            }
        }
        Ok(())
    }

    /// Wait until every container of `plan` runs (and is healthy when it
    /// has a health check) and every published check of the app passes,
    /// failing at once when a container exits. The error says which
    /// container or check, and how.
    async fn wait_healthy(
        &self,
        name: &str,
        plan: &AppPlan,
        meta: &Meta,
        timeout: Duration,
    ) -> Result<(), AppError> {
        let deadline = Instant::now() + timeout;
        let checks = if self.inner.publisher.is_some() {
            published_checks(plan, meta)
        } else {
            Vec::new()
        };
        loop {
            let observed = self.observed_of(name).await?;
            let mut waiting: Option<String> = None;
            for c in &plan.containers {
                let h = c.hash();
                let Some(o) = observed
                    .iter()
                    .find(|o| o.service == c.service && o.spec == h)
                else {
                    return Err(AppError::Other(format!(
                        "service {}: its container is gone",
                        c.service
                    )));
                };
                let code = o
                    .exit_code
                    .map_or_else(|| "?".to_owned(), |c| c.to_string());
                match o.state {
                    RunState::Running if o.restart_count > 0 => {
                        return Err(AppError::Other(format!(
                            "service {} exited and was restarted {} time(s)",
                            c.service, o.restart_count
                        )))
                    }
                    RunState::Running => match o.health {
                        Health::Unhealthy => {
                            return Err(AppError::Other(format!(
                                "service {}: its health check fails (unhealthy)",
                                c.service
                            )))
                        }
                        Health::Starting => {
                            waiting = Some(format!(
                                "service {}: its health check has not passed yet",
                                c.service
                            ));
                        }
                        Health::None | Health::Healthy => {}
                    },
                    // A one-shot service that completed.
                    RunState::Exited
                        if o.exit_code == Some(0) && c.restart == RestartPolicy::No => {}
                    RunState::Exited | RunState::Dead => {
                        return Err(AppError::Other(format!(
                            "service {} exited with code {code}",
                            c.service
                        )))
                    }
                    RunState::Restarting => {
                        return Err(AppError::Other(format!(
                            "service {} exited with code {code} and is restarting",
                            c.service
                        )))
                    }
                    RunState::Created | RunState::Paused | RunState::Removing => {
                        waiting = Some(format!("service {} is not running yet", c.service));
                    }
                }
            }
            if waiting.is_none() {
                for ch in &checks {
                    let st = nuvol_checks::run_once(ch).await;
                    if st.status != nuvol_checks::model::Health::Passing {
                        waiting = Some(format!(
                            "the published check {} {} is {}{}",
                            ch.kind.name(),
                            ch.kind.target(),
                            st.status.as_str(),
                            if st.output.trim().is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", st.output.trim())
                            }
                        ));
                        break;
                    }
                }
            }
            let Some(why) = waiting else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(AppError::Other(format!(
                    "not healthy after {}s: {why}",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// Write a backup of the app to `dest` (an absolute path; not
    /// overwritten): its definition, parameters, image references, every
    /// named volume's content and its directory. The app is stopped while
    /// its volumes are copied, for a consistent copy, and started again
    /// after if it ran.
    pub async fn backup(&self, name: &str, dest: &Path) -> Result<BackupInfo, AppError> {
        if !dest.is_absolute() {
            return Err(AppError::invalid(
                "path",
                format!("{}: give an absolute path", dest.display()),
            ));
        }
        if dest.exists() {
            return Err(AppError::invalid(
                "path",
                format!("{} exists; it is not overwritten", dest.display()),
            ));
        }
        let parent = dest.parent().unwrap_or(Path::new("/"));
        if !parent.is_dir() {
            return Err(AppError::invalid(
                "path",
                format!("{} is not a directory", parent.display()),
            ));
        }
        let guard = self.busy(name, "backing up")?;
        let (record, plan, _) = self.planned(name)?;
        for v in &plan.volumes {
            backup::check_key(&v.key).map_err(|w| AppError::invalid("volumes", w))?;
        }
        let e = self.inner.engine.clone();
        let observed = self.observed_of(name).await?;
        let mut images = BTreeMap::new();
        for c in &plan.containers {
            let h = c.hash();
            let id = match observed
                .iter()
                .find(|o| o.service == c.service && o.spec == h)
            {
                Some(o) if !o.image_id.is_empty() => o.image_id.clone(),
                _ => e.image_id(&c.image).await?.unwrap_or_default(),
            };
            images.insert(
                c.service.clone(),
                ImageRef {
                    image: c.image.clone(),
                    id,
                },
            );
        }
        std::fs::create_dir_all(&self.inner.apps_dir)
            .map_err(|err| io_error("cannot create", &self.inner.apps_dir, err))?;
        let staging = tempfile::Builder::new()
            .prefix(".backup-")
            .tempdir_in(&self.inner.apps_dir)
            .map_err(|err| io_error("cannot create a directory in", &self.inner.apps_dir, err))?;
        // Stop what runs (dependents first); started again below whatever
        // happens.
        let mut stopped: Vec<String> = Vec::new();
        let mut copied = Ok(BTreeMap::new());
        if !plan.volumes.is_empty() {
            for c in plan.order()?.iter().rev() {
                for o in observed.iter().filter(|o| o.service == c.service) {
                    if matches!(
                        o.state,
                        RunState::Running | RunState::Restarting | RunState::Paused
                    ) {
                        if let Err(err) = e.stop(&o.id, stop_timeout(c)).await {
                            copied = Err(err);
                            break;
                        }
                        stopped.push(o.id.clone());
                    }
                }
            }
            if copied.is_ok() {
                copied = self.copy_volumes_out(name, &plan, staging.path()).await;
            }
        }
        let mut restarted = Ok(());
        for id in stopped.iter().rev() {
            if let Err(err) = e.start(id).await {
                tracing::warn!(app = %name, container = %id, error = %err, "cannot start again after the backup");
                restarted = Err(err);
            }
        }
        let volumes = copied?;
        restarted?;
        let manifest = Manifest {
            format: backup::FORMAT_VERSION,
            app: name.to_owned(),
            node: self.inner.node.clone(),
            created_at: now_secs(),
            source: record.source.clone(),
            definition: record.definition.clone(),
            params: record.params.clone(),
            version: record.version.clone(),
            want: record.want,
            images,
            volumes: volumes.keys().cloned().collect(),
            pinned: record.pinned.clone(),
        };
        let app_dir = self.app_dir(name);
        let (dest_c, manifest_c, volumes_c) = (dest.to_owned(), manifest.clone(), volumes.clone());
        let bytes = tokio::task::spawn_blocking(move || {
            backup::write_archive(&dest_c, &manifest_c, &volumes_c, Some(&app_dir))
        })
        .await
        .map_err(|err| AppError::Other(format!("backup task: {err}")))??;
        drop(staging);
        drop(guard);
        tracing::info!(app = %name, path = %dest.display(), bytes, "backed up");
        Ok(BackupInfo {
            app: name.to_owned(),
            node: self.inner.node.clone(),
            path: dest.display().to_string(),
            bytes,
            version: manifest.version,
            volumes: manifest.volumes,
            created_at: manifest.created_at,
        })
    }

    /// Each named volume's content into `dir/KEY.tar`, through a
    /// temporary container that mounts them all (removed after).
    async fn copy_volumes_out(
        &self,
        name: &str,
        plan: &AppPlan,
        dir: &Path,
    ) -> Result<BTreeMap<String, PathBuf>, AppError> {
        let e = &self.inner.engine;
        let Some(spec) = volumes_container(plan, "backup") else {
            return Ok(BTreeMap::new());
        };
        let id = e.create(name, &spec, &self.app_dir(name)).await?;
        let mut out = BTreeMap::new();
        let mut r = Ok(());
        for v in &plan.volumes {
            let file = dir.join(format!("{}.tar", v.key));
            if let Err(err) = e
                .copy_out(&id, &format!("{VOLUMES_MOUNT}/{}", v.key), &file)
                .await
            {
                r = Err(err);
                break;
            }
            out.insert(v.key.clone(), file);
        }
        if let Err(err) = e.remove(&id).await {
            tracing::warn!(app = %name, container = %id, error = %err, "cannot remove the backup's container");
        }
        r.map(|()| out)
    }

    /// Fill the (new, empty) volumes of `plan` from a restored archive,
    /// through a temporary container (removed after).
    async fn fill_volumes(
        &self,
        name: &str,
        plan: &AppPlan,
        dir: &Path,
        fill: &Unpacked,
    ) -> Result<(), AppError> {
        if fill.volumes.is_empty() {
            return Ok(());
        }
        let e = &self.inner.engine;
        let Some(spec) = volumes_container(plan, "restore") else {
            return Ok(());
        };
        let id = e.create(name, &spec, dir).await?;
        let mut r = Ok(());
        for (key, file) in &fill.volumes {
            // Entries are `KEY/...`: unpacked at the parent of the mounts.
            if let Err(err) = e.copy_in(&id, VOLUMES_MOUNT, file).await {
                r = Err(AppError::Other(format!("restoring volume {key}: {err}")));
                break;
            }
        }
        if let Err(err) = e.remove(&id).await {
            tracing::warn!(app = %name, container = %id, error = %err, "cannot remove the restore's container");
        }
        r
    }

    /// Bring an app back from a backup archive (on this node or another):
    /// the whole archive is checked before anything is created; then it
    /// is installed as `install` does, its volumes and directory filled
    /// before its containers start. `name` renames it; `set` overrides
    /// parameter values (a host port taken on this node, say). An app of
    /// that name, or volumes or files left by one, are not overwritten.
    pub async fn restore(
        &self,
        archive: &Path,
        name: Option<String>,
        set: BTreeMap<String, String>,
    ) -> Result<AppSummary, AppError> {
        let apps_dir = self.inner.apps_dir.clone();
        std::fs::create_dir_all(&apps_dir)
            .map_err(|err| io_error("cannot create", &apps_dir, err))?;
        let staging = tempfile::Builder::new()
            .prefix(".restore-")
            .tempdir_in(&apps_dir)
            .map_err(|err| io_error("cannot create a directory in", &apps_dir, err))?;
        let (src, at) = (archive.to_owned(), staging.path().to_owned());
        let unpacked = tokio::task::spawn_blocking(move || {
            backup::read_archive(&src, &at, &backup::Limits::default())
        })
        .await
        .map_err(|err| AppError::Other(format!("restore task: {err}")))??;
        let m = &unpacked.manifest;
        let name = name.unwrap_or_else(|| m.app.clone());
        crate::meta::validate_name("name", &name)?;
        if lock(&self.inner.apps).contains_key(&name) {
            return Err(AppError::Exists(name));
        }
        let mut params = m.params.clone();
        params.extend(set);
        // The archive's volumes must be the plan's (parameters may change
        // what a definition plans to). Its driver's engine alone is asked
        // (a process app restores on a node whose Docker is down).
        let (plan, _, _) = compose::plan(&name, &m.definition, &params)?;
        let engine = self.eng(plan.driver());
        let left = engine.volumes(&name).await?;
        if !left.is_empty() {
            return Err(AppError::Conflict(format!(
                "volumes of an app named {name} are on this node ({}; kept by a remove without --purge): \
                 they are not overwritten; delete them or restore under another --name",
                left.join(", ")
            )));
        }
        let dir = self.app_dir(&name);
        match std::fs::read_dir(&dir) {
            Ok(mut d) => {
                if d.next().is_some() {
                    return Err(AppError::Conflict(format!(
                        "{} holds files of an app named {name}: they are not overwritten",
                        dir.display()
                    )));
                }
                // Empty: removed, so a failed restore removes it too.
                std::fs::remove_dir(&dir).map_err(|err| io_error("cannot remove", &dir, err))?;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_error("cannot read", &dir, err)),
        }
        // Pins are kept where this node has that very image.
        let mut pinned = BTreeMap::new();
        for (svc, id) in &m.pinned {
            if engine.image_id(id).await?.is_some() {
                pinned.insert(svc.clone(), id.clone());
            }
        }
        for k in unpacked.volumes.keys() {
            if !plan.volumes.iter().any(|v| &v.key == k) {
                return Err(AppError::invalid(
                    "params",
                    format!("the archive holds volume {k:?}, which the app no longer has"),
                ));
            }
        }
        let req = Install {
            name: Some(name.clone()),
            definition: m.definition.clone(),
            source: m.source.clone(),
            params,
            files: BTreeMap::new(),
        };
        let want = m.want;
        let from = (m.node.clone(), m.version.clone());
        let s = self.install_with(req, Some(&unpacked), pinned).await?;
        drop(staging);
        tracing::info!(app = %name, from_node = %from.0, version = %from.1, "restored");
        // An app backed up stopped is restored stopped.
        if want == Want::Stopped {
            return self.stop(&name).await;
        }
        Ok(s)
    }
}

fn shown_version(v: &str) -> &str {
    if v.is_empty() {
        "(none)"
    } else {
        v
    }
}

/// The checks of what the app publishes, as the catalog runs them (a TCP
/// connect by default). Script checks are left out: an app's definition
/// does not get to run commands on the host.
fn published_checks(plan: &AppPlan, meta: &Meta) -> Vec<CheckDef> {
    let mut out = Vec::new();
    for p in &meta.publish {
        let proto = plan
            .host_ports()
            .iter()
            .find(|(port, _, _)| *port == p.port)
            .map_or(Proto::Tcp, |(_, pr, _)| *pr);
        if !p.checks.is_empty() {
            out.extend(
                p.checks
                    .iter()
                    .filter(|c| !matches!(c.kind, CheckKind::Script { .. }))
                    .cloned(),
            );
        } else if proto == Proto::Tcp {
            out.push(CheckDef {
                kind: CheckKind::Tcp {
                    addr: format!("127.0.0.1:{}", p.port),
                },
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(2),
            });
        }
    }
    out
}
