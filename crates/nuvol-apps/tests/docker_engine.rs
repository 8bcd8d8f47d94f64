//! The Docker driver against the real daemon (no mocks): a busybox image
//! built locally (there is no registry), containers, networks and volumes
//! named `nuvol-t-<pid>-<test>-...` and labelled with a per-test app,
//! removed by that label at the end even when the test fails.
//!
//! A missing daemon or busybox is a skip, or a failure under
//! `NUVOL_REQUIRE_SYSTEM=1`.

use futures_util::StreamExt;
use nuvol_apps::docker::Docker;
use nuvol_apps::driver::{Engine, Health, Observed, RunState};
use nuvol_apps::plan::{
    ContainerSpec, HealthSpec, Mount, MountSource, NetworkSpec, PortMap, Proto, RestartPolicy,
    VolumeSpec, LABEL_APP, LABEL_NODE, LABEL_SERVICE, LABEL_SPEC,
};
use nuvol_apps::AppError;
use nuvol_testkit::docker::{busybox_image, docker_available};
use nuvol_testkit::free_port;
use nuvol_testkit::netns::{run, skip_or_fail};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IMAGE: &str = "nuvol-test/busybox:1";
const NODE: &str = "test-node";
const DEADLINE: Duration = Duration::from_secs(60);

/// Removes everything labelled with the test's app when dropped.
struct Cleanup {
    app: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label={LABEL_APP}={}", self.app);
        let ids = |what: &[&str]| -> Vec<String> {
            let mut cmd = vec!["docker"];
            cmd.extend_from_slice(what);
            cmd.extend_from_slice(&["--filter", &filter]);
            run(&cmd)
                .map(|o| o.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        for (list, rm) in [
            (&["ps", "-aq"][..], &["rm", "-f"][..]),
            (&["volume", "ls", "-q"][..], &["volume", "rm", "-f"][..]),
            (&["network", "ls", "-q"][..], &["network", "rm"][..]),
        ] {
            for id in ids(list) {
                let mut cmd = vec!["docker"];
                cmd.extend_from_slice(rm);
                cmd.push(&id);
                if let Err(e) = run(&cmd) {
                    eprintln!("cleanup of {}: {e}", self.app);
                }
            }
        }
    }
}

/// The daemon, the image and a connected driver; `None` to skip.
async fn setup(test: &str) -> Option<(Docker, Cleanup, String)> {
    if let Err(e) = docker_available() {
        skip_or_fail(test, &e);
        return None;
    }
    if let Err(e) = busybox_image(IMAGE) {
        skip_or_fail(test, &e);
        return None;
    }
    let docker = match Docker::connect(None, NODE).await {
        Ok(d) => d,
        Err(e) => panic!("{test}: connect: {e}"),
    };
    let app = format!("nuvol-t-{}-{test}", std::process::id());
    Some((docker, Cleanup { app: app.clone() }, app))
}

fn spec(app: &str, service: &str, command: &[&str]) -> ContainerSpec {
    ContainerSpec {
        service: service.to_owned(),
        name: format!("{app}-{service}"),
        image: IMAGE.to_owned(),
        command: Some(command.iter().map(|s| (*s).to_owned()).collect()),
        entrypoint: None,
        env: Vec::new(),
        ports: Vec::new(),
        mounts: Vec::new(),
        networks: Vec::new(),
        aliases: Vec::new(),
        network_mode: None,
        restart: RestartPolicy::No,
        health: None,
        labels: BTreeMap::new(),
        depends_on: Vec::new(),
        memory: None,
        nano_cpus: None,
        user: None,
        working_dir: None,
        hostname: None,
        stop_signal: None,
        stop_timeout: None,
        cap_add: Vec::new(),
        cap_drop: Vec::new(),
        read_only: false,
        init: false,
        tty: false,
        extra_hosts: Vec::new(),
    }
}

/// Poll `list` until the container named `name` satisfies `ok`.
async fn wait_for(
    docker: &Docker,
    name: &str,
    what: &str,
    ok: impl Fn(&Observed) -> bool,
) -> Observed {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < DEADLINE {
        let list = docker.list().await.unwrap_or_else(|e| panic!("list: {e}"));
        if let Some(o) = list.into_iter().find(|o| o.name == name) {
            if ok(&o) {
                return o;
            }
            last = Some(o);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{name} never became {what}; last seen: {last:?}");
}

fn inspect(what: &str, format: &str) -> String {
    run(&["docker", "inspect", "--format", format, what])
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_owned()
}

/// A plain HTTP/1.0 GET; the whole response, or an error.
async fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn version_is_negotiated_down_to_the_daemons() {
    let Some((docker, _c, _)) = setup("version").await else {
        return;
    };
    let daemon = run(&["docker", "version", "--format", "{{.Server.APIVersion}}"])
        .unwrap_or_else(|e| panic!("{e}"));
    let (version, api) = docker
        .version()
        .await
        .unwrap_or_else(|e| panic!("version: {e}"));
    assert_eq!(api, daemon.trim());
    // bollard's default is newer than any daemon of this test machine.
    assert_eq!(docker.api_version(), daemon.trim());
    assert!(!version.is_empty());
    eprintln!("engine {version}, API {api}");
}

#[tokio::test]
async fn a_missing_socket_is_a_clear_docker_error() {
    for path in [
        "/nonexistent/nuvol/docker.sock",
        "unix:///nonexistent/nuvol/docker.sock",
    ] {
        match Docker::connect(Some(path), NODE).await {
            Err(AppError::Docker(msg)) => assert!(
                msg.contains("cannot reach the Docker daemon at /nonexistent/nuvol/docker.sock"),
                "{msg}"
            ),
            Err(e) => panic!("{path}: wrong error {e:?}"),
            Ok(_) => panic!("{path}: connected"),
        }
    }
}

#[tokio::test]
async fn networks_and_volumes_are_ensured_idempotently() {
    let Some((docker, _c, app)) = setup("netvol").await else {
        return;
    };
    let net = NetworkSpec {
        key: "back".into(),
        name: format!("{app}-back"),
        internal: true,
    };
    let vol = VolumeSpec {
        key: "data".into(),
        name: format!("{app}-data"),
    };
    for _ in 0..2 {
        docker
            .ensure_network(&app, &net)
            .await
            .unwrap_or_else(|e| panic!("ensure_network: {e}"));
        docker
            .ensure_volume(&app, &vol)
            .await
            .unwrap_or_else(|e| panic!("ensure_volume: {e}"));
    }
    assert_eq!(
        docker.networks(&app).await.ok(),
        Some(vec![net.name.clone()])
    );
    assert_eq!(
        docker.volumes(&app).await.ok(),
        Some(vec![vol.name.clone()])
    );
    assert_eq!(
        inspect(&net.name, "{{.Internal}} {{.Driver}}"),
        "true bridge"
    );
    let node_label = format!("{{{{index .Labels \"{LABEL_NODE}\"}}}}");
    assert_eq!(inspect(&net.name, &node_label), NODE);
    let vol_label = run(&[
        "docker",
        "volume",
        "inspect",
        "--format",
        &format!("{{{{index .Labels \"{LABEL_APP}\"}}}}"),
        &vol.name,
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(vol_label.trim(), app);
    for _ in 0..2 {
        docker
            .remove_network(&net.name)
            .await
            .unwrap_or_else(|e| panic!("remove_network: {e}"));
        docker
            .remove_volume(&vol.name)
            .await
            .unwrap_or_else(|e| panic!("remove_volume: {e}"));
    }
    assert_eq!(docker.networks(&app).await.ok(), Some(vec![]));
    assert_eq!(docker.volumes(&app).await.ok(), Some(vec![]));
}

#[tokio::test]
async fn an_http_service_answers_and_becomes_healthy() {
    let Some((docker, _c, app)) = setup("http").await else {
        return;
    };
    let front = NetworkSpec {
        key: "front".into(),
        name: format!("{app}-front"),
        internal: false,
    };
    let back = NetworkSpec {
        key: "back".into(),
        name: format!("{app}-back"),
        internal: true,
    };
    let vol = VolumeSpec {
        key: "data".into(),
        name: format!("{app}-data"),
    };
    for n in [&front, &back] {
        docker
            .ensure_network(&app, n)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    docker
        .ensure_volume(&app, &vol)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let app_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let mut s = spec(
        &app,
        "web",
        &[
            "sh",
            "-c",
            "echo \"greeting=$GREETING\"; exec httpd -f -p 8080 -h /www",
        ],
    );
    s.env = vec![("GREETING".into(), "hi there".into())];
    s.ports = vec![PortMap {
        host_ip: Some([127, 0, 0, 1].into()),
        host: port,
        container: 8080,
        proto: Proto::Tcp,
    }];
    s.mounts = vec![
        Mount {
            source: MountSource::Volume(vol.name.clone()),
            target: "/data".into(),
            read_only: false,
        },
        Mount {
            source: MountSource::AppDir("conf/site".into()),
            target: "/conf".into(),
            read_only: true,
        },
        Mount {
            source: MountSource::Tmpfs(Some(1 << 20)),
            target: "/scratch".into(),
            read_only: false,
        },
    ];
    s.networks = vec![front.name.clone(), back.name.clone()];
    s.aliases = vec!["www".into()];
    s.restart = RestartPolicy::UnlessStopped;
    s.health = Some(HealthSpec {
        test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
            .map(String::from)
            .to_vec(),
        interval: Duration::from_millis(500),
        timeout: Duration::from_secs(3),
        retries: 3,
        start_period: Duration::from_secs(0),
    });
    s.labels = BTreeMap::from([("org.example.tier".into(), "front".into())]);
    s.memory = Some(64 << 20);
    s.nano_cpus = Some(500_000_000);
    s.hostname = Some("webhost".into());
    s.working_dir = Some("/www".into());
    s.stop_signal = Some("SIGTERM".into());
    s.stop_timeout = Some(Duration::from_secs(3));
    s.cap_drop = vec!["NET_RAW".into()];
    s.init = true;
    s.extra_hosts = vec!["peer.example:10.9.9.9".into()];

    let id = docker
        .create(&app, &s, app_dir.path())
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert!(
        app_dir.path().join("conf/site").is_dir(),
        "the ./ bind was created"
    );
    docker.start(&id).await.unwrap_or_else(|e| panic!("{e}"));

    let o = wait_for(&docker, &s.name, "healthy", |o| o.health == Health::Healthy).await;
    assert_eq!(o.id, id);
    assert_eq!(o.state, RunState::Running);
    assert_eq!(o.app, app);
    assert_eq!(o.service, "web");
    assert_eq!(o.spec, s.hash());
    assert!(o.image_id.starts_with("sha256:"), "{}", o.image_id);
    assert_eq!(o.exit_code, None);

    let body = http_get(port)
        .await
        .unwrap_or_else(|e| panic!("GET 127.0.0.1:{port}: {e}"));
    assert!(body.contains("hello from nuvol"), "{body}");

    let label = |k: &str| inspect(&id, &format!("{{{{index .Config.Labels \"{k}\"}}}}"));
    assert_eq!(label(LABEL_APP), app);
    assert_eq!(label(LABEL_SERVICE), "web");
    assert_eq!(label(LABEL_SPEC), s.hash());
    assert_eq!(label(LABEL_NODE), NODE);
    assert_eq!(label("org.example.tier"), "front");
    assert_eq!(
        inspect(
            &id,
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}} \
             {{.Config.Hostname}} {{.Config.WorkingDir}} {{.HostConfig.Init}} {{.HostConfig.CapDrop}} \
             {{.HostConfig.ExtraHosts}} {{.Config.StopTimeout}}"
        ),
        format!(
            "{} 500000000 unless-stopped webhost /www true [NET_RAW] [peer.example:10.9.9.9] 3",
            64 << 20
        )
    );
    let aliases = inspect(
        &id,
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").Aliases}}}}",
            back.name
        ),
    );
    assert!(
        aliases.contains("web") && aliases.contains("www"),
        "{aliases}"
    );
    let nets = inspect(
        &id,
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
    );
    assert!(
        nets.contains(&front.name) && nets.contains(&back.name),
        "{nets}"
    );
    let mounts = inspect(
        &id,
        "{{range .Mounts}}{{.Type}}:{{.Destination}}:{{.RW}} {{end}}",
    );
    for m in [
        "volume:/data:true",
        "bind:/conf:false",
        "tmpfs:/scratch:true",
    ] {
        assert!(mounts.contains(m), "{m} in {mounts}");
    }

    let lines: Vec<String> = docker
        .logs(&id, 10, false)
        .await
        .unwrap_or_else(|e| panic!("logs: {e}"))
        .map(|l| l.map(|l| l.text).unwrap_or_else(|e| panic!("{e}")))
        .collect()
        .await;
    assert_eq!(lines, ["greeting=hi there"]);

    docker
        .stop(&id, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("stop: {e}"));
    // Stopping a stopped container is fine.
    docker
        .stop(&id, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("stop again: {e}"));
    docker.remove(&id).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(docker
        .list()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .all(|o| o.id != id));
}

#[tokio::test]
async fn exit_codes_and_restarts_are_observed() {
    let Some((docker, _c, app)) = setup("exit").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let once = spec(&app, "once", &["sh", "-c", "exit 3"]);
    let mut retried = spec(&app, "retried", &["sh", "-c", "exit 4"]);
    retried.restart = RestartPolicy::OnFailure(2);
    for s in [&once, &retried] {
        let id = docker
            .create(&app, s, dir.path())
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
        docker.start(&id).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let o = wait_for(&docker, &once.name, "exited", |o| {
        o.state == RunState::Exited
    })
    .await;
    assert_eq!(o.exit_code, Some(3));
    assert_eq!(o.restart_count, 0);
    assert_eq!(o.health, Health::None);
    let o = wait_for(&docker, &retried.name, "exited after 2 restarts", |o| {
        o.state == RunState::Exited && o.restart_count == 2
    })
    .await;
    assert_eq!(o.exit_code, Some(4));
}

#[tokio::test]
async fn a_volume_is_copied_out_of_a_stopped_container_and_into_a_fresh_one() {
    let Some((docker, _c, app)) = setup("copy").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut ids = Vec::new();
    for (key, cmd) in [
        ("a", "mkdir -p /data/sub && echo secret > /data/sub/f.txt"),
        ("b", "cat /data/sub/f.txt"),
    ] {
        let vol = VolumeSpec {
            key: key.into(),
            name: format!("{app}-{key}"),
        };
        docker
            .ensure_volume(&app, &vol)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut s = spec(&app, key, &["sh", "-c", cmd]);
        s.mounts = vec![Mount {
            source: MountSource::Volume(vol.name.clone()),
            target: "/data".into(),
            read_only: false,
        }];
        ids.push(
            docker
                .create(&app, &s, dir.path())
                .await
                .unwrap_or_else(|e| panic!("create: {e}")),
        );
    }
    docker
        .start(&ids[0])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let o = wait_for(&docker, &format!("{app}-a"), "exited", |o| {
        o.state == RunState::Exited
    })
    .await;
    assert_eq!(o.exit_code, Some(0));

    let archive = dir.path().join("data.tar");
    docker
        .copy_out(&ids[0], "/data", &archive)
        .await
        .unwrap_or_else(|e| panic!("copy_out: {e}"));
    let listing =
        run(&["tar", "-tf", &archive.to_string_lossy()]).unwrap_or_else(|e| panic!("{e}"));
    assert!(listing.contains("data/sub/f.txt"), "{listing}");

    // "b" was never started: its volume is mounted for the copy anyway.
    docker
        .copy_in(&ids[1], "/", &archive)
        .await
        .unwrap_or_else(|e| panic!("copy_in: {e}"));
    docker
        .start(&ids[1])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let o = wait_for(&docker, &format!("{app}-b"), "exited", |o| {
        o.state == RunState::Exited
    })
    .await;
    assert_eq!(o.exit_code, Some(0));
    let lines: Vec<String> = docker
        .logs(&ids[1], 10, false)
        .await
        .unwrap_or_else(|e| panic!("logs: {e}"))
        .filter_map(|l| async move { l.ok().map(|l| l.text) })
        .collect()
        .await;
    assert_eq!(lines, ["secret"]);

    // A missing path is an error, and no partial file is left.
    let bad = dir.path().join("bad.tar");
    match docker.copy_out(&ids[0], "/no/such/path", &bad).await {
        Err(AppError::Docker(msg)) => assert!(msg.contains("/no/such/path"), "{msg}"),
        other => panic!("copy_out of a missing path: {other:?}"),
    }
    assert!(!bad.exists());
}

#[tokio::test]
async fn logs_are_read_and_followed() {
    let Some((docker, _c, app)) = setup("logs").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let done = spec(&app, "done", &["sh", "-c", "echo hello; echo oops >&2"]);
    let ticker = spec(
        &app,
        "ticker",
        &[
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
        ],
    );
    let done_id = docker
        .create(&app, &done, dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    docker
        .start(&done_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for(&docker, &done.name, "exited", |o| {
        o.state == RunState::Exited
    })
    .await;
    let mut lines: Vec<(bool, String)> = docker
        .logs(&done_id, 100, false)
        .await
        .unwrap_or_else(|e| panic!("logs: {e}"))
        .map(|l| {
            l.map(|l| (l.stderr, l.text))
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
        .await;
    // stdout and stderr are separate streams: their order may differ.
    lines.sort();
    assert_eq!(
        lines,
        [(false, "hello".to_owned()), (true, "oops".to_owned())]
    );
    let tail: Vec<_> = docker
        .logs(&done_id, 0, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .collect()
        .await;
    assert!(tail.is_empty(), "tail 0: {tail:?}");

    let id = docker
        .create(&app, &ticker, dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    docker.start(&id).await.unwrap_or_else(|e| panic!("{e}"));
    let mut stream = docker
        .logs(&id, 1, true)
        .await
        .unwrap_or_else(|e| panic!("logs: {e}"));
    let mut got = Vec::new();
    while got.len() < 3 {
        match tokio::time::timeout(DEADLINE, stream.next()).await {
            Ok(Some(Ok(l))) => got.push(l.text),
            other => panic!("following: {other:?} after {got:?}"),
        }
    }
    drop(stream);
    assert!(got.iter().all(|l| l.starts_with("tick ")), "{got:?}");
    let n: Vec<u32> = got
        .iter()
        .filter_map(|l| l.trim_start_matches("tick ").parse().ok())
        .collect();
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");

    match docker.logs("nuvol-t-no-such-container", 10, false).await {
        Err(AppError::Docker(msg)) => assert!(msg.contains("No such container"), "{msg}"),
        Err(e) => panic!("logs of a missing container: {e:?}"),
        Ok(_) => panic!("logs of a missing container"),
    }
}

#[tokio::test]
async fn missing_images_and_unknown_objects() {
    let Some((docker, _c, app)) = setup("missing").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut s = spec(&app, "ghost", &["true"]);
    s.image = format!("{app}-no-such-image:1");
    match docker.create(&app, &s, dir.path()).await {
        Err(AppError::Image { image, why }) => {
            assert_eq!(image, s.image);
            assert!(why.contains("not present"), "{why}");
        }
        other => panic!("create with a missing image: {other:?}"),
    }
    assert_eq!(docker.image_id(&s.image).await.ok(), Some(None));
    let have = docker
        .image_id(IMAGE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(have.is_some_and(|id| id.starts_with("sha256:")));

    // A registry that is not there (nothing listens on port 9).
    let image = "127.0.0.1:9/nuvol-no-such-image:1";
    match docker.pull(image).await {
        Err(AppError::Image { image: i, why }) => {
            assert_eq!(i, image);
            assert!(!why.is_empty());
            eprintln!("pull failed as expected: {why}");
        }
        other => panic!("pull of a missing image: {other:?}"),
    }

    // A container on a network that does not exist is the engine's error
    // (Docker 20.10 refuses it at start, newer engines at create), not a
    // missing image.
    let mut s = spec(&app, "lost", &["true"]);
    s.networks = vec![format!("{app}-no-such-net")];
    let r = match docker.create(&app, &s, dir.path()).await {
        Ok(id) => docker.start(&id).await,
        Err(e) => Err(e),
    };
    match r {
        Err(AppError::Docker(msg)) => assert!(msg.contains("no-such-net"), "{msg}"),
        other => panic!("a container on a missing network: {other:?}"),
    }

    let nope = format!("{app}-nope");
    docker.remove(&nope).await.unwrap_or_else(|e| panic!("{e}"));
    docker
        .remove_volume(&nope)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    docker
        .remove_network(&nope)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        docker.start(&nope).await,
        Err(AppError::Docker(_))
    ));
}

#[tokio::test]
async fn host_network_mode_and_app_dir_binds() {
    let Some((docker, _c, app)) = setup("mode").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("motd"), "from the host\n").unwrap_or_else(|e| panic!("{e}"));
    let mut s = spec(&app, "cat", &["cat", "/etc/motd"]);
    s.network_mode = Some("none".into());
    s.read_only = true;
    s.mounts = vec![Mount {
        source: MountSource::AppDir("motd".into()),
        target: "/etc/motd".into(),
        read_only: true,
    }];
    let id = docker
        .create(&app, &s, dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        inspect(
            &id,
            "{{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}}"
        ),
        "none true"
    );
    docker.start(&id).await.unwrap_or_else(|e| panic!("{e}"));
    wait_for(&docker, &s.name, "exited", |o| o.state == RunState::Exited).await;
    let lines: Vec<String> = docker
        .logs(&id, 10, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|l| async move { l.ok().map(|l| l.text) })
        .collect()
        .await;
    assert_eq!(lines, ["from the host"]);
}
