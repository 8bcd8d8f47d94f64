//! Why the swarm does not work on this node; every variant names its cause.

#[derive(Debug, Clone, thiserror::Error)]
pub enum SwarmError {
    #[error("cannot reach the Docker daemon at {path}: {message}")]
    Unreachable { path: String, message: String },
    #[error("Docker daemon at {path}: {message}")]
    Api { path: String, message: String },
    #[error("cannot initialise a swarm: {0}")]
    Init(String),
    #[error("cannot join the swarm at {addrs}: {message}")]
    Join { addrs: String, message: String },
    #[error("[swarm] needs an encrypted cluster (gossip key) to share join tokens")]
    NotEncrypted,
    #[error("no manager answered the join token query ({0})")]
    NoToken(String),
    #[error("cluster: {0}")]
    Cluster(String),
}
