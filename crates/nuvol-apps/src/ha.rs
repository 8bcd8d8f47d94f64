//! HA apps: an app installed with `--ha` (or `x-nuvol.ha: true`) runs as
//! Docker Swarm services, one per Compose service, rather than as this
//! node's containers.
//!
//! - [`service_specs`] (pure): the plan of the definition → one bollard
//!   `ServiceSpec` per Compose service: replicated (`x-nuvol.replicas`,
//!   default 1, a singleton), the Compose health check, restart condition
//!   `any` with `[swarm] task_restart_delay`, stop-first updates that roll
//!   back on failure, env, mounts (volumes, absolute binds, tmpfs), ports
//!   published in **host mode** (the app answers on the node its task runs
//!   on, so a VIP on that node reaches it).
//! - The record lives in the Swarm, not on the installing node: every
//!   service carries `nuvol.ha.record` (the definition, parameters,
//!   source, version), so any manager's agent lists, shows and removes
//!   the app. Its containers carry `nuvol.app`, `nuvol.service`,
//!   `nuvol.ha.singleton=true` (one replica) and `nuvol.ha.publish` (the
//!   service's catalog entries), but no `nuvol.node`: the node's own
//!   reconciler leaves them alone.
//! - [`Ha::publish_pass`]: every node's agent publishes the
//!   `x-nuvol.publish` entries of the HA containers running on its Docker
//!   (TXT `app=NAME` and `ha=true`), and retracts them once they are gone.

use crate::compose::{self, Definition};
use crate::error::AppError;
use crate::manager::{publish_defs, AppStatus, AppSummary, Publisher, ServiceStatus};
use crate::meta::{Meta, ParamKind};
use crate::plan::{AppPlan, ContainerSpec, MountSource, Proto, LABEL_APP, LABEL_SERVICE};
use crate::reconcile::{AppState, Want};
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, HealthConfig, Limit, LocalNodeState, Mount, MountTmpfsOptions, MountType,
    NetworkAttachmentConfig, NetworkCreateRequest, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use nuvol_catalog::model::ServiceDef;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// `true` on the Swarm services of HA apps.
pub const LABEL_HA: &str = "nuvol.ha";
/// `true` on the services and containers of a one-replica HA app (the
/// fencing code keys on it).
pub const LABEL_SINGLETON: &str = "nuvol.ha.singleton";
/// The app's [`HaRecord`] (JSON), on each of its services.
pub const LABEL_RECORD: &str = "nuvol.ha.record";
/// The catalog entries of a service (JSON list of `ServiceDef`), on its
/// containers.
pub const LABEL_PUBLISH: &str = "nuvol.ha.publish";
/// The TXT entry that marks a catalog service as an HA app's (published
/// by [`Ha::publish_pass`], left alone by the node's reconciler).
pub const HA_TXT: &str = "ha";
/// Most tasks per service.
pub const MAX_REPLICAS: u32 = 64;

/// What an HA app is, stored on its services so that any manager's agent
/// has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HaRecord {
    pub name: String,
    pub source: String,
    pub definition: Definition,
    /// The resolved parameter values.
    pub params: BTreeMap<String, String>,
    pub version: String,
    pub installed_at: u64,
    /// The node the install was asked of.
    pub installed_by: String,
}

/// How the services are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaOptions {
    /// Tasks per service.
    pub replicas: u32,
    /// Swarm's delay before a task is restarted (or rescheduled).
    pub restart_delay: Duration,
    /// The placement constraint of one-replica services (`[swarm]
    /// singletons_off_leader`: off the raft leader).
    pub singleton_constraint: Option<&'static str>,
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The Swarm service name of a Compose service (the container name the
/// node's own apps use: `nuvol-APP-SERVICE`).
pub fn service_name(c: &ContainerSpec) -> String {
    c.name.clone()
}

/// The Swarm services of an HA app, one per Compose service, in the
/// plan's order. Refused: `./` bind mounts (the app's directory exists on
/// one node only), network modes other than `host`, process apps.
pub fn service_specs(
    plan: &AppPlan,
    meta: &Meta,
    record: &HaRecord,
    opts: &HaOptions,
) -> Result<Vec<ServiceSpec>, AppError> {
    if !plan.driver().is_docker() {
        return Err(AppError::invalid(
            "x-nuvol.ha",
            "HA apps run on Docker Swarm: not with driver: process",
        ));
    }
    if opts.replicas == 0 || opts.replicas > MAX_REPLICAS {
        return Err(AppError::invalid(
            "x-nuvol.replicas",
            format!("{} is not in 1..={MAX_REPLICAS}", opts.replicas),
        ));
    }
    let record_json =
        serde_json::to_string(record).map_err(|e| AppError::Other(format!("ha record: {e}")))?;
    let publish = publish_defs(&plan.app, plan, meta);
    // One overlay network per app network, only when services must talk
    // to each other.
    let networked = plan.containers.len() > 1;
    let mut out = Vec::new();
    for c in &plan.containers {
        let at = format!("services.{}", c.service);
        let mut labels: HashMap<String, String> = c
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert(LABEL_APP.into(), plan.app.clone());
        labels.insert(LABEL_SERVICE.into(), c.service.clone());
        if opts.replicas == 1 {
            labels.insert(LABEL_SINGLETON.into(), "true".into());
        }
        let mut container_labels = labels.clone();
        let mine: Vec<&ServiceDef> = publish
            .iter()
            .filter(|(svc, _)| *svc == c.service)
            .map(|(_, d)| d)
            .collect();
        if !mine.is_empty() {
            container_labels.insert(
                LABEL_PUBLISH.into(),
                serde_json::to_string(&mine)
                    .map_err(|e| AppError::Other(format!("ha publish label: {e}")))?,
            );
        }
        let mut service_labels = labels;
        service_labels.insert(LABEL_HA.into(), "true".into());
        service_labels.insert(LABEL_RECORD.into(), record_json.clone());

        let mut mounts = Vec::new();
        for m in &c.mounts {
            let (typ, source, tmpfs) = match &m.source {
                MountSource::Volume(v) => (MountType::VOLUME, Some(v.clone()), None),
                MountSource::Host(p) => (MountType::BIND, Some(p.clone()), None),
                MountSource::Tmpfs(size) => (
                    MountType::TMPFS,
                    None,
                    Some(MountTmpfsOptions {
                        size_bytes: size.and_then(|s| i64::try_from(s).ok()),
                        ..Default::default()
                    }),
                ),
                MountSource::AppDir(rel) => {
                    return Err(AppError::invalid(
                        &format!("{at}.volumes"),
                        format!(
                            "./{rel}: an HA app cannot bind a path of the app's directory (it \
                             exists on one node only); use a volume or an absolute path \
                             present on every node"
                        ),
                    ))
                }
            };
            mounts.push(Mount {
                target: Some(m.target.clone()),
                source,
                typ: Some(typ),
                read_only: Some(m.read_only),
                tmpfs_options: tmpfs,
                ..Default::default()
            });
        }
        let networks = match c.network_mode.as_deref() {
            None if networked => c
                .networks
                .iter()
                .map(|n| NetworkAttachmentConfig {
                    target: Some(n.clone()),
                    aliases: Some(
                        std::iter::once(c.service.clone())
                            .chain(c.aliases.iter().cloned())
                            .collect(),
                    ),
                    ..Default::default()
                })
                .collect(),
            None => Vec::new(),
            Some("host") => vec![NetworkAttachmentConfig {
                target: Some("host".into()),
                ..Default::default()
            }],
            Some(other) => {
                return Err(AppError::invalid(
                    &format!("{at}.network_mode"),
                    format!("{other:?}: an HA app runs on its own networks or on host"),
                ))
            }
        };
        let health = c.health.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: Some(nanos(h.interval)),
            timeout: Some(nanos(h.timeout)),
            retries: Some(i64::from(h.retries)),
            start_period: Some(nanos(h.start_period)),
            ..Default::default()
        });
        // Compose's entrypoint is Swarm's command, its command the args.
        let container = TaskSpecContainerSpec {
            image: Some(c.image.clone()),
            labels: Some(container_labels),
            command: c.entrypoint.clone(),
            args: c.command.clone(),
            hostname: c.hostname.clone(),
            env: Some(c.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            dir: c.working_dir.clone(),
            user: c.user.clone(),
            tty: Some(c.tty),
            read_only: Some(c.read_only),
            mounts: Some(mounts),
            stop_signal: c.stop_signal.clone(),
            stop_grace_period: c.stop_timeout.map(nanos),
            health_check: health,
            // Compose's `HOST:IP`, Swarm's `IP HOST`.
            hosts: Some(
                c.extra_hosts
                    .iter()
                    .filter_map(|h| h.split_once(':').map(|(n, ip)| format!("{ip} {n}")))
                    .collect(),
            ),
            init: Some(c.init),
            capability_add: (!c.cap_add.is_empty()).then(|| c.cap_add.clone()),
            capability_drop: (!c.cap_drop.is_empty()).then(|| c.cap_drop.clone()),
            ..Default::default()
        };
        let resources = (c.memory.is_some() || c.nano_cpus.is_some()).then(|| TaskSpecResources {
            limits: Some(Limit {
                nano_cpus: c.nano_cpus,
                memory_bytes: c.memory.and_then(|m| i64::try_from(m).ok()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let ports: Vec<EndpointPortConfig> = c
            .ports
            .iter()
            .map(|p| EndpointPortConfig {
                protocol: Some(match p.proto {
                    Proto::Tcp => EndpointPortConfigProtocolEnum::TCP,
                    Proto::Udp => EndpointPortConfigProtocolEnum::UDP,
                }),
                target_port: Some(i64::from(p.container)),
                published_port: Some(i64::from(p.host)),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                ..Default::default()
            })
            .collect();
        out.push(ServiceSpec {
            name: Some(service_name(c)),
            labels: Some(service_labels),
            task_template: Some(TaskSpec {
                container_spec: Some(container),
                resources,
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                    delay: Some(nanos(opts.restart_delay)),
                    max_attempts: Some(0),
                    window: Some(0),
                }),
                networks: (!networks.is_empty()).then_some(networks),
                placement: opts
                    .singleton_constraint
                    .filter(|_| opts.replicas == 1)
                    .map(|k| TaskSpecPlacement {
                        constraints: Some(vec![k.to_owned()]),
                        ..Default::default()
                    }),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(i64::from(opts.replicas)),
                }),
                ..Default::default()
            }),
            // Host ports cannot be held twice on a node: stop first.
            update_config: Some(ServiceSpecUpdateConfig {
                parallelism: Some(1),
                delay: Some(0),
                failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
                monitor: Some(nanos(Duration::from_secs(10))),
                max_failure_ratio: Some(0.0),
                order: Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
            }),
            rollback_config: Some(ServiceSpecRollbackConfig {
                parallelism: Some(1),
                delay: Some(0),
                failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
                monitor: Some(nanos(Duration::from_secs(10))),
                max_failure_ratio: Some(0.0),
                order: Some(ServiceSpecRollbackConfigOrderEnum::STOP_FIRST),
            }),
            endpoint_spec: (!ports.is_empty()).then(|| EndpointSpec {
                ports: Some(ports),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    Ok(out)
}

/// The catalog entries of an HA container's `nuvol.ha.publish` label, with
/// TXT `ha=true` added. Bad labels give nothing.
pub fn container_entries(labels: &HashMap<String, String>) -> Vec<ServiceDef> {
    let Some(text) = labels.get(LABEL_PUBLISH) else {
        return Vec::new();
    };
    let Ok(mut defs) = serde_json::from_str::<Vec<ServiceDef>>(text) else {
        return Vec::new();
    };
    for d in &mut defs {
        d.txt.retain(|(k, _)| k != HA_TXT);
        d.txt.push((HA_TXT.into(), "true".into()));
    }
    defs
}

/// A task of an HA service, as the list and status need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub service: String,
    pub node: String,
    pub state: TaskState,
    pub container: Option<String>,
    pub error: Option<String>,
}

/// An app's state from its services' replica counts and tasks.
pub fn app_state(services: &[(String, u32)], tasks: &[TaskView]) -> (AppState, Option<String>) {
    let running = |svc: &str| {
        tasks
            .iter()
            .filter(|t| t.service == svc && t.state == TaskState::RUNNING)
            .count()
    };
    if services
        .iter()
        .all(|(s, want)| running(s) >= usize::try_from(*want).unwrap_or(usize::MAX))
    {
        return (AppState::Running, None);
    }
    let error = tasks.iter().find_map(|t| t.error.clone());
    let starting = tasks.iter().any(|t| {
        !matches!(
            t.state,
            TaskState::FAILED | TaskState::REJECTED | TaskState::SHUTDOWN | TaskState::COMPLETE
        )
    });
    if starting {
        (AppState::Starting, error)
    } else {
        (
            AppState::Failed,
            error.or_else(|| Some("no task runs".into())),
        )
    }
}

/// The HA apps' Docker side, for the component. Cheap to share.
pub struct Ha {
    socket: PathBuf,
    node: String,
    client: tokio::sync::Mutex<Option<bollard::Docker>>,
    swarm: std::sync::OnceLock<Option<nuvol_swarm::SwarmHandle>>,
}

fn docker_err(what: &str, e: &bollard::errors::Error) -> AppError {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            AppError::Docker(format!("{what}: {message}"))
        }
        other => AppError::Docker(format!("{what}: {other}")),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn label_filter(labels: &[String]) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), labels.to_vec())])
}

impl Ha {
    pub fn new(socket: PathBuf, node: &str) -> Ha {
        Ha {
            socket,
            node: node.to_owned(),
            client: tokio::sync::Mutex::new(None),
            swarm: std::sync::OnceLock::new(),
        }
    }

    /// The swarm component's handle (None: `[swarm]` is off here); set
    /// once at run time.
    pub fn set_swarm(&self, h: Option<nuvol_swarm::SwarmHandle>) {
        let _ = self.swarm.set(h);
    }

    fn swarm(&self) -> Option<&nuvol_swarm::SwarmHandle> {
        self.swarm.get().and_then(Option::as_ref)
    }

    async fn client(&self) -> Result<bollard::Docker, AppError> {
        let mut g = self.client.lock().await;
        if let Some(c) = g.as_ref() {
            return Ok(c.clone());
        }
        let path = self.socket.display().to_string();
        if !self.socket.exists() {
            return Err(AppError::Docker(format!(
                "cannot reach the Docker daemon at {path}: no such socket (HA apps need Docker)"
            )));
        }
        let unreachable = |e: bollard::errors::Error| {
            AppError::Docker(format!("cannot reach the Docker daemon at {path}: {e}"))
        };
        let c = bollard::Docker::connect_with_unix(&path, 60, bollard::API_DEFAULT_VERSION)
            .map_err(unreachable)?
            .negotiate_version()
            .await
            .map_err(unreachable)?;
        *g = Some(c.clone());
        Ok(c)
    }

    /// The client of a Swarm manager, and the restart delay, or why this
    /// node cannot manage HA apps.
    async fn manager(&self) -> Result<(bollard::Docker, nuvol_swarm::SwarmHandle), AppError> {
        let Some(h) = self.swarm() else {
            return Err(AppError::Conflict(
                "HA apps run on Docker Swarm, which is off on this node: set [swarm] enable = true \
                 (nuvol agent --swarm)"
                    .into(),
            ));
        };
        let c = self.client().await?;
        let info = c
            .info()
            .await
            .map_err(|e| docker_err("asking the Docker daemon for its Swarm state", &e))?;
        let sw = info.swarm.unwrap_or_default();
        let status = h.status();
        let managers = if status.managers.is_empty() {
            String::new()
        } else {
            format!(" (managers: {})", status.managers.join(", "))
        };
        match sw.local_node_state {
            Some(LocalNodeState::ACTIVE) => {}
            other => {
                let state = other.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
                let why = status.error.map(|e| format!(": {e}")).unwrap_or_default();
                return Err(AppError::Conflict(format!(
                    "HA apps need this node's Docker in a Swarm; its Swarm state is {state}{why}{managers}"
                )));
            }
        }
        if sw.control_available != Some(true) {
            return Err(AppError::Conflict(format!(
                "this node's Docker is a Swarm worker, not a manager: install and manage HA apps on a manager{managers}"
            )));
        }
        Ok((c, h.clone()))
    }

    /// Whether this node can manage HA apps now (for lists: no error
    /// where Swarm is off).
    pub async fn is_manager(&self) -> bool {
        self.manager().await.is_ok()
    }

    /// Install `definition` as the HA app `name`.
    pub async fn install(
        &self,
        name: &str,
        definition: Definition,
        params: &BTreeMap<String, String>,
        source: &str,
    ) -> Result<AppSummary, AppError> {
        let (plan, meta, values) = compose::plan(name, &definition, params)?;
        let (c, h) = self.manager().await?;
        if !self.services_of(&c, Some(name)).await?.is_empty() {
            return Err(AppError::Exists(name.to_owned()));
        }
        let record = HaRecord {
            name: name.to_owned(),
            source: source.to_owned(),
            definition,
            params: values,
            version: meta.version.clone(),
            installed_at: now_secs(),
            installed_by: self.node.clone(),
        };
        let opts = HaOptions {
            replicas: meta.replicas.unwrap_or(1),
            restart_delay: h.task_restart_delay(),
            singleton_constraint: h.singleton_constraint(),
        };
        let specs = service_specs(&plan, &meta, &record, &opts)?;
        let r = self.create(&c, &plan, specs).await;
        if let Err(e) = r {
            tracing::warn!(app = %name, error = %e, "HA install failed; removing what it created");
            self.remove_with(&c, name).await;
            return Err(e);
        }
        tracing::info!(app = %name, replicas = opts.replicas, "HA app installed (Swarm services)");
        Ok(AppSummary {
            name: name.to_owned(),
            node: String::new(),
            state: AppState::Starting,
            want: Want::Running,
            version: meta.version.clone(),
            source: source.to_owned(),
            title: meta.title.get("en").to_owned(),
            error: None,
            ha: true,
            nodes: Vec::new(),
        })
    }

    async fn create(
        &self,
        c: &bollard::Docker,
        plan: &AppPlan,
        specs: Vec<ServiceSpec>,
    ) -> Result<(), AppError> {
        if plan.containers.len() > 1 {
            for n in &plan.networks {
                let req = NetworkCreateRequest {
                    name: n.name.clone(),
                    driver: Some("overlay".into()),
                    attachable: Some(true),
                    internal: Some(n.internal),
                    labels: Some(HashMap::from([(LABEL_APP.to_owned(), plan.app.clone())])),
                    ..Default::default()
                };
                c.create_network(req).await.map_err(|e| {
                    docker_err(
                        &format!("Docker refused the overlay network {}", n.name),
                        &e,
                    )
                })?;
            }
        }
        for s in specs {
            let name = s.name.clone().unwrap_or_default();
            c.create_service(s, None)
                .await
                .map_err(|e| docker_err(&format!("Docker refused the service {name}"), &e))?;
        }
        Ok(())
    }

    /// The HA services (of `app`, or all).
    async fn services_of(
        &self,
        c: &bollard::Docker,
        app: Option<&str>,
    ) -> Result<Vec<bollard::models::Service>, AppError> {
        let mut labels = vec![format!("{LABEL_HA}=true")];
        if let Some(a) = app {
            labels.push(format!("{LABEL_APP}={a}"));
        }
        let opts = bollard::query_parameters::ListServicesOptionsBuilder::default()
            .filters(&label_filter(&labels))
            .build();
        c.list_services(Some(opts))
            .await
            .map_err(|e| docker_err("listing Swarm services", &e))
    }

    async fn tasks(&self, c: &bollard::Docker) -> Result<Vec<bollard::models::Task>, AppError> {
        let f = HashMap::from([("desired-state".to_owned(), vec!["running".to_owned()])]);
        let opts = bollard::query_parameters::ListTasksOptionsBuilder::default()
            .filters(&f)
            .build();
        c.list_tasks(Some(opts))
            .await
            .map_err(|e| docker_err("listing Swarm tasks", &e))
    }

    /// Swarm node id → the gossip member's name (else the node's
    /// hostname, else the id).
    fn node_names(&self) -> HashMap<String, String> {
        self.swarm()
            .map(|h| {
                h.status()
                    .nodes
                    .into_iter()
                    .map(|n| {
                        let name = if !n.name.is_empty() {
                            n.name
                        } else if !n.hostname.is_empty() {
                            n.hostname
                        } else {
                            n.id.clone()
                        };
                        (n.id, name)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every HA app with its services, replicas and running tasks.
    async fn apps(&self, c: &bollard::Docker, only: Option<&str>) -> Result<Vec<HaApp>, AppError> {
        let services = self.services_of(c, only).await?;
        let tasks = self.tasks(c).await?;
        let names = self.node_names();
        let mut apps: BTreeMap<String, HaApp> = BTreeMap::new();
        for s in services {
            let Some(spec) = s.spec else { continue };
            let labels = spec.labels.unwrap_or_default();
            let Some(app) = labels.get(LABEL_APP).cloned() else {
                continue;
            };
            let svc = labels.get(LABEL_SERVICE).cloned().unwrap_or_default();
            let replicas = spec
                .mode
                .and_then(|m| m.replicated)
                .and_then(|r| r.replicas)
                .and_then(|r| u32::try_from(r).ok())
                .unwrap_or(1);
            let image = spec
                .task_template
                .as_ref()
                .and_then(|t| t.container_spec.as_ref())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let ports: Vec<String> = spec
                .endpoint_spec
                .and_then(|e| e.ports)
                .unwrap_or_default()
                .into_iter()
                .map(|p| {
                    format!(
                        "{}:{}/{}",
                        p.published_port.unwrap_or(0),
                        p.target_port.unwrap_or(0),
                        p.protocol
                            .map_or_else(|| "tcp".to_owned(), |x| x.to_string())
                    )
                })
                .collect();
            let e = apps.entry(app.clone()).or_insert_with(|| HaApp {
                name: app.clone(),
                record: None,
                services: Vec::new(),
                tasks: Vec::new(),
            });
            if e.record.is_none() {
                e.record = labels
                    .get(LABEL_RECORD)
                    .and_then(|r| serde_json::from_str::<HaRecord>(r).ok());
            }
            let id = s.id.unwrap_or_default();
            for t in tasks
                .iter()
                .filter(|t| t.service_id.as_deref() == Some(id.as_str()))
            {
                let st = t.status.clone().unwrap_or_default();
                let node = t.node_id.clone().unwrap_or_default();
                e.tasks.push(TaskView {
                    service: svc.clone(),
                    node: names.get(&node).cloned().unwrap_or(node),
                    state: st.state.unwrap_or(TaskState::NEW),
                    container: st.container_status.and_then(|c| c.container_id),
                    error: st.err.filter(|e| !e.is_empty()),
                });
            }
            e.services.push(HaService {
                service: svc,
                replicas,
                image,
                ports,
            });
        }
        Ok(apps.into_values().collect())
    }

    fn summary(&self, a: &HaApp) -> AppSummary {
        let wants: Vec<(String, u32)> = a
            .services
            .iter()
            .map(|s| (s.service.clone(), s.replicas))
            .collect();
        let (state, error) = app_state(&wants, &a.tasks);
        let nodes: Vec<String> = a
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::RUNNING)
            .map(|t| t.node.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (version, source, title) = match &a.record {
            Some(r) => {
                let title = compose::read_meta(&r.definition)
                    .map(|(m, _)| m.title.get("en").to_owned())
                    .unwrap_or_default();
                (r.version.clone(), r.source.clone(), title)
            }
            None => (String::new(), String::new(), String::new()),
        };
        AppSummary {
            name: a.name.clone(),
            node: nodes.join(","),
            state,
            want: Want::Running,
            version,
            source,
            title,
            error,
            ha: true,
            nodes,
        }
    }

    /// The HA apps, when this node is a Swarm manager (else none).
    pub async fn list(&self) -> Vec<AppSummary> {
        let Ok((c, _)) = self.manager().await else {
            return Vec::new();
        };
        match self.apps(&c, None).await {
            Ok(apps) => apps.iter().map(|a| self.summary(a)).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "cannot list HA apps");
                Vec::new()
            }
        }
    }

    /// The status of HA app `name`; `published` are the catalog's
    /// entries of it (every node's).
    pub async fn status(
        &self,
        name: &str,
        published: Vec<(String, nuvol_catalog::model::Status)>,
    ) -> Result<AppStatus, AppError> {
        let (c, _) = self.manager().await?;
        let apps = self.apps(&c, Some(name)).await?;
        let a = apps
            .into_iter()
            .find(|a| a.name == name)
            .ok_or_else(|| AppError::NotFound(name.to_owned()))?;
        let summary = self.summary(&a);
        let meta = a
            .record
            .as_ref()
            .and_then(|r| compose::plan(name, &r.definition, &r.params).ok())
            .map(|(_, m, _)| m)
            .unwrap_or_default();
        let params = a
            .record
            .as_ref()
            .map(|r| mask(&r.params, &meta))
            .unwrap_or_default();
        let mut services = Vec::new();
        for s in &a.services {
            let tasks: Vec<&TaskView> = a.tasks.iter().filter(|t| t.service == s.service).collect();
            if tasks.is_empty() {
                services.push(ServiceStatus {
                    service: s.service.clone(),
                    container: None,
                    image: s.image.clone(),
                    state: None,
                    health: None,
                    exit_code: None,
                    restarts: 0,
                    ports: s.ports.clone(),
                    notes: vec![format!("no task ({} wanted)", s.replicas)],
                });
            }
            for t in tasks {
                let mut notes = vec![format!("task {} on node {}", t.state, t.node)];
                notes.extend(t.error.clone());
                services.push(ServiceStatus {
                    service: s.service.clone(),
                    container: t.container.clone(),
                    image: s.image.clone(),
                    state: (t.state == TaskState::RUNNING)
                        .then_some(crate::driver::RunState::Running),
                    health: None,
                    exit_code: None,
                    restarts: 0,
                    ports: s.ports.clone(),
                    notes,
                });
            }
        }
        Ok(AppStatus {
            summary,
            services,
            published,
            params,
            meta,
            last_upgrade: None,
        })
    }

    /// Remove HA app `name`'s services (and its overlay networks).
    pub async fn remove(&self, name: &str) -> Result<(), AppError> {
        let (c, _) = self.manager().await?;
        if self.services_of(&c, Some(name)).await?.is_empty() {
            return Err(AppError::NotFound(name.to_owned()));
        }
        self.remove_with(&c, name).await;
        let left = self.services_of(&c, Some(name)).await?;
        if !left.is_empty() {
            return Err(AppError::Docker(format!(
                "{} service(s) of {name} could not be removed",
                left.len()
            )));
        }
        tracing::info!(app = %name, "HA app removed (Swarm services)");
        Ok(())
    }

    /// Whether `name` is an HA app (this node being a manager).
    /// Whether this node has `[swarm]` on (HA apps may exist).
    pub fn swarm_on(&self) -> bool {
        self.swarm().is_some()
    }

    pub async fn has(&self, name: &str) -> bool {
        let Ok((c, _)) = self.manager().await else {
            return false;
        };
        self.services_of(&c, Some(name))
            .await
            .is_ok_and(|s| !s.is_empty())
    }

    async fn remove_with(&self, c: &bollard::Docker, name: &str) {
        if let Ok(services) = self.services_of(c, Some(name)).await {
            for s in services {
                let id = s.id.unwrap_or_default();
                if let Err(e) = c.delete_service(&id).await {
                    tracing::warn!(app = %name, service = %id, error = %e, "cannot remove service");
                }
            }
        }
        // Overlay networks go once the tasks are gone: a few tries.
        let f = label_filter(&[format!("{LABEL_APP}={name}")]);
        for _ in 0..10 {
            let opts = bollard::query_parameters::ListNetworksOptionsBuilder::default()
                .filters(&f)
                .build();
            let Ok(nets) = c.list_networks(Some(opts)).await else {
                return;
            };
            let overlays: Vec<String> = nets
                .into_iter()
                .filter(|n| n.driver.as_deref() == Some("overlay"))
                .filter_map(|n| n.name)
                .collect();
            if overlays.is_empty() {
                return;
            }
            for n in overlays {
                let _ = c.remove_network(&n).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Publish the entries of the HA containers running on this node's
    /// Docker and retract the HA entries of those gone. A Docker that
    /// cannot be asked retracts them all (its tasks cannot be known to
    /// run). Returns the entries published now.
    pub async fn publish_pass(&self, pb: &dyn Publisher) -> Result<usize, AppError> {
        let wanted = self.local_entries().await;
        let list = wanted.as_ref().cloned().unwrap_or_default();
        let local = pb.local();
        for s in local
            .iter()
            .filter(|s| s.txt.iter().any(|(k, _)| k == HA_TXT))
        {
            if !list.iter().any(|w| w.stype == s.stype && w.port == s.port) {
                match pb.unpublish(s.stype.clone(), s.port).await {
                    Ok(()) => {
                        tracing::info!(service = %format!("{}/{}", s.stype, s.port), "HA app's task gone: unpublished")
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot unpublish"),
                }
            }
        }
        let mut n = 0;
        for w in list {
            let same = local
                .iter()
                .any(|s| s.stype == w.stype && s.port == w.port && s.txt == w.txt);
            if same {
                n += 1;
                continue;
            }
            let what = format!("{}/{}", w.stype, w.port);
            match pb.publish(w).await {
                Ok(()) => {
                    n += 1;
                    tracing::info!(service = %what, "HA app's task runs here: published");
                }
                Err(e) => tracing::warn!(service = %what, error = %e, "cannot publish"),
            }
        }
        wanted.map(|_| n)
    }

    async fn local_entries(&self) -> Result<Vec<ServiceDef>, AppError> {
        let c = self.client().await?;
        let f = label_filter(&[LABEL_PUBLISH.to_owned()]);
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::default()
            .all(false)
            .filters(&f)
            .build();
        let found = match c.list_containers(Some(opts)).await {
            Ok(f) => f,
            Err(e) => {
                // A daemon restarted: connect again next time.
                *self.client.lock().await = None;
                return Err(docker_err("listing containers", &e));
            }
        };
        let mut out: Vec<ServiceDef> = Vec::new();
        for ct in found {
            let running = ct.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
            if !running {
                continue;
            }
            for d in container_entries(&ct.labels.unwrap_or_default()) {
                if !out.iter().any(|o| o.stype == d.stype && o.port == d.port) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }
}

/// Parameter values with passwords masked.
fn mask(params: &BTreeMap<String, String>, meta: &Meta) -> BTreeMap<String, String> {
    params
        .iter()
        .map(|(k, v)| {
            let secret = meta
                .parameters
                .iter()
                .any(|p| &p.name == k && p.kind == ParamKind::Password);
            (
                k.clone(),
                if secret { "********".into() } else { v.clone() },
            )
        })
        .collect()
}

struct HaService {
    service: String,
    replicas: u32,
    image: String,
    ports: Vec<String>,
}

struct HaApp {
    name: String,
    record: Option<HaRecord>,
    services: Vec<HaService>,
    tasks: Vec<TaskView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(yaml: &str) -> (AppPlan, Meta, HaRecord) {
        let def = Definition {
            compose: yaml.to_owned(),
            env_files: BTreeMap::new(),
        };
        let (plan, meta, values) = compose::plan("web", &def, &BTreeMap::new()).unwrap();
        let record = HaRecord {
            name: "web".into(),
            source: "test".into(),
            definition: def,
            params: values,
            version: meta.version.clone(),
            installed_at: 1,
            installed_by: "n1".into(),
        };
        (plan, meta, record)
    }

    const OPTS: HaOptions = HaOptions {
        replicas: 1,
        restart_delay: Duration::from_secs(1),
        singleton_constraint: Some(nuvol_swarm::plan::OFF_LEADER_CONSTRAINT),
    };

    const WEB: &str = r#"
services:
  web:
    image: busybox:1
    command: ["httpd", "-f", "-p", "8080"]
    environment:
      A: "1"
    ports: ["8080:8080"]
    volumes: ["data:/data", "/srv/x:/x:ro"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 2s
      timeout: 1s
      retries: 2
volumes:
  data: {}
x-nuvol:
  id: web
  ha: true
  publish:
    - type: http
      port: 8080
"#;

    #[test]
    fn a_singleton_web_app_becomes_one_host_mode_service() {
        let (plan, meta, record) = planned(WEB);
        assert!(meta.ha);
        let specs = service_specs(&plan, &meta, &record, &OPTS).unwrap();
        assert_eq!(specs.len(), 1);
        let s = &specs[0];
        assert_eq!(s.name.as_deref(), Some("nuvol-web-web"));
        let l = s.labels.as_ref().unwrap();
        assert_eq!(l[LABEL_APP], "web");
        assert_eq!(l[LABEL_SERVICE], "web");
        assert_eq!(l[LABEL_SINGLETON], "true");
        assert_eq!(l[LABEL_HA], "true");
        let back: HaRecord = serde_json::from_str(&l[LABEL_RECORD]).unwrap();
        assert_eq!(back, record);
        let t = s.task_template.as_ref().unwrap();
        let c = t.container_spec.as_ref().unwrap();
        let cl = c.labels.as_ref().unwrap();
        assert_eq!(cl[LABEL_APP], "web");
        assert_eq!(cl[LABEL_SERVICE], "web");
        assert_eq!(cl[LABEL_SINGLETON], "true");
        assert!(!cl.contains_key(crate::plan::LABEL_NODE), "{cl:?}");
        let entries = container_entries(cl);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].port, 8080);
        assert!(entries[0].txt.contains(&("app".into(), "web".into())));
        assert!(entries[0].txt.contains(&(HA_TXT.into(), "true".into())));
        assert_eq!(c.image.as_deref(), Some("busybox:1"));
        assert_eq!(c.command, None);
        assert_eq!(
            c.args.as_deref(),
            Some(&["httpd".to_owned(), "-f".into(), "-p".into(), "8080".into()][..])
        );
        assert!(c.env.as_ref().unwrap().contains(&"A=1".to_owned()));
        let h = c.health_check.as_ref().unwrap();
        assert_eq!(h.interval, Some(2_000_000_000));
        assert_eq!(h.retries, Some(2));
        let m = c.mounts.as_ref().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].typ, Some(MountType::VOLUME));
        assert_eq!(m[0].source.as_deref(), Some("nuvol-web-data"));
        assert_eq!(m[1].typ, Some(MountType::BIND));
        assert_eq!(m[1].read_only, Some(true));
        let r = t.restart_policy.as_ref().unwrap();
        assert_eq!(r.condition, Some(TaskSpecRestartPolicyConditionEnum::ANY));
        assert_eq!(r.delay, Some(1_000_000_000));
        assert_eq!(
            s.mode
                .as_ref()
                .unwrap()
                .replicated
                .as_ref()
                .unwrap()
                .replicas,
            Some(1)
        );
        let p = &s.endpoint_spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
        assert_eq!(
            p.publish_mode,
            Some(EndpointPortConfigPublishModeEnum::HOST)
        );
        assert_eq!((p.published_port, p.target_port), (Some(8080), Some(8080)));
        assert_eq!(
            s.update_config.as_ref().unwrap().order,
            Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST)
        );
        // One service: no overlay network needed.
        assert!(t.networks.is_none());
        // Off the raft leader ([swarm] singletons_off_leader), or anywhere.
        let placed = |s: &ServiceSpec| {
            s.task_template
                .as_ref()
                .and_then(|t| t.placement.as_ref())
                .and_then(|p| p.constraints.clone())
        };
        assert_eq!(
            placed(s),
            Some(vec!["node.labels.nuvol.swarm.leader!=true".to_owned()])
        );
        let anywhere = HaOptions {
            singleton_constraint: None,
            ..OPTS
        };
        let specs = service_specs(&plan, &meta, &record, &anywhere).unwrap();
        assert_eq!(placed(&specs[0]), None);
    }

    #[test]
    fn replicas_drop_the_singleton_label_and_services_share_networks() {
        let yaml = r#"
services:
  web:
    image: busybox:1
    entrypoint: ["httpd"]
    command: ["-f"]
  db:
    image: busybox:1
x-nuvol:
  id: web
  ha: true
  replicas: 3
"#;
        let (plan, meta, record) = planned(yaml);
        let opts = HaOptions {
            replicas: meta.replicas.unwrap(),
            ..OPTS
        };
        let specs = service_specs(&plan, &meta, &record, &opts).unwrap();
        assert_eq!(specs.len(), 2);
        for s in &specs {
            assert!(!s.labels.as_ref().unwrap().contains_key(LABEL_SINGLETON));
            // Replicas may run anywhere, the leader included.
            assert!(s.task_template.as_ref().unwrap().placement.is_none());
            let nets = s.task_template.as_ref().unwrap().networks.as_ref().unwrap();
            assert!(!nets.is_empty());
            assert_eq!(
                s.mode
                    .as_ref()
                    .unwrap()
                    .replicated
                    .as_ref()
                    .unwrap()
                    .replicas,
                Some(3)
            );
        }
        let web = specs
            .iter()
            .find(|s| s.name.as_deref() == Some("nuvol-web-web"))
            .unwrap();
        let c = web
            .task_template
            .as_ref()
            .unwrap()
            .container_spec
            .as_ref()
            .unwrap();
        assert_eq!(c.command.as_deref(), Some(&["httpd".to_owned()][..]));
        assert_eq!(c.args.as_deref(), Some(&["-f".to_owned()][..]));
        let nets = web
            .task_template
            .as_ref()
            .unwrap()
            .networks
            .as_ref()
            .unwrap();
        assert!(nets[0]
            .aliases
            .as_ref()
            .unwrap()
            .contains(&"web".to_owned()));
    }

    #[test]
    fn app_directory_binds_and_bad_replicas_are_refused() {
        let yaml = r#"
services:
  web:
    image: busybox:1
    volumes: ["./conf:/conf"]
x-nuvol:
  id: web
  ha: true
"#;
        let (plan, meta, record) = planned(yaml);
        let e = service_specs(&plan, &meta, &record, &OPTS).unwrap_err();
        assert!(e.to_string().contains("app's directory"), "{e}");
        let (plan, meta, record) = planned(WEB);
        let e = service_specs(
            &plan,
            &meta,
            &record,
            &HaOptions {
                replicas: 0,
                ..OPTS
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("replicas"), "{e}");
        // x-nuvol.replicas without ha.
        let def = Definition {
            compose:
                "services:\n  web:\n    image: busybox:1\nx-nuvol:\n  id: web\n  replicas: 2\n"
                    .into(),
            env_files: BTreeMap::new(),
        };
        let e = compose::plan("web", &def, &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("HA apps only"), "{e}");
    }

    #[test]
    fn bad_publish_labels_give_nothing() {
        let l = HashMap::from([(LABEL_PUBLISH.to_owned(), "not json".to_owned())]);
        assert!(container_entries(&l).is_empty());
        assert!(container_entries(&HashMap::new()).is_empty());
    }

    #[test]
    fn state_from_tasks() {
        let t = |state| TaskView {
            service: "web".into(),
            node: "n1".into(),
            state,
            container: None,
            error: None,
        };
        let want = [("web".to_owned(), 1)];
        assert_eq!(
            app_state(&want, &[t(TaskState::RUNNING)]).0,
            AppState::Running
        );
        assert_eq!(
            app_state(&want, &[t(TaskState::PREPARING)]).0,
            AppState::Starting
        );
        assert_eq!(app_state(&want, &[]).0, AppState::Failed);
        let mut f = t(TaskState::REJECTED);
        f.error = Some("no such image".into());
        assert_eq!(
            app_state(&want, &[f]),
            (AppState::Failed, Some("no such image".into()))
        );
    }
}
