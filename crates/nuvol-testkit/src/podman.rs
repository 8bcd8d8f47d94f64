//! A Podman service of a test's own: `podman system service` on a socket
//! in a temp dir, with its own storage (`--root`, `--runroot`, `vfs`), its
//! own `containers.conf` and file events, so it touches neither the host's
//! Podman nor Docker. The apps component talks to it through its
//! Docker-compatible API (`--docker-socket`).
//!
//! Two things of this test machine are worked around, both in the
//! `containers.conf` and [`Podman::health_timer`]:
//! - Podman asks for `RLIMIT_NOFILE` 1048576 in containers by default,
//!   above this container's hard limit (runc fails with "error setting
//!   rlimit type 7"): `default_ulimits = []` keeps the service's own.
//! - Podman runs health checks from systemd timers (`podman healthcheck
//!   run` every interval). Without systemd (as here, and in most
//!   containers) a container's health stays "starting". The timer's job is
//!   done by [`Podman::health_timer`], a thread of the test.
//!
//! Containers use Podman's networks in the host's namespace (netavark's
//! bridges, 10.88.0.0/16 and up); unlike a second dockerd, it leaves
//! Docker's bridge and rules alone. The bridges go with the containers;
//! netavark's own iptables chains (`NETAVARK_*`, empty once the
//! containers are gone) stay on the host. Needs root and Debian's
//! `podman`.

use crate::netns::run;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why Podman cannot be used here, or `Ok`.
pub fn podman_available() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("a private Podman service needs root".into());
    }
    run(&["podman", "--version"])
        .map(|_| ())
        .map_err(|e| format!("no podman (Debian's podman package): {e}"))
}

/// A running `podman system service` and its storage; everything is
/// removed on drop.
pub struct Podman {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Podman {
    /// Start one and wait until its API answers.
    pub fn start() -> Result<Podman, String> {
        podman_available()?;
        // A short path: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("nvp")
            .tempdir_in("/tmp")
            .map_err(|e| format!("temp dir: {e}"))?;
        let conf = "[containers]\n\
                    default_ulimits = []\n\
                    [engine]\n\
                    cgroup_manager = \"cgroupfs\"\n\
                    events_logger = \"file\"\n";
        std::fs::write(dir.path().join("containers.conf"), conf)
            .map_err(|e| format!("containers.conf: {e}"))?;
        std::fs::create_dir_all(dir.path().join("tmp")).map_err(|e| format!("tmp dir: {e}"))?;
        let mut p = Podman { dir, child: None };
        p.spawn()?;
        Ok(p)
    }

    /// The socket's path (for `--docker-socket`).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("podman.sock")
    }

    /// `podman ARGS...` on this instance's storage (the same containers
    /// the service sees); its trimmed stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = podman_cmd(self.dir.path())
            .args(args)
            .output()
            .map_err(|e| format!("podman {args:?}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!(
                "podman {args:?}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("service.log"))
            .map_err(|e| format!("podman log: {e}"))?;
        let err = log.try_clone().map_err(|e| format!("podman log: {e}"))?;
        let url = format!("unix://{}", self.socket().display());
        let child = podman_cmd(self.dir.path())
            .args(["system", "service", "--time=0", &url])
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("podman system service: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "the Podman service did not answer: {}",
            self.log_tail()
        ))
    }

    /// Whether the API answers `GET /_ping` with OK.
    fn ping(&self) -> bool {
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.socket()) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.") && out.contains(" 200 ")
    }

    /// The end of the service's log, for messages.
    pub fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Import the busybox image ([`crate::docker::busybox_rootfs`]) as
    /// `tag`. Podman names it `localhost/TAG`; the compat API finds it by
    /// `TAG` too.
    pub fn load_busybox(&self, tag: &str) -> Result<(), String> {
        let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let tar = crate::docker::busybox_rootfs(tmp.path())?;
        let tar_s = tar.to_string_lossy().into_owned();
        self.cli(&["import", "--change", r#"CMD ["/bin/sh"]"#, &tar_s, tag])
            .map(|_| ())
    }

    /// Does the systemd timers' job: `podman healthcheck run` on every
    /// running container with a health check, every `every`, until the
    /// returned guard is dropped.
    pub fn health_timer(&self, every: Duration) -> HealthTimer {
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, dir) = (stop.clone(), self.dir.path().to_owned());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let ids = podman_cmd(&dir)
                    .args(["ps", "-q", "--no-trunc"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                for id in ids.lines().filter(|l| !l.is_empty()) {
                    // Fails for containers without a check, and reports
                    // "unhealthy" by its exit status: both are fine here.
                    let _ = podman_cmd(&dir).args(["healthcheck", "run", id]).output();
                }
                std::thread::sleep(every);
            }
        });
        HealthTimer {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop the service (SIGTERM). Containers keep running (conmon).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
            }
            let _ = c.wait();
        }
    }
}

/// `podman` with the storage and configuration of the instance in `dir`.
fn podman_cmd(dir: &Path) -> Command {
    let d = |n: &str| dir.join(n);
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", d("containers.conf"))
        .arg("--root")
        .arg(d("root"))
        .arg("--runroot")
        .arg(d("run"))
        .arg("--tmpdir")
        .arg(d("tmp"))
        .args(["--storage-driver", "vfs"]);
    c
}

/// The health check thread of [`Podman::health_timer`]; stops on drop.
pub struct HealthTimer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HealthTimer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cli(&["rm", "-af", "-t", "1"]);
        let _ = self.cli(&["volume", "rm", "-af"]);
        let _ = self.cli(&["network", "prune", "-f"]);
        self.stop();
        // Unmount what is still mounted under the storage (shm of
        // containers that could not be removed), or the temp dir's
        // removal fails half-way.
        let _ = self.cli(&["system", "reset", "-f"]);
    }
}
