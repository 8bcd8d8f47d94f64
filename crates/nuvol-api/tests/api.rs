//! The API end to end over real HTTP: the real API component of an
//! in-process agent, the catalog's real routes over a fake catalog.

mod common;

use common::{start, ME, TOKEN};
use nuvol_api::{ApiClient, ApiEvent, ClientError};
use nuvol_catalog::{CheckDef, CheckKind, Filter, Health, ServiceDef, Status};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

fn def(stype: &str, port: u16) -> ServiceDef {
    ServiceDef {
        stype: stype.into(),
        description: "a test service".into(),
        port,
        txt: vec![("path".into(), "/x".into())],
        checks: vec![CheckDef {
            kind: CheckKind::Tcp {
                addr: "127.0.0.1:9000".into(),
            },
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
        }],
    }
}

/// A guard against hangs (not a timing assertion).
async fn guard<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("test step hung")
}

#[tokio::test]
async fn reads_via_the_client() {
    let h = start().await;
    let c = h.anon();
    let agent = c.agent().await.unwrap();
    assert_eq!(agent.name, ME);
    assert_eq!(agent.tags.get("role").map(String::as_str), Some("node"));

    let members = c.members().await.unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[1].name, "beta");

    assert_eq!(c.services(&Filter::default()).await.unwrap().len(), 3);
    let ssh = c
        .services(&Filter {
            stype: Some("SSH".into()),
            node: None,
        })
        .await
        .unwrap();
    assert_eq!(ssh.len(), 1);
    assert_eq!(ssh[0].node, "beta");
    let on_gamma = c
        .services(&Filter {
            stype: None,
            node: Some("gamma".into()),
        })
        .await
        .unwrap();
    assert_eq!(on_gamma.len(), 1);
    let unavailable = c
        .services_with_status(&Filter::default(), Some(Status::Unavailable))
        .await
        .unwrap();
    assert_eq!(unavailable.len(), 1);
    assert_eq!(unavailable[0].stype, "web");

    let one = c.service("beta", "ssh", 22).await.unwrap();
    assert_eq!(one.port, 22);
    assert_eq!(one.status, Status::Critical);

    let checks = c.checks().await.unwrap();
    assert_eq!(checks.len(), 2);
    assert!(checks
        .iter()
        .any(|k| k.node == ME && k.kind == "tcp" && k.port == 80));
    let critical = c
        .checks_filtered(None, Some(Health::Critical))
        .await
        .unwrap();
    assert_eq!(critical.len(), 1);
    assert_eq!(critical[0].stype, "ssh");
    let on_me = c.checks_filtered(Some(ME), None).await.unwrap();
    assert_eq!(on_me.len(), 1);
}

#[tokio::test]
async fn publish_and_unpublish_via_the_client() {
    let h = start().await;
    let c = h.client();
    let e = c.publish(&def("media", 8096)).await.unwrap();
    assert_eq!(
        (e.node.as_str(), e.stype.as_str(), e.port),
        (ME, "media", 8096)
    );
    assert_eq!(e.checks.len(), 1);
    let got = c.service(ME, "media", 8096).await.unwrap();
    assert_eq!(got, e);
    c.unpublish("media", 8096).await.unwrap();
    let err = c.service(ME, "media", 8096).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = c.unpublish("media", 8096).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(
        h.fake.calls(),
        [
            "publish media/8096",
            "unpublish media/8096",
            "unpublish media/8096"
        ]
    );
}

#[tokio::test]
async fn reads_via_raw_http() {
    let h = start().await;
    let http = reqwest::Client::new();
    for (path, n) in [
        ("/v1/services", 3),
        ("/v1/services?type=http", 1),
        ("/v1/services?node=beta&status=critical", 1),
        ("/v1/services?status=passing&type=", 1),
        ("/v1/members", 2),
        ("/v1/checks", 2),
        ("/v1/checks?status=passing&node=alpha", 1),
    ] {
        let r = http.get(h.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let v: Value = r.json().await.unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(n), "{path}: {v}");
    }
    let a: Value = http
        .get(h.url("/v1/agent"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["name"], ME);
    assert_eq!(a["dns_addr"], Value::Null);
    let s: Value = http
        .get(h.url("/v1/services/alpha/http/80"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["type"], "http");
    assert_eq!(s["txt"], json!({"a": "1"}));
    assert_eq!(s["checks"][0]["status"], "passing");
    let doc = http.get(h.url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(doc.status(), StatusCode::OK);
    let doc: Value = doc.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
}

#[tokio::test]
async fn writes_via_raw_http() {
    let h = start().await;
    let http = reqwest::Client::new();
    let r = http
        .post(h.url("/v1/services"))
        .bearer_auth(TOKEN)
        .json(&json!({"type": "web", "description": "site", "port": 8080, "txt": {"a": "1"},
                      "checks": [{"http": "http://127.0.0.1:8080/", "interval": "30s", "timeout": "2s"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()[reqwest::header::LOCATION],
        "/v1/services/alpha/web/8080"
    );
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["checks"][0]["kind"], "http");
    let r = http
        .delete(h.url("/v1/services/alpha/web/8080"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(h.fake.calls(), ["publish web/8080", "unpublish web/8080"]);
}

#[tokio::test]
async fn writes_need_the_token() {
    let h = start().await;
    let http = reqwest::Client::new();
    let body = json!({"type": "web", "description": "site", "port": 8080});
    let wrong = format!("{}x", &TOKEN[1..]);
    let attempts: Vec<(reqwest::RequestBuilder, &str)> = vec![
        (http.post(h.url("/v1/services")).json(&body), "no token"),
        (
            http.post(h.url("/v1/services"))
                .json(&body)
                .bearer_auth(&wrong),
            "wrong token",
        ),
        (
            http.post(h.url("/v1/services"))
                .json(&body)
                .bearer_auth(&TOKEN[..10]),
            "prefix",
        ),
        (
            http.post(h.url("/v1/services"))
                .json(&body)
                .basic_auth("u", Some(TOKEN)),
            "basic",
        ),
        (
            http.post(h.url("/v1/services"))
                .json(&body)
                .header("Authorization", TOKEN),
            "no scheme",
        ),
        (http.delete(h.url("/v1/services/alpha/http/80")), "no token"),
        (
            http.delete(h.url("/v1/services/alpha/http/80"))
                .bearer_auth(&wrong),
            "wrong token",
        ),
        (http.put(h.url("/v1/services")).json(&body), "put"),
    ];
    for (rb, what) in attempts {
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            r.headers()[reqwest::header::WWW_AUTHENTICATE],
            "Bearer",
            "{what}"
        );
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().unwrap().contains("token"),
            "{what}: {v}"
        );
    }
    // The typed client without a token gets the same.
    let err = h.anon().publish(&def("web", 8080)).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    let err = h.anon().unpublish("http", 80).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert!(h.fake.calls().is_empty(), "{:?}", h.fake.calls());
    assert_eq!(
        h.anon().services(&Filter::default()).await.unwrap().len(),
        3
    );
}

async fn post_raw(h: &common::Harness, body: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(h.url("/v1/services"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn bad_bodies_name_the_field() {
    let h = start().await;
    let cases = [
        (r#"{"type": "web", "#, "body"),
        ("", "body"),
        (r#"["web"]"#, "body"),
        (
            r#"{"type":"web","description":"d","port":80,"bogus":1}"#,
            "bogus",
        ),
        (r#"{"type":"we b","description":"d","port":80}"#, "type"),
        (r#"{"type":7,"description":"d","port":80}"#, "type"),
        (r#"{"type":"web","description":"d","port":0}"#, "port"),
        (r#"{"type":"web","description":"d","port":70000}"#, "port"),
        (r#"{"type":"web","description":"d","port":-1}"#, "port"),
        (r#"{"type":"web","description":"d"}"#, "port"),
        (
            r#"{"type":"web","description":" ","port":80}"#,
            "description",
        ),
        (
            r#"{"type":"web","description":"d","port":80,"txt":{"a b":"1"}}"#,
            "txt",
        ),
        (
            r#"{"type":"web","description":"d","port":80,"txt":{"a":"1","a":"2"}}"#,
            "txt",
        ),
        (
            r#"{"type":"web","description":"d","port":80,"txt":{"a":1}}"#,
            "txt.a",
        ),
        (
            r#"{"type":"web","description":"d","port":80,"checks":[{"http":"ftp://x"}]}"#,
            "checks[0].http",
        ),
        (
            r#"{"type":"web","description":"d","port":80,"checks":[{"tcp":"a:1"},{"tcp":"a:1","interval":"0s"}]}"#,
            "checks[1].interval",
        ),
        (
            r#"{"type":"web","description":"d","port":80,"checks":[{"tcp":"a:1","script":"true"}]}"#,
            "checks[0]",
        ),
        (
            r#"{"type":"web","description":"d","port":80,"checks":[{"tcp":"a:1","bogus":1}]}"#,
            "checks[0].bogus",
        ),
        (
            r#"{"type":"web","description":"d","port":80,"checks":[{"tcp":"a:1","interval":"soon"}]}"#,
            "checks[0].interval",
        ),
    ];
    for (body, field) in cases {
        let (status, v) = post_raw(&h, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
    let (_, v) = post_raw(&h, r#"{"type":"web","description":"d","port":70000}"#).await;
    assert_eq!(v["error"], "invalid port: must be 1-65535");
    assert!(h.fake.calls().is_empty(), "{:?}", h.fake.calls());

    // The client reports the server's message.
    let err = h.client().publish(&def("web", 0)).await.unwrap_err();
    match &err {
        ClientError::Api { status, field, .. } => {
            assert_eq!(*status, 400);
            assert_eq!(field.as_deref(), Some("port"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.to_string(), "invalid port \"0\": must be 1-65535");
}

#[tokio::test]
async fn bad_parameters_name_the_field() {
    let h = start().await;
    let http = reqwest::Client::new();
    for (method, path, field) in [
        ("GET", "/v1/services?status=fine", "status"),
        ("GET", "/v1/services?type=a_b", "type"),
        ("GET", "/v1/services?typ=http", "typ"),
        ("GET", "/v1/services?node=a&node=b", "node"),
        ("GET", "/v1/checks?status=unavailable", "status"),
        ("GET", "/v1/services/alpha/http/0", "port"),
        ("GET", "/v1/services/alpha/http/70000", "port"),
        ("GET", "/v1/services/alpha/http/x", "port"),
        ("GET", "/v1/services/alpha/a_b/80", "type"),
        ("DELETE", "/v1/services/alpha/http/0", "port"),
        ("DELETE", "/v1/services/alpha/http/65536", "port"),
        ("DELETE", "/v1/services/alpha/a.b/80", "type"),
    ] {
        let r = http
            .request(method.parse().unwrap(), h.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{method} {path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["field"], field, "{method} {path}: {v}");
    }
    assert!(h.fake.calls().is_empty());
}

#[tokio::test]
async fn not_found_forbidden_and_too_large() {
    let h = start().await;
    let http = reqwest::Client::new();
    let r = http
        .get(h.url("/v1/services/beta/ssh/23"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("ssh/23"), "{v}");
    assert!(v.get("field").is_none());

    let r = http
        .delete(h.url("/v1/services/beta/ssh/22"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("beta"), "{v}");
    let err = h
        .client()
        .unpublish_on("beta", "ssh", 22)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));

    let r = http
        .delete(h.url("/v1/services/alpha/ssh/22"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let big = format!(
        r#"{{"type":"web","description":"d","port":80,"txt":{{"a":"{}"}}}}"#,
        "x".repeat(70 * 1024)
    );
    let (status, v) = post_raw(&h, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(v["error"].as_str().unwrap().contains("larger"), "{v}");

    let r = http.get(h.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("no such endpoint"),
        "{v}"
    );
    let r = http
        .patch(h.url("/v1/agent"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Only the delete of this node's (absent) ssh/22 reached the backend;
    // the 403s did not.
    assert_eq!(h.fake.calls(), ["unpublish ssh/22"]);
}

#[tokio::test]
async fn events_reach_the_client() {
    let mut h = start().await;
    let mut stream = guard(h.anon().events()).await.unwrap();
    let ev = ApiEvent {
        event: "member-join".into(),
        data: json!({"name": "delta", "addr": "10.0.0.4"}),
    };
    h.emit(&ev.event, ev.data.clone());
    let got = guard(stream.next()).await.unwrap().unwrap();
    assert_eq!(got, ev);
    h.emit(
        "service-published",
        json!({"node": "alpha", "type": "http", "port": 80}),
    );
    let got = guard(stream.next()).await.unwrap().unwrap();
    assert_eq!(got.event, "service-published");
    assert_eq!(got.data["port"], 80);

    // Shutting down ends open streams, and the agent stops.
    guard(h.stop()).await;
    assert!(guard(stream.next()).await.is_none());
}

#[tokio::test]
async fn raw_event_stream_format() {
    let h = start().await;
    let mut r = reqwest::Client::new()
        .get(h.url("/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    h.emit("check-changed", json!({"status": "critical"}));
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = guard(r.chunk()).await.unwrap().unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        text.contains("event: check-changed\ndata: {\"status\":\"critical\"}\n\n"),
        "{text:?}"
    );
}

// One thread: the test sends a burst without yielding, so the server's
// stream cannot keep up and must see the lag (the bus holds 256 events).
#[tokio::test(flavor = "current_thread")]
async fn a_lagging_subscriber_is_told_and_continues() {
    let h = start().await;
    let mut stream = guard(h.anon().events()).await.unwrap();
    // Let the server's stream subscribe before the burst.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..272 {
        h.emit("member-join", json!({ "n": i }));
    }
    let first = guard(stream.next()).await.unwrap().unwrap();
    assert_eq!(first.event, "lagged");
    assert_eq!(first.data["missed"], 16);
    for i in 16..20 {
        let ev = guard(stream.next()).await.unwrap().unwrap();
        assert_eq!(
            (ev.event.as_str(), &ev.data["n"]),
            ("member-join", &json!(i))
        );
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let h = start().await;
    let c = h.anon();
    c.agent().await.unwrap();
    c.agent().await.unwrap();
    c.service("beta", "ssh", 22).await.unwrap();
    let _ = c.service("beta", "ssh", 23).await;
    let _ = c.publish(&def("web", 80)).await;
    let r = reqwest::get(h.url("/metrics")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let ct = r.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = r.text().await.unwrap();
    for want in [
        r#"nuvol_api_requests_total{method="GET",route="/v1/agent",status="200"} 2"#,
        r#"nuvol_api_requests_total{method="GET",route="/v1/services/{node}/{type}/{port}",status="200"} 1"#,
        r#"nuvol_api_requests_total{method="GET",route="/v1/services/{node}/{type}/{port}",status="404"} 1"#,
        r#"nuvol_api_requests_total{method="POST",route="/v1/services",status="401"} 1"#,
        r#"nuvol_api_request_duration_seconds_count{method="GET",route="/v1/agent"} 2"#,
        "# TYPE nuvol_api_request_duration_seconds histogram",
        "fake_backend_members 2",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(
        !text.contains("/v1/services/beta"),
        "raw paths leak into labels"
    );
}

#[tokio::test]
async fn an_absent_agent_is_unreachable() {
    // A port nobody listens on: bind, note, close.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let c = ApiClient::new(&format!("http://{addr}"), None).unwrap();
    let err = c.agent().await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot reach"), "{err}");
    assert!(matches!(
        ApiClient::new("not a url", None),
        Err(ClientError::BadUrl { .. })
    ));
}

/// A taken port or a bad token file: the API component fails (and is
/// retried), the agent keeps running and says why.
#[tokio::test]
async fn binding_a_taken_port_fails_cleanly() {
    let h = start().await;
    for (dir, addr, want) in [
        (
            common::data_dir_with_token(TOKEN),
            h.addr.to_string(),
            "cannot listen on",
        ),
        (
            common::data_dir_with_token(""),
            "127.0.0.1:0".to_owned(),
            "API token file",
        ),
    ] {
        let agent = nuvol_agent::AgentBuilder::new()
            .with::<nuvol_api::Api>()
            .configure_from(
                "",
                &[
                    "--node=gamma",
                    "--bind=127.0.0.1:0",
                    "--profile=local",
                    &format!("--http-addr={addr}"),
                    &format!("--data-dir={}", dir.path().display()),
                ],
            )
            .unwrap()
            .start()
            .await
            .expect("a non-critical component's failure does not stop the agent");
        let api = agent
            .status()
            .into_iter()
            .find(|c| c.name == "api")
            .unwrap();
        assert!(!api.critical);
        assert!(
            matches!(
                api.state,
                nuvol_agent::ComponentState::Failed | nuvol_agent::ComponentState::Restarting
            ),
            "{api:?}"
        );
        let err = api.last_error.unwrap_or_default();
        assert!(err.contains(want), "{err}");
        assert!(agent.cluster().members().await.is_ok(), "gossip still runs");
        agent.shutdown(false).await;
    }
}
