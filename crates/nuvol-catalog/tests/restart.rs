//! A restarted node neither advertises a stale digest nor turns pulls away
//! while its catalog is not ready. Every durable write of this test process
//! takes 2 s (`NUVOL_FAULT_IO_DELAY`, set before anything writes), so the
//! catalog's store takes that long to open.

use nuvol_agent::AgentBuilder;
use nuvol_catalog::component::{Catalog, CatalogComponent};
use nuvol_catalog::sync::{decode_reply, PULL_REQUEST};
use nuvol_catalog::view::{DIGEST_TAG, SERVICES_TAG};
use nuvol_catalog::ServiceDef;
use nuvol_testkit::LoopbackAlloc;
use std::time::Duration;

fn flags(name: &str, ip: std::net::IpAddr, dir: &std::path::Path) -> Vec<String> {
    vec![
        format!("--node={name}"),
        format!("--bind={ip}:7946"),
        "--profile=local".into(),
        format!("--data-dir={}", dir.display()),
    ]
}

async fn start(b: AgentBuilder, f: &[String]) -> nuvol_agent::RunningAgent {
    let f: Vec<&str> = f.iter().map(String::as_str).collect();
    b.configure_from("", &f).unwrap().start().await.unwrap()
}

#[tokio::test]
async fn a_restarted_node_serves_its_list_only_once_ready() {
    std::env::set_var(nuvol_agent::fsutil::FAULT_IO_DELAY_ENV, "2s");
    let ips = LoopbackAlloc::global().take(2);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a_flags = flags("ra", ips[0], da.path());
    // With a tags file, as Cloudy nodes have: owned tags must not end up
    // in it and come back at the next start.
    let tags_file = da.path().join("tags.json");
    a_flags.push(format!("--tags-file={}", tags_file.display()));
    a_flags.push("--tag=role=web".into());
    let a_addr: std::net::SocketAddr = format!("{}:7946", ips[0]).parse().unwrap();

    // First run: publish, then stop.
    let a = start(
        AgentBuilder::new()
            .with::<nuvol_checks::ChecksComponent>()
            .with::<CatalogComponent>(),
        &a_flags,
    )
    .await;
    let cat = a.get::<Catalog>().unwrap();
    cat.publish(ServiceDef {
        stype: "web".into(),
        description: "kept".into(),
        port: 80,
        txt: vec![],
        checks: vec![],
    })
    .await
    .unwrap();
    a.cluster()
        .set_user_tags([("zone".to_owned(), "b".to_owned())].into(), vec![])
        .await
        .unwrap();
    a.shutdown(false).await;
    let saved = std::fs::read_to_string(&tags_file).unwrap();
    assert!(
        saved.contains("zone") && !saved.contains(DIGEST_TAG) && !saved.contains(SERVICES_TAG),
        "{saved}"
    );

    // A peer that pulls as soon as the restarted node's gossip port answers.
    let b = start(AgentBuilder::new(), &flags("rb", ips[1], db.path())).await;
    let cluster = b.cluster().clone();
    let puller = tokio::spawn(async move {
        loop {
            match cluster.app_request(a_addr, PULL_REQUEST.to_vec()).await {
                Err(nuvol_agent::ClusterError::Transport { .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                r => return r,
            }
        }
    });
    let watcher = {
        let cluster = b.cluster().clone();
        tokio::spawn(async move {
            // Tags `ra` showed before its catalog was ready, once it is seen.
            let _ = cluster.join(&[a_addr.to_string()], false).await;
            loop {
                if let Ok(ms) = cluster.members().await {
                    if let Some(m) = ms.iter().find(|m| m.name == "ra") {
                        return m.tags.clone();
                    }
                }
                let _ = cluster.join(&[a_addr.to_string()], false).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Second run: the store takes 2 s to open.
    let start_a = tokio::spawn(async move {
        start(
            AgentBuilder::new()
                .with::<nuvol_checks::ChecksComponent>()
                .with::<CatalogComponent>(),
            &a_flags,
        )
        .await
    });
    let early_tags = watcher.await.unwrap();
    assert!(
        !early_tags.contains_key(DIGEST_TAG) && !early_tags.contains_key(SERVICES_TAG),
        "advertised before its catalog was ready: {early_tags:?}"
    );
    assert_eq!(
        early_tags.get("zone").map(String::as_str),
        Some("b"),
        "{early_tags:?}"
    );
    let reply = puller
        .await
        .unwrap()
        .expect("the pull waited for the catalog, it was not refused");
    let (_digest, entries) = decode_reply(&reply).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].description, "kept");
    let a = start_a.await.unwrap();
    let me = a.cluster().local_member().await.unwrap();
    assert!(me.tags.contains_key(DIGEST_TAG), "{:?}", me.tags);
    a.shutdown(false).await;
    b.shutdown(false).await;
}
