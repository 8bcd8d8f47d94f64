//! Distinct loopback addresses for agents, across threads and processes.
//!
//! On Linux the whole of 127.0.0.0/8 is routed to `lo`, so every agent can
//! bind serf's default ports (7946 gossip, 7373 RPC) on an address of its
//! own. Two things keep addresses apart:
//!
//! 1. **Reservation**: the allocator binds a UDP socket on
//!    `IP:`[`RESERVE_PORT`] and holds it for its own lifetime (the process's
//!    for [`LoopbackAlloc::global`]). Another allocator, in this process or
//!    in a concurrently running test binary, fails to bind it and moves on;
//!    the kernel drops the reservation when the process dies, so nothing
//!    goes stale.
//! 2. **Probe**: the ports the agents will use (TCP and UDP 7946, TCP 7373
//!    by default) must be free right now, which skips addresses still used
//!    by an agent from another harness or from a killed test run.
//!
//! The search starts at a point derived from the pid and the clock, so
//! concurrent processes rarely even look at the same addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Serf's default gossip port (TCP and UDP).
pub const SERF_PORT: u16 = 7946;
/// Serf's default RPC port (TCP).
pub const RPC_PORT: u16 = 7373;
/// UDP port bound on an allocated address to mark it as taken.
pub const RESERVE_PORT: u16 = 7371;

// 127.A.B.C with A in 10..=199, B in 0..=255, C in 2..=254: leaves
// 127.0.0.0/16 (system services, Debian's serf agent on 127.0.0.1:7373)
// and 127.200.0.0 and above (for hand-made setups) alone.
const A_MIN: u64 = 10;
const A_COUNT: u64 = 190;
const B_COUNT: u64 = 256;
const C_MIN: u64 = 2;
const C_COUNT: u64 = 253;
const SPACE: u64 = A_COUNT * B_COUNT * C_COUNT;

/// Hands out loopback IPs no other user of this crate holds and whose agent
/// ports are free. Thread-safe; use [`LoopbackAlloc::global`] (or
/// [`fresh_ip`]) unless you need other ports probed.
pub struct LoopbackAlloc {
    tcp: Vec<u16>,
    udp: Vec<u16>,
    start: u64,
    next: AtomicU64,
    held: Mutex<Vec<(IpAddr, UdpSocket)>>,
}

impl Default for LoopbackAlloc {
    fn default() -> Self {
        Self::new()
    }
}

impl LoopbackAlloc {
    /// An allocator probing serf's ports: TCP+UDP 7946 and TCP 7373.
    pub fn new() -> Self {
        Self::with_ports(&[SERF_PORT, RPC_PORT], &[SERF_PORT])
    }

    /// An allocator that requires these TCP and UDP ports to be free on
    /// every address it hands out.
    pub fn with_ports(tcp: &[u16], udp: &[u16]) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = splitmix64(u64::from(std::process::id()) ^ nanos.rotate_left(20));
        LoopbackAlloc {
            tcp: tcp.to_vec(),
            udp: udp.to_vec(),
            start: seed % SPACE,
            next: AtomicU64::new(0),
            held: Mutex::new(Vec::new()),
        }
    }

    /// The process-wide allocator (serf's ports).
    pub fn global() -> &'static LoopbackAlloc {
        static GLOBAL: OnceLock<LoopbackAlloc> = OnceLock::new();
        GLOBAL.get_or_init(LoopbackAlloc::new)
    }

    /// A fresh address, reserved until this allocator is dropped.
    ///
    /// Panics only if the whole 127.10.0.0–127.199.255.255 range is taken.
    pub fn next_ip(&self) -> IpAddr {
        for _ in 0..SPACE {
            let k = (self.start + self.next.fetch_add(1, Ordering::Relaxed)) % SPACE;
            let ip = index_to_ip(k);
            let Ok(guard) = UdpSocket::bind(SocketAddr::new(ip, RESERVE_PORT)) else {
                continue; // reserved by someone else
            };
            if !ports_free(ip, &self.tcp, &self.udp) {
                continue; // dropping `guard` releases it again
            }
            self.held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((ip, guard));
            return ip;
        }
        panic!("no free loopback address in 127.10.0.0/8..127.199.255.255");
    }

    /// `n` fresh addresses.
    pub fn take(&self, n: usize) -> Vec<IpAddr> {
        (0..n).map(|_| self.next_ip()).collect()
    }

    /// Addresses handed out so far (in order).
    pub fn handed_out(&self) -> Vec<IpAddr> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(ip, _)| *ip)
            .collect()
    }
}

/// A fresh loopback address from the process-wide allocator; serf's ports
/// 7946 (TCP, UDP) and 7373 (TCP) are free on it.
pub fn fresh_ip() -> IpAddr {
    LoopbackAlloc::global().next_ip()
}

/// True when every listed port can be bound on `ip` right now.
pub fn ports_free(ip: IpAddr, tcp: &[u16], udp: &[u16]) -> bool {
    tcp.iter()
        .all(|p| TcpListener::bind(SocketAddr::new(ip, *p)).is_ok())
        && udp
            .iter()
            .all(|p| UdpSocket::bind(SocketAddr::new(ip, *p)).is_ok())
}

fn index_to_ip(k: u64) -> IpAddr {
    let c = k % C_COUNT;
    let b = (k / C_COUNT) % B_COUNT;
    let a = k / (C_COUNT * B_COUNT);
    IpAddr::V4(Ipv4Addr::new(
        127,
        (A_MIN + a) as u8,
        b as u8,
        (C_MIN + c) as u8,
    ))
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn index_covers_the_range() {
        assert_eq!(index_to_ip(0), IpAddr::V4(Ipv4Addr::new(127, 10, 0, 2)));
        assert_eq!(
            index_to_ip(SPACE - 1),
            IpAddr::V4(Ipv4Addr::new(127, 199, 255, 254))
        );
    }

    #[test]
    fn distinct_across_threads_and_allocators() {
        let a = LoopbackAlloc::new();
        let b = LoopbackAlloc::new();
        let mut all: Vec<IpAddr> = std::thread::scope(|s| {
            let h: Vec<_> = (0..4)
                .map(|i| {
                    let al = if i % 2 == 0 { &a } else { &b };
                    s.spawn(move || al.take(25))
                })
                .collect();
            h.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        all.extend(LoopbackAlloc::global().take(10));
        let set: HashSet<_> = all.iter().collect();
        assert_eq!(set.len(), all.len(), "duplicate address handed out");
    }

    #[test]
    fn skips_addresses_in_use() {
        let alloc = LoopbackAlloc::new();
        // Occupy the gossip port on the address the allocator would try next.
        let k = (alloc.start + alloc.next.load(Ordering::Relaxed)) % SPACE;
        let ip = index_to_ip(k);
        let busy = TcpListener::bind(SocketAddr::new(ip, SERF_PORT));
        let got = alloc.next_ip();
        if busy.is_ok() {
            assert_ne!(got, ip);
        }
    }
}
