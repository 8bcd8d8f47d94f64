//! The monitor component: `[monitor]`, the `monitor` tag, `GET
//! /v1/monitor`, and the loop that keeps the assignment current.
//!
//! The tag (`WEIGHT:DIGEST`) says "this node is a monitor, with this
//! weight, holding the device set of this digest". On every membership
//! change (and when a pending monitor settles) the loop feeds the alive
//! monitors (this node included) to [`Eligibility`] and recomputes every
//! device's owners with [`assign::assignment`].

use crate::assign::{self, Eligibility, Monitor};
use crate::devices::{parse_cnml, CnmlReport, Device, DeviceSet, Snmp};
use crate::settings::MonitorSettings;
use axum::http::Method;
use nuvol_agent::chan::RecvError;
use nuvol_agent::http::{Access, HttpRoute};
use nuvol_agent::{
    BuildCtx, BuildError, ClusterError, Component, ComponentError, OwnedTags, RunCtx,
};
use nuvol_gossip::{Member, MemberStatus};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The gossip tag key.
pub const MONITOR_TAG: &str = "monitor";

/// The `monitor` tag's value.
pub fn tag_value(weight: u32, digest: &str) -> String {
    format!("{weight}:{digest}")
}

/// A `monitor` tag: (weight, digest); `None` for anything else.
pub fn parse_tag(v: &str) -> Option<(u32, String)> {
    let (w, d) = v.split_once(':')?;
    let w: u32 = w.parse().ok()?;
    let ok = (1..=assign::MAX_WEIGHT).contains(&w)
        && d.len() == 16
        && d.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| (w, d.to_owned()))
}

/// The alive monitors among `members`, from their tags.
pub fn alive_monitors(members: &[Member]) -> Vec<(Monitor, String)> {
    members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .filter_map(|m| {
            let (w, d) = parse_tag(m.tags.get(MONITOR_TAG)?)?;
            Some((Monitor::new(m.name.clone(), w), d))
        })
        .collect()
}

/// `GET /v1/monitor`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MonitorStatus {
    pub node: String,
    pub k: u32,
    pub weight: u32,
    /// This node's device set.
    pub digest: String,
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
        });
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
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let (set, report, error) = load_devices(&self.cfg);
        if let Some(e) = &error {
            tracing::warn!(error = %e, "monitor: device source");
        }
        let digest = set.digest();
        tracing::info!(devices = set.devices.len(), digest = %digest, "monitor: device set");
        self.shared.update(|s| {
            s.digest = digest.clone();
            s.devices = set.devices.len();
            s.cnml = report;
            s.error = error;
        });
        self.set_tag(Some(tag_value(self.cfg.weight, &digest)))
            .await
            .map_err(|e| ComponentError::msg(format!("cannot set the monitor tag: {e}")))?;
        let cluster = ctx.cluster().clone();
        let mut events = cluster.member_events();
        let mut elig = Eligibility::new(self.cfg.settle);
        ctx.ready();
        loop {
            let now = Instant::now();
            match cluster.members().await {
                Ok(members) => self.recompute(now, &members, &mut elig, &set, &digest),
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
    fn recompute(
        &self,
        now: Instant,
        members: &[Member],
        elig: &mut Eligibility,
        set: &DeviceSet,
        digest: &str,
    ) {
        let mut alive = alive_monitors(members);
        if !alive.iter().any(|(m, _)| m.name == self.node) {
            // This node, before its own tag has gone round.
            alive.push((
                Monitor::new(self.node.clone(), self.cfg.weight),
                digest.to_owned(),
            ));
        }
        let monitors: Vec<Monitor> = alive.iter().map(|(m, _)| m.clone()).collect();
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
            .filter(|(_, d)| d != digest)
            .map(|(m, _)| m.name.clone())
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
        let mine: BTreeMap<String, String> = value
            .map(|v| (MONITOR_TAG.to_owned(), v))
            .into_iter()
            .collect();
        loop {
            let current = self.tag.current().await?;
            if current.tags.get(MONITOR_TAG) == mine.get(MONITOR_TAG) {
                return Ok(());
            }
            match self.tag.replace(current.version, mine.clone()).await {
                Ok(()) => return Ok(()),
                Err(ClusterError::TagsChanged) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_bad_ones_are_ignored() {
        let v = tag_value(3, "0123456789abcdef");
        assert_eq!(parse_tag(&v), Some((3, "0123456789abcdef".into())));
        for bad in [
            "",
            "3",
            "0:0123456789abcdef",
            "65:0123456789abcdef",
            "1:xyz",
            "a:0123456789abcdef",
            "1:0123456789abcdeg",
        ] {
            assert_eq!(parse_tag(bad), None, "{bad:?}");
        }
    }
}
