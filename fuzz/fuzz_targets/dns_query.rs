#![no_main]
//! The DNS server's request handling through the server loop: every input
//! is one UDP datagram to a real `nuvol_dns::DnsServer` on loopback (slow;
//! `dns_respond` fuzzes the same handling in memory, over UDP and TCP
//! limits, much faster). The server runs once per process on its own
//! current_thread runtime with a single UDP worker, so datagrams are handled
//! in arrival order: after each input a known query is sent from a second
//! socket, and its answer means the input has been handled. A panic in the
//! server thread aborts the process (libFuzzer's panic hook), a server that
//! stops answering fails the harness, and any answer to the input must be a
//! response with the query's id, within the UDP size limit, that
//! `hickory_proto` decodes.
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use libfuzzer_sys::fuzz_target;

#[path = "common/dns.rs"]
mod dns;
use nuvol_dns::{DnsConfig, DnsServer, MAX_UDP_PAYLOAD};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

struct Harness {
    input: UdpSocket,
    probe: UdpSocket,
    probe_id: u16,
    probe_query: Vec<u8>,
}

static HARNESS: OnceLock<Mutex<Harness>> = OnceLock::new();

fn start() -> Mutex<Harness> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (tx, rx) = tokio::sync::watch::channel(Arc::new(dns::view()));
            let server = DnsServer::bind(
                DnsConfig {
                    addr: "127.0.0.1:0".parse().expect("addr"),
                    udp_workers: 1,
                    ..DnsConfig::default()
                },
                rx,
            )
            .await
            .expect("bind");
            ready_tx.send(server.local_addr()).expect("ready");
            server
                .run(std::future::pending())
                .await
                .expect("a DNS server task died");
            drop(tx);
        });
    });
    let addr = ready_rx.recv().expect("server thread died at start");
    let input = UdpSocket::bind("127.0.0.1:0").expect("socket");
    input.connect(addr).expect("connect");
    input.set_nonblocking(true).expect("nonblocking");
    let probe = UdpSocket::bind("127.0.0.1:0").expect("socket");
    probe.connect(addr).expect("connect");
    probe
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut m = Message::new();
    m.add_query(Query::query(
        Name::from_ascii("node-1.node.nuvol.").expect("name"),
        RecordType::A,
    ));
    Mutex::new(Harness {
        input,
        probe,
        probe_id: 0,
        probe_query: m.to_vec().expect("encode"),
    })
}

fuzz_target!(|data: &[u8]| {
    // Larger datagrams are cut to 4096 by the server anyway.
    if data.len() > 4096 {
        return;
    }
    let mut h = HARNESS
        .get_or_init(start)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // Drain anything left over (nothing should be).
    let mut buf = vec![0u8; 65536];
    while h.input.recv(&mut buf).is_ok() {}

    h.input.send(data).expect("send input");
    h.probe_id = h.probe_id.wrapping_add(1);
    let id = h.probe_id;
    let mut probe = h.probe_query.clone();
    probe[..2].copy_from_slice(&id.to_be_bytes());
    h.probe.send(&probe).expect("send probe");
    loop {
        let n = h
            .probe
            .recv(&mut buf)
            .expect("the server stopped answering");
        if n >= 2 && buf[..2] == id.to_be_bytes() {
            break;
        }
    }

    // The input has been handled; its answer, if any, is already queued.
    if let Ok(n) = h.input.recv(&mut buf) {
        dns::check_answer(data, &buf[..n], usize::from(MAX_UDP_PAYLOAD));
        assert!(
            h.input.recv(&mut buf).is_err(),
            "two answers to one datagram"
        );
    }
});
