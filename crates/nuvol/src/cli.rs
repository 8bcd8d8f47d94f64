//! Client subcommands: serf's CLI, spoken over serf's RPC protocol, so they
//! work against a nuvol agent or a serf agent. Text output follows serf's;
//! `--format json` gives serf's JSON shapes.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use nuvol_rpc::{ClientConfig, ClientError, Member, QueryEvent, QueryRequest, RpcClient};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args, Clone)]
pub struct RpcOpts {
    /// Agent RPC address.
    #[arg(long, env = "NUVOL_RPC_ADDR", default_value = "127.0.0.1:7373")]
    rpc_addr: String,
    /// RPC auth key, if the agent requires one.
    #[arg(long, env = "NUVOL_RPC_AUTH", hide_env_values = true)]
    rpc_auth: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

impl RpcOpts {
    async fn connect(&self) -> Result<RpcClient> {
        let cfg = ClientConfig {
            auth_key: self.rpc_auth.clone(),
            timeout: Duration::from_secs(10),
            ..ClientConfig::default()
        };
        Ok(RpcClient::connect_with(&self.rpc_addr, cfg).await?)
    }
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// List the members of the cluster.
    Members {
        #[command(flatten)]
        rpc: RpcOpts,
        /// Show protocol versions too.
        #[arg(long)]
        detailed: bool,
        /// Only members whose status matches this regular expression.
        #[arg(long)]
        status: Option<String>,
        /// Only members whose name matches this regular expression.
        #[arg(long)]
        name: Option<String>,
        /// Only members with tag K matching regular expression V (repeatable).
        #[arg(long, value_name = "K=V")]
        tag: Vec<String>,
    },
    /// Tell the agent to join a cluster through these addresses.
    Join {
        #[command(flatten)]
        rpc: RpcOpts,
        /// Replay past user events.
        #[arg(long)]
        replay: bool,
        #[arg(required = true, value_name = "ADDR")]
        addrs: Vec<String>,
    },
    /// Leave the cluster gracefully and stop the agent.
    Leave {
        #[command(flatten)]
        rpc: RpcOpts,
    },
    /// Force a failed member into the left state.
    ForceLeave {
        #[command(flatten)]
        rpc: RpcOpts,
        /// Also remove it from the member list at once.
        #[arg(long)]
        prune: bool,
        node: String,
    },
    /// Set or delete the agent's tags.
    Tags {
        #[command(flatten)]
        rpc: RpcOpts,
        /// K=V to set (repeatable).
        #[arg(long, value_name = "K=V")]
        set: Vec<String>,
        /// Tag to delete (repeatable).
        #[arg(long, value_name = "K")]
        delete: Vec<String>,
    },
    /// Send a user event to the cluster.
    Event {
        #[command(flatten)]
        rpc: RpcOpts,
        /// Let the cluster coalesce events of the same name.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        coalesce: bool,
        name: String,
        payload: Option<String>,
    },
    /// Send a query and print acks and responses.
    Query {
        #[command(flatten)]
        rpc: RpcOpts,
        /// Only these nodes answer (repeatable).
        #[arg(long)]
        node: Vec<String>,
        /// Only nodes with tag K matching regular expression V (repeatable).
        #[arg(long, value_name = "K=V")]
        tag: Vec<String>,
        /// How long to wait for answers (e.g. 5s; default: the agent's).
        #[arg(long)]
        timeout: Option<String>,
        /// Don't ask for acks.
        #[arg(long)]
        no_ack: bool,
        /// Relay responses through this many other nodes.
        #[arg(long, default_value_t = 0)]
        relay_factor: u8,
        name: String,
        payload: Option<String>,
    },
    /// Manage the cluster's gossip encryption keys.
    Keys {
        #[command(flatten)]
        rpc: RpcOpts,
        #[arg(long, group = "op")]
        install: Option<String>,
        #[arg(long = "use", group = "op")]
        use_key: Option<String>,
        #[arg(long, group = "op")]
        remove: Option<String>,
        #[arg(long, group = "op")]
        list: bool,
    },
    /// Show information about the agent.
    Info {
        #[command(flatten)]
        rpc: RpcOpts,
    },
    /// Stream the agent's logs.
    Monitor {
        #[command(flatten)]
        rpc: RpcOpts,
        /// trace, debug, info, warn or err.
        #[arg(long, default_value = "INFO")]
        log_level: String,
    },
    /// Estimated round-trip time between two nodes (or this node and one).
    Rtt {
        #[command(flatten)]
        rpc: RpcOpts,
        #[arg(required = true, num_args = 1..=2)]
        nodes: Vec<String>,
    },
    /// Check that every live member answers a query.
    Reachability {
        #[command(flatten)]
        rpc: RpcOpts,
        #[arg(long)]
        verbose: bool,
    },
    /// Print a new random gossip encryption key.
    Keygen {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

fn parse_kv(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for t in items {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid {what} {t:?}: expected K=V"))?;
        if k.is_empty() {
            bail!("invalid {what} {t:?}: empty name");
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

/// serf's columnize: `|`-separated cells aligned with two spaces.
fn columnize(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                if i + 1 < r.len() {
                    line.push_str(&format!("{c:<w$}  ", w = widths[i]));
                } else {
                    line.push_str(c);
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn tags_string(t: &BTreeMap<String, String>) -> String {
    t.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn members_json(ms: &[Member]) -> Json {
    json!({
        "members": ms.iter().map(|m| json!({
            "name": m.name,
            "addr": m.addr_string(),
            "port": m.port,
            "tags": m.tags,
            "status": m.status,
            "protocol": {"min": m.delegate_min, "max": m.delegate_max, "version": m.delegate_cur},
        })).collect::<Vec<_>>()
    })
}

fn print_json(v: &Json) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Parse a Go-style duration (`5s`, `1m30s`, `500ms`).
pub fn parse_duration(s: &str) -> Result<Duration> {
    nuvol_agent::config::parse_duration(s).map_err(|e| anyhow!(e))
}

pub async fn run(cmd: ClientCommand) -> Result<i32> {
    match cmd {
        ClientCommand::Keygen { format } => {
            let k = nuvol_wire::security::encode_key(&nuvol_wire::security::generate_key());
            match format {
                Format::Text => println!("{k}"),
                Format::Json => print_json(&json!({"key": k}))?,
            }
            Ok(0)
        }
        ClientCommand::Members {
            rpc,
            detailed,
            status,
            name,
            tag,
        } => {
            let format = rpc.format;
            let tags = parse_kv(&tag, "tag filter")?;
            for (k, re) in &tags {
                regex::Regex::new(re)
                    .with_context(|| format!("invalid regular expression for tag {k}"))?;
            }
            for re in status.iter().chain(name.iter()) {
                regex::Regex::new(re)
                    .with_context(|| format!("invalid regular expression {re:?}"))?;
            }
            let c = rpc.connect().await?;
            let ms = c
                .members_filtered(
                    &tags,
                    status.as_deref().unwrap_or(""),
                    name.as_deref().unwrap_or(""),
                )
                .await
                .context("Error retrieving members")?;
            match format {
                Format::Json => print_json(&members_json(&ms))?,
                Format::Text => {
                    let rows: Vec<Vec<String>> = ms
                        .iter()
                        .map(|m| {
                            let mut r = vec![
                                m.name.clone(),
                                m.addr_string(),
                                m.status.clone(),
                                tags_string(&m.tags),
                            ];
                            if detailed {
                                r.push(format!("Protocol Version: {}", m.delegate_cur));
                                r.push(format!(
                                    "Available Protocol Range: [{}, {}]",
                                    m.delegate_min, m.delegate_max
                                ));
                            }
                            r
                        })
                        .collect();
                    if !rows.is_empty() {
                        println!("{}", columnize(&rows));
                    }
                }
            }
            Ok(0)
        }
        ClientCommand::Join { rpc, replay, addrs } => {
            let c = rpc.connect().await?;
            let n = c
                .join(&addrs, replay)
                .await
                .context("Error joining the cluster")?;
            match rpc.format {
                Format::Text => println!("Successfully joined cluster by contacting {n} nodes."),
                Format::Json => print_json(&json!({"joined": n}))?,
            }
            Ok(0)
        }
        ClientCommand::Leave { rpc } => {
            let c = rpc.connect().await?;
            c.leave().await.context("Error leaving")?;
            match rpc.format {
                Format::Text => println!("Graceful leave complete"),
                Format::Json => print_json(&json!({"left": true}))?,
            }
            Ok(0)
        }
        ClientCommand::ForceLeave { rpc, prune, node } => {
            let c = rpc.connect().await?;
            c.force_leave(&node, prune)
                .await
                .context("Error force leaving")?;
            if rpc.format == Format::Json {
                print_json(&json!({"node": node, "prune": prune}))?;
            }
            Ok(0)
        }
        ClientCommand::Tags { rpc, set, delete } => {
            if set.is_empty() && delete.is_empty() {
                bail!("at least one of --set or --delete is required");
            }
            let set = parse_kv(&set, "tag")?;
            let c = rpc.connect().await?;
            c.update_tags(&set, &delete)
                .await
                .context("Error setting tags")?;
            match rpc.format {
                Format::Text => println!("Successfully updated agent tags"),
                Format::Json => print_json(&json!({"set": set, "deleted": delete}))?,
            }
            Ok(0)
        }
        ClientCommand::Event {
            rpc,
            coalesce,
            name,
            payload,
        } => {
            let c = rpc.connect().await?;
            let p = payload.unwrap_or_default();
            c.user_event(&name, p.as_bytes(), coalesce)
                .await
                .context("Error sending event")?;
            match rpc.format {
                Format::Text => {
                    println!("Event '{name}' dispatched! Coalescing enabled: {coalesce}")
                }
                Format::Json => print_json(&json!({"event": name, "coalesce": coalesce}))?,
            }
            Ok(0)
        }
        ClientCommand::Query {
            rpc,
            node,
            tag,
            timeout,
            no_ack,
            relay_factor,
            name,
            payload,
        } => {
            let format = rpc.format;
            let filter_tags = parse_kv(&tag, "tag filter")?;
            for (k, re) in &filter_tags {
                regex::Regex::new(re)
                    .with_context(|| format!("invalid regular expression for tag {k}"))?;
            }
            let timeout = timeout
                .as_deref()
                .map(parse_duration)
                .transpose()?
                .unwrap_or_default();
            let c = rpc.connect().await?;
            let req = QueryRequest {
                name: name.clone(),
                payload: payload.unwrap_or_default().into_bytes(),
                filter_nodes: node,
                filter_tags,
                request_ack: !no_ack,
                relay_factor,
                timeout,
            };
            let mut stream = c.query(&req).await.context("Error sending query")?;
            if format == Format::Text {
                println!("Query '{name}' dispatched");
            }
            let mut acks = Vec::new();
            let mut responses = BTreeMap::new();
            while let Some(ev) = stream.next().await? {
                match ev {
                    QueryEvent::Ack(from) => {
                        if format == Format::Text {
                            println!("Ack from '{from}'");
                        }
                        acks.push(from);
                    }
                    QueryEvent::Response(r) => {
                        let text = String::from_utf8_lossy(&r.payload).into_owned();
                        if format == Format::Text {
                            println!(
                                "Response from '{}': {}",
                                r.from,
                                text.trim_end_matches('\n')
                            );
                        }
                        responses.insert(r.from, text);
                    }
                }
            }
            match format {
                Format::Text => {
                    if !no_ack {
                        println!("Total Acks: {}", acks.len());
                    }
                    println!("Total Responses: {}", responses.len());
                }
                Format::Json => {
                    acks.sort();
                    print_json(&json!({"Acks": acks, "Responses": responses}))?;
                }
            }
            Ok(0)
        }
        ClientCommand::Keys {
            rpc,
            install,
            use_key,
            remove,
            list,
        } => {
            let format = rpc.format;
            let (cmd, key, doing, done) = if let Some(k) = install {
                (
                    "install-key",
                    Some(k),
                    "Installing key on all members...",
                    "Successfully installed key!",
                )
            } else if let Some(k) = use_key {
                (
                    "use-key",
                    Some(k),
                    "Changing primary key on all members...",
                    "Successfully changed primary key!",
                )
            } else if let Some(k) = remove {
                (
                    "remove-key",
                    Some(k),
                    "Removing key on all members...",
                    "Successfully removed key!",
                )
            } else if list {
                (
                    "list-keys",
                    None,
                    "Asking all members for installed keys...",
                    "",
                )
            } else {
                bail!("one of --install, --use, --remove or --list is required");
            };
            if let Some(k) = &key {
                nuvol_wire::security::parse_key(k).map_err(|e| anyhow!("invalid key: {e}"))?;
            }
            let c = rpc.connect().await?;
            if format == Format::Text {
                println!("==> {doing}");
            }
            let k = key.as_deref().unwrap_or("");
            let result = match cmd {
                "install-key" => c.install_key(k).await,
                "use-key" => c.use_key(k).await,
                "remove-key" => c.remove_key(k).await,
                _ => c.list_keys().await,
            };
            let (r, error) = match result {
                Ok(r) => (r, None),
                Err(ClientError::Keyring { error, response }) => (*response, Some(error)),
                Err(e) => return Err(e.into()),
            };
            if format == Format::Json {
                print_json(&json!({
                    "keys": r.keys, "messages": r.messages, "num_nodes": r.num_nodes,
                    "num_err": r.num_err, "num_resp": r.num_resp, "error": error,
                }))?;
                return Ok(if error.is_some() { 1 } else { 0 });
            }
            if let Some(e) = &error {
                let rows: Vec<Vec<String>> = r
                    .messages
                    .iter()
                    .map(|(n, m)| vec!["failed:".into(), n.clone(), m.clone()])
                    .collect();
                if !rows.is_empty() {
                    eprintln!("{}", columnize(&rows));
                }
                bail!("{e}");
            }
            if cmd == "list-keys" {
                println!("==> Keys gathered, listing cluster keys...\n");
                let rows: Vec<Vec<String>> = r
                    .keys
                    .iter()
                    .map(|(k, n)| vec![k.clone(), format!("[{n}/{}]", r.num_nodes)])
                    .collect();
                println!("{}", columnize(&rows));
            } else {
                println!("==> {done}");
            }
            Ok(0)
        }
        ClientCommand::Info { rpc } => {
            let format = rpc.format;
            let c = rpc.connect().await?;
            let stats = c.stats().await.context("Error querying agent")?.0;
            match format {
                Format::Json => print_json(&serde_json::to_value(&stats)?)?,
                Format::Text => {
                    for (k, m) in &stats {
                        println!("{k}:");
                        for (ik, v) in m {
                            println!("\t{ik} = {v}");
                        }
                    }
                }
            }
            Ok(0)
        }
        ClientCommand::Monitor { rpc, log_level } => {
            let c = rpc.connect().await?;
            let mut logs = c.monitor(&log_level.to_uppercase()).await?;
            while let Some(line) = logs.next().await? {
                match rpc.format {
                    Format::Text => println!("{line}"),
                    Format::Json => println!("{}", json!({"log": line})),
                }
            }
            Ok(0)
        }
        ClientCommand::Rtt { rpc, nodes } => {
            let format = rpc.format;
            let c = rpc.connect().await?;
            let (a, b) = if nodes.len() == 2 {
                (nodes[0].clone(), nodes[1].clone())
            } else {
                let stats = c.stats().await?;
                let me = stats
                    .get("agent", "name")
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("agent did not report its name"))?;
                (me, nodes[0].clone())
            };
            let ca = c
                .get_coordinate(&a)
                .await?
                .ok_or_else(|| anyhow!("Could not find a coordinate for node {a:?}"))?;
            let cb = c
                .get_coordinate(&b)
                .await?
                .ok_or_else(|| anyhow!("Could not find a coordinate for node {b:?}"))?;
            let d = ca
                .distance_to(&cb)
                .ok_or_else(|| anyhow!("coordinates of {a} and {b} are not compatible"))?;
            match format {
                Format::Text => println!(
                    "Estimated {a} <-> {b} rtt: {:.3} ms",
                    d.as_secs_f64() * 1000.0
                ),
                Format::Json => print_json(
                    &json!({"source": a, "destination": b, "rtt_ms": d.as_secs_f64() * 1000.0}),
                )?,
            }
            Ok(0)
        }
        ClientCommand::Reachability { rpc, verbose } => {
            let text = rpc.format == Format::Text;
            let c = rpc.connect().await?;
            let members = c.members().await?;
            let live: Vec<&Member> = members.iter().filter(|m| m.status == "alive").collect();
            if text {
                println!(
                    "Total members: {}, live members: {}",
                    members.len(),
                    live.len()
                );
            }
            let req = QueryRequest {
                name: "_serf_ping".into(),
                request_ack: true,
                ..Default::default()
            };
            let start = Instant::now();
            let mut stream = c.query(&req).await.context("Error sending query")?;
            if text {
                println!("Starting reachability test...");
            }
            let mut acks = std::collections::BTreeSet::new();
            let mut last = Duration::ZERO;
            while let Some(ev) = stream.next().await? {
                if let QueryEvent::Ack(from) = ev {
                    last = start.elapsed();
                    if verbose && text {
                        println!("\tAck from '{from}'");
                    }
                    if !acks.insert(from.clone()) && text {
                        println!("Duplicate response from '{from}'");
                    }
                }
            }
            let missing: Vec<&str> = live
                .iter()
                .filter(|m| !acks.contains(&m.name))
                .map(|m| m.name.as_str())
                .collect();
            let ok = missing.is_empty() && acks.len() == live.len();
            if !text {
                print_json(&json!({
                    "members": members.len(), "live": live.len(), "acks": acks,
                    "missing": missing, "query_secs": start.elapsed().as_secs_f64(),
                    "last_ack_secs": last.as_secs_f64(),
                }))?;
                return Ok(if ok { 0 } else { 1 });
            }
            println!(
                "Query time: {:.2} sec, time to last response: {:.2} sec",
                start.elapsed().as_secs_f64(),
                last.as_secs_f64()
            );
            if ok {
                println!("Successfully contacted all live nodes");
                Ok(0)
            } else {
                if !missing.is_empty() {
                    println!("Received less acks than live nodes! Missing acks from:");
                    for m in missing {
                        println!("\t{m}");
                    }
                }
                Ok(1)
            }
        }
    }
}
