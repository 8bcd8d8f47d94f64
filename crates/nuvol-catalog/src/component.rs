//! The catalog component: this node's published services (the redb store in
//! the data dir plus the service-file directory), their health checks, and
//! the cluster-wide view ([`ClusterCatalog`]) kept current from membership
//! events and full-list pulls. It owns two tags on this node:
//! - `services`: Cloudy's encoding of the services that are not critical,
//!   as many as fit the 512-byte tag budget (Cloudy / avahi-ps peers);
//! - `nv-svc`: the digest of the full list; nuvol peers that see a new
//!   digest pull the full list over the gossip TCP port (stream protocol
//!   [`sync::PULL`]).
//!
//! It registers its REST routes ([`crate::api`]), its DNS names (healthy
//! instances as `TYPE.service`), its metrics, a reload hook (service files,
//! SIGHUP), and provides its [`Catalog`] handle to later components (mDNS).
//!
//! Invariants: every change to the local list goes store first (durable,
//! on a blocking thread), then tags; one tokio mutex serialises changes so
//! tags never go backwards; readers (API, DNS) only take the view's read
//! lock briefly. Until the store is open the node advertises no digest and
//! pulls wait for it, so a restarted node never serves a stale or empty
//! list.

use crate::cloudy::{encode_services_fitting, CloudyService};
use crate::model::{aggregate, CheckState, CheckView, Health};
use crate::store::{Store, StoreError};
use crate::sync::{self, PULL, PULL_REQUEST};
use crate::view::{ClusterCatalog, MemberView, NodeState, DIGEST_TAG, SERVICES_TAG};
use crate::{CatalogError, Filter, ServiceDef, ServiceEntry, Source, Status};
use futures::future::BoxFuture;
use nuvol_agent::chan::{Bus, RecvError};
use nuvol_agent::config::{ConfigError, Validate};
use nuvol_agent::dns::{DnsInstance, DnsNames};
use nuvol_agent::{
    AgentEvent, BuildCtx, BuildError, Cluster, ClusterError, Component, ComponentError, OwnedTags,
    RunCtx, StreamError, StreamHandler,
};
use nuvol_gossip::{Event, Member, MemberStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::time::Instant;

/// Attempts to write the tags when they keep changing under us.
const TAG_ATTEMPTS: usize = 8;

nuvol_agent::settings! {
    /// The community service catalog (avahi-ps / Cloudy services).
    pub struct CatalogSettings in "catalog", "Service catalog" {
        /// A directory of service files (*.toml), reloaded on SIGHUP.
        services_dir: Option<PathBuf> = None, flag "services-dir";
        /// Micro-cloud name in Cloudy's service records (host
        /// NODE.CLOUD.local).
        cloud: String = "nuvol".into(), flag "cloud";
        /// How long services of a failed or departed node stay listed
        /// (unavailable).
        remove_after: Duration = Duration::from_secs(24 * 3600), flag "catalog-remove-after";
    }
}

impl Validate for CatalogSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.cloud;
        if c.is_empty() || c.len() > 63 || c.contains(char::is_whitespace) {
            return Err(ConfigError::invalid::<Self>(
                "cloud",
                "must be 1 to 63 bytes without spaces",
            ));
        }
        Ok(())
    }
}

/// Why a change to this node's services failed; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogOpError {
    #[error("{0}")]
    Invalid(#[from] CatalogError),
    #[error("no published service {0}")]
    NotFound(String),
    #[error("{key} is defined in the service file {file}; edit or remove that file and reload")]
    FromFile { key: String, file: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the catalog is not ready yet")]
    NotReady,
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

/// The catalog's metrics (`nuvol_catalog_*`, `nuvol_checks`).
#[derive(Clone, Default)]
struct Metrics {
    nodes: Gauge,
    services: Family<StatusLabel, Gauge>,
    local_checks: Family<StatusLabel, Gauge>,
    pulls: Family<StatusLabel, Counter>,
    publishes: Counter,
    unpublishes: Counter,
    cloudy_left_out: Gauge,
}

impl Metrics {
    fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "catalog_nodes",
            "Nodes known to the service catalog",
            self.nodes.clone(),
        );
        r.register(
            "catalog_services",
            "Services in the catalog by status",
            self.services.clone(),
        );
        r.register(
            "checks",
            "This node's health checks by status",
            self.local_checks.clone(),
        );
        r.register(
            "catalog_pulls",
            "Full service-list pulls from nuvol peers by result",
            self.pulls.clone(),
        );
        r.register(
            "catalog_publishes",
            "Services published on this node",
            self.publishes.clone(),
        );
        r.register(
            "catalog_unpublishes",
            "Services unpublished on this node",
            self.unpublishes.clone(),
        );
        r.register(
            "catalog_cloudy_left_out",
            "This node's services left out of the Cloudy tag for lack of room (nuvol peers get them)",
            self.cloudy_left_out.clone(),
        );
    }

    fn pull(&self, ok: bool) {
        self.pulls
            .get_or_create(&StatusLabel {
                status: if ok { "ok" } else { "failed" }.into(),
            })
            .inc();
    }
}

struct Local {
    store: Arc<Store>,
    stored: BTreeMap<String, ServiceDef>,
    files: BTreeMap<String, (ServiceDef, PathBuf)>,
    /// Latest result per check, by service key; `None` until the first run
    /// (counted as critical, as Consul does).
    checks: HashMap<String, Vec<Option<CheckState>>>,
    /// The checks component's runner.
    runner: nuvol_checks::Checks,
}

struct Inner {
    cluster: Cluster,
    tags: OwnedTags,
    name: String,
    ip: String,
    cloud: String,
    data_dir: PathBuf,
    services_dir: Option<PathBuf>,
    /// `None` until the component runs.
    local: Mutex<Option<Local>>,
    view: RwLock<ClusterCatalog>,
    /// The encoded full-list reply served to pulling peers.
    reply: RwLock<Arc<Vec<u8>>>,
    addrs: RwLock<HashMap<String, SocketAddr>>,
    events: Bus<AgentEvent>,
    version: watch::Sender<u64>,
    ready: watch::Sender<bool>,
    dns: watch::Sender<Arc<DnsNames>>,
    start: Instant,
    metrics: Metrics,
}

/// A cheap, cloneable handle to the catalog (provided to later components
/// and to tests through the registry).
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

fn node_state(s: MemberStatus) -> NodeState {
    match s {
        MemberStatus::Alive => NodeState::Alive,
        MemberStatus::Leaving => NodeState::Leaving,
        MemberStatus::Left => NodeState::Left,
        MemberStatus::Failed | MemberStatus::None => NodeState::Failed,
    }
}

/// The DNS names of catalog entries: healthy instances only. Pure, so the
/// benchmark builds its names the same way.
pub fn dns_names(entries: &[ServiceEntry]) -> DnsNames {
    DnsNames {
        instances: entries
            .iter()
            .filter(|e| e.status.is_healthy())
            .filter_map(|e| {
                Some(DnsInstance {
                    service: e.stype.clone(),
                    node: e.node.clone(),
                    ip: e.ip.parse::<IpAddr>().ok()?,
                    port: e.port,
                })
            })
            .collect(),
        nodes: Vec::new(),
    }
}

/// The catalog component.
pub struct CatalogComponent {
    catalog: Catalog,
    checks: nuvol_checks::Checks,
    check_rx: Option<mpsc::Receiver<nuvol_checks::CheckUpdate>>,
}

impl Component for CatalogComponent {
    type Config = CatalogSettings;
    const NAME: &'static str = "catalog";
    /// A store that cannot be opened (corrupt, or held by another agent)
    /// stops the agent: the file is never replaced.
    const CRITICAL: bool = true;

    fn build(cfg: CatalogSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        let cluster = ctx.cluster();
        let tags = ctx.own_tags(&[SERVICES_TAG, DIGEST_TAG])?;
        let metrics = Metrics::default();
        metrics.register(ctx.metrics());
        let (dns, dns_rx) = watch::channel(Arc::new(DnsNames::default()));
        ctx.dns_names(dns_rx);
        let name = ctx.node_name().to_owned();
        let inner = Arc::new(Inner {
            ip: cluster.advertise().ip().to_string(),
            cluster,
            tags,
            name: name.clone(),
            cloud: cfg.cloud.clone(),
            data_dir: ctx.data_dir().to_owned(),
            services_dir: cfg.services_dir.clone(),
            local: Mutex::new(None),
            view: RwLock::new(ClusterCatalog::new(&name, cfg.remove_after)),
            reply: RwLock::new(Arc::new(Vec::new())),
            addrs: RwLock::new(HashMap::new()),
            events: ctx.events(),
            version: watch::channel(0).0,
            ready: watch::channel(false).0,
            dns,
            start: Instant::now(),
            metrics,
        });
        let catalog = Catalog { inner };
        ctx.stream_protocol(PULL, Arc::new(PullHandler(catalog.clone())))?;
        for route in crate::api::routes(Arc::new(catalog.clone())) {
            ctx.http_route(route)?;
        }
        ctx.openapi(crate::api::OPENAPI)?;
        let c = catalog.clone();
        ctx.on_reload(Arc::new(move || {
            let c = c.clone();
            Box::pin(async move { c.reload_files().await })
        }));
        ctx.info().set("cloud", cfg.cloud);
        ctx.provide(catalog.clone());
        let checks = ctx
            .get::<nuvol_checks::Checks>()
            .ok_or_else(|| BuildError::new("needs the checks component, listed before it"))?;
        let check_rx = checks
            .take_results()
            .ok_or_else(|| BuildError::new("the checks' results are taken by another component"))?;
        Ok(Some(CatalogComponent {
            catalog,
            checks,
            check_rx: Some(check_rx),
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let cat = self.catalog.clone();
        let Some(check_rx) = self.check_rx.take() else {
            return Err(ComponentError::msg("the catalog cannot be restarted"));
        };
        cat.open(self.checks.clone()).await?;
        cat.inner.ready.send_replace(true);
        ctx.ready();
        let mut loops = tokio::task::JoinSet::new();
        loops.spawn(cat.clone().member_loop());
        loops.spawn(cat.clone().check_loop(check_rx));
        loops.spawn(cat.clone().maintenance_loop());
        loops.spawn(cat.clone().derived_loop());
        tokio::select! {
            () = ctx.stopping() => {}
            _ = loops.join_next() => {}
        }
        cat.inner.ready.send_replace(false);
        // Stops this node's checks and closes the store.
        if let Some(l) = cat.inner.local.lock().await.take() {
            for (k, _) in defs_of(&l) {
                l.runner.remove(k);
            }
        }
        if ctx.is_stopping() {
            Ok(())
        } else {
            Err(ComponentError::msg("a catalog task ended"))
        }
    }
}

/// Answers pulls with the full list, once the catalog is ready.
struct PullHandler(Catalog);

impl StreamHandler for PullHandler {
    fn handle(
        &self,
        from: SocketAddr,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Arc<Vec<u8>>, StreamError>> {
        let c = self.0.clone();
        Box::pin(async move {
            if request != PULL_REQUEST {
                return Err(StreamError::Refused("unknown catalog request".into()));
            }
            let mut ready = c.inner.ready.subscribe();
            // A restarted node's peers may pull before its store is open:
            // wait for it rather than answer with nothing.
            if tokio::time::timeout(Duration::from_secs(5), ready.wait_for(|r| *r))
                .await
                .is_err()
            {
                tracing::debug!(%from, "pull before the catalog is ready");
                return Err(StreamError::NotReady);
            }
            Ok(c.reply_bytes())
        })
    }
}

impl Catalog {
    pub fn node_name(&self) -> &str {
        &self.inner.name
    }

    /// Services in the cluster matching `filter`.
    pub fn entries(&self, filter: &Filter) -> Vec<ServiceEntry> {
        self.read_view().entries(filter)
    }

    /// (nodes, services) in the view.
    pub fn sizes(&self) -> (usize, usize) {
        self.read_view().sizes()
    }

    /// Bumped on every change of the view (DNS and mDNS re-derive from it).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.version.subscribe()
    }

    /// This node's services left out of the Cloudy tag for lack of room.
    pub fn cloudy_left_out(&self) -> u64 {
        u64::try_from(self.inner.metrics.cloudy_left_out.get()).unwrap_or(0)
    }

    /// True once the store is open and the tags are written.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    fn reply_bytes(&self) -> Arc<Vec<u8>> {
        match self.inner.reply.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The view for reading. A poisoned lock is used anyway: at worst one
    /// input was half applied, and the periodic resync and pulls repair it.
    fn read_view(&self) -> std::sync::RwLockReadGuard<'_, ClusterCatalog> {
        self.inner
            .view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with_view<R>(&self, f: impl FnOnce(&mut ClusterCatalog) -> R) -> R {
        let mut guard = self
            .inner
            .view
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    fn bump(&self) {
        self.inner.version.send_modify(|v| *v += 1);
    }

    fn emit(&self, event: &str, data: serde_json::Value) {
        self.inner.events.send(AgentEvent {
            event: event.to_owned(),
            data,
        });
    }

    /// Replace the services imported from mDNS.
    pub fn set_mdns(&self, entries: Vec<ServiceEntry>) {
        if self.with_view(|v| v.set_mdns(entries)).0 {
            self.bump();
        }
    }

    /// Open the store, read the service files, start the checks and write
    /// the tags.
    async fn open(&self, checks: nuvol_checks::Checks) -> Result<(), CatalogOpError> {
        let path = self.inner.data_dir.join("catalog.redb");
        let store = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let store = Store::open(&path)?;
            let listed = store.list()?;
            Ok((store, listed))
        })
        .await
        .map_err(|e| StoreError::Db(format!("store task: {e}")))?;
        let (store, (defs, bad)) = store?;
        for b in bad {
            tracing::error!(key = %b.key, error = %b.error, "unreadable service in the catalog store; kept, not published");
        }
        let mut l = Local {
            store: Arc::new(store),
            stored: defs.into_iter().map(|d| (d.key(), d)).collect(),
            files: BTreeMap::new(),
            checks: HashMap::new(),
            runner: checks,
        };
        if let Some(dir) = &self.inner.services_dir {
            load_files(&mut l, dir);
        }
        let all: Vec<(String, ServiceDef)> =
            defs_of(&l).map(|(k, d)| (k.clone(), d.clone())).collect();
        for (k, d) in all {
            l.runner.set(&k, d.checks.clone());
        }
        self.republish(&l).await;
        *self.inner.local.lock().await = Some(l);
        Ok(())
    }

    /// Run a store write on a blocking thread (it fsyncs).
    async fn store_op<R: Send + 'static>(
        store: &Arc<Store>,
        f: impl FnOnce(&Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let s = store.clone();
        tokio::task::spawn_blocking(move || f(&s))
            .await
            .map_err(|e| StoreError::Db(format!("store task: {e}")))?
    }

    /// Publish (or replace: same type and port) a service on this node.
    pub async fn publish(&self, def: ServiceDef) -> Result<ServiceEntry, CatalogOpError> {
        def.validate()?;
        let key = def.key();
        let mut guard = self.inner.local.lock().await;
        let l = guard.as_mut().ok_or(CatalogOpError::NotReady)?;
        if let Some((_, file)) = l.files.get(&key) {
            return Err(CatalogOpError::FromFile {
                key,
                file: file.clone(),
            });
        }
        if !l.stored.contains_key(&key) && defs_of(l).count() >= crate::model::MAX_SERVICES_PER_NODE
        {
            return Err(CatalogOpError::Invalid(CatalogError::BadField(
                "services".into(),
                format!(
                    "this node already publishes {} services, the most allowed",
                    crate::model::MAX_SERVICES_PER_NODE
                ),
            )));
        }
        let d = def.clone();
        Self::store_op(&l.store, move |s| s.put(&d)).await?;
        if l.stored.get(&key).map(|d| &d.checks) != Some(&def.checks) {
            l.checks.remove(&key);
        }
        l.runner.set(&key, def.checks.clone());
        l.stored.insert(key.clone(), def);
        self.inner.metrics.publishes.inc();
        self.republish(l).await;
        let entry = self
            .local_entries(l)
            .into_iter()
            .find(|e| e.key() == key)
            .ok_or_else(|| CatalogOpError::NotFound(key.clone()))?;
        drop(guard);
        self.emit(
            "service-published",
            serde_json::to_value(&entry).unwrap_or_default(),
        );
        Ok(entry)
    }

    /// Remove this node's service `stype` on `port`, or every service of
    /// that type without a port. Returns how many were removed.
    pub async fn unpublish(&self, stype: &str, port: Option<u16>) -> Result<usize, CatalogOpError> {
        crate::cloudy::validate_type(stype)?;
        let mut guard = self.inner.local.lock().await;
        let l = guard.as_mut().ok_or(CatalogOpError::NotReady)?;
        let keys: Vec<String> = defs_of(l)
            .filter(|(_, d)| d.stype == stype && port.is_none_or(|p| p == d.port))
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return Err(CatalogOpError::NotFound(match port {
                Some(p) => format!("{stype}/{p}"),
                None => format!("of type {stype}"),
            }));
        }
        if let Some((key, file)) = keys
            .iter()
            .find_map(|k| l.files.get(k).map(|(_, f)| (k.clone(), f.clone())))
        {
            return Err(CatalogOpError::FromFile { key, file });
        }
        for k in &keys {
            if let Some(d) = l.stored.get(k).cloned() {
                Self::store_op(&l.store, move |s| s.remove(&d.stype, d.port)).await?;
                l.stored.remove(k);
                l.checks.remove(k);
                l.runner.remove(k);
            }
        }
        self.inner.metrics.unpublishes.inc_by(keys.len() as u64);
        self.republish(l).await;
        drop(guard);
        for k in &keys {
            self.emit(
                "service-removed",
                serde_json::json!({"node": self.inner.name, "key": k}),
            );
        }
        Ok(keys.len())
    }

    /// Re-read the service-file directory (SIGHUP).
    pub async fn reload_files(&self) {
        let Some(dir) = self.inner.services_dir.clone() else {
            return;
        };
        let mut guard = self.inner.local.lock().await;
        let Some(l) = guard.as_mut() else {
            return;
        };
        let before: BTreeMap<String, ServiceDef> = l
            .files
            .iter()
            .map(|(k, (d, _))| (k.clone(), d.clone()))
            .collect();
        load_files(l, &dir);
        for (k, d) in l.files.clone() {
            if before.get(&k) != Some(&d.0) {
                l.checks.remove(&k);
                l.runner.set(&k, d.0.checks.clone());
            }
        }
        for k in before.keys() {
            if !l.files.contains_key(k) && !l.stored.contains_key(k) {
                l.checks.remove(k);
                l.runner.remove(k);
            }
        }
        self.republish(l).await;
        tracing::info!(dir = %dir.display(), services = l.files.len(), "service files reloaded");
    }

    fn local_entries(&self, l: &Local) -> Vec<ServiceEntry> {
        let mut out: Vec<ServiceEntry> = defs_of(l)
            .map(|(k, d)| {
                let results = l.checks.get(k);
                let checks: Vec<CheckView> = d
                    .checks
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let st = results.and_then(|r| r.get(i)).and_then(|s| s.clone());
                        CheckView {
                            kind: c.kind.name().to_owned(),
                            target: c.kind.target().to_owned(),
                            status: st.as_ref().map_or(Health::Critical, |s| s.status),
                            output: st
                                .as_ref()
                                .map_or_else(|| "not run yet".to_owned(), |s| s.output.clone()),
                            updated_ms: st.as_ref().map_or(0, |s| s.updated_ms),
                        }
                    })
                    .collect();
                ServiceEntry {
                    node: self.inner.name.clone(),
                    stype: d.stype.clone(),
                    description: d.description.trim().replace(' ', "_"),
                    host: format!("{}.{}.local", self.inner.name, self.inner.cloud),
                    ip: self.inner.ip.clone(),
                    port: d.port,
                    cloud: self.inner.cloud.clone(),
                    txt: d.txt.clone(),
                    status: aggregate(checks.iter().map(|c| c.status)).into(),
                    source: Source::Nuvol,
                    checks,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.stype, a.port).cmp(&(&b.stype, b.port)));
        out
    }

    /// Recompute the local entries, the pull reply, and the tags.
    async fn republish(&self, l: &Local) {
        let entries = self.local_entries(l);
        // The digest covers what peers show (status, not check output).
        let summary: Vec<ServiceEntry> = entries
            .iter()
            .map(|e| {
                let mut e = e.clone();
                for c in &mut e.checks {
                    c.output.clear();
                    c.updated_ms = 0;
                }
                e
            })
            .collect();
        let digest = sync::digest(&summary);
        let reply = sync::encode_reply(&digest, &entries);
        match self.inner.reply.write() {
            Ok(mut r) => *r = Arc::new(reply),
            Err(p) => *p.into_inner() = Arc::new(reply),
        }
        if self.with_view(|v| v.set_local(entries.clone())).0 {
            self.bump();
        }
        // Cloudy peers get the services that are not critical.
        let cloudy: Vec<CloudyService> = entries
            .iter()
            .filter(|e| e.status != Status::Critical)
            .map(|e| CloudyService {
                stype: e.stype.clone(),
                description: e.description.clone(),
                host: e.host.clone(),
                ip: e.ip.clone(),
                port: e.port,
                cloud: e.cloud.clone(),
                txt: e.txt.clone(),
            })
            .collect();
        let digest = if entries.is_empty() {
            None
        } else {
            Some(digest)
        };
        match self.write_tags(&cloudy, digest).await {
            Ok(missing) => {
                self.inner.metrics.cloudy_left_out.set(missing as i64);
                if missing > 0 {
                    tracing::info!(
                        missing,
                        "services left out of the Cloudy tag (512-byte limit); nuvol peers get all of them"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "failed to update the services tags"),
        }
    }

    /// Write `services` (what fits) and `nv-svc`; returns how many services
    /// did not fit. Computed here, off the gossip thread, and written only
    /// if no other tag changed meanwhile (else computed again).
    async fn write_tags(
        &self,
        cloudy: &[CloudyService],
        digest: Option<String>,
    ) -> Result<usize, ClusterError> {
        let mut last = None;
        for _ in 0..TAG_ATTEMPTS {
            let snap = self.inner.tags.current().await?;
            let mut base: BTreeMap<String, String> = snap
                .tags
                .iter()
                .filter(|(k, _)| k.as_str() != SERVICES_TAG && k.as_str() != DIGEST_TAG)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut mine = BTreeMap::new();
            if let Some(d) = &digest {
                mine.insert(DIGEST_TAG.to_owned(), d.clone());
                base.insert(DIGEST_TAG.to_owned(), d.clone());
            }
            let fits = |value: &str| {
                let mut t = base.clone();
                t.insert(SERVICES_TAG.to_owned(), value.to_owned());
                nuvol_gossip::encode_meta(5, &t).len() <= nuvol_wire::memberlist::META_MAX_SIZE
            };
            let (value, n) = encode_services_fitting(cloudy, fits);
            if n > 0 {
                mine.insert(SERVICES_TAG.to_owned(), value);
            }
            match self.inner.tags.replace(snap.version, mine).await {
                Ok(()) => return Ok(cloudy.len() - n),
                Err(ClusterError::TagsChanged) => last = Some(ClusterError::TagsChanged),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(ClusterError::TagsChanged))
    }

    async fn member_loop(self) {
        let mut rx = self.inner.cluster.member_events();
        self.full_sync().await;
        loop {
            match rx.recv().await {
                Ok(Event::Member { kind, members }) => {
                    let now = self.inner.start.elapsed();
                    let mut changed = false;
                    // A reaped member keeps its services (unavailable)
                    // until `remove_after`.
                    if kind != nuvol_gossip::MemberEventKind::Reap {
                        for m in &members {
                            changed |= self.observe(m, now);
                        }
                    }
                    if changed {
                        // Wakes the maintenance loop, which pulls.
                        self.bump();
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => self.full_sync().await,
                Err(RecvError::Closed) => return,
            }
        }
    }

    async fn full_sync(&self) {
        let Ok(members) = self.inner.cluster.members().await else {
            return;
        };
        let now = self.inner.start.elapsed();
        let mut changed = false;
        for m in &members {
            changed |= self.observe(m, now);
        }
        if changed {
            self.bump();
        }
    }

    /// Feed one member into the view; true if it changed.
    fn observe(&self, m: &Member, now: Duration) -> bool {
        if let Ok(mut a) = self.inner.addrs.write() {
            a.insert(m.name.clone(), m.addr);
        }
        let view = MemberView {
            name: &m.name,
            addr: m.addr.ip(),
            state: node_state(m.status),
            tags: &m.tags,
        };
        self.with_view(|v| v.update_member(&view, now)).0
    }

    async fn check_loop(self, mut rx: mpsc::Receiver<nuvol_checks::CheckUpdate>) {
        while let Some(u) = rx.recv().await {
            let mut guard = self.inner.local.lock().await;
            let Some(l) = guard.as_mut() else { continue };
            if l.runner.generation(&u.service) != Some(u.generation) {
                continue; // a result of checks since replaced or removed
            }
            let Some(n) = defs_of(l)
                .find(|(k, _)| **k == u.service)
                .map(|(_, d)| d.checks.len())
            else {
                continue;
            };
            let slot = l
                .checks
                .entry(u.service.clone())
                .or_insert_with(|| vec![None; n]);
            slot.resize(n, None);
            let Some(cell) = slot.get_mut(u.index) else {
                continue;
            };
            let status_changed = cell.as_ref().map(|s| s.status) != Some(u.state.status);
            *cell = Some(u.state.clone());
            if status_changed {
                tracing::info!(service = %u.service, check = u.index, status = u.state.status.as_str(), "check status changed");
                self.republish(l).await;
                drop(guard);
                self.emit(
                    "check-changed",
                    serde_json::json!({"node": self.inner.name, "service": u.service, "index": u.index, "status": u.state.status, "output": u.state.output}),
                );
            } else {
                // Output only: refresh what this node lists and serves, keep
                // the digest (peers see status changes, not every output).
                let entries = self.local_entries(l);
                self.with_view(|v| v.set_local(entries));
            }
        }
    }

    async fn maintenance_loop(self) {
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut backoff: HashMap<String, Instant> = HashMap::new();
        let mut pulls = tokio::task::JoinSet::new();
        let mut changes = self.changes();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut resync = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let now = self.inner.start.elapsed();
                    if self.with_view(|v| v.reap(now)).0 {
                        self.bump();
                    }
                }
                _ = resync.tick() => self.full_sync().await,
                r = changes.changed() => if r.is_err() { return },
                Some(done) = pulls.join_next() => {
                    if let Ok((node, ok)) = done {
                        in_flight.remove(&node);
                        if ok {
                            backoff.remove(&node);
                        } else {
                            backoff.insert(node, Instant::now() + Duration::from_secs(2));
                        }
                    }
                }
            }
            let wanted = self.read_view().needs_pull();
            for (node, _digest) in wanted {
                if in_flight.contains(&node)
                    || backoff.get(&node).is_some_and(|t| *t > Instant::now())
                {
                    continue;
                }
                let Some(addr) = self
                    .inner
                    .addrs
                    .read()
                    .ok()
                    .and_then(|a| a.get(&node).copied())
                else {
                    continue;
                };
                in_flight.insert(node.clone());
                let cat = self.clone();
                pulls.spawn(async move {
                    let ok = cat.pull(&node, addr).await;
                    (node, ok)
                });
            }
        }
    }

    /// Keep what is derived from the view (DNS names, metrics) current: at
    /// once after a change, then at most every 100 ms while changes keep
    /// coming.
    async fn derived_loop(self) {
        let mut changes = self.changes();
        loop {
            let entries = self.entries(&Filter::default());
            let (nodes, _) = self.sizes();
            self.inner.dns.send_replace(Arc::new(dns_names(&entries)));
            let m = &self.inner.metrics;
            m.nodes.set(nodes as i64);
            for st in ["passing", "warning", "critical", "unavailable"] {
                let n = entries.iter().filter(|e| e.status.as_str() == st).count();
                m.services
                    .get_or_create(&StatusLabel { status: st.into() })
                    .set(n as i64);
            }
            for h in [Health::Passing, Health::Warning, Health::Critical] {
                let n = entries
                    .iter()
                    .filter(|e| e.node == self.inner.name)
                    .flat_map(|e| e.checks.iter())
                    .filter(|c| c.status == h)
                    .count();
                m.local_checks
                    .get_or_create(&StatusLabel {
                        status: h.as_str().into(),
                    })
                    .set(n as i64);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    async fn pull(&self, node: &str, addr: SocketAddr) -> bool {
        let r = self
            .inner
            .cluster
            .app_request(addr, PULL_REQUEST.to_vec())
            .await
            .map_err(|e| e.to_string())
            .and_then(|b| sync::decode_reply(&b).map_err(|e| e.to_string()));
        match r {
            Ok((digest, mut entries)) => {
                entries.retain(|e| e.validate_shape());
                self.inner.metrics.pull(true);
                let n = entries.len();
                if self.with_view(|v| v.apply_pull(node, digest, entries)).0 {
                    tracing::debug!(node, services = n, "pulled service list");
                    self.bump();
                }
                true
            }
            Err(e) => {
                self.inner.metrics.pull(false);
                tracing::debug!(node, error = %e, "service list pull failed");
                false
            }
        }
    }
}

fn load_files(l: &mut Local, dir: &std::path::Path) {
    let scan = crate::files::scan(dir);
    for e in &scan.errors {
        tracing::error!(error = %e, "service file not loaded");
    }
    let mut files = scan.services;
    // A file that fails to parse keeps what it defined before: a typo must
    // not unpublish a running service.
    for (k, (d, p)) in &l.files {
        if scan.failed.contains(p) && !files.contains_key(k) {
            files.insert(k.clone(), (d.clone(), p.clone()));
        }
    }
    l.files = files;
}

/// Every local definition (files override the store on the same key).
fn defs_of(l: &Local) -> impl Iterator<Item = (&String, &ServiceDef)> {
    l.stored
        .iter()
        .filter(|(k, _)| !l.files.contains_key(*k))
        .chain(l.files.iter().map(|(k, (d, _))| (k, d)))
}
