//! The supervisor: turns the binary's list of components into a running
//! agent and stops it again.
//!
//! Start, in order: load every section (no side effects: a bad setting
//! writes nothing anywhere), create the data dir, read the snapshot and
//! keyring, bind the gossip sockets, build every component (registration),
//! start the disk writer and the gossip thread, then start the components
//! one by one in the list's order, each after the previous is ready (or
//! failed: a failed non-critical component is retried in the background).
//!
//! Stop, in order: a graceful leave when asked for, then the components in
//! reverse order (each gets `[agent] drain_timeout` to return, then is
//! aborted), then the driver (snapshot synced), then the threads are joined.
//! No task outlives [`RunningAgent::shutdown`].

use crate::chan::Channels;
use crate::cluster::{Cluster, StopReason};
use crate::component::{BuildError, Component, ComponentState, Runnable};
use crate::config::{Arg, ArgMatches, ConfigError, ConfigFile, Key, Section};
use crate::driver::{self, SharedParts};
use crate::persist;
use crate::registry::{
    BuildCtx, InfoBoard, NodeInfo, Registrations, Registry, RunCtx, StatusBoard,
};
use crate::sections::{AgentSettings, GossipSettings};
use crate::snapshot::Snapshot;
use futures::FutureExt;
use nuvol_gossip::Gossip;
use nuvol_wire::security::Keyring;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long the supervisor waits for a component to say it is ready before
/// starting the next one anyway.
const READY_WAIT: Duration = Duration::from_secs(30);
/// First and longest wait before restarting a failed component.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run that lasted this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long a graceful leave may take.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the agent could not start. Each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create data dir {path}: {error}")]
    DataDir {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("snapshot {path}: {error}")]
    Snapshot {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("invalid keyring: {0}")]
    Keyring(String),
    #[error(transparent)]
    Bind(#[from] driver::BindError),
    #[error("component {component}: {error}")]
    Build {
        component: &'static str,
        error: BuildError,
    },
    #[error("gossip core: {0}")]
    Gossip(#[from] nuvol_gossip::GossipError),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("component {component} failed to start: {error}")]
    Critical {
        component: &'static str,
        error: String,
    },
}

/// How one component type is loaded and built.
trait Factory: Send {
    fn name(&self) -> &'static str;
    fn section(&self) -> &'static str;
    fn keys(&self) -> &'static [Key];
    fn args(&self) -> Vec<Arg>;
    fn load(&self, file: &ConfigFile, m: &ArgMatches) -> Result<Box<dyn Loaded>, ConfigError>;
}

struct TypedFactory<C>(std::marker::PhantomData<fn() -> C>);

impl<C: Component> Factory for TypedFactory<C> {
    fn name(&self) -> &'static str {
        C::NAME
    }
    fn section(&self) -> &'static str {
        C::Config::NAME
    }
    fn keys(&self) -> &'static [Key] {
        C::Config::keys()
    }
    fn args(&self) -> Vec<Arg> {
        C::Config::args()
    }
    fn load(&self, file: &ConfigFile, m: &ArgMatches) -> Result<Box<dyn Loaded>, ConfigError> {
        let section = C::Config::NAME;
        let table = if section.is_empty() {
            None
        } else {
            file.section(section)
        };
        Ok(Box::new(LoadedConfig::<C>(C::Config::load(table, m)?)))
    }
}

/// A component's loaded settings, ready to build.
trait Loaded: Send {
    fn name(&self) -> &'static str;
    fn critical(&self) -> bool;
    fn build(
        self: Box<Self>,
        ctx: &mut BuildCtx<'_>,
    ) -> Result<Option<Box<dyn Runnable>>, BuildError>;
}

struct LoadedConfig<C: Component>(C::Config);

impl<C: Component> Loaded for LoadedConfig<C> {
    fn name(&self) -> &'static str {
        C::NAME
    }
    fn critical(&self) -> bool {
        C::CRITICAL
    }
    fn build(
        self: Box<Self>,
        ctx: &mut BuildCtx<'_>,
    ) -> Result<Option<Box<dyn Runnable>>, BuildError> {
        Ok(C::build(self.0, ctx)?.map(|c| Box::new(c) as Box<dyn Runnable>))
    }
}

/// The list of components, in start order.
#[derive(Default)]
pub struct AgentBuilder {
    factories: Vec<Box<dyn Factory>>,
    provided: HashMap<std::any::TypeId, Box<dyn std::any::Any + Send + Sync>>,
}

impl AgentBuilder {
    pub fn new() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// Add component `C` (started after those added before it).
    pub fn with<C: Component>(mut self) -> AgentBuilder {
        self.factories
            .push(Box::new(TypedFactory::<C>(std::marker::PhantomData)));
        self
    }

    /// Offer `service` to every component's build, as if an earlier
    /// component had provided it (tests, embedding).
    pub fn provide<T: Clone + Send + Sync + 'static>(mut self, service: T) -> AgentBuilder {
        self.provided
            .insert(std::any::TypeId::of::<T>(), Box::new(service));
        self
    }

    /// [`AgentBuilder::configure`] from TOML text and flags as given on the
    /// command line (tests, embedding).
    pub fn configure_from(self, toml: &str, flags: &[&str]) -> Result<AgentConfig, ConfigError> {
        let file = ConfigFile::parse(toml, None)?;
        let m = clap::Command::new("nuvol agent")
            .no_binary_name(true)
            .args(self.args())
            .try_get_matches_from(flags)
            .map_err(|e| {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or("invalid flags");
                ConfigError::Flags(first.trim_start_matches("error: ").to_owned())
            })?;
        self.configure(&file, &m)
    }

    /// Every flag of the agent, grouped by section in `--help`.
    pub fn args(&self) -> Vec<Arg> {
        let mut a = AgentSettings::args();
        a.extend(GossipSettings::args());
        for f in &self.factories {
            a.extend(f.args());
        }
        a
    }

    /// Every section and its keys (the core's first), for documentation
    /// and the example-file check.
    pub fn sections(&self) -> Vec<(&'static str, &'static [Key])> {
        let mut v = crate::sections::core_keys();
        let mut seen: Vec<&str> = v.iter().map(|(s, _)| *s).collect();
        for f in &self.factories {
            let s = f.section();
            if !s.is_empty() && !seen.contains(&s) {
                seen.push(s);
                v.push((s, f.keys()));
            }
        }
        v
    }

    /// Names of the components, in start order.
    pub fn component_names(&self) -> Vec<&'static str> {
        self.factories.iter().map(|f| f.name()).collect()
    }

    /// Load and check every section from `file` and the flags. Writes
    /// nothing.
    pub fn configure(
        self,
        file: &ConfigFile,
        flags: &ArgMatches,
    ) -> Result<AgentConfig, ConfigError> {
        let names: Vec<&str> = self.sections().iter().map(|(s, _)| *s).collect();
        file.check_sections(&names)?;
        let agent = AgentSettings::load(file.section(AgentSettings::NAME), flags)?;
        let gossip = GossipSettings::load(file.section(GossipSettings::NAME), flags)?;
        let mut components = Vec::new();
        for f in &self.factories {
            components.push(f.load(file, flags)?);
        }
        Ok(AgentConfig {
            agent,
            gossip,
            components,
            provided: self.provided,
        })
    }
}

/// The agent's checked configuration: [`AgentConfig::start`] runs it.
pub struct AgentConfig {
    pub agent: AgentSettings,
    pub gossip: GossipSettings,
    components: Vec<Box<dyn Loaded>>,
    provided: HashMap<std::any::TypeId, Box<dyn std::any::Any + Send + Sync>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabel {
    component: String,
}

/// A running component's supervision task.
struct Supervised {
    name: &'static str,
    /// The component's own stop budget, if longer than the agent's.
    stop_timeout: Option<Duration>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// A running agent.
pub struct RunningAgent {
    cluster: Cluster,
    registry: Arc<Registry>,
    supervised: Vec<Supervised>,
    fatal: tokio::sync::mpsc::Receiver<(&'static str, String)>,
    gossip_thread: Option<std::thread::JoinHandle<()>>,
    persist_thread: Option<std::thread::JoinHandle<()>>,
    drain_timeout: Duration,
}

impl AgentConfig {
    /// Start the agent; see the module docs for the order. The future is
    /// `Send` (checked below), so an agent can start on any runtime task.
    pub async fn start(self) -> Result<RunningAgent, StartError> {
        let AgentConfig {
            agent,
            gossip,
            components,
            provided,
        } = self;
        let data_dir = agent.data_dir.clone();
        create_data_dir(&data_dir)?;
        let snapshot_path = gossip.snapshot_path(&data_dir);
        let (snapshot, previous) =
            Snapshot::open(&snapshot_path).map_err(|error| StartError::Snapshot {
                path: snapshot_path.clone(),
                error,
            })?;
        let keyring = load_keyring(&gossip)?;
        let sockets = driver::bind(gossip.bind.0)?;
        let advertise = advertise_addr(&gossip, sockets.bound);
        let core_cfg = gossip.core_config();
        let channels = Channels::default();
        let (shared, seed) = driver::prepare(
            SharedParts {
                name: gossip.node.clone(),
                advertise,
                bound: sockets.bound,
                tcp_timeout: core_cfg.tcp_timeout,
                codec: nuvol_gossip::StreamCodec::new(&core_cfg, keyring.clone()),
                previous: Some(previous.clone()),
            },
            &channels,
        );
        let shared = Arc::new(shared);
        let cluster = Cluster {
            shared: shared.clone(),
        };
        let mut metrics = prometheus_client::registry::Registry::default();
        channels.register(metrics.sub_registry_with_prefix("nuvol"));
        let restarts = Family::<ComponentLabel, Counter>::default();
        metrics.sub_registry_with_prefix("nuvol").register(
            "component_restarts",
            "Restarts of agent components after a failure",
            restarts.clone(),
        );
        let mut reg = Registrations {
            registry: Registry {
                routes: Vec::new(),
                authenticators: Vec::new(),
                openapi: Vec::new(),
                metrics,
                dns: Vec::new(),
                reload: Vec::new(),
                services: provided,
                streams: Vec::new(),
                queries: Vec::new(),
                owned_tags: HashMap::new(),
                events: channels.broadcast("agent-events", crate::registry::EVENT_BUS_DEPTH),
                info: InfoBoard::default(),
                status: StatusBoard::default(),
                channels: channels.clone(),
                node: NodeInfo {
                    name: gossip.node.clone(),
                    data_dir: data_dir.clone(),
                    version: env!("CARGO_PKG_VERSION"),
                },
            },
            stream_handlers: HashMap::new(),
            query_inboxes: HashMap::new(),
            stop_timeouts: HashMap::new(),
        };
        reg.registry
            .info
            .set("data_dir", data_dir.display().to_string());
        let mut built: Vec<(&'static str, bool, Box<dyn Runnable>)> = Vec::new();
        for c in components {
            let (name, critical) = (c.name(), c.critical());
            let mut ctx = BuildCtx {
                component: name,
                reg: &mut reg,
                cluster: cluster.clone(),
            };
            match c.build(&mut ctx) {
                Ok(Some(r)) => built.push((name, critical, r)),
                Ok(None) => tracing::debug!(component = name, "turned off by its settings"),
                Err(error) => {
                    return Err(StartError::Build {
                        component: name,
                        error,
                    })
                }
            }
        }
        let Registrations {
            registry,
            stream_handlers,
            query_inboxes,
            stop_timeouts,
        } = reg;
        let _ = shared.owned.set(registry.owned_tags.clone());

        // The gossip core starts with the user's tags; owned keys are the
        // components' to set once they are ready.
        let mut tags = gossip.initial_tags()?;
        tags.retain(|k, _| match registry.owned_tags.get(k) {
            Some(owner) => {
                tracing::warn!(tag = %k, owner, "ignoring a configured tag that a component owns");
                false
            }
            None => true,
        });
        let mut core = Gossip::new(
            core_cfg,
            advertise,
            tags,
            keyring,
            rand::random(),
            Duration::ZERO,
        )?;
        core.restore_clocks(previous.clock, previous.event_clock, previous.query_clock);
        let (persist_tx, persist_thread) = persist::start(
            persist::Files {
                snapshot: Some(snapshot),
                keyring_file: gossip.keyring_file.clone(),
                tags_file: gossip.tags_file.clone(),
            },
            &channels,
        )
        .map_err(StartError::Thread)?;
        let gossip_thread = driver::launch(
            &shared,
            seed,
            driver::Launch {
                gossip: core,
                sockets,
                persist: Some(persist_tx),
                streams: stream_handlers,
                queries: query_inboxes,
                app_runtime: tokio::runtime::Handle::current(),
            },
        )
        .map_err(StartError::Thread)?;
        drop(shared);
        tracing::info!(node = %gossip.node, bind = %cluster.bound(), %advertise, "nuvol agent started");

        let registry = Arc::new(registry);
        let (fatal_tx, fatal) = channels.mpsc("supervisor-fatal", 16);
        let mut running = RunningAgent {
            cluster: cluster.clone(),
            registry: registry.clone(),
            supervised: Vec::new(),
            fatal,
            gossip_thread: Some(gossip_thread),
            persist_thread: Some(persist_thread),
            drain_timeout: agent.drain_timeout,
        };
        // Every component is listed (as starting) before the first runs, so
        // a client of an early one (RPC) sees what is still to come.
        let indexes: Vec<usize> = built
            .iter()
            .map(|(name, critical, _)| registry.status.add(name, *critical))
            .collect();
        for ((name, critical, runnable), index) in built.into_iter().zip(indexes) {
            let stop = CancellationToken::new();
            let ctx = RunCtx {
                name,
                stop: stop.clone(),
                status: registry.status.clone(),
                index,
                registry: registry.clone(),
                cluster: cluster.clone(),
            };
            // Cloned out of the family's lock guard, which must not live
            // across an await.
            let counter = restarts
                .get_or_create(&ComponentLabel {
                    component: name.to_owned(),
                })
                .clone();
            let task = tokio::spawn(supervise(
                runnable,
                ctx,
                critical,
                counter,
                fatal_tx.clone(),
            ));
            running.supervised.push(Supervised {
                name,
                stop_timeout: stop_timeouts.get(name).copied(),
                stop,
                task,
            });
            // Ordered start: wait until it serves, fails or finishes.
            let deadline = tokio::time::Instant::now() + READY_WAIT;
            loop {
                match registry.status.state(index) {
                    Some(ComponentState::Starting | ComponentState::Restarting) => {}
                    Some(ComponentState::Failed) if critical => {
                        let error = registry
                            .status
                            .snapshot()
                            .get(index)
                            .and_then(|s| s.last_error.clone())
                            .unwrap_or_default();
                        running.shutdown(false).await;
                        return Err(StartError::Critical {
                            component: name,
                            error,
                        });
                    }
                    _ => break,
                }
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(
                        component = name,
                        "not ready after {READY_WAIT:?}; starting the next component"
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(running)
    }
}

#[allow(dead_code)]
fn start_is_send(
    c: AgentConfig,
) -> impl std::future::Future<Output = Result<RunningAgent, StartError>> + Send {
    c.start()
}

/// Run one component, restarting it after failures if it is not critical.
async fn supervise(
    mut c: Box<dyn Runnable>,
    ctx: RunCtx,
    critical: bool,
    restarts: Counter,
    fatal: crate::chan::Tx<(&'static str, String)>,
) {
    let name = ctx.name;
    let mut backoff = BACKOFF_MIN;
    let mut attempt = 0u32;
    loop {
        ctx.status.update(ctx.index, |s| {
            s.state = if attempt == 0 {
                ComponentState::Starting
            } else {
                ComponentState::Restarting
            }
        });
        let started = tokio::time::Instant::now();
        let outcome = std::panic::AssertUnwindSafe(c.run_boxed(&ctx))
            .catch_unwind()
            .await;
        let error = match outcome {
            Ok(Ok(())) => {
                ctx.status
                    .update(ctx.index, |s| s.state = ComponentState::Stopped);
                tracing::debug!(component = name, "stopped");
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                format!("panicked: {what}")
            }
        };
        if ctx.is_stopping() {
            ctx.status.update(ctx.index, |s| {
                s.state = ComponentState::Stopped;
                s.last_error = Some(error.clone());
            });
            tracing::debug!(component = name, %error, "stopped with an error");
            return;
        }
        ctx.status.update(ctx.index, |s| {
            s.state = ComponentState::Failed;
            s.last_error = Some(error.clone());
        });
        if critical {
            tracing::error!(component = name, %error, "critical component failed; stopping the agent");
            let _ = fatal.send((name, error)).await;
            return;
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = BACKOFF_MIN;
        }
        tracing::error!(component = name, %error, retry_in = ?backoff, "component failed; restarting");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = ctx.stopping() => {
                ctx.status.update(ctx.index, |s| s.state = ComponentState::Stopped);
                return;
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        attempt += 1;
        restarts.inc();
        ctx.status.update(ctx.index, |s| s.restarts = attempt);
    }
}

impl RunningAgent {
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// A service a component provided at build (e.g. the catalog's handle).
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.registry.get::<T>()
    }

    pub fn status(&self) -> Vec<crate::ComponentStatus> {
        self.registry.status.snapshot()
    }

    /// Resolves when the agent must stop on its own: a leave over RPC, the
    /// core's decision, or a critical component's failure.
    pub async fn stopped(&mut self) -> StopReason {
        tokio::select! {
            r = self.cluster.stopped() => r,
            Some((component, error)) = self.fatal.recv() => {
                StopReason::Core(format!("component {component} failed: {error}"))
            }
        }
    }

    /// Stop: leave gracefully if `leave` (and the agent has not left yet),
    /// then stop the components in reverse order, then the driver.
    pub async fn shutdown(mut self, leave: bool) {
        if leave {
            tracing::info!("gracefully leaving the cluster");
            let limit = LEAVE_TIMEOUT + self.cluster.leave_hooks_budget();
            match tokio::time::timeout(limit, self.cluster.leave()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "leave failed"),
                Err(_) => tracing::warn!("leave did not finish in {limit:?}"),
            }
        }
        self.stop_components().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self
            .cluster
            .shared
            .tx
            .send(crate::cluster::Input::Op(crate::cluster::Op::Stop(tx)))
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
        let threads = [self.gossip_thread.take(), self.persist_thread.take()];
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads.into_iter().flatten() {
                if t.join().is_err() {
                    tracing::error!("an agent thread panicked");
                }
            }
        })
        .await;
        tracing::info!("agent stopped");
    }

    fn stop_now(&mut self) {
        for s in self.supervised.drain(..).rev() {
            s.stop.cancel();
            s.task.abort();
        }
        let (tx, _) = tokio::sync::oneshot::channel();
        let _ = self
            .cluster
            .shared
            .tx
            .try_send(crate::cluster::Input::Op(crate::cluster::Op::Stop(tx)));
    }

    async fn stop_components(&mut self) {
        while let Some(s) = self.supervised.pop() {
            s.stop.cancel();
            let mut task = s.task;
            let limit = s
                .stop_timeout
                .map_or(self.drain_timeout, |t| t.max(self.drain_timeout));
            match tokio::time::timeout(limit, &mut task).await {
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(component = s.name, "did not stop within {limit:?}; aborted");
                    task.abort();
                    let _ = task.await;
                }
            }
        }
    }

    /// Run until SIGTERM / SIGINT (serf's rules for a graceful leave) or
    /// until the agent stops on its own, then shut down. Returns the exit
    /// code.
    pub async fn run_until_signal(
        mut self,
        leave_on_terminate: bool,
        skip_leave_on_interrupt: bool,
    ) -> i32 {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot handle signals");
                self.shutdown(false).await;
                return 1;
            }
        };
        let (leave, code) = tokio::select! {
            _ = term.recv() => (leave_on_terminate, 0),
            _ = int.recv() => (!skip_leave_on_interrupt, 0),
            reason = self.stopped() => match reason {
                StopReason::Left => (false, 0),
                StopReason::Core(r) => {
                    eprintln!("nuvol: agent stopped: {r}");
                    (false, 1)
                }
            },
        };
        let shutdown = self.shutdown(leave);
        tokio::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => {}
            _ = int.recv() => tracing::warn!("second signal: exiting without finishing the shutdown"),
        }
        code
    }
}

impl Drop for RunningAgent {
    /// An agent dropped without [`RunningAgent::shutdown`] (a test that
    /// panicked) still stops: components are aborted, the driver told to end.
    fn drop(&mut self) {
        if !self.supervised.is_empty() || self.gossip_thread.is_some() {
            self.stop_now();
        }
    }
}

fn create_data_dir(dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt;
    // Owner-only when nuvol creates it: it holds the API token, the keyring
    // and service definitions (check scripts). An existing dir is left as is.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| StartError::DataDir {
            path: dir.to_owned(),
            error,
        })
}

/// Build the keyring from `encrypt` and/or `keyring_file` (serf's rules:
/// the key given is installed as primary, and the file is written).
fn load_keyring(g: &GossipSettings) -> Result<Option<Keyring>, StartError> {
    let mut kr: Option<Keyring> = None;
    if let Some(path) = &g.keyring_file {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                kr = Some(
                    Keyring::from_file_json(&text)
                        .map_err(|e| StartError::Keyring(format!("{}: {e}", path.display())))?,
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StartError::Keyring(format!("{}: {e}", path.display()))),
        }
    }
    if let Some(k) = &g.encrypt {
        let key = nuvol_wire::security::parse_key(&k.0)
            .map_err(|e| StartError::Keyring(e.to_string()))?;
        match kr.as_mut() {
            Some(r) => {
                r.add_key(&key)
                    .map_err(|e| StartError::Keyring(e.to_string()))?;
                r.use_key(&key)
                    .map_err(|e| StartError::Keyring(e.to_string()))?;
            }
            None => {
                kr = Some(
                    Keyring::new(vec![key.clone()], key)
                        .map_err(|e| StartError::Keyring(e.to_string()))?,
                )
            }
        }
        if let (Some(path), Some(r)) = (&g.keyring_file, &kr) {
            crate::fsutil::write_atomic(path, r.to_file_json().as_bytes(), 0o600)
                .map_err(|e| StartError::Keyring(format!("{}: {e}", path.display())))?;
        }
    }
    Ok(kr)
}

/// The advertised address: configured, else the bound one, else (bound to
/// 0.0.0.0) the address of the interface that holds the default route (see
/// [`crate::advertise`]), logged with why it was chosen.
fn advertise_addr(g: &GossipSettings, bound: SocketAddr) -> SocketAddr {
    let (addr, choice) = crate::advertise::advertised(bound, g.advertise.as_ref().map(|a| a.0));
    if let Some(choice) = choice {
        tracing::info!("{choice}");
    }
    addr
}
