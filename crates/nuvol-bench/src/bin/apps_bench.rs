//! `apps_bench`: what running apps through nuvol costs, on this machine's
//! Docker daemon.
//!
//! 1. **Install to published and passing**, `--reps` times, interleaved
//!    with (and alternating the order of) plain `docker run -d` of the same
//!    image, command and Docker health check (`interval: 1s`, 3 retries):
//!    - nuvol: from spawning `nuvol app install FILE --set PORT=...` until
//!      the CLI returns ("running": its container was created and started)
//!      and until the agent's `GET /v1/services?type=http&node=...` lists
//!      the app's port as `passing` (its published HTTP check, interval 1s),
//!      and until the daemon says its container is `healthy`.
//!    - docker: from spawning `docker run -d ...` until it returns
//!      ("running") and until the daemon's `GET /containers/ID/json` says
//!      `State.Health.Status` = `healthy`.
//!
//!    Both are polled every `--poll-ms`; each app is removed (`--purge`),
//!    each container `rm -f`, before the next one.
//! 2. **Agent RSS** (VmRSS and VmHWM of `/proc/PID/status`) with 0, 10 and
//!    `--apps` apps installed, running, published and passing, after
//!    `--settle` seconds. These apps check every 10 s (Docker and the
//!    agent), not every second: 50 busybox health checks a second would
//!    load the 2-core machine more than the agent does.
//! 3. **Agent restart**: the agent is SIGKILLed and started again; the time
//!    from the spawn until every app is `running` in `GET /v1/apps` and
//!    until all their ports are `passing` again, and the number of
//!    containers created meanwhile (container ids before and after, and the
//!    daemon's `create` events): must be 0.
//!
//! Needs the Docker daemon and Debian's busybox-static (the image is built
//! locally, as the tests do). Everything it creates is labelled
//! `nuvolbench=1` (and `nuvol.node=appbench`) and removed at the end.

use anyhow::{bail, Context, Result};
use clap::Parser;
use nuvol_api::ApiClient;
use nuvol_catalog::Filter;
use nuvol_testkit::{fresh_ip, NuvolAgent, Signal};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const IMAGE: &str = "nuvol-test/busybox:1";
const NODE: &str = "appbench";
const LIMIT: Duration = Duration::from_secs(180);
const SOCKET: &str = "/var/run/docker.sock";

#[derive(Parser, Debug)]
#[command(
    about = "nuvol apps: install-to-passing vs docker run, RSS with N apps, restart adoption"
)]
struct Args {
    /// The nuvol binary to run.
    #[arg(long, default_value = "target/release/nuvol")]
    nuvol_bin: String,
    /// Install/docker-run pairs.
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Apps for the largest RSS point and the restart.
    #[arg(long, default_value_t = 50)]
    apps: usize,
    /// Seconds to let the agent settle before reading its RSS.
    #[arg(long, default_value_t = 15)]
    settle: u64,
    /// Polling period of the observers.
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
}

/// The measured app: Docker health check and published check every 1 s.
fn web(interval: &str, check_every: &str, network: &str) -> String {
    format!(
        r#"
services:
  web:
    image: {IMAGE}
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["${{PORT}}:8080"]
    volumes: ["www:/www"]
    labels: {{nuvolbench: "1"}}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: {interval}
      retries: 3
    stop_grace_period: 1s
{network}volumes:
  www: {{}}
x-nuvol:
  id: web
  version: "1.0"
  parameters:
    - {{name: PORT, type: port, required: true}}
  publish:
    - type: http
      port: "${{PORT}}"
      checks: [{{http: "http://127.0.0.1:${{PORT}}/", interval: {check_every}, timeout: 1s}}]
"#
    )
}

fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("running docker")?;
    if !out.status.success() {
        bail!(
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `GET PATH` on the Docker socket, the body as JSON. Hand-written (one
/// HTTP/1.0 request, the connection closed by the daemon) so that polling
/// costs a millisecond, not a `docker inspect` process, and the bench
/// needs no Docker client crate.
fn docker_get(path: &str) -> Result<serde_json::Value> {
    let mut s = std::os::unix::net::UnixStream::connect(SOCKET).context(SOCKET)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{path}: no HTTP response");
    };
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        bail!("{path}: {}", head.lines().next().unwrap_or(""));
    }
    serde_json::from_str(body).with_context(|| format!("{path}: JSON"))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Ports of this node's `http` services that are passing.
fn passing(rt: &tokio::runtime::Runtime, api: &ApiClient) -> BTreeSet<u16> {
    let f = Filter {
        stype: Some("http".into()),
        node: Some(NODE.into()),
    };
    rt.block_on(api.services(&f))
        .map(|l| {
            l.iter()
                .filter(|s| s.status.as_str() == "passing")
                .map(|s| s.port)
                .collect()
        })
        .unwrap_or_default()
}

/// Names of the apps `GET /v1/apps` shows running.
fn running_apps(rt: &tokio::runtime::Runtime, api: &ApiClient) -> Option<BTreeSet<String>> {
    let v: serde_json::Value = rt
        .block_on(api.call_json(nuvol_api::Method::GET, &["v1", "apps"], &[], None, None))
        .ok()?;
    Some(
        v.as_array()?
            .iter()
            .filter(|a| a["state"] == "running")
            .filter_map(|a| a["name"].as_str().map(str::to_owned))
            .collect(),
    )
}

fn poll_until(what: &str, poll: Duration, mut ok: impl FnMut() -> bool) -> Result<Instant> {
    let start = Instant::now();
    while start.elapsed() < LIMIT {
        if ok() {
            return Ok(Instant::now());
        }
        std::thread::sleep(poll);
    }
    bail!("{what}: not within {LIMIT:?}")
}

fn spawn(bin: &str, ip: std::net::IpAddr, data: &Path) -> Result<NuvolAgent> {
    NuvolAgent::builder(bin, NODE)
        .ip(ip)
        .data_dir(data)
        .arg("--mdns=false")
        .spawn()
}

/// VmRSS and VmHWM in KiB.
fn rss(pid: u32) -> Result<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// Container ids of this bench's agent (all states).
fn agent_containers() -> Result<BTreeSet<String>> {
    Ok(docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label=nuvol.node={NODE}"),
    ])?
    .lines()
    .map(str::to_owned)
    .collect())
}

fn cleanup() {
    for filter in ["label=nuvolbench=1", &format!("label=nuvol.node={NODE}")] {
        if let Ok(ids) = docker(&["ps", "-aq", "--filter", filter]) {
            for id in ids.lines() {
                let _ = docker(&["rm", "-f", id]);
            }
        }
        if let Ok(v) = docker(&["volume", "ls", "-q", "--filter", filter]) {
            for n in v.lines() {
                let _ = docker(&["volume", "rm", "-f", n]);
            }
        }
        if let Ok(v) = docker(&["network", "ls", "-q", "--filter", filter]) {
            for n in v.lines() {
                let _ = docker(&["network", "rm", n]);
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (median, p90, max) in ms; nearest rank.
fn stats(v: &[Duration]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = v.iter().copied().map(ms).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (rank(0.5), rank(0.9), v[v.len() - 1])
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

struct Timing {
    running: Duration,
    /// nuvol: published and passing; docker: healthy.
    passing: Duration,
    /// nuvol: its container healthy in the daemon (docker: = passing).
    healthy: Duration,
}

fn install_once(
    rt: &tokio::runtime::Runtime,
    a: &NuvolAgent,
    api: &ApiClient,
    file: &str,
    name: &str,
    poll: Duration,
) -> Result<Timing> {
    let port = free_port()?;
    let t0 = Instant::now();
    a.cli(&[
        "app",
        "install",
        file,
        "--name",
        name,
        "--set",
        &format!("PORT={port}"),
    ])?;
    let running = t0.elapsed();
    let id = docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=nuvol.app={name}"),
        "--filter",
        &format!("label=nuvol.node={NODE}"),
    ])?;
    let path = format!("/v1.41/containers/{id}/json");
    let (mut pass, mut healthy) = (None, None);
    poll_until(&format!("{name} passing and healthy"), poll, || {
        if pass.is_none() && passing(rt, api).contains(&port) {
            pass = Some(t0.elapsed());
        }
        if healthy.is_none()
            && docker_get(&path).is_ok_and(|v| v["State"]["Health"]["Status"] == "healthy")
        {
            healthy = Some(t0.elapsed());
        }
        pass.is_some() && healthy.is_some()
    })?;
    Ok(Timing {
        running,
        passing: pass.unwrap_or_default(),
        healthy: healthy.unwrap_or_default(),
    })
}

fn docker_once(name: &str, poll: Duration) -> Result<Timing> {
    let port = free_port()?;
    let t0 = Instant::now();
    let id = docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--label",
        "nuvolbench=1",
        "-p",
        &format!("{port}:8080"),
        "-v",
        &format!("{name}-www:/www"),
        "--health-cmd",
        "wget -q -O /dev/null http://127.0.0.1:8080/",
        "--health-interval",
        "1s",
        "--health-retries",
        "3",
        "--stop-timeout",
        "1",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/www",
    ])?;
    let running = t0.elapsed();
    let path = format!("/v1.41/containers/{id}/json");
    let t = poll_until(&format!("{name} healthy"), poll, || {
        docker_get(&path).is_ok_and(|v| v["State"]["Health"]["Status"] == "healthy")
    })?;
    let passing = t - t0;
    docker(&["rm", "-f", &id])?;
    docker(&["volume", "rm", "-f", &format!("{name}-www")])?;
    Ok(Timing {
        running,
        passing,
        healthy: passing,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let poll = Duration::from_millis(args.poll_ms);
    nuvol_testkit::docker::docker_available().map_err(anyhow::Error::msg)?;
    nuvol_testkit::docker::busybox_image(IMAGE).map_err(anyhow::Error::msg)?;
    let server = docker(&[
        "version",
        "--format",
        "{{.Server.Version}} API {{.Server.APIVersion}}",
    ])?;
    println!("docker {server}; nuvol {}", args.nuvol_bin);
    println!("load average at start: {}", loadavg());
    cleanup();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let work = tempfile_dir()?;
    let fast = work.join("web.yml");
    std::fs::write(&fast, web("1s", "1s", ""))?;
    let slow = work.join("bulk.yml");
    // Docker's default address pools hold about 30 bridge networks: 50
    // apps with a network each do not fit. The bulk apps use Docker's
    // default bridge.
    std::fs::write(&slow, web("10s", "10s", "    network_mode: bridge\n"))?;
    let (fast, slow) = (fast.to_string_lossy(), slow.to_string_lossy());
    let data = work.join("data");
    let ip = fresh_ip();
    let mut a = spawn(&args.nuvol_bin, ip, &data)?;
    let api = ApiClient::new(&format!("http://{ip}:7000"), None)?;
    poll_until("the apps component", poll, || {
        running_apps(&rt, &api).is_some()
    })?;

    // RSS with no app.
    std::thread::sleep(Duration::from_secs(args.settle));
    let pid = a.pid().context("agent pid")?;
    let mut rss_rows = vec![(0usize, rss(pid)?)];

    // 1. Install vs docker run, interleaved, alternating which goes first.
    let (mut nv, mut dk) = (Vec::new(), Vec::new());
    for i in 0..args.reps {
        let name = format!("bi{i}");
        let mut one = |first_nuvol: bool| -> Result<()> {
            if first_nuvol {
                nv.push(install_once(&rt, &a, &api, &fast, &name, poll)?);
                a.cli(&["app", "remove", &name, "--purge"])?;
            } else {
                dk.push(docker_once(&format!("nvb-plain-{i}"), poll)?);
            }
            Ok(())
        };
        one(i % 2 == 0)?;
        one(i % 2 != 0)?;
        let (n, d) = (nv.last(), dk.last());
        if let (Some(n), Some(d)) = (n, d) {
            println!(
                "rep {i}: nuvol running {:.0} ms, passing {:.0} ms, healthy {:.0} ms; docker running {:.0} ms, healthy {:.0} ms; load {}",
                ms(n.running),
                ms(n.passing),
                ms(n.healthy),
                ms(d.running),
                ms(d.passing),
                loadavg()
            );
        }
    }
    let col =
        |v: &[Timing], f: fn(&Timing) -> Duration| -> Vec<Duration> { v.iter().map(f).collect() };
    let nr = stats(&col(&nv, |t| t.running));
    let np = stats(&col(&nv, |t| t.passing));
    let nh = stats(&col(&nv, |t| t.healthy));
    let dr = stats(&col(&dk, |t| t.running));
    let dp = stats(&col(&dk, |t| t.passing));
    println!("\n| {} reps, ms | median | p90 | max |", args.reps);
    println!("|---|---|---|---|");
    println!(
        "| nuvol app install → CLI returned (running) | {:.0} | {:.0} | {:.0} |",
        nr.0, nr.1, nr.2
    );
    println!(
        "| docker run -d → returned (running) | {:.0} | {:.0} | {:.0} |",
        dr.0, dr.1, dr.2
    );
    println!(
        "| nuvol app install → published and passing | {:.0} | {:.0} | {:.0} |",
        np.0, np.1, np.2
    );
    println!(
        "| nuvol app install → its container healthy (Docker) | {:.0} | {:.0} | {:.0} |",
        nh.0, nh.1, nh.2
    );
    println!(
        "| docker run -d → healthy | {:.0} | {:.0} | {:.0} |",
        dp.0, dp.1, dp.2
    );
    println!(
        "ratio nuvol/docker of the medians: running {:.2}, passing/healthy {:.2}, healthy/healthy {:.2}",
        nr.0 / dr.0,
        np.0 / dp.0,
        nh.0 / dp.0
    );

    // 2. RSS with 10 and `apps` apps.
    let mut installed = 0usize;
    let mut bulk_ports = BTreeSet::new();
    let mut bulk_times = Vec::new();
    for target in [10usize, args.apps] {
        while installed < target {
            let port = free_port()?;
            let name = format!("ba{installed}");
            let t0 = Instant::now();
            a.cli(&[
                "app",
                "install",
                &slow,
                "--name",
                &name,
                "--set",
                &format!("PORT={port}"),
            ])?;
            bulk_times.push(t0.elapsed());
            bulk_ports.insert(port);
            installed += 1;
        }
        let want: BTreeSet<String> = (0..installed).map(|i| format!("ba{i}")).collect();
        poll_until(&format!("{target} apps running and passing"), poll, || {
            passing(&rt, &api).is_superset(&bulk_ports)
                && running_apps(&rt, &api).is_some_and(|r| r.is_superset(&want))
        })?;
        std::thread::sleep(Duration::from_secs(args.settle));
        rss_rows.push((target, rss(pid)?));
    }
    let bt = stats(&bulk_times);
    println!(
        "\n{} bulk installs (CLI return): median {:.0} ms, p90 {:.0}, max {:.0}",
        bulk_times.len(),
        bt.0,
        bt.1,
        bt.2
    );
    println!("\n| apps | VmRSS KiB | VmHWM KiB |");
    println!("|---|---|---|");
    for (n, (r, h)) in &rss_rows {
        println!("| {n} | {r} | {h} |");
    }

    // 3. SIGKILL and restart: adoption of every app.
    let before = agent_containers()?;
    let names: BTreeSet<String> = (0..installed).map(|i| format!("ba{i}")).collect();
    a.signal(Signal::KILL)?;
    a.wait_exit(LIMIT)?;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    println!("\nload average before the restart: {}", loadavg());
    let t0 = Instant::now();
    let a2 = spawn(&args.nuvol_bin, ip, &data)?;
    let spawned = t0.elapsed();
    let t_up = poll_until("the apps component after the restart", poll, || {
        running_apps(&rt, &api).is_some()
    })?;
    let t_running = poll_until("all apps running after the restart", poll, || {
        running_apps(&rt, &api).is_some_and(|r| r.is_superset(&names))
    })?;
    let t_passing = poll_until("all apps passing after the restart", poll, || {
        passing(&rt, &api).is_superset(&bulk_ports)
    })?;
    let after = agent_containers()?;
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 1)
        .unwrap_or(0);
    let creates = docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--filter",
        &format!("label=nuvol.node={NODE}"),
        "--format",
        "{{.ID}}",
    ])?;
    let created = after.difference(&before).count();
    println!(
        "restart with {installed} apps: spawn returned {:.0} ms; /v1/apps answers {:.0} ms; all running in /v1/apps {:.0} ms; all passing {:.0} ms",
        ms(spawned),
        ms(t_up - t0),
        ms(t_running - t0),
        ms(t_passing - t0)
    );
    println!(
        "containers: {} before, {} after, {} new ids, {} create events",
        before.len(),
        after.len(),
        created,
        creates.lines().filter(|l| !l.is_empty()).count()
    );
    let pid2 = a2.pid().context("agent pid")?;
    let (r, h) = rss(pid2)?;
    println!("after the restart: VmRSS {r} KiB, VmHWM {h} KiB");
    println!("load average at the end: {}", loadavg());

    for n in &names {
        let _ = a2.cli(&["app", "remove", n, "--purge"]);
    }
    drop(a2);
    cleanup();
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// A temp dir of the bench's own (removed at the end).
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("apps-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
