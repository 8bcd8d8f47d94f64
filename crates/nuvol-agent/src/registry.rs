//! What components register while they are built ([`BuildCtx`]), and the
//! frozen result every running component can read ([`Registry`], through
//! its [`RunCtx`]).
//!
//! Registration replaces a closed interface: the REST API serves whatever
//! routes were registered, the DNS server answers whatever names were, the
//! driver routes application streams and internal queries by the protocol
//! byte and name components claimed, and tag keys belong to the component
//! that claimed them. Two components claiming the same thing is a build
//! error naming both.

use crate::chan::{Bus, Channels, Tx};
use crate::cluster::{Cluster, InboundQuery, OwnedTags};
use crate::component::{BuildError, ComponentState, ComponentStatus};
use crate::dns::DnsSource;
use crate::http::HttpRoute;
use futures::future::BoxFuture;
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tokio_util::sync::CancellationToken;

/// Depth of an internal query handler's inbox.
const QUERY_INBOX_DEPTH: usize = 64;
/// Depth of the agent's event bus.
pub(crate) const EVENT_BUS_DEPTH: usize = 256;

/// Serves one nuvol application stream protocol (the byte after
/// [`crate::APP_STREAM`]). Runs on the components' runtime.
pub trait StreamHandler: Send + Sync + 'static {
    /// `request` is the whole payload, prefix included; the reply is the
    /// whole payload the peer gets back.
    fn handle(
        &self,
        from: SocketAddr,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Arc<Vec<u8>>, StreamError>>;
}

/// A stream the handler could not answer; the peer gets memberlist's error
/// reply with this text.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("not ready yet")]
    NotReady,
    #[error("{0}")]
    Refused(String),
}

pub(crate) type StreamHandlers = HashMap<u8, Arc<dyn StreamHandler>>;

/// Runs on SIGHUP (and whatever else asks for a reload).
pub type ReloadHook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Something that happened, for the API's event stream and the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentEvent {
    /// `member-join`, `service-published`, `check-changed`, ...
    pub event: String,
    pub data: serde_json::Value,
}

/// Facts components publish about themselves (where they listen, ...),
/// shown in `nuvol info`'s `nuvol` section and `GET /v1/agent`.
#[derive(Clone, Default, Debug)]
pub struct InfoBoard(Arc<RwLock<BTreeMap<String, String>>>);

impl InfoBoard {
    pub fn set(&self, key: &str, value: impl Into<String>) {
        let mut m = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.insert(key.to_owned(), value.into());
    }
    pub fn remove(&self, key: &str) {
        let mut m = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.remove(key);
    }
    pub fn get(&self, key: &str) -> Option<String> {
        let m = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.get(key).cloned()
    }
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The component table.
#[derive(Clone, Default, Debug)]
pub struct StatusBoard(Arc<Mutex<Vec<ComponentStatus>>>);

impl StatusBoard {
    pub(crate) fn add(&self, name: &str, critical: bool) -> usize {
        let mut v = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        v.push(ComponentStatus {
            name: name.to_owned(),
            critical,
            state: ComponentState::Starting,
            restarts: 0,
            last_error: None,
        });
        v.len() - 1
    }

    pub(crate) fn update(&self, i: usize, f: impl FnOnce(&mut ComponentStatus)) {
        let mut v = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = v.get_mut(i) {
            f(s);
        }
    }

    /// Every component, in start order.
    pub fn snapshot(&self) -> Vec<ComponentStatus> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn state(&self, i: usize) -> Option<ComponentState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(i)
            .map(|s| s.state)
    }
}

/// Agent-wide facts a component may need at build.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub data_dir: PathBuf,
    pub version: &'static str,
}

/// Everything registered, frozen after the build.
pub struct Registry {
    pub(crate) routes: Vec<(&'static str, HttpRoute)>,
    pub(crate) authenticators: Vec<Arc<dyn crate::http::Authenticator>>,
    pub(crate) openapi: Vec<(&'static str, &'static str)>,
    pub(crate) metrics: prometheus_client::registry::Registry,
    pub(crate) dns: Vec<DnsSource>,
    pub(crate) reload: Vec<(&'static str, ReloadHook)>,
    pub(crate) services: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    pub(crate) streams: Vec<(u8, &'static str)>,
    pub(crate) queries: Vec<(String, &'static str)>,
    pub(crate) owned_tags: HashMap<String, &'static str>,
    pub events: Bus<AgentEvent>,
    pub info: InfoBoard,
    pub status: StatusBoard,
    pub channels: Channels,
    pub node: NodeInfo,
}

impl Registry {
    /// Every HTTP route, with the component that registered it.
    pub fn routes(&self) -> impl Iterator<Item = (&'static str, &HttpRoute)> {
        self.routes.iter().map(|(c, r)| (*c, r))
    }

    /// Ways of recognising callers besides the API token, in registration
    /// order.
    pub fn authenticators(&self) -> &[Arc<dyn crate::http::Authenticator>] {
        &self.authenticators
    }

    /// The OpenAPI fragments (JSON text), by component.
    pub fn openapi(&self) -> &[(&'static str, &'static str)] {
        &self.openapi
    }

    /// The metrics every component registered (encode it for `/metrics`).
    pub fn metrics(&self) -> &prometheus_client::registry::Registry {
        &self.metrics
    }

    pub fn dns_sources(&self) -> &[DnsSource] {
        &self.dns
    }

    pub fn reload_hooks(&self) -> impl Iterator<Item = (&'static str, &ReloadHook)> {
        self.reload.iter().map(|(c, h)| (*c, h))
    }

    /// A service a component provided at build.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.services
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref::<T>())
            .cloned()
    }

    /// Stream protocols and who serves them.
    pub fn stream_protocols(&self) -> &[(u8, &'static str)] {
        &self.streams
    }

    /// Internal query names and who answers them.
    pub fn query_names(&self) -> &[(String, &'static str)] {
        &self.queries
    }

    /// Tag keys and their owners.
    pub fn owned_tags(&self) -> &HashMap<String, &'static str> {
        &self.owned_tags
    }
}

/// What the build collects (see [`BuildCtx`]).
pub(crate) struct Registrations {
    pub registry: Registry,
    pub stream_handlers: StreamHandlers,
    pub query_inboxes: HashMap<String, Tx<InboundQuery>>,
    /// Components that need longer than `[agent] drain_timeout` to stop.
    pub stop_timeouts: HashMap<&'static str, std::time::Duration>,
}

/// What a component sees while it is built.
pub struct BuildCtx<'a> {
    pub(crate) component: &'static str,
    pub(crate) reg: &'a mut Registrations,
    pub(crate) cluster: Cluster,
}

impl BuildCtx<'_> {
    pub fn node_name(&self) -> &str {
        &self.reg.registry.node.name
    }

    pub fn data_dir(&self) -> &Path {
        &self.reg.registry.node.data_dir
    }

    pub fn node(&self) -> &NodeInfo {
        &self.reg.registry.node
    }

    /// How long this component may take to stop, when that is more than
    /// `[agent] drain_timeout` (leaving a Docker Swarm, say); the longer
    /// of the two applies.
    pub fn stop_timeout(&mut self, timeout: std::time::Duration) {
        self.reg.stop_timeouts.insert(self.component, timeout);
    }

    /// The gossip layer (usable once the component runs).
    pub fn cluster(&self) -> Cluster {
        self.cluster.clone()
    }

    /// Serve `route` on the REST API.
    pub fn http_route(&mut self, route: HttpRoute) -> Result<(), BuildError> {
        if let Some((other, _)) = self
            .reg
            .registry
            .routes
            .iter()
            .find(|(_, r)| r.path == route.path && r.method == route.method)
        {
            return Err(BuildError::new(format!(
                "{} {} is already served by the {other} component",
                route.method, route.path
            )));
        }
        self.reg.registry.routes.push((self.component, route));
        Ok(())
    }

    /// Recognise callers another way than by the API token (a session
    /// cookie); see [`crate::http`].
    pub fn authenticator(&mut self, a: Arc<dyn crate::http::Authenticator>) {
        self.reg.registry.authenticators.push(a);
    }

    /// The component's part of the OpenAPI document: JSON text of an
    /// object with `paths` and optionally `components` (schemas). Kept as
    /// text (it is in the binary anyway): the document is assembled when
    /// asked for, not held parsed in memory.
    pub fn openapi(&mut self, fragment: &'static str) -> Result<(), BuildError> {
        serde_json::from_str::<serde_json::Value>(fragment)
            .map_err(|e| BuildError::new(format!("its OpenAPI fragment is not JSON: {e}")))?;
        self.reg.registry.openapi.push((self.component, fragment));
        Ok(())
    }

    /// Where to register metrics (names get the `nuvol_` prefix).
    pub fn metrics(&mut self) -> &mut prometheus_client::registry::Registry {
        self.reg.registry.metrics.sub_registry_with_prefix("nuvol")
    }

    /// Names to answer under the DNS domain.
    pub fn dns_names(&mut self, source: DnsSource) {
        self.reg.registry.dns.push(source);
    }

    /// Serve nuvol application stream protocol `id`.
    pub fn stream_protocol(
        &mut self,
        id: u8,
        handler: Arc<dyn StreamHandler>,
    ) -> Result<(), BuildError> {
        if let Some((_, other)) = self.reg.registry.streams.iter().find(|(p, _)| *p == id) {
            return Err(BuildError::new(format!(
                "stream protocol {id} is already served by the {other} component"
            )));
        }
        self.reg.registry.streams.push((id, self.component));
        self.reg.stream_handlers.insert(id, handler);
        Ok(())
    }

    /// Answer inbound queries named `name` (which must start with
    /// `_nuvol_`): they arrive on the returned inbox instead of reaching
    /// event handlers and RPC streams; answer with
    /// [`Cluster::respond`](crate::Cluster::respond).
    pub fn query_handler(
        &mut self,
        name: &str,
    ) -> Result<tokio::sync::mpsc::Receiver<InboundQuery>, BuildError> {
        if !name.starts_with("_nuvol_") || name.len() <= "_nuvol_".len() {
            return Err(BuildError::new(format!(
                "internal query name {name:?} must start with \"_nuvol_\""
            )));
        }
        if let Some((_, other)) = self.reg.registry.queries.iter().find(|(n, _)| n == name) {
            return Err(BuildError::new(format!(
                "query {name:?} is already answered by the {other} component"
            )));
        }
        let (tx, rx) = self
            .reg
            .registry
            .channels
            .mpsc::<InboundQuery>("internal-queries", QUERY_INBOX_DEPTH);
        self.reg
            .registry
            .queries
            .push((name.to_owned(), self.component));
        self.reg.query_inboxes.insert(name.to_owned(), tx);
        Ok(rx)
    }

    /// Own tag keys: only the returned handle writes them, `nuvol tags`
    /// refuses them, and they are never written to the tags file.
    pub fn own_tags(&mut self, keys: &[&str]) -> Result<OwnedTags, BuildError> {
        for k in keys {
            if let Some(other) = self.reg.registry.owned_tags.get(*k) {
                return Err(BuildError::new(format!(
                    "tag {k:?} is already owned by the {other} component"
                )));
            }
        }
        for k in keys {
            self.reg
                .registry
                .owned_tags
                .insert((*k).to_owned(), self.component);
        }
        Ok(OwnedTags {
            owner: self.component,
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            cluster: self.cluster.clone(),
        })
    }

    /// Run `hook` on SIGHUP.
    pub fn on_reload(&mut self, hook: ReloadHook) {
        self.reg.registry.reload.push((self.component, hook));
    }

    /// Offer `service` to components built later (and to tests).
    pub fn provide<T: Clone + Send + Sync + 'static>(&mut self, service: T) {
        self.reg
            .registry
            .services
            .insert(TypeId::of::<T>(), Box::new(service));
    }

    /// A service an earlier component provided.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.reg.registry.get::<T>()
    }

    /// The agent's event bus (the API streams it).
    pub fn events(&self) -> Bus<AgentEvent> {
        self.reg.registry.events.clone()
    }

    pub fn info(&self) -> InfoBoard {
        self.reg.registry.info.clone()
    }

    /// Named bounded channels (their drops are metrics).
    pub fn channels(&self) -> Channels {
        self.reg.registry.channels.clone()
    }
}

/// What a component sees while it runs.
pub struct RunCtx {
    pub(crate) name: &'static str,
    pub(crate) stop: CancellationToken,
    pub(crate) status: StatusBoard,
    pub(crate) index: usize,
    pub(crate) registry: Arc<Registry>,
    pub(crate) cluster: Cluster,
}

impl RunCtx {
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The component serves: `starting`/`restarting` becomes `running`.
    pub fn ready(&self) {
        self.status
            .update(self.index, |s| s.state = ComponentState::Running);
    }

    /// Resolves when the agent asks the component to stop.
    pub async fn stopping(&self) {
        self.stop.cancelled().await
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// A token cancelled with the component (for servers' graceful stops).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}
