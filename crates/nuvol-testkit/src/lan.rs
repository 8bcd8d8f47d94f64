//! A LAN of network namespaces for lab tests: a "switch" namespace holding
//! a bridge, and hosts (one namespace each) with an `eth0` plugged into
//! it; programs run inside the hosts with their output in a file.
//!
//! Everything lives in namespaces named after a prefix the test makes
//! unique (test and pid): nothing is added to the host's own network, so
//! the host's firewall (Docker's FORWARD DROP, bridge netfilter) does not
//! see the lab's traffic and nothing is left behind there. [`Lan`]'s drop
//! deletes the namespaces (and with them the veth pairs, the bridge and
//! any nft table set up inside); [`Daemon`]'s drop kills its program.
//!
//! Needs root and iproute2 (see [`crate::netns::require_system`]).

use crate::netns::run;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A switch namespace with bridge `br0`, and hosts each with `eth0` on it.
pub struct Lan {
    prefix: String,
    hosts: Vec<String>,
}

impl Lan {
    /// The switch namespace `<prefix>sw` with its bridge, up.
    pub fn new(prefix: &str) -> Result<Lan, String> {
        let lan = Lan {
            prefix: prefix.to_owned(),
            hosts: Vec::new(),
        };
        let sw = lan.sw();
        let _ = run(&["ip", "netns", "del", &sw]);
        run(&["ip", "netns", "add", &sw])?;
        run(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &sw, "link", "set", "br0", "up"])?;
        Ok(lan)
    }

    /// The switch's namespace.
    pub fn sw(&self) -> String {
        format!("{}sw", self.prefix)
    }

    /// A host's namespace.
    pub fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    /// A host's bridge port (in the switch namespace).
    pub fn port(host: &str) -> String {
        format!("p{host}")
    }

    /// A new host: namespace `<prefix><host>`, `eth0` with `addr/len` on
    /// the bridge, `lo` up, unprivileged ICMP allowed. Returns the
    /// namespace's name.
    pub fn add_host(&mut self, host: &str, addr: Ipv4Addr, len: u8) -> Result<String, String> {
        let port = Lan::port(host);
        if port.len() > 15 {
            return Err(format!("host name {host:?} too long for an interface name"));
        }
        let ns = self.ns(host);
        let sw = self.sw();
        let _ = run(&["ip", "netns", "del", &ns]);
        run(&["ip", "netns", "add", &ns])?;
        self.hosts.push(host.to_owned());
        let cidr = format!("{addr}/{len}");
        run(&[
            "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
            "netns", &sw,
        ])?;
        run(&["ip", "-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
        run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        run(&["ip", "-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ping_group_range=0 2147483647",
        ])?;
        Ok(ns)
    }

    /// Run a command inside a host.
    pub fn exec(&self, host: &str, cmd: &[&str]) -> Result<String, String> {
        let ns = self.ns(host);
        let mut v = vec!["ip", "netns", "exec", ns.as_str()];
        v.extend_from_slice(cmd);
        run(&v)
    }

    /// Take a host's port off the bridge (the host keeps its link: a cut
    /// further away), or put it back.
    pub fn cut(&self, host: &str, cut: bool) -> Result<(), String> {
        let port = Lan::port(host);
        let sw = self.sw();
        if cut {
            run(&["ip", "-n", &sw, "link", "set", &port, "nomaster"])?;
        } else {
            run(&["ip", "-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
        }
        Ok(())
    }

    /// Set a host's bridge port down (its `eth0` loses the carrier, as
    /// when the cable is pulled) or up.
    pub fn link(&self, host: &str, up: bool) -> Result<(), String> {
        let port = Lan::port(host);
        let sw = self.sw();
        run(&[
            "ip",
            "-n",
            &sw,
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ])
        .map(drop)
    }

    /// An nft ruleset (`nft -f -` text) loaded inside a host.
    pub fn nft(&self, host: &str, ruleset: &str) -> Result<(), String> {
        let ns = self.ns(host);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft in {ns}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(ruleset.as_bytes())
                .map_err(|e| format!("nft in {ns}: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("nft in {ns}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft in {ns}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The hosts added so far.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for h in &self.hosts {
            if let Err(e) = run(&["ip", "netns", "del", &self.ns(h)]) {
                eprintln!("cleanup: {e}");
            }
        }
        if let Err(e) = run(&["ip", "netns", "del", &self.sw()]) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// A program in a namespace, its output in a file, killed on drop.
///
/// Spawned through `ip netns exec`, which execs the program: the child's
/// pid is the program's, so signals reach it.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    pub fn spawn(
        ns: &str,
        cmd: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Result<Daemon, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .spawn()
            .map_err(|e| format!("spawning {cmd:?} in {ns}: {e}"))?;
        Ok(Daemon {
            child: Some(child),
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines it printed.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Send a signal (`KILL`, `STOP`, `CONT`, `TERM`).
    pub fn signal(&self, sig: &str) -> Result<(), String> {
        match self.pid() {
            Some(pid) => run(&["kill", &format!("-{sig}"), &pid.to_string()]).map(drop),
            None => Err("not running".into()),
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A stopped program dies of SIGKILL too; CONT anyway so nothing
        // is left half-way.
        let _ = self.signal("CONT");
        self.kill();
    }
}
