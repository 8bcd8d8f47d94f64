//! The Docker Engine calls the swarm component makes (bollard, with the API
//! version negotiated down to the daemon's: Debian's 20.10 speaks 1.41).

use crate::error::SwarmError;
use crate::plan::{Local, Node, Role};
use bollard::models::{
    LocalNodeState, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState, Reachability,
    SwarmInitRequest, SwarmJoinRequest, SwarmSpec, SwarmSpecDispatcher, SwarmSpecRaft,
};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const CLIENT_TIMEOUT: u64 = 30;

/// The join tokens and the managers' addresses, as a manager answers the
/// token query.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tokens {
    pub worker_token: String,
    pub manager_token: String,
    /// Managers' Swarm addresses (IP:2377).
    pub addrs: Vec<String>,
}

/// A row of the Swarm's node list, for the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node: Node,
    pub hostname: String,
    pub addr: String,
    pub role: String,
    pub availability: String,
    pub state: String,
    pub leader: bool,
}

/// The local state with the managers this node knows of.
#[derive(Debug, Clone)]
pub struct LocalInfo {
    pub local: Local,
    pub node_addr: String,
    pub cluster_id: Option<String>,
}

pub struct Engine {
    api: bollard::Docker,
    path: String,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// The daemon's message for an API error, else the error's chain.
fn message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        e => chain(e),
    }
}

impl Engine {
    /// Connect to the daemon at `path` and negotiate the API version.
    pub async fn connect(path: &str) -> Result<Engine, SwarmError> {
        let unreachable = |message: String| SwarmError::Unreachable {
            path: path.to_owned(),
            message,
        };
        if !Path::new(path).exists() {
            return Err(unreachable(
                "no such socket (is Docker installed and running? set [swarm] docker)".into(),
            ));
        }
        let api =
            bollard::Docker::connect_with_unix(path, CLIENT_TIMEOUT, bollard::API_DEFAULT_VERSION)
                .map_err(|e| unreachable(message(&e)))?
                .negotiate_version()
                .await
                .map_err(|e| unreachable(message(&e)))?;
        Ok(Engine {
            api,
            path: path.to_owned(),
        })
    }

    fn api_err(&self, e: &bollard::errors::Error) -> SwarmError {
        match e {
            bollard::errors::Error::DockerResponseServerError { .. } => SwarmError::Api {
                path: self.path.clone(),
                message: message(e),
            },
            _ => SwarmError::Unreachable {
                path: self.path.clone(),
                message: message(e),
            },
        }
    }

    /// This node's Swarm state (`GET /info`).
    pub async fn local(&self) -> Result<LocalInfo, SwarmError> {
        let info = self.api.info().await.map_err(|e| self.api_err(&e))?;
        let sw = info.swarm.unwrap_or_default();
        let node_id = sw.node_id.clone().unwrap_or_default();
        let local = match sw.local_node_state {
            Some(LocalNodeState::ACTIVE) if !node_id.is_empty() => {
                let manager = sw.control_available.unwrap_or(false);
                let leader = if manager {
                    match self.api.inspect_node(&node_id).await {
                        Ok(n) => n.manager_status.and_then(|m| m.leader).unwrap_or(false),
                        Err(_) => false,
                    }
                } else {
                    false
                };
                Local::Active {
                    node_id,
                    manager,
                    leader,
                }
            }
            Some(LocalNodeState::PENDING) => Local::Pending,
            Some(LocalNodeState::ERROR) => Local::Error(
                sw.error
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "the engine reports a swarm error".into()),
            ),
            Some(LocalNodeState::LOCKED) => {
                Local::Error("the swarm is locked (docker swarm unlock)".into())
            }
            _ => Local::Inactive,
        };
        Ok(LocalInfo {
            local,
            node_addr: sw.node_addr.unwrap_or_default(),
            cluster_id: sw.cluster.and_then(|c| c.id),
        })
    }

    /// `POST /swarm/init` with the dispatcher heartbeat.
    pub async fn init(
        &self,
        advertise: &str,
        heartbeat: Duration,
        election_ticks: u32,
    ) -> Result<String, SwarmError> {
        let spec = SwarmSpec {
            dispatcher: Some(SwarmSpecDispatcher {
                heartbeat_period: Some(i64::try_from(heartbeat.as_nanos()).unwrap_or(i64::MAX)),
            }),
            raft: Some(SwarmSpecRaft {
                election_tick: Some(i64::from(election_ticks)),
                heartbeat_tick: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.api
            .init_swarm(SwarmInitRequest {
                listen_addr: Some("0.0.0.0:2377".into()),
                advertise_addr: Some(advertise.to_owned()),
                spec: Some(spec),
                ..Default::default()
            })
            .await
            .map_err(|e| SwarmError::Init(message(&e)))
    }

    /// `POST /swarm/join`.
    pub async fn join(&self, advertise: &str, t: &Tokens) -> Result<(), SwarmError> {
        self.api
            .join_swarm(SwarmJoinRequest {
                listen_addr: Some("0.0.0.0:2377".into()),
                advertise_addr: Some(advertise.to_owned()),
                remote_addrs: Some(t.addrs.clone()),
                join_token: Some(t.worker_token.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| SwarmError::Join {
                addrs: t.addrs.join(","),
                message: message(&e),
            })
    }

    /// The tokens and reachable managers' addresses (managers only).
    pub async fn tokens(&self) -> Result<Tokens, SwarmError> {
        let sw = self
            .api
            .inspect_swarm()
            .await
            .map_err(|e| self.api_err(&e))?;
        let t = sw.join_tokens.unwrap_or_default();
        let mut addrs: Vec<String> = self
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.node.role == Role::Manager && n.node.reachable)
            .filter_map(|n| (!n.addr.is_empty()).then_some(n.addr))
            .collect();
        addrs.sort();
        Ok(Tokens {
            worker_token: t.worker.unwrap_or_default(),
            manager_token: t.manager.unwrap_or_default(),
            addrs,
        })
    }

    /// `GET /nodes` (managers only).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, SwarmError> {
        let list = self
            .api
            .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
            .await
            .map_err(|e| self.api_err(&e))?;
        let mut out = Vec::new();
        for n in list {
            let Some(id) = n.id.clone() else { continue };
            let spec = n.spec.clone().unwrap_or_default();
            let role = match spec.role {
                Some(NodeSpecRoleEnum::MANAGER) => Role::Manager,
                _ => Role::Worker,
            };
            let st = n.status.clone().unwrap_or_default();
            let ms = n.manager_status.clone();
            let reachable = ms
                .as_ref()
                .and_then(|m| m.reachability)
                .is_some_and(|r| r == Reachability::REACHABLE);
            let ready = st.state == Some(NodeState::READY);
            let availability = spec.availability.map(|a| a.to_string()).unwrap_or_default();
            out.push(NodeInfo {
                node: Node {
                    id,
                    role,
                    active: spec.availability == Some(NodeSpecAvailabilityEnum::ACTIVE),
                    ready,
                    reachable,
                    stale: false,
                    marked: spec
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(crate::plan::LEADER_LABEL))
                        .is_some_and(|v| v == "true"),
                },
                hostname: n.description.and_then(|d| d.hostname).unwrap_or_default(),
                addr: ms
                    .as_ref()
                    .and_then(|m| m.addr.clone())
                    .or(st.addr.clone())
                    .unwrap_or_default(),
                role: match role {
                    Role::Manager => "manager".into(),
                    Role::Worker => "worker".into(),
                },
                availability,
                state: st.state.map(|s| s.to_string()).unwrap_or_default(),
                leader: ms.and_then(|m| m.leader).unwrap_or(false),
            });
        }
        Ok(out)
    }

    /// Set a node's role and/or availability (managers only).
    pub async fn update(
        &self,
        id: &str,
        role: Option<Role>,
        availability: Option<NodeSpecAvailabilityEnum>,
    ) -> Result<(), SwarmError> {
        self.modify(id, |spec| {
            if let Some(r) = role {
                spec.role = Some(match r {
                    Role::Manager => NodeSpecRoleEnum::MANAGER,
                    Role::Worker => NodeSpecRoleEnum::WORKER,
                });
            }
            if let Some(a) = availability {
                spec.availability = Some(a);
            }
        })
        .await
    }

    /// Set (`Some`) or remove a label of a node (managers only).
    pub async fn set_label(
        &self,
        id: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), SwarmError> {
        self.modify(id, |spec| {
            let labels = spec.labels.get_or_insert_with(HashMap::new);
            match value {
                Some(v) => {
                    labels.insert(key.to_owned(), v.to_owned());
                }
                None => {
                    labels.remove(key);
                }
            }
        })
        .await
    }

    /// Read a node's spec, change it, write it back at the version read.
    async fn modify(
        &self,
        id: &str,
        change: impl FnOnce(&mut bollard::models::NodeSpec),
    ) -> Result<(), SwarmError> {
        let n = self
            .api
            .inspect_node(id)
            .await
            .map_err(|e| self.api_err(&e))?;
        let version = n.version.and_then(|v| v.index).unwrap_or(0);
        let mut spec = n.spec.unwrap_or_default();
        change(&mut spec);
        self.api
            .update_node(
                id,
                spec,
                bollard::query_parameters::UpdateNodeOptions {
                    version: i64::try_from(version).unwrap_or(i64::MAX),
                },
            )
            .await
            .map_err(|e| self.api_err(&e))
    }

    /// `DELETE /nodes/ID` (managers only; the node must be down).
    pub async fn remove(&self, id: &str) -> Result<(), SwarmError> {
        self.api
            .delete_node(
                id,
                Some(bollard::query_parameters::DeleteNodeOptions { force: false }),
            )
            .await
            .map_err(|e| self.api_err(&e))
    }

    /// Tasks still running on node `id` (managers only).
    pub async fn running_tasks(&self, id: &str) -> Result<usize, SwarmError> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        filters.insert("node".into(), vec![id.to_owned()]);
        filters.insert("desired-state".into(), vec!["running".into()]);
        let tasks = self
            .api
            .list_tasks(Some(bollard::query_parameters::ListTasksOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| self.api_err(&e))?;
        Ok(tasks.len())
    }

    /// Swarm task containers running on this engine (a worker cannot list
    /// tasks; its containers carry `com.docker.swarm.task.id`).
    pub async fn local_task_containers(&self) -> Result<usize, SwarmError> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        filters.insert("label".into(), vec!["com.docker.swarm.task.id".into()]);
        filters.insert("status".into(), vec!["running".into()]);
        let list = self
            .api
            .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                all: false,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.api_err(&e))?;
        Ok(list.len())
    }

    /// `POST /swarm/leave`.
    pub async fn leave(&self, force: bool) -> Result<(), SwarmError> {
        self.api
            .leave_swarm(Some(bollard::query_parameters::LeaveSwarmOptions { force }))
            .await
            .map_err(|e| self.api_err(&e))
    }

    /// This daemon's running containers labelled `label=true` (copies of
    /// singleton services): (id, name).
    pub async fn running_labelled(&self, label: &str) -> Result<Vec<(String, String)>, SwarmError> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        filters.insert("label".into(), vec![format!("{label}=true")]);
        filters.insert("status".into(), vec!["running".into()]);
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::default()
            .all(false)
            .filters(&filters)
            .build();
        let found = self
            .api
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.api_err(&e))?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                let name = c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_else(|| id.clone());
                Some((id, name))
            })
            .collect())
    }

    /// `docker stop` with `timeout` before the kill; a container already
    /// stopped (304) or gone (404) is fine.
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<(), SwarmError> {
        let t = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let opts = bollard::query_parameters::StopContainerOptionsBuilder::default()
            .t(t)
            .build();
        match self.api.stop_container(id, Some(opts)).await {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            })
            | Ok(()) => Ok(()),
            Err(e) => Err(self.api_err(&e)),
        }
    }
}
