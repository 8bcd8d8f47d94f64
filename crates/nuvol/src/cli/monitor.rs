//! `nuvol monitor ...`: network monitoring, through the agent's REST API
//! (`GET /v1/monitor`, `/v1/monitor/devices`, `/v1/monitor/devices/{id}`),
//! found like the other component commands'.

use super::catalog::{component_get, nuvol_api};
use super::output::{columnize, emit};
use super::{CatalogOpts, Format, MonitorCommand};
use anyhow::{bail, Result};
use nuvol_api::ClientError;
use serde_json::Value;

const OFF: &str = "monitoring is off on this agent (set [monitor] enable = true)";

/// `GET /v1/monitor/...` (segments after `monitor`).
async fn monitor_get(at: &CatalogOpts, rest: &[&str], query: &[(&str, &str)]) -> Result<Value> {
    let c = nuvol_api(at, false, "monitoring commands").await?;
    let mut segs = vec!["v1", "monitor"];
    segs.extend_from_slice(rest);
    match c
        .call_json(nuvol_api::Method::GET, &segs, query, None, None)
        .await
    {
        Ok(v) => Ok(v),
        Err(ClientError::Api {
            status: 404,
            message,
            ..
        }) => {
            // Off, or (with monitoring on) an unknown device.
            if component_get(at, "monitor", OFF).await.is_err() {
                bail!("{OFF}")
            }
            bail!("{message}")
        }
        Err(e) => bail!("{e}"),
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.replace('|', "/"),
        v => v.to_string(),
    }
}

fn names(v: &Value) -> String {
    let n: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if n.is_empty() {
        "-".to_owned()
    } else {
        n.join(",")
    }
}

/// How long ago `at` (seconds since the epoch) was.
fn ago(at: &Value, now: u64) -> String {
    match at.as_u64() {
        Some(t) if t <= now => format!("{}s ago", now - t),
        Some(_) => "now".to_owned(),
        None => "never".to_owned(),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The text form of the device list.
fn devices_text(v: &Value, now: u64) -> String {
    let mut lines = vec!["DEVICE|ADDRESS|STATE|OWNERS|LAST SAMPLE|CAUSE".to_owned()];
    for d in v.as_array().into_iter().flatten() {
        lines.push(format!(
            "{}|{}|{}|{}|{}|{}",
            s(&d["id"]),
            s(&d["address"]),
            s(&d["state"]),
            names(&d["owners"]),
            ago(&d["last_sample"], now),
            s(&d["cause"])
        ));
    }
    columnize(&lines)
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |f| format!("{f:.digits$}"))
}

/// The text form of one device.
fn device_text(v: &Value, now: u64) -> String {
    let mut out = format!(
        "Device {} ({}) {}\nState: {}\nOwners: {}\nLast sample: {}\n",
        s(&v["id"]),
        s(&v["address"]),
        s(&v["title"]),
        s(&v["state"]),
        names(&v["owners"]),
        ago(&v["last_sample"], now),
    );
    if !v["cause"].is_null() {
        out.push_str(&format!("Cause: {}\n", s(&v["cause"])));
    }
    if let Some(u) = v["unreachable_owners"].as_array().filter(|u| !u.is_empty()) {
        out.push_str(&format!(
            "Not reachable: {}\n",
            names(&Value::Array(u.clone()))
        ));
    }
    let mut lines = vec!["MONITOR|AT|RTT MS|LOSS|UPTIME S|ERRORS".to_owned()];
    let mut ifs = vec!["MONITOR|IFINDEX|OPER|IN OCTETS|OUT OCTETS|IN BIT/S|OUT BIT/S".to_owned()];
    for smp in v["samples"].as_array().into_iter().flatten() {
        let errs: Vec<String> = ["ping_error", "snmp_error"]
            .iter()
            .filter(|k| !smp[**k].is_null())
            .map(|k| s(&smp[*k]))
            .collect();
        lines.push(format!(
            "{}|{}|{}|{}|{}|{}",
            s(&smp["monitor"]),
            ago(&smp["at"], now),
            num(&smp["rtt_ms"], 2),
            num(&smp["loss"], 2),
            num(&smp["uptime"], 0),
            if errs.is_empty() {
                "-".to_owned()
            } else {
                errs.join("; ")
            }
        ));
        for i in smp["interfaces"].as_array().into_iter().flatten() {
            ifs.push(format!(
                "{}|{}|{}|{}|{}|{}|{}",
                s(&smp["monitor"]),
                s(&i["index"]),
                if i["oper_up"].as_bool() == Some(true) {
                    "up"
                } else {
                    "down"
                },
                s(&i["in_octets"]),
                s(&i["out_octets"]),
                num(&i["in_bps"], 0),
                num(&i["out_bps"], 0)
            ));
        }
    }
    out.push('\n');
    out.push_str(&columnize(&lines));
    if ifs.len() > 1 {
        out.push_str("\n\n");
        out.push_str(&columnize(&ifs));
    }
    out
}

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
            let v = component_get(&at, "monitor", OFF).await?;
            match at.rpc.format {
                Format::Json => emit(&serde_json::to_string_pretty(&v["assignment"])?)?,
                Format::Text => emit(&assignment_text(&v))?,
            }
            Ok(0)
        }
        MonitorCommand::Devices { at } => {
            let v = monitor_get(&at, &["devices"], &[]).await?;
            match at.rpc.format {
                Format::Json => emit(&serde_json::to_string_pretty(&v)?)?,
                Format::Text => emit(&devices_text(&v, now()))?,
            }
            Ok(0)
        }
        MonitorCommand::Device { id, step, at } => {
            let step = step.to_string();
            let v = monitor_get(&at, &["devices", &id], &[("step", &step)]).await?;
            match at.rpc.format {
                Format::Json => emit(&serde_json::to_string_pretty(&v)?)?,
                Format::Text => emit(&device_text(&v, now()))?,
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

    #[test]
    fn the_text_forms_of_devices() {
        let v = serde_json::json!([
            {"id": "r1", "address": "10.0.0.1", "state": "up", "owners": ["a", "b"],
             "last_sample": 990, "cause": null},
            {"id": "r|2", "address": "10.0.0.2", "state": "unknown", "owners": [],
             "last_sample": null, "cause": "no fresh sample yet"},
        ]);
        let t = devices_text(&v, 1000);
        assert!(
            t.contains("10s ago") && t.contains("a,b") && t.contains("never"),
            "{t}"
        );
        assert!(
            t.contains("r/2") && t.contains("no fresh sample yet"),
            "{t}"
        );
        let d = serde_json::json!({
            "id": "r1", "address": "10.0.0.1", "title": "Router", "state": "down",
            "owners": ["a"], "last_sample": 995, "cause": "a: ping: no reply",
            "unreachable_owners": ["b"],
            "samples": [{"monitor": "a", "at": 995, "rtt_ms": null, "loss": 1.0,
                "uptime": 12.5, "ping_error": null, "snmp_error": "no answer",
                "interfaces": [{"index": 2, "oper_up": true, "in_octets": 10,
                    "out_octets": 20, "in_bps": 8.0, "out_bps": null}]}]
        });
        let t = device_text(&d, 1000);
        for want in [
            "State: down",
            "Cause: a: ping: no reply",
            "Not reachable: b",
            "no answer",
            "1.00",
            "IFINDEX",
        ] {
            assert!(t.contains(want), "{want}: {t}");
        }
    }
}
