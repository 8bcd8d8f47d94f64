//! `dashboard_bench`: page weight and time to first byte of every dashboard
//! page with a large cluster in the catalog, the measured agent limited to
//! one core; what the live stream sends when one service changes; what the
//! dashboard adds to the agent's RSS.
//!
//! - **Cluster**: `--nodes` real nuvol agents on loopback addresses (mDNS
//!   off), each publishing `--services-per-node` services from a service
//!   file (`--services-dir`), so the catalog holds nodes × services
//!   entries, all from real agents over the real protocol. The measured
//!   agent (`node000`, `--profile`, default `lan`) is started through
//!   `taskset -c --agent-cpu`; the others (`--others-profile`, default
//!   `wan`; dashboard off: they are only the cluster) through `taskset -c
//!   --others-cpu`. Run the bench itself on the others' core (`taskset -c 1
//!   dashboard_bench ...`); its client thread is reniced (`--client-nice`)
//!   so it is not queued behind 199 agents, the agents keep niceness 0.
//!   After `--warmup-secs` the others' CPU and the suspicions refuted in
//!   every agent's log are printed.
//! - **Pages**: each page `--requests` times without and `--requests` times
//!   with `Accept-Encoding: gzip`, anonymous (loopback may view) and with a
//!   session (`POST /login` with the API token, the cookie kept): bytes on
//!   the wire (status line, headers and body), whether the answer was
//!   compressed, the body's size under `gzip -6` (what compression would
//!   give), time to first byte (from before the TCP connect to the first
//!   byte of the answer: the page is rendered before anything is sent) and
//!   to the last byte. One request at a time, a new connection each. A
//!   page is measured when no other process has taken more than
//!   `--max-foreign` % of the measured agent's CPU for a second, and again
//!   (`--attempts`) if one did meanwhile; the table gives that share.
//! - **Live**: `/live?page=services` (anonymous and with the session) and
//!   `/live?page=overview` open while one service is published on a remote
//!   node, one on the measured node, and both are unpublished: the
//!   server-sent events each stream got, with their sizes.
//! - **RSS**: `/proc/PID/smaps_rollup` of the measured agent (as
//!   `scripts/rss.sh` reads it), idle after `--settle-secs`: with the
//!   dashboard before any page, after each page's run and idle after them
//!   all; then `--rss-rounds` times restarted with `--dashboard=false` and
//!   restarted with the dashboard again (same cluster, same data dir); the
//!   CPU it used over each settle window.

use anyhow::{bail, Context, Result};
use clap::Parser;
use nuvol_api::ApiClient;
use nuvol_catalog::{Filter, ServiceDef};
use nuvol_testkit::{AgentProcess, NuvolAgent};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Dashboard page weight, time to first byte, live-update size and RSS")]
struct Args {
    /// The nuvol binary.
    #[arg(long, default_value = "target/release/nuvol")]
    nuvol_bin: String,
    /// Members of the cluster, the measured agent included.
    #[arg(long, default_value_t = 200)]
    nodes: usize,
    /// Services each member publishes.
    #[arg(long, default_value_t = 10)]
    services_per_node: usize,
    /// Requests per page and variant (plain, gzip).
    #[arg(long, default_value_t = 50)]
    requests: usize,
    /// CPU list (taskset) of the measured agent.
    #[arg(long, default_value = "0")]
    agent_cpu: String,
    /// CPU list (taskset) of the other agents.
    #[arg(long, default_value = "1")]
    others_cpu: String,
    /// Idle time before each RSS sample.
    #[arg(long, default_value_t = 30)]
    settle_secs: u64,
    /// Timing profile of the measured agent.
    #[arg(long, default_value = "lan")]
    profile: String,
    /// Timing profile of the other agents. `wan` (a probe every 5 s): 199
    /// agents with `lan` overload one core (about 100 % of it, hundreds of
    /// suspicions refuted per minute) and never settle.
    #[arg(long, default_value = "wan")]
    others_profile: String,
    /// Pause between two agent starts.
    #[arg(long, default_value_t = 100)]
    spawn_ms: u64,
    /// Niceness of the bench's own client (it shares the others' core;
    /// negative: it is not queued behind them). The agents keep 0.
    #[arg(long, default_value_t = -10, allow_hyphen_values = true)]
    client_nice: i32,
    /// Measure a page again when other processes took more than this share
    /// (%) of the measured agent's CPU meanwhile.
    #[arg(long, default_value_t = 5.0)]
    max_foreign: f64,
    /// Attempts per page at most.
    #[arg(long, default_value_t = 5)]
    attempts: usize,
    /// Restarts of the measured agent without, then with the dashboard
    /// (RSS samples of each); 0: none.
    #[arg(long, default_value_t = 3)]
    rss_rounds: usize,
    /// Wait after the catalog is complete, before anything is measured.
    #[arg(long, default_value_t = 180)]
    warmup_secs: u64,
}

/// Service types published by every member, with a port and TXT.
const TYPES: [(&str, u16, &str, &str); 10] = [
    ("http", 80, "Community web server", "path=/"),
    ("ssh", 22, "Shell access", "user=guest"),
    ("syncthing", 22000, "Shared folders", "id=MFZWI3D-BONSGYC"),
    ("ipfs", 4001, "IPFS gateway", "gateway=8080"),
    ("nextcloud", 443, "Files and calendars", "path=/nextcloud"),
    ("peertube", 9000, "Video channel", "path=/videos"),
    ("jellyfin", 8096, "Media library", "path=/web"),
    ("gitea", 3000, "Code hosting", "path=/explore"),
    ("matrix", 8448, "Chat homeserver", "server=matrix"),
    ("minio", 9001, "Object storage", "region=guifi"),
];

fn node_name(i: usize) -> String {
    format!("node{i:03}")
}

/// The service file of member `i`.
fn services_toml(i: usize, n: usize) -> String {
    let mut s = String::new();
    for k in 0..n {
        let (t, port, desc, txt) = TYPES[k % TYPES.len()];
        let port = port + (k / TYPES.len()) as u16;
        let (tk, tv) = txt.split_once('=').unwrap_or(("k", "v"));
        s.push_str(&format!(
            "[[service]]\ntype = \"{t}\"\ndescription = \"{desc} of {}\"\nport = {port}\ntxt = {{ {tk} = \"{tv}\", version = \"1.{k}.{i}\" }}\n\n",
            node_name(i)
        ));
    }
    s
}

/// A script that runs the agent pinned (taskset execs it: same pid).
fn wrapper(dir: &Path, name: &str, cpus: &str, bin: &Path) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(
        &p,
        // Niceness back to 0: the bench's client runs reniced.
        format!(
            "#!/bin/sh\nexec nice -n $((0 - $(nice))) taskset -c {cpus} {} \"$@\"\n",
            bin.display()
        ),
    )?;
    let st = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&p)
        .status()?;
    if !st.success() {
        bail!("chmod +x {}", p.display());
    }
    Ok(p)
}

// ------------------------------------------------------------ HTTP/1.1 --

struct Resp {
    status: u16,
    head: String,
    /// Bytes received: status line, headers, body (with chunk framing).
    wire: usize,
    body: Vec<u8>,
    ttfb: Duration,
    total: Duration,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let line = std::str::from_utf8(&b[..nl])?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)?;
        b = &b[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).context("short chunk")?);
        b = b.get(size + 2..).context("chunk end")?;
    }
}

/// One request on a new connection (`Connection: close`), read to the end.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: dashboard_bench\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut raw = req.into_bytes();
    raw.extend_from_slice(body);
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(&raw)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    let mut ttfb = None;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ttfb.get_or_insert_with(|| t0.elapsed());
        got.extend_from_slice(&buf[..n]);
    }
    let total = t0.elapsed();
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("status line")?;
    let mut r = Resp {
        status,
        head,
        wire: got.len(),
        body: Vec::new(),
        ttfb: ttfb.unwrap_or(total),
        total,
    };
    let raw_body = &got[end + 4..];
    r.body = if r
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(raw_body)?
    } else {
        raw_body.to_vec()
    };
    Ok(r)
}

fn gzip_len(body: &[u8]) -> Result<usize> {
    use std::process::{Command, Stdio};
    let mut c = Command::new("gzip")
        .args(["-6", "-c", "-n"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running gzip")?;
    let mut stdin = c.stdin.take().context("gzip stdin")?;
    let data = body.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let out = c.wait_with_output()?;
    w.join().map_err(|_| anyhow::anyhow!("gzip writer"))??;
    Ok(out.stdout.len())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `POST /login` with the API token; the session cookie.
fn login(addr: SocketAddr, token: &str) -> Result<String> {
    let body = format!("token={}&next=%2F", urlencode(token));
    let r = request(
        addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )?;
    if r.status != 303 {
        bail!("login: {} {}", r.status, String::from_utf8_lossy(&r.body));
    }
    let c = r
        .head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, v)| {
            k.eq_ignore_ascii_case("set-cookie") && v.trim().starts_with("nuvol_session=")
        })
        .map(|(_, v)| v.trim().split(';').next().unwrap_or("").to_owned())
        .context("no session cookie")?;
    Ok(c)
}

// --------------------------------------------------------------- stats --

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn fms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn kb(n: usize) -> String {
    format!("{:.1} KB", n as f64 / 1000.0)
}

struct PageResult {
    path: String,
    session: bool,
    status: u16,
    rows: usize,
    wire: usize,
    wire_gzip_asked: usize,
    compressed: bool,
    body: usize,
    gzip: usize,
    ttfb: Vec<Duration>,
    total: Vec<Duration>,
    /// Bytes of `<tbody ...>…</tbody>` and of the map's `<svg class="map"…</svg>`.
    tbody: usize,
    map: usize,
    /// Other processes' use of the measured agent's CPU meanwhile, %.
    foreign: f64,
    attempts: usize,
    /// The agent's RSS right after, KiB.
    rss_after: u64,
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// Total length of the spans from each `open` to the next `close` (inclusive).
fn spans(hay: &str, open: &str, close: &str) -> usize {
    let mut n = 0;
    let mut rest = hay;
    while let Some(i) = rest.find(open) {
        let from = &rest[i..];
        let Some(j) = from.find(close) else { break };
        n += j + close.len();
        rest = &from[j + close.len()..];
    }
    n
}

fn measure_page(
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
    n: usize,
) -> Result<PageResult> {
    let mut base: Vec<(&str, &str)> = vec![("Accept", "text/html")];
    if let Some(c) = cookie {
        base.push(("Cookie", c));
    }
    let mut gz = base.clone();
    gz.push(("Accept-Encoding", "gzip"));
    // Warm up (not counted).
    for _ in 0..3 {
        request(addr, "GET", path, &base, b"")?;
    }
    let mut ttfb = Vec::with_capacity(2 * n);
    let mut total = Vec::with_capacity(2 * n);
    let mut wires = Vec::new();
    let mut wires_gz = Vec::new();
    let mut compressed = false;
    let mut last = None;
    for _ in 0..n {
        for (hs, is_gz) in [(&base, false), (&gz, true)] {
            let r = request(addr, "GET", path, hs, b"")?;
            ttfb.push(r.ttfb);
            total.push(r.total);
            if is_gz {
                wires_gz.push(r.wire);
                compressed |= r.header("content-encoding").is_some();
            } else {
                wires.push(r.wire);
                last = Some(r);
            }
        }
    }
    let r = last.context("no request")?;
    ttfb.sort();
    total.sort();
    wires.sort_unstable();
    wires_gz.sort_unstable();
    let text = String::from_utf8_lossy(&r.body);
    Ok(PageResult {
        path: path.to_owned(),
        session: cookie.is_some(),
        status: r.status,
        rows: count(&text, "<tr data-key="),
        wire: wires[wires.len() / 2],
        wire_gzip_asked: wires_gz[wires_gz.len() / 2],
        compressed,
        body: r.body.len(),
        gzip: gzip_len(&r.body)?,
        ttfb,
        total,
        tbody: spans(&text, "<tbody", "</tbody>"),
        map: spans(&text, "<svg class=\"map\"", "</svg>"),
        foreign: 0.0,
        attempts: 1,
        rss_after: 0,
    })
}

/// Other processes' share of `cpu` (e.g. `cpu0`) while `f` ran, % (its
/// busy time less the measured agent's).
fn foreign_during<T>(cpu: &str, pid: u32, f: impl FnOnce() -> T) -> (f64, T) {
    let (b0, m0, t0) = (cpu_busy(cpu), cpu_ticks(pid), Instant::now());
    let out = f();
    let secs = t0.elapsed().as_secs_f64().max(0.01);
    let busy = cpu_busy(cpu).saturating_sub(b0) as f64;
    let mine = cpu_ticks(pid).saturating_sub(m0) as f64;
    (((busy - mine) / 100.0 / secs * 100.0).max(0.0), out)
}

/// [`measure_page`] when the agent's CPU is otherwise quiet: wait (up to
/// 5 min) for a second with other processes under `max_foreign` % of it,
/// measure, and measure again (up to `attempts` times) if they took more
/// meanwhile; the attempt they disturbed least.
fn measure_quiet(
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
    n: usize,
    (cpu, pid): (&str, u32),
    max_foreign: f64,
    attempts: usize,
) -> Result<PageResult> {
    let mut best: Option<PageResult> = None;
    for a in 1..=attempts {
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            let (f, ()) = foreign_during(cpu, pid, || std::thread::sleep(Duration::from_secs(1)));
            if f <= max_foreign {
                break;
            }
        }
        let (f, r) = foreign_during(cpu, pid, || measure_page(addr, path, cookie, n));
        let mut r = r?;
        r.foreign = f;
        r.attempts = a;
        if f > max_foreign {
            eprintln!("{path}: other processes took {f:.1} % of {cpu} meanwhile; again");
        }
        if best.as_ref().is_none_or(|b| f < b.foreign) {
            best = Some(r);
        }
        if f <= max_foreign {
            break;
        }
    }
    best.context("no attempt")
}

// ---------------------------------------------------------------- live --

/// What a stream's reader thread collected: (arrival, bytes) chunks.
type Chunks = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

/// An open `/live` stream, read by a thread into (time, bytes) chunks.
struct Live {
    name: String,
    chunks: Chunks,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Live {
    fn open(name: &str, addr: SocketAddr, path: &str, cookie: Option<&str>) -> Result<Live> {
        let mut s = TcpStream::connect(addr)?;
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        if let Some(c) = cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        // The response head.
        let mut head = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut b) {
                Ok(0) => bail!("{path}: closed"),
                Ok(_) => head.push(b[0]),
                Err(_) if Instant::now() < deadline => {}
                Err(e) => return Err(e.into()),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        if !head.starts_with("HTTP/1.1 200") {
            bail!("{path}: {head}");
        }
        let chunks = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, st) = (chunks.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !st.load(Ordering::Relaxed) {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => c.lock().unwrap().push((Instant::now(), buf[..n].to_vec())),
                    Err(_) => {}
                }
            }
        });
        Ok(Live {
            name: name.to_owned(),
            chunks,
            stop,
            thread: Some(thread),
        })
    }

    /// What arrived since the last call: wire bytes and the events.
    fn take(&self) -> (usize, Vec<String>) {
        let got: Vec<(Instant, Vec<u8>)> = std::mem::take(&mut *self.chunks.lock().unwrap());
        let wire = got.iter().map(|(_, b)| b.len()).sum();
        let mut all = Vec::new();
        for (_, b) in &got {
            all.extend_from_slice(b);
        }
        // Undo the chunk framing where it is complete; else take it raw.
        let text = String::from_utf8_lossy(&dechunk_partial(&all)).into_owned();
        let events = text
            .split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| format!("{e}\n\n"))
            .collect();
        (wire, events)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Chunked framing removed from a stream cut anywhere between chunks.
fn dechunk_partial(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let Ok(line) = std::str::from_utf8(&b[..nl]) else {
            break;
        };
        let Ok(size) = usize::from_str_radix(line.trim(), 16) else {
            break;
        };
        let Some(chunk) = b.get(nl + 2..nl + 2 + size) else {
            break;
        };
        out.extend_from_slice(chunk);
        b = b.get(nl + 2 + size + 2..).unwrap_or(&[]);
    }
    out
}

/// A one-line summary of an SSE event: op, list, key.
fn summary(ev: &str) -> String {
    let data = ev
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or("")
        .trim();
    let field = |k: &str| -> String {
        let pat = format!("\"{k}\":\"");
        data.find(&pat)
            .map(|i| {
                let rest = &data[i + pat.len()..];
                rest[..rest.find('"').unwrap_or(rest.len())].to_owned()
            })
            .unwrap_or_default()
    };
    let op = field("op");
    match op.as_str() {
        "text" => format!("text {}", field("id")),
        "" => ev.trim().chars().take(30).collect(),
        _ => format!("{op} {} {}", field("list"), field("key")),
    }
}

// ----------------------------------------------------------- the agent --

/// RSS and anonymous RSS, KiB (`smaps_rollup`).
fn rss(pid: u32) -> Result<(u64, u64)> {
    let t = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let get = |k: &str| -> u64 {
        t.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((get("Rss:"), get("Anonymous:")))
}

/// utime + stime, clock ticks (100 per second).
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

fn affinity(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Cpus_allowed_list:"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

struct RssSample {
    phase: String,
    /// Set for the samples after a restart: with the dashboard or not.
    dashboard: Option<bool>,
    rss: u64,
    anon: u64,
    cpu_pct: f64,
}

/// Idle for `secs`, then RSS (median of 5 reads 1 s apart) and CPU over
/// the whole window.
fn idle_sample(phase: &str, pid: u32, secs: u64) -> Result<RssSample> {
    let t0 = cpu_ticks(pid);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs.saturating_sub(5)));
    let mut v = Vec::new();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(1));
        v.push(rss(pid)?);
    }
    let cpu = (cpu_ticks(pid) - t0) as f64 / 100.0 / start.elapsed().as_secs_f64() * 100.0;
    v.sort_unstable();
    let (rss, anon) = v[v.len() / 2];
    eprintln!("RSS {phase}: {rss} KiB, anonymous {anon} KiB, CPU {cpu:.2} %");
    Ok(RssSample {
        phase: phase.to_owned(),
        dashboard: None,
        rss,
        anon,
        cpu_pct: cpu,
    })
}

async fn api_client(a: &AgentProcess) -> Result<(ApiClient, String)> {
    let data = a.dir().join("data");
    let deadline = Instant::now() + Duration::from_secs(60);
    let token = loop {
        match nuvol_api::token::read_token(&data) {
            Ok(t) => break t,
            Err(e) if Instant::now() > deadline => {
                bail!("{}: {e}; log:\n{}", a.name(), a.log_tail(20))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let c = ApiClient::new(&format!("http://{}:7000", a.ip()), Some(token.clone()))?;
    loop {
        match c.agent().await {
            Ok(_) => return Ok((c, token)),
            Err(e) if Instant::now() > deadline => {
                bail!("{} API: {e}; log:\n{}", a.name(), a.log_tail(20))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Until the agent lists `members` alive members and `services` services.
async fn wait_catalog(
    c: &ApiClient,
    members: usize,
    services: usize,
    what: &str,
) -> Result<Duration> {
    let start = Instant::now();
    let mut last = (0, 0);
    let mut said = Instant::now();
    loop {
        let m = c
            .members()
            .await
            .map(|m| m.iter().filter(|m| m.status == "alive").count())
            .unwrap_or(0);
        let s = c
            .services(&Filter::default())
            .await
            .map(|s| s.len())
            .unwrap_or(0);
        if m == members && s == services {
            eprintln!(
                "{what}: {m} members, {s} services after {:.1} s",
                start.elapsed().as_secs_f64()
            );
            return Ok(start.elapsed());
        }
        if (m, s) != last && said.elapsed() > Duration::from_secs(5) {
            eprintln!("{what}: {m}/{members} members, {s}/{services} services…");
            said = Instant::now();
            last = (m, s);
        }
        if start.elapsed() > Duration::from_secs(900) {
            bail!("{what}: {m}/{members} members, {s}/{services} services after 900 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Suspicions refuted so far, in every agent's log.
fn refutations(agents: &[&AgentProcess]) -> usize {
    agents
        .iter()
        .map(|a| a.log_text().matches("refuting a suspect message").count())
        .sum()
}

fn procs<'a>(others: &'a [NuvolAgent], agent: &'a NuvolAgent) -> Vec<&'a AgentProcess> {
    others
        .iter()
        .map(|a| &**a)
        .chain(std::iter::once(&**agent))
        .collect()
}

fn others_ticks(others: &[NuvolAgent]) -> u64 {
    others.iter().filter_map(|a| a.pid()).map(cpu_ticks).sum()
}

fn others_rss(others: &[NuvolAgent]) -> u64 {
    others
        .iter()
        .filter_map(|a| a.pid())
        .map(|p| rss(p).map(|r| r.0).unwrap_or(0))
        .sum()
}

/// Busy ticks of one CPU (`/proc/stat`: all but idle and iowait).
fn cpu_busy(cpu: &str) -> u64 {
    let t = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    t.lines()
        .find(|l| l.split_whitespace().next() == Some(cpu))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            v.iter().sum::<u64>() - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0)
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let n = args.nodes;
    let spn = args.services_per_node;
    let total_services = n * spn;
    let bin = std::fs::canonicalize(&args.nuvol_bin)
        .with_context(|| format!("the nuvol binary {}", args.nuvol_bin))?;
    let work = tempfile_dir()?;
    let dir = work.path();
    let pinned = wrapper(dir, "nuvol-measured", &args.agent_cpu, &bin)?;
    let others_bin = wrapper(dir, "nuvol-others", &args.others_cpu, &bin)?;
    eprintln!(
        "bench itself on CPUs {}; measured agent: taskset -c {}; others: taskset -c {}",
        affinity(std::process::id()),
        args.agent_cpu,
        args.others_cpu
    );
    let svc_dir = |i: usize| -> Result<PathBuf> {
        let d = dir.join("services").join(node_name(i));
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("services.toml"), services_toml(i, spn))?;
        Ok(d)
    };
    let common = |b: nuvol_testkit::AgentBuilder<NuvolAgent>,
                  i: usize|
     -> Result<nuvol_testkit::AgentBuilder<NuvolAgent>> {
        Ok(b.profile(&args.profile)
            .log_level(Some("warn"))
            .arg("--mdns=false")
            .arg(format!("--services-dir={}", svc_dir(i)?.display())))
    };

    // ------------------------------------------------------- cluster --
    let t0 = Instant::now();
    let mut others: Vec<NuvolAgent> = Vec::with_capacity(n);
    // The others are only the cluster: no dashboard, and no apps (199
    // agents each listing the container engine's containers every few
    // seconds would load the machine the measured agent runs on).
    let seed = common(NuvolAgent::builder(&others_bin, &node_name(1)), 1)?
        .arg("--dashboard=false")
        .arg("--apps=false")
        .spawn()?;
    let seed_addr = seed.bind();
    others.push(seed);
    for i in 2..n {
        std::thread::sleep(Duration::from_millis(args.spawn_ms));
        others.push(
            common(NuvolAgent::builder(&others_bin, &node_name(i)), i)?
                .arg("--dashboard=false")
                .arg("--apps=false")
                .join(seed_addr)
                .spawn()?,
        );
    }
    eprintln!(
        "{} other agents started ({:.1} s)",
        others.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut agent = common(NuvolAgent::builder(&pinned, &node_name(0)), 0)?
        .arg("--dashboard=true")
        .join(seed_addr)
        .spawn()?;
    let pid = agent.pid().context("measured agent pid")?;
    eprintln!(
        "measured agent {} pid {pid} on CPUs {}",
        agent.name(),
        affinity(pid)
    );
    if args.client_nice != 0 {
        // Only this thread (the client); the agents are started already.
        let st = std::process::Command::new("renice")
            .args([
                "-n",
                &args.client_nice.to_string(),
                "-p",
                &std::process::id().to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .status()?;
        if !st.success() {
            bail!("renice {} failed", args.client_nice);
        }
    }
    let (api, token) = api_client(&agent).await?;
    let converge = wait_catalog(&api, n, total_services, "measured agent").await?;
    let http: SocketAddr = SocketAddr::new(agent.ip(), 7000);

    let mut left = args.warmup_secs;
    while left > 0 {
        let step = left.min(30);
        let (t, r0) = (others_ticks(&others), refutations(&procs(&others, &agent)));
        tokio::time::sleep(Duration::from_secs(step)).await;
        eprintln!(
            "warm-up: the others used {:.1} % of a core, {} suspicions refuted in {step} s",
            (others_ticks(&others) - t) as f64 / step as f64,
            refutations(&procs(&others, &agent)) - r0
        );
        left -= step;
    }
    let refuted_before_pages = refutations(&procs(&others, &agent));
    let mut samples = Vec::new();
    let o_ticks0 = others_ticks(&others);
    let o_t0 = Instant::now();
    samples.push(idle_sample(
        "dashboard on, idle, no page served yet",
        pid,
        args.settle_secs,
    )?);
    let others_cpu =
        (others_ticks(&others) - o_ticks0) as f64 / 100.0 / o_t0.elapsed().as_secs_f64() * 100.0;
    let o_rss = others_rss(&others);
    eprintln!(
        "the {} other agents: RSS {:.0} MiB together ({:.1} MiB each), CPU {:.1} % of a core together",
        others.len(),
        o_rss as f64 / 1024.0,
        o_rss as f64 / 1024.0 / others.len() as f64,
        others_cpu
    );

    // --------------------------------------------------------- pages --
    let cookie = login(http, &token)?;
    let pages: Vec<String> = vec![
        "/".into(),
        "/nodes".into(),
        format!("/nodes/{}", node_name(n / 2)),
        "/services".into(),
        "/services?type=http".into(),
        "/events".into(),
        "/settings".into(),
        "/login".into(),
    ];
    let mut results = Vec::new();
    let agent_cpu = format!("cpu{}", args.agent_cpu);
    let (busy0, mine0, pt0) = (cpu_busy(&agent_cpu), cpu_ticks(pid), Instant::now());
    for p in &pages {
        for c in [None, Some(cookie.as_str())] {
            let r = measure_quiet(
                http,
                p,
                c,
                args.requests,
                (&agent_cpu, pid),
                args.max_foreign,
                args.attempts,
            )?;
            let mut r = r;
            r.rss_after = rss(pid)?.0;
            eprintln!(
                "{p} ({}): {} B on the wire, {} rows, TTFB p50 {} p95 {} max {}; others {:.1} % of the CPU, attempt {}",
                if c.is_some() { "session" } else { "anonymous" },
                r.wire,
                r.rows,
                fms(pct(&r.ttfb, 0.5)),
                fms(pct(&r.ttfb, 0.95)),
                fms(pct(&r.ttfb, 1.0)),
                r.foreign,
                r.attempts
            );
            results.push(r);
        }
    }
    let secs = pt0.elapsed().as_secs_f64();
    let refuted_pages = refutations(&procs(&others, &agent)) - refuted_before_pages;
    let page_agent = (cpu_ticks(pid) - mine0) as f64 / 100.0 / secs * 100.0;
    let page_foreign = (cpu_busy(&agent_cpu).saturating_sub(busy0) as f64 / 100.0 / secs * 100.0
        - page_agent)
        .max(0.0);
    eprintln!("page runs: {secs:.0} s, the agent used {page_agent:.1} % of {agent_cpu}, other processes {page_foreign:.1} %");
    let mut assets = Vec::new();
    for a in ["/assets/nuvol.css", "/assets/live.js", "/assets/icon.svg"] {
        let r = request(http, "GET", a, &[("Accept-Encoding", "gzip")], b"")?;
        assets.push((
            a,
            r.wire,
            r.body.len(),
            gzip_len(&r.body)?,
            r.header("content-encoding").is_some(),
        ));
    }
    samples.push(idle_sample(
        "dashboard on, idle after the page runs",
        pid,
        args.settle_secs,
    )?);

    // ---------------------------------------------------------- live --
    let streams = [
        Live::open("services, anonymous", http, "/live?page=services", None)?,
        Live::open(
            "services, session",
            http,
            "/live?page=services",
            Some(&cookie),
        )?,
        Live::open("overview, anonymous", http, "/live?page=overview", None)?,
    ];
    std::thread::sleep(Duration::from_secs(2));
    for s in &streams {
        let _ = s.take();
    }
    let remote = &others[n / 3 - 1];
    let (remote_api, _) = api_client(remote).await?;
    let def = |port: u16| ServiceDef {
        stype: "bench".into(),
        description: "One more service".into(),
        port,
        txt: vec![("path".into(), "/bench".into())],
        checks: Vec::new(),
    };
    let mut live_rows: Vec<(String, String, usize, Vec<String>)> = Vec::new();
    let steps = [
        (
            format!("publish bench/9999 on {}", remote.name()),
            total_services + 1,
        ),
        (
            format!("publish bench/9998 on {} (the measured node)", agent.name()),
            total_services + 2,
        ),
        (
            format!("unpublish bench/9999 on {}", remote.name()),
            total_services + 1,
        ),
        (
            format!("unpublish bench/9998 on {}", agent.name()),
            total_services,
        ),
    ];
    for (i, (what, expect)) in steps.iter().enumerate() {
        match i {
            0 => {
                remote_api.publish(&def(9999)).await?;
            }
            1 => {
                api.publish(&def(9998)).await?;
            }
            2 => remote_api.unpublish("bench", 9999).await?,
            _ => api.unpublish("bench", 9998).await?,
        }
        wait_catalog(&api, n, *expect, what).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        for s in &streams {
            let (wire, evs) = s.take();
            eprintln!("{what}: stream {}: {wire} B, {} events", s.name, evs.len());
            for e in &evs {
                eprintln!("    {} B: {}", e.len(), summary(e));
            }
            live_rows.push((what.clone(), s.name.clone(), wire, evs));
        }
    }
    drop(streams);

    // ------------------------------------------------------ restarts --
    for round in 1..=args.rss_rounds {
        for (on, flag) in [(false, "--dashboard=false"), (true, "--dashboard=true")] {
            let phase = format!(
                "restart {round}: dashboard {}, idle{}",
                if on { "on" } else { "off (--dashboard=false)" },
                if on { ", no page served" } else { "" }
            );
            agent.restart_with(|a| {
                for x in a.iter_mut() {
                    if x.to_string_lossy().starts_with("--dashboard=") {
                        *x = flag.into();
                    }
                }
            })?;
            let pid = agent.pid().context("pid")?;
            let (api, _) = api_client(&agent).await?;
            wait_catalog(&api, n, total_services, &phase).await?;
            let mut s = idle_sample(&phase, pid, args.settle_secs)?;
            s.dashboard = Some(on);
            samples.push(s);
        }
    }
    let median = |on: bool| -> Option<(u64, u64)> {
        let mut r: Vec<u64> = samples
            .iter()
            .filter(|s| s.dashboard == Some(on))
            .map(|s| s.rss)
            .collect();
        let mut a: Vec<u64> = samples
            .iter()
            .filter(|s| s.dashboard == Some(on))
            .map(|s| s.anon)
            .collect();
        r.sort_unstable();
        a.sort_unstable();
        (!r.is_empty()).then(|| (r[r.len() / 2], a[a.len() / 2]))
    };
    let medians = median(true).zip(median(false));

    // -------------------------------------------------------- report --
    println!(
        "\nN = {n} members, {total_services} services ({spn} per member, real agents); measured agent {} on CPUs {} (taskset), {} other agents on CPUs {}; converged {:.1} s after the last start; {} requests per page and variant, one at a time\n",
        agent.name(),
        args.agent_cpu,
        others.len(),
        args.others_cpu,
        converge.as_secs_f64(),
        args.requests
    );
    println!(
        "Page runs: {:.0} s; the measured agent used {page_agent:.1} % of {agent_cpu} meanwhile, other processes {page_foreign:.1} % of it; {refuted_pages} suspicions refuted in the cluster from the start of the idle sample to the end of the page runs.\n",
        pt0.elapsed().as_secs_f64().min(secs)
    );
    println!("| page | viewer | status | rows | on the wire | asked gzip: on the wire | gzip -6 of the body | TTFB p50 | p95 | max | last byte p50 | others on the CPU | agent RSS after |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| `{}` | {} | {} | {} | {} | {}{} | {} | {} | {} | {} | {} | {:.1} % | {} KiB |",
            r.path,
            if r.session { "session" } else { "anonymous" },
            r.status,
            r.rows,
            kb(r.wire),
            kb(r.wire_gzip_asked),
            if r.compressed {
                " (compressed)"
            } else {
                " (not compressed)"
            },
            kb(r.gzip),
            fms(pct(&r.ttfb, 0.5)),
            fms(pct(&r.ttfb, 0.95)),
            fms(pct(&r.ttfb, 1.0)),
            fms(pct(&r.total, 0.5)),
            r.foreign,
            r.rss_after,
        );
    }
    println!("\nWhere the bytes are (anonymous, body):\n");
    println!("| page | body | in `<tbody>` | per row | map `<svg>` |");
    println!("|---|---|---|---|---|");
    for r in results.iter().filter(|r| !r.session) {
        println!(
            "| `{}` | {} | {} | {} | {} |",
            r.path,
            kb(r.body),
            kb(r.tbody),
            r.tbody
                .checked_div(r.rows)
                .map_or_else(|| "–".into(), |b| format!("{b} B")),
            kb(r.map)
        );
    }
    for r in results.iter().filter(|r| r.session) {
        if let Some(a) = results.iter().find(|a| !a.session && a.path == r.path) {
            if let Some(per_row) = r.tbody.checked_div(r.rows) {
                println!(
                    "(session: `{}` in `<tbody>` {} B per row, {} anonymous)",
                    r.path,
                    per_row,
                    a.tbody / a.rows.max(1)
                );
            }
        }
    }
    println!("\nAssets (cached for a year, `immutable`):\n");
    println!("| asset | on the wire | body | gzip -6 | served compressed |");
    println!("|---|---|---|---|---|");
    for (a, w, b, g, c) in &assets {
        println!(
            "| `{a}` | {} | {} | {} | {} |",
            kb(*w),
            kb(*b),
            kb(*g),
            if *c { "yes" } else { "no" }
        );
    }
    println!("\nLive updates (server-sent events received within 3 s after the catalog of the measured agent showed the change):\n");
    println!("| change | stream | events | bytes on the wire | events (bytes: op list key) |");
    println!("|---|---|---|---|---|");
    for (what, s, wire, evs) in &live_rows {
        let list: Vec<String> = evs
            .iter()
            .map(|e| format!("{}: {}", e.len(), summary(e)))
            .collect();
        println!(
            "| {what} | {s} | {} | {wire} B | {} |",
            evs.len(),
            list.join("; ")
        );
    }
    println!("\nRSS of the measured agent (`/proc/PID/smaps_rollup`, median of 5 reads after {} s idle) and its CPU over that window:\n", args.settle_secs);
    println!("| phase | RSS | anonymous | CPU |");
    println!("|---|---|---|---|");
    for s in &samples {
        println!(
            "| {} | {} KiB | {} KiB | {:.2} % |",
            s.phase, s.rss, s.anon, s.cpu_pct
        );
    }
    if let Some(((on_r, on_a), (off_r, off_a))) = medians {
        println!(
            "\nMedians over the restarts: with the dashboard {on_r} KiB (anonymous {on_a}), without {off_r} KiB ({off_a}): the dashboard adds {} KiB ({} KiB anonymous).",
            on_r as i64 - off_r as i64,
            on_a as i64 - off_a as i64
        );
    }
    println!(
        "\nThe {} other agents: {:.0} MiB RSS together ({:.1} MiB each), {:.1} % of a core together, idle.",
        others.len(),
        o_rss as f64 / 1024.0,
        o_rss as f64 / 1024.0 / others.len() as f64,
        others_cpu
    );
    drop(agent);
    drop(others);
    Ok(())
}

/// A temporary directory for the wrappers and service files.
fn tempfile_dir() -> Result<TempDir> {
    let p = std::env::temp_dir().join(format!("dashboard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&p)?;
    Ok(TempDir(p))
}

struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
