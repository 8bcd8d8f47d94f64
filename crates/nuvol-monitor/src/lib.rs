//! Decentralised network monitoring (issue 12), DIMON's job without a
//! database: membership is already gossiped, so every monitor computes the
//! same owners for every device.
//!
//! - [`assign`]: sans-I/O. Which `k` monitors own a device (weighted
//!   rendezvous hashing with a specified hash), and which monitors count
//!   ([`assign::Eligibility`]: only after being alive for a while, so a
//!   flapping node causes no churn).
//! - [`devices`]: the device set, from Guifi.net's CNML or a TOML list;
//!   devices in the states snpservices skips are left out.
//! - [`counters`]: sans-I/O. Interface rates (bits/s) from two SNMP
//!   samples: counter wraps, reboots, resets.
//! - [`snmp`]: an async SNMP v1/v2c client reading a device's uptime and
//!   interface counters (64-bit with a 32-bit fallback).
//! - [`ping`]: ICMP echo from one shared socket: loss and RTTs.

pub mod assign;
pub mod counters;
pub mod devices;
pub mod ping;
pub mod snmp;
