//! Apps end to end against the real Docker Engine on this machine, through
//! the `nuvol` binary and its CLI: install from a Compose file with an
//! x-nuvol block, publish in the catalog with a health check, a crash and
//! the restart, an agent SIGKILL and restart adopting the running
//! container (never a second one), stop and start (unpublished and
//! published again), remove keeping the volume and `--purge` deleting it,
//! and bad input (unknown keys, a missing image, port conflicts, a taken
//! name) leaving nothing behind.
//!
//! No registry is reachable here: the image is built locally from Debian's
//! static busybox (`nuvol_testkit::docker`). Skips (or fails under
//! `NUVOL_REQUIRE_SYSTEM=1`) without a Docker daemon or busybox.

use nuvol_api::ApiClient;
use nuvol_catalog::Filter;
use nuvol_testkit::netns::skip_or_fail;
use nuvol_testkit::{fresh_ip, wait_until_msg, NuvolAgent, Signal};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(250);
const IMAGE: &str = "nuvol-test/busybox:1";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Containers (all states) labelled with this app and node.
fn containers(node: &str, app: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label=nuvol.app={app}"),
        "--filter",
        &format!("label=nuvol.node={node}"),
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

fn volumes(app: &str) -> Vec<String> {
    docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=nuvol.app={app}"),
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

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
volumes:
  www: {}
x-nuvol:
  id: web
  version: "1.0"
  title: A web page
  parameters:
    - {name: PORT, type: port, required: true}
  publish:
    - {type: http, port: "${PORT}", description: The test page, txt: {path: /}}
"#;

fn app_json(a: &NuvolAgent, name: &str) -> Option<Value> {
    let out = a.cli_run(&["app", "list", "--format", "json"]).ok()?;
    let v: Value = serde_json::from_str(&out.stdout).ok()?;
    v.as_array()?.iter().find(|x| x["name"] == name).cloned()
}

fn app_state(a: &NuvolAgent, name: &str) -> String {
    app_json(a, name)
        .and_then(|v| v["state"].as_str().map(str::to_owned))
        .unwrap_or_default()
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

fn spawn(node: &str, ip: std::net::IpAddr, data: &Path) -> NuvolAgent {
    NuvolAgent::builder(NUVOL, node)
        .ip(ip)
        .data_dir(data)
        .arg("--mdns=false")
        .arg("--apps-reconcile-every=1s")
        .spawn()
        .unwrap()
}

/// The apps component answers once it reached the engine.
fn wait_apps(rt: &tokio::runtime::Runtime, a: &NuvolAgent) {
    let base = format!("http://{}:7000", a.ip());
    wait_until_msg("the apps component up", T, POLL, || {
        let c = ApiClient::new(&base, None).unwrap();
        rt.block_on(c.call_json::<Value>(nuvol_api::Method::GET, &["v1", "apps"], &[], None, None))
            .is_ok()
    })
    .unwrap();
}

#[test]
fn install_publish_crash_adopt_stop_remove() {
    if let Err(why) = nuvol_testkit::docker::docker_available() {
        skip_or_fail("apps_docker", &why);
        return;
    }
    if let Err(why) = nuvol_testkit::docker::busybox_image(IMAGE) {
        skip_or_fail("apps_docker", &why);
        return;
    }
    let rt = rt();
    let node = format!("apps-{}", std::process::id());
    let ip = fresh_ip();
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("web.yml");
    std::fs::write(&file, WEB).unwrap();
    let file = file.to_str().unwrap();
    let mut a = spawn(&node, ip, data.path());
    wait_apps(&rt, &a);
    let base = format!("http://{ip}:7000");
    let api = ApiClient::new(&base, None).unwrap();
    let port = free_port();
    let port_s = port.to_string();

    // Install: a missing required parameter is refused, nothing created.
    let out = a.cli_run(&["app", "install", file]).unwrap();
    out.assert_one_line_error("PORT is required");
    assert!(containers(&node, "web").is_empty());
    let out = a
        .cli(&["app", "install", file, "--set", &format!("PORT={port}")])
        .unwrap();
    assert!(out.starts_with("installed web: "), "{out}");
    wait_until_msg("web running", T, POLL, || app_state(&a, "web") == "running").unwrap();
    let ids = containers(&node, "web");
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids[0].clone();
    docker(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo nuvol test page > /www/index.html",
    ]);
    let page = http_get(port).expect("the page");
    assert!(page.contains("nuvol test page"), "{page}");
    // Published with its health check, which passes.
    wait_until_msg("web published and passing", T, POLL, || {
        http_services(&rt, &api, &node) == vec![(port, "passing".to_owned())]
    })
    .unwrap();
    let v = app_json(&a, "web").unwrap();
    for k in ["name", "node", "state", "version", "source"] {
        assert!(v.get(k).is_some(), "{k} in {v}");
    }
    assert_eq!(v["node"], node.as_str());
    assert_eq!(v["version"], "1.0");

    // Bad input changes nothing: a taken name, a port another app holds,
    // an unknown key, a missing image.
    a.cli_run(&["app", "install", file, "--set", &format!("PORT={port}")])
        .unwrap()
        .assert_one_line_error("already installed");
    a.cli_run(&[
        "app",
        "install",
        file,
        "--name",
        "web2",
        "--set",
        &format!("PORT={port}"),
    ])
    .unwrap()
    .assert_one_line_error("app web");
    let bad = work.path().join("bad.yml");
    std::fs::write(
        &bad,
        "services: {x: {image: nuvol-test/busybox:1, build: .}}\n",
    )
    .unwrap();
    a.cli_run(&["app", "install", bad.to_str().unwrap(), "--name", "bad"])
        .unwrap()
        .assert_one_line_error("services.x.build: not supported by nuvol");
    let missing = work.path().join("missing.yml");
    std::fs::write(
        &missing,
        "services: {x: {image: nuvol-test/does-not-exist:9, volumes: ['v:/v']}}\nvolumes: {v: {}}\n",
    )
    .unwrap();
    a.cli_run(&[
        "app",
        "install",
        missing.to_str().unwrap(),
        "--name",
        "missing",
    ])
    .unwrap()
    .assert_one_line_error("nuvol-test/does-not-exist:9");
    for app in ["web2", "bad", "missing"] {
        assert!(containers(&node, app).is_empty(), "{app} left containers");
        assert!(volumes(app).is_empty(), "{app} left volumes");
    }
    assert_eq!(containers(&node, "web"), vec![id.clone()], "web untouched");

    // A crash: the container is killed; it comes back, the same one.
    docker(&["kill", &id]);
    wait_until_msg("web back after the crash", T, POLL, || {
        docker(&["inspect", "-f", "{{.State.Running}}", &id]) == "true"
            && http_get(port).is_some_and(|p| p.contains("nuvol test page"))
    })
    .unwrap();
    assert_eq!(containers(&node, "web"), vec![id.clone()]);

    // Data in the volume, to find after a restart and a reinstall.
    docker(&["exec", &id, "sh", "-c", "echo kept > /www/kept.txt"]);

    // The agent is SIGKILLed and restarted: it adopts the running
    // container, creates no second one, and the app stays published.
    a.signal(Signal::KILL).unwrap();
    a.wait_exit(T).unwrap();
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &id]),
        "true"
    );
    let a = spawn(&node, ip, data.path());
    wait_apps(&rt, &a);
    wait_until_msg("web running after the agent restart", T, POLL, || {
        app_state(&a, "web") == "running"
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        containers(&node, "web"),
        vec![id.clone()],
        "adopted, not doubled"
    );
    wait_until_msg("web published after the agent restart", T, POLL, || {
        http_services(&rt, &api, &node) == vec![(port, "passing".to_owned())]
    })
    .unwrap();

    // Stop: unpublished, and stays stopped across reconcile passes.
    let out = a.cli(&["app", "stop", "web"]).unwrap();
    assert_eq!(out.trim(), "stopped web: stopped");
    wait_until_msg("web unpublished", T, POLL, || {
        http_services(&rt, &api, &node).is_empty()
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &id]),
        "false"
    );
    assert_eq!(app_state(&a, "web"), "stopped");
    a.cli(&["app", "start", "web"]).unwrap();
    wait_until_msg("web published again", T, POLL, || {
        http_services(&rt, &api, &node) == vec![(port, "passing".to_owned())]
    })
    .unwrap();

    // Status and logs.
    let st: Value = serde_json::from_str(
        &a.cli(&["app", "status", "web", "--format", "json"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(st["services"][0]["service"], "web");
    assert_eq!(st["params"]["PORT"], port_s.as_str());
    a.cli(&["app", "logs", "web", "--tail", "5"]).unwrap();

    // Remove keeps the volume; a reinstall finds the data; --purge
    // deletes it.
    a.cli(&["app", "remove", "web"]).unwrap();
    assert!(containers(&node, "web").is_empty());
    assert_eq!(volumes("web"), vec!["nuvol-web-www".to_owned()]);
    wait_until_msg("web unpublished after remove", T, POLL, || {
        http_services(&rt, &api, &node).is_empty()
    })
    .unwrap();
    a.cli(&["app", "install", file, "--set", &format!("PORT={port}")])
        .unwrap();
    wait_until_msg("web running again", T, POLL, || {
        app_state(&a, "web") == "running"
    })
    .unwrap();
    let new_id = containers(&node, "web").pop().unwrap();
    assert_ne!(new_id, id);
    assert_eq!(docker(&["exec", &new_id, "cat", "/www/kept.txt"]), "kept");
    a.cli(&["app", "remove", "web", "--purge"]).unwrap();
    assert!(containers(&node, "web").is_empty());
    assert!(volumes("web").is_empty(), "purged");
    a.cli_run(&["app", "status", "web"])
        .unwrap()
        .assert_one_line_error("no app named");
}
