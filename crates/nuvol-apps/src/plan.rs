//! What an app is made of, in the engine's terms but independent of any
//! engine: the containers (one per Compose service), named volumes and
//! networks, with their engine names. A container carries its spec's hash
//! as a label, so a running one is known to match its definition or not.

use crate::error::AppError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

/// Labels the agent puts on what it creates (`nuvol.app`, ...); an app's
/// own labels may not use the prefix.
pub const LABEL_PREFIX: &str = "nuvol.";
/// The app a container, volume or network belongs to.
pub const LABEL_APP: &str = "nuvol.app";
/// The Compose service of a container.
pub const LABEL_SERVICE: &str = "nuvol.service";
/// The hash of the container's spec ([`ContainerSpec::hash`]).
pub const LABEL_SPEC: &str = "nuvol.spec";
/// The node (agent) that created it.
pub const LABEL_NODE: &str = "nuvol.node";

/// What runs an app's services (`x-nuvol.driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// Containers of the Docker Engine (or Podman).
    #[default]
    Docker,
    /// Programs installed on the host, supervised by the agent
    /// ([`crate::process`]).
    Process,
}

impl Driver {
    pub fn is_docker(&self) -> bool {
        *self == Driver::Docker
    }

    /// The driver of a container spec: a process service's `image` is
    /// `process:` and its program's absolute path.
    pub fn of(spec: &ContainerSpec) -> Driver {
        if spec.image.starts_with(crate::process::IMAGE_PREFIX) {
            Driver::Process
        } else {
            Driver::Docker
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Docker => "docker",
            Driver::Process => "process",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn parse(s: &str, at: &str) -> Result<Proto, AppError> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            p => Err(AppError::invalid(at, format!("protocol {p:?}: tcp or udp"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A host port mapped to a container port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    pub host: u16,
    pub container: u16,
    pub proto: Proto,
}

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountSource {
    /// A named volume (engine name).
    Volume(String),
    /// A path under the app's own directory (`./conf` in Compose).
    AppDir(String),
    /// An absolute host path.
    Host(String),
    /// A tmpfs, of this size in bytes if given.
    Tmpfs(Option<u64>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mount {
    pub source: MountSource,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    Always,
    /// At most this many restarts (0: no limit).
    OnFailure(u32),
    UnlessStopped,
}

impl RestartPolicy {
    /// Whether a container that failed (exited non-zero, or unhealthy) is
    /// restarted.
    pub fn restarts_failed(self) -> bool {
        !matches!(self, RestartPolicy::No)
    }
}

/// The container's own health check (Compose `healthcheck`), run by the
/// engine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HealthSpec {
    /// `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

/// One container of an app.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The Compose service.
    pub service: String,
    /// The engine's name (`nuvol-APP-SERVICE`).
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub ports: Vec<PortMap>,
    pub mounts: Vec<Mount>,
    /// Engine names of the networks it joins.
    pub networks: Vec<String>,
    pub aliases: Vec<String>,
    /// `host`, `none` or `bridge` instead of the app's networks.
    pub network_mode: Option<String>,
    pub restart: RestartPolicy,
    pub health: Option<HealthSpec>,
    pub labels: BTreeMap<String, String>,
    /// Services started before this one.
    pub depends_on: Vec<String>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<Duration>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub read_only: bool,
    pub init: bool,
    pub tty: bool,
    pub extra_hosts: Vec<String>,
}

impl ContainerSpec {
    /// A stable hash of the spec (FNV-1a over its JSON form): the
    /// `nuvol.spec` label. Stable across builds and platforms, unlike
    /// `DefaultHasher`, because it is stored on the engine's objects.
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// A named volume of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// Its name in the Compose file.
    pub key: String,
    /// The engine's name (`nuvol-APP-KEY`).
    pub name: String,
}

/// A network of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub key: String,
    pub name: String,
    pub internal: bool,
}

/// Everything an app is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPlan {
    pub app: String,
    pub containers: Vec<ContainerSpec>,
    pub volumes: Vec<VolumeSpec>,
    pub networks: Vec<NetworkSpec>,
    /// The main service.
    pub main: String,
}

impl AppPlan {
    /// Services in start order (each after what it depends on); a cycle
    /// is an error.
    pub fn order(&self) -> Result<Vec<&ContainerSpec>, AppError> {
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut out = Vec::new();
        while out.len() < self.containers.len() {
            let before = out.len();
            for c in &self.containers {
                if !done.contains(c.service.as_str())
                    && c.depends_on.iter().all(|d| done.contains(d.as_str()))
                {
                    done.insert(&c.service);
                    out.push(c);
                }
            }
            if out.len() == before {
                let left: Vec<&str> = self
                    .containers
                    .iter()
                    .filter(|c| !done.contains(c.service.as_str()))
                    .map(|c| c.service.as_str())
                    .collect();
                return Err(AppError::invalid(
                    "depends_on",
                    format!("a cycle among {}", left.join(", ")),
                ));
            }
        }
        Ok(out)
    }

    /// The host ports the app binds, with the service of each.
    pub fn host_ports(&self) -> Vec<(u16, Proto, &str)> {
        self.containers
            .iter()
            .flat_map(|c| {
                c.ports
                    .iter()
                    .map(move |p| (p.host, p.proto, c.service.as_str()))
            })
            .collect()
    }

    pub fn container(&self, service: &str) -> Option<&ContainerSpec> {
        self.containers.iter().find(|c| c.service == service)
    }

    /// The app's driver (all its services have the same one).
    pub fn driver(&self) -> Driver {
        self.containers.first().map_or(Driver::Docker, Driver::of)
    }
}
