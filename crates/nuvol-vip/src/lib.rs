//! Floating IPs: VRRPv3 for IPv4 (RFC 5798).
//!
//! - [`packet`]: the advertisement's bytes (sans-I/O, fuzzed by the
//!   `vrrp_packet` target, checked against keepalived 2.2.7's captures);
//! - [`health`]: whether this node may claim (tracked health, quorum);
//! - [`router`]: one virtual router's state machine (sans-I/O, driven by
//!   adverts, a clock and the node's health; simulated in `tests/sim.rs`).

pub mod health;
pub mod packet;
pub mod router;
