//! What the dashboard keeps: the recent events, the last reachability scan,
//! running queries, sessions, and what it reads from the rest of the agent.

use crate::auth::{Sessions, ViewRule};
use crate::sys::CpuSampler;
use nuvol_agent::{BuildCtx, Cluster, ComponentError, Registry, RunCtx};
use nuvol_catalog::component::Catalog;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// A new subscription, the changes it missed, and whether those are all.
pub type CatchUp = (broadcast::Receiver<(u64, Change)>, Vec<(u64, Change)>, bool);

/// Changes kept for live streams to catch up on.
pub const RECENT_CHANGES: usize = 256;

/// Events kept for the pages.
pub const EVENT_LOG: usize = 200;
/// Queries kept (the oldest is forgotten beyond).
pub const QUERIES_KEPT: usize = 16;
/// Acks and responses kept per query.
pub const QUERY_ROWS: usize = 1000;
/// Bytes of a response payload shown.
pub const PAYLOAD_SHOWN: usize = 1024;

/// One event of the log.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub seq: u64,
    pub at: SystemTime,
    /// `member-join`, `member-failed`, `user`, `service-published`, ...
    pub kind: String,
    /// The node, or the user event's name.
    pub subject: String,
    pub detail: String,
}

/// The last reachability scan: the ack time of each node that answered.
#[derive(Debug, Clone)]
pub struct Scan {
    pub at: SystemTime,
    pub acks: HashMap<String, Duration>,
    /// Nodes alive when the scan started.
    pub asked: Vec<String>,
}

impl Scan {
    /// Cloudy's quality: 100 − ack time in seconds × 100, clamped; 0 for
    /// a node asked that did not answer, None for one not asked.
    pub fn quality(&self, node: &str) -> Option<u8> {
        match self.acks.get(node) {
            Some(d) => Some(quality(*d)),
            None => self.asked.iter().any(|n| n == node).then_some(0),
        }
    }
}

/// 100 − seconds × 100, in 0..=100.
pub fn quality(ack: Duration) -> u8 {
    let q = 100.0 - ack.as_secs_f64() * 100.0;
    q.clamp(0.0, 100.0).round() as u8
}

/// A query started from the dashboard.
#[derive(Debug, Clone)]
pub struct QueryJob {
    pub id: u64,
    pub name: String,
    pub started: SystemTime,
    pub acks: Vec<(String, Duration)>,
    pub responses: Vec<(String, String, Duration)>,
    pub done: bool,
}

/// One ack or response of a query.
#[derive(Debug, Clone)]
pub enum QueryRow {
    Ack(String, Duration),
    Response(String, String, Duration),
}

/// What changed, for the live stream.
#[derive(Debug, Clone)]
pub enum Change {
    Member(nuvol_gossip::Member),
    Service(Box<nuvol_catalog::model::ServiceEntry>),
    ServiceGone(String),
    Event(LoggedEvent),
    /// Overview counters that changed: (element id, new value). The hub
    /// diffs them, so an unchanged counter is never sent.
    Counts(Arc<[(String, usize)]>),
    /// A query got an ack or a response (the row itself, so a listener
    /// that renders late still sends each one), or ended (None).
    Query(u64, Option<QueryRow>),
}

/// The dashboard's metrics (`nuvol_dashboard_*`).
#[derive(Clone, Default)]
pub struct Metrics {
    /// Logins by result: `ok`, `bad-token`, `limited`.
    pub logins: prometheus_client::metrics::family::Family<
        Vec<(String, String)>,
        prometheus_client::metrics::counter::Counter,
    >,
    /// Live streams open now.
    pub live_streams: prometheus_client::metrics::gauge::Gauge,
    /// Changes a live stream missed because it lagged.
    pub live_missed: prometheus_client::metrics::counter::Counter,
}

impl Metrics {
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "dashboard_logins",
            "Dashboard logins by result",
            self.logins.clone(),
        );
        r.register(
            "dashboard_live_streams",
            "Dashboard live-update streams open",
            self.live_streams.clone(),
        );
        r.register(
            "dashboard_live_missed",
            "Changes dashboard live streams missed because they lagged",
            self.live_missed.clone(),
        );
    }

    pub fn login(&self, result: &str) {
        self.logins
            .get_or_create(&vec![("result".to_owned(), result.to_owned())])
            .inc();
    }
}

/// The `/nodes` map's layout, kept for [`MAP_KEPT`] while the same nodes
/// are placed: coordinates move a little with every probe, so a layout
/// keyed by their exact values would never be reused, and one a few
/// seconds old shows who is near whom as well. Laying out 200 nodes is
/// most of that page's time.
#[derive(Debug, Clone)]
pub struct MapCache {
    pub at: Instant,
    pub names: Vec<String>,
    pub points: Vec<(f64, f64)>,
}

/// How long a map layout is reused.
pub const MAP_KEPT: Duration = Duration::from_secs(10);

/// The layout in `cell` when it places exactly `names` and is younger than
/// [`MAP_KEPT`] at `now`, else a new one from `compute`, kept for next time.
pub fn cached_layout(
    cell: &Mutex<Option<MapCache>>,
    now: Instant,
    names: &[&str],
    compute: impl FnOnce() -> Vec<(f64, f64)>,
) -> Vec<(f64, f64)> {
    if let Some(c) = lock(cell).as_ref() {
        let fresh = now.saturating_duration_since(c.at) < MAP_KEPT;
        if fresh && c.names.iter().map(String::as_str).eq(names.iter().copied()) {
            return c.points.clone();
        }
    }
    let points = compute();
    *lock(cell) = Some(MapCache {
        at: now,
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        points: points.clone(),
    });
    points
}

/// The dashboard's shared state.
pub struct Dash {
    pub metrics: Metrics,
    pub cluster: Cluster,
    pub catalog: Option<Catalog>,
    pub sessions: Sessions,
    pub view: ViewRule,
    pub data_dir: PathBuf,
    pub version: &'static str,
    pub node_name: String,
    pub started: Instant,
    /// Set when the component runs.
    pub token: OnceLock<Arc<str>>,
    pub registry: OnceLock<Arc<Registry>>,
    pub events: Mutex<VecDeque<LoggedEvent>>,
    next_event: Mutex<u64>,
    pub scan: Mutex<Option<Scan>>,
    pub queries: Mutex<VecDeque<QueryJob>>,
    changes: broadcast::Sender<(u64, Change)>,
    /// The latest changes and their sequence numbers, for streams that
    /// subscribe after their page was rendered.
    recent: Mutex<(u64, VecDeque<(u64, Change)>)>,
    pub cpu: Mutex<CpuSampler>,
    /// The `/nodes` map's last layout (see [`MapCache`]).
    pub map: Mutex<Option<MapCache>>,
    /// Cancelled when the current run stops (ends live streams).
    pub stop: Mutex<CancellationToken>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Dash {
    pub fn new(ctx: &mut BuildCtx<'_>, view: ViewRule, sessions: Sessions) -> Self {
        let (changes, _) = broadcast::channel(1024);
        let metrics = Metrics::default();
        metrics.register(ctx.metrics());
        Dash {
            metrics,
            cluster: ctx.cluster(),
            catalog: ctx.get::<Catalog>(),
            sessions,
            view,
            data_dir: ctx.data_dir().to_path_buf(),
            version: ctx.node().version,
            node_name: ctx.node_name().to_owned(),
            started: Instant::now(),
            token: OnceLock::new(),
            registry: OnceLock::new(),
            events: Mutex::new(VecDeque::with_capacity(EVENT_LOG)),
            next_event: Mutex::new(0),
            scan: Mutex::new(None),
            queries: Mutex::new(VecDeque::new()),
            changes,
            recent: Mutex::new((0, VecDeque::with_capacity(RECENT_CHANGES))),
            cpu: Mutex::new(CpuSampler::default()),
            map: Mutex::new(None),
            stop: Mutex::new(CancellationToken::new()),
        }
    }

    /// Load the API token (the same file the REST API uses) and take the
    /// registry.
    pub async fn start(&self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let dir = self.data_dir.clone();
        let token = tokio::task::spawn_blocking(move || nuvol_api::token::load_or_create(&dir))
            .await
            .map_err(ComponentError::from)?
            .map_err(|e| ComponentError::msg(format!("the API token: {e}")))?;
        let _ = self.token.set(Arc::from(token));
        let _ = self.registry.set(ctx.registry().clone());
        *lock(&self.stop) = ctx.stop_token().child_token();
        Ok(())
    }

    /// Number the next change, keep it, and send it to the live streams
    /// (under one lock, so a stream that subscribes sees every change
    /// either in its catch-up or live, never neither).
    pub fn publish(&self, c: Change) {
        let mut r = lock(&self.recent);
        r.0 += 1;
        let seq = r.0;
        if r.1.len() >= RECENT_CHANGES {
            r.1.pop_front();
        }
        r.1.push_back((seq, c.clone()));
        let _ = self.changes.send((seq, c));
    }

    /// The number of the latest change (a page records it when rendered).
    pub fn seq(&self) -> u64 {
        lock(&self.recent).0
    }

    /// Subscribe, and the changes after `since` already made; `false`
    /// when some of those are no longer kept (the page should reload).
    pub fn subscribe_since(&self, since: u64) -> CatchUp {
        let r = lock(&self.recent);
        let rx = self.changes.subscribe();
        let complete = since >= r.0 || r.1.front().is_some_and(|(s, _)| *s <= since + 1);
        let missed = r.1.iter().filter(|(s, _)| *s > since).cloned().collect();
        (rx, missed, complete)
    }

    pub fn stop(&self) {
        lock(&self.stop).cancel();
    }

    pub fn stop_token(&self) -> CancellationToken {
        lock(&self.stop).clone()
    }

    pub fn is_token(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.token
            .get()
            .is_some_and(|t| bool::from(given.as_bytes().ct_eq(t.as_bytes())))
    }

    pub fn info(&self, key: &str) -> Option<String> {
        self.registry.get()?.info.get(key)
    }

    pub fn log(&self, kind: &str, subject: &str, detail: String) {
        let ev = {
            let mut n = lock(&self.next_event);
            *n += 1;
            LoggedEvent {
                seq: *n,
                at: SystemTime::now(),
                kind: kind.to_owned(),
                subject: subject.to_owned(),
                detail,
            }
        };
        {
            let mut log = lock(&self.events);
            if log.len() >= EVENT_LOG {
                log.pop_back();
            }
            log.push_front(ev.clone());
        }
        self.publish(Change::Event(ev));
    }

    /// The newest `n` events, newest first.
    pub fn recent(&self, n: usize) -> Vec<LoggedEvent> {
        lock(&self.events).iter().take(n).cloned().collect()
    }

    pub fn scan(&self) -> Option<Scan> {
        lock(&self.scan).clone()
    }

    pub fn set_scan(&self, s: Scan) {
        *lock(&self.scan) = Some(s);
    }

    pub fn new_query(&self, name: &str) -> u64 {
        let mut q = lock(&self.queries);
        let id = q.front().map_or(1, |j| j.id + 1);
        if q.len() >= QUERIES_KEPT {
            q.pop_back();
        }
        q.push_front(QueryJob {
            id,
            name: name.to_owned(),
            started: SystemTime::now(),
            acks: Vec::new(),
            responses: Vec::new(),
            done: false,
        });
        id
    }

    pub fn query(&self, id: u64) -> Option<QueryJob> {
        lock(&self.queries).iter().find(|j| j.id == id).cloned()
    }

    /// Record `row` (or the end, with None) and tell the live streams.
    pub fn update_query(&self, id: u64, row: Option<QueryRow>) {
        let kept = {
            let mut q = lock(&self.queries);
            let Some(j) = q.iter_mut().find(|j| j.id == id) else {
                return;
            };
            match row.clone() {
                None => {
                    j.done = true;
                    true
                }
                Some(_) if j.acks.len() + j.responses.len() >= QUERY_ROWS => false,
                Some(QueryRow::Ack(n, at)) => {
                    j.acks.push((n, at));
                    true
                }
                Some(QueryRow::Response(n, p, at)) => {
                    j.responses.push((n, p, at));
                    true
                }
            }
        };
        if kept {
            self.publish(Change::Query(id, row));
        }
    }

    pub fn cpu_sample(&self) -> crate::sys::NodeStats {
        let mut cpu = lock(&self.cpu);
        crate::sys::read(&crate::sys::SysRoot::host(), &self.data_dir, &mut cpu)
    }

    /// Members by status name.
    /// The `/nodes` map's positions for these nodes (see [`MapCache`]).
    pub fn map_layout(
        &self,
        names: &[&str],
        compute: impl FnOnce() -> Vec<(f64, f64)>,
    ) -> Vec<(f64, f64)> {
        cached_layout(&self.map, Instant::now(), names, compute)
    }

    /// The overview's counters by element id: members (all and by
    /// status) and services by health.
    pub async fn counters(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        if let Ok(members) = self.cluster.members().await {
            out.insert("count-members".to_owned(), members.len());
            for (s, n) in Dash::count_members(&members) {
                out.insert(format!("count-{s}"), n);
            }
        }
        for (s, n) in crate::pages::overview::count_services(self) {
            out.insert(format!("svc-{s}"), n);
        }
        out
    }

    pub fn count_members(members: &[nuvol_gossip::Member]) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for s in ["alive", "failed", "left", "leaving"] {
            m.insert(s, 0);
        }
        for mem in members {
            let s = match mem.status {
                nuvol_gossip::MemberStatus::None => "failed",
                s => s.as_str(),
            };
            *m.entry(s).or_insert(0) += 1;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_layout_is_reused_for_the_same_nodes_while_fresh() {
        let cell = Mutex::new(None);
        let t0 = Instant::now();
        let mut runs = 0;
        let mut get = |at: Instant, names: &[&str]| {
            cached_layout(&cell, at, names, || {
                runs += 1;
                vec![(f64::from(runs), 0.0); names.len()]
            })
        };
        assert_eq!(get(t0, &["a", "b"]), vec![(1.0, 0.0); 2]);
        // Same nodes, 9 s later: the kept layout.
        assert_eq!(
            get(t0 + Duration::from_secs(9), &["a", "b"]),
            vec![(1.0, 0.0); 2]
        );
        // Another node set: laid out again.
        assert_eq!(
            get(t0 + Duration::from_secs(9), &["a", "c"]),
            vec![(2.0, 0.0); 2]
        );
        assert_eq!(get(t0 + Duration::from_secs(9), &["a"]), vec![(3.0, 0.0)]);
        // The same set, too old: laid out again.
        assert_eq!(get(t0 + Duration::from_secs(20), &["a"]), vec![(4.0, 0.0)]);
    }

    #[test]
    fn cloudy_quality() {
        assert_eq!(quality(Duration::from_millis(0)), 100);
        assert_eq!(quality(Duration::from_millis(50)), 95);
        assert_eq!(quality(Duration::from_millis(994)), 1);
        assert_eq!(quality(Duration::from_secs(3)), 0);
        let s = Scan {
            at: SystemTime::now(),
            acks: [("a".to_owned(), Duration::from_millis(120))].into(),
            asked: vec!["a".into(), "b".into()],
        };
        assert_eq!(s.quality("a"), Some(88));
        assert_eq!(s.quality("b"), Some(0));
        assert_eq!(s.quality("c"), None);
    }
}
