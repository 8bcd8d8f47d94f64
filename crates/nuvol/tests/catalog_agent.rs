//! The catalog end to end with the `nuvol` binary: the REST API's token,
//! persistence across SIGKILL, service files with SIGHUP, DNS answered to
//! the real `dig`, mDNS seen by python-zeroconf in a network namespace.

use nuvol_api::ApiClient;
use nuvol_catalog::{Filter, ServiceDef};
use nuvol_testkit::{eventually, fresh_ip, wait_until_msg, NuvolAgent, Signal};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn base(a: &NuvolAgent) -> String {
    format!("http://{}:7000", a.ip())
}

fn data_dir(a: &NuvolAgent) -> PathBuf {
    a.dir().join("data")
}

fn cli(a: &NuvolAgent, args: &[&str]) -> String {
    a.cli(args).unwrap_or_else(|e| panic!("{args:?}: {e:#}"))
}

fn token(dir: &Path) -> String {
    nuvol_api::token::read_token(dir).expect("token file")
}

fn def(t: &str, port: u16) -> ServiceDef {
    ServiceDef {
        stype: t.into(),
        description: format!("{t} {port}"),
        port,
        txt: vec![("n".into(), port.to_string())],
        checks: vec![],
    }
}

fn ports(rt: &tokio::runtime::Runtime, c: &ApiClient, t: &str) -> Vec<u16> {
    let f = Filter {
        stype: Some(t.into()),
        node: None,
    };
    rt.block_on(c.services(&f))
        .map(|l| l.iter().map(|s| s.port).collect())
        .unwrap_or_else(|e| panic!("listing {t} services: {e}"))
}

#[test]
fn writes_need_the_token_and_survive_sigkill() {
    let rt = rt();
    let ip = fresh_ip();
    let data = tempfile::tempdir().unwrap();
    let mut a = NuvolAgent::builder(NUVOL, "p1")
        .ip(ip)
        .data_dir(data.path())
        .arg("--mdns=false")
        .spawn()
        .unwrap();
    let base = base(&a);
    wait_until_msg("API up", T, POLL, || {
        rt.block_on(ApiClient::new(&base, None).unwrap().agent())
            .is_ok()
    })
    .unwrap();

    // The token file: created on first start, owner-only.
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(data.path().join("api-token")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let tok = token(data.path());

    // Writes without a valid token: 401, nothing changes.
    for bad in [None, Some("0".repeat(64))] {
        let c = ApiClient::new(&base, bad).unwrap();
        let e = rt.block_on(c.publish(&def("web", 80))).unwrap_err();
        assert!(e.is_unauthorized(), "{e}");
    }
    let c = ApiClient::new(&base, Some(tok.clone())).unwrap();
    rt.block_on(c.publish(&def("web", 81))).unwrap();
    let anon = ApiClient::new(&base, None).unwrap();
    assert!(rt
        .block_on(anon.unpublish("web", 81))
        .unwrap_err()
        .is_unauthorized());
    assert_eq!(ports(&rt, &c, "web"), vec![81]);

    // Bad input through the CLI: one line, non-zero, nothing changed.
    for args in [
        vec!["publish", "x", "bad type!", "80"],
        vec!["publish", "x", "web", "0"],
        vec!["publish", "x", "web", "80", "novalue"],
        vec!["publish", "x", "web", "80", "--check-tcp", "nohostport"],
        vec!["unpublish", "web", "9999"],
    ] {
        a.cli_run(&args).unwrap().assert_one_line_error("");
    }
    assert_eq!(ports(&rt, &c, "web"), vec![81]);

    // Prometheus metrics: the agent's and the API's own.
    let metrics = || {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "exec 3<>/dev/tcp/{}/7000; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
                ip
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Sampled once a second: wait for a sample taken after the publish.
    wait_until_msg("metrics sampled", T, POLL, || {
        let m = metrics();
        m.contains("nuvol_members{status=\"alive\"} 1")
            && m.contains("nuvol_catalog_services{status=\"passing\"} 1")
    })
    .unwrap();
    let m = metrics();
    for needle in [
        "nuvol_catalog_services{status=\"passing\"} 1",
        "nuvol_gossip_packets_total",
        "nuvol_probe_rtt_seconds",
        "nuvol_checks",
        "nuvol_api_requests_total{method=\"POST\",route=\"/v1/services\",status=\"401\"}",
        "nuvol_api_request_duration_seconds",
    ] {
        assert!(m.contains(needle), "/metrics lacks {needle}:\n{m}");
    }

    // Publish in a loop and SIGKILL the agent in the middle of it.
    let (tx, rx) = std::sync::mpsc::channel::<u16>();
    let (base2, tok2) = (base.clone(), tok.clone());
    let writer = std::thread::spawn(move || {
        let rt = self::rt();
        let c = ApiClient::new(&base2, Some(tok2)).unwrap();
        for p in 1000..3000u16 {
            if rt.block_on(c.publish(&def("bulk", p))).is_err() {
                return;
            }
            if tx.send(p).is_err() {
                return;
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < 40 {
        acked.push(rx.recv_timeout(T).expect("publishes go through"));
    }
    a.kill();
    acked.extend(rx.try_iter());
    writer.join().unwrap();
    let last = *acked.last().unwrap();

    // Restart on the same data dir: everything acknowledged is there, and
    // at most the one write in flight besides.
    a.restart().unwrap();
    wait_until_msg("API up again", T, POLL, || {
        rt.block_on(anon.agent()).is_ok()
    })
    .unwrap();
    let got = ports(&rt, &c, "bulk");
    for p in &acked {
        assert!(
            got.contains(p),
            "acknowledged publish of port {p} lost after SIGKILL"
        );
    }
    assert!(
        got.iter().all(|p| *p <= last + 1),
        "{got:?} vs last acked {last}"
    );
    assert_eq!(ports(&rt, &c, "web"), vec![81]);
    drop(a);
}

#[test]
fn service_files_reload_on_sighup() {
    let ip = fresh_ip();
    let svc = tempfile::tempdir().unwrap();
    std::fs::write(
        svc.path().join("ssh.toml"),
        "type = \"ssh\"\ndescription = \"Shell\"\nport = 22\n",
    )
    .unwrap();
    let a = NuvolAgent::builder(NUVOL, "f1")
        .ip(ip)
        .arg("--mdns=false")
        .arg(format!("--services-dir={}", svc.path().display()))
        .spawn()
        .unwrap();
    // The data dir the agent created is owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data_dir(&a))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    wait_until_msg("file service listed", T, POLL, || {
        cli(&a, &["services"]).contains("Shell")
    })
    .unwrap();
    std::fs::write(
        svc.path().join("web.toml"),
        "[[service]]\ntype = \"http\"\ndescription = \"Home page\"\nport = 80\ntxt = { path = \"/\" }\n",
    )
    .unwrap();
    a.signal(Signal::HUP).unwrap();
    wait_until_msg("reloaded", T, POLL, || {
        cli(&a, &["services"]).contains("Home_page")
    })
    .unwrap();
    // More than the 512-byte Cloudy tag holds: the CLI says so.
    let mut note = String::new();
    for i in 0..25u32 {
        let noise: String = (0..32)
            .map(|j| char::from(b'a' + ((i * 7919 + j * 104729) % 26) as u8))
            .collect();
        let out = a
            .cli_run(&[
                "publish",
                "svc",
                "app",
                &(5000 + i).to_string(),
                &format!("k={noise}"),
            ])
            .unwrap();
        out.assert_ok();
        note = out.stderr;
    }
    assert!(
        note.contains("tag holds") && note.contains("of 27 services"),
        "{note}"
    );
    // A file-defined service is not unpublished through the API.
    a.cli_run(&["unpublish", "ssh", "22"])
        .unwrap()
        .assert_one_line_error("ssh.toml");
}

fn dig(server: &NuvolAgent, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", "8600"])
        .args(args)
        .output()
        .expect("run dig");
    // dig aligns columns with tabs; one space between fields is easier to match.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn dns_answers_healthy_instances_to_dig() {
    if nuvol_testkit::netns::run(&["dig", "-v"]).is_err()
        && !nuvol_testkit::netns::skip_or_fail(
            "dns_answers_healthy_instances_to_dig",
            "dig (dnsutils) is missing",
        )
    {
        return;
    }
    let rt = rt();
    let n1 = NuvolAgent::builder(NUVOL, "d1")
        .arg("--mdns=false")
        .spawn()
        .unwrap();
    let n2 = NuvolAgent::builder(NUVOL, "d2")
        .join_agent(&n1)
        .arg("--mdns=false")
        .spawn()
        .unwrap();
    let b1 = base(&n1);
    wait_until_msg("API up", T, POLL, || {
        rt.block_on(ApiClient::new(&b1, None).unwrap().agent())
            .is_ok()
    })
    .unwrap();
    let c = ApiClient::new(&b1, Some(token(&data_dir(&n1)))).unwrap();
    rt.block_on(c.publish(&def("web", 8080))).unwrap();
    // A service whose check fails is not served.
    let mut db = def("db", 5432);
    db.checks = vec![nuvol_catalog::CheckDef {
        kind: nuvol_catalog::CheckKind::Tcp {
            addr: format!("{}:1", n1.ip()),
        },
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
    }];
    rt.block_on(c.publish(&db)).unwrap();
    for p in 0..60 {
        rt.block_on(c.publish(&def("bulk", 9000 + p))).unwrap();
    }
    let ip1 = n1.ip().to_string();
    // Asked on the other node: the catalog travelled by gossip.
    wait_until_msg("n2 answers for web", T, POLL, || {
        dig(&n2, &["web.service.nuvol", "+short"]).trim() == ip1
    })
    .unwrap();
    let srv = dig(
        &n2,
        &[
            "_web._tcp.service.nuvol",
            "SRV",
            "+noall",
            "+answer",
            "+additional",
        ],
    );
    assert!(
        srv.contains("_web._tcp.service.nuvol. 5 IN SRV 1 1 8080 d1.node.nuvol."),
        "{srv}"
    );
    assert!(
        srv.contains(&format!("d1.node.nuvol. 30 IN A {ip1}")),
        "{srv}"
    );
    let a = dig(&n2, &["web.service.nuvol", "+noall", "+answer"]);
    assert!(
        a.contains(&format!("web.service.nuvol. 5 IN A {ip1}")),
        "TTL 5: {a}"
    );
    assert!(dig(&n2, &["d1.node.nuvol", "+short"]).contains(&ip1));
    wait_until_msg("db is critical", T, POLL, || {
        cli(&n1, &["services", "--type", "db"]).contains("critical")
    })
    .unwrap();
    assert!(dig(&n1, &["db.service.nuvol"]).contains("status: NXDOMAIN"));
    assert!(dig(&n1, &["nothing.service.nuvol"]).contains("status: NXDOMAIN"));
    // 60 instances do not fit a UDP answer: truncated, complete over TCP.
    wait_until_msg("bulk everywhere", T, POLL, || {
        dig(&n2, &["bulk.service.nuvol", "SRV", "+tcp", "+short"])
            .lines()
            .count()
            == 60
    })
    .unwrap();
    let udp = dig(
        &n2,
        &["bulk.service.nuvol", "SRV", "+notcp", "+ignore", "+noedns"],
    );
    assert!(udp.contains(" tc"), "{udp}");
}

#[test]
fn mdns_announced_and_imported_in_a_netns() {
    use nuvol_testkit::netns::{require_system, NetnsPair, Proc};
    let test = "mdns_announced_and_imported_in_a_netns";
    if !require_system(test, &["zeroconf"]) {
        return;
    }
    let ns = match NetnsPair::new("nvag", "10.78.0.1", "10.78.0.2") {
        Ok(ns) => ns,
        Err(e) => {
            nuvol_testkit::netns::skip_or_fail(test, &e);
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("services");
    std::fs::create_dir_all(&svc).unwrap();
    std::fs::write(
        svc.join("web.toml"),
        "type = \"http\"\ndescription = \"Pi web\"\nport = 8080\ntxt = { path = \"/x\", v = \"2\" }\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let agent_cmd = [
        NUVOL,
        "agent",
        "--node=pi1",
        "--bind=10.78.0.1:7946",
        "--rpc-addr=10.78.0.1:7373",
        "--log-level=debug",
        "--mdns-import",
    ];
    let mut args: Vec<String> = agent_cmd.iter().map(|s| s.to_string()).collect();
    args.push(format!("--data-dir={}", data.display()));
    args.push(format!("--services-dir={}", svc.display()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let _agent = Proc::spawn("agent", &ns.a, &argv);

    let helper = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../nuvol-mdns/tests/zc_helper.py"
    );
    let mut browser = Proc::spawn(
        "zeroconf",
        &ns.b,
        &[
            "python3",
            "-u",
            helper,
            "browse",
            "10.78.0.2",
            "_http._tcp.local.",
        ],
    );
    let seen = browser.wait_json("the agent's service", |v| {
        v["event"] != "removed" && v["name"].as_str().is_some_and(|n| n.starts_with("Pi web."))
    });
    assert_eq!(seen["port"], 8080);
    assert_eq!(seen["txt"]["path"], "/x");
    assert_eq!(seen["txt"]["v"], "2");
    assert!(seen["addrs"].to_string().contains("10.78.0.1"), "{seen}");

    // A LAN device's service is imported into the catalog.
    let mut printer = Proc::spawn(
        "register",
        &ns.b,
        &[
            "python3",
            "-u",
            helper,
            "register",
            "10.78.0.2",
            "_ipp._tcp.local.",
            "Office printer",
            "631",
            "printer.local.",
            "rp=ipp/print",
        ],
    );
    printer.wait_json("registered", |v| v["event"] == "ready");
    // The agent runs in the namespace, started without waiting for its RPC:
    // a failed call is retried, and the last error reported on timeout.
    let services = || -> Result<serde_json::Value, String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.a,
                NUVOL,
                "services",
                "--rpc-addr=10.78.0.1:7373",
                "--format=json",
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    };
    let all = eventually("printer imported", T, POLL, || {
        let v = services()?;
        let found = v.as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["type"] == "ipp" && s["source"] == "mdns")
        });
        if found {
            Ok(v)
        } else {
            Err(format!("not yet: {v}"))
        }
    })
    .unwrap();
    let p = all
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "ipp")
        .unwrap()
        .clone();
    assert_eq!(p["port"], 631);
    assert_eq!(p["ip"], "10.78.0.2");
    assert_eq!(p["txt"]["rp"], "ipp/print");
    assert_eq!(p["description"], "Office_printer");
}

#[test]
fn catalog_commands_need_the_api_of_a_nuvol_agent() {
    let a = NuvolAgent::builder(NUVOL, "noapi")
        .arg("--mdns=false")
        .arg("--http-addr=")
        .spawn()
        .unwrap();
    for args in [vec!["services"], vec!["publish", "x", "web", "80"]] {
        a.cli_run(&args).unwrap().assert_one_line_error("REST API");
    }
    // Nothing was written into the tag behind the catalog's back.
    assert!(!cli(&a, &["members"]).contains("services="));
}
