//! The process driver with real programs (Debian's static busybox): a
//! Manager over the Router with no Docker at all, as on a node without a
//! container engine. Needs root (to run programs as `nobody` and to write
//! cgroups) and /bin/busybox; skips with a message otherwise.

use nuvol_apps::compose::Definition;
use nuvol_apps::driver::{Engine, Router, RunState};
use nuvol_apps::error::AppError;
use nuvol_apps::manager::{Install, Manager};
use nuvol_apps::plan::Driver;
use nuvol_apps::process::{log_file, ProcessSettings, Processes};
use nuvol_apps::reconcile::AppState;
use nuvol_testkit::free_port;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const BUSYBOX: &str = "/bin/busybox";

fn skip(test: &str) -> bool {
    if !rustix::process::getuid().is_root() {
        println!("SKIP: {test} because it needs root (programs run as nobody, cgroups)");
        return true;
    }
    if !Path::new(BUSYBOX).exists() {
        println!("SKIP: {test} because {BUSYBOX} is missing (apt-get install busybox-static)");
        return true;
    }
    false
}

struct Node {
    dir: tempfile::TempDir,
    manager: Manager,
    procs: Processes,
    _reaper: Reaper,
}

/// Nothing of a test outlives it: the processes its state files name
/// are killed, their cgroups removed.
struct Reaper(std::path::PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        let Ok(rd) = std::fs::read_dir(self.0.join("apps-proc/procs")) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(st) = std::fs::read_to_string(e.path())
                .map_err(|e| e.to_string())
                .and_then(|t| nuvol_apps::process::parse_state(&t))
            else {
                continue;
            };
            if let Some(p) = st
                .pid
                .and_then(|p| rustix::process::Pid::from_raw(p as i32))
            {
                let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
            }
            for d in &st.cgroups {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

impl Node {
    /// The same data directory opened by a new "agent" (the old one's
    /// manager closed first: its store is locked), after its first pass.
    async fn restarted(self) -> Node {
        let Node {
            dir,
            manager,
            procs: _,
            _reaper,
        } = self;
        drop(manager);
        let (manager, procs) = open(dir.path(), ProcessSettings::default());
        manager.reconcile().await.unwrap();
        Node {
            dir,
            manager,
            procs,
            _reaper,
        }
    }
}

fn open(dir: &Path, cfg: ProcessSettings) -> (Manager, Processes) {
    let procs = Processes::open(dir, "node1", cfg).unwrap();
    procs.spawn_housekeeping();
    let router = Arc::new(Router::new(procs.clone()));
    let manager = Manager::open("node1", dir, router as Arc<dyn Engine>, None).unwrap();
    (manager, procs)
}

async fn node(cfg: ProcessSettings) -> Node {
    let dir = tempfile::tempdir().unwrap();
    // The run user goes through the data directory to its app's.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let (manager, procs) = open(dir.path(), cfg);
    // The agent's first pass (an adoption: it ignores backoffs).
    manager.reconcile().await.unwrap();
    let _reaper = Reaper(dir.path().to_owned());
    Node {
        dir,
        manager,
        procs,
        _reaper,
    }
}

fn def(services: &str, volumes: &str) -> Definition {
    Definition {
        compose: format!(
            "x-nuvol:\n  id: t\n  driver: process\nservices:\n{services}{}",
            if volumes.is_empty() {
                String::new()
            } else {
                format!("volumes:\n{volumes}")
            }
        ),
        env_files: BTreeMap::new(),
    }
}

fn install(name: &str, d: Definition) -> Install {
    Install {
        name: Some(name.into()),
        definition: d,
        source: "test".into(),
        params: BTreeMap::new(),
        files: BTreeMap::new(),
    }
}

/// What the process part of the router has (the Docker part has no
/// engine: its list is an error).
async fn plist(m: &Manager) -> Vec<nuvol_apps::driver::Observed> {
    let e = m.engine().part(Driver::Process).unwrap();
    assert!(m.engine().list().await.is_err(), "no Docker here");
    e.list().await.unwrap()
}

async fn observed(m: &Manager, app: &str) -> nuvol_apps::driver::Observed {
    plist(m).await.into_iter().find(|o| o.app == app).unwrap()
}

fn pid_of(p: &Processes, id: &str) -> u32 {
    p.state(id).and_then(|s| s.pid).unwrap()
}

fn uid_of(pid: u32) -> u32 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn kill9(pid: u32) {
    let p = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::KILL).unwrap();
}

async fn wait_for<F: FnMut() -> bool>(what: &str, mut f: F) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn httpd_runs_as_nobody_healthy_and_restarted_with_backoff() {
    if skip("httpd_runs_as_nobody_healthy_and_restarted_with_backoff") {
        return;
    }
    let n = node(ProcessSettings::default()).await;
    let port = free_port();
    let d = def(
        &format!(
            "  web:\n    command: [\"{BUSYBOX}\", \"httpd\", \"-f\", \"-p\", \"127.0.0.1:{port}\", \"-h\", \"www\"]\n    ports: [\"{port}\"]\n    restart: always\n    stop_grace_period: 1s\n    healthcheck:\n      test: [\"CMD\", \"{BUSYBOX}\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:{port}/\"]\n      interval: 1s\n      timeout: 2s\n      retries: 1\n"
        ),
        "",
    );
    let mut req = install("web", d);
    req.files
        .insert("www/index.html".into(), b"hello\n".to_vec());
    let s = n.manager.install(req).await.unwrap();
    assert_eq!(s.name, "web");
    let o = observed(&n.manager, "web").await;
    assert!(o.id.starts_with("proc-"), "{}", o.id);
    assert_eq!(o.state, RunState::Running);
    let pid = pid_of(&n.procs, &o.id);
    assert_eq!(uid_of(pid), 65534, "runs as nobody");
    // Its own process group.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let pgrp: u32 = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pgrp, pid);
    // It serves, and its health check passes.
    let m = n.manager.clone();
    for _ in 0..200 {
        if observed(&m, "web").await.health == nuvol_apps::driver::Health::Healthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        observed(&m, "web").await.health,
        nuvol_apps::driver::Health::Healthy
    );
    // kill -9: the reconciler starts it again (first failure at once).
    kill9(pid);
    let procs = n.procs.clone();
    let id = o.id.clone();
    wait_for("the process to be seen dead", || {
        procs.state(&id).and_then(|s| s.pid).is_none()
    })
    .await;
    n.manager.reconcile().await.unwrap();
    let o2 = observed(&n.manager, "web").await;
    assert_eq!(o2.state, RunState::Running);
    assert_eq!(o2.restart_count, 1);
    let pid2 = pid_of(&n.procs, &o.id);
    assert_ne!(pid2, pid);
    assert_eq!(uid_of(pid2), 65534);
    // Killed again at once: the backoff holds it (10 s).
    kill9(pid2);
    wait_for("the process to be seen dead", || {
        procs.state(&id).and_then(|s| s.pid).is_none()
    })
    .await;
    for _ in 0..5 {
        n.manager.reconcile().await.unwrap();
    }
    let o3 = observed(&n.manager, "web").await;
    assert_eq!(o3.state, RunState::Exited);
    assert_eq!(o3.restart_count, 1);
    assert_eq!(n.manager.list()[0].state, AppState::Failed);
    n.manager.remove("web", true).await.unwrap();
    assert!(n.procs.state(&o.id).is_none());
}

#[tokio::test]
async fn a_program_that_always_exits_is_not_restarted_in_a_busy_loop() {
    if skip("a_program_that_always_exits_is_not_restarted_in_a_busy_loop") {
        return;
    }
    let n = node(ProcessSettings::default()).await;
    let d = def(
        &format!("  bad:\n    command: [\"{BUSYBOX}\", \"sh\", \"-c\", \"echo failing; exit 3\"]\n    restart: always\n"),
        "",
    );
    n.manager.install(install("bad", d)).await.unwrap();
    // Many passes: one restart at most before the backoff holds it.
    for _ in 0..40 {
        let _ = n.manager.reconcile().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let o = observed(&n.manager, "bad").await;
    assert_eq!(o.state, RunState::Exited);
    assert_eq!(o.exit_code, Some(3));
    assert!(o.restart_count <= 1, "restarted {} times", o.restart_count);
    assert_eq!(n.manager.list()[0].state, AppState::Failed);
    // Its output and the agent's note are in its log.
    let mut lines = n.manager.logs("bad", None, 10, false).await.unwrap();
    let mut text = String::new();
    while let Some(l) = futures::StreamExt::next(&mut lines).await {
        text.push_str(&l.unwrap().text);
    }
    assert!(text.contains("failing"), "{text}");
    assert!(text.contains("exited with code 3"), "{text}");
    // After the backoff (10 s) it is tried again, once, then held again
    // (longer: the reconciler's tests check the doubling).
    let mut count = o.restart_count;
    for _ in 0..300 {
        let _ = n.manager.reconcile().await;
        count = observed(&n.manager, "bad").await.restart_count;
        if count == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count, 2, "tried again after its backoff");
    for _ in 0..20 {
        let _ = n.manager.reconcile().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(observed(&n.manager, "bad").await.restart_count, 2);
}

#[tokio::test]
async fn logs_are_rotated_by_size_and_followed() {
    if skip("logs_are_rotated_by_size_and_followed") {
        return;
    }
    let max = 16 * 1024;
    let n = node(ProcessSettings {
        log_max: max,
        log_keep: 2,
        ..ProcessSettings::default()
    })
    .await;
    // About 20 KiB/s, for a few seconds, then a slow trickle.
    let script = "i=0; while [ $$i -lt 20 ]; do j=0; while [ $$j -lt 50 ]; do echo line $$i $$j ................................; j=$$((j+1)); done; i=$$((i+1)); sleep 0.2; done; while true; do echo tick; sleep 0.2; done";
    let d = def(
        &format!("  chatty:\n    command: [\"{BUSYBOX}\", \"sh\", \"-c\", \"{script}\"]\n    stop_grace_period: 1s\n"),
        "",
    );
    n.manager.install(install("chatty", d)).await.unwrap();
    let o = observed(&n.manager, "chatty").await;
    let dir = n.procs.log_dir(&o.id);
    let d2 = dir.clone();
    wait_for("two rotated generations", || log_file(&d2, 2).exists()).await;
    // Bounded: the limit plus what is written between two checks.
    for g in 0..=2 {
        let len = std::fs::metadata(log_file(&dir, g)).map_or(0, |m| m.len());
        assert!(len <= max + 64 * 1024, "generation {g}: {len} bytes");
    }
    assert!(!log_file(&dir, 3).exists(), "only 2 generations are kept");
    let mut tail = n.manager.logs("chatty", None, 3, false).await.unwrap();
    let mut got = Vec::new();
    while let Some(l) = futures::StreamExt::next(&mut tail).await {
        got.push(l.unwrap().text);
    }
    assert_eq!(got.len(), 3, "{got:?}");
    // Follow: new lines come.
    let mut follow = n.manager.logs("chatty", None, 0, true).await.unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut follow),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert!(
        line.text.starts_with("line ") || line.text.starts_with("tick"),
        "{line:?}"
    );
    n.manager.remove("chatty", true).await.unwrap();
}

#[tokio::test]
async fn a_restarted_agent_adopts_running_processes_and_restarts_dead_ones() {
    if skip("a_restarted_agent_adopts_running_processes_and_restarts_dead_ones") {
        return;
    }
    let n = node(ProcessSettings::default()).await;
    for app in ["keep", "dies"] {
        let d = def(
            &format!("  main:\n    command: [\"{BUSYBOX}\", \"sleep\", \"1000\"]\n    restart: unless-stopped\n"),
            "",
        );
        n.manager.install(install(app, d)).await.unwrap();
    }
    let keep = observed(&n.manager, "keep").await;
    let dies = observed(&n.manager, "dies").await;
    let keep_pid = pid_of(&n.procs, &keep.id);
    let dies_pid = pid_of(&n.procs, &dies.id);
    // The "agent" goes (its state files stay); one process dies meanwhile.
    let state_file = n
        .procs
        .dir()
        .join("procs")
        .join(format!("{}.json", dies.id));
    let state_before = std::fs::read_to_string(&state_file).unwrap();
    kill9(dies_pid);
    let procs = n.procs.clone();
    let id = dies.id.clone();
    wait_for("the killed process to be reaped", || {
        procs.state(&id).is_some_and(|s| s.pid.is_none())
    })
    .await;
    // As if the agent had died before it saw the exit.
    std::fs::write(&state_file, state_before).unwrap();
    // A corrupt state file is reported and skipped, not fatal.
    std::fs::write(n.procs.dir().join("procs").join("proc-junk.json"), "{oops").unwrap();
    // The old agent's manager goes (its store is closed); its processes
    // stay.
    let n = n.restarted().await;
    let (m2, p2) = (n.manager.clone(), n.procs.clone());
    assert_eq!(pid_of(&p2, &keep.id), keep_pid, "adopted, not restarted");
    let running: Vec<_> = plist(&m2)
        .await
        .into_iter()
        .filter(|o| o.app == "keep")
        .collect();
    assert_eq!(running.len(), 1, "one process for the service");
    let again = observed(&m2, "dies").await;
    assert_eq!(again.state, RunState::Running);
    let new_pid = pid_of(&p2, &dies.id);
    assert_ne!(new_pid, dies_pid);
    // Killing the real children at the end.
    m2.remove("keep", true).await.unwrap();
    m2.remove("dies", true).await.unwrap();
    assert!(
        !Path::new(&format!("/proc/{keep_pid}/stat")).exists()
            || std::fs::read_to_string(format!("/proc/{keep_pid}/stat"))
                .is_ok_and(|s| s.contains(") Z"))
    );
}

#[tokio::test]
async fn memory_limit_is_applied_and_the_kernel_kills_a_program_over_it() {
    if skip("memory_limit_is_applied_and_the_kernel_kills_a_program_over_it") {
        return;
    }
    if !Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        println!("SKIP: memory_limit_is_applied... because this host has no memory cgroup");
        return;
    }
    let n = node(ProcessSettings::default()).await;
    // Holds 200 MiB in a shell variable, after a second (so it is in its
    // cgroup by then).
    let script = format!("sleep 1; x=$({BUSYBOX} dd if=/dev/zero bs=1M count=200 2>/dev/null | {BUSYBOX} tr '\\\\0' a); echo survived; sleep 1000");
    let d = def(
        &format!("  hog:\n    command: [\"{BUSYBOX}\", \"sh\", \"-c\", \"{script}\"]\n    restart: \"no\"\n    mem_limit: 32m\n    cpus: 0.5\n"),
        "",
    );
    n.manager.install(install("hog", d)).await.unwrap();
    let o = observed(&n.manager, "hog").await;
    let st = n.procs.state(&o.id).unwrap();
    let pid = st.pid.unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v2 {
        let f = format!("/sys/fs/cgroup/nuvol/{}/memory.max", o.id);
        assert_eq!(std::fs::read_to_string(f).unwrap().trim(), "33554432");
    } else {
        assert!(cg.contains(&format!("memory:/nuvol/{}", o.id)), "{cg}");
        let f = format!("/sys/fs/cgroup/memory/nuvol/{}/memory.limit_in_bytes", o.id);
        assert_eq!(std::fs::read_to_string(f).unwrap().trim(), "33554432");
        let q = format!("/sys/fs/cgroup/cpu/nuvol/{}/cpu.cfs_quota_us", o.id);
        assert_eq!(std::fs::read_to_string(q).unwrap().trim(), "50000");
    }
    let procs = n.procs.clone();
    let id = o.id.clone();
    wait_for("the kernel to kill it", || {
        procs
            .state(&id)
            .is_some_and(|s| s.state == RunState::Exited && s.exit_code.is_some())
    })
    .await;
    let o = observed(&n.manager, "hog").await;
    assert_eq!(o.exit_code, Some(137));
    let log = std::fs::read_to_string(log_file(&n.procs.log_dir(&o.id), 0)).unwrap();
    assert!(log.contains("out of memory"), "{log}");
    assert!(!log.contains("survived"), "{log}");
    let status = n.manager.status("hog").await.unwrap();
    assert_eq!(status.services[0].exit_code, Some(137));
    assert!(
        status.services[0]
            .notes
            .iter()
            .any(|n| n.contains("out of memory")),
        "{:?}",
        status.services[0].notes
    );
    n.manager.remove("hog", true).await.unwrap();
    assert!(!Path::new(&format!("/sys/fs/cgroup/memory/nuvol/{}", o.id)).exists());
}

#[tokio::test]
async fn stop_start_and_remove_with_and_without_purge() {
    if skip("stop_start_and_remove_with_and_without_purge") {
        return;
    }
    let n = node(ProcessSettings::default()).await;
    let d = def(
        &format!("  main:\n    command: [\"{BUSYBOX}\", \"sh\", \"-c\", \"echo hi > $$DATA/f; exec {BUSYBOX} sleep 1000\"]\n    volumes: [\"data:DATA\"]\n    stop_grace_period: 1s\n"),
        "  data: {}\n",
    );
    n.manager.install(install("vol", d.clone())).await.unwrap();
    let vdir = n.procs.volume_dir("nuvol-vol-data");
    let f = vdir.join("f");
    wait_for("the program to write in its volume", || f.exists()).await;
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "hi\n");
    let meta = std::fs::metadata(&vdir).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        65534,
        "owned by nobody"
    );
    let s = n.manager.stop("vol").await.unwrap();
    assert_eq!(s.state, AppState::Stopped);
    assert_eq!(observed(&n.manager, "vol").await.state, RunState::Exited);
    let s = n.manager.start("vol").await.unwrap();
    assert_eq!(observed(&n.manager, "vol").await.state, RunState::Running);
    assert_ne!(s.state, AppState::Stopped);
    n.manager.remove("vol", false).await.unwrap();
    assert!(f.exists(), "the volume stays without --purge");
    assert!(plist(&n.manager).await.is_empty());
    // Installed again: the data is there; removed with purge: gone.
    n.manager.install(install("vol", d)).await.unwrap();
    n.manager.remove("vol", true).await.unwrap();
    assert!(!vdir.exists(), "--purge removes the volume");
    assert!(!n.dir.path().join("apps/vol").exists());
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_leaves_nothing() {
    if skip("bad_input_is_a_clear_error_and_leaves_nothing") {
        return;
    }
    let n = node(ProcessSettings::default()).await;
    let nothing_left = |n: &Node| {
        let procs = std::fs::read_dir(n.procs.dir().join("procs"))
            .unwrap()
            .count();
        let vols = std::fs::read_dir(n.procs.dir().join("volumes"))
            .unwrap()
            .count();
        assert_eq!((procs, vols), (0, 0));
        assert!(!n.dir.path().join("apps/x").exists());
        assert!(n.manager.list().is_empty());
    };
    let cases: Vec<(String, &str)> = vec![
        (
            "  main:\n    command: [\"/nonexistent/prog\", \"-x\"]\n    volumes: [\"data:DATA\"]\n".into(),
            "program /nonexistent/prog: not found",
        ),
        (
            format!("  main:\n    command: [\"{BUSYBOX}\", \"sleep\", \"9\"]\n    user: no-such-user-here\n    volumes: [\"data:DATA\"]\n"),
            "no user no-such-user-here",
        ),
        (
            format!("  main:\n    command: [\"{BUSYBOX}\", \"sleep\", \"9\"]\n    user: root\n"),
            "process_allow_root",
        ),
        (
            format!("  main:\n    image: busybox\n    command: [\"{BUSYBOX}\"]\n"),
            "services.main.image: not supported",
        ),
        (
            format!("  main:\n    command: [\"{BUSYBOX}\"]\n    network_mode: host\n"),
            "services.main.network_mode: not supported",
        ),
        (
            "  main:\n    command: [\"sleep\", \"9\"]\n".into(),
            "absolute path",
        ),
        (
            format!("  main:\n    command: [\"{BUSYBOX}\"]\n    ports: [\"8080:80\"]\n"),
            "there is no mapping",
        ),
        (
            format!("  main:\n    command: [\"{BUSYBOX}\"]\n    volumes: [\"data:/data\"]\n"),
            "not an environment variable name",
        ),
    ];
    for (svc, want) in cases {
        let e: AppError = n
            .manager
            .install(install("x", def(&svc, "  data: {}\n")))
            .await
            .unwrap_err();
        assert!(e.to_string().contains(want), "{e} (wanted {want:?})");
        nothing_left(&n);
    }
}

#[tokio::test]
async fn process_apps_are_reconciled_while_docker_apps_wait_for_their_engine() {
    if skip("process_apps_are_reconciled_while_docker_apps_wait_for_their_engine") {
        return;
    }
    // A Docker app installed earlier (its record in the store), on a node
    // whose Docker is gone.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let _reaper = Reaper(dir.path().to_owned());
    {
        let st = nuvol_apps::state::State::open(&dir.path().join("apps.redb")).unwrap();
        st.put(&nuvol_apps::state::AppRecord {
            name: "dock".into(),
            source: "test".into(),
            definition: Definition {
                compose:
                    "services: {web: {image: nuvol-test/busybox:1, command: [sleep, \"9\"]}}\n"
                        .into(),
                env_files: BTreeMap::new(),
            },
            params: BTreeMap::new(),
            want: nuvol_apps::reconcile::Want::Running,
            version: String::new(),
            installed_at: 0,
            previous: None,
            pinned: BTreeMap::new(),
        })
        .unwrap();
    }
    let (m, procs) = open(dir.path(), ProcessSettings::default());
    // The pass reports the missing engine (an app needs it) and goes on.
    let e = m.reconcile().await.unwrap_err();
    assert!(matches!(e, AppError::Docker(_)), "{e}");
    let d = def(
        &format!(
            "  main:\n    command: [\"{BUSYBOX}\", \"sleep\", \"1000\"]\n    restart: always\n"
        ),
        "",
    );
    m.install(install("native", d)).await.unwrap();
    let o = observed(&m, "native").await;
    let pid = pid_of(&procs, &o.id);
    kill9(pid);
    let p2 = procs.clone();
    let id = o.id.clone();
    wait_for("the process to be seen dead", || {
        p2.state(&id).and_then(|s| s.pid).is_none()
    })
    .await;
    assert!(m.reconcile().await.is_err(), "Docker is still missing");
    let o2 = observed(&m, "native").await;
    assert_eq!(o2.state, RunState::Running, "restarted without Docker");
    assert_ne!(pid_of(&procs, &o.id), pid);
    // The Docker app is left as it is, its error named.
    let s = m.status("dock").await.unwrap_err();
    assert!(s.to_string().contains("no container engine"), "{s}");
    m.remove("native", true).await.unwrap();
}

#[tokio::test]
async fn without_cgroups_a_limited_program_runs_and_its_status_says_so() {
    if skip("without_cgroups_a_limited_program_runs_and_its_status_says_so") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let _reaper = Reaper(dir.path().to_owned());
    // A cgroup root with no hierarchy in it.
    let empty = tempfile::tempdir().unwrap();
    let procs = Processes::open_with(
        dir.path(),
        "node1",
        ProcessSettings::default(),
        empty.path(),
    )
    .unwrap();
    let router = Arc::new(Router::new(procs.clone()));
    let m = Manager::open("node1", dir.path(), router as Arc<dyn Engine>, None).unwrap();
    let d = def(
        &format!(
            "  main:\n    command: [\"{BUSYBOX}\", \"sleep\", \"1000\"]\n    mem_limit: 32m\n"
        ),
        "",
    );
    m.install(install("free", d)).await.unwrap();
    let o = observed(&m, "free").await;
    assert_eq!(o.state, RunState::Running);
    let status = m.status("free").await.unwrap();
    let notes = &status.services[0].notes;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("running without memory/CPU limits")),
        "{notes:?}"
    );
    let log = std::fs::read_to_string(log_file(&procs.log_dir(&o.id), 0)).unwrap();
    assert!(log.contains("without memory/CPU limits"), "{log}");
    m.remove("free", true).await.unwrap();
}

#[tokio::test]
async fn a_process_app_is_backed_up_and_restored_with_its_volume() {
    if skip("a_process_app_is_backed_up_and_restored_with_its_volume") {
        return;
    }
    let n = node(ProcessSettings::default()).await;
    let d = def(
        &format!("  main:\n    command: [\"{BUSYBOX}\", \"sh\", \"-c\", \"test -f $$DATA/f || {{ echo kept > $$DATA/f; mkdir $$DATA/sub; echo deep > $$DATA/sub/g; }}; exec {BUSYBOX} sleep 1000\"]\n    volumes: [\"data:DATA\"]\n    stop_grace_period: 1s\n"),
        "  data: {}\n",
    );
    n.manager.install(install("bk", d)).await.unwrap();
    let vdir = n.procs.volume_dir("nuvol-bk-data");
    // Written, not only created (under load the backup could otherwise
    // catch the file between its creation and its write).
    wait_for("the program to write in its volume", || {
        std::fs::read_to_string(vdir.join("sub/g")).is_ok_and(|t| t == "deep\n")
    })
    .await;
    let before = pid_of(&n.procs, &observed(&n.manager, "bk").await.id);
    let archive = n.dir.path().join("bk.tar.gz");
    n.manager.backup("bk", &archive).await.unwrap();
    // Stopped for the copy, running again after.
    let after = observed(&n.manager, "bk").await;
    assert_eq!(after.state, RunState::Running);
    assert_ne!(pid_of(&n.procs, &after.id), before, "stopped and started");
    n.manager.remove("bk", true).await.unwrap();
    assert!(!vdir.exists());
    // Back under its name, and under another one beside it.
    n.manager
        .restore(&archive, None, BTreeMap::new())
        .await
        .unwrap();
    n.manager
        .restore(&archive, Some("bk2".into()), BTreeMap::new())
        .await
        .unwrap();
    for (app, dir) in [
        ("bk", vdir.clone()),
        ("bk2", n.procs.volume_dir("nuvol-bk2-data")),
    ] {
        assert_eq!(
            std::fs::read_to_string(dir.join("f")).unwrap(),
            "kept\n",
            "{app}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("sub/g")).unwrap(),
            "deep\n"
        );
        let meta = std::fs::metadata(dir.join("sub/g")).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            65534,
            "{app}: given to nobody"
        );
        // Each volume names its own app (a purge finds it).
        assert_eq!(
            std::fs::read_to_string(dir.join(".nuvol-app")).unwrap(),
            app
        );
        wait_for("the restored app to run", || true).await;
        assert_eq!(
            observed(&n.manager, app).await.state,
            RunState::Running,
            "{app}"
        );
    }
    n.manager.remove("bk2", true).await.unwrap();
    assert!(!n.procs.volume_dir("nuvol-bk2-data").exists());
    assert!(
        vdir.join("f").exists(),
        "the other app's volume is left alone"
    );
    n.manager.remove("bk", true).await.unwrap();
}
