//! Bad input never hurts: garbage, truncated, oversized, replayed and
//! wrongly-encrypted packets and streams are dropped and counted, and the
//! agent keeps working. Needs no serf: the agents here are nuvol only.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

fn counter(a: &Agent, key: &str) -> u64 {
    let out = a.nuvol_cli(&["info", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["serf"][key]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn garbage_packets_and_streams_are_dropped_and_counted() {
    let key = {
        let out = std::process::Command::new(NUVOL)
            .arg("keygen")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let o = || Opts {
        profile: Some("local"),
        encrypt: Some(key.clone()),
        ..Default::default()
    };
    let mut a = Agent::start(Kind::Nuvol, "a", o());
    let b = Agent::start(
        Kind::Nuvol,
        "b",
        Opts {
            join: vec![a.bind],
            ..o()
        },
    );
    wait_for("joined", Duration::from_secs(30), || {
        String::from_utf8_lossy(&b.nuvol_cli(&["members"]).stdout)
            .matches("alive")
            .count()
            == 2
    });
    let rss_before = rss_kb(a.pid().unwrap());

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
        let _ = sock.send_to(&p, a.bind);
    }
    let _ = sock.send_to(&vec![1u8; 65000], a.bind);
    let _ = sock.send_to(&[1u8; 20], a.bind);
    let _ = sock.send_to(&[], a.bind);

    // Streams: garbage, a huge declared length, a slow partial frame.
    for payload in [
        vec![0xffu8; 100],
        vec![10, 0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        vec![6, 0x83],
        vec![9, 0xc1],
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
    ] {
        if let Ok(mut s) = TcpStream::connect(a.bind) {
            let _ = s.write_all(&payload);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
        }
    }
    // Garbage on the RPC port.
    if let Ok(mut s) = TcpStream::connect(a.rpc) {
        let _ = s.write_all(&[0xc1, 0xff, 0x00, 0x93]);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }

    assert!(a.is_running(), "agent survived:\n{}", a.log_text());
    let dropped = counter(&a, "packets_dropped") + counter(&a, "decrypt_failures");
    assert!(dropped >= 3000, "drops are counted ({dropped})");
    // Still a working member: a tag change from b reaches a.
    let out = b.nuvol_cli(&["tags", "--set", "after=garbage"]);
    assert!(out.status.success());
    wait_for("gossip still works", Duration::from_secs(30), || {
        String::from_utf8_lossy(&a.nuvol_cli(&["members"]).stdout).contains("after=garbage")
    });
    let rss_after = rss_kb(a.pid().unwrap());
    assert!(
        rss_after < rss_before + 32 * 1024,
        "no leak from garbage: {rss_before} kB -> {rss_after} kB"
    );
    assert!(a.log_text().contains("drop") || a.log_text().contains("decrypt"));
}

#[test]
fn bad_cli_arguments_fail_with_one_line() {
    let a = Agent::start(
        Kind::Nuvol,
        "a",
        Opts {
            profile: Some("local"),
            ..Default::default()
        },
    );
    for args in [
        vec!["tags", "--set", "novalue"],
        vec!["members", "--tag", "role"],
        vec!["members", "--name", "("],
        vec!["query", "--timeout", "5 parsecs", "q"],
        vec!["keys", "--install", "short"],
        vec!["join", "not-an-address:xx"],
        vec!["rtt", "ghost"],
    ] {
        let o = a.nuvol_cli(&args);
        assert!(!o.status.success(), "{args:?} should fail");
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(e.trim().lines().count(), 1, "{args:?}: {e}");
    }
    let o = std::process::Command::new(NUVOL)
        .args(["members", "--rpc-addr", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    // Bad agent flags: refused before anything starts.
    for args in [
        vec!["agent", "--protocol", "9"],
        vec!["agent", "--profile", "fast"],
        vec!["agent", "--bind", "1.2.3.4.5"],
        vec!["agent", "--encrypt", "nope"],
        vec!["agent", "--tag", "x"],
    ] {
        let o = std::process::Command::new(NUVOL)
            .args(&args)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?}");
    }
}
