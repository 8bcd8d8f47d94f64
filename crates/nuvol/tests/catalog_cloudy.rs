//! The catalog's Cloudy interoperability, first step: services in the Serf
//! tag `services` exactly as avahi-ps writes them, read and written by
//! nuvol's avahi-ps-style commands, with real serf agents in the cluster.

use nuvol_testkit::{
    require_serf, wait_all_agree, wait_until_msg, AgentProcess, NuvolAgent, SerfAgent,
};
use std::process::{Command, Stdio};
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

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

/// `node`'s tag `tag` as `a` sees it; panics if `a`'s member list cannot be
/// had or lacks `node` (never read as "no such tag").
fn tag_of(a: &AgentProcess, node: &str, tag: &str) -> Option<String> {
    let m = a
        .member(node)
        .unwrap_or_else(|e| panic!("member list of {}: {e:#}", a.name()))
        .unwrap_or_else(|| panic!("{node} is not a member for {}", a.name()));
    m.tag(tag).map(str::to_owned)
}

fn cli(a: &AgentProcess, args: &[&str]) -> String {
    a.nuvol_cli(NUVOL, args)
        .unwrap_or_else(|e| panic!("{args:?}: {e:#}"))
}

#[test]
fn cloudy_services_tag_both_ways() {
    if !require_serf() {
        return;
    }
    let serf = |name: &str| SerfAgent::builder(name).profile("local");
    let s1 = serf("s1").spawn().unwrap();
    let s2 = serf("s2").join_agent(&s1).spawn().unwrap();
    let n1 = NuvolAgent::builder(NUVOL, "n1")
        .profile("local")
        .join_agent(&s1)
        .arg("--cloud=guifi")
        .spawn()
        .unwrap();
    wait_all_agree(
        &[&s1, &s2, &n1],
        &[("n1", "alive"), ("s1", "alive"), ("s2", "alive")],
        T,
    )
    .unwrap();

    // A serf node whose services tag was set the Cloudy way...
    let tag = cloudy_encode(
        r#"[{"s":"ssh","d":"Shell_access","m":"s1.guifi.local","i":"10.0.0.1","p":"22","e":"guifi","t":"user=root v=2"}]"#,
    );
    s1.serf(&["tags", "-set", &format!("services={tag}")])
        .unwrap();
    // ...and one with garbage in it, which must not poison the catalog.
    s2.serf(&["tags", "-set", "services=!!not-base64!!"])
        .unwrap();
    wait_until_msg("tags reached nuvol", T, POLL, || {
        let m = cli(&n1, &["members"]);
        m.contains("!!not-base64!!") && m.contains("services=QlpoOTFBWS")
    })
    .unwrap();
    wait_until_msg("the catalog lists s1's service", T, POLL, || {
        cli(&n1, &["services"]).contains("Shell_access")
    })
    .unwrap();
    let out = cli(&n1, &["services", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{
            "node": "s1", "type": "ssh", "description": "Shell_access",
            "host": "s1.guifi.local", "ip": "10.0.0.1", "port": 22, "cloud": "guifi",
            "txt": {"user": "root", "v": "2"}, "status": "passing", "source": "cloudy",
            "checks": [],
        }])
    );
    let out = cli(&n1, &["search", "ssh"]);
    assert!(out.contains("Shell_access"), "{out}");

    // Publishing from nuvol writes Cloudy's encoding, decodable with the
    // system's base64 and bunzip2, seen by serf.
    cli(&n1, &["publish", "My web", "http", "8080", "path=/x&v=1"]);
    wait_until_msg("serf sees the services tag", T, POLL, || {
        tag_of(&s1, "n1", "services").is_some()
    })
    .unwrap();
    let json = cloudy_decode(&tag_of(&s1, "n1", "services").unwrap());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["s"], "http");
    assert_eq!(v[0]["d"], "My_web");
    assert_eq!(v[0]["m"], "n1.guifi.local");
    assert_eq!(v[0]["i"], n1.ip().to_string());
    assert_eq!(v[0]["p"], "8080");
    assert_eq!(v[0]["e"], "guifi");
    assert_eq!(v[0]["t"], "path=/x v=1");
    // Seen through serf's agent by nuvol's CLI too.
    let out = cli(&s1, &["search", "http"]);
    assert!(out.contains("My_web"), "{out}");

    // Unpublish: gone from the tag serf sees (Cloudy's view) and from the
    // catalog, while s1's service stays.
    cli(&n1, &["unpublish", "http", "8080"]);
    wait_until_msg(
        "the service left n1's services tag",
        T,
        POLL,
        || match tag_of(&s1, "n1", "services") {
            None => true,
            Some(t) => !cloudy_decode(&t).contains("My_web"),
        },
    )
    .unwrap();
    let out = cli(&n1, &["services"]);
    assert!(!out.contains("My_web"), "{out}");
    assert!(out.contains("Shell_access"), "{out}");
    let out = cli(&s1, &["search", "http"]);
    assert!(!out.contains("My_web"), "{out}");

    // Bad input: one line, non-zero, nothing changed.
    for (args, what) in [
        (vec!["unpublish", "http", "8080"], "8080"),
        (vec!["publish", "x", "bad type!", "80"], "bad type!"),
        (vec!["publish", "x", "web", "70000"], "70000"),
        (vec!["publish", "x", "web", "80", "novalue"], "novalue"),
    ] {
        n1.cli_run(&args).unwrap().assert_one_line_error(what);
    }
    let out = cli(&n1, &["services", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
}
