//! `flood_bench`: how fast a node answers the failure detector's probes
//! while its REST API is saturated.
//!
//! For each `--nuvol-bin` given (e.g. this build and an older one, in the
//! same run): three agents on loopback (`lan` profile: 500 ms probe
//! timeout), the first publishing 50 services. The bench itself probes the
//! first node as a member would, a memberlist ping over UDP every
//! `--interval-ms`, and times each ack; first for `--secs` with the API
//! idle, then for `--secs` with `--clients` HTTP clients (one thread each,
//! one request in flight) looping over `/v1/services`, `/metrics`,
//! `/v1/members` and `/v1/agent`. It reports ack-time percentiles, lost
//! pings (no ack in 500 ms), requests served, and the suspicions the
//! cluster raised against the node (its "refuting a suspect message" log
//! lines, which every nuvol version writes).

use anyhow::{bail, Context, Result};
use clap::Parser;
use nuvol_testkit::NuvolAgent;
use nuvol_wire::memberlist::{decode_packet, Message, Ping};
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Probe acks of a nuvol node with and without a REST API flood")]
struct Args {
    /// nuvol binaries to measure, one after the other (repeatable).
    #[arg(long, required = true)]
    nuvol_bin: Vec<String>,
    /// Length of each phase.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// HTTP clients in the flood.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Time between two pings.
    #[arg(long, default_value_t = 10)]
    interval_ms: u64,
}

const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

struct Phase {
    rtts: Vec<Duration>,
    lost: usize,
    served: u64,
}

fn ping_loop(
    target: SocketAddr,
    node: &str,
    secs: u64,
    interval: Duration,
) -> Result<(Vec<Duration>, usize)> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut rtts = Vec::new();
    let mut lost = 0;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut seq: u32 = 1;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        seq += 1;
        let ping = Message::Ping(Ping {
            seq_no: seq,
            node: node.to_owned(),
            source_addr: None,
            source_port: 0,
            source_node: String::new(),
        });
        let sent = Instant::now();
        sock.send_to(&ping.encode(), target)?;
        let mut acked = false;
        while sent.elapsed() < PROBE_TIMEOUT {
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(p) = decode_packet(&buf[..n]) else {
                continue;
            };
            if p.messages
                .iter()
                .any(|m| matches!(m, Message::Ack(a) if a.seq_no == seq))
            {
                rtts.push(sent.elapsed());
                acked = true;
                break;
            }
        }
        if !acked {
            lost += 1;
        }
        std::thread::sleep(interval.saturating_sub(sent.elapsed()));
    }
    Ok((rtts, lost))
}

fn http_get(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").is_err() {
        return false;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).is_ok() && out.starts_with(b"HTTP/1.") && out.get(9..12) == Some(b"200")
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn run(bin: &str, a: &Args) -> Result<(Phase, Phase, usize)> {
    let mut agents: Vec<NuvolAgent> = Vec::new();
    for name in ["flood-a", "flood-b", "flood-c"] {
        let mut b = NuvolAgent::builder(bin, name)
            .profile("lan")
            .log_level(Some("debug"))
            .arg("--mdns=false")
            .arg("--dns-addr=");
        if let Some(first) = agents.first() {
            b = b.join_agent(first);
        }
        agents.push(
            b.spawn()
                .with_context(|| format!("starting {name} ({bin})"))?,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !agents.iter().all(|x| {
        x.cli(&["members", "--status", "alive"])
            .map(|o| o.lines().count() == 3)
            .unwrap_or(false)
    }) {
        if Instant::now() > deadline {
            bail!("the cluster did not form");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for p in 0..50 {
        agents[0].cli(&[
            "publish",
            &format!("service {p}"),
            "web",
            &(9000 + p).to_string(),
        ])?;
    }
    let gossip = agents[0].bind();
    let api = SocketAddr::new(agents[0].ip(), 7000);
    let interval = Duration::from_millis(a.interval_ms);

    let (rtts, lost) = ping_loop(gossip, "flood-a", a.secs, interval)?;
    let idle = Phase {
        rtts,
        lost,
        served: 0,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let flood = std::thread::scope(|s| -> Result<Phase> {
        for c in 0..a.clients {
            let (stop, served) = (stop.clone(), served.clone());
            s.spawn(move || {
                let paths = ["/v1/services", "/metrics", "/v1/members", "/v1/agent"];
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    if http_get(api, paths[i % paths.len()]) {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            });
        }
        let r = ping_loop(gossip, "flood-a", a.secs, interval);
        stop.store(true, Ordering::Relaxed);
        let (rtts, lost) = r?;
        Ok(Phase {
            rtts,
            lost,
            served: served.load(Ordering::Relaxed),
        })
    })?;
    // Let suspicions, if any, reach the node and its log.
    std::thread::sleep(Duration::from_secs(3));
    let refuted = agents[0]
        .log_text()
        .matches("refuting a suspect message")
        .count();
    Ok((idle, flood, refuted))
}

fn main() -> Result<()> {
    let a = Args::parse();
    println!(
        "flood_bench: {} s per phase, {} clients, ping every {} ms\n",
        a.secs, a.clients, a.interval_ms
    );
    println!("| binary | phase | pings | lost | p50 | p90 | p99 | max | requests served | suspicions of the node |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for bin in &a.nuvol_bin {
        let (idle, flood, refuted) = run(bin, &a)?;
        let mut p99s = Vec::new();
        for (name, mut ph) in [("API idle", idle), ("API flooded", flood)] {
            ph.rtts.sort();
            p99s.push(pct(&ph.rtts, 0.99));
            println!(
                "| `{bin}` | {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
                ph.rtts.len() + ph.lost,
                ph.lost,
                ms(pct(&ph.rtts, 0.5)),
                ms(pct(&ph.rtts, 0.9)),
                ms(pct(&ph.rtts, 0.99)),
                ms(ph.rtts.last().copied().unwrap_or_default()),
                ph.served,
                if name == "API idle" {
                    String::new()
                } else {
                    refuted.to_string()
                },
            );
        }
        println!(
            "| `{bin}` | p99 flooded / idle | | | | | {:.1} | | | |",
            p99s[1].as_secs_f64() / p99s[0].as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}
