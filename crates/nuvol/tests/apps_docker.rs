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
use nuvol_testkit::{free_port, http_get};
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

/// A web page app on image `image`, with `extra` lines added to its
/// service and its version.
fn web_def(image: &str, version: &str, extra: &str) -> String {
    format!(
        r#"
services:
  web:
    image: {image}
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["${{PORT}}:8080"]
    volumes: ["www:/www"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      retries: 3
    # httpd as PID 1 ignores SIGTERM: killed after 1s rather than 10.
    stop_grace_period: 1s
{extra}
volumes:
  www: {{}}
x-nuvol:
  id: web
  version: "{version}"
  title: A web page
  parameters:
    - {{name: PORT, type: port, required: true}}
  publish:
    - {{type: http, port: "${{PORT}}", txt: {{path: /}}}}
"#
    )
}

fn inspect(id: &str, fmt: &str) -> String {
    docker(&["inspect", "-f", fmt, id])
}

fn image_id(image: &str) -> String {
    docker(&["image", "inspect", "-f", "{{.Id}}", image])
}

/// Images made for one test (tags it may move), removed at the end.
struct Tags(Vec<String>);

impl Drop for Tags {
    fn drop(&mut self) {
        for t in &self.0 {
            docker(&["rmi", "-f", t]);
        }
    }
}

/// Removes what an earlier, failed run left of these apps (any node):
/// container and volume names are per app, not per node.
fn clean(apps: &[&str]) {
    for app in apps {
        let filter = format!("label=nuvol.app={app}");
        for id in docker(&["ps", "-aq", "--filter", &filter]).lines() {
            docker(&["rm", "-f", id]);
        }
        for v in volumes(app) {
            docker(&["volume", "rm", "-f", &v]);
        }
    }
}

/// Whether the test can run (Docker and the busybox image).
fn docker_ready() -> bool {
    if let Err(why) = nuvol_testkit::docker::docker_available() {
        skip_or_fail("apps_docker", &why);
        return false;
    }
    if let Err(why) = nuvol_testkit::docker::busybox_image(IMAGE) {
        skip_or_fail("apps_docker", &why);
        return false;
    }
    true
}

#[test]
fn upgrade_keeps_data_and_rolls_back_to_the_recorded_image() {
    if !docker_ready() {
        return;
    }
    let rt = rt();
    let pid = std::process::id();
    let node = format!("apps-up-{pid}");
    let app = "upw";
    clean(&[app]);
    // Tags of this test only: one is moved to another image below.
    let v1 = format!("nuvol-test/up-{pid}:1");
    let v2 = format!("nuvol-test/up-{pid}:2");
    let other = format!("nuvol-test/up-{pid}:other");
    let _tags = Tags(vec![v1.clone(), v2.clone(), other.clone()]);
    docker(&["tag", IMAGE, &v1]);
    docker(&["tag", IMAGE, &v2]);
    // Another image: the same files with one more label.
    let tmp = docker(&["create", IMAGE]);
    docker(&["commit", "--change", "LABEL nuvol.test=moved", &tmp, &other]);
    docker(&["rm", "-f", &tmp]);
    assert_ne!(image_id(&other), image_id(IMAGE), "a different image");

    let ip = fresh_ip();
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let write = |n: &str, text: &str| {
        let p = work.path().join(n);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let f1 = write("v1.yml", &web_def(&v1, "1.0", ""));
    let f2 = write(
        "v2.yml",
        &web_def(&v2, "2.0", "    environment: {MARK: \"2\"}"),
    );
    let broken = write(
        "v3.yml",
        &web_def(
            &v1,
            "3.0",
            "    entrypoint: [\"sh\", \"-c\", \"echo broken; exit 3\"]\n    restart: \"no\"",
        ),
    );
    let sick = write(
        "v4.yml",
        &web_def(&v1, "4.0", "    environment: {MARK: \"4\"}")
            .replace("http://127.0.0.1:8080/", "http://127.0.0.1:9/"),
    );
    let a = spawn(&node, ip, data.path());
    wait_apps(&rt, &a);
    let port = free_port();
    a.cli(&[
        "app",
        "install",
        &f1,
        "--name",
        app,
        "--set",
        &format!("PORT={port}"),
    ])
    .unwrap();
    wait_until_msg("upw running", T, POLL, || app_state(&a, app) == "running").unwrap();
    let id1 = containers(&node, app).pop().unwrap();
    docker(&["exec", &id1, "sh", "-c", "echo kept data > /www/index.html"]);

    // A definition that does not plan changes nothing.
    let bad = write("bad.yml", "services: {web: {image: x, build: .}}\n");
    a.cli_run(&["app", "upgrade", app, &bad])
        .unwrap()
        .assert_one_line_error("services.web.build: not supported by nuvol");
    assert_eq!(containers(&node, app), vec![id1.clone()]);

    // To version 2: a new container on the new image, the data kept.
    let t0 = std::time::Instant::now();
    let out = a
        .cli(&["app", "upgrade", app, &f2, "--timeout", "30s"])
        .unwrap();
    eprintln!("upgrade to 2.0 took {:?}", t0.elapsed());
    assert_eq!(out.trim(), "upgraded upw: running, version 2.0");
    let ids = containers(&node, app);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id2 = ids[0].clone();
    assert_ne!(id2, id1);
    assert!(inspect(&id2, "{{.Config.Env}}").contains("MARK=2"));
    assert!(http_get(port).is_some_and(|p| p.contains("kept data")));
    let v = app_json(&a, app).unwrap();
    assert_eq!(v["version"], "2.0");
    let old_image = inspect(&id2, "{{.Image}}");
    assert_eq!(old_image, image_id(&v2));

    // The :2 tag moves to another image; then a broken version 3. The
    // rollback runs version 2 on the image id it ran, not on what :2
    // names now.
    docker(&["tag", &other, &v2]);
    let t0 = std::time::Instant::now();
    let out = a
        .cli_run(&["app", "upgrade", app, &broken, "--timeout", "30s"])
        .unwrap();
    eprintln!("failed upgrade and rollback took {:?}", t0.elapsed());
    out.assert_one_line_error("upgrade of upw failed: service web exited with code 3");
    assert!(
        out.stderr.contains("rolled back to version 2.0"),
        "{}",
        out.stderr
    );
    wait_until_msg("upw running after the rollback", T, POLL, || {
        app_state(&a, app) == "running"
    })
    .unwrap();
    let ids = containers(&node, app);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id3 = ids[0].clone();
    assert_eq!(inspect(&id3, "{{.Image}}"), old_image, "the recorded image");
    assert!(inspect(&id3, "{{.Config.Env}}").contains("MARK=2"));
    assert!(http_get(port).is_some_and(|p| p.contains("kept data")));
    assert_eq!(app_json(&a, app).unwrap()["version"], "2.0");
    // The stored definition plans to that very container: reconcile
    // passes leave it alone.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(containers(&node, app), vec![id3.clone()], "not replaced");

    // A version whose health check never passes: rolled back as well.
    let out = a
        .cli_run(&["app", "upgrade", app, &sick, "--timeout", "20s"])
        .unwrap();
    out.assert_one_line_error("health check");
    assert!(
        out.stderr.contains("rolled back to version 2.0"),
        "{}",
        out.stderr
    );
    wait_until_msg("upw running after the second rollback", T, POLL, || {
        app_state(&a, app) == "running"
    })
    .unwrap();
    let id4 = containers(&node, app).pop().unwrap();
    assert_eq!(inspect(&id4, "{{.Image}}"), old_image);
    assert!(http_get(port).is_some_and(|p| p.contains("kept data")));
    let st: Value =
        serde_json::from_str(&a.cli(&["app", "status", app, "--format", "json"]).unwrap()).unwrap();
    assert_eq!(st["version"], "2.0");
    assert_eq!(st["services"][0]["image"], old_image.as_str());

    a.cli(&["app", "remove", app, "--purge"]).unwrap();
    assert!(containers(&node, app).is_empty());
    assert!(volumes(app).is_empty());
}

/// A tar archive with one file, its name written as given (`../evil`).
fn raw_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = len - 1);
        h[at..at + len].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0o644);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, data.len() as u64);
    octal(&mut h, 136, 12, 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

#[test]
fn backup_restore_here_and_on_another_node_and_bad_archives() {
    if !docker_ready() {
        return;
    }
    let rt = rt();
    let pid = std::process::id();
    let (node, node2) = (format!("apps-bk-{pid}"), format!("apps-bk2-{pid}"));
    let app = "bkw";
    clean(&[app, "bkw2", "bad"]);
    let data = tempfile::tempdir().unwrap();
    let data2 = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("web.yml");
    std::fs::write(&file, web_def(IMAGE, "1.0", "")).unwrap();
    let a = spawn(&node, fresh_ip(), data.path());
    let b = spawn(&node2, fresh_ip(), data2.path());
    wait_apps(&rt, &a);
    wait_apps(&rt, &b);
    let port = free_port();
    a.cli(&[
        "app",
        "install",
        file.to_str().unwrap(),
        "--name",
        app,
        "--set",
        &format!("PORT={port}"),
    ])
    .unwrap();
    wait_until_msg("bkw running", T, POLL, || app_state(&a, app) == "running").unwrap();
    let id = containers(&node, app).pop().unwrap();
    docker(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo backed up page > /www/index.html && mkdir -p /www/sub && echo deep > /www/sub/f",
    ]);
    // A file of the app's own directory.
    let app_dir = data.path().join("apps").join(app);
    std::fs::write(app_dir.join("note.txt"), "my note").unwrap();

    let archive = work.path().join("bkw.nuvol-backup.tar.gz");
    let t0 = std::time::Instant::now();
    let out = a
        .cli(&["app", "backup", app, "--output", archive.to_str().unwrap()])
        .unwrap();
    eprintln!("backup took {:?}", t0.elapsed());
    assert!(out.starts_with("backed up bkw to "), "{out}");
    assert!(out.contains("volumes: www"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&archive).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "holds passwords");
    // Started again after, the same container.
    wait_until_msg("bkw running after the backup", T, POLL, || {
        app_state(&a, app) == "running" && http_get(port).is_some()
    })
    .unwrap();
    assert_eq!(containers(&node, app), vec![id.clone()]);
    // Not overwritten.
    a.cli_run(&["app", "backup", app, "--output", archive.to_str().unwrap()])
        .unwrap()
        .assert_one_line_error("exists");
    let listing = Command::new("tar")
        .args(["-tzf", archive.to_str().unwrap()])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for want in ["nuvol-backup.json", "volumes/www.tar", "app/note.txt"] {
        assert!(listing.lines().any(|l| l == want), "{want} in {listing}");
    }

    // Purged, then restored: the data and the file are back, it serves.
    a.cli(&["app", "remove", app, "--purge"]).unwrap();
    assert!(volumes(app).is_empty());
    assert!(!app_dir.exists());
    let t0 = std::time::Instant::now();
    let out = a
        .cli(&["app", "restore", archive.to_str().unwrap()])
        .unwrap();
    eprintln!("restore took {:?}", t0.elapsed());
    assert!(out.starts_with("restored bkw: "), "{out}");
    wait_until_msg("bkw restored and serving", T, POLL, || {
        http_get(port).is_some_and(|p| p.contains("backed up page"))
    })
    .unwrap();
    let rid = containers(&node, app).pop().unwrap();
    assert_eq!(docker(&["exec", &rid, "cat", "/www/sub/f"]), "deep");
    assert_eq!(
        std::fs::read_to_string(app_dir.join("note.txt")).unwrap(),
        "my note"
    );
    // A second restore of the same name is refused.
    a.cli_run(&["app", "restore", archive.to_str().unwrap()])
        .unwrap()
        .assert_one_line_error("already installed");

    // On another node (sharing this Docker daemon: another name and port).
    let port2 = free_port();
    let out = b
        .cli(&[
            "app",
            "restore",
            archive.to_str().unwrap(),
            "--name",
            "bkw2",
            "--set",
            &format!("PORT={port2}"),
        ])
        .unwrap();
    assert!(out.starts_with("restored bkw2: "), "{out}");
    wait_until_msg("bkw2 serving on the other node", T, POLL, || {
        http_get(port2).is_some_and(|p| p.contains("backed up page"))
    })
    .unwrap();
    assert_eq!(containers(&node2, "bkw2").len(), 1);
    assert!(containers(&node, "bkw2").is_empty());
    let v = app_json(&b, "bkw2").unwrap();
    assert_eq!(v["node"], node2.as_str());

    // Bad archives: a clear error, nothing created.
    let bytes = std::fs::read(&archive).unwrap();
    let cut = work.path().join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let noise = work.path().join("noise.bin");
    std::fs::write(
        &noise,
        (0..50_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let evil = work.path().join("evil.tar");
    std::fs::write(&evil, raw_tar("../evil", b"gotcha")).unwrap();
    for (f, want) in [
        (&cut, "truncated"),
        (&noise, "not a nuvol backup"),
        (&evil, "goes up"),
    ] {
        let out = a
            .cli_run(&["app", "restore", f.to_str().unwrap(), "--name", "bad"])
            .unwrap();
        out.assert_one_line_error(want);
        assert!(containers(&node, "bad").is_empty());
        assert!(volumes("bad").is_empty());
        assert!(!data.path().join("apps/bad").exists());
    }
    assert!(!work.path().parent().unwrap().join("evil").exists());
    assert!(!data.path().join("evil").exists());
    // No staging directory is left behind.
    let left: Vec<String> = std::fs::read_dir(data.path().join("apps"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    b.cli(&["app", "remove", "bkw2", "--purge"]).unwrap();
    a.cli(&["app", "remove", app, "--purge"]).unwrap();
    assert!(volumes(app).is_empty() && volumes("bkw2").is_empty());
}
