//! Real `serf` agents for integration tests, on distinct loopback addresses
//! so tests (and test binaries) can run in parallel. Killed on drop.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// True when `serf` runs; skips (or fails under NUVOL_REQUIRE_SERF=1) otherwise.
pub use nuvol_testkit::require_serf as serf_available;

static NEXT: AtomicU32 = AtomicU32::new(1);

fn free(ip: IpAddr, port: u16) -> bool {
    let sa = SocketAddr::new(ip, port);
    TcpListener::bind(sa).is_ok() && UdpSocket::bind(sa).is_ok()
}

/// A loopback address where the gossip (7946) and RPC (7373) ports are free.
/// `first` keeps test binaries apart (127.`first`.x.y).
pub fn fresh_ip(first: u8) -> IpAddr {
    let pid = std::process::id();
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let b = ((pid % 125) * 2 + (n / 250) % 2) as u8;
        let c = (n % 250) as u8 + 2;
        let ip = IpAddr::V4(Ipv4Addr::new(127, first, b, c));
        if free(ip, 7946) && free(ip, 7373) {
            return ip;
        }
    }
}

pub struct SerfAgent {
    pub name: String,
    pub bind: SocketAddr,
    pub rpc: SocketAddr,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl SerfAgent {
    /// Start `serf agent` with these extra flags; `config` (JSON), if given,
    /// is passed with `-config-file`. Waits until the RPC port answers.
    pub fn start(first: u8, name: &str, extra: &[&str], config: Option<&str>) -> SerfAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let ip = fresh_ip(first);
        let bind = SocketAddr::new(ip, 7946);
        let rpc = SocketAddr::new(ip, 7373);
        let log = std::fs::File::create(dir.path().join("agent.log")).expect("log file");
        let mut cmd = Command::new("serf");
        cmd.arg("agent")
            .arg(format!("-node={name}"))
            .arg(format!("-bind={bind}"))
            .arg(format!("-rpc-addr={rpc}"))
            .arg("-log-level=debug")
            .args(extra);
        if let Some(c) = config {
            let p = dir.path().join("config.json");
            std::fs::write(&p, c).expect("config");
            cmd.arg(format!("-config-file={}", p.display()));
        }
        cmd.stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null());
        let child = cmd.spawn().expect("spawn serf");
        let mut a = SerfAgent {
            name: name.to_owned(),
            bind,
            rpc,
            child: Some(child),
            dir,
        };
        a.wait_rpc();
        a
    }

    fn wait_rpc(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if !self.is_running() {
                panic!("serf agent {} exited; log:\n{}", self.name, self.log());
            }
            if TcpStream::connect_timeout(&self.rpc, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "serf agent {} never opened RPC; log:\n{}",
            self.name,
            self.log()
        );
    }

    pub fn rpc_addr(&self) -> String {
        self.rpc.to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL (a crash, not a leave).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Wait for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = &mut self.child {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return true;
                }
            } else {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for SerfAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Poll an async condition until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
