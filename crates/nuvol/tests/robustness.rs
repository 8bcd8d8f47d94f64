//! Bad input never hurts: garbage, truncated, oversized, replayed and
//! wrongly-encrypted packets and streams are dropped and counted, and the
//! agent keeps working. Needs no serf: the agents here are nuvol only.

use nuvol_testkit::{run_cli, wait_until_msg, NuvolAgent, CLI_TIMEOUT};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const POLL: Duration = Duration::from_millis(200);

/// A counter of `nuvol info`'s serf section; panics if the agent does not
/// answer or lacks it (a failed call is never a count of 0).
fn counter(a: &NuvolAgent, key: &str) -> u64 {
    let out = a.cli(&["info", "--format", "json"]).expect("nuvol info");
    let v: serde_json::Value = serde_json::from_str(&out).expect("info JSON");
    v["serf"][key]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no counter serf.{key} in {v}"))
}

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {s}"))
}

/// Datagrams the kernel dropped for the UDP socket bound on `addr` (its
/// receive buffer was full), from `/proc/net/udp`'s last column.
fn kernel_udp_drops(addr: std::net::SocketAddr) -> u64 {
    let std::net::SocketAddr::V4(a) = addr else {
        panic!("IPv4 only: {addr}");
    };
    // The address as the kernel prints it: the u32 in host order, in hex.
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(a.ip().octets()),
        a.port()
    );
    let table = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
    let rows: Vec<u64> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&want.as_str())).then(|| {
                f.last()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or_else(|| panic!("no drops column: {l}"))
            })
        })
        .collect();
    assert!(!rows.is_empty(), "no UDP socket {want} in /proc/net/udp");
    rows.iter().sum()
}

fn members_text(a: &NuvolAgent) -> String {
    a.cli(&["members"]).expect("nuvol members")
}

#[test]
fn garbage_packets_and_streams_are_dropped_and_counted() {
    let key = {
        let mut c = Command::new(NUVOL);
        c.arg("keygen");
        run_cli(c, CLI_TIMEOUT)
            .unwrap()
            .assert_ok()
            .trim()
            .to_owned()
    };
    let o = |name: &str| {
        NuvolAgent::builder(NUVOL, name)
            .profile("local")
            .encrypt(&key)
    };
    let mut a = o("a").spawn().unwrap();
    let b = o("b").join_agent(&a).spawn().unwrap();
    wait_until_msg("joined", Duration::from_secs(30), POLL, || {
        members_text(&b).matches("alive").count() == 2
    })
    .unwrap();
    let rss_before = rss_kb(a.pid().unwrap());

    let kernel_before = kernel_udp_drops(a.bind());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Random garbage of every size, all message type bytes, truncated
    // encrypted frames, a maximal datagram.
    for i in 0..3000 {
        let len = (next() % 1500) as usize;
        let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(first) = p.first_mut() {
            *first = (i % 16) as u8;
        }
        let _ = sock.send_to(&p, a.bind());
    }
    let _ = sock.send_to(&vec![1u8; 65000], a.bind());
    let _ = sock.send_to(&[1u8; 20], a.bind());
    let _ = sock.send_to(&[], a.bind());

    // Streams: garbage, a huge declared length, a slow partial frame.
    for payload in [
        vec![0xffu8; 100],
        vec![10, 0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        vec![6, 0x83],
        vec![9, 0xc1],
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
    ] {
        if let Ok(mut s) = TcpStream::connect(a.bind()) {
            let _ = s.write_all(&payload);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
        }
    }
    // Garbage on the RPC port.
    if let Ok(mut s) = TcpStream::connect(a.rpc_addr()) {
        let _ = s.write_all(&[0xc1, 0xff, 0x00, 0x93]);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }

    assert!(a.is_running(), "agent survived:\n{}", a.log_text());
    // Every garbage datagram is counted by the agent, unless the kernel
    // dropped it before the agent could read it (a sender on loopback can
    // outpace the agent's receive buffer on a loaded machine; the kernel
    // counts those): wait until all 3000 are accounted for.
    let counted = || counter(&a, "packets_dropped") + counter(&a, "decrypt_failures");
    let lost = || kernel_udp_drops(a.bind()) - kernel_before;
    let accounted = wait_until_msg(
        "3000 garbage datagrams counted or dropped by the kernel",
        Duration::from_secs(30),
        POLL,
        || counted() + lost() >= 3000,
    );
    let dropped = counted();
    assert!(
        accounted.is_ok() && dropped > 0,
        "drops are counted: {dropped} by the agent, {} by the kernel",
        lost()
    );
    eprintln!(
        "garbage datagrams: {dropped} counted by the agent, {} lost in the kernel",
        lost()
    );
    // Still a working member: a tag change from b reaches a.
    b.cli(&["tags", "--set", "after=garbage"]).unwrap();
    wait_until_msg("gossip still works", Duration::from_secs(30), POLL, || {
        members_text(&a).contains("after=garbage")
    })
    .unwrap();
    let rss_after = rss_kb(a.pid().unwrap());
    assert!(
        rss_after < rss_before + 32 * 1024,
        "no leak from garbage: {rss_before} kB -> {rss_after} kB"
    );
    assert!(a.log_contains("drop") || a.log_contains("decrypt"));
}

#[test]
fn bad_cli_arguments_fail_with_one_line() {
    let a = NuvolAgent::builder(NUVOL, "a")
        .profile("local")
        .spawn()
        .unwrap();
    // Each with the part of the message that says what is wrong.
    for (args, what) in [
        (vec!["tags", "--set", "novalue"], "Invalid tag"),
        (vec!["members", "--tag", "role"], "Invalid tag"),
        (vec!["members", "--name", "("], "regular expression"),
        (vec!["query", "--timeout", "5 parsecs", "q"], "5 parsecs"),
        (vec!["keys", "--install", "short"], "invalid key \"short\""),
        (vec!["join", "not-an-address:xx"], "not-an-address:xx"),
        (vec!["rtt", "ghost"], "ghost"),
    ] {
        a.cli_run(&args).unwrap().assert_one_line_error(what);
    }
    // Nothing listens on port 1: the connection is refused.
    let mut c = Command::new(NUVOL);
    c.args(["members", "--rpc-addr", "127.0.0.1:1"]);
    let o = run_cli(c, CLI_TIMEOUT).unwrap();
    o.assert_one_line_error("127.0.0.1:1");
    assert!(o.stderr.contains("connection refused"), "{}", o.stderr);
    // Bad agent flags: refused before anything starts, with exit code 1
    // and one line saying which flag is wrong (an agent that started
    // instead would run until the CLI time limit and fail the test).
    for (args, what) in [
        (
            vec!["agent", "--protocol", "9"],
            "invalid gossip.protocol (--protocol): 9 is not supported",
        ),
        (
            vec!["agent", "--profile", "fast"],
            "unknown profile \"fast\"",
        ),
        (
            vec!["agent", "--bind", "1.2.3.4.5"],
            "invalid gossip.bind (--bind)",
        ),
        (
            vec!["agent", "--encrypt", "nope"],
            "invalid gossip.encrypt (--encrypt)",
        ),
        (vec!["agent", "--tag", "x"], "invalid tag \"x\""),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Command::new(NUVOL);
        c.args(&args)
            .arg("--rpc-addr=127.0.0.1:1")
            .arg(format!("--data-dir={}", dir.path().display()));
        run_cli(c, CLI_TIMEOUT).unwrap().assert_one_line_error(what);
    }
}
