//! Sans-I/O gossip core: memberlist-compatible SWIM with Lifeguard, and the
//! Serf layer on top (member status, tags, user events, queries, keys).
//!
//! The core is driven by three kinds of input — [`Gossip::handle_packet`],
//! stream messages ([`Gossip::handle_stream`], push/pull replies) and
//! [`Gossip::handle_timeout`] — each with the current time as an argument.
//! What it wants done comes out of [`Gossip::drain_outputs`].

pub mod broadcast;
pub mod coalesce;
pub mod config;
pub mod coordinate;
mod core;
mod serf;
mod swim;
pub mod types;

pub use crate::core::{Gossip, GossipError, State, StreamCodec};
pub use crate::serf::encode_meta;
pub use config::{Config, Profile};
pub use types::*;
