//! HA apps on the Docker Swarm nuvol forms, for real:
//!
//! - three network namespaces with a dockerd each
//!   (`nuvol_testkit::swarm::SwarmLab`), three `nuvol agent`s with
//!   `--swarm`, apps on the namespace's daemon, an encrypted gossip, and the
//!   same `[[vip]]` tracking the app `web` on all three; `nuvol app install
//!   --ha` of a busybox `httpd` with a health check: it runs as a Swarm
//!   service, answers on the VIP, is listed with the node its task runs
//!   on and published in the catalog from that node only; the node is
//!   killed (everything in its namespace, SIGKILL): Swarm runs the task on
//!   a survivor, whose agent publishes it, whose VIP router becomes master,
//!   and the app answers on the VIP again (the time is printed); `nuvol app
//!   remove` on a survivor removes the Swarm service and the catalog entry
//!   goes; the task runs off the raft leader (`[swarm]
//!   singletons_off_leader`), so the node killed is a follower;
//! - the raft leader is killed instead: the app ends up (or stays) on a
//!   node that is not the new leader and answers on the VIP;
//! - bad input (no root needed): `--ha` on an agent whose Swarm is off is a
//!   clear error and the agent keeps running.
//!
//! The lab skips (or fails under `NUVOL_REQUIRE_SYSTEM=1`) without root,
//! dockerd, iptables or busybox-static.

use nuvol_testkit::docker::{busybox_image, docker_available};
use nuvol_testkit::netns::skip_or_fail;
use nuvol_testkit::swarm::SwarmLab;
use nuvol_testkit::{wait_until_msg, NuvolAgent};
use serde_json::Value;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(200);
const IMAGE: &str = "nuvol-test/busybox:1";
const KEY: &str = "cg8StVXbQJ0gPvMd9o7yrg==";
const VRID: u8 = 61;

/// The HA app: busybox's httpd serving the image's /www, a Compose
/// health check, a catalog check every second.
fn compose() -> String {
    format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n\
         \x20   ports: [\"8080:8080\"]\n    stop_grace_period: 1s\n\
         \x20   healthcheck:\n      test: [\"CMD\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:8080/\"]\n\
         \x20     interval: 1s\n      timeout: 1s\n      retries: 2\n\
         x-nuvol:\n  id: web\n  version: \"1\"\n  publish:\n    - type: http\n      port: 8080\n\
         \x20     checks:\n        - http: \"http://127.0.0.1:8080/\"\n          interval: 1s\n          timeout: 1s\n"
    )
}

/// `GET /` on `addr` (1 s timeouts): the body, if it answered 200.
fn get(addr: &str) -> Option<String> {
    let sa: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: web\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then_some(())?;
    head.contains(" 200 ").then(|| body.to_owned())
}

fn json(a: &NuvolAgent, args: &[&str]) -> Option<Value> {
    let mut v = args.to_vec();
    v.extend(["--format", "json"]);
    let o = a.cli_run(&v).ok()?;
    if !o.status.success() {
        return None;
    }
    serde_json::from_str(&o.stdout).ok()
}

/// The nodes that publish app `web` in `a`'s catalog (passing or not).
fn publishers(a: &NuvolAgent) -> Vec<(String, String)> {
    json(a, &["services"])
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["txt"]["app"] == "web")
        .map(|e| {
            (
                e["node"].as_str().unwrap_or("").to_owned(),
                e["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// The nodes running `web`'s task, from `nuvol app list` on `a`.
fn running_on(a: &NuvolAgent) -> Vec<String> {
    json(a, &["app", "list"])
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .find(|x| x["name"] == "web" && x["ha"] == true && x["state"] == "running")
        .and_then(|x| x["nodes"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect()
}

fn vip_state(a: &NuvolAgent) -> Option<Value> {
    json(a, &["vip", "status"])?
        .as_array()?
        .iter()
        .find(|v| v["vrid"] == VRID)
        .cloned()
}

/// One lab at a time in this process: a lab's bridge and namespaces are
/// named after the process id.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_lab_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The lab, or `None` (skipped, or a panic under NUVOL_REQUIRE_SYSTEM=1).
fn lab(test: &str) -> Option<SwarmLab> {
    if let Err(why) = docker_available() {
        skip_or_fail(test, &why);
        return None;
    }
    if let Err(why) = busybox_image(IMAGE) {
        skip_or_fail(test, &why);
        return None;
    }
    match SwarmLab::start(3, IMAGE) {
        Ok(l) => Some(l),
        Err(why) => {
            skip_or_fail(test, &why);
            None
        }
    }
}

/// The VIP of the lab's subnet (`.100`).
fn vip_of(lab: &SwarmLab) -> String {
    let ip = &lab.ips[0];
    let net = ip.rsplit_once('.').map_or(ip.as_str(), |(n, _)| n);
    format!("{net}.100")
}

/// Three agents with `--swarm`, apps on the lab's daemons and the `[[vip]]`
/// tracking `web` (and `extra` flags), once the swarm has 3 ready
/// managers.
pub fn form(
    lab: &SwarmLab,
    dir: &std::path::Path,
    names: &[String],
    extra: &[&str],
) -> Vec<Option<NuvolAgent>> {
    let vip = vip_of(lab);
    let mut agents: Vec<Option<NuvolAgent>> = Vec::new();
    for (k, name) in names.iter().enumerate() {
        // `ip netns exec` (not the testkit's nsenter wrapper): it mounts
        // the namespace's own /sys, where the VIP router reads eth0's MAC
        // for its gratuitous ARPs (with the host's /sys they would carry
        // the host's MAC, and clients would keep the dead node's entry
        // until their own ARP probes fail).
        let program = dir.join(format!("in-netns{k}"));
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\nexec ip netns exec {} {NUVOL} \"$@\"\n",
                lab.namespaces[k]
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let data = dir.join(format!("data{k}"));
        let cfg = dir.join(format!("nuvol{k}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[[vip]]\naddress = \"{vip}/24\"\ninterface = \"eth0\"\nvrid = {VRID}\n\
                 priority = 100\nadvert_interval = \"1s\"\ngarp_delay = \"1s\"\ntrack_apps = [\"web\"]\n"
            ),
        )
        .unwrap();
        let sock = lab.docker(k).socket().display().to_string();
        let mut b = NuvolAgent::builder(program.to_str().unwrap(), name)
            .ip(lab.ips[k].parse().unwrap())
            .encrypt(KEY)
            .data_dir(&data)
            .arg(format!("--config={}", cfg.display()))
            .arg("--mdns=false")
            .arg(format!("--docker-socket={sock}"))
            .arg("--swarm")
            .arg(format!("--swarm-docker={sock}"))
            .args(extra.iter().copied())
            .wait_ready(false);
        if k > 0 {
            b = b.join(format!("{}:7946", lab.ips[0]));
        }
        agents.push(Some(b.spawn().unwrap()));
    }
    let formed = wait_until_msg("the swarm formed (3 ready managers)", T, POLL, || {
        agents.iter().flatten().any(|a| {
            json(a, &["swarm", "status"]).is_some_and(|v| {
                let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
                nodes.len() == 3
                    && nodes
                        .iter()
                        .all(|n| n["state"] == "ready" && n["role"] == "manager")
                    && v["managers"].as_array().is_some_and(|m| m.len() == 3)
            })
        })
    });
    if let Err(e) = formed {
        for a in agents.iter().flatten() {
            eprintln!("{}:\n{}", a.name(), a.log_tail(30));
        }
        panic!("{e}");
    }
    agents
}

/// The gossip name of the Swarm's raft leader, as `a` sees it.
fn leader_of(a: &NuvolAgent) -> Option<String> {
    json(a, &["swarm", "status"])?["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["leader"] == true)
        .and_then(|n| n["name"].as_str())
        .map(str::to_owned)
}

fn dump(agents: &[Option<NuvolAgent>]) {
    for a in agents.iter().flatten() {
        eprintln!(
            "--- {}: vip {:?}, publishers {:?}\n{}",
            a.name(),
            vip_state(a),
            publishers(a),
            a.log_tail(40)
        );
    }
}

/// Install `web` with `--ha` on node 0 and wait until it answers on the
/// VIP (with `off_leader`, from a node that is not the raft leader:
/// `[swarm] singletons_off_leader`): the node running it.
fn install_and_wait(
    lab: &SwarmLab,
    agents: &[Option<NuvolAgent>],
    names: &[String],
    dir: &std::path::Path,
    off_leader: bool,
) -> usize {
    let vip = format!("{}:8080", vip_of(lab));
    let file = dir.join("web.yaml");
    std::fs::write(&file, compose()).unwrap();
    let a0 = agents[0].as_ref().unwrap();
    let out = a0
        .cli_run(&["app", "install", file.to_str().unwrap(), "--ha"])
        .unwrap();
    assert!(out.status.success(), "{out:?}\n{}", a0.log_tail(30));
    let mut on = Vec::new();
    let mut leader = None;
    let r = wait_until_msg("the HA app answers on the VIP", T, POLL, || {
        on = running_on(agents[0].as_ref().unwrap());
        leader = leader_of(agents[0].as_ref().unwrap());
        on.len() == 1
            && (!off_leader || leader.as_ref().is_some_and(|l| *l != on[0]))
            && get(&vip).is_some_and(|b| b.contains("hello from nuvol"))
    });
    if let Err(e) = r {
        dump(agents);
        panic!("{e}: running on {on:?}, the leader {leader:?} (off the leader: {off_leader})");
    }
    names.iter().position(|n| *n == on[0]).expect("one of ours")
}

/// Install `web` (see [`install_and_wait`]), kill the node running its
/// task and wait until it answers on the VIP again: (the victim, the node
/// running it now, the time it took).
pub fn install_kill_and_wait(
    lab: &mut SwarmLab,
    agents: &mut [Option<NuvolAgent>],
    names: &[String],
    dir: &std::path::Path,
    off_leader: bool,
) -> (usize, usize, Duration) {
    let vip = format!("{}:8080", vip_of(lab));
    let victim = install_and_wait(lab, agents, names, dir, off_leader);
    let survivors: Vec<usize> = (0..3).filter(|k| *k != victim).collect();
    // Published from the node that runs it, and only from there.
    let s = survivors[0];
    wait_until_msg("published from the task's node only", T, POLL, || {
        let p = publishers(agents[s].as_ref().unwrap());
        !p.is_empty() && p.iter().all(|(n, _)| *n == names[victim])
    })
    .unwrap();
    let leader = leader_of(agents[s].as_ref().unwrap()).unwrap_or_default();
    eprintln!(
        "web runs on node {victim}{}; killing it",
        if leader == names[victim] {
            " (the Swarm leader)"
        } else {
            ""
        }
    );
    // A node that lost power: everything in its namespace killed and its
    // link cut (its containers' processes, in namespaces of their own,
    // would otherwise still answer on its addresses, the VIP included).
    let t0 = Instant::now();
    lab.cut_link(victim);
    lab.kill_node(victim);
    if let Some(mut a) = agents[victim].take() {
        a.kill();
    }
    // Beside the VIP, when Swarm reports the task running on a survivor
    // (nuvol's part is the rest: publish, check, VIP takeover).
    let (r, took, task_at) = std::thread::scope(|sc| {
        let watcher = agents[s].as_ref().unwrap();
        let victim_name = &names[victim];
        let task = sc.spawn(move || {
            wait_until_msg("a survivor runs the task", T, POLL, || {
                running_on(watcher).iter().any(|n| n != victim_name)
            })
            .ok()
            .map(|()| t0.elapsed())
        });
        let survivors: Vec<&NuvolAgent> = survivors
            .iter()
            .filter_map(|k| agents[*k].as_ref())
            .collect();
        let steps = sc.spawn(move || {
            let mut passing = None;
            let mut master = None;
            let _ = wait_until_msg("published and master", T, POLL, || {
                for a in &survivors {
                    if passing.is_none()
                        && publishers(a)
                            .iter()
                            .any(|(n, st)| n != victim_name && st == "passing")
                    {
                        passing = Some(t0.elapsed());
                    }
                    if master.is_none() && vip_state(a).is_some_and(|v| v["state"] == "master") {
                        master = Some(t0.elapsed());
                    }
                }
                passing.is_some() && master.is_some()
            });
            (passing, master)
        });
        let r = wait_until_msg("the HA app answers on the VIP again", T, POLL, || {
            get(&vip).is_some_and(|b| b.contains("hello from nuvol"))
        });
        let took = t0.elapsed();
        let (passing, master) = steps.join().unwrap_or((None, None));
        (r, took, (task.join().ok().flatten(), passing, master))
    });
    let secs = |t: Option<Duration>| {
        t.map_or_else(|| "?".to_owned(), |t| format!("{:.1}s", t.as_secs_f64()))
    };
    eprintln!(
        "after the kill: Swarm runs the task on a survivor {}, its entry passes in the catalog {}, \
         its VIP router is master {}, the app answers on the VIP {:.1}s",
        secs(task_at.0),
        secs(task_at.1),
        secs(task_at.2),
        took.as_secs_f64()
    );
    if let Err(e) = r {
        dump(agents);
        panic!("{e}");
    }
    let mut now = Vec::new();
    wait_until_msg("a survivor runs the task", T, POLL, || {
        now = running_on(agents[s].as_ref().unwrap());
        now.len() == 1 && now[0] != names[victim]
    })
    .unwrap();
    let new = names
        .iter()
        .position(|n| *n == now[0])
        .expect("one of ours");
    (victim, new, took)
}

#[test]
fn an_ha_app_follows_its_task_and_the_vip_follows_the_app() {
    let _serial = one_lab_at_a_time();
    let Some(mut lab) = lab("swarm_ha_netns") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let names: Vec<String> = (0..3).map(|k| format!("ha{pid}-{k}")).collect();
    let mut agents = form(&lab, dir.path(), &names, &[]);
    let (victim, new, took) =
        install_kill_and_wait(&mut lab, &mut agents, &names, dir.path(), true);
    eprintln!(
        "BENCH ha failover: the app answers on the VIP again {:.1}s after its node was killed (heartbeat 1s, restart delay 1s)",
        took.as_secs_f64()
    );
    assert_ne!(victim, new);
    let a = agents[new].as_ref().unwrap();
    // The catalog shows it published from the new node, passing (the
    // victim's entry is no longer passing: its member failed).
    wait_until_msg("published from the new node, passing", T, POLL, || {
        let p = publishers(a);
        p.contains(&(names[new].clone(), "passing".to_owned()))
            && p.iter().all(|(n, s)| *n != names[victim] || s != "passing")
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", publishers(a)));
    let v = vip_state(a).unwrap();
    assert_eq!(v["state"], "master", "{v}");
    // Status names the node and the Swarm task.
    let st = json(a, &["app", "status", "web"]).unwrap();
    assert_eq!(st["ha"], true, "{st}");
    assert_eq!(st["nodes"][0], names[new].as_str(), "{st}");
    let text = a.cli_run(&["app", "list"]).unwrap();
    assert!(
        text.stdout.contains(&format!("ha:{}", names[new])),
        "{text:?}"
    );
    // Operations that are Swarm's say so.
    let o = a.cli_run(&["app", "stop", "web"]).unwrap();
    assert!(
        !o.status.success() && o.stderr.contains("is an HA app"),
        "{o:?}"
    );
    // Removed from any manager: the service goes, and its entry with it.
    let other = (0..3).find(|k| *k != victim && *k != new).unwrap();
    let b = agents[other].as_ref().unwrap();
    let out = b.cli_run(&["app", "remove", "web"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    // (The victim's stale entry stays until its member is reaped.)
    wait_until_msg("the entry is retracted", T, POLL, || {
        publishers(a).iter().all(|(n, _)| *n == names[victim])
    })
    .unwrap();
    let st = b.cli_run(&["app", "status", "web"]).unwrap();
    assert!(!st.status.success(), "{st:?}");
    assert!(st.stderr.contains("no app named"), "{st:?}");
    drop(agents);
}

/// `[swarm] singletons_off_leader`: the raft leader is killed while a
/// follower runs the app. The app keeps running there unless the new
/// leader is that very node; then the leader label moves to it and Swarm
/// moves the task to the other survivor. Either way the app ends up
/// answering on the VIP from a node that is not the new leader; the
/// longest outage seen from the host is printed.
#[test]
fn killing_the_leader_keeps_the_app_off_the_new_leader() {
    let _serial = one_lab_at_a_time();
    let Some(mut lab) = lab("swarm_ha_netns leader") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let names: Vec<String> = (0..3).map(|k| format!("hl{pid}-{k}")).collect();
    let mut agents = form(&lab, dir.path(), &names, &[]);
    let on = install_and_wait(&lab, &agents, &names, dir.path(), true);
    let old = leader_of(agents[on].as_ref().unwrap()).expect("a leader");
    let victim = names.iter().position(|n| *n == old).expect("one of ours");
    assert_ne!(victim, on, "installed off the leader");
    eprintln!("web runs on node {on}; killing the leader, node {victim}");
    let vip = format!("{}:8080", vip_of(&lab));
    let t0 = Instant::now();
    lab.cut_link(victim);
    lab.kill_node(victim);
    if let Some(mut a) = agents[victim].take() {
        a.kill();
    }
    let watcher = agents[on].as_ref().unwrap();
    // Poll the app through the VIP; done once a new leader is known, the
    // task runs on a survivor that is not it, the app answers, and all of
    // that has held for 10 s (a move the label causes would have started).
    let mut longest = Duration::ZERO;
    let mut down_since: Option<Instant> = None;
    let mut settled_since: Option<Instant> = None;
    let mut moved = false;
    let mut last = (None, Vec::new());
    while t0.elapsed() < T {
        let ok = get(&vip).is_some_and(|b| b.contains("hello from nuvol"));
        match (ok, down_since) {
            (false, None) => down_since = Some(Instant::now()),
            (true, Some(d)) => {
                longest = longest.max(d.elapsed());
                down_since = None;
            }
            _ => {}
        }
        let leader = leader_of(watcher).filter(|l| *l != old);
        let running = running_on(watcher);
        if running.iter().any(|n| *n != names[on]) {
            moved = true;
        }
        let settled = ok
            && leader.as_ref().is_some_and(|l| {
                running.len() == 1 && running[0] != *l && running[0] != names[victim]
            });
        last = (leader, running);
        if !settled {
            settled_since = None;
        } else if settled_since.get_or_insert_with(Instant::now).elapsed()
            >= Duration::from_secs(10)
        {
            break;
        }
        std::thread::sleep(POLL);
    }
    if settled_since.is_none_or(|s| s.elapsed() < Duration::from_secs(10)) {
        dump(&agents);
        panic!(
            "after killing the leader: new leader {:?}, web running on {:?}, VIP answers: {}",
            last.0,
            last.1,
            get(&vip).is_some()
        );
    }
    eprintln!(
        "BENCH ha leader loss: new leader {:?}, the app {} node {on}; longest outage on the VIP {:.1}s",
        last.0,
        if moved { "moved off" } else { "stayed on" },
        longest.as_secs_f64()
    );
    drop(agents);
}

/// BENCHMARKS.md (scripts/bench-ha.sh): from the kill of the node running
/// an HA app's task until the app answers on the VIP again, with nuvol's
/// tuning (heartbeat 1s, restart delay 1s, raft election 3 ticks, the app
/// off the raft leader), the same with a 500ms heartbeat, and Swarm's
/// defaults (5s, 5s, 10 ticks, anywhere), `NUVOL_BENCH_RUNS` labs each
/// (default 3; `NUVOL_BENCH_ONLY=LABEL` for one row); the medians.
#[test]
#[ignore = "a benchmark: scripts/bench-ha.sh"]
fn ha_failover_time_nuvol_tuning_vs_swarm_defaults() {
    let _serial = one_lab_at_a_time();
    let runs: usize = std::env::var("NUVOL_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let mut rows = Vec::new();
    // NUVOL_BENCH_ONLY=LABEL runs one row.
    let only = std::env::var("NUVOL_BENCH_ONLY").ok();
    for (label, heartbeat, delay, election, off_leader) in [
        ("nuvol", "1s", "1s", "3", true),
        ("nuvol heartbeat 500ms", "500ms", "1s", "3", true),
        ("swarm defaults", "5s", "5s", "10", false),
    ] {
        if only.as_deref().is_some_and(|o| o != label) {
            continue;
        }
        let mut times = Vec::new();
        for run in 0..runs {
            let Some(mut lab) = lab("swarm_ha_netns bench") else {
                return;
            };
            let dir = tempfile::tempdir().unwrap();
            let pid = std::process::id();
            let names: Vec<String> = (0..3).map(|k| format!("hb{pid}-{run}-{k}")).collect();
            let hb = format!("--swarm-heartbeat={heartbeat}");
            let rd = format!("--swarm-task-restart-delay={delay}");
            let et = format!("--swarm-election-ticks={election}");
            let ol = format!("--swarm-singletons-off-leader={off_leader}");
            let mut agents = form(
                &lab,
                dir.path(),
                &names,
                &[hb.as_str(), rd.as_str(), et.as_str(), ol.as_str()],
            );
            let (victim, new, took) =
                install_kill_and_wait(&mut lab, &mut agents, &names, dir.path(), off_leader);
            eprintln!(
                "BENCH {label} run {run}: heartbeat {heartbeat}, restart delay {delay}, election {election} ticks: \
                 answers on the VIP again after {:.1}s (killed node {victim}, now on {new})",
                took.as_secs_f64()
            );
            times.push(took);
            drop(agents);
        }
        times.sort();
        rows.push((label, times));
    }
    for (label, times) in rows {
        let all: Vec<String> = times
            .iter()
            .map(|t| format!("{:.1}", t.as_secs_f64()))
            .collect();
        eprintln!(
            "BENCH {label}: median {:.1}s of [{}] s",
            times[times.len() / 2].as_secs_f64(),
            all.join(", ")
        );
    }
}

#[test]
fn an_ha_install_without_swarm_is_a_clear_error_and_the_agent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let a = NuvolAgent::builder(NUVOL, "ha-noswarm")
        .data_dir(dir.path().join("a"))
        .arg("--mdns=false")
        .arg(format!(
            "--docker-socket={}",
            dir.path().join("nope.sock").display()
        ))
        .spawn()
        .unwrap();
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, compose()).unwrap();
    let mut out = None;
    wait_until_msg("the install is refused", T, POLL, || {
        let o = a
            .cli_run(&["app", "install", file.to_str().unwrap(), "--ha"])
            .unwrap();
        let done = !o.status.success() && !o.stderr.contains("starting");
        out = Some(o);
        done
    })
    .unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let o = out.unwrap();
    assert!(
        o.stderr.contains("Docker Swarm, which is off on this node"),
        "{o:?}"
    );
    // x-nuvol.ha without --ha: the same.
    let file2 = dir.path().join("web2.yaml");
    std::fs::write(
        &file2,
        compose().replace("  id: web\n", "  id: web\n  ha: true\n"),
    )
    .unwrap();
    let o = a
        .cli_run(&["app", "install", file2.to_str().unwrap()])
        .unwrap();
    assert!(
        o.stderr.contains("Docker Swarm, which is off on this node"),
        "{o:?}"
    );
    // Nothing was installed, and the agent still answers.
    let l = json(&a, &["app", "list"]).unwrap();
    assert_eq!(l, serde_json::json!([]), "{l}");
    let m = a.cli(&["members"]).unwrap();
    assert!(m.contains("ha-noswarm"), "{m}");
}
