//! CasaOS apps: a Compose file with a top-level `x-casaos` block (title,
//! description, icon, category, architectures, the main service and its
//! web UI's `port_map`/`scheme`/`index`) and per-service `x-casaos` blocks
//! (descriptions of envs, ports and volumes). A plain Compose file (no
//! `x-casaos`) goes the same way.
//!
//! The Compose tree is kept and edited (so whatever nuvol carries out
//! stays as written); keys nuvol refuses are removed and reported, CasaOS's
//! variables become parameters, and `/DATA/AppData/$AppID/...` (the app's
//! own data on CasaOS) becomes `./...` (the app's own directory on nuvol).

use super::{
    cut, done, looks_secret, map_arch, param_name, part_name, sanitize_id, Batch, Format,
    NuvolBlock, OutPublish, PortRef,
};
use crate::error::AppError;
use crate::meta::{Localized, Param, ParamKind};
use serde_norway::Value;
use std::collections::BTreeMap;

use crate::compose::SERVICE_KEYS;

/// Why a dropped key matters; the dangerous ones say so.
fn why_dropped(key: &str) -> &'static str {
    match key {
        "container_name" => "nuvol names containers nuvol-APP-SERVICE; other services reach it by its service name",
        "privileged" => "DANGER: apps run without extra privileges; the app may not work without them, and granting them would hand it the whole host",
        "devices" => "device access is not granted to apps; hardware the app uses (a GPU, a USB stick) will be missing",
        "cpu_shares" | "cpu_quota" | "cpuset" | "mem_reservation" | "memswap_limit" => {
            "only mem_limit, cpus and deploy.resources.limits are carried out"
        }
        "security_opt" | "sysctls" | "ulimits" | "pid" | "ipc" | "cgroup_parent" | "userns_mode" => {
            "DANGER: host-level settings are not granted to apps; the app may not work without them"
        }
        "links" => "services reach each other by name on the app's network",
        "build" => "nuvol runs images, it does not build them",
        "stdin_open" => "no stdin is attached to apps",
        _ => "not supported by nuvol",
    }
}

pub(super) fn import(mut root: Value, name_hint: Option<&str>) -> Result<Batch, AppError> {
    let Some(top) = root.as_mapping_mut() else {
        return Err(AppError::Parse {
            file: "compose file".into(),
            why: "is not a mapping".into(),
        });
    };
    let mut report = Vec::new();
    let x = top.remove("x-casaos").unwrap_or(Value::Null);
    let str_of = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::String(s) => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
        .filter(|s| !s.is_empty())
    };
    let services_names: Vec<String> = match top.get("services") {
        Some(Value::Mapping(m)) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        Some(v) => {
            return Err(AppError::invalid(
                "services",
                format!("is {}, not a mapping of services", kind(v)),
            ))
        }
        None => {
            return Err(AppError::invalid(
                "services",
                "the file defines no services",
            ))
        }
    };
    if services_names.is_empty() {
        return Err(AppError::invalid(
            "services",
            "the file defines no services",
        ));
    }
    let id = sanitize_id(
        &str_of(x.get("store_app_id"))
            .or_else(|| str_of(top.get("name")))
            .or_else(|| name_hint.map(str::to_owned))
            .unwrap_or_else(|| services_names[0].clone()),
    );
    // Top-level keys.
    let keys: Vec<Value> = top.keys().cloned().collect();
    for k in keys {
        let ks = k.as_str().unwrap_or("?").to_owned();
        if ks.starts_with("x-") {
            top.remove(&k);
            report.push(format!(
                "{ks}: not carried over (an extension nuvol does not read)"
            ));
        } else if !matches!(
            ks.as_str(),
            "version" | "name" | "services" | "volumes" | "networks"
        ) {
            top.remove(&k);
            report.push(format!(
                "{ks}: not carried over ({})",
                if matches!(ks.as_str(), "secrets" | "configs") {
                    "give the values as parameters"
                } else {
                    "not supported by nuvol"
                }
            ));
        }
    }
    // `name:` is CasaOS's project name; nuvol names the app itself.
    top.remove("name");
    for (section, allowed) in [
        ("volumes", &["labels", "driver", "name"][..]),
        ("networks", &["labels", "driver", "internal"][..]),
    ] {
        let Some(Value::Mapping(m)) = top.get_mut(section) else {
            continue;
        };
        for (n, v) in m.iter_mut() {
            let n = n.as_str().unwrap_or("?").to_owned();
            let Some(vm) = v.as_mapping_mut() else {
                continue;
            };
            let ks: Vec<Value> = vm.keys().cloned().collect();
            for k in ks {
                let kstr = k.as_str().unwrap_or("?");
                let bad_driver = kstr == "driver"
                    && vm.get(&k).and_then(Value::as_str)
                        != Some(if section == "volumes" {
                            "local"
                        } else {
                            "bridge"
                        });
                if !allowed.contains(&kstr) || bad_driver {
                    report.push(format!("{section}.{n}.{kstr}: not carried over (an app owns its volumes and networks)"));
                    vm.remove(&k);
                }
            }
        }
    }
    // Per-service: descriptions kept for the parameters, keys checked.
    let mut env_desc: BTreeMap<String, Localized> = BTreeMap::new();
    let Some(Value::Mapping(services)) = top.get_mut("services") else {
        return Err(AppError::invalid(
            "services",
            "the file defines no services",
        ));
    };
    for (sname, svc) in services.iter_mut() {
        let sname = sname.as_str().unwrap_or("?").to_owned();
        let at = format!("services.{sname}");
        let Some(m) = svc.as_mapping_mut() else {
            return Err(AppError::invalid(
                &at,
                format!("is {}, not a mapping", kind(svc)),
            ));
        };
        if let Some(xs) = m.remove("x-casaos") {
            if let Some(Value::Sequence(envs)) = xs.get("envs") {
                for e in envs {
                    if let (Some(c), Some(d)) = (
                        e.get("container").and_then(Value::as_str),
                        e.get("description"),
                    ) {
                        env_desc.insert(c.to_owned(), localized(d));
                    }
                }
            }
        }
        let ks: Vec<Value> = m.keys().cloned().collect();
        for k in ks {
            let kstr = k.as_str().unwrap_or("?").to_owned();
            if kstr.starts_with("x-") {
                m.remove(&k);
                continue;
            }
            if !SERVICE_KEYS.contains(&kstr.as_str()) {
                let v = m.remove(&k).unwrap_or(Value::Null);
                let shown = match &v {
                    Value::Bool(true) => String::new(),
                    Value::String(s) => format!(" {}", cut(s, 40)),
                    Value::Sequence(s) => format!(
                        " [{}]",
                        s.iter()
                            .filter_map(Value::as_str)
                            .map(|s| cut(s, 40))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => String::new(),
                };
                if matches!(v, Value::Bool(false) | Value::Null) {
                    continue;
                }
                report.push(format!(
                    "{at}.{kstr}:{shown} dropped ({})",
                    why_dropped(&kstr)
                ));
            }
        }
        if let Some(Value::String(nm)) = m.get("network_mode") {
            if !matches!(nm.as_str(), "host" | "none" | "bridge") {
                report.push(format!("{at}.network_mode: {} dropped (host, none or bridge; the service joins the app's network)", cut(nm, 40)));
                m.remove("network_mode");
            }
        }
        if let Some(Value::Mapping(d)) = m.get_mut("deploy") {
            let ks: Vec<Value> = d.keys().cloned().collect();
            for k in ks {
                let kstr = k.as_str().unwrap_or("?").to_owned();
                if kstr == "resources" {
                    if let Some(Value::Mapping(r)) = d.get_mut(&k) {
                        let rks: Vec<Value> = r.keys().cloned().collect();
                        for rk in rks {
                            if rk.as_str() != Some("limits") {
                                report.push(format!("{at}.deploy.resources.{}: dropped (only limits are carried out)", rk.as_str().unwrap_or("?")));
                                r.remove(&rk);
                            } else if let Some(Value::Mapping(l)) = r.get_mut(&rk) {
                                l.retain(|lk, _| matches!(lk.as_str(), Some("cpus" | "memory")));
                            }
                        }
                    }
                } else if kstr != "restart_policy" {
                    report.push(format!("{at}.deploy.{kstr}: dropped (deploy: is read for resources.limits and restart_policy only)"));
                    d.remove(&k);
                }
            }
        }
        if let Some(Value::Mapping(h)) = m.get_mut("healthcheck") {
            h.retain(|k, _| {
                matches!(
                    k.as_str(),
                    Some("test" | "interval" | "timeout" | "retries" | "start_period" | "disable")
                )
            });
        }
    }
    // CasaOS's variables: $AppID is the app's id; the others become
    // parameters (renamed when not [A-Z_][A-Z0-9_]*).
    let mut vars = BTreeMap::new();
    let mut tree = Value::Mapping(std::mem::take(top));
    rewrite_tree(&mut tree, &id, &mut vars);
    // /DATA paths: the app's own data moves into its directory.
    if let Some(Value::Mapping(services)) = tree.get_mut("services") {
        for (sname, svc) in services.iter_mut() {
            let sname = sname.as_str().unwrap_or("?").to_owned();
            if let Some(Value::Sequence(vols)) = svc.get_mut("volumes") {
                for v in vols.iter_mut() {
                    match v {
                        Value::String(s) => {
                            if let Some((src, rest)) = s.split_once(':') {
                                if let Some(new) = data_path(src, &sname, &mut report) {
                                    *s = format!("{new}:{rest}");
                                }
                            }
                        }
                        Value::Mapping(m) => {
                            let src = m.get("source").and_then(Value::as_str).map(str::to_owned);
                            if let Some(src) = src {
                                if let Some(new) = data_path(&src, &sname, &mut report) {
                                    m.insert(Value::from("source"), Value::from(new));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    let mut parameters = Vec::new();
    for (name, original) in &vars {
        let (kind, default) = match name.as_str() {
            "PUID" | "PGID" => (ParamKind::Int, Some("1000".to_owned())),
            "TZ" => (ParamKind::String, Some("UTC".to_owned())),
            n if looks_secret(n) => (ParamKind::Password, None),
            _ => (ParamKind::String, None),
        };
        if original != name {
            report.push(format!(
                "${original}: renamed parameter {name} (parameters are [A-Z_][A-Z0-9_]*)"
            ));
        }
        if default.is_none() {
            report.push(format!("${original}: a CasaOS variable with no default; it is parameter {name} (give it at install)"));
        }
        let description = env_desc
            .get(original)
            .or_else(|| env_desc.get(name))
            .cloned()
            .unwrap_or_default();
        parameters.push(Param {
            name: name.clone(),
            kind,
            default,
            required: false,
            description,
        });
    }
    let main = str_of(x.get("main"))
        .filter(|m| services_names.contains(m))
        .or_else(|| services_names.first().cloned());
    if let Some(m) = str_of(x.get("main")) {
        if !services_names.contains(&m) {
            report.push(format!(
                "x-casaos.main: no service {m}; the first service is the main one"
            ));
        }
    }
    let title = x.get("title").map(localized).unwrap_or_default();
    let tagline = x.get("tagline").map(localized).unwrap_or_default();
    let description = x.get("description").map(localized).unwrap_or_default();
    let mut publish = Vec::new();
    match x.get("port_map") {
        None | Some(Value::Null) => {
            if !x.is_null() {
                report.push("x-casaos.port_map: none; nothing is published".into());
            }
        }
        Some(p) => {
            let p = match p {
                Value::Number(n) => n.to_string(),
                Value::String(s) => rewrite(s, &id, &mut vars),
                _ => String::new(),
            };
            let port = match p.trim().parse::<u16>() {
                Ok(n) if n > 0 => Some(PortRef::N(n)),
                _ if p.starts_with("${") && p.ends_with('}') => Some(PortRef::Param(p.clone())),
                _ => None,
            };
            match port {
                None => report.push(format!(
                    "x-casaos.port_map: {:?} is not a port; nothing is published",
                    cut(&p, 20)
                )),
                Some(port) => {
                    let scheme = str_of(x.get("scheme"))
                        .unwrap_or_else(|| "http".into())
                        .to_ascii_lowercase();
                    let stype = if scheme == "https" { "https" } else { "http" };
                    let mut txt = BTreeMap::new();
                    if let Some(i) = str_of(x.get("index")) {
                        // TXT values hold no spaces (avahi-ps).
                        if !i.contains(char::is_whitespace) {
                            txt.insert("path".to_owned(), i);
                        }
                    }
                    let d = if tagline.is_empty() {
                        title.get("en")
                    } else {
                        tagline.get("en")
                    };
                    publish.push(OutPublish {
                        service: main.clone(),
                        stype: stype.into(),
                        port,
                        description: (!d.is_empty()).then(|| cut(d, 200)),
                        txt,
                        checks: Vec::new(),
                    });
                }
            }
        }
    }
    let mut architectures = Vec::new();
    if let Some(Value::Sequence(a)) = x.get("architectures") {
        for a in a {
            let a = a.as_str().unwrap_or_default();
            match map_arch(a) {
                Some(d) if !architectures.iter().any(|x| x == d) => {
                    architectures.push(d.to_owned())
                }
                Some(_) => {}
                None => report.push(format!(
                    "x-casaos.architectures: {:?} is not an architecture nuvol knows; left out",
                    cut(a, 20)
                )),
            }
        }
    }
    for k in [
        "screenshot_link",
        "thumbnail",
        "tips",
        "developer",
        "author",
        "hostname",
    ] {
        if x.get(k).is_some_and(|v| !v.is_null()) {
            report.push(format!("x-casaos.{k}: not carried over"));
        }
    }
    let block = NuvolBlock {
        id: id.clone(),
        version: str_of(x.get("version")).unwrap_or_default(),
        main: main.map(|m| part_name(&m, "app")),
        title: if title.is_empty() {
            Localized::One(id.clone())
        } else {
            title
        },
        description: if description.is_empty() {
            tagline
        } else {
            description
        },
        category: str_of(x.get("category"))
            .map(|c| c.to_ascii_lowercase())
            .unwrap_or_default(),
        icon: str_of(x.get("icon")),
        architectures,
        parameters,
        publish,
    };
    let block = serde_norway::to_value(&block).map_err(|e| AppError::Other(e.to_string()))?;
    if let Some(m) = tree.as_mapping_mut() {
        m.insert(Value::from("x-nuvol"), block);
    }
    let compose = serde_norway::to_string(&tree).map_err(|e| AppError::Other(e.to_string()))?;
    let imp = done(id, compose, report, Format::Casaos)?;
    Ok(Batch {
        apps: vec![imp],
        skipped: Vec::new(),
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// CasaOS's `{en_us: ..., zh_cn: ...}` as nuvol's `{en: ..., zh: ...}`.
fn localized(v: &Value) -> Localized {
    match v {
        Value::String(s) => Localized::One(cut(s, 2000)),
        Value::Mapping(m) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                    continue;
                };
                let lang = k.split(['_', '-']).next().unwrap_or(k).to_ascii_lowercase();
                out.entry(lang).or_insert_with(|| cut(v, 2000));
            }
            if out.is_empty() {
                Localized::default()
            } else {
                Localized::Many(out)
            }
        }
        _ => Localized::default(),
    }
}

/// A bind source under CasaOS's `/DATA`: the app's own data
/// (`/DATA/AppData/APP/x`) becomes `./x`; other `/DATA` paths are kept
/// and reported (they are host paths on this node too).
fn data_path(src: &str, service: &str, report: &mut Vec<String>) -> Option<String> {
    if let Some(rest) = src.strip_prefix("/DATA/AppData/") {
        let rest = rest
            .split_once('/')
            .map_or("", |(_, r)| r)
            .trim_matches('/');
        let new = if rest.is_empty() {
            "./data".to_owned()
        } else {
            format!("./{rest}")
        };
        report.push(format!("services.{service}.volumes: {src} (CasaOS's app data) becomes {new}, in the app's own directory"));
        return Some(new);
    }
    if src == "/DATA" || src.starts_with("/DATA/") {
        report.push(format!("services.{service}.volumes: {src} is a CasaOS host path; kept, but make sure it exists on this node (or change it)"));
    }
    None
}

fn rewrite_tree(v: &mut Value, id: &str, vars: &mut BTreeMap<String, String>) {
    match v {
        Value::String(s) => *s = rewrite(s, id, vars),
        Value::Sequence(seq) => seq.iter_mut().for_each(|x| rewrite_tree(x, id, vars)),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, x)| rewrite_tree(x, id, vars)),
        Value::Tagged(t) => rewrite_tree(&mut t.value, id, vars),
        _ => {}
    }
}

/// Variables in a string: `$AppID`/`${AppID}` replaced by the id, every
/// other `$NAME`/`${NAME...}` renamed to its parameter's name and
/// collected (parameter name → the template's name).
fn rewrite(s: &str, id: &str, vars: &mut BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let note = |name: &str, vars: &mut BTreeMap<String, String>| -> String {
        let p = param_name(name);
        vars.entry(p.clone()).or_insert_with(|| name.to_owned());
        p
    };
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push_str("$$");
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let n = r.find(|c: char| !is_name(c)).unwrap_or(r.len());
            let name = &r[..n];
            // The closing brace, nested `${...}` in a default counted.
            let mut depth = 0usize;
            let end = r.char_indices().find(|&(_, c)| match c {
                '{' => {
                    depth += 1;
                    false
                }
                '}' if depth == 0 => true,
                '}' => {
                    depth -= 1;
                    false
                }
                _ => false,
            });
            let (Some((end, _)), false) = (
                end,
                name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()),
            ) else {
                // Not a variable: left for the plan to name.
                out.push('$');
                continue;
            };
            if name == "AppID" {
                out.push_str(id);
            } else {
                let p = note(name, vars);
                out.push_str("${");
                out.push_str(&p);
                out.push_str(&rewrite(&r[n..end], id, vars));
                out.push('}');
            }
            rest = &r[end + 1..];
        } else {
            let n = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
            let name = &rest[..n];
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                // A lone `$` is literal in Compose.
                out.push_str("$$");
                continue;
            }
            if name == "AppID" {
                out.push_str(id);
            } else {
                let p = note(name, vars);
                out.push_str("${");
                out.push_str(&p);
                out.push('}');
            }
            rest = &rest[n..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_rewritten() {
        let mut v = BTreeMap::new();
        assert_eq!(
            rewrite(
                "/DATA/AppData/$AppID/x ${AppID} $PUID ${tz:-UTC} $$ a$ ${WEB:-${PORT}}",
                "app",
                &mut v
            ),
            "/DATA/AppData/app/x app ${PUID} ${TZ:-UTC} $$ a$$ ${WEB:-${PORT}}"
        );
        assert_eq!(v.keys().collect::<Vec<_>>(), ["PORT", "PUID", "TZ", "WEB"]);
        assert_eq!(v["TZ"], "tz");
    }
}
