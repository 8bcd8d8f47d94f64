//! Harness for interoperability tests: real `serf` agents (Debian's `serf`
//! package) and `nuvol` agents on distinct loopback addresses, observed over
//! RPC with serf's own CLI.

#![allow(dead_code)]

use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");

/// True when `serf` is installed; otherwise skip (or fail under
/// `NUVOL_REQUIRE_SERF=1`, which the README's test command sets).
#[allow(unused_imports)] // not every test binary uses it
pub use nuvol_testkit::require_serf;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A loopback address no other test (in this or another test binary) uses.
pub fn fresh_ip() -> IpAddr {
    let pid = std::process::id();
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let a = 2 + (pid % 250) as u8;
    let b = (n / 250) as u8 + 1 + ((pid / 250) % 20) as u8 * 12;
    let c = (n % 250) as u8 + 1;
    IpAddr::V4(Ipv4Addr::new(127, a, b, c))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Serf,
    Nuvol,
}

/// Options for starting an agent; flag names are serf's.
#[derive(Clone, Default)]
pub struct Opts {
    pub profile: Option<&'static str>,
    pub protocol: Option<u8>,
    pub tags: Vec<(String, String)>,
    pub encrypt: Option<String>,
    pub keyring_file: Option<PathBuf>,
    pub join: Vec<SocketAddr>,
    pub handlers: Vec<String>,
    pub snapshot: Option<PathBuf>,
    pub extra: Vec<String>,
    /// Reuse this address (restart with the same identity).
    pub ip: Option<IpAddr>,
    pub data_dir: Option<PathBuf>,
}

pub struct Agent {
    pub kind: Kind,
    pub name: String,
    pub bind: SocketAddr,
    pub rpc: SocketAddr,
    pub log: PathBuf,
    child: Option<Child>,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Agent {
    pub fn start(kind: Kind, name: &str, opts: Opts) -> Agent {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let ip = opts.ip.unwrap_or_else(fresh_ip);
        let bind = SocketAddr::new(ip, 7946);
        let rpc = SocketAddr::new(ip, 7373);
        let log = dir.join("agent.log");
        let logf = std::fs::File::create(&log).expect("log file");
        let mut cmd = match kind {
            Kind::Serf => Command::new("serf"),
            Kind::Nuvol => Command::new(NUVOL),
        };
        let dd = |f: &str| match kind {
            Kind::Serf => format!("-{f}"),
            Kind::Nuvol => format!("--{f}"),
        };
        cmd.arg("agent")
            .arg(format!("{}={name}", dd("node")))
            .arg(format!("{}={bind}", dd("bind")))
            .arg(format!("{}={rpc}", dd("rpc-addr")));
        if let Some(p) = opts.profile {
            cmd.arg(format!("{}={p}", dd("profile")));
        }
        if let Some(p) = opts.protocol {
            cmd.arg(format!("{}={p}", dd("protocol")));
        }
        for (k, v) in &opts.tags {
            cmd.arg(format!("{}={k}={v}", dd("tag")));
        }
        if let Some(k) = &opts.encrypt {
            cmd.arg(format!("{}={k}", dd("encrypt")));
        }
        if let Some(k) = &opts.keyring_file {
            cmd.arg(format!("{}={}", dd("keyring-file"), k.display()));
        }
        for j in &opts.join {
            cmd.arg(format!("{}={j}", dd("join")));
        }
        for h in &opts.handlers {
            cmd.arg(format!("{}={h}", dd("event-handler")));
        }
        if let Some(s) = &opts.snapshot {
            cmd.arg(format!("{}={}", dd("snapshot"), s.display()));
        }
        if kind == Kind::Nuvol {
            let data = opts.data_dir.clone().unwrap_or_else(|| dir.join("data"));
            cmd.arg(format!("--data-dir={}", data.display()));
            cmd.arg("--log-level=debug");
        } else {
            cmd.arg("-log-level=debug");
        }
        cmd.args(&opts.extra);
        cmd.stdout(logf.try_clone().expect("log"))
            .stderr(logf)
            .stdin(Stdio::null());
        let child = cmd.spawn().expect("spawn agent");
        let mut a = Agent {
            kind,
            name: name.to_owned(),
            bind,
            rpc,
            log,
            child: Some(child),
            dir,
            _tmp: Some(tmp),
        };
        a.wait_rpc();
        a
    }

    fn wait_rpc(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if !self.is_running() {
                // Exited early (e.g. refused to join): the caller checks.
                return;
            }
            if std::net::TcpStream::connect_timeout(&self.rpc, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not open its RPC port; log:\n{}",
            self.name,
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Wait for the process to exit by itself; returns its status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    return st.code();
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Run serf's CLI against this agent's RPC. Go's flag parsing stops at
    /// the first positional argument, so flags go right after the command.
    pub fn serf_cli(&self, args: &[&str]) -> std::process::Output {
        let (cmd, rest) = args.split_first().expect("a serf subcommand");
        Command::new("serf")
            .arg(cmd)
            .arg(format!("-rpc-addr={}", self.rpc))
            .args(rest)
            .output()
            .expect("run serf cli")
    }

    /// Run nuvol's CLI against this agent's RPC.
    pub fn nuvol_cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(NUVOL)
            .args(args)
            .arg(format!("--rpc-addr={}", self.rpc))
            .output()
            .expect("run nuvol cli")
    }

    /// Members as this agent reports them, through `serf members -format=json`.
    pub fn members(&self) -> Vec<MemberView> {
        let out = self.serf_cli(&["members", "-format=json"]);
        if !out.status.success() {
            return Vec::new();
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let mut ms: Vec<MemberView> = v["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| MemberView {
                        name: m["name"].as_str().unwrap_or("").into(),
                        addr: m["addr"].as_str().unwrap_or("").into(),
                        port: m["port"].as_u64().unwrap_or(0),
                        status: m["status"].as_str().unwrap_or("").into(),
                        tags: m["tags"].to_string(),
                        protocol: m["protocol"]["version"].as_u64().unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        ms.sort_by(|a, b| a.name.cmp(&b.name));
        ms
    }

    pub fn status_of(&self, name: &str) -> Option<String> {
        self.members()
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| m.status)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub name: String,
    pub addr: String,
    pub port: u64,
    pub status: String,
    pub tags: String,
    pub protocol: u64,
}

/// Poll `f` until it holds; the timeout only bounds a stuck test.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for: {what}");
}

/// Every agent in `agents` reports the same member list, with `expect`
/// (name → status) for every member.
pub fn all_agree(agents: &[&Agent], expect: &[(&str, &str)]) -> bool {
    let views: Vec<Vec<MemberView>> = agents.iter().map(|a| a.members()).collect();
    let Some(first) = views.first() else {
        return true;
    };
    if views.iter().any(|v| v != first) {
        return false;
    }
    expect
        .iter()
        .all(|(n, st)| first.iter().any(|m| m.name == *n && m.status == *st))
        && first.len() == expect.len()
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn tmpfile(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
