//! The `nuvol` client subcommands against a real `serf agent`, compared with
//! serf's own CLI: JSON parsed and compared (volatile fields ignored), text
//! compared where serf's output is deterministic, errors checked to be one
//! line on stderr with a non-zero exit and no change on the agent.

use serde_json::Value as Json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const K1: &str = "T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s=";
const K2: &str = "HvY8ubRZMgafUOWvrOadwOckVa1wN3QWAo46FVKbVN8=";

use nuvol_testkit::require_serf as serf_available;

static NEXT: AtomicU32 = AtomicU32::new(1);

/// 127.253.x.y with the gossip and RPC ports free.
fn fresh_ip() -> IpAddr {
    let pid = std::process::id();
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let b = ((pid % 125) * 2 + (n / 250) % 2) as u8;
        let ip = IpAddr::V4(Ipv4Addr::new(127, 253, b, (n % 250) as u8 + 2));
        let free = |p| {
            let sa = SocketAddr::new(ip, p);
            TcpListener::bind(sa).is_ok() && UdpSocket::bind(sa).is_ok()
        };
        if free(7946) && free(7373) {
            return ip;
        }
    }
}

struct Agent {
    bind: SocketAddr,
    rpc: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Agent {
    fn start(name: &str, extra: &[&str], config: Option<&str>) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let ip = fresh_ip();
        let bind = SocketAddr::new(ip, 7946);
        let rpc = SocketAddr::new(ip, 7373);
        let log = std::fs::File::create(dir.path().join("log")).expect("log");
        let mut cmd = Command::new("serf");
        cmd.arg("agent")
            .arg(format!("-node={name}"))
            .arg(format!("-bind={bind}"))
            .arg(format!("-rpc-addr={rpc}"))
            .arg("-log-level=debug")
            .args(extra)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null());
        if let Some(c) = config {
            let p = dir.path().join("config.json");
            std::fs::write(&p, c).expect("config");
            cmd.arg(format!("-config-file={}", p.display()));
        }
        let child = cmd.spawn().expect("spawn serf");
        let mut a = Agent {
            bind,
            rpc: rpc.to_string(),
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(a.running(), "serf exited:\n{}", a.log());
            if TcpStream::connect_timeout(&rpc, Duration::from_millis(200)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "serf RPC never opened");
            std::thread::sleep(Duration::from_millis(50));
        }
        a
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn wait_exit(&mut self, t: Duration) -> bool {
        let deadline = Instant::now() + t;
        while Instant::now() < deadline {
            if !self.running() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// serf's CLI (flags after the subcommand; Go stops parsing flags at the
    /// first positional argument).
    fn serf(&self, args: &[&str]) -> Output {
        let (sub, rest) = args.split_first().expect("subcommand");
        Command::new("serf")
            .arg(sub)
            .arg(format!("-rpc-addr={}", self.rpc))
            .args(rest)
            .env_remove("SERF_RPC_AUTH")
            .output()
            .expect("run serf")
    }

    fn nuvol(&self, args: &[&str]) -> Output {
        nuvol_at(&self.rpc, args)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn nuvol_at(rpc: &str, args: &[&str]) -> Output {
    let (sub, rest) = args.split_first().expect("subcommand");
    Command::new(NUVOL)
        .arg(sub)
        .arg(format!("--rpc-addr={rpc}"))
        .args(rest)
        .env_remove("NUVOL_RPC_AUTH")
        .env_remove("NUVOL_RPC_ADDR")
        .output()
        .expect("run nuvol")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed ({:?}): stdout {} stderr {}",
        o.status,
        out(o),
        err(o)
    );
    out(o)
}

/// Failed with exit code 1 and exactly one line on stderr (containing `what`).
#[track_caller]
fn one_line_error(o: &Output, what: &str) {
    assert!(!o.status.success(), "should fail: {}", out(o));
    let e = err(o);
    assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e:?}");
    assert!(e.contains(what), "{e:?} lacks {what:?}");
}

fn json(s: &str) -> Json {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Remove `path` (a/b) from a JSON object.
fn drop_field(j: &mut Json, path: &str) {
    let mut cur = j;
    let parts: Vec<&str> = path.split('/').collect();
    for p in &parts[..parts.len() - 1] {
        match cur.get_mut(*p) {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(o) = cur.as_object_mut() {
        o.remove(parts[parts.len() - 1]);
    }
}

fn wait_for(what: &str, t: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + t;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn members_like_serf() {
    if !serf_available() {
        return;
    }
    let a = Agent::start(
        "cm1",
        &[
            "-tag",
            "role=web",
            "-tag",
            "html=<b>&amp;",
            "-tag",
            "dc=bcn",
        ],
        None,
    );
    // JSON: byte for byte (Go sorts map keys and escapes <, >, &).
    let theirs = ok(&a.serf(&["members", "-format=json"]));
    let mine = ok(&a.nuvol(&["members", "--format=json"]));
    assert_eq!(mine, theirs);
    assert_eq!(json(&mine)["members"][0]["tags"]["html"], "<b>&amp;");
    // Filters, including an empty result (`"members": null` in Go).
    for (s, n) in [
        (
            vec!["-status=alive", "-name=cm.", "-tag=role=w.b"],
            vec!["--status=alive", "--name=cm.", "--tag=role=w.b"],
        ),
        (vec!["-status=failed"], vec!["--status=failed"]),
        (vec!["-tag=role=db"], vec!["--tag=role=db"]),
        (vec!["-name=cm"], vec!["--name=cm"]),
    ] {
        let mut sa = vec!["members", "-format=json"];
        sa.extend(s);
        let mut na = vec!["members", "--format=json"];
        na.extend(n);
        assert_eq!(json(&ok(&a.nuvol(&na))), json(&ok(&a.serf(&sa))), "{na:?}");
    }
    // Text: same columns (Go's tag order is random, ours sorted).
    let theirs = ok(&a.serf(&["members", "-detailed"]));
    let mine = ok(&a.nuvol(&["members", "--detailed"]));
    let cols = |s: &str| -> Vec<String> {
        s.split("  ")
            .map(|c| {
                let mut t: Vec<&str> = c.trim().split(',').collect();
                t.sort();
                t.join(",")
            })
            .collect()
    };
    assert_eq!(cols(&mine), cols(&theirs));
    assert_eq!(
        ok(&a.nuvol(&["members", "--status=failed"])),
        ok(&a.serf(&["members", "-status=failed"]))
    );
    // Bad filters: one line, nothing sent.
    one_line_error(&a.nuvol(&["members", "--name=cm["]), "regular expression");
    one_line_error(&a.nuvol(&["members", "--tag=role"]), "Invalid tag");
}

#[test]
fn info_like_serf() {
    if !serf_available() {
        return;
    }
    let a = Agent::start("ci1", &["-tag", "role=web"], None);
    let volatile = |mut j: Json| {
        for f in [
            "runtime/goroutines",
            "serf/health_score",
            "serf/coordinate_resets",
        ] {
            drop_field(&mut j, f);
        }
        j
    };
    let theirs = volatile(json(&ok(&a.serf(&["info", "-format=json"]))));
    let mine = volatile(json(&ok(&a.nuvol(&["info", "--format=json"]))));
    assert_eq!(mine, theirs);
    let strip = |s: String| -> String {
        s.lines()
            .filter(|l| !l.contains("goroutines"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip(ok(&a.nuvol(&["info"]))),
        strip(ok(&a.serf(&["info"])))
    );
}

/// `serf query` output to compare with. serf's own agent sometimes streams
/// records with an empty node name after a query's deadline (its query
/// stream keeps reading channels serf has closed; nuvol's client drops such
/// records), which serf's CLI prints as `""` / `''`: take a run without
/// that artefact as the reference.
fn serf_query(a: &Agent, args: &[&str]) -> String {
    let mut out = ok(&a.serf(args));
    for _ in 0..5 {
        if !out.contains("\"\"") && !out.contains("''") {
            break;
        }
        out = ok(&a.serf(args));
    }
    out
}

#[test]
fn query_event_rtt_reachability_like_serf() {
    if !serf_available() {
        return;
    }
    let a = Agent::start("cq1", &["-tag", "role=web"], None);
    for extra in [
        vec![],
        vec!["no-ack"],
        vec!["tag=role=db"],
        vec!["node=cq1"],
    ] {
        let mut sa = vec![
            "query".to_string(),
            "-format=json".into(),
            "-timeout=300ms".into(),
        ];
        let mut na = vec![
            "query".to_string(),
            "--format=json".into(),
            "--timeout=300ms".into(),
        ];
        for e in &extra {
            sa.push(format!("-{e}"));
            na.push(format!("--{e}"));
        }
        for v in [&mut sa, &mut na] {
            v.push("ping".into());
            v.push("payload".into());
        }
        let sa: Vec<&str> = sa.iter().map(String::as_str).collect();
        let na: Vec<&str> = na.iter().map(String::as_str).collect();
        let theirs = serf_query(&a, &sa);
        let mine = ok(&a.nuvol(&na));
        assert_eq!(json(&mine), json(&theirs), "{na:?}");
        assert_eq!(mine, theirs, "byte for byte: {na:?}");
    }
    assert_eq!(
        ok(&a.nuvol(&["query", "--timeout=1s", "ping", "x"])),
        serf_query(&a, &["query", "-timeout=1s", "ping", "x"])
    );
    assert_eq!(
        ok(&a.nuvol(&["query", "--timeout=0.3s", "--no-ack", "ping"])),
        serf_query(&a, &["query", "-timeout=0.3s", "-no-ack", "ping"])
    );
    one_line_error(&a.nuvol(&["query", "--timeout=5x", "ping"]), "5x");
    one_line_error(&a.nuvol(&["query", "--tag=role", "ping"]), "Invalid tag");

    for args in [&["event", "deploy", "v1"][..], &["event", "ping"][..]] {
        assert_eq!(ok(&a.nuvol(args)), ok(&a.serf(args)));
    }
    assert_eq!(
        ok(&a.nuvol(&["event", "--coalesce=false", "deploy", "v1"])),
        ok(&a.serf(&["event", "-coalesce=false", "deploy", "v1"]))
    );
    // Over serf's event size limit: the agent's error.
    let big = "x".repeat(600);
    one_line_error(&a.nuvol(&["event", "deploy", &big]), "limit");

    assert_eq!(ok(&a.nuvol(&["rtt", "cq1"])), ok(&a.serf(&["rtt", "cq1"])));
    assert_eq!(
        ok(&a.nuvol(&["rtt", "cq1", "cq1"])),
        ok(&a.serf(&["rtt", "cq1", "cq1"]))
    );
    let j = json(&ok(&a.nuvol(&["rtt", "--format=json", "cq1"])));
    assert_eq!(j["source"], "cq1");
    assert!(j["rtt_ms"].as_f64().is_some());
    one_line_error(&a.nuvol(&["rtt", "ghost"]), "ghost");

    assert_eq!(
        ok(&a.nuvol(&["reachability"])),
        ok(&a.serf(&["reachability"]))
    );
    let j = json(&ok(&a.nuvol(&["reachability", "--format=json"])));
    assert_eq!(j["success"], true);
    assert_eq!(j["acks"], serde_json::json!(["cq1"]));
}

#[test]
fn tags_like_serf_and_limits() {
    if !serf_available() {
        return;
    }
    let a = Agent::start("ct1", &["-tag", "old=1"], None);
    assert_eq!(
        ok(&a.nuvol(&["tags", "--set", "role=web", "--delete", "old"])),
        ok(&a.serf(&["tags", "-set", "role=db", "-delete", "old"]))
    );
    let tags =
        |a: &Agent| json(&ok(&a.serf(&["members", "-format=json"])))["members"][0]["tags"].clone();
    assert_eq!(tags(&a), serde_json::json!({"role": "db"}));
    ok(&a.nuvol(&["tags", "--set", "role=web", "--set", "x=1"]));
    assert_eq!(tags(&a), serde_json::json!({"role": "web", "x": "1"}));
    let j = json(&ok(&a.nuvol(&["tags", "--format=json", "--delete", "x"])));
    assert_eq!(j["tags"], serde_json::json!({"role": "web"}));
    // Malformed and oversized: one line, tags unchanged.
    one_line_error(&a.nuvol(&["tags", "--set", "novalue"]), "Invalid tag");
    one_line_error(&a.nuvol(&["tags", "--set", "=v"]), "Invalid tag");
    let big = format!("big={}", "x".repeat(600));
    one_line_error(&a.nuvol(&["tags", "--set", &big]), "limit");
    one_line_error(&a.nuvol(&["tags"]), "--set");
    assert_eq!(tags(&a), serde_json::json!({"role": "web"}));
}

#[test]
fn keys_like_serf() {
    if !serf_available() {
        return;
    }
    let a = Agent::start("ck1", &[&format!("-encrypt={K1}")], None);
    // Go lists keys in map order (random); ours are sorted.
    let sorted = |s: String| {
        let mut l: Vec<String> = s.lines().map(str::to_owned).collect();
        l.sort();
        l
    };
    let list = |a: &Agent| ok(&a.serf(&["keys", "-list"]));
    assert_eq!(sorted(ok(&a.nuvol(&["keys", "--list"]))), sorted(list(&a)));
    assert_eq!(
        ok(&a.nuvol(&["keys", "--install", K2])),
        "==> Installing key on all members...\n==> Successfully installed key!\n"
    );
    assert_eq!(sorted(ok(&a.nuvol(&["keys", "--list"]))), sorted(list(&a)));
    assert!(list(&a).contains(K2));
    let j = json(&ok(&a.nuvol(&["keys", "--list", "--format=json"])));
    assert_eq!(j["keys"][K1], 1);
    assert_eq!(j["keys"][K2], 1);
    assert_eq!(j["num_nodes"], 1);
    assert_eq!(
        ok(&a.nuvol(&["keys", "--use", K2])),
        ok(&a.serf(&["keys", "-use", K2]))
    );
    // Removing the primary key fails on every node.
    let o = a.nuvol(&["keys", "--remove", K2]);
    assert!(!o.status.success());
    assert!(err(&o).contains("ck1"), "{}", err(&o));
    assert!(err(&o).contains("Error removing key"), "{}", err(&o));
    // Bad key material: refused locally, keyring unchanged.
    let before = list(&a);
    one_line_error(&a.nuvol(&["keys", "--install", "not-base64!"]), "base64");
    one_line_error(&a.nuvol(&["keys", "--install", "AAAA"]), "16, 24 or 32");
    one_line_error(&a.nuvol(&["keys", "--remove", "%%%"]), "invalid key");
    assert_eq!(sorted(list(&a)), sorted(before));
    assert_eq!(
        ok(&a.nuvol(&["keys", "--remove", K1])),
        ok(&a.serf(&["keys", "-remove", K1]))
    );
    assert!(!list(&a).contains(K1));
}

#[test]
fn keygen_key_is_accepted_by_serf() {
    if !serf_available() {
        return;
    }
    let o = Command::new(NUVOL).arg("keygen").output().expect("keygen");
    let key = ok(&o).trim().to_owned();
    assert_eq!(key.len(), 44);
    let a = Agent::start("ckg1", &[&format!("-encrypt={key}")], None);
    assert!(ok(&a.nuvol(&["keys", "--list"])).contains(&key));
}

#[test]
fn join_force_leave_leave() {
    if !serf_available() {
        return;
    }
    let mut a = Agent::start("cj1", &[], None);
    let mut b = Agent::start("cj2", &[], None);
    let bind = b.bind.to_string();
    let mine = ok(&a.nuvol(&["join", &bind]));
    assert_eq!(mine, "Successfully joined cluster by contacting 1 nodes.\n");
    assert_eq!(ok(&a.serf(&["join", &bind])), mine);
    let j = json(&ok(&a.nuvol(&["join", "--replay", "--format=json", &bind])));
    assert_eq!(j["contacted"], 1);
    one_line_error(&a.nuvol(&["join", "10.0.0.1:notaport"]), "port");
    one_line_error(&a.nuvol(&["join", ""]), "invalid address");
    let status = |a: &Agent, n: &str| -> Option<String> {
        let j = json(&ok(&a.serf(&["members", "-format=json"])));
        j["members"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == n)
            .map(|m| m["status"].as_str().unwrap_or("").to_owned())
    };
    wait_for("cj2 alive", Duration::from_secs(20), || {
        status(&a, "cj2").as_deref() == Some("alive")
    });
    // An unknown node: accepted, as serf does, with a warning.
    let o = a.nuvol(&["force-leave", "ghost"]);
    assert_eq!(ok(&o), "");
    assert!(
        err(&o).contains("\"ghost\" is not known to this agent"),
        "{}",
        err(&o)
    );
    b.kill();
    wait_for("cj2 failed", Duration::from_secs(60), || {
        status(&a, "cj2").as_deref() == Some("failed")
    });
    assert_eq!(ok(&a.nuvol(&["force-leave", "cj2"])), "");
    wait_for("cj2 left", Duration::from_secs(20), || {
        status(&a, "cj2").as_deref() == Some("left")
    });
    ok(&a.nuvol(&["force-leave", "--prune", "cj2"]));
    wait_for("cj2 pruned", Duration::from_secs(20), || {
        status(&a, "cj2").is_none()
    });

    assert_eq!(ok(&a.nuvol(&["leave"])), "Graceful leave complete\n");
    assert!(a.wait_exit(Duration::from_secs(20)), "agent still running");
}

#[test]
fn monitor_streams_logs_and_events() {
    if !serf_available() {
        return;
    }
    let a = Agent::start("cmo1", &[], None);
    let mut child = Command::new(NUVOL)
        .args([
            "monitor",
            "--log-level=debug",
            &format!("--rpc-addr={}", a.rpc),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("monitor");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    ok(&a.nuvol(&["event", "mon-marker", "p<1>"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut log_seen, mut name_seen, mut payload_seen) = (false, false, false);
    let mut lines = Vec::new();
    while !(log_seen && name_seen && payload_seen) && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            log_seen |= l.contains("[DEBUG]") && l.contains("mon-marker");
            // Event fields as serf prints them: Go's %#v, keys sorted.
            name_seen |= l == "\tName: \"mon-marker\"";
            payload_seen |= l == "\tPayload: []byte{0x70, 0x3c, 0x31, 0x3e}";
            lines.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        log_seen && name_seen && payload_seen,
        "monitor output: {lines:#?}"
    );
    assert!(lines.iter().any(|l| l == "Event Info:"));
    one_line_error(
        &a.nuvol(&["monitor", "--log-level=bogus"]),
        "Unknown log level",
    );
}

#[test]
fn rpc_auth_flag_and_env() {
    if !serf_available() {
        return;
    }
    let a = Agent::start("cau1", &[], Some(r#"{"rpc_auth": "s3cret"}"#));
    one_line_error(&a.nuvol(&["members"]), "Authentication required");
    one_line_error(
        &a.nuvol(&["members", "--rpc-auth=wrong"]),
        "Invalid authentication token",
    );
    let mine = ok(&a.nuvol(&["members", "--format=json", "--rpc-auth=s3cret"]));
    let theirs = ok(&a.serf(&["members", "-format=json", "-rpc-auth=s3cret"]));
    assert_eq!(mine, theirs);
    let o = Command::new(NUVOL)
        .args(["members", "--format=json"])
        .env("NUVOL_RPC_ADDR", &a.rpc)
        .env("NUVOL_RPC_AUTH", "s3cret")
        .output()
        .expect("run nuvol");
    assert_eq!(ok(&o), theirs);
}

#[test]
fn unreachable_or_malformed_agent_address() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    drop(l);
    for cmd in [
        &["members"][..],
        &["info"],
        &["leave"],
        &["event", "x"],
        &["keys", "--list"],
        &["rtt", "a"],
        &["monitor"],
        &["reachability"],
        &["query", "q"],
        &["join", "1.2.3.4"],
        &["force-leave", "n"],
        &["tags", "--set", "a=b"],
    ] {
        let o = nuvol_at(&addr, cmd);
        one_line_error(&o, &addr);
        assert!(
            err(&o).contains("connection refused"),
            "{cmd:?}: {}",
            err(&o)
        );
    }
    for bad in ["nohost", "127.0.0.1:notaport", "127.0.0.1:99999"] {
        one_line_error(&nuvol_at(bad, &["members"]), bad);
    }
}
