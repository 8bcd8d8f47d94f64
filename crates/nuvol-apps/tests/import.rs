//! The importers against realistic Cloudy, CasaOS and Portainer templates:
//! every definition plans, and the reports name what was left out.

use nuvol_apps::compose::{plan, read_meta};
use nuvol_apps::import::{self, import, import_all, import_dir, Format, Imported};
use nuvol_apps::meta::{Meta, ParamKind};
use nuvol_apps::plan::{AppPlan, MountSource, Proto};
use std::collections::BTreeMap;
use std::path::Path;

fn fixture(p: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/import")
            .join(p),
    )
    .unwrap()
}

/// Plan an import with its required parameters filled.
fn planned(i: &Imported) -> (AppPlan, Meta) {
    let (meta, _) = read_meta(&i.definition).unwrap();
    let (p, m, _) = plan(&i.id, &i.definition, &import::placeholders(&meta))
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", i.id, i.definition.compose));
    (p, m)
}

fn has(report: &[String], want: &str) -> bool {
    report.iter().any(|r| r.contains(want))
}

#[test]
fn cloudy_templates() {
    let apps = import(&fixture("cloudy.json"), None).unwrap();
    assert_eq!(apps.len(), 2);
    let ipfs = &apps[0];
    assert_eq!((ipfs.id.as_str(), ipfs.format), ("go-ipfs", Format::Cloudy));
    let (p, m) = planned(ipfs);
    let c = &p.containers[0];
    assert_eq!(c.image, "ipfs/go-ipfs");
    assert_eq!(
        c.command.as_deref(),
        Some(&["daemon".to_owned(), "--migrate".to_owned()][..])
    );
    assert_eq!(
        c.ports
            .iter()
            .map(|p| (p.host, p.container))
            .collect::<Vec<_>>(),
        [(4001, 4001), (8080, 8080), (5001, 5001)]
    );
    assert_eq!(c.env, [("IPFS_PROFILE".to_owned(), "server".to_owned())]);
    assert_eq!(c.mounts[0].source, MountSource::Host("/srv/ipfs".into()));
    assert_eq!(m.architectures, ["arm", "arm64", "amd64"]);
    assert_eq!(m.publish[0].stype, "go-ipfs");
    assert_eq!(m.publish[0].port, 4001);
    assert_eq!(
        m.publish[0].description.as_deref(),
        Some("A peer-to-peer hypermedia protocol node")
    );
    assert_eq!(m.title.get("en"), "IPFS");
    assert!(has(&ipfs.report, "links: "), "{:?}", ipfs.report);
    assert!(
        has(&ipfs.report, "/srv/ipfs is a path on the host"),
        "{:?}",
        ipfs.report
    );

    let relay = &apps[1];
    let (p, m) = planned(relay);
    let c = &p.containers[0];
    assert_eq!(c.network_mode.as_deref(), Some("host"));
    assert!(c.ports.is_empty());
    assert_eq!(
        c.env,
        [(
            "RELAY_OPTS".to_owned(),
            "-pools= -global-rate=$RATE".to_owned()
        )]
    );
    assert_eq!(m.publish[0].port, 22067);
    assert_eq!(m.architectures, ["amd64"]);
    assert!(has(&relay.report, "misc.cpu"), "{:?}", relay.report);
    assert!(has(&relay.report, "host networking"), "{:?}", relay.report);

    let one = &import(&fixture("cloudy-one.json"), None).unwrap()[0];
    let (p, m) = planned(one);
    assert_eq!(
        p.containers[0].env,
        [("TITLE".to_owned(), "Guifi pad".to_owned())]
    );
    assert_eq!(m.architectures, ["amd64", "arm"]);
    assert!(
        has(&one.report, "--privileged not carried over"),
        "{:?}",
        one.report
    );
    assert!(has(&one.report, "mantainer"), "{:?}", one.report);
}

#[test]
fn casaos_apps() {
    let b = import_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import/casaos/syncthing"),
    )
    .unwrap();
    assert!(b.skipped.is_empty(), "{:?}", b.skipped);
    let st = &b.apps[0];
    assert_eq!((st.id.as_str(), st.format), ("syncthing", Format::Casaos));
    let (p, m) = planned(st);
    let c = &p.containers[0];
    assert_eq!(c.image, "linuxserver/syncthing:1.27.2");
    assert_eq!(c.name, "nuvol-syncthing-syncthing");
    let env: BTreeMap<_, _> = c.env.iter().cloned().collect();
    assert_eq!(
        (
            env["PUID"].as_str(),
            env["PGID"].as_str(),
            env["TZ"].as_str()
        ),
        ("1000", "1000", "UTC")
    );
    assert_eq!(c.ports.len(), 4);
    assert!(c
        .ports
        .iter()
        .any(|p| p.host == 22000 && p.proto == Proto::Udp));
    assert_eq!(c.mounts[0].source, MountSource::AppDir("config".into()));
    assert_eq!(c.mounts[1].source, MountSource::Host("/DATA".into()));
    assert_eq!(c.network_mode.as_deref(), Some("bridge"));
    assert_eq!(m.publish[0].stype, "http");
    assert_eq!(m.publish[0].port, 8384);
    assert_eq!(m.publish[0].txt["path"], "/");
    assert_eq!(m.architectures, ["amd64", "arm", "arm64"]);
    assert_eq!(m.category, "backup");
    assert_eq!(m.title.get("en"), "Syncthing");
    assert!(m.description.get("es").starts_with("Syncthing sustituye"));
    let tz = m.parameters.iter().find(|p| p.name == "TZ").unwrap();
    assert_eq!(tz.description.get("en"), "TimeZone");
    for want in [
        "container_name",
        "cpu_shares",
        "reservations",
        "becomes ./config",
        "/DATA is a CasaOS host path",
    ] {
        assert!(has(&st.report, want), "{want}: {:?}", st.report);
    }

    let memos = &import(&fixture("casaos/memos/docker-compose.yml"), Some("memos")).unwrap()[0];
    let (p, m) = planned(memos);
    let c = &p.containers[0];
    let env: BTreeMap<_, _> = c.env.iter().cloned().collect();
    assert_eq!(env["MEMOS_PORT"], "5230");
    // Optional (no default): empty unless given.
    assert_eq!(env["MEMOS_SECRET"], "");
    assert_eq!(c.mounts[0].source, MountSource::AppDir("data".into()));
    assert!(c.mounts[1].read_only);
    assert!(c.health.is_some());
    assert_eq!(m.publish[0].stype, "https");
    assert_eq!(m.publish[0].txt["path"], "/explore");
    assert_eq!(m.title.get("ca"), "Memos");
    let secret = m.parameters.iter().find(|p| p.name == "DB_SECRET").unwrap();
    assert_eq!(secret.kind, ParamKind::Password);
    for want in [
        "privileged",
        "DANGER",
        "devices",
        "renamed parameter DB_SECRET",
        "mips",
        "screenshot_link",
    ] {
        assert!(has(&memos.report, want), "{want}: {:?}", memos.report);
    }
    // The secret has no default: optional, so an install without it plans
    // (empty), as CasaOS would run it.
    assert!(plan("memos", &memos.definition, &BTreeMap::new()).is_ok());
}

#[test]
fn portainer_v2() {
    let b = import_all(&fixture("portainer-v2.json"), None).unwrap();
    assert_eq!(b.apps.len(), 2, "{:?}", b.skipped);
    assert_eq!(b.skipped.len(), 1);
    assert!(
        b.skipped[0].contains("https://github.com/example/templates"),
        "{:?}",
        b.skipped
    );
    assert!(
        b.skipped[0].contains("stack templates are not carried over"),
        "{:?}",
        b.skipped
    );

    let nginx = &b.apps[0];
    assert_eq!(
        (nginx.id.as_str(), nginx.format),
        ("nginx", Format::Portainer)
    );
    let (p, m) = planned(nginx);
    let c = &p.containers[0];
    assert_eq!(c.image, "nginx:latest");
    assert_eq!(
        c.ports
            .iter()
            .map(|p| (p.host, p.container))
            .collect::<Vec<_>>(),
        [(8081, 80), (443, 443)]
    );
    assert_eq!(
        c.mounts[0].source,
        MountSource::Volume("nuvol-nginx-etc-nginx".into())
    );
    assert_eq!(c.mounts[1].source, MountSource::Host("/srv/www".into()));
    assert!(c.mounts[1].read_only);
    assert_eq!(c.restart, nuvol_apps::plan::RestartPolicy::Always);
    assert_eq!(c.labels["org.example.role"], "web");
    assert_eq!(m.publish[0].stype, "http");
    assert_eq!(m.publish[0].port, 8081);
    assert_eq!(m.category, "webserver");
    assert_eq!(
        m.icon.as_deref(),
        Some("https://example.org/logos/nginx.png")
    );
    for want in [
        "privileged: dropped",
        "443/tcp has no host port",
        "anonymous",
    ] {
        assert!(has(&nginx.report, want), "{want}: {:?}", nginx.report);
    }

    let mysql = &b.apps[1];
    assert_eq!(mysql.id, "mysql");
    let (meta, _) = read_meta(&mysql.definition).unwrap();
    let root = meta
        .parameters
        .iter()
        .find(|p| p.name == "MYSQL_ROOT_PASSWORD")
        .unwrap();
    assert!(root.required);
    assert_eq!(root.kind, ParamKind::Password);
    let cs = meta
        .parameters
        .iter()
        .find(|p| p.name == "MYSQL_CHARSET")
        .unwrap();
    assert_eq!(cs.default.as_deref(), Some("utf8mb4"));
    assert!(cs.description.get("en").contains("latin1"));
    assert!(!meta
        .parameters
        .iter()
        .any(|p| p.name == "MYSQL_ALLOW_EMPTY_PASSWORD"));
    // Without its required password it does not plan; with it, it does.
    assert!(plan("mysql", &mysql.definition, &BTreeMap::new())
        .unwrap_err()
        .to_string()
        .contains("MYSQL_ROOT_PASSWORD"));
    let given = BTreeMap::from([("MYSQL_ROOT_PASSWORD".to_owned(), "s3cr$t".to_owned())]);
    let (p, _, _) = plan("mysql", &mysql.definition, &given).unwrap();
    let env: BTreeMap<_, _> = p.containers[0].env.iter().cloned().collect();
    assert_eq!(env["MYSQL_ROOT_PASSWORD"], "s3cr$t");
    assert_eq!(env["MYSQL_DATABASE"], "app");
    assert_eq!(env["MYSQL_ALLOW_EMPTY_PASSWORD"], "no");
    assert_eq!(
        p.containers[0].command.as_ref().unwrap()[0],
        "--default-authentication-plugin=mysql_native_password"
    );
    assert!(has(&mysql.report, "select options"), "{:?}", mysql.report);
    assert!(has(&mysql.report, "note:"), "{:?}", mysql.report);

    // Only the stack: an error naming the repository.
    let stack = r#"{"version":"2","templates":[{"type":2,"title":"S","repository":{"url":"https://git.example/r","stackfile":"s.yml"}}]}"#;
    let e = import(stack.as_bytes(), None).unwrap_err().to_string();
    assert!(e.contains("https://git.example/r"), "{e}");
}

#[test]
fn portainer_v3() {
    let apps = import(&fixture("portainer-v3.json"), None).unwrap();
    assert_eq!(apps.len(), 2);
    let ha = &apps[0];
    assert_eq!(ha.id, "home-assistant");
    let (p, m) = planned(ha);
    let c = &p.containers[0];
    assert_eq!(c.network_mode.as_deref(), Some("host"));
    assert!(c.ports.is_empty());
    assert!(c.tty);
    assert_eq!(c.hostname.as_deref(), Some("homeassistant"));
    assert_eq!(c.env, [("TZ".to_owned(), "Europe/Madrid".to_owned())]);
    assert_eq!(m.publish[0].port, 8123);
    assert!(has(&ha.report, "host networking"), "{:?}", ha.report);
    let gitea = &apps[1];
    let (p, m) = planned(gitea);
    assert_eq!(p.containers[0].ports.len(), 2);
    assert_eq!(m.publish[0].stype, "http");
    let key = m
        .parameters
        .iter()
        .find(|p| p.name == "GITEA__SECURITY__SECRET_KEY")
        .unwrap();
    assert!(key.required && key.kind == ParamKind::Password);
}

#[test]
fn a_directory_of_templates() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["cloudy.json", "portainer-v2.json"] {
        std::fs::write(dir.path().join(f), fixture(f)).unwrap();
    }
    std::fs::write(dir.path().join("broken.json"), b"{ nope").unwrap();
    std::fs::write(dir.path().join("README.txt"), b"ignored").unwrap();
    let b = import_dir(dir.path()).unwrap();
    assert_eq!(b.apps.len(), 4);
    assert_eq!(b.skipped.len(), 2, "{:?}", b.skipped);
    assert!(b
        .skipped
        .iter()
        .any(|s| s.contains("broken.json") && s.contains("not JSON")));
    assert!(import_dir(&dir.path().join("missing")).is_err());
}

#[test]
fn odd_values_are_errors_or_reports_never_panics() {
    let cases: &[&str] = &[
        r#"{"appname": "x", "image": "busybox", "ports": {"99999": "80"}}"#,
        r#"{"appname": "x", "image": "busybox", "ports": {"80": "80/sctp"}}"#,
        r#"{"appname": "x", "image": "busybox", "ports": 7}"#,
        r#"{"appname": "x", "image": ""}"#,
        r#"{"appname": "", "name": "", "image": "a"}"#,
        r#"[{"appname": "x", "image": "a", "options": [1, null, {"a": 1}]}]"#,
        r#"{"templates": [1, {"type": 9}, {"type": 1, "title": "t"}, {"type": 1, "image": "a", "ports": ["1-2:1-2", "x:80"]}]}"#,
        r#"{"templates": [{"type": 1, "image": "a", "env": [{"name": "A B"}]}]}"#,
        r#"{"templates": [{"type": 1, "image": "a", "platform": "windows"}]}"#,
        r#"{"templates": [{"type": 1, "image": "a", "volumes": [{"container": "rel"}]}]}"#,
        "services: {a: {image: x, ports: ['80']}}",
        "services: {a: 3}",
        "services: {a: {image: x}}\nx-casaos: {port_map: [1]}",
        "services: {'bad name': {image: x}}",
    ];
    for c in cases {
        match import(c.as_bytes(), None) {
            Ok(apps) => {
                for a in apps {
                    planned(&a);
                }
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    let long = format!(
        r#"{{"appname": "{}", "image": "{}"}}"#,
        "n".repeat(100_000),
        "i".repeat(100_000)
    );
    let a = &import(long.as_bytes(), None).unwrap()[0];
    assert_eq!(a.id.len(), 40);
}
