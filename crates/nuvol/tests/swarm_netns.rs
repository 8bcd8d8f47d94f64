//! Docker Swarm formed by nuvol, for real:
//!
//! - three network namespaces on one bridge, a private dockerd in each
//!   (`nuvol_testkit::swarm::SwarmLab`), three `nuvol agent`s with
//!   `--swarm` and an encrypted gossip: the swarm forms by itself (3 nodes
//!   ready, 3 managers, seen with `nuvol swarm status --format json`); a
//!   one-replica busybox `httpd` service runs; the node running it is
//!   killed (everything in its namespace, SIGKILL): the two others keep a
//!   swarm with a quorum and Swarm runs the task on a survivor (the time is
//!   printed); before that, fencing: a one-replica service whose containers
//!   carry `nuvol.ha.singleton=true` runs, the node running its task is
//!   cut off from the two others (iptables drops in its namespace): nuvol
//!   on that node stops its container (and it stays stopped, `fenced` in
//!   its status, `nuvol_swarm_fenced_total`), while the majority runs a new
//!   task and fences nothing; the cut is healed and the swarm has 3 ready
//!   managers again; `nuvol leave` on a survivor drains it, it leaves the swarm,
//!   and the last node removes it from the node list;
//! - bad input (no root needed): a docker socket that does not exist is a
//!   clear error in `/v1/swarm` and `nuvol swarm status`, the node's tag
//!   says `e`, while the component and the rest of the agent run.
//!
//! The lab skips (or fails under `NUVOL_REQUIRE_SYSTEM=1`) without root,
//! dockerd, iptables or busybox-static.

use nuvol_testkit::docker::{busybox_image, docker_available};
use nuvol_testkit::netns::skip_or_fail;
use nuvol_testkit::swarm::SwarmLab;
use nuvol_testkit::{wait_until_msg, NuvolAgent};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(250);
const IMAGE: &str = "nuvol-test/busybox:1";
const KEY: &str = "cg8StVXbQJ0gPvMd9o7yrg==";

fn status(a: &NuvolAgent) -> Option<Value> {
    let o = a.cli_run(&["swarm", "status", "--format", "json"]).ok()?;
    if !o.status.success() {
        return None;
    }
    serde_json::from_str(&o.stdout).ok()
}

/// `GET /v1/agent/components` of an agent on the host's loopback.
fn components(a: &NuvolAgent) -> Vec<Value> {
    use std::io::{Read, Write};
    let get = || -> Option<Vec<Value>> {
        let mut s = std::net::TcpStream::connect((a.ip(), 7000)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET /v1/agent/components HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let (_, body) = out.split_once("\r\n\r\n")?;
        serde_json::from_str::<Value>(body)
            .ok()?
            .as_array()
            .cloned()
    };
    get().unwrap_or_default()
}

/// `docker ARGS` against node `k`'s daemon, with the offline image rule.
fn docker(lab: &SwarmLab, k: usize, args: &[&str]) -> Result<String, String> {
    let sock = format!("unix://{}", lab.docker(k).socket().display());
    let out = Command::new("docker")
        .arg("-H")
        .arg(&sock)
        .args(args)
        .env("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE", "1")
        .output()
        .map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The Swarm node id of node `k`.
fn node_id(lab: &SwarmLab, k: usize) -> String {
    docker(lab, k, &["info", "--format", "{{.Swarm.NodeID}}"]).unwrap_or_default()
}

/// Swarm node ids running a task of `service`, asked of node `k`.
fn running_on(lab: &SwarmLab, k: usize, service: &str) -> Vec<String> {
    let Ok(ids) = docker(
        lab,
        k,
        &[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            service,
        ],
    ) else {
        return Vec::new();
    };
    ids.lines()
        .filter_map(|t| {
            docker(
                lab,
                k,
                &["inspect", "--format", "{{.NodeID}} {{.Status.State}}", t],
            )
            .ok()
        })
        .filter_map(|l| {
            let (node, state) = l.split_once(' ')?;
            (state == "running").then(|| node.to_owned())
        })
        .collect()
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

/// Three agents with `--swarm` (and `extra` flags), one per namespace,
/// once the swarm they form has 3 ready managers.
fn form(lab: &SwarmLab, extra: &[&str]) -> (Vec<Option<NuvolAgent>>, Vec<tempfile::TempDir>) {
    let pid = std::process::id();
    let mut agents: Vec<Option<NuvolAgent>> = Vec::new();
    let mut datas = Vec::new();
    for k in 0..3 {
        let program = lab.docker(k).wrap(std::path::Path::new(NUVOL)).unwrap();
        let data = tempfile::tempdir().unwrap();
        let mut b = NuvolAgent::builder(program.to_str().unwrap(), &format!("sw{pid}-{k}"))
            .ip(lab.ips[k].parse().unwrap())
            .encrypt(KEY)
            .data_dir(data.path())
            .arg("--mdns=false")
            .arg("--apps=false")
            .arg("--swarm")
            .arg(format!(
                "--swarm-docker={}",
                lab.docker(k).socket().display()
            ))
            .arg("--drain-timeout=45s")
            .arg("--swarm-leave-drain-timeout=30s")
            .arg("--swarm-fence-after=2s")
            // A healed partition merges within seconds.
            .arg("--reconnect-interval=2s")
            .args(extra.iter().copied())
            .wait_ready(false);
        if k > 0 {
            b = b.join(format!("{}:7946", lab.ips[0]));
        }
        agents.push(Some(b.spawn().unwrap()));
        datas.push(data);
    }
    // The swarm forms: 3 nodes ready, 3 managers, every member tagged.
    wait_formed(&agents);
    (agents, datas)
}

/// Until some agent sees 3 ready managers, every member tagged.
fn wait_formed(agents: &[Option<NuvolAgent>]) {
    let formed = wait_until_msg("the swarm formed (3 ready managers)", T, POLL, || {
        agents.iter().flatten().any(|a| {
            status(a).is_some_and(|v| {
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
            eprintln!("{}: {:?}\n{}", a.name(), status(a), a.log_tail(30));
        }
        panic!("{e}");
    }
}

/// `GET /metrics` of an agent.
fn metrics(a: &NuvolAgent) -> String {
    use std::io::{Read, Write};
    let get = || -> Option<String> {
        let mut s = std::net::TcpStream::connect((a.ip(), 7000)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    get().unwrap_or_default()
}

/// Fencing: a singleton service's node is cut off from the two others;
/// its copy is stopped by nuvol there while the majority runs a new one;
/// then the cut is healed.
fn fence_a_cut_off_node(lab: &SwarmLab, agents: &[Option<NuvolAgent>], ids: &[String]) {
    // Not on the raft leader: cutting the leader off adds an election to
    // the majority's failover and to the heal, tens of seconds of test
    // time, and nothing to what is tested here.
    let leader = docker(
        lab,
        0,
        &["node", "ls", "--format", "{{.ID}} {{.ManagerStatus}}"],
    )
    .unwrap()
    .lines()
    .find_map(|l| l.strip_suffix(" Leader").map(str::to_owned))
    .expect("a leader");
    let not_leader = format!("node.id!={leader}");
    docker(
        lab,
        0,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "db",
            "--replicas",
            "1",
            "--restart-delay",
            "1s",
            "--container-label",
            "nuvol.ha.singleton=true",
            "--container-label",
            "nuvol.app=db",
            "--container-label",
            "nuvol.service=db",
            "--constraint",
            &not_leader,
            "--no-resolve-image",
            IMAGE,
            "httpd",
            "-f",
            "-p",
            "8081",
        ],
    )
    .unwrap();
    let mut on = String::new();
    wait_until_msg("the singleton runs", T, POLL, || {
        on = running_on(lab, 0, "db")
            .into_iter()
            .next()
            .unwrap_or_default();
        !on.is_empty()
    })
    .unwrap();
    let x = ids.iter().position(|i| *i == on).expect("a node of ours");
    let others: Vec<usize> = (0..3).filter(|k| *k != x).collect();
    let local = |k: usize| {
        docker(
            lab,
            k,
            &["ps", "-q", "--filter", "label=nuvol.ha.singleton=true"],
        )
        .unwrap_or_default()
    };
    assert!(!local(x).is_empty(), "its container runs on node {x}");
    eprintln!("the singleton runs on node {x}; cutting it off");
    let t0 = Instant::now();
    lab.cut(x).unwrap();
    let ax = agents[x].as_ref().unwrap();
    let mut last = None;
    wait_until_msg("the cut-off node fenced its copy", T, POLL, || {
        last = status(ax);
        local(x).is_empty()
            && last
                .as_ref()
                .is_some_and(|v| v["fenced"].as_str().is_some_and(|f| f.contains("minority")))
    })
    .unwrap_or_else(|e| panic!("{e}: {last:?}\n{}", ax.log_tail(30)));
    eprintln!(
        "BENCH fencing: the cut-off node's singleton container stopped {:.1}s after the cut (fence_after 2s)",
        t0.elapsed().as_secs_f64()
    );
    wait_until_msg("the majority runs a new task", T, POLL, || {
        running_on(lab, others[0], "db").iter().any(|n| *n != on)
    })
    .unwrap();
    eprintln!(
        "the majority runs a new copy {:.1}s after the cut",
        t0.elapsed().as_secs_f64()
    );
    // The majority fenced nothing; the cut-off copy stays stopped, while
    // the cut-off node counts what it stopped.
    for &k in &others {
        let v = status(agents[k].as_ref().unwrap()).unwrap();
        assert!(v["fenced"].is_null(), "node {k}: {v}");
        assert_eq!(v["fenced_total"], 0, "node {k}: {v}");
    }
    let copies: usize = others.iter().map(|&k| local(k).lines().count()).sum();
    assert_eq!(copies, 1, "one new copy on the majority side");
    assert!(local(x).is_empty(), "the fenced copy stays stopped");
    let m = metrics(ax);
    let line = m
        .lines()
        .find(|l| l.starts_with("nuvol_swarm_fenced_total "))
        .unwrap_or_else(|| panic!("no nuvol_swarm_fenced_total in {m}"));
    assert_ne!(line, "nuvol_swarm_fenced_total 0", "{m}");
    assert!(ax.log_contains("swarm: fenced: stopped a singleton container"));
    let out = ax.cli_run(&["swarm", "status"]).unwrap();
    assert!(out.stdout.contains("Fenced: minority side"), "{out:?}");

    // Healed: no longer fenced, and the swarm has its 3 managers again.
    lab.heal(x).unwrap();
    let t1 = Instant::now();
    wait_until_msg("the healed node is no longer fenced", T, POLL, || {
        status(ax).is_some_and(|v| v["fenced"].is_null())
    })
    .unwrap();
    eprintln!(
        "healed: no longer fenced after {:.1}s",
        t1.elapsed().as_secs_f64()
    );
    // Every daemon (the healed one included, whose own status may still
    // show the node list from before the cut) sees 3 ready managers with
    // a leader: raft has its 3 members again.
    wait_until_msg("the swarm whole again", T, POLL, || {
        (0..3).all(|k| {
            docker(
                lab,
                k,
                &["node", "ls", "--format", "{{.Status}} {{.ManagerStatus}}"],
            )
            .is_ok_and(|l| {
                let rows: Vec<&str> = l.lines().collect();
                rows.len() == 3
                    && rows.iter().all(|r| {
                        r.starts_with("Ready ")
                            && (r.ends_with(" Leader") || r.ends_with(" Reachable"))
                    })
            })
        })
    })
    .unwrap();
    wait_formed(agents);
    assert!(ax.log_contains("swarm: back on the majority side"));
    docker(lab, others[0], &["service", "rm", "db"]).unwrap();
    eprintln!(
        "the fencing scenario took {:.1}s from the cut to the healed swarm",
        t0.elapsed().as_secs_f64()
    );
}

/// Create the one-replica `web` service (restart delay `delay`) on node 0,
/// kill the node running its task, and wait until a survivor runs it:
/// (the victim, the survivors, the time it took).
fn kill_and_wait(
    lab: &mut SwarmLab,
    agents: &mut [Option<NuvolAgent>],
    ids: &[String],
    delay: &str,
) -> (usize, Vec<usize>, Duration) {
    docker(
        lab,
        0,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "1",
            "--restart-delay",
            delay,
            "--no-resolve-image",
            IMAGE,
            "httpd",
            "-f",
            "-p",
            "8080",
        ],
    )
    .unwrap();
    let mut on = String::new();
    wait_until_msg("the service runs", T, POLL, || {
        on = running_on(lab, 0, "web")
            .into_iter()
            .next()
            .unwrap_or_default();
        !on.is_empty()
    })
    .unwrap();
    let victim = ids.iter().position(|i| *i == on).expect("a node of ours");
    let survivors: Vec<usize> = (0..3).filter(|k| *k != victim).collect();
    eprintln!("the service runs on node {victim}; killing it");
    let t0 = Instant::now();
    lab.kill_node(victim);
    if let Some(mut a) = agents[victim].take() {
        a.kill();
    }
    wait_until_msg("the service runs again on a survivor", T, POLL, || {
        running_on(lab, survivors[0], "web")
            .iter()
            .any(|n| *n != on)
    })
    .unwrap();
    (victim, survivors, t0.elapsed())
}

#[test]
fn three_daemons_form_a_swarm_that_survives_a_node() {
    let Some(mut lab) = lab("swarm_netns") else {
        return;
    };
    let (mut agents, _datas) = form(&lab, &[]);
    let ids: Vec<String> = (0..3).map(|k| node_id(&lab, k)).collect();
    assert!(ids.iter().all(|i| !i.is_empty()), "{ids:?}");
    // Every node is in the same swarm, and nuvol tuned its heartbeat.
    let clusters: Vec<String> = (0..3)
        .map(|k| docker(&lab, k, &["info", "--format", "{{.Swarm.Cluster.ID}}"]).unwrap())
        .collect();
    assert!(
        clusters.iter().all(|c| !c.is_empty() && *c == clusters[0]),
        "{clusters:?}"
    );
    let hb = docker(
        &lab,
        0,
        &[
            "info",
            "--format",
            "{{.Swarm.Cluster.Spec.Dispatcher.HeartbeatPeriod}}",
        ],
    )
    .unwrap();
    assert_eq!(hb, "1s", "the dispatcher heartbeat nuvol set");
    let election = docker(
        &lab,
        0,
        &[
            "info",
            "--format",
            "{{.Swarm.Cluster.Spec.Raft.ElectionTick}}",
        ],
    )
    .unwrap();
    assert_eq!(election, "3", "the raft election timeout nuvol set");

    fence_a_cut_off_node(&lab, &agents, &ids);

    let (_victim, survivors, took) = kill_and_wait(&mut lab, &mut agents, &ids, "1s");

    eprintln!(
        "BENCH swarm failover: the task runs again on a survivor {:.1}s after its node was killed (heartbeat 1s, restart delay 1s)",
        took.as_secs_f64()
    );
    // The two survivors still have a swarm with a quorum (managers answer).
    for &k in &survivors {
        let ls = docker(&lab, k, &["node", "ls", "--format", "{{.ID}} {{.Status}}"]);
        assert!(ls.is_ok(), "node {k}: {ls:?}");
    }
    // nuvol leave on a survivor: it drains, leaves, and is removed.
    let (leaver, last) = (survivors[1], survivors[0]);
    let a = agents[leaver].as_ref().unwrap();
    let out = a.cli_run(&["leave"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_until_msg("the leaver is out of the swarm", T, POLL, || {
        docker(
            &lab,
            leaver,
            &["info", "--format", "{{.Swarm.LocalNodeState}}"],
        )
        .is_ok_and(|s| s == "inactive")
    })
    .unwrap();
    let leaver_id = ids[leaver].clone();
    wait_until_msg("the last node removed the leaver", T, POLL, || {
        docker(&lab, last, &["node", "ls", "-q"])
            .is_ok_and(|l| !l.lines().any(|i| leaver_id.starts_with(i.trim())))
    })
    .unwrap();
    let log = agents[leaver].as_ref().unwrap().log_text();
    assert!(log.contains("swarm: leaving (drain first)"), "{log}");
    // The service is still running, on the last node.
    wait_until_msg("the service runs on the last node", T, POLL, || {
        running_on(&lab, last, "web").contains(&ids[last])
    })
    .unwrap();
    let _ = docker(&lab, last, &["service", "rm", "web"]);
    drop(agents);
}

/// BENCHMARKS.md: the time until a one-replica service runs again after
/// its node is killed, with nuvol's tuning (heartbeat 1s, restart delay
/// 1s) and with Swarm's defaults (5s, 5s), one lab each, in one run.
#[test]
#[ignore = "a benchmark: cargo test -p nuvol --test swarm_netns -- --ignored --nocapture"]
fn failover_time_nuvol_tuning_vs_swarm_defaults() {
    let mut rows = Vec::new();
    for (label, heartbeat, delay) in [("nuvol", "1s", "1s"), ("swarm defaults", "5s", "5s")] {
        let Some(mut lab) = lab("swarm_netns bench") else {
            return;
        };
        let hb = format!("--swarm-heartbeat={heartbeat}");
        let (mut agents, _datas) = form(&lab, &[hb.as_str()]);
        let ids: Vec<String> = (0..3).map(|k| node_id(&lab, k)).collect();
        let (victim, _, took) = kill_and_wait(&mut lab, &mut agents, &ids, delay);
        let leader = victim == 0;
        eprintln!(
            "BENCH {label}: heartbeat {heartbeat}, restart delay {delay}: back after {:.1}s (killed node {victim}{})",
            took.as_secs_f64(),
            if leader { ", the first leader" } else { "" }
        );
        rows.push((label, took));
        drop(agents);
    }
    for (label, took) in rows {
        eprintln!("BENCH {label}: {:.1}s", took.as_secs_f64());
    }
}

#[test]
fn a_missing_daemon_is_a_clear_error_and_the_agent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.sock");
    let a = NuvolAgent::builder(NUVOL, "swarm-nodaemon")
        .encrypt(KEY)
        .data_dir(dir.path().join("a"))
        .arg("--mdns=false")
        .arg("--apps=false")
        .arg("--swarm")
        .arg(format!("--swarm-docker={}", missing.display()))
        .spawn()
        .unwrap();
    let want = format!("cannot reach the Docker daemon at {}", missing.display());
    let mut last = None;
    wait_until_msg("the error in /v1/swarm", T, POLL, || {
        last = status(&a);
        last.as_ref().is_some_and(|v| {
            v["state"] == "unreachable" && v["error"].as_str().is_some_and(|e| e.contains(&want))
        })
    })
    .unwrap_or_else(|e| panic!("{e}: {last:?}"));
    let list = components(&a);
    let swarm = list
        .iter()
        .find(|c| c["name"] == "swarm")
        .unwrap_or_else(|| panic!("swarm not listed: {list:?}"));
    assert_eq!(swarm["state"], "running", "{list:?}");
    for c in &list {
        assert_ne!(c["state"], "failed", "{c}");
    }
    // Its tag says it is in error, so that others do not count on it.
    let me = a.cli(&["members", "--format", "json"]).unwrap();
    let v: Value = serde_json::from_str(&me).unwrap();
    assert_eq!(v["members"][0]["tags"]["swarm"], "e", "{me}");

    // The text form says the same.
    let out = a.cli_run(&["swarm", "status"]).unwrap();
    assert!(out.stdout.starts_with("Swarm unreachable\n"), "{out:?}");
}
