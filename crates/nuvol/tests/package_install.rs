//! The amd64 Debian package on a fresh Debian host: a container of the
//! image `nuvol-host:bookworm` (`bash scripts/debian-host-image.sh`: a
//! debootstrap'd bookworm with systemd as PID 1) gets
//! `target/debian/nuvol_*_amd64.deb` (`bash scripts/package.sh amd64`).
//!
//! Checked: `apt-get install ./nuvol.deb` starts nuvol.service as the user
//! nuvol with only CAP_NET_RAW and CAP_NET_ADMIN, and `nuvol members`
//! lists the node alive (the time from install to alive is printed); an
//! upgrade to the same package rebuilt with a higher version keeps
//! /var/lib/nuvol (the API token) and an edit of /etc/nuvol/nuvol.toml and
//! restarts the agent (new pid, the edited tag live); an upgrade while the
//! config is invalid fails, naming the cause, and leaves the old agent
//! running (same pid, still alive); purge removes the data, the config and
//! the user.
//!
//! Needs docker (a running daemon), dpkg-deb, the image and the package;
//! skipped without them, failed instead under `NUVOL_REQUIRE_SYSTEM=1`.

use nuvol_testkit::debian::{deb_dir, newest_deb, SYSTEMD_HOST_RUN_ARGS};
use nuvol_testkit::netns::skip_or_fail;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const IMAGE: &str = "nuvol-host:bookworm";
const T: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);

fn ok(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `deb` rebuilt as version `version` (same files, new control Version):
/// what an upgrade installs.
fn repack(deb: &Path, version: &str, out: &Path) -> PathBuf {
    let tree = out.join(format!("tree-{version}"));
    let o = Command::new("dpkg-deb")
        .arg("-R")
        .arg(deb)
        .arg(&tree)
        .output()
        .expect("dpkg-deb -R");
    assert!(o.status.success(), "dpkg-deb -R: {}", text(&o));
    let control = tree.join("DEBIAN/control");
    let c = std::fs::read_to_string(&control).expect("control");
    let c: String = c
        .lines()
        .map(|l| {
            if l.starts_with("Version:") {
                format!("Version: {version}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&control, c).expect("control");
    let new = out.join(format!("nuvol_{version}_amd64.deb"));
    let o = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-z1", "-b"])
        .arg(&tree)
        .arg(&new)
        .output()
        .expect("dpkg-deb -b");
    assert!(o.status.success(), "dpkg-deb -b: {}", text(&o));
    new
}

/// A systemd container, removed on drop.
struct Host {
    name: String,
}

impl Host {
    fn start() -> Host {
        let name = format!("nuvol-pkgtest-{}", std::process::id());
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
        // systemd as PID 1 (nuvol_testkit::debian::SYSTEMD_HOST_RUN_ARGS).
        let o = Command::new("docker")
            .args(["run", "-d", "--name", &name, "--hostname", "pkghost"])
            .args(SYSTEMD_HOST_RUN_ARGS)
            .arg(IMAGE)
            .output()
            .expect("docker run");
        assert!(o.status.success(), "docker run {IMAGE}: {}", text(&o));
        let host = Host { name };
        // systemd is up once it answers; "degraded" is fine (a container
        // lacks some of a machine's units).
        host.wait("systemd running", || {
            let s = host.sh("systemctl is-system-running 2>/dev/null || true");
            matches!(s.trim(), "running" | "degraded")
        });
        host
    }

    fn run(&self, script: &str) -> Output {
        Command::new("docker")
            .args(["exec", &self.name, "sh", "-c", script])
            .output()
            .expect("docker exec")
    }

    /// stdout of a script that must succeed.
    fn sh(&self, script: &str) -> String {
        let o = self.run(script);
        assert!(o.status.success(), "in the host: {script}\n{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn copy_in(&self, file: &Path) -> String {
        let dest = format!("/tmp/{}", file.file_name().expect("name").to_string_lossy());
        let o = Command::new("docker")
            .arg("cp")
            .arg(file)
            .arg(format!("{}:{dest}", self.name))
            .output()
            .expect("docker cp");
        assert!(o.status.success(), "docker cp: {}", text(&o));
        dest
    }

    fn wait(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < T {
            if cond() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let o = self
            .run("systemctl status nuvol --no-pager; journalctl -u nuvol --no-pager | tail -n 40");
        panic!("timed out: {what}\n{}", text(&o));
    }

    fn main_pid(&self) -> String {
        self.sh("systemctl show -p MainPID --value nuvol")
            .trim()
            .to_owned()
    }

    /// The node lists itself alive (`nuvol members --format json`), with
    /// tag `role` = `role` when given.
    fn alive(&self, role: Option<&str>) -> bool {
        let o = self.run("nuvol members --format json");
        if !o.status.success() {
            return false;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout) else {
            return false;
        };
        let members = v["members"].as_array().cloned().unwrap_or_default();
        members.iter().any(|m| {
            m["name"] == "pkghost"
                && m["status"] == "alive"
                && role.is_none_or(|r| m["tags"]["role"] == r)
        })
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

fn parts(test: &str) -> Option<PathBuf> {
    if !ok(Command::new("docker").args(["info"])) {
        skip_or_fail(test, "docker is missing or its daemon is not running");
        return None;
    }
    if !ok(Command::new("docker").args(["image", "inspect", IMAGE])) {
        skip_or_fail(
            test,
            &format!("no image {IMAGE} (run: bash scripts/debian-host-image.sh)"),
        );
        return None;
    }
    if !ok(Command::new("dpkg-deb").arg("--version")) {
        skip_or_fail(test, "dpkg-deb is missing (apt-get install dpkg)");
        return None;
    }
    let Some(deb) = newest_deb("amd64") else {
        skip_or_fail(
            test,
            &format!(
                "no nuvol_*_amd64.deb in {} (run: bash scripts/package.sh amd64)",
                deb_dir().display()
            ),
        );
        return None;
    };
    Some(deb)
}

#[test]
fn install_upgrade_bad_upgrade_and_purge_in_a_systemd_host() {
    let test = "install_upgrade_bad_upgrade_and_purge_in_a_systemd_host";
    let Some(deb) = parts(test) else {
        return;
    };
    eprintln!("{test}: {}", deb.display());
    let dir = tempfile::tempdir().expect("tempdir");
    let v2 = repack(&deb, "99.0.0", dir.path());
    let v3 = repack(&deb, "99.0.1", dir.path());
    let host = Host::start();
    let (p1, p2, p3) = (host.copy_in(&deb), host.copy_in(&v2), host.copy_in(&v3));

    // Install: started, as nuvol, alive.
    let t0 = Instant::now();
    host.sh(&format!(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q {p1} >/tmp/install.log 2>&1 || {{ cat /tmp/install.log; exit 1; }}"
    ));
    host.wait("nuvol.service active and the node alive", || {
        host.alive(None)
    });
    eprintln!("{test}: install to alive: {:?}", t0.elapsed());
    assert_eq!(host.sh("systemctl is-enabled nuvol").trim(), "enabled");
    let pid1 = host.main_pid();
    let status = host.sh(&format!("cat /proc/{pid1}/status"));
    let uid = host.sh("id -u nuvol");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(uid.trim())),
        "the agent does not run as nuvol (uid {uid}):\n{status}"
    );
    // CAP_NET_ADMIN (12) and CAP_NET_RAW (13) only: 0x3000.
    let caps = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(|h| u64::from_str_radix(h, 16).expect("hex caps"))
            .unwrap_or_else(|| panic!("no {key} in\n{status}"))
    };
    assert_eq!(caps("CapEff:"), 0x3000, "effective capabilities");
    assert_eq!(caps("CapBnd:"), 0x3000, "bounding set");
    assert_eq!(
        host.sh("stat -c %U:%G /var/lib/nuvol").trim(),
        "nuvol:nuvol"
    );
    let token = host.sh("cat /var/lib/nuvol/api-token");
    assert!(!token.trim().is_empty(), "no API token written");

    // Upgrade: the edit and the data kept, the agent restarted.
    host.sh("printf '\\n[gossip.tags]\\nrole = \"edited\"\\n' >> /etc/nuvol/nuvol.toml");
    host.sh(&format!(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold {p2} >/tmp/up.log 2>&1 || {{ cat /tmp/up.log; exit 1; }}"
    ));
    assert_eq!(
        host.sh("dpkg-query -W -f '${Version}' nuvol").trim(),
        "99.0.0"
    );
    host.wait("the upgraded agent alive with the edited tag", || {
        host.alive(Some("edited"))
    });
    let pid2 = host.main_pid();
    assert_ne!(pid1, pid2, "the upgrade did not restart the agent");
    assert_eq!(host.sh("cat /var/lib/nuvol/api-token"), token, "data lost");
    assert!(host
        .sh("cat /etc/nuvol/nuvol.toml")
        .contains("role = \"edited\""));

    // An upgrade with an invalid config: refused, the old agent untouched.
    let has_check = host.run("nuvol help check-config").status.success();
    if has_check {
        host.sh("printf '\\n[gossip]\\nbogus_key = 1\\n' >> /etc/nuvol/nuvol.toml");
        let o = host.run(&format!(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold {p3}"
        ));
        let out = text(&o);
        assert!(
            !o.status.success(),
            "the upgrade with an invalid config succeeded:\n{out}"
        );
        assert!(
            out.contains("check-config") && out.contains("left alone"),
            "the failed upgrade does not say why:\n{out}"
        );
        assert_eq!(host.main_pid(), pid2, "the old agent was restarted");
        assert_eq!(host.sh("systemctl is-active nuvol").trim(), "active");
        assert!(host.alive(Some("edited")), "the old agent is not alive");
    } else {
        skip_or_fail(
            test,
            "the packaged nuvol has no `check-config` command: the invalid-config upgrade is not checked",
        );
    }

    // Purge: data, config and user gone.
    host.sh("dpkg --purge nuvol >/tmp/purge.log 2>&1 || { cat /tmp/purge.log; exit 1; }");
    assert!(!host.run("test -e /var/lib/nuvol").status.success());
    assert!(!host.run("test -e /etc/nuvol").status.success());
    assert!(!host.run("getent passwd nuvol").status.success());
    assert!(!host.run("getent group nuvol").status.success());
    assert!(!host.run("systemctl is-active nuvol").status.success());
    eprintln!("{test}: done in {:?}", t0.elapsed());
}
