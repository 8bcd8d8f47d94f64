//! What the API, the CLI and the dashboard show of the devices: the JSON
//! of `GET /v1/monitor/devices` and `GET /v1/monitor/devices/{id}`, and of
//! the owner-to-owner requests behind them (application stream
//! [`crate::component::SAMPLES_STREAM`]).

use crate::verdict::DeviceState;
use serde::{Deserialize, Serialize};

/// One interface's reading in a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IfView {
    /// ifIndex.
    pub index: u32,
    /// ifOperStatus is up(1).
    pub oper_up: bool,
    /// ifHCInOctets (or ifInOctets when `hc` is false).
    pub in_octets: u64,
    pub out_octets: u64,
    /// 64-bit counters.
    pub hc: bool,
    /// Bits per second since the previous sample; `None` for the first
    /// sample, after a reboot or a counter reset.
    pub in_bps: Option<f64>,
    pub out_bps: Option<f64>,
}

/// Counted probe failures of one device at one monitor (since the agent
/// started, or since it started owning the device).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeCounts {
    pub probes: u64,
    /// Ping rounds with no reply at all.
    pub ping_silent: u64,
    /// Pings that could not be sent (no ICMP socket, unroutable).
    pub ping_errors: u64,
    /// SNMP requests with no answer (timeouts, wrong community).
    pub snmp_timeouts: u64,
    /// SNMP answers that made no sense (garbage, wrong types, errors).
    pub snmp_garbage: u64,
}

/// One monitor's latest sample of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The monitor that took it.
    pub monitor: String,
    /// When (seconds since the epoch).
    pub at: u64,
    /// The device answered (a ping reply or an SNMP response).
    pub answered: bool,
    /// Ping: average, minimum and maximum round trip, milliseconds.
    pub rtt_ms: Option<f64>,
    pub rtt_min_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    /// Ping: the share of echoes lost (0 to 1); `None` when no ping could
    /// be sent.
    pub loss: Option<f64>,
    pub sent: u16,
    pub received: u16,
    /// sysUpTime, seconds.
    pub uptime: Option<f64>,
    pub interfaces: Vec<IfView>,
    pub ping_error: Option<String>,
    pub snmp_error: Option<String>,
    pub counts: ProbeCounts,
}

impl Sample {
    /// Why this sample is not a clean one, for people.
    pub fn cause(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(e) = &self.ping_error {
            parts.push(format!("ping: {e}"));
        } else if self.sent > 0 && self.received == 0 {
            parts.push("ping: no reply".to_owned());
        }
        if let Some(e) = &self.snmp_error {
            parts.push(format!("SNMP: {e}"));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// One row of `GET /v1/monitor/devices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSummary {
    pub id: String,
    pub title: String,
    pub address: String,
    /// `up`, `down` (a majority of the owners' fresh probes got no
    /// answer) or `unknown`.
    pub state: DeviceState,
    /// The owners, best first.
    pub owners: Vec<String>,
    /// The newest sample's time (seconds since the epoch), of any owner.
    pub last_sample: Option<u64>,
    /// Why the device is not cleanly up (from the newest sample that was
    /// not clean), or why nothing is known.
    pub cause: Option<String>,
    /// Each owner's latest sample, without interfaces.
    pub reports: Vec<Sample>,
    /// Owners that could not be asked.
    pub unreachable_owners: Vec<String>,
}

/// One metric's points at one resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesView {
    pub monitor: String,
    /// `rtt_ms`, `loss`, `if.INDEX.in_bps`, `if.INDEX.out_bps`.
    pub metric: String,
    /// Seconds per point.
    pub step: u32,
    /// `[slot start, mean, min, max]`, oldest first, only slots with
    /// samples.
    pub points: Vec<[f64; 4]>,
}

/// `GET /v1/monitor/devices/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub summary: DeviceSummary,
    /// Each owner's latest sample, interfaces included.
    pub samples: Vec<Sample>,
    pub series: Vec<SeriesView>,
}
