//! The process driver: apps whose services are programs installed on the
//! host (`x-nuvol.driver: process`), supervised by the agent behind the
//! same [`Engine`] interface as Docker, so the reconciler and the manager
//! treat a process like a container.
//!
//! - A "container" is a supervised process with an id `proc-...`. Its
//!   labels (app, service, node, spec hash), pid and start time (from
//!   `/proc/PID/stat`, against pid reuse), state, exit code and restart
//!   count are kept in `DATA_DIR/apps-proc/procs/ID.json`, so a restarted
//!   agent adopts a process still running (same pid) instead of starting a
//!   second one. A state file that does not parse is logged and skipped.
//! - A process runs in its own process group, as its user (the service's
//!   `user`, else `[apps] process_user`; root only when
//!   `process_allow_root`), with supplementary groups dropped (std's
//!   `Command::uid` does `setgroups(0)` when the agent is root), an
//!   environment of its own (the agent's is not passed), stdin from
//!   /dev/null and stdout and stderr appended to one log file. It is not
//!   the agent's pipe: a process outlives the agent (apps keep running
//!   when it stops).
//! - Logs are rotated by size by the agent (copy then truncate: the
//!   program's file descriptor is `O_APPEND`, so it writes on at the new
//!   end; lines written between the copy and the truncation are lost).
//! - Stop is SIGTERM to the group, SIGKILL after the timeout.
//! - Memory and CPU limits go to a cgroup per process under `nuvol`:
//!   cgroup v2 (`memory.max`, `cpu.max`) where a writable unified
//!   hierarchy has the controllers, else v1 (`memory.limit_in_bytes`,
//!   `cpu.cfs_quota_us`), else the process runs without limits and says
//!   so in its log. The process is moved into its cgroup right after it
//!   starts (without `pre_exec`, which needs `unsafe`): a child it forks
//!   in that first instant stays outside.
//! - Named volumes are directories under `DATA_DIR/apps-proc/volumes/`,
//!   owned by the run user; the program gets each one's path in the
//!   environment variable the Compose file names (`NAME:VARIABLE`).
//! - The exit code of a process the agent started is known; one that
//!   ended while the agent was down is `exited` with no code.

use crate::driver::{Call, Engine, Health, LogLine, LogStream, Observed, RunState};
use crate::error::AppError;
use crate::manager::VOLUMES_MOUNT;
use crate::plan::{ContainerSpec, HealthSpec, MountSource, NetworkSpec, VolumeSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A process service's `image`: this prefix and the program's path.
pub const IMAGE_PREFIX: &str = "process:";
/// Ids of supervised processes.
pub const ID_PREFIX: &str = "proc-";
/// The state file format.
const STATE_VERSION: u32 = 1;
/// How often logs are checked for rotation.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// The driver's settings (from `[apps]`).
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// The user of services without `user:`.
    pub user: String,
    /// Whether a service may run as root (uid 0).
    pub allow_root: bool,
    /// A log file is rotated when it reaches this size.
    pub log_max: u64,
    /// Rotated generations kept (`out.log.1` .. `out.log.N`).
    pub log_keep: usize,
}

impl Default for ProcessSettings {
    fn default() -> Self {
        ProcessSettings {
            user: "nobody".into(),
            allow_root: false,
            log_max: 1024 * 1024,
            log_keep: 3,
        }
    }
}

/// What the agent keeps of one process (`procs/ID.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcState {
    pub version: u32,
    pub id: String,
    pub app: String,
    pub service: String,
    pub node: String,
    pub spec_hash: String,
    pub spec: ContainerSpec,
    pub app_dir: PathBuf,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub state: RunState,
    #[serde(default)]
    pub pid: Option<u32>,
    /// Field 22 of `/proc/PID/stat` when it started (clock ticks since
    /// boot): a pid reused by another process has another.
    #[serde(default)]
    pub start_time: Option<u64>,
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub restart_count: u64,
    #[serde(default)]
    pub started_once: bool,
    /// Cgroup directories it was given.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// What `status` says of its last run (limits not applied, killed for
    /// memory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Parse a state file; a corrupt one or one of another version is an
/// error naming why.
pub fn parse_state(text: &str) -> Result<ProcState, String> {
    let s: ProcState = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if s.version != STATE_VERSION {
        return Err(format!(
            "format version {} (this agent reads {STATE_VERSION})",
            s.version
        ));
    }
    if !s.id.starts_with(ID_PREFIX) {
        return Err(format!("id {:?} is not a process id", s.id));
    }
    Ok(s)
}

/// The start time (field 22) and state letter of `/proc/PID/stat`'s
/// text. The command (field 2) may hold spaces and parentheses: fields
/// are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<(char, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    // Fields 4..=21 come before the start time.
    let start = f.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn proc_stat(pid: u32) -> Option<(char, u64)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether `pid` is still the process started at `start_time`.
fn alive(pid: u32, start_time: Option<u64>) -> bool {
    match proc_stat(pid) {
        Some((st, t)) => st != 'Z' && st != 'X' && start_time.is_none_or(|s| s == t),
        None => false,
    }
}

/// Log files of a generation: `out.log`, `out.log.1`, ...
pub fn log_file(dir: &Path, generation: usize) -> PathBuf {
    if generation == 0 {
        dir.join("out.log")
    } else {
        dir.join(format!("out.log.{generation}"))
    }
}

/// Whether a log of `size` bytes is due for rotation.
pub fn needs_rotation(size: u64, max: u64) -> bool {
    max > 0 && size >= max
}

/// Rotate `dir`'s log: `out.log.(N-1)` → `out.log.N`, ..., a copy of
/// `out.log` → `out.log.1`, then `out.log` truncated (the writer appends).
fn rotate(dir: &Path, keep: usize) -> std::io::Result<()> {
    let keep = keep.max(1);
    for g in (1..keep).rev() {
        let from = log_file(dir, g);
        if from.exists() {
            std::fs::rename(&from, log_file(dir, g + 1))?;
        }
    }
    std::fs::copy(log_file(dir, 0), log_file(dir, 1))?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(log_file(dir, 0))?
        .set_len(0)
}

/// The last `n` lines of the generations (oldest first).
fn tail_lines(dir: &Path, keep: usize, n: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for g in (0..=keep).rev() {
        let Ok(f) = std::fs::File::open(log_file(dir, g)) else {
            continue;
        };
        for l in std::io::BufReader::new(f)
            .split(b'\n')
            .map_while(Result::ok)
        {
            lines.push(String::from_utf8_lossy(&l).into_owned());
            if lines.len() > n.saturating_mul(2).max(1024) {
                lines.drain(..lines.len() - n);
            }
        }
    }
    let skip = lines.len().saturating_sub(n);
    lines.split_off(skip)
}

/// Where cgroup limits go on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// The unified hierarchy's `nuvol` cgroup (controllers enabled).
    V2 { parent: PathBuf },
    /// v1's `memory/nuvol` and `cpu/nuvol`.
    V1 { memory: PathBuf, cpu: PathBuf },
    /// Limits cannot be applied (why).
    Unavailable(String),
}

/// CFS period used for CPU limits (100 ms, the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;

/// The CPU quota in µs per [`CPU_PERIOD_US`] for `nano_cpus` billionths
/// of a CPU (at least 1 ms, the kernel's minimum).
pub fn cpu_quota_us(nano_cpus: i64) -> u64 {
    let q = (u128::from(nano_cpus.unsigned_abs()) * u128::from(CPU_PERIOD_US)) / 1_000_000_000;
    u64::try_from(q).unwrap_or(u64::MAX).max(1000)
}

impl Cgroups {
    /// Find a hierarchy under `root` (`/sys/fs/cgroup`) and create the
    /// `nuvol` parent in it.
    pub fn detect(root: &Path) -> Cgroups {
        for unified in [root.to_path_buf(), root.join("unified")] {
            let Ok(ctl) = std::fs::read_to_string(unified.join("cgroup.controllers")) else {
                continue;
            };
            let has: Vec<&str> = ctl.split_whitespace().collect();
            if !(has.contains(&"memory") && has.contains(&"cpu")) {
                continue;
            }
            let parent = unified.join("nuvol");
            // The controllers enabled for the children of the root and of
            // nuvol; failures show as a missing memory.max below.
            let _ = std::fs::write(unified.join("cgroup.subtree_control"), "+memory +cpu");
            if std::fs::create_dir_all(&parent).is_ok() {
                let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu");
                if std::fs::read_to_string(parent.join("cgroup.subtree_control"))
                    .is_ok_and(|s| s.contains("memory") && s.contains("cpu"))
                {
                    return Cgroups::V2 { parent };
                }
            }
        }
        let memory = root.join("memory");
        let cpu = root.join("cpu");
        if memory.join("memory.limit_in_bytes").exists() && cpu.join("cpu.cfs_quota_us").exists() {
            let (m, c) = (memory.join("nuvol"), cpu.join("nuvol"));
            match std::fs::create_dir_all(&m).and_then(|()| std::fs::create_dir_all(&c)) {
                Ok(()) => return Cgroups::V1 { memory: m, cpu: c },
                Err(e) => {
                    return Cgroups::Unavailable(format!(
                        "cgroup v1 at {} is not writable: {e}",
                        root.display()
                    ))
                }
            }
        }
        Cgroups::Unavailable(format!(
            "no writable cgroup hierarchy with the memory and cpu controllers under {}",
            root.display()
        ))
    }

    /// The directories and files to write for a process's limits.
    pub fn plan(
        &self,
        id: &str,
        memory: Option<u64>,
        nano_cpus: Option<i64>,
    ) -> Vec<(PathBuf, Vec<(&'static str, String)>)> {
        match self {
            Cgroups::V2 { parent } => {
                let mut files = Vec::new();
                if let Some(m) = memory {
                    files.push(("memory.max", m.to_string()));
                    // No swap: the limit is the memory the program has.
                    files.push(("memory.swap.max", "0".into()));
                }
                if let Some(c) = nano_cpus {
                    files.push(("cpu.max", format!("{} {CPU_PERIOD_US}", cpu_quota_us(c))));
                }
                vec![(parent.join(id), files)]
            }
            Cgroups::V1 { memory: mroot, cpu } => {
                let mut out = Vec::new();
                if let Some(m) = memory {
                    out.push((
                        mroot.join(id),
                        vec![
                            ("memory.limit_in_bytes", m.to_string()),
                            ("memory.swappiness", "0".into()),
                        ],
                    ));
                }
                if let Some(c) = nano_cpus {
                    out.push((
                        cpu.join(id),
                        vec![
                            ("cpu.cfs_period_us", CPU_PERIOD_US.to_string()),
                            ("cpu.cfs_quota_us", cpu_quota_us(c).to_string()),
                        ],
                    ));
                }
                out
            }
            Cgroups::Unavailable(_) => Vec::new(),
        }
    }
}

/// Whether the kernel's OOM killer acted in one of `dirs` (v1's
/// `memory.oom_control`, v2's `memory.events`).
fn oom_killed(dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| {
        ["memory.oom_control", "memory.events"].iter().any(|f| {
            std::fs::read_to_string(d.join(f)).is_ok_and(|t| {
                t.lines().any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
        })
    })
}

/// A process's health as its checks went (sans-I/O).
#[derive(Debug, Clone)]
pub struct HealthTrack {
    started: Instant,
    failures: u32,
    ok_once: bool,
    last: Health,
}

impl HealthTrack {
    pub fn new(now: Instant) -> HealthTrack {
        HealthTrack {
            started: now,
            failures: 0,
            ok_once: false,
            last: Health::Starting,
        }
    }

    /// One check's result at `now`.
    pub fn record(&mut self, now: Instant, ok: bool, spec: &HealthSpec) -> Health {
        if ok {
            self.failures = 0;
            self.ok_once = true;
            self.last = Health::Healthy;
        } else if self.ok_once || now.saturating_duration_since(self.started) >= spec.start_period {
            self.failures += 1;
            if self.failures >= spec.retries.max(1) {
                self.last = Health::Unhealthy;
            }
        }
        self.last
    }

    pub fn health(&self) -> Health {
        self.last
    }
}

struct Proc {
    st: ProcState,
    /// Bumped at each start: a waiter or health task of an older run
    /// leaves the state alone.
    run: u64,
    health: Option<HealthTrack>,
}

struct Inner {
    dir: PathBuf,
    node: String,
    cfg: ProcessSettings,
    procs: Mutex<BTreeMap<String, Proc>>,
    cgroups: Mutex<Option<Cgroups>>,
    cgroup_root: PathBuf,
}

/// The process engine. Cheap to clone.
#[derive(Clone)]
pub struct Processes {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn io(what: &str, p: &Path, e: std::io::Error) -> AppError {
    AppError::Other(format!("{what} {}: {e}", p.display()))
}

/// A user's uid and primary gid.
fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    if let Ok(uid) = name.parse::<u32>() {
        return match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            Ok(Some(u)) => Ok((uid, u.gid.as_raw())),
            _ => Ok((uid, uid)),
        };
    }
    let (user, group) = match name.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (name, None),
    };
    let u = nix::unistd::User::from_name(user)
        .map_err(|e| format!("cannot look up user {user}: {e}"))?
        .ok_or_else(|| format!("no user {user} on this node"))?;
    let gid = match group {
        None => u.gid.as_raw(),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => nix::unistd::Group::from_name(g)
                .map_err(|e| format!("cannot look up group {g}: {e}"))?
                .ok_or_else(|| format!("no group {g} on this node"))?
                .gid
                .as_raw(),
        },
    };
    Ok((u.uid.as_raw(), gid))
}

/// A program path that exists and is executable.
fn check_program(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err("not an absolute path".into());
    }
    let m = std::fs::metadata(p).map_err(|e| format!("not found on this node ({e})"))?;
    if !m.is_file() {
        return Err("is not a file".into());
    }
    if m.permissions().mode() & 0o111 == 0 {
        return Err("is not executable".into());
    }
    Ok(())
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(p, sig);
    }
}

impl Processes {
    /// Open the state in `data_dir/apps-proc`: every state file read (a
    /// corrupt one logged and skipped), running processes checked against
    /// `/proc` (adopted when they are still the same process).
    pub fn open(data_dir: &Path, node: &str, cfg: ProcessSettings) -> Result<Processes, AppError> {
        Self::open_with(data_dir, node, cfg, Path::new("/sys/fs/cgroup"))
    }

    /// [`Processes::open`] with another cgroup root.
    pub fn open_with(
        data_dir: &Path,
        node: &str,
        cfg: ProcessSettings,
        cgroup_root: &Path,
    ) -> Result<Processes, AppError> {
        let dir = data_dir.join("apps-proc");
        for d in ["procs", "logs", "volumes"] {
            let p = dir.join(d);
            std::fs::create_dir_all(&p).map_err(|e| io("cannot create", &p, e))?;
        }
        let mut procs = BTreeMap::new();
        let entries = std::fs::read_dir(dir.join("procs"))
            .map_err(|e| io("cannot read", &dir.join("procs"), e))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match std::fs::read_to_string(&p)
                .map_err(|e| e.to_string())
                .and_then(|t| parse_state(&t))
            {
                Ok(mut st) => {
                    if st.state == RunState::Running || st.state == RunState::Paused {
                        match st.pid {
                            Some(pid) if alive(pid, st.start_time) => {
                                tracing::info!(id = %st.id, pid, "adopted a running process");
                            }
                            _ => {
                                tracing::info!(id = %st.id, "process ended while the agent was down");
                                st.state = RunState::Exited;
                                st.exit_code = None;
                                st.pid = None;
                            }
                        }
                    }
                    procs.insert(
                        st.id.clone(),
                        Proc {
                            st,
                            run: 0,
                            health: None,
                        },
                    );
                }
                Err(why) => {
                    tracing::error!(file = %p.display(), error = %why, "unreadable process state; skipped");
                }
            }
        }
        let me = Processes {
            inner: Arc::new(Inner {
                dir,
                node: node.to_owned(),
                cfg,
                procs: Mutex::new(procs),
                cgroups: Mutex::new(None),
                cgroup_root: cgroup_root.to_owned(),
            }),
        };
        let ids: Vec<String> = lock(&me.inner.procs).keys().cloned().collect();
        for id in ids {
            me.save(&id);
        }
        Ok(me)
    }

    /// Start the housekeeping task (log rotation; health checks of
    /// adopted processes). It ends when the engine is dropped.
    pub fn spawn_housekeeping(&self) {
        let running: Vec<String> = lock(&self.inner.procs)
            .values()
            .filter(|p| p.st.state == RunState::Running && p.st.spec.health.is_some())
            .map(|p| p.st.id.clone())
            .collect();
        for id in running {
            self.spawn_health(&id);
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HOUSEKEEPING).await;
                let Some(inner) = weak.upgrade() else { break };
                let me = Processes { inner };
                me.housekeeping();
            }
        });
    }

    fn housekeeping(&self) {
        let ids: Vec<String> = lock(&self.inner.procs).keys().cloned().collect();
        for id in ids {
            let d = self.log_dir(&id);
            let size = std::fs::metadata(log_file(&d, 0)).map_or(0, |m| m.len());
            if needs_rotation(size, self.inner.cfg.log_max) {
                if let Err(e) = rotate(&d, self.inner.cfg.log_keep) {
                    tracing::warn!(id = %id, error = %e, "cannot rotate the log");
                }
            }
        }
    }

    /// The state directory (`DATA_DIR/apps-proc`).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Where a process's logs are.
    pub fn log_dir(&self, id: &str) -> PathBuf {
        self.inner.dir.join("logs").join(id)
    }

    /// Where a named volume's directory is.
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.inner.dir.join("volumes").join(name)
    }

    /// The state of process `id`, if any.
    pub fn state(&self, id: &str) -> Option<ProcState> {
        lock(&self.inner.procs).get(id).map(|p| p.st.clone())
    }

    /// The cgroup hierarchy, detected on first use.
    pub fn cgroups(&self) -> Cgroups {
        let mut g = lock(&self.inner.cgroups);
        g.get_or_insert_with(|| {
            let c = Cgroups::detect(&self.inner.cgroup_root);
            if let Cgroups::Unavailable(why) = &c {
                tracing::warn!(why = %why, "process apps run without memory and CPU limits");
            }
            c
        })
        .clone()
    }

    fn save(&self, id: &str) {
        let st = match lock(&self.inner.procs).get(id) {
            Some(p) => p.st.clone(),
            None => return,
        };
        let path = self.inner.dir.join("procs").join(format!("{id}.json"));
        match serde_json::to_vec_pretty(&st) {
            Ok(b) => {
                if let Err(e) = nuvol_agent::fsutil::write_atomic(&path, &b, 0o600) {
                    tracing::warn!(file = %path.display(), error = %e, "cannot write process state");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode process state"),
        }
    }

    /// A line of the agent's own in the process's log.
    fn note(&self, id: &str, text: &str) {
        let p = log_file(&self.log_dir(id), 0);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
        {
            let _ = writeln!(f, "[nuvol] {text}");
        }
    }

    fn resolve_user(&self, spec: &ContainerSpec) -> Result<(String, u32, u32), AppError> {
        let name = spec
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| self.inner.cfg.user.clone());
        let (uid, gid) = lookup_user(&name).map_err(|why| AppError::invalid("user", why))?;
        if uid == 0 && !self.inner.cfg.allow_root {
            return Err(AppError::invalid(
                "user",
                format!("{name} is root: apps do not run as root unless [apps] process_allow_root = true"),
            ));
        }
        let me = rustix::process::getuid().as_raw();
        if me != 0 && me != uid {
            return Err(AppError::invalid(
                "user",
                format!("the agent runs as uid {me}, not root: it cannot run a program as {name} (uid {uid})"),
            ));
        }
        Ok((name, uid, gid))
    }

    fn refresh(&self) {
        let mut changed = Vec::new();
        {
            let mut procs = lock(&self.inner.procs);
            for p in procs.values_mut() {
                if matches!(p.st.state, RunState::Running | RunState::Paused) {
                    let ok = p.st.pid.is_some_and(|pid| alive(pid, p.st.start_time));
                    if !ok {
                        p.st.state = RunState::Exited;
                        p.st.pid = None;
                        p.health = None;
                        changed.push(p.st.id.clone());
                    }
                }
            }
        }
        for id in changed {
            self.save(&id);
        }
    }

    fn observed(p: &Proc) -> Observed {
        Observed {
            id: p.st.id.clone(),
            name: p.st.spec.name.clone(),
            app: p.st.app.clone(),
            service: p.st.service.clone(),
            node: p.st.node.clone(),
            spec: p.st.spec_hash.clone(),
            state: p.st.state,
            health: if p.st.state == RunState::Running {
                p.health.as_ref().map_or(Health::None, HealthTrack::health)
            } else {
                Health::None
            },
            exit_code: p.st.exit_code,
            restart_count: p.st.restart_count,
            image_id: p.st.spec.image.clone(),
        }
    }

    fn do_create(
        &self,
        app: &str,
        spec: &ContainerSpec,
        app_dir: &Path,
    ) -> Result<String, AppError> {
        let program = spec.image.strip_prefix(IMAGE_PREFIX).ok_or_else(|| {
            AppError::invalid("image", format!("{} is not a process", spec.image))
        })?;
        check_program(program).map_err(|why| AppError::Program {
            program: program.to_owned(),
            why,
        })?;
        let (user, uid, gid) = self.resolve_user(spec)?;
        let hash = spec.hash();
        let id = format!("{ID_PREFIX}{}-{}", spec.name, &hash[..8.min(hash.len())]);
        if lock(&self.inner.procs).contains_key(&id) {
            return Err(AppError::Conflict(format!("process {id} exists")));
        }
        // The app's own directory (its HOME and default working
        // directory) and its volumes: owned by its user.
        if rustix::process::getuid().is_root() && app_dir.is_dir() {
            std::os::unix::fs::chown(app_dir, Some(uid), Some(gid))
                .map_err(|e| io("cannot chown", app_dir, e))?;
        }
        // The program's volumes: owned by its user.
        for m in &spec.mounts {
            if let MountSource::Volume(v) = &m.source {
                let d = self.volume_dir(v);
                std::fs::create_dir_all(&d).map_err(|e| io("cannot create", &d, e))?;
                if rustix::process::getuid().is_root() {
                    std::os::unix::fs::chown(&d, Some(uid), Some(gid))
                        .map_err(|e| io("cannot chown", &d, e))?;
                }
            }
        }
        let logs = self.log_dir(&id);
        std::fs::create_dir_all(&logs).map_err(|e| io("cannot create", &logs, e))?;
        let st = ProcState {
            version: STATE_VERSION,
            id: id.clone(),
            app: app.to_owned(),
            service: spec.service.clone(),
            node: self.inner.node.clone(),
            spec_hash: hash,
            spec: spec.clone(),
            app_dir: app_dir.to_owned(),
            user,
            uid,
            gid,
            state: RunState::Created,
            pid: None,
            start_time: None,
            exit_code: None,
            restart_count: 0,
            started_once: false,
            cgroups: Vec::new(),
            notes: Vec::new(),
        };
        lock(&self.inner.procs).insert(
            id.clone(),
            Proc {
                st,
                run: 0,
                health: None,
            },
        );
        self.save(&id);
        Ok(id)
    }

    fn command(&self, st: &ProcState) -> Result<tokio::process::Command, AppError> {
        let mut argv: Vec<String> = st.spec.entrypoint.clone().unwrap_or_default();
        argv.extend(st.spec.command.clone().unwrap_or_default());
        let Some((prog, args)) = argv.split_first() else {
            return Err(AppError::invalid("entrypoint", "no program"));
        };
        check_program(prog).map_err(|why| AppError::Program {
            program: prog.clone(),
            why,
        })?;
        let log = log_file(&self.log_dir(&st.id), 0);
        let out = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .map_err(|e| io("cannot open", &log, e))?;
        let err = out.try_clone().map_err(|e| io("cannot open", &log, e))?;
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", &st.app_dir)
            .env("USER", &st.user);
        for m in &st.spec.mounts {
            if let MountSource::Volume(v) = &m.source {
                cmd.env(&m.target, self.volume_dir(v));
            }
        }
        cmd.envs(st.spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(
                st.spec
                    .working_dir
                    .as_deref()
                    .map_or(st.app_dir.clone(), PathBuf::from),
            )
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(false);
        if rustix::process::getuid().is_root() {
            // std drops the supplementary groups (setgroups(0)) with uid.
            cmd.uid(st.uid).gid(st.gid);
        }
        Ok(cmd)
    }

    /// The cgroups of a process about to start, and what is to be said
    /// of them.
    fn limits(&self, st: &ProcState) -> (Vec<PathBuf>, Vec<String>) {
        if st.spec.memory.is_none() && st.spec.nano_cpus.is_none() {
            return (Vec::new(), Vec::new());
        }
        let cg = self.cgroups();
        if let Cgroups::Unavailable(why) = &cg {
            let n = format!("running without memory/CPU limits: {why}");
            self.note(&st.id, &n);
            return (Vec::new(), vec![n]);
        }
        let mut notes = Vec::new();
        let mut dirs = Vec::new();
        for (dir, files) in cg.plan(&st.id, st.spec.memory, st.spec.nano_cpus) {
            let r = std::fs::create_dir_all(&dir).and_then(|()| {
                for (f, v) in &files {
                    if let Err(e) = std::fs::write(dir.join(f), v) {
                        // Swap settings are absent without swap accounting.
                        if !f.contains("swap") {
                            return Err(e);
                        }
                    }
                }
                Ok(())
            });
            match r {
                Ok(()) => dirs.push(dir),
                Err(e) => {
                    let n = format!("limits not applied: {}: {e}", dir.display());
                    self.note(&st.id, &n);
                    notes.push(n);
                    tracing::warn!(id = %st.id, dir = %dir.display(), error = %e, "cannot apply limits");
                }
            }
        }
        (dirs, notes)
    }

    fn do_start(&self, id: &str) -> Result<(), AppError> {
        let st = self
            .state(id)
            .ok_or_else(|| AppError::NotFound(id.to_owned()))?;
        if st.state == RunState::Running {
            return Ok(());
        }
        let (cgroups, notes) = self.limits(&st);
        let mut cmd = self.command(&st)?;
        let mut child = cmd.spawn().map_err(|e| AppError::Program {
            program: st.spec.image.trim_start_matches(IMAGE_PREFIX).to_owned(),
            why: format!("cannot start: {e}"),
        })?;
        let pid = child.id().unwrap_or(0);
        for d in &cgroups {
            if let Err(e) = std::fs::write(d.join("cgroup.procs"), pid.to_string()) {
                self.note(id, &format!("cannot join {}: {e}", d.display()));
            }
        }
        let start_time = proc_stat(pid).map(|s| s.1);
        let run = {
            let mut procs = lock(&self.inner.procs);
            let Some(p) = procs.get_mut(id) else {
                return Ok(());
            };
            if p.st.started_once {
                p.st.restart_count += 1;
            }
            p.st.started_once = true;
            p.st.state = RunState::Running;
            p.st.pid = Some(pid);
            p.st.start_time = start_time;
            p.st.exit_code = None;
            p.st.cgroups = cgroups;
            p.st.notes = notes;
            p.run += 1;
            p.health =
                p.st.spec
                    .health
                    .as_ref()
                    .map(|_| HealthTrack::new(Instant::now()));
            p.run
        };
        self.save(id);
        tracing::info!(id, pid, "process started");
        let me = self.clone();
        let id2 = id.to_owned();
        tokio::spawn(async move {
            let status = child.wait().await;
            me.exited(&id2, run, status.ok());
        });
        if st.spec.health.is_some() {
            self.spawn_health(id);
        }
        Ok(())
    }

    fn exited(&self, id: &str, run: u64, status: Option<std::process::ExitStatus>) {
        use std::os::unix::process::ExitStatusExt;
        let (code, dirs) = {
            let mut procs = lock(&self.inner.procs);
            let Some(p) = procs.get_mut(id) else { return };
            if p.run != run {
                return;
            }
            let code = status.map(|s| {
                s.code()
                    .map(i64::from)
                    .or_else(|| s.signal().map(|n| 128 + i64::from(n)))
                    .unwrap_or(-1)
            });
            p.st.state = RunState::Exited;
            p.st.pid = None;
            p.st.exit_code = code;
            p.health = None;
            (code, p.st.cgroups.clone())
        };
        let why = if code == Some(137) && oom_killed(&dirs) {
            " (killed by the kernel: out of memory, over its memory limit)"
        } else {
            ""
        };
        if !why.is_empty() {
            tracing::warn!(id, "process killed by the kernel: out of memory");
            if let Some(p) = lock(&self.inner.procs).get_mut(id) {
                p.st.notes
                    .push("killed by the kernel: out of memory (over its memory limit)".into());
            }
        }
        self.save(id);
        self.note(
            id,
            &format!(
                "process exited{}{why}",
                code.map(|c| format!(" with code {c}")).unwrap_or_default()
            ),
        );
    }

    fn spawn_health(&self, id: &str) {
        let Some(st) = self.state(id) else { return };
        let Some(spec) = st.spec.health.clone() else {
            return;
        };
        let run = lock(&self.inner.procs).get(id).map_or(0, |p| p.run);
        if lock(&self.inner.procs)
            .get(id)
            .is_some_and(|p| p.health.is_none())
        {
            if let Some(p) = lock(&self.inner.procs).get_mut(id) {
                p.health = Some(HealthTrack::new(Instant::now()));
            }
        }
        let me = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(spec.interval.max(Duration::from_secs(1))).await;
                let still = lock(&me.inner.procs)
                    .get(&id)
                    .is_some_and(|p| p.run == run && p.st.state == RunState::Running);
                if !still {
                    break;
                }
                let ok = me.check_once(&st, &spec).await;
                let mut procs = lock(&me.inner.procs);
                let Some(p) = procs.get_mut(&id) else { break };
                if p.run != run {
                    break;
                }
                if let Some(h) = p.health.as_mut() {
                    h.record(Instant::now(), ok, &spec);
                }
            }
        });
    }

    /// Run the health check's command once (as the process's user, with
    /// its timeout): exit code 0 is healthy.
    async fn check_once(&self, st: &ProcState, spec: &HealthSpec) -> bool {
        let argv: Vec<String> = match spec.test.split_first() {
            Some((k, rest)) if k == "CMD" => rest.to_vec(),
            Some((k, rest)) if k == "CMD-SHELL" => {
                vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
            }
            _ => return true,
        };
        let Some((prog, args)) = argv.split_first() else {
            return true;
        };
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .envs(st.spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&st.app_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        if rustix::process::getuid().is_root() {
            cmd.uid(st.uid).gid(st.gid);
        }
        let Ok(mut child) = cmd.spawn() else {
            return false;
        };
        match tokio::time::timeout(spec.timeout.max(Duration::from_secs(1)), child.wait()).await {
            Ok(Ok(s)) => s.success(),
            _ => {
                let _ = child.kill().await;
                false
            }
        }
    }

    async fn do_stop(&self, id: &str, timeout: Duration) -> Result<(), AppError> {
        let Some(st) = self.state(id) else {
            return Err(AppError::NotFound(id.to_owned()));
        };
        let Some(pid) = st.pid.filter(|p| alive(*p, st.start_time)) else {
            self.refresh();
            return Ok(());
        };
        signal(pid, rustix::process::Signal::CONT);
        signal(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + timeout;
        while alive(pid, st.start_time) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if alive(pid, st.start_time) {
            signal(pid, rustix::process::Signal::KILL);
            while alive(pid, st.start_time) && Instant::now() < deadline + Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // The group's other members too.
        signal(pid, rustix::process::Signal::KILL);
        // The waiter records the exit code; an adopted process has none.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.refresh();
        Ok(())
    }

    async fn do_remove(&self, id: &str) -> Result<(), AppError> {
        if self.state(id).is_none() {
            return Ok(());
        }
        self.do_stop(id, Duration::from_secs(0)).await?;
        let Some(p) = lock(&self.inner.procs).remove(id) else {
            return Ok(());
        };
        for d in &p.st.cgroups {
            // Empty once its process is gone; the kernel may take a moment.
            for _ in 0..50 {
                match std::fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
        let f = self.inner.dir.join("procs").join(format!("{id}.json"));
        if let Err(e) = std::fs::remove_file(&f) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(io("cannot remove", &f, e));
            }
        }
        let logs = self.log_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&logs) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %logs.display(), error = %e, "cannot remove logs");
            }
        }
        Ok(())
    }

    fn do_logs(&self, id: &str, tail: usize, follow: bool) -> Result<LogStream, AppError> {
        if self.state(id).is_none() {
            return Err(AppError::NotFound(id.to_owned()));
        }
        let dir = self.log_dir(id);
        let first: Vec<Result<LogLine, AppError>> = tail_lines(&dir, self.inner.cfg.log_keep, tail)
            .into_iter()
            .map(|text| {
                Ok(LogLine {
                    stderr: false,
                    text: format!("{text}\n"),
                })
            })
            .collect();
        let head = futures::stream::iter(first);
        if !follow {
            return Ok(Box::pin(head));
        }
        let file = log_file(&dir, 0);
        let pos = std::fs::metadata(&file).map_or(0, |m| m.len());
        let me = self.clone();
        let id = id.to_owned();
        // Followed by polling: the file is written by the program, not by
        // the agent, and is truncated by rotation.
        let more = futures::stream::unfold(
            (
                pos,
                Vec::<u8>::new(),
                std::collections::VecDeque::<String>::new(),
            ),
            move |(mut pos, mut partial, mut ready)| {
                let file = file.clone();
                let me = me.clone();
                let id = id.clone();
                async move {
                    loop {
                        if let Some(l) = ready.pop_front() {
                            let line = LogLine {
                                stderr: false,
                                text: l,
                            };
                            return Some((Ok(line), (pos, partial, ready)));
                        }
                        me.state(&id)?;
                        let len = std::fs::metadata(&file).map_or(0, |m| m.len());
                        if len < pos {
                            pos = 0;
                        }
                        if len > pos {
                            if let Ok(mut f) = std::fs::File::open(&file) {
                                let mut buf = Vec::new();
                                if f.seek(std::io::SeekFrom::Start(pos)).is_ok()
                                    && f.take(1024 * 1024).read_to_end(&mut buf).is_ok()
                                {
                                    pos += buf.len() as u64;
                                    partial.extend_from_slice(&buf);
                                    while let Some(i) = partial.iter().position(|b| *b == b'\n') {
                                        let line: Vec<u8> = partial.drain(..=i).collect();
                                        ready
                                            .push_back(String::from_utf8_lossy(&line).into_owned());
                                    }
                                    continue;
                                }
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            },
        );
        Ok(Box::pin(futures::StreamExt::chain(head, more)))
    }

    /// Pause (SIGSTOP) or go on (SIGCONT): the group of a process in
    /// state `from` is sent `sig` and is then in state `to`.
    fn set_paused(
        &self,
        id: &str,
        from: RunState,
        to: RunState,
        sig: rustix::process::Signal,
    ) -> Result<(), AppError> {
        let pid = {
            let mut procs = lock(&self.inner.procs);
            let p = procs
                .get_mut(id)
                .ok_or_else(|| AppError::NotFound(id.to_owned()))?;
            let Some(pid) = p.st.pid.filter(|_| p.st.state == from) else {
                return Ok(());
            };
            p.st.state = to;
            pid
        };
        signal(pid, sig);
        self.save(id);
        Ok(())
    }

    fn volume_app(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.volume_dir(name).join(".nuvol-app"))
            .ok()
            .map(|s| s.trim().to_owned())
    }
}

/// The key of a volume the manager's backup and restore helper mounts at
/// `VOLUMES_MOUNT/KEY`, as in a container (for a process the target is
/// only a name).
fn volume_key(target: &str) -> Option<&str> {
    target
        .strip_prefix(VOLUMES_MOUNT)?
        .strip_prefix('/')
        .filter(|k| !k.is_empty() && !k.contains('/'))
}

/// The marker file naming a volume directory's app (not carried by
/// archives: a restore may give the app another name).
const VOLUME_MARKER: &str = ".nuvol-app";

impl Processes {
    /// `(key, directory)` of every volume mounted at `VOLUMES_MOUNT/KEY` in
    /// process `id` (the manager's backup and restore helper).
    fn volume_mounts(&self, id: &str) -> Result<Vec<(String, PathBuf)>, AppError> {
        let st = self
            .state(id)
            .ok_or_else(|| AppError::Other(format!("no process {id}")))?;
        Ok(st
            .spec
            .mounts
            .iter()
            .filter_map(|m| match &m.source {
                MountSource::Volume(v) => {
                    volume_key(&m.target).map(|k| (k.to_owned(), self.volume_dir(v)))
                }
                _ => None,
            })
            .collect())
    }
}

/// A tar of volume directory `dir` with its entries under `key/`, the
/// layout Docker's archive of `/nuvol-volumes/KEY` has. Symbolic links are
/// stored as links, never followed out of the volume.
fn volume_to_tar(key: &str, dir: &Path, dest: &Path) -> Result<(), AppError> {
    let f = std::fs::File::create(dest).map_err(|e| io("cannot create", dest, e))?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    b.follow_symlinks(false);
    let walk = |b: &mut tar::Builder<std::io::BufWriter<std::fs::File>>| -> std::io::Result<()> {
        b.append_dir(key, dir)?;
        let mut todo = vec![PathBuf::new()];
        while let Some(rel) = todo.pop() {
            for e in std::fs::read_dir(dir.join(&rel))? {
                let e = e?;
                let r = rel.join(e.file_name());
                if rel.as_os_str().is_empty() && e.file_name() == VOLUME_MARKER {
                    continue;
                }
                let name = Path::new(key).join(&r);
                if e.file_type()?.is_dir() {
                    b.append_dir(&name, e.path())?;
                    todo.push(r);
                } else {
                    b.append_path_with_name(e.path(), &name)?;
                }
            }
        }
        b.finish()?;
        b.get_mut().flush()
    };
    walk(&mut b).map_err(|e| io("cannot archive", dir, e))
}

/// Unpack `src` (entries `KEY/...`) into the volume directories of
/// `mounts`: first into a staging directory beside them (the tar crate
/// refuses entries that leave it), then moved in and given to the
/// program's user. An entry of no volume is an error, and nothing of the
/// archive is left behind then.
fn tar_to_volumes(
    src: &Path,
    staging_in: &Path,
    mounts: &[(String, PathBuf)],
    owner: Option<(u32, u32)>,
) -> Result<(), AppError> {
    std::fs::create_dir_all(staging_in).map_err(|e| io("cannot create", staging_in, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".restore-")
        .tempdir_in(staging_in)
        .map_err(|e| io("cannot create a directory in", staging_in, e))?;
    let f = std::fs::File::open(src).map_err(|e| io("cannot open", src, e))?;
    let mut a = tar::Archive::new(std::io::BufReader::new(f));
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(false);
    a.unpack(staging.path())
        .map_err(|e| io("cannot unpack", src, e))?;
    let entries =
        std::fs::read_dir(staging.path()).map_err(|e| io("cannot read", staging.path(), e))?;
    for e in entries {
        let e = e.map_err(|e| io("cannot read", staging.path(), e))?;
        let key = e.file_name().to_string_lossy().into_owned();
        let Some((_, dir)) = mounts.iter().find(|(k, _)| *k == key) else {
            return Err(AppError::Other(format!(
                "the archive holds {key:?}, which is no volume of this app"
            )));
        };
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        let children =
            std::fs::read_dir(e.path()).map_err(|err| io("cannot read", &e.path(), err))?;
        for c in children {
            let c = c.map_err(|err| io("cannot read", &e.path(), err))?;
            if c.file_name() == VOLUME_MARKER {
                continue;
            }
            let to = dir.join(c.file_name());
            if to.is_dir() && !to.is_symlink() {
                std::fs::remove_dir_all(&to).map_err(|err| io("cannot remove", &to, err))?;
            } else if to.symlink_metadata().is_ok() {
                std::fs::remove_file(&to).map_err(|err| io("cannot remove", &to, err))?;
            }
            std::fs::rename(c.path(), &to).map_err(|err| io("cannot move into", &to, err))?;
            if let Some((uid, gid)) = owner.filter(|_| rustix::process::getuid().is_root()) {
                chown_all(&to, uid, gid)?;
            }
        }
    }
    Ok(())
}

/// `chown -hR`: links themselves, never what they point to.
fn chown_all(p: &Path, uid: u32, gid: u32) -> Result<(), AppError> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(|e| io("cannot chown", p, e))?;
    let meta = p.symlink_metadata().map_err(|e| io("cannot read", p, e))?;
    if meta.is_dir() {
        for e in std::fs::read_dir(p).map_err(|e| io("cannot read", p, e))? {
            let e = e.map_err(|e| io("cannot read", p, e))?;
            chown_all(&e.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn not_for_processes(what: &str) -> AppError {
    AppError::Other(format!("{what} is not supported for process apps"))
}

impl Engine for Processes {
    fn version(&self) -> Call<'_, (String, String)> {
        Box::pin(async { Ok(("process".to_owned(), "1".to_owned())) })
    }

    fn list(&self) -> Call<'_, Vec<Observed>> {
        Box::pin(async move {
            self.refresh();
            Ok(lock(&self.inner.procs)
                .values()
                .map(Self::observed)
                .collect())
        })
    }

    fn image_id<'a>(&'a self, image: &'a str) -> Call<'a, Option<String>> {
        Box::pin(async move {
            Ok(image
                .strip_prefix(IMAGE_PREFIX)
                .filter(|p| check_program(p).is_ok())
                .map(|_| image.to_owned()))
        })
    }

    fn ensure_network<'a>(&'a self, _app: &'a str, net: &'a NetworkSpec) -> Call<'a, ()> {
        Box::pin(async move { Err(not_for_processes(&format!("network {}", net.key))) })
    }

    fn ensure_volume<'a>(&'a self, app: &'a str, vol: &'a VolumeSpec) -> Call<'a, ()> {
        Box::pin(async move {
            let d = self.volume_dir(&vol.name);
            std::fs::create_dir_all(&d).map_err(|e| io("cannot create", &d, e))?;
            let marker = d.join(".nuvol-app");
            if !marker.exists() {
                std::fs::write(&marker, app).map_err(|e| io("cannot write", &marker, e))?;
            }
            let mut perm = std::fs::metadata(&d)
                .map_err(|e| io("cannot read", &d, e))?
                .permissions();
            perm.set_mode(0o750);
            std::fs::set_permissions(&d, perm).map_err(|e| io("cannot chmod", &d, e))?;
            Ok(())
        })
    }

    fn create<'a>(
        &'a self,
        app: &'a str,
        spec: &'a ContainerSpec,
        app_dir: &'a Path,
    ) -> Call<'a, String> {
        Box::pin(async move { self.do_create(app, spec, app_dir) })
    }

    fn start<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        Box::pin(async move { self.do_start(id) })
    }

    fn stop<'a>(&'a self, id: &'a str, timeout: Duration) -> Call<'a, ()> {
        Box::pin(self.do_stop(id, timeout))
    }

    fn restart<'a>(&'a self, id: &'a str, timeout: Duration) -> Call<'a, ()> {
        Box::pin(async move {
            self.do_stop(id, timeout).await?;
            self.do_start(id)
        })
    }

    fn pause<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        Box::pin(async move {
            self.set_paused(
                id,
                RunState::Running,
                RunState::Paused,
                rustix::process::Signal::STOP,
            )
        })
    }

    fn unpause<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        Box::pin(async move {
            self.set_paused(
                id,
                RunState::Paused,
                RunState::Running,
                rustix::process::Signal::CONT,
            )
        })
    }

    fn remove<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        Box::pin(self.do_remove(id))
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        Box::pin(async move {
            let d = self.volume_dir(name);
            match std::fs::remove_dir_all(&d) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io("cannot remove", &d, e)),
            }
        })
    }

    fn remove_network<'a>(&'a self, _name: &'a str) -> Call<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn volumes<'a>(&'a self, app: &'a str) -> Call<'a, Vec<String>> {
        Box::pin(async move {
            let mut out = Vec::new();
            if let Ok(rd) = std::fs::read_dir(self.inner.dir.join("volumes")) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if self.volume_app(&name).as_deref() == Some(app) {
                        out.push(name);
                    }
                }
            }
            out.sort();
            Ok(out)
        })
    }

    fn networks<'a>(&'a self, _app: &'a str) -> Call<'a, Vec<String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn pull<'a>(&'a self, image: &'a str) -> Call<'a, ()> {
        Box::pin(async move {
            let program = image.strip_prefix(IMAGE_PREFIX).unwrap_or(image);
            Err(AppError::Program {
                program: program.to_owned(),
                why: check_program(program)
                    .err()
                    .unwrap_or_else(|| "cannot be run".into()),
            })
        })
    }

    fn copy_out<'a>(&'a self, id: &'a str, path: &'a str, dest: &'a Path) -> Call<'a, ()> {
        Box::pin(async move {
            let (key, dir) = self
                .volume_mounts(id)?
                .into_iter()
                .find(|(k, _)| volume_key(path) == Some(k.as_str()))
                .ok_or_else(|| AppError::Other(format!("{path} is no volume of process {id}")))?;
            let dest = dest.to_owned();
            tokio::task::spawn_blocking(move || volume_to_tar(&key, &dir, &dest))
                .await
                .map_err(|e| AppError::Other(format!("copy task: {e}")))?
        })
    }

    fn copy_in<'a>(&'a self, id: &'a str, path: &'a str, src: &'a Path) -> Call<'a, ()> {
        Box::pin(async move {
            if path.trim_end_matches('/') != VOLUMES_MOUNT {
                return Err(AppError::Other(format!(
                    "process {id}: only its volumes ({VOLUMES_MOUNT}/KEY) can be filled, not {path}"
                )));
            }
            let mounts = self.volume_mounts(id)?;
            let owner = self.state(id).map(|s| (s.uid, s.gid));
            let (src, staging_in) = (src.to_owned(), self.inner.dir.join("volumes"));
            tokio::task::spawn_blocking(move || tar_to_volumes(&src, &staging_in, &mounts, owner))
                .await
                .map_err(|e| AppError::Other(format!("copy task: {e}")))?
        })
    }

    fn logs<'a>(&'a self, id: &'a str, tail: usize, follow: bool) -> Call<'a, LogStream> {
        Box::pin(async move { self.do_logs(id, tail, follow) })
    }

    fn notes(&self, id: &str) -> Vec<String> {
        self.state(id).map(|s| s.notes).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_command() {
        // A command with spaces and a parenthesis.
        let line = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615";
        assert_eq!(parse_stat(line), Some(('S', 987_654)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) Z 1"), None);
    }

    #[test]
    fn corrupt_and_foreign_state_files_are_errors() {
        assert!(parse_state("{not json").is_err());
        assert!(parse_state("{}").is_err());
        let spec: ContainerSpec = serde_json::from_str(
            r#"{"service":"s","name":"nuvol-a-s","image":"process:/bin/true","command":null,"entrypoint":null,"env":[],"ports":[],"mounts":[],"networks":[],"aliases":[],"network_mode":null,"restart":"no","health":null,"labels":{},"depends_on":[],"memory":null,"nano_cpus":null,"user":null,"working_dir":null,"hostname":null,"stop_signal":null,"stop_timeout":null,"cap_add":[],"cap_drop":[],"read_only":false,"init":false,"tty":false,"extra_hosts":[]}"#,
        )
        .unwrap();
        let st = ProcState {
            version: STATE_VERSION,
            id: "proc-x".into(),
            app: "a".into(),
            service: "s".into(),
            node: "n".into(),
            spec_hash: spec.hash(),
            spec,
            app_dir: "/tmp".into(),
            user: "nobody".into(),
            uid: 65534,
            gid: 65534,
            state: RunState::Running,
            pid: Some(7),
            start_time: Some(9),
            exit_code: None,
            restart_count: 2,
            started_once: true,
            cgroups: vec![],
            notes: vec![],
        };
        let text = serde_json::to_string(&st).unwrap();
        assert_eq!(parse_state(&text).unwrap(), st);
        let mut v2 = st.clone();
        v2.version = 2;
        let e = parse_state(&serde_json::to_string(&v2).unwrap()).unwrap_err();
        assert!(e.contains("version 2"), "{e}");
        let mut bad = st;
        bad.id = "abc".into();
        assert!(parse_state(&serde_json::to_string(&bad).unwrap()).is_err());
    }

    #[test]
    fn rotation_keeps_generations() {
        assert!(!needs_rotation(10, 100));
        assert!(needs_rotation(100, 100));
        assert!(!needs_rotation(1000, 0));
        let d = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(log_file(d.path(), 0), format!("gen {i}\n")).unwrap();
            rotate(d.path(), 3).unwrap();
        }
        assert_eq!(std::fs::read_to_string(log_file(d.path(), 0)).unwrap(), "");
        assert_eq!(
            std::fs::read_to_string(log_file(d.path(), 1)).unwrap(),
            "gen 4\n"
        );
        assert_eq!(
            std::fs::read_to_string(log_file(d.path(), 3)).unwrap(),
            "gen 2\n"
        );
        assert!(!log_file(d.path(), 4).exists());
        std::fs::write(log_file(d.path(), 0), "a\nb\n").unwrap();
        assert_eq!(tail_lines(d.path(), 3, 3), vec!["gen 4", "a", "b"]);
        assert_eq!(tail_lines(d.path(), 3, 0), Vec::<String>::new());
    }

    #[test]
    fn cgroup_values() {
        assert_eq!(cpu_quota_us(500_000_000), 50_000);
        assert_eq!(cpu_quota_us(2_000_000_000), 200_000);
        assert_eq!(cpu_quota_us(1), 1000);
        let v2 = Cgroups::V2 {
            parent: "/cg/nuvol".into(),
        };
        assert_eq!(
            v2.plan("proc-a", Some(1 << 20), Some(250_000_000)),
            vec![(
                PathBuf::from("/cg/nuvol/proc-a"),
                vec![
                    ("memory.max", "1048576".to_owned()),
                    ("memory.swap.max", "0".to_owned()),
                    ("cpu.max", "25000 100000".to_owned())
                ]
            )]
        );
        let v1 = Cgroups::V1 {
            memory: "/cg/memory/nuvol".into(),
            cpu: "/cg/cpu/nuvol".into(),
        };
        let p = v1.plan("proc-a", Some(4096), None);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, PathBuf::from("/cg/memory/nuvol/proc-a"));
        assert_eq!(p[0].1[0], ("memory.limit_in_bytes", "4096".to_owned()));
        assert!(Cgroups::Unavailable("x".into())
            .plan("p", Some(1), Some(1))
            .is_empty());
    }

    #[test]
    fn cgroup_detection_on_fake_trees() {
        let d = tempfile::tempdir().unwrap();
        // Nothing: unavailable, with the reason.
        assert!(matches!(Cgroups::detect(d.path()), Cgroups::Unavailable(_)));
        // v1 files: v1 with a nuvol parent created.
        std::fs::create_dir_all(d.path().join("memory")).unwrap();
        std::fs::create_dir_all(d.path().join("cpu")).unwrap();
        std::fs::write(d.path().join("memory/memory.limit_in_bytes"), "").unwrap();
        std::fs::write(d.path().join("cpu/cpu.cfs_quota_us"), "").unwrap();
        assert_eq!(
            Cgroups::detect(d.path()),
            Cgroups::V1 {
                memory: d.path().join("memory/nuvol"),
                cpu: d.path().join("cpu/nuvol")
            }
        );
        // A unified hierarchy without the controllers is not used.
        std::fs::create_dir_all(d.path().join("unified")).unwrap();
        std::fs::write(d.path().join("unified/cgroup.controllers"), "pids\n").unwrap();
        assert!(matches!(Cgroups::detect(d.path()), Cgroups::V1 { .. }));
    }

    #[test]
    fn health_follows_retries_and_start_period() {
        let spec = HealthSpec {
            test: vec!["CMD".into(), "/bin/true".into()],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries: 2,
            start_period: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let mut h = HealthTrack::new(t0);
        // Failures in the start period do not count.
        assert_eq!(
            h.record(t0 + Duration::from_secs(1), false, &spec),
            Health::Starting
        );
        assert_eq!(
            h.record(t0 + Duration::from_secs(2), false, &spec),
            Health::Starting
        );
        assert_eq!(
            h.record(t0 + Duration::from_secs(3), true, &spec),
            Health::Healthy
        );
        assert_eq!(
            h.record(t0 + Duration::from_secs(4), false, &spec),
            Health::Healthy
        );
        assert_eq!(
            h.record(t0 + Duration::from_secs(5), false, &spec),
            Health::Unhealthy
        );
        assert_eq!(
            h.record(t0 + Duration::from_secs(6), true, &spec),
            Health::Healthy
        );
    }
}
