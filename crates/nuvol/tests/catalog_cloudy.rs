//! The catalog's Cloudy interoperability, first step: services in the Serf
//! tag `services` exactly as avahi-ps writes them, read and written by
//! nuvol's avahi-ps-style commands, with real serf agents in the cluster.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// `echo JSON | bzip2 | base64 -w0`, with the system's tools, as Cloudy does.
fn cloudy_encode(json: &str) -> String {
    let sh = format!("printf '%s' '{json}' | bzip2 -c | base64 -w0");
    let out = Command::new("sh").arg("-c").arg(sh).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// `base64 -d | bunzip2`, with the system's tools.
fn cloudy_decode(tag: &str) -> String {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("base64 -d | bunzip2 -c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(tag.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not decodable with base64 -d | bunzip2"
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tag_of(a: &Agent, node: &str, tag: &str) -> Option<String> {
    let out = a.serf_cli(&["members", "-format=json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["members"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == node)?["tags"][tag]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn cloudy_services_tag_both_ways() {
    if !require_serf() {
        return;
    }
    let o = || Opts {
        profile: Some("local"),
        ..Default::default()
    };
    let s1 = Agent::start(Kind::Serf, "s1", o());
    let s2 = Agent::start(
        Kind::Serf,
        "s2",
        Opts {
            join: vec![s1.bind],
            ..o()
        },
    );
    let n1 = Agent::start(
        Kind::Nuvol,
        "n1",
        Opts {
            join: vec![s1.bind],
            extra: vec!["--cloud=guifi".into()],
            ..o()
        },
    );
    wait_for("joined", T, || {
        all_agree(
            &[&s1, &s2, &n1],
            &[("n1", "alive"), ("s1", "alive"), ("s2", "alive")],
        )
    });

    // A serf node whose services tag was set the Cloudy way...
    let tag = cloudy_encode(
        r#"[{"s":"ssh","d":"Shell_access","m":"s1.guifi.local","i":"10.0.0.1","p":"22","e":"guifi","t":"user=root v=2"}]"#,
    );
    let out = s1.serf_cli(&["tags", "-set", &format!("services={tag}")]);
    assert!(out.status.success());
    // ...and one with garbage in it, which must not poison the catalog.
    let out = s2.serf_cli(&["tags", "-set", "services=!!not-base64!!"]);
    assert!(out.status.success());
    wait_for("tags reached nuvol", T, || {
        stdout(&n1.nuvol_cli(&["members"])).contains("!!not-base64!!")
            && stdout(&n1.nuvol_cli(&["members"])).contains("services=QlpoOTFBWS")
    });
    wait_for("the catalog lists s1's service", T, || {
        stdout(&n1.nuvol_cli(&["services"])).contains("Shell_access")
    });
    let out = n1.nuvol_cli(&["services", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{
            "node": "s1", "type": "ssh", "description": "Shell_access",
            "host": "s1.guifi.local", "ip": "10.0.0.1", "port": 22, "cloud": "guifi",
            "txt": {"user": "root", "v": "2"}, "status": "passing", "source": "cloudy",
            "checks": [],
        }])
    );
    let out = n1.nuvol_cli(&["search", "ssh"]);
    assert!(stdout(&out).contains("Shell_access"), "{}", stdout(&out));

    // Publishing from nuvol writes Cloudy's encoding, decodable with the
    // system's base64 and bunzip2, seen by serf.
    let out = n1.nuvol_cli(&["publish", "My web", "http", "8080", "path=/x&v=1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("serf sees the services tag", T, || {
        tag_of(&s1, "n1", "services").is_some()
    });
    let json = cloudy_decode(&tag_of(&s1, "n1", "services").unwrap());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["s"], "http");
    assert_eq!(v[0]["d"], "My_web");
    assert_eq!(v[0]["m"], "n1.guifi.local");
    assert_eq!(v[0]["i"], n1.bind.ip().to_string());
    assert_eq!(v[0]["p"], "8080");
    assert_eq!(v[0]["e"], "guifi");
    assert_eq!(v[0]["t"], "path=/x v=1");
    // Seen through serf's agent by nuvol's CLI too.
    let out = s1.nuvol_cli(&["search", "http"]);
    assert!(stdout(&out).contains("My_web"), "{}", stdout(&out));

    // Unpublish, and bad input: one line, non-zero, nothing changed.
    let out = n1.nuvol_cli(&["unpublish", "http", "8080"]);
    assert!(out.status.success());
    for args in [
        vec!["unpublish", "http", "8080"],
        vec!["publish", "x", "bad type!", "80"],
        vec!["publish", "x", "web", "70000"],
        vec!["publish", "x", "web", "80", "novalue"],
    ] {
        let out = n1.nuvol_cli(&args);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim().lines().count(),
            1,
            "{args:?}"
        );
    }
}
