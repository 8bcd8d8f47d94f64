//! What the agent needs from a container engine, and what it sees of one.
//! [`crate::docker::Docker`] is the Docker Engine API (and Podman's
//! Docker-compatible socket) through bollard; tests of the reconciler use
//! plain values of these types.

use crate::error::AppError;
use crate::plan::{ContainerSpec, Driver, NetworkSpec, VolumeSpec};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A container's run state, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
    Removing,
}

/// The engine's health check result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No health check.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// One container the engine has that carries the agent's labels.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Observed {
    pub id: String,
    pub name: String,
    /// `nuvol.app`.
    pub app: String,
    /// `nuvol.service`.
    pub service: String,
    /// `nuvol.node`: the agent that created it (agents sharing one engine
    /// leave each other's containers alone).
    pub node: String,
    /// `nuvol.spec`: the hash of the spec it was created from.
    pub spec: String,
    pub state: RunState,
    pub health: Health,
    /// When exited.
    pub exit_code: Option<i64>,
    /// The engine's own restarts of it.
    pub restart_count: u64,
    /// The image's id (`sha256:...`) it runs.
    pub image_id: String,
}

/// Log lines of a container, oldest first.
pub type LogStream =
    Pin<Box<dyn futures_core::Stream<Item = Result<LogLine, AppError>> + Send + 'static>>;

/// One line (or chunk) a container wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stderr: bool,
    pub text: String,
}

/// A boxed future of the driver's calls (the trait stays object-safe).
pub type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send + 'a>>;

/// A container engine. Every call names its failure in an [`AppError`]:
/// [`AppError::Docker`] for the engine refusing or being unreachable,
/// [`AppError::Image`] for a missing image, [`AppError::TooOld`] for an
/// engine older than supported.
pub trait Engine: Send + Sync + 'static {
    /// The engine's version and API version, checked to be supported.
    fn version(&self) -> Call<'_, (String, String)>;
    /// Every container with the `nuvol.app` label (running or not).
    fn list(&self) -> Call<'_, Vec<Observed>>;
    /// The id of `image` if this node has it.
    fn image_id<'a>(&'a self, image: &'a str) -> Call<'a, Option<String>>;
    /// Create the network unless it exists (labelled with the app).
    fn ensure_network<'a>(&'a self, app: &'a str, net: &'a NetworkSpec) -> Call<'a, ()>;
    /// Create the volume unless it exists (labelled with the app).
    fn ensure_volume<'a>(&'a self, app: &'a str, vol: &'a VolumeSpec) -> Call<'a, ()>;
    /// Create (not start) a container from `spec`, labelled with the app,
    /// the service, the spec's hash and the node; `app_dir` is where
    /// `./` bind mounts live. Returns its id.
    fn create<'a>(
        &'a self,
        app: &'a str,
        spec: &'a ContainerSpec,
        app_dir: &'a Path,
    ) -> Call<'a, String>;
    fn start<'a>(&'a self, id: &'a str) -> Call<'a, ()>;
    /// Stop, waiting up to `timeout` before the engine kills it.
    fn stop<'a>(&'a self, id: &'a str, timeout: Duration) -> Call<'a, ()>;
    fn restart<'a>(&'a self, id: &'a str, timeout: Duration) -> Call<'a, ()>;
    fn pause<'a>(&'a self, id: &'a str) -> Call<'a, ()>;
    fn unpause<'a>(&'a self, id: &'a str) -> Call<'a, ()>;
    /// Remove a container (forced: a running one is killed first). A
    /// container already gone is not an error.
    fn remove<'a>(&'a self, id: &'a str) -> Call<'a, ()>;
    /// Remove a volume, or a network; one already gone is not an error.
    fn remove_volume<'a>(&'a self, name: &'a str) -> Call<'a, ()>;
    fn remove_network<'a>(&'a self, name: &'a str) -> Call<'a, ()>;
    /// Volumes with the `nuvol.app` label of `app`.
    fn volumes<'a>(&'a self, app: &'a str) -> Call<'a, Vec<String>>;
    /// Networks with the `nuvol.app` label of `app`.
    fn networks<'a>(&'a self, app: &'a str) -> Call<'a, Vec<String>>;
    /// Pull `image` from its registry (an [`AppError::Image`] naming the
    /// cause when that fails: many nodes have no registry).
    fn pull<'a>(&'a self, image: &'a str) -> Call<'a, ()>;
    /// Write a tar archive of `path` inside container `id` (running or
    /// stopped; mounted volumes included) to the file `dest`, streamed.
    fn copy_out<'a>(&'a self, id: &'a str, path: &'a str, dest: &'a Path) -> Call<'a, ()>;
    /// Unpack the tar archive in file `src` into `path` inside container
    /// `id` (running or stopped), streamed.
    fn copy_in<'a>(&'a self, id: &'a str, path: &'a str, src: &'a Path) -> Call<'a, ()>;
    /// The last `tail` lines, then (with `follow`) new ones as they come.
    fn logs<'a>(&'a self, id: &'a str, tail: usize, follow: bool) -> Call<'a, LogStream>;
    /// The engine of one driver when this one routes between several
    /// ([`Router`]); None: this engine is the only one.
    fn part(&self, _driver: Driver) -> Option<&dyn Engine> {
        None
    }
    /// What the engine has to say about container `id` besides its state
    /// (a process running without the limits it asked for, one the kernel
    /// killed for memory).
    fn notes(&self, _id: &str) -> Vec<String> {
        Vec::new()
    }
}

/// The Docker engine (once it is reached) and the process engine behind
/// one [`Engine`]: calls go by the id (`proc-...`), the image
/// (`process:...`) or the volume's directory; `list` merges both. The
/// manager lists and acts on each part on its own ([`Engine::part`]), so
/// a Docker daemon that is down or absent does not stop process apps.
pub struct Router {
    docker: DockerSlot,
    processes: crate::process::Processes,
}

/// The Docker engine once connected; until then every call says why
/// there is none.
#[derive(Default)]
pub struct DockerSlot {
    engine: std::sync::RwLock<Option<Arc<dyn Engine>>>,
    why: std::sync::RwLock<String>,
}

impl DockerSlot {
    fn get(&self) -> Result<Arc<dyn Engine>, AppError> {
        if let Some(e) = self.engine.read().ok().and_then(|g| g.clone()) {
            return Ok(e);
        }
        let why = self.why.read().map(|g| g.clone()).unwrap_or_default();
        Err(AppError::Docker(if why.is_empty() {
            "no container engine yet".into()
        } else {
            why
        }))
    }
}

impl Router {
    pub fn new(processes: crate::process::Processes) -> Router {
        Router {
            docker: DockerSlot::default(),
            processes,
        }
    }

    /// The Docker engine, connected.
    pub fn set_docker(&self, docker: Arc<dyn Engine>) {
        if let Ok(mut g) = self.docker.engine.write() {
            *g = Some(docker);
        }
    }

    /// Why Docker is not there (its calls' errors say it).
    pub fn set_docker_missing(&self, why: String) {
        if let Ok(mut g) = self.docker.why.write() {
            *g = why;
        }
    }

    pub fn has_docker(&self) -> bool {
        self.docker.engine.read().is_ok_and(|g| g.is_some())
    }

    pub fn processes(&self) -> &crate::process::Processes {
        &self.processes
    }

    fn by_id(&self, id: &str) -> &dyn Engine {
        if id.starts_with(crate::process::ID_PREFIX) {
            &self.processes
        } else {
            &self.docker
        }
    }

    fn by_image(&self, image: &str) -> &dyn Engine {
        if image.starts_with(crate::process::IMAGE_PREFIX) {
            &self.processes
        } else {
            &self.docker
        }
    }
}

/// Each call of the slot: the connected engine's, or the error.
macro_rules! slot {
    ($self:ident, |$e:ident| $call:expr) => {{
        let got = $self.get();
        Box::pin(async move {
            let $e = got?;
            $call.await
        })
    }};
}

impl Engine for DockerSlot {
    fn version(&self) -> Call<'_, (String, String)> {
        slot!(self, |e| e.version())
    }
    fn list(&self) -> Call<'_, Vec<Observed>> {
        slot!(self, |e| e.list())
    }
    fn image_id<'a>(&'a self, image: &'a str) -> Call<'a, Option<String>> {
        slot!(self, |e| e.image_id(image))
    }
    fn ensure_network<'a>(&'a self, app: &'a str, net: &'a NetworkSpec) -> Call<'a, ()> {
        slot!(self, |e| e.ensure_network(app, net))
    }
    fn ensure_volume<'a>(&'a self, app: &'a str, vol: &'a VolumeSpec) -> Call<'a, ()> {
        slot!(self, |e| e.ensure_volume(app, vol))
    }
    fn create<'a>(
        &'a self,
        app: &'a str,
        spec: &'a ContainerSpec,
        app_dir: &'a Path,
    ) -> Call<'a, String> {
        slot!(self, |e| e.create(app, spec, app_dir))
    }
    fn start<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        slot!(self, |e| e.start(id))
    }
    fn stop<'a>(&'a self, id: &'a str, timeout: Duration) -> Call<'a, ()> {
        slot!(self, |e| e.stop(id, timeout))
    }
    fn restart<'a>(&'a self, id: &'a str, timeout: Duration) -> Call<'a, ()> {
        slot!(self, |e| e.restart(id, timeout))
    }
    fn pause<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        slot!(self, |e| e.pause(id))
    }
    fn unpause<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        slot!(self, |e| e.unpause(id))
    }
    fn remove<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        slot!(self, |e| e.remove(id))
    }
    fn remove_volume<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        slot!(self, |e| e.remove_volume(name))
    }
    fn remove_network<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        slot!(self, |e| e.remove_network(name))
    }
    fn volumes<'a>(&'a self, app: &'a str) -> Call<'a, Vec<String>> {
        slot!(self, |e| e.volumes(app))
    }
    fn networks<'a>(&'a self, app: &'a str) -> Call<'a, Vec<String>> {
        slot!(self, |e| e.networks(app))
    }
    fn pull<'a>(&'a self, image: &'a str) -> Call<'a, ()> {
        slot!(self, |e| e.pull(image))
    }
    fn copy_out<'a>(&'a self, id: &'a str, path: &'a str, dest: &'a Path) -> Call<'a, ()> {
        slot!(self, |e| e.copy_out(id, path, dest))
    }
    fn copy_in<'a>(&'a self, id: &'a str, path: &'a str, src: &'a Path) -> Call<'a, ()> {
        slot!(self, |e| e.copy_in(id, path, src))
    }
    fn logs<'a>(&'a self, id: &'a str, tail: usize, follow: bool) -> Call<'a, LogStream> {
        slot!(self, |e| e.logs(id, tail, follow))
    }
}

impl Engine for Router {
    fn version(&self) -> Call<'_, (String, String)> {
        self.docker.version()
    }
    fn list(&self) -> Call<'_, Vec<Observed>> {
        Box::pin(async move {
            let mut out = self.processes.list().await?;
            out.extend(self.docker.list().await?);
            Ok(out)
        })
    }
    fn image_id<'a>(&'a self, image: &'a str) -> Call<'a, Option<String>> {
        self.by_image(image).image_id(image)
    }
    fn ensure_network<'a>(&'a self, app: &'a str, net: &'a NetworkSpec) -> Call<'a, ()> {
        self.docker.ensure_network(app, net)
    }
    fn ensure_volume<'a>(&'a self, app: &'a str, vol: &'a VolumeSpec) -> Call<'a, ()> {
        self.docker.ensure_volume(app, vol)
    }
    fn create<'a>(
        &'a self,
        app: &'a str,
        spec: &'a ContainerSpec,
        app_dir: &'a Path,
    ) -> Call<'a, String> {
        self.by_image(&spec.image).create(app, spec, app_dir)
    }
    fn start<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        self.by_id(id).start(id)
    }
    fn stop<'a>(&'a self, id: &'a str, timeout: Duration) -> Call<'a, ()> {
        self.by_id(id).stop(id, timeout)
    }
    fn restart<'a>(&'a self, id: &'a str, timeout: Duration) -> Call<'a, ()> {
        self.by_id(id).restart(id, timeout)
    }
    fn pause<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        self.by_id(id).pause(id)
    }
    fn unpause<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        self.by_id(id).unpause(id)
    }
    fn remove<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        self.by_id(id).remove(id)
    }
    fn remove_volume<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        if self.processes.volume_dir(name).exists() {
            self.processes.remove_volume(name)
        } else {
            self.docker.remove_volume(name)
        }
    }
    fn remove_network<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        self.docker.remove_network(name)
    }
    fn volumes<'a>(&'a self, app: &'a str) -> Call<'a, Vec<String>> {
        Box::pin(async move {
            let mut out = self.processes.volumes(app).await?;
            out.extend(self.docker.volumes(app).await?);
            Ok(out)
        })
    }
    fn networks<'a>(&'a self, app: &'a str) -> Call<'a, Vec<String>> {
        self.docker.networks(app)
    }
    fn pull<'a>(&'a self, image: &'a str) -> Call<'a, ()> {
        self.by_image(image).pull(image)
    }
    fn copy_out<'a>(&'a self, id: &'a str, path: &'a str, dest: &'a Path) -> Call<'a, ()> {
        self.by_id(id).copy_out(id, path, dest)
    }
    fn copy_in<'a>(&'a self, id: &'a str, path: &'a str, src: &'a Path) -> Call<'a, ()> {
        self.by_id(id).copy_in(id, path, src)
    }
    fn logs<'a>(&'a self, id: &'a str, tail: usize, follow: bool) -> Call<'a, LogStream> {
        self.by_id(id).logs(id, tail, follow)
    }
    fn notes(&self, id: &str) -> Vec<String> {
        self.by_id(id).notes(id)
    }
    fn part(&self, driver: Driver) -> Option<&dyn Engine> {
        Some(match driver {
            Driver::Process => &self.processes,
            Driver::Docker => &self.docker,
        })
    }
}
