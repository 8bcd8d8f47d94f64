//! Interop with an independent mDNS implementation, python-zeroconf, over a
//! veth pair between two network namespaces: nuvol's `nuvol-mdns-tool` runs
//! in namespace A (10.77.0.1), a python-zeroconf script in namespace B
//! (10.77.0.2).
//!
//! Needs root, `ip` (iproute2) and python3 with the `zeroconf` package
//! (`pip install zeroconf`). Without them the tests print a skip message and
//! pass, unless `NUVOL_REQUIRE_SYSTEM=1` is set, which makes them fail.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TOOL: &str = env!("CARGO_BIN_EXE_nuvol-mdns-tool");
const HELPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/zc_helper.py");
const ADDR_A: &str = "10.77.0.1";
const ADDR_B: &str = "10.77.0.2";
/// Generous: probing and announcing take a second or two.
const DEADLINE: Duration = Duration::from_secs(30);

fn run(cmd: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why the system can't run these tests, if it can't.
fn missing_requirement() -> Option<String> {
    match run(&["id", "-u"]) {
        Ok(uid) if uid.trim() == "0" => {}
        Ok(_) => return Some("not running as root (needed for network namespaces)".into()),
        Err(e) => return Some(format!("cannot tell the user id: {e}")),
    }
    if let Err(e) = run(&["ip", "-V"]) {
        return Some(format!("`ip` (iproute2) is missing: {e}"));
    }
    if let Err(e) = run(&["python3", "-c", "import zeroconf"]) {
        return Some(format!(
            "python3 with the zeroconf package is missing (pip install zeroconf): {e}"
        ));
    }
    None
}

/// True = run the test; false = skip (or panic under NUVOL_REQUIRE_SYSTEM=1).
fn check_system(test: &str) -> bool {
    let reason = missing_requirement();
    match reason {
        None => true,
        Some(r) => skip_or_fail(test, &r),
    }
}

/// Returns false (skip) or panics when NUVOL_REQUIRE_SYSTEM=1.
fn skip_or_fail(test: &str, reason: &str) -> bool {
    if std::env::var("NUVOL_REQUIRE_SYSTEM").as_deref() == Ok("1") {
        panic!("{test}: {reason} (NUVOL_REQUIRE_SYSTEM=1)");
    }
    eprintln!("SKIP {test}: {reason}");
    false
}

/// Two namespaces joined by a veth pair; deleted on drop.
struct NetnsPair {
    a: String,
    b: String,
    if_a: String,
}

impl NetnsPair {
    fn new() -> Result<NetnsPair, String> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{}{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let pair = NetnsPair {
            a: format!("nvmdns{tag}a"),
            b: format!("nvmdns{tag}b"),
            if_a: format!("nvm{tag}a"),
        };
        let if_b = format!("nvm{tag}b");
        assert!(pair.if_a.len() <= 15, "interface name too long");
        run(&["ip", "netns", "add", &pair.a])?;
        run(&["ip", "netns", "add", &pair.b])?;
        run(&[
            "ip", "link", "add", &pair.if_a, "netns", &pair.a, "type", "veth", "peer", "name",
            &if_b, "netns", &pair.b,
        ])?;
        for (ns, ifname, addr) in [(&pair.a, &pair.if_a, ADDR_A), (&pair.b, &if_b, ADDR_B)] {
            let ip = |args: &[&str]| {
                let mut v = vec!["ip", "-n", ns.as_str()];
                v.extend_from_slice(args);
                run(&v)
            };
            ip(&["link", "set", "lo", "up"])?;
            ip(&["addr", "add", &format!("{addr}/24"), "dev", ifname])?;
            ip(&["link", "set", ifname, "multicast", "on", "up"])?;
            ip(&["route", "add", "224.0.0.0/4", "dev", ifname])?;
        }
        Ok(pair)
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and the
        // pair with it.
        for ns in [&self.a, &self.b] {
            if let Err(e) = run(&["ip", "netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// A child process whose stdout lines arrive on a channel; killed on drop.
struct Proc {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(name: &'static str, ns: &str, cmd: &[&str]) -> Proc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            name,
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush child stdin");
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Wait (up to DEADLINE) for a line matching `pred`, looking at the
    /// lines already printed first (events may come in any order).
    fn wait_line(&mut self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        self.wait_new_line(what, pred)
    }

    /// Wait (up to DEADLINE) for a new line matching `pred`.
    fn wait_new_line(&mut self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    eprintln!("[{}] {line}", self.name);
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "{}: no {what} within {DEADLINE:?}; output so far:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Wait for a JSON line matching `pred`.
    fn wait_json(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let line = self.wait_line(what, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v))
        });
        serde_json::from_str(&line).expect("matched JSON")
    }

    /// Everything printed so far, plus what is pending now.
    fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            eprintln!("[{}] {line}", self.name);
            self.seen.push(line);
        }
        &self.seen
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        // Give it a moment to exit by itself (goodbyes), then kill it.
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setup(test: &str) -> Option<NetnsPair> {
    if !check_system(test) {
        return None;
    }
    match NetnsPair::new() {
        Ok(p) => Some(p),
        Err(e) => {
            skip_or_fail(test, &format!("cannot create network namespaces: {e}"));
            None
        }
    }
}

fn zc_browser(ns: &NetnsPair, types: &[&str]) -> Proc {
    let mut cmd = vec!["python3", "-u", HELPER, "browse", ADDR_B];
    cmd.extend_from_slice(types);
    let mut p = Proc::spawn("zeroconf", &ns.b, &cmd);
    p.wait_json("ready", |v| v["event"] == "ready");
    p
}

fn tool(ns: &NetnsPair, extra: &[&str]) -> Proc {
    let mut cmd = vec![TOOL, "--hostname", "nodea", "--interface", &ns.if_a];
    cmd.extend_from_slice(extra);
    let mut p = Proc::spawn("nuvol", &ns.a, &cmd);
    p.wait_line("ready", |l| l == "ready");
    p
}

fn is_added(v: &Value, name: &str) -> bool {
    (v["event"] == "added" || v["event"] == "updated") && v["name"] == name
}

#[test]
fn announced_services_are_seen_by_python_zeroconf() {
    let Some(ns) = setup("announced_services_are_seen_by_python_zeroconf") else {
        return;
    };
    let mut zc = zc_browser(&ns, &["_http._tcp.local.", "_ssh._tcp.local."]);
    // No --addr: the interface's addresses are announced.
    let mut nuvol = tool(&ns, &[]);
    nuvol.send("service http 8080 path=/x&ver=1.2 My web server");
    nuvol.send("service ssh 22 - Shell_access");
    nuvol.send("apply");
    nuvol.wait_new_line("applied", |l| l == "applied");

    let web = zc.wait_json("the http service", |v| {
        is_added(v, "My web server._http._tcp.local.")
    });
    assert_eq!(web["port"], 8080);
    assert_eq!(web["server"], "nodea.local.");
    assert_eq!(web["txt"]["path"], "/x");
    assert_eq!(web["txt"]["ver"], "1.2");
    assert!(
        web["addrs"].as_array().unwrap().iter().any(|a| a == ADDR_A),
        "{web}"
    );

    let ssh = zc.wait_json("the ssh service", |v| {
        is_added(v, "Shell_access._ssh._tcp.local.")
    });
    assert_eq!(ssh["port"], 22);
    assert_eq!(ssh["txt"], serde_json::json!({}));
    assert!(ssh["addrs"].as_array().unwrap().iter().any(|a| a == ADDR_A));
}

#[test]
fn unpublished_service_is_removed_in_python_zeroconf() {
    let Some(ns) = setup("unpublished_service_is_removed_in_python_zeroconf") else {
        return;
    };
    let mut zc = zc_browser(&ns, &["_http._tcp.local.", "_ssh._tcp.local."]);
    let mut nuvol = tool(&ns, &["--addr", ADDR_A]);
    nuvol.send("service http 80 a=1 Web");
    nuvol.send("service ssh 2222 b=2 Shell");
    nuvol.send("apply");
    nuvol.wait_new_line("applied", |l| l == "applied");
    let web = zc.wait_json("the http service", |v| is_added(v, "Web._http._tcp.local."));
    assert_eq!(web["addrs"], serde_json::json!([ADDR_A]));
    zc.wait_json("the ssh service", |v| is_added(v, "Shell._ssh._tcp.local."));

    // Keep http only, with a changed TXT.
    nuvol.send("clear");
    nuvol.send("service http 80 a=2 Web");
    nuvol.send("apply");
    nuvol.wait_new_line("applied", |l| l == "applied");
    zc.wait_json("the ssh service's removal", |v| {
        v["event"] == "removed" && v["name"] == "Shell._ssh._tcp.local."
    });
    zc.wait_json("the http service's new TXT", |v| {
        is_added(v, "Web._http._tcp.local.") && v["txt"]["a"] == "2"
    });
    // The http service kept its name: it was never removed nor renamed.
    let seen = zc.drain();
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("removed") && l.contains("_http._tcp")),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|l| l.contains("Web (2)")), "{seen:?}");
}

#[test]
fn python_zeroconf_service_is_imported() {
    let Some(ns) = setup("python_zeroconf_service_is_imported") else {
        return;
    };
    let mut nuvol = tool(&ns, &["--import"]);
    // Our own announcement must not be imported.
    nuvol.send("service http 8000 own=1 Own web");
    nuvol.send("apply");
    nuvol.wait_new_line("applied", |l| l == "applied");

    let mut zc = Proc::spawn(
        "zeroconf",
        &ns.b,
        &[
            "python3",
            "-u",
            HELPER,
            "register",
            ADDR_B,
            "_http._tcp.local.",
            "Py Web",
            "8123",
            "pyhost.local.",
            "a=1",
            "b=two words",
        ],
    );
    zc.wait_json("ready", |v| v["event"] == "ready");

    let found = nuvol.wait_json("the imported service", |v| {
        v["event"] == "found" && v["instance"] == "Py Web"
    });
    assert_eq!(found["type"], "http");
    assert_eq!(found["host"], "pyhost.local");
    assert_eq!(found["port"], 8123);
    assert_eq!(found["addrs"], serde_json::json!([ADDR_B]));
    assert_eq!(found["txt"]["a"], "1");
    assert_eq!(found["txt"]["b"], "two words");

    // Unregistering sends goodbyes: the import reports it lost.
    zc.close_stdin();
    nuvol.wait_json("the lost event", |v| {
        v["event"] == "lost" && v["type"] == "http" && v["instance"] == "Py Web"
    });
    let own = nuvol
        .drain()
        .iter()
        .filter(|l| l.contains("Own web"))
        .cloned()
        .collect::<Vec<_>>();
    assert!(own.is_empty(), "own service imported: {own:?}");
}
