//! Behaviours a review of the agent asked for, through the binary: event
//! handlers that hang, RPC stream limits, live tags in the REST API, a
//! restarted node's catalog, the metrics of every component.

use nuvol_testkit::{wait_until_msg, NuvolAgent};
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// Processes whose command line is exactly `args`.
fn processes(args: &[&str]) -> usize {
    let want: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            cmd == want
        })
        .count()
}

#[test]
fn a_hung_handler_neither_blocks_later_events_nor_outlives_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    // A unique duration, to find this test's sleeper among processes.
    let nap = format!("{}.{}", 4000 + std::process::id() % 1000, 7);
    let a = NuvolAgent::builder(NUVOL, "hang")
        .profile("local")
        .arg("--mdns=false")
        .event_handler(&format!("user:hang=sleep {nap}"))
        .event_handler(&format!(
            "user:mark=echo $SERF_USER_EVENT >> {}",
            marks.display()
        ))
        .arg("--handler-timeout=3s")
        .spawn()
        .unwrap();
    a.cli(&["event", "hang"]).unwrap();
    wait_until_msg("the hung handler runs", T, POLL, || {
        processes(&["sleep", &nap]) == 1
    })
    .unwrap();
    a.cli(&["event", "mark"]).unwrap();
    wait_until_msg("a later event's handler ran", T, POLL, || {
        std::fs::read_to_string(&marks).unwrap_or_default() == "mark\n"
    })
    .unwrap();
    // ... while the hung one was still there.
    assert_eq!(
        processes(&["sleep", &nap]),
        1,
        "the later event waited for the hung handler"
    );
    wait_until_msg("the hung handler killed at its timeout", T, POLL, || {
        processes(&["sleep", &nap]) == 0
    })
    .unwrap();
    a.wait_for_log("timed out after 3s; killed with its process group", T)
        .unwrap();
}

#[tokio::test]
async fn rpc_clients_have_a_stream_limit() {
    let a = NuvolAgent::builder(NUVOL, "limits")
        .profile("local")
        .arg("--mdns=false")
        .spawn()
        .unwrap();
    let c = nuvol_rpc::RpcClient::connect(&a.rpc_addr().to_string(), None)
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..nuvol_agent::rpc_server::MAX_STREAMS_PER_CLIENT {
        held.push(c.stream("*").await.expect("within the limit"));
    }
    let err = c.stream("*").await.err().expect("over the limit");
    assert!(
        err.to_string()
            .contains("Too many streams on this connection"),
        "{err}"
    );
    // The connection still works, and a stopped stream frees its slot.
    assert_eq!(c.members().await.unwrap().len(), 1);
    held.pop().unwrap().stop().await.unwrap();
    held.push(c.stream("*").await.expect("a slot was freed"));
    // Another client has its own allowance.
    let c2 = nuvol_rpc::RpcClient::connect(&a.rpc_addr().to_string(), None)
        .await
        .unwrap();
    c2.stream("*").await.expect("per client");
}

fn http(a: &NuvolAgent, path: &str) -> serde_json::Value {
    let url = format!("http://{}:7000{path}", a.ip());
    let body = std::process::Command::new("curl")
        .args(["-sf", &url])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    if !body.is_empty() {
        return serde_json::from_slice(&body).unwrap();
    }
    // No curl: a plain HTTP/1.0 request.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((a.ip(), 7000)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap()
}

#[test]
fn the_agent_endpoint_shows_live_tags_and_components() {
    let a = NuvolAgent::builder(NUVOL, "live")
        .profile("local")
        .arg("--mdns=false")
        .tag("role", "start")
        .spawn()
        .unwrap();
    assert_eq!(http(&a, "/v1/agent")["tags"]["role"], "start");
    a.cli(&["tags", "--set", "role=later", "--set", "zone=b"])
        .unwrap();
    let v = http(&a, "/v1/agent");
    assert_eq!(v["tags"]["role"], "later");
    assert_eq!(v["tags"]["zone"], "b");
    let comps = http(&a, "/v1/agent/components");
    let names: Vec<&str> = comps
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "rpc",
            "checks",
            "catalog",
            "dns",
            "api",
            "dashboard",
            "apps",
            "metrics",
            "reload",
            "join"
        ]
    );
    // The same table in `nuvol info`'s nuvol section.
    let info = a.cli(&["info"]).unwrap();
    for line in [
        "component.catalog = running restarts=0",
        "component.rpc = running restarts=0",
    ] {
        assert!(info.contains(line), "{info}");
    }
    // A tag the catalog owns is refused, with a reason.
    let err = a
        .cli(&["tags", "--set", "services=x"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tag \"services\" belongs to the catalog component"),
        "{err}"
    );
}

#[test]
fn metrics_of_the_driver_dns_and_catalog_are_exported() {
    let a = NuvolAgent::builder(NUVOL, "metrics")
        .profile("local")
        .arg("--mdns=false")
        .spawn()
        .unwrap();
    a.cli(&["publish", "web", "http", "8080"]).unwrap();
    let _ = std::process::Command::new("dig")
        .args([
            "+short",
            "+time=1",
            "+tries=1",
            &format!("@{}", a.ip()),
            "-p",
            "8600",
            "http.service.nuvol",
        ])
        .output();
    let text = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect((a.ip(), 7000)).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    wait_until_msg("publishes counted", T, POLL, || {
        text().contains("nuvol_catalog_publishes_total 1")
    })
    .unwrap();
    let m = text();
    for needle in [
        "nuvol_channel_dropped_total{channel=\"gossip-input\"} 0",
        "nuvol_channel_dropped_total{channel=\"persist\"} 0",
        "nuvol_channel_capacity{channel=\"query-updates\"}",
        "nuvol_gossip_suspicions_total",
        "nuvol_gossip_udp_send_errors_total",
        "nuvol_gossip_streams_dropped_total",
        "nuvol_catalog_unpublishes_total 0",
        "nuvol_catalog_cloudy_left_out 0",
        "nuvol_dns_queries_total",
        "nuvol_dns_dropped_malformed_total",
        "nuvol_component_restarts_total",
    ] {
        assert!(m.contains(needle), "/metrics lacks {needle}:\n{m}");
    }
}

#[test]
fn a_critical_component_that_cannot_start_stops_the_agent_with_one_line() {
    let ip = nuvol_testkit::LoopbackAlloc::global().take(1)[0];
    // Something else holds the RPC port.
    let _taken = std::net::TcpListener::bind((ip, 7373)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(NUVOL)
        .args([
            "agent",
            "--node=blocked",
            "--profile=local",
            "--mdns=false",
            "--log-level=err",
        ])
        .arg(format!("--bind={ip}:7946"))
        .arg(format!("--rpc-addr={ip}:7373"))
        .arg(format!("--data-dir={}", dir.path().display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "nuvol: the agent did not start: component rpc failed to start: cannot listen on"
        ) && last.contains("in use"),
        "{stderr}"
    );
}
