//! One virtual router (RFC 5798 section 6), sans-I/O.
//!
//! A [`Router`] is driven by the caller: received adverts
//! ([`Router::handle_advert`]), the clock ([`Router::handle_timeout`] at
//! [`Router::poll_timeout`]), the node's health ([`Router::set_fault`]) and
//! a graceful stop ([`Router::shutdown`]). It answers with [`Output`]s to
//! carry out ([`Router::poll_output`]): adverts to send (already encoded,
//! checksum included), the VIPs to add or remove, gratuitous ARP bursts,
//! state changes, and adverts it refused. It reads no clock and touches no
//! socket, so the simulations in `tests/sim.rs` run hundreds of seeded
//! scenarios with loss and partitions in milliseconds.
//!
//! Beyond the RFC (each one is what keepalived users ask for):
//! - **Fault**: a router whose node is unhealthy (a tracked app down, the
//!   node on the minority side of a partition) stops claiming: as master
//!   it sends a priority-0 advert so a backup takes over at once, removes
//!   the addresses, and does not take over until the fault clears.
//! - **Conflicts**: an advert for this VRID with a different interval or a
//!   different address set is a misconfigured peer or a foreign router on
//!   the same VRID. It is never followed or used to learn an interval
//!   ([`Output::Dropped`]); while such adverts keep coming from a peer
//!   that would win the election, the router is in Fault, so a clash
//!   cannot make two nodes hold the VIP.
//! - **Preempt delay**: a backup of higher priority accepts a lower master
//!   for `preempt_delay` after it starts or first sees that master.
//! - **Gratuitous ARPs**: a burst on takeover, a second burst later, an
//!   optional periodic refresh, and a new burst when a master hears another
//!   (lower) master: after a partition heals the LAN's caches point at the
//!   node that stays master (keepalived issues #2458, #2459).
//! - **Stale addresses**: [`Router::start`] first asks to remove the VIPs,
//!   left on the interface by a crashed agent, unless it is the owner.
//! - **Leaving Fault**: a router in Fault keeps listening, so when its
//!   fault clears its master-down timer runs from the last advert it heard
//!   (or from its start), not from the moment it recovered; it still waits
//!   at least one advert interval plus its skew, for a live master (one
//!   across a partition that just healed) to be heard. When the node
//!   running the app a VIP tracks dies, the node that starts the app next
//!   claims the VIP about one interval after the app turns healthy rather
//!   than three.

use crate::packet::{Advert, MAX_INTERVAL_CS, MULTICAST};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The priority of the address owner: it takes over at once.
pub const OWNER: u8 = 255;

/// How a router is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    pub vrid: u8,
    /// 1 to 255 (255: the address owner).
    pub priority: u8,
    /// 10 ms to 40.95 s, in steps of 10 ms.
    pub advert_interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// The virtual addresses (at least one).
    pub addresses: Vec<Ipv4Addr>,
    /// This node's primary address on the interface: the adverts' source,
    /// and the tie-breaker between equal priorities.
    pub local: Ipv4Addr,
    /// Empty: multicast to 224.0.0.18. Otherwise each advert goes to each
    /// peer.
    pub unicast_peers: Vec<Ipv4Addr>,
    pub garp: GarpConfig,
}

/// Gratuitous ARPs on takeover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarpConfig {
    /// ARPs per burst (per address).
    pub count: u32,
    /// A second burst this long after the first (`None`: no second one).
    pub second_delay: Option<Duration>,
    /// A burst every so often while master (`None`: no refresh).
    pub refresh: Option<Duration>,
}

impl Default for GarpConfig {
    /// keepalived's defaults: 5 ARPs, again 5 s later, no refresh.
    fn default() -> Self {
        GarpConfig {
            count: 5,
            second_delay: Some(Duration::from_secs(5)),
            refresh: None,
        }
    }
}

/// Why a [`RouterConfig`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterConfigError {
    #[error("vrid must be 1 to 255")]
    Vrid,
    #[error("priority must be 1 to 255 (0 is reserved for a master that stops)")]
    Priority,
    #[error("advert_interval must be 10ms to 40.95s in steps of 10ms")]
    Interval,
    #[error("a virtual router needs at least one address, and at most 255")]
    Addresses,
    #[error("{0} is both a virtual address and this node's own address")]
    LocalIsVirtual(Ipv4Addr),
    #[error("unicast peer {0} is not a unicast address")]
    Peer(Ipv4Addr),
}

impl RouterConfig {
    pub fn validate(&self) -> Result<(), RouterConfigError> {
        if self.vrid == 0 {
            return Err(RouterConfigError::Vrid);
        }
        if self.priority == 0 {
            return Err(RouterConfigError::Priority);
        }
        let ms = self.advert_interval.as_millis();
        if !(10..=u128::from(MAX_INTERVAL_CS) * 10).contains(&ms)
            || !self.advert_interval.as_nanos().is_multiple_of(10_000_000)
        {
            return Err(RouterConfigError::Interval);
        }
        if self.addresses.is_empty() || self.addresses.len() > 255 {
            return Err(RouterConfigError::Addresses);
        }
        if self.addresses.contains(&self.local) {
            return Err(RouterConfigError::LocalIsVirtual(self.local));
        }
        if let Some(p) = self.unicast_peers.iter().find(|p| {
            p.is_multicast() || p.is_broadcast() || p.is_unspecified() || **p == self.local
        }) {
            return Err(RouterConfigError::Peer(*p));
        }
        Ok(())
    }

    fn interval_cs(&self) -> u16 {
        // Validated: 1 to 4095.
        (self.advert_interval.as_millis() / 10) as u16
    }
}

/// RFC 5798's states, and Fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Init,
    Backup,
    Master,
    Fault,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Init => "init",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        }
    }
}

/// What the caller carries out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An advert (the VRRP message, checksummed for `to`) to send to `to`
    /// from the router's local address, TTL 255.
    Send {
        to: Ipv4Addr,
        bytes: Vec<u8>,
    },
    /// Put the virtual addresses on the interface.
    AddAddresses,
    /// Take them off (a no-op where they are absent).
    RemoveAddresses,
    /// `count` gratuitous ARPs for every virtual address.
    GratuitousArp {
        count: u32,
    },
    StateChanged {
        from: State,
        to: State,
    },
    /// A well-formed advert for this VRID that was not acted on; `reason`
    /// is a fixed label for metrics.
    Dropped {
        reason: &'static str,
        from: Ipv4Addr,
    },
}

/// Counters a status page shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub became_master: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
}

/// One virtual router.
#[derive(Debug)]
pub struct Router {
    cfg: RouterConfig,
    state: State,
    /// The interval learned from the master (RFC: Master_Adver_Interval).
    master_interval: Duration,
    master: Option<Ipv4Addr>,
    /// Backup: when the master is declared down.
    master_down_at: Option<Instant>,
    /// The last advert of a live master followed (Backup) or heard
    /// (Fault); cleared by its priority-0 advert.
    heard_at: Option<Instant>,
    /// Master: the next advert.
    advert_at: Option<Instant>,
    /// Master: the next gratuitous ARP burst (second burst or refresh).
    garp_at: Option<Instant>,
    /// The last burst caused by hearing another master.
    last_rival_garp: Option<Instant>,
    /// Preemption of a lower master is allowed from this instant.
    preempt_from: Option<Instant>,
    started_at: Option<Instant>,
    /// Why the router is in Fault, if the caller said so.
    fault: Option<String>,
    /// Until when a conflicting advert keeps the router in Fault.
    conflict_until: Option<Instant>,
    conflict: Option<String>,
    out: VecDeque<Output>,
    counters: Counters,
}

impl Router {
    pub fn new(cfg: RouterConfig) -> Result<Router, RouterConfigError> {
        cfg.validate()?;
        Ok(Router {
            master_interval: cfg.advert_interval,
            cfg,
            state: State::Init,
            master: None,
            master_down_at: None,
            heard_at: None,
            advert_at: None,
            garp_at: None,
            last_rival_garp: None,
            preempt_from: None,
            started_at: None,
            fault: None,
            conflict_until: None,
            conflict: None,
            out: VecDeque::new(),
            counters: Counters::default(),
        })
    }

    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }
    pub fn state(&self) -> State {
        self.state
    }
    /// The current master's address as seen from here (this node's own
    /// address when master).
    pub fn master(&self) -> Option<Ipv4Addr> {
        self.master
    }
    pub fn priority(&self) -> u8 {
        self.cfg.priority
    }
    pub fn counters(&self) -> Counters {
        self.counters
    }
    /// Why the router is in Fault (the caller's reason or a conflict).
    pub fn fault_reason(&self) -> Option<&str> {
        self.fault.as_deref().or(self.conflict.as_deref())
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The earliest instant [`Router::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.master_down_at,
            self.advert_at,
            self.garp_at,
            self.conflict_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn skew(&self) -> Duration {
        self.master_interval * (256 - u32::from(self.cfg.priority)) / 256
    }

    /// RFC 5798's Master_Down_Interval.
    pub fn master_down_interval(&self) -> Duration {
        self.master_interval * 3 + self.skew()
    }

    fn set_state(&mut self, to: State) {
        if self.state != to {
            self.out.push_back(Output::StateChanged {
                from: self.state,
                to,
            });
            self.state = to;
        }
    }

    fn faulty(&self) -> bool {
        self.fault.is_some() || self.conflict.is_some()
    }

    /// Start (RFC: the Startup event). Idempotent while running.
    pub fn start(&mut self, now: Instant) {
        if self.state != State::Init {
            return;
        }
        self.started_at = Some(now);
        self.preempt_from = Some(now + self.cfg.preempt_delay);
        if self.cfg.priority != OWNER {
            // A crashed agent may have left them; nobody else may hold
            // them while this router is not master.
            self.out.push_back(Output::RemoveAddresses);
        }
        if self.faulty() {
            self.set_state(State::Fault);
        } else if self.cfg.priority == OWNER {
            self.become_master(now);
        } else {
            self.become_backup(now, None);
        }
    }

    /// Graceful stop (RFC: the Shutdown event): a master sends a
    /// priority-0 advert, so a backup takes over after its skew time, and
    /// removes the addresses.
    pub fn shutdown(&mut self, _now: Instant) {
        if self.state == State::Master {
            self.send_advert(0);
            self.counters.priority_zero_sent += 1;
            self.out.push_back(Output::RemoveAddresses);
        }
        self.master_down_at = None;
        self.heard_at = None;
        self.advert_at = None;
        self.garp_at = None;
        self.conflict_until = None;
        self.master = None;
        self.set_state(State::Init);
    }

    /// The node's health: `Some(reason)` puts the router in Fault (it
    /// gives up the addresses at once), `None` lets it compete again.
    pub fn set_fault(&mut self, now: Instant, reason: Option<String>) {
        let was = self.faulty();
        self.fault = reason;
        self.refresh_fault(now, was);
    }

    fn refresh_fault(&mut self, now: Instant, was_faulty: bool) {
        let is = self.faulty();
        if self.state == State::Init || is == was_faulty {
            return;
        }
        if is {
            self.enter_fault();
        } else {
            self.leave_fault(now);
        }
    }

    /// Back from Fault: a backup whose master-down timer counts from the
    /// last advert heard while in Fault (or the start), but no earlier
    /// than one advert interval plus the skew from now (see the module's
    /// doc).
    fn leave_fault(&mut self, now: Instant) {
        self.become_backup(now, self.master);
        let listened_from = self.started_at.unwrap_or(now);
        let evidence = self
            .heard_at
            .map_or(listened_from, |h| h.max(listened_from));
        let earliest = now + self.master_interval + self.skew();
        let down = (evidence + self.master_down_interval()).max(earliest);
        self.master_down_at = Some(down);
    }

    fn enter_fault(&mut self) {
        if self.state == State::Master {
            self.send_advert(0);
            self.counters.priority_zero_sent += 1;
            self.out.push_back(Output::RemoveAddresses);
            self.master = None;
        }
        self.master_down_at = None;
        self.advert_at = None;
        self.garp_at = None;
        self.set_state(State::Fault);
    }

    fn become_backup(&mut self, now: Instant, master: Option<Ipv4Addr>) {
        let was_master = self.state == State::Master;
        self.advert_at = None;
        self.garp_at = None;
        self.master = master;
        self.master_down_at = Some(now + self.master_down_interval());
        if was_master {
            self.out.push_back(Output::RemoveAddresses);
        }
        self.set_state(State::Backup);
    }

    fn become_master(&mut self, now: Instant) {
        self.master_down_at = None;
        self.master_interval = self.cfg.advert_interval;
        self.master = Some(self.cfg.local);
        self.out.push_back(Output::AddAddresses);
        self.send_advert(self.cfg.priority);
        self.out.push_back(Output::GratuitousArp {
            count: self.cfg.garp.count,
        });
        self.advert_at = Some(now + self.cfg.advert_interval);
        self.garp_at = self
            .cfg
            .garp
            .second_delay
            .or(self.cfg.garp.refresh)
            .map(|d| now + d);
        self.counters.became_master += 1;
        self.set_state(State::Master);
    }

    fn send_advert(&mut self, priority: u8) {
        let advert = Advert {
            vrid: self.cfg.vrid,
            priority,
            interval_cs: self.cfg.interval_cs(),
            addresses: self.cfg.addresses.clone(),
        };
        let src = self.cfg.local;
        if self.cfg.unicast_peers.is_empty() {
            let bytes = advert.encode(src, MULTICAST);
            self.out.push_back(Output::Send {
                to: MULTICAST,
                bytes,
            });
        } else {
            for &to in &self.cfg.unicast_peers {
                let bytes = advert.encode(src, to);
                self.out.push_back(Output::Send { to, bytes });
            }
        }
        self.counters.adverts_sent += 1;
    }

    /// Timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.conflict_until.is_some_and(|t| t <= now) {
            self.conflict_until = None;
            let was = self.faulty();
            self.conflict = None;
            self.refresh_fault(now, was);
        }
        match self.state {
            State::Backup => {
                if self.master_down_at.is_some_and(|t| t <= now) {
                    self.become_master(now);
                }
            }
            State::Master => {
                if self.advert_at.is_some_and(|t| t <= now) {
                    self.send_advert(self.cfg.priority);
                    self.advert_at = Some(now + self.cfg.advert_interval);
                }
                if self.garp_at.is_some_and(|t| t <= now) {
                    self.out.push_back(Output::GratuitousArp {
                        count: self.cfg.garp.count,
                    });
                    self.garp_at = self.cfg.garp.refresh.map(|d| now + d);
                }
            }
            State::Init | State::Fault => {}
        }
    }

    /// An advert received from `src` (the IP source). The caller has
    /// decoded and checksummed it; adverts for other VRIDs are the
    /// caller's to route (or drop).
    pub fn handle_advert(&mut self, now: Instant, src: Ipv4Addr, advert: &Advert) {
        if advert.vrid != self.cfg.vrid {
            self.drop_advert("vrid", src);
            return;
        }
        if src == self.cfg.local {
            // Our own multicast looped back.
            return;
        }
        if self.state == State::Init {
            return;
        }
        self.counters.adverts_received += 1;
        if advert.priority == 0 {
            self.counters.priority_zero_received += 1;
        }
        // A peer that is configured differently, or a foreign router on
        // this VRID: never followed, and while it is heard this router
        // claims nothing (see the module's doc).
        let conflict = if advert.interval_cs != self.cfg.interval_cs() {
            Some((
                "interval_mismatch",
                format!(
                    "{src} advertises every {} ms on VRID {}, this router every {} ms",
                    u32::from(advert.interval_cs) * 10,
                    self.cfg.vrid,
                    self.cfg.advert_interval.as_millis()
                ),
            ))
        } else if !same_addresses(&advert.addresses, &self.cfg.addresses) {
            Some((
                "address_mismatch",
                format!(
                    "{src} advertises other addresses on VRID {} ({}): a VRID clash or a misconfigured peer",
                    self.cfg.vrid,
                    join(&advert.addresses)
                ),
            ))
        } else if advert.priority == OWNER && self.cfg.priority == OWNER {
            Some((
                "owner_conflict",
                format!("{src} also claims to own VRID {}", self.cfg.vrid),
            ))
        } else {
            None
        };
        if let Some((reason, message)) = conflict {
            self.drop_advert(reason, src);
            // Only a peer that would win the election keeps this router
            // from claiming: of two misconfigured routers the higher one
            // stays master and the lower one holds back, so they never
            // both claim (and never take turns).
            let would_win = advert.priority > self.cfg.priority
                || (advert.priority == self.cfg.priority && src > self.cfg.local);
            if !would_win {
                return;
            }
            let was = self.faulty();
            // Held for a master-down interval after the last such advert.
            self.conflict_until = Some(now + self.cfg.advert_interval * 4);
            self.conflict = Some(message);
            self.refresh_fault(now, was);
            return;
        }

        let interval = Duration::from_millis(u64::from(advert.interval_cs) * 10);
        match self.state {
            State::Init => {}
            State::Fault => {
                // Not competing, but still showing who is master, and
                // when it was last heard (for leaving Fault).
                if advert.priority != 0 {
                    self.master = Some(src);
                    self.heard_at = Some(now);
                } else if self.master == Some(src) {
                    self.master = None;
                    self.heard_at = None;
                }
            }
            State::Backup => {
                if advert.priority == 0 {
                    // The master stops: take over after the skew time only.
                    self.master_down_at = Some(now + self.skew());
                    if self.master == Some(src) {
                        self.master = None;
                        self.heard_at = None;
                    }
                    return;
                }
                let lower = advert.priority < self.cfg.priority;
                if !self.cfg.preempt || !lower {
                    self.follow(now, src, interval);
                    self.preempt_from = None;
                    return;
                }
                // A lower master: preempt once the delay has passed.
                let from = *self
                    .preempt_from
                    .get_or_insert(now + self.cfg.preempt_delay);
                if now < from {
                    self.follow(now, src, interval);
                } else {
                    // Discard: the master-down timer runs out and this
                    // router takes over.
                    self.master = Some(src);
                }
            }
            State::Master => {
                if advert.priority == 0 {
                    // Another master stopping: assert ourselves at once.
                    self.send_advert(self.cfg.priority);
                    self.advert_at = Some(now + self.cfg.advert_interval);
                    return;
                }
                let wins = advert.priority > self.cfg.priority
                    || (advert.priority == self.cfg.priority && src > self.cfg.local);
                if wins {
                    // One last advert, so that the winner learns that two
                    // masters met and refreshes the LAN's ARP caches,
                    // which may point here (it may never have heard this
                    // router before yielding: after a partition heals the
                    // first advert across decides).
                    self.send_advert(self.cfg.priority);
                    self.master_interval = interval;
                    self.become_backup(now, Some(src));
                } else {
                    // Two masters (a healed partition, a late start): tell
                    // the other at once, and refresh the LAN's ARP caches,
                    // which may point at the other one.
                    self.send_advert(self.cfg.priority);
                    self.advert_at = Some(now + self.cfg.advert_interval);
                    let recent = self
                        .last_rival_garp
                        .is_some_and(|t| now < t + self.master_down_interval());
                    if !recent {
                        self.last_rival_garp = Some(now);
                        self.out.push_back(Output::GratuitousArp {
                            count: self.cfg.garp.count,
                        });
                    }
                }
            }
        }
    }

    fn follow(&mut self, now: Instant, src: Ipv4Addr, interval: Duration) {
        self.master_interval = interval;
        self.master = Some(src);
        self.heard_at = Some(now);
        self.master_down_at = Some(now + self.master_down_interval());
    }

    fn drop_advert(&mut self, reason: &'static str, from: Ipv4Addr) {
        self.out.push_back(Output::Dropped { reason, from });
    }

    /// When the router started (for uptime on status pages).
    pub fn started_at(&self) -> Option<Instant> {
        self.started_at
    }
}

fn same_addresses(a: &[Ipv4Addr], b: &[Ipv4Addr]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_unstable();
    a.dedup();
    b.sort_unstable();
    b.dedup();
    a == b
}

fn join(a: &[Ipv4Addr]) -> String {
    a.iter()
        .map(Ipv4Addr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Advert;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 100);

    fn cfg(priority: u8, local: [u8; 4]) -> RouterConfig {
        RouterConfig {
            vrid: 51,
            priority,
            advert_interval: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            addresses: vec![VIP],
            local: Ipv4Addr::from(local),
            unicast_peers: Vec::new(),
            garp: GarpConfig::default(),
        }
    }

    fn advert(priority: u8) -> Advert {
        Advert {
            vrid: 51,
            priority,
            interval_cs: 100,
            addresses: vec![VIP],
        }
    }

    fn drain(r: &mut Router) -> Vec<Output> {
        std::iter::from_fn(|| r.poll_output()).collect()
    }

    #[test]
    fn config_is_checked() {
        let bad = |f: fn(&mut RouterConfig)| {
            let mut c = cfg(100, [10, 1, 2, 1]);
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(bad(|c| c.vrid = 0), RouterConfigError::Vrid);
        assert_eq!(bad(|c| c.priority = 0), RouterConfigError::Priority);
        assert_eq!(
            bad(|c| c.advert_interval = Duration::from_millis(5)),
            RouterConfigError::Interval
        );
        assert_eq!(
            bad(|c| c.advert_interval = Duration::from_millis(1005)),
            RouterConfigError::Interval
        );
        assert_eq!(
            bad(|c| c.advert_interval = Duration::from_secs(41)),
            RouterConfigError::Interval
        );
        assert_eq!(bad(|c| c.addresses.clear()), RouterConfigError::Addresses);
        assert_eq!(
            bad(|c| c.addresses.push(c.local)),
            RouterConfigError::LocalIsVirtual(Ipv4Addr::new(10, 1, 2, 1))
        );
        assert_eq!(
            bad(|c| c.unicast_peers.push(MULTICAST)),
            RouterConfigError::Peer(MULTICAST)
        );
        assert!(Router::new(cfg(255, [10, 1, 2, 1])).is_ok());
    }

    #[test]
    fn backup_takes_over_after_the_master_down_interval() {
        let t0 = Instant::now();
        let mut r = Router::new(cfg(100, [10, 1, 2, 1])).unwrap();
        r.start(t0);
        assert_eq!(
            drain(&mut r),
            [
                Output::RemoveAddresses,
                Output::StateChanged {
                    from: State::Init,
                    to: State::Backup
                }
            ]
        );
        // 3 * 1 s + (256 - 100) / 256 s.
        let down = Duration::from_millis(3000) + Duration::from_secs(156) / 256;
        assert_eq!(r.master_down_interval(), down);
        assert_eq!(r.poll_timeout(), Some(t0 + down));
        r.handle_timeout(t0 + down - Duration::from_millis(1));
        assert_eq!(r.state(), State::Backup);
        r.handle_timeout(t0 + down);
        assert_eq!(r.state(), State::Master);
        let out = drain(&mut r);
        assert_eq!(out[0], Output::AddAddresses);
        let Output::Send { to, bytes } = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(*to, MULTICAST);
        let (a, _) = Advert::decode(bytes, Ipv4Addr::new(10, 1, 2, 1), MULTICAST).unwrap();
        assert_eq!(a, advert(100));
        assert_eq!(out[2], Output::GratuitousArp { count: 5 });
        assert_eq!(r.master(), Some(Ipv4Addr::new(10, 1, 2, 1)));
    }

    #[test]
    fn owner_is_master_at_once_and_keeps_stale_addresses() {
        let t0 = Instant::now();
        let mut r = Router::new(cfg(255, [10, 1, 2, 1])).unwrap();
        r.start(t0);
        let out = drain(&mut r);
        assert!(!out.contains(&Output::RemoveAddresses));
        assert_eq!(r.state(), State::Master);
    }

    #[test]
    fn adverts_reset_the_master_down_timer_and_priority_zero_shortens_it() {
        let t0 = Instant::now();
        let mut r = Router::new(cfg(100, [10, 1, 2, 1])).unwrap();
        r.start(t0);
        let m = Ipv4Addr::new(10, 1, 2, 2);
        let t1 = t0 + Duration::from_secs(2);
        r.handle_advert(t1, m, &advert(200));
        assert_eq!(r.master(), Some(m));
        assert_eq!(r.poll_timeout(), Some(t1 + r.master_down_interval()));
        r.handle_advert(t1, m, &advert(0));
        // Skew time: 156/256 s.
        assert_eq!(r.poll_timeout(), Some(t1 + Duration::from_secs(156) / 256));
        r.handle_timeout(t1 + Duration::from_secs(1));
        assert_eq!(r.state(), State::Master);
    }

    #[test]
    fn higher_priority_preempts_unless_told_not_to_or_delayed() {
        let lower = Ipv4Addr::new(10, 1, 2, 2);
        for (preempt, delay, expect) in [
            (true, Duration::ZERO, State::Master),
            (false, Duration::ZERO, State::Backup),
            (true, Duration::from_secs(60), State::Backup),
        ] {
            let t0 = Instant::now();
            let mut c = cfg(200, [10, 1, 2, 1]);
            c.preempt = preempt;
            c.preempt_delay = delay;
            let mut r = Router::new(c).unwrap();
            r.start(t0);
            // The lower master keeps advertising every second for 10 s.
            for s in 0..10 {
                let t = t0 + Duration::from_millis(100 + s * 1000);
                r.handle_timeout(t);
                r.handle_advert(t, lower, &advert(100));
            }
            r.handle_timeout(t0 + Duration::from_secs(10));
            assert_eq!(r.state(), expect, "preempt {preempt}, delay {delay:?}");
        }
    }

    #[test]
    fn master_yields_to_higher_priority_and_to_higher_ip_on_a_tie() {
        let t0 = Instant::now();
        let mut r = Router::new(cfg(150, [10, 1, 2, 5])).unwrap();
        r.start(t0);
        r.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(r.state(), State::Master);
        drain(&mut r);
        // A tie with a lower address: it stays, and re-asserts with ARPs.
        r.handle_advert(
            t0 + Duration::from_secs(10),
            Ipv4Addr::new(10, 1, 2, 4),
            &advert(150),
        );
        assert_eq!(r.state(), State::Master);
        let out = drain(&mut r);
        assert!(out.contains(&Output::GratuitousArp { count: 5 }), "{out:?}");
        // A tie with a higher address: it yields and drops the VIP.
        r.handle_advert(
            t0 + Duration::from_secs(11),
            Ipv4Addr::new(10, 1, 2, 9),
            &advert(150),
        );
        assert_eq!(r.state(), State::Backup);
        assert!(drain(&mut r).contains(&Output::RemoveAddresses));
    }

    #[test]
    fn graceful_stop_sends_priority_zero_and_removes_the_addresses() {
        let t0 = Instant::now();
        let mut r = Router::new(cfg(255, [10, 1, 2, 1])).unwrap();
        r.start(t0);
        drain(&mut r);
        r.shutdown(t0 + Duration::from_secs(1));
        let out = drain(&mut r);
        let Output::Send { bytes, .. } = &out[0] else {
            panic!("{out:?}")
        };
        let (a, _) = Advert::decode(bytes, Ipv4Addr::new(10, 1, 2, 1), MULTICAST).unwrap();
        assert_eq!(a.priority, 0);
        assert_eq!(out[1], Output::RemoveAddresses);
        assert_eq!(r.state(), State::Init);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn garp_bursts_second_and_refresh() {
        let t0 = Instant::now();
        let mut c = cfg(255, [10, 1, 2, 1]);
        c.garp.refresh = Some(Duration::from_secs(60));
        let mut r = Router::new(c).unwrap();
        r.start(t0);
        let garps = |r: &mut Router| {
            drain(r)
                .iter()
                .filter(|o| matches!(o, Output::GratuitousArp { .. }))
                .count()
        };
        assert_eq!(garps(&mut r), 1);
        r.handle_timeout(t0 + Duration::from_secs(4));
        assert_eq!(garps(&mut r), 0);
        r.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(garps(&mut r), 1, "the second burst");
        r.handle_timeout(t0 + Duration::from_secs(64));
        assert_eq!(garps(&mut r), 0);
        r.handle_timeout(t0 + Duration::from_secs(65));
        assert_eq!(garps(&mut r), 1, "the refresh");
    }

    #[test]
    fn fault_gives_up_at_once_and_recovers_as_backup() {
        let t0 = Instant::now();
        let mut r = Router::new(cfg(255, [10, 1, 2, 1])).unwrap();
        r.start(t0);
        drain(&mut r);
        r.set_fault(t0, Some("app web unhealthy".into()));
        let out = drain(&mut r);
        assert!(matches!(&out[0], Output::Send { bytes, .. } if bytes[2] == 0));
        assert_eq!(out[1], Output::RemoveAddresses);
        assert_eq!(r.state(), State::Fault);
        assert_eq!(r.fault_reason(), Some("app web unhealthy"));
        r.handle_timeout(t0 + Duration::from_secs(100));
        assert_eq!(r.state(), State::Fault, "no takeover while faulty");
        r.set_fault(t0 + Duration::from_secs(100), None);
        assert_eq!(r.state(), State::Backup);
    }

    #[test]
    fn leaving_fault_counts_the_master_down_timer_from_the_last_advert_heard() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let interval = s(1);
        let skew = interval * 156 / 256;
        let m = Ipv4Addr::new(10, 1, 2, 2);
        let faulty = |r: &mut Router, at| {
            r.set_fault(at, Some("app web does not run on this node".into()));
            r.start(at);
            assert_eq!(r.state(), State::Fault);
        };

        // Nothing heard for a long time (the master died with the app):
        // one interval plus the skew, not three intervals.
        let mut r = Router::new(cfg(100, [10, 1, 2, 1])).unwrap();
        faulty(&mut r, t0);
        r.handle_advert(t0 + s(2), m, &advert(200));
        assert_eq!(r.master(), Some(m));
        let t1 = t0 + s(20);
        r.set_fault(t1, None);
        assert_eq!(r.state(), State::Backup);
        assert_eq!(r.poll_timeout(), Some(t1 + interval + skew));
        r.handle_timeout(t1 + interval + skew);
        assert_eq!(r.state(), State::Master);

        // A master heard 1 s ago: its master-down interval from then.
        let mut r = Router::new(cfg(100, [10, 1, 2, 1])).unwrap();
        faulty(&mut r, t0);
        r.handle_advert(t0 + s(19), m, &advert(200));
        r.set_fault(t1, None);
        assert_eq!(
            r.poll_timeout(),
            Some(t0 + s(19) + r.master_down_interval())
        );
        // It keeps advertising: followed as usual.
        r.handle_advert(t1 + s(1), m, &advert(200));
        r.handle_timeout(t0 + s(19) + r.master_down_interval());
        assert_eq!(r.state(), State::Backup);

        // Its priority-0 advert while this router was in Fault: no master.
        let mut r = Router::new(cfg(100, [10, 1, 2, 1])).unwrap();
        faulty(&mut r, t0);
        r.handle_advert(t0 + s(18), m, &advert(200));
        r.handle_advert(t0 + s(19), m, &advert(0));
        assert_eq!(r.master(), None);
        r.set_fault(t1, None);
        assert_eq!(r.poll_timeout(), Some(t1 + interval + skew));

        // Just started: listened for less than a master-down interval.
        let mut r = Router::new(cfg(100, [10, 1, 2, 1])).unwrap();
        faulty(&mut r, t0);
        r.set_fault(t0 + s(1), None);
        assert_eq!(r.poll_timeout(), Some(t0 + r.master_down_interval()));

        // From Backup into Fault and back: the master followed counts.
        let mut r = Router::new(cfg(100, [10, 1, 2, 1])).unwrap();
        r.start(t0);
        r.handle_advert(t0 + s(10), m, &advert(200));
        faulty(&mut r, t0 + s(10) + Duration::from_millis(500));
        r.set_fault(t0 + s(11), None);
        assert_eq!(
            r.poll_timeout(),
            Some(t0 + s(10) + r.master_down_interval())
        );
    }

    #[test]
    fn conflicting_adverts_are_dropped_and_hold_the_router_in_fault() {
        let t0 = Instant::now();
        let mut r = Router::new(cfg(100, [10, 1, 2, 1])).unwrap();
        r.start(t0);
        drain(&mut r);
        let peer = Ipv4Addr::new(10, 1, 2, 7);
        let mut slow = advert(50);
        slow.interval_cs = 200;
        r.handle_advert(t0, peer, &slow);
        assert_eq!(r.state(), State::Backup, "a lower peer is only dropped");
        assert!(drain(&mut r).contains(&Output::Dropped {
            reason: "interval_mismatch",
            from: peer
        }));
        slow.priority = 150;
        r.handle_advert(t0, peer, &slow);
        assert_eq!(r.state(), State::Fault);
        let out = drain(&mut r);
        assert!(out.contains(&Output::Dropped {
            reason: "interval_mismatch",
            from: peer
        }));
        assert!(r.fault_reason().unwrap().contains("every 2000 ms"));
        assert_eq!(r.master(), None, "not followed");
        let mut other = advert(150);
        other.addresses = vec![Ipv4Addr::new(10, 9, 9, 9)];
        r.handle_advert(t0 + Duration::from_secs(1), peer, &other);
        assert!(drain(&mut r).contains(&Output::Dropped {
            reason: "address_mismatch",
            from: peer
        }));
        // Quiet for four intervals: it competes again.
        r.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(r.state(), State::Backup);
        assert_eq!(r.fault_reason(), None);
    }

    #[test]
    fn unicast_sends_to_each_peer_with_its_own_checksum() {
        let t0 = Instant::now();
        let mut c = cfg(255, [10, 1, 2, 1]);
        let peers = [Ipv4Addr::new(10, 1, 2, 2), Ipv4Addr::new(10, 1, 2, 3)];
        c.unicast_peers = peers.to_vec();
        let mut r = Router::new(c).unwrap();
        r.start(t0);
        let sent: Vec<_> = drain(&mut r)
            .into_iter()
            .filter_map(|o| match o {
                Output::Send { to, bytes } => Some((to, bytes)),
                _ => None,
            })
            .collect();
        assert_eq!(sent.len(), 2);
        for (to, bytes) in sent {
            assert!(peers.contains(&to));
            Advert::decode(&bytes, Ipv4Addr::new(10, 1, 2, 1), to).unwrap();
        }
    }
}
