//! The sockets: one UDP socket read by a few worker tasks, one TCP listener
//! with a task per connection.
//!
//! Why not hickory-server: its `Authority` model serves zones (records kept
//! in a catalog, looked up by name and type), while these answers are
//! computed from a live in-memory snapshot that changes whenever the catalog
//! does, with per-answer shuffling and our own truncation rule. The loop
//! itself is small (recv, answer, send); owning it keeps the hot path
//! allocation-light, lets malformed input be counted and dropped where it
//! arrives, and bounds TCP (connection cap, idle timeout) the agent's way.

use crate::answer::{respond, Dropped, Outcome, Scratch, Transport, Zone};
use crate::view::{DnsView, Index};
use hickory_proto::op::ResponseCode;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// Largest UDP query read; longer datagrams are cut and then fail to parse.
const UDP_RECV_BUF: usize = 4096;

/// Server settings.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// UDP and TCP listen address (port 0: any free port, the same for both).
    pub addr: SocketAddr,
    /// The zone, e.g. `nuvol` or `nuvol.lan` (case-insensitive, trailing dot
    /// optional).
    pub domain: String,
    /// TTL of `TYPE.service` records, and the negative-caching TTL
    /// (NXDOMAIN, empty answers). Short: health changes must show quickly.
    pub service_ttl: Duration,
    /// TTL of `NODE.node` records (also in SRV answers' additional section).
    pub node_ttl: Duration,
    /// UDP worker tasks; 0 = one per available core.
    pub udp_workers: usize,
    /// Concurrent TCP connections; more are accepted and closed at once.
    pub max_tcp_connections: usize,
    /// A TCP connection idle (or stalled mid-message) this long is closed.
    pub tcp_idle_timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8600)),
            domain: "nuvol".into(),
            service_ttl: Duration::from_secs(5),
            node_ttl: Duration::from_secs(30),
            udp_workers: 0,
            max_tcp_connections: 128,
            tcp_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Errors of [`DnsServer`].
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("invalid DNS domain {domain:?}: {reason}")]
    BadDomain { domain: String, reason: String },
    #[error("invalid DNS config: {0}")]
    BadConfig(String),
    #[error("DNS: binding {proto} on {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("DNS: a server task ended: {0}")]
    Task(String),
    #[error("DNS: {0}")]
    Io(#[from] io::Error),
}

/// Counters, shared with the agent (Prometheus export) through an `Arc`.
#[derive(Debug, Default)]
pub struct DnsStats {
    /// Queries answered, UDP and TCP (whatever the response code).
    pub queries: AtomicU64,
    /// Of which over TCP.
    pub tcp_queries: AtomicU64,
    /// Answers with NXDOMAIN.
    pub nxdomain: AtomicU64,
    /// Answers with REFUSED (names outside the domain, other classes).
    pub refused: AtomicU64,
    /// Answers with another error code (FORMERR, NOTIMP, BADVERS).
    pub other_errors: AtomicU64,
    /// UDP answers cut to fit, with TC set.
    pub truncated: AtomicU64,
    /// Packets or TCP messages dropped unanswered: unparsable, too short,
    /// cut off, or responses rather than queries.
    pub dropped_malformed: AtomicU64,
    /// TCP connections accepted.
    pub tcp_connections: AtomicU64,
    /// TCP connections closed at once because of the connection cap.
    pub tcp_rejected: AtomicU64,
}

/// A plain copy of [`DnsStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsStatsSnapshot {
    pub queries: u64,
    pub tcp_queries: u64,
    pub nxdomain: u64,
    pub refused: u64,
    pub other_errors: u64,
    pub truncated: u64,
    pub dropped_malformed: u64,
    pub tcp_connections: u64,
    pub tcp_rejected: u64,
}

impl DnsStats {
    pub fn snapshot(&self) -> DnsStatsSnapshot {
        DnsStatsSnapshot {
            queries: self.queries.load(Relaxed),
            tcp_queries: self.tcp_queries.load(Relaxed),
            nxdomain: self.nxdomain.load(Relaxed),
            refused: self.refused.load(Relaxed),
            other_errors: self.other_errors.load(Relaxed),
            truncated: self.truncated.load(Relaxed),
            dropped_malformed: self.dropped_malformed.load(Relaxed),
            tcp_connections: self.tcp_connections.load(Relaxed),
            tcp_rejected: self.tcp_rejected.load(Relaxed),
        }
    }
}

/// The view channel plus the index built from its current value, shared by
/// all tasks: the first task to see a new snapshot builds its index.
struct Shared {
    zone: Zone,
    rx: watch::Receiver<Arc<DnsView>>,
    built: Mutex<Current>,
    stats: Arc<DnsStats>,
}

#[derive(Clone)]
struct Current {
    view: Arc<DnsView>,
    index: Arc<Index>,
}

impl Shared {
    fn build(&self, view: Arc<DnsView>) -> Current {
        let index = Arc::new(Index::build(&view, &self.zone.domain));
        debug!(
            services = index.services.len(),
            nodes = index.nodes.len(),
            "dns: view indexed"
        );
        Current { view, index }
    }

    /// Brings `local` up to the channel's current snapshot.
    fn refresh(&self, local: &mut Current) {
        let view = self.rx.borrow().clone();
        if Arc::ptr_eq(&view, &local.view) {
            return;
        }
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&view, &built.view) {
            *built = self.build(view);
        }
        *local = built.clone();
    }
}

/// One task's state: its buffers and its copy of the current index.
struct Worker {
    shared: Arc<Shared>,
    current: Current,
    scratch: Scratch,
}

impl Worker {
    fn new(shared: &Arc<Shared>) -> Worker {
        let current = shared
            .built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Worker {
            shared: shared.clone(),
            current,
            scratch: Scratch::default(),
        }
    }

    /// Answers `packet`; Some(response bytes) or None (dropped, counted).
    fn handle(&mut self, packet: &[u8], transport: Transport, peer: SocketAddr) -> Option<&[u8]> {
        self.shared.refresh(&mut self.current);
        let stats = &self.shared.stats;
        let zone = &self.shared.zone;
        match respond(
            zone,
            &self.current.index,
            packet,
            transport,
            &mut self.scratch,
        ) {
            Ok(Outcome { rcode, truncated }) => {
                stats.queries.fetch_add(1, Relaxed);
                if transport == Transport::Tcp {
                    stats.tcp_queries.fetch_add(1, Relaxed);
                }
                match rcode {
                    ResponseCode::NoError => {}
                    ResponseCode::NXDomain => {
                        stats.nxdomain.fetch_add(1, Relaxed);
                    }
                    ResponseCode::Refused => {
                        stats.refused.fetch_add(1, Relaxed);
                    }
                    _ => {
                        stats.other_errors.fetch_add(1, Relaxed);
                    }
                }
                if truncated {
                    stats.truncated.fetch_add(1, Relaxed);
                }
                Some(&self.scratch.out)
            }
            Err(why) => {
                stats.dropped_malformed.fetch_add(1, Relaxed);
                match why {
                    Dropped::Malformed(e) => {
                        debug!(%peer, ?transport, len = packet.len(), error = %e, "dns: malformed packet dropped")
                    }
                    Dropped::NotAQuery => {
                        debug!(%peer, ?transport, "dns: response packet dropped")
                    }
                }
                None
            }
        }
    }
}

/// The DNS server: bound, not yet serving.
pub struct DnsServer {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stats: Arc<DnsStats>,
    cfg: DnsConfig,
}

fn ttl_secs(d: Duration, what: &str) -> Result<u32, DnsError> {
    u32::try_from(d.as_secs())
        .ok()
        .filter(|s| *s <= i32::MAX as u32)
        .ok_or_else(|| DnsError::BadConfig(format!("{what} too large")))
}

impl DnsServer {
    /// Binds UDP and TCP on `cfg.addr`. With port 0 both get the same free
    /// port, reported by [`DnsServer::local_addr`].
    pub async fn bind(
        cfg: DnsConfig,
        view: watch::Receiver<Arc<DnsView>>,
    ) -> Result<DnsServer, DnsError> {
        let zone = Zone::new(
            &cfg.domain,
            ttl_secs(cfg.service_ttl, "service_ttl")?,
            ttl_secs(cfg.node_ttl, "node_ttl")?,
        )
        .map_err(|reason| DnsError::BadDomain {
            domain: cfg.domain.clone(),
            reason,
        })?;
        if cfg.max_tcp_connections == 0 {
            return Err(DnsError::BadConfig("max_tcp_connections is 0".into()));
        }
        let (udp, tcp) = bind_pair(cfg.addr).await?;
        let local_addr = udp.local_addr()?;
        let stats = Arc::new(DnsStats::default());
        let first = view.borrow().clone();
        let index = Arc::new(Index::build(&first, &zone.domain));
        let shared = Arc::new(Shared {
            zone,
            rx: view,
            built: Mutex::new(Current { view: first, index }),
            stats: stats.clone(),
        });
        Ok(DnsServer {
            udp: Arc::new(udp),
            tcp,
            local_addr,
            shared,
            stats,
            cfg,
        })
    }

    /// The bound address (UDP and TCP share it).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<DnsStats> {
        self.stats.clone()
    }

    /// Serves until `shutdown` completes (pass `std::future::pending()` to
    /// serve forever, or e.g. a `CancellationToken::cancelled_owned()`);
    /// the sockets are closed and all connections dropped on return. An
    /// error means a server task died (a bug), not a bad packet.
    pub async fn run<F>(self, shutdown: F) -> Result<(), DnsError>
    where
        F: Future<Output = ()> + Send,
    {
        let workers = match self.cfg.udp_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            n => n,
        };
        info!(addr = %self.local_addr, domain = %self.shared.zone.domain, workers, "dns: serving");
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            tasks.spawn(udp_worker(self.udp.clone(), Worker::new(&self.shared)));
        }
        tasks.spawn(tcp_accept(self.tcp, self.shared.clone(), self.cfg.clone()));
        tokio::pin!(shutdown);
        let result = tokio::select! {
            () = &mut shutdown => Ok(()),
            Some(ended) = tasks.join_next() => Err(DnsError::Task(match ended {
                Ok(()) => "returned".to_owned(),
                Err(e) => e.to_string(),
            })),
        };
        tasks.shutdown().await;
        debug!(addr = %self.local_addr, "dns: stopped");
        result
    }
}

/// UDP and TCP on the same address; with port 0, retried until a port is
/// free for both.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let tries = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsError::Bind {
                proto: "udp",
                addr,
                source,
            })?;
        let bound = udp.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) => {
                last = Some(DnsError::Bind {
                    proto: "tcp",
                    addr: bound,
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| DnsError::BadConfig("no bind attempt".into())))
}

async fn udp_worker(socket: Arc<UdpSocket>, mut w: Worker) {
    let mut buf = vec![0u8; UDP_RECV_BUF];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // E.g. ICMP errors surfacing on some platforms; never fatal.
                debug!(error = %e, "dns: udp recv");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        if let Some(resp) = w.handle(&buf[..n], Transport::Udp, peer) {
            if let Err(e) = socket.send_to(resp, peer).await {
                debug!(%peer, error = %e, "dns: udp send");
            }
        }
    }
}

async fn tcp_accept(listener: TcpListener, shared: Arc<Shared>, cfg: DnsConfig) {
    let permits = Arc::new(Semaphore::new(cfg.max_tcp_connections));
    // Dropped (so every connection aborted) when this task is.
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "dns: tcp accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        shared.stats.tcp_connections.fetch_add(1, Relaxed);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            shared.stats.tcp_rejected.fetch_add(1, Relaxed);
            debug!(%peer, "dns: tcp connection cap reached, closing");
            continue;
        };
        let worker = Worker::new(&shared);
        let idle = cfg.tcp_idle_timeout;
        conns.spawn(async move {
            serve_tcp(stream, peer, worker, idle).await;
            drop(permit);
        });
    }
}

/// Reads 2-byte-length-framed queries and answers them in order until the
/// peer closes, goes idle, or sends something unparsable (after which the
/// framing can't be trusted).
async fn serve_tcp(mut stream: TcpStream, peer: SocketAddr, mut w: Worker, idle: Duration) {
    let _ = stream.set_nodelay(true);
    let mut msg = Vec::with_capacity(512);
    let mut frame = Vec::with_capacity(514);
    let malformed = |w: &Worker, why: &str| {
        w.shared.stats.dropped_malformed.fetch_add(1, Relaxed);
        debug!(%peer, why, "dns: tcp stream dropped");
    };
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(idle, stream.read(&mut len)).await {
            Err(_) => return debug!(%peer, "dns: tcp idle, closing"),
            Ok(Err(e)) => return debug!(%peer, error = %e, "dns: tcp read"),
            Ok(Ok(0)) => return,
            Ok(Ok(1)) => match tokio::time::timeout(idle, stream.read_exact(&mut len[1..])).await {
                Ok(Ok(_)) => {}
                _ => return malformed(&w, "cut off in a length prefix"),
            },
            Ok(Ok(_)) => {}
        }
        let n = usize::from(u16::from_be_bytes(len));
        msg.resize(n, 0);
        match tokio::time::timeout(idle, stream.read_exact(&mut msg)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return malformed(&w, "cut off in a message"),
            Err(_) => return malformed(&w, "stalled in a message"),
        }
        let Some(resp) = w.handle(&msg, Transport::Tcp, peer) else {
            return;
        };
        frame.clear();
        frame.extend_from_slice(&(resp.len() as u16).to_be_bytes());
        frame.extend_from_slice(resp);
        match tokio::time::timeout(idle, stream.write_all(&frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return debug!(%peer, error = %e, "dns: tcp write"),
            Err(_) => return debug!(%peer, "dns: tcp write stalled, closing"),
        }
    }
}
