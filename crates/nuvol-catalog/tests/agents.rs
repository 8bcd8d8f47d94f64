//! The agent-owned catalog across real agents in one process (real sockets
//! on loopback addresses): full lists beyond the 512-byte tag, health
//! checks reaching other nodes, failed nodes' services unavailable then
//! removed, persistence across restart, service files with reload.

use nuvol_agent::{AgentBuilder, RunningAgent};
use nuvol_catalog::component::{Catalog, CatalogComponent, CatalogOpError};
use nuvol_catalog::model::{CheckDef, CheckKind};
use nuvol_catalog::view::SERVICES_TAG;
use nuvol_catalog::{Filter, ServiceDef, Source, Status};
use nuvol_testkit::LoopbackAlloc;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

struct Node {
    agent: Option<RunningAgent>,
    catalog: Catalog,
    addr: std::net::SocketAddr,
}

impl Node {
    fn agent(&self) -> &RunningAgent {
        self.agent.as_ref().expect("running")
    }
}

fn config(
    name: &str,
    ip: std::net::IpAddr,
    dir: &Path,
    remove_after: &str,
) -> nuvol_agent::AgentConfig {
    AgentBuilder::new()
        .with::<nuvol_checks::ChecksComponent>()
        .with::<CatalogComponent>()
        .configure_from(
            "",
            &[
                &format!("--node={name}"),
                &format!("--bind={ip}:7946"),
                "--profile=local",
                &format!("--data-dir={}", dir.display()),
                "--log-level=warn",
                &format!("--catalog-remove-after={remove_after}"),
                &format!("--services-dir={}", dir.join("services").display()),
                "--cloud=guifi",
            ],
        )
        .expect("valid config")
}

async fn node(name: &str, ip: std::net::IpAddr, dir: &Path, remove_after: &str) -> Node {
    let agent = config(name, ip, dir, remove_after)
        .start()
        .await
        .expect("agent starts");
    let catalog = agent.get::<Catalog>().expect("the catalog is provided");
    Node {
        addr: agent.cluster().advertise(),
        catalog,
        agent: Some(agent),
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn def(t: &str, port: u16, txt_len: usize) -> ServiceDef {
    ServiceDef {
        stype: t.into(),
        description: format!("service {port}"),
        port,
        txt: vec![
            ("path".into(), format!("/{port}")),
            ("long".into(), "x".repeat(txt_len)),
        ],
        checks: vec![],
    }
}

#[tokio::test(flavor = "current_thread")]
async fn hundred_services_reach_every_node_beyond_the_tag() {
    let ips = LoopbackAlloc::global().take(3);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node("a", ips[0], dirs[0].path(), "24h").await;
    let b = node("b", ips[1], dirs[1].path(), "24h").await;
    let c = node("c", ips[2], dirs[2].path(), "24h").await;
    b.agent()
        .cluster()
        .join(&[a.addr.to_string()], false)
        .await
        .unwrap();
    c.agent()
        .cluster()
        .join(&[a.addr.to_string()], false)
        .await
        .unwrap();

    for p in 0..100 {
        a.catalog.publish(def("http", 8000 + p, 200)).await.unwrap();
    }
    for n in [&b, &c] {
        wait_until("100 services on every node", || {
            n.catalog
                .entries(&Filter {
                    stype: None,
                    node: Some("a".into()),
                })
                .len()
                == 100
        })
        .await;
        let all = n.catalog.entries(&Filter {
            stype: None,
            node: Some("a".into()),
        });
        assert!(all
            .iter()
            .all(|s| s.source == Source::Nuvol && s.status == Status::Passing));
        let s = all.iter().find(|s| s.port == 8042).unwrap();
        assert_eq!(s.txt[1].1.len(), 200);
        assert_eq!(s.host, "a.guifi.local");
        assert_eq!(s.ip, ips[0].to_string());
    }
    // The Cloudy tag carries what fits (a prefix), and says so.
    let me = a.agent().cluster().local_member().await.unwrap();
    let tag = me.tags.get(SERVICES_TAG).expect("services tag");
    let fitted = nuvol_catalog::cloudy::decode_services(tag)
        .unwrap()
        .services
        .len();
    assert!(fitted > 0 && fitted < 100, "{fitted}");
    assert_eq!(a.catalog.cloudy_left_out(), (100 - fitted) as u64);

    // Unpublish reaches the others too.
    assert_eq!(a.catalog.unpublish("http", None).await.unwrap(), 100);
    wait_until("unpublish everywhere", || {
        b.catalog.entries(&Filter::default()).is_empty()
            && c.catalog.entries(&Filter::default()).is_empty()
    })
    .await;
    assert!(matches!(
        a.catalog.unpublish("http", Some(8000)).await,
        Err(CatalogOpError::NotFound(_))
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn checks_failure_and_removal() {
    let ips = LoopbackAlloc::global().take(2);
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut a = node("ca", ips[0], dirs[0].path(), "24h").await;
    let b = node("cb", ips[1], dirs[1].path(), "3s").await;
    b.agent()
        .cluster()
        .join(&[a.addr.to_string()], false)
        .await
        .unwrap();

    let listener = std::net::TcpListener::bind((ips[0], 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let flag = dirs[0].path().join("warn");
    let mut web = def("web", 80, 10);
    web.checks = vec![CheckDef {
        kind: CheckKind::Tcp {
            addr: format!("{}:{port}", ips[0]),
        },
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
    }];
    let mut job = def("job", 81, 10);
    job.checks = vec![CheckDef {
        kind: CheckKind::Script {
            command: format!("test -e {} && exit 1; exit 0", flag.display()),
        },
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
    }];
    a.catalog.publish(web).await.unwrap();
    a.catalog.publish(job).await.unwrap();
    let status = |n: &Node, t: &str| {
        n.catalog
            .entries(&Filter {
                stype: Some(t.into()),
                node: Some("ca".into()),
            })
            .first()
            .map(|s| s.status)
    };
    wait_until("passing on b", || {
        status(&b, "web") == Some(Status::Passing) && status(&b, "job") == Some(Status::Passing)
    })
    .await;
    drop(listener);
    std::fs::write(&flag, b"").unwrap();
    wait_until("critical and warning on b", || {
        status(&b, "web") == Some(Status::Critical) && status(&b, "job") == Some(Status::Warning)
    })
    .await;
    let web = &b.catalog.entries(&Filter {
        stype: Some("web".into()),
        node: None,
    })[0];
    assert_eq!(web.checks.len(), 1);
    assert_eq!(web.checks[0].kind, "tcp");
    // Critical services are not in the Cloudy tag; warning ones are.
    let me = a.agent().cluster().local_member().await.unwrap();
    let cloudy = nuvol_catalog::cloudy::decode_services(&me.tags[SERVICES_TAG]).unwrap();
    assert_eq!(
        cloudy
            .services
            .iter()
            .map(|s| s.stype.as_str())
            .collect::<Vec<_>>(),
        vec!["job"]
    );

    // The node fails: unavailable on b, then removed after 3 s.
    // Stopped without a leave: to b it failed.
    a.agent.take().unwrap().shutdown(false).await;
    wait_until("unavailable", || {
        status(&b, "web") == Some(Status::Unavailable)
    })
    .await;
    wait_until("removed", || {
        status(&b, "web").is_none() && status(&b, "job").is_none()
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn persistence_and_service_files() {
    let ips = LoopbackAlloc::global().take(2);
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("services");
    std::fs::create_dir_all(&svc).unwrap();
    std::fs::write(
        svc.join("ssh.toml"),
        "type = \"ssh\"\ndescription = \"Shell\"\nport = 22\n",
    )
    .unwrap();
    let a = node("p", ips[0], dir.path(), "24h").await;
    a.catalog.publish(def("http", 80, 5)).await.unwrap();
    a.catalog.publish(def("http", 81, 5)).await.unwrap();
    a.catalog.unpublish("http", Some(81)).await.unwrap();
    let keys: Vec<String> = a
        .catalog
        .entries(&Filter::default())
        .iter()
        .map(|s| s.key())
        .collect();
    assert_eq!(keys, vec!["http/80", "ssh/22"]);
    // A file-defined service cannot be unpublished through the API.
    assert!(matches!(
        a.catalog.unpublish("ssh", Some(22)).await,
        Err(CatalogOpError::FromFile { .. })
    ));
    // Reload: a new file is added; a broken file keeps what it had.
    std::fs::write(
        svc.join("dns.toml"),
        "type = \"dns\"\ndescription = \"Resolver\"\nport = 53\n",
    )
    .unwrap();
    std::fs::write(
        svc.join("ssh.toml"),
        "type = \"ssh\"\nport = \"not a number\"\n",
    )
    .unwrap();
    a.catalog.reload_files().await;
    let keys: Vec<String> = a
        .catalog
        .entries(&Filter::default())
        .iter()
        .map(|s| s.key())
        .collect();
    assert_eq!(keys, vec!["dns/53", "http/80", "ssh/22"]);
    std::fs::remove_file(svc.join("ssh.toml")).unwrap();
    a.catalog.reload_files().await;
    let keys: Vec<String> = a
        .catalog
        .entries(&Filter::default())
        .iter()
        .map(|s| s.key())
        .collect();
    assert_eq!(keys, vec!["dns/53", "http/80"]);
    // A second agent on the same data dir while the first holds it: a
    // clear error, nothing overwritten. (Restart after a crash is tested
    // end to end with the binary in crates/nuvol/tests.)
    let err = config("p2", ips[1], dir.path(), "60s")
        .start()
        .await
        .err()
        .expect("must fail");
    assert!(
        err.to_string()
            .starts_with("component catalog failed to start"),
        "{err}"
    );
    assert!(err.to_string().contains("catalog.redb"), "{err}");
}
