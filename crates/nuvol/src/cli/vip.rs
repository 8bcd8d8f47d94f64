//! `nuvol vip status|list`: the floating IPs, through the agent's REST API
//! (`GET /v1/vips`), found like the catalog commands'.

use super::catalog::component_get;
use super::output::{columnize, emit};
use super::{Format, VipCommand};
use anyhow::Result;
use serde_json::Value;

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn run(cmd: VipCommand) -> Result<i32> {
    let (at, list) = match cmd {
        VipCommand::Status { at } => (at, false),
        VipCommand::List { at } => (at, true),
    };
    let v = component_get(
        &at,
        "vips",
        "no floating IP on this agent (add a [[vip]] table)",
    )
    .await?;
    let key = if list { "cluster" } else { "local" };
    let rows = &v[key];
    match at.rpc.format {
        Format::Json => emit(&serde_json::to_string_pretty(rows)?)?,
        Format::Text if list => {
            let mut lines = vec!["ADDRESS|VRID|NODE|STATE".to_owned()];
            for r in rows.as_array().into_iter().flatten() {
                lines.push(format!(
                    "{}|{}|{}|{}",
                    text(&r["address"]),
                    text(&r["vrid"]),
                    text(&r["node"]),
                    text(&r["state"])
                ));
            }
            emit(&columnize(&lines))?;
        }
        Format::Text => {
            let mut lines = vec!["ADDRESS|INTERFACE|VRID|STATE|PRIORITY|MASTER|REASON".to_owned()];
            for r in rows.as_array().into_iter().flatten() {
                lines.push(format!(
                    "{}|{}|{}|{}|{}|{}|{}",
                    text(&r["address"]),
                    text(&r["interface"]),
                    text(&r["vrid"]),
                    text(&r["state"]),
                    text(&r["priority"]),
                    text(&r["master"]),
                    text(&r["reason"]).replace('|', "/")
                ));
            }
            emit(&columnize(&lines))?;
        }
    }
    Ok(0)
}
