//! Replicated folders with Syncthing, driven by nuvol.
//!
//! With `[sync] enable = true` the agent runs the node's Syncthing as its
//! child (or attaches to one already running), configures it over its
//! REST API and keeps the folders of `[sync] folders` shared among their
//! nodes:
//!
//! - [`settings`]: the `[sync]` section and its folder list;
//! - [`plan`]: the sans-I/O planner, from this node's device, the members'
//!   `sync` tags (device id and port), the folder specs and modes and
//!   Syncthing's current config, to the config to write (or none);
//! - [`client`]: the REST calls; [`runner`]: `syncthing serve` as a child;
//! - [`component`]: the component ([`Sync`]), `GET /v1/sync`, the
//!   [`SyncHandle`] service (status, a folder's mode on this node).

pub mod client;
pub mod component;
pub mod error;
pub mod plan;
pub mod runner;
pub mod settings;

pub use component::{FolderStatus, Sync, SyncHandle, SyncStatus, SyncthingStatus};
pub use error::SyncError;
pub use plan::Mode;
pub use settings::{FolderSpec, Folders, SyncSettings};
