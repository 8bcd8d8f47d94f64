//! A real Docker daemon for the apps' tests, and a local image to run in
//! it: nodes (and this test machine) have no registry, so the image is
//! made here from Debian's static busybox (`busybox-static`) with
//! `docker import`.
//!
//! Use with [`crate::netns::skip_or_fail`]: a missing daemon or busybox is
//! a skip, or a failure under `NUVOL_REQUIRE_SYSTEM=1`.

use crate::netns::run;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// Debian's `busybox-static` binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The applets linked in the image's `/bin`.
const APPLETS: &[&str] = &[
    "sh", "httpd", "wget", "sleep", "cat", "echo", "ls", "tar", "mkdir", "rm", "true", "false",
    "env", "id", "printf", "nc", "test", "[", "ps", "kill",
];

/// `Ok` when the daemon answers `docker version`, else why not.
pub fn docker_available() -> Result<(), String> {
    run(&["docker", "version", "--format", "{{.Server.APIVersion}}"])
        .map(|_| ())
        .map_err(|e| format!("no Docker daemon: {e}"))
}

/// Make the image `tag` (e.g. `nuvol-test/busybox:1`) unless it exists:
/// static busybox as `/bin/busybox` with its applets linked, and
/// `/www/index.html` for `httpd -h /www`.
pub fn busybox_image(tag: &str) -> Result<(), String> {
    // Tests of one process make it once; `docker import` is idempotent
    // across processes anyway (the same tag is re-pointed).
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if run(&["docker", "image", "inspect", "--format", "{{.Id}}", tag]).is_ok() {
        return Ok(());
    }
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let tar = busybox_rootfs(dir.path())?;
    let tar_s = tar.to_string_lossy().into_owned();
    let out = Command::new("docker")
        .args(["import", "--change", r#"CMD ["/bin/sh"]"#, &tar_s, tag])
        .output()
        .map_err(|e| format!("docker import: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "docker import: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Write the busybox image's root file system as `DIR/rootfs.tar` (static
/// busybox as `/bin/busybox` with its applets linked, `/www/index.html`)
/// and return its path: what `docker import` and `podman import` take.
pub fn busybox_rootfs(dir: &Path) -> Result<std::path::PathBuf, String> {
    let bin = std::fs::read(BUSYBOX).map_err(|e| {
        format!("{BUSYBOX}: {e} (install Debian's busybox-static, e.g. with scripts/test.sh)")
    })?;
    if !elf_is_static(&bin) {
        return Err(format!(
            "{BUSYBOX} is dynamically linked (Debian's busybox); the image has no libc: \
             install busybox-static"
        ));
    }
    let root = dir.join("root");
    let mk = |p: &Path| std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()));
    mk(&root.join("bin"))?;
    mk(&root.join("www"))?;
    mk(&root.join("tmp"))?;
    mk(&root.join("data"))?;
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).map_err(|e| format!("copy busybox: {e}"))?;
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a))
            .map_err(|e| format!("symlink {a}: {e}"))?;
    }
    std::fs::write(root.join("www/index.html"), "hello from nuvol\n")
        .map_err(|e| format!("index.html: {e}"))?;
    let tar = dir.join("rootfs.tar");
    let tar_s = tar.to_string_lossy().into_owned();
    let root_s = root.to_string_lossy().into_owned();
    run(&[
        "tar",
        "-C",
        &root_s,
        "--owner=0",
        "--group=0",
        "-cf",
        &tar_s,
        ".",
    ])?;
    Ok(tar)
}

/// A Docker daemon of a test's own (its data root, exec root, socket and
/// pid file in a temp dir) in a network namespace of its own, so a test
/// can stop and restart it without touching the host's daemon, its
/// networks and other tests' containers. (Outside a namespace a second
/// daemon deletes the host's `docker0` at start and leaves its bridges on
/// the host.) Programs that must reach its containers' ports run in the
/// namespace too ([`Dockerd::wrap`]). Needs root, `ip`, `nsenter` and
/// `dockerd`.
pub struct Dockerd {
    dir: tempfile::TempDir,
    netns: String,
    /// The namespace is this daemon's (deleted with it).
    owns_netns: bool,
    /// Network options of the daemon.
    net_args: Vec<String>,
    child: Option<std::process::Child>,
}

impl Dockerd {
    /// Start one and wait until it answers.
    pub fn start() -> Result<Dockerd, String> {
        Dockerd::start_with(
            None,
            &["--bridge=none", "--iptables=false", "--ip-masq=false"],
        )
    }

    /// Start one in the existing namespace `netns` (kept when it stops),
    /// with `net_args` as its network options (e.g. none: its own docker0
    /// and iptables rules, inside the namespace, as a Swarm's tasks need).
    pub fn start_in(netns: &str, net_args: &[&str]) -> Result<Dockerd, String> {
        Dockerd::start_with(Some(netns), net_args)
    }

    fn start_with(netns: Option<&str>, net_args: &[&str]) -> Result<Dockerd, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("a private dockerd needs root".into());
        }
        run(&["dockerd", "--version"]).map_err(|e| format!("no dockerd: {e}"))?;
        // A short path: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("nvd")
            .tempdir_in("/tmp")
            .map_err(|e| format!("temp dir: {e}"))?;
        // Its own config file: the host's daemon.json may set a data root.
        std::fs::write(dir.path().join("daemon.json"), "{}")
            .map_err(|e| format!("daemon.json: {e}"))?;
        let net_args = net_args.iter().map(|a| (*a).to_owned()).collect();
        let mut d = if let Some(ns) = netns {
            Dockerd {
                dir,
                netns: ns.to_owned(),
                owns_netns: false,
                net_args,
                child: None,
            }
        } else {
            // The temp dir's unique name names the namespace too.
            let netns = dir
                .path()
                .file_name()
                .map(|n| n.to_string_lossy().replace(['.', '_'], "-"))
                .unwrap_or_else(|| format!("nvd{}", std::process::id()));
            run(&["ip", "netns", "add", &netns])?;
            let d = Dockerd {
                dir,
                netns,
                owns_netns: true,
                net_args,
                child: None,
            };
            run(&[
                "ip", "netns", "exec", &d.netns, "ip", "link", "set", "lo", "up",
            ])?;
            d
        };
        d.spawn()?;
        Ok(d)
    }

    /// The network namespace's name.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// A script that runs `program` with its arguments in the daemon's
    /// network namespace (for an agent and its CLI).
    pub fn wrap(&self, program: &Path) -> Result<std::path::PathBuf, String> {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.path().join("in-netns");
        let script = format!(
            "#!/bin/sh\nexec nsenter --net=/var/run/netns/{} {} \"$@\"\n",
            self.netns,
            program.display()
        );
        std::fs::write(&p, script).map_err(|e| format!("{}: {e}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(p)
    }

    /// The socket's path.
    pub fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let p = |n: &str| self.dir.path().join(n).to_string_lossy().into_owned();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("dockerd.log"))
            .map_err(|e| format!("dockerd log: {e}"))?;
        let err = log.try_clone().map_err(|e| format!("dockerd log: {e}"))?;
        let child = Command::new("nsenter")
            .args([
                &format!("--net=/var/run/netns/{}", self.netns),
                "dockerd",
                "--config-file",
                &p("daemon.json"),
                "--data-root",
                &p("data"),
                "--exec-root",
                &p("exec"),
                "-H",
                &format!("unix://{}", p("docker.sock")),
                "--pidfile",
                &p("docker.pid"),
            ])
            .args(&self.net_args)
            // Swarm tasks use the local image rather than try a registry
            // first (test machines have none).
            .env("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE", "1")
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("dockerd: {e}"))?;
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if self
                .cli(&["version", "--format", "{{.Server.Version}}"])
                .is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Err(format!(
            "the private dockerd did not answer: {}",
            self.log_tail()
        ))
    }

    /// The end of its log, for messages.
    pub fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// `docker -H THIS ARGS...`.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let host = format!("unix://{}", self.socket().display());
        let mut all = vec!["docker", "-H", host.as_str()];
        all.extend_from_slice(args);
        run(&all).map(|s| s.trim().to_owned())
    }

    /// Copy an image of the host's daemon into this one.
    pub fn load_image(&self, tag: &str) -> Result<(), String> {
        let tar = self.dir.path().join("image.tar");
        let tar_s = tar.to_string_lossy().into_owned();
        run(&["docker", "save", "-o", &tar_s, tag])?;
        self.cli(&["load", "-i", &tar_s])?;
        let _ = std::fs::remove_file(&tar);
        Ok(())
    }

    /// Stop it as a shutdown would (SIGTERM; containers are stopped).
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

    /// Kill it (SIGKILL), as a crashed node; its containers' shims and
    /// processes are killed too (they are in its cgroups' process tree).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The containers' processes outlive a killed dockerd (containerd
        // shims): end those of this daemon's exec root.
        let root = self.dir.path().to_string_lossy().into_owned();
        if let Ok(out) = run(&["pgrep", "-f", &root]) {
            for pid in out.split_whitespace() {
                let _ = run(&["kill", "-9", pid]);
            }
        }
    }

    /// Stop and start again (same data root: containers with a restart
    /// policy come back).
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Ok(ids) = self.cli(&["ps", "-aq"]) {
                for id in ids.lines() {
                    let _ = self.cli(&["rm", "-f", id]);
                }
            }
            if let Ok(v) = self.cli(&["volume", "ls", "-q"]) {
                for n in v.lines() {
                    let _ = self.cli(&["volume", "rm", "-f", n]);
                }
            }
        }
        self.stop();
        if self.owns_netns {
            let _ = run(&["ip", "netns", "del", &self.netns]);
        }
    }
}

/// Whether an ELF file has no program interpreter (PT_INTERP), i.e. runs
/// without a dynamic loader and libc in the image.
fn elf_is_static(b: &[u8]) -> bool {
    if b.len() < 0x40 || &b[..4] != b"\x7fELF" {
        return false;
    }
    let le = b[5] == 1;
    let u16_at = |o: usize| -> Option<u64> {
        let s: [u8; 2] = b.get(o..o + 2)?.try_into().ok()?;
        Some(u64::from(if le {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        }))
    };
    let u32_at = |o: usize| -> Option<u64> {
        let s: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
        Some(u64::from(if le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        }))
    };
    let u64_at = |o: usize| -> Option<u64> {
        let s: [u8; 8] = b.get(o..o + 8)?.try_into().ok()?;
        Some(if le {
            u64::from_le_bytes(s)
        } else {
            u64::from_be_bytes(s)
        })
    };
    // ELF32 and ELF64 place the program header table's fields differently.
    let (phoff, phentsize, phnum) = if b[4] == 2 {
        (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    } else {
        (u32_at(0x1c), u16_at(0x2a), u16_at(0x2c))
    };
    let (Some(phoff), Some(size), Some(num)) = (phoff, phentsize, phnum) else {
        return false;
    };
    (0..num).all(|i| {
        let at = usize::try_from(phoff + i * size).unwrap_or(usize::MAX);
        const PT_INTERP: u64 = 3;
        u32_at(at).is_some_and(|t| t != PT_INTERP)
    })
}

/// Removes the containers of app `app` of node `node` (labels
/// `nuvol.app`, `nuvol.node`) when dropped, whatever the test did. Declare
/// it before the agents, so it runs after they are gone: a live agent
/// would create the app's containers again.
pub struct AppContainers {
    pub node: String,
    pub app: String,
}

impl Drop for AppContainers {
    fn drop(&mut self) {
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=nuvol.app={}", self.app))
            .arg("--filter")
            .arg(format!("label=nuvol.node={}", self.node))
            .output();
        if let Ok(out) = ids {
            let ids = String::from_utf8_lossy(&out.stdout);
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_dynamic_binary_is_not_static() {
        // The test binary itself links libc dynamically.
        if let Ok(me) = std::env::current_exe().and_then(std::fs::read) {
            assert!(!super::elf_is_static(&me));
        }
        assert!(!super::elf_is_static(b"not an elf"));
    }
}
