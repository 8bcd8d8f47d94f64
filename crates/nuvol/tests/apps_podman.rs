//! Apps on Podman instead of Docker: the agent's `--docker-socket` points
//! at the Docker-compatible API of a private `podman system service`
//! (`nuvol_testkit::podman::Podman`: its own storage, socket and
//! configuration). The same life as `apps_docker`: install, published and
//! passing, the engine's health check healthy, a crash (the container is
//! killed) and the restart, an agent SIGKILL and restart adopting the
//! container (never a second one), stop and start, a backup and a restore,
//! remove keeping the volume and `--purge` deleting it.
//!
//! There is no systemd here, which Podman uses to run health checks on a
//! timer; the test runs them ([`Podman::health_timer`]). Skips (or fails
//! under `NUVOL_REQUIRE_SYSTEM=1`) without root, podman or busybox.

use nuvol_api::ApiClient;
use nuvol_catalog::Filter;
use nuvol_testkit::netns::skip_or_fail;
use nuvol_testkit::podman::Podman;
use nuvol_testkit::{free_port, http_get};
use nuvol_testkit::{fresh_ip, wait_until_msg, NuvolAgent, Signal};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(250);
const IMAGE: &str = "nuvol-test/busybox:1";

const WEB: &str = r#"
services:
  web:
    image: nuvol-test/busybox:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["${PORT}:8080"]
    volumes: ["www:/www"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      retries: 3
    # httpd as PID 1 ignores SIGTERM: killed after 1s rather than 10.
    stop_grace_period: 1s
volumes:
  www: {}
x-nuvol:
  id: web
  version: "1.0"
  title: A web page
  parameters:
    - {name: PORT, type: port, required: true}
  publish:
    - {type: http, port: "${PORT}", txt: {path: /}}
"#;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Containers (all states) of this app and node, as Podman lists them.
fn containers(p: &Podman, node: &str, app: &str) -> Vec<String> {
    p.cli(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label=nuvol.app={app}"),
        "--filter",
        &format!("label=nuvol.node={node}"),
    ])
    .unwrap_or_default()
    .lines()
    .map(str::to_owned)
    .collect()
}

fn volumes(p: &Podman, app: &str) -> Vec<String> {
    p.cli(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=nuvol.app={app}"),
    ])
    .unwrap_or_default()
    .lines()
    .map(str::to_owned)
    .collect()
}

fn inspect(p: &Podman, id: &str, fmt: &str) -> String {
    p.cli(&["inspect", "-f", fmt, id]).unwrap_or_default()
}

fn app_state(a: &NuvolAgent, name: &str) -> String {
    let Ok(out) = a.cli_run(&["app", "list", "--format", "json"]) else {
        return String::new();
    };
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    v.as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == name))
        .and_then(|x| x["state"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn http_services(rt: &tokio::runtime::Runtime, c: &ApiClient, node: &str) -> Vec<(u16, String)> {
    let f = Filter {
        stype: Some("http".into()),
        node: Some(node.into()),
    };
    rt.block_on(c.services(&f))
        .map(|l| {
            l.iter()
                .map(|s| (s.port, s.status.as_str().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn spawn(node: &str, ip: std::net::IpAddr, data: &Path, socket: &Path) -> NuvolAgent {
    NuvolAgent::builder(NUVOL, node)
        .ip(ip)
        .data_dir(data)
        .arg("--mdns=false")
        .arg("--apps-reconcile-every=1s")
        .arg(format!("--docker-socket={}", socket.display()))
        .spawn()
        .unwrap()
}

fn wait_apps(rt: &tokio::runtime::Runtime, a: &NuvolAgent) {
    let base = format!("http://{}:7000", a.ip());
    wait_until_msg("the apps component up on Podman", T, POLL, || {
        let c = ApiClient::new(&base, None).unwrap();
        rt.block_on(c.call_json::<Value>(nuvol_api::Method::GET, &["v1", "apps"], &[], None, None))
            .is_ok()
    })
    .unwrap();
}

#[test]
fn apps_run_on_podmans_docker_api() {
    let p = match Podman::start() {
        Ok(p) => p,
        Err(why) => {
            skip_or_fail("apps_podman", &why);
            return;
        }
    };
    if let Err(why) = p.load_busybox(IMAGE) {
        skip_or_fail("apps_podman", &why);
        return;
    }
    let _timer = p.health_timer(Duration::from_secs(1));
    let rt = rt();
    let node = format!("podman-{}", std::process::id());
    let ip = fresh_ip();
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("web.yml");
    std::fs::write(&file, WEB).unwrap();
    let file = file.to_str().unwrap();
    let mut a = spawn(&node, ip, data.path(), &p.socket());
    wait_apps(&rt, &a);
    let api = ApiClient::new(&format!("http://{ip}:7000"), None).unwrap();
    let port = free_port();
    let passing = vec![(port, "passing".to_owned())];

    // Install: running, published and passing; Podman's own health check
    // healthy too.
    let out = a
        .cli(&["app", "install", file, "--set", &format!("PORT={port}")])
        .unwrap();
    assert!(out.starts_with("installed web: "), "{out}");
    wait_until_msg("web running", T, POLL, || app_state(&a, "web") == "running").unwrap();
    let ids = containers(&p, &node, "web");
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids[0].clone();
    p.cli(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo podman page > /www/index.html",
    ])
    .unwrap();
    assert!(http_get(port).is_some_and(|s| s.contains("podman page")));
    wait_until_msg("web published and passing", T, POLL, || {
        http_services(&rt, &api, &node) == passing
    })
    .unwrap();
    wait_until_msg("web healthy in Podman", T, POLL, || {
        inspect(&p, &id, "{{.State.Health.Status}}") == "healthy"
    })
    .unwrap();
    let st: Value = serde_json::from_str(
        &a.cli(&["app", "status", "web", "--format", "json"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(st["services"][0]["health"], "healthy", "{st}");

    // A crash: killed, it comes back, the same container.
    p.cli(&["kill", &id]).unwrap();
    wait_until_msg("web back after the crash", T, POLL, || {
        inspect(&p, &id, "{{.State.Running}}") == "true"
            && http_get(port).is_some_and(|s| s.contains("podman page"))
    })
    .unwrap();
    assert_eq!(containers(&p, &node, "web"), vec![id.clone()]);

    // The agent is SIGKILLed and restarted: adopted, not doubled.
    a.signal(Signal::KILL).unwrap();
    a.wait_exit(T).unwrap();
    assert_eq!(inspect(&p, &id, "{{.State.Running}}"), "true");
    let a = spawn(&node, ip, data.path(), &p.socket());
    wait_apps(&rt, &a);
    wait_until_msg("web running after the agent restart", T, POLL, || {
        app_state(&a, "web") == "running"
    })
    .unwrap();
    wait_until_msg("web published after the agent restart", T, POLL, || {
        http_services(&rt, &api, &node) == passing
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(containers(&p, &node, "web"), vec![id.clone()], "adopted");

    // Stop and start.
    let out = a.cli(&["app", "stop", "web"]).unwrap();
    assert_eq!(out.trim(), "stopped web: stopped");
    wait_until_msg("web unpublished", T, POLL, || {
        http_services(&rt, &api, &node).is_empty()
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(inspect(&p, &id, "{{.State.Running}}"), "false");
    assert_eq!(app_state(&a, "web"), "stopped");
    a.cli(&["app", "start", "web"]).unwrap();
    wait_until_msg("web published again", T, POLL, || {
        http_services(&rt, &api, &node) == passing
    })
    .unwrap();
    a.cli(&["app", "logs", "web", "--tail", "5"]).unwrap();

    // Backup (through Podman's archive API), purge, restore.
    let archive = work.path().join("web.nuvol-backup.tar.gz");
    let out = a
        .cli(&[
            "app",
            "backup",
            "web",
            "--output",
            archive.to_str().unwrap(),
        ])
        .unwrap();
    assert!(out.contains("volumes: www"), "{out}");
    wait_until_msg("web running after the backup", T, POLL, || {
        app_state(&a, "web") == "running" && http_get(port).is_some()
    })
    .unwrap();
    a.cli(&["app", "remove", "web", "--purge"]).unwrap();
    assert!(containers(&p, &node, "web").is_empty());
    assert!(volumes(&p, "web").is_empty(), "purged");
    let out = a
        .cli(&["app", "restore", archive.to_str().unwrap()])
        .unwrap();
    assert!(out.starts_with("restored web: "), "{out}");
    wait_until_msg("web restored and serving its data", T, POLL, || {
        http_get(port).is_some_and(|s| s.contains("podman page"))
    })
    .unwrap();
    wait_until_msg("web published after the restore", T, POLL, || {
        http_services(&rt, &api, &node) == passing
    })
    .unwrap();

    // Remove keeps the volume (a reinstall finds the data); --purge
    // deletes it.
    let rid = containers(&p, &node, "web").pop().unwrap();
    a.cli(&["app", "remove", "web"]).unwrap();
    assert!(containers(&p, &node, "web").is_empty());
    assert_eq!(volumes(&p, "web"), vec!["nuvol-web-www".to_owned()]);
    a.cli(&["app", "install", file, "--set", &format!("PORT={port}")])
        .unwrap();
    wait_until_msg("web running again", T, POLL, || {
        app_state(&a, "web") == "running"
    })
    .unwrap();
    let new_id = containers(&p, &node, "web").pop().unwrap();
    assert_ne!(new_id, rid);
    assert_eq!(
        p.cli(&["exec", &new_id, "cat", "/www/index.html"]).unwrap(),
        "podman page"
    );
    a.cli(&["app", "remove", "web", "--purge"]).unwrap();
    assert!(containers(&p, &node, "web").is_empty());
    assert!(volumes(&p, "web").is_empty(), "purged");
}
