//! Floating IPs for real: hosts in network namespaces on one bridge (a
//! "switch" namespace), two nuvol agents and Debian's keepalived 2.2.7
//! (`vrrp_version 3`) in the same virtual router, and an observer host
//! running tcpdump (it is also the two-node cluster's tie-breaker
//! gateway). Checked: exactly one holder; gratuitous ARPs on takeover;
//! takeover by keepalived after SIGKILL of the nuvol master; the stale VIP
//! removed when that agent restarts; preemption by the higher priority;
//! keepalived's fast takeover after nuvol's priority-0 advert on a graceful
//! stop; a cut-off node giving the VIP up (no majority, gateway
//! unreachable) and the heal ending with one master and fresh ARPs;
//! malformed, wrongly checksummed and misconfigured adverts counted and
//! never acted on; a VIP on an interface that does not exist failing
//! alone; unicast peers where multicast is dropped; the VIP following a
//! tracked app (a process app stopped and started) and a tracked
//! service (a failing script check), and, with a witness node, a cut-off node
//! giving up as the minority.
//!
//! Needs root, iproute2, keepalived, tcpdump, python3 and nft; skipped
//! without them, failed instead under `NUVOL_REQUIRE_SYSTEM=1`.

use anyhow::{bail, ensure, Context, Result};
use nuvol_testkit::eventually;
use nuvol_testkit::netns::{self, run};
use nuvol_vip::packet::{Advert, MULTICAST};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const LIMIT: Duration = Duration::from_secs(40);
const POLL: Duration = Duration::from_millis(100);
const VRID: u8 = 51;

fn skip(test: &str) -> bool {
    if !netns::require_system(test, &[]) {
        return true;
    }
    for (cmd, pkg) in [
        ("keepalived", "keepalived"),
        ("tcpdump", "tcpdump"),
        ("nft", "nftables"),
    ] {
        let found = Command::new("sh")
            .args([
                "-c",
                &format!("command -v {cmd} || test -x /usr/sbin/{cmd}"),
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return !netns::skip_or_fail(
                test,
                &format!("{cmd} is missing (apt-get install {pkg})"),
            );
        }
    }
    false
}

/// A switch namespace with a bridge, and hosts each with `eth0` on it.
struct Lan {
    prefix: String,
    hosts: Vec<String>,
}

impl Lan {
    fn new(prefix: &str, hosts: &[(&str, Ipv4Addr)]) -> Result<Lan> {
        let mut lan = Lan {
            prefix: prefix.to_owned(),
            hosts: Vec::new(),
        };
        let _ = run(&["ip", "netns", "del", &lan.sw()]);
        run(&["ip", "netns", "add", &lan.sw()]).map_err(anyhow::Error::msg)?;
        let sw = lan.sw();
        for cmd in [
            vec!["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"],
            vec!["ip", "-n", &sw, "link", "set", "br0", "up"],
        ] {
            run(&cmd).map_err(anyhow::Error::msg)?;
        }
        for (h, ip) in hosts {
            let ns = lan.ns(h);
            let _ = run(&["ip", "netns", "del", &ns]);
            run(&["ip", "netns", "add", &ns]).map_err(anyhow::Error::msg)?;
            lan.hosts.push(h.to_string());
            let tmp = format!("{prefix}{h}");
            let port = format!("p{h}");
            let addr = format!("{ip}/24");
            for cmd in [
                vec![
                    "ip", "link", "add", &tmp, "type", "veth", "peer", "name", &port, "netns", &sw,
                ],
                vec!["ip", "link", "set", &tmp, "netns", &ns],
                vec!["ip", "-n", &ns, "link", "set", &tmp, "name", "eth0"],
                vec!["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"],
                vec!["ip", "-n", &ns, "link", "set", "eth0", "up"],
                vec!["ip", "-n", &ns, "link", "set", "lo", "up"],
                vec!["ip", "-n", &sw, "link", "set", &port, "master", "br0", "up"],
            ] {
                run(&cmd).map_err(anyhow::Error::msg)?;
            }
            // The tie-breaker probe pings without CAP_NET_RAW if it can.
            run(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.ping_group_range=0 2147483647",
            ])
            .map_err(anyhow::Error::msg)?;
        }
        Ok(lan)
    }

    fn sw(&self) -> String {
        format!("{}sw", self.prefix)
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    /// Cut a host off the bridge, or put it back.
    fn cut(&self, host: &str, cut: bool) -> Result<()> {
        let port = format!("p{host}");
        let how = if cut {
            vec!["nomaster"]
        } else {
            vec!["master", "br0"]
        };
        let mut cmd = vec!["ip", "-n", "", "link", "set", &port];
        let sw = self.sw();
        cmd[2] = &sw;
        cmd.extend(how);
        run(&cmd).map_err(anyhow::Error::msg).map(drop)
    }

    /// Whether `host` has `vip` on its eth0.
    fn holds(&self, host: &str, vip: Ipv4Addr) -> bool {
        run(&[
            "ip",
            "-n",
            &self.ns(host),
            "-o",
            "-4",
            "addr",
            "show",
            "dev",
            "eth0",
        ])
        .map(|out| out.contains(&format!(" {vip}/")))
        .unwrap_or(false)
    }

    fn holders(&self, vip: Ipv4Addr) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| self.holds(h, vip))
            .cloned()
            .collect()
    }

    fn mac(&self, host: &str) -> Result<String> {
        let out = run(&[
            "ip",
            "-n",
            &self.ns(host),
            "-o",
            "link",
            "show",
            "dev",
            "eth0",
        ])
        .map_err(anyhow::Error::msg)?;
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(str::to_owned)
            .context("no MAC address")
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = run(&["ip", "netns", "del", &self.ns(h)]);
        }
        let _ = run(&["ip", "netns", "del", &self.sw()]);
    }
}

/// A program in a namespace, killed on drop, its output in a file.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(ns: &str, cmd: &[&str], log: PathBuf) -> Result<Proc> {
        let out = std::fs::File::create(&log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawning {cmd:?} in {ns}"))?;
        Ok(Proc {
            child: Some(child),
            log,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&mut self, sig: &str) -> Result<()> {
        if let Some(c) = &self.child {
            run(&["kill", &format!("-{sig}"), &c.id().to_string()]).map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }

    /// Wait for it to exit (after a signal).
    fn wait(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            for _ in 0..200 {
                if c.try_wait()?.is_some() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
            bail!("did not exit within 10 s; log:\n{}", self.log());
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `nuvol ARGS --rpc-addr 127.0.0.1:7373` inside namespace `ns`.
fn cli(ns: &str, args: &[&str]) -> Result<String> {
    let mut cmd = vec!["ip", "netns", "exec", ns, NUVOL];
    cmd.extend_from_slice(args);
    cmd.extend_from_slice(&["--rpc-addr", "127.0.0.1:7373"]);
    run(&cmd).map_err(anyhow::Error::msg)
}

struct Node {
    ns: String,
    ip: Ipv4Addr,
    dir: PathBuf,
    config: String,
    join: Option<Ipv4Addr>,
    agent: Option<Proc>,
    starts: u32,
    args: Vec<String>,
}

impl Node {
    fn start(&mut self) -> Result<()> {
        self.starts += 1;
        let cfg = self.dir.join("nuvol.toml");
        std::fs::write(&cfg, &self.config)?;
        let bind = format!("--bind={}:7946", self.ip);
        let data = format!("--data-dir={}", self.dir.join("data").display());
        let config = format!("--config={}", cfg.display());
        let mut cmd = vec![
            NUVOL,
            "agent",
            "--node",
            self.ns.as_str(),
            &bind,
            "--rpc-addr=127.0.0.1:7373",
            &data,
            &config,
            "--log-level=info",
            "--reconnect-interval=2s",
        ];
        for a in &self.args {
            cmd.push(a);
        }
        let join;
        if let Some(j) = self.join {
            join = format!("--retry-join={j}:7946");
            cmd.push(&join);
        }
        let log = self.dir.join(format!("agent-{}.log", self.starts));
        self.agent = Some(Proc::spawn(&self.ns, &cmd, log)?);
        Ok(())
    }

    fn log(&self) -> String {
        self.agent.as_ref().map(Proc::log).unwrap_or_default()
    }

    fn status(&self) -> Result<Vec<Value>> {
        let out = cli(&self.ns, &["vip", "status", "--format", "json"])?;
        Ok(serde_json::from_str(&out)?)
    }

    /// The status of VRID 51.
    fn vip(&self) -> Result<Value> {
        self.status()?
            .into_iter()
            .find(|v| v["vrid"] == VRID)
            .context("no VRID 51 in nuvol vip status")
    }
}

fn keepalived_conf(
    dir: &Path,
    priority: u8,
    vip: Ipv4Addr,
    unicast: Option<(Ipv4Addr, &[Ipv4Addr])>,
) -> Result<PathBuf> {
    let uni = match unicast {
        None => String::new(),
        Some((src, peers)) => format!(
            "  unicast_src_ip {src}\n  unicast_peer {{\n{}  }}\n",
            peers
                .iter()
                .map(|p| format!("    {p}\n"))
                .collect::<String>()
        ),
    };
    let text = format!(
        "global_defs {{\n  vrrp_version 3\n  script_user root\n}}\n\
         vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {VRID}\n\
         \x20 priority {priority}\n  advert_int 1\n{uni}  virtual_ipaddress {{\n    {vip}/24\n  }}\n}}\n"
    );
    let p = dir.join("keepalived.conf");
    std::fs::write(&p, text)?;
    Ok(p)
}

fn keepalived(lan: &Lan, host: &str, dir: &Path, conf: &Path) -> Result<Proc> {
    let pid = dir.join("k.pid");
    let vpid = dir.join("kv.pid");
    Proc::spawn(
        &lan.ns(host),
        &[
            "keepalived",
            "--dont-fork",
            "--log-console",
            "--log-detail",
            "--vrrp",
            "-f",
            &conf.display().to_string(),
            "-p",
            &pid.display().to_string(),
            "-r",
            &vpid.display().to_string(),
        ],
        dir.join("keepalived.log"),
    )
}

fn vip_config(vip: Ipv4Addr, priority: u8, extra: &str) -> String {
    format!(
        "[mdns]\nannounce = false\n\n[[vip]]\naddress = \"{vip}/24\"\ninterface = \"eth0\"\nvrid = {VRID}\n\
         priority = {priority}\nadvert_interval = \"1s\"\ngarp_delay = \"2s\"\n{extra}"
    )
}

/// Send raw VRRP bytes from `ns` to 224.0.0.18 (python3, a raw socket).
fn inject(ns: &str, bytes: &[u8], ttl: u8) -> Result<()> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let py = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_RAW,112)\n\
         s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_TTL,{ttl})\n\
         s.setsockopt(socket.SOL_SOCKET,socket.SO_BINDTODEVICE,b'eth0')\n\
         s.sendto(bytes.fromhex('{hex}'),('224.0.0.18',0))\n"
    );
    run(&["ip", "netns", "exec", ns, "python3", "-c", &py])
        .map_err(anyhow::Error::msg)
        .map(drop)
}

fn garps_from(log: &str, mac: &str, vip: Ipv4Addr) -> usize {
    log.lines()
        .filter(|l| {
            l.contains(mac)
                && l.contains(&format!(
                    "Request who-has {vip} (ff:ff:ff:ff:ff:ff) tell {vip}"
                ))
        })
        .count()
}

fn holders_are(lan: &Lan, vip: Ipv4Addr, want: &[&str]) -> Result<()> {
    let h = lan.holders(vip);
    ensure!(h == want, "holders {h:?}, want {want:?}");
    Ok(())
}

#[test]
fn keepalived_and_two_nuvol_nodes_share_one_vip() -> Result<()> {
    if skip("keepalived_and_two_nuvol_nodes_share_one_vip") {
        return Ok(());
    }
    let vip = Ipv4Addr::new(10, 78, 0, 100);
    let ip = |n: u8| Ipv4Addr::new(10, 78, 0, n);
    let lan = Lan::new(
        "vipk",
        &[("a", ip(11)), ("b", ip(12)), ("k", ip(13)), ("obs", ip(20))],
    )?;
    let dir = tempfile::tempdir()?;
    let obs = Proc::spawn(
        &lan.ns("obs"),
        &[
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "-l",
            "-e",
            "arp or ip proto 112",
        ],
        dir.path().join("tcpdump.log"),
    )?;
    // Two nuvol nodes are a two-node cluster: the observer is the
    // tie-breaker gateway. A second VIP on a missing interface fails alone.
    let tie = format!("tie_breaker = \"{}\"\n", ip(20));
    let broken = "\n[[vip]]\naddress = \"10.78.9.100/24\"\ninterface = \"nope0\"\nvrid = 52\n";
    let mk = |name: &str, host_ip, prio, join, extra: &str| -> Result<Node> {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d)?;
        Ok(Node {
            ns: lan.ns(name),
            ip: host_ip,
            dir: d,
            config: vip_config(vip, prio, &format!("{tie}{extra}")),
            join,
            agent: None,
            starts: 0,
            args: Vec::new(),
        })
    };
    let mut a = mk("a", ip(11), 150, Some(ip(12)), broken)?;
    let mut b = mk("b", ip(12), 100, Some(ip(11)), "")?;
    a.start()?;
    b.start()?;
    let kdir = dir.path().join("k");
    std::fs::create_dir_all(&kdir)?;
    let kconf = keepalived_conf(&kdir, 120, vip, None)?;
    let mut k = keepalived(&lan, "k", &kdir, &kconf)?;
    let mac_a = lan.mac("a")?;

    let fail =
        |what: &str, e: anyhow::Error, a: &Node, b: &Node, k: &Proc, obs: &Proc| {
            anyhow::anyhow!(
            "{what}: {e:#}\n--- a:\n{}\n--- b:\n{}\n--- keepalived:\n{}\n--- tcpdump (tail):\n{}",
            a.log(),
            b.log(),
            k.log(),
            obs.log().lines().rev().take(30).collect::<Vec<_>>().join("\n")
        )
        };

    // 1. One master: the highest priority, nuvol's A.
    eventually(
        "A master, B and keepalived backups",
        LIMIT,
        POLL,
        || -> Result<()> {
            holders_are(&lan, vip, &["a"])?;
            let (sa, sb) = (a.vip()?, b.vip()?);
            ensure!(sa["state"] == "master", "a: {sa}");
            ensure!(
                sb["state"] == "backup" && sb["master"] == ip(11).to_string(),
                "b: {sb}"
            );
            ensure!(
                k.log().contains("Entering BACKUP STATE"),
                "keepalived not backup"
            );
            Ok(())
        },
    )
    .map_err(|e| fail("first election", e, &a, &b, &k, &obs))?;
    // Gratuitous ARPs: a burst and, 2 s later, a second one.
    eventually(
        "two bursts of gratuitous ARPs from A",
        LIMIT,
        POLL,
        || -> Result<()> {
            let n = garps_from(&obs.log(), &mac_a, vip);
            ensure!(n >= 10, "{n} gratuitous ARPs from {mac_a}");
            Ok(())
        },
    )
    .map_err(|e| fail("ARPs", e, &a, &b, &k, &obs))?;
    // The broken VIP says why, and the agent runs on.
    let broken = a
        .status()?
        .into_iter()
        .find(|v| v["vrid"] == 52)
        .context("vrid 52")?;
    ensure!(broken["state"] == "fault", "{broken}");
    ensure!(
        broken["reason"] == "interface nope0 does not exist",
        "{broken}"
    );
    // keepalived took nuvol's adverts as valid ones.
    ensure!(!k.log().contains("bogus"), "keepalived: {}", k.log());

    // 2. SIGKILL of A's agent: keepalived (120) takes over. The killed agent
    //    could not remove its VIP: it is stale on A's interface.
    a.agent.as_mut().context("a")?.signal("KILL")?;
    a.agent.as_mut().context("a")?.wait()?;
    eventually(
        "keepalived master after SIGKILL of A",
        LIMIT,
        POLL,
        || -> Result<()> {
            ensure!(lan.holds("k", vip), "keepalived does not hold the VIP");
            let sb = b.vip()?;
            ensure!(sb["master"] == ip(13).to_string(), "b: {sb}");
            Ok(())
        },
    )
    .map_err(|e| fail("takeover after SIGKILL", e, &a, &b, &k, &obs))?;
    ensure!(
        lan.holds("a", vip),
        "the SIGKILLed agent's VIP is expected to be stale on a"
    );

    // 3. A restarts: it removes the stale VIP at once, then preempts.
    a.start()?;
    eventually("A's stale VIP removed", LIMIT, POLL, || -> Result<()> {
        ensure!(
            a.log().contains("VIP removed from the interface"),
            "not yet"
        );
        Ok(())
    })
    .map_err(|e| fail("stale VIP", e, &a, &b, &k, &obs))?;
    eventually("A preempts keepalived", LIMIT, POLL, || -> Result<()> {
        holders_are(&lan, vip, &["a"])?;
        ensure!(a.vip()?["state"] == "master");
        Ok(())
    })
    .map_err(|e| fail("preemption", e, &a, &b, &k, &obs))?;
    let log = a.log();
    let removed = log
        .find("VIP removed from the interface")
        .context("removed")?;
    let master = log.find("to=\"master\"").context("master")?;
    ensure!(
        removed < master,
        "the stale VIP was removed before the takeover"
    );

    // 4. Graceful stop: a priority-0 advert, keepalived takes over after
    //    its skew time instead of a master-down interval.
    let k_before = k.log().len();
    a.agent.as_mut().context("a")?.signal("TERM")?;
    a.agent.as_mut().context("a")?.wait()?;
    ensure!(!lan.holds("a", vip), "A removed its VIP on stop");
    eventually(
        "keepalived master after A's graceful stop",
        LIMIT,
        POLL,
        || -> Result<()> {
            holders_are(&lan, vip, &["k"])?;
            Ok(())
        },
    )
    .map_err(|e| fail("graceful stop", e, &a, &b, &k, &obs))?;
    let klog = k.log();
    ensure!(
        klog[k_before..].contains("priority 0"),
        "keepalived saw no priority-0 advert:\n{}",
        &klog[k_before..]
    );
    ensure!(
        obs.log().contains("prio 0"),
        "no priority-0 advert on the wire"
    );

    // 5. Back, and master again.
    a.start()?;
    eventually("A master again", LIMIT, POLL, || {
        holders_are(&lan, vip, &["a"])
    })
    .map_err(|e| fail("restart", e, &a, &b, &k, &obs))?;

    // 6. Bad adverts from the observer: counted, never acted on.
    let good = Advert {
        vrid: VRID,
        priority: 250,
        interval_cs: 100,
        addresses: vec![vip],
    };
    let mut bad_sum = good.encode(ip(20), MULTICAST);
    bad_sum[6] ^= 0xff;
    inject(&lan.ns("obs"), &bad_sum, 255)?;
    let slow = Advert {
        vrid: VRID,
        priority: 10,
        interval_cs: 300,
        addresses: vec![vip],
    };
    inject(&lan.ns("obs"), &slow.encode(ip(20), MULTICAST), 255)?;
    inject(&lan.ns("obs"), &[0x31, VRID, 250], 255)?;
    // A perfect advert with TTL 1: sent from off the LAN as far as VRRP
    // is concerned.
    inject(&lan.ns("obs"), &good.encode(ip(20), MULTICAST), 1)?;
    eventually("drops counted on B", LIMIT, POLL, || -> Result<()> {
        let d = b.vip()?["dropped"].clone();
        for r in ["checksum", "interval_mismatch", "truncated", "ttl"] {
            ensure!(d[r].as_u64().unwrap_or(0) >= 1, "no {r} drop in {d}");
        }
        Ok(())
    })
    .map_err(|e| fail("bad packets", e, &a, &b, &k, &obs))?;
    std::thread::sleep(Duration::from_secs(1));
    holders_are(&lan, vip, &["a"])?;
    ensure!(
        b.vip()?["master"] == ip(11).to_string(),
        "B still follows A"
    );

    // 7. A is cut off: alone it has no majority and no gateway, so it gives
    //    the VIP up; keepalived takes it on the other side.
    let arps_before = garps_from(&obs.log(), &mac_a, vip);
    lan.cut("a", true)?;
    eventually(
        "A in fault, keepalived master",
        Duration::from_secs(60),
        POLL,
        || -> Result<()> {
            let sa = a.vip()?;
            ensure!(sa["state"] == "fault", "a: {sa}");
            ensure!(
                sa["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("tie-breaker gateway does not answer"),
                "a: {sa}"
            );
            holders_are(&lan, vip, &["k"])?;
            Ok(())
        },
    )
    .map_err(|e| fail("partition", e, &a, &b, &k, &obs))?;
    // 8. Heal: one master (A, the highest), and fresh ARPs for the LAN.
    lan.cut("a", false)?;
    eventually(
        "one master after the heal",
        Duration::from_secs(60),
        POLL,
        || -> Result<()> {
            holders_are(&lan, vip, &["a"])?;
            let n = garps_from(&obs.log(), &mac_a, vip);
            ensure!(n > arps_before, "no gratuitous ARP from A after the heal");
            ensure!(b.vip()?["master"] == ip(11).to_string());
            Ok(())
        },
    )
    .map_err(|e| fail("heal", e, &a, &b, &k, &obs))?;

    // `nuvol vip list` shows every node's state.
    eventually("vip list", LIMIT, POLL, || -> Result<()> {
        let out = cli(&b.ns, &["vip", "list", "--format", "json"])?;
        let list: Vec<Value> = serde_json::from_str(&out)?;
        let state_of = |node: &str| {
            list.iter()
                .find(|v| v["node"] == node && v["vrid"] == VRID)
                .map(|v| v["state"].clone())
        };
        ensure!(state_of(&a.ns) == Some("master".into()), "{list:?}");
        ensure!(state_of(&b.ns) == Some("backup".into()), "{list:?}");
        Ok(())
    })
    .map_err(|e| fail("vip list", e, &a, &b, &k, &obs))?;

    // The dashboard's overview on B shows both nodes' states.
    let page = run(&[
        "ip", "netns", "exec", &b.ns, "python3", "-c",
        "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:7000/').read().decode())",
    ])
    .map_err(anyhow::Error::msg)?;
    ensure!(page.contains("Floating IPs"), "{page}");
    for (node, state) in [(&a.ns, "master"), (&b.ns, "backup")] {
        let row = format!(r#"data-vip="{vip}" data-node="{node}" data-state="{state}""#);
        ensure!(page.contains(&row), "no {row} in the overview:\n{page}");
    }

    k.signal("TERM")?;
    k.wait()?;
    drop(obs);
    Ok(())
}

#[test]
fn unicast_peers_where_multicast_is_dropped() -> Result<()> {
    if skip("unicast_peers_where_multicast_is_dropped") {
        return Ok(());
    }
    let vip = Ipv4Addr::new(10, 79, 0, 100);
    let ip = |n: u8| Ipv4Addr::new(10, 79, 0, n);
    let lan = Lan::new("vipu", &[("a", ip(11)), ("b", ip(12)), ("k", ip(13))])?;
    // The switch drops VRRP multicast.
    let sw = lan.sw();
    for rule in [
        "add table bridge viptest",
        "add chain bridge viptest forward { type filter hook forward priority 0 ; }",
        "add rule bridge viptest forward ip daddr 224.0.0.18 drop",
    ] {
        run(&["ip", "netns", "exec", &sw, "nft", rule]).map_err(anyhow::Error::msg)?;
    }
    let dir = tempfile::tempdir()?;
    let peers = |me: u8| {
        let list: Vec<String> = [11, 12, 13]
            .into_iter()
            .filter(|n| *n != me)
            .map(|n| format!("\"{}\"", ip(n)))
            .collect();
        format!(
            "unicast_peers = [{}]\ntie_breaker = \"{}\"\n",
            list.join(", "),
            ip(13)
        )
    };
    let mk = |name: &str, n: u8, prio, join| -> Result<Node> {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d)?;
        Ok(Node {
            ns: lan.ns(name),
            ip: ip(n),
            dir: d,
            config: vip_config(vip, prio, &peers(n)),
            join,
            agent: None,
            starts: 0,
            args: Vec::new(),
        })
    };
    let mut a = mk("a", 11, 150, Some(ip(12)))?;
    let mut b = mk("b", 12, 100, Some(ip(11)))?;
    a.start()?;
    b.start()?;
    let kdir = dir.path().join("k");
    std::fs::create_dir_all(&kdir)?;
    let kconf = keepalived_conf(&kdir, 120, vip, Some((ip(13), &[ip(11), ip(12)])))?;
    let k = keepalived(&lan, "k", &kdir, &kconf)?;
    let fail = |what: &str, e: anyhow::Error, a: &Node, b: &Node| {
        anyhow::anyhow!(
            "{what}: {e:#}\n--- a:\n{}\n--- b:\n{}\n--- keepalived:\n{}",
            a.log(),
            b.log(),
            k.log()
        )
    };
    eventually("A master over unicast", LIMIT, POLL, || -> Result<()> {
        holders_are(&lan, vip, &["a"])?;
        let sb = b.vip()?;
        ensure!(
            sb["state"] == "backup" && sb["master"] == ip(11).to_string(),
            "b: {sb}"
        );
        ensure!(
            k.log().contains("Entering BACKUP STATE"),
            "keepalived not backup"
        );
        Ok(())
    })
    .map_err(|e| fail("unicast election", e, &a, &b))?;
    a.agent.as_mut().context("a")?.signal("TERM")?;
    a.agent.as_mut().context("a")?.wait()?;
    eventually(
        "keepalived master over unicast",
        LIMIT,
        POLL,
        || -> Result<()> {
            holders_are(&lan, vip, &["k"])?;
            ensure!(b.vip()?["master"] == ip(13).to_string());
            Ok(())
        },
    )
    .map_err(|e| fail("unicast takeover", e, &a, &b))?;
    Ok(())
}

#[test]
fn the_vip_follows_the_tracked_service_and_the_majority() -> Result<()> {
    if skip("the_vip_follows_the_tracked_service_and_the_majority") {
        return Ok(());
    }
    if !Path::new("/bin/busybox").exists()
        && !netns::skip_or_fail(
            "the_vip_follows_the_tracked_service_and_the_majority",
            "/bin/busybox is missing (apt-get install busybox-static)",
        )
    {
        return Ok(());
    }
    let vip = Ipv4Addr::new(10, 80, 0, 100);
    let ip = |n: u8| Ipv4Addr::new(10, 80, 0, n);
    // A and B hold the VIP in turn; W is a witness (a nuvol agent with no
    // VIP), so that a node cut off is a minority of one in three.
    let lan = Lan::new("vipt", &[("a", ip(11)), ("b", ip(12)), ("w", ip(13))])?;
    let dir = tempfile::tempdir()?;
    // The process app's user goes through these to the app's directory.
    let traversable = |p: &Path| -> Result<()> {
        std::fs::create_dir_all(p)?;
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
        Ok(())
    };
    traversable(dir.path())?;
    traversable(&dir.path().join("a"))?;
    traversable(&dir.path().join("a").join("data"))?;
    let mk = |name: &str, n: u8, config: String, join| -> Result<Node> {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d)?;
        Ok(Node {
            ns: lan.ns(name),
            ip: ip(n),
            dir: d,
            config,
            join,
            agent: None,
            starts: 0,
            args: vec!["--check-scripts".into()],
        })
    };
    // A tracks an app (a process app, busybox's httpd), B a service type
    // (published with a script check).
    let mut a = mk(
        "a",
        11,
        vip_config(vip, 150, "track_apps = [\"web\"]\n"),
        Some(ip(13)),
    )?;
    let mut b = mk(
        "b",
        12,
        vip_config(vip, 100, "track_services = [\"http\"]\n"),
        Some(ip(13)),
    )?;
    let mut w = mk("w", 13, "[mdns]\nannounce = false\n".into(), None)?;
    w.start()?;
    a.start()?;
    b.start()?;
    let up = |n: &Node| n.dir.join("up");
    let publish = |n: &Node| -> Result<()> {
        let check = format!("test -e {} || exit 2", up(n).display());
        eventually("publish", LIMIT, POLL, || {
            cli(
                &n.ns,
                &[
                    "publish",
                    "web",
                    "http",
                    "8080",
                    "--check-script",
                    &check,
                    "--check-interval",
                    "1s",
                    "--check-timeout",
                    "1s",
                ],
            )
        })
        .map(drop)
    };
    std::fs::write(up(&b), "")?;
    publish(&b)?;
    let compose = dir.path().join("web.yaml");
    std::fs::write(
        &compose,
        "x-nuvol:\n  id: web\n  driver: process\n  publish:\n    - {type: http, port: 8080}\n\
         services:\n  web:\n    command: [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\"]\n\
         \x20   ports: [\"8080\"]\n    restart: always\n    stop_grace_period: 1s\n",
    )?;
    let app =
        |n: &Node, args: &[&str]| -> Result<String> { cli(&n.ns, &[&["app"], args].concat()) };
    let compose_path = compose.display().to_string();
    eventually("web installed on A", LIMIT, POLL, || {
        app(&a, &["install", &compose_path])
    })?;
    let fail = |what: &str, e: anyhow::Error, a: &Node, b: &Node| {
        anyhow::anyhow!("{what}: {e:#}\n--- a:\n{}\n--- b:\n{}", a.log(), b.log())
    };
    eventually("A master", LIMIT, POLL, || -> Result<()> {
        holders_are(&lan, vip, &["a"])?;
        ensure!(b.vip()?["master"] == ip(11).to_string());
        Ok(())
    })
    .map_err(|e| fail("first election", e, &a, &b))?;

    // A's app stops: A gives the VIP to B.
    app(&a, &["stop", "web"])?;
    eventually(
        "B master while A's http is critical",
        LIMIT,
        POLL,
        || -> Result<()> {
            let sa = a.vip()?;
            let services =
                cli(&a.ns, &["services", "--format", "json"]).unwrap_or_else(|e| e.to_string());
            ensure!(sa["state"] == "fault", "a: {sa}\nservices: {services}");
            ensure!(
                sa["reason"] == "app web does not run on this node",
                "a: {sa}"
            );
            holders_are(&lan, vip, &["b"])?;
            Ok(())
        },
    )
    .map_err(|e| fail("tracked service", e, &a, &b))?;
    // Running again: A preempts.
    app(&a, &["start", "web"])?;
    eventually("A master again", LIMIT, POLL, || {
        holders_are(&lan, vip, &["a"])
    })
    .map_err(|e| fail("recovery", e, &a, &b))?;

    // A cut off: one of three is a minority, it gives up; B (with the
    // witness, two of three) takes over. No split brain once gossip has
    // noticed.
    lan.cut("a", true)?;
    eventually(
        "A minority, B master",
        Duration::from_secs(60),
        POLL,
        || -> Result<()> {
            let sa = a.vip()?;
            ensure!(sa["state"] == "fault", "a: {sa}");
            ensure!(
                sa["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("minority side"),
                "a: {sa}"
            );
            holders_are(&lan, vip, &["b"])?;
            Ok(())
        },
    )
    .map_err(|e| fail("partition", e, &a, &b))?;
    lan.cut("a", false)?;
    eventually(
        "A master after the heal",
        Duration::from_secs(60),
        POLL,
        || -> Result<()> {
            holders_are(&lan, vip, &["a"])?;
            ensure!(b.vip()?["master"] == ip(11).to_string());
            Ok(())
        },
    )
    .map_err(|e| fail("heal", e, &a, &b))?;
    drop(w);
    Ok(())
}

/// Bad input on the LAN: the VIP already held by a host that is no VRRP
/// router, and a foreign router (keepalived) on the same VRID with other
/// addresses. Either is a clear reason in `nuvol vip status`, and the VIP
/// is never held by two hosts.
#[test]
fn a_vip_in_use_or_a_foreign_router_on_the_vrid_is_never_claimed_twice() -> Result<()> {
    if skip("a_vip_in_use_or_a_foreign_router_on_the_vrid_is_never_claimed_twice") {
        return Ok(());
    }
    let vip = Ipv4Addr::new(10, 81, 0, 100);
    let foreign = Ipv4Addr::new(10, 81, 0, 200);
    let ip = |n: u8| Ipv4Addr::new(10, 81, 0, n);
    let lan = Lan::new("vipx", &[("a", ip(11)), ("s", ip(12)), ("k", ip(13))])?;
    let dir = tempfile::tempdir()?;
    // s, a plain host, has the VIP as a static address.
    let s_addr = format!("{vip}/24");
    let squat = |how: &str| -> Result<()> {
        run(&[
            "ip",
            "-n",
            &lan.ns("s"),
            "addr",
            how,
            &s_addr,
            "dev",
            "eth0",
        ])
        .map_err(anyhow::Error::msg)
        .map(drop)
    };
    squat("add")?;
    let s_mac = lan.mac("s")?;
    let d = dir.path().join("a");
    std::fs::create_dir_all(&d)?;
    let mut a = Node {
        ns: lan.ns("a"),
        ip: ip(11),
        dir: d,
        config: vip_config(vip, 100, ""),
        join: None,
        agent: None,
        starts: 0,
        args: Vec::new(),
    };
    a.start()?;
    let fail = |what: &str, e: anyhow::Error, a: &Node| {
        anyhow::anyhow!("{what}: {e:#}\n--- a:\n{}", a.log())
    };
    eventually("A holds back: the VIP is s's", LIMIT, POLL, || -> Result<()> {
        let sa = a.vip()?;
        ensure!(sa["state"] == "fault", "a: {sa}");
        ensure!(
            sa["reason"]
                == format!(
                    "{vip} is already in use by {s_mac} (a host that sends no VRRP adverts for VRID {VRID})"
                ),
            "a: {sa}"
        );
        holders_are(&lan, vip, &["s"])
    })
    .map_err(|e| fail("address in use", e, &a))?;
    // Still so a master-down interval later (it does not claim over s).
    std::thread::sleep(Duration::from_secs(4));
    holders_are(&lan, vip, &["s"]).map_err(|e| fail("address in use, later", e, &a))?;
    ensure!(a.vip()?["state"] == "fault");
    // The agent answers the rest as usual.
    ensure!(cli(&a.ns, &["members"])?.contains("vipxa"));

    // s lets go: A probes again and claims.
    squat("del")?;
    eventually("A master once s let go", LIMIT, POLL, || -> Result<()> {
        holders_are(&lan, vip, &["a"])?;
        let sa = a.vip()?;
        ensure!(sa["state"] == "master" && sa["reason"].is_null(), "a: {sa}");
        Ok(())
    })
    .map_err(|e| fail("address freed", e, &a))?;

    // A foreign router on VRID 51, for another address, with a higher
    // priority: A does not follow it and claims nothing while it is heard;
    // each holds at most its own address.
    let kdir = dir.path().join("k");
    std::fs::create_dir_all(&kdir)?;
    let kconf = keepalived_conf(&kdir, 200, foreign, None)?;
    let mut k = keepalived(&lan, "k", &kdir, &kconf)?;
    eventually(
        "A in fault for the VRID clash",
        LIMIT,
        POLL,
        || -> Result<()> {
            let sa = a.vip()?;
            ensure!(sa["state"] == "fault", "a: {sa}");
            ensure!(
                sa["reason"].as_str().is_some_and(|r| r.contains(&format!(
                    "advertises other addresses on VRID {VRID} ({foreign}): a VRID clash"
                ))),
                "a: {sa}"
            );
            ensure!(
                sa["dropped"]["address_mismatch"].as_u64() > Some(0),
                "a: {sa}"
            );
            holders_are(&lan, vip, &[])?;
            holders_are(&lan, foreign, &["k"])
        },
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "{:#}\n--- keepalived:\n{}",
            fail("VRID clash", e, &a),
            k.log()
        )
    })?;
    // The foreign router goes: A claims its VIP again.
    k.signal("TERM")?;
    k.wait()?;
    eventually(
        "A master after the foreign router left",
        LIMIT,
        POLL,
        || holders_are(&lan, vip, &["a"]),
    )
    .map_err(|e| fail("foreign router gone", e, &a))?;
    Ok(())
}
