//! The app store: the built-in templates, a directory store, and a URL
//! store served by a local HTTP server, then listed from its cache once
//! the server is gone.

use axum::http::{StatusCode, Uri};
use nuvol_apps::appstore::{Source, Store, BUILTIN};
use nuvol_apps::compose::{plan, read_meta};
use nuvol_apps::import::placeholders;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn builtin_templates_parse_and_plan() {
    let (entries, problems) = Store::new().list().await;
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(entries.len(), BUILTIN.len());
    let ids: BTreeSet<_> = entries.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), entries.len(), "ids are unique");
    for want in [
        "syncthing",
        "ipfs",
        "nextcloud",
        "calibre-web",
        "node-red",
        "mosquitto",
        "static-web",
    ] {
        assert!(ids.contains(want), "{want}");
    }
    for e in &entries {
        assert_eq!(e.source, Source::Builtin);
        assert!(!e.cached);
        let (meta, _) = read_meta(&e.definition).unwrap();
        let (p, m, _) = plan(&e.id, &e.definition, &placeholders(&meta))
            .unwrap_or_else(|err| panic!("{}: {err}", e.id));
        assert!(!m.title.get("en").is_empty(), "{}", e.id);
        assert!(!m.description.get("en").is_empty(), "{}", e.id);
        assert!(!m.category.is_empty(), "{}", e.id);
        assert!(!m.publish.is_empty(), "{}", e.id);
        assert!(m.architectures.contains(&"amd64".to_owned()), "{}", e.id);
        for c in &p.containers {
            assert_eq!(
                c.restart,
                nuvol_apps::plan::RestartPolicy::UnlessStopped,
                "{}",
                e.id
            );
        }
    }
    let st = Store::new().find("static-web").await.unwrap();
    assert!(st.meta.runs_on("amd64") && st.meta.runs_on("arm64"));
    let (p, m, _) = plan(
        "site",
        &st.definition,
        &BTreeMap::from([("PORT".into(), "8081".into())]),
    )
    .unwrap();
    assert_eq!(p.containers[0].image, "busybox:stable");
    assert_eq!(p.containers[0].ports[0].host, 8081);
    assert_eq!(m.publish[0].port, 8081);
    assert_eq!(m.publish[0].checks[0].kind.target(), "127.0.0.1:8081");
    assert!(Store::new().find("nope").await.is_err());
}

#[tokio::test]
async fn ipfs_cluster_needs_its_secret_and_has_a_wan_profile() {
    let e = Store::new().find("ipfs").await.unwrap();
    let err = plan("ipfs", &e.definition, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("CLUSTER_SECRET"), "{err}");
    let given = BTreeMap::from([
        ("CLUSTER_SECRET".to_owned(), "ab".repeat(32)),
        ("PROFILE".to_owned(), "wan".to_owned()),
    ]);
    let (p, m, _) = plan("ipfs", &e.definition, &given).unwrap();
    let cluster = p
        .containers
        .iter()
        .find(|c| c.service == "cluster")
        .unwrap();
    let env: BTreeMap<_, _> = cluster.env.iter().cloned().collect();
    assert_eq!(env["PROFILE"], "wan");
    let script = &cluster.command.as_ref().unwrap()[0];
    assert!(
        script.contains("\"$PROFILE\" = wan") && script.contains("CLUSTER_MONITORPINGINTERVAL"),
        "{script}"
    );
    let ipfs = p.containers.iter().find(|c| c.service == "ipfs").unwrap();
    let api = ipfs.ports.iter().find(|p| p.container == 5001).unwrap();
    assert_eq!(api.host_ip, Some("127.0.0.1".parse().unwrap()));
    let types: Vec<_> = m.publish.iter().map(|p| p.stype.as_str()).collect();
    assert_eq!(types, ["ipfs", "ipfs-cluster"]);
}

#[tokio::test]
async fn a_directory_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hello.yml"),
        "services: {web: {image: busybox}}\nx-nuvol: {title: Hello, architectures: [riscv64]}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("other.yaml"),
        "services: {web: {image: busybox}}\nx-nuvol: {id: other}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.yml"), "services: [").unwrap();
    std::fs::write(
        dir.path().join("dup.yml"),
        "services: {web: {image: busybox}}\nx-nuvol: {id: syncthing}\n",
    )
    .unwrap();
    let mut s = Store::new();
    s.add_dir(dir.path()).arch("amd64");
    let (entries, problems) = s.list().await;
    let mine: Vec<_> = entries
        .iter()
        .filter(|e| matches!(e.source, Source::Dir(_)))
        .collect();
    assert_eq!(
        mine.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["hello", "other"]
    );
    assert!(!mine[0].runs_here);
    assert!(mine[1].runs_here);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("broken.yml")));
    assert!(problems.iter().any(|p| p.contains("also in built-in")));

    // An index.json names the templates.
    let idx = tempfile::tempdir().unwrap();
    std::fs::create_dir(idx.path().join("apps")).unwrap();
    std::fs::write(
        idx.path().join("apps/a.yml"),
        "services: {web: {image: busybox}}\n",
    )
    .unwrap();
    std::fs::write(
        idx.path().join("index.json"),
        r#"{"templates": [{"id": "a", "file": "apps/a.yml"}, {"id": "b", "file": "../b.yml"}]}"#,
    )
    .unwrap();
    let mut s = Store::new().without_builtin();
    s.add_dir(idx.path()).add_dir(idx.path().join("missing"));
    let (entries, problems) = s.list().await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, "a");
    assert_eq!(problems.len(), 2, "{problems:?}");
}

type Files = Arc<Mutex<BTreeMap<String, String>>>;

async fn serve(files: Files) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let files = files.clone();
        async move {
            match files.lock().unwrap().get(uri.path()) {
                Some(b) => (StatusCode::OK, b.clone()),
                None => (StatusCode::NOT_FOUND, String::new()),
            }
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/store", l.local_addr().unwrap());
    let h = tokio::spawn(async move {
        axum::serve(l, app).await.unwrap();
    });
    (url, h)
}

#[tokio::test]
async fn a_url_store_is_cached_for_offline_use() {
    let files: Files = Arc::default();
    {
        let mut f = files.lock().unwrap();
        f.insert(
            "/store/index.json".into(),
            r#"{"templates": [
                {"id": "web", "file": "apps/web.yml"},
                {"id": "bad", "file": "apps/bad.yml"},
                {"id": "gone", "file": "apps/gone.yml"},
                {"id": "evil", "file": "../../etc/passwd"}
            ]}"#
            .into(),
        );
        f.insert(
            "/store/apps/web.yml".into(),
            "services: {web: {image: busybox}}\nx-nuvol: {id: web, title: Web}\n".into(),
        );
        f.insert(
            "/store/apps/bad.yml".into(),
            "services: {web: {image: x, privileged: true}}\n".into(),
        );
        f.insert("/store/big/index.json".into(), "x".repeat(2 << 20));
        f.insert(
            "/store/broken/index.json".into(),
            "{\"templates\": 3}".into(),
        );
    }
    let (url, server) = serve(files).await;
    let cache = tempfile::tempdir().unwrap();
    let store = |urls: &[String]| {
        let mut s = Store::new().without_builtin();
        for u in urls {
            s.add_url(u.clone());
        }
        s.cache_dir(cache.path())
            .timeout(std::time::Duration::from_secs(5));
        s
    };
    let all = [
        url.clone(),
        format!("{url}/big/index.json"),
        format!("{url}/broken"),
        "ftp://example.org/x".to_owned(),
    ];
    let (entries, problems) = store(&all).list().await;
    assert_eq!(
        entries.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["web"]
    );
    assert!(!entries[0].cached);
    assert_eq!(entries[0].source, Source::Url(url.clone()));
    for want in [
        "apps/bad.yml",
        "privileged",
        "apps/gone.yml: ",
        "404",
        "../../etc/passwd",
        "larger than",
        "index.json",
        "ftp",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "{want}: {problems:?}"
        );
    }

    // The server goes away: the store lists from its cache, and says so.
    server.abort();
    let _ = server.await;
    let (entries, problems) = store(std::slice::from_ref(&url)).list().await;
    assert_eq!(entries.len(), 1, "{problems:?}");
    assert_eq!(entries[0].id, "web");
    assert!(entries[0].cached);
    assert!(
        problems.iter().any(|p| p.contains("serving the cache")),
        "{problems:?}"
    );
    let found = store(std::slice::from_ref(&url)).find("web").await.unwrap();
    assert!(found.cached);

    // No cache and no server: a problem, not a failure.
    let other = tempfile::tempdir().unwrap();
    let mut s = Store::new();
    s.add_url(url.clone())
        .cache_dir(other.path())
        .timeout(std::time::Duration::from_secs(5));
    let (entries, problems) = s.list().await;
    assert_eq!(entries.len(), BUILTIN.len());
    assert_eq!(problems.len(), 1, "{problems:?}");
}
