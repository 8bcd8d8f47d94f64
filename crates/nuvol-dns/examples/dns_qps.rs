//! UDP load test of the DNS server on loopback.
//!
//! Loads a simulated catalog (1,000 nodes × 3 services over 20 types: ~150
//! instances per type), starts the server on 127.0.0.1 on its own runtime,
//! and fires queries from N client tasks (each with its own socket, one
//! query in flight) for a fixed time, then prints queries/s and latency
//! percentiles. The query mix: 40% `TYPE.service` A, 20% `_TYPE._tcp` SRV,
//! 30% `NODE.node` A, 10% unknown names (NXDOMAIN); every query carries EDNS
//! with a 1232-byte payload, so the service answers are truncated to fit.
//!
//! ```text
//! cargo run --release -p nuvol-dns --example dns_qps -- [--clients 16] [--secs 5]
//!     [--server-threads 1] [--client-threads 1]
//! ```

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use nuvol_dns::{DnsConfig, DnsServer, DnsView, Instance};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

struct Args {
    clients: usize,
    secs: u64,
    server_threads: usize,
    client_threads: usize,
}

fn args() -> Args {
    let mut a = Args {
        clients: 16,
        secs: 5,
        server_threads: 1,
        client_threads: 1,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let v = it.next().and_then(|v| v.parse::<u64>().ok());
        let Some(v) = v else {
            eprintln!(
                "usage: dns_qps [--clients N] [--secs S] [--server-threads N] [--client-threads N]"
            );
            std::process::exit(2);
        };
        match k.as_str() {
            "--clients" => a.clients = v.max(1) as usize,
            "--secs" => a.secs = v.clamp(1, 120),
            "--server-threads" => a.server_threads = v.max(1) as usize,
            "--client-threads" => a.client_threads = v.max(1) as usize,
            _ => {
                eprintln!("unknown flag {k}");
                std::process::exit(2);
            }
        }
    }
    a
}

fn catalog() -> DnsView {
    let mut v = DnsView::default();
    for n in 0..1000u32 {
        let node = format!("node-{n}");
        let ip = IpAddr::V4(Ipv4Addr::new(10, 20, (n / 250) as u8, (n % 250 + 1) as u8));
        v.add_node_addr(&node, ip);
        for s in 0..3u32 {
            let ty = format!("svc{}", (n * 3 + s) % 20);
            v.add_instance(
                &ty,
                Instance {
                    node: node.clone(),
                    ip,
                    port: 8000 + s as u16,
                },
            );
        }
    }
    v
}

fn queries() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..100u32 {
        let (name, qt) = match i % 10 {
            0..=3 => (format!("svc{}.service.nuvol.", i % 20), RecordType::A),
            4 | 5 => (
                format!("_svc{}._tcp.service.nuvol.", i % 20),
                RecordType::SRV,
            ),
            6..=8 => (format!("node-{}.node.nuvol.", i * 7 % 1000), RecordType::A),
            _ => (format!("nope{i}.service.nuvol."), RecordType::A),
        };
        let mut m = Message::new();
        m.add_query(Query::query(Name::from_ascii(&name).expect("name"), qt));
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
        out.push(m.to_vec().expect("encode"));
    }
    out
}

fn main() {
    // Server logs on stderr with e.g. RUST_LOG=nuvol_dns=debug (slow!).
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::ERROR)
        });
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    let a = args();
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(catalog()));
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.server_threads)
        .enable_all()
        .build()
        .expect("server runtime");
    let cfg = DnsConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        udp_workers: a.server_threads,
        ..DnsConfig::default()
    };
    let server = server_rt.block_on(DnsServer::bind(cfg, rx)).expect("bind");
    let addr = server.local_addr();
    let stats = server.stats();
    server_rt.spawn(server.run(std::future::pending()));

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.client_threads)
        .enable_all()
        .build()
        .expect("client runtime");
    let qs = Arc::new(queries());
    let dur = Duration::from_secs(a.secs);
    let started = Instant::now();
    let results = client_rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..a.clients {
            tasks.push(tokio::spawn(client(addr, qs.clone(), c, dur)));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.expect("client task"));
        }
        all
    });
    let elapsed = started.elapsed();
    drop(tx);

    let mut lat: Vec<u32> = Vec::new();
    let (mut ok, mut lost, mut tc) = (0u64, 0u64, 0u64);
    for r in results {
        lat.extend(r.latencies_us);
        ok += r.ok;
        lost += r.lost;
        tc += r.truncated;
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let s = stats.snapshot();
    println!(
        "catalog: 1000 nodes x 3 services over 20 types; clients {}, server threads {}, client threads {}, {:.1}s",
        a.clients,
        a.server_threads,
        a.client_threads,
        elapsed.as_secs_f64()
    );
    println!(
        "answered {ok} ({:.0} queries/s), timed out {lost}, truncated {tc}",
        ok as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency p50 {}us, p99 {}us, p99.9 {}us, max {}us",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        lat.last().copied().unwrap_or(0)
    );
    println!("server stats: {s:?}");
}

struct ClientResult {
    ok: u64,
    lost: u64,
    truncated: u64,
    latencies_us: Vec<u32>,
}

async fn client(addr: SocketAddr, qs: Arc<Vec<Vec<u8>>>, c: usize, dur: Duration) -> ClientResult {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
    sock.connect(addr).await.expect("connect");
    let mut r = ClientResult {
        ok: 0,
        lost: 0,
        truncated: 0,
        latencies_us: Vec::with_capacity(1 << 16),
    };
    let mut buf = vec![0u8; 4096];
    let mut q = Vec::new();
    let end = Instant::now() + dur;
    let mut i = c * 7;
    let mut id: u16 = (c as u16).wrapping_mul(4099);
    while Instant::now() < end {
        q.clear();
        q.extend_from_slice(&qs[i % qs.len()]);
        i += 1;
        id = id.wrapping_add(1);
        q[..2].copy_from_slice(&id.to_be_bytes());
        let t0 = Instant::now();
        if sock.send(&q).await.is_err() {
            r.lost += 1;
            continue;
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
                Ok(Ok(n)) if n >= 12 && buf[..2] == id.to_be_bytes() => {
                    r.latencies_us
                        .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    r.ok += 1;
                    if buf[2] & 0x02 != 0 {
                        r.truncated += 1;
                    }
                    break;
                }
                Ok(Ok(_)) => continue, // a late answer to an earlier query
                Ok(Err(_)) | Err(_) => {
                    r.lost += 1;
                    break;
                }
            }
        }
    }
    r
}
