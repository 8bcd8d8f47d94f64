//! Network monitoring for real (issue 12): 30 simulated routers, each a
//! network namespace running Debian's `snmpd` (net-snmp 5.9) in the
//! foreground with its own config and port, and 4 `nuvol agent` monitors
//! in namespaces of their own, all on one bridge. Probe interval 3 s,
//! settle 2 s, k = 2.
//!
//! Checked: every device gets k owners and k fresh answered samples, and
//! `nuvol monitor devices` from any node agrees on owners and state; the
//! interface counters reported for a router lie between readings of its
//! own `/sys/class/net/eth0/statistics` taken around the sample's time;
//! then the faults, each with its expected outcome:
//! 1. SIGKILL of a monitor: each of its devices gets one new owner and
//!    fresh samples, the others keep their owners; restarted, it gets its
//!    devices back.
//! 2. SIGSTOP of a monitor: the same takeover; after SIGCONT it counts
//!    again (after settle) and gets its devices back.
//! 3. A monitor cut off the bridge: the rest take over its devices, which
//!    stay "up" as the majority side sees them.
//! 4. A hung snmpd (SIGSTOP) whose host still answers ping: the device
//!    stays "up", its samples carry an snmp_error, and the other devices'
//!    samples keep coming on time.
//! 5. 50 % of the ICMP to a router dropped (nft numgen): the reported loss
//!    lies in [0, 1] and is clearly above 0 over several samples.
//! 6. A router's link down: "down" with a cause, as every monitor sees it;
//!    "up" again when the link is back.
//!
//! net-snmp caches the interface table for 3 s (measured on 5.9.3: the
//! same ifHCInOctets for 3 s while /sys moves, then a jump): the counter
//! check's window allows for that cache, for `at`'s one-second resolution
//! and for the probe's own duration, and no more.
//!
//! Needs root, iproute2, nft and /usr/sbin/snmpd; skipped without them,
//! failed instead under `NUVOL_REQUIRE_SYSTEM=1`.

use anyhow::{anyhow, ensure, Context, Result};
use nuvol_monitor::verdict::DeviceState;
use nuvol_monitor::view::{DeviceDetail, DeviceSummary, Sample};
use nuvol_testkit::lan::{Daemon, Lan};
use nuvol_testkit::netns::{self, run};
use nuvol_testkit::{eventually, run_cli, CLI_TIMEOUT, KEEP_DIRS_ENV};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const SNMPD: &str = "/usr/sbin/snmpd";
const ROUTERS: usize = 30;
const MONITORS: usize = 4;
const K: usize = 2;
/// The probe interval, seconds.
const INTERVAL: u64 = 3;
/// The settle time, seconds.
const SETTLE: f64 = 2.0;
/// The component's freshness: two intervals.
const FRESH: u64 = 2 * INTERVAL;
/// Generous: gossip's failure detection, settle, a probe round, a loaded
/// CI machine.
const LIMIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(500);
/// net-snmp's interface table cache (seconds), see the module docs.
const SNMPD_CACHE: f64 = 3.0;
/// The routers whose /sys counters are read all along; the first also
/// sends a steady stream out (so its out and in counters differ widely).
const COUNTED: [usize; 3] = [0, 7, 19];

type Assignment = BTreeMap<String, Vec<String>>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now_f() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn skip(test: &str) -> bool {
    if !netns::require_system(test, &[]) {
        return true;
    }
    if !std::path::Path::new(SNMPD).exists() {
        return !netns::skip_or_fail(test, "/usr/sbin/snmpd is missing (apt-get install snmpd)");
    }
    let nft = Command::new("sh")
        .args(["-c", "command -v nft || test -x /usr/sbin/nft"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !nft {
        return !netns::skip_or_fail(test, "nft is missing (apt-get install nftables)");
    }
    false
}

fn net() -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 0)
}

fn host_ip(n: u8) -> Ipv4Addr {
    let [a, b, c, _] = net().octets();
    Ipv4Addr::new(a, b, c, n)
}

fn mon_ip(i: usize) -> Ipv4Addr {
    host_ip(1 + i as u8)
}

fn router_ip(i: usize) -> Ipv4Addr {
    host_ip(11 + i as u8)
}

fn router_id(i: usize) -> String {
    format!("r{i:02}")
}

struct Monitor {
    name: String,
    host: String,
    ns: String,
    ip: Ipv4Addr,
    dir: PathBuf,
    agent: Option<Daemon>,
    starts: u32,
}

impl Monitor {
    fn start(&mut self, config: &std::path::Path) -> Result<()> {
        self.starts += 1;
        let bind = format!("--bind={}:7946", self.ip);
        let data = format!("--data-dir={}", self.dir.join("data").display());
        let cfg = format!("--config={}", config.display());
        let mut cmd: Vec<String> = [
            NUVOL,
            "agent",
            "--node",
            &self.name,
            &bind,
            "--rpc-addr=127.0.0.1:7373",
            &data,
            &cfg,
            "--profile=local",
            "--log-level=info",
            "--reconnect-interval=2s",
            "--mdns=false",
            "--apps=false",
            "--monitor",
            "--monitor-k=2",
            "--monitor-interval=3s",
            "--monitor-settle=2s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for j in 0..MONITORS {
            if mon_ip(j) != self.ip {
                cmd.push(format!("--retry-join={}:7946", mon_ip(j)));
            }
        }
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let log = self.dir.join(format!("agent-{}.log", self.starts));
        self.agent = Some(Daemon::spawn(&self.ns, &cmd, &[], &log).map_err(anyhow::Error::msg)?);
        Ok(())
    }

    fn agent(&self) -> Result<&Daemon> {
        self.agent.as_ref().context("agent not running")
    }

    fn log_tail(&self, n: usize) -> String {
        self.agent
            .as_ref()
            .map(|a| a.log_tail(n))
            .unwrap_or_default()
    }

    /// `nuvol ARGS --rpc-addr 127.0.0.1:7373` inside the monitor's
    /// namespace.
    fn cli(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, NUVOL])
            .args(args)
            .args(["--rpc-addr", "127.0.0.1:7373"]);
        let out = run_cli(cmd, CLI_TIMEOUT)?;
        ensure!(
            out.status.success(),
            "{}: nuvol {args:?}: {}: {}",
            self.name,
            out.status,
            out.stderr.trim()
        );
        Ok(out.stdout)
    }

    fn assignment(&self) -> Result<Assignment> {
        let out = self.cli(&["monitor", "assignment", "--format", "json"])?;
        serde_json::from_str(&out).with_context(|| format!("{}: assignment {out}", self.name))
    }

    fn devices(&self) -> Result<Vec<DeviceSummary>> {
        let out = self.cli(&["monitor", "devices", "--format", "json"])?;
        serde_json::from_str(&out).with_context(|| format!("{}: devices {out}", self.name))
    }

    fn device(&self, id: &str) -> Result<DeviceDetail> {
        let out = self.cli(&["monitor", "device", id, "--format", "json"])?;
        serde_json::from_str(&out).with_context(|| format!("{}: device {id}: {out}", self.name))
    }
}

struct Router {
    id: String,
    host: String,
    snmpd: Daemon,
    /// eth0's ifIndex inside the router.
    ifindex: u32,
}

/// The /sys readings of one router's eth0: (time, rx_bytes, tx_bytes).
fn readings(log: &str) -> Vec<(f64, u64, u64)> {
    log.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let t = w.next()?.replace(',', ".").parse().ok()?;
            let rx = w.next()?.parse().ok()?;
            let tx = w.next()?.parse().ok()?;
            Some((t, rx, tx))
        })
        .collect()
}

/// Everything of the lab; dropped in field order: processes first, the
/// namespaces (with their links and nft tables) after, the logs last.
struct Lab {
    monitors: Vec<Monitor>,
    routers: Vec<Router>,
    /// The sender; held to be killed on drop.
    _helpers: Vec<Daemon>,
    /// COUNTED[i]'s /sys reader.
    counters: Vec<Daemon>,
    lan: Lan,
    config: PathBuf,
    /// The logs and configs; removed on drop (unless NUVOL_KEEP_TEST_DIRS=1).
    _dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Result<Lab> {
        let pid = std::process::id() % 100_000;
        let prefix = format!("mn{pid}");
        let mut dir = tempfile::tempdir()?;
        if std::env::var(KEEP_DIRS_ENV).as_deref() == Ok("1") {
            dir.disable_cleanup(true);
            eprintln!("lab directory kept: {}", dir.path().display());
        }
        let mut lan = Lan::new(&prefix).map_err(anyhow::Error::msg)?;
        let mut devices = String::from("[monitor]\ndevices = [\n");
        let mut routers = Vec::new();
        let mut helpers = Vec::new();
        let mut counters = Vec::new();
        // The routers: an snmpd each, its own config, port and
        // persistent directory.
        for i in 0..ROUTERS {
            let host = router_id(i);
            let ip = router_ip(i);
            let port = 16100 + i as u16;
            let ns = lan.add_host(&host, ip, 24).map_err(anyhow::Error::msg)?;
            let rdir = dir.path().join(&host);
            std::fs::create_dir_all(&rdir)?;
            let conf = rdir.join("snmpd.conf");
            std::fs::write(
                &conf,
                format!(
                    "# router {host}\nview all included .1\nrocommunity lab default -V all\n\
                     sysName {host}\n"
                ),
            )?;
            let addr = format!("udp:{ip}:{port}");
            let pidfile = rdir.join("snmpd.pid").display().to_string();
            let confs = conf.display().to_string();
            let persist = rdir.join("persist").display().to_string();
            let snmpd = Daemon::spawn(
                &ns,
                &[
                    SNMPD, "-f", "-Lo", "-C", "-c", &confs, "-p", &pidfile, &addr,
                ],
                &[("MIBS", ""), ("SNMP_PERSISTENT_DIR", &persist)],
                &rdir.join("snmpd.log"),
            )
            .map_err(anyhow::Error::msg)?;
            let ifindex: u32 = lan
                .exec(&host, &["cat", "/sys/class/net/eth0/ifindex"])
                .map_err(anyhow::Error::msg)?
                .trim()
                .parse()?;
            devices.push_str(&format!(
                "  {{ id = \"{host}\", title = \"router {i}\", address = \"{ip}\", \
                 snmp_community = \"lab\", snmp_port = {port}, snmp_version = \"2c\" }},\n"
            ));
            if COUNTED.contains(&i) {
                let script = "while :; do read r < /sys/class/net/eth0/statistics/rx_bytes; \
                              read t < /sys/class/net/eth0/statistics/tx_bytes; \
                              echo \"$EPOCHREALTIME $r $t\"; sleep 0.2; done";
                counters.push(
                    Daemon::spawn(
                        &ns,
                        &["bash", "-c", script],
                        &[("LC_ALL", "C")],
                        &rdir.join("counters.log"),
                    )
                    .map_err(anyhow::Error::msg)?,
                );
            }
            routers.push(Router {
                id: host.clone(),
                host,
                snmpd,
                ifindex,
            });
        }
        devices.push_str("]\n");
        let config = dir.path().join("monitor.toml");
        std::fs::write(&config, devices)?;
        // COUNTED[0] sends 1400-byte UDP datagrams to a sink host that
        // drops them silently: its out counter grows steadily, its in
        // counter does not (and the bridge, knowing the sink, floods them
        // to no one else).
        let sender = router_id(COUNTED[0]);
        let sink = host_ip(250).to_string();
        lan.add_host("sink", host_ip(250), 24)
            .map_err(anyhow::Error::msg)?;
        lan.nft(
            "sink",
            "table inet nvsink {\n chain input {\n  type filter hook input priority 0;\n  \
             udp dport 9 drop\n }\n}\n",
        )
        .map_err(anyhow::Error::msg)?;
        let send = format!(
            "exec 3>/dev/udp/{sink}/9; while :; do printf '%1400s' x >&3; sleep 0.25; done"
        );
        helpers.push(
            Daemon::spawn(
                &lan.ns(&sender),
                &["bash", "-c", &send],
                &[],
                &dir.path().join("sender.log"),
            )
            .map_err(anyhow::Error::msg)?,
        );
        let mut monitors = Vec::new();
        for i in 0..MONITORS {
            let host = format!("m{i}");
            let ip = mon_ip(i);
            let ns = lan.add_host(&host, ip, 24).map_err(anyhow::Error::msg)?;
            let mdir = dir.path().join(&host);
            std::fs::create_dir_all(&mdir)?;
            monitors.push(Monitor {
                name: format!("mon{pid}-{i}"),
                host,
                ns,
                ip,
                dir: mdir,
                agent: None,
                starts: 0,
            });
        }
        let mut lab = Lab {
            monitors,
            routers,
            _helpers: helpers,
            counters,
            lan,
            config,
            _dir: dir,
        };
        for i in 0..MONITORS {
            let cfg = lab.config.clone();
            lab.monitors[i].start(&cfg)?;
        }
        Ok(lab)
    }

    fn names(&self) -> Vec<String> {
        self.monitors.iter().map(|m| m.name.clone()).collect()
    }

    /// The agents' log tails and snmpd's, for a failure message.
    fn logs(&self) -> String {
        let mut s = String::new();
        for m in &self.monitors {
            s.push_str(&format!(
                "--- {} ({}):\n{}\n",
                m.name,
                m.host,
                m.log_tail(25)
            ));
        }
        s
    }

    fn fail(&self, what: &str, e: anyhow::Error) -> anyhow::Error {
        anyhow!("{what}: {e:#}\n{}", self.logs())
    }

    /// The views of `devices` of the monitors `from`.
    fn views(&self, from: &[usize]) -> Result<Vec<Vec<DeviceSummary>>> {
        from.iter().map(|&i| self.monitors[i].devices()).collect()
    }

    /// The assignment every monitor in `from` computes, when they agree
    /// and it has `owners` distinct owners.
    fn agreed_assignment(&self, from: &[usize], owners: usize) -> Result<Assignment> {
        let views: Vec<Assignment> = from
            .iter()
            .map(|&i| self.monitors[i].assignment())
            .collect::<Result<_>>()?;
        let first = views.first().context("no monitor asked")?.clone();
        for (i, v) in from.iter().zip(&views) {
            ensure!(
                *v == first,
                "{} disagrees: {v:?} vs {first:?}",
                self.monitors[*i].name
            );
        }
        ensure!(first.len() == ROUTERS, "{} devices", first.len());
        let set: BTreeSet<&String> = first.values().flatten().collect();
        ensure!(set.len() == owners, "owners {set:?}");
        Ok(first)
    }

    /// The /sys readings of router `i` (one of COUNTED).
    fn readings(&self, i: usize) -> Vec<(f64, u64, u64)> {
        let pos = COUNTED.iter().position(|&c| c == i).unwrap_or(0);
        readings(&self.counters[pos].log())
    }
}

/// Every device in every view: the owners of `assignment`, `state`
/// agreed, `K` reports (one per owner) answered and taken at or after
/// `since`. The views agree with each other.
fn all_fresh(views: &[Vec<DeviceSummary>], assignment: &Assignment, since: u64) -> Result<()> {
    let first = views.first().context("no view")?;
    for v in views {
        ensure!(v.len() == ROUTERS, "{} devices listed", v.len());
        for (a, b) in v.iter().zip(first) {
            ensure!(
                a.id == b.id && a.owners == b.owners && a.state == b.state,
                "views disagree: {} {:?} {:?} vs {} {:?} {:?}",
                a.id,
                a.owners,
                a.state,
                b.id,
                b.owners,
                b.state
            );
        }
    }
    for d in first {
        let want = assignment
            .get(&d.id)
            .with_context(|| format!("{} not assigned", d.id))?;
        ensure!(
            d.owners == *want,
            "{}: owners {:?}, assigned {want:?}",
            d.id,
            d.owners
        );
        ensure!(
            d.state == DeviceState::Up,
            "{}: {:?} ({:?})",
            d.id,
            d.state,
            d.cause
        );
        let by: BTreeSet<&str> = d.reports.iter().map(|r| r.monitor.as_str()).collect();
        let owners: BTreeSet<&str> = d.owners.iter().map(String::as_str).collect();
        ensure!(
            by == owners,
            "{}: reports by {by:?}, owners {owners:?}",
            d.id
        );
        for r in &d.reports {
            ensure!(
                r.snmp_error.is_none() && r.uptime.is_some(),
                "{}: {}'s sample: SNMP error {:?}, uptime {:?}",
                d.id,
                r.monitor,
                r.snmp_error,
                r.uptime
            );
            ensure!(
                r.answered && r.at >= since,
                "{}: {}'s sample at {} (since {since}), answered {}",
                d.id,
                r.monitor,
                r.at,
                r.answered
            );
        }
    }
    Ok(())
}

/// After `gone` left: every device it owned has exactly one new owner and
/// kept the other; every other device kept its owners.
fn takeover(before: &Assignment, after: &Assignment, gone: &str) -> Result<usize> {
    let mut moved = 0;
    for (d, b) in before {
        let a = after.get(d).with_context(|| format!("{d} gone"))?;
        ensure!(!a.iter().any(|o| o == gone), "{d}: {a:?} still has {gone}");
        ensure!(a.len() == K, "{d}: {a:?}");
        if b.iter().any(|o| o == gone) {
            let new: Vec<&String> = a.iter().filter(|o| !b.contains(o)).collect();
            ensure!(new.len() == 1, "{d}: {b:?} -> {a:?}");
            let kept = b.iter().find(|o| *o != gone).context("kept owner")?;
            ensure!(a.contains(kept), "{d}: {b:?} -> {a:?}");
            moved += 1;
        } else {
            ensure!(a == b, "{d}: {b:?} -> {a:?}, not owned by {gone}");
        }
    }
    Ok(moved)
}

/// Sample times per (device, monitor) seen while polling, to measure the
/// gaps between successive samples.
#[derive(Default)]
struct Gaps {
    last: BTreeMap<(String, String), u64>,
    max: BTreeMap<(String, String), u64>,
}

impl Gaps {
    fn see(&mut self, view: &[DeviceSummary], skip: &str) {
        for d in view.iter().filter(|d| d.id != skip) {
            for r in &d.reports {
                let key = (d.id.clone(), r.monitor.clone());
                if let Some(prev) = self.last.get(&key) {
                    if r.at > *prev {
                        let g = self.max.entry(key.clone()).or_default();
                        *g = (*g).max(r.at - prev);
                    }
                }
                self.last.insert(key, r.at);
            }
        }
    }

    /// The largest gap, including the time since the last sample.
    fn worst(&self, now: u64) -> Option<((String, String), u64)> {
        self.last
            .iter()
            .map(|(k, at)| {
                let g = self.max.get(k).copied().unwrap_or(0).max(now - at);
                (k.clone(), g)
            })
            .max_by_key(|(_, g)| *g)
    }
}

/// The reported counters of `sample` for eth0 lie between the router's
/// own readings before and after the sample. Returns the windows'
/// widths (in, out) in bytes.
fn counters_match(lab: &Lab, ri: usize, sample: &Sample) -> Result<(u64, u64, u64, u64)> {
    let r = &lab.routers[ri];
    // snmpd lists the namespace's interfaces, lo and eth0, no more.
    let listed: BTreeSet<u32> = sample.interfaces.iter().map(|i| i.index).collect();
    let have = lab
        .lan
        .exec(&r.host, &["sh", "-c", "cat /sys/class/net/*/ifindex"])
        .map_err(anyhow::Error::msg)?;
    let have: BTreeSet<u32> = have
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    ensure!(
        listed == have,
        "{}: interfaces {listed:?} reported, {have:?} in the namespace",
        r.id
    );
    let ifv = sample
        .interfaces
        .iter()
        .find(|i| i.index == r.ifindex)
        .with_context(|| {
            format!(
                "{}: no interface {} in {:?}",
                r.id, r.ifindex, sample.interfaces
            )
        })?;
    ensure!(ifv.hc, "{}: 64-bit counters expected: {ifv:?}", r.id);
    ensure!(ifv.oper_up, "{}: eth0 not up: {ifv:?}", r.id);
    // snmpd read the kernel's counters at some time in [at - cache,
    // at + 1 + 2]: `at` is the probe's start in whole seconds, the cache
    // is 3 s, the table is read by the probe's second request (the walk),
    // within 2 s even when both it and the first one needed their retry
    // (1 s timeout). One more second on either side for the scheduler.
    let lo_t = sample.at as f64 - SNMPD_CACHE - 1.0;
    let hi_t = sample.at as f64 + 4.0;
    let rs = lab.readings(ri);
    let before = rs
        .iter()
        .rev()
        .find(|(t, _, _)| *t <= lo_t)
        .with_context(|| format!("{}: no reading before {lo_t}", r.id))?;
    let after = rs
        .iter()
        .find(|(t, _, _)| *t >= hi_t)
        .with_context(|| format!("{}: no reading after {hi_t} yet", r.id))?;
    ensure!(
        before.1 <= ifv.in_octets && ifv.in_octets <= after.1,
        "{} by {}: in_octets {} not within rx_bytes [{} at {:.1}, {} at {:.1}] (sample at {})",
        r.id,
        sample.monitor,
        ifv.in_octets,
        before.1,
        before.0,
        after.1,
        after.0,
        sample.at
    );
    ensure!(
        before.2 <= ifv.out_octets && ifv.out_octets <= after.2,
        "{} by {}: out_octets {} not within tx_bytes [{} at {:.1}, {} at {:.1}] (sample at {})",
        r.id,
        sample.monitor,
        ifv.out_octets,
        before.2,
        before.0,
        after.2,
        after.0,
        sample.at
    );
    Ok((
        ifv.in_octets,
        after.1 - before.1,
        ifv.out_octets,
        after.2 - before.2,
    ))
}

#[test]
fn thirty_snmpd_routers_four_monitors_and_six_faults() -> Result<()> {
    let test = "thirty_snmpd_routers_four_monitors_and_six_faults";
    if skip(test) {
        return Ok(());
    }
    let t0 = Instant::now();
    let mut lab = Lab::new()?;
    eprintln!("lab up in {:?}", t0.elapsed());
    let all: Vec<usize> = (0..MONITORS).collect();
    let names = lab.names();

    // ---- Baseline: k owners each, agreed; k fresh answered samples.
    let a0 = eventually("the four monitors agree on the owners", LIMIT, POLL, || {
        lab.agreed_assignment(&all, MONITORS)
    })
    .map_err(|e| lab.fail("assignment", e))?;
    let since = now();
    eventually(
        "every device: 2 fresh answered samples, the same view from every monitor",
        LIMIT,
        POLL,
        || all_fresh(&lab.views(&all)?, &a0, since),
    )
    .map_err(|e| lab.fail("baseline", e))?;
    let per: Vec<usize> = names
        .iter()
        .map(|n| a0.values().filter(|o| o.contains(n)).count())
        .collect();
    eprintln!(
        "baseline after {:?}: {ROUTERS} devices up, owners per monitor {per:?}",
        t0.elapsed()
    );

    // ---- Counters: two rounds of each counted router's samples, every
    // owner's, asked from a different monitor each time.
    let mut first_round: BTreeMap<(usize, String), (u64, u64)> = BTreeMap::new();
    for round in 0..2 {
        // The first round's samples come after the /sys readers have run
        // longer than the window reaches back (the monitors may have
        // probed within a second or two of the lab coming up).
        let round_since = now()
            + if round == 0 {
                SNMPD_CACHE as u64 + 3
            } else {
                0
            };
        for (n, &ri) in COUNTED.iter().enumerate() {
            let id = &lab.routers[ri].id;
            let asked = &lab.monitors[(n + round) % MONITORS];
            let detail = eventually("samples taken this round", LIMIT, POLL, || {
                let d = asked.device(id)?;
                ensure!(d.samples.len() == K, "{} samples", d.samples.len());
                ensure!(d.samples.iter().all(|s| s.at >= round_since), "old samples");
                Ok::<_, anyhow::Error>(d)
            })
            .map_err(|e| lab.fail("counter samples", e))?;
            // Wait for the readings after the samples' time.
            let latest = detail.samples.iter().map(|s| s.at).max().unwrap_or(0);
            while now_f() < latest as f64 + 4.5 {
                std::thread::sleep(Duration::from_millis(200));
            }
            std::thread::sleep(Duration::from_millis(500));
            for s in &detail.samples {
                let (inv, inw, outv, outw) = counters_match(&lab, ri, s)?;
                eprintln!(
                    "counters {id} by {} (asked {}): in {inv} (window {inw} B), out {outv} (window {outw} B)",
                    s.monitor, asked.name
                );
                if round == 0 {
                    first_round.insert((ri, s.monitor.clone()), (inv, outv));
                } else if let Some((in0, out0)) = first_round.get(&(ri, s.monitor.clone())) {
                    ensure!(
                        outv > *out0 && inv > *in0,
                        "{id}: the counters did not move: in {in0} -> {inv}, out {out0} -> {outv}"
                    );
                    // Its sender makes the first router send more than it
                    // receives (the totals include the time before the
                    // sender started, the deltas do not).
                    if ri == COUNTED[0] {
                        let (din, dout) = (inv - in0, outv - out0);
                        eprintln!("   {id} between the rounds: in +{din} B, out +{dout} B");
                        ensure!(dout > din, "{id}: in +{din} B, out +{dout} B");
                    }
                }
            }
        }
    }

    // ---- 4. A hung snmpd; ping still answers.
    let hung = 3;
    let hung_id = lab.routers[hung].id.clone();
    lab.routers[hung]
        .snmpd
        .signal("STOP")
        .map_err(anyhow::Error::msg)?;
    let t_hang = now();
    let mut gaps = Gaps::default();
    let view = eventually(
        "the hung snmpd's device: up, snmp_error from both owners",
        LIMIT,
        POLL,
        || {
            let v = lab.monitors[0].devices()?;
            gaps.see(&v, &hung_id);
            let d = v.iter().find(|d| d.id == hung_id).context("device")?;
            ensure!(d.state == DeviceState::Up, "{:?} {:?}", d.state, d.cause);
            ensure!(d.reports.len() == K, "{} reports", d.reports.len());
            for r in &d.reports {
                ensure!(
                    r.at > t_hang && r.answered && r.snmp_error.is_some() && r.received > 0,
                    "{}: at {} answered {} snmp_error {:?} received {}",
                    r.monitor,
                    r.at,
                    r.answered,
                    r.snmp_error,
                    r.received
                );
            }
            Ok::<_, anyhow::Error>(v)
        },
    )
    .map_err(|e| lab.fail("hung snmpd", e))?;
    // Keep watching for three more intervals: the others' samples go on.
    let watch_end = Instant::now() + Duration::from_secs(3 * INTERVAL);
    while Instant::now() < watch_end {
        if let Ok(v) = lab.monitors[1].devices() {
            gaps.see(&v, &hung_id);
        }
        std::thread::sleep(POLL);
    }
    let d = view.iter().find(|d| d.id == hung_id).context("device")?;
    let (worst_key, worst) = gaps.worst(now()).context("no samples watched")?;
    eprintln!(
        "4. hung snmpd {hung_id}: state {:?}, cause {:?}, errors {:?}; worst gap of the others {worst} s ({worst_key:?})",
        d.state,
        d.cause,
        d.reports.iter().map(|r| r.snmp_error.clone()).collect::<Vec<_>>()
    );
    ensure!(
        d.cause.as_deref().is_some_and(|c| c.contains("SNMP")),
        "the cause names SNMP: {:?}",
        d.cause
    );
    // Fresh = within two intervals; one more second for `at`'s rounding.
    ensure!(
        worst <= FRESH + 1,
        "the other devices' samples stalled: {worst} s for {worst_key:?}"
    );
    lab.routers[hung]
        .snmpd
        .signal("CONT")
        .map_err(anyhow::Error::msg)?;

    // ---- 5. Packet loss: half the ICMP echo requests into a router dropped.
    let lossy = 5;
    let lossy_host = lab.routers[lossy].host.clone();
    let lossy_id = lab.routers[lossy].id.clone();
    lab.lan
        .nft(
            &lossy_host,
            "table inet nvloss {\n chain input {\n  type filter hook input priority 0;\n  \
             icmp type echo-request numgen random mod 100 < 50 drop\n }\n}\n",
        )
        .map_err(anyhow::Error::msg)?;
    let t_loss = now();
    let mut losses: BTreeMap<(String, u64), f64> = BTreeMap::new();
    let mut echoes: BTreeMap<(String, u64), (u16, u16)> = BTreeMap::new();
    eventually("three lossy samples from each owner", LIMIT, POLL, || {
        let v = lab.monitors[2].devices()?;
        let d = v.iter().find(|d| d.id == lossy_id).context("device")?;
        ensure!(d.state == DeviceState::Up, "{:?} {:?}", d.state, d.cause);
        for r in d.reports.iter().filter(|r| r.at > t_loss) {
            let l = r.loss.context("no loss reported")?;
            ensure!((0.0..=1.0).contains(&l), "loss {l} out of [0, 1]");
            losses.insert((r.monitor.clone(), r.at), l);
            echoes.insert((r.monitor.clone(), r.at), (r.sent, r.received));
        }
        for o in &d.owners {
            let n = losses.keys().filter(|(m, _)| m == o).count();
            ensure!(n >= 3, "{o}: {n} samples");
        }
        Ok::<_, anyhow::Error>(())
    })
    .map_err(|e| lab.fail("packet loss", e))?;
    let mean = losses.values().sum::<f64>() / losses.len() as f64;
    eprintln!(
        "5. loss on {lossy_id}: {} samples {:?} (sent, received) {:?}, mean {mean:.2}",
        losses.len(),
        losses.values().collect::<Vec<_>>(),
        echoes.values().collect::<Vec<_>>()
    );
    ensure!(
        mean > 0.15 && mean < 0.95,
        "50 % of the echoes dropped, mean loss {mean}"
    );
    run(&[
        "ip",
        "netns",
        "exec",
        &lab.lan.ns(&lossy_host),
        "nft",
        "delete",
        "table",
        "inet",
        "nvloss",
    ])
    .map_err(anyhow::Error::msg)?;

    // ---- 6. A router's link down: down with a cause; up again.
    let cut = 9;
    let cut_host = lab.routers[cut].host.clone();
    let cut_id = lab.routers[cut].id.clone();
    lab.lan.link(&cut_host, false).map_err(anyhow::Error::msg)?;
    let t_down = now();
    let views = eventually("every monitor sees the router down", LIMIT, POLL, || {
        let vs = lab.views(&all)?;
        for v in &vs {
            let d = v.iter().find(|d| d.id == cut_id).context("device")?;
            ensure!(d.state == DeviceState::Down, "{:?}", d.state);
            ensure!(
                d.reports.iter().all(|r| r.at > t_down && !r.answered),
                "{:?}",
                d.reports
            );
        }
        Ok::<_, anyhow::Error>(vs)
    })
    .map_err(|e| lab.fail("router link down", e))?;
    let d = views[0].iter().find(|d| d.id == cut_id).context("device")?;
    eprintln!("6. {cut_id} link down: {:?}, cause {:?}", d.state, d.cause);
    ensure!(d.cause.is_some(), "a down device has a cause");
    // The others stay up meanwhile.
    for v in &views {
        for o in v.iter().filter(|o| o.id != cut_id) {
            ensure!(o.state == DeviceState::Up, "{}: {:?}", o.id, o.state);
        }
    }
    lab.lan.link(&cut_host, true).map_err(anyhow::Error::msg)?;
    let t_up = now();
    eventually(
        "the router up again, seen by every monitor",
        LIMIT,
        POLL,
        || {
            for v in lab.views(&all)? {
                let d = v.iter().find(|d| d.id == cut_id).context("device")?;
                ensure!(d.state == DeviceState::Up, "{:?}", d.state);
                ensure!(
                    d.reports.iter().any(|r| r.at >= t_up && r.answered),
                    "no fresh answer"
                );
            }
            Ok::<_, anyhow::Error>(())
        },
    )
    .map_err(|e| lab.fail("router link up", e))?;
    eprintln!("6. {cut_id} up again");

    // ---- 1. SIGKILL of a monitor.
    let victim = 3;
    let gone = names[victim].clone();
    if let Some(a) = lab.monitors[victim].agent.as_mut() {
        a.kill();
    }
    let t_kill = now();
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
    let (moved, downs) = fault_takeover(&lab, &rest, &a0, &gone, t_kill, "SIGKILL")?;
    eprintln!(
        "1. SIGKILL {gone}: {moved} devices moved, each to one new owner; downs seen {downs}"
    );
    let cfg = lab.config.clone();
    let marks = log_marks(&lab);
    lab.monitors[victim].start(&cfg)?;
    back_again(&lab, &all, &a0, &gone, &marks, "restart after SIGKILL")?;

    // ---- 2. SIGSTOP of a monitor, then SIGCONT.
    let victim = 1;
    let gone = names[victim].clone();
    lab.monitors[victim]
        .agent()?
        .signal("STOP")
        .map_err(anyhow::Error::msg)?;
    let t_stop = now();
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
    let r = fault_takeover(&lab, &rest, &a0, &gone, t_stop, "SIGSTOP");
    let marks = log_marks(&lab);
    lab.monitors[victim]
        .agent()?
        .signal("CONT")
        .map_err(anyhow::Error::msg)?;
    let (moved, downs) = r?;
    eprintln!("2. SIGSTOP {gone}: {moved} devices moved; downs seen {downs}");
    back_again(&lab, &all, &a0, &gone, &marks, "SIGCONT")?;

    // ---- 3. A monitor cut off the bridge.
    let victim = 2;
    let gone = names[victim].clone();
    let host = lab.monitors[victim].host.clone();
    lab.lan.cut(&host, true).map_err(anyhow::Error::msg)?;
    let t_cut = now();
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
    let r = fault_takeover(&lab, &rest, &a0, &gone, t_cut, "cut off");
    // What the cut-off one sees, for the report.
    let minority = lab.monitors[victim].devices().map(|v| {
        let down = v.iter().filter(|d| d.state == DeviceState::Down).count();
        let unknown = v.iter().filter(|d| d.state == DeviceState::Unknown).count();
        format!("{down} down, {unknown} unknown of {}", v.len())
    });
    let marks = log_marks(&lab);
    lab.lan.cut(&host, false).map_err(anyhow::Error::msg)?;
    let (moved, downs) = r?;
    eprintln!(
        "3. {gone} cut off: {moved} devices moved; downs seen on the majority side {downs}; \
         the cut-off monitor saw {minority:?}"
    );
    back_again(&lab, &all, &a0, &gone, &marks, "heal")?;

    eprintln!("{test}: done in {:?}", t0.elapsed());
    Ok(())
}

/// `gone` is lost to the monitors `rest`: they agree on an assignment
/// without it in which only its devices moved, every device has K fresh
/// answered samples after `since`, and while waiting no device was seen
/// "down" from `rest`. Returns (devices moved, downs seen).
fn fault_takeover(
    lab: &Lab,
    rest: &[usize],
    a0: &Assignment,
    gone: &str,
    since: u64,
    what: &str,
) -> Result<(usize, usize)> {
    let mut downs = Vec::new();
    let after = eventually(
        &format!("{what}: the others agree on owners without {gone}"),
        LIMIT,
        POLL,
        || {
            let a = lab.agreed_assignment(rest, MONITORS - 1)?;
            let moved = takeover(a0, &a, gone)?;
            Ok::<_, anyhow::Error>((a, moved))
        },
    )
    .map_err(|e| lab.fail(what, e))?;
    let (a1, moved) = after;
    eventually(
        &format!("{what}: fresh answered samples from the new owners"),
        LIMIT,
        POLL,
        || {
            let vs = lab.views(rest)?;
            for v in &vs {
                for d in v.iter().filter(|d| d.state == DeviceState::Down) {
                    downs.push(format!("{} {:?}", d.id, d.cause));
                }
            }
            all_fresh(&vs, &a1, since)
        },
    )
    .map_err(|e| lab.fail(what, e))?;
    ensure!(
        downs.is_empty(),
        "{what}: devices seen down from the majority side: {downs:?}"
    );
    Ok((moved, downs.len()))
}

/// The survivors' log lengths, to look at what they log from now on.
fn log_marks(lab: &Lab) -> Vec<usize> {
    lab.monitors
        .iter()
        .map(|m| m.agent.as_ref().map(|a| a.log().len()).unwrap_or(0))
        .collect()
}

/// A log line's time of day (seconds), from its RFC 3339 stamp.
fn log_time(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split_once('T')?.1;
    let t = t.trim_end_matches('Z');
    let mut p = t.split(':');
    let h: f64 = p.next()?.parse().ok()?;
    let m: f64 = p.next()?.parse().ok()?;
    let s: f64 = p.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// For each other monitor, from its log since `marks`: the time between
/// `back` joining again and its counting `back` again (seconds), or
/// `None` when the log does not show both.
fn settle_waits(lab: &Lab, marks: &[usize], back: &str) -> Vec<(String, Option<f64>)> {
    let quoted = format!("\"{back}\"");
    let joined = format!("EventMemberJoin node={back} ");
    lab.monitors
        .iter()
        .zip(marks)
        .filter(|(m, _)| m.name != back)
        .map(|(m, mark)| {
            let log = m.agent.as_ref().map(|a| a.log()).unwrap_or_default();
            let lines: Vec<&str> = log.get(*mark..).unwrap_or("").lines().collect();
            let wait = lines
                .iter()
                .position(|l| l.contains(&joined))
                .and_then(|j| {
                    let counted = lines[j..].iter().find(|l| {
                        l.contains("monitor: assignment")
                            && l.split_once("monitors=")
                                .and_then(|(_, r)| r.split_once("pending="))
                                .is_some_and(|(ms, _)| ms.contains(&quoted))
                    })?;
                    let d = log_time(counted)? - log_time(lines[j])?;
                    Some(d.rem_euclid(86_400.0))
                });
            (m.name.clone(), wait)
        })
        .collect()
}

/// `back` counts again: every monitor in `all` agrees on the original
/// assignment, and its devices have fresh samples from it. The others
/// counted it only after settle, as their logs since `marks` say.
fn back_again(
    lab: &Lab,
    all: &[usize],
    a0: &Assignment,
    back: &str,
    marks: &[usize],
    what: &str,
) -> Result<()> {
    eventually(
        &format!("{what}: {back} owns its devices again"),
        LIMIT,
        POLL,
        || {
            let a = lab.agreed_assignment(all, MONITORS)?;
            ensure!(a == *a0, "not the original assignment yet");
            Ok::<_, anyhow::Error>(())
        },
    )
    .map_err(|e| lab.fail(what, e))?;
    let since = now();
    eventually(
        &format!("{what}: fresh samples from {back} again"),
        LIMIT,
        POLL,
        || all_fresh(&lab.views(all)?, a0, since),
    )
    .map_err(|e| lab.fail(what, e))?;
    let waits = settle_waits(lab, marks, back);
    eprintln!(
        "   {what}: {back} back, original owners, all fresh; counted again after {waits:?} s"
    );
    // Each other monitor saw it join again and counted it only after
    // settle (2 s; the log's stamps are the agents' own clocks).
    for (m, w) in &waits {
        let w =
            w.with_context(|| format!("{what}: {m}'s log shows no rejoin and recount of {back}"))?;
        ensure!(
            w >= SETTLE - 0.05,
            "{what}: {m} counted {back} {w:.2} s after it joined, before settle"
        );
    }
    Ok(())
}
