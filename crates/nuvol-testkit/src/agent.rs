//! Real agents as child processes: `serf agent` and `nuvol agent`, started
//! from one builder with serf's flags (single dash for serf, double dash
//! for nuvol), logging to a file in a temporary directory of their own.

use crate::cli::{self, CliOutput, MemberJson, CLI_ENV};
use crate::loopback::{fresh_ip, RPC_PORT, SERF_PORT};
use crate::wait::wait_until_msg;
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use rustix::process::Signal;

/// Set to `1` to keep every agent's directory (log, snapshot, data) after
/// the test; they are always kept when the test panics.
pub const KEEP_DIRS_ENV: &str = "NUVOL_KEEP_TEST_DIRS";

/// Which implementation a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgentKind {
    /// Debian's `serf agent`.
    Serf,
    /// `nuvol agent`.
    Nuvol,
}

impl AgentKind {
    /// `serf` or `nuvol`.
    pub fn name(self) -> &'static str {
        match self {
            AgentKind::Serf => "serf",
            AgentKind::Nuvol => "nuvol",
        }
    }

    fn flag(self, name: &str, value: impl std::fmt::Display) -> String {
        match self {
            AgentKind::Serf => format!("-{name}={value}"),
            AgentKind::Nuvol => format!("--{name}={value}"),
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::SerfAgent {}
    impl Sealed for super::NuvolAgent {}
}

/// The agent types an [`AgentBuilder`] can produce: [`SerfAgent`] and
/// [`NuvolAgent`]. Use it as a bound to write a test once for both.
pub trait FromProcess: sealed::Sealed + Deref<Target = AgentProcess> + DerefMut {
    const KIND: AgentKind;
    #[doc(hidden)]
    fn from_process(p: AgentProcess) -> Self;
}

/// Options of one agent; flag names are serf's. Every option is optional
/// except the node name: by default the agent gets a fresh loopback address
/// ([`fresh_ip`]) with gossip on port 7946 and RPC on 7373 of that address,
/// logs at debug level, and `spawn` waits until its RPC port accepts.
///
/// Relative paths given to [`snapshot`](Self::snapshot),
/// [`keyring_file`](Self::keyring_file), [`tags_file`](Self::tags_file)
/// and [`data_dir`](Self::data_dir) are taken inside the agent's own
/// temporary directory ([`AgentProcess::dir`]).
#[must_use]
pub struct AgentBuilder<T> {
    program: PathBuf,
    node: String,
    ip: Option<IpAddr>,
    bind: Option<SocketAddr>,
    rpc_addr: Option<SocketAddr>,
    rpc_auth: Option<String>,
    encrypt: Option<String>,
    keyring_file: Option<PathBuf>,
    keyring_keys: Option<Vec<String>>,
    tags: Vec<(String, String)>,
    tags_file: Option<PathBuf>,
    profile: Option<String>,
    protocol: Option<u8>,
    snapshot: Option<PathBuf>,
    event_handlers: Vec<String>,
    join: Vec<String>,
    retry_join: Vec<String>,
    reconnect_interval: Option<String>,
    data_dir: Option<PathBuf>,
    log_level: Option<String>,
    serf_config: Option<serde_json::Value>,
    extra: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    wait_ready: bool,
    ready_timeout: Duration,
    _t: PhantomData<fn() -> T>,
}

impl<T: FromProcess> AgentBuilder<T> {
    fn new(program: PathBuf, node: &str) -> Self {
        // The agent runs in its own directory: a relative path such as
        // `target/release/nuvol` must not be resolved from there.
        let program = if program.is_relative() && program.components().count() > 1 {
            std::env::current_dir()
                .map(|d| d.join(&program))
                .unwrap_or(program)
        } else {
            program
        };
        AgentBuilder {
            program,
            node: node.to_owned(),
            ip: None,
            bind: None,
            rpc_addr: None,
            rpc_auth: None,
            encrypt: None,
            keyring_file: None,
            keyring_keys: None,
            tags: Vec::new(),
            tags_file: None,
            profile: None,
            protocol: None,
            snapshot: None,
            event_handlers: Vec::new(),
            join: Vec::new(),
            retry_join: Vec::new(),
            reconnect_interval: None,
            data_dir: None,
            log_level: Some("debug".into()),
            serf_config: None,
            extra: Vec::new(),
            env: Vec::new(),
            wait_ready: true,
            ready_timeout: Duration::from_secs(30),
            _t: PhantomData,
        }
    }

    /// Use this loopback address (ports 7946 and 7373) instead of a fresh
    /// one, e.g. to restart a node with the same identity elsewhere.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Gossip address (`-bind`).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = Some(addr);
        self
    }

    /// RPC address (`-rpc-addr`).
    pub fn rpc_addr(mut self, addr: SocketAddr) -> Self {
        self.rpc_addr = Some(addr);
        self
    }

    /// RPC auth key. serf takes it from a config file (`rpc_auth`), nuvol
    /// from `--rpc-auth`; [`AgentProcess::serf`] passes it to the CLI.
    pub fn rpc_auth(mut self, key: &str) -> Self {
        self.rpc_auth = Some(key.to_owned());
        self
    }

    /// Gossip encryption key, base64 (`-encrypt`).
    pub fn encrypt(mut self, key: &str) -> Self {
        self.encrypt = Some(key.to_owned());
        self
    }

    /// `-keyring-file`.
    pub fn keyring_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.keyring_file = Some(path.into());
        self
    }

    /// Write these base64 keys (first is primary) to `keyring.json` in the
    /// agent's directory and pass it as `-keyring-file`.
    pub fn keyring_keys(mut self, keys: &[&str]) -> Self {
        self.keyring_keys = Some(keys.iter().map(|k| (*k).to_owned()).collect());
        self
    }

    /// `-tag K=V` (repeatable).
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `-tags-file`.
    pub fn tags_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tags_file = Some(path.into());
        self
    }

    /// `-profile` (`lan`, `wan`, `local`).
    pub fn profile(mut self, profile: &str) -> Self {
        self.profile = Some(profile.to_owned());
        self
    }

    /// `-protocol`.
    pub fn protocol(mut self, version: u8) -> Self {
        self.protocol = Some(version);
        self
    }

    /// `-snapshot`.
    pub fn snapshot(mut self, path: impl Into<PathBuf>) -> Self {
        self.snapshot = Some(path.into());
        self
    }

    /// `-event-handler` (repeatable): `SCRIPT`, `TYPE=SCRIPT` or
    /// `user:NAME=SCRIPT`; run by the agent through `/bin/sh -c`.
    pub fn event_handler(mut self, handler: &str) -> Self {
        self.event_handlers.push(handler.to_owned());
        self
    }

    /// `-join` (repeatable); an `IP:PORT` or anything `Display`s as one.
    pub fn join(mut self, addr: impl ToString) -> Self {
        self.join.push(addr.to_string());
        self
    }

    /// `-join` this agent's gossip address.
    pub fn join_agent(self, other: &AgentProcess) -> Self {
        let a = other.bind();
        self.join(a)
    }

    /// `-retry-join` (repeatable).
    pub fn retry_join(mut self, addr: impl ToString) -> Self {
        self.retry_join.push(addr.to_string());
        self
    }

    /// How often the agent tries to reconnect to failed members (`10s`,
    /// `1h`): nuvol's `--reconnect-interval`, serf's `reconnect_interval`
    /// in its configuration file (serf has no flag for it).
    pub fn reconnect_interval(mut self, interval: &str) -> Self {
        self.reconnect_interval = Some(interval.to_owned());
        self
    }

    /// nuvol's `--data-dir` (default: `data` in the agent's directory);
    /// ignored for serf, which has none.
    pub fn data_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(path.into());
        self
    }

    /// `-log-level` (default `debug`, so tests can look for log lines);
    /// `None` leaves the agent's default.
    pub fn log_level(mut self, level: Option<&str>) -> Self {
        self.log_level = level.map(str::to_owned);
        self
    }

    /// serf only: extra JSON configuration, written to a file and passed
    /// with `-config-file` (merged with `rpc_auth`, if set).
    pub fn serf_config(mut self, json: serde_json::Value) -> Self {
        self.serf_config = Some(json);
        self
    }

    /// One more argument, verbatim, after the others.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra.push(arg.into());
        self
    }

    /// More arguments, verbatim, after the others.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.extra.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable for the agent (and its event handlers).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Whether `spawn` waits until the RPC port accepts (default true). With
    /// false it returns at once, e.g. for an agent expected to exit.
    pub fn wait_ready(mut self, wait: bool) -> Self {
        self.wait_ready = wait;
        self
    }

    /// Upper bound for the RPC port to open (default 30 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// The command line `spawn` will run, for display (paths inside the
    /// agent's directory shown relative).
    pub fn command_line(&self) -> Vec<String> {
        let (args, _) = self.build_args(Path::new("."), SocketAddr::from(([127, 0, 0, 1], 0)));
        std::iter::once(self.program.display().to_string())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect()
    }

    fn build_args(
        &self,
        dir: &Path,
        default_bind: SocketAddr,
    ) -> (Vec<OsString>, Vec<FileToWrite>) {
        let kind = T::KIND;
        let in_dir = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                dir.join(p)
            }
        };
        let bind = self.bind.unwrap_or(default_bind);
        let rpc = self
            .rpc_addr
            .unwrap_or_else(|| SocketAddr::new(bind.ip(), RPC_PORT));
        let mut files = Vec::new();
        let mut a: Vec<String> = vec![
            "agent".into(),
            kind.flag("node", &self.node),
            kind.flag("bind", bind),
            kind.flag("rpc-addr", rpc),
        ];
        if let Some(l) = &self.log_level {
            a.push(kind.flag("log-level", l));
        }
        if let Some(p) = &self.profile {
            a.push(kind.flag("profile", p));
        }
        if let Some(p) = self.protocol {
            a.push(kind.flag("protocol", p));
        }
        if let Some(k) = &self.encrypt {
            a.push(kind.flag("encrypt", k));
        }
        if let Some(keys) = &self.keyring_keys {
            let p = dir.join("keyring.json");
            files.push(FileToWrite {
                path: p.clone(),
                contents: serde_json::to_string(keys).expect("keys as JSON"),
                overwrite: false,
            });
            a.push(kind.flag("keyring-file", p.display()));
        }
        if let Some(k) = &self.keyring_file {
            a.push(kind.flag("keyring-file", in_dir(k).display()));
        }
        for (k, v) in &self.tags {
            a.push(kind.flag("tag", format!("{k}={v}")));
        }
        if let Some(t) = &self.tags_file {
            a.push(kind.flag("tags-file", in_dir(t).display()));
        }
        if let Some(s) = &self.snapshot {
            a.push(kind.flag("snapshot", in_dir(s).display()));
        }
        for h in &self.event_handlers {
            a.push(kind.flag("event-handler", h));
        }
        for j in &self.join {
            a.push(kind.flag("join", j));
        }
        for j in &self.retry_join {
            a.push(kind.flag("retry-join", j));
        }
        match kind {
            AgentKind::Nuvol => {
                let d = self
                    .data_dir
                    .as_ref()
                    .map(in_dir)
                    .unwrap_or_else(|| dir.join("data"));
                a.push(kind.flag("data-dir", d.display()));
                if let Some(k) = &self.rpc_auth {
                    a.push(kind.flag("rpc-auth", k));
                }
                if let Some(r) = &self.reconnect_interval {
                    a.push(kind.flag("reconnect-interval", r));
                }
            }
            AgentKind::Serf => {
                let mut cfg = self.serf_config.clone();
                let mut set = |key: &str, value: &str| {
                    let c = cfg.get_or_insert_with(|| serde_json::json!({}));
                    if let Some(o) = c.as_object_mut() {
                        o.insert(key.into(), value.into());
                    }
                };
                if let Some(k) = &self.rpc_auth {
                    set("rpc_auth", k);
                }
                if let Some(r) = &self.reconnect_interval {
                    set("reconnect_interval", r);
                }
                if let Some(c) = cfg {
                    let p = dir.join("serf-config.json");
                    files.push(FileToWrite {
                        path: p.clone(),
                        contents: c.to_string(),
                        overwrite: true,
                    });
                    a.push(kind.flag("config-file", p.display()));
                }
            }
        }
        let mut args: Vec<OsString> = a.into_iter().map(OsString::from).collect();
        args.extend(self.extra.iter().cloned());
        (args, files)
    }

    /// Start the agent. Unless [`wait_ready`](Self::wait_ready) is false,
    /// returns once its RPC port accepts connections, or an error with the
    /// agent's log if it exits first or does not open it in time.
    pub fn spawn(self) -> Result<T> {
        // Node names may hold anything (tests give markup); the directory
        // name keeps only the safe characters.
        let safe: String = self
            .node
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!("nuvol-testkit-{}-{safe}-", T::KIND.name()))
            .tempdir()
            .context("creating the agent's temporary directory")?;
        if std::env::var(KEEP_DIRS_ENV).as_deref() == Ok("1") {
            tmp.disable_cleanup(true);
        }
        let dir = tmp.path().to_owned();
        let ip = match (self.ip, self.bind) {
            (Some(ip), _) => ip,
            (None, Some(b)) => b.ip(),
            (None, None) => fresh_ip(),
        };
        let default_bind = SocketAddr::new(ip, SERF_PORT);
        let bind = self.bind.unwrap_or(default_bind);
        let rpc = self
            .rpc_addr
            .unwrap_or_else(|| SocketAddr::new(bind.ip(), RPC_PORT));
        let (args, files) = self.build_args(&dir, default_bind);
        for f in files {
            if f.overwrite || !f.path.exists() {
                std::fs::write(&f.path, f.contents)
                    .with_context(|| format!("writing {}", f.path.display()))?;
            }
        }
        let mut p = AgentProcess {
            kind: T::KIND,
            name: self.node.clone(),
            bind,
            rpc,
            rpc_auth: self.rpc_auth.clone(),
            log: dir.join("agent.log"),
            program: self.program.clone(),
            args,
            env: self.env.clone(),
            child: None,
            last_status: None,
            dir: tmp,
        };
        p.start()?;
        if self.wait_ready {
            p.wait_ready(self.ready_timeout)?;
        }
        Ok(T::from_process(p))
    }
}

struct FileToWrite {
    path: PathBuf,
    contents: String,
    overwrite: bool,
}

/// A running (or stopped) agent process: addresses, log, signals, and serf's
/// CLI against its RPC. Reached through [`SerfAgent`] and [`NuvolAgent`].
/// SIGKILLed when dropped.
pub struct AgentProcess {
    kind: AgentKind,
    name: String,
    bind: SocketAddr,
    rpc: SocketAddr,
    rpc_auth: Option<String>,
    log: PathBuf,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    child: Option<Child>,
    last_status: Option<ExitStatus>,
    dir: tempfile::TempDir,
}

impl AgentProcess {
    fn start(&mut self) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut cmd = Command::new(&self.program);
        for v in CLI_ENV {
            cmd.env_remove(v);
        }
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {} {:?}", self.program.display(), self.args))?;
        self.child = Some(child);
        self.last_status = None;
        Ok(())
    }

    /// Wait until the RPC port accepts a connection.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let target = connectable(self.rpc);
        let start = Instant::now();
        loop {
            if let Some(st) = self.try_exit_status() {
                bail!(
                    "{} agent {} exited ({st}) before opening RPC on {}; log:\n{}",
                    self.kind.name(),
                    self.name,
                    self.rpc,
                    self.log_tail(60)
                );
            }
            if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} agent {} did not open RPC on {} within {timeout:?}; log:\n{}",
                    self.kind.name(),
                    self.name,
                    self.rpc,
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn kind(&self) -> AgentKind {
        self.kind
    }

    /// Node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Gossip address; what others `-join`.
    pub fn bind(&self) -> SocketAddr {
        self.bind
    }

    /// The agent's own loopback address.
    pub fn ip(&self) -> IpAddr {
        self.bind.ip()
    }

    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc
    }

    pub fn rpc_auth(&self) -> Option<&str> {
        self.rpc_auth.as_deref()
    }

    /// The agent's own temporary directory (log, config, default data dir).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The program and arguments it runs with.
    pub fn command_line(&self) -> Vec<String> {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the agent wrote to stdout and stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let t = self.log_text();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log_text().contains(needle)
    }

    /// Wait until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        wait_until_msg(
            &format!("{:?} in {}'s log", needle, self.name),
            timeout,
            Duration::from_millis(50),
            || self.log_contains(needle),
        )
        .map_err(|e| anyhow!("{e}; log tail:\n{}", self.log_tail(30)))
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                self.last_status = Some(st);
            }
        }
        if self.child.is_none() {
            self.last_status
        } else {
            None
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.try_exit_status();
        self.child.is_some()
    }

    /// How the process ended, once it has (and was reaped).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.try_exit_status()
    }

    /// Wait for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.try_exit_status() {
                return Ok(st);
            }
            if self.child.is_none() {
                bail!("{} was never started or already reaped", self.name);
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} still running after {timeout:?}; log tail:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send a signal ([`Signal::TERM`], [`Signal::INT`], [`Signal::HUP`],
    /// …). The pid is our own child's, not reaped yet (we hold the
    /// `Child`), so it cannot have been reused by another process.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        let Some(pid) = self.pid() else {
            bail!("{} is not running", self.name);
        };
        let p = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .with_context(|| format!("pid {pid} out of range"))?;
        rustix::process::kill_process(p, sig)
            .with_context(|| format!("kill({pid}, {sig:?}) failed"))?;
        Ok(())
    }

    /// SIGKILL and reap; nothing if not running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            if let Ok(st) = c.wait() {
                self.last_status = Some(st);
            }
        }
    }

    /// SIGTERM, then wait up to 10 s for the exit (SIGKILL after that).
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.stop_with(Signal::TERM, Duration::from_secs(10))
    }

    /// SIGINT (a graceful leave for serf), then wait up to 15 s.
    pub fn interrupt(&mut self) -> Result<ExitStatus> {
        self.stop_with(Signal::INT, Duration::from_secs(15))
    }

    /// Send `sig`, wait up to `timeout` for the exit, then SIGKILL. Errs if
    /// the agent had to be killed.
    pub fn stop_with(&mut self, sig: Signal, timeout: Duration) -> Result<ExitStatus> {
        if let Some(st) = self.try_exit_status() {
            return Ok(st);
        }
        self.signal(sig)?;
        match self.wait_exit(timeout) {
            Ok(st) => Ok(st),
            Err(e) => {
                self.kill();
                Err(e.context(format!("signal {sig:?} did not stop {}", self.name)))
            }
        }
    }

    /// Stop (SIGKILL) if running, and start again with the same command
    /// line, address and directory (so the same snapshot, keyring and data
    /// dir); the log is appended to. Waits until RPC accepts.
    pub fn restart(&mut self) -> Result<()> {
        self.restart_with(|_| {})
    }

    /// [`restart`](Self::restart) with the arguments changed by `edit`
    /// first (they stay changed for later restarts).
    pub fn restart_with(&mut self, edit: impl FnOnce(&mut Vec<OsString>)) -> Result<()> {
        self.kill();
        edit(&mut self.args);
        self.start()?;
        self.wait_ready(Duration::from_secs(30))
    }

    /// [`restart`](Self::restart) without its `join` and `retry-join`
    /// flags: whatever it rejoins, it found by itself (in its snapshot).
    pub fn restart_without_join(&mut self) -> Result<()> {
        self.restart_with(|args| {
            args.retain(|a| {
                let a = a.to_string_lossy();
                let a = a.trim_start_matches('-');
                !(a.starts_with("join=") || a.starts_with("retry-join="))
            })
        })
    }

    /// Run `serf <args>` against this agent's RPC (with its auth key);
    /// see [`cli::serf_cli`].
    pub fn serf(&self, args: &[&str]) -> Result<String> {
        cli::serf_cli_auth(args, self.rpc, self.rpc_auth.as_deref())
    }

    /// [`serf`](Self::serf) whatever the exit status (to check failures).
    pub fn serf_run(&self, args: &[&str]) -> Result<CliOutput> {
        cli::serf_run(args, self.rpc, self.rpc_auth.as_deref())
    }

    /// serf's CLI against this agent's RPC without any auth key.
    pub fn serf_run_noauth(&self, args: &[&str]) -> Result<CliOutput> {
        cli::serf_run(args, self.rpc, None)
    }

    /// nuvol's CLI (`bin`) against this agent's RPC (with its auth key),
    /// whatever the exit status; works on serf agents too.
    pub fn nuvol_run(&self, bin: impl AsRef<Path>, args: &[&str]) -> Result<CliOutput> {
        cli::nuvol_run(bin.as_ref(), args, self.rpc, self.rpc_auth.as_deref())
    }

    /// nuvol's CLI (`bin`) against this agent's RPC; its stdout, or an
    /// error with its stderr.
    pub fn nuvol_cli(&self, bin: impl AsRef<Path>, args: &[&str]) -> Result<String> {
        self.nuvol_run(bin, args)?.into_ok()
    }

    /// This agent's member list through `serf members -format=json`,
    /// sorted by name.
    pub fn members(&self) -> Result<Vec<MemberJson>> {
        cli::members_json_auth(self.rpc, self.rpc_auth.as_deref())
    }

    /// The member called `name` in this agent's list.
    pub fn member(&self, name: &str) -> Result<Option<MemberJson>> {
        Ok(self.members()?.into_iter().find(|m| m.name == name))
    }

    /// `name`'s status as this agent sees it; `None` if it is not in the
    /// member list.
    ///
    /// Panics (with the CLI's stderr) if the member list cannot be had: a
    /// failed call is never taken for "not a member".
    #[track_caller]
    pub fn status_of(&self, name: &str) -> Option<String> {
        match self.member(name) {
            Ok(m) => m.map(|m| m.status),
            Err(e) => panic!(
                "asking {} agent {} for {name}'s status: {e:#}",
                self.kind.name(),
                self.name
            ),
        }
    }

    /// [`members`](Self::members), panicking (with the CLI's stderr) if the
    /// list cannot be had.
    #[track_caller]
    pub fn members_now(&self) -> Vec<MemberJson> {
        match self.members() {
            Ok(ms) => ms,
            Err(e) => panic!(
                "asking {} agent {} for its members: {e:#}",
                self.kind.name(),
                self.name
            ),
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "{} agent {}: directory kept at {}",
                self.kind.name(),
                self.name,
                self.dir.path().display()
            );
        }
    }
}

/// A real `serf agent` process (Debian's `serf` on `PATH`).
pub struct SerfAgent(AgentProcess);

impl SerfAgent {
    /// A builder for `serf agent -node=<node>`.
    pub fn builder(node: &str) -> AgentBuilder<SerfAgent> {
        AgentBuilder::new(PathBuf::from("serf"), node)
    }

    /// A builder running another serf binary.
    pub fn builder_with_program(
        program: impl Into<PathBuf>,
        node: &str,
    ) -> AgentBuilder<SerfAgent> {
        AgentBuilder::new(program.into(), node)
    }
}

/// A `nuvol agent` process; the binary path is given (integration tests:
/// `env!("CARGO_BIN_EXE_nuvol")`).
pub struct NuvolAgent(AgentProcess);

impl NuvolAgent {
    /// A builder for `<bin> agent --node=<node>`.
    pub fn builder(bin: impl Into<PathBuf>, node: &str) -> AgentBuilder<NuvolAgent> {
        AgentBuilder::new(bin.into(), node)
    }

    /// Run nuvol's own CLI (`<bin> <args> --rpc-addr …`) against this agent.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        self.cli_run(args)?.into_ok()
    }

    /// [`cli`](Self::cli) whatever the exit status (to check failures).
    pub fn cli_run(&self, args: &[&str]) -> Result<CliOutput> {
        cli::nuvol_run(
            &self.0.program,
            args,
            self.0.rpc,
            self.0.rpc_auth.as_deref(),
        )
    }

    /// The nuvol binary this agent runs.
    pub fn bin(&self) -> &Path {
        &self.0.program
    }

    /// This agent's member list through `nuvol members --format json`.
    pub fn nuvol_members(&self) -> Result<Vec<MemberJson>> {
        cli::parse_members(&self.cli(&["members", "--format", "json"])?)
    }
}

macro_rules! agent_type {
    ($t:ident, $kind:expr) => {
        impl FromProcess for $t {
            const KIND: AgentKind = $kind;
            fn from_process(p: AgentProcess) -> Self {
                $t(p)
            }
        }
        impl Deref for $t {
            type Target = AgentProcess;
            fn deref(&self) -> &AgentProcess {
                &self.0
            }
        }
        impl DerefMut for $t {
            fn deref_mut(&mut self) -> &mut AgentProcess {
                &mut self.0
            }
        }
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("name", &self.0.name)
                    .field("bind", &self.0.bind)
                    .field("rpc", &self.0.rpc)
                    .field("pid", &self.0.pid())
                    .field("dir", &self.0.dir.path())
                    .finish()
            }
        }
    };
}
agent_type!(SerfAgent, AgentKind::Serf);
agent_type!(NuvolAgent, AgentKind::Nuvol);

/// Wait until `pred` holds on the member list of every agent in
/// `observers` (each asked through `serf members -format=json`). The error
/// names the observers that did not get there and what they last saw.
pub fn wait_all_see(
    observers: &[&AgentProcess],
    what: &str,
    timeout: Duration,
    pred: impl Fn(&[MemberJson]) -> bool,
) -> Result<()> {
    let start = Instant::now();
    let mut pending: Vec<&AgentProcess> = observers.to_vec();
    let mut last: Vec<String> = Vec::new();
    loop {
        last.clear();
        let mut failed = None;
        pending.retain(|a| match a.members() {
            Ok(ms) if pred(&ms) => false,
            Ok(ms) => {
                last.push(format!("{}: {}", a.name(), summarize(&ms)));
                true
            }
            Err(e) => {
                failed.get_or_insert(format!("{}: {e:#}", a.name()));
                true
            }
        });
        if let Some(e) = failed {
            bail!("waiting for every agent to see {what}, a member list failed: {e}");
        }
        if pending.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "timed out after {:.1?} waiting for every agent to see {what}; not yet:\n  {}",
                start.elapsed(),
                last.join("\n  ")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Wait until every agent in `agents` reports the same member list (names,
/// addresses, statuses, tags, protocol versions) and that list is exactly
/// `expect` (name, status). A failed member list fails at once.
pub fn wait_all_agree(
    agents: &[&AgentProcess],
    expect: &[(&str, &str)],
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    loop {
        let mut views = Vec::with_capacity(agents.len());
        for a in agents {
            let ms = a
                .members()
                .with_context(|| format!("member list of {}", a.name()))?;
            views.push((a.name(), ms));
        }
        let agree = views.windows(2).all(|w| w[0].1 == w[1].1);
        let matches = match views.first() {
            None => true,
            Some((_, first)) => {
                first.len() == expect.len()
                    && expect
                        .iter()
                        .all(|(n, st)| first.iter().any(|m| m.name == *n && m.status == *st))
            }
        };
        if agree && matches {
            return Ok(());
        }
        if start.elapsed() > timeout {
            let shown: Vec<String> = views
                .iter()
                .map(|(n, ms)| format!("{n}: {}", summarize(ms)))
                .collect();
            bail!(
                "timed out after {:.1?} waiting for {} agents to agree on {expect:?}; they see:\n  {}",
                start.elapsed(),
                agents.len(),
                shown.join("\n  ")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `name=status` pairs plus tags, for error messages.
pub fn summarize(ms: &[MemberJson]) -> String {
    ms.iter()
        .map(|m| {
            if m.tags.is_empty() {
                format!("{}={}", m.name, m.status)
            } else {
                format!("{}={} {:?}", m.name, m.status, m.tags)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A connectable form of a listen address (0.0.0.0 → 127.0.0.1).
fn connectable(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), a.port())
    } else {
        a
    }
}
