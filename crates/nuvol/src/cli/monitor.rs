//! `nuvol monitor ...`: network monitoring, through the agent's REST API
//! (`GET /v1/monitor`), found like the other component commands'.

use super::catalog::component_get;
use super::output::{columnize, emit};
use super::{Format, MonitorCommand};
use anyhow::Result;
use serde_json::Value;

/// The text form of the assignment: one row per device.
fn assignment_text(v: &Value) -> String {
    let mut lines = vec!["DEVICE|OWNERS".to_owned()];
    if let Some(m) = v["assignment"].as_object() {
        for (device, owners) in m {
            let owners: Vec<&str> = owners
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            lines.push(format!("{}|{}", device.replace('|', "/"), owners.join(",")));
        }
    }
    let mut out = columnize(&lines);
    let pending = v["pending"].as_array().map_or(0, Vec::len);
    if pending > 0 {
        out.push_str(&format!(
            "\n({pending} monitor(s) not counted yet: alive for less than [monitor] settle)"
        ));
    }
    out
}

pub async fn run(cmd: MonitorCommand) -> Result<i32> {
    match cmd {
        MonitorCommand::Assignment { at } => {
            let v = component_get(
                &at,
                "monitor",
                "monitoring is off on this agent (set [monitor] enable = true)",
            )
            .await?;
            match at.rpc.format {
                Format::Json => emit(&serde_json::to_string_pretty(&v["assignment"])?)?,
                Format::Text => emit(&assignment_text(&v))?,
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_lists_devices_and_owners() {
        let v = serde_json::json!({
            "assignment": {"r1": ["a", "b"], "r|2": ["c"]},
            "pending": ["d"],
        });
        let t = assignment_text(&v);
        assert!(t.contains("r1"), "{t}");
        assert!(t.contains("a,b"), "{t}");
        assert!(t.contains("r/2"), "{t}");
        assert!(t.contains("1 monitor(s) not counted yet"), "{t}");
    }
}
