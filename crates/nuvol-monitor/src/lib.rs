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
//! - [`source`]: reading the CNML text from a file path or an http(s)
//!   URL, with a timeout and a size cap.
//! - [`counters`]: sans-I/O. Interface rates (bits/s) from two SNMP
//!   samples: counter wraps, reboots, resets.
//! - [`snmp`]: an async SNMP v1/v2c client reading a device's uptime and
//!   interface counters (64-bit with a 32-bit fallback).
//! - [`ping`]: ICMP echo from one shared socket: loss and RTTs.
//! - [`exchange`]: sans-I/O. Which device set wins when monitors hold
//!   different ones (the newest generation), and checking a fetched one.
//! - [`rings`]: sans-I/O. RRD-like fixed-size rings of samples (a day of
//!   5-minute points, a week of 30-minute, a month of 2-hour, a year of
//!   daily) and their binary record.
//! - [`probe`]: one probe (ping and SNMP at once), and what a monitor keeps
//!   of a device it owns (latest sample, counts, rates, open ring points).
//! - [`store`]: the rings on disk (redb), rows keyed time-major.
//! - [`service`]: answering for any device from any node by asking its
//!   owners; [`MonitorHandle`] for the routes and the dashboard.
//! - [`schedule`]: sans-I/O. When each owned device is probed: a new
//!   owner at once, then every interval, missed rounds skipped.
//! - [`verdict`]: sans-I/O. A device is down only when a majority of its
//!   owners' fresh probes got no answer.
//! - [`view`]: the JSON of the device list and a device's samples, as the
//!   API, the CLI and the dashboard show them.
//! - [`settings`]: the `[monitor]` section; [`component`]: the component
//!   ([`MonitorComponent`]), its `monitor` tag and `GET /v1/monitor`.

pub mod assign;
pub mod component;
pub mod counters;
pub mod devices;
pub mod exchange;
pub mod ping;
pub mod probe;
pub mod rings;
pub mod schedule;
pub mod service;
pub mod settings;
pub mod snmp;
pub mod source;
pub mod store;
pub mod verdict;
pub mod view;

pub use component::{MonitorComponent, MonitorStatus};
pub use service::MonitorHandle;
pub use settings::MonitorSettings;
