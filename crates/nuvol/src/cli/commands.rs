//! The client commands themselves.

use super::output::{columnize, emit, go_json, msgpack_to_json, record_fields};
use super::{ClientCommand, Format, RpcOpts};
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use nuvol_agent::duration::parse as parse_go_duration;
use nuvol_rpc::{ClientError, KeyResponse, Member, QueryEvent, QueryRequest, RpcClient};
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

impl RpcOpts {
    pub(super) async fn connect(&self) -> Result<RpcClient> {
        Ok(RpcClient::connect(&self.rpc_addr, self.rpc_auth.as_deref()).await?)
    }
}

fn print_json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    emit(&go_json(v)?)?;
    Ok(())
}

/// serf's `UnmarshalTags`: `K=V` with a non-empty key.
fn parse_pairs(items: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for t in items {
        match t.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_owned(), v.to_owned());
            }
            _ => bail!("Invalid tag: '{t}' (expected KEY=VALUE)"),
        }
    }
    Ok(out)
}

/// Check a regular expression before the agent sees it (serf's agent drops
/// the connection on one it cannot compile).
fn check_regex(what: &str, re: &str) -> Result<()> {
    if let Err(e) = regex_lite::Regex::new(&format!("^{re}$")) {
        // regex-lite's message may span lines; keep the last non-empty one.
        let text = e.to_string();
        let reason = text
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("syntax error")
            .trim_start_matches("error:")
            .trim()
            .to_owned();
        bail!("invalid regular expression for {what} {re:?}: {reason}");
    }
    Ok(())
}

/// A join address: HOST, HOST:PORT or [IPV6]:PORT.
fn check_join_addr(a: &str) -> Result<()> {
    let bad = |why: &str| anyhow!("invalid address {a:?}: {why}");
    if a.is_empty() || a.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("empty or contains spaces"));
    }
    if a.parse::<std::net::IpAddr>().is_ok() || a.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = match a.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (a, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().map(|n| n == 0).unwrap_or(true) {
            return Err(bad("the port must be a number from 1 to 65535"));
        }
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if host.len() > 253 || !host.trim_end_matches('.').split('.').all(label_ok) {
        return Err(bad("not an IP address or host name"));
    }
    Ok(())
}

/// An encryption key: base64 of 16, 24 or 32 bytes.
fn check_key(k: &str) -> Result<()> {
    let raw = B64
        .decode(k.trim())
        .map_err(|e| anyhow!("invalid key {k:?}: not base64 ({e})"))?;
    if ![16, 24, 32].contains(&raw.len()) {
        bail!(
            "invalid key {k:?}: decodes to {} bytes, expected 16, 24 or 32",
            raw.len()
        );
    }
    Ok(())
}

pub async fn run(cmd: ClientCommand) -> Result<i32> {
    match cmd {
        ClientCommand::Keygen { format } => keygen(format),
        ClientCommand::Publish(a) => super::catalog::publish(&a).await,
        ClientCommand::App { cmd } => super::app::run(cmd).await,
        ClientCommand::Vip { cmd } => super::vip::run(cmd).await,
        ClientCommand::Swarm { cmd } => super::swarm::run(cmd).await,
        ClientCommand::Sync { cmd } => super::sync::run(cmd).await,
        ClientCommand::Unpublish { at, stype, port } => {
            super::catalog::unpublish(&at, &stype, port.as_deref()).await
        }
        ClientCommand::Search { at, stype, host } => {
            super::catalog::search(&at, stype.as_deref(), host.as_deref()).await
        }
        ClientCommand::Services { at, stype, node } => {
            super::catalog::services(&at, stype.as_deref(), node.as_deref()).await
        }
        ClientCommand::Members {
            rpc,
            detailed,
            status,
            name,
            tag,
        } => members(rpc, detailed, status, name, tag).await,
        ClientCommand::Join { rpc, replay, addrs } => {
            for a in &addrs {
                check_join_addr(a)?;
            }
            let c = rpc.connect().await?;
            let n = c
                .join(&addrs, replay)
                .await
                .context("Error joining the cluster")?;
            match rpc.format {
                Format::Text => emit(&format!(
                    "Successfully joined cluster by contacting {n} nodes."
                ))?,
                Format::Json => print_json(&json!({ "contacted": n }))?,
            }
            Ok(0)
        }
        ClientCommand::Leave { rpc } => {
            let c = rpc.connect().await?;
            c.leave().await.context("Error leaving")?;
            match rpc.format {
                Format::Text => emit("Graceful leave complete")?,
                Format::Json => print_json(&json!({ "status": "left" }))?,
            }
            Ok(0)
        }
        ClientCommand::ForceLeave { rpc, prune, node } => {
            let c = rpc.connect().await?;
            let ms = c.members().await.context("Error force leaving")?;
            let known = ms.iter().any(|m| m.name == node);
            c.force_leave(&node, prune)
                .await
                .context("Error force leaving")?;
            // As serf, the agent accepts a node it does not know.
            if !known {
                eprintln!(
                    "nuvol: warning: node {node:?} is not known to this agent; \
                     a leave intent was broadcast anyway"
                );
            }
            if rpc.format == Format::Json {
                print_json(&json!({ "node": node, "prune": prune }))?;
            }
            Ok(0)
        }
        ClientCommand::Tags { rpc, set, delete } => {
            if set.is_empty() && delete.is_empty() {
                bail!("nothing to do: give --set K=V or --delete K at least once");
            }
            let set = parse_pairs(&set)?;
            if let Some(d) = delete.iter().find(|d| d.is_empty()) {
                bail!("Invalid tag to delete: {d:?}");
            }
            let c = rpc.connect().await?;
            c.update_tags(&set, &delete)
                .await
                .context("Error setting tags")?;
            match rpc.format {
                Format::Text => emit("Successfully updated agent tags")?,
                Format::Json => {
                    let stats = c.stats().await.context("Error querying agent")?;
                    let tags = stats.0.get("tags").cloned().unwrap_or_default();
                    print_json(&json!({ "tags": tags }))?
                }
            }
            Ok(0)
        }
        ClientCommand::Event {
            rpc,
            coalesce,
            name,
            payload,
        } => {
            if name.is_empty() {
                bail!("An event name must be specified.");
            }
            let c = rpc.connect().await?;
            let p = payload.unwrap_or_default();
            c.user_event(&name, p.as_bytes(), coalesce)
                .await
                .context("Error sending event")?;
            match rpc.format {
                Format::Text => emit(&format!(
                    "Event '{name}' dispatched! Coalescing enabled: {coalesce}"
                ))?,
                Format::Json => print_json(&json!({
                    "event": name, "payload": p, "coalesce": coalesce
                }))?,
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
            let filter_tags = parse_pairs(&tag)?;
            for (k, re) in &filter_tags {
                check_regex(&format!("tag {k}"), re)?;
            }
            let timeout = match timeout.as_deref() {
                Some(t) => parse_go_duration(t).map_err(|e| anyhow!(e))?,
                None => Duration::ZERO,
            };
            let req = QueryRequest {
                filter_nodes: node,
                filter_tags,
                request_ack: !no_ack,
                relay_factor,
                timeout,
                name,
                payload: payload.unwrap_or_default().into_bytes(),
            };
            query(rpc, req).await
        }
        ClientCommand::Keys {
            rpc,
            install,
            use_key,
            remove,
            list,
        } => keys(rpc, install, use_key, remove, list).await,
        ClientCommand::Info { rpc } => {
            let c = rpc.connect().await?;
            let stats = c.stats().await.context("Error querying agent")?;
            match rpc.format {
                Format::Json => print_json(&stats.0)?,
                Format::Text => {
                    let mut s = String::new();
                    for (k, m) in &stats.0 {
                        s.push_str(&format!("{k}:\n"));
                        for (ik, v) in m {
                            s.push_str(&format!("\t{ik} = {v}\n"));
                        }
                    }
                    emit(s.trim())?;
                }
            }
            Ok(0)
        }
        ClientCommand::Monitor { cmd: Some(cmd), .. } => super::monitor::run(cmd).await,
        ClientCommand::Monitor {
            rpc,
            log_level,
            cmd: None,
        } => monitor(rpc, log_level).await,
        ClientCommand::Rtt { rpc, nodes } => rtt(rpc, nodes).await,
        ClientCommand::Reachability { rpc, verbose } => reachability(rpc, verbose).await,
    }
}

/// A new random gossip key: 32 bytes from the OS, base64 (`nuvol keygen`,
/// and `nuvol init` without `--encrypt`).
pub fn new_key() -> Result<String> {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .map_err(|e| anyhow!("Error reading random data: {e}"))?;
    Ok(B64.encode(key))
}

fn keygen(format: Format) -> Result<i32> {
    let key = new_key()?;
    match format {
        Format::Text => emit(&key)?,
        Format::Json => print_json(&json!({ "key": key }))?,
    }
    Ok(0)
}

/// serf's members JSON record.
#[derive(Serialize)]
struct MemberJson<'a> {
    name: &'a str,
    addr: String,
    port: u16,
    tags: &'a BTreeMap<String, String>,
    status: &'a str,
    protocol: BTreeMap<&'static str, u8>,
}

#[derive(Serialize)]
struct MembersJson<'a> {
    /// `null` when empty, as Go marshals a nil slice.
    members: Option<Vec<MemberJson<'a>>>,
}

fn members_json(ms: &[Member]) -> MembersJson<'_> {
    let list: Vec<MemberJson> = ms
        .iter()
        .map(|m| MemberJson {
            name: &m.name,
            addr: m.addr_string(),
            port: m.port,
            tags: &m.tags,
            status: &m.status,
            protocol: BTreeMap::from([
                ("min", m.delegate_min),
                ("max", m.delegate_max),
                ("version", m.delegate_cur),
            ]),
        })
        .collect();
    MembersJson {
        members: (!list.is_empty()).then_some(list),
    }
}

fn members_text(ms: &[Member], detailed: bool) -> String {
    let lines: Vec<String> = ms
        .iter()
        .map(|m| {
            let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut line = format!(
                "{}|{}|{}|{}",
                m.name,
                m.addr_string(),
                m.status,
                tags.join(",")
            );
            if detailed {
                line.push_str(&format!(
                    "|Protocol Version: {}|Available Protocol Range: [{}, {}]",
                    m.delegate_cur, m.delegate_min, m.delegate_max
                ));
            }
            line
        })
        .collect();
    columnize(&lines).trim().to_owned()
}

async fn members(
    rpc: RpcOpts,
    detailed: bool,
    status: Option<String>,
    name: Option<String>,
    tag: Vec<String>,
) -> Result<i32> {
    let tags = parse_pairs(&tag)?;
    for (k, re) in &tags {
        check_regex(&format!("tag {k}"), re)?;
    }
    if let Some(s) = &status {
        check_regex("status", s)?;
    }
    if let Some(n) = &name {
        check_regex("name", n)?;
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
    match rpc.format {
        Format::Json => print_json(&members_json(&ms))?,
        Format::Text => emit(&members_text(&ms, detailed))?,
    }
    Ok(0)
}

#[derive(Serialize)]
struct QueryJson {
    #[serde(rename = "Acks")]
    acks: Option<Vec<String>>,
    #[serde(rename = "Responses")]
    responses: BTreeMap<String, String>,
}

async fn query(rpc: RpcOpts, req: QueryRequest) -> Result<i32> {
    let c = rpc.connect().await?;
    let mut q = c.query(&req).await.context("Error sending query")?;
    let text = rpc.format == Format::Text;
    if text {
        emit(&format!("Query '{}' dispatched", req.name))?;
    }
    let mut acks: Vec<String> = Vec::new();
    let mut responses = BTreeMap::new();
    let mut num_resp = 0usize;
    loop {
        let ev = tokio::select! {
            ev = q.next() => ev.context("Error reading query answers")?,
            _ = tokio::signal::ctrl_c() => return Ok(1),
        };
        match ev {
            None => break,
            Some(QueryEvent::Ack(from)) => {
                if text {
                    emit(&format!("Ack from '{from}'"))?;
                }
                acks.push(from);
            }
            Some(QueryEvent::Response(r)) => {
                num_resp += 1;
                let mut p = r.payload.as_slice();
                if text {
                    if let Some(stripped) = p.strip_suffix(b"\n") {
                        p = stripped;
                    }
                    emit(&format!(
                        "Response from '{}': {}",
                        r.from,
                        String::from_utf8_lossy(p)
                    ))?;
                }
                responses.insert(r.from, String::from_utf8_lossy(&r.payload).into_owned());
            }
        }
    }
    if text {
        if req.request_ack {
            emit(&format!("Total Acks: {}", acks.len()))?;
        }
        emit(&format!("Total Responses: {num_resp}"))?;
    } else {
        print_json(&QueryJson {
            acks: (!acks.is_empty()).then_some(acks),
            responses,
        })?;
    }
    Ok(0)
}

#[derive(Serialize)]
struct KeysJson<'a> {
    keys: &'a BTreeMap<String, i64>,
    messages: &'a BTreeMap<String, String>,
    num_nodes: i64,
    num_resp: i64,
    num_err: i64,
}

fn keys_json(r: &KeyResponse) -> KeysJson<'_> {
    KeysJson {
        keys: &r.keys,
        messages: &r.messages,
        num_nodes: r.num_nodes,
        num_resp: r.num_resp,
        num_err: r.num_err,
    }
}

async fn keys(
    rpc: RpcOpts,
    install: Option<String>,
    use_key: Option<String>,
    remove: Option<String>,
    list: bool,
) -> Result<i32> {
    enum Op {
        Install(String),
        Use(String),
        Remove(String),
        List,
    }
    let op = match (install, use_key, remove, list) {
        (Some(k), None, None, false) => Op::Install(k),
        (None, Some(k), None, false) => Op::Use(k),
        (None, None, Some(k), false) => Op::Remove(k),
        (None, None, None, true) => Op::List,
        _ => bail!("Only one of --install, --use, --remove, or --list allowed"),
    };
    if let Op::Install(k) | Op::Use(k) | Op::Remove(k) = &op {
        check_key(k)?;
    }
    let (doing, done, failing) = match &op {
        Op::Install(_) => (
            "Installing key on all members...",
            "Successfully installed key!",
            "Error installing key",
        ),
        Op::Use(_) => (
            "Changing primary key on all members...",
            "Successfully changed primary key!",
            "Error changing primary key",
        ),
        Op::Remove(_) => (
            "Removing key on all members...",
            "Successfully removed key!",
            "Error removing key",
        ),
        Op::List => (
            "Asking all members for installed keys...",
            "Keys gathered, listing cluster keys...",
            "Failed to gather member keys",
        ),
    };
    let c = rpc.connect().await?;
    let text = rpc.format == Format::Text;
    if text {
        emit(&format!("==> {doing}"))?;
    }
    let r = match &op {
        Op::Install(k) => c.install_key(k).await,
        Op::Use(k) => c.use_key(k).await,
        Op::Remove(k) => c.remove_key(k).await,
        Op::List => c.list_keys().await,
    };
    let resp = match r {
        Ok(resp) => resp,
        Err(ClientError::Keyring { error, response }) => {
            if text {
                let lines: Vec<String> = response
                    .messages
                    .iter()
                    .map(|(node, msg)| format!("failed: | {node} | {msg}"))
                    .collect();
                if !lines.is_empty() {
                    eprintln!("{}", columnize(&lines));
                }
            } else {
                print_json(&keys_json(&response))?;
            }
            bail!("{failing}: {error}");
        }
        Err(e) => return Err(anyhow!(e).context(failing)),
    };
    if !text {
        print_json(&keys_json(&resp))?;
        return Ok(0);
    }
    emit(&format!("==> {done}"))?;
    if let Op::List = op {
        emit("")?;
        let lines: Vec<String> = resp
            .keys
            .iter()
            .map(|(k, n)| format!("{k} | [{n}/{}]", resp.num_nodes))
            .collect();
        emit(&columnize(&lines))?;
    }
    Ok(0)
}

async fn monitor(rpc: RpcOpts, log_level: String) -> Result<i32> {
    let c = rpc.connect().await?;
    let mut events = c.stream("*").await.context("Error starting stream")?;
    let mut logs = c
        .monitor(&log_level)
        .await
        .context("Error starting monitor")?;
    let json = rpc.format == Format::Json;
    loop {
        tokio::select! {
            l = logs.next() => match l? {
                Some(line) => {
                    let line = line.trim_end_matches('\n');
                    if json {
                        emit(&serde_json::to_string(&json!({ "log": line }))?)?;
                    } else {
                        emit(line)?;
                    }
                }
                None => break,
            },
            e = events.next_raw() => match e? {
                Some(rec) => {
                    if json {
                        let j = json!({ "event": msgpack_to_json(&rec) });
                        emit(&serde_json::to_string(&j)?)?;
                    } else {
                        emit("Event Info:")?;
                        for (k, v) in record_fields(&rec) {
                            emit(&format!("\t{k}: {v}"))?;
                        }
                    }
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    let _ = logs.stop().await;
                    let _ = events.stop().await;
                }).await;
                return Ok(0);
            }
        }
    }
    if !json {
        emit("")?;
        emit("Remote side ended the monitor! This usually means that the\nremote side has exited or crashed.")?;
    }
    Ok(1)
}

/// Go's `Duration.Seconds()`.
fn go_seconds(d: Duration) -> f64 {
    let ns = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    let sec = ns / 1_000_000_000;
    let nsec = ns % 1_000_000_000;
    sec as f64 + nsec as f64 / 1e9
}

async fn rtt(rpc: RpcOpts, mut nodes: Vec<String>) -> Result<i32> {
    if nodes.iter().any(String::is_empty) {
        bail!("node names must not be empty");
    }
    let c = rpc.connect().await?;
    if nodes.len() == 1 {
        let stats = c.stats().await.context("Error querying agent")?;
        let me = stats
            .get("agent", "name")
            .ok_or_else(|| anyhow!("Error querying agent: it did not report its name"))?;
        nodes.push(me.to_owned());
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    let ca = c
        .get_coordinate(a)
        .await
        .context("Error getting coordinates")?
        .ok_or_else(|| anyhow!("Could not find a coordinate for node {a:?}"))?;
    let cb = c
        .get_coordinate(b)
        .await
        .context("Error getting coordinates")?
        .ok_or_else(|| anyhow!("Could not find a coordinate for node {b:?}"))?;
    let d = ca
        .distance_to(&cb)
        .ok_or_else(|| anyhow!("coordinates of {a:?} and {b:?} have different dimensions"))?;
    let ms = go_seconds(d) * 1000.0;
    match rpc.format {
        Format::Text => emit(&format!("Estimated {a} <-> {b} rtt: {ms:.3} ms"))?,
        Format::Json => {
            #[derive(Serialize)]
            struct RttJson<'a> {
                source: &'a str,
                destination: &'a str,
                rtt_ms: f64,
            }
            print_json(&RttJson {
                source: a,
                destination: b,
                rtt_ms: ms,
            })?
        }
    }
    Ok(0)
}

const TOO_MANY_ACKS: &str =
    "This could mean Serf is detecting false-failures due to a misconfiguration or network issue.";
const TOO_FEW_ACKS: &str = "This could mean Serf gossip packets are being lost due to a misconfiguration or network issue.";
const DUPLICATE_RESPONSES: &str =
    "Duplicate responses means there is a misconfiguration. Verify that node names are unique.";
const TROUBLESHOOTING: &str = "
Troubleshooting tips:
* Ensure that the bind addr:port is accessible by all other nodes
* If an advertise address is set, ensure it routes to the bind address
* Check that no nodes are behind a NAT
* If nodes are behind firewalls or iptables, check that Serf traffic is permitted (UDP and TCP)
* Verify networking equipment is functional";

#[derive(Serialize)]
struct ReachJson {
    total_members: usize,
    live_members: usize,
    acks: Vec<String>,
    missing: Vec<String>,
    unexpected: Vec<String>,
    duplicates: Vec<String>,
    query_time_sec: f64,
    last_response_sec: f64,
    success: bool,
}

async fn reachability(rpc: RpcOpts, verbose: bool) -> Result<i32> {
    let c = rpc.connect().await?;
    let members = c.members().await.context("Error getting members")?;
    let live: BTreeSet<String> = members
        .iter()
        .filter(|m| m.status == "alive")
        .map(|m| m.name.clone())
        .collect();
    let text = rpc.format == Format::Text;
    if text {
        emit(&format!(
            "Total members: {}, live members: {}",
            members.len(),
            live.len()
        ))?;
    }
    let req = QueryRequest {
        name: "_serf_ping".into(),
        request_ack: true,
        ..Default::default()
    };
    let mut q = c.query(&req).await.context("Error sending query")?;
    if text {
        emit("Starting reachability test...")?;
    }
    let start = Instant::now();
    let mut last = start;
    let mut acks: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut duplicates = Vec::new();
    loop {
        let ev = tokio::select! {
            ev = q.next() => ev.context("Error reading acks")?,
            _ = tokio::signal::ctrl_c() => bail!("Test interrupted"),
        };
        match ev {
            None => break,
            Some(QueryEvent::Ack(a)) => {
                if text && verbose {
                    emit(&format!("\tAck from '{a}'"))?;
                }
                if !seen.insert(a.clone()) {
                    if text {
                        emit(&format!("Duplicate response from '{a}'"))?;
                    }
                    duplicates.push(a.clone());
                }
                acks.push(a);
                last = Instant::now();
            }
            Some(QueryEvent::Response(_)) => {}
        }
    }
    let total = start.elapsed().as_secs_f64();
    let to_last = last.duration_since(start).as_secs_f64();
    let missing: Vec<String> = live.difference(&seen).cloned().collect();
    let unexpected: Vec<String> = seen.difference(&live).cloned().collect();
    let n = live.len();
    let success = acks.len() == n && duplicates.is_empty();
    if !text {
        print_json(&ReachJson {
            total_members: members.len(),
            live_members: n,
            acks,
            missing,
            unexpected,
            duplicates,
            query_time_sec: total,
            last_response_sec: to_last,
            success,
        })?;
        return Ok(if success { 0 } else { 1 });
    }
    if verbose {
        emit(&format!(
            "Query time: {total:.2} sec, time to last response: {to_last:.2} sec"
        ))?;
    }
    let mut code = 0;
    if !duplicates.is_empty() {
        emit(DUPLICATE_RESPONSES)?;
        code = 1;
    }
    match acks.len().cmp(&n) {
        std::cmp::Ordering::Equal => emit("Successfully contacted all live nodes")?,
        std::cmp::Ordering::Greater => {
            emit("Received more acks than live nodes! Acks from non-live nodes:")?;
            for m in &unexpected {
                emit(&format!("\t{m}"))?;
            }
            emit(TOO_MANY_ACKS)?;
            emit(TROUBLESHOOTING)?;
            return Ok(1);
        }
        std::cmp::Ordering::Less => {
            emit("Received less acks than live nodes! Missing acks from:")?;
            for m in &missing {
                emit(&format!("\t{m}"))?;
            }
            emit(TOO_FEW_ACKS)?;
            emit(TROUBLESHOOTING)?;
            return Ok(1);
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_like_serf() {
        assert_eq!(
            parse_pairs(&["a=b".into(), "c==d".into(), "e=".into()]).unwrap(),
            BTreeMap::from([
                ("a".to_string(), "b".to_string()),
                ("c".to_string(), "=d".to_string()),
                ("e".to_string(), String::new()),
            ])
        );
        for bad in ["a", "=b", ""] {
            assert!(parse_pairs(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn regexes_and_addresses() {
        assert!(check_regex("name", "web-[0-9]+").is_ok());
        let e = check_regex("name", "web-[").unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        for ok in [
            "10.0.0.1",
            "10.0.0.1:7946",
            "[::1]:7946",
            "::1",
            "host",
            "a.b-c.example:1",
        ] {
            assert!(check_join_addr(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "10.0.0.1:",
            "10.0.0.1:x",
            "10.0.0.1:70000",
            "a b",
            ":7946",
            "ho$t:1",
            "h:0",
        ] {
            assert!(check_join_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_checked() {
        assert!(check_key("T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s=").is_ok());
        assert!(check_key("AAAAAAAAAAAAAAAAAAAAAA==").is_ok());
        assert!(check_key("not base64").is_err());
        assert!(check_key("AAAA").is_err());
    }

    #[test]
    fn members_output() {
        let m = Member {
            name: "n1".into(),
            addr: Some("10.0.0.1".parse().unwrap()),
            port: 7946,
            tags: BTreeMap::from([("role".to_string(), "web".to_string())]),
            status: "alive".into(),
            delegate_min: 2,
            delegate_max: 5,
            delegate_cur: 4,
            ..Default::default()
        };
        assert_eq!(
            members_text(std::slice::from_ref(&m), true),
            "n1  10.0.0.1:7946  alive  role=web  Protocol Version: 4  Available Protocol Range: [2, 5]"
        );
        assert_eq!(
            go_json(&members_json(&[m])).unwrap(),
            r#"{
  "members": [
    {
      "name": "n1",
      "addr": "10.0.0.1:7946",
      "port": 7946,
      "tags": {
        "role": "web"
      },
      "status": "alive",
      "protocol": {
        "max": 5,
        "min": 2,
        "version": 4
      }
    }
  ]
}"#
        );
        assert_eq!(
            go_json(&members_json(&[])).unwrap(),
            "{\n  \"members\": null\n}"
        );
    }

    #[test]
    fn seconds_like_go() {
        assert_eq!(go_seconds(Duration::from_nanos(20_123)), 2.0123e-5);
        assert_eq!(
            format!("{:.3}", go_seconds(Duration::from_micros(20)) * 1000.0),
            "0.020"
        );
    }
}
