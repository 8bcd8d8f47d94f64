//! Process apps end to end through the `nuvol` binary and its CLI, on an
//! agent with no container engine at all (its Docker socket does not
//! exist): busybox httpd installed as a process app, run as nobody,
//! published in the catalog with its check passing; `nuvol app logs` and
//! `--follow`; the agent SIGKILLed and restarted adopts the same process
//! (same pid, not a second one); stop, start and remove.
//!
//! Needs root (programs run as nobody) and Debian's static busybox at
//! /bin/busybox; skips (or fails under `NUVOL_REQUIRE_SYSTEM=1`) otherwise.

use nuvol_testkit::free_port;
use nuvol_testkit::netns::skip_or_fail;
use nuvol_testkit::{fresh_ip, wait_until_msg, NuvolAgent, Signal};
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);
const BUSYBOX: &str = "/bin/busybox";

fn spawn(node: &str, ip: std::net::IpAddr, data: &Path) -> NuvolAgent {
    NuvolAgent::builder(NUVOL, node)
        .ip(ip)
        .data_dir(data)
        .arg("--mdns=false")
        .arg("--apps-reconcile-every=1s")
        .arg("--docker-socket=/nonexistent/docker.sock")
        .spawn()
        .unwrap()
}

fn app_state(a: &NuvolAgent, name: &str) -> String {
    a.cli_run(&["app", "list", "--format", "json"])
        .ok()
        .and_then(|o| serde_json::from_str::<Value>(&o.stdout).ok())
        .and_then(|v| {
            v.as_array()?
                .iter()
                .find(|x| x["name"] == name)
                .and_then(|x| x["state"].as_str().map(str::to_owned))
        })
        .unwrap_or_default()
}

/// The pids of the app's processes, from the agent's state files.
fn pids(data: &Path) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(data.join("apps-proc/procs")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| nuvol_apps::process::parse_state(&t).ok())
        .filter_map(|s| s.pid)
        .collect()
}

fn published_passing(a: &NuvolAgent, node: &str, port: u16) -> bool {
    a.cli_run(&[
        "services", "--type", "http", "--node", node, "--format", "json",
    ])
    .ok()
    .and_then(|o| serde_json::from_str::<Value>(&o.stdout).ok())
    .and_then(|v| v.as_array().cloned())
    .is_some_and(|l| {
        l.iter()
            .any(|s| s["port"] == port && s["status"] == "passing")
    })
}

/// Kills what the test started if it fails midway.
struct Reap(std::path::PathBuf);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in pids(&self.0) {
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
            }
        }
    }
}

#[test]
fn a_process_app_without_docker_is_published_logged_and_adopted() {
    if !rustix::process::getuid().is_root() {
        skip_or_fail("apps_process", "it needs root (programs run as nobody)");
        return;
    }
    if !Path::new(BUSYBOX).exists() {
        skip_or_fail(
            "apps_process",
            "/bin/busybox is missing (apt-get install busybox-static)",
        );
        return;
    }
    let node = format!("proc-{}", std::process::id());
    let ip = fresh_ip();
    let data = tempfile::tempdir().unwrap();
    // The run user goes through the data directory to its app's.
    std::fs::set_permissions(
        data.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let _reap = Reap(data.path().to_owned());
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = work.path().join("site.yml");
    std::fs::write(
        &file,
        format!(
            r#"x-nuvol:
  id: site
  driver: process
  publish:
    - {{type: http, port: {port}}}
services:
  web:
    command: ["{BUSYBOX}", "sh", "-c", "echo serving on {port}; exec {BUSYBOX} httpd -f -v -p {port}"]
    ports: ["{port}"]
    restart: always
    stop_grace_period: 1s
"#
        ),
    )
    .unwrap();
    let mut a = spawn(&node, ip, data.path());
    wait_until_msg("the apps component up", T, POLL, || {
        a.cli_run(&["app", "list"])
            .is_ok_and(|o| o.status.success())
    })
    .unwrap();
    let out = a.cli(&["app", "install", file.to_str().unwrap()]).unwrap();
    assert!(out.starts_with("installed site"), "{out}");
    wait_until_msg("site running and published", T, POLL, || {
        app_state(&a, "site") == "running" && published_passing(&a, &node, port)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{:?}\n{:?}\n{}",
            a.cli_run(&["app", "status", "site"]).map(|o| o.stdout),
            a.cli_run(&["services", "--format", "json"])
                .map(|o| o.stdout),
            a.log_tail(30)
        )
    });
    let before = pids(data.path());
    assert_eq!(before.len(), 1, "{before:?}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", before[0])).unwrap();
    assert!(
        status.lines().any(|l| l.starts_with("Uid:\t65534\t")),
        "{status}"
    );
    // Logs: the program's line.
    let logs = a.cli(&["app", "logs", "site", "--tail", "5"]).unwrap();
    assert!(logs.contains(&format!("serving on {port}")), "{logs}");
    // --follow: a request's log line (httpd -v) comes while following.
    let mut follow = std::process::Command::new(NUVOL)
        .args(["app", "logs", "site", "--tail", "0", "--follow"])
        .arg("--rpc-addr")
        .arg(a.rpc_addr().to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let _ = std::net::TcpStream::connect((ip, port))
        .and_then(|mut s| std::io::Write::write_all(&mut s, b"GET / HTTP/1.0\r\n\r\n"));
    let line = rx.recv_timeout(Duration::from_secs(20));
    let _ = follow.kill();
    let _ = follow.wait();
    let line = line.expect("a followed line");
    assert!(!line.is_empty());

    // The agent is SIGKILLed: the program runs on; the next agent adopts
    // it (the same pid, one process).
    a.signal(Signal::KILL).unwrap();
    a.wait_exit(T).unwrap();
    assert!(Path::new(&format!("/proc/{}", before[0])).exists());
    let a = spawn(&node, ip, data.path());
    wait_until_msg("site running after the agent restart", T, POLL, || {
        app_state(&a, "site") == "running" && published_passing(&a, &node, port)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", a.log_tail(30)));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pids(data.path()), before, "adopted, not doubled");

    // Stop and start; remove.
    a.cli(&["app", "stop", "site"]).unwrap();
    assert!(pids(data.path()).is_empty());
    assert!(
        !Path::new(&format!("/proc/{}/stat", before[0])).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", before[0]))
                .is_ok_and(|s| s.contains(") Z"))
    );
    a.cli(&["app", "start", "site"]).unwrap();
    wait_until_msg("site running again", T, POLL, || {
        app_state(&a, "site") == "running"
    })
    .unwrap();
    a.cli(&["app", "remove", "site", "--purge"]).unwrap();
    assert!(pids(data.path()).is_empty());
    assert!(std::fs::read_dir(data.path().join("apps-proc/procs"))
        .unwrap()
        .next()
        .is_none());
}
