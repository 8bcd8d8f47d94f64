//! `nuvol swarm ...`: the Docker Swarm the agent forms, through its REST
//! API (`GET /v1/swarm`), found like the apps commands'.

use super::catalog::component_get;
use super::output::{columnize, emit};
use super::{Format, SwarmCommand};
use anyhow::Result;
use serde_json::Value;

/// The text form of `GET /v1/swarm`.
fn text(v: &Value) -> String {
    let mut out = String::new();
    let state = v["state"].as_str().unwrap_or("?");
    match (v["node_id"].as_str(), v["role"].as_str()) {
        (Some(id), Some(role)) => out.push_str(&format!(
            "Swarm {state}: node {id}, {role}{}\n",
            if v["leader"] == true { " (leader)" } else { "" }
        )),
        _ => out.push_str(&format!("Swarm {state}\n")),
    }
    let managers: Vec<&str> = v["managers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !managers.is_empty() {
        out.push_str(&format!("Managers: {}\n", managers.join(", ")));
    }
    if let Some(e) = v["error"].as_str() {
        out.push_str(&format!("Error: {e}\n"));
    }
    if let Some(f) = v["fenced"].as_str() {
        out.push_str(&format!(
            "Fenced: {f}; singleton containers are stopped ({} so far)\n",
            v["fenced_total"].as_u64().unwrap_or(0)
        ));
    } else if let Some(f) = v["fence_pending"].as_str() {
        out.push_str(&format!("Fencing soon: {f}\n"));
    }
    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
    if !nodes.is_empty() {
        let mut lines = vec!["NODE|ID|ROLE|AVAILABILITY|STATE|ADDRESS".to_owned()];
        for n in &nodes {
            let name = n["name"].as_str().filter(|s| !s.is_empty()).unwrap_or("-");
            lines.push(format!(
                "{}|{}|{}{}|{}|{}|{}",
                name,
                n["id"].as_str().unwrap_or(""),
                n["role"].as_str().unwrap_or(""),
                if n["leader"] == true { "*" } else { "" },
                n["availability"].as_str().unwrap_or(""),
                n["state"].as_str().unwrap_or(""),
                n["addr"].as_str().unwrap_or(""),
            ));
        }
        out.push_str(&columnize(&lines));
    }
    out.trim_end().to_owned()
}

pub async fn run(cmd: SwarmCommand) -> Result<i32> {
    match cmd {
        SwarmCommand::Status { at } => {
            let v = component_get(
                &at,
                "swarm",
                "swarm is off on this agent (set [swarm] enable = true)",
            )
            .await?;
            match at.rpc.format {
                Format::Json => emit(&serde_json::to_string_pretty(&v)?)?,
                Format::Text => emit(&text(&v))?,
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_shows_the_node_the_managers_and_the_error() {
        let v = serde_json::json!({
            "state": "active", "node_id": "abc", "role": "manager", "leader": true,
            "managers": ["a", "b"],
            "nodes": [
                {"name": "a", "id": "abc", "role": "manager", "leader": true, "availability": "active", "state": "ready", "addr": "10.0.0.1:2377"},
                {"name": "", "id": "def", "role": "worker", "leader": false, "availability": "drain", "state": "down", "addr": "10.0.0.3"}
            ],
            "error": "cannot join the swarm at 10.0.0.1:2377: timeout"
        });
        let t = text(&v);
        assert!(
            t.starts_with("Swarm active: node abc, manager (leader)\n"),
            "{t}"
        );
        assert!(t.contains("Managers: a, b\n"), "{t}");
        assert!(
            t.contains("Error: cannot join the swarm at 10.0.0.1:2377: timeout"),
            "{t}"
        );
        let row = t.lines().find(|l| l.starts_with("- ")).expect(&t);
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols, ["-", "def", "worker", "drain", "down", "10.0.0.3"]);
        let t = text(
            &serde_json::json!({"state": "unreachable", "managers": [], "nodes": [], "error": "cannot reach the Docker daemon at /nope: no such socket"}),
        );
        assert_eq!(
            t,
            "Swarm unreachable\nError: cannot reach the Docker daemon at /nope: no such socket"
        );
        let t = text(&serde_json::json!({
            "state": "active", "managers": [], "nodes": [],
            "fenced": "minority side of a partition: 1 of 3 members alive", "fenced_total": 2
        }));
        assert!(
            t.contains("Fenced: minority side of a partition: 1 of 3 members alive; singleton containers are stopped (2 so far)"),
            "{t}"
        );
        let t = text(&serde_json::json!({
            "state": "active", "managers": [], "nodes": [], "fenced": null,
            "fence_pending": "minority side of a partition: 1 of 3 members alive"
        }));
        assert!(t.contains("Fencing soon: minority side"), "{t}");
    }
}
