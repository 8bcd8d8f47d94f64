//! The Docker Engine API (and Podman's Docker-compatible socket) through
//! bollard, over a unix socket only: a node's engine is local.
//!
//! The client speaks the API version the daemon negotiates down to, and
//! refuses daemons older than [`MIN_API`]: 1.41 (Docker 20.10, Debian 12's
//! `docker.io`) is the oldest whose create/list/archive bodies bollard's
//! models still match.

use crate::driver::{Call, Engine, Health, LogLine, LogStream, Observed, RunState};
use crate::error::AppError;
use crate::plan::{
    ContainerSpec, MountSource, NetworkSpec, RestartPolicy, VolumeSpec, LABEL_APP, LABEL_NODE,
    LABEL_SERVICE, LABEL_SPEC,
};
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryStateEnum, EndpointSettings, HealthConfig, HealthStatusEnum, HostConfig,
    Mount as EngineMount, MountTmpfsOptions, MountType, NetworkConnectRequest,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy as EngineRestart,
    RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder,
    StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::fmt::Display;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Docker's own default socket.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The oldest Engine API spoken (major, minor).
pub const MIN_API: (usize, usize) = (1, 41);

/// Seconds bollard waits for a response's headers. Generous, because
/// `stop` returns only once the container stopped (its own timeout is
/// added per call); streamed bodies (logs, archives) are not bounded by it.
const CLIENT_TIMEOUT: u64 = 120;

/// How many containers `list` inspects at once.
const INSPECT_CONCURRENCY: usize = 8;

/// A Docker (or Podman) engine on a unix socket.
pub struct Docker {
    api: bollard::Docker,
    /// The socket's path, for error messages.
    socket: String,
    /// Written into the `nuvol.node` label.
    node: String,
}

impl Docker {
    /// Connect to the engine at `socket` (default [`DEFAULT_SOCKET`]; a
    /// `unix://` prefix is accepted), negotiate the API version, and check
    /// it is at least [`MIN_API`]. `node` goes into the `nuvol.node` label
    /// of everything created.
    pub async fn connect(socket: Option<&str>, node: &str) -> Result<Docker, AppError> {
        let path = socket
            .unwrap_or(DEFAULT_SOCKET)
            .trim_start_matches("unix://")
            .to_owned();
        if !Path::new(&path).exists() {
            return Err(AppError::Docker(format!(
                "cannot reach the Docker daemon at {path}: no such socket \
                 (is Docker or Podman installed and running?)"
            )));
        }
        let unreachable = |e: BollardError| {
            AppError::Docker(format!(
                "cannot reach the Docker daemon at {path}: {}",
                chain(&e)
            ))
        };
        // bollard starts at its newest API version; the daemon's /version
        // tells the one to speak (older daemons reject newer versions).
        let api =
            bollard::Docker::connect_with_unix(&path, CLIENT_TIMEOUT, bollard::API_DEFAULT_VERSION)
                .map_err(unreachable)?
                .negotiate_version()
                .await
                .map_err(unreachable)?;
        let docker = Docker {
            api,
            socket: path.clone(),
            node: node.to_owned(),
        };
        let (version, api_version) = docker.checked_version().await?;
        tracing::info!(socket = %path, %version, %api_version, "connected to the container engine");
        Ok(docker)
    }

    /// The API version the client speaks (after negotiation).
    pub fn api_version(&self) -> String {
        let v = self.api.client_version();
        format!("{}.{}", v.major_version, v.minor_version)
    }

    /// The socket's path.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    async fn checked_version(&self) -> Result<(String, String), AppError> {
        let v = self
            .api
            .version()
            .await
            .map_err(|e| self.err("version", e))?;
        let api = v.api_version.unwrap_or_default();
        let version = v.version.unwrap_or_default();
        let need = format!("{}.{}", MIN_API.0, MIN_API.1);
        match parse_api(&api) {
            Some(have) if have >= MIN_API => Ok((version, api)),
            _ => Err(AppError::TooOld { have: api, need }),
        }
    }

    /// An engine error, named: unreachable daemon, the daemon's own
    /// message, or anything else bollard reports.
    fn err(&self, what: impl Display, e: BollardError) -> AppError {
        match &e {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => AppError::Docker(format!("{what}: {message} (HTTP {status_code})")),
            BollardError::HyperLegacyError { .. }
            | BollardError::IOError { .. }
            | BollardError::SocketNotFoundError(_)
            | BollardError::RequestTimeoutError => AppError::Docker(format!(
                "cannot reach the Docker daemon at {}: {what}: {}",
                self.socket,
                chain(&e)
            )),
            _ => AppError::Docker(format!("{what}: {}", chain(&e))),
        }
    }

    fn labels(&self, app: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_APP.to_owned(), app.to_owned()),
            (LABEL_NODE.to_owned(), self.node.clone()),
        ])
    }

    /// The container body for `spec` (without networks beyond the first).
    async fn create_body(
        &self,
        app: &str,
        spec: &ContainerSpec,
        app_dir: &Path,
    ) -> Result<ContainerCreateBody, AppError> {
        let mut labels: HashMap<String, String> = spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.extend(self.labels(app));
        labels.insert(LABEL_SERVICE.to_owned(), spec.service.clone());
        labels.insert(LABEL_SPEC.to_owned(), spec.hash());

        let mut exposed = Vec::new();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &spec.ports {
            let key = format!("{}/{}", p.container, p.proto.as_str());
            if !exposed.contains(&key) {
                exposed.push(key.clone());
            }
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: p.host_ip.map(|ip| ip.to_string()),
                    host_port: Some(p.host.to_string()),
                });
        }

        let mut mounts = Vec::new();
        for m in &spec.mounts {
            let (typ, source, tmpfs) = match &m.source {
                MountSource::Volume(name) => (MountType::VOLUME, Some(name.clone()), None),
                MountSource::Host(path) => (MountType::BIND, Some(path.clone()), None),
                MountSource::AppDir(rel) => {
                    let dir = app_dir.join(rel);
                    // Compose creates a missing `./dir`; the engine would
                    // refuse a bind of a missing path.
                    if tokio::fs::symlink_metadata(&dir).await.is_err() {
                        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
                            AppError::Other(format!("creating {}: {e}", dir.display()))
                        })?;
                    }
                    (MountType::BIND, Some(dir.display().to_string()), None)
                }
                MountSource::Tmpfs(size) => (
                    MountType::TMPFS,
                    None,
                    Some(MountTmpfsOptions {
                        size_bytes: size.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
                        ..Default::default()
                    }),
                ),
            };
            mounts.push(EngineMount {
                target: Some(m.target.clone()),
                source,
                typ: Some(typ),
                read_only: Some(m.read_only),
                tmpfs_options: tmpfs,
                ..Default::default()
            });
        }

        let (network_mode, networking_config) = match (&spec.network_mode, spec.networks.first()) {
            (Some(mode), _) => (Some(mode.clone()), None),
            (None, Some(first)) => (
                Some(first.clone()),
                Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(first.clone(), self.endpoint(spec))])),
                }),
            ),
            (None, None) => (None, None),
        };

        let (name, retries) = match spec.restart {
            RestartPolicy::No => (RestartPolicyNameEnum::NO, None),
            RestartPolicy::Always => (RestartPolicyNameEnum::ALWAYS, None),
            RestartPolicy::OnFailure(n) => (RestartPolicyNameEnum::ON_FAILURE, Some(i64::from(n))),
            RestartPolicy::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
        };

        let memory = spec
            .memory
            .map(|m| i64::try_from(m).map_err(|_| AppError::invalid("memory", "too large")))
            .transpose()?;
        let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());

        let host_config = HostConfig {
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            mounts: (!mounts.is_empty()).then_some(mounts),
            network_mode,
            restart_policy: Some(EngineRestart {
                name: Some(name),
                maximum_retry_count: retries,
            }),
            memory,
            nano_cpus: spec.nano_cpus,
            cap_add: nonempty(&spec.cap_add),
            cap_drop: nonempty(&spec.cap_drop),
            readonly_rootfs: Some(spec.read_only),
            init: spec.init.then_some(true),
            extra_hosts: nonempty(&spec.extra_hosts),
            ..Default::default()
        };

        Ok(ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.command.clone(),
            entrypoint: spec.entrypoint.clone(),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            healthcheck: spec.health.as_ref().map(|h| HealthConfig {
                test: Some(h.test.clone()),
                interval: Some(nanos(h.interval)),
                timeout: Some(nanos(h.timeout)),
                retries: Some(i64::from(h.retries)),
                start_period: Some(nanos(h.start_period)),
                ..Default::default()
            }),
            labels: Some(labels),
            user: spec.user.clone(),
            working_dir: spec.working_dir.clone(),
            hostname: spec.hostname.clone(),
            stop_signal: spec.stop_signal.clone(),
            stop_timeout: spec
                .stop_timeout
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            tty: Some(spec.tty),
            host_config: Some(host_config),
            networking_config,
            ..Default::default()
        })
    }

    /// The service's name and its aliases on each of its networks.
    fn endpoint(&self, spec: &ContainerSpec) -> EndpointSettings {
        let mut aliases = vec![spec.service.clone()];
        aliases.extend(spec.aliases.iter().cloned());
        EndpointSettings {
            aliases: Some(aliases),
            ..Default::default()
        }
    }

    async fn create_and_connect(
        &self,
        app: &str,
        spec: &ContainerSpec,
        app_dir: &Path,
    ) -> Result<String, AppError> {
        let body = self.create_body(app, spec, app_dir).await?;
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let created = match self.api.create_container(Some(opts), body).await {
            Ok(c) => c,
            Err(e) => {
                // 404 is also a missing network: ask about the image.
                if is_status(&e, 404) && self.image_id(&spec.image).await?.is_none() {
                    return Err(AppError::Image {
                        image: spec.image.clone(),
                        why: "not present locally (create does not pull; pull it first)".to_owned(),
                    });
                }
                return Err(self.err(format!("creating container {}", spec.name), e));
            }
        };
        for w in &created.warnings {
            tracing::warn!(container = %spec.name, "engine: {w}");
        }
        if spec.network_mode.is_none() {
            for net in spec.networks.iter().skip(1) {
                let req = NetworkConnectRequest {
                    container: created.id.clone(),
                    endpoint_config: Some(self.endpoint(spec)),
                };
                if let Err(e) = self.api.connect_network(net, req).await {
                    let err = self.err(format!("connecting {} to network {net}", spec.name), e);
                    // No half-made container left behind.
                    if let Err(rm) = self.remove(&created.id).await {
                        tracing::warn!(container = %spec.name, "removing it: {rm}");
                    }
                    return Err(err);
                }
            }
        }
        tracing::debug!(container = %spec.name, id = %created.id, "created");
        Ok(created.id)
    }

    async fn observe(&self, c: ContainerSummary) -> Result<Option<Observed>, AppError> {
        let Some(id) = c.id else { return Ok(None) };
        let labels = c.labels.unwrap_or_default();
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let name = c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        // The 1.41 list has no restart count, and health and exit code only
        // inside its human "Status" text: inspect for them.
        let inspect: Option<ContainerInspectResponse> =
            match self.api.inspect_container(&id, None).await {
                Ok(i) => Some(i),
                // Removed since it was listed.
                Err(e) if is_status(&e, 404) => return Ok(None),
                Err(e) => return Err(self.err(format!("inspecting container {name}"), e)),
            };
        let state = inspect.as_ref().and_then(|i| i.state.as_ref());
        let run = state
            .and_then(|s| s.status)
            .map(state_of_status)
            .or_else(|| c.state.map(state_of_summary))
            .unwrap_or(RunState::Created);
        let health = state
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status)
            .map(|h| match h {
                HealthStatusEnum::STARTING => Health::Starting,
                HealthStatusEnum::HEALTHY => Health::Healthy,
                HealthStatusEnum::UNHEALTHY => Health::Unhealthy,
                HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => Health::None,
            })
            .unwrap_or_else(|| health_of_status(c.status.as_deref().unwrap_or("")));
        let exit_code = match run {
            RunState::Exited | RunState::Dead => state.and_then(|s| s.exit_code),
            _ => None,
        };
        let restart_count = inspect
            .as_ref()
            .and_then(|i| i.restart_count)
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        let image_id = c
            .image_id
            .or_else(|| inspect.as_ref().and_then(|i| i.image.clone()))
            .unwrap_or_default();
        Ok(Some(Observed {
            id,
            name,
            app: label(LABEL_APP),
            service: label(LABEL_SERVICE),
            node: label(LABEL_NODE),
            spec: label(LABEL_SPEC),
            state: run,
            health,
            exit_code,
            restart_count,
            image_id,
        }))
    }

    /// `PUT /containers/ID/archive?path=PATH` of the tar file `src`.
    async fn upload(&self, id: &str, path: &str, src: &Path) -> Result<(), AppError> {
        let file = tokio::fs::File::open(src)
            .await
            .map_err(|e| AppError::Other(format!("opening {}: {e}", src.display())))?;
        let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
        let opts = UploadToContainerOptionsBuilder::default()
            .path(path)
            .build();
        self.api
            .upload_to_container(id, Some(opts), body)
            .await
            .map_err(|e| self.err(format!("copying into {path} of {id}"), e))
    }

    async fn write_archive(&self, id: &str, path: &str, dest: &Path) -> Result<(), AppError> {
        let opts = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut stream = self.api.download_from_container(id, Some(opts));
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| AppError::Other(format!("creating {}: {e}", dest.display())))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.err(format!("copying {path} out of {id}"), e))?;
            file.write_all(&chunk)
                .await
                .map_err(|e| AppError::Other(format!("writing {}: {e}", dest.display())))?;
        }
        file.sync_all()
            .await
            .map_err(|e| AppError::Other(format!("writing {}: {e}", dest.display())))?;
        drop(file);
        // Docker names the entries after the path's last component
        // (`www/`, `www/index.html`); Podman 4 (its compat API) writes the
        // directory's content with absolute names (`/`, `/index.html`).
        // Rewritten to Docker's layout, which backups rely on.
        let base = path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned();
        let dest_owned = dest.to_owned();
        tokio::task::spawn_blocking(move || rebase_archive(&dest_owned, &base))
            .await
            .map_err(|e| AppError::Other(format!("rewriting {}: {e}", dest.display())))?
            .map_err(|e| AppError::Other(format!("rewriting {}: {e}", dest.display())))
    }
}

/// Whether `file`'s entries are absolute (Podman's layout of a copy out);
/// if so, rewrite it in place with every `/X` as `BASE/X` (hard link
/// targets too). Docker's layout is left as it is.
fn rebase_archive(file: &Path, base: &str) -> Result<(), String> {
    let absolute = first_entry(file)?.is_some_and(|p| p.starts_with('/'));
    if !absolute {
        return Ok(());
    }
    if base.is_empty() || base == "." || base == ".." {
        return Err(format!("cannot name the entries of {base:?}"));
    }
    let tmp = file.with_extension("rebase");
    let r = rename_entries(file, &tmp, &|s: &str| {
        let rest = s.trim_start_matches('/');
        Ok(if rest.is_empty() {
            format!("{base}/")
        } else {
            format!("{base}/{rest}")
        })
    });
    match r {
        Ok(()) => std::fs::rename(&tmp, file).map_err(|e| e.to_string()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The path of an archive's first entry (`None`: no entry).
fn first_entry(file: &Path) -> Result<Option<String>, String> {
    let f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    let mut entries = ar.entries().map_err(|e| e.to_string())?;
    match entries.next() {
        Some(e) => {
            let e = e.map_err(|e| e.to_string())?;
            Ok(Some(String::from_utf8_lossy(&e.path_bytes()).into_owned()))
        }
        None => Ok(None),
    }
}

/// Copy the archive `src` to `dst` with every entry's path (and hard link
/// target) renamed by `rename`; contents, modes, owners and times kept,
/// symbolic link targets kept (the engine resolves them in the
/// container).
fn rename_entries(
    src: &Path,
    dst: &Path,
    rename: &dyn Fn(&str) -> Result<String, String>,
) -> Result<(), String> {
    use std::io::Write as _;
    let name_of = |raw: &[u8]| -> Result<String, String> {
        let s = std::str::from_utf8(raw).map_err(|_| "a path that is not UTF-8".to_owned())?;
        rename(s)
    };
    let f = std::fs::File::open(src).map_err(|e| e.to_string())?;
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    let out = std::fs::File::create(dst).map_err(|e| e.to_string())?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(out));
    for entry in ar.entries().map_err(|e| e.to_string())? {
        let mut e = entry.map_err(|e| e.to_string())?;
        let name = name_of(&e.path_bytes())?;
        let mut h = e.header().clone();
        let target = e.link_name_bytes().map(|t| t.into_owned());
        match (h.entry_type(), target) {
            (tar::EntryType::Link, Some(t)) => {
                let t = name_of(&t)?;
                b.append_link(&mut h, &name, &t)
                    .map_err(|e| e.to_string())?;
            }
            (tar::EntryType::Symlink, Some(t)) => {
                let t = String::from_utf8_lossy(&t).into_owned();
                b.append_link(&mut h, &name, &t)
                    .map_err(|e| e.to_string())?;
            }
            // The target directory itself: a raw name, since the
            // builder's path helpers drop `.` components (to nothing).
            _ if name == "./" => {
                h.as_old_mut().name.fill(0);
                h.as_old_mut().name[..2].copy_from_slice(b"./");
                h.set_cksum();
                b.append(&h, std::io::empty()).map_err(|e| e.to_string())?;
            }
            _ => b
                .append_data(&mut h, &name, &mut e)
                .map_err(|e| e.to_string())?,
        }
    }
    let mut w = b.into_inner().map_err(|e| e.to_string())?;
    w.flush().map_err(|e| e.to_string())?;
    w.get_ref().sync_all().map_err(|e| e.to_string())?;
    Ok(())
}

/// For a copy into `path` of an archive whose entries are all under
/// `KEY/`, where the container mounts a volume at `path/KEY`: the archive
/// rewritten relative to `KEY` (in `tmp`), to be unpacked at the mount
/// itself. Podman 4 unpacks an archive into a stopped container's root
/// file system only, not into the volumes mounted below the target, so
/// `KEY/...` at `path` would miss the volume; at the mount point it
/// reaches it (Docker does either). `None`: copy as it is.
fn into_mount(src: &Path, mounts: &[String], path: &str, tmp: &Path) -> Option<String> {
    let first = first_entry(src).ok()??;
    let key = first.trim_start_matches("./").split('/').next()?.to_owned();
    if key.is_empty() || key == ".." {
        return None;
    }
    let target = format!("{}/{key}", path.trim_end_matches('/'));
    if !mounts.iter().any(|m| m.trim_end_matches('/') == target) {
        return None;
    }
    let prefix = format!("{key}/");
    let r = rename_entries(src, tmp, &|s: &str| {
        let s = s.trim_start_matches("./");
        if s == key || s == prefix {
            Ok("./".to_owned())
        } else if let Some(rest) = s.strip_prefix(&prefix) {
            Ok(rest.to_owned())
        } else {
            Err(format!("{s} is not under {prefix}"))
        }
    });
    r.ok().map(|()| target)
}

impl Engine for Docker {
    fn version(&self) -> Call<'_, (String, String)> {
        Box::pin(self.checked_version())
    }

    fn list(&self) -> Call<'_, Vec<Observed>> {
        Box::pin(async move {
            let filters = HashMap::from([("label", vec![LABEL_APP])]);
            let opts = ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build();
            let found = self
                .api
                .list_containers(Some(opts))
                .await
                .map_err(|e| self.err("listing containers", e))?;
            let mut out: Vec<Observed> = futures_util::stream::iter(found)
                .map(|c| self.observe(c))
                .buffer_unordered(INSPECT_CONCURRENCY)
                .try_filter_map(|o| async move { Ok(o) })
                .try_collect()
                .await?;
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    fn image_id<'a>(&'a self, image: &'a str) -> Call<'a, Option<String>> {
        Box::pin(async move {
            match self.api.inspect_image(image).await {
                Ok(i) => Ok(i.id),
                Err(e) if is_status(&e, 404) => Ok(None),
                Err(e) => Err(self.err(format!("inspecting image {image}"), e)),
            }
        })
    }

    fn ensure_network<'a>(&'a self, app: &'a str, net: &'a NetworkSpec) -> Call<'a, ()> {
        Box::pin(async move {
            match self.api.inspect_network(&net.name, None).await {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(self.err(format!("inspecting network {}", net.name), e)),
            }
            let req = NetworkCreateRequest {
                name: net.name.clone(),
                driver: Some("bridge".to_owned()),
                internal: Some(net.internal),
                labels: Some(self.labels(app)),
                ..Default::default()
            };
            match self.api.create_network(req).await {
                Ok(_) => {
                    tracing::debug!(network = %net.name, "created");
                    Ok(())
                }
                // Created meanwhile.
                Err(e) if is_status(&e, 409) => Ok(()),
                Err(e) => Err(self.err(format!("creating network {}", net.name), e)),
            }
        })
    }

    fn ensure_volume<'a>(&'a self, app: &'a str, vol: &'a VolumeSpec) -> Call<'a, ()> {
        Box::pin(async move {
            match self.api.inspect_volume(&vol.name).await {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(self.err(format!("inspecting volume {}", vol.name), e)),
            }
            let req = VolumeCreateRequest {
                name: Some(vol.name.clone()),
                labels: Some(self.labels(app)),
                ..Default::default()
            };
            self.api
                .create_volume(req)
                .await
                .map_err(|e| self.err(format!("creating volume {}", vol.name), e))?;
            tracing::debug!(volume = %vol.name, "created");
            Ok(())
        })
    }

    fn create<'a>(
        &'a self,
        app: &'a str,
        spec: &'a ContainerSpec,
        app_dir: &'a Path,
    ) -> Call<'a, String> {
        Box::pin(self.create_and_connect(app, spec, app_dir))
    }

    fn start<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        Box::pin(async move {
            self.api
                .start_container(id, None)
                .await
                .map_err(|e| self.err(format!("starting {id}"), e))
        })
    }

    fn stop<'a>(&'a self, id: &'a str, timeout: Duration) -> Call<'a, ()> {
        Box::pin(async move {
            let opts = StopContainerOptionsBuilder::default()
                .t(secs(timeout))
                .build();
            match self.api.stop_container(id, Some(opts)).await {
                // 304: already stopped.
                Err(e) if !is_status(&e, 304) => Err(self.err(format!("stopping {id}"), e)),
                _ => Ok(()),
            }
        })
    }

    fn restart<'a>(&'a self, id: &'a str, timeout: Duration) -> Call<'a, ()> {
        Box::pin(async move {
            let opts = RestartContainerOptionsBuilder::default()
                .t(secs(timeout))
                .build();
            self.api
                .restart_container(id, Some(opts))
                .await
                .map_err(|e| self.err(format!("restarting {id}"), e))
        })
    }

    fn pause<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        Box::pin(async move {
            self.api
                .pause_container(id)
                .await
                .map_err(|e| self.err(format!("pausing {id}"), e))
        })
    }

    fn unpause<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        Box::pin(async move {
            self.api
                .unpause_container(id)
                .await
                .map_err(|e| self.err(format!("unpausing {id}"), e))
        })
    }

    fn remove<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        Box::pin(async move {
            let opts = RemoveContainerOptionsBuilder::default().force(true).build();
            match self.api.remove_container(id, Some(opts)).await {
                Ok(()) => Ok(()),
                Err(e) if is_status(&e, 404) => Ok(()),
                // Another removal of it is under way.
                Err(BollardError::DockerResponseServerError {
                    status_code: 409,
                    message,
                }) if message.contains("already in progress") => Ok(()),
                Err(e) => Err(self.err(format!("removing {id}"), e)),
            }
        })
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        Box::pin(async move {
            let opts: Option<bollard::query_parameters::RemoveVolumeOptions> = None;
            match self.api.remove_volume(name, opts).await {
                Err(e) if !is_status(&e, 404) => {
                    Err(self.err(format!("removing volume {name}"), e))
                }
                _ => Ok(()),
            }
        })
    }

    fn remove_network<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        Box::pin(async move {
            match self.api.remove_network(name).await {
                Err(e) if !is_status(&e, 404) => {
                    Err(self.err(format!("removing network {name}"), e))
                }
                _ => Ok(()),
            }
        })
    }

    fn volumes<'a>(&'a self, app: &'a str) -> Call<'a, Vec<String>> {
        Box::pin(async move {
            let filters = HashMap::from([("label", vec![format!("{LABEL_APP}={app}")])]);
            let opts = ListVolumesOptionsBuilder::default()
                .filters(&filters)
                .build();
            let list = self
                .api
                .list_volumes(Some(opts))
                .await
                .map_err(|e| self.err("listing volumes", e))?;
            let mut names: Vec<String> = list
                .volumes
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.name)
                .collect();
            names.sort();
            Ok(names)
        })
    }

    fn networks<'a>(&'a self, app: &'a str) -> Call<'a, Vec<String>> {
        Box::pin(async move {
            let filters = HashMap::from([("label", vec![format!("{LABEL_APP}={app}")])]);
            let opts = ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build();
            let list = self
                .api
                .list_networks(Some(opts))
                .await
                .map_err(|e| self.err("listing networks", e))?;
            let mut names: Vec<String> = list.into_iter().filter_map(|n| n.name).collect();
            names.sort();
            Ok(names)
        })
    }

    fn pull<'a>(&'a self, image: &'a str) -> Call<'a, ()> {
        Box::pin(async move {
            // Without a tag the API pulls every tag of the repository.
            let last = image.rsplit('/').next().unwrap_or(image);
            let tagged = image.contains('@') || last.contains(':');
            let mut opts = CreateImageOptionsBuilder::default().from_image(image);
            if !tagged {
                opts = opts.tag("latest");
            }
            let mut progress = self.api.create_image(Some(opts.build()), None, None);
            while let Some(item) = progress.next().await {
                match item {
                    Ok(info) => {
                        if let Some(status) = info.status {
                            tracing::debug!(%image, "pull: {status}");
                        }
                    }
                    Err(e) => {
                        return Err(match self.err(format!("pulling {image}"), e) {
                            AppError::Docker(why) if !why.starts_with("cannot reach") => {
                                AppError::Image {
                                    image: image.to_owned(),
                                    why,
                                }
                            }
                            other => other,
                        });
                    }
                }
            }
            tracing::info!(%image, "pulled");
            Ok(())
        })
    }

    fn copy_out<'a>(&'a self, id: &'a str, path: &'a str, dest: &'a Path) -> Call<'a, ()> {
        Box::pin(async move {
            let r = self.write_archive(id, path, dest).await;
            if r.is_err() {
                // No partial archive left to be mistaken for a backup.
                let _ = tokio::fs::remove_file(dest).await;
            }
            r
        })
    }

    fn copy_in<'a>(&'a self, id: &'a str, path: &'a str, src: &'a Path) -> Call<'a, ()> {
        Box::pin(async move {
            let mounts: Vec<String> = self
                .api
                .inspect_container(id, None)
                .await
                .map_err(|e| self.err(format!("inspecting {id}"), e))?
                .mounts
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| m.destination)
                .collect();
            let tmp = src.with_extension("mount.tar");
            let (src_owned, path_owned, tmp_owned) = (src.to_owned(), path.to_owned(), tmp.clone());
            let target = tokio::task::spawn_blocking(move || {
                into_mount(&src_owned, &mounts, &path_owned, &tmp_owned)
            })
            .await
            .map_err(|e| AppError::Other(format!("reading {}: {e}", src.display())))?;
            let (file, at) = match &target {
                Some(t) => (tmp.as_path(), t.as_str()),
                None => (src, path),
            };
            let r = self.upload(id, at, file).await;
            if target.is_some() {
                let _ = tokio::fs::remove_file(&tmp).await;
            }
            r
        })
    }

    fn logs<'a>(&'a self, id: &'a str, tail: usize, follow: bool) -> Call<'a, LogStream> {
        Box::pin(async move {
            // An unknown container is an error now, not the stream's first
            // item.
            self.api
                .inspect_container(id, None)
                .await
                .map_err(|e| self.err(format!("logs of {id}"), e))?;
            let opts = LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .follow(follow)
                .timestamps(false)
                .tail(&tail.to_string())
                .build();
            let socket = self.socket.clone();
            let id = id.to_owned();
            let stream = self.api.logs(&id, Some(opts)).flat_map(move |item| {
                let lines: Vec<Result<LogLine, AppError>> = match item {
                    Ok(out) => {
                        let stderr = matches!(out, bollard::container::LogOutput::StdErr { .. });
                        split_lines(&out.into_bytes())
                            .map(|text| Ok(LogLine { stderr, text }))
                            .collect()
                    }
                    Err(e) => vec![Err(AppError::Docker(format!(
                        "logs of {id} (daemon at {socket}): {}",
                        chain(&e)
                    )))],
                };
                futures_util::stream::iter(lines)
            });
            Ok(Box::pin(stream) as LogStream)
        })
    }
}

/// A frame's lines, without their newlines (a frame is one write of the
/// container: usually a line, with a TTY any chunk).
fn split_lines(bytes: &[u8]) -> impl Iterator<Item = String> + '_ {
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    text.split(|b| *b == b'\n').map(|l| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        String::from_utf8_lossy(l).into_owned()
    })
}

/// An error with its causes (bollard's hyper errors say little on top).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn is_status(e: &BollardError, code: u16) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

/// "1.41" as (1, 41).
fn parse_api(v: &str) -> Option<(usize, usize)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

fn state_of_status(s: ContainerStateStatusEnum) -> RunState {
    match s {
        ContainerStateStatusEnum::RUNNING => RunState::Running,
        ContainerStateStatusEnum::PAUSED => RunState::Paused,
        ContainerStateStatusEnum::RESTARTING => RunState::Restarting,
        ContainerStateStatusEnum::REMOVING => RunState::Removing,
        ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::STOPPING => RunState::Exited,
        ContainerStateStatusEnum::DEAD => RunState::Dead,
        ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::EMPTY => RunState::Created,
    }
}

fn state_of_summary(s: ContainerSummaryStateEnum) -> RunState {
    match s {
        ContainerSummaryStateEnum::RUNNING => RunState::Running,
        ContainerSummaryStateEnum::PAUSED => RunState::Paused,
        ContainerSummaryStateEnum::RESTARTING => RunState::Restarting,
        ContainerSummaryStateEnum::REMOVING => RunState::Removing,
        ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::STOPPING => RunState::Exited,
        ContainerSummaryStateEnum::DEAD => RunState::Dead,
        ContainerSummaryStateEnum::CREATED | ContainerSummaryStateEnum::EMPTY => RunState::Created,
    }
}

/// Health from the list's status text ("Up 3 minutes (healthy)").
fn health_of_status(status: &str) -> Health {
    if status.contains("(healthy)") {
        Health::Healthy
    } else if status.contains("(unhealthy)") {
        Health::Unhealthy
    } else if status.contains("(health: starting)") {
        Health::Starting
    } else {
        Health::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_compare() {
        assert_eq!(parse_api("1.41"), Some((1, 41)));
        assert!(parse_api("1.40").unwrap_or((0, 0)) < MIN_API);
        assert!(parse_api("1.53").unwrap_or((0, 0)) >= MIN_API);
        assert_eq!(parse_api("x"), None);
    }

    #[test]
    fn frames_split_into_lines() {
        let v: Vec<String> = split_lines(b"a\r\nb\n").collect();
        assert_eq!(v, ["a", "b"]);
        assert_eq!(split_lines(b"partial").collect::<Vec<_>>(), ["partial"]);
    }

    #[test]
    fn podmans_absolute_archive_is_rebased_and_dockers_kept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let write = |name: &str, entries: &[(&str, tar::EntryType, Option<&str>)]| {
            let p = dir.path().join(name);
            let f = std::fs::File::create(&p).unwrap_or_else(|e| panic!("{e}"));
            let mut b = tar::Builder::new(f);
            for (path, typ, link) in entries {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(*typ);
                h.set_mode(0o644);
                let data: &[u8] = if *typ == tar::EntryType::Regular {
                    b"hi"
                } else {
                    b""
                };
                h.set_size(data.len() as u64);
                // Raw names: the builder's helpers refuse absolute paths.
                let raw = &mut h.as_old_mut().name;
                raw[..path.len()].copy_from_slice(path.as_bytes());
                if let Some(l) = link {
                    h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
                }
                h.set_cksum();
                b.append(&h, data).unwrap_or_else(|e| panic!("{e}"));
            }
            b.finish().unwrap_or_else(|e| panic!("{e}"));
            p
        };
        let names = |p: &Path| -> Vec<(String, String)> {
            let mut ar =
                tar::Archive::new(std::fs::File::open(p).unwrap_or_else(|e| panic!("{e}")));
            ar.entries()
                .unwrap_or_else(|e| panic!("{e}"))
                .map(|e| {
                    let e = e.unwrap_or_else(|e| panic!("{e}"));
                    let link = e
                        .link_name()
                        .ok()
                        .flatten()
                        .map(|l| l.display().to_string())
                        .unwrap_or_default();
                    (String::from_utf8_lossy(&e.path_bytes()).into_owned(), link)
                })
                .collect()
        };
        let podman = write(
            "podman.tar",
            &[
                ("/", tar::EntryType::Directory, None),
                ("/index.html", tar::EntryType::Regular, None),
                ("/same", tar::EntryType::Link, Some("/index.html")),
                ("/up", tar::EntryType::Symlink, Some("../etc")),
            ],
        );
        assert_eq!(rebase_archive(&podman, "www"), Ok(()));
        assert_eq!(
            names(&podman),
            [
                ("www/".to_owned(), String::new()),
                ("www/index.html".to_owned(), String::new()),
                ("www/same".to_owned(), "www/index.html".to_owned()),
                ("www/up".to_owned(), "../etc".to_owned()),
            ]
        );
        let docker = write(
            "docker.tar",
            &[
                ("www/", tar::EntryType::Directory, None),
                ("www/index.html", tar::EntryType::Regular, None),
            ],
        );
        let before = std::fs::read(&docker).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rebase_archive(&docker, "www"), Ok(()));
        assert_eq!(
            std::fs::read(&docker).unwrap_or_else(|e| panic!("{e}")),
            before
        );
    }

    #[test]
    fn a_copy_into_a_mounts_parent_goes_to_the_mount() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let src = dir.path().join("www.tar");
        {
            let f = std::fs::File::create(&src).unwrap_or_else(|e| panic!("{e}"));
            let mut b = tar::Builder::new(f);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o700);
            h.set_size(0);
            b.append_data(&mut h, "www/", std::io::empty())
                .unwrap_or_else(|e| panic!("{e}"));
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(2);
            b.append_data(&mut h, "www/sub/f", &b"hi"[..])
                .unwrap_or_else(|e| panic!("{e}"));
            b.finish().unwrap_or_else(|e| panic!("{e}"));
        }
        let tmp = dir.path().join("out.tar");
        let mounts = ["/nuvol-volumes/www".to_owned()];
        assert_eq!(
            into_mount(&src, &mounts, "/nuvol-volumes", &tmp).as_deref(),
            Some("/nuvol-volumes/www")
        );
        let mut ar = tar::Archive::new(std::fs::File::open(&tmp).unwrap_or_else(|e| panic!("{e}")));
        let got: Vec<(String, u32)> = ar
            .entries()
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| {
                let e = e.unwrap_or_else(|e| panic!("{e}"));
                let mode = e.header().mode().unwrap_or(0);
                (String::from_utf8_lossy(&e.path_bytes()).into_owned(), mode)
            })
            .collect();
        assert_eq!(got, [("./".to_owned(), 0o700), ("sub/f".to_owned(), 0o644)]);
        // No volume there: copied as it is.
        assert_eq!(into_mount(&src, &[], "/nuvol-volumes", &tmp), None);
        assert_eq!(into_mount(&src, &mounts, "/elsewhere", &tmp), None);
    }

    #[test]
    fn health_from_status_text() {
        assert_eq!(health_of_status("Up 2 seconds (healthy)"), Health::Healthy);
        assert_eq!(
            health_of_status("Up 1 second (health: starting)"),
            Health::Starting
        );
        assert_eq!(health_of_status("Exited (3) 1 second ago"), Health::None);
    }
}
