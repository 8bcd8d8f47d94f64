//! Docker Swarm, formed and kept by nuvol.
//!
//! With `[swarm] enable = true` the agent drives the node's Docker Engine
//! through its API so that the swarm-enabled nodes of the cluster form one
//! Swarm:
//!
//! - [`settings`]: the `[swarm]` section;
//! - [`plan`]: the sans-I/O planner, from the members' `swarm` tags, this
//!   node's local Swarm state and (on the leader) the Swarm's node list, to
//!   one action: init, join, promote, demote, remove or nothing;
//! - [`engine`]: the Docker Engine calls (bollard);
//! - [`component`]: the component ([`Swarm`]), the `swarm` tag, the join
//!   token query, `GET /v1/swarm`, metrics, drain and leave on `nuvol leave`.

pub mod component;
pub mod engine;
pub mod error;
pub mod fence;
pub mod plan;
pub mod settings;

pub use component::{NodeRow, Swarm, SwarmHandle, SwarmStatus};
pub use error::SwarmError;
pub use settings::SwarmSettings;
