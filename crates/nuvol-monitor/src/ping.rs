//! ICMP echo (surge-ping): loss and round-trip times of a device.
//!
//! One [`Pinger`] (one ICMP socket and its receive task) serves every
//! device. The socket is an unprivileged ICMP datagram socket when
//! `net.ipv4.ping_group_range` includes one of the process's groups, else a
//! raw socket (CAP_NET_RAW); surge-ping tries the other kind when the first
//! fails. Echoes go out `interval` apart and are awaited concurrently, so a
//! silent device costs `(count - 1) * interval + timeout`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;
use surge_ping::{Client, Config, PingIdentifier, PingSequence, SurgeError, ICMP};
use tracing::debug;

#[derive(Debug, Clone)]
pub struct PingOptions {
    pub count: u16,
    pub interval: Duration,
    /// How long to wait for each echo reply.
    pub timeout: Duration,
}

impl Default for PingOptions {
    fn default() -> Self {
        PingOptions {
            count: 5,
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
        }
    }
}

/// One device's echo results.
#[derive(Debug, Clone, PartialEq)]
pub struct PingStats {
    pub sent: u16,
    pub received: u16,
    /// 0 (every reply) to 1 (none).
    pub loss: f64,
    /// Round-trip times in ms; `None` when nothing came back.
    pub min_ms: Option<f64>,
    pub avg_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl PingStats {
    /// From the round-trip times of the replies that came back.
    pub fn from_rtts(sent: u16, rtts: &[Duration]) -> PingStats {
        let ms: Vec<f64> = rtts.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        let received = u16::try_from(ms.len()).unwrap_or(u16::MAX).min(sent);
        let loss = if sent == 0 {
            1.0
        } else {
            1.0 - f64::from(received) / f64::from(sent)
        };
        let (min, max) = ms.iter().fold((None::<f64>, None::<f64>), |(lo, hi), &x| {
            (
                Some(lo.map_or(x, |l| l.min(x))),
                Some(hi.map_or(x, |h| h.max(x))),
            )
        });
        PingStats {
            sent,
            received,
            loss,
            min_ms: min,
            avg_ms: (!ms.is_empty()).then(|| ms.iter().sum::<f64>() / ms.len() as f64),
            max_ms: max,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error(
        "cannot open an ICMP socket ({source}): allow unprivileged ping with \
         `sysctl net.ipv4.ping_group_range=\"0 2147483647\"`, or give the process \
         CAP_NET_RAW (e.g. `setcap cap_net_raw+ep` on the binary, or \
         AmbientCapabilities=CAP_NET_RAW in its systemd unit)"
    )]
    NoSocket { source: std::io::Error },
    #[error("ping {addr}: {source}")]
    Send { addr: Ipv4Addr, source: SurgeError },
}

/// Whether `ping_group_range` ("low high", as in /proc) admits one of `gids`.
pub fn dgram_allowed(range: &str, gids: &[u32]) -> bool {
    let mut it = range.split_whitespace().map(str::parse::<u32>);
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) => gids.iter().any(|g| (lo..=hi).contains(g)),
        _ => false,
    }
}

/// The process's groups: the `Gid:` and `Groups:` lines of /proc/self/status.
fn own_gids() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter_map(|l| l.strip_prefix("Gid:").or_else(|| l.strip_prefix("Groups:")))
        .flat_map(|rest| rest.split_whitespace().filter_map(|g| g.parse().ok()))
        .collect()
}

/// The shared ICMP client.
pub struct Pinger {
    client: Client,
    ident: u16,
    /// Sequence numbers are unique across calls: concurrent pings of one
    /// host must not share one (with a datagram socket the kernel sets the
    /// identifier, so the sequence alone tells replies apart).
    seq: AtomicU16,
    pub kind: socket2::Type,
}

impl Pinger {
    /// Needs a tokio runtime (surge-ping spawns its receive task).
    pub fn new() -> Result<Pinger, PingError> {
        let range =
            std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default();
        let hint = if dgram_allowed(&range, &own_gids()) {
            socket2::Type::DGRAM
        } else {
            socket2::Type::RAW
        };
        let config = Config::builder()
            .kind(ICMP::V4)
            .sock_type_hint(hint)
            .build();
        let client = Client::new(&config).map_err(|source| PingError::NoSocket { source })?;
        let kind = client.get_socket().get_type();
        debug!(?kind, "ICMP socket open");
        Ok(Pinger {
            client,
            ident: (std::process::id() & 0xffff) as u16,
            seq: AtomicU16::new(0),
            kind,
        })
    }

    /// `opts.count` echoes to `addr`, `opts.interval` apart.
    pub async fn ping(&self, addr: Ipv4Addr, opts: &PingOptions) -> Result<PingStats, PingError> {
        let mut tasks = tokio::task::JoinSet::new();
        let payload = [0u8; 56];
        for i in 0..opts.count {
            if i > 0 {
                tokio::time::sleep(opts.interval).await;
            }
            let mut p = self
                .client
                .pinger(IpAddr::V4(addr), PingIdentifier(self.ident))
                .await;
            p.timeout(opts.timeout);
            let seq = PingSequence(self.seq.fetch_add(1, Ordering::Relaxed));
            tasks.spawn(async move { p.ping(seq, &payload).await.map(|(_, rtt)| rtt) });
        }
        let mut rtts = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(rtt)) => rtts.push(rtt),
                Ok(Err(SurgeError::Timeout { .. })) => {}
                Ok(Err(source @ SurgeError::IOError(_))) => {
                    return Err(PingError::Send { addr, source })
                }
                Ok(Err(e)) => debug!(%addr, "echo lost: {e}"),
                Err(e) => debug!(%addr, "echo task: {e}"),
            }
        }
        Ok(PingStats::from_rtts(opts.count, &rtts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_range() {
        assert!(dgram_allowed("0 2147483647", &[1000]));
        assert!(dgram_allowed("100 200", &[5, 150]));
        // The kernel's default: nobody.
        assert!(!dgram_allowed("1\t0", &[0, 1]));
        assert!(!dgram_allowed("", &[0]));
        assert!(!dgram_allowed("x y", &[0]));
    }

    #[test]
    fn stats() {
        let s = PingStats::from_rtts(
            5,
            &[
                Duration::from_millis(2),
                Duration::from_millis(4),
                Duration::from_millis(6),
            ],
        );
        assert_eq!((s.sent, s.received), (5, 3));
        assert!((s.loss - 0.4).abs() < 1e-9);
        assert_eq!(s.min_ms, Some(2.0));
        assert_eq!(s.avg_ms, Some(4.0));
        assert_eq!(s.max_ms, Some(6.0));
        let none = PingStats::from_rtts(5, &[]);
        assert_eq!(none.loss, 1.0);
        assert_eq!(none.avg_ms, None);
    }
}
