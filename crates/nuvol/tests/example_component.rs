//! A new capability is one crate and one line: the binary's component list
//! plus `.with::<nuvol_example::Example>()` runs the example component with
//! its config section, route, metric and owned tag, next to everything
//! else.

use nuvol_testkit::LoopbackAlloc;
use std::time::Duration;

/// Start `b` in this process on a fresh loopback address, with `toml`.
async fn start(
    b: nuvol_agent::AgentBuilder,
    node: &str,
    toml: &str,
) -> (nuvol_agent::RunningAgent, tempfile::TempDir) {
    let ip = LoopbackAlloc::global().take(1)[0];
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        format!("--node={node}"),
        format!("--bind={ip}:7946"),
        format!("--rpc-addr={ip}:7373"),
        "--profile=local".to_owned(),
        format!("--data-dir={}", dir.path().display()),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = b
        .configure_from(toml, &flags)
        .unwrap()
        .start()
        .await
        .unwrap();
    (agent, dir)
}

#[tokio::test]
async fn the_example_component_plugs_in_with_one_line() {
    let (agent, _dir) = start(
        nuvol::components().with::<nuvol_example::Example>(),
        "ex",
        "[example]\ngreeting = 'hola'\n[mdns]\nannounce = false\n",
    )
    .await;
    let http = agent.registry().info.get("http_addr").unwrap();
    let get = |path: &str| {
        let url = format!("http://{http}{path}");
        async move { reqwest::get(url).await.unwrap() }
    };

    // Its route, from its config section.
    let r = get("/v1/example").await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["greeting"], "hola");

    // Its metric, in the agent's /metrics.
    let text = get("/metrics").await.text().await.unwrap();
    assert!(text.contains("nuvol_example_greetings_total 1"), "{text}");

    // Its route in the assembled OpenAPI document.
    let doc: serde_json::Value = get("/v1/openapi.json").await.json().await.unwrap();
    assert!(doc["paths"]["/v1/example"]["get"].is_object());

    // Its owned tag: set by it, refused to the user.
    let mut tag = None;
    for _ in 0..200 {
        let me = agent.cluster().local_member().await.unwrap();
        tag = me.tags.get("example").cloned();
        if tag.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(tag.as_deref(), Some("hola"));
    let err = agent
        .cluster()
        .set_user_tags([("example".to_owned(), "x".to_owned())].into(), vec![])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "tag \"example\" belongs to the example component, which sets it itself"
    );

    // It is listed with the others, running.
    let comps: serde_json::Value = get("/v1/agent/components").await.json().await.unwrap();
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
            "join",
            "example"
        ]
    );
    assert!(comps
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["state"] == "running"
            || (c["name"] == "join" && c["state"] == "stopped")
            // Waits for a container engine where none is installed.
            || (c["name"] == "apps" && c["state"] == "starting")));
    agent.shutdown(false).await;
}

#[test]
fn its_settings_are_checked_like_any_other() {
    let e = nuvol::components()
        .with::<nuvol_example::Example>()
        .configure_from("[example]\ngreting = 'x'\n", &[])
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "example.greting: unknown key (keys of [example]: greeting)"
    );
    let e = nuvol::components()
        .with::<nuvol_example::Example>()
        .configure_from("", &["--example-greeting="])
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "invalid example.greeting (--example-greeting): must be 1 to 64 bytes"
    );
}

/// The binary's components: every REST API route registered is in the
/// served OpenAPI document, and every documented operation is registered
/// (the dashboard's pages are for browsers, not in the document).
#[tokio::test]
async fn the_binarys_routes_are_exactly_the_documented_ones() {
    let (agent, _dir) = start(nuvol::components(), "doc", "[mdns]\nannounce = false\n").await;
    let mut registered: Vec<(String, String)> = agent
        .registry()
        .routes()
        .filter(|(_, r)| r.kind == nuvol_agent::http::RouteKind::Api)
        .map(|(_, r)| (r.method.to_string(), r.path.to_owned()))
        .collect();
    registered.sort();
    let http = agent.registry().info.get("http_addr").unwrap();
    let doc: serde_json::Value = reqwest::get(format!("http://{http}/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(registered, nuvol_api::openapi::operations(&doc));
    agent.shutdown(false).await;
}
