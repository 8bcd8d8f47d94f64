//! The agent component: one task per `[[vip]]` driving its
//! [`Router`] over the I/O of [`crate::net`], a health task feeding each
//! router its fault (tracked services and apps, quorum, the interface's
//! link), the `vip` tag (every node's VIP states, for `/v1/vips` and the
//! dashboard), `GET /v1/vips` and the `nuvol_vip_*` metrics.

use crate::config::{VipEntry, VipSettings};
use crate::health::{self, Standing, TieBreaker, Tracked};
use crate::inuse::UseCheck;
use crate::net::{self, NetError, Netlink, VrrpSocket};
use crate::packet::{split_ipv4, Advert, MULTICAST};
use crate::router::{Output, Router, State, OWNER};
use axum::http::Method;
use nuvol_agent::cluster::Cluster;
use nuvol_agent::http::{Access, HttpRoute};
use nuvol_agent::{BuildCtx, BuildError, Component, ComponentError, OwnedTags, RunCtx};
use nuvol_catalog::component::Catalog;
use nuvol_catalog::model::Filter;
use nuvol_gossip::MemberStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The tag every node sets to its VIPs' states: `ADDRESS:VRID:S,...`
/// with S one of `m`, `b`, `f`, `i`.
pub const TAG: &str = "vip";
/// How long to wait before opening a VIP's socket again after a failure.
const RETRY: Duration = Duration::from_secs(5);
/// How often the health is recomputed (and on every membership change).
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// How long an ARP probe listens for a host holding the VIP (Linux
/// answers within a millisecond on a LAN; Wi-Fi and busy boards take
/// longer).
const PROBE_WAIT: Duration = Duration::from_millis(400);

/// One VIP as this node sees it (`/v1/vips`' `local`, `nuvol vip status`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VipStatus {
    /// `10.1.2.100/24`.
    pub address: String,
    pub interface: String,
    pub vrid: u8,
    /// `master`, `backup`, `fault` or `init`.
    pub state: &'static str,
    pub priority: u8,
    /// The current master's address as seen from here.
    pub master: Option<Ipv4Addr>,
    /// The advert source this node uses.
    pub source: Option<Ipv4Addr>,
    /// Why it cannot claim (Fault), or why it is not running (Init).
    pub reason: Option<String>,
    /// Unix seconds of the last state change.
    pub since: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub became_master: u64,
    /// Received packets not acted on, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    pub unicast_peers: Vec<Ipv4Addr>,
    pub track_services: Vec<String>,
    pub track_apps: Vec<String>,
}

/// One VIP of another node, from its `vip` tag.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemoteVip {
    pub node: String,
    pub address: String,
    pub vrid: u8,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    vrid: u8,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VridLabels {
    vrid: u8,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    vrid: u8,
    state: &'static str,
}

#[derive(Default)]
struct Metrics {
    dropped: Family<DropLabels, Counter>,
    sent: Family<VridLabels, Counter>,
    received: Family<VridLabels, Counter>,
    transitions: Family<StateLabels, Counter>,
    state: Family<StateLabels, Gauge>,
}

struct Shared {
    node: String,
    status: Mutex<Vec<VipStatus>>,
    metrics: Metrics,
    changed: watch::Sender<u64>,
    cluster: Cluster,
}

impl Shared {
    /// A received packet not acted on: the metric and the status count it.
    fn count_drop(&self, i: usize, vrid: u8, reason: &'static str) {
        self.metrics
            .dropped
            .get_or_create(&DropLabels { vrid, reason })
            .inc();
        self.update(i, |s| *s.dropped.entry(reason).or_default() += 1);
    }

    fn update(&self, i: usize, f: impl FnOnce(&mut VipStatus)) {
        let mut changed = false;
        if let Ok(mut s) = self.status.lock() {
            if let Some(v) = s.get_mut(i) {
                let before = v.state;
                f(v);
                changed = before != v.state;
            }
        }
        if changed {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    fn snapshot(&self) -> Vec<VipStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn tag_value(&self) -> String {
        self.snapshot()
            .iter()
            .map(|v| {
                let ip = v.address.split('/').next().unwrap_or("");
                format!("{ip}:{}:{}", v.vrid, &v.state[..1])
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Read access for other components (the dashboard).
#[derive(Clone)]
pub struct VipsHandle(Arc<Shared>);

impl VipsHandle {
    /// This node's VIPs.
    pub fn local(&self) -> Vec<VipStatus> {
        self.0.snapshot()
    }

    /// Every node's VIPs, from their tags (this node's from its own state).
    pub async fn cluster(&self) -> Vec<RemoteVip> {
        cluster_vips(&self.0).await
    }
}

async fn cluster_vips(shared: &Shared) -> Vec<RemoteVip> {
    let mut out: Vec<RemoteVip> = Vec::new();
    let members = shared.cluster.members().await.unwrap_or_default();
    for m in members {
        if m.name == shared.node {
            continue;
        }
        if !matches!(m.status, MemberStatus::Alive) {
            continue;
        }
        if let Some(t) = m.tags.get(TAG) {
            out.extend(parse_tag(&m.name, t));
        }
    }
    for v in shared.snapshot() {
        out.push(RemoteVip {
            node: shared.node.clone(),
            address: v.address.split('/').next().unwrap_or("").to_owned(),
            vrid: v.vrid,
            state: v.state,
        });
    }
    out.sort_by(|a, b| (&a.address, a.vrid, &a.node).cmp(&(&b.address, b.vrid, &b.node)));
    out
}

/// A peer's `vip` tag; malformed parts are skipped.
pub fn parse_tag(node: &str, tag: &str) -> Vec<RemoteVip> {
    tag.split(',')
        .filter_map(|part| {
            let mut it = part.split(':');
            let address: Ipv4Addr = it.next()?.parse().ok()?;
            let vrid: u8 = it.next()?.parse().ok()?;
            let state = match it.next()? {
                "m" => "master",
                "b" => "backup",
                "f" => "fault",
                "i" => "init",
                _ => return None,
            };
            it.next().is_none().then(|| RemoteVip {
                node: node.to_owned(),
                address: address.to_string(),
                vrid,
                state,
            })
        })
        .collect()
}

const OPENAPI: &str = r#"{
  "paths": {
    "/v1/vips": {
      "get": {
        "operationId": "listVips",
        "tags": ["vip"],
        "summary": "This node's floating IPs in detail, and every node's VIP states.",
        "responses": {
          "200": {
            "description": "The VIPs.",
            "content": {"application/json": {"schema": {"type": "object", "properties": {
              "node": {"type": "string"},
              "local": {"type": "array", "items": {"type": "object", "properties": {
                "address": {"type": "string"}, "interface": {"type": "string"},
                "vrid": {"type": "integer"}, "state": {"type": "string", "enum": ["master", "backup", "fault", "init"]},
                "priority": {"type": "integer"}, "master": {"type": ["string", "null"]},
                "source": {"type": ["string", "null"]}, "reason": {"type": ["string", "null"]},
                "since": {"type": "integer"}, "adverts_sent": {"type": "integer"},
                "adverts_received": {"type": "integer"}, "became_master": {"type": "integer"},
                "dropped": {"type": "object", "additionalProperties": {"type": "integer"}},
                "unicast_peers": {"type": "array", "items": {"type": "string"}},
                "track_services": {"type": "array", "items": {"type": "string"}},
                "track_apps": {"type": "array", "items": {"type": "string"}}
              }}},
              "cluster": {"type": "array", "items": {"type": "object", "properties": {
                "node": {"type": "string"}, "address": {"type": "string"},
                "vrid": {"type": "integer"}, "state": {"type": "string"}
              }}}
            }}}}
          }
        }
      }
    }
  }
}"#;

/// The component.
pub struct Vips {
    entries: Vec<VipEntry>,
    shared: Arc<Shared>,
    tags: OwnedTags,
    catalog: Option<Catalog>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Component for Vips {
    type Config = VipSettings;
    const NAME: &'static str = "vip";

    fn build(cfg: VipSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        if cfg.entries.is_empty() {
            return Ok(None);
        }
        let status = cfg
            .entries
            .iter()
            .map(|e| VipStatus {
                address: format!("{}/{}", e.address, e.prefix),
                interface: e.interface.clone(),
                vrid: e.vrid,
                state: State::Init.as_str(),
                priority: e.priority,
                master: None,
                source: e.source,
                reason: Some("starting".into()),
                since: unix_now(),
                adverts_sent: 0,
                adverts_received: 0,
                became_master: 0,
                dropped: BTreeMap::new(),
                unicast_peers: e.unicast_peers.clone(),
                track_services: e.track_services.clone(),
                track_apps: e.track_apps.clone(),
            })
            .collect();
        let shared = Arc::new(Shared {
            node: ctx.node_name().to_owned(),
            status: Mutex::new(status),
            metrics: Metrics::default(),
            changed: watch::channel(0).0,
            cluster: ctx.cluster(),
        });
        let m = &shared.metrics;
        let reg = ctx.metrics();
        reg.register(
            "vip_dropped",
            "VRRP packets received and not acted on, by reason",
            m.dropped.clone(),
        );
        reg.register("vip_adverts_sent", "VRRP adverts sent", m.sent.clone());
        reg.register(
            "vip_adverts_received",
            "VRRP adverts received for this node's virtual routers",
            m.received.clone(),
        );
        reg.register(
            "vip_transitions",
            "State changes of this node's virtual routers, by new state",
            m.transitions.clone(),
        );
        reg.register(
            "vip_state",
            "1 for the current state of each virtual router",
            m.state.clone(),
        );
        let s = shared.clone();
        ctx.http_route(HttpRoute::new(
            Method::GET,
            "/v1/vips",
            Access::View,
            axum::routing::get(move || {
                let s = s.clone();
                async move {
                    let cluster = cluster_vips(&s).await;
                    axum::Json(serde_json::json!({
                        "node": s.node,
                        "local": s.snapshot(),
                        "cluster": cluster,
                    }))
                }
            }),
        ))?;
        ctx.openapi(OPENAPI)?;
        let tags = ctx.own_tags(&[TAG])?;
        ctx.provide(VipsHandle(shared.clone()));
        Ok(Some(Vips {
            entries: cfg.entries,
            shared,
            tags,
            catalog: ctx.get::<Catalog>(),
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut health_tx = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let (tx, rx) = watch::channel(Some("waiting for the first health check".to_owned()));
            health_tx.push(tx);
            tasks.spawn(run_vip(i, e.clone(), self.shared.clone(), rx, stop.clone()));
        }
        let mut health = tokio::spawn(health_loop(
            self.entries.clone(),
            self.shared.clone(),
            self.catalog.clone(),
            ctx.cluster().clone(),
            health_tx,
            stop.clone(),
        ));
        let mut tag = tokio::spawn(tag_loop(
            self.shared.clone(),
            self.tags.clone(),
            stop.clone(),
        ));
        ctx.ready();
        tokio::select! {
            _ = ctx.stopping() => {}
            r = &mut health => tracing::error!(?r, "VIP health task ended"),
        }
        // Every router sends its priority-0 advert and removes its VIP.
        stop.cancel();
        while tasks.join_next().await.is_some() {}
        health.abort();
        let _ = (&mut tag).await;
        Ok(())
    }
}

async fn tag_loop(shared: Arc<Shared>, tags: OwnedTags, stop: CancellationToken) {
    let mut rx = shared.changed.subscribe();
    let mut written: Option<String> = None;
    loop {
        let value = shared.tag_value();
        if written.as_ref() != Some(&value) {
            let mine = BTreeMap::from([(TAG.to_owned(), value.clone())]);
            let ok = loop {
                let Ok(current) = tags.current().await else {
                    break false;
                };
                match tags.replace(current.version, mine.clone()).await {
                    Ok(()) => break true,
                    Err(nuvol_agent::ClusterError::TagsChanged) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot set the vip tag");
                        break false;
                    }
                }
            };
            if ok {
                written = Some(value);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
            // Retry a failed write now and then.
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

/// Each VIP's fault: tracked health, quorum, tie-breaker.
async fn health_loop(
    entries: Vec<VipEntry>,
    shared: Arc<Shared>,
    catalog: Option<Catalog>,
    cluster: Cluster,
    tx: Vec<watch::Sender<Option<String>>>,
    stop: CancellationToken,
) {
    let mut events = cluster.member_events();
    let mut gateways: BTreeMap<Ipv4Addr, bool> = BTreeMap::new();
    let mut last_probe: Option<Instant> = None;
    loop {
        let members = cluster.members().await.unwrap_or_default();
        let standing = Standing::of(&members);
        if last_probe.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
            last_probe = Some(Instant::now());
            for g in entries.iter().filter_map(|e| e.tie_breaker) {
                gateways.insert(g, probe(g).await);
            }
        }
        let local = catalog
            .as_ref()
            .map(|c| {
                c.entries(&Filter {
                    stype: None,
                    node: Some(shared.node.clone()),
                })
            })
            .unwrap_or_default();
        for (i, e) in entries.iter().enumerate() {
            let mut tracked = Vec::new();
            for s in &e.track_services {
                tracked.push(Tracked {
                    what: format!("service {s}"),
                    healthy: nuvol_catalog::model::health_of(
                        local.iter().filter(|x| x.stype.eq_ignore_ascii_case(s)),
                    ),
                });
            }
            for a in &e.track_apps {
                tracked.push(Tracked {
                    what: format!("app {a}"),
                    healthy: nuvol_catalog::model::app_health(&local, &shared.node, a),
                });
            }
            let tie = match e.tie_breaker {
                None => TieBreaker::None,
                Some(g) => TieBreaker::Gateway {
                    reachable: gateways.get(&g).copied().unwrap_or(false),
                },
            };
            let mut fault = health::fault(standing, tie, &tracked);
            if fault.is_none() && !net::link_up(&e.interface) {
                fault = Some(format!("interface {} is down", e.interface));
            }
            if let Some(t) = tx.get(i) {
                t.send_if_modified(|cur| {
                    if *cur != fault {
                        *cur = fault.clone();
                        true
                    } else {
                        false
                    }
                });
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = events.recv() => {}
            _ = tokio::time::sleep(HEALTH_EVERY) => {}
        }
    }
}

/// Whether the gateway answers a ping within a second.
async fn probe(gateway: Ipv4Addr) -> bool {
    let payload = [0u8; 16];
    matches!(
        tokio::time::timeout(
            Duration::from_secs(1),
            surge_ping::ping(std::net::IpAddr::V4(gateway), &payload)
        )
        .await,
        Ok(Ok(_))
    )
}

/// The I/O of one VIP, once opened.
struct Io {
    netlink: Netlink,
    index: u32,
    sock: VrrpSocket,
    local: Ipv4Addr,
}

async fn open(e: &VipEntry) -> Result<Io, NetError> {
    let netlink = Netlink::open()?;
    let index = netlink.index(&e.interface).await?;
    let addrs = netlink.addresses(index).await?;
    let local = match e.source {
        Some(s) => {
            if !addrs.iter().any(|(a, _)| *a == s) {
                return Err(NetError::Netlink(format!(
                    "source {s} is not an address of {}",
                    e.interface
                )));
            }
            s
        }
        None => addrs
            .iter()
            .map(|(a, _)| *a)
            .find(|a| *a != e.address)
            .ok_or_else(|| NetError::NoAddress(e.interface.clone()))?,
    };
    let sock = VrrpSocket::open(&e.interface, local)?;
    Ok(Io {
        netlink,
        index,
        sock,
        local,
    })
}

async fn run_vip(
    i: usize,
    e: VipEntry,
    shared: Arc<Shared>,
    mut health: watch::Receiver<Option<String>>,
    stop: CancellationToken,
) {
    // The first health check comes within milliseconds; starting before
    // it would show a Fault that is not one.
    tokio::select! {
        _ = stop.cancelled() => return,
        r = health.changed() => if r.is_err() { return },
    }
    let mut last_error: Option<String> = None;
    loop {
        let error = match open(&e).await {
            Ok(io) => match drive(i, &e, &shared, io, &mut health, &stop).await {
                Ok(()) => return,
                Err(err) => err,
            },
            Err(err) => err.to_string(),
        };
        // Said once at error level; the retries of the same error quietly.
        if last_error.as_ref() == Some(&error) {
            tracing::debug!(vip = %e.address, vrid = e.vrid, %error, "VIP still not running");
        } else {
            tracing::error!(vip = %e.address, vrid = e.vrid, interface = %e.interface, %error, "VIP not running; retrying every 5 s");
        }
        last_error = Some(error.clone());
        shared.update(i, |s| {
            s.state = State::Fault.as_str();
            s.reason = Some(error.clone());
            s.master = None;
            s.since = unix_now();
        });
        set_state_gauge(&shared, e.vrid, State::Fault);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

fn set_state_gauge(shared: &Shared, vrid: u8, to: State) {
    for st in [State::Init, State::Backup, State::Master, State::Fault] {
        shared
            .metrics
            .state
            .get_or_create(&StateLabels {
                vrid,
                state: st.as_str(),
            })
            .set(i64::from(st == to));
    }
}

/// Run the router until stopped (`Ok`) or the I/O fails (`Err`, after
/// giving up the VIP).
async fn drive(
    i: usize,
    e: &VipEntry,
    shared: &Shared,
    io: Io,
    health: &mut watch::Receiver<Option<String>>,
    stop: &CancellationToken,
) -> Result<(), String> {
    let mut router = Router::new(e.router_config(io.local)).map_err(|x| x.to_string())?;
    let now = Instant::now();
    // The owner (priority 255) holds its own address by definition.
    let mut check = UseCheck::new(e.address, e.vrid, router.master_down_interval());
    if e.priority == OWNER {
        check.on_probe(now, None, false);
    }
    let mut health_fault = health.borrow_and_update().clone();
    let mut fault = health_fault.clone().or(check.fault());
    router.set_fault(now, fault.clone());
    router.start(now);
    shared.update(i, |s| s.source = Some(io.local));
    tracing::info!(vip = %e.address, vrid = e.vrid, interface = %e.interface, source = %io.local, priority = e.priority, "VRRP router started");
    let mut buf = vec![0u8; 2048];
    let mut result = Ok(());
    // The ARP probe in flight (the first one after the start's removal of
    // a stale VIP, in `apply`).
    let mut probe: Option<ProbeTask> = None;
    let mut want_probe = !check.done();
    let spawn_probe = || {
        let (interface, address) = (e.interface.clone(), e.address);
        tokio::task::spawn_blocking(move || net::probe_in_use(&interface, address, PROBE_WAIT))
    };
    loop {
        if let Err(err) = apply(i, e, shared, &io, &mut router).await {
            result = Err(err);
            break;
        }
        let now = Instant::now();
        let master_known = router.master().is_some_and(|m| m != io.local);
        if check.tick(now, master_known) || std::mem::take(&mut want_probe) {
            probe = Some(spawn_probe());
        }
        let now_fault = health_fault.clone().or(check.fault());
        if now_fault != fault {
            if let Some(f) = &now_fault {
                tracing::warn!(vip = %e.address, vrid = e.vrid, reason = %f, "VIP may not be claimed here");
            }
            fault = now_fault;
            router.set_fault(now, fault.clone());
            continue;
        }
        let deadline = match (router.poll_timeout(), check.next_tick()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            r = io.sock.recv(&mut buf) => match r {
                Ok(n) => receive(i, e, shared, &io, &mut router, &buf[..n]),
                Err(err) => {
                    result = Err(format!("VRRP socket: {err}"));
                    break;
                }
            },
            _ = sleep_until(deadline) => router.handle_timeout(Instant::now()),
            r = join_probe(&mut probe) => {
                probe = None;
                let answer = match r {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(err)) => {
                        tracing::warn!(vip = %e.address, error = %err, "ARP probe not sent; the VIP is taken to be free");
                        None
                    }
                    Err(err) => {
                        tracing::warn!(vip = %e.address, error = %err, "ARP probe failed; the VIP is taken to be free");
                        None
                    }
                };
                if let Some(mac) = answer {
                    tracing::info!(vip = %e.address, mac = %net::format_mac(mac), "another host answers for the VIP");
                }
                let master_known = router.master().is_some_and(|m| m != io.local);
                check.on_probe(Instant::now(), answer, master_known);
            }
            r = health.changed() => {
                if r.is_err() {
                    break;
                }
                health_fault = health.borrow_and_update().clone();
            }
        }
    }
    if let Some(p) = probe {
        p.abort();
    }
    // Give up the VIP: priority 0 if master, addresses off.
    router.shutdown(Instant::now());
    let _ = apply(i, e, shared, &io, &mut router).await;
    result
}

type ProbeTask = tokio::task::JoinHandle<Result<Option<[u8; 6]>, NetError>>;

/// The probe's outcome once it is done; pending while none is out.
async fn join_probe(
    probe: &mut Option<ProbeTask>,
) -> Result<Result<Option<[u8; 6]>, NetError>, tokio::task::JoinError> {
    match probe {
        Some(p) => p.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn receive(i: usize, e: &VipEntry, shared: &Shared, io: &Io, router: &mut Router, bytes: &[u8]) {
    let drop = |reason: &'static str, detail: &dyn std::fmt::Display| {
        shared.count_drop(i, e.vrid, reason);
        tracing::debug!(vip = %e.address, vrid = e.vrid, reason, %detail, "VRRP packet dropped");
    };
    let (src, dst, vrrp) = match split_ipv4(bytes) {
        Ok(x) => x,
        Err(err) => return drop(err.reason(), &err),
    };
    if src == io.local {
        return;
    }
    // Another virtual router on this interface: not ours to judge.
    if vrrp.len() >= 2 && vrrp[1] != e.vrid {
        return;
    }
    if dst != MULTICAST && dst != io.local {
        return drop("destination", &dst);
    }
    if !e.unicast_peers.is_empty() && !e.unicast_peers.contains(&src) {
        return drop("unknown_peer", &src);
    }
    match Advert::decode(vrrp, src, dst) {
        Ok((advert, _form)) => {
            shared
                .metrics
                .received
                .get_or_create(&VridLabels { vrid: e.vrid })
                .inc();
            router.handle_advert(Instant::now(), src, &advert);
        }
        Err(err) => drop(err.reason(), &format_args!("from {src}: {err}")),
    }
}

/// Carry out the router's outputs, then refresh the status.
async fn apply(
    i: usize,
    e: &VipEntry,
    shared: &Shared,
    io: &Io,
    router: &mut Router,
) -> Result<(), String> {
    let mut failure = None;
    while let Some(o) = router.poll_output() {
        match o {
            Output::Send { to, bytes } => {
                shared
                    .metrics
                    .sent
                    .get_or_create(&VridLabels { vrid: e.vrid })
                    .inc();
                if let Err(err) = io.sock.send(to, &bytes).await {
                    tracing::warn!(vip = %e.address, vrid = e.vrid, %to, error = %err, "cannot send a VRRP advert");
                }
            }
            Output::AddAddresses => {
                if let Err(err) = io.netlink.add(io.index, e.address, e.prefix).await {
                    failure = Some(err.to_string());
                }
            }
            Output::RemoveAddresses => match io.netlink.remove(io.index, e.address).await {
                Ok(true) => {
                    tracing::info!(vip = %e.address, interface = %e.interface, "VIP removed from the interface")
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::error!(vip = %e.address, error = %err, "cannot remove the VIP")
                }
            },
            Output::GratuitousArp { count } => {
                let interface = e.interface.clone();
                let ips = vec![e.address];
                tokio::task::spawn_blocking(move || {
                    if let Err(err) = net::send_garps(&interface, &ips, count) {
                        tracing::warn!(error = %err, "gratuitous ARPs not sent");
                    }
                });
            }
            Output::StateChanged { from, to } => {
                tracing::info!(
                    vip = %e.address, vrid = e.vrid, interface = %e.interface,
                    from = from.as_str(), to = to.as_str(),
                    reason = router.fault_reason().unwrap_or(""),
                    "VRRP state changed"
                );
                shared
                    .metrics
                    .transitions
                    .get_or_create(&StateLabels {
                        vrid: e.vrid,
                        state: to.as_str(),
                    })
                    .inc();
                set_state_gauge(shared, e.vrid, to);
                shared.update(i, |s| s.since = unix_now());
            }
            Output::Dropped { reason, from } => {
                shared.count_drop(i, e.vrid, reason);
                tracing::warn!(vip = %e.address, vrid = e.vrid, %from, reason, detail = router.fault_reason().unwrap_or(""), "VRRP advert not acted on");
            }
        }
    }
    let c = router.counters();
    let state = router.state();
    let master = router.master();
    let reason = router.fault_reason().map(str::to_owned);
    shared.update(i, |s| {
        s.state = state.as_str();
        s.master = master;
        s.reason = reason;
        s.adverts_sent = c.adverts_sent;
        s.adverts_received = c.adverts_received;
        s.became_master = c.became_master;
    });
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_bad_parts_are_skipped() {
        let v = parse_tag(
            "a",
            "10.1.2.100:51:m,10.1.2.101:52:b,junk,10.1.2.102:x:m,1.2.3.4:9:z",
        );
        assert_eq!(
            v,
            [
                RemoteVip {
                    node: "a".into(),
                    address: "10.1.2.100".into(),
                    vrid: 51,
                    state: "master"
                },
                RemoteVip {
                    node: "a".into(),
                    address: "10.1.2.101".into(),
                    vrid: 52,
                    state: "backup"
                }
            ]
        );
    }
}
