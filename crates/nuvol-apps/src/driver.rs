//! What the agent needs from a container engine, and what it sees of one.
//! [`crate::docker::Docker`] is the Docker Engine API (and Podman's
//! Docker-compatible socket) through bollard; tests of the reconciler use
//! plain values of these types.

use crate::error::AppError;
use crate::plan::{ContainerSpec, NetworkSpec, VolumeSpec};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
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
}
