//! `nuvol app ...`: apps on a node, through the agent's REST API
//! (`/v1/apps`), found like the catalog commands' (`--http-addr`, or asked
//! from the agent over RPC).

use super::output::{columnize, emit};
use super::{AppCommand, CatalogOpts, Format};
use anyhow::{anyhow, bail, Context, Result};
use nuvol_api::Method;
use nuvol_api::{ApiClient, ClientError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long an install or a start may take (images are local, but an
/// app's containers start one after the other).
const LONG_CALL: Duration = Duration::from_secs(600);
/// The largest Compose or env file read.
const MAX_FILE: u64 = 1024 * 1024;
/// Names a Compose file goes by in a directory, in Compose's order.
const COMPOSE_NAMES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

async fn client(at: &CatalogOpts, write: bool) -> Result<ApiClient> {
    super::catalog::nuvol_api(at, write, "apps").await
}

fn api_err(e: ClientError) -> anyhow::Error {
    anyhow!("{e}")
}

fn read_bounded(p: &Path) -> Result<String> {
    let meta = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
    if meta.len() > MAX_FILE {
        bail!("{} is larger than {MAX_FILE} bytes", p.display());
    }
    std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
}

/// The Compose file behind SOURCE (a file, or a directory holding one).
fn compose_file(source: &Path) -> Result<PathBuf> {
    if source.is_dir() {
        COMPOSE_NAMES
            .iter()
            .map(|n| source.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow!(
                    "{} holds no Compose file ({})",
                    source.display(),
                    COMPOSE_NAMES.join(", ")
                )
            })
    } else {
        Ok(source.to_owned())
    }
}

/// The `env_file` names a Compose text refers to.
fn env_file_names(compose: &str) -> Vec<String> {
    let Ok(v) = serde_norway::from_str::<serde_norway::Value>(compose) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(svcs) = v.get("services").and_then(|s| s.as_mapping()) {
        for s in svcs.values() {
            match s.get("env_file") {
                Some(serde_norway::Value::String(f)) => out.push(f.clone()),
                Some(serde_norway::Value::Sequence(l)) => {
                    out.extend(l.iter().filter_map(|f| f.as_str().map(str::to_owned)));
                }
                _ => {}
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A definition to send: the Compose text (a nuvol file as it is, or one
/// imported from Cloudy, CasaOS or Portainer) and the env files it names.
fn load_definition(source: &Path) -> Result<(String, BTreeMap<String, String>, Vec<String>)> {
    let file = compose_file(source)?;
    let text = read_bounded(&file)?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut report = Vec::new();
    let compose =
        if needs_import(&text) {
            let mut list = nuvol_apps::import::import(text.as_bytes(), dir_hint(&file).as_deref())
                .map_err(|e| anyhow!("{}: {e}", file.display()))?;
            if list.len() > 1 {
                bail!(
                "{} holds {} templates ({}); convert them with `nuvol app import` and install one",
                file.display(),
                list.len(),
                list.iter().map(|i| i.id.as_str()).collect::<Vec<_>>().join(", ")
            );
            }
            let i = list
                .pop()
                .ok_or_else(|| anyhow!("{}: no template", file.display()))?;
            report = i.report;
            i.definition.compose
        } else {
            text
        };
    let mut env_files = BTreeMap::new();
    for f in env_file_names(&compose) {
        if Path::new(&f).is_absolute() || f.split('/').any(|c| c == "..") {
            bail!("env_file {f:?}: give a path relative to the Compose file");
        }
        env_files.insert(f.clone(), read_bounded(&dir.join(&f))?);
    }
    Ok((compose, env_files, report))
}

/// Whether a file is another ecosystem's template rather than a Compose
/// file nuvol runs as it is: JSON (Cloudy, Portainer), or Compose with an
/// `x-casaos` block.
fn needs_import(text: &str) -> bool {
    let t = text.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        return true;
    }
    serde_norway::from_str::<serde_norway::Value>(text)
        .ok()
        .is_some_and(|v| v.get("x-casaos").is_some() && v.get("x-nuvol").is_none())
}

/// A CasaOS app is named by its directory when its file does not say.
fn dir_hint(file: &Path) -> Option<String> {
    file.parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
}

fn parse_sets(sets: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| anyhow!("--set {s:?}: expected KEY=VALUE"))?;
        if k.is_empty() {
            bail!("--set {s:?}: empty KEY");
        }
        if out.insert(k.to_owned(), v.to_owned()).is_some() {
            bail!("--set {k} given twice");
        }
    }
    Ok(out)
}

fn print_summary(format: Format, verb: &str, v: &Value) -> Result<()> {
    match format {
        Format::Json => emit(&serde_json::to_string_pretty(v)?)?,
        Format::Text => emit(&format!(
            "{verb} {}: {}",
            v["name"].as_str().unwrap_or("?"),
            v["state"].as_str().unwrap_or("?")
        ))?,
    }
    Ok(())
}

fn check_app_name(name: &str) -> Result<()> {
    nuvol_apps::meta::validate_name("app name", name).map_err(|e| anyhow!("{e}"))
}

pub async fn run(cmd: AppCommand) -> Result<i32> {
    match cmd {
        AppCommand::Store { at, category, all } => {
            let c = client(&at, false).await?;
            let mut q: Vec<(&str, &str)> = Vec::new();
            if let Some(cat) = &category {
                q.push(("category", cat));
            }
            if all {
                q.push(("all", "true"));
            }
            let v: Value = c
                .call_json(Method::GET, &["v1", "store"], &q, None, Some(LONG_CALL))
                .await
                .map_err(api_err)?;
            for p in v["problems"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", p.as_str().unwrap_or("?"));
            }
            match at.rpc.format {
                Format::Json => emit(&serde_json::to_string_pretty(&v["templates"])?)?,
                Format::Text => {
                    let mut lines = vec!["ID|CATEGORY|VERSION|RUNS HERE|TITLE".to_owned()];
                    for t in v["templates"].as_array().into_iter().flatten() {
                        lines.push(format!(
                            "{}|{}|{}|{}|{}",
                            t["id"].as_str().unwrap_or(""),
                            t["category"].as_str().unwrap_or(""),
                            t["version"].as_str().unwrap_or(""),
                            if t["runs_here"] == true { "yes" } else { "no" },
                            t["title"].as_str().unwrap_or("").replace('|', "/"),
                        ));
                    }
                    emit(columnize(&lines).trim_end())?;
                }
            }
            Ok(0)
        }
        AppCommand::Import {
            path,
            output,
            format,
        } => import_cmd(&path, &output, format),
        AppCommand::Install {
            at,
            source,
            name,
            set,
            ha,
        } => {
            if let Some(n) = &name {
                check_app_name(n)?;
            }
            let params = parse_sets(&set)?;
            let path = PathBuf::from(&source);
            if !path.exists() {
                if source.contains('/') || nuvol_apps::meta::validate_name("id", &source).is_err() {
                    bail!("{source}: no such file or directory, and not a store template id");
                }
                let c = client(&at, true).await?;
                let body = json!({"name": name, "params": params, "ha": ha});
                let v: Value = c
                    .call_json(
                        Method::POST,
                        &["v1", "store", &source, "install"],
                        &[],
                        Some(&body),
                        Some(LONG_CALL),
                    )
                    .await
                    .map_err(api_err)?;
                print_summary(at.rpc.format, "installed", &v)?;
                return Ok(0);
            }
            let (compose, env_files, report) = load_definition(&path)?;
            for r in &report {
                eprintln!("import: {r}");
            }
            let c = client(&at, true).await?;
            let body = json!({
                "name": name,
                "compose": compose,
                "env_files": env_files,
                "params": params,
                "source": std::fs::canonicalize(&path).unwrap_or(path).display().to_string(),
                "ha": ha,
            });
            let v: Value = c
                .call_json(
                    Method::POST,
                    &["v1", "apps"],
                    &[],
                    Some(&body),
                    Some(LONG_CALL),
                )
                .await
                .map_err(api_err)?;
            print_summary(at.rpc.format, "installed", &v)?;
            Ok(0)
        }
        AppCommand::List { at, all } => {
            let c = client(&at, false).await?;
            let q: &[(&str, &str)] = if all { &[("all", "true")] } else { &[] };
            let v: Value = c
                .call_json(Method::GET, &["v1", "apps"], q, None, None)
                .await
                .map_err(api_err)?;
            let (apps, errors) = if all {
                (
                    v["apps"].clone(),
                    v["errors"].as_array().cloned().unwrap_or_default(),
                )
            } else {
                (v, Vec::new())
            };
            for e in &errors {
                eprintln!(
                    "warning: node {} not asked: {}",
                    e["node"].as_str().unwrap_or("?"),
                    e["error"].as_str().unwrap_or("?")
                );
            }
            match at.rpc.format {
                Format::Json => emit(&serde_json::to_string_pretty(&apps)?)?,
                Format::Text => {
                    let mut lines = vec!["NAME|NODE|STATE|VERSION|SOURCE".to_owned()];
                    for a in apps.as_array().into_iter().flatten() {
                        lines.push(format!(
                            "{}|{}|{}|{}|{}",
                            a["name"].as_str().unwrap_or(""),
                            node_of(a),
                            a["state"].as_str().unwrap_or(""),
                            a["version"].as_str().unwrap_or(""),
                            a["source"].as_str().unwrap_or(""),
                        ));
                    }
                    emit(columnize(&lines).trim_end())?;
                }
            }
            Ok(0)
        }
        AppCommand::Status { at, name } => {
            check_app_name(&name)?;
            let c = client(&at, false).await?;
            let v: Value = c
                .call_json(Method::GET, &["v1", "apps", &name], &[], None, None)
                .await
                .map_err(api_err)?;
            match at.rpc.format {
                Format::Json => emit(&serde_json::to_string_pretty(&v)?)?,
                Format::Text => {
                    let mut out = format!(
                        "{} on {}: {} (wants {}), version {}, from {}\n",
                        v["name"].as_str().unwrap_or("?"),
                        node_of(&v),
                        v["state"].as_str().unwrap_or("?"),
                        v["want"].as_str().unwrap_or("?"),
                        v["version"].as_str().unwrap_or(""),
                        v["source"].as_str().unwrap_or(""),
                    );
                    if let Some(e) = v["error"].as_str() {
                        out.push_str(&format!("error: {e}\n"));
                    }
                    let mut lines = vec!["SERVICE|STATE|HEALTH|RESTARTS|IMAGE|PORTS".to_owned()];
                    for s in v["services"].as_array().into_iter().flatten() {
                        lines.push(format!(
                            "{}|{}|{}|{}|{}|{}",
                            s["service"].as_str().unwrap_or(""),
                            s["state"].as_str().unwrap_or("missing"),
                            s["health"].as_str().unwrap_or("-"),
                            s["restarts"].as_u64().unwrap_or(0),
                            s["image"].as_str().unwrap_or(""),
                            s["ports"]
                                .as_array()
                                .map(|p| p
                                    .iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(","))
                                .unwrap_or_default(),
                        ));
                    }
                    out.push_str(&columnize(&lines));
                    for s in v["services"].as_array().into_iter().flatten() {
                        for n in s["notes"].as_array().into_iter().flatten() {
                            out.push_str(&format!(
                                "note: {}: {}\n",
                                s["service"].as_str().unwrap_or("?"),
                                n.as_str().unwrap_or("")
                            ));
                        }
                    }
                    for p in v["published"].as_array().into_iter().flatten() {
                        out.push_str(&format!(
                            "published {} ({})\n",
                            p[0].as_str().unwrap_or("?"),
                            p[1].as_str().unwrap_or("?")
                        ));
                    }
                    emit(out.trim_end())?;
                }
            }
            Ok(0)
        }
        AppCommand::Start { at, name } => verb(&at, &name, "start", "started").await,
        AppCommand::Stop { at, name } => verb(&at, &name, "stop", "stopped").await,
        AppCommand::Restart { at, name } => verb(&at, &name, "restart", "restarted").await,
        AppCommand::Remove { at, name, purge } => {
            check_app_name(&name)?;
            let c = client(&at, true).await?;
            let q: &[(&str, &str)] = if purge { &[("purge", "true")] } else { &[] };
            let _: Value = c
                .call_json(
                    Method::DELETE,
                    &["v1", "apps", &name],
                    q,
                    None,
                    Some(LONG_CALL),
                )
                .await
                .map_err(api_err)?;
            match at.rpc.format {
                Format::Json => emit(&json!({"removed": name, "purged": purge}).to_string())?,
                Format::Text => emit(&format!(
                    "removed {name}{}",
                    if purge {
                        " and its data"
                    } else {
                        " (its volumes are kept; --purge deletes them)"
                    }
                ))?,
            }
            Ok(0)
        }
        AppCommand::Upgrade {
            at,
            name,
            source,
            set,
            timeout,
        } => {
            check_app_name(&name)?;
            let params = parse_sets(&set)?;
            let t = nuvol_agent::duration::parse(&timeout)
                .map_err(|e| anyhow!("invalid --timeout: {e}"))?;
            let secs = t.as_secs();
            if !(1..=3600).contains(&secs) {
                bail!("--timeout {timeout}: 1s to 1h");
            }
            let mut body = json!({ "params": params, "timeout": secs });
            if let Some(source) = &source {
                let path = PathBuf::from(source);
                if !path.exists() {
                    bail!("{source}: no such file or directory");
                }
                let (compose, env_files, _) = load_definition(&path)?;
                body["compose"] = json!(compose);
                body["env_files"] = json!(env_files);
            }
            let c = client(&at, true).await?;
            let started = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut v: Value = c
                .call_json(
                    Method::POST,
                    &["v1", "apps", &name, "upgrade"],
                    &[],
                    Some(&body),
                    // The wait for health, on top of the usual.
                    Some(LONG_CALL + t),
                )
                .await
                .map_err(api_err)?;
            if v["pending"] == true {
                v = wait_upgrade(&c, &name, started, LONG_CALL + t * 2).await?;
            }
            match at.rpc.format {
                Format::Json => emit(&serde_json::to_string_pretty(&v)?)?,
                Format::Text => emit(&format!(
                    "upgraded {}: {}, version {}",
                    v["name"].as_str().unwrap_or("?"),
                    v["state"].as_str().unwrap_or("?"),
                    v["version"].as_str().unwrap_or("")
                ))?,
            }
            Ok(0)
        }
        AppCommand::Backup { at, name, output } => {
            check_app_name(&name)?;
            let file = output.unwrap_or_else(|| {
                PathBuf::from(format!(
                    "{name}-{}.nuvol-backup.tar.gz",
                    utc_stamp(std::time::SystemTime::now())
                ))
            });
            // The agent writes it: an absolute path, resolved here.
            let file = absolute(&file)?;
            let c = client(&at, true).await?;
            let v: Value = c
                .call_json(
                    Method::POST,
                    &["v1", "apps", &name, "backup"],
                    &[],
                    Some(&json!({ "path": file })),
                    Some(LONG_CALL),
                )
                .await
                .map_err(api_err)?;
            if v["pending"] == true {
                emit(&format!(
                    "backup of {name} still running on the agent; it writes {} when done",
                    file.display()
                ))?;
                return Ok(0);
            }
            match at.rpc.format {
                Format::Json => emit(&serde_json::to_string_pretty(&v)?)?,
                Format::Text => {
                    let vols: Vec<&str> = v["volumes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    emit(&format!(
                        "backed up {} to {} ({} bytes; volumes: {})",
                        v["app"].as_str().unwrap_or("?"),
                        v["path"].as_str().unwrap_or("?"),
                        v["bytes"].as_u64().unwrap_or(0),
                        if vols.is_empty() {
                            "none".to_owned()
                        } else {
                            vols.join(", ")
                        }
                    ))?
                }
            }
            Ok(0)
        }
        AppCommand::Restore {
            at,
            file,
            name,
            set,
        } => {
            if let Some(n) = &name {
                check_app_name(n)?;
            }
            let params = parse_sets(&set)?;
            let file = absolute(&file)?;
            if !file.is_file() {
                bail!("{}: no such file", file.display());
            }
            let c = client(&at, true).await?;
            let v: Value = c
                .call_json(
                    Method::POST,
                    &["v1", "apps", "restore"],
                    &[],
                    Some(&json!({ "path": file, "name": name, "params": params })),
                    Some(LONG_CALL),
                )
                .await
                .map_err(api_err)?;
            if v["pending"] == true {
                emit("the restore is still running on the agent; `nuvol app list` shows the app when done")?;
                return Ok(0);
            }
            print_summary(at.rpc.format, "restored", &v)?;
            Ok(0)
        }
        AppCommand::Logs {
            at,
            name,
            follow,
            tail,
            service,
        } => {
            check_app_name(&name)?;
            let c = client(&at, false).await?;
            let tail = tail.to_string();
            let mut q: Vec<(&str, &str)> = vec![("tail", &tail)];
            if follow {
                q.push(("follow", "true"));
            }
            if let Some(s) = &service {
                q.push(("service", s));
            }
            let mut resp = c
                .call_stream(Method::GET, &["v1", "apps", &name, "logs"], &q)
                .await
                .map_err(api_err)?;
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = resp.chunk().await.context("reading the logs")? {
                out.write_all(&chunk)?;
                out.flush()?;
            }
            Ok(0)
        }
    }
}

/// An upgrade that outlived the API's request timeout: its result, from
/// the app's status once it ended (its `last_upgrade`).
async fn wait_upgrade(c: &ApiClient, name: &str, started: u64, limit: Duration) -> Result<Value> {
    let until = std::time::Instant::now() + limit;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let v: Value = c
            .call_json(Method::GET, &["v1", "apps", name], &[], None, None)
            .await
            .map_err(api_err)?;
        let last = &v["last_upgrade"];
        let ended = v["state"] != "upgrading"
            && last["started_at"]
                .as_u64()
                .is_some_and(|t| t + 1 >= started);
        if ended {
            if last["ok"] == true {
                return Ok(v);
            }
            bail!("{}", last["error"].as_str().unwrap_or("the upgrade failed"));
        }
        if std::time::Instant::now() > until {
            bail!("the upgrade of {name} has not ended yet; see `nuvol app status {name}`");
        }
    }
}

/// `path` made absolute against the current directory (the agent, which
/// reads or writes it, runs elsewhere).
fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    Ok(std::env::current_dir()
        .context("the current directory")?
        .join(path))
}

/// `YYYYmmdd-HHMMSS` in UTC.
fn utc_stamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

async fn verb(at: &CatalogOpts, name: &str, path: &str, done: &str) -> Result<i32> {
    check_app_name(name)?;
    let c = client(at, true).await?;
    let v: Value = c
        .call_json(
            Method::POST,
            &["v1", "apps", name, path],
            &[],
            None,
            Some(LONG_CALL),
        )
        .await
        .map_err(api_err)?;
    print_summary(at.rpc.format, done, &v)?;
    Ok(0)
}

/// `nuvol app import FILE|DIR --output DIR`.
fn import_cmd(path: &str, output: &str, format: Format) -> Result<i32> {
    let p = Path::new(path);
    let batch = if p.is_dir() {
        nuvol_apps::import::import_dir(p)
    } else {
        let text = read_bounded(p)?;
        nuvol_apps::import::import_all(text.as_bytes(), dir_hint(p).as_deref())
    }
    .map_err(|e| anyhow!("{path}: {e}"))?;
    let out = Path::new(output);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {output}"))?;
    let mut written = Vec::new();
    for a in &batch.apps {
        let f = out.join(format!("{}.yml", a.id));
        if f.exists() {
            bail!(
                "{} exists; not overwritten (remove it or choose another --output)",
                f.display()
            );
        }
    }
    for a in &batch.apps {
        let f = out.join(format!("{}.yml", a.id));
        std::fs::write(&f, &a.definition.compose)
            .with_context(|| format!("cannot write {}", f.display()))?;
        written.push(json!({
            "id": a.id,
            "file": f.display().to_string(),
            "format": a.format,
            "report": a.report,
        }));
    }
    match format {
        Format::Json => emit(&serde_json::to_string_pretty(&json!({
            "imported": written,
            "skipped": batch.skipped,
        }))?)?,
        Format::Text => {
            let mut s = String::new();
            for w in &written {
                s.push_str(&format!(
                    "imported {} ({}) -> {}\n",
                    w["id"].as_str().unwrap_or("?"),
                    w["format"].as_str().unwrap_or("?"),
                    w["file"].as_str().unwrap_or("?")
                ));
                for r in w["report"].as_array().into_iter().flatten() {
                    s.push_str(&format!("  note: {}\n", r.as_str().unwrap_or("?")));
                }
            }
            for k in &batch.skipped {
                s.push_str(&format!("skipped: {k}\n"));
            }
            emit(s.trim_end())?;
        }
    }
    Ok(if written.is_empty() { 1 } else { 0 })
}

/// An app's node for the text output: an HA app's are the nodes running
/// its tasks (`ha:n1,n2`, `ha:-` while none does).
fn node_of(a: &Value) -> String {
    let node = a["node"].as_str().unwrap_or("?");
    if a["ha"].as_bool() == Some(true) {
        format!("ha:{}", if node.is_empty() { "-" } else { node })
    } else {
        node.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        let t = |s: u64| utc_stamp(std::time::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(t(0), "19700101-000000");
        assert_eq!(t(951_782_400), "20000229-000000");
        assert_eq!(t(1_767_225_599), "20251231-235959");
    }
}
