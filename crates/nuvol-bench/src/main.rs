//! `nuvol-bench`: start N serf agents and N nuvol agents on loopback with the
//! same settings, one implementation after the other in the same run, and
//! report side by side: membership convergence after join, failure detection
//! after SIGKILL, tag and user-event propagation, and per-agent RSS and CPU
//! at steady state.
//!
//! Observation goes through serf's RPC protocol for both implementations
//! (persistent connections, members polled every `--poll-ms`), so the
//! measuring cost is the same for both: one msgpack request per agent per
//! poll, no process spawned per poll, and no polling at all during the
//! steady-state CPU window.
//!
//! Agents are started with `nuvol-testkit`'s spawner (the same one the
//! integration tests use) on loopback addresses from its allocator, so a
//! run never collides with tests running at the same time.

use anyhow::{bail, Result};
use clap::Parser;
use nuvol_rpc::RpcClient;
use nuvol_testkit::{AgentProcess, NuvolAgent, SerfAgent};
use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Benchmark nuvol against serf on loopback")]
struct Args {
    /// Agents per implementation.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// serf, nuvol or both.
    #[arg(long, default_value = "both")]
    r#impl: String,
    /// The nuvol binary to run.
    #[arg(long, default_value = "target/release/nuvol")]
    nuvol_bin: String,
    /// Timing profile for both.
    #[arg(long, default_value = "lan")]
    profile: String,
    /// Polling period of the observers.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// Steady-state window for CPU measurement, seconds.
    #[arg(long, default_value_t = 10)]
    steady_secs: u64,
    /// Repetitions of the event, tag and failure measurements (medians reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Instead of the full table: start a fresh cluster K times per
    /// implementation (alternating), measure only the convergence after the
    /// simultaneous join, and print every sample (to see the tail).
    #[arg(long)]
    convergence_runs: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Impl {
    Serf,
    Nuvol,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Serf => "serf",
            Impl::Nuvol => "nuvol",
        }
    }
}

/// A spawned agent of either kind; SIGKILLed on drop.
enum Agent {
    Serf(SerfAgent),
    Nuvol(NuvolAgent),
}

impl Deref for Agent {
    type Target = AgentProcess;
    fn deref(&self) -> &AgentProcess {
        match self {
            Agent::Serf(a) => a,
            Agent::Nuvol(a) => a,
        }
    }
}

impl DerefMut for Agent {
    fn deref_mut(&mut self) -> &mut AgentProcess {
        match self {
            Agent::Serf(a) => a,
            Agent::Nuvol(a) => a,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Results {
    converge: Option<Duration>,
    /// Medians over `--rounds` repetitions.
    failure: Option<Duration>,
    tags: Option<Duration>,
    event: Option<Duration>,
    rss_kb: f64,
    /// Anonymous memory only (heap, stacks): what a board cannot reclaim;
    /// the rest of RSS is the binary's and libraries' file pages.
    anon_kb: f64,
    cpu_pct: f64,
}

fn median(mut v: Vec<Option<Duration>>) -> Option<Duration> {
    if v.iter().any(Option::is_none) || v.is_empty() {
        return None;
    }
    v.sort();
    v[v.len() / 2]
}

/// Start agent `i` with identical settings for both implementations:
/// its own loopback address, ports 7946/7373, `--profile`, warn-level logs
/// (nuvol's data dir in the agent's temporary directory). Does not wait for
/// RPC: `connect` does.
fn spawn(which: Impl, args: &Args, i: usize) -> Result<Agent> {
    let name = format!("{}{i}", which.name());
    Ok(match which {
        Impl::Serf => Agent::Serf(
            SerfAgent::builder(&name)
                .profile(&args.profile)
                .log_level(Some("warn"))
                .wait_ready(false)
                .spawn()?,
        ),
        Impl::Nuvol => Agent::Nuvol(
            NuvolAgent::builder(&args.nuvol_bin, &name)
                .profile(&args.profile)
                .log_level(Some("warn"))
                .wait_ready(false)
                .spawn()?,
        ),
    })
}

async fn connect(a: &Agent) -> Result<RpcClient> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match RpcClient::connect(&a.rpc_addr().to_string(), None).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => {
                bail!("{}: {e}; log:\n{}", a.name(), a.log_tail(20))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Poll every observer until `pred` holds for all; return the elapsed time.
async fn until_all(
    clients: &mut [(usize, RpcClient)],
    start: Instant,
    poll: Duration,
    limit: Duration,
    pred: impl Fn(usize, &[nuvol_rpc::Member]) -> bool,
) -> Result<Option<Duration>> {
    let mut done = vec![false; clients.len()];
    let mut last = Duration::ZERO;
    loop {
        for (k, (i, c)) in clients.iter_mut().enumerate() {
            if done[k] {
                continue;
            }
            let ms = c.members().await?;
            if pred(*i, &ms) {
                done[k] = true;
                last = start.elapsed();
            }
        }
        if done.iter().all(|d| *d) {
            return Ok(Some(last));
        }
        if start.elapsed() > limit {
            return Ok(None);
        }
        tokio::time::sleep(poll).await;
    }
}

fn proc_rss_kb(pid: u32) -> f64 {
    proc_status_kb(pid, "VmRSS:")
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `RssAnon:`).
fn proc_status_kb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

fn proc_cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.to_owned();
            let f: Vec<&str> = after.split_whitespace().collect();
            // utime and stime are fields 14 and 15; after ")" they are 12, 13.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Everyone joins agent 0 at once; the time until every agent sees all alive.
async fn converge(
    agents: &[Agent],
    clients: &mut [(usize, RpcClient)],
    poll: Duration,
    limit: Duration,
) -> Result<Option<Duration>> {
    let n = agents.len();
    let seed = agents[0].bind().to_string();
    let start = Instant::now();
    let mut joins = Vec::new();
    for a in agents.iter().skip(1) {
        let c = connect(a).await?;
        let seed = seed.clone();
        joins.push(tokio::spawn(async move { c.join(&[seed], false).await }));
    }
    for j in joins {
        j.await??;
    }
    until_all(clients, start, poll, limit, |_, ms| {
        ms.iter().filter(|m| m.status == "alive").count() == n
    })
    .await
}

async fn run_impl(which: Impl, args: &Args) -> Result<Results> {
    let n = args.nodes;
    let poll = Duration::from_millis(args.poll_ms);
    let limit = Duration::from_secs(180);
    let mut agents = Vec::new();
    for i in 0..n {
        agents.push(spawn(which, args, i)?);
    }
    let mut clients = Vec::new();
    for (i, a) in agents.iter().enumerate() {
        clients.push((i, connect(a).await?));
    }
    let mut res = Results {
        converge: converge(&agents, &mut clients, poll, limit).await?,
        ..Results::default()
    };
    if args.convergence_runs.is_some() {
        return Ok(res);
    }

    // 2. Steady state: RSS and CPU over a quiet window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pids: Vec<u32> = agents.iter().filter_map(|a| a.pid()).collect();
    let t0: Vec<u64> = pids.iter().map(|p| proc_cpu_ticks(*p)).collect();
    tokio::time::sleep(Duration::from_secs(args.steady_secs)).await;
    let t1: Vec<u64> = pids.iter().map(|p| proc_cpu_ticks(*p)).collect();
    let hz = 100.0; // USER_HZ on Linux
    let cpu: f64 = t0
        .iter()
        .zip(&t1)
        .map(|(a, b)| (b - a) as f64 / hz / args.steady_secs as f64 * 100.0)
        .sum::<f64>()
        / n as f64;
    res.cpu_pct = cpu;
    res.rss_kb = pids.iter().map(|p| proc_rss_kb(*p)).sum::<f64>() / n as f64;
    res.anon_kb = pids
        .iter()
        .map(|p| proc_status_kb(*p, "RssAnon:"))
        .sum::<f64>()
        / n as f64;

    // 3. User event propagation: a stream on every agent, `rounds` events.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String, Instant)>();
    let mut stream_tasks = Vec::new();
    for (i, a) in agents.iter().enumerate() {
        let c = connect(a).await?;
        let mut stream = c.stream("user").await?;
        let tx = tx.clone();
        stream_tasks.push(tokio::spawn(async move {
            let _keep = c;
            while let Ok(Some(ev)) = stream.next().await {
                if let nuvol_rpc::StreamEvent::User(u) = ev {
                    if tx.send((i, u.name, Instant::now())).is_err() {
                        return;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut samples = Vec::new();
    for r in 0..args.rounds {
        let name = format!("bench{r}");
        let start = Instant::now();
        clients[r % n].1.user_event(&name, b"x", false).await?;
        let mut got = vec![false; n];
        let mut worst = None;
        while let Ok(Some((i, ev, t))) = tokio::time::timeout(limit, rx.recv()).await {
            if ev == name {
                got[i] = true;
                if got.iter().all(|g| *g) {
                    worst = Some(t.saturating_duration_since(start));
                    break;
                }
            }
        }
        samples.push(worst);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    res.event = median(samples);
    for t in stream_tasks {
        t.abort();
    }

    // 4. Tag propagation, `rounds` changes from different agents.
    let mut samples = Vec::new();
    for r in 0..args.rounds {
        let who = 1 + r % (n - 1);
        let start = Instant::now();
        let mut set = BTreeMap::new();
        set.insert("bench".to_string(), r.to_string());
        let idx = clients.iter().position(|(i, _)| *i == who).unwrap_or(0);
        clients[idx].1.update_tags::<String>(&set, &[]).await?;
        let tagged = agents[who].name().to_owned();
        let want = r.to_string();
        samples.push(
            until_all(&mut clients, start, poll, limit, |_, ms| {
                ms.iter()
                    .any(|m| m.name == tagged && m.tags.get("bench") == Some(&want))
            })
            .await?,
        );
    }
    res.tags = median(samples);

    // 5. Failure detection: SIGKILL agents one after another.
    let mut samples = Vec::new();
    for r in 0..args.rounds.min(n.saturating_sub(3)) {
        let victim = agents.len() - 1 - r;
        let vname = agents[victim].name().to_owned();
        agents[victim].kill();
        let start = Instant::now();
        clients.retain(|(i, _)| *i != victim);
        samples.push(
            until_all(&mut clients, start, poll, limit, |_, ms| {
                ms.iter().any(|m| m.name == vname && m.status == "failed")
            })
            .await?,
        );
    }
    res.failure = median(samples);

    drop(clients);
    drop(agents);
    Ok(res)
}

/// A table row: name, cell of one result, ratio of nuvol's to serf's.
type Row = (
    &'static str,
    Box<dyn Fn(&Results) -> String>,
    Box<dyn Fn(&Results, &Results) -> String>,
);

fn fmt_d(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.2} s", d.as_secs_f64()),
        None => "timeout".into(),
    }
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(n), Some(s)) if s.as_secs_f64() > 0.0 => {
            format!("{:.2}", n.as_secs_f64() / s.as_secs_f64())
        }
        _ => "-".into(),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let which: Vec<Impl> = match args.r#impl.as_str() {
        "both" => vec![Impl::Serf, Impl::Nuvol],
        "serf" => vec![Impl::Serf],
        "nuvol" => vec![Impl::Nuvol],
        other => bail!("unknown --impl {other:?}"),
    };
    if which.contains(&Impl::Nuvol) && !std::path::Path::new(&args.nuvol_bin).exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p nuvol`",
            args.nuvol_bin
        );
    }
    if let Some(k) = args.convergence_runs {
        let mut samples: BTreeMap<&str, Vec<Option<Duration>>> = BTreeMap::new();
        for run in 0..k {
            for w in &which {
                let r = run_impl(*w, &args).await?;
                eprintln!("run {run} {}: {}", w.name(), fmt_d(r.converge));
                samples.entry(w.name()).or_default().push(r.converge);
            }
        }
        println!(
            "N = {} agents, profile {}, {k} fresh clusters each, convergence after a simultaneous join (sorted)\n",
            args.nodes, args.profile
        );
        for (name, mut v) in samples {
            v.sort_by_key(|d| d.unwrap_or(Duration::MAX));
            let cells: Vec<String> = v.iter().map(|d| fmt_d(*d)).collect();
            println!("{name}: {}", cells.join(", "));
        }
        return Ok(());
    }
    let mut results = Vec::new();
    for w in &which {
        eprintln!("running {} x {} ...", args.nodes, w.name());
        results.push((*w, run_impl(*w, &args).await?));
    }
    println!(
        "N = {} agents per implementation, profile {}, observers poll every {} ms, medians of {} rounds\n",
        args.nodes, args.profile, args.poll_ms, args.rounds
    );
    let header: Vec<&str> = results.iter().map(|(w, _)| w.name()).collect();
    let both = results.len() == 2;
    println!(
        "| metric | {} |{}",
        header.join(" | "),
        if both { " nuvol/serf |" } else { "" }
    );
    println!(
        "|---|{}{}",
        "---|".repeat(header.len()),
        if both { "---|" } else { "" }
    );
    let rows: Vec<Row> = vec![
        (
            "membership convergence after join",
            Box::new(|r| fmt_d(r.converge)),
            Box::new(|n, s| ratio(n.converge, s.converge)),
        ),
        (
            "failure detection (SIGKILL, seen failed by all)",
            Box::new(|r| fmt_d(r.failure)),
            Box::new(|n, s| ratio(n.failure, s.failure)),
        ),
        (
            "tag change propagation",
            Box::new(|r| fmt_d(r.tags)),
            Box::new(|n, s| ratio(n.tags, s.tags)),
        ),
        (
            "user event propagation",
            Box::new(|r| fmt_d(r.event)),
            Box::new(|n, s| ratio(n.event, s.event)),
        ),
        (
            "RSS per agent (steady)",
            Box::new(|r| format!("{:.1} MiB", r.rss_kb / 1024.0)),
            Box::new(|n, s| format!("{:.2}", n.rss_kb / s.rss_kb.max(1.0))),
        ),
        (
            "anonymous RSS per agent (steady)",
            Box::new(|r| format!("{:.1} MiB", r.anon_kb / 1024.0)),
            Box::new(|n, s| format!("{:.2}", n.anon_kb / s.anon_kb.max(1.0))),
        ),
        (
            "CPU per agent (steady)",
            Box::new(|r| format!("{:.2} %", r.cpu_pct)),
            Box::new(|n, s| {
                if s.cpu_pct > 0.0 {
                    format!("{:.2}", n.cpu_pct / s.cpu_pct)
                } else {
                    "-".into()
                }
            }),
        ),
    ];
    for (name, f, r) in rows {
        let cells: Vec<String> = results.iter().map(|(_, res)| f(res)).collect();
        let extra = if both {
            let s = &results[0].1;
            let n = &results[1].1;
            format!(" {} |", r(n, s))
        } else {
            String::new()
        };
        println!("| {name} | {} |{extra}", cells.join(" | "));
    }
    Ok(())
}
