//! The OpenAPI document the agent serves, assembled from the API's own part
//! and the components' fragments, matches what the router serves.

mod common;

use nuvol_api::{CheckInfo, ErrorBody, MemberInfo};
use nuvol_catalog::{Health, Status};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The document assembled from the checked-in parts, as the agent does.
fn doc() -> Value {
    nuvol_api::openapi::assemble(
        nuvol_api::BASE_OPENAPI,
        &[
            ("catalog", nuvol_catalog::api::OPENAPI),
            ("metrics", nuvol_agent::metrics::OPENAPI),
        ],
    )
    .expect("the fragments fit together")
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// Every route the components registered is documented, and every
/// documented operation is registered.
#[tokio::test]
async fn every_route_is_documented_and_vice_versa() {
    let h = common::start().await;
    let served: BTreeSet<(String, String)> = h
        .agent
        .as_ref()
        .unwrap()
        .registry()
        .routes()
        .map(|(_, r)| (r.method.to_string(), r.path.to_owned()))
        .collect();
    let documented = operations(&doc());
    assert_eq!(served, documented);
}

#[test]
fn status_codes_per_operation() {
    let expected: BTreeMap<(&str, &str), &[&str]> = BTreeMap::from([
        (("GET", "/v1/agent"), &["200", "500", "503"][..]),
        (("GET", "/v1/agent/components"), &["200", "503"][..]),
        (("GET", "/v1/members"), &["200", "500", "503"][..]),
        (("GET", "/v1/services"), &["200", "400"][..]),
        (
            ("POST", "/v1/services"),
            &["201", "400", "401", "413", "500", "503"][..],
        ),
        (
            ("GET", "/v1/services/{node}/{type}/{port}"),
            &["200", "400", "404"][..],
        ),
        (
            ("DELETE", "/v1/services/{node}/{type}/{port}"),
            &["204", "400", "401", "403", "404", "500", "503"][..],
        ),
        (("GET", "/v1/checks"), &["200", "400"][..]),
        (("GET", "/v1/events"), &["200", "503"][..]),
        (("GET", "/v1/openapi.json"), &["200", "503"][..]),
        (("GET", "/metrics"), &["200"][..]),
    ]);
    let doc = doc();
    assert_eq!(expected.len(), operations(&doc).len());
    for ((method, path), codes) in expected {
        let op = &doc["paths"][path][method.to_lowercase()];
        let got: BTreeSet<&str> = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} has no responses"))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(got, codes.iter().copied().collect(), "{method} {path}");
        // Writes declare the bearer scheme, reads none.
        let secured = op.get("security").is_some();
        assert_eq!(secured, method != "GET", "{method} {path}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// Every `$ref` resolves.
#[test]
fn references_resolve() {
    fn walk(v: &Value, doc: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let ptr = r.strip_prefix('#').unwrap();
                    assert!(doc.pointer(ptr).is_some(), "dangling {r}");
                }
                m.values().for_each(|x| walk(x, doc));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, doc)),
            _ => {}
        }
    }
    let d = doc();
    walk(&d, &d);
}

/// The schemas' properties are the fields the types serialise.
#[test]
fn schemas_match_the_types() {
    let doc = doc();
    let check = |name: &str, v: Value| {
        let schema = &doc["components"]["schemas"][name];
        let props: BTreeSet<&str> = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {name}"))
            .keys()
            .map(String::as_str)
            .collect();
        let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(props, keys, "schema {name}");
        for r in schema["required"].as_array().into_iter().flatten() {
            assert!(keys.contains(r.as_str().unwrap()), "{name}.{r}");
        }
    };
    let fake = common::Fake::new();
    use nuvol_catalog::api::CatalogApi;
    check(
        "AgentInfo",
        serde_json::to_value(nuvol_api::AgentInfo {
            name: "a".into(),
            addr: "b".into(),
            port: 1,
            version: "v".into(),
            data_dir: "d".into(),
            cloud: "c".into(),
            tags: Default::default(),
            http_addr: "h".into(),
            dns_addr: Some("d".into()),
        })
        .unwrap(),
    );
    check(
        "ComponentStatus",
        serde_json::to_value(nuvol_api::ComponentInfo {
            name: "catalog".into(),
            critical: true,
            state: nuvol_agent::ComponentState::Running,
            restarts: 0,
            last_error: None,
        })
        .unwrap(),
    );
    check(
        "MemberInfo",
        serde_json::to_value(MemberInfo {
            name: "a".into(),
            addr: "b".into(),
            port: 1,
            status: "alive".into(),
            tags: Default::default(),
        })
        .unwrap(),
    );
    let entry = fake.services(&Default::default()).remove(0);
    check("ServiceEntry", serde_json::to_value(&entry).unwrap());
    check("CheckView", serde_json::to_value(&entry.checks[0]).unwrap());
    check(
        "CheckInfo",
        serde_json::to_value(CheckInfo {
            node: "a".into(),
            stype: "b".into(),
            port: 1,
            kind: "tcp".into(),
            target: "x:1".into(),
            status: Health::Passing,
            output: String::new(),
            updated_ms: 0,
        })
        .unwrap(),
    );
    check(
        "Error",
        serde_json::to_value(ErrorBody {
            error: "e".into(),
            field: Some("f".into()),
        })
        .unwrap(),
    );
    let statuses: Vec<Value> = [
        Status::Passing,
        Status::Warning,
        Status::Critical,
        Status::Unavailable,
    ]
    .iter()
    .map(|s| serde_json::to_value(s).unwrap())
    .collect();
    assert_eq!(
        doc["components"]["schemas"]["Status"]["enum"],
        Value::Array(statuses)
    );
}

/// Every documented operation reaches a handler (not the fallbacks) on a
/// live server, and the served document is the assembled one.
#[tokio::test]
async fn the_live_router_serves_every_documented_operation() {
    let h = common::start().await;
    let http = reqwest::Client::new();
    for (method, path) in operations(&doc()) {
        let concrete = path
            .replace("{node}", common::ME)
            .replace("{type}", "nothing")
            .replace("{port}", "1");
        let mut rb = http
            .request(method.parse().unwrap(), h.url(&concrete))
            .bearer_auth(common::TOKEN);
        if method == "POST" {
            rb = rb.body("{}");
        }
        if path == "/v1/events" {
            let r = rb.send().await.unwrap();
            assert_eq!(r.status(), 200);
            continue;
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(
            status != 405 && !text.contains("no such endpoint"),
            "{method} {path}: {status} {text}"
        );
        let documented = &doc()["paths"][&path][method.to_lowercase()]["responses"];
        assert!(
            documented.get(status.to_string()).is_some(),
            "{method} {path}: undocumented status {status}"
        );
    }
    let served = reqwest::get(h.url("/v1/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let served: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(served, doc());
}
