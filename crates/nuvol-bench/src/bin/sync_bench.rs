//! `sync_bench`: how long a file written on one node takes to reach the
//! others through the Syncthings nuvol configures (goal: under 5 s).
//!
//! `--nodes` nuvol agents on loopback (`local` profile), each with `[sync]`
//! on, its own Syncthing home, GUI port and sync port on its own address,
//! and one folder shared by all. Once every node reports the folder in sync
//! with all its peers, each round writes a new file (`--size` bytes) on
//! node 0, written beside the folder and renamed into it (so Syncthing sees it whole), and times
//! until every other node has it whole (polled every `--poll-ms`). Nodes
//! write in turn with `--rotate`. Median, p90 and max are printed.

use anyhow::{bail, Context, Result};
use clap::Parser;
use nuvol_testkit::{free_port, fresh_ip, NuvolAgent};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Give up on one measurement after this long.
const LIMIT: Duration = Duration::from_secs(120);

#[derive(Parser, Debug, Clone)]
#[command(about = "File propagation time through nuvol-configured Syncthing")]
struct Args {
    /// Nodes sharing the folder.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Files written (one per round).
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Bytes per file.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// The nuvol binary to run.
    #[arg(long, default_value = "target/release/nuvol")]
    nuvol_bin: String,
    /// Polling period of the observer.
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// Pause between rounds, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pause_ms: u64,
    /// Write on each node in turn instead of always on node 0.
    #[arg(long)]
    rotate: bool,
}

struct Node {
    agent: NuvolAgent,
    folder: PathBuf,
    _dir: tempfile::TempDir,
}

fn spawn(args: &Args, i: usize, join: Option<&NuvolAgent>) -> Result<Node> {
    let dir = tempfile::tempdir()?;
    let ip = fresh_ip();
    let folder = dir.path().join("shared");
    let cfg = dir.path().join("nuvol.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sync]\nenable = true\nhome = '{}'\ngui = '127.0.0.1:{}'\nlisten = 'tcp://{ip}:{}'\npoll_every = '1s'\nfolders = [{{ id = 'bench', path = '{}' }}]\n",
            dir.path().join("st").display(),
            free_port(),
            free_port(),
            folder.display()
        ),
    )?;
    let mut b = NuvolAgent::builder(&args.nuvol_bin, &format!("syncb-{i}"))
        .ip(ip)
        .profile("local")
        .log_level(Some("info"))
        .arg(format!("--config={}", cfg.display()))
        .arg("--mdns=false")
        .arg("--apps=false");
    if let Some(j) = join {
        b = b.join_agent(j);
    }
    Ok(Node {
        agent: b.spawn().context("spawning an agent")?,
        folder,
        _dir: dir,
    })
}

fn in_sync(n: &Node, peers: usize) -> bool {
    n.agent
        .cli_run(&["sync", "status", "--format", "json"])
        .ok()
        .and_then(|o| serde_json::from_str::<serde_json::Value>(&o.stdout).ok())
        .is_some_and(|v| {
            v["folders"][0]["in_sync"] == true
                && v["folders"][0]["connected"]
                    .as_array()
                    .is_some_and(|l| l.len() == peers)
        })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.nodes < 2 {
        bail!("--nodes must be at least 2");
    }
    let first = spawn(&args, 0, None)?;
    let mut nodes = vec![first];
    for i in 1..args.nodes {
        let n = spawn(&args, i, Some(&nodes[0].agent))?;
        nodes.push(n);
    }
    let setup = Instant::now();
    while !nodes.iter().all(|n| in_sync(n, args.nodes - 1)) {
        if setup.elapsed() > LIMIT {
            bail!("the folder never got in sync on every node");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "{} nodes in sync {:.1} s after the last agent started",
        args.nodes,
        setup.elapsed().as_secs_f64()
    );
    let poll = Duration::from_millis(args.poll_ms);
    let mut times = Vec::new();
    for r in 0..args.rounds {
        let w = if args.rotate { r % args.nodes } else { 0 };
        let name = format!("round-{r}.bin");
        let data: Vec<u8> = (0..args.size).map(|i| (i * 31 + r) as u8).collect();
        // Written next to the folder, renamed into it: Syncthing sees it whole.
        let tmp = nodes[w]._dir.path().join(&name);
        std::fs::write(&tmp, &data)?;
        let start = Instant::now();
        std::fs::rename(&tmp, nodes[w].folder.join(&name))?;
        let mut pending: Vec<usize> = (0..args.nodes).filter(|i| *i != w).collect();
        while !pending.is_empty() {
            pending.retain(|i| {
                std::fs::read(nodes[*i].folder.join(&name)).map_or(true, |d| d != data)
            });
            if start.elapsed() > LIMIT {
                bail!("round {r}: the file never reached nodes {pending:?}");
            }
            if !pending.is_empty() {
                std::thread::sleep(poll);
            }
        }
        let t = start.elapsed();
        println!(
            "round {r}: written on node {w}, on all {} others after {} ms",
            args.nodes - 1,
            t.as_millis()
        );
        times.push(t);
        std::thread::sleep(Duration::from_millis(args.pause_ms));
    }
    times.sort();
    println!(
        "file on every node ({} rounds, {} nodes, {} bytes): median {} ms, p90 {} ms, max {} ms",
        times.len(),
        args.nodes,
        args.size,
        pct(&times, 0.5).as_millis(),
        pct(&times, 0.9).as_millis(),
        times.last().map_or(0, Duration::as_millis)
    );
    Ok(())
}
