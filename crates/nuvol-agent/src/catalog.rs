//! The agent-owned service catalog.
//!
//! Owns this node's published services (the redb store in the data dir plus
//! the service-file directory), runs their health checks, and keeps the
//! cluster-wide view ([`ClusterCatalog`]) current from membership events and
//! full-list pulls. It writes two tags on this node:
//! - `services`: Cloudy's encoding of the services that are not critical,
//!   as many as fit the 512-byte tag budget (Cloudy / avahi-ps peers);
//! - `nv-svc`: the digest of the full list; nuvol peers that see a new
//!   digest pull the full list over the gossip TCP port.
//!
//! Invariants: every change to the local list goes store first (durable),
//! then tags; one tokio mutex serialises changes so tags never go backwards;
//! readers (API, DNS) only take the view's read lock briefly.

use crate::runtime::{AgentError, AgentHandle};
use nuvol_catalog::cloudy::{encode_services_fitting, CloudyService};
use nuvol_catalog::model::{aggregate, CheckState, CheckView, Health};
use nuvol_catalog::store::{Store, StoreError};
use nuvol_catalog::sync::{self, PULL_REQUEST};
use nuvol_catalog::view::{ClusterCatalog, MemberView, NodeState, DIGEST_TAG, SERVICES_TAG};
use nuvol_catalog::{CatalogError, Filter, ServiceDef, ServiceEntry, Source, Status};
use nuvol_gossip::{Event, MemberEventKind, MemberStatus};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch, Mutex};
use tokio::time::Instant;

/// Settings of the catalog.
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    pub data_dir: PathBuf,
    /// Directory of service files, reloaded on [`Catalog::reload_files`].
    pub services_dir: Option<PathBuf>,
    /// The micro-cloud name (`e` in Cloudy's tag, `<node>.<cloud>.local`).
    pub cloud: String,
    /// How long services of a failed or departed node stay listed.
    pub remove_after: Duration,
}

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
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// A catalog change, for the API's event stream.
#[derive(Debug, Clone)]
pub struct CatalogEvent {
    pub event: &'static str,
    pub data: serde_json::Value,
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct CatalogStats {
    pub pulls_ok: AtomicU64,
    pub pulls_failed: AtomicU64,
    pub publishes: AtomicU64,
    pub unpublishes: AtomicU64,
    /// Services of this node left out of the Cloudy tag for lack of room.
    pub cloudy_left_out: AtomicU64,
}

struct Local {
    store: Store,
    stored: BTreeMap<String, ServiceDef>,
    files: BTreeMap<String, (ServiceDef, PathBuf)>,
    /// Latest result per check, by service key; `None` until the first run
    /// (counted as critical, as Consul does).
    checks: HashMap<String, Vec<Option<CheckState>>>,
    runner: nuvol_checks::Runner,
    /// Tags last written (services, digest).
    last_tags: Option<(String, String)>,
}

struct Inner {
    agent: AgentHandle,
    name: String,
    ip: String,
    cloud: String,
    local: Mutex<Local>,
    view: RwLock<ClusterCatalog>,
    /// The encoded full-list reply served to pulling peers.
    reply: RwLock<Arc<Vec<u8>>>,
    addrs: RwLock<HashMap<String, SocketAddr>>,
    events: broadcast::Sender<CatalogEvent>,
    version: watch::Sender<u64>,
    start: Instant,
    services_dir: Option<PathBuf>,
    pub stats: CatalogStats,
}

/// A cheap, cloneable handle to the catalog.
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

impl Catalog {
    /// Open the store, read the service files, start the checks and the
    /// background tasks, and publish the tags.
    pub async fn start(
        agent: AgentHandle,
        settings: CatalogSettings,
    ) -> Result<Catalog, CatalogOpError> {
        std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
            CatalogOpError::Store(StoreError::Db(format!(
                "cannot create {}: {e}",
                settings.data_dir.display()
            )))
        })?;
        let store = Store::open(&settings.data_dir.join("catalog.redb"))?;
        let (defs, bad) = store.list()?;
        for b in bad {
            tracing::error!(key = %b.key, error = %b.error, "unreadable service in the catalog store; kept, not published");
        }
        let me = agent
            .call(|c| c.gossip.local_member())
            .await?
            .ok_or_else(|| {
                CatalogOpError::Agent(AgentError::Other("agent has no local member".into()))
            })?;
        let (check_tx, check_rx) = mpsc::channel(256);
        let local = Local {
            store,
            stored: defs.into_iter().map(|d| (d.key(), d)).collect(),
            files: BTreeMap::new(),
            checks: HashMap::new(),
            runner: nuvol_checks::Runner::new(check_tx),
            last_tags: None,
        };
        let (version, _) = watch::channel(0);
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            name: me.name.clone(),
            ip: me.addr.ip().to_string(),
            cloud: settings.cloud.clone(),
            local: Mutex::new(local),
            view: RwLock::new(ClusterCatalog::new(&me.name, settings.remove_after)),
            reply: RwLock::new(Arc::new(Vec::new())),
            addrs: RwLock::new(HashMap::new()),
            events,
            version,
            start: Instant::now(),
            services_dir: settings.services_dir.clone(),
            stats: CatalogStats::default(),
            agent: agent.clone(),
        });
        let cat = Catalog { inner };
        {
            let reply = cat.clone();
            agent
                .set_app_stream_handler(Arc::new(move |req: &[u8]| {
                    if req == PULL_REQUEST {
                        Some(reply.reply_bytes())
                    } else {
                        None
                    }
                }))
                .await?;
        }
        {
            let mut l = cat.inner.local.lock().await;
            if let Some(dir) = &cat.inner.services_dir {
                cat.load_files(&mut l, dir);
            }
            let all: Vec<(String, ServiceDef)> =
                cat.defs(&l).map(|(k, d)| (k.clone(), d.clone())).collect();
            for (k, d) in all {
                l.runner.set(&k, d.checks.clone());
            }
            cat.republish(&mut l).await;
        }
        tokio::spawn(cat.clone().member_loop());
        tokio::spawn(cat.clone().check_loop(check_rx));
        tokio::spawn(cat.clone().maintenance_loop());
        Ok(cat)
    }

    pub fn stats(&self) -> &CatalogStats {
        &self.inner.stats
    }

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

    pub fn subscribe(&self) -> broadcast::Receiver<CatalogEvent> {
        self.inner.events.subscribe()
    }

    /// Bumped on every change of the view (DNS and mDNS re-derive from it).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.version.subscribe()
    }

    fn reply_bytes(&self) -> Vec<u8> {
        match self.inner.reply.read() {
            Ok(r) => r.as_ref().clone(),
            Err(p) => p.into_inner().as_ref().clone(),
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
        let mut guard = match self.inner.view.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard)
    }

    fn bump(&self) {
        self.inner.version.send_modify(|v| *v += 1);
    }

    fn emit(&self, event: &'static str, data: serde_json::Value) {
        let _ = self.inner.events.send(CatalogEvent { event, data });
    }

    /// Replace the services imported from mDNS.
    pub fn set_mdns(&self, entries: Vec<ServiceEntry>) {
        if self.with_view(|v| v.set_mdns(entries)).0 {
            self.bump();
        }
    }

    /// Publish (or replace: same type and port) a service on this node.
    pub async fn publish(&self, def: ServiceDef) -> Result<ServiceEntry, CatalogOpError> {
        def.validate()?;
        let key = def.key();
        let mut l = self.inner.local.lock().await;
        if let Some((_, file)) = l.files.get(&key) {
            return Err(CatalogOpError::FromFile {
                key,
                file: file.clone(),
            });
        }
        if !l.stored.contains_key(&key)
            && self.defs(&l).count() >= nuvol_catalog::model::MAX_SERVICES_PER_NODE
        {
            return Err(CatalogOpError::Invalid(CatalogError::BadField(
                "services".into(),
                format!(
                    "this node already publishes {} services, the most allowed",
                    nuvol_catalog::model::MAX_SERVICES_PER_NODE
                ),
            )));
        }
        l.store.put(&def)?;
        if l.stored.get(&key).map(|d| &d.checks) != Some(&def.checks) {
            l.checks.remove(&key);
        }
        l.runner.set(&key, def.checks.clone());
        l.stored.insert(key.clone(), def);
        self.inner.stats.publishes.fetch_add(1, Ordering::Relaxed);
        self.republish(&mut l).await;
        let entry = self
            .local_entries(&l)
            .into_iter()
            .find(|e| e.key() == key)
            .ok_or_else(|| CatalogOpError::NotFound(key.clone()))?;
        drop(l);
        self.emit(
            "service-published",
            serde_json::to_value(&entry).unwrap_or_default(),
        );
        Ok(entry)
    }

    /// Remove this node's service `stype` on `port`, or every service of
    /// that type without a port. Returns how many were removed.
    pub async fn unpublish(&self, stype: &str, port: Option<u16>) -> Result<usize, CatalogOpError> {
        nuvol_catalog::cloudy::validate_type(stype)?;
        let mut l = self.inner.local.lock().await;
        let keys: Vec<String> = self
            .defs(&l)
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
                l.store.remove(&d.stype, d.port)?;
                l.stored.remove(k);
                l.runner.remove(k);
                l.checks.remove(k);
            }
        }
        self.inner
            .stats
            .unpublishes
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
        self.republish(&mut l).await;
        drop(l);
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
        let mut l = self.inner.local.lock().await;
        let before: BTreeMap<String, ServiceDef> = l
            .files
            .iter()
            .map(|(k, (d, _))| (k.clone(), d.clone()))
            .collect();
        self.load_files(&mut l, &dir);
        for (k, d) in l.files.clone() {
            if before.get(&k) != Some(&d.0) {
                l.checks.remove(&k);
                l.runner.set(&k, d.0.checks.clone());
            }
        }
        for k in before.keys() {
            if !l.files.contains_key(k) && !l.stored.contains_key(k) {
                l.runner.remove(k);
                l.checks.remove(k);
            }
        }
        self.republish(&mut l).await;
        tracing::info!(dir = %dir.display(), services = l.files.len(), "service files reloaded");
    }

    fn load_files(&self, l: &mut Local, dir: &std::path::Path) {
        let scan = nuvol_catalog::files::scan(dir);
        for e in &scan.errors {
            tracing::error!(error = %e, "service file not loaded");
        }
        let mut files = scan.services;
        // A file that fails to parse keeps what it defined before: a typo
        // must not unpublish a running service.
        for (k, (d, p)) in &l.files {
            if scan.failed.contains(p) && !files.contains_key(k) {
                files.insert(k.clone(), (d.clone(), p.clone()));
            }
        }
        l.files = files;
    }

    /// Every local definition (files override the store on the same key).
    fn defs<'a>(&self, l: &'a Local) -> impl Iterator<Item = (&'a String, &'a ServiceDef)> {
        l.stored
            .iter()
            .filter(|(k, _)| !l.files.contains_key(*k))
            .chain(l.files.iter().map(|(k, (d, _))| (k, d)))
    }

    fn local_entries(&self, l: &Local) -> Vec<ServiceEntry> {
        let mut out: Vec<ServiceEntry> = self
            .defs(l)
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
    async fn republish(&self, l: &mut Local) {
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
        let changed = self.with_view(|v| v.set_local(entries.clone())).0;
        if changed {
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
        let want_digest = if entries.is_empty() {
            String::new()
        } else {
            digest
        };
        let left_out = &self.inner.stats.cloudy_left_out;
        let last = l.last_tags.clone();
        let r = self
            .inner
            .agent
            .modify_tags(move |tags| {
                tags.remove(SERVICES_TAG);
                tags.remove(DIGEST_TAG);
                if !want_digest.is_empty() {
                    tags.insert(DIGEST_TAG.to_owned(), want_digest.clone());
                }
                let base = tags.clone();
                let fits = |value: &str| {
                    let mut t = base.clone();
                    t.insert(SERVICES_TAG.to_owned(), value.to_owned());
                    nuvol_gossip::encode_meta(5, &t).len() <= nuvol_wire::memberlist::META_MAX_SIZE
                };
                let (value, n) = encode_services_fitting(&cloudy, fits);
                if n > 0 {
                    tags.insert(SERVICES_TAG.to_owned(), value.clone());
                }
                let pair = (if n > 0 { value } else { String::new() }, want_digest);
                let unchanged = last.as_ref() == Some(&pair);
                (pair, cloudy.len() - n, unchanged)
            })
            .await;
        match r {
            Ok((pair, missing, _)) => {
                left_out.store(missing as u64, Ordering::Relaxed);
                if missing > 0 {
                    tracing::info!(
                        missing,
                        "services left out of the Cloudy tag (512-byte limit); nuvol peers get all of them"
                    );
                }
                l.last_tags = Some(pair);
            }
            Err(e) => tracing::error!(error = %e, "failed to update the services tags"),
        }
    }

    async fn member_loop(self) {
        let mut rx = self.inner.agent.subscribe_members();
        self.full_sync().await;
        loop {
            match rx.recv().await {
                Ok(Event::Member { kind, members }) => {
                    let now = self.inner.start.elapsed();
                    let mut changed = false;
                    for m in &members {
                        self.emit(
                            match kind {
                                MemberEventKind::Join => "member-join",
                                MemberEventKind::Leave => "member-leave",
                                MemberEventKind::Failed => "member-failed",
                                MemberEventKind::Update => "member-update",
                                MemberEventKind::Reap => "member-reap",
                            },
                            serde_json::json!({"name": m.name, "addr": m.addr.ip().to_string(), "port": m.addr.port(), "status": m.status.as_str()}),
                        );
                        // A reaped member keeps its services (unavailable)
                        // until `remove_after`.
                        if kind != MemberEventKind::Reap {
                            changed |= self.observe(m, now);
                        }
                    }
                    if changed {
                        // Wakes the maintenance loop, which pulls.
                        self.bump();
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => self.full_sync().await,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn full_sync(&self) {
        let Ok(members) = self.inner.agent.members().await else {
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

    fn remember_addr(&self, m: &nuvol_gossip::Member) {
        if let Ok(mut a) = self.inner.addrs.write() {
            a.insert(m.name.clone(), m.addr);
        }
    }

    /// Feed one member into the view; true if it changed.
    fn observe(&self, m: &nuvol_gossip::Member, now: Duration) -> bool {
        self.remember_addr(m);
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
            let mut l = self.inner.local.lock().await;
            if l.runner.generation(&u.service) != Some(u.generation) {
                continue; // a result of checks since replaced or removed
            }
            let Some(n) = self
                .defs(&l)
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
                self.republish(&mut l).await;
                drop(l);
                self.emit(
                    "check-changed",
                    serde_json::json!({"node": self.inner.name, "service": u.service, "index": u.index, "status": u.state.status, "output": u.state.output}),
                );
            } else {
                // Output only: refresh what this node lists and serves, keep
                // the digest (peers see status changes, not every output).
                let entries = self.local_entries(&l);
                self.with_view(|v| v.set_local(entries));
            }
        }
    }

    async fn maintenance_loop(self) {
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut backoff: HashMap<String, Instant> = HashMap::new();
        let (done_tx, mut done_rx) = mpsc::channel::<(String, bool)>(64);
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
                Some((node, ok)) = done_rx.recv() => {
                    in_flight.remove(&node);
                    if ok {
                        backoff.remove(&node);
                    } else {
                        backoff.insert(node, Instant::now() + Duration::from_secs(2));
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
                let done = done_tx.clone();
                tokio::spawn(async move {
                    let ok = cat.pull(&node, addr).await;
                    let _ = done.send((node, ok)).await;
                });
            }
        }
    }

    async fn pull(&self, node: &str, addr: SocketAddr) -> bool {
        let r = self
            .inner
            .agent
            .app_request(addr, PULL_REQUEST.to_vec())
            .await
            .map_err(|e| e.to_string())
            .and_then(|b| sync::decode_reply(&b).map_err(|e| e.to_string()));
        match r {
            Ok((digest, mut entries)) => {
                entries.retain(|e| e.validate_shape());
                self.inner.stats.pulls_ok.fetch_add(1, Ordering::Relaxed);
                let n = entries.len();
                if self.with_view(|v| v.apply_pull(node, digest, entries)).0 {
                    tracing::debug!(node, services = n, "pulled service list");
                    self.bump();
                }
                true
            }
            Err(e) => {
                self.inner
                    .stats
                    .pulls_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node, error = %e, "service list pull failed");
                false
            }
        }
    }
}
