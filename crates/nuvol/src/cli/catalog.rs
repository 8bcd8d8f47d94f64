//! avahi-ps-compatible catalog commands over serf's RPC: `publish`,
//! `unpublish`, `search` and `services`. Services live in each node's Serf
//! tag `services` in Cloudy's encoding, so they work against nuvol and serf
//! agents alike and Cloudy's GUI sees them.
//!
//! This is the first, tag-only step of the catalog: no persistence beyond
//! the agent's tags (file), no health checks, no transfer beyond what fits
//! the 512-byte tag limit (the command says when something did not fit).

use super::output::{columnize, emit};
use super::RpcOpts;
use anyhow::{bail, Context, Result};
use nuvol_catalog::cloudy::{self, CloudyService};
use nuvol_rpc::{Member, RpcClient};
use serde_json::json;
use std::collections::BTreeMap;

const TAG: &str = "services";

/// The agent's own name and member record.
async fn local_member(c: &RpcClient) -> Result<Member> {
    let stats = c.stats().await.context("Error querying agent")?;
    let name = stats
        .get("agent", "name")
        .context("agent did not report its name")?
        .to_owned();
    c.members()
        .await?
        .into_iter()
        .find(|m| m.name == name)
        .context("agent does not list itself")
}

fn services_of(m: &Member) -> Vec<CloudyService> {
    match m.tags.get(TAG).map(|t| cloudy::decode_services(t)) {
        Some(Ok(d)) => d.services,
        // Malformed tags of other nodes are skipped, never fatal.
        _ => Vec::new(),
    }
}

/// Write `services` into the agent's tag, as many as fit the 512-byte limit.
async fn store(c: &RpcClient, me: &Member, services: &[CloudyService]) -> Result<usize> {
    let others: BTreeMap<String, String> = me
        .tags
        .iter()
        .filter(|(k, _)| k.as_str() != TAG)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let fits = |value: &str| {
        let mut t = others.clone();
        t.insert(TAG.to_owned(), value.to_owned());
        nuvol_gossip::encode_meta(5, &t).len() <= nuvol_wire::memberlist::META_MAX_SIZE
    };
    let (value, n) = cloudy::encode_services_fitting(services, fits);
    if n == 0 && !services.is_empty() {
        bail!("no room left in the node's 512-byte tags for a service");
    }
    let mut set = BTreeMap::new();
    set.insert(TAG.to_owned(), value);
    c.update_tags::<String>(&set, &[])
        .await
        .context("Error setting tags")?;
    Ok(n)
}

pub async fn publish(
    rpc: &RpcOpts,
    description: &str,
    stype: &str,
    port: &str,
    txt: Option<&str>,
    cloud: &str,
) -> Result<i32> {
    let port = cloudy::parse_port(port)?;
    let txt = cloudy::parse_txt_arg(txt.unwrap_or(""))?;
    cloudy::validate_type(stype)?;
    let c = rpc.connect().await?;
    let me = local_member(&c).await?;
    let ip = me.addr.map(|a| a.to_string()).unwrap_or_default();
    let svc = CloudyService::new(description, stype, port, txt, &me.name, cloud, &ip)?;
    let mut list = services_of(&me);
    list.retain(|s| !(s.stype == svc.stype && s.port == svc.port));
    list.push(svc);
    let n = store(&c, &me, &list).await?;
    if n < list.len() {
        eprintln!(
            "nuvol: warning: the Cloudy tag holds {n} of {} services (512-byte tag limit)",
            list.len()
        );
    }
    if rpc.format == super::Format::Json {
        emit(
            &json!({"published": stype, "port": port, "in_tag": n, "total": list.len()})
                .to_string(),
        )?;
    }
    Ok(0)
}

pub async fn unpublish(rpc: &RpcOpts, stype: &str, port: Option<&str>) -> Result<i32> {
    cloudy::validate_type(stype)?;
    let port = port.map(cloudy::parse_port).transpose()?;
    let c = rpc.connect().await?;
    let me = local_member(&c).await?;
    let mut list = services_of(&me);
    let before = list.len();
    list.retain(|s| !(s.stype == stype && port.is_none_or(|p| s.port == p)));
    if list.len() == before {
        bail!(
            "no published service of type {stype:?}{}",
            port.map(|p| format!(" on port {p}")).unwrap_or_default()
        );
    }
    store(&c, &me, &list).await?;
    Ok(0)
}

/// One catalog row: a service and the member that publishes it.
struct Row<'a> {
    member: &'a Member,
    svc: CloudyService,
}

async fn catalog(c: &RpcClient) -> Result<Vec<Member>> {
    c.members().await.context("Error retrieving members")
}

fn rows(members: &[Member]) -> Vec<Row<'_>> {
    let mut out = Vec::new();
    for m in members {
        for svc in services_of(m) {
            out.push(Row { member: m, svc });
        }
    }
    out.sort_by(|a, b| {
        (&a.svc.stype, &a.member.name, a.svc.port).cmp(&(&b.svc.stype, &b.member.name, b.svc.port))
    });
    out
}

/// avahi-ps's `search [TYPE] [HOST]`: services of alive members.
pub async fn search(rpc: &RpcOpts, stype: Option<&str>, host: Option<&str>) -> Result<i32> {
    if let Some(t) = stype {
        cloudy::validate_type(t)?;
    }
    let c = rpc.connect().await?;
    let members = catalog(&c).await?;
    let lines: Vec<String> = rows(&members)
        .into_iter()
        .filter(|r| r.member.status == "alive")
        .filter(|r| stype.is_none_or(|t| r.svc.stype == t))
        .filter(|r| host.is_none_or(|h| r.svc.host == h || r.member.name == h || r.svc.ip == h))
        .map(|r| {
            format!(
                "{}|{}|{}|{}|{}|{}",
                r.svc.description,
                r.svc.stype,
                r.svc.host,
                r.svc.ip,
                r.svc.port,
                r.svc.txt_string()
            )
        })
        .collect();
    if rpc.format == super::Format::Json {
        return services(rpc, stype, host.map(str::to_owned).as_deref()).await;
    }
    if !lines.is_empty() {
        emit(&columnize(&lines))?;
    }
    Ok(0)
}

/// `services [--type T] [--node N]`: the whole catalog with member status.
pub async fn services(rpc: &RpcOpts, stype: Option<&str>, node: Option<&str>) -> Result<i32> {
    let c = rpc.connect().await?;
    let members = catalog(&c).await?;
    let selected: Vec<Row> = rows(&members)
        .into_iter()
        .filter(|r| stype.is_none_or(|t| r.svc.stype == t))
        .filter(|r| node.is_none_or(|n| r.member.name == n || r.svc.host == n))
        .collect();
    match rpc.format {
        super::Format::Json => {
            let arr: Vec<serde_json::Value> = selected
                .iter()
                .map(|r| {
                    let txt: BTreeMap<&str, &str> =
                        r.svc.txt.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    json!({
                        "node": r.member.name,
                        "type": r.svc.stype,
                        "description": r.svc.description,
                        "host": r.svc.host,
                        "ip": r.svc.ip,
                        "port": r.svc.port,
                        "cloud": r.svc.cloud,
                        "txt": txt,
                        "status": if r.member.status == "alive" { "available" } else { "unavailable" },
                        "member_status": r.member.status,
                    })
                })
                .collect();
            emit(&serde_json::to_string_pretty(&arr)?)?;
        }
        super::Format::Text => {
            let lines: Vec<String> = selected
                .iter()
                .map(|r| {
                    format!(
                        "{}|{}|{}|{}:{}|{}|{}",
                        r.member.name,
                        r.svc.stype,
                        r.svc.description,
                        r.svc.ip,
                        r.svc.port,
                        r.member.status,
                        r.svc.txt_string()
                    )
                })
                .collect();
            if !lines.is_empty() {
                emit(&columnize(&lines))?;
            }
        }
    }
    Ok(0)
}
