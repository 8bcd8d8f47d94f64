//! Apps across a restart of the Docker daemon itself, on a private dockerd
//! (`nuvol_testkit::docker::Dockerd`: its own data root, socket and network
//! namespace, so the host's daemon and other tests are not touched; the
//! agent and its CLI run in that namespace too): the daemon is stopped
//! (its containers with it) and started again; the agent adopts what the
//! daemon brought back, starts what should run but the daemon left
//! stopped (a `restart: "no"` service), never doubles a container, and
//! the app is published again. Skips (or fails under
//! `NUVOL_REQUIRE_SYSTEM=1`) without root, dockerd or busybox.

use nuvol_testkit::docker::{busybox_image, docker_available, Dockerd};
use nuvol_testkit::free_port;
use nuvol_testkit::netns::skip_or_fail;
use nuvol_testkit::{fresh_ip, wait_until_msg, NuvolAgent};
use serde_json::Value;
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(250);
const IMAGE: &str = "nuvol-test/busybox:1";

const APP: &str = r#"
services:
  web:
    image: nuvol-test/busybox:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["${PORT}:8080"]
  once:
    image: nuvol-test/busybox:1
    command: ["sleep", "100000"]
    restart: "no"
x-nuvol:
  id: pair
  parameters: [{name: PORT, type: port, required: true}]
  publish: [{type: http, port: "${PORT}"}]
"#;

fn states(d: &Dockerd) -> Vec<String> {
    d.cli(&[
        "ps",
        "-a",
        "--filter",
        "label=nuvol.app=pair",
        "--format",
        "{{.ID}} {{.Label \"nuvol.service\"}} {{.State}}",
    ])
    .unwrap_or_default()
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn a_restarted_docker_daemon_is_adopted() {
    if let Err(why) = docker_available() {
        skip_or_fail("apps_dockerd", &why);
        return;
    }
    if let Err(why) = busybox_image(IMAGE) {
        skip_or_fail("apps_dockerd", &why);
        return;
    }
    let mut d = match Dockerd::start() {
        Ok(d) => d,
        Err(why) => {
            skip_or_fail("apps_dockerd", &why);
            return;
        }
    };
    d.load_image(IMAGE).unwrap();
    let node = format!("dockerd-{}", std::process::id());
    let ip = fresh_ip();
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("pair.yml");
    std::fs::write(&file, APP).unwrap();
    let socket = d.socket();
    let program = d.wrap(std::path::Path::new(NUVOL)).unwrap();
    let a = NuvolAgent::builder(program.to_str().unwrap(), &node)
        .ip(ip)
        .data_dir(data.path())
        .arg("--mdns=false")
        .arg("--apps-reconcile-every=1s")
        .arg(format!("--docker-socket={}", socket.display()))
        // Its RPC is in the namespace: readiness is polled with its CLI.
        .wait_ready(false)
        .spawn()
        .unwrap();
    let port = free_port();
    wait_until_msg("the apps component up", T, POLL, || {
        a.cli_run(&["app", "list"])
            .is_ok_and(|o| o.status.success())
    })
    .unwrap();
    a.cli(&[
        "app",
        "install",
        file.to_str().unwrap(),
        "--set",
        &format!("PORT={port}"),
    ])
    .unwrap();
    let state = || -> String {
        a.cli_run(&["app", "list", "--format", "json"])
            .ok()
            .and_then(|o| serde_json::from_str::<Value>(&o.stdout).ok())
            .and_then(|v| v[0]["state"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let published = || {
        a.cli_run(&[
            "services", "--type", "http", "--node", &node, "--format", "json",
        ])
        .ok()
        .and_then(|o| serde_json::from_str::<Value>(&o.stdout).ok())
        .and_then(|v| v.as_array().cloned())
        .is_some_and(|l| {
            l.iter()
                .any(|s| s["port"] == port && s["status"] == "passing")
        })
    };
    wait_until_msg("pair running and published", T, POLL, || {
        state() == "running" && published()
    })
    .unwrap();
    let before: Vec<String> = states(&d)
        .iter()
        .map(|l| l.split(' ').next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(before.len(), 2, "{:?}", states(&d));

    // The daemon goes down (its containers stop) and comes back: the
    // unless-stopped web is restarted by the daemon, the restart: "no"
    // service by the agent; the same two containers.
    d.restart()
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log_tail()));
    wait_until_msg("both running again", T, POLL, || {
        let s = states(&d);
        s.len() == 2 && s.iter().all(|l| l.ends_with(" running"))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", states(&d), a.log_tail(30)));
    let mut after: Vec<String> = states(&d)
        .iter()
        .map(|l| l.split(' ').next().unwrap_or("").to_owned())
        .collect();
    let mut b = before.clone();
    b.sort();
    after.sort();
    assert_eq!(after, b, "the same containers, adopted");
    wait_until_msg("running and published again", T, POLL, || {
        state() == "running" && published()
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(states(&d).len(), 2, "never doubled: {:?}", states(&d));
    a.cli(&["app", "remove", "pair", "--purge"]).unwrap();
    assert!(states(&d).is_empty());
}
