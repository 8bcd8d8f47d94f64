//! `catalog_bench`: latency and throughput of catalog queries through the
//! real code paths, with a simulated catalog of 1,000 remote nodes.
//!
//! - The catalog is a real `nuvol_catalog::view::ClusterCatalog`, fed the way
//!   the agent feeds it: `update_member` (alive, one address, tags with the
//!   digest tag), then `apply_pull` with each node's full list (5 services
//!   over 20 types, TXT records, one check each; about 1 in 10 critical).
//! - HTTP: the agent's real router (`nuvol_agent::http::router`) with the
//!   catalog's routes over a `CatalogApi` that
//!   wraps the catalog in a `std::sync::RwLock` (as the agent does), on its
//!   own current_thread runtime in its own OS thread (as the agent runs it).
//!   `--clients` keep-alive HTTP clients on a multi-thread runtime issue
//!   `GET /v1/services?type=T`, `?node=N` and the unfiltered listing, one
//!   kind at a time, for `--secs` each.
//! - DNS: a `DnsView` built from the same catalog as the agent builds it
//!   (healthy instances, alive members' addresses), served by the real
//!   `DnsServer` on its own current_thread runtime thread, loaded by
//!   `--clients` UDP clients (one query in flight each) for `--secs`.
//! - In-process: `ClusterCatalog::entries` alone, for reference.
//!
//! ```text
//! cargo build --release -p nuvol-bench --bin catalog_bench
//! ./target/release/catalog_bench [--secs 5] [--clients 16]
//! ```

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::future::BoxFuture;
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use nuvol_agent::http::ApiError;
use nuvol_catalog::api::CatalogApi;
use nuvol_catalog::view::{ClusterCatalog, MemberView, NodeState, DIGEST_TAG};
use nuvol_catalog::{CheckView, Filter, Health, ServiceDef, ServiceEntry, Source};
use nuvol_dns::{DnsConfig, DnsServer, DnsView};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const NODES: u32 = 1000;
const PER_NODE: u32 = 5;
const TYPES: u32 = 20;
const TOKEN: &str = "catalog-bench-token";

#[derive(Parser, Debug)]
#[command(about = "Catalog query latency/throughput: HTTP API and DNS over a 1,000-node catalog")]
struct Args {
    /// Seconds of load per query kind.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Concurrent clients (HTTP keep-alive connections, UDP sockets).
    #[arg(long, default_value_t = 16)]
    clients: usize,
}

// ---------------------------------------------------------------- catalog

struct Node {
    name: String,
    ip: IpAddr,
}

fn node_ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 30, (n / 250) as u8, (n % 250 + 1) as u8))
}

fn stype(i: u32) -> String {
    format!("svc{i}")
}

fn node_services(n: u32, node: &Node) -> Vec<ServiceEntry> {
    (0..PER_NODE)
        .map(|s| {
            let health = if (n * 7 + s).is_multiple_of(10) {
                Health::Critical
            } else {
                Health::Passing
            };
            let port = 8000 + s as u16;
            ServiceEntry {
                node: node.name.clone(),
                stype: stype((n * PER_NODE + s) % TYPES),
                description: format!("service {s} on {}", node.name),
                host: format!("{}.bench.local", node.name),
                ip: node.ip.to_string(),
                port,
                cloud: "bench".into(),
                txt: vec![
                    ("path".into(), format!("/api/v{s}")),
                    ("version".into(), "1.4.2".into()),
                ],
                status: health.into(),
                source: Source::Nuvol,
                checks: vec![CheckView {
                    kind: "tcp".into(),
                    target: format!("{}:{port}", node.ip),
                    status: health,
                    output: if health == Health::Passing {
                        String::new()
                    } else {
                        "connection refused".into()
                    },
                    updated_ms: 1_700_000_000_000 + u64::from(n),
                }],
            }
        })
        .collect()
}

fn build_catalog() -> Result<(ClusterCatalog, Vec<Node>)> {
    let mut c = ClusterCatalog::new("bench-local", Duration::from_secs(3600));
    let nodes: Vec<Node> = (0..NODES)
        .map(|n| Node {
            name: format!("node-{n:04}"),
            ip: node_ip(n),
        })
        .collect();
    for (n, node) in nodes.iter().enumerate() {
        let digest = format!("d{n:08x}");
        let tags: BTreeMap<String, String> = [
            (DIGEST_TAG.to_owned(), digest.clone()),
            ("role".to_owned(), "node".to_owned()),
        ]
        .into_iter()
        .collect();
        c.update_member(
            &MemberView {
                name: &node.name,
                addr: node.ip,
                state: NodeState::Alive,
                tags: &tags,
            },
            Duration::ZERO,
        );
        c.apply_pull(&node.name, digest, node_services(n as u32, node));
    }
    let (known, listed) = c.sizes();
    if listed != (NODES * PER_NODE) as usize || !c.needs_pull().is_empty() {
        bail!("catalog not as built: {known} nodes, {listed} services");
    }
    Ok((c, nodes))
}

// ---------------------------------------------------------------- backend

struct BenchBackend {
    catalog: RwLock<ClusterCatalog>,
}

impl CatalogApi for BenchBackend {
    fn node_name(&self) -> String {
        "bench-local".into()
    }
    fn services(&self, filter: &Filter) -> Vec<ServiceEntry> {
        self.catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .entries(filter)
    }
    fn publish(&self, _def: ServiceDef) -> BoxFuture<'_, Result<ServiceEntry, ApiError>> {
        Box::pin(async { Err(ApiError::Forbidden("read-only benchmark backend".into())) })
    }
    fn unpublish(&self, _stype: String, _port: u16) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(async { Err(ApiError::Forbidden("read-only benchmark backend".into())) })
    }
}

/// Runs `make(stop)` on a new OS thread with a current_thread runtime;
/// returns what the setup future reports back, and the thread's stop switch.
fn server_thread<T, F, Fut>(name: &str, make: F) -> Result<(T, ServerThread)>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::oneshot::Receiver<()>, std::sync::mpsc::Sender<Result<T>>) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let handle = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(make(stop_rx, ready_tx));
        })?;
    let value = ready_rx
        .recv()
        .context("server thread exited before it was ready")??;
    Ok((
        value,
        ServerThread {
            stop: Some(stop_tx),
            handle: Some(handle),
        },
    ))
}

struct ServerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------- stats

#[derive(Default)]
struct Samples {
    ok: u64,
    errors: u64,
    bytes: u64,
    lat_us: Vec<u32>,
}

impl Samples {
    fn merge(&mut self, o: Samples) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.bytes += o.bytes;
        self.lat_us.extend(o.lat_us);
    }
    fn push(&mut self, t0: Instant, bytes: usize) {
        self.ok += 1;
        self.bytes += bytes as u64;
        self.lat_us
            .push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    }
}

struct Row {
    what: String,
    rate: f64,
    p50: u32,
    p90: u32,
    p99: u32,
    max: u32,
    avg_bytes: u64,
    errors: u64,
}

fn row(what: String, mut s: Samples, elapsed: Duration) -> Row {
    s.lat_us.sort_unstable();
    let pct = |p: f64| {
        let n = s.lat_us.len();
        if n == 0 {
            return 0;
        }
        s.lat_us[((n as f64 * p) as usize).min(n - 1)]
    };
    Row {
        what,
        rate: s.ok as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: s.lat_us.last().copied().unwrap_or(0),
        avg_bytes: s.bytes.checked_div(s.ok).unwrap_or(0),
        errors: s.errors,
    }
}

fn ms(us: u32) -> String {
    format!("{:.2} ms", f64::from(us) / 1000.0)
}

// ---------------------------------------------------------------- HTTP load

#[derive(Clone, Copy, Debug)]
enum HttpKind {
    ByType,
    ByNode,
    All,
}

impl HttpKind {
    fn label(self) -> &'static str {
        match self {
            HttpKind::ByType => "`GET /v1/services?type=<random of 20>` (250 entries)",
            HttpKind::ByNode => "`GET /v1/services?node=<random of 1,000>` (5 entries)",
            HttpKind::All => "`GET /v1/services` (5,000 entries)",
        }
    }
    fn url(self, base: &str, rng: &mut SmallRng) -> String {
        match self {
            HttpKind::ByType => {
                format!("{base}/v1/services?type={}", stype(rng.gen_range(0..TYPES)))
            }
            HttpKind::ByNode => {
                format!(
                    "{base}/v1/services?node=node-{:04}",
                    rng.gen_range(0..NODES)
                )
            }
            HttpKind::All => format!("{base}/v1/services"),
        }
    }
}

async fn http_client(base: Arc<String>, kind: HttpKind, seed: u64, dur: Duration) -> Samples {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()
        .expect("http client");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut s = Samples::default();
    // One untimed request: connection set-up is not what is measured.
    let _ = client.get(kind.url(&base, &mut rng)).send().await;
    let end = Instant::now() + dur;
    while Instant::now() < end {
        let url = kind.url(&base, &mut rng);
        let t0 = Instant::now();
        match client.get(url).send().await {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(b) => s.push(t0, b.len()),
                Err(_) => s.errors += 1,
            },
            _ => s.errors += 1,
        }
    }
    s
}

fn http_run(rt: &tokio::runtime::Runtime, base: &str, kind: HttpKind, a: &Args) -> Row {
    let base = Arc::new(base.to_owned());
    let dur = Duration::from_secs(a.secs);
    let started = Instant::now();
    let all = rt.block_on(async {
        let tasks: Vec<_> = (0..a.clients)
            .map(|c| tokio::spawn(http_client(base.clone(), kind, c as u64 + 1, dur)))
            .collect();
        let mut all = Samples::default();
        for t in tasks {
            all.merge(t.await.expect("client task"));
        }
        all
    });
    row(kind.label().to_owned(), all, started.elapsed())
}

// ---------------------------------------------------------------- DNS load

/// Built by the agent's own code: healthy instances, alive members.
fn dns_view(c: &ClusterCatalog, nodes: &[Node]) -> DnsView {
    nuvol_dns::component::view_of(
        &[nuvol_catalog::component::dns_names(
            &c.entries(&Filter::default()),
        )],
        nodes.iter().map(|n| (n.name.as_str(), n.ip)),
    )
}

const DNS_KINDS: [&str; 4] = [
    "DNS A `svcN.service.nuvol` (EDNS 1232, truncated)",
    "DNS SRV `_svcN._tcp.service.nuvol` (EDNS 1232, truncated)",
    "DNS A `node-NNNN.node.nuvol`",
    "DNS A unknown name (NXDOMAIN)",
];

/// 40% service A, 20% SRV, 30% node A, 10% NXDOMAIN, as `dns_qps`.
fn dns_queries() -> Vec<(usize, Vec<u8>)> {
    (0..100u32)
        .map(|i| {
            let (kind, name, qt) = match i % 10 {
                0..=3 => (0, format!("svc{}.service.nuvol.", i % TYPES), RecordType::A),
                4 | 5 => (
                    1,
                    format!("_svc{}._tcp.service.nuvol.", i % TYPES),
                    RecordType::SRV,
                ),
                6..=8 => (
                    2,
                    format!("node-{:04}.node.nuvol.", i * 7 % NODES),
                    RecordType::A,
                ),
                _ => (3, format!("nope{i}.service.nuvol."), RecordType::A),
            };
            let mut m = Message::new();
            m.add_query(Query::query(Name::from_ascii(&name).expect("name"), qt));
            let mut e = Edns::new();
            e.set_max_payload(1232);
            m.set_edns(e);
            (kind, m.to_vec().expect("encode"))
        })
        .collect()
}

async fn dns_client(
    addr: SocketAddr,
    qs: Arc<Vec<(usize, Vec<u8>)>>,
    c: usize,
    dur: Duration,
) -> Vec<Samples> {
    let mut out: Vec<Samples> = (0..DNS_KINDS.len()).map(|_| Samples::default()).collect();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("client socket");
    sock.connect(addr).await.expect("connect");
    let mut buf = vec![0u8; 4096];
    let mut q = Vec::new();
    let mut i = c * 7;
    let mut id = (c as u16).wrapping_mul(4099);
    let end = Instant::now() + dur;
    while Instant::now() < end {
        let (kind, bytes) = &qs[i % qs.len()];
        i += 1;
        id = id.wrapping_add(1);
        q.clear();
        q.extend_from_slice(bytes);
        q[..2].copy_from_slice(&id.to_be_bytes());
        let s = &mut out[*kind];
        let t0 = Instant::now();
        if sock.send(&q).await.is_err() {
            s.errors += 1;
            continue;
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
                Ok(Ok(n)) if n >= 12 && buf[..2] == id.to_be_bytes() => {
                    s.push(t0, n);
                    break;
                }
                Ok(Ok(_)) => continue, // a late answer to an earlier query
                Ok(Err(_)) | Err(_) => {
                    s.errors += 1;
                    break;
                }
            }
        }
    }
    out
}

fn dns_run(rt: &tokio::runtime::Runtime, addr: SocketAddr, a: &Args) -> Vec<Row> {
    let qs = Arc::new(dns_queries());
    let dur = Duration::from_secs(a.secs);
    let started = Instant::now();
    let per_client = rt.block_on(async {
        let tasks: Vec<_> = (0..a.clients)
            .map(|c| tokio::spawn(dns_client(addr, qs.clone(), c, dur)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.expect("client task"));
        }
        all
    });
    let elapsed = started.elapsed();
    let mut kinds: Vec<Samples> = (0..DNS_KINDS.len()).map(|_| Samples::default()).collect();
    let mut total = Samples::default();
    for client in per_client {
        for (k, s) in client.into_iter().enumerate() {
            total.lat_us.extend_from_slice(&s.lat_us);
            total.ok += s.ok;
            total.errors += s.errors;
            total.bytes += s.bytes;
            kinds[k].merge(s);
        }
    }
    let mut rows = vec![row(
        "DNS over UDP, mix 40% A service / 20% SRV / 30% A node / 10% NXDOMAIN".into(),
        total,
        elapsed,
    )];
    for (k, s) in kinds.into_iter().enumerate() {
        rows.push(row(format!("… of which {}", DNS_KINDS[k]), s, elapsed));
    }
    rows
}

// ---------------------------------------------------------------- in-process

type MakeFilter = Box<dyn Fn(&mut SmallRng) -> Filter>;

fn in_process(c: &ClusterCatalog, secs: f64) -> Vec<(String, f64, usize)> {
    let mut rng = SmallRng::seed_from_u64(7);
    let kinds: [(&str, MakeFilter); 3] = [
        (
            "`entries(type)`",
            Box::new(|r: &mut SmallRng| Filter {
                stype: Some(stype(r.gen_range(0..TYPES))),
                node: None,
            }),
        ),
        (
            "`entries(node)`",
            Box::new(|r: &mut SmallRng| Filter {
                stype: None,
                node: Some(format!("node-{:04}", r.gen_range(0..NODES))),
            }),
        ),
        (
            "`entries()` (all)",
            Box::new(|_: &mut SmallRng| Filter::default()),
        ),
    ];
    kinds
        .iter()
        .map(|(name, f)| {
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let t0 = Instant::now();
            let (mut n, mut len) = (0u64, 0usize);
            while Instant::now() < end {
                let filter = f(&mut rng);
                len = std::hint::black_box(c.entries(&filter)).len();
                n += 1;
            }
            let mean_us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
            ((*name).to_owned(), mean_us, len)
        })
        .collect()
}

// ---------------------------------------------------------------- main

fn main() -> Result<()> {
    let a = Args::parse();
    if a.clients == 0 || a.secs == 0 {
        bail!("--clients and --secs must be at least 1");
    }
    let cmdline = std::env::args().collect::<Vec<_>>().join(" ");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let t0 = Instant::now();
    let (catalog, nodes) = build_catalog()?;
    let build_ms = t0.elapsed().as_secs_f64() * 1e3;
    let view = dns_view(&catalog, &nodes);
    let healthy: usize = view.services.values().map(Vec::len).sum();
    let direct = in_process(&catalog, 1.0);

    let backend = Arc::new(BenchBackend {
        catalog: RwLock::new(catalog),
    });

    // The API server: the agent's router with the catalog's routes, on its
    // own OS thread with a current_thread runtime.
    let api_backend: Arc<dyn CatalogApi> = backend.clone();
    let (api_addr, api_thread) = server_thread("api-server", move |stop, ready| async move {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(anyhow::anyhow!("API bind: {e}")));
                return;
            }
        };
        let app = nuvol_agent::http::router(
            nuvol_catalog::api::routes(api_backend),
            nuvol_agent::http::Auth::token(Arc::from(TOKEN)),
            nuvol_agent::http::HttpMetrics::default(),
        );
        let local = listener.local_addr().map_err(anyhow::Error::from);
        let _ = ready.send(local);
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await;
    })?;

    // The DNS server: likewise, with the agent's config (default workers).
    let (dns_tx, dns_rx) = tokio::sync::watch::channel(Arc::new(view));
    let dns_cfg = DnsConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        ..DnsConfig::default()
    };
    let (dns_addr, dns_thread) = server_thread("dns-server", move |stop, ready| async move {
        let server = match DnsServer::bind(dns_cfg, dns_rx).await {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(anyhow::anyhow!("DNS bind: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok((server.local_addr(), server.stats())));
        let _ = server
            .run(async {
                let _ = stop.await;
            })
            .await;
    })?;
    let (dns_addr, dns_stats) = dns_addr;

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // Sanity: auth is on, and the listing is complete.
    let base = format!("http://{api_addr}");
    client_rt.block_on(async {
        let c = reqwest::Client::new();
        let r = c
            .post(format!("{base}/v1/services"))
            .body("{}")
            .send()
            .await?;
        if r.status() != reqwest::StatusCode::UNAUTHORIZED {
            bail!("POST without token gave {}", r.status());
        }
        let body = c
            .get(format!("{base}/v1/services"))
            .send()
            .await?
            .text()
            .await?;
        let n = body.matches("\"node\":").count();
        if n != (NODES * PER_NODE) as usize {
            bail!("unfiltered listing has {n} entries");
        }
        Ok(())
    })?;

    let mut rows = Vec::new();
    for kind in [HttpKind::ByType, HttpKind::ByNode, HttpKind::All] {
        eprintln!("HTTP {kind:?}: {} s, {} clients", a.secs, a.clients);
        rows.push(http_run(&client_rt, &base, kind, &a));
    }
    eprintln!("DNS: {} s, {} clients", a.secs, a.clients);
    rows.extend(dns_run(&client_rt, dns_addr, &a));
    let dns_counters = dns_stats.snapshot();

    drop(client_rt);
    drop(api_thread);
    drop(dns_tx);
    drop(dns_thread);

    println!("## Catalog queries: HTTP API and DNS, 1,000 nodes\n");
    println!("```sh\n{cmdline}\n```\n");
    println!(
        "Catalog: {NODES} remote nodes (alive, digest tag, full list pulled) × {PER_NODE} services \
         over {TYPES} types = {} entries, TXT records and one check each; {healthy} healthy \
         (served by DNS), the rest critical. Built in {build_ms:.0} ms.",
        NODES * PER_NODE
    );
    println!(
        "Servers: the real `nuvol_api` server and `nuvol_dns::DnsServer` (default config: {} UDP \
         worker tasks), each on its own current_thread tokio runtime in its own OS thread, as the \
         agent runs them. Clients: {} keep-alive HTTP connections / UDP sockets, one request in \
         flight each, on a multi-thread runtime ({cores} workers) in the same process; {} s per \
         row. Machine: {cores} cores shared by servers and clients.\n",
        cores.min(8),
        a.clients,
        a.secs
    );
    println!("| query | req/s | p50 | p90 | p99 | max | bytes/resp | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            r.what,
            r.rate,
            ms(r.p50),
            ms(r.p90),
            ms(r.p99),
            ms(r.max),
            r.avg_bytes,
            r.errors
        );
    }
    println!(
        "\nIn-process `ClusterCatalog::entries` (one thread, no HTTP, no JSON), mean per call:\n"
    );
    println!("| call | mean | entries |");
    println!("|---|---|---|");
    for (name, mean_us, len) in direct {
        println!("| {name} | {mean_us:.1} µs | {len} |");
    }
    println!("\nDNS server counters: {dns_counters:?}");
    Ok(())
}
