//! `publish_bench`: publish-to-visible latency of the service catalog.
//!
//! For an N-node cluster of each implementation, on loopback, `lan` profile:
//!
//! - **serf**: the serf-equivalent of publishing a service, i.e. what
//!   avahi-ps does on a Cloudy node: `serf tags -set services=<value>` on one
//!   agent (through the RPC client), the value being Cloudy's encoding
//!   (base64 of bzip2 of JSON) of one new service, different each round;
//!   time until every agent's member list shows the new value.
//! - **nuvol**: `POST /v1/services` on one agent's REST API (a new `bench`
//!   service each round); time until every agent's `GET
//!   /v1/services?type=bench` lists it.
//! - **nuvol, big list**: one agent publishes `--big` services with ~200
//!   bytes of TXT each (far beyond the 512-byte tag budget, so they travel
//!   as a digest tag plus a TCP pull of the full list); time from the last
//!   publish call returning until every agent lists all of them.
//!
//! Every agent is observed by its own task polling every `--poll-ms`, so the
//! figure for a round is the time at which the slowest agent was first seen
//! with the change (resolution: one poll period plus one request).
//! The implementations run one after the other, never at the same time.

use anyhow::{bail, Context, Result};
use clap::Parser;
use nuvol_api::ApiClient;
use nuvol_catalog::{CloudyService, Filter, ServiceDef, ServiceEntry, Source};
use nuvol_rpc::RpcClient;
use nuvol_testkit::{AgentProcess, NuvolAgent, SerfAgent};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One gossip round of the `lan` profile (memberlist's GossipInterval).
const GOSSIP_ROUND: Duration = Duration::from_millis(200);
/// Give up on one measurement after this long.
const LIMIT: Duration = Duration::from_secs(120);

#[derive(Parser, Debug, Clone)]
#[command(about = "Publish-to-visible latency: nuvol's catalog vs a serf `services` tag change")]
struct Args {
    /// Agents per implementation.
    #[arg(long, default_value_t = 50)]
    nodes: usize,
    /// Publications (tag changes) per implementation; median and max reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The nuvol binary to run.
    #[arg(long, default_value = "target/release/nuvol")]
    nuvol_bin: String,
    /// Timing profile for both.
    #[arg(long, default_value = "lan")]
    profile: String,
    /// Polling period of each agent's observer.
    #[arg(long, default_value_t = 25)]
    poll_ms: u64,
    /// Services in the big-list case (0 skips it).
    #[arg(long, default_value_t = 100)]
    big: usize,
    /// TXT bytes per service in the big-list case.
    #[arg(long, default_value_t = 200)]
    big_txt: usize,
    /// serf, nuvol or both.
    #[arg(long, default_value = "both")]
    r#impl: String,
    /// Pause between rounds, milliseconds (lets the previous change settle).
    #[arg(long, default_value_t = 1000)]
    pause_ms: u64,
}

/// One round's outcome: the slowest agent's time, `None` on timeout.
#[derive(Debug, Clone, Default)]
struct Round {
    worst: Option<Duration>,
    /// The publish call / tag update itself.
    call: Duration,
    /// nuvol: how many agents first saw it from the Cloudy tag, from a pull.
    via_tag: usize,
    via_pull: usize,
}

#[derive(Debug, Default)]
struct Stats {
    median: Option<Duration>,
    max: Option<Duration>,
}

fn stats(rounds: &[Round]) -> Stats {
    if rounds.is_empty() || rounds.iter().any(|r| r.worst.is_none()) {
        return Stats::default();
    }
    let mut v: Vec<Duration> = rounds.iter().filter_map(|r| r.worst).collect();
    v.sort();
    Stats {
        median: Some(v[v.len() / 2]),
        max: v.last().copied(),
    }
}

fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.0} ms", d.as_secs_f64() * 1000.0),
        None => "timeout".into(),
    }
}

/// Connect to an agent's RPC port, retrying while it starts.
async fn connect(a: &AgentProcess) -> Result<RpcClient> {
    let deadline = Instant::now() + Duration::from_secs(30);
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

/// Run `probe(i)` for every agent `i` concurrently, each every `poll` until
/// it returns `Some`; the elapsed time since `start` at which each agent
/// first succeeded (`None`: not within `LIMIT`).
async fn observe_all<T, F, Fut>(
    n: usize,
    start: Instant,
    poll: Duration,
    probe: F,
) -> Vec<Option<(Duration, T)>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Option<T>> + Send + 'static,
{
    let mut result: Vec<Option<(Duration, T)>> = (0..n).map(|_| None).collect();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let fut = probe(i);
        set.spawn(async move { (i, fut.await) });
    }
    while let Some(j) = set.join_next().await {
        let Ok((i, out)) = j else { continue };
        match out {
            Some(v) => result[i] = Some((start.elapsed(), v)),
            None if start.elapsed() > LIMIT => {}
            None => {
                let fut = probe(i);
                set.spawn(async move {
                    tokio::time::sleep(poll).await;
                    (i, fut.await)
                });
            }
        }
    }
    result
}

fn worst<T>(seen: &[Option<(Duration, T)>]) -> Option<Duration> {
    let mut w = Duration::ZERO;
    for s in seen {
        w = w.max(s.as_ref()?.0);
    }
    Some(w)
}

/// Poll every agent's member list until all list `n` alive members.
async fn wait_converged(clients: &[Arc<RpcClient>], poll: Duration) -> Result<()> {
    let n = clients.len();
    let start = Instant::now();
    let seen = observe_all(n, start, poll, |i| {
        let c = clients[i].clone();
        async move {
            let ms = c.members().await.ok()?;
            (ms.iter().filter(|m| m.status == "alive").count() == n).then_some(())
        }
    })
    .await;
    worst(&seen).context("cluster did not converge")?;
    Ok(())
}

/// Everyone joins agent 0 at once.
async fn join_all(agents: &[&AgentProcess], clients: &[Arc<RpcClient>]) -> Result<()> {
    let seed = agents[0].bind().to_string();
    let mut joins = Vec::new();
    for c in clients.iter().skip(1) {
        let c = c.clone();
        let seed = seed.clone();
        joins.push(tokio::spawn(async move { c.join(&[seed], false).await }));
    }
    for j in joins {
        j.await??;
    }
    Ok(())
}

/// The publisher of round `r`: spread over the cluster, never agent 0 twice.
fn publisher(r: usize, n: usize) -> usize {
    (1 + r * 7) % n
}

fn bench_service(r: usize) -> (u16, Vec<(String, String)>) {
    let port = 10000 + r as u16;
    (
        port,
        vec![
            ("path".to_owned(), format!("/bench/{r}")),
            ("version".to_owned(), "1.0".to_owned()),
        ],
    )
}

// ---------------------------------------------------------------- serf --

struct SerfResults {
    converge: Duration,
    rounds: Vec<Round>,
    tag_len: usize,
}

async fn run_serf(args: &Args) -> Result<SerfResults> {
    let n = args.nodes;
    let poll = Duration::from_millis(args.poll_ms);
    let mut agents = Vec::with_capacity(n);
    for i in 0..n {
        agents.push(
            SerfAgent::builder(&format!("serf{i}"))
                .profile(&args.profile)
                .log_level(Some("warn"))
                .wait_ready(false)
                .spawn()?,
        );
    }
    let procs: Vec<&AgentProcess> = agents.iter().map(|a| &**a).collect();
    let mut clients = Vec::with_capacity(n);
    for a in &procs {
        clients.push(Arc::new(connect(a).await?));
    }
    let t0 = Instant::now();
    join_all(&procs, &clients).await?;
    wait_converged(&clients, poll).await?;
    let converge = t0.elapsed();
    eprintln!(
        "serf: {n} agents converged ({:.2} s)",
        converge.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut rounds = Vec::new();
    let mut tag_len = 0;
    for r in 0..args.rounds {
        let who = publisher(r, n);
        let name = procs[who].name().to_owned();
        let ip = procs[who].ip().to_string();
        let (port, txt) = bench_service(r);
        let svc = CloudyService::new(
            &format!("bench service {r}"),
            "bench",
            port,
            txt,
            &name,
            "nuvol",
            &ip,
        )?;
        let value = nuvol_catalog::cloudy::encode_services(&[svc]);
        tag_len = value.len();
        let mut set = BTreeMap::new();
        set.insert("services".to_owned(), value.clone());
        let value = Arc::new(value);
        let name = Arc::new(name);
        // serf's tags call returns only once the update is broadcast
        // (memberlist's UpdateNode), so the observers start with the call.
        // A connection of its own: serf answers one connection's requests
        // in order, so the publisher's observer must not queue behind it.
        let c = connect(procs[who]).await?;
        let start = Instant::now();
        let call = tokio::spawn(async move {
            c.update_tags::<String>(&set, &[]).await?;
            Ok::<_, anyhow::Error>(start.elapsed())
        });
        let seen = observe_all(n, start, poll, |i| {
            let c = clients[i].clone();
            let (value, name) = (value.clone(), name.clone());
            async move {
                let ms = c.members().await.ok()?;
                ms.iter()
                    .any(|m| m.name == *name && m.tags.get("services") == Some(&*value))
                    .then_some(())
            }
        })
        .await;
        let call = call.await??;
        let round = Round {
            worst: worst(&seen),
            call,
            ..Round::default()
        };
        eprintln!(
            "serf round {r}: {name} set services ({} bytes), all {n} see it after {} (call {:.1} ms)",
            value.len(),
            ms(round.worst),
            call.as_secs_f64() * 1000.0
        );
        rounds.push(round);
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }
    drop(clients);
    drop(procs);
    drop(agents);
    Ok(SerfResults {
        converge,
        rounds,
        tag_len,
    })
}

// --------------------------------------------------------------- nuvol --

struct NuvolResults {
    converge: Duration,
    rounds: Vec<Round>,
    big: Option<BigResult>,
}

struct BigResult {
    /// Time the `--big` publish calls took, together.
    publish_calls: Duration,
    /// From the last publish call returning until all agents list all.
    after_last: Option<Duration>,
    /// When the first agent had them all.
    first_all: Option<Duration>,
}

async fn api_client(a: &AgentProcess) -> Result<ApiClient> {
    let data = a.dir().join("data");
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        match nuvol_api::token::read_token(&data) {
            Ok(t) => break t,
            Err(e) if Instant::now() > deadline => {
                bail!("{}: {e}; log:\n{}", a.name(), a.log_tail(20))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let c = ApiClient::new(&format!("http://{}:7000", a.ip()), Some(token))?;
    loop {
        match c.agent().await {
            Ok(_) => return Ok(c),
            Err(e) if Instant::now() > deadline => {
                bail!("{} API: {e}; log:\n{}", a.name(), a.log_tail(20))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn type_filter(t: &str) -> Filter {
    Filter {
        stype: Some(t.to_owned()),
        node: None,
    }
}

async fn run_nuvol(args: &Args) -> Result<NuvolResults> {
    let n = args.nodes;
    let poll = Duration::from_millis(args.poll_ms);
    let mut agents = Vec::with_capacity(n);
    for i in 0..n {
        agents.push(
            NuvolAgent::builder(&args.nuvol_bin, &format!("nuvol{i}"))
                .profile(&args.profile)
                .log_level(Some("warn"))
                .wait_ready(false)
                .arg("--mdns=false")
                .spawn()?,
        );
    }
    let procs: Vec<&AgentProcess> = agents.iter().map(|a| &**a).collect();
    let mut clients = Vec::with_capacity(n);
    let mut apis = Vec::with_capacity(n);
    for a in &procs {
        clients.push(Arc::new(connect(a).await?));
        apis.push(api_client(a).await?);
    }
    let t0 = Instant::now();
    join_all(&procs, &clients).await?;
    wait_converged(&clients, poll).await?;
    let converge = t0.elapsed();
    eprintln!(
        "nuvol: {n} agents converged ({:.2} s)",
        converge.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let filter = Arc::new(type_filter("bench"));
    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        let who = publisher(r, n);
        let name = Arc::new(procs[who].name().to_owned());
        let (port, txt) = bench_service(r);
        let def = ServiceDef {
            stype: "bench".into(),
            description: format!("bench service {r}"),
            port,
            txt,
            checks: Vec::new(),
        };
        let start = Instant::now();
        let c = apis[who].clone();
        let call = tokio::spawn(async move {
            c.publish(&def).await?;
            Ok::<_, anyhow::Error>(start.elapsed())
        });
        let seen = observe_all(n, start, poll, |i| {
            let (c, f, name) = (apis[i].clone(), filter.clone(), name.clone());
            async move {
                let es: Vec<ServiceEntry> = c.services(&f).await.ok()?;
                es.into_iter()
                    .find(|e| e.node == *name && e.port == port)
                    .map(|e| e.source)
            }
        })
        .await;
        let call = call.await??;
        let mut round = Round {
            worst: worst(&seen),
            call,
            ..Round::default()
        };
        for (_, src) in seen.iter().flatten() {
            match src {
                Source::Cloudy => round.via_tag += 1,
                _ => round.via_pull += 1,
            }
        }
        eprintln!(
            "nuvol round {r}: {name} published bench/{port}, all {n} list it after {} (call {:.1} ms; first seen from the Cloudy tag on {}, from a pull on {})",
            ms(round.worst),
            call.as_secs_f64() * 1000.0,
            round.via_tag,
            round.via_pull
        );
        rounds.push(round);
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }

    let big = if args.big > 0 {
        Some(run_big(args, &procs, &apis).await?)
    } else {
        None
    };
    drop(clients);
    drop(procs);
    drop(agents);
    Ok(NuvolResults {
        converge,
        rounds,
        big,
    })
}

async fn run_big(args: &Args, procs: &[&AgentProcess], apis: &[ApiClient]) -> Result<BigResult> {
    let n = procs.len();
    let poll = Duration::from_millis(args.poll_ms);
    let who = n / 2;
    let name = Arc::new(procs[who].name().to_owned());
    let want = args.big;
    let t_first = Instant::now();
    for k in 0..want {
        // Two TXT entries of about `big_txt` bytes together.
        let fill: String = std::iter::repeat_n(
            char::from(b'a' + (k % 26) as u8),
            args.big_txt.saturating_sub(20),
        )
        .collect();
        let def = ServiceDef {
            stype: "bigbench".into(),
            description: format!("big list service {k}"),
            port: 20000 + k as u16,
            txt: vec![
                ("id".to_owned(), format!("svc-{k:04}")),
                ("blob".to_owned(), fill),
            ],
            checks: Vec::new(),
        };
        apis[who].publish(&def).await?;
    }
    let publish_calls = t_first.elapsed();
    let start = Instant::now();
    let filter = Arc::new(type_filter("bigbench"));
    let seen = observe_all(n, start, poll, |i| {
        let (c, f, name) = (apis[i].clone(), filter.clone(), name.clone());
        async move {
            let es: Vec<ServiceEntry> = c.services(&f).await.ok()?;
            (es.iter().filter(|e| e.node == *name).count() >= want).then_some(())
        }
    })
    .await;
    let after_last = worst(&seen);
    let first_all = seen.iter().flatten().map(|(d, _)| *d).min();
    eprintln!(
        "nuvol big list: {name} published {want} services in {:.2} s; all {n} list all of them {} after the last call (first agent: {})",
        publish_calls.as_secs_f64(),
        ms(after_last),
        ms(first_all)
    );
    Ok(BigResult {
        publish_calls,
        after_last,
        first_all,
    })
}

// ---------------------------------------------------------------- main --

fn diff_cell(nuvol: Option<Duration>, serf: Option<Duration>) -> String {
    match (nuvol, serf) {
        (Some(a), Some(b)) => {
            let d = a.as_secs_f64() - b.as_secs_f64();
            format!(
                "{:+.0} ms ({:+.2} rounds)",
                d * 1000.0,
                d / GOSSIP_ROUND.as_secs_f64()
            )
        }
        _ => "-".into(),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.nodes < 2 {
        bail!("--nodes must be at least 2");
    }
    let (do_serf, do_nuvol) = match args.r#impl.as_str() {
        "both" => (true, true),
        "serf" => (true, false),
        "nuvol" => (false, true),
        other => bail!("unknown --impl {other:?}"),
    };
    if do_nuvol && !std::path::Path::new(&args.nuvol_bin).exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p nuvol`",
            args.nuvol_bin
        );
    }
    let command: Vec<String> = std::env::args().collect();
    let serf = if do_serf {
        Some(run_serf(&args).await?)
    } else {
        None
    };
    let nuvol = if do_nuvol {
        Some(run_nuvol(&args).await?)
    } else {
        None
    };

    let s = serf.as_ref().map(|s| stats(&s.rounds)).unwrap_or_default();
    let v = nuvol.as_ref().map(|n| stats(&n.rounds)).unwrap_or_default();
    println!();
    println!("Command: `{}`", command.join(" "));
    println!();
    println!(
        "N = {} agents per implementation, profile {}, every agent polled every {} ms, {} rounds (publishers spread over the cluster); one gossip round = {} ms",
        args.nodes,
        args.profile,
        args.poll_ms,
        args.rounds,
        GOSSIP_ROUND.as_millis()
    );
    println!();
    println!("| N | serf tag change (median / max) | nuvol publish-to-visible (median / max) | difference, median | difference, max | nuvol {}-service list ({} B TXT each), after last publish |", args.big, args.big_txt);
    println!("|---|---|---|---|---|---|");
    let big = nuvol
        .as_ref()
        .and_then(|n| n.big.as_ref())
        .map(|b| {
            format!(
                "{} (first agent {}; the {} publish calls took {:.2} s)",
                ms(b.after_last),
                ms(b.first_all),
                args.big,
                b.publish_calls.as_secs_f64()
            )
        })
        .unwrap_or_else(|| "-".into());
    println!(
        "| {} | {} / {} | {} / {} | {} | {} | {} |",
        args.nodes,
        ms(s.median),
        ms(s.max),
        ms(v.median),
        ms(v.max),
        diff_cell(v.median, s.median),
        diff_cell(v.max, s.max),
        big
    );
    println!();
    if let Some(sr) = &serf {
        let per: Vec<String> = sr.rounds.iter().map(|r| ms(r.worst)).collect();
        println!(
            "serf rounds: {} (convergence {:.2} s; tag value {} bytes; update_tags call median {:.1} ms)",
            per.join(", "),
            sr.converge.as_secs_f64(),
            sr.tag_len,
            median_call(&sr.rounds)
        );
    }
    if let Some(nr) = &nuvol {
        let per: Vec<String> = nr
            .rounds
            .iter()
            .map(|r| format!("{} ({} tag / {} pull)", ms(r.worst), r.via_tag, r.via_pull))
            .collect();
        println!(
            "nuvol rounds: {} (convergence {:.2} s; publish call median {:.1} ms)",
            per.join(", "),
            nr.converge.as_secs_f64(),
            median_call(&nr.rounds)
        );
    }
    if let (Some(a), Some(b)) = (v.median, s.median) {
        let goal = b + 2 * GOSSIP_ROUND;
        if a <= goal {
            println!(
                "goal (nuvol median within 2 gossip rounds of serf's, <= {}): met",
                ms(Some(goal))
            );
        } else {
            println!(
                "goal (nuvol median within 2 gossip rounds of serf's, <= {}): NOT met, by {}",
                ms(Some(goal)),
                ms(Some(a - goal))
            );
        }
    }
    Ok(())
}

fn median_call(rounds: &[Round]) -> f64 {
    let mut v: Vec<Duration> = rounds.iter().map(|r| r.call).collect();
    v.sort();
    v.get(v.len() / 2)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}
