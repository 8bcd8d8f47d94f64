//! A graceful leave of a Swarm *worker* drains it first, for real: two
//! network namespaces with a private dockerd each (`SwarmLab`), two
//! `nuvol agent`s with `--swarm --swarm-managers=1` and an encrypted
//! gossip, so node 0 is the manager and node 1 a worker. A service with
//! one task per node runs; `nuvol leave` on the worker: before its gossip
//! leave, the worker asks the manager over gossip (`_nuvol_swarm_drain`)
//! to drain it, waits for its task containers to stop, then leaves the
//! swarm; the manager removes it. A worker cannot drain itself (its engine
//! refuses node updates), so without the query its tasks would only be
//! replaced after it had gone.
//!
//! Skips (or fails under `NUVOL_REQUIRE_SYSTEM=1`) without root, dockerd,
//! iptables or busybox-static.

use nuvol_testkit::docker::{busybox_image, docker_available};
use nuvol_testkit::netns::skip_or_fail;
use nuvol_testkit::swarm::SwarmLab;
use nuvol_testkit::{wait_until_msg, NuvolAgent};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(250);
const IMAGE: &str = "nuvol-test/busybox:1";
const KEY: &str = "cg8StVXbQJ0gPvMd9o7yrg==";

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

fn status(a: &NuvolAgent) -> Option<Value> {
    let o = a.cli_run(&["swarm", "status", "--format", "json"]).ok()?;
    serde_json::from_str(&o.stdout).ok()
}

/// Running containers of Swarm tasks on node `k`.
fn task_containers(lab: &SwarmLab, k: usize) -> usize {
    docker(
        lab,
        k,
        &["ps", "-q", "--filter", "label=com.docker.swarm.task.id"],
    )
    .map(|o| o.lines().filter(|l| !l.trim().is_empty()).count())
    .unwrap_or(0)
}

#[test]
fn a_leaving_worker_is_drained_by_a_manager_first() {
    let test = "swarm_worker_netns";
    if let Err(why) = docker_available() {
        skip_or_fail(test, &why);
        return;
    }
    if let Err(why) = busybox_image(IMAGE) {
        skip_or_fail(test, &why);
        return;
    }
    let lab = match SwarmLab::start(2, IMAGE) {
        Ok(l) => l,
        Err(why) => {
            skip_or_fail(test, &why);
            return;
        }
    };
    let pid = std::process::id();
    let mut agents = Vec::new();
    let mut datas = Vec::new();
    for k in 0..2 {
        let program = lab.docker(k).wrap(std::path::Path::new(NUVOL)).unwrap();
        let data = tempfile::tempdir().unwrap();
        let mut b = NuvolAgent::builder(program.to_str().unwrap(), &format!("swk{pid}-{k}"))
            .ip(lab.ips[k].parse().unwrap())
            .encrypt(KEY)
            .data_dir(data.path())
            .arg("--mdns=false")
            .arg("--apps=false")
            .arg("--swarm")
            .arg("--swarm-managers=1")
            .arg(format!(
                "--swarm-docker={}",
                lab.docker(k).socket().display()
            ))
            .arg("--swarm-leave-drain-timeout=30s")
            .log_level(Some("info"))
            .wait_ready(false);
        if k > 0 {
            b = b.join(format!("{}:7946", lab.ips[0]));
        }
        agents.push(b.spawn().unwrap());
        datas.push(data);
    }
    let dump = |agents: &[NuvolAgent]| {
        agents
            .iter()
            .map(|a| format!("--- {}: {:?}\n{}", a.name(), status(a), a.log_tail(40)))
            .collect::<String>()
    };
    wait_until_msg("a manager and a worker", T, POLL, || {
        status(&agents[0]).is_some_and(|v| {
            let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
            nodes.len() == 2
                && nodes.iter().all(|n| n["state"] == "ready")
                && nodes.iter().filter(|n| n["role"] == "manager").count() == 1
        }) && status(&agents[1]).is_some_and(|v| v["role"] == "worker")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", dump(&agents)));

    // One task on each node.
    docker(
        &lab,
        0,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "spread",
            "--replicas",
            "2",
            "--replicas-max-per-node",
            "1",
            // busybox httpd as PID 1 ignores SIGTERM.
            "--stop-grace-period",
            "1s",
            "--no-resolve-image",
            IMAGE,
            "httpd",
            "-f",
            "-p",
            "8080",
        ],
    )
    .unwrap();
    wait_until_msg("a task on the worker", T, POLL, || {
        task_containers(&lab, 1) == 1
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", dump(&agents)));

    // The worker leaves: drained by the manager, its task stopped, then
    // out of the swarm, and removed from the manager's list.
    let out = agents[1].cli_run(&["leave"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_until_msg("the worker is out of the swarm", T, POLL, || {
        docker(&lab, 1, &["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .is_ok_and(|s| s == "inactive")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", dump(&agents)));
    wait_until_msg("the worker's agent says it left", T, POLL, || {
        agents[1].log_text().contains("swarm: left")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", dump(&agents)));
    let worker_log = agents[1].log_text();
    let manager_log = agents[0].log_text();
    let drained = worker_log
        .find("swarm: drained by a manager")
        .unwrap_or_else(|| panic!("no drain in the worker's log:\n{worker_log}"));
    let left = worker_log
        .find("swarm: left")
        .unwrap_or_else(|| panic!("no leave in the worker's log:\n{worker_log}"));
    assert!(drained < left, "{worker_log}");
    assert!(
        manager_log.contains("swarm: drained a leaving worker"),
        "{manager_log}"
    );
    assert_eq!(task_containers(&lab, 1), 0);
    wait_until_msg("the manager removed the worker", T, POLL, || {
        docker(&lab, 0, &["node", "ls", "-q"]).is_ok_and(|l| l.lines().count() == 1)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", dump(&agents)));
    let _ = docker(&lab, 0, &["service", "rm", "spread"]);
    drop(agents);
}
