//! The monitor component: `[monitor]`, the `monitor` tag, `GET
//! /v1/monitor`, and the loop that keeps the assignment current.
//!
//! The tag (`WEIGHT:GENERATION:DIGEST`) says "this node is a monitor,
//! with this weight, holding the device set of this generation and
//! digest". On every membership change (and when a pending monitor
//! settles) the loop feeds the alive monitors (this node included) to
//! [`Eligibility`] and recomputes every device's owners with
//! [`assign::assignment`]; when a monitor advertises a newer set, the
//! loop fetches it ([`crate::exchange`]) over the application stream
//! [`DEVICES_STREAM`].

use crate::assign::{self, Eligibility, Monitor};
use crate::devices::{parse_cnml, CnmlReport, Device, DeviceSet, Snmp};
use crate::exchange::{self, Stored};
use crate::ping::{PingOptions, Pinger};
use crate::probe::{Probe, Tracker};
use crate::rings::Closed;
use crate::schedule::Scheduler;
use crate::service::{MonitorHandle, SamplesHandler, SAMPLES_STREAM};
use crate::settings::MonitorSettings;
use crate::store::{series_key, RingStore};
use axum::extract::{Path, RawQuery};
use axum::http::Method;
use futures::future::BoxFuture;
use nuvol_agent::chan::RecvError;
use nuvol_agent::http::{Access, ApiError, HttpRoute};
use nuvol_agent::{
    BuildCtx, BuildError, Cluster, ClusterError, Component, ComponentError, OwnedTags, RunCtx,
    StreamError, StreamHandler,
};
use nuvol_gossip::{Member, MemberStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The gossip tag key.
pub const MONITOR_TAG: &str = "monitor";
/// The application stream protocol that serves this node's device set.
pub const DEVICES_STREAM: u8 = 3;
/// Where the held device set is kept (in DATA_DIR).
pub const DEVICES_FILE: &str = "monitor-devices.json";
/// Where the samples' rings are kept (in DATA_DIR).
pub const STORE_FILE: &str = "monitor.redb";
/// Probes running at once, at most (a probe mostly waits: 5 echoes 200 ms
/// apart and an SNMP answer).
pub const MAX_PROBES: usize = 64;
/// SNMP sessions open at once, at most (see [`crate::probe::probe`]).
pub const MAX_SNMP: usize = 24;
/// How often closed ring points are written to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(30);

/// The `monitor` tag's value.
pub fn tag_value(weight: u32, generation: u64, digest: &str) -> String {
    format!("{weight}:{generation}:{digest}")
}

/// A `monitor` tag: (weight, generation, digest); `None` for anything
/// else.
pub fn parse_tag(v: &str) -> Option<(u32, u64, String)> {
    let mut parts = v.split(':');
    let w: u32 = parts.next()?.parse().ok()?;
    let g: u64 = parts.next()?.parse().ok()?;
    let d = parts.next()?;
    let ok = parts.next().is_none()
        && (1..=assign::MAX_WEIGHT).contains(&w)
        && d.len() == 16
        && d.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| (w, g, d.to_owned()))
}

/// An alive monitor, from its tag.
#[derive(Debug, Clone)]
pub struct Peer {
    pub monitor: Monitor,
    pub generation: u64,
    pub digest: String,
    pub addr: SocketAddr,
}

/// The alive monitors among `members`, from their tags.
pub fn alive_monitors(members: &[Member]) -> Vec<Peer> {
    members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .filter_map(|m| {
            let (w, g, d) = parse_tag(m.tags.get(MONITOR_TAG)?)?;
            Some(Peer {
                monitor: Monitor::new(m.name.clone(), w),
                generation: g,
                digest: d,
                addr: m.addr,
            })
        })
        .collect()
}

/// `GET /v1/monitor`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MonitorStatus {
    pub node: String,
    pub k: u32,
    pub weight: u32,
    /// This node's device set: its digest and generation.
    pub digest: String,
    pub generation: u64,
    /// Where the set came from: `config`, or the monitor it was fetched
    /// from.
    pub source: String,
    pub devices: usize,
    /// The monitors that count now (alive and settled), by name.
    pub monitors: Vec<String>,
    /// Alive monitors not counted yet (alive for less than `settle`).
    pub pending: Vec<String>,
    /// Alive monitors whose device set differs from this node's.
    pub other_sets: Vec<String>,
    /// Device id → its owners, best first.
    pub assignment: BTreeMap<String, Vec<String>>,
    /// Devices this node owns.
    pub mine: Vec<String>,
    /// How this node pings: `dgram` (unprivileged ICMP), `raw`, or why
    /// it cannot.
    pub ping: String,
    /// Probes run, and probes running now.
    pub probes: u64,
    pub probing: usize,
    /// What the CNML source left out.
    pub cnml: Option<CnmlReport>,
    /// Why the device set is not what the config says.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DevLabels {
    device: String,
    monitor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IfLabels {
    device: String,
    monitor: String,
    ifindex: u32,
}

type FGauge = Gauge<f64, AtomicU64>;

/// `/metrics`: this node's latest sample of each device it owns, with a
/// `monitor` label (a Prometheus server scraping every node gets each
/// owner's view, without two nodes' series colliding).
#[derive(Default)]
struct Metrics {
    answered: Family<DevLabels, Gauge>,
    rtt: Family<DevLabels, FGauge>,
    loss: Family<DevLabels, FGauge>,
    uptime: Family<DevLabels, FGauge>,
    in_octets: Family<IfLabels, FGauge>,
    out_octets: Family<IfLabels, FGauge>,
    probes: Counter,
    store_errors: Counter,
}

impl Metrics {
    fn show(&self, device: &str, s: &crate::view::Sample, old: Option<&crate::view::Sample>) {
        let l = DevLabels {
            device: device.to_owned(),
            monitor: s.monitor.clone(),
        };
        self.answered.get_or_create(&l).set(i64::from(s.answered));
        let set = |f: &Family<DevLabels, FGauge>, v: Option<f64>| match v {
            Some(v) => {
                f.get_or_create(&l).set(v);
            }
            None => {
                f.remove(&l);
            }
        };
        set(&self.rtt, s.rtt_ms);
        set(&self.loss, s.loss);
        set(&self.uptime, s.uptime);
        if let Some(old) = old {
            for i in &old.interfaces {
                if !s.interfaces.iter().any(|n| n.index == i.index) {
                    self.forget_if(device, &s.monitor, i.index);
                }
            }
        }
        for i in &s.interfaces {
            let il = IfLabels {
                device: device.to_owned(),
                monitor: s.monitor.clone(),
                ifindex: i.index,
            };
            self.in_octets.get_or_create(&il).set(i.in_octets as f64);
            self.out_octets.get_or_create(&il).set(i.out_octets as f64);
        }
    }

    fn forget_if(&self, device: &str, monitor: &str, ifindex: u32) {
        let il = IfLabels {
            device: device.to_owned(),
            monitor: monitor.to_owned(),
            ifindex,
        };
        self.in_octets.remove(&il);
        self.out_octets.remove(&il);
    }

    fn forget(&self, device: &str, monitor: &str, last: Option<&crate::view::Sample>) {
        let l = DevLabels {
            device: device.to_owned(),
            monitor: monitor.to_owned(),
        };
        self.answered.remove(&l);
        self.rtt.remove(&l);
        self.loss.remove(&l);
        self.uptime.remove(&l);
        for i in last.map(|s| s.interfaces.as_slice()).unwrap_or_default() {
            self.forget_if(device, monitor, i.index);
        }
    }

    fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "monitor_device_answered",
            "The device answered this monitor's latest probe (ping or SNMP)",
            self.answered.clone(),
        );
        r.register(
            "monitor_rtt_milliseconds",
            "Average ICMP echo round trip in this monitor's latest probe",
            self.rtt.clone(),
        );
        r.register(
            "monitor_loss_ratio",
            "Share of ICMP echoes lost in this monitor's latest probe",
            self.loss.clone(),
        );
        r.register(
            "monitor_uptime_seconds",
            "The device's sysUpTime in this monitor's latest probe",
            self.uptime.clone(),
        );
        r.register(
            "monitor_interface_in_octets",
            "ifHCInOctets (ifInOctets without 64-bit counters) in this monitor's latest probe",
            self.in_octets.clone(),
        );
        r.register(
            "monitor_interface_out_octets",
            "ifHCOutOctets (ifOutOctets without 64-bit counters) in this monitor's latest probe",
            self.out_octets.clone(),
        );
        r.register(
            "monitor_probes",
            "Probes this monitor ran",
            self.probes.clone(),
        );
        r.register(
            "monitor_store_errors",
            "Writes of samples to the store that failed",
            self.store_errors.clone(),
        );
    }
}

pub(crate) struct Shared {
    pub(crate) node: String,
    /// A probe this old no longer counts in a verdict.
    pub(crate) fresh_for: Duration,
    status: RwLock<MonitorStatus>,
    /// The device set held, and its digest (computed once, when adopted).
    held: RwLock<(Arc<Stored>, String)>,
    /// The devices this node probes.
    local: RwLock<BTreeMap<String, Tracker>>,
    pub(crate) store: Option<Arc<RingStore>>,
    metrics: Metrics,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut MonitorStatus)) {
        let mut g = self
            .status
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g);
    }
    pub(crate) fn get(&self) -> MonitorStatus {
        self.status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
    pub(crate) fn held(&self) -> Arc<Stored> {
        self.held
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .clone()
    }
    fn digest(&self) -> String {
        self.held
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1
            .clone()
    }
    fn hold(&self, s: Stored, digest: String) {
        *self
            .held
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (Arc::new(s), digest);
    }
    pub(crate) fn local(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Tracker>> {
        self.local
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn local_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Tracker>> {
        self.local
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Open the store; a file that is not a store is moved aside (kept) and
/// an empty one started.
fn open_store(path: &std::path::Path) -> Option<Arc<RingStore>> {
    match RingStore::open(path) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            let aside = path.with_extension(format!("redb.corrupt-{}", now_secs()));
            tracing::warn!(error = %e, aside = %aside.display(), "monitor: the store cannot be opened; moving it aside and starting an empty one");
            if std::fs::rename(path, &aside).is_err() {
                return None;
            }
            match RingStore::open(path) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    tracing::warn!(error = %e, "monitor: no store; samples are kept in memory only");
                    None
                }
            }
        }
    }
}

/// Serves the held device set to a monitor that asks.
struct DevicesHandler(Arc<Shared>);

impl StreamHandler for DevicesHandler {
    fn handle(
        &self,
        _from: SocketAddr,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Arc<Vec<u8>>, StreamError>> {
        let held = self.0.held();
        Box::pin(async move {
            if request != [nuvol_agent::APP_STREAM, DEVICES_STREAM] {
                return Err(StreamError::Refused("unknown monitor request".into()));
            }
            serde_json::to_vec(&*held)
                .map(Arc::new)
                .map_err(|e| StreamError::Refused(e.to_string()))
        })
    }
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The kept set, if any (a corrupt file is logged and ignored).
fn load_stored(path: &std::path::Path) -> Option<Stored> {
    let text = std::fs::read(path).ok()?;
    match serde_json::from_slice::<Stored>(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "monitor: ignoring a corrupt device file");
            None
        }
    }
}

fn save_stored(path: &std::path::Path, s: &Stored) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(s).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

const OPENAPI: &str = r##"{
  "paths": {
    "/v1/monitor": {
      "get": {
        "operationId": "getMonitor",
        "tags": ["monitor"],
        "summary": "Network monitoring: the monitors, and which of them own each device.",
        "responses": {
          "200": {
            "description": "The monitor status.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MonitorStatus"}}}
          }
        }
      }
    },
    "/v1/monitor/devices": {
      "get": {
        "operationId": "getMonitorDevices",
        "tags": ["monitor"],
        "summary": "Every device: its state (down only when a majority of its owners got no answer), owners, latest samples and what is wrong. Any node answers, by asking the owners.",
        "responses": {
          "200": {
            "description": "The devices, by id.",
            "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/MonitorDevice"}}}}
          }
        }
      }
    },
    "/v1/monitor/devices/{id}": {
      "get": {
        "operationId": "getMonitorDevice",
        "tags": ["monitor"],
        "summary": "One device: each owner's latest sample (interfaces included) and its series.",
        "parameters": [
          {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
          {"name": "step", "in": "query", "required": false, "description": "Seconds per point: 300 (a day), 1800 (a week), 7200 (a month) or 86400 (a year).", "schema": {"type": "integer", "enum": [300, 1800, 7200, 86400], "default": 300}}
        ],
        "responses": {
          "200": {
            "description": "The device.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MonitorDeviceDetail"}}}
          },
          "400": {"description": "A bad step.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
          "404": {"description": "No such device.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        }
      }
    }
  },
  "components": {
    "schemas": {
      "MonitorSample": {
        "type": "object",
        "required": ["monitor", "at", "answered"],
        "properties": {
          "monitor": {"type": "string"},
          "at": {"type": "integer", "description": "Seconds since the epoch."},
          "answered": {"type": "boolean"},
          "rtt_ms": {"type": ["number", "null"]},
          "rtt_min_ms": {"type": ["number", "null"]},
          "rtt_max_ms": {"type": ["number", "null"]},
          "loss": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
          "sent": {"type": "integer"},
          "received": {"type": "integer"},
          "uptime": {"type": ["number", "null"], "description": "sysUpTime, seconds."},
          "interfaces": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "oper_up": {"type": "boolean"},
            "in_octets": {"type": "integer"}, "out_octets": {"type": "integer"}, "hc": {"type": "boolean"},
            "in_bps": {"type": ["number", "null"]}, "out_bps": {"type": ["number", "null"]}}}},
          "ping_error": {"type": ["string", "null"]},
          "snmp_error": {"type": ["string", "null"]},
          "counts": {"type": "object", "additionalProperties": {"type": "integer"}}
        }
      },
      "MonitorDevice": {
        "type": "object",
        "required": ["id", "address", "state", "owners"],
        "properties": {
          "id": {"type": "string"},
          "title": {"type": "string"},
          "address": {"type": "string"},
          "state": {"type": "string", "enum": ["up", "down", "unknown"]},
          "owners": {"type": "array", "items": {"type": "string"}},
          "last_sample": {"type": ["integer", "null"]},
          "cause": {"type": ["string", "null"]},
          "reports": {"type": "array", "items": {"$ref": "#/components/schemas/MonitorSample"}},
          "unreachable_owners": {"type": "array", "items": {"type": "string"}}
        }
      },
      "MonitorDeviceDetail": {
        "allOf": [
          {"$ref": "#/components/schemas/MonitorDevice"},
          {"type": "object", "properties": {
            "samples": {"type": "array", "items": {"$ref": "#/components/schemas/MonitorSample"}},
            "series": {"type": "array", "items": {"type": "object", "properties": {
              "monitor": {"type": "string"}, "metric": {"type": "string"}, "step": {"type": "integer"},
              "points": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}}}}}
          }}
        ]
      },
      "MonitorStatus": {
        "type": "object",
        "required": ["node", "k", "monitors", "assignment"],
        "properties": {
          "node": {"type": "string"},
          "k": {"type": "integer"},
          "weight": {"type": "integer"},
          "digest": {"type": "string", "description": "The device set's digest (xxHash64 of its JSON)."},
          "devices": {"type": "integer"},
          "monitors": {"type": "array", "items": {"type": "string"}},
          "pending": {"type": "array", "items": {"type": "string"}},
          "other_sets": {"type": "array", "items": {"type": "string"}},
          "assignment": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
          "mine": {"type": "array", "items": {"type": "string"}},
          "ping": {"type": "string", "description": "dgram, raw, or why this node cannot ping."},
          "probes": {"type": "integer"},
          "probing": {"type": "integer"},
          "cnml": {"type": ["object", "null"]},
          "error": {"type": ["string", "null"]}
        }
      }
    }
  }
}"##;

/// Load the configured device set: the CNML source's devices (a file or
/// an http(s) URL) and the TOML list (a TOML device replaces a CNML one of
/// the same id). An unreadable or malformed CNML source is an error (the
/// caller keeps the set it held).
pub async fn load_devices(
    cfg: &MonitorSettings,
) -> (DeviceSet, Option<CnmlReport>, Option<String>) {
    // TOML first: DeviceSet::new keeps the first of a repeated id.
    let mut devices: Vec<Device> = cfg.devices.0.clone();
    let mut report = None;
    let mut error = None;
    if !cfg.cnml.is_empty() {
        let snmp = Snmp {
            community: cfg.cnml_community.clone(),
            ..Snmp::default()
        };
        let shown = crate::source::redact(&cfg.cnml);
        match crate::source::read_cnml(&cfg.cnml, &crate::source::SourceOptions::default()).await {
            Err(e) => error = Some(e.to_string()),
            Ok(xml) => match parse_cnml(&xml, &snmp) {
                Err(e) => error = Some(format!("{shown}: {e}")),
                Ok((set, r)) => {
                    report = Some(r);
                    devices.extend(set.devices);
                }
            },
        }
    }
    (DeviceSet::new(devices), report, error)
}

/// The component.
pub struct MonitorComponent {
    cfg: MonitorSettings,
    node: String,
    shared: Arc<Shared>,
    tag: OwnedTags,
    file: PathBuf,
}

impl Component for MonitorComponent {
    type Config = MonitorSettings;
    const NAME: &'static str = "monitor";

    fn build(cfg: MonitorSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        if !cfg.enable {
            return Ok(None);
        }
        let shared = Arc::new(Shared {
            node: ctx.node_name().to_owned(),
            // Two rounds, and the time a probe of a silent device takes.
            fresh_for: cfg.interval * 2 + Duration::from_secs(10),
            status: RwLock::new(MonitorStatus {
                node: ctx.node_name().to_owned(),
                k: cfg.k,
                weight: cfg.weight,
                ..MonitorStatus::default()
            }),
            held: RwLock::new((Arc::default(), Stored::default().set.digest())),
            local: RwLock::new(BTreeMap::new()),
            store: open_store(&ctx.data_dir().join(STORE_FILE)),
            metrics: Metrics::default(),
        });
        shared.metrics.register(ctx.metrics());
        ctx.stream_protocol(DEVICES_STREAM, Arc::new(DevicesHandler(shared.clone())))?;
        ctx.stream_protocol(SAMPLES_STREAM, Arc::new(SamplesHandler(shared.clone())))?;
        let handle = MonitorHandle {
            shared: shared.clone(),
            cluster: ctx.cluster(),
        };
        ctx.provide(handle.clone());
        let s = shared.clone();
        ctx.http_route(HttpRoute::new(
            Method::GET,
            "/v1/monitor",
            Access::View,
            axum::routing::get(move || {
                let body = s.get();
                async move { axum::Json(body) }
            }),
        ))?;
        let h = handle.clone();
        ctx.http_route(HttpRoute::new(
            Method::GET,
            "/v1/monitor/devices",
            Access::View,
            axum::routing::get(move || {
                let h = h.clone();
                async move {
                    h.devices()
                        .await
                        .map(axum::Json)
                        .map_err(ApiError::Internal)
                }
            }),
        ))?;
        let h = handle;
        ctx.http_route(HttpRoute::new(
            Method::GET,
            "/v1/monitor/devices/{id}",
            Access::View,
            axum::routing::get(move |Path(id): Path<String>, RawQuery(q): RawQuery| {
                let h = h.clone();
                async move {
                    let step = step_param(q.as_deref())?;
                    match h.device(&id, step).await {
                        Ok(Some(d)) => Ok(axum::Json(d)),
                        Ok(None) => Err(ApiError::NotFound(format!(
                            "no device {id:?} in the device set"
                        ))),
                        Err(e) => Err(ApiError::bad("step", e)),
                    }
                }
            }),
        ))?;
        ctx.openapi(OPENAPI)?;
        let tag = ctx.own_tags(&[MONITOR_TAG])?;
        Ok(Some(MonitorComponent {
            cfg,
            node: ctx.node_name().to_owned(),
            shared,
            tag,
            file: ctx.data_dir().join(DEVICES_FILE),
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let (source, report, error) = load_devices(&self.cfg).await;
        if let Some(e) = &error {
            tracing::warn!(error = %e, "monitor: device source");
        }
        let has_source = !self.cfg.cnml.is_empty() || !self.cfg.devices.0.is_empty();
        let stored = load_stored(&self.file);
        // A CNML file that cannot be read: the set held before is kept.
        let held = match stored {
            Some(s) if error.is_some() => s,
            stored => exchange::start(source, has_source, stored, now_secs()),
        };
        let (pinger, ping_mode) = match Pinger::new() {
            Ok(p) => {
                let mode = if p.kind == socket2::Type::RAW {
                    "raw"
                } else {
                    "dgram"
                };
                (Some(Arc::new(p)), mode.to_owned())
            }
            Err(e) => {
                let why = format!("{e}");
                tracing::warn!(error = %why, "monitor: cannot ping; devices are probed by SNMP only");
                (None, why)
            }
        };
        self.shared.update(|s| {
            s.cnml = report;
            s.error = error;
            s.source = "config".into();
            s.ping = ping_mode.clone();
        });
        self.adopt(held).await?;
        let cluster = ctx.cluster().clone();
        let mut events = cluster.member_events();
        let mut elig = Eligibility::new(self.cfg.settle);
        let mut sched = Scheduler::new(self.cfg.interval);
        let snmp_limit = Arc::new(tokio::sync::Semaphore::new(MAX_SNMP));
        let mut probes: tokio::task::JoinSet<(String, Probe)> = tokio::task::JoinSet::new();
        // Devices due but not started yet: a probe task is spawned only
        // when fewer than MAX_PROBES run. (Spawning every due device at
        // once, each task waiting for a permit, kept a round's 1,000 task
        // futures and device copies alive together: part of the burst.)
        let mut queued: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        let mut inflight: BTreeSet<String> = BTreeSet::new();
        let mut pending: Vec<(String, Closed)> = Vec::new();
        let mut last_flush = Instant::now();
        let mut members_due = true;
        let mut last_members = Instant::now();
        let ping_opts = PingOptions::default();
        let snmp_opts = crate::snmp::Options::default();
        // Reading the CNML source again, in its own task (a URL may take
        // up to its timeout).
        let mut refresh: tokio::task::JoinSet<(DeviceSet, Option<CnmlReport>, Option<String>)> =
            tokio::task::JoinSet::new();
        let refresh_every = self.cfg.cnml_refresh.max(Duration::from_secs(10));
        let mut next_refresh = Instant::now() + refresh_every;
        ctx.ready();
        loop {
            if !self.cfg.cnml.is_empty() && refresh.is_empty() && Instant::now() >= next_refresh {
                next_refresh = Instant::now() + refresh_every;
                let cfg = self.cfg.clone();
                refresh.spawn(async move { load_devices(&cfg).await });
            }
            let now = Instant::now();
            if members_due || now.duration_since(last_members) >= Duration::from_secs(5) {
                members_due = false;
                last_members = now;
                match cluster.members().await {
                    Ok(members) => {
                        self.recompute(now, &members, &mut elig);
                        if self.maybe_fetch(&cluster, &members).await {
                            self.recompute(Instant::now(), &members, &mut elig);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "monitor: no member list"),
                }
                let mine = self.shared.get().mine;
                sched.set_owned(Instant::now(), mine.iter().map(String::as_str));
                self.forget_unowned(&mine, &mut pending);
            }
            // Queue the probes that are due (one at a time per device),
            // and start as many as there is room for.
            for id in sched.due(Instant::now()) {
                if inflight.insert(id.clone()) {
                    queued.push_back(id);
                }
            }
            let held = self.shared.held();
            while probes.len() < MAX_PROBES {
                let Some(id) = queued.pop_front() else {
                    break;
                };
                // No longer owned, or gone from the set, while queued.
                let device = match held.set.get(&id) {
                    Some(d) if sched.contains(&id) => d.clone(),
                    _ => {
                        inflight.remove(&id);
                        continue;
                    }
                };
                let (pinger, why) = (pinger.clone(), ping_mode.clone());
                let snmp_limit = snmp_limit.clone();
                let (po, so) = (ping_opts.clone(), snmp_opts.clone());
                probes.spawn(async move {
                    let p = crate::probe::probe(
                        &device,
                        now_secs(),
                        pinger.as_deref(),
                        &why,
                        &po,
                        &so,
                        &snmp_limit,
                    )
                    .await;
                    (id, p)
                });
            }
            self.shared.update(|s| s.probing = inflight.len());
            if last_flush.elapsed() >= FLUSH_EVERY && !pending.is_empty() {
                last_flush = Instant::now();
                self.flush(std::mem::take(&mut pending)).await;
            }
            // Wake when a probe is due, a pending monitor settles, or
            // every few seconds.
            let wake = [sched.next_wake(), elig.next_change(now)]
                .into_iter()
                .flatten()
                .min();
            let wait = wake
                .map_or(Duration::from_secs(5), |t| {
                    t.saturating_duration_since(Instant::now()) + Duration::from_millis(5)
                })
                .min(Duration::from_secs(5));
            if elig
                .next_change(now)
                .is_some_and(|t| t <= Instant::now() + wait)
            {
                members_due = true;
            }
            tokio::select! {
                () = ctx.stopping() => break,
                () = tokio::time::sleep(wait) => {}
                Some(done) = probes.join_next(), if !probes.is_empty() => {
                    match done {
                        Ok((id, p)) => {
                            inflight.remove(&id);
                            if sched.contains(&id) {
                                pending.extend(self.record(&id, p));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "monitor: a probe task failed");
                            // Its device is unknown here: rebuild the set
                            // (the queued ones stay in it).
                            inflight = queued.iter().cloned().collect();
                        }
                    }
                }
                Some(done) = refresh.join_next(), if !refresh.is_empty() => {
                    if let Ok((source, report, error)) = done {
                        self.refreshed(source, report, error).await;
                        members_due = true;
                    }
                }
                ev = events.recv() => match ev {
                    Ok(_) | Err(RecvError::Lagged(_)) => members_due = true,
                    Err(RecvError::Closed) => break,
                },
            }
        }
        probes.abort_all();
        let open: Vec<(String, Closed)> = self
            .shared
            .local()
            .iter()
            .flat_map(|(id, t)| {
                t.pending()
                    .into_iter()
                    .map(move |(m, c)| (series_key(id, &m), c))
            })
            .collect();
        pending.extend(open);
        self.flush(pending).await;
        let _ = self.set_tag(None).await;
        Ok(())
    }
}

/// `?step=N` (seconds per point), 300 by default.
fn step_param(q: Option<&str>) -> Result<u32, ApiError> {
    let mut step = crate::service::DEFAULT_STEP;
    for (k, v) in q
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
    {
        if k == "step" {
            step = v.parse().map_err(|_| {
                ApiError::bad("step", format!("step {v:?} is not a number of seconds"))
            })?;
        }
    }
    Ok(step)
}

impl MonitorComponent {
    /// Keep a probe's result: the device's sample, its metrics; returns
    /// the ring points it closed, keyed for the store.
    fn record(&self, id: &str, p: Probe) -> Vec<(String, Closed)> {
        let store = self.shared.store.clone();
        let mut resume = |metric: &str| -> Vec<(u32, crate::rings::StoredPoint)> {
            store
                .as_ref()
                .and_then(|s| s.open_rows(&series_key(id, metric), now_secs()).ok())
                .unwrap_or_default()
        };
        let mut local = self.shared.local_mut();
        let t = local.entry(id.to_owned()).or_default();
        let old = t.latest.clone();
        let closed = t.record(&self.node, p, &mut resume);
        if let Some(s) = &t.latest {
            self.shared.metrics.show(id, s, old.as_ref());
        }
        drop(local);
        self.shared.metrics.probes.inc();
        self.shared.update(|s| s.probes += 1);
        closed
            .into_iter()
            .map(|(m, c)| (series_key(id, &m), c))
            .collect()
    }

    /// The CNML source read again: a changed set is adopted with a new
    /// generation (it spreads to every monitor); an error is shown and the
    /// held set kept.
    async fn refreshed(
        &self,
        source: DeviceSet,
        report: Option<CnmlReport>,
        error: Option<String>,
    ) {
        if let Some(e) = &error {
            tracing::warn!(error = %e, "monitor: device source; keeping the device set held");
            self.shared.update(|s| s.error = error.clone());
            return;
        }
        let held = self.shared.held();
        let next = exchange::start(source, true, Some((*held).clone()), now_secs());
        self.shared.update(|s| {
            s.error = None;
            s.cnml = report;
        });
        if next != *held {
            self.shared.update(|s| s.source = "config".into());
            if let Err(e) = self.adopt(next).await {
                tracing::warn!(error = %e, "monitor: adopting the re-read device set");
            }
        }
    }

    /// Drop what this node kept of devices it no longer owns (their open
    /// points go to the store first).
    fn forget_unowned(&self, mine: &[String], pending: &mut Vec<(String, Closed)>) {
        let mut local = self.shared.local_mut();
        let gone: Vec<String> = local
            .keys()
            .filter(|d| !mine.contains(d))
            .cloned()
            .collect();
        for id in gone {
            if let Some(t) = local.remove(&id) {
                pending.extend(
                    t.pending()
                        .into_iter()
                        .map(|(m, c)| (series_key(&id, &m), c)),
                );
                self.shared
                    .metrics
                    .forget(&id, &self.node, t.latest.as_ref());
            }
        }
    }

    /// Write closed points to the store, on a blocking thread.
    async fn flush(&self, rows: Vec<(String, Closed)>) {
        let Some(store) = self.shared.store.clone() else {
            return;
        };
        if rows.is_empty() {
            return;
        }
        let n = rows.len();
        match tokio::task::spawn_blocking(move || store.write(&rows)).await {
            Ok(Ok(())) => tracing::debug!(points = n, "monitor: points written"),
            Ok(Err(e)) => {
                self.shared.metrics.store_errors.inc();
                tracing::warn!(error = %e, points = n, "monitor: cannot write samples");
            }
            Err(e) => {
                self.shared.metrics.store_errors.inc();
                tracing::warn!(error = %e, "monitor: the store writer failed");
            }
        }
    }

    /// Hold `s`: keep it on disk, advertise it, show it.
    async fn adopt(&self, s: Stored) -> Result<(), ComponentError> {
        if let Err(e) = save_stored(&self.file, &s) {
            tracing::warn!(path = %self.file.display(), error = %e, "monitor: cannot keep the device set");
        }
        let digest = s.set.digest();
        tracing::info!(
            devices = s.set.devices.len(),
            generation = s.generation,
            digest = %digest,
            "monitor: device set"
        );
        self.shared.update(|st| {
            st.digest = digest.clone();
            st.generation = s.generation;
            st.devices = s.set.devices.len();
        });
        let generation = s.generation;
        self.shared.hold(s, digest.clone());
        self.set_tag(Some(tag_value(self.cfg.weight, generation, &digest)))
            .await
            .map_err(|e| ComponentError::msg(format!("cannot set the monitor tag: {e}")))
    }

    /// Fetch a newer device set from the monitor advertising it; `true`
    /// when one was adopted.
    async fn maybe_fetch(&self, cluster: &Cluster, members: &[Member]) -> bool {
        let held = self.shared.held();
        let digest = self.shared.digest();
        let peers = alive_monitors(members);
        let offers: Vec<(String, u64, String)> = peers
            .iter()
            .filter(|p| p.monitor.name != self.node)
            .map(|p| (p.monitor.name.clone(), p.generation, p.digest.clone()))
            .collect();
        let Some(from) = exchange::fetch_from((held.generation, &digest), &offers) else {
            return false;
        };
        let Some(peer) = peers.iter().find(|p| p.monitor.name == from) else {
            return false;
        };
        let r = cluster
            .app_request(peer.addr, vec![nuvol_agent::APP_STREAM, DEVICES_STREAM])
            .await
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Stored>(&b).map_err(|e| e.to_string()))
            .and_then(|got| exchange::accept(got, peer.generation, &peer.digest));
        match r {
            Ok(mut got) => {
                tracing::info!(
                    from,
                    generation = got.generation,
                    "monitor: fetched a newer device set"
                );
                got.source_digest = held.source_digest.clone();
                self.shared.update(|s| s.source = from.to_owned());
                self.adopt(got).await.is_ok()
            }
            Err(e) => {
                tracing::warn!(from, error = %e, "monitor: cannot fetch the device set");
                self.shared.update(|s| {
                    s.error = Some(format!("cannot fetch the device set from {from}: {e}"));
                });
                false
            }
        }
    }

    fn recompute(&self, now: Instant, members: &[Member], elig: &mut Eligibility) {
        let held = self.shared.held();
        let set = &held.set;
        let digest = self.shared.digest();
        let mut alive = alive_monitors(members);
        if !alive.iter().any(|p| p.monitor.name == self.node) {
            // This node, before its own tag has gone round.
            if let Some(me) = members.iter().find(|m| m.name == self.node) {
                alive.push(Peer {
                    monitor: Monitor::new(self.node.clone(), self.cfg.weight),
                    generation: held.generation,
                    digest: digest.clone(),
                    addr: me.addr,
                });
            }
        }
        let monitors: Vec<Monitor> = alive.iter().map(|p| p.monitor.clone()).collect();
        elig.observe(now, &monitors);
        let counted = elig.monitors(now);
        let k = usize::try_from(self.cfg.k).unwrap_or(usize::MAX);
        let assignment = assign::assignment(set.ids(), &counted, k);
        let mine: Vec<String> = assignment
            .iter()
            .filter(|(_, o)| o.contains(&self.node))
            .map(|(d, _)| d.clone())
            .collect();
        let names: Vec<String> = counted.iter().map(|m| m.name.clone()).collect();
        let pending: Vec<String> = monitors
            .iter()
            .filter(|m| !names.contains(&m.name))
            .map(|m| m.name.clone())
            .collect();
        let other_sets: Vec<String> = alive
            .iter()
            .filter(|p| p.digest != digest)
            .map(|p| p.monitor.name.clone())
            .collect();
        let changed = self.shared.get().assignment != assignment;
        if changed {
            tracing::info!(
                monitors = ?names,
                pending = ?pending,
                mine = mine.len(),
                "monitor: assignment"
            );
        }
        self.shared.update(|s| {
            s.monitors = names;
            s.pending = pending;
            s.other_sets = other_sets;
            s.assignment = assignment;
            s.mine = mine;
        });
    }

    async fn set_tag(&self, value: Option<String>) -> Result<(), ClusterError> {
        self.tag.set(MONITOR_TAG, value).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_bad_ones_are_ignored() {
        let v = tag_value(3, 1_700_000_000, "0123456789abcdef");
        assert_eq!(
            parse_tag(&v),
            Some((3, 1_700_000_000, "0123456789abcdef".into()))
        );
        for bad in [
            "",
            "3",
            "3:0123456789abcdef",
            "0:1:0123456789abcdef",
            "65:1:0123456789abcdef",
            "1:1:xyz",
            "a:1:0123456789abcdef",
            "1:-1:0123456789abcdef",
            "1:1:0123456789abcdeg",
            "1:1:0123456789abcdef:x",
        ] {
            assert_eq!(parse_tag(bad), None, "{bad:?}");
        }
    }
}
