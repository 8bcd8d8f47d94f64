//! A lab for Docker Swarm tests: `n` network namespaces on one bridge of
//! the host (10.99.X.0/24, the host at .1, node k at .(10+k)), each with a
//! private dockerd ([`Dockerd::start_in`], its own docker0 and iptables
//! rules inside its namespace). The host's Docker sets FORWARD to DROP with
//! br_netfilter on, so the bridge gets ACCEPT rules; everything (daemons,
//! processes left in the namespaces, namespaces, bridge, rules) goes on
//! drop. Needs root, `ip`, `iptables`, `nsenter`, `dockerd`.

use crate::docker::Dockerd;
use crate::netns::run;

pub struct SwarmLab {
    pub bridge: String,
    pub namespaces: Vec<String>,
    pub ips: Vec<String>,
    /// One daemon per namespace (`None` once killed).
    pub daemons: Vec<Option<Dockerd>>,
    rules: Vec<Vec<String>>,
}

impl SwarmLab {
    /// `n` namespaces with a dockerd each, `image` (of the host's daemon)
    /// loaded into every one.
    pub fn start(n: usize, image: &str) -> Result<SwarmLab, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("a Swarm lab needs root".into());
        }
        for (cmd, pkg) in [
            ("iptables", "iptables"),
            ("nsenter", "util-linux"),
            ("ip", "iproute2"),
        ] {
            if run(&["sh", "-c", &format!("command -v {cmd}")]).is_err() {
                return Err(format!("`{cmd}` is missing (install {pkg})"));
            }
        }
        run(&["dockerd", "--version"]).map_err(|e| format!("no dockerd: {e}"))?;
        let pid = std::process::id();
        let net = 100 + pid % 150;
        let bridge = format!("nvsw{}", pid % 100_000);
        let mut lab = SwarmLab {
            bridge: bridge.clone(),
            namespaces: Vec::new(),
            ips: Vec::new(),
            daemons: Vec::new(),
            rules: Vec::new(),
        };
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("10.99.{net}.1/24"),
            "dev",
            &bridge,
        ])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        for dir in ["-i", "-o"] {
            let rule: Vec<String> = ["FORWARD", dir, &bridge, "-j", "ACCEPT"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            let mut args = vec!["iptables", "-I"];
            args.extend(rule.iter().map(String::as_str));
            run(&args)?;
            lab.rules.push(rule);
        }
        for k in 0..n {
            let ns = format!("nvsw{pid}n{k}");
            let ip = format!("10.99.{net}.{}", 11 + k);
            let host_if = format!("nvsw{}h{k}", pid % 100_000);
            run(&["ip", "netns", "add", &ns])?;
            lab.namespaces.push(ns.clone());
            run(&[
                "ip", "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            run(&["ip", "link", "set", &host_if, "master", &bridge, "up"])?;
            let inns = |args: &[&str]| {
                let mut v = vec!["ip", "-n", ns.as_str()];
                v.extend_from_slice(args);
                run(&v)
            };
            inns(&["link", "set", "lo", "up"])?;
            inns(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            inns(&["link", "set", "eth0", "up"])?;
            inns(&["route", "add", "default", "via", &format!("10.99.{net}.1")])?;
            lab.ips.push(ip);
        }
        for ns in lab.namespaces.clone() {
            let d = Dockerd::start_in(&ns, &[])?;
            d.load_image(image)?;
            lab.daemons.push(Some(d));
        }
        Ok(lab)
    }

    /// The daemon of node `k` (panics once killed).
    pub fn docker(&self, k: usize) -> &Dockerd {
        self.daemons[k].as_ref().expect("the node was killed")
    }

    /// Cut node `k` off from the other nodes (not from the host): its
    /// namespace drops every packet from or to their addresses. Undone by
    /// [`SwarmLab::heal`].
    pub fn cut(&self, k: usize) -> Result<(), String> {
        self.cut_rules(k, "-I")
    }

    /// Undo [`SwarmLab::cut`].
    pub fn heal(&self, k: usize) -> Result<(), String> {
        self.cut_rules(k, "-D")
    }

    fn cut_rules(&self, k: usize, op: &str) -> Result<(), String> {
        let ns = &self.namespaces[k];
        for (j, ip) in self.ips.iter().enumerate() {
            if j == k {
                continue;
            }
            for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                run(&[
                    "ip", "netns", "exec", ns, "iptables", op, chain, dir, ip, "-j", "DROP",
                ])?;
            }
        }
        Ok(())
    }

    /// Kill everything in node `k`'s namespace (SIGKILL): its agent, its
    /// dockerd, containerd, the containers, as a node that lost power.
    pub fn kill_node(&mut self, k: usize) {
        // Its containers' processes are in namespaces of their own (not
        // listed by `ip netns pids`) and outlive their shims: first.
        if let Some(d) = self.daemons[k].as_ref() {
            let ids = d.cli(&["ps", "-q"]).unwrap_or_default();
            for id in ids.split_whitespace() {
                if let Ok(pid) = d.cli(&["inspect", "--format", "{{.State.Pid}}", id]) {
                    if pid.trim() != "0" {
                        let _ = run(&["kill", "-9", pid.trim()]);
                    }
                }
            }
        }
        let pids = run(&["ip", "netns", "pids", &self.namespaces[k]]).unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = run(&["kill", "-9", pid]);
        }
        if let Some(mut d) = self.daemons[k].take() {
            d.kill();
        }
    }
}

impl SwarmLab {
    /// Take node `k`'s link to the bridge down (its host side): with
    /// [`SwarmLab::kill_node`], a node that lost power. Killing the
    /// namespace's processes alone leaves its containers' processes (in
    /// their own namespaces, reparented when their shim dies) and its
    /// addresses answering.
    pub fn cut_link(&self, k: usize) {
        let host_if = format!("nvsw{}h{k}", std::process::id() % 100_000);
        if let Err(e) = run(&["ip", "link", "set", &host_if, "down"]) {
            eprintln!("cut_link: {e}");
        }
    }
}

impl Drop for SwarmLab {
    fn drop(&mut self) {
        for d in self.daemons.iter_mut() {
            if let Some(d) = d.as_ref() {
                // Leave first: a daemon killed mid-swarm keeps nothing on
                // the host, but its services' containers are removed.
                let _ = d.cli(&["swarm", "leave", "--force"]);
            }
        }
        self.daemons.clear();
        for ns in &self.namespaces {
            let pids = run(&["ip", "netns", "pids", ns]).unwrap_or_default();
            for pid in pids.split_whitespace() {
                let _ = run(&["kill", "-9", pid]);
            }
            if let Err(e) = run(&["ip", "netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
        for rule in &self.rules {
            let mut args = vec!["iptables", "-D"];
            args.extend(rule.iter().map(String::as_str));
            if let Err(e) = run(&args) {
                eprintln!("cleanup: {e}");
            }
        }
        for k in 0..self.namespaces.len() {
            // Gone with its namespace, unless something still holds it.
            let _ = run(&[
                "ip",
                "link",
                "del",
                &format!("nvsw{}h{k}", std::process::id() % 100_000),
            ]);
        }
        if let Err(e) = run(&["ip", "link", "del", &self.bridge]) {
            eprintln!("cleanup: {e}");
        }
    }
}
