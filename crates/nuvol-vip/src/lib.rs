//! Floating IPs: VRRPv3 for IPv4 (RFC 5798).
//!
//! - [`packet`]: the advertisement's bytes (sans-I/O, fuzzed by the
//!   `vrrp_packet` target, checked against keepalived 2.2.7's captures);
//! - [`router`]: one virtual router's state machine (sans-I/O, driven by
//!   adverts, a clock and the node's health; simulated in `tests/sim.rs`);
//! - [`health`]: whether this node may claim (tracked health, quorum);
//! - [`inuse`]: whether another host already holds the VIP (ARP probes
//!   before the first claim);
//! - [`config`]: the `[[vip]]` entries;
//! - [`net`]: the raw socket, netlink and gratuitous ARPs;
//! - [`component`]: the agent component `Vips` and `GET /v1/vips`.

pub mod component;
pub mod config;
pub mod health;
pub mod inuse;
pub mod net;
pub mod packet;
pub mod router;

pub use component::{VipStatus, Vips, VipsHandle};
