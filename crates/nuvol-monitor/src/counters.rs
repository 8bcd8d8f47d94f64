//! Interface rates from two successive SNMP samples (sans-I/O).
//!
//! SNMP gives cumulative octet counters and the agent's sysUpTime (TimeTicks,
//! centiseconds). A rate is the counter delta over the uptime delta, which
//! is the agent's own clock: a late or retried answer does not distort it.
//!
//! - A counter below its previous value wrapped (modulo 2^32 for ifInOctets,
//!   2^64 for ifHCInOctets) if the wrapped delta is a plausible rate (at most
//!   [`RateTracker::max_bps`]); otherwise the counter was reset (a
//!   discontinuity, e.g. the interface was re-created).
//! - sysUpTime going backwards is a reboot (or its 497-day wrap; the same
//!   treatment is right for both: one interval is lost).
//! - A reboot, a reset or a change between 32- and 64-bit counters gives
//!   no rate for that interval, and the new sample becomes the base.
//! - The same uptime twice (a cached answer) gives no rate, and the older
//!   sample stays the base.

/// One interface's counters at one sysUpTime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// sysUpTime.0, centiseconds.
    pub uptime_cs: u32,
    pub in_octets: u64,
    pub out_octets: u64,
    /// 64-bit ifHC* counters (else the 32-bit ifInOctets/ifOutOctets).
    pub hc: bool,
}

/// Bits per second over one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub in_bps: f64,
    pub out_bps: f64,
    /// The interval's length by the agent's clock.
    pub interval_s: f64,
}

/// Why an interval has no rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoRate {
    #[error("first sample (no base yet)")]
    First,
    #[error("sysUpTime did not advance (same or cached answer)")]
    ZeroInterval,
    #[error("sysUpTime went backwards from {from} to {to} cs (the device rebooted)")]
    Reboot { from: u32, to: u32 },
    #[error("a counter went backwards by more than a wrap explains (counter reset)")]
    CounterReset,
    #[error("the counters changed between 32 and 64 bits")]
    WidthChanged,
}

/// 10 Gbit/s: above any link a community network's router has; a 32-bit
/// counter wraps in 3.4 s at this rate, so faster links need HC counters
/// anyway.
pub const DEFAULT_MAX_BPS: f64 = 10e9;

/// The octets between two readings of one counter, if the step is a
/// forward move or a plausible wrap.
fn counter_delta(prev: u64, next: u64, hc: bool) -> u64 {
    if next >= prev {
        next - prev
    } else if hc {
        // Modulo 2^64.
        next.wrapping_sub(prev)
    } else {
        // Modulo 2^32: both readings are 32-bit values.
        (next & 0xffff_ffff).wrapping_sub(prev & 0xffff_ffff) & 0xffff_ffff
    }
}

/// The rate from `prev` to `next`, or why there is none.
pub fn rate(prev: &Point, next: &Point, max_bps: f64) -> Result<Rate, NoRate> {
    if next.hc != prev.hc {
        return Err(NoRate::WidthChanged);
    }
    if next.uptime_cs < prev.uptime_cs {
        return Err(NoRate::Reboot {
            from: prev.uptime_cs,
            to: next.uptime_cs,
        });
    }
    if next.uptime_cs == prev.uptime_cs {
        return Err(NoRate::ZeroInterval);
    }
    let interval_s = f64::from(next.uptime_cs - prev.uptime_cs) / 100.0;
    let bps = |p: u64, n: u64| -> Result<f64, NoRate> {
        let bps = counter_delta(p, n, prev.hc) as f64 * 8.0 / interval_s;
        if n < p && bps > max_bps {
            return Err(NoRate::CounterReset);
        }
        Ok(bps)
    };
    Ok(Rate {
        in_bps: bps(prev.in_octets, next.in_octets)?,
        out_bps: bps(prev.out_octets, next.out_octets)?,
        interval_s,
    })
}

/// One interface's rate over successive samples: keeps the base.
#[derive(Debug, Clone)]
pub struct RateTracker {
    base: Option<Point>,
    /// The highest rate a wrap may imply (bits/s).
    pub max_bps: f64,
}

impl Default for RateTracker {
    fn default() -> Self {
        RateTracker {
            base: None,
            max_bps: DEFAULT_MAX_BPS,
        }
    }
}

impl RateTracker {
    /// The rate since the base; `next` becomes the base unless it is at
    /// the base's uptime.
    pub fn update(&mut self, next: Point) -> Result<Rate, NoRate> {
        let Some(base) = self.base else {
            self.base = Some(next);
            return Err(NoRate::First);
        };
        let r = rate(&base, &next, self.max_bps);
        if r != Err(NoRate::ZeroInterval) {
            self.base = Some(next);
        }
        r
    }

    pub fn base(&self) -> Option<&Point> {
        self.base.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(uptime_cs: u32, in_octets: u64, out_octets: u64, hc: bool) -> Point {
        Point {
            uptime_cs,
            in_octets,
            out_octets,
            hc,
        }
    }

    #[test]
    fn steady_rate() {
        // 10 s; 1 250 000 octets in = 1 Mbit/s, out 125 000 = 100 kbit/s.
        let r = rate(
            &p(1000, 5, 7, true),
            &p(2000, 1_250_005, 125_007, true),
            DEFAULT_MAX_BPS,
        )
        .unwrap();
        assert_eq!(r.interval_s, 10.0);
        assert_eq!(r.in_bps, 1e6);
        assert_eq!(r.out_bps, 1e5);
    }

    #[test]
    fn wrap_32_bit() {
        // 100 octets before the top, 900 after: 1000 octets in 1 s.
        let prev = p(100, u64::from(u32::MAX) - 99, 0, false);
        let next = p(200, 900, 10, false);
        let r = rate(&prev, &next, DEFAULT_MAX_BPS).unwrap();
        assert_eq!(r.in_bps, 8000.0);
        assert_eq!(r.out_bps, 80.0);
    }

    #[test]
    fn wrap_64_bit() {
        let prev = p(100, u64::MAX - 9, 0, true);
        let next = p(200, 10, 0, true);
        let r = rate(&prev, &next, DEFAULT_MAX_BPS).unwrap();
        assert_eq!(r.in_bps, 20.0 * 8.0);
    }

    #[test]
    fn implausible_wrap_is_a_reset() {
        // A 32-bit counter from 3e9 back to 1000 in 1 s: a wrap would be
        // ~1.3e9 octets in 1 s, ~10.4 Gbit/s, above the cap.
        let prev = p(100, 3_000_000_000, 0, false);
        let next = p(200, 1000, 0, false);
        assert_eq!(
            rate(&prev, &next, DEFAULT_MAX_BPS),
            Err(NoRate::CounterReset)
        );
        // The same step over 10 s is a plausible wrap (~1 Gbit/s).
        let next = p(1100, 1000, 0, false);
        assert!(rate(&prev, &next, DEFAULT_MAX_BPS).is_ok());
        // A 64-bit counter going back is never a plausible wrap.
        let prev = p(100, 1_000_000, 0, true);
        let next = p(100_000, 10, 0, true);
        assert_eq!(
            rate(&prev, &next, DEFAULT_MAX_BPS),
            Err(NoRate::CounterReset)
        );
    }

    #[test]
    fn reboot_and_zero_interval() {
        let prev = p(5000, 100, 100, true);
        assert_eq!(
            rate(&prev, &p(300, 10, 10, true), DEFAULT_MAX_BPS),
            Err(NoRate::Reboot {
                from: 5000,
                to: 300
            })
        );
        assert_eq!(
            rate(&prev, &p(5000, 200, 200, true), DEFAULT_MAX_BPS),
            Err(NoRate::ZeroInterval)
        );
        assert_eq!(
            rate(&prev, &p(6000, 200, 200, false), DEFAULT_MAX_BPS),
            Err(NoRate::WidthChanged)
        );
    }

    #[test]
    fn tracker_rebases() {
        let mut t = RateTracker::default();
        assert_eq!(t.update(p(100, 0, 0, true)), Err(NoRate::First));
        assert_eq!(t.update(p(200, 125, 0, true)).unwrap().in_bps, 1000.0);
        // Same uptime: no rate, the base stays.
        assert_eq!(t.update(p(200, 999, 0, true)), Err(NoRate::ZeroInterval));
        assert_eq!(t.base().unwrap().in_octets, 125);
        // Reboot: no rate, the new sample is the base.
        assert!(matches!(
            t.update(p(50, 10, 0, true)),
            Err(NoRate::Reboot { .. })
        ));
        assert_eq!(t.base().unwrap().uptime_cs, 50);
        assert_eq!(t.update(p(150, 135, 0, true)).unwrap().in_bps, 1000.0);
        // Counter reset: no rate, then rates from the new base.
        assert_eq!(t.update(p(250, 5, 0, true)), Err(NoRate::CounterReset));
        assert_eq!(t.update(p(350, 130, 0, true)).unwrap().in_bps, 1000.0);
    }
}
