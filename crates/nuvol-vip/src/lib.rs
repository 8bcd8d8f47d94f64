//! Floating IPs: VRRPv3 for IPv4 (RFC 5798).
//!
//! So far only [`packet`], the advertisement's bytes (sans-I/O, fuzzed by
//! the `vrrp_packet` target, checked against keepalived 2.2.7's captures).
//! The router's state machine, the I/O layer and the agent component are
//! still to come (issue 11); nothing in the binary uses this crate yet.

pub mod packet;
