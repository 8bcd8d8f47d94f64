//! Interop with an independent mDNS implementation, python-zeroconf, over a
//! veth pair between two network namespaces: nuvol's `nuvol-mdns-tool` runs
//! in namespace A (10.77.0.1), a python-zeroconf script in namespace B
//! (10.77.0.2).
//!
//! Needs root, `ip` (iproute2) and python3 with the `zeroconf` package
//! (`pip install zeroconf`). Without them the tests print a skip message and
//! pass, unless `NUVOL_REQUIRE_SYSTEM=1` is set, which makes them fail.

use nuvol_testkit::netns::{require_system, skip_or_fail, NetnsPair, Proc};
use serde_json::Value;

const TOOL: &str = env!("CARGO_BIN_EXE_nuvol-mdns-tool");
const HELPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/zc_helper.py");
const ADDR_A: &str = "10.77.0.1";
const ADDR_B: &str = "10.77.0.2";

fn setup(test: &str) -> Option<NetnsPair> {
    if !require_system(test, &["zeroconf"]) {
        return None;
    }
    match NetnsPair::new("nvmdns", ADDR_A, ADDR_B) {
        Ok(p) => Some(p),
        Err(e) => {
            skip_or_fail(test, &format!("cannot create network namespaces: {e}"));
            None
        }
    }
}

fn zc_browser(ns: &NetnsPair, types: &[&str]) -> Proc {
    let mut cmd = vec!["python3", "-u", HELPER, "browse", ADDR_B];
    cmd.extend_from_slice(types);
    let mut p = Proc::spawn("zeroconf", &ns.b, &cmd);
    p.wait_json("ready", |v| v["event"] == "ready");
    p
}

fn tool(ns: &NetnsPair, extra: &[&str]) -> Proc {
    let mut cmd = vec![TOOL, "--hostname", "nodea", "--interface", &ns.if_a];
    cmd.extend_from_slice(extra);
    let mut p = Proc::spawn("nuvol", &ns.a, &cmd);
    p.wait_line("ready", |l| l == "ready");
    p
}

fn is_added(v: &Value, name: &str) -> bool {
    (v["event"] == "added" || v["event"] == "updated") && v["name"] == name
}

#[test]
fn announced_services_are_seen_by_python_zeroconf() {
    let Some(ns) = setup("announced_services_are_seen_by_python_zeroconf") else {
        return;
    };
    let mut zc = zc_browser(&ns, &["_http._tcp.local.", "_ssh._tcp.local."]);
    // No --addr: the interface's addresses are announced.
    let mut nuvol = tool(&ns, &[]);
    nuvol.send("service http 8080 path=/x&ver=1.2 My web server");
    nuvol.send("service ssh 22 - Shell_access");
    nuvol.send("apply");
    nuvol.wait_new_line("applied", |l| l == "applied");

    let web = zc.wait_json("the http service", |v| {
        is_added(v, "My web server._http._tcp.local.")
    });
    assert_eq!(web["port"], 8080);
    assert_eq!(web["server"], "nodea.local.");
    assert_eq!(web["txt"]["path"], "/x");
    assert_eq!(web["txt"]["ver"], "1.2");
    assert!(
        web["addrs"].as_array().unwrap().iter().any(|a| a == ADDR_A),
        "{web}"
    );

    let ssh = zc.wait_json("the ssh service", |v| {
        is_added(v, "Shell_access._ssh._tcp.local.")
    });
    assert_eq!(ssh["port"], 22);
    assert_eq!(ssh["txt"], serde_json::json!({}));
    assert!(ssh["addrs"].as_array().unwrap().iter().any(|a| a == ADDR_A));
}

#[test]
fn unpublished_service_is_removed_in_python_zeroconf() {
    let Some(ns) = setup("unpublished_service_is_removed_in_python_zeroconf") else {
        return;
    };
    let mut zc = zc_browser(&ns, &["_http._tcp.local.", "_ssh._tcp.local."]);
    let mut nuvol = tool(&ns, &["--addr", ADDR_A]);
    nuvol.send("service http 80 a=1 Web");
    nuvol.send("service ssh 2222 b=2 Shell");
    nuvol.send("apply");
    nuvol.wait_new_line("applied", |l| l == "applied");
    let web = zc.wait_json("the http service", |v| is_added(v, "Web._http._tcp.local."));
    assert_eq!(web["addrs"], serde_json::json!([ADDR_A]));
    zc.wait_json("the ssh service", |v| is_added(v, "Shell._ssh._tcp.local."));

    // Keep http only, with a changed TXT.
    nuvol.send("clear");
    nuvol.send("service http 80 a=2 Web");
    nuvol.send("apply");
    nuvol.wait_new_line("applied", |l| l == "applied");
    zc.wait_json("the ssh service's removal", |v| {
        v["event"] == "removed" && v["name"] == "Shell._ssh._tcp.local."
    });
    zc.wait_json("the http service's new TXT", |v| {
        is_added(v, "Web._http._tcp.local.") && v["txt"]["a"] == "2"
    });
    // The http service kept its name: it was never removed nor renamed.
    let seen = zc.drain();
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("removed") && l.contains("_http._tcp")),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|l| l.contains("Web (2)")), "{seen:?}");
}

#[test]
fn python_zeroconf_service_is_imported() {
    let Some(ns) = setup("python_zeroconf_service_is_imported") else {
        return;
    };
    let mut nuvol = tool(&ns, &["--import"]);
    // Our own announcement must not be imported.
    nuvol.send("service http 8000 own=1 Own web");
    nuvol.send("apply");
    nuvol.wait_new_line("applied", |l| l == "applied");

    let mut zc = Proc::spawn(
        "zeroconf",
        &ns.b,
        &[
            "python3",
            "-u",
            HELPER,
            "register",
            ADDR_B,
            "_http._tcp.local.",
            "Py Web",
            "8123",
            "pyhost.local.",
            "a=1",
            "b=two words",
        ],
    );
    zc.wait_json("ready", |v| v["event"] == "ready");

    let found = nuvol.wait_json("the imported service", |v| {
        v["event"] == "found" && v["instance"] == "Py Web"
    });
    assert_eq!(found["type"], "http");
    assert_eq!(found["host"], "pyhost.local");
    assert_eq!(found["port"], 8123);
    assert_eq!(found["addrs"], serde_json::json!([ADDR_B]));
    assert_eq!(found["txt"]["a"], "1");
    assert_eq!(found["txt"]["b"], "two words");

    // Unregistering sends goodbyes: the import reports it lost.
    zc.close_stdin();
    nuvol.wait_json("the lost event", |v| {
        v["event"] == "lost" && v["type"] == "http" && v["instance"] == "Py Web"
    });
    let own = nuvol
        .drain()
        .iter()
        .filter(|l| l.contains("Own web"))
        .cloned()
        .collect::<Vec<_>>();
    assert!(own.is_empty(), "own service imported: {own:?}");
}
