//! Answering for any device from any node: the owners are asked for
//! their latest samples over the application stream [`SAMPLES_STREAM`],
//! and the device's state is their majority verdict
//! ([`crate::verdict`]). [`MonitorHandle`] is what the REST routes and the
//! dashboard call.

use crate::component::{alive_monitors, MonitorStatus, Shared};
use crate::rings::{rows_of, window};
use crate::store::series_key;
use crate::verdict::{verdict, DeviceState, Report};
use crate::view::{DeviceDetail, DeviceSummary, Sample, SeriesView};
use futures::future::BoxFuture;
use nuvol_agent::{Cluster, StreamError, StreamHandler};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The application stream protocol that serves this node's samples.
pub const SAMPLES_STREAM: u8 = 4;
/// How long an owner may take to answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// The default resolution of a device's series.
pub const DEFAULT_STEP: u32 = 300;

/// What a node asks an owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SamplesRequest {
    /// One device (with its series and interfaces); `None`: the latest
    /// sample of every device the owner probes, without interfaces.
    pub device: Option<String>,
    #[serde(default = "default_step")]
    pub step: u32,
}

fn default_step() -> u32 {
    DEFAULT_STEP
}

/// An owner's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SamplesReply {
    pub samples: BTreeMap<String, Sample>,
    pub series: Vec<SeriesView>,
}

/// This node's answer to `req`.
pub(crate) async fn local_reply(shared: &Arc<Shared>, req: &SamplesRequest) -> SamplesReply {
    let mut reply = SamplesReply::default();
    let node = shared.node.clone();
    match &req.device {
        None => {
            for (id, t) in shared.local().iter() {
                if let Some(s) = &t.latest {
                    let mut s = s.clone();
                    s.interfaces.clear();
                    reply.samples.insert(id.clone(), s);
                }
            }
        }
        Some(id) => {
            let Some(rows) = rows_of(req.step) else {
                return reply;
            };
            // The open points and the metrics, read under the lock; the
            // store's rows, read on a blocking thread.
            let (sample, wanted) = {
                let local = shared.local();
                let Some(t) = local.get(id) else {
                    return reply;
                };
                let wanted: Vec<(String, Option<crate::rings::StoredPoint>)> = t
                    .metrics()
                    .into_iter()
                    .map(|m| {
                        let open = t.open_point(&m, req.step);
                        (m, open)
                    })
                    .collect();
                (t.latest.clone(), wanted)
            };
            if let Some(s) = sample {
                reply.samples.insert(id.clone(), s);
            }
            let store = shared.store.clone();
            let step = req.step;
            let id = id.clone();
            let now_slot = crate::component::now_secs() / u64::from(step);
            let series = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                for (metric, open) in wanted {
                    let stored = match &store {
                        Some(st) => match st.ring(&series_key(&id, &metric), step) {
                            Ok((rows, _bad)) => rows,
                            Err(e) => {
                                tracing::warn!(error = %e, "monitor: reading a series");
                                Vec::new()
                            }
                        },
                        None => Vec::new(),
                    };
                    let points: Vec<[f64; 4]> = window(step, rows, now_slot, stored, open)
                        .into_iter()
                        .map(|(t, p)| {
                            [
                                t as f64,
                                f64::from(p.mean),
                                f64::from(p.min),
                                f64::from(p.max),
                            ]
                        })
                        .collect();
                    if !points.is_empty() {
                        out.push(SeriesView {
                            monitor: node.clone(),
                            metric,
                            step,
                            points,
                        });
                    }
                }
                out
            })
            .await
            .unwrap_or_default();
            reply.series = series;
        }
    }
    reply
}

/// Serves this node's samples to a node that asks.
pub(crate) struct SamplesHandler(pub(crate) Arc<Shared>);

impl StreamHandler for SamplesHandler {
    fn handle(
        &self,
        _from: SocketAddr,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Arc<Vec<u8>>, StreamError>> {
        let shared = self.0.clone();
        Box::pin(async move {
            let Some(body) = request.strip_prefix(&[nuvol_agent::APP_STREAM, SAMPLES_STREAM])
            else {
                return Err(StreamError::Refused("unknown monitor request".into()));
            };
            let req: SamplesRequest = serde_json::from_slice(body)
                .map_err(|e| StreamError::Refused(format!("bad samples request: {e}")))?;
            let reply = local_reply(&shared, &req).await;
            serde_json::to_vec(&reply)
                .map(Arc::new)
                .map_err(|e| StreamError::Refused(e.to_string()))
        })
    }
}

/// The device list and a device's samples, from any node.
#[derive(Clone)]
pub struct MonitorHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) cluster: Cluster,
}

impl MonitorHandle {
    /// The `/v1/monitor` body.
    pub fn status(&self) -> MonitorStatus {
        self.shared.get()
    }

    /// Ask each of `owners` (names) for `req`: name → reply, or the error.
    async fn ask(
        &self,
        owners: &[String],
        req: &SamplesRequest,
    ) -> BTreeMap<String, Result<SamplesReply, String>> {
        let addrs: BTreeMap<String, SocketAddr> = match self.cluster.members().await {
            Ok(m) => alive_monitors(&m)
                .into_iter()
                .map(|p| (p.monitor.name, p.addr))
                .collect(),
            Err(_) => BTreeMap::new(),
        };
        let body = match serde_json::to_vec(req) {
            Ok(b) => b,
            Err(e) => {
                return owners
                    .iter()
                    .map(|o| (o.clone(), Err(e.to_string())))
                    .collect()
            }
        };
        let asks = owners.iter().map(|o| {
            let addr = addrs.get(o).copied();
            let mut payload = vec![nuvol_agent::APP_STREAM, SAMPLES_STREAM];
            payload.extend_from_slice(&body);
            let me = *o == self.shared.node;
            async move {
                let r = if me {
                    Ok(local_reply(&self.shared, req).await)
                } else {
                    match addr {
                        None => Err("not an alive monitor".to_owned()),
                        Some(a) => {
                            match tokio::time::timeout(
                                ASK_TIMEOUT,
                                self.cluster.app_request(a, payload),
                            )
                            .await
                            {
                                Err(_) => {
                                    Err(format!("no answer within {}s", ASK_TIMEOUT.as_secs()))
                                }
                                Ok(Err(e)) => Err(e.to_string()),
                                Ok(Ok(b)) => serde_json::from_slice::<SamplesReply>(&b)
                                    .map_err(|e| format!("a bad answer: {e}")),
                            }
                        }
                    }
                };
                (o.clone(), r)
            }
        });
        futures::future::join_all(asks).await.into_iter().collect()
    }

    /// Every device: its owners' latest samples and their verdict.
    pub async fn devices(&self) -> Result<Vec<DeviceSummary>, String> {
        let st = self.shared.get();
        let mut owners: Vec<String> = st.assignment.values().flatten().cloned().collect();
        owners.sort();
        owners.dedup();
        let replies = self
            .ask(
                &owners,
                &SamplesRequest {
                    device: None,
                    step: DEFAULT_STEP,
                },
            )
            .await;
        let held = self.shared.held();
        let now = crate::component::now_secs();
        Ok(held
            .set
            .devices
            .iter()
            .map(|d| {
                let o = st.assignment.get(&d.id).cloned().unwrap_or_default();
                self.summary(d, o, &replies, now)
            })
            .collect())
    }

    /// One device, with its owners' series at resolution `step`; `None`
    /// for an id not in the device set.
    pub async fn device(&self, id: &str, step: u32) -> Result<Option<DeviceDetail>, String> {
        if rows_of(step).is_none() {
            return Err(format!(
                "step must be one of {}",
                crate::rings::RESOLUTIONS
                    .iter()
                    .map(|(s, _)| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let held = self.shared.held();
        let Some(d) = held.set.get(id) else {
            return Ok(None);
        };
        let st = self.shared.get();
        let owners = st.assignment.get(id).cloned().unwrap_or_default();
        let replies = self
            .ask(
                &owners,
                &SamplesRequest {
                    device: Some(id.to_owned()),
                    step,
                },
            )
            .await;
        let now = crate::component::now_secs();
        let mut summary = self.summary(d, owners.clone(), &replies, now);
        let mut samples = Vec::new();
        let mut series = Vec::new();
        for o in &owners {
            if let Some(Ok(r)) = replies.get(o) {
                if let Some(s) = r.samples.get(id) {
                    samples.push(s.clone());
                }
                series.extend(r.series.iter().cloned());
            }
        }
        for r in &mut summary.reports {
            r.interfaces.clear();
        }
        Ok(Some(DeviceDetail {
            summary,
            samples,
            series,
        }))
    }

    fn summary(
        &self,
        d: &crate::devices::Device,
        owners: Vec<String>,
        replies: &BTreeMap<String, Result<SamplesReply, String>>,
        now: u64,
    ) -> DeviceSummary {
        let mut reports = Vec::new();
        let mut unreachable = Vec::new();
        let mut errors = Vec::new();
        for o in &owners {
            match replies.get(o) {
                Some(Ok(r)) => {
                    if let Some(s) = r.samples.get(&d.id) {
                        reports.push(s.clone());
                    }
                }
                Some(Err(e)) => {
                    unreachable.push(o.clone());
                    errors.push(format!("{o}: {e}"));
                }
                None => unreachable.push(o.clone()),
            }
        }
        let fresh_for = self.shared.fresh_for.as_secs();
        let verdict_in: Vec<Report> = reports
            .iter()
            .map(|s| Report {
                at: Some(s.at),
                answered: s.answered,
            })
            .collect();
        let state = verdict(owners.len(), &verdict_in, now, fresh_for);
        let last_sample = reports.iter().map(|s| s.at).max();
        // The newest sample that is not clean says why.
        let mut newest_first: Vec<&Sample> = reports.iter().collect();
        newest_first.sort_by_key(|s| std::cmp::Reverse(s.at));
        let cause = newest_first
            .iter()
            .find_map(|s| s.cause().map(|c| format!("{}: {c}", s.monitor)))
            .or_else(|| match state {
                DeviceState::Unknown if owners.is_empty() => {
                    Some("no monitor owns it (no monitor counts yet)".to_owned())
                }
                DeviceState::Unknown if !errors.is_empty() => {
                    Some(format!("owners not reachable: {}", errors.join("; ")))
                }
                DeviceState::Unknown => Some("no fresh sample yet".to_owned()),
                _ => None,
            });
        DeviceSummary {
            id: d.id.clone(),
            title: d.title.clone(),
            address: d.address.to_string(),
            state,
            owners,
            last_sample,
            cause,
            reports,
            unreachable_owners: unreachable,
        }
    }
}
