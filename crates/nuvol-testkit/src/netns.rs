//! Network namespaces for tests that need hosts of their own (mDNS on a
//! LAN, multicast): a veth pair between two namespaces, programs run inside
//! them, and the skip-or-fail rule for missing system parts.
//!
//! Needs root and `ip` (iproute2). [`require_system`] turns a missing part
//! into a skip, or into a failure when `NUVOL_REQUIRE_SYSTEM=1` (the README's
//! test command sets it).

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The variable that turns a missing system part from a skip into a failure.
pub const REQUIRE_SYSTEM_ENV: &str = "NUVOL_REQUIRE_SYSTEM";

/// Generous: mDNS probing and announcing take a second or two.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Run a command; its stdout, or an error with its stderr.
pub fn run(cmd: &[&str]) -> Result<String, String> {
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

/// Root and `ip`, plus every `python3` module in `py_modules`: `None` when
/// all are there, else the reason.
pub fn missing(py_modules: &[&str]) -> Option<String> {
    match run(&["id", "-u"]) {
        Ok(uid) if uid.trim() == "0" => {}
        Ok(_) => return Some("not running as root (needed for network namespaces)".into()),
        Err(e) => return Some(format!("cannot tell the user id: {e}")),
    }
    if let Err(e) = run(&["ip", "-V"]) {
        return Some(format!("`ip` (iproute2) is missing: {e}"));
    }
    for m in py_modules {
        if let Err(e) = run(&["python3", "-c", &format!("import {m}")]) {
            return Some(format!(
                "python3 module {m} is missing (pip install {m}): {e}"
            ));
        }
    }
    None
}

/// True = run the test; false = skip (printed), or a panic under
/// `NUVOL_REQUIRE_SYSTEM=1`.
pub fn require_system(test: &str, py_modules: &[&str]) -> bool {
    match missing(py_modules) {
        None => true,
        Some(r) => skip_or_fail(test, &r),
    }
}

/// Returns false (skip) or panics when NUVOL_REQUIRE_SYSTEM=1.
pub fn skip_or_fail(test: &str, reason: &str) -> bool {
    if std::env::var(REQUIRE_SYSTEM_ENV).as_deref() == Ok("1") {
        panic!("{test}: {reason} (NUVOL_REQUIRE_SYSTEM=1)");
    }
    eprintln!("SKIP {test}: {reason}");
    false
}

/// Two namespaces joined by a veth pair; deleted on drop.
pub struct NetnsPair {
    /// Namespace names.
    pub a: String,
    pub b: String,
    /// The veth end in `a`.
    pub if_a: String,
    pub addr_a: String,
    pub addr_b: String,
}

impl NetnsPair {
    /// Namespaces `<prefix><pid><n>a|b` with `addr_a`/`addr_b` (a /24) on
    /// the veth ends, links up, multicast routed over the veth.
    pub fn new(prefix: &str, addr_a: &str, addr_b: &str) -> Result<NetnsPair, String> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{}{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let pair = NetnsPair {
            a: format!("{prefix}{tag}a"),
            b: format!("{prefix}{tag}b"),
            if_a: format!("nv{tag}a"),
            addr_a: addr_a.to_owned(),
            addr_b: addr_b.to_owned(),
        };
        let if_b = format!("nv{tag}b");
        assert!(pair.if_a.len() <= 15, "interface name too long");
        run(&["ip", "netns", "add", &pair.a])?;
        run(&["ip", "netns", "add", &pair.b])?;
        run(&[
            "ip", "link", "add", &pair.if_a, "netns", &pair.a, "type", "veth", "peer", "name",
            &if_b, "netns", &pair.b,
        ])?;
        for (ns, ifname, addr) in [(&pair.a, &pair.if_a, addr_a), (&pair.b, &if_b, addr_b)] {
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
pub struct Proc {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    pub fn spawn(name: &'static str, ns: &str, cmd: &[&str]) -> Proc {
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

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush child stdin");
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Wait (up to DEADLINE) for a line matching `pred`, looking at the
    /// lines already printed first (events may come in any order).
    pub fn wait_line(&mut self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        self.wait_new_line(what, pred)
    }

    /// Wait (up to DEADLINE) for a new line matching `pred`.
    pub fn wait_new_line(&mut self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
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
    pub fn wait_json(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let line = self.wait_line(what, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v))
        });
        serde_json::from_str(&line).expect("matched JSON")
    }

    /// Everything printed so far, plus what is pending now.
    pub fn drain(&mut self) -> &[String] {
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
