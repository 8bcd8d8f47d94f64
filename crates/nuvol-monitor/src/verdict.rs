//! Whether a device is up, from what its owners saw, sans-I/O.
//!
//! Each owner reports its latest probe: when, and whether the device
//! answered (a ping reply or an SNMP response). A device is **down** only
//! when a strict majority of its owners (of all `k`, not of those that
//! answered) have a fresh probe that got no answer: one monitor with a
//! broken uplink cannot mark the network's routers down. It is **up** when
//! it is not down and some owner has a fresh probe that was answered, and
//! **unknown** otherwise (no fresh probe yet, as right after a takeover).
//! A probe is fresh for `fresh_for` seconds (the component uses two
//! probe intervals).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    Up,
    Down,
    Unknown,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Up => "up",
            DeviceState::Down => "down",
            DeviceState::Unknown => "unknown",
        }
    }
}

/// One owner's latest probe of the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// When (seconds since the epoch); `None`: never probed.
    pub at: Option<u64>,
    /// The device answered (ping or SNMP).
    pub answered: bool,
}

/// The device's state from its `owners` owners' `reports` (one per owner
/// that could be asked; missing owners count as not fresh).
pub fn verdict(owners: usize, reports: &[Report], now: u64, fresh_for: u64) -> DeviceState {
    let fresh = |r: &&Report| r.at.is_some_and(|t| t <= now && now - t <= fresh_for);
    let down = reports.iter().filter(fresh).filter(|r| !r.answered).count();
    let up = reports.iter().filter(fresh).filter(|r| r.answered).count();
    if owners > 0 && down * 2 > owners {
        DeviceState::Down
    } else if up > 0 {
        DeviceState::Up
    } else {
        DeviceState::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(at: u64, answered: bool) -> Report {
        Report {
            at: Some(at),
            answered,
        }
    }

    #[test]
    fn down_needs_a_majority_of_all_owners() {
        let now = 1000;
        // k = 2: both must agree.
        assert_eq!(
            verdict(2, &[r(990, false), r(995, false)], now, 120),
            DeviceState::Down
        );
        assert_eq!(
            verdict(2, &[r(990, false), r(995, true)], now, 120),
            DeviceState::Up
        );
        assert_eq!(
            verdict(2, &[r(990, false)], now, 120),
            DeviceState::Unknown,
            "one of two"
        );
        // k = 3: two of three, whatever the third says.
        assert_eq!(
            verdict(3, &[r(990, false), r(991, false), r(992, true)], now, 120),
            DeviceState::Down
        );
        assert_eq!(
            verdict(3, &[r(990, false), r(991, true)], now, 120),
            DeviceState::Up
        );
        // k = 1: its one owner decides.
        assert_eq!(verdict(1, &[r(990, false)], now, 120), DeviceState::Down);
    }

    #[test]
    fn stale_or_missing_probes_do_not_count() {
        let now = 1000;
        let never = Report {
            at: None,
            answered: false,
        };
        assert_eq!(verdict(2, &[], now, 120), DeviceState::Unknown);
        assert_eq!(
            verdict(2, &[never.clone(), never], now, 120),
            DeviceState::Unknown
        );
        // A down report from long ago and a fresh one: not a majority.
        assert_eq!(
            verdict(2, &[r(100, false), r(990, false)], now, 120),
            DeviceState::Unknown
        );
        // An up report from the future (a skewed clock) is not fresh.
        assert_eq!(verdict(2, &[r(5000, true)], now, 120), DeviceState::Unknown);
        assert_eq!(verdict(0, &[r(990, false)], now, 120), DeviceState::Unknown);
        assert_eq!(DeviceState::Down.as_str(), "down");
    }
}
