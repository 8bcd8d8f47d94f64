//! The app store and the importers through the `nuvol` binary: `nuvol app
//! import` of Portainer and Cloudy templates (no agent), `nuvol app store`
//! listing the built-in templates and a store directory, `nuvol app
//! install ID` from that directory, a Cloudy template installed on the fly
//! and published under its name, and a built-in template whose image this
//! node does not have (no registry here) refused with nothing left behind.

use nuvol_testkit::free_port;
use nuvol_testkit::netns::skip_or_fail;
use nuvol_testkit::{fresh_ip, wait_until_msg, NuvolAgent};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(250);
const IMAGE: &str = "nuvol-test/busybox:1";

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../nuvol-apps/tests/fixtures/import")
        .join(name)
        .display()
        .to_string()
}

fn nuvol(args: &[&str]) -> std::process::Output {
    Command::new(NUVOL).args(args).output().expect("nuvol")
}

#[test]
fn import_writes_nuvol_apps_and_reports() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let o = nuvol(&[
        "app",
        "import",
        &fixture("portainer-v2.json"),
        "--output",
        dir,
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let imported = v["imported"].as_array().unwrap();
    assert!(!imported.is_empty(), "{v}");
    for i in imported {
        let f = i["file"].as_str().unwrap();
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.contains("x-nuvol"), "{f}: {text}");
        assert_eq!(i["format"], "portainer");
    }
    // The stack template cannot be fetched offline: skipped, named.
    let skipped = v["skipped"].as_array().unwrap();
    assert!(!skipped.is_empty(), "{v}");
    // Written files are not overwritten by a second import.
    let o = nuvol(&[
        "app",
        "import",
        &fixture("portainer-v2.json"),
        "--output",
        dir,
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not overwritten"));
    // Bad input: a clear error, one line.
    let bad = out.path().join("bad.json");
    std::fs::write(&bad, "{\"templates\": 5}").unwrap();
    let o = nuvol(&["app", "import", bad.to_str().unwrap(), "--output", dir]);
    assert!(!o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim().lines().count(), 1);
}

const MYPAGE: &str = r#"
services:
  web:
    image: nuvol-test/busybox:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["${PORT}:8080"]
x-nuvol:
  id: mypage
  version: "2"
  title: {en: My page, ca: La meva pàgina}
  category: web
  parameters: [{name: PORT, type: port, required: true}]
  publish: [{type: http, port: "${PORT}"}]
"#;

fn containers(node: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=nuvol.node={node}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn store_and_templates_install() {
    if let Err(why) = nuvol_testkit::docker::docker_available() {
        skip_or_fail("apps_store", &why);
        return;
    }
    if let Err(why) = nuvol_testkit::docker::busybox_image(IMAGE) {
        skip_or_fail("apps_store", &why);
        return;
    }
    let node = format!("store-{}", std::process::id());
    let data = tempfile::tempdir().unwrap();
    let data_b = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    std::fs::write(store.path().join("mypage.yml"), MYPAGE).unwrap();
    let a = NuvolAgent::builder(NUVOL, &node)
        .ip(fresh_ip())
        .data_dir(data.path())
        .arg("--mdns=false")
        .arg("--apps-reconcile-every=1s")
        .arg(format!("--apps-store-dir={}", store.path().display()))
        .spawn()
        .unwrap();
    wait_until_msg("the apps component up", T, POLL, || {
        a.cli_run(&["app", "list"])
            .is_ok_and(|o| o.status.success())
    })
    .unwrap();
    // A second node with no apps, in the same cluster.
    let b = NuvolAgent::builder(NUVOL, &format!("{node}-b"))
        .ip(fresh_ip())
        .data_dir(data_b.path())
        .arg("--mdns=false")
        .join_agent(&a)
        .spawn()
        .unwrap();
    // The nv-apps tag: set only while a node has apps.
    let apps_tag = |who: &NuvolAgent, of: &str| -> Option<String> {
        let out = who.cli(&["members", "--format", "json"]).ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        v["members"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == of)
            .and_then(|m| m["tags"]["nv-apps"].as_str().map(str::to_owned))
    };
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(apps_tag(&b, &node), None, "no apps, no tag");

    let v: Value =
        serde_json::from_str(&a.cli(&["app", "store", "--format", "json"]).unwrap()).unwrap();
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    for id in ["syncthing", "ipfs", "nextcloud", "static-web", "mypage"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    let web: Value = serde_json::from_str(
        &a.cli(&["app", "store", "--category", "web", "--format", "json"])
            .unwrap(),
    )
    .unwrap();
    assert!(web.as_array().unwrap().iter().all(|t| t["category"]
        .as_str()
        .is_some_and(|c| c.eq_ignore_ascii_case("web"))));

    // From the store directory, by id.
    let port = free_port();
    let out = a
        .cli(&["app", "install", "mypage", "--set", &format!("PORT={port}")])
        .unwrap();
    assert!(out.starts_with("installed mypage"), "{out}");
    let listed = || -> Vec<Value> {
        a.cli_run(&["app", "list", "--format", "json"])
            .ok()
            .and_then(|o| serde_json::from_str::<Value>(&o.stdout).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    wait_until_msg("mypage running", T, POLL, || {
        listed().iter().any(|x| {
            x["name"] == "mypage" && x["state"] == "running" && x["source"] == "store:mypage"
        })
    })
    .unwrap();

    // Seen from the other node: the tag, and `app list --all`.
    wait_until_msg("nv-apps=1 seen by b", T, POLL, || {
        apps_tag(&b, &node).as_deref() == Some("1")
    })
    .unwrap();
    let all: Value = serde_json::from_str(
        &b.cli(&["app", "list", "--all", "--format", "json"])
            .unwrap(),
    )
    .unwrap();
    let all = all.as_array().unwrap();
    assert!(
        all.iter().any(|x| x["name"] == "mypage"
            && x["node"] == node.as_str()
            && x["state"] == "running"),
        "{all:?}"
    );
    let mine: Value =
        serde_json::from_str(&b.cli(&["app", "list", "--format", "json"]).unwrap()).unwrap();
    assert_eq!(mine.as_array().map(Vec::len), Some(0), "b has none itself");

    // A built-in template whose image is not here: refused, nothing left.
    let before = containers(&node).len();
    a.cli_run(&["app", "install", "mosquitto"])
        .unwrap()
        .assert_one_line_error("eclipse-mosquitto");
    assert_eq!(containers(&node).len(), before);
    // An unknown id.
    a.cli_run(&["app", "install", "no-such-template"])
        .unwrap()
        .assert_one_line_error("no-such-template");

    // A Cloudy template, imported on the fly and published under its name.
    let work = tempfile::tempdir().unwrap();
    let cport = free_port();
    let cloudy = work.path().join("pad.json");
    std::fs::write(
        &cloudy,
        format!(
            r#"{{"appname": "Pad", "description": "A test pad", "image": "nuvol-test/busybox:1 httpd -f -p 8080 -h /www", "name": "pad", "ports": {{"{cport}": "8080"}}, "arch": "amd64 aarch64 armhf"}}"#
        ),
    )
    .unwrap();
    a.cli(&["app", "install", cloudy.to_str().unwrap()])
        .unwrap();
    wait_until_msg("pad running and published", T, POLL, || {
        let running = listed()
            .iter()
            .any(|x| x["name"] == "pad" && x["state"] == "running");
        let published = a
            .cli_run(&["services", "--node", &node, "--format", "json"])
            .ok()
            .and_then(|o| serde_json::from_str::<Value>(&o.stdout).ok())
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|l| l.iter().any(|s| s["port"] == cport));
        running && published
    })
    .unwrap();

    for app in ["mypage", "pad"] {
        a.cli(&["app", "remove", app, "--purge"]).unwrap();
    }
    assert!(containers(&node).is_empty());
    wait_until_msg("the tag gone with the last app", T, POLL, || {
        apps_tag(&b, &node).is_none()
    })
    .unwrap();
}
