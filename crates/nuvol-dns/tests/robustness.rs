//! Garbage in: the server counts and drops it, and keeps answering.

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use nuvol_dns::{DnsConfig, DnsServer, DnsStats, DnsView, Instance};
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

/// Generous bound for a loopback round trip (a hang fails instead of blocking).
const RTT: Duration = Duration::from_secs(5);

fn view() -> DnsView {
    let mut v = DnsView::default();
    v.add_node_addr("alpha", "10.1.0.1".parse().unwrap());
    v.add_instance(
        "http",
        Instance {
            node: "alpha".into(),
            ip: "10.1.0.1".parse().unwrap(),
            port: 80,
        },
    );
    v
}

async fn start(cfg: DnsConfig) -> (SocketAddr, Arc<DnsStats>, watch::Sender<Arc<DnsView>>) {
    let (tx, rx) = watch::channel(Arc::new(view()));
    let server = DnsServer::bind(cfg, rx).await.expect("bind");
    let addr = server.local_addr();
    let stats = server.stats();
    // Stops when the test's runtime goes away.
    tokio::spawn(server.run(std::future::pending()));
    (addr, stats, tx)
}

fn cfg() -> DnsConfig {
    DnsConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..DnsConfig::default()
    }
}

fn query(id: u16) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id).add_query(Query::query(
        Name::from_ascii("http.service.nuvol.").unwrap(),
        RecordType::A,
    ));
    m.to_vec().unwrap()
}

async fn udp_ask(addr: SocketAddr, id: u16) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&query(id), addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, _) = tokio::time::timeout(RTT, sock.recv_from(&mut buf))
            .await
            .expect("udp answer in time")
            .unwrap();
        let m = Message::from_vec(&buf[..n]).expect("valid response");
        if m.id() == id {
            return m;
        }
    }
}

async fn tcp_ask(stream: &mut TcpStream, id: u16) -> Message {
    let q = query(id);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    stream.write_all(&framed).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(RTT, stream.read_exact(&mut len))
        .await
        .expect("tcp answer in time")
        .unwrap();
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.unwrap();
    let m = Message::from_vec(&body).unwrap();
    assert_eq!(m.id(), id);
    m
}

/// Waits until `f` holds (the server counts asynchronously).
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + RTT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_udp_is_counted_and_dropped() {
    let (addr, stats, _tx) = start(cfg()).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    // Always-malformed packets: exact count.
    let mut fixed: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0; 11],
        // One question claimed, none present.
        vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        // Question name with a compression pointer to itself.
        vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
        // Label longer than the packet.
        vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 60, b'a', b'b'],
        // 65535 additional records claimed.
        {
            let mut q = query(1);
            q[10] = 0xff;
            q[11] = 0xff;
            q
        },
    ];
    // A response (QR set): never answered, counted too.
    let mut resp = query(2);
    resp[2] |= 0x80;
    fixed.push(resp);
    for p in &fixed {
        sock.send_to(p, addr).await.unwrap();
    }
    let n = fixed.len() as u64;
    eventually("fixed garbage counted", || {
        stats.snapshot().dropped_malformed >= n
    })
    .await;
    assert_eq!(stats.snapshot().dropped_malformed, n);
    assert_eq!(stats.snapshot().queries, 0);

    // Random garbage; some headers parse, so only a lower bound on the
    // drops. Sent in small batches, each followed by a real query that
    // must still be answered (and which keeps the socket buffer from
    // overflowing, so no datagram is lost on the way).
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut asked = 0u64;
    for batch in 0..20u16 {
        for i in 0..25 {
            let len = rng.gen_range(0..700);
            let mut p: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if i % 2 == 0 && p.len() >= 12 {
                // Plausible header: a query with one question.
                p[2] &= 0x7f;
                p[4] = 0;
                p[5] = 1;
            }
            sock.send_to(&p, addr).await.unwrap();
        }
        let m = udp_ask(addr, 1000 + batch).await;
        assert_eq!(m.answers().len(), 1);
        asked += 1;
    }
    eventually("random garbage counted", || {
        let s = stats.snapshot();
        s.dropped_malformed + s.queries == n + 500 + asked
    })
    .await;
    // Random headers that do parse get FORMERR/NOTIMP (no bigger than the
    // packet, so no amplification); most packets don't.
    assert!(
        stats.snapshot().dropped_malformed >= n + 250,
        "{:?}",
        stats.snapshot()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_tcp_is_counted_and_dropped() {
    let (addr, stats, _tx) = start(DnsConfig {
        tcp_idle_timeout: Duration::from_millis(300),
        ..cfg()
    })
    .await;

    // A framed message that isn't DNS: counted, connection closed.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 5, 1, 2, 3, 4, 5]).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(RTT, s.read(&mut buf)).await.unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "closed: {n:?}");
    assert_eq!(stats.snapshot().dropped_malformed, 1);

    // Cut off mid-message: counted.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 200, 1, 2, 3]).await.unwrap();
    drop(s);
    eventually("cut-off message counted", || {
        stats.snapshot().dropped_malformed == 2
    })
    .await;

    // Stalled mid-message: closed after the idle timeout, counted.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 200, 1, 2, 3]).await.unwrap();
    let n = tokio::time::timeout(RTT, s.read(&mut buf)).await.unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "closed: {n:?}");
    assert_eq!(stats.snapshot().dropped_malformed, 3);

    // A megabyte of random bytes.
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let junk: Vec<u8> = (0..1 << 20).map(|_| rng.gen()).collect();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(&junk).await;
    drop(s);
    eventually("junk stream counted", || {
        stats.snapshot().dropped_malformed >= 4
    })
    .await;

    // Still answering, several queries on one connection.
    let mut s = TcpStream::connect(addr).await.unwrap();
    for id in 1..=3 {
        let m = tcp_ask(&mut s, id).await;
        assert_eq!(m.answers().len(), 1);
    }
    assert_eq!(udp_ask(addr, 77).await.answers().len(), 1);
    let st = stats.snapshot();
    assert_eq!(st.tcp_queries, 3, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connection_cap() {
    let (addr, stats, _tx) = start(DnsConfig {
        max_tcp_connections: 2,
        ..cfg()
    })
    .await;
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    tcp_ask(&mut a, 1).await;
    tcp_ask(&mut b, 2).await;
    // The third is accepted and closed at once.
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 4];
    let n = tokio::time::timeout(RTT, c.read(&mut buf)).await.unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "closed: {n:?}");
    assert_eq!(stats.snapshot().tcp_rejected, 1);
    // Freed slots are reused.
    drop(a);
    let mut d = None;
    let deadline = Instant::now() + RTT;
    while d.is_none() {
        assert!(Instant::now() < deadline, "slot never freed");
        let mut s = TcpStream::connect(addr).await.unwrap();
        let q = query(3);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        let _ = s.write_all(&framed).await;
        let mut len = [0u8; 2];
        if let Ok(Ok(_)) = tokio::time::timeout(RTT, s.read_exact(&mut len)).await {
            d = Some(s);
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tcp_ask(&mut b, 4).await;
}

#[tokio::test]
async fn bad_config_is_an_error() {
    let (_tx, rx) = watch::channel(Arc::new(DnsView::default()));
    for domain in ["", ".", "a..b", "*.x"] {
        let r = DnsServer::bind(
            DnsConfig {
                domain: domain.into(),
                ..cfg()
            },
            rx.clone(),
        )
        .await;
        assert!(r.is_err(), "{domain:?} accepted");
    }
    // Port taken by something else.
    let (_tx2, rx2) = watch::channel(Arc::new(DnsView::default()));
    let (addr, _, _) = start(cfg()).await;
    let r = DnsServer::bind(DnsConfig { addr, ..cfg() }, rx2).await;
    assert!(
        matches!(r, Err(nuvol_dns::DnsError::Bind { .. })),
        "{:?}",
        r.err()
    );
}
