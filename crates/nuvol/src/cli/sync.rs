//! `nuvol sync ...`: replicated folders, through the agent's REST API
//! (`GET /v1/sync`), found like the apps commands'.

use super::catalog::component_get;
use super::output::{columnize, emit};
use super::{Format, SyncCommand};
use anyhow::Result;
use serde_json::Value;

/// The text form of `GET /v1/sync`.
fn text(v: &Value) -> String {
    let st = &v["syncthing"];
    let mut out = String::new();
    let state = if st["running"] == true {
        format!(
            "running ({})",
            st["version"].as_str().unwrap_or("version unknown")
        )
    } else {
        "not running".to_owned()
    };
    out.push_str(&format!(
        "Syncthing {state} at {}{}\n",
        st["address"].as_str().unwrap_or("?"),
        if st["managed"] == false {
            " (attached)"
        } else {
            ""
        }
    ));
    if let Some(id) = v["device_id"].as_str() {
        out.push_str(&format!("Device {id}\n"));
    }
    if let Some(e) = st["error"].as_str() {
        out.push_str(&format!("Error: {e}\n"));
    }
    let mut lines = vec!["FOLDER|TYPE|FOLLOWS|STATE|IN SYNC|NEED|CONFLICTS|NODES|PATH".to_owned()];
    for f in v["folders"].as_array().into_iter().flatten() {
        let nodes: Vec<&str> = f["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        // The app the folder follows, and where it runs (here,
        // elsewhere, nowhere).
        let follows = match (f["follow_app"].as_str(), f["app_place"].as_str()) {
            (Some(app), Some(place)) => format!("{app}({place})"),
            (Some(app), None) => app.to_owned(),
            _ => "-".to_owned(),
        };
        lines.push(format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}",
            f["id"].as_str().unwrap_or(""),
            f["type"].as_str().unwrap_or(""),
            follows,
            f["state"].as_str().unwrap_or(""),
            if f["in_sync"] == true { "yes" } else { "no" },
            f["need_files"].as_u64().unwrap_or(0),
            f["conflicts"].as_u64().unwrap_or(0),
            if nodes.is_empty() {
                "-".to_owned()
            } else {
                nodes.join(",")
            },
            f["path"].as_str().unwrap_or(""),
        ));
        if let Some(e) = f["error"].as_str() {
            lines.push(format!("|error: {}||||||||", e.replace('|', "/")));
        }
    }
    out.push_str(&columnize(&lines));
    out.trim_end().to_owned()
}

pub async fn run(cmd: SyncCommand) -> Result<i32> {
    match cmd {
        SyncCommand::Status { at } => {
            let v = component_get(
                &at,
                "sync",
                "sync is off on this agent (set [sync] enable = true)",
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
    fn the_text_form_shows_each_folder_and_the_error() {
        let v = serde_json::json!({
            "device_id": "AAAAAAA-BBBBBBB",
            "syncthing": {"running": false, "managed": false, "address": "127.0.0.1:8384", "version": null, "error": "Syncthing at 127.0.0.1:8384 refused the API key"},
            "folders": [{"id": "docs", "type": "sendonly", "state": "idle", "in_sync": true, "need_files": 0, "conflicts": 2, "nodes": ["b", "c"], "path": "/srv/docs", "error": null},
                {"id": "db", "type": "receiveonly", "follow_app": "db", "app_place": "elsewhere", "state": "idle", "in_sync": true, "need_files": 0, "conflicts": 0, "nodes": ["b"], "path": "/srv/db", "error": null}]
        });
        let t = text(&v);
        assert!(
            t.starts_with("Syncthing not running at 127.0.0.1:8384 (attached)\n"),
            "{t}"
        );
        assert!(
            t.contains("Error: Syncthing at 127.0.0.1:8384 refused the API key"),
            "{t}"
        );
        let row = t.lines().find(|l| l.starts_with("docs")).expect(&t);
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "docs",
                "sendonly",
                "-",
                "idle",
                "yes",
                "0",
                "2",
                "b,c",
                "/srv/docs"
            ]
        );
        let row = t.lines().find(|l| l.starts_with("db ")).expect(&t);
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[..3], ["db", "receiveonly", "db(elsewhere)"]);
    }
}
