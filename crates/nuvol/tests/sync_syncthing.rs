//! Replicated folders with Debian's Syncthing, configured by nuvol:
//!
//! - three `nuvol agent`s, each with `[sync]` on, its own Syncthing home,
//!   GUI port and sync port on its own loopback address: a folder shared by
//!   all; a file written on one node reaches the two others with the same
//!   content (and one written on another comes back); `nuvol sync status
//!   --format json` shows the folder in sync with both peers; each
//!   Syncthing's config has discovery, relays and NAT off and the peers at
//!   explicit `tcp://IP:PORT` addresses; a node that leaves is removed from
//!   the others' devices and folder; the dashboard's overview shows the
//!   folder; a Syncthing killed under its agent is started again;
//! - two agents in this process: the folder's mode flipped through
//!   `SyncHandle::set_mode` (send-only here, receive-only there, then the
//!   other way round, as on an HA app's failover) changes the folder type
//!   in both Syncthings and the data follows the new direction;
//! - a folder that follows an app (`follow_app`, two agents with a real
//!   process app, busybox httpd): send-only on the node running the app,
//!   receive-only on the other; the runner's writes reach the other node
//!   while a write on the receive-only side stays there; the app stopped
//!   on one node and installed on the other flips both folder types and
//!   the data follows; the modes are in DATA_DIR/sync-modes.json and kept
//!   while the app runs nowhere, across an agent restart too; `nuvol sync
//!   status` shows the followed app and where it runs (needs root and
//!   busybox-static as well);
//! - bad input: attaching with a wrong API key, and a Syncthing that is not
//!   installed, are clear errors in `/v1/sync` and the component table,
//!   while the rest of the agent runs.
//!
//! Skips (or fails under `NUVOL_REQUIRE_SYSTEM=1`) when `syncthing` is not
//! installed.

use nuvol_testkit::netns::skip_or_fail;
use nuvol_testkit::{free_port, fresh_ip, wait_until_msg, LoopbackAlloc, NuvolAgent};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(200);

fn syncthing_missing(test: &str) -> bool {
    let ok = Command::new("syncthing")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip_or_fail(
            test,
            "syncthing is not installed (apt-get install syncthing)",
        );
    }
    !ok
}

/// Kills the Syncthings a failed test leaves behind (their pid files), if
/// they are still those processes.
struct Reap(Vec<PathBuf>);

impl Drop for Reap {
    fn drop(&mut self) {
        for home in &self.0 {
            let Ok(pid) = std::fs::read_to_string(home.join("syncthing.pid")) else {
                continue;
            };
            let Ok(pid) = pid.trim().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if !String::from_utf8_lossy(&cmdline).contains(&*home.to_string_lossy()) {
                continue;
            }
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
    }
}

/// One HTTP/1.0 GET; the status and body.
fn http(addr: &str, path: &str, key: Option<&str>) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let key = key
        .map(|k| format!("X-API-Key: {k}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{key}\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

fn http_json(addr: &str, path: &str, key: Option<&str>) -> Option<Value> {
    let (status, body) = http(addr, path, key)?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

/// A node: its agent, Syncthing home, folder and ports.
struct Node {
    agent: NuvolAgent,
    home: PathBuf,
    folder: PathBuf,
    gui: u16,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Node {
    fn key(&self) -> String {
        std::fs::read_to_string(self.home.join("nuvol-api-key"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    fn syncthing(&self, path: &str) -> Option<Value> {
        http_json(&format!("127.0.0.1:{}", self.gui), path, Some(&self.key()))
    }

    fn status(&self) -> Option<Value> {
        let o = self
            .agent
            .cli_run(&["sync", "status", "--format", "json"])
            .ok()?;
        serde_json::from_str(&o.stdout).ok()
    }

    fn folder_status(&self, id: &str) -> Option<Value> {
        self.status()?["folders"]
            .as_array()?
            .iter()
            .find(|f| f["id"] == id)
            .cloned()
    }
}

/// What a failed wait shows: each node's `nuvol sync status`, the end of
/// its Syncthing's log and the free space under its folder (Syncthing
/// stops a folder below `minDiskFree`, 1 % by default).
fn report(nodes: &[&Node]) -> String {
    let mut out = String::new();
    for n in nodes {
        out.push_str(&format!(
            "--- {}: sync status {}\n",
            n.agent.name(),
            n.status()
                .map_or("(no answer)".to_owned(), |s| s.to_string())
        ));
        out.push_str(&log_tail(&n.home.join("syncthing.log")));
        out.push_str(&free_space(&n.folder));
    }
    out
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let start = log.len().saturating_sub(3000);
    let start = (start..log.len())
        .find(|&i| log.is_char_boundary(i))
        .unwrap_or(log.len());
    format!("--- {} (end):\n{}\n", path.display(), &log[start..])
}

fn free_space(dir: &Path) -> String {
    let at = if dir.exists() { dir } else { Path::new("/tmp") };
    Command::new("df")
        .arg("-h")
        .arg(at)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn spawn(name: &str, join: Option<&NuvolAgent>, reap: &mut Reap) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let ip = fresh_ip();
    let home = dir.path().join("st");
    let folder = dir.path().join("shared");
    let (gui, port) = (free_port(), free_port());
    let cfg = dir.path().join("nuvol.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[sync]
enable = true
home = "{}"
gui = "127.0.0.1:{gui}"
listen = "tcp://{ip}:{port}"
poll_every = "1s"
folders = [{{ id = "shared", path = "{}" }}]
"#,
            home.display(),
            folder.display()
        ),
    )
    .unwrap();
    reap.0.push(home.clone());
    let mut b = NuvolAgent::builder(NUVOL, name)
        .ip(ip)
        .profile("local")
        .arg(format!("--config={}", cfg.display()))
        .arg("--mdns=false")
        .arg("--apps=false");
    if let Some(j) = join {
        b = b.join_agent(j);
    }
    Node {
        agent: b.spawn().unwrap(),
        home,
        folder,
        gui,
        port,
        _dir: dir,
    }
}

fn ip_of(n: &Node) -> IpAddr {
    n.agent.ip()
}

#[test]
fn three_nodes_keep_a_folder_in_sync() {
    if syncthing_missing("sync_syncthing") {
        return;
    }
    let mut reap = Reap(Vec::new());
    let a = spawn("sync-a", None, &mut reap);
    let b = spawn("sync-b", Some(&a.agent), &mut reap);
    let c = spawn("sync-c", Some(&a.agent), &mut reap);
    let nodes = [&a, &b, &c];

    // Each node shares the folder with the two others.
    for n in nodes {
        wait_until_msg(
            &format!("{} sharing with two peers", n.agent.name()),
            T,
            POLL,
            || {
                n.folder_status("shared")
                    .is_some_and(|f| f["nodes"].as_array().is_some_and(|l| l.len() == 2))
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", report(&nodes)));
    }

    // A file written on a reaches b and c.
    let content = format!("hello from a, {}\n", std::process::id());
    std::fs::write(a.folder.join("hello.txt"), &content).unwrap();
    for n in [&b, &c] {
        wait_until_msg(&format!("hello.txt on {}", n.agent.name()), T, POLL, || {
            std::fs::read_to_string(n.folder.join("hello.txt")).is_ok_and(|t| t == content)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", report(&nodes)));
    }
    // And one written on c reaches a.
    std::fs::create_dir_all(c.folder.join("sub")).unwrap();
    std::fs::write(c.folder.join("sub/back.txt"), "from c").unwrap();
    wait_until_msg("sub/back.txt on a", T, POLL, || {
        std::fs::read_to_string(a.folder.join("sub/back.txt")).is_ok_and(|t| t == "from c")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", report(&nodes)));

    // `nuvol sync status` shows the folder in sync everywhere.
    for n in nodes {
        wait_until_msg(&format!("in sync on {}", n.agent.name()), T, POLL, || {
            n.folder_status("shared").is_some_and(|f| {
                f["in_sync"] == true
                    && f["state"] == "idle"
                    && f["need_files"] == 0
                    && f["conflicts"] == 0
                    && f["connected"].as_array().is_some_and(|l| l.len() == 2)
            })
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", report(&nodes)));
        let s = n.status().unwrap();
        assert_eq!(s["syncthing"]["running"], true, "{s}");
        assert!(s["syncthing"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with('v')));
        assert_eq!(s["folders"][0]["type"], "sendreceive");
        let text = n.agent.cli(&["sync", "status"]).unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("shared") && l.contains(" yes ")),
            "{text}"
        );
    }

    // The dashboard's overview shows the folder in sync.
    let (status, page) = http(&format!("{}:7000", a.agent.ip()), "/", None).unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("Replicated folders"), "{page}");
    assert!(
        page.contains(r#"<tr data-folder="shared"><td>shared</td><td>sendreceive</td><td>idle</td><td>yes</td><td>0</td><td>0</td>"#),
        "{page}"
    );

    // Each Syncthing: off the internet, the peers at explicit addresses.
    for n in nodes {
        let cfg = n.syncthing("/rest/config").expect("Syncthing's config");
        let o = &cfg["options"];
        assert_eq!(
            o["listenAddresses"],
            serde_json::json!([format!("tcp://{}:{}", ip_of(n), n.port)])
        );
        for k in [
            "globalAnnounceEnabled",
            "localAnnounceEnabled",
            "relaysEnabled",
            "natEnabled",
            "crashReportingEnabled",
        ] {
            assert_eq!(o[k], false, "{}: {k}", n.agent.name());
        }
        assert_eq!(o["urAccepted"], -1);
        let peers: Vec<&Node> = nodes
            .iter()
            .copied()
            .filter(|p| p.agent.name() != n.agent.name())
            .collect();
        for p in peers {
            let d = cfg["devices"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["name"] == format!("nuvol/{}", p.agent.name()))
                .unwrap_or_else(|| panic!("{} in {}'s devices", p.agent.name(), n.agent.name()));
            assert_eq!(
                d["addresses"],
                serde_json::json!([format!("tcp://{}:{}", ip_of(p), p.port)])
            );
            assert_eq!(d["autoAcceptFolders"], false);
        }
        let f = &cfg["folders"].as_array().unwrap()[0];
        assert_eq!(f["id"], "shared");
        assert_eq!(f["devices"].as_array().unwrap().len(), 3);
    }

    // a's Syncthing dies: the component fails, is restarted with a new
    // Syncthing on the same home, and the folder syncs again.
    let pid_file = a.home.join("syncthing.pid");
    let old_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(old_pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    wait_until_msg("a's Syncthing started again", T, POLL, || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .is_some_and(|p| p != old_pid)
            && a.status()
                .is_some_and(|s| s["syncthing"]["running"] == true)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", report(&nodes)));
    let list = components(&a.agent);
    let sync = component(&list, "sync").unwrap();
    assert!(sync["restarts"].as_u64().unwrap() >= 1, "{sync}");
    assert!(
        sync["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Syncthing exited")),
        "{sync}"
    );
    std::fs::write(a.folder.join("after.txt"), "after the restart").unwrap();
    for n in [&b, &c] {
        wait_until_msg(&format!("after.txt on {}", n.agent.name()), T, POLL, || {
            std::fs::read_to_string(n.folder.join("after.txt"))
                .is_ok_and(|t| t == "after the restart")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", report(&nodes)));
    }

    // c leaves: a and b drop its device.
    c.agent.cli(&["leave"]).unwrap();
    let c_name = format!("nuvol/{}", c.agent.name());
    for n in [&a, &b] {
        wait_until_msg(
            &format!("c gone from {}'s Syncthing", n.agent.name()),
            T,
            POLL,
            || {
                n.syncthing("/rest/config").is_some_and(|cfg| {
                    !cfg["devices"]
                        .as_array()
                        .is_some_and(|l| l.iter().any(|d| d["name"] == c_name))
                        && cfg["folders"][0]["devices"]
                            .as_array()
                            .is_some_and(|l| l.len() == 2)
                })
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", report(&nodes)));
    }
}

/// An agent in this process, with `[sync]` from `toml`.
async fn start_inproc(
    node: &str,
    ip: IpAddr,
    dir: &Path,
    toml: &str,
    join: Option<IpAddr>,
) -> nuvol_agent::RunningAgent {
    let mut flags = vec![
        format!("--node={node}"),
        format!("--bind={ip}:7946"),
        format!("--rpc-addr={ip}:7373"),
        "--profile=local".to_owned(),
        format!("--data-dir={}", dir.display()),
        "--mdns=false".to_owned(),
        "--apps=false".to_owned(),
    ];
    if let Some(j) = join {
        flags.push(format!("--join={j}:7946"));
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    nuvol::components()
        .configure_from(toml, &flags)
        .unwrap()
        .start()
        .await
        .unwrap()
}

fn folder_type(gui: u16, key: &str) -> Option<String> {
    let cfg = http_json(&format!("127.0.0.1:{gui}"), "/rest/config", Some(key))?;
    cfg["folders"]
        .as_array()?
        .iter()
        .find(|f| f["id"] == "app")?["type"]
        .as_str()
        .map(str::to_owned)
}

/// Waits for `f`; on a timeout, panics with `diag()` (the nodes' state).
async fn wait_async(what: &str, diag: &dyn Fn() -> String, mut f: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + T;
    while !f() {
        if tokio::time::Instant::now() >= end {
            panic!("timed out waiting for {what}\n{}", diag());
        }
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folders_mode_flips_on_failover() {
    if syncthing_missing("sync_syncthing") {
        return;
    }
    let ips = LoopbackAlloc::global().take(2);
    let mut reap = Reap(Vec::new());
    let mut nodes = Vec::new();
    for (i, name) in ["ha-a", "ha-b"].iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let (gui, port) = (free_port(), free_port());
        let data = dir.path().join("app");
        let toml = format!(
            "[sync]\nenable = true\ngui = '127.0.0.1:{gui}'\nlisten = 'tcp://{}:{port}'\npoll_every = '1s'\nfolders = [{{ id = 'app', path = '{}' }}]\n",
            ips[i],
            data.display()
        );
        reap.0.push(dir.path().join("syncthing"));
        let join = (i > 0).then(|| ips[0]);
        let agent = start_inproc(name, ips[i], dir.path(), &toml, join).await;
        nodes.push((agent, dir, gui, data));
    }
    let key = |i: usize| -> String {
        std::fs::read_to_string(nodes[i].1.path().join("syncthing/nuvol-api-key"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let handle = |i: usize| {
        nodes[i]
            .0
            .registry()
            .get::<nuvol_sync::SyncHandle>()
            .expect("the sync service")
    };
    let diag = || {
        (0..2)
            .map(|i| {
                format!(
                    "--- node {i}: {}\n{}{}",
                    serde_json::to_string(&handle(i).status()).unwrap_or_default(),
                    log_tail(&nodes[i].1.path().join("syncthing/syncthing.log")),
                    free_space(&nodes[i].3)
                )
            })
            .collect::<String>()
    };
    for i in 0..2 {
        let h = handle(i);
        wait_async("the folder shared with the peer", &diag, || {
            h.status()
                .folders
                .first()
                .is_some_and(|f| f.nodes.len() == 1 && f.connected.len() == 1)
        })
        .await;
    }

    // The app runs on a: a sends, b receives.
    handle(0)
        .set_mode("app", nuvol_sync::Mode::SendOnly)
        .unwrap();
    handle(1)
        .set_mode("app", nuvol_sync::Mode::ReceiveOnly)
        .unwrap();
    let (ga, gb) = (nodes[0].2, nodes[1].2);
    let (ka, kb) = (key(0), key(1));
    wait_async("a send-only, b receive-only in Syncthing", &diag, || {
        folder_type(ga, &ka).as_deref() == Some("sendonly")
            && folder_type(gb, &kb).as_deref() == Some("receiveonly")
    })
    .await;
    std::fs::write(nodes[0].3.join("state.db"), "v1 from a").unwrap();
    let on_b = nodes[1].3.join("state.db");
    wait_async("a's data on b", &diag, || {
        std::fs::read_to_string(&on_b).is_ok_and(|t| t == "v1 from a")
    })
    .await;
    assert_eq!(handle(0).status().folders[0].kind, "sendonly");

    // Failover to b: b sends, a receives; b's writes reach a.
    handle(0)
        .set_mode("app", nuvol_sync::Mode::ReceiveOnly)
        .unwrap();
    handle(1)
        .set_mode("app", nuvol_sync::Mode::SendOnly)
        .unwrap();
    wait_async("a receive-only, b send-only in Syncthing", &diag, || {
        folder_type(ga, &ka).as_deref() == Some("receiveonly")
            && folder_type(gb, &kb).as_deref() == Some("sendonly")
    })
    .await;
    std::fs::write(&on_b, "v2 from b").unwrap();
    let on_a = nodes[0].3.join("state.db");
    wait_async("b's data on a", &diag, || {
        std::fs::read_to_string(&on_a).is_ok_and(|t| t == "v2 from b")
    })
    .await;
    assert!(handle(0)
        .set_mode("other", nuvol_sync::Mode::SendOnly)
        .is_err());

    // The route in the assembled OpenAPI document, the folder metrics.
    let api = nodes[0].0.registry().info.get("http_addr").unwrap();
    let doc = http_json(&api, "/v1/openapi.json", None).unwrap();
    assert!(doc["paths"]["/v1/sync"]["get"].is_object(), "{doc}");
    assert!(doc["components"]["schemas"]["SyncStatus"].is_object());
    let (_, metrics) = http(&api, "/metrics", None).unwrap();
    for m in [
        "nuvol_sync_folder_need_files{folder=\"app\"} 0",
        "nuvol_sync_folder_conflicts{folder=\"app\"} 0",
    ] {
        assert!(metrics.contains(m), "{m} in {metrics}");
    }

    for (agent, _, _, _) in nodes.drain(..).rev() {
        agent.shutdown(false).await;
    }
}

const BUSYBOX: &str = "/bin/busybox";

/// Kills the process apps a failed test leaves behind (their state files).
struct ReapApps(Vec<PathBuf>);

impl Drop for ReapApps {
    fn drop(&mut self) {
        for data in &self.0 {
            let Ok(rd) = std::fs::read_dir(data.join("apps-proc/procs")) else {
                continue;
            };
            for e in rd.flatten() {
                let Ok(t) = std::fs::read_to_string(e.path()) else {
                    continue;
                };
                let Some(pid) = nuvol_apps::process::parse_state(&t)
                    .ok()
                    .and_then(|s| s.pid)
                else {
                    continue;
                };
                if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
                }
            }
        }
    }
}

/// A node with the folder `db` following the app `db`, and process apps.
fn spawn_follow(
    name: &str,
    join: Option<&NuvolAgent>,
    reap: &mut Reap,
    apps: &mut ReapApps,
) -> Node {
    let dir = tempfile::tempdir().unwrap();
    // Process apps run as nobody, who goes through the data directory.
    std::fs::create_dir(dir.path().join("data")).unwrap();
    for d in [dir.path().to_owned(), dir.path().join("data")] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    }
    let ip = fresh_ip();
    let home = dir.path().join("st");
    let folder = dir.path().join("db");
    let (gui, port) = (free_port(), free_port());
    let cfg = dir.path().join("nuvol.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[sync]
enable = true
home = "{}"
gui = "127.0.0.1:{gui}"
listen = "tcp://{ip}:{port}"
poll_every = "1s"
folders = [{{ id = "db", path = "{}", follow_app = "db" }}]
"#,
            home.display(),
            folder.display()
        ),
    )
    .unwrap();
    reap.0.push(home.clone());
    apps.0.push(dir.path().join("data"));
    let mut b = NuvolAgent::builder(NUVOL, name)
        .ip(ip)
        .profile("local")
        .data_dir(dir.path().join("data"))
        .arg(format!("--config={}", cfg.display()))
        .arg("--mdns=false")
        .arg("--apps-reconcile-every=1s")
        .arg("--docker-socket=/nonexistent/docker.sock");
    if let Some(j) = join {
        b = b.join_agent(j);
    }
    Node {
        agent: b.spawn().unwrap(),
        home,
        folder,
        gui,
        port,
        _dir: dir,
    }
}

/// The type of folder `id` in the node's Syncthing.
fn st_type(n: &Node, id: &str) -> Option<String> {
    n.syncthing("/rest/config")?["folders"]
        .as_array()?
        .iter()
        .find(|f| f["id"] == id)?["type"]
        .as_str()
        .map(str::to_owned)
}

/// Install the process app `db` (busybox httpd on `port`) on `n`.
fn install_db(n: &Node, port: u16) {
    let file = n._dir.path().join("db.yml");
    std::fs::write(
        &file,
        format!(
            r#"x-nuvol:
  id: db
  driver: process
  publish:
    - {{type: http, port: {port}}}
services:
  web:
    command: ["{BUSYBOX}", "httpd", "-f", "-p", "{port}"]
    ports: ["{port}"]
    restart: always
    stop_grace_period: 1s
"#
        ),
    )
    .unwrap();
    wait_until_msg("the apps component up", T, POLL, || {
        n.agent
            .cli_run(&["app", "list"])
            .is_ok_and(|o| o.status.success())
    })
    .unwrap();
    let out = n
        .agent
        .cli(&["app", "install", file.to_str().unwrap()])
        .unwrap();
    assert!(out.starts_with("installed db"), "{out}");
}

#[test]
fn a_folder_follows_its_app_when_it_moves() {
    if syncthing_missing("sync_syncthing follow_app") {
        return;
    }
    if !rustix::process::getuid().is_root() {
        skip_or_fail(
            "sync_syncthing follow_app",
            "it needs root (process apps run as nobody)",
        );
        return;
    }
    if !Path::new(BUSYBOX).exists() {
        skip_or_fail(
            "sync_syncthing follow_app",
            "/bin/busybox is missing (apt-get install busybox-static)",
        );
        return;
    }
    let mut reap = Reap(Vec::new());
    let mut apps = ReapApps(Vec::new());
    let a = spawn_follow("follow-a", None, &mut reap, &mut apps);
    let mut b = spawn_follow("follow-b", Some(&a.agent), &mut reap, &mut apps);
    for n in [&a, &b] {
        wait_until_msg("the folder shared with the peer", T, POLL, || {
            n.folder_status("db").is_some_and(|f| {
                f["nodes"].as_array().is_some_and(|l| l.len() == 1)
                    && f["connected"].as_array().is_some_and(|l| l.len() == 1)
            })
        })
        .unwrap();
    }
    // The app runs nowhere yet: both receive-only.
    let f = a.folder_status("db").unwrap();
    assert_eq!(f["follow_app"], "db", "{f}");
    assert_eq!(f["app_place"], "nowhere", "{f}");
    assert_eq!(f["type"], "receiveonly", "{f}");

    // Installed on a: a sends, b receives.
    install_db(&a, free_port());
    wait_until_msg("a send-only, b receive-only", T, POLL, || {
        st_type(&a, "db").as_deref() == Some("sendonly")
            && st_type(&b, "db").as_deref() == Some("receiveonly")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", a.agent.log_tail(20), b.agent.log_tail(20)));
    let fa = a.folder_status("db").unwrap();
    assert_eq!(fa["app_place"], "here", "{fa}");
    let fb = b.folder_status("db").unwrap();
    assert_eq!(fb["app_place"], "elsewhere", "{fb}");
    let out = a.agent.cli(&["sync", "status"]).unwrap();
    assert!(out.contains("db(here)"), "{out}");

    std::fs::write(a.folder.join("state.db"), "v1 from a").unwrap();
    wait_until_msg("a's data on b", T, POLL, || {
        std::fs::read_to_string(b.folder.join("state.db")).is_ok_and(|t| t == "v1 from a")
    })
    .unwrap();
    // A write on the receive-only side stays there: once b's Syncthing has
    // seen it as a local change, and a later write of a's has reached b,
    // a still does not have it.
    std::fs::write(b.folder.join("stray.txt"), "from b").unwrap();
    wait_until_msg("b's Syncthing sees its local change", T, POLL, || {
        b.syncthing("/rest/db/status?folder=db")
            .is_some_and(|s| s["receiveOnlyTotalItems"].as_u64().unwrap_or(0) > 0)
    })
    .unwrap();
    std::fs::write(a.folder.join("marker"), "after the stray write").unwrap();
    wait_until_msg("a's later write on b", T, POLL, || {
        b.folder.join("marker").exists()
    })
    .unwrap();
    assert!(
        !a.folder.join("stray.txt").exists(),
        "a receive-only folder's write went back to the sender"
    );

    // The app moves: stopped on a, installed on b. b sends, a receives.
    let out = a.agent.cli(&["app", "stop", "db"]).unwrap();
    assert!(out.contains("db"), "{out}");
    install_db(&b, free_port());
    wait_until_msg("a receive-only, b send-only", T, POLL, || {
        st_type(&a, "db").as_deref() == Some("receiveonly")
            && st_type(&b, "db").as_deref() == Some("sendonly")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", a.agent.log_tail(20), b.agent.log_tail(20)));
    std::fs::write(b.folder.join("state.db"), "v2 from b").unwrap();
    wait_until_msg("b's data on a", T, POLL, || {
        std::fs::read_to_string(a.folder.join("state.db")).is_ok_and(|t| t == "v2 from b")
    })
    .unwrap();
    // The modes are kept for a restart.
    let saved = std::fs::read_to_string(a._dir.path().join("data/sync-modes.json")).unwrap();
    let v: Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(v["modes"]["db"], "receiveonly", "{saved}");
    assert!(a.agent.log_contains("sync: the folder follows its app"));

    // While the app runs nowhere the modes are kept, across a restart too:
    // stopped on b, b's agent killed and started again, b stays send-only
    // (with no saved mode it would start receive-only).
    b.agent.cli(&["app", "stop", "db"]).unwrap();
    wait_until_msg("db runs nowhere, seen from b", T, POLL, || {
        b.folder_status("db")
            .is_some_and(|f| f["app_place"] == "nowhere")
    })
    .unwrap();
    b.agent.restart().unwrap();
    wait_until_msg("b's folder after the restart", T, POLL, || {
        b.folder_status("db")
            .is_some_and(|f| f["state"] != "unknown" && f["app_place"] == "nowhere")
    })
    .unwrap();
    let f = b.folder_status("db").unwrap();
    assert_eq!(f["type"], "sendonly", "{f}");
    assert_eq!(st_type(&b, "db").as_deref(), Some("sendonly"));
    assert!(b.agent.log_contains("sync: folder modes restored"));

    for n in [&a, &b] {
        let _ = n.agent.cli_run(&["app", "remove", "db"]);
    }
}

fn components(a: &NuvolAgent) -> Vec<Value> {
    http_json(&format!("{}:7000", a.ip()), "/v1/agent/components", None)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn component<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|c| c["name"] == name)
}

#[test]
fn a_refused_key_or_a_missing_syncthing_is_a_clear_error_and_the_agent_runs() {
    if syncthing_missing("sync_syncthing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("st");
    let mut reap = Reap(vec![home.clone()]);
    // A Syncthing of its own, with a key the agent does not have.
    let gui = free_port();
    let mut st = Command::new("syncthing")
        .args([
            "serve",
            &format!("--home={}", home.display()),
            "--no-browser",
            "--no-restart",
            "--no-upgrade",
            "--no-default-folder",
            &format!("--gui-address=http://127.0.0.1:{gui}"),
            "--gui-apikey=the-right-key",
            &format!("--logfile={}", home.join("syncthing.log").display()),
        ])
        .env("STNODEFAULTFOLDER", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(home.join("syncthing.pid"), st.id().to_string()).ok();
    let addr = format!("127.0.0.1:{gui}");
    wait_until_msg("the test's Syncthing up", T, POLL, || {
        http_json(&addr, "/rest/system/status", Some("the-right-key")).is_some()
    })
    .unwrap();

    let attach = NuvolAgent::builder(NUVOL, "sync-badkey")
        .profile("local")
        .arg("--mdns=false")
        .arg("--apps=false")
        .arg("--sync")
        .arg("--syncthing-attach")
        .arg(format!("--syncthing-gui={addr}"))
        .arg("--syncthing-api-key=wrong")
        .spawn()
        .unwrap();
    let missing = NuvolAgent::builder(NUVOL, "sync-missing")
        .profile("local")
        .arg("--mdns=false")
        .arg("--apps=false")
        .arg("--sync")
        .arg("--syncthing=/nonexistent/syncthing")
        .arg(format!("--syncthing-gui=127.0.0.1:{}", free_port()))
        .spawn()
        .unwrap();
    let cases = [
        (&attach, format!("Syncthing at {addr} refused the API key")),
        (
            &missing,
            "syncthing not found (install Debian's syncthing or set [sync] syncthing)".to_owned(),
        ),
    ];
    for (a, want) in &cases {
        wait_until_msg(&format!("{}: {want}", a.name()), T, POLL, || {
            let s = a
                .cli_run(&["sync", "status", "--format", "json"])
                .ok()
                .and_then(|o| serde_json::from_str::<Value>(&o.stdout).ok());
            s.is_some_and(|s| {
                s["syncthing"]["running"] == false
                    && s["syncthing"]["error"]
                        .as_str()
                        .is_some_and(|e| e.starts_with(want.as_str()))
            })
        })
        .unwrap();
        wait_until_msg(
            &format!("{}: the component table", a.name()),
            T,
            POLL,
            || {
                let list = components(a);
                let sync_failed = component(&list, "sync").is_some_and(|c| {
                    c["last_error"]
                        .as_str()
                        .is_some_and(|e| e.starts_with(want.as_str()))
                });
                let others_run = ["api", "catalog", "rpc"]
                    .iter()
                    .all(|n| component(&list, n).is_some_and(|c| c["state"] == "running"));
                sync_failed && others_run
            },
        )
        .unwrap();
        // The agent still answers and the text form says why.
        let text = a.cli(&["sync", "status"]).unwrap();
        assert!(text.contains(&format!("Error: {want}")), "{text}");
        assert!(a.cli(&["members"]).unwrap().contains(a.name()));
    }
    // The right key was never replaced: the test's Syncthing still
    // answers it, with no folder added.
    let cfg = http_json(&addr, "/rest/config", Some("the-right-key")).unwrap();
    assert_eq!(cfg["folders"], serde_json::json!([]));

    // With the right key the same Syncthing is attached to and configured.
    let shared = dir.path().join("attached");
    let right = NuvolAgent::builder(NUVOL, "sync-attach")
        .profile("local")
        .arg("--mdns=false")
        .arg("--apps=false")
        .arg("--sync")
        .arg("--syncthing-attach")
        .arg(format!("--syncthing-gui={addr}"))
        .env("NUVOL_SYNCTHING_API_KEY", "the-right-key")
        .arg(format!("--sync-listen=tcp://127.0.0.1:{}", free_port()))
        .arg(format!("--sync-folder=att={}", shared.display()))
        .spawn()
        .unwrap();
    let my_id = http_json(&addr, "/rest/system/status", Some("the-right-key")).unwrap()["myID"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = || {
        right
            .cli_run(&["sync", "status", "--format", "json"])
            .ok()
            .and_then(|o| serde_json::from_str::<Value>(&o.stdout).ok())
    };
    wait_until_msg("attached and configured", T, POLL, || {
        status().is_some_and(|s| {
            s["device_id"] == my_id.as_str()
                && s["syncthing"]["running"] == true
                && s["syncthing"]["managed"] == false
                && s["folders"][0]["state"] == "idle"
        })
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nsync status: {:?}\n{}{}",
            status(),
            log_tail(&home.join("syncthing.log")),
            free_space(&shared)
        )
    });
    let cfg = http_json(&addr, "/rest/config", Some("the-right-key")).unwrap();
    assert_eq!(cfg["folders"][0]["id"], "att");
    assert_eq!(cfg["folders"][0]["path"], shared.display().to_string());
    assert_eq!(cfg["options"]["globalAnnounceEnabled"], false);
    drop(right);
    let _ = st.kill();
    let _ = st.wait();
    reap.0.clear();
}
