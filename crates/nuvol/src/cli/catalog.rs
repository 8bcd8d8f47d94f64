//! avahi-ps-compatible catalog commands: `publish`, `unpublish`, `search`
//! and `services`.
//!
//! Against a nuvol agent they go through its REST API (found with
//! `--http-addr`, or asked from the agent over RPC), so the agent's catalog
//! (persistent, with health checks and no 512-byte ceiling) does the work.
//! Against a plain serf agent (Cloudy's avahi-ps over serf) they read and
//! write the node's `services` tag in Cloudy's encoding over serf's RPC.

use super::output::{columnize, emit};
use super::{CatalogOpts, Format, PublishArgs};
use anyhow::{bail, Context, Result};
use nuvol_api::{ApiClient, ClientError};
use nuvol_catalog::cloudy::{self, CloudyService};
use nuvol_catalog::model::{CheckDef, CheckKind};
use nuvol_catalog::view::SERVICES_TAG as TAG;
use nuvol_catalog::{Filter, ServiceDef, ServiceEntry, Source, Status};
use nuvol_rpc::{Member, RpcClient};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

/// Where the catalog lives.
pub(super) enum Target {
    /// A nuvol agent's REST API.
    Api { client: ApiClient, me: String },
    /// A serf agent: the `services` tag over RPC.
    Tags(RpcClient),
}

/// How long a catalog command waits for a starting agent's REST API.
const API_START_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn http_base(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

fn api_error(e: ClientError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// The REST client of a nuvol agent, for commands a serf agent has no
/// counterpart of (`what` names them in the error).
pub(super) async fn nuvol_api(at: &CatalogOpts, write: bool, what: &str) -> Result<ApiClient> {
    match target(at, write).await? {
        Target::Api { client, .. } => Ok(client),
        Target::Tags(_) => bail!("this is a serf agent: {what} need a nuvol agent"),
    }
}

/// `GET /v1/PATH` of a component the agent may run without (`off`: what a
/// 404 means, e.g. how to turn it on).
pub(super) async fn component_get(
    at: &CatalogOpts,
    path: &str,
    off: &str,
) -> Result<serde_json::Value> {
    let c = nuvol_api(at, false, path).await?;
    c.call_json(nuvol_api::Method::GET, &["v1", path], &[], None, None)
        .await
        .map_err(|e| match e {
            ClientError::Api { status: 404, .. } => anyhow::anyhow!("{off}"),
            e => anyhow::anyhow!("{e}"),
        })
}

/// Reach the agent. `write` asks for the API token too.
pub(super) async fn target(at: &CatalogOpts, write: bool) -> Result<Target> {
    let (http, data_dir) = match &at.http_addr {
        Some(h) => (Some(h.clone()), None),
        None => {
            let c = at.rpc.connect().await?;
            // A starting agent answers RPC before its API listens: wait
            // for it (the agent lists the API component meanwhile).
            let deadline = std::time::Instant::now() + API_START_WAIT;
            loop {
                let stats = c.stats().await.context("Error querying agent")?;
                let api = stats.get("nuvol", "component.api").unwrap_or("");
                match (stats.get("nuvol", "http_addr"), stats.get("nuvol", "data_dir")) {
                    (Some(h), dir) => break (Some(h.to_owned()), dir.map(str::to_owned)),
                    (None, Some(_))
                        if (api.starts_with("starting") || api.starts_with("restarting"))
                            && std::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    (None, Some(_)) if !api.is_empty() => {
                        bail!("the agent's REST API is not running: {api}")
                    }
                    // A nuvol agent owns its `services` tag: without its API
                    // there is no safe way to change its catalog.
                    (None, Some(_)) => bail!(
                        "this nuvol agent runs without its REST API (started with --http-addr \"\"); the catalog needs it"
                    ),
                    (None, None) => return Ok(Target::Tags(c)),
                }
            }
        }
    };
    let base = http_base(http.as_deref().unwrap_or_default());
    let client = ApiClient::new(&base, None).map_err(api_error)?;
    let info = client.agent().await.map_err(api_error)?;
    let token = match (&at.token, write) {
        (Some(t), _) => Some(t.clone()),
        (None, false) => None,
        (None, true) => {
            let dir = data_dir.unwrap_or(info.data_dir.clone());
            Some(nuvol_api::token::read_token(Path::new(&dir)).with_context(|| {
                format!("cannot read the agent's API token in {dir} (run as the agent's user, or pass --token)")
            })?)
        }
    };
    Ok(Target::Api {
        client: ApiClient::new(&base, token).map_err(api_error)?,
        me: info.name,
    })
}

fn parse_duration(what: &str, s: &str) -> Result<std::time::Duration> {
    nuvol_agent::duration::parse(s).map_err(|e| anyhow::anyhow!("invalid {what}: {e}"))
}

pub async fn publish(a: &PublishArgs) -> Result<i32> {
    let port = cloudy::parse_port(&a.port)?;
    let txt = cloudy::parse_txt_arg(a.txt.as_deref().unwrap_or(""))?;
    cloudy::validate_type(&a.stype)?;
    let interval = parse_duration("--check-interval", &a.check_interval)?;
    let timeout = parse_duration("--check-timeout", &a.check_timeout)?;
    let mut checks = Vec::new();
    let kinds = a
        .check_tcp
        .iter()
        .map(|t| CheckKind::Tcp { addr: t.clone() })
        .chain(a.check_http.iter().map(|u| CheckKind::Http {
            url: u.clone(),
            status: 200,
            tls_skip_verify: false,
        }))
        .chain(
            a.check_script
                .iter()
                .map(|c| CheckKind::Script { command: c.clone() }),
        );
    for kind in kinds {
        checks.push(CheckDef {
            kind,
            interval,
            timeout,
        });
    }
    let def = ServiceDef {
        stype: a.stype.clone(),
        description: a.description.clone(),
        port,
        txt,
        checks,
    };
    def.validate()?;
    match target(&a.at, true).await? {
        Target::Api { client, .. } => {
            if let Some(cloud) = &a.cloud {
                let agent_cloud = client.agent().await.map_err(api_error)?.cloud;
                if *cloud != agent_cloud {
                    bail!(
                        "the agent's cloud is {agent_cloud:?}; set it with `nuvol agent --cloud`"
                    );
                }
            }
            let e = client.publish(&def).await.map_err(api_error)?;
            warn_cloudy_room(&client, &e.node).await;
            if a.at.rpc.format == Format::Json {
                emit(&serde_json::to_string_pretty(&e)?)?;
            }
            Ok(0)
        }
        Target::Tags(c) => {
            if !def.checks.is_empty() {
                bail!("health checks need a nuvol agent (this agent is serf)");
            }
            publish_tag(&c, a, &def).await
        }
    }
}

/// Say so when this node's Cloudy tag could not hold all its (non-critical)
/// services: Cloudy peers see fewer than nuvol peers.
async fn warn_cloudy_room(client: &ApiClient, me: &str) {
    let Ok(mine) = client
        .services(&Filter {
            stype: None,
            node: Some(me.to_owned()),
        })
        .await
    else {
        return;
    };
    let want = mine.iter().filter(|s| s.status != Status::Critical).count();
    let Ok(members) = client.members().await else {
        return;
    };
    let in_tag = members
        .iter()
        .find(|m| m.name == me)
        .and_then(|m| m.tags.get(TAG))
        .and_then(|t| cloudy::decode_services(t).ok())
        .map_or(0, |d| d.services.len());
    if in_tag < want {
        eprintln!(
            "nuvol: note: the Cloudy `services` tag holds {in_tag} of {want} services (serf's 512-byte tag limit); nuvol nodes get all of them"
        );
    }
}

pub async fn unpublish(at: &CatalogOpts, stype: &str, port: Option<&str>) -> Result<i32> {
    cloudy::validate_type(stype)?;
    let port = port.map(cloudy::parse_port).transpose()?;
    match target(at, true).await? {
        Target::Api { client, me } => {
            let ports: Vec<u16> = match port {
                Some(p) => vec![p],
                None => client
                    .services(&Filter {
                        stype: Some(stype.to_owned()),
                        node: Some(me),
                    })
                    .await
                    .map_err(api_error)?
                    .iter()
                    .map(|s| s.port)
                    .collect(),
            };
            if ports.is_empty() {
                bail!("no published service of type {stype:?}");
            }
            for p in ports {
                client.unpublish(stype, p).await.map_err(api_error)?;
            }
            Ok(0)
        }
        Target::Tags(c) => unpublish_tag(&c, stype, port).await,
    }
}

/// The catalog (whichever way it is reached), filtered.
async fn entries(at: &CatalogOpts, filter: &Filter) -> Result<Vec<ServiceEntry>> {
    match target(at, false).await? {
        Target::Api { client, .. } => client.services(filter).await.map_err(api_error),
        Target::Tags(c) => {
            let members = c.members().await.context("Error retrieving members")?;
            let mut out: Vec<ServiceEntry> = members
                .iter()
                .flat_map(|m| services_of(m).into_iter().map(move |s| entry_of(m, s)))
                .filter(|e| filter.matches(e))
                .collect();
            out.sort_by(|a, b| (&a.node, &a.stype, a.port).cmp(&(&b.node, &b.stype, b.port)));
            Ok(out)
        }
    }
}

/// avahi-ps's `search [TYPE] [HOST]`: services of available members.
pub async fn search(at: &CatalogOpts, stype: Option<&str>, host: Option<&str>) -> Result<i32> {
    if let Some(t) = stype {
        cloudy::validate_type(t)?;
    }
    let filter = Filter {
        stype: stype.map(str::to_owned),
        node: None,
    };
    let found: Vec<ServiceEntry> = entries(at, &filter)
        .await?
        .into_iter()
        .filter(|e| e.status != Status::Unavailable)
        .filter(|e| host.is_none_or(|h| e.host == h || e.node == h || e.ip == h))
        .collect();
    print_entries(at.rpc.format, &found, |e| {
        format!(
            "{}|{}|{}|{}|{}|{}",
            e.description,
            e.stype,
            e.host,
            e.ip,
            e.port,
            txt_string(&e.txt)
        )
    })
}

/// `services [--type T] [--node N]`: the whole catalog with status.
pub async fn services(at: &CatalogOpts, stype: Option<&str>, node: Option<&str>) -> Result<i32> {
    if let Some(t) = stype {
        cloudy::validate_type(t)?;
    }
    let filter = Filter {
        stype: stype.map(str::to_owned),
        node: node.map(str::to_owned),
    };
    let found = entries(at, &filter).await?;
    print_entries(at.rpc.format, &found, |e| {
        format!(
            "{}|{}|{}|{}:{}|{}|{}",
            e.node,
            e.stype,
            e.description,
            e.ip,
            e.port,
            e.status.as_str(),
            txt_string(&e.txt)
        )
    })
}

fn print_entries(
    format: Format,
    list: &[ServiceEntry],
    line: impl Fn(&ServiceEntry) -> String,
) -> Result<i32> {
    match format {
        Format::Json => emit(&serde_json::to_string_pretty(list)?)?,
        Format::Text => {
            let lines: Vec<String> = list.iter().map(line).collect();
            if !lines.is_empty() {
                emit(&columnize(&lines))?;
            }
        }
    }
    Ok(0)
}

fn txt_string(txt: &[(String, String)]) -> String {
    txt.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

// ------------------------------------------------------------ serf agents

fn services_of(m: &Member) -> Vec<CloudyService> {
    match m.tags.get(TAG).map(|t| cloudy::decode_services(t)) {
        Some(Ok(d)) => d.services,
        // Malformed tags of other nodes are skipped, never fatal.
        _ => Vec::new(),
    }
}

fn entry_of(m: &Member, s: CloudyService) -> ServiceEntry {
    ServiceEntry {
        node: m.name.clone(),
        stype: s.stype,
        description: s.description,
        host: s.host,
        ip: s.ip,
        port: s.port,
        cloud: s.cloud,
        txt: s.txt,
        status: if m.status == "alive" {
            Status::Passing
        } else {
            Status::Unavailable
        },
        source: Source::Cloudy,
        checks: Vec::new(),
    }
}

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

async fn publish_tag(c: &RpcClient, a: &PublishArgs, def: &ServiceDef) -> Result<i32> {
    let me = local_member(c).await?;
    let ip = me.addr.map(|a| a.to_string()).unwrap_or_default();
    let cloud = a.cloud.as_deref().unwrap_or("nuvol");
    let svc = CloudyService::new(
        &def.description,
        &def.stype,
        def.port,
        def.txt.clone(),
        &me.name,
        cloud,
        &ip,
    )?;
    let mut list = services_of(&me);
    list.retain(|s| !(s.stype == svc.stype && s.port == svc.port));
    list.push(svc);
    let n = store(c, &me, &list).await?;
    if n < list.len() {
        eprintln!(
            "nuvol: warning: the Cloudy tag holds {n} of {} services (512-byte tag limit)",
            list.len()
        );
    }
    if a.at.rpc.format == Format::Json {
        emit(
            &json!({"published": def.stype, "port": def.port, "in_tag": n, "total": list.len()})
                .to_string(),
        )?;
    }
    Ok(0)
}

async fn unpublish_tag(c: &RpcClient, stype: &str, port: Option<u16>) -> Result<i32> {
    let me = local_member(c).await?;
    let mut list = services_of(&me);
    let before = list.len();
    list.retain(|s| !(s.stype == stype && port.is_none_or(|p| s.port == p)));
    if list.len() == before {
        bail!(
            "no published service of type {stype:?}{}",
            port.map(|p| format!(" on port {p}")).unwrap_or_default()
        );
    }
    store(c, &me, &list).await?;
    Ok(0)
}
