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
use crate::settings::MonitorSettings;
use axum::http::Method;
use futures::future::BoxFuture;
use nuvol_agent::chan::RecvError;
use nuvol_agent::http::{Access, HttpRoute};
use nuvol_agent::{
    BuildCtx, BuildError, Cluster, ClusterError, Component, ComponentError, OwnedTags, RunCtx,
    StreamError, StreamHandler,
};
use nuvol_gossip::{Member, MemberStatus};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The gossip tag key.
pub const MONITOR_TAG: &str = "monitor";
/// The application stream protocol that serves this node's device set.
pub const DEVICES_STREAM: u8 = 3;
/// Where the held device set is kept (in DATA_DIR).
pub const DEVICES_FILE: &str = "monitor-devices.json";

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
    /// What the CNML source left out.
    pub cnml: Option<CnmlReport>,
    /// Why the device set is not what the config says.
    pub error: Option<String>,
}

struct Shared {
    status: RwLock<MonitorStatus>,
    held: RwLock<Stored>,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut MonitorStatus)) {
        let mut g = self
            .status
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g);
    }
    fn get(&self) -> MonitorStatus {
        self.status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
    fn held(&self) -> Stored {
        self.held
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
    fn hold(&self, s: Stored) {
        *self
            .held
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = s;
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
            serde_json::to_vec(&held)
                .map(Arc::new)
                .map_err(|e| StreamError::Refused(e.to_string()))
        })
    }
}

fn now_secs() -> u64 {
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
    }
  },
  "components": {
    "schemas": {
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
          "cnml": {"type": ["object", "null"]},
          "error": {"type": ["string", "null"]}
        }
      }
    }
  }
}"##;

/// Load the configured device set: the CNML file's devices and the TOML
/// list (a TOML device replaces a CNML one of the same id).
pub fn load_devices(cfg: &MonitorSettings) -> (DeviceSet, Option<CnmlReport>, Option<String>) {
    // TOML first: DeviceSet::new keeps the first of a repeated id.
    let mut devices: Vec<Device> = cfg.devices.0.clone();
    let mut report = None;
    let mut error = None;
    if !cfg.cnml.is_empty() {
        let snmp = Snmp {
            community: cfg.cnml_community.clone(),
            ..Snmp::default()
        };
        match std::fs::read_to_string(&cfg.cnml) {
            Err(e) => error = Some(format!("cannot read the CNML file {}: {e}", cfg.cnml)),
            Ok(xml) => match parse_cnml(&xml, &snmp) {
                Err(e) => error = Some(format!("{}: {e}", cfg.cnml)),
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
            status: RwLock::new(MonitorStatus {
                node: ctx.node_name().to_owned(),
                k: cfg.k,
                weight: cfg.weight,
                ..MonitorStatus::default()
            }),
            held: RwLock::new(Stored::default()),
        });
        ctx.stream_protocol(DEVICES_STREAM, Arc::new(DevicesHandler(shared.clone())))?;
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
        let (source, report, error) = load_devices(&self.cfg);
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
        self.shared.update(|s| {
            s.cnml = report;
            s.error = error;
            s.source = "config".into();
        });
        self.adopt(held).await?;
        let cluster = ctx.cluster().clone();
        let mut events = cluster.member_events();
        let mut elig = Eligibility::new(self.cfg.settle);
        ctx.ready();
        loop {
            let now = Instant::now();
            match cluster.members().await {
                Ok(members) => {
                    self.recompute(now, &members, &mut elig);
                    if self.maybe_fetch(&cluster, &members).await {
                        self.recompute(Instant::now(), &members, &mut elig);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "monitor: no member list"),
            }
            // Wake when a pending monitor settles, or every few seconds.
            let wait = elig
                .next_change(now)
                .map_or(Duration::from_secs(5), |t| {
                    t.saturating_duration_since(Instant::now()) + Duration::from_millis(10)
                })
                .min(Duration::from_secs(5));
            tokio::select! {
                () = ctx.stopping() => break,
                () = tokio::time::sleep(wait) => {}
                ev = events.recv() => match ev {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                },
            }
        }
        let _ = self.set_tag(None).await;
        Ok(())
    }
}

impl MonitorComponent {
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
        self.shared.hold(s);
        self.set_tag(Some(tag_value(self.cfg.weight, generation, &digest)))
            .await
            .map_err(|e| ComponentError::msg(format!("cannot set the monitor tag: {e}")))
    }

    /// Fetch a newer device set from the monitor advertising it; `true`
    /// when one was adopted.
    async fn maybe_fetch(&self, cluster: &Cluster, members: &[Member]) -> bool {
        let held = self.shared.held();
        let digest = held.set.digest();
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
                got.source_digest = held.source_digest;
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
        let digest = set.digest();
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
