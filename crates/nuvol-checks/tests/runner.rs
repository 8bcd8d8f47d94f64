//! The `Runner`'s scheduling. Timing is only bounded loosely (waits are
//! generous upper limits, never asserted durations).

use nuvol_checks::model::{CheckDef, CheckKind, Health};
use nuvol_checks::{CheckUpdate, Runner};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

const PATIENCE: Duration = Duration::from_secs(20);

fn every_second(kind: CheckKind) -> CheckDef {
    CheckDef {
        kind,
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
    }
}

async fn next(rx: &mut mpsc::Receiver<CheckUpdate>) -> CheckUpdate {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("no check update in time")
        .expect("channel closed")
}

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

#[tokio::test]
async fn runs_at_once_and_repeats() {
    let (_l, addr) = listener().await;
    let (tx, mut rx) = nuvol_agent::chan::Channels::default().mpsc("check-results", 16);
    let mut runner = Runner::new(tx);
    let closed = {
        let (l, a) = listener().await;
        drop(l);
        a
    };
    runner.set(
        "web/80",
        vec![
            every_second(CheckKind::Tcp { addr }),
            every_second(CheckKind::Tcp { addr: closed }),
        ],
    );
    let mut seen = [0usize; 2];
    while seen.iter().any(|&n| n < 2) {
        let u = next(&mut rx).await;
        assert_eq!(u.service, "web/80");
        let want = [Health::Passing, Health::Critical][u.index];
        assert_eq!(u.state.status, want, "{}", u.state.output);
        seen[u.index] += 1;
    }
    assert_eq!(runner.services().collect::<Vec<_>>(), ["web/80"]);
}

/// Connections accepted so far on a non-blocking listener: one per run of a
/// TCP check against it.
fn accepted(l: &std::net::TcpListener) -> usize {
    let mut n = 0;
    loop {
        match l.accept() {
            Ok(_) => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return n,
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn counting_listener() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

/// A TCP check whose schedule is one run at once and none for an hour:
/// within the test, every further run is a restart.
fn hourly(addr: &str) -> Vec<CheckDef> {
    vec![CheckDef {
        kind: CheckKind::Tcp { addr: addr.into() },
        interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(5),
    }]
}

// One thread: spawned tasks are first polled in the order they were
// spawned, which the probe below relies on.
#[tokio::test(flavor = "current_thread")]
async fn same_list_does_not_restart() {
    let (svc, svc_addr) = counting_listener();
    let checks = hourly(&svc_addr);
    let (tx, mut rx) = nuvol_agent::chan::Channels::default().mpsc("check-results", 16);
    let mut runner = Runner::new(tx);
    runner.set("svc/1", checks.clone());
    let first = next(&mut rx).await;
    assert_eq!(
        first.state.status,
        Health::Passing,
        "{}",
        first.state.output
    );
    let generation = runner.generation("svc/1").expect("svc/1 runs");
    assert_eq!(first.generation, generation);
    assert_eq!(accepted(&svc), 1, "the first run");

    for _ in 0..5 {
        runner.set("svc/1", checks.clone());
    }
    assert_eq!(runner.checks("svc/1"), Some(checks.as_slice()));
    assert_eq!(
        runner.generation("svc/1"),
        Some(generation),
        "an identical list must not restart the checks"
    );
    // A restart would run the check at once (the first step of a check's
    // task is its connect). The probe's task is spawned after any task the
    // five calls spawned, so once the probe has connected and reported, a
    // restarted svc/1 check would have connected as well.
    let (probe, probe_addr) = counting_listener();
    runner.set("probe/1", hourly(&probe_addr));
    let u = next(&mut rx).await;
    assert_eq!(
        u.service, "probe/1",
        "svc/1 ran again (generation {}): it was restarted",
        u.generation
    );
    assert_eq!(accepted(&probe), 1);
    assert_eq!(accepted(&svc), 0, "svc/1 ran again: it was restarted");

    // A changed list does restart, and its first run comes at once.
    let mut changed = checks.clone();
    changed[0].timeout = Duration::from_secs(4);
    runner.set("svc/1", changed);
    let restarted = runner.generation("svc/1").expect("svc/1 runs");
    assert_ne!(restarted, generation);
    let u = next(&mut rx).await;
    assert_eq!(
        (u.service.as_str(), u.generation),
        ("svc/1", restarted),
        "{u:?}"
    );
    assert_eq!(u.state.status, Health::Passing, "{}", u.state.output);
    assert_eq!(accepted(&svc), 1, "the restarted check's first run");
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
}

#[tokio::test]
async fn remove_clear_and_drop_stop_updates() {
    let (_l, addr) = listener().await;
    let check = vec![every_second(CheckKind::Tcp { addr })];
    let (tx, mut rx) = nuvol_agent::chan::Channels::default().mpsc("check-results", 16);
    let mut runner = Runner::new(tx);

    runner.set("a/1", check.clone());
    runner.set("b/2", check.clone());
    let mut got = [false; 2];
    while !got.iter().all(|&g| g) {
        let u = next(&mut rx).await;
        got[usize::from(u.service == "b/2")] = true;
    }

    runner.remove("a/1");
    runner.remove("nothing/0");
    assert!(runner.checks("a/1").is_none());
    tokio::time::sleep(Duration::from_millis(100)).await;
    while rx.try_recv().is_ok() {}
    // b/2 keeps reporting (interval 1s + jitter), a/1 never again.
    let mut b = 0;
    while b < 2 {
        let u = next(&mut rx).await;
        assert_eq!(u.service, "b/2");
        b += 1;
    }

    runner.clear();
    assert_eq!(runner.services().count(), 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    while rx.try_recv().is_ok() {}
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

    // Dropping the runner ends every task, so the channel closes.
    runner.set("c/3", check);
    drop(runner);
    let closed = tokio::time::timeout(PATIENCE, async { while rx.recv().await.is_some() {} }).await;
    assert!(
        closed.is_ok(),
        "channel still open after the runner was dropped"
    );
}

#[tokio::test]
async fn empty_list_removes() {
    let (_l, addr) = listener().await;
    let (tx, mut rx) = nuvol_agent::chan::Channels::default().mpsc("check-results", 16);
    let mut runner = Runner::new(tx);
    runner.set("a/1", vec![every_second(CheckKind::Tcp { addr })]);
    next(&mut rx).await;
    runner.set("a/1", vec![]);
    assert!(runner.checks("a/1").is_none());
}

#[tokio::test]
async fn script_checks_can_be_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let (tx, mut rx) = nuvol_agent::chan::Channels::default().mpsc("check-results", 16);
    let mut r = Runner::new(tx);
    r.allow_scripts(false);
    r.set(
        "svc/1",
        vec![every_second(CheckKind::Script {
            command: format!("touch {}", marker.display()),
        })],
    );
    let u = next(&mut rx).await;
    assert_eq!(u.state.status, Health::Critical);
    assert_eq!(
        u.state.output,
        "script checks are disabled ([checks] scripts = false)"
    );
    assert!(!marker.exists(), "the script ran");
}
