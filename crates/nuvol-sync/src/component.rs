//! The sync component: `[sync]`, the `sync` tag, `GET /v1/sync`, the
//! [`SyncHandle`] service, the folder metrics, and the run loop that
//! starts (or attaches to) Syncthing and keeps its config what the planner
//! says.

use crate::client::Client;
use crate::error::SyncError;
use crate::plan::{self, AppPlace, DeviceId, Inputs, Mode, Peer, SYNC_TAG};
use crate::runner::{self, Syncthing};
use crate::settings::{listen_port, FolderSpec, SyncSettings};
use axum::http::Method;
use nuvol_agent::chan::RecvError;
use nuvol_agent::http::{Access, HttpRoute};
use nuvol_agent::{
    BuildCtx, BuildError, Cluster, ClusterError, Component, ComponentError, OwnedTags, RunCtx,
};
use nuvol_catalog::component::Catalog;
use nuvol_catalog::model::{app_health, Filter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;

/// Where the folders' modes are kept across restarts (in DATA_DIR).
pub const MODES_FILE: &str = "sync-modes.json";
/// Files looked at per folder when counting conflicts.
const MAX_WALK: usize = 100_000;

/// `GET /v1/sync`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SyncStatus {
    /// This node's Syncthing device id, once known.
    pub device_id: Option<String>,
    pub syncthing: SyncthingStatus,
    pub folders: Vec<FolderStatus>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SyncthingStatus {
    /// Its API answers.
    pub running: bool,
    /// Whether nuvol runs it (`false`: attached).
    pub managed: bool,
    pub address: String,
    pub version: Option<String>,
    /// Why it does not run or answer.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FolderStatus {
    pub id: String,
    pub path: String,
    /// `sendreceive`, `sendonly` or `receiveonly` on this node.
    #[serde(rename = "type")]
    pub kind: String,
    /// The app whose node is the folder's sender (`follow_app`).
    pub follow_app: Option<String>,
    /// Where that app runs: `here`, `elsewhere` or `nowhere` (the mode
    /// is then kept).
    pub app_place: Option<AppPlace>,
    /// The other nodes it is shared with (those with sync on).
    pub nodes: Vec<String>,
    /// Syncthing's state: `idle`, `scanning`, `syncing`, `error`, ...
    /// (`unknown` before it was asked).
    pub state: String,
    /// Idle, nothing needed here, and every peer has everything (as far
    /// as Syncthing knows).
    pub in_sync: bool,
    pub need_files: u64,
    pub need_bytes: u64,
    /// `*.sync-conflict-*` files in the folder.
    pub conflicts: u64,
    /// Peers currently connected, of `nodes`.
    pub connected: Vec<String>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FolderLabel {
    folder: String,
}

#[derive(Default)]
struct Metrics {
    need_files: Family<FolderLabel, Gauge>,
    conflicts: Family<FolderLabel, Gauge>,
}

/// What the route, the handle and the run loop share.
struct Shared {
    status: RwLock<SyncStatus>,
    modes: RwLock<BTreeMap<String, Mode>>,
    /// Where each followed app is (by folder id), for the status.
    places: RwLock<BTreeMap<String, AppPlace>>,
    folders: Vec<FolderSpec>,
    kick: Notify,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut SyncStatus)) {
        let mut g = self
            .status
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g);
    }
}

/// The sync service for other components (HA apps flip a folder's mode on
/// failover).
#[derive(Clone)]
pub struct SyncHandle(Arc<Shared>);

impl SyncHandle {
    /// The last status the run loop saw.
    pub fn status(&self) -> SyncStatus {
        self.0
            .status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// This node's mode of `folder`; applied at once by the run loop, and
    /// kept across restarts (`DATA_DIR/sync-modes.json`). A folder with
    /// `follow_app` is set by the app's place again on the loop's next
    /// pass once the app runs somewhere.
    pub fn set_mode(&self, folder: &str, mode: Mode) -> Result<(), SyncError> {
        if !self.0.folders.iter().any(|f| f.id == folder) {
            return Err(SyncError::UnknownFolder(folder.to_owned()));
        }
        self.0
            .modes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(folder.to_owned(), mode);
        self.0.kick.notify_one();
        Ok(())
    }

    /// This node's mode of `folder`.
    pub fn mode(&self, folder: &str) -> Mode {
        self.0
            .modes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(folder)
            .copied()
            .unwrap_or_default()
    }
}

const OPENAPI: &str = r##"{
  "paths": {
    "/v1/sync": {
      "get": {
        "operationId": "getSync",
        "tags": ["sync"],
        "summary": "Replicated folders: this node's Syncthing and the state of each folder.",
        "responses": {
          "200": {
            "description": "The sync status.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncStatus"}}}
          }
        }
      }
    }
  },
  "components": {
    "schemas": {
      "SyncStatus": {
        "type": "object",
        "required": ["syncthing", "folders"],
        "properties": {
          "device_id": {"type": ["string", "null"], "description": "This node's Syncthing device id."},
          "syncthing": {
            "type": "object",
            "properties": {
              "running": {"type": "boolean"},
              "managed": {"type": "boolean", "description": "nuvol runs it (false: attached)."},
              "address": {"type": "string"},
              "version": {"type": ["string", "null"]},
              "error": {"type": ["string", "null"], "description": "Why it does not run or answer."}
            }
          },
          "folders": {
            "type": "array",
            "items": {
              "type": "object",
              "properties": {
                "id": {"type": "string"},
                "path": {"type": "string"},
                "type": {"type": "string", "enum": ["sendreceive", "sendonly", "receiveonly"]},
                "follow_app": {"type": ["string", "null"], "description": "The app whose node sends this folder (follow_app)."},
                "app_place": {"type": ["string", "null"], "enum": ["here", "elsewhere", "nowhere", null], "description": "Where that app runs; nowhere: the last mode is kept."},
                "nodes": {"type": "array", "items": {"type": "string"}},
                "state": {"type": "string", "description": "idle, scanning, syncing, error, ... (unknown before Syncthing was asked)"},
                "in_sync": {"type": "boolean"},
                "need_files": {"type": "integer"},
                "need_bytes": {"type": "integer"},
                "conflicts": {"type": "integer"},
                "connected": {"type": "array", "items": {"type": "string"}},
                "error": {"type": ["string", "null"]}
              }
            }
          }
        }
      }
    }
  }
}"##;

/// The component.
pub struct Sync {
    cfg: SyncSettings,
    home: PathBuf,
    gui: SocketAddr,
    port: u16,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    tag: OwnedTags,
    node: String,
    catalog: Option<Catalog>,
    modes_file: PathBuf,
}

impl Component for Sync {
    type Config = SyncSettings;
    const NAME: &'static str = "sync";

    fn build(cfg: SyncSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        if !cfg.enable {
            return Ok(None);
        }
        let gui = cfg.gui_addr().map_err(BuildError::new)?;
        let port = listen_port(&cfg.listen).map_err(BuildError::new)?;
        let home = if cfg.home.as_os_str().is_empty() {
            ctx.data_dir().join("syncthing")
        } else {
            cfg.home.clone()
        };
        let shared = Arc::new(Shared {
            status: RwLock::new(SyncStatus {
                device_id: None,
                syncthing: SyncthingStatus {
                    running: false,
                    managed: !cfg.attach,
                    address: gui.to_string(),
                    version: None,
                    error: None,
                },
                folders: Vec::new(),
            }),
            modes: RwLock::new(BTreeMap::new()),
            places: RwLock::new(BTreeMap::new()),
            folders: cfg.folders.0.clone(),
            kick: Notify::new(),
        });
        let catalog = ctx.get::<Catalog>();
        if let Some(f) = cfg.folders.0.iter().find(|f| f.follow_app.is_some()) {
            if catalog.is_none() {
                return Err(BuildError::new(format!(
                    "[sync] folder {} follows an app, which needs the catalog ([catalog] enable)",
                    f.id
                )));
            }
        }
        let modes_file = ctx.data_dir().join(MODES_FILE);
        let metrics = Arc::new(Metrics::default());
        ctx.metrics().register(
            "sync_folder_need_files",
            "Files this node still needs, per folder",
            metrics.need_files.clone(),
        );
        ctx.metrics().register(
            "sync_folder_conflicts",
            "Sync conflict files, per folder",
            metrics.conflicts.clone(),
        );
        let handle = SyncHandle(shared.clone());
        ctx.provide(handle.clone());
        ctx.http_route(HttpRoute::new(
            Method::GET,
            "/v1/sync",
            Access::View,
            axum::routing::get(move || {
                let body = handle.status();
                async move { axum::Json(body) }
            }),
        ))?;
        ctx.openapi(OPENAPI)?;
        let tag = ctx.own_tags(&[SYNC_TAG])?;
        Ok(Some(Sync {
            cfg,
            home,
            gui,
            port,
            shared,
            metrics,
            tag,
            node: ctx.node_name().to_owned(),
            catalog,
            modes_file,
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let r = self.serve(ctx).await;
        if let Err(e) = &r {
            tracing::warn!(error = %e, "sync: Syncthing is not usable");
            let why = e.to_string();
            self.shared.update(|s| {
                s.syncthing.running = false;
                s.syncthing.error = Some(why);
            });
        }
        r.map_err(Into::into)
    }
}

impl Sync {
    /// Start or attach, then reconcile until stopped.
    async fn serve(&mut self, ctx: &RunCtx) -> Result<(), SyncError> {
        let (mut child, client) = if self.cfg.attach {
            let key = self
                .cfg
                .api_key
                .as_ref()
                .map(|k| k.0.clone())
                .unwrap_or_default();
            (None, Client::new(self.gui, key)?)
        } else {
            let program =
                runner::find_program(&self.cfg.syncthing).ok_or_else(|| SyncError::NotFound {
                    program: self.cfg.syncthing.clone(),
                })?;
            std::fs::create_dir_all(&self.home).map_err(|e| SyncError::Io {
                path: self.home.clone(),
                message: e.to_string(),
            })?;
            let key = match &self.cfg.api_key {
                Some(k) if !k.0.is_empty() => k.0.clone(),
                _ => runner::api_key(&self.home)?,
            };
            let (st, client) = Syncthing::start(&program, &self.home, self.gui, &key).await?;
            (Some(st), client)
        };
        let r = self.attached(ctx, &client, &mut child).await;
        if let Some(st) = child {
            st.stop().await;
        }
        // The tag goes with it (best effort: the agent may be stopping).
        let _ = self.set_tag(None).await;
        r
    }

    async fn attached(
        &mut self,
        ctx: &RunCtx,
        client: &Client,
        child: &mut Option<Syncthing>,
    ) -> Result<(), SyncError> {
        let me = DeviceId::parse(&client.status().await?.my_id).map_err(|e| SyncError::Api {
            addr: client.addr(),
            message: e.to_string(),
        })?;
        let version = client.version().await.ok().map(|v| v.version);
        tracing::info!(device = %me, version = ?version, address = %client.addr(), "sync: Syncthing answers");
        self.shared.update(|s| {
            s.device_id = Some(me.to_string());
            s.syncthing.running = true;
            s.syncthing.version = version.clone();
            s.syncthing.error = None;
        });
        for f in &self.cfg.folders.0 {
            if f.shared_by(&self.node) {
                std::fs::create_dir_all(&f.path).map_err(|e| SyncError::Io {
                    path: f.path.clone(),
                    message: e.to_string(),
                })?;
            }
        }
        let mut saved = self.load_modes().await;
        let _ = self.follow();
        // First the config (listen address, discovery off), then the tag
        // peers connect with.
        let cluster = ctx.cluster().clone();
        let mut events = cluster.member_events();
        let mut changes = self.catalog.as_ref().map(Catalog::changes);
        let mut peers = self.reconcile(&cluster, client, &me).await?;
        self.save_modes(&mut saved).await;
        self.set_tag(Some(&me)).await.map_err(|e| SyncError::Api {
            addr: client.addr(),
            message: format!("cannot set the sync tag: {e}"),
        })?;
        ctx.ready();
        let mut tick = tokio::time::interval(self.cfg.poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error: Option<String> = None;
        loop {
            if let Some(st) = child.as_mut() {
                if let Some(e) = st.exited() {
                    *child = None;
                    return Err(e);
                }
            }
            let _ = self.follow();
            let step = async {
                peers = self.reconcile(&cluster, client, &me).await?;
                self.save_modes(&mut saved).await;
                self.refresh(client, &peers).await
            };
            match step.await {
                Ok(()) => {
                    if last_error.take().is_some() {
                        tracing::info!("sync: Syncthing answers again");
                    }
                    self.shared.update(|s| {
                        s.syncthing.running = true;
                        s.syncthing.error = None;
                    });
                }
                Err(e @ SyncError::KeyRefused { .. }) => return Err(e),
                Err(e) => {
                    let why = e.to_string();
                    if last_error.as_deref() != Some(why.as_str()) {
                        tracing::warn!(error = %why, "sync: cannot reconcile");
                    }
                    self.shared.update(|s| {
                        s.syncthing.running = !matches!(e, SyncError::Unreachable { .. });
                        s.syncthing.error = Some(why.clone());
                    });
                    last_error = Some(why);
                }
            }
            loop {
                tokio::select! {
                    () = ctx.stopping() => return Ok(()),
                    _ = tick.tick() => {}
                    () = self.shared.kick.notified() => {}
                    closed = catalog_changed(&mut changes) => {
                        if closed {
                            changes = None;
                        }
                        // A catalog change matters only when it moves a
                        // followed app's folder.
                        if !self.follow() {
                            continue;
                        }
                    }
                    ev = events.recv() => match ev {
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return Ok(()),
                    },
                }
                break;
            }
        }
    }

    /// The modes kept in DATA_DIR (modes already set in memory win); a
    /// file that cannot be read is logged and ignored. Returns them as
    /// saved.
    async fn load_modes(&self) -> BTreeMap<String, Mode> {
        let path = self.modes_file.clone();
        let loaded = tokio::task::spawn_blocking(move || read_modes(&path))
            .await
            .unwrap_or_default();
        let mut modes = self
            .shared
            .modes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (id, m) in &loaded {
            if self.cfg.folders.0.iter().any(|f| f.id == *id) {
                modes.entry(id.clone()).or_insert(*m);
            }
        }
        if !loaded.is_empty() {
            tracing::info!(modes = ?*modes, "sync: folder modes restored");
        }
        loaded
    }

    /// Write the modes file when the modes differ from `saved`.
    async fn save_modes(&self, saved: &mut BTreeMap<String, Mode>) {
        let modes = self
            .shared
            .modes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if modes == *saved {
            return;
        }
        let path = self.modes_file.clone();
        let bytes = plan::encode_modes(&modes);
        let r = tokio::task::spawn_blocking(move || {
            nuvol_agent::fsutil::write_atomic(&path, &bytes, 0o600)
        })
        .await;
        match r {
            Ok(Ok(())) => *saved = modes,
            Ok(Err(e)) => {
                tracing::warn!(file = %self.modes_file.display(), error = %e, "sync: cannot save the folder modes")
            }
            Err(e) => tracing::warn!(error = %e, "sync: cannot save the folder modes"),
        }
    }

    /// The folders that follow an app: their mode from where the catalog
    /// shows the app. Whether a mode changed.
    fn follow(&self) -> bool {
        let Some(catalog) = &self.catalog else {
            return false;
        };
        if !self.cfg.folders.0.iter().any(|f| f.follow_app.is_some()) {
            return false;
        }
        let all = catalog.entries(&Filter {
            stype: None,
            node: None,
        });
        let place = |app: &str| app_place(&all, &self.node, app);
        let mut places = BTreeMap::new();
        for f in &self.cfg.folders.0 {
            if let Some(app) = &f.follow_app {
                places.insert(f.id.clone(), place(app));
            }
        }
        *self
            .shared
            .places
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = places;
        let mut modes = self
            .shared
            .modes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changes = plan::follow(&self.cfg.folders.0, &self.node, place, &modes);
        let changed = !changes.is_empty();
        for (id, mode) in changes {
            tracing::info!(folder = %id, mode = mode.as_str(), "sync: the folder follows its app");
            modes.insert(id, mode);
        }
        changed
    }

    async fn set_tag(&self, me: Option<&DeviceId>) -> Result<(), ClusterError> {
        let value = me.map(|me| plan::tag_value(me, self.port));
        self.tag.set(SYNC_TAG, value).await
    }

    /// One pass of the planner; returns the peers it used.
    async fn reconcile(
        &self,
        cluster: &Cluster,
        client: &Client,
        me: &DeviceId,
    ) -> Result<Vec<Peer>, SyncError> {
        let members = cluster.members().await.map_err(|e| SyncError::Api {
            addr: client.addr(),
            message: format!("members: {e}"),
        })?;
        let (peers, bad) = plan::peers(&members, &self.node);
        for (node, why) in bad {
            tracing::debug!(%node, error = %why, "sync: ignoring a node's sync tag");
        }
        let modes = self
            .shared
            .modes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let current = client.config().await?;
        let inputs = Inputs {
            node: &self.node,
            me,
            peers: &peers,
            folders: &self.cfg.folders.0,
            modes: &modes,
            listen: &self.cfg.listen,
        };
        if let Some(next) = plan::plan(&inputs, &current) {
            tracing::info!(
                devices = next.devices.len(),
                folders = next.folders.len(),
                "sync: writing Syncthing's config"
            );
            client.put_config(&next).await?;
        }
        Ok(peers)
    }

    /// The folders' state, into the status and the metrics.
    async fn refresh(&self, client: &Client, peers: &[Peer]) -> Result<(), SyncError> {
        let conns = client.connections().await.unwrap_or_default();
        let modes = self
            .shared
            .modes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let places = self
            .shared
            .places
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut out = Vec::new();
        for f in self
            .cfg
            .folders
            .0
            .iter()
            .filter(|f| f.shared_by(&self.node))
        {
            let sharing = plan::folder_peers(f, &self.node, peers);
            let mut st = FolderStatus {
                id: f.id.clone(),
                path: f.path.display().to_string(),
                kind: modes
                    .get(&f.id)
                    .copied()
                    .unwrap_or_default()
                    .as_str()
                    .into(),
                follow_app: f.follow_app.clone(),
                app_place: places.get(&f.id).copied(),
                nodes: sharing.iter().map(|p| p.node.clone()).collect(),
                state: "unknown".into(),
                ..FolderStatus::default()
            };
            st.connected = sharing
                .iter()
                .filter(|p| {
                    conns
                        .connections
                        .get(p.device.as_str())
                        .is_some_and(|c| c.connected)
                })
                .map(|p| p.node.clone())
                .collect();
            match client.db_status(&f.id).await {
                Ok(db) => {
                    st.state = db.state.clone();
                    st.need_files = db.need_files;
                    st.need_bytes = db.need_bytes;
                    let mut problems = Vec::new();
                    for e in [&db.error, &db.invalid] {
                        if !e.is_empty() {
                            problems.push(e.clone());
                        }
                    }
                    if db.pull_errors > 0 {
                        problems.push(format!("{} files failed to sync", db.pull_errors));
                    }
                    let mut peers_done = true;
                    for p in &sharing {
                        match client.completion(&f.id, p.device.as_str()).await {
                            Ok(c) => {
                                peers_done &= c.need_items == 0
                                    && c.need_deletes == 0
                                    && c.completion >= 100.0
                            }
                            Err(_) => peers_done = false,
                        }
                    }
                    st.in_sync = db.state == "idle"
                        && db.need_total_items == 0
                        && problems.is_empty()
                        && st.connected.len() == sharing.len()
                        && peers_done;
                    st.error = (!problems.is_empty()).then(|| problems.join("; "));
                }
                Err(e @ SyncError::KeyRefused { .. }) => return Err(e),
                Err(e) => st.error = Some(e.to_string()),
            }
            let path = f.path.clone();
            st.conflicts = tokio::task::spawn_blocking(move || count_conflicts(&path))
                .await
                .unwrap_or(0);
            let label = FolderLabel {
                folder: f.id.clone(),
            };
            self.metrics
                .need_files
                .get_or_create(&label)
                .set(i64::try_from(st.need_files).unwrap_or(i64::MAX));
            self.metrics
                .conflicts
                .get_or_create(&label)
                .set(i64::try_from(st.conflicts).unwrap_or(i64::MAX));
            out.push(st);
        }
        self.shared.update(|s| s.folders = out);
        Ok(())
    }
}

/// The modes saved in `path`: none when it does not exist, or when it
/// cannot be read or decoded (logged, and the file is left for a look;
/// the next change overwrites it).
pub fn read_modes(path: &Path) -> BTreeMap<String, Mode> {
    match std::fs::read(path) {
        Ok(bytes) => match plan::decode_modes(&bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "sync: ignoring the saved folder modes");
                BTreeMap::new()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "sync: cannot read the saved folder modes");
            BTreeMap::new()
        }
    }
}

/// Where `app` runs, from the catalog's entries: here when it is published
/// and healthy on `me`, elsewhere when on another node, else nowhere.
pub fn app_place(entries: &[nuvol_catalog::model::ServiceEntry], me: &str, app: &str) -> AppPlace {
    if app_health(entries, me, app) == Some(true) {
        return AppPlace::Here;
    }
    let elsewhere = entries
        .iter()
        .filter(|e| e.node != me)
        .any(|e| app_health(entries, &e.node, app) == Some(true));
    if elsewhere {
        AppPlace::Elsewhere
    } else {
        AppPlace::Nowhere
    }
}

/// Wait for the catalog's next change; `true` when it is gone (then the
/// caller stops watching). Never ends without a catalog.
async fn catalog_changed(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) -> bool {
    match changes {
        Some(c) => c.changed().await.is_err(),
        None => std::future::pending().await,
    }
}

/// `*.sync-conflict-*` files under `dir` (at most [`MAX_WALK`] entries
/// looked at; Syncthing's own `.stversions` and `.stfolder` skipped).
pub fn count_conflicts(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            let n = e.file_name().to_string_lossy();
            e.depth() == 0 || !(n == ".stversions" || n == ".stfolder")
        })
        .take(MAX_WALK)
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_type().is_file() && e.file_name().to_string_lossy().contains(".sync-conflict-")
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_are_counted_outside_syncthings_own_directories() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("sub")).unwrap();
        std::fs::create_dir_all(p.join(".stversions")).unwrap();
        std::fs::write(p.join("a.txt"), "x").unwrap();
        std::fs::write(p.join("a.sync-conflict-20260101-120000-ABCDEFG.txt"), "y").unwrap();
        std::fs::write(
            p.join("sub/b.sync-conflict-20260101-120000-ABCDEFG.txt"),
            "y",
        )
        .unwrap();
        std::fs::write(
            p.join(".stversions/c.sync-conflict-20260101-120000-ABCDEFG.txt"),
            "y",
        )
        .unwrap();
        assert_eq!(count_conflicts(p), 2);
        assert_eq!(count_conflicts(&p.join("missing")), 0);
    }

    #[test]
    fn saved_modes_are_read_and_bad_files_ignored() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(MODES_FILE);
        assert!(read_modes(&p).is_empty(), "no file yet");
        let mut m = BTreeMap::new();
        m.insert("db".to_owned(), Mode::SendOnly);
        nuvol_agent::fsutil::write_atomic(&p, &plan::encode_modes(&m), 0o600).unwrap();
        assert_eq!(read_modes(&p), m);
        std::fs::write(&p, b"{\"version\": 1, \"modes\": {\"db\": 7").unwrap();
        assert!(read_modes(&p).is_empty(), "a torn file is ignored");
        std::fs::write(&p, b"\xff\xfe").unwrap();
        assert!(read_modes(&p).is_empty());
        std::fs::create_dir_all(d.path().join("dir")).unwrap();
        assert!(read_modes(&d.path().join("dir")).is_empty(), "unreadable");
    }

    #[test]
    fn set_mode_refuses_unknown_folders_and_wakes_the_loop() {
        let shared = Arc::new(Shared {
            status: RwLock::new(SyncStatus::default()),
            modes: RwLock::new(BTreeMap::new()),
            places: RwLock::new(BTreeMap::new()),
            folders: vec![FolderSpec {
                id: "app".into(),
                path: "/srv/app".into(),
                nodes: Vec::new(),
                follow_app: None,
            }],
            kick: Notify::new(),
        });
        let h = SyncHandle(shared.clone());
        assert_eq!(h.mode("app"), Mode::SendReceive);
        assert_eq!(
            h.set_mode("nope", Mode::SendOnly).unwrap_err().to_string(),
            "no folder \"nope\" in [sync] folders"
        );
        h.set_mode("app", Mode::SendOnly).unwrap();
        assert_eq!(h.mode("app"), Mode::SendOnly);
        // The loop is woken (the permit is stored).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), shared.kick.notified())
                .await
                .expect("notified")
        });
    }
}
