//! Is the VIP already used by a host that is not a VRRP router of this
//! virtual router? Decided before the router's first claim, from ARP
//! probes (RFC 5227) and the adverts heard meanwhile; sans-I/O, driven by
//! probe answers, "a master is known" and a clock.
//!
//! - A probe nobody answers: the address is free; this check is over.
//! - An answer while a master of this VRID is heard: that master holds the
//!   VIP, as VRRP means it to; over.
//! - An answer and no advert within a master-down interval: another host
//!   holds the address (a static address, a DHCP lease): this router holds
//!   back (Fault, with the host's MAC in the reason) and probes again every
//!   few seconds until the address is free or a master shows up.
//!
//! While the check runs the router holds back too, so it cannot claim an
//! address that turns out to be taken.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How often a taken address is probed again.
pub const REPROBE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// A probe is out; `mac` is set when an earlier one found a host.
    Probing {
        mac: Option<[u8; 6]>,
    },
    /// Answered by `mac`: waiting for an advert until `until`.
    Answered {
        mac: [u8; 6],
        until: Instant,
    },
    /// Taken by `mac`; the next probe at `next`.
    Taken {
        mac: [u8; 6],
        next: Instant,
    },
    Free,
}

/// The check for one VIP.
#[derive(Debug)]
pub struct UseCheck {
    address: Ipv4Addr,
    vrid: u8,
    master_down: Duration,
    phase: Phase,
}

impl UseCheck {
    /// A check whose first probe the caller sends now.
    pub fn new(address: Ipv4Addr, vrid: u8, master_down: Duration) -> UseCheck {
        UseCheck {
            address,
            vrid,
            master_down,
            phase: Phase::Probing { mac: None },
        }
    }

    /// Why the router must hold back, while it must.
    pub fn fault(&self) -> Option<String> {
        match &self.phase {
            Phase::Free => None,
            Phase::Probing { mac: Some(mac) } | Phase::Taken { mac, .. } => Some(format!(
                "{} is already in use by {} (a host that sends no VRRP adverts for VRID {})",
                self.address,
                crate::net::format_mac(*mac),
                self.vrid
            )),
            Phase::Probing { mac: None } | Phase::Answered { .. } => Some(format!(
                "checking whether {} is already in use (ARP probe)",
                self.address
            )),
        }
    }

    /// Whether the check is over (the address is free or VRRP's).
    pub fn done(&self) -> bool {
        self.phase == Phase::Free
    }

    /// A probe's outcome: the MAC of a host that answered, or `None`. A
    /// probe that could not be sent counts as unanswered: the check must
    /// not keep a VIP down for good on an interface where raw frames fail
    /// (the error is logged by the caller).
    pub fn on_probe(&mut self, now: Instant, answer: Option<[u8; 6]>, master_known: bool) {
        self.phase = match (answer, &self.phase) {
            (None, _) => Phase::Free,
            (Some(_), _) if master_known => Phase::Free,
            // Already seen as taken: no second wait for adverts.
            (Some(mac), Phase::Probing { mac: Some(_) }) => Phase::Taken {
                mac,
                next: now + REPROBE_EVERY,
            },
            (Some(mac), _) => Phase::Answered {
                mac,
                until: now + self.master_down,
            },
        };
    }

    /// Advance the clock. `true` when the caller must send a probe now
    /// (and report it with [`UseCheck::on_probe`]).
    pub fn tick(&mut self, now: Instant, master_known: bool) -> bool {
        match self.phase.clone() {
            Phase::Free | Phase::Probing { .. } => false,
            Phase::Answered { .. } | Phase::Taken { .. } if master_known => {
                self.phase = Phase::Free;
                false
            }
            Phase::Answered { mac, until } => {
                if now >= until {
                    self.phase = Phase::Taken {
                        mac,
                        next: now + REPROBE_EVERY,
                    };
                }
                false
            }
            Phase::Taken { mac, next } => {
                if now >= next {
                    self.phase = Phase::Probing { mac: Some(mac) };
                    return true;
                }
                false
            }
        }
    }

    /// When [`UseCheck::tick`] has something to do next.
    pub fn next_tick(&self) -> Option<Instant> {
        match self.phase {
            Phase::Answered { until, .. } => Some(until),
            Phase::Taken { next, .. } => Some(next),
            Phase::Free | Phase::Probing { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];
    const DOWN: Duration = Duration::from_secs(3);

    #[test]
    fn an_unanswered_probe_frees_the_address() {
        let t = Instant::now();
        let mut c = UseCheck::new(VIP, 51, DOWN);
        assert!(c
            .fault()
            .unwrap()
            .starts_with("checking whether 10.0.0.100"));
        c.on_probe(t, None, false);
        assert!(c.done());
        assert_eq!(c.fault(), None);
        assert!(!c.tick(t + Duration::from_secs(60), false));
    }

    #[test]
    fn an_answer_from_the_vrrp_master_is_no_conflict() {
        let t = Instant::now();
        // The master's advert came before the answer.
        let mut c = UseCheck::new(VIP, 51, DOWN);
        c.on_probe(t, Some(MAC), true);
        assert!(c.done());
        // Or within the master-down interval after it.
        let mut c = UseCheck::new(VIP, 51, DOWN);
        c.on_probe(t, Some(MAC), false);
        assert!(!c.done());
        assert!(!c.tick(t + Duration::from_secs(1), false));
        assert!(c.fault().unwrap().starts_with("checking"));
        assert!(!c.tick(t + Duration::from_secs(2), true));
        assert!(c.done());
    }

    #[test]
    fn a_silent_holder_keeps_the_router_back_until_it_lets_go() {
        let t = Instant::now();
        let mut c = UseCheck::new(VIP, 51, DOWN);
        c.on_probe(t, Some(MAC), false);
        assert_eq!(c.next_tick(), Some(t + DOWN));
        assert!(!c.tick(t + DOWN, false));
        let f = c.fault().unwrap();
        assert_eq!(
            f,
            "10.0.0.100 is already in use by 02:00:00:00:00:07 (a host that sends no VRRP adverts for VRID 51)"
        );
        // Probed again every few seconds; still taken: no new wait.
        let again = t + DOWN + REPROBE_EVERY;
        assert!(!c.tick(again - Duration::from_millis(1), false));
        assert!(c.tick(again, false));
        assert_eq!(c.fault().unwrap(), f, "the reason stays while probing");
        assert_eq!(c.next_tick(), None);
        c.on_probe(again, Some(MAC), false);
        assert_eq!(c.next_tick(), Some(again + REPROBE_EVERY));
        assert_eq!(c.fault().unwrap(), f);
        // The host lets go.
        assert!(c.tick(again + REPROBE_EVERY, false));
        c.on_probe(again + REPROBE_EVERY, None, false);
        assert!(c.done());
    }

    #[test]
    fn a_master_appearing_ends_a_taken_state() {
        let t = Instant::now();
        let mut c = UseCheck::new(VIP, 51, DOWN);
        c.on_probe(t, Some(MAC), false);
        c.tick(t + DOWN, false);
        assert!(c.fault().is_some());
        c.tick(t + DOWN + Duration::from_secs(1), true);
        assert!(c.done());
    }
}
