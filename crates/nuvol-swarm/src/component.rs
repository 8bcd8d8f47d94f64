//! The swarm component: `[swarm]`, the `swarm` tag, the join token query
//! (`_nuvol_swarm_token`), `GET /v1/swarm`, the [`SwarmHandle`] service,
//! metrics, and the run loop that keeps the node in the Swarm the planner
//! says, and drains it and leaves on `nuvol leave`.

use crate::engine::{Engine, NodeInfo, Tokens};
use crate::error::SwarmError;
use crate::fence::{Fence, Verdict, SINGLETON_LABEL};
use crate::plan::{self, Action, Inputs, Local, Role, Tag, SWARM_TAG};
use crate::settings::{socket_path, SwarmSettings};
use axum::http::Method;
use bollard::models::NodeSpecAvailabilityEnum;
use nuvol_agent::chan::RecvError;
use nuvol_agent::http::{Access, HttpRoute};
use nuvol_agent::quorum::{self, Standing, TieBreaker};
use nuvol_agent::{
    BuildCtx, BuildError, Cluster, ClusterError, Component, ComponentError, InboundQuery,
    OwnedTags, RunCtx, StopReason,
};
use nuvol_gossip::{MemberStatus, QueryParams};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

/// The internal query managers answer with the join tokens.
pub const TOKEN_QUERY: &str = "_nuvol_swarm_token";
/// The internal query a leaving worker asks the managers to drain it with
/// (a worker's engine cannot change its own availability).
pub const DRAIN_QUERY: &str = "_nuvol_swarm_drain";
/// How long after its start a node may initialise a swarm: nodes started
/// together hear of each other through gossip first.
const INIT_GRACE: Duration = Duration::from_secs(5);
/// How long a Swarm node no member claims must be down before the leader
/// removes it.
const STALE_AFTER: Duration = Duration::from_secs(60);
/// How long a fenced container gets to stop before it is killed.
const FENCE_STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a join waits for the managers' answers.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /v1/swarm`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SwarmStatus {
    /// `inactive`, `pending`, `active`, `error` or `unreachable` (no
    /// daemon).
    pub state: String,
    pub node_id: Option<String>,
    /// `manager` or `worker` once in a swarm.
    pub role: Option<String>,
    pub leader: bool,
    pub cluster_id: Option<String>,
    /// Gossip names of the managers (from the `swarm` tags).
    pub managers: Vec<String>,
    /// The Swarm's nodes (known on managers).
    pub nodes: Vec<NodeRow>,
    /// The last action taken, and its result.
    pub last_action: Option<String>,
    /// Why the swarm does not work as configured here.
    pub error: Option<String>,
    /// Fencing: why this node stops its singleton containers (it is on the
    /// minority side of a partition), while it does.
    pub fenced: Option<String>,
    /// On the minority side, but still within `[swarm] fence_after`.
    pub fence_pending: Option<String>,
    /// Singleton containers this node stopped while fenced, since the
    /// agent started.
    pub fenced_total: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NodeRow {
    /// The gossip member that claims it ("" if none).
    pub name: String,
    pub id: String,
    pub hostname: String,
    pub addr: String,
    pub role: String,
    pub availability: String,
    pub state: String,
    pub leader: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

#[derive(Default)]
struct Metrics {
    nodes: Family<RoleLabel, Gauge>,
    actions: Family<ActionLabel, Counter>,
    fenced: Counter,
}

struct Shared {
    status: RwLock<SwarmStatus>,
    task_restart_delay: Duration,
    singletons_off_leader: bool,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut SwarmStatus)) {
        let mut g = self
            .status
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g);
    }
}

/// The swarm service for other components.
#[derive(Clone)]
pub struct SwarmHandle(Arc<Shared>);

impl SwarmHandle {
    pub fn status(&self) -> SwarmStatus {
        self.0
            .status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `[swarm] task_restart_delay`: the restart delay for the services
    /// nuvol creates.
    pub fn task_restart_delay(&self) -> Duration {
        self.0.task_restart_delay
    }

    /// The placement constraint for one-replica services that keeps them
    /// off the raft leader (`[swarm] singletons_off_leader`), if on.
    pub fn singleton_constraint(&self) -> Option<&'static str> {
        self.0
            .singletons_off_leader
            .then_some(plan::OFF_LEADER_CONSTRAINT)
    }
}

const OPENAPI: &str = r##"{
  "paths": {
    "/v1/swarm": {
      "get": {
        "operationId": "getSwarm",
        "tags": ["swarm"],
        "summary": "Docker Swarm: this node's state in the swarm nuvol forms, its managers and nodes.",
        "responses": {
          "200": {
            "description": "The swarm status.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SwarmStatus"}}}
          }
        }
      }
    }
  },
  "components": {
    "schemas": {
      "SwarmStatus": {
        "type": "object",
        "required": ["state", "managers", "nodes", "leader"],
        "properties": {
          "state": {"type": "string", "enum": ["inactive", "pending", "active", "error", "unreachable"]},
          "node_id": {"type": ["string", "null"]},
          "role": {"type": ["string", "null"], "enum": ["manager", "worker", null]},
          "leader": {"type": "boolean"},
          "cluster_id": {"type": ["string", "null"]},
          "managers": {"type": "array", "items": {"type": "string"}, "description": "Gossip names of the managers."},
          "nodes": {
            "type": "array",
            "description": "The swarm's nodes (known on managers).",
            "items": {
              "type": "object",
              "properties": {
                "name": {"type": "string", "description": "The gossip member that claims it (empty if none)."},
                "id": {"type": "string"},
                "hostname": {"type": "string"},
                "addr": {"type": "string"},
                "role": {"type": "string", "enum": ["manager", "worker"]},
                "availability": {"type": "string"},
                "state": {"type": "string"},
                "leader": {"type": "boolean"}
              }
            }
          },
          "last_action": {"type": ["string", "null"]},
          "error": {"type": ["string", "null"], "description": "Why the swarm does not work as configured here."},
          "fenced": {"type": ["string", "null"], "description": "Why this node stops its singleton containers (minority side of a partition), while it does."},
          "fence_pending": {"type": ["string", "null"], "description": "On the minority side, within [swarm] fence_after."},
          "fenced_total": {"type": "integer", "description": "Singleton containers stopped while fenced since the agent started."}
        }
      }
    }
  }
}"##;

/// The component.
pub struct Swarm {
    cfg: SwarmSettings,
    socket: String,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    tag: OwnedTags,
    /// Locked by the run loop for as long as it runs (both).
    queries: tokio::sync::Mutex<Receiver<InboundQuery>>,
    drains: tokio::sync::Mutex<Receiver<InboundQuery>>,
    node: String,
    /// Swarm nodes seen not ready, since when.
    down_since: std::sync::Mutex<BTreeMap<String, tokio::time::Instant>>,
    fence: std::sync::Mutex<Fence>,
}

impl Component for Swarm {
    type Config = SwarmSettings;
    const NAME: &'static str = "swarm";

    fn build(cfg: SwarmSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        if !cfg.enable {
            return Ok(None);
        }
        let socket = socket_path(&cfg.docker);
        let shared = Arc::new(Shared {
            status: RwLock::new(SwarmStatus {
                state: "inactive".into(),
                ..SwarmStatus::default()
            }),
            task_restart_delay: cfg.task_restart_delay,
            singletons_off_leader: cfg.singletons_off_leader,
        });
        let metrics = Arc::new(Metrics::default());
        ctx.metrics().register(
            "swarm_nodes",
            "Nodes of the Docker Swarm by role (as this manager sees them)",
            metrics.nodes.clone(),
        );
        ctx.metrics().register(
            "swarm_actions",
            "Swarm actions taken by this node (init, join, promote, demote, remove, leave)",
            metrics.actions.clone(),
        );
        ctx.metrics().register(
            "swarm_fenced",
            "Singleton containers (label nuvol.ha.singleton=true) this node stopped while on the minority side of a partition",
            metrics.fenced.clone(),
        );
        let handle = SwarmHandle(shared.clone());
        ctx.provide(handle.clone());
        ctx.http_route(HttpRoute::new(
            Method::GET,
            "/v1/swarm",
            Access::View,
            axum::routing::get(move || {
                let body = handle.status();
                async move { axum::Json(body) }
            }),
        ))?;
        ctx.openapi(OPENAPI)?;
        let tag = ctx.own_tags(&[SWARM_TAG])?;
        let queries = ctx.query_handler(TOKEN_QUERY)?;
        let drains = ctx.query_handler(DRAIN_QUERY)?;
        // Leaving the swarm on a stop (a demotion, the engine's leave) takes
        // longer than most components' stop; a manager that was not
        // drained before the gossip leave drains here too.
        ctx.stop_timeout(cfg.leave_drain_timeout + Duration::from_secs(20));
        Ok(Some(Swarm {
            socket,
            shared,
            metrics,
            tag,
            queries: tokio::sync::Mutex::new(queries),
            drains: tokio::sync::Mutex::new(drains),
            node: ctx.node_name().to_owned(),
            down_since: std::sync::Mutex::new(BTreeMap::new()),
            fence: std::sync::Mutex::new(Fence::new(cfg.fence_after)),
            cfg,
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        // Fencing has its own loop and Docker connection: a manager cut
        // off from the others has no Swarm leader, and the calls of the
        // main loop that need one can block for a long time.
        let this = &*self;
        let ((), ()) = tokio::join!(this.main_loop(ctx), this.fence_loop(ctx));
        Ok(())
    }
}

impl Swarm {
    async fn main_loop(&self, ctx: &RunCtx) {
        let mut queries = self.queries.lock().await;
        let mut drains = self.drains.lock().await;
        let cluster = ctx.cluster().clone();
        let mut events = cluster.member_events();
        let mut tick = tokio::time::interval(self.cfg.poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut engine: Option<Engine> = None;
        let mut last_error: Option<String> = None;
        let mut ready = false;
        let started = tokio::time::Instant::now();
        // A graceful leave drains this node first, while gossip still
        // reaches the managers.
        let mut before_leave = cluster.before_leave(
            "the Swarm drain",
            self.cfg.leave_drain_timeout + Duration::from_secs(5),
        );
        loop {
            let may_init = started.elapsed() >= INIT_GRACE;
            if engine.is_none() {
                match Engine::connect(&self.socket).await {
                    Ok(e) => {
                        tracing::info!(socket = %self.socket, "swarm: Docker daemon answers");
                        engine = Some(e);
                    }
                    Err(e) => {
                        self.failed(&e, &mut last_error, "unreachable");
                        let _ = self.set_tag(Some(Tag::Error)).await;
                    }
                }
            }
            if let Some(en) = &engine {
                match self.step(&cluster, en, may_init).await {
                    Ok(()) => {
                        if last_error.take().is_some() {
                            tracing::info!("swarm: working again");
                        }
                    }
                    Err(e) => {
                        let state = if matches!(e, SwarmError::Unreachable { .. }) {
                            engine = None;
                            "unreachable"
                        } else {
                            ""
                        };
                        self.failed(&e, &mut last_error, state);
                    }
                }
            }
            if !ready {
                // Serving: the status tells whether the swarm works.
                ctx.ready();
                ready = true;
            }
            tokio::select! {
                () = ctx.stopping() => break,
                _ = tick.tick() => {}
                q = queries.recv() => {
                    if let Some(q) = q {
                        self.answer(&cluster, engine.as_ref(), q).await;
                    }
                }
                q = drains.recv() => {
                    if let Some(q) = q {
                        self.answer_drain(&cluster, engine.as_ref(), q).await;
                    }
                }
                done = before_leave.requested() => {
                    if let Some(en) = &engine {
                        self.drain(&cluster, en).await;
                    }
                    done.done();
                }
                ev = events.recv() => match ev {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                },
            }
        }
        if let Some(en) = &engine {
            if leaving(&cluster).await {
                self.leave(en).await;
            }
        }
        // The tag stays: a member that left keeps naming its Swarm node,
        // which the leader then removes; a restarted agent sets it again.
    }

    /// Every `poll_every` while this node is in a swarm (as the main loop
    /// last saw it): the fence's verdict, and its stops.
    async fn fence_loop(&self, ctx: &RunCtx) {
        let cluster = ctx.cluster().clone();
        let mut tick = tokio::time::interval(self.cfg.poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut engine: Option<Engine> = None;
        loop {
            tokio::select! {
                () = ctx.stopping() => return,
                _ = tick.tick() => {}
            }
            if self.handle_status().state != "active" {
                // Out of a swarm there is nothing to fence; a later swarm
                // starts the grace period afresh.
                self.fence
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .observe(tokio::time::Instant::now(), Ok(()));
                self.shared.update(|s| {
                    s.fenced = None;
                    s.fence_pending = None;
                });
                continue;
            }
            if engine.is_none() {
                engine = Engine::connect(&self.socket).await.ok();
            }
            let Some(en) = &engine else { continue };
            let Ok(members) = cluster.members().await else {
                continue;
            };
            if !self.fence_pass(en, &members).await {
                // Connect again next time.
                engine = None;
            }
        }
    }
}

/// Whether the agent stops because it left the cluster (`nuvol leave`, or
/// a leave on SIGTERM/SIGINT): then the node leaves the swarm too; a mere
/// stop or restart keeps it in.
async fn leaving(cluster: &Cluster) -> bool {
    let asked = tokio::time::timeout(Duration::from_millis(10), cluster.stopped()).await;
    if matches!(asked, Ok(StopReason::Left)) {
        return true;
    }
    matches!(
        cluster.local_member().await.map(|m| m.status),
        Ok(MemberStatus::Leaving | MemberStatus::Left)
    )
}

impl Swarm {
    fn failed(&self, e: &SwarmError, last: &mut Option<String>, state: &str) {
        let why = e.to_string();
        if last.as_deref() != Some(why.as_str()) {
            tracing::warn!(error = %why, "swarm: not working");
        }
        self.shared.update(|s| {
            if !state.is_empty() {
                s.state = state.into();
            }
            s.error = Some(why.clone());
        });
        *last = Some(why);
    }

    fn advertise(&self, cluster: &Cluster) -> String {
        if self.cfg.advertise.is_empty() {
            cluster.advertise().ip().to_string()
        } else {
            self.cfg.advertise.clone()
        }
    }

    async fn set_tag(&self, tag: Option<Tag>) -> Result<(), ClusterError> {
        self.tag.set(SWARM_TAG, tag.map(|t| t.value())).await
    }

    /// One look at the engine and the members, and the planner's action.
    async fn step(&self, cluster: &Cluster, en: &Engine, may_init: bool) -> Result<(), SwarmError> {
        let cl = |e: ClusterError| SwarmError::Cluster(e.to_string());
        let info = en.local().await?;
        let tag = match &info.local {
            Local::Active {
                node_id, manager, ..
            } => {
                if *manager {
                    Tag::Manager(node_id.clone())
                } else {
                    Tag::Worker(node_id.clone())
                }
            }
            Local::Inactive | Local::Pending => Tag::Out,
            Local::Error(_) => Tag::Error,
        };
        self.set_tag(Some(tag)).await.map_err(cl)?;
        let members = cluster.members().await.map_err(cl)?;
        let peers = plan::peers(&members, &self.node);
        let node_infos: Vec<NodeInfo> = match &info.local {
            Local::Active { manager: true, .. } => en.nodes().await?,
            _ => Vec::new(),
        };
        let nodes: Vec<plan::Node> = {
            let now = tokio::time::Instant::now();
            let mut down = self
                .down_since
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            down.retain(|id, _| node_infos.iter().any(|n| n.node.id == *id && !n.node.ready));
            node_infos
                .iter()
                .map(|n| {
                    let mut node = n.node.clone();
                    if !node.ready {
                        let since = *down.entry(node.id.clone()).or_insert(now);
                        node.stale = now.duration_since(since) >= STALE_AFTER;
                    }
                    node
                })
                .collect()
        };
        self.show(&info, &peers, &node_infos);
        let inputs = Inputs {
            me: &self.node,
            peers: &peers,
            local: &info.local,
            nodes: &nodes,
            managers: self.cfg.managers,
            may_init,
        };
        let action = plan::plan(&inputs);
        let marks = plan::leader_marks(&inputs, self.cfg.singletons_off_leader);
        let mut err = match &info.local {
            Local::Error(e) => Some(SwarmError::Api {
                path: self.socket.clone(),
                message: e.clone(),
            }),
            _ => None,
        };
        if action != Action::Nothing {
            tracing::info!(action = ?action, "swarm: acting");
            self.metrics
                .actions
                .get_or_create(&ActionLabel {
                    action: action.name().into(),
                })
                .inc();
            let r = self.act(cluster, en, &action).await;
            let outcome = match &r {
                Ok(()) => format!("{action:?}: ok"),
                Err(e) => format!("{action:?}: {e}"),
            };
            self.shared.update(|s| s.last_action = Some(outcome));
            if let Err(e) = r {
                err = Some(e);
            }
        }
        for (id, set) in marks {
            let value = set.then_some("true");
            match en.set_label(&id, plan::LEADER_LABEL, value).await {
                Ok(()) => tracing::info!(node_id = %id, set, "swarm: leader label"),
                Err(e) => {
                    tracing::warn!(node_id = %id, error = %e, "swarm: leader label not changed");
                    err.get_or_insert(e);
                }
            }
        }
        if err.is_none() && !encrypted(cluster).await {
            err = Some(SwarmError::NotEncrypted);
        }
        match err {
            Some(e) => Err(e),
            None => {
                self.shared.update(|s| s.error = None);
                Ok(())
            }
        }
    }

    /// Fencing: on the minority side past `fence_after`, stop every local
    /// container labelled nuvol.ha.singleton=true (each pass: the local
    /// Swarm agent may start them again). `false` when the daemon does not
    /// answer.
    async fn fence_pass(&self, en: &Engine, members: &[nuvol_gossip::Member]) -> bool {
        let quorum = quorum::check(Standing::of(members), TieBreaker::None);
        let verdict = self
            .fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .observe(tokio::time::Instant::now(), quorum);
        let was = self.handle_status().fenced;
        match verdict {
            Verdict::Run => {
                if was.is_some() {
                    tracing::info!("swarm: back on the majority side, no longer fenced");
                }
                self.shared.update(|s| {
                    s.fenced = None;
                    s.fence_pending = None;
                });
            }
            Verdict::Waiting { reason, left } => {
                if self.handle_status().fence_pending.is_none() {
                    tracing::warn!(%reason, fence_in = ?left, "swarm: on the minority side; fencing if it lasts");
                }
                self.shared.update(|s| {
                    s.fence_pending = Some(reason);
                });
            }
            Verdict::Fenced { reason } => {
                if was.is_none() {
                    tracing::warn!(%reason, "swarm: fenced: stopping this node's singleton containers");
                }
                self.shared.update(|s| {
                    s.fenced = Some(reason.clone());
                    s.fence_pending = None;
                });
                let running = match en.running_labelled(SINGLETON_LABEL).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "swarm: fenced, but cannot list the singleton containers");
                        return !matches!(e, SwarmError::Unreachable { .. });
                    }
                };
                for (id, name) in running {
                    match en.stop(&id, FENCE_STOP_TIMEOUT).await {
                        Ok(()) => {
                            tracing::warn!(container = %name, %reason, "swarm: fenced: stopped a singleton container");
                            self.metrics.fenced.inc();
                            self.shared.update(|s| s.fenced_total += 1);
                        }
                        Err(e) => {
                            tracing::warn!(container = %name, error = %e, "swarm: fenced, but cannot stop a singleton container")
                        }
                    }
                }
            }
        }
        true
    }

    fn handle_status(&self) -> SwarmStatus {
        self.shared
            .status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn show(&self, info: &crate::engine::LocalInfo, peers: &[plan::Peer], nodes: &[NodeInfo]) {
        let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
        for p in peers {
            if let Some(id) = p.tag.as_ref().and_then(Tag::node_id) {
                owner.insert(id, &p.name);
            }
        }
        let mut managers: Vec<String> = peers
            .iter()
            .filter(|p| p.alive && matches!(p.tag, Some(Tag::Manager(_))))
            .map(|p| p.name.clone())
            .collect();
        let (state, node_id, role, leader) = match &info.local {
            Local::Inactive => ("inactive", None, None, false),
            Local::Pending => ("pending", None, None, false),
            Local::Error(_) => ("error", None, None, false),
            Local::Active {
                node_id,
                manager,
                leader,
            } => {
                owner.insert(node_id, &self.node);
                if *manager {
                    managers.push(self.node.clone());
                }
                (
                    "active",
                    Some(node_id.clone()),
                    Some(if *manager { "manager" } else { "worker" }.to_owned()),
                    *leader,
                )
            }
        };
        managers.sort();
        let rows: Vec<NodeRow> = nodes
            .iter()
            .map(|n| NodeRow {
                name: owner
                    .get(n.node.id.as_str())
                    .copied()
                    .unwrap_or("")
                    .to_owned(),
                id: n.node.id.clone(),
                hostname: n.hostname.clone(),
                addr: n.addr.clone(),
                role: n.role.clone(),
                availability: n.availability.clone(),
                state: n.state.clone(),
                leader: n.leader,
            })
            .collect();
        if !rows.is_empty() {
            for role in ["manager", "worker"] {
                let c = rows.iter().filter(|r| r.role == role).count();
                self.metrics
                    .nodes
                    .get_or_create(&RoleLabel { role: role.into() })
                    .set(i64::try_from(c).unwrap_or(i64::MAX));
            }
        }
        self.shared.update(|s| {
            s.state = state.into();
            s.node_id = node_id;
            s.role = role;
            s.leader = leader;
            s.cluster_id = info.cluster_id.clone();
            s.managers = managers;
            s.nodes = rows;
        });
    }

    async fn act(&self, cluster: &Cluster, en: &Engine, a: &Action) -> Result<(), SwarmError> {
        match a {
            Action::Nothing => Ok(()),
            Action::Init => {
                let adv = self.advertise(cluster);
                let id = en
                    .init(&adv, self.cfg.heartbeat, self.cfg.election_ticks)
                    .await?;
                tracing::info!(node_id = %id, advertise = %adv, "swarm: initialised");
                Ok(())
            }
            Action::Join { ask } => {
                if !encrypted(cluster).await {
                    return Err(SwarmError::NotEncrypted);
                }
                let tokens = ask_tokens(cluster, ask).await?;
                let adv = self.advertise(cluster);
                en.join(&adv, &tokens).await?;
                tracing::info!(managers = ?tokens.addrs, "swarm: joined");
                Ok(())
            }
            Action::Promote(ids) => {
                for id in ids {
                    en.update(id, Some(Role::Manager), None).await?;
                }
                Ok(())
            }
            Action::Demote(ids) => {
                for id in ids {
                    en.update(id, Some(Role::Worker), None).await?;
                }
                Ok(())
            }
            Action::Remove(ids) => {
                for id in ids {
                    en.remove(id).await?;
                }
                Ok(())
            }
        }
    }

    /// A manager answers the token query (over encrypted gossip only).
    async fn answer(&self, cluster: &Cluster, en: Option<&Engine>, q: InboundQuery) {
        #[derive(Serialize)]
        struct Refusal {
            error: String,
        }
        let reply = if !encrypted(cluster).await {
            Err(SwarmError::NotEncrypted)
        } else if let Some(en) = en {
            en.tokens().await
        } else {
            Err(SwarmError::Unreachable {
                path: self.socket.clone(),
                message: "not connected".into(),
            })
        };
        let payload = match reply {
            Ok(t) if !t.addrs.is_empty() && !t.worker_token.is_empty() => serde_json::to_vec(&t),
            Ok(_) => serde_json::to_vec(&Refusal {
                error: "not a manager".into(),
            }),
            Err(e) => serde_json::to_vec(&Refusal {
                error: e.to_string(),
            }),
        };
        tracing::debug!(from = %q.source_node, "swarm: token query");
        if let Ok(p) = payload {
            if let Err(e) = cluster.respond(q.id, p).await {
                tracing::debug!(error = %e, "swarm: cannot answer a token query");
            }
        }
    }

    /// On leave: drain this node (a manager can), wait for its tasks to
    /// move, demote it, leave the swarm.
    async fn leave(&self, en: &Engine) {
        let Ok(info) = en.local().await else { return };
        let Local::Active {
            node_id, manager, ..
        } = &info.local
        else {
            return;
        };
        tracing::info!("swarm: leaving the swarm");
        self.metrics
            .actions
            .get_or_create(&ActionLabel {
                action: "leave".into(),
            })
            .inc();
        let mut force = false;
        if *manager {
            // Drained already before the gossip leave, unless the agent
            // stops without one (then this is quick: nothing runs here).
            self.drain_manager(en, node_id).await;
            let others = en
                .nodes()
                .await
                .map(|ns| {
                    ns.iter().any(|n| {
                        n.node.id != *node_id && n.node.role == Role::Manager && n.node.reachable
                    })
                })
                .unwrap_or(false);
            if others {
                if let Err(e) = en.update(node_id, Some(Role::Worker), None).await {
                    tracing::warn!(error = %e, "swarm: cannot demote this node; leaving by force");
                    force = true;
                }
            } else {
                // The last manager: the swarm goes with it.
                force = true;
            }
        }
        if !force {
            // A demotion takes effect when the node's raft member is gone:
            // wait for it (a manager cannot leave without force).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while tokio::time::Instant::now() < deadline {
                match en.local().await.map(|i| i.local) {
                    Ok(Local::Active { manager: true, .. }) => {
                        tokio::time::sleep(Duration::from_millis(250)).await
                    }
                    _ => break,
                }
            }
        }
        let r = match en.leave(force).await {
            Err(e) if !force => {
                tracing::warn!(error = %e, "swarm: cannot leave; leaving by force");
                en.leave(true).await
            }
            r => r,
        };
        match r {
            Ok(()) => tracing::info!("swarm: left"),
            Err(e) => tracing::warn!(error = %e, "swarm: cannot leave"),
        }
    }
}

impl Swarm {
    /// Before a graceful leave: drain this node and wait (at most
    /// `leave_drain_timeout`) for its tasks to run elsewhere. A manager
    /// drains itself; a worker asks the managers (`_nuvol_swarm_drain`).
    async fn drain(&self, cluster: &Cluster, en: &Engine) {
        let Ok(info) = en.local().await else { return };
        let Local::Active {
            node_id, manager, ..
        } = &info.local
        else {
            return;
        };
        tracing::info!("swarm: leaving (drain first)");
        if *manager {
            self.drain_manager(en, node_id).await;
            return;
        }
        let managers = self.handle_status().managers;
        match ask_drain(cluster, &managers, node_id).await {
            Ok(by) => tracing::info!(manager = %by, "swarm: drained by a manager"),
            Err(e) => {
                tracing::warn!(error = %e, "swarm: cannot drain this worker; its tasks move when it leaves");
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + self.cfg.leave_drain_timeout;
        while tokio::time::Instant::now() < deadline {
            match en.local_task_containers().await {
                Ok(0) | Err(_) => break,
                Ok(n) => tracing::debug!(tasks = n, "swarm: waiting for tasks to move"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn drain_manager(&self, en: &Engine, node_id: &str) {
        match en
            .update(node_id, None, Some(NodeSpecAvailabilityEnum::DRAIN))
            .await
        {
            Ok(()) => {
                let deadline = tokio::time::Instant::now() + self.cfg.leave_drain_timeout;
                while tokio::time::Instant::now() < deadline {
                    match en.running_tasks(node_id).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => tracing::debug!(tasks = n, "swarm: waiting for tasks to move"),
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "swarm: cannot drain this node"),
        }
    }

    /// A manager drains a leaving worker, if the asking member's `swarm`
    /// tag names that Swarm node (a member drains only itself) and the
    /// gossip is encrypted (the query is then authenticated by the key).
    async fn answer_drain(&self, cluster: &Cluster, en: Option<&Engine>, q: InboundQuery) {
        let node_id = String::from_utf8_lossy(&q.payload).into_owned();
        let result: Result<(), String> = async {
            if !encrypted(cluster).await {
                return Err(SwarmError::NotEncrypted.to_string());
            }
            let en = en.ok_or("not connected to its Docker daemon")?;
            let members = cluster.members().await.map_err(|e| e.to_string())?;
            let owns = members.iter().any(|m| {
                m.name == q.source_node
                    && m.tags
                        .get(SWARM_TAG)
                        .and_then(|t| Tag::parse(t))
                        .is_some_and(|t| t.node_id() == Some(node_id.as_str()))
            });
            if !owns {
                return Err(format!(
                    "{} does not own Swarm node {node_id:?}",
                    q.source_node
                ));
            }
            en.update(&node_id, None, Some(NodeSpecAvailabilityEnum::DRAIN))
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match &result {
            Ok(()) => {
                tracing::info!(from = %q.source_node, node = %node_id, "swarm: drained a leaving worker")
            }
            Err(e) => tracing::warn!(from = %q.source_node, error = %e, "swarm: drain refused"),
        }
        let payload = match result {
            Ok(()) => serde_json::json!({"ok": true}),
            Err(e) => serde_json::json!({"error": e}),
        };
        if let Err(e) = cluster
            .respond(q.id, payload.to_string().into_bytes())
            .await
        {
            tracing::debug!(error = %e, "swarm: cannot answer a drain query");
        }
    }
}

/// Ask the managers to drain `node_id`; the manager that did it.
async fn ask_drain(cluster: &Cluster, ask: &[String], node_id: &str) -> Result<String, SwarmError> {
    if ask.is_empty() {
        return Err(SwarmError::Cluster("no manager is known".into()));
    }
    ask_managers(
        cluster,
        DRAIN_QUERY,
        node_id.as_bytes().to_vec(),
        ask,
        |from, v| (v["ok"] == true).then(|| from.to_owned()),
    )
    .await
    .map_err(|why| {
        SwarmError::Cluster(
            why.unwrap_or_else(|| format!("no manager answered ({})", ask.join(","))),
        )
    })
}

async fn encrypted(cluster: &Cluster) -> bool {
    cluster.stats().await.is_ok_and(|s| s.encrypted)
}

/// Ask the managers `ask` for the tokens; the first good answer wins.
async fn ask_tokens(cluster: &Cluster, ask: &[String]) -> Result<Tokens, SwarmError> {
    ask_managers(cluster, TOKEN_QUERY, Vec::new(), ask, |_, v| {
        serde_json::from_value::<Tokens>(v.clone())
            .ok()
            .filter(|t| !t.addrs.is_empty() && !t.worker_token.is_empty())
    })
    .await
    .map_err(|why| SwarmError::NoToken(why.unwrap_or_else(|| format!("asked {}", ask.join(",")))))
}

/// Query `name` to the managers `ask`; the first answer `accept` takes, or
/// the refusals (`from: error`, `None` when nobody answered).
async fn ask_managers<T>(
    cluster: &Cluster,
    name: &str,
    payload: Vec<u8>,
    ask: &[String],
    accept: impl Fn(&str, &serde_json::Value) -> Option<T>,
) -> Result<T, Option<String>> {
    let params = QueryParams {
        filter_nodes: ask.to_vec(),
        timeout: QUERY_TIMEOUT,
        ..QueryParams::default()
    };
    let mut q = cluster
        .query(name.into(), payload, params)
        .await
        .map_err(|e| Some(e.to_string()))?;
    let mut why = Vec::new();
    let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(deadline, q.updates.recv()).await {
            Ok(Some(nuvol_agent::QueryUpdate::Response { from, payload })) => {
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
                if let Some(t) = accept(&from, &v) {
                    return Ok(t);
                }
                why.push(format!(
                    "{from}: {}",
                    v["error"].as_str().unwrap_or("a bad answer")
                ));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    Err((!why.is_empty()).then(|| why.join("; ")))
}
