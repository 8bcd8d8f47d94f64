//! From a Compose file (with its `x-nuvol` block) and the user's parameter
//! values to an [`AppPlan`]: the containers, volumes and networks the
//! agent creates through the engine's API.
//!
//! 1. The YAML is read as a tree; every key is checked against what nuvol
//!    carries out, and one it does not is an [`AppError::Unsupported`]
//!    naming it (`services.web.build`), never silently ignored. `x-*`
//!    extensions other than `x-nuvol` are ignored, as the Compose
//!    specification says.
//! 2. `${NAME}` references are replaced by parameter values (see
//!    [`interpolate`]).
//! 3. The tree is read into `docker-compose-types`' typed model and turned
//!    into the plan.

use crate::error::AppError;
use crate::meta::{check_value, Meta};
use crate::plan::{
    AppPlan, ContainerSpec, Driver, HealthSpec, Mount, MountSource, NetworkSpec, PortMap, Proto,
    RestartPolicy, VolumeSpec,
};
use docker_compose_types as dct;
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

/// Top-level keys nuvol reads.
const TOP_KEYS: &[&str] = &["version", "name", "services", "volumes", "networks"];

/// Service keys nuvol carries out (the importers keep to them too).
pub(crate) const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "networks",
    "network_mode",
    "restart",
    "healthcheck",
    "labels",
    "depends_on",
    "deploy",
    "mem_limit",
    "cpus",
    "user",
    "working_dir",
    "hostname",
    "stop_signal",
    "stop_grace_period",
    "cap_add",
    "cap_drop",
    "read_only",
    "init",
    "tty",
    "extra_hosts",
];

/// Service keys of a process app (`x-nuvol.driver: process`): what means
/// something for a program run on the host.
pub(crate) const PROCESS_SERVICE_KEYS: &[&str] = &[
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "volumes",
    "restart",
    "healthcheck",
    "labels",
    "depends_on",
    "deploy",
    "mem_limit",
    "cpus",
    "user",
    "working_dir",
    "stop_grace_period",
];

/// Why a key is refused in a process app.
fn process_hint(key: &str) -> String {
    match key {
        "image" => "a process app runs a program installed on the host: give its absolute path as entrypoint (or command)".into(),
        _ => format!("{key} is for containers, not for a process app (x-nuvol.driver: process)"),
    }
}

/// Why a few common keys are not carried out.
fn hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "build" => "nuvol runs images, it does not build them: give an image",
        "container_name" => "nuvol names containers nuvol-APP-SERVICE",
        "privileged" => "apps run without extra privileges",
        "devices" => "device access is not granted to apps",
        "secrets" | "configs" => "give the values as parameters",
        "scale" => "one container per service",
        "links" => "services reach each other by name on the app's network",
        "extends" | "include" => "give the whole definition in one file",
        "profiles" => "every service of an app runs",
        _ => return None,
    })
}

/// An app's definition as given: the Compose text and the files it
/// refers to (`env_file`), so that a stored definition is complete.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Definition {
    /// The Compose YAML.
    pub compose: String,
    /// `env_file` contents by the path the file names.
    #[serde(default)]
    pub env_files: BTreeMap<String, String>,
}

/// The `x-nuvol` block of a definition and its service names, without
/// parameters (for the store and the install form).
pub fn read_meta(def: &Definition) -> Result<(Meta, Vec<String>), AppError> {
    let root = parse_tree(&def.compose)?;
    let declared = meta_of(&root, None)?;
    let services = service_names(&root);
    declared.validate(&services)?;
    // What it publishes may depend on parameters: shown with the defaults
    // when they are enough, else left out.
    let meta = resolve_params(&declared, &BTreeMap::new())
        .ok()
        .and_then(|v| meta_of(&root, Some(&v)).ok())
        .unwrap_or(declared);
    Ok((meta, services))
}

fn parse_tree(text: &str) -> Result<Value, AppError> {
    let root: Value = serde_norway::from_str(text).map_err(|e| AppError::Parse {
        file: "compose file".into(),
        why: e.to_string(),
    })?;
    if !root.is_mapping() {
        return Err(AppError::Parse {
            file: "compose file".into(),
            why: "is not a mapping of keys (services:, volumes:, ...)".into(),
        });
    }
    Ok(root)
}

fn service_names(root: &Value) -> Vec<String> {
    root.get("services")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The `x-nuvol` block after interpolation when `values` are given; else
/// its declarations only (`publish`, which may use parameters, left out).
fn meta_of(root: &Value, values: Option<&BTreeMap<String, String>>) -> Result<Meta, AppError> {
    let Some(v) = root.get("x-nuvol") else {
        return Ok(Meta::default());
    };
    let mut v = v.clone();
    if values.is_none() {
        if let Some(m) = v.as_mapping_mut() {
            m.remove("publish");
        }
    }
    if let Some(values) = values {
        // Parameters are declarations: their defaults are literal.
        let params = v.get("parameters").cloned();
        interpolate_tree(&mut v, values, "x-nuvol")?;
        if let (Some(p), Some(m)) = (params, v.as_mapping_mut()) {
            m.insert(Value::from("parameters"), p);
        }
    }
    serde_norway::from_value(v).map_err(|e| AppError::invalid("x-nuvol", e))
}

/// Parameter values: the given ones checked, defaults for the rest, an
/// error for a required one missing or an undeclared one given.
pub fn resolve_params(
    meta: &Meta,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, AppError> {
    for k in given.keys() {
        if !meta.parameters.iter().any(|p| &p.name == k) {
            return Err(AppError::UnknownParam(k.clone()));
        }
    }
    let mut out = BTreeMap::new();
    for p in &meta.parameters {
        let v = match (given.get(&p.name), &p.default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) if p.required => return Err(AppError::MissingParam(p.name.clone())),
            (None, None) => String::new(),
        };
        if p.required && v.is_empty() {
            return Err(AppError::MissingParam(p.name.clone()));
        }
        // An optional parameter left empty is empty; any other value is
        // checked against its kind.
        if !v.is_empty() {
            check_value(p, &v)?;
        }
        out.insert(p.name.clone(), v);
    }
    Ok(out)
}

/// Replace `$NAME`, `${NAME}`, `${NAME:-default}` / `${NAME-default}`,
/// `${NAME:?message}` / `${NAME?message}` and `$$` as Compose does, with
/// the app's parameters as the only variables: the agent's own
/// environment never leaks into an app. A variable that is not a
/// parameter and has no default is an error naming it (Compose would
/// warn and put an empty string).
///
/// Written here because no crate implements Compose's interpolation
/// rules (shell-expansion crates differ on `$$`, `:?` and empty values).
pub fn interpolate(
    s: &str,
    values: &BTreeMap<String, String>,
    at: &str,
) -> Result<String, AppError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            // The matching brace: a default may hold `${...}` itself.
            let mut depth = 0usize;
            let end = r
                .char_indices()
                .find(|&(_, c)| match c {
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
                })
                .map(|(j, _)| j)
                .ok_or_else(|| AppError::invalid(at, format!("unclosed ${{ in {s:?}")))?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            let (name, op, arg) = match inner.find([':', '-', '?']) {
                Some(j) => {
                    let (n, tail) = inner.split_at(j);
                    if let Some(t) = tail.strip_prefix(":-") {
                        (n, ":-", t)
                    } else if let Some(t) = tail.strip_prefix(":?") {
                        (n, ":?", t)
                    } else if let Some(t) = tail.strip_prefix('-') {
                        (n, "-", t)
                    } else if let Some(t) = tail.strip_prefix('?') {
                        (n, "?", t)
                    } else {
                        return Err(AppError::invalid(at, format!("bad ${{{inner}}} in {s:?}")));
                    }
                }
                None => (inner, "", ""),
            };
            if !is_var(name) {
                return Err(AppError::invalid(at, format!("bad variable name {name:?}")));
            }
            let v = values.get(name);
            let empty = v.is_none_or(String::is_empty);
            match op {
                ":-" if empty => out.push_str(&interpolate(arg, values, at)?),
                "-" if v.is_none() => out.push_str(&interpolate(arg, values, at)?),
                ":?" | "?" if (op == ":?" && empty) || v.is_none() => {
                    return Err(AppError::invalid(
                        at,
                        format!(
                            "{name}: {}",
                            if arg.is_empty() { "is required" } else { arg }
                        ),
                    ))
                }
                _ => match v {
                    Some(v) => out.push_str(v),
                    None => return Err(undeclared(name, at)),
                },
            }
        } else {
            let n = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..n];
            if !is_var(name) {
                // A lone `$` stays, as in Compose.
                out.push('$');
                continue;
            }
            match values.get(name) {
                Some(v) => out.push_str(v),
                None => return Err(undeclared(name, at)),
            }
            rest = &rest[n..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn undeclared(name: &str, at: &str) -> AppError {
    AppError::invalid(
        at,
        format!("${{{name}}} is not a parameter of this app (declare it in x-nuvol.parameters, or write $${name})"),
    )
}

fn is_var(n: &str) -> bool {
    n.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Interpolate every string of a tree (values, not keys).
fn interpolate_tree(
    v: &mut Value,
    values: &BTreeMap<String, String>,
    at: &str,
) -> Result<(), AppError> {
    match v {
        Value::String(s) => {
            *s = interpolate(s, values, at)?;
        }
        Value::Sequence(seq) => {
            for (i, x) in seq.iter_mut().enumerate() {
                interpolate_tree(x, values, &format!("{at}[{i}]"))?;
            }
        }
        Value::Mapping(m) => {
            for (k, x) in m.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                interpolate_tree(x, values, &format!("{at}.{key}"))?;
            }
        }
        Value::Tagged(t) => interpolate_tree(&mut t.value, values, at)?,
        _ => {}
    }
    Ok(())
}

/// Keys of a mapping as strings; a non-string key is an error.
fn keys<'a>(m: &'a serde_norway::Mapping, at: &str) -> Result<Vec<&'a str>, AppError> {
    m.keys()
        .map(|k| {
            k.as_str()
                .ok_or_else(|| AppError::invalid(at, format!("key {k:?} is not a string")))
        })
        .collect()
}

/// Every key nuvol does not carry out, as an error naming the first.
fn check_keys(root: &Value, driver: Driver) -> Result<(), AppError> {
    let process = driver == Driver::Process;
    let top = root
        .as_mapping()
        .ok_or_else(|| AppError::invalid("compose file", "not a mapping"))?;
    for k in keys(top, "compose file")? {
        if process && k == "networks" {
            return Err(AppError::Unsupported {
                key: k.to_owned(),
                hint: Some(process_hint(k)),
            });
        }
        if k.starts_with("x-") || TOP_KEYS.contains(&k) {
            continue;
        }
        return Err(unsupported(k.to_owned(), k));
    }
    let services = root
        .get("services")
        .and_then(Value::as_mapping)
        .ok_or_else(|| AppError::invalid("services", "the file defines no services"))?;
    if services.is_empty() {
        return Err(AppError::invalid(
            "services",
            "the file defines no services",
        ));
    }
    for (name, svc) in services {
        let name = name.as_str().unwrap_or("?");
        let at = format!("services.{name}");
        let Some(m) = svc.as_mapping() else {
            return Err(AppError::invalid(&at, "is not a mapping"));
        };
        for k in keys(m, &at)? {
            if process && !k.starts_with("x-") && !PROCESS_SERVICE_KEYS.contains(&k) {
                return Err(AppError::Unsupported {
                    key: format!("{at}.{k}"),
                    hint: Some(process_hint(k)),
                });
            }
            if k.starts_with("x-") || SERVICE_KEYS.contains(&k) {
                continue;
            }
            return Err(unsupported(format!("{at}.{k}"), k));
        }
        if let Some(d) = m.get("deploy") {
            check_deploy(d, &format!("{at}.deploy"))?;
        }
        if let Some(h) = m.get("healthcheck").and_then(Value::as_mapping) {
            for k in keys(h, &at)? {
                if ![
                    "test",
                    "interval",
                    "timeout",
                    "retries",
                    "start_period",
                    "disable",
                ]
                .contains(&k)
                {
                    return Err(unsupported(format!("{at}.healthcheck.{k}"), k));
                }
            }
        }
    }
    for (section, allowed) in [
        ("volumes", &["labels", "driver", "name"][..]),
        ("networks", &["labels", "driver", "internal"][..]),
    ] {
        let Some(m) = root.get(section).and_then(Value::as_mapping) else {
            continue;
        };
        for (name, v) in m {
            let name = name.as_str().unwrap_or("?");
            let Some(vm) = v.as_mapping() else { continue };
            for k in keys(vm, section)? {
                if !allowed.contains(&k) {
                    return Err(AppError::Unsupported {
                        key: format!("{section}.{name}.{k}"),
                        hint: (k == "external")
                            .then(|| "an app owns its volumes and networks".into()),
                    });
                }
            }
            if let Some(d) = vm.get("driver").and_then(Value::as_str) {
                let ok = if section == "volumes" {
                    d == "local"
                } else {
                    d == "bridge"
                };
                if !ok {
                    return Err(AppError::Unsupported {
                        key: format!("{section}.{name}.driver: {d}"),
                        hint: Some(format!(
                            "only the {} driver",
                            if section == "volumes" {
                                "local"
                            } else {
                                "bridge"
                            }
                        )),
                    });
                }
            }
        }
    }
    Ok(())
}

fn unsupported(key: String, last: &str) -> AppError {
    AppError::Unsupported {
        key,
        hint: hint(last).map(str::to_owned),
    }
}

/// `deploy:` is read for resource limits (and a restart policy) only.
fn check_deploy(d: &Value, at: &str) -> Result<(), AppError> {
    let Some(m) = d.as_mapping() else {
        return Err(AppError::invalid(at, "is not a mapping"));
    };
    for k in keys(m, at)? {
        match k {
            "resources" => {
                let Some(r) = m.get("resources").and_then(Value::as_mapping) else {
                    continue;
                };
                for rk in keys(r, at)? {
                    if rk != "limits" {
                        return Err(unsupported(format!("{at}.resources.{rk}"), rk));
                    }
                    if let Some(l) = r.get("limits").and_then(Value::as_mapping) {
                        for lk in keys(l, at)? {
                            if lk != "cpus" && lk != "memory" {
                                return Err(unsupported(format!("{at}.resources.limits.{lk}"), lk));
                            }
                        }
                    }
                }
            }
            "restart_policy" => {}
            other => {
                return Err(AppError::Unsupported {
                    key: format!("{at}.{other}"),
                    hint: Some(
                        "deploy: is read for resources.limits and restart_policy only".into(),
                    ),
                })
            }
        }
    }
    Ok(())
}

/// Plan the app `name` from its definition and the user's parameters.
pub fn plan(
    name: &str,
    def: &Definition,
    given: &BTreeMap<String, String>,
) -> Result<(AppPlan, Meta, BTreeMap<String, String>), AppError> {
    crate::meta::validate_name("name", name)?;
    let mut root = parse_tree(&def.compose)?;
    let services = service_names(&root);
    let declared = meta_of(&root, None)?;
    declared.validate(&services)?;
    let values = resolve_params(&declared, given)?;
    check_keys(&root, declared.driver)?;
    let meta = meta_of(&root, Some(&values))?;
    meta.validate(&services)?;
    // x-nuvol was read above; the rest is interpolated and typed.
    if let Some(m) = root.as_mapping_mut() {
        m.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
        // Service-level extensions too, and `cpus` (which the typed model
        // does not know; read here).
    }
    interpolate_tree(&mut root, &values, "compose")?;
    let mut cpus: BTreeMap<String, f64> = BTreeMap::new();
    if let Some(svcs) = root.get_mut("services").and_then(Value::as_mapping_mut) {
        for (k, s) in svcs.iter_mut() {
            let Some(sm) = s.as_mapping_mut() else {
                continue;
            };
            sm.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
            if let Some(c) = sm.remove("cpus") {
                let svc = k.as_str().unwrap_or("?");
                cpus.insert(
                    svc.to_owned(),
                    parse_cpus(&c, &format!("services.{svc}.cpus"))?,
                );
            }
        }
    }
    let compose: dct::Compose = serde_norway::from_value(root).map_err(|e| AppError::Parse {
        file: "compose file".into(),
        why: e.to_string(),
    })?;
    let plan = build(name, &compose, def, &meta, &cpus)?;
    Ok((plan, meta, values))
}

fn parse_cpus(v: &Value, at: &str) -> Result<f64, AppError> {
    let f = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    f.filter(|f| *f > 0.0 && *f <= 1024.0)
        .ok_or_else(|| AppError::invalid(at, format!("{v:?} is not a positive number of CPUs")))
}

/// `nuvol-APP-PART`: the engine's name of an app's container, volume or
/// network.
pub fn object_name(app: &str, part: &str) -> String {
    format!("nuvol-{app}-{part}")
}

fn build(
    app: &str,
    c: &dct::Compose,
    def: &Definition,
    meta: &Meta,
    cpus: &BTreeMap<String, f64>,
) -> Result<AppPlan, AppError> {
    let mut volumes: Vec<VolumeSpec> = Vec::new();
    for (vname, _) in &c.volumes.0 {
        check_part(&format!("volumes.{vname}"), vname)?;
        volumes.push(VolumeSpec {
            key: vname.clone(),
            name: object_name(app, vname),
        });
    }
    let mut networks: Vec<NetworkSpec> = Vec::new();
    let mut declared_nets: BTreeSet<String> = BTreeSet::new();
    for (nname, n) in &c.networks.0 {
        check_part(&format!("networks.{nname}"), nname)?;
        let internal = match n {
            dct::MapOrEmpty::Map(s) => s.internal,
            dct::MapOrEmpty::Empty => false,
        };
        declared_nets.insert(nname.clone());
        networks.push(NetworkSpec {
            key: nname.clone(),
            name: object_name(app, nname),
            internal,
        });
    }
    let mut containers = Vec::new();
    let names: Vec<String> = c.services.0.keys().cloned().collect();
    let mut uses_default = false;
    for (sname, svc) in &c.services.0 {
        let at = format!("services.{sname}");
        check_part(&at, sname)?;
        let svc = svc.clone().unwrap_or_default();
        let process = meta.driver == Driver::Process;
        let image = if process {
            process_program(&svc, &at)?
        } else {
            svc.image
                .clone()
                .filter(|i| !i.trim().is_empty())
                .ok_or_else(|| AppError::invalid(&format!("{at}.image"), "is required"))?
        };
        let mut env: Vec<(String, String)> = Vec::new();
        if let Some(files) = &svc.env_file {
            let list = match files {
                dct::StringOrList::Simple(s) => vec![s.clone()],
                dct::StringOrList::List(l) => l.clone(),
            };
            for f in list {
                let text = def.env_files.get(&f).ok_or_else(|| {
                    AppError::invalid(&format!("{at}.env_file"), format!("{f}: file not found"))
                })?;
                env.extend(parse_env_file(text, &format!("{at}.env_file {f}"))?);
            }
        }
        match &svc.environment {
            dct::Environment::List(l) => {
                for e in l {
                    match e.split_once('=') {
                        Some((k, v)) => set_env(&mut env, k, v),
                        // `- NAME` alone passes the host's variable in
                        // Compose; the agent's environment is not the
                        // app's.
                        None => {
                            return Err(AppError::invalid(
                                &format!("{at}.environment"),
                                format!("{e} has no value (the agent's environment is not passed to apps; use a parameter)"),
                            ))
                        }
                    }
                }
            }
            dct::Environment::KvPair(m) => {
                for (k, v) in m {
                    let v = v.as_ref().map(ToString::to_string).ok_or_else(|| {
                        AppError::invalid(&format!("{at}.environment.{k}"), "has no value")
                    })?;
                    set_env(&mut env, k, &v);
                }
            }
        }
        for (k, _) in &env {
            if k.is_empty() || k.contains(['=', '\0']) {
                return Err(AppError::invalid(
                    &format!("{at}.environment"),
                    format!("bad name {k:?}"),
                ));
            }
        }
        let ports = if process {
            process_ports(&svc.ports, &format!("{at}.ports"))?
        } else {
            ports(&svc.ports, &format!("{at}.ports"))?
        };
        let mut mounts = Vec::new();
        for (i, v) in svc.volumes.iter().enumerate() {
            let at = format!("{at}.volumes[{i}]");
            mounts.push(if process {
                process_mount(v, &at, app, &c.volumes)?
            } else {
                mount(v, &at, app, &c.volumes)?
            });
        }
        let network_mode = svc.network_mode.clone().filter(|m| !m.is_empty());
        if let Some(m) = &network_mode {
            if !["host", "none", "bridge"].contains(&m.as_str()) {
                return Err(AppError::Unsupported {
                    key: format!("{at}.network_mode: {m}"),
                    hint: Some("host, none or bridge".into()),
                });
            }
        }
        let mut nets = Vec::new();
        let mut aliases = Vec::new();
        match &svc.networks {
            dct::Networks::Simple(l) => nets.extend(l.iter().cloned()),
            dct::Networks::Advanced(a) => {
                for (n, s) in &a.0 {
                    nets.push(n.clone());
                    if let dct::MapOrEmpty::Map(s) = s {
                        if s.ipv4_address.is_some() || s.ipv6_address.is_some() {
                            return Err(AppError::unsupported(format!(
                                "{at}.networks.{n}.ipv4_address"
                            )));
                        }
                        aliases.extend(s.aliases.iter().cloned());
                    }
                }
            }
        }
        for n in &nets {
            if !declared_nets.contains(n) && n != "default" {
                return Err(AppError::invalid(
                    &format!("{at}.networks"),
                    format!("{n} is not declared under networks:"),
                ));
            }
        }
        if network_mode.is_some() && !nets.is_empty() {
            return Err(AppError::invalid(
                &at,
                "network_mode and networks exclude each other",
            ));
        }
        if network_mode.is_none() && nets.is_empty() && !process {
            nets.push("default".into());
        }
        if nets.iter().any(|n| n == "default") {
            uses_default = true;
        }
        let nets: Vec<String> = nets.iter().map(|n| object_name(app, n)).collect();
        let deps: Vec<String> = match &svc.depends_on {
            dct::DependsOnOptions::Simple(l) => l.clone(),
            dct::DependsOnOptions::Conditional(m) => m.keys().cloned().collect(),
        };
        for d in &deps {
            if !names.contains(d) {
                return Err(AppError::invalid(
                    &format!("{at}.depends_on"),
                    format!("no service {d}"),
                ));
            }
        }
        let restart = restart(&svc, &at)?;
        let health = match &svc.healthcheck {
            Some(h) if !h.disable => health(h, &format!("{at}.healthcheck"))?,
            _ => None,
        };
        let mut memory = svc
            .mem_limit
            .as_deref()
            .map(|m| parse_bytes(m, &format!("{at}.mem_limit")))
            .transpose()?;
        let mut nano_cpus = cpus.get(sname).map(|c| (c * 1e9) as i64);
        if let Some(l) = svc
            .deploy
            .as_ref()
            .and_then(|d| d.resources.as_ref())
            .and_then(|r| r.limits.as_ref())
        {
            if let Some(m) = &l.memory {
                memory = Some(parse_bytes(
                    m,
                    &format!("{at}.deploy.resources.limits.memory"),
                )?);
            }
            if let Some(c) = &l.cpus {
                let f = parse_cpus(
                    &Value::from(c.as_str()),
                    &format!("{at}.deploy.resources.limits.cpus"),
                )?;
                nano_cpus = Some((f * 1e9) as i64);
            }
        }
        let labels = match &svc.labels {
            dct::Labels::List(l) => l
                .iter()
                .map(|s| match s.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (s.clone(), String::new()),
                })
                .collect(),
            dct::Labels::Map(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let labels: BTreeMap<String, String> = labels;
        if let Some(k) = labels
            .keys()
            .find(|k| k.starts_with(crate::plan::LABEL_PREFIX))
        {
            return Err(AppError::invalid(
                &format!("{at}.labels"),
                format!("{k}: labels {}* are the agent's", crate::plan::LABEL_PREFIX),
            ));
        }
        let stop_timeout = svc
            .stop_grace_period
            .as_deref()
            .map(|s| duration(s, &format!("{at}.stop_grace_period")))
            .transpose()?;
        containers.push(ContainerSpec {
            service: sname.clone(),
            name: object_name(app, sname),
            image,
            command: svc.command.as_ref().map(|c| match c {
                dct::Command::Simple(s) => split_words(s),
                dct::Command::Args(a) => a.clone(),
            }),
            entrypoint: svc.entrypoint.as_ref().map(|c| match c {
                dct::Entrypoint::Simple(s) => split_words(s),
                dct::Entrypoint::List(a) => a.clone(),
            }),
            env,
            ports,
            mounts,
            networks: nets,
            aliases,
            network_mode,
            restart,
            health,
            labels,
            depends_on: deps,
            memory,
            nano_cpus,
            user: svc.user.clone(),
            working_dir: svc.working_dir.clone(),
            hostname: svc.hostname.clone(),
            stop_signal: svc.stop_signal.clone(),
            stop_timeout,
            cap_add: svc.cap_add.clone(),
            cap_drop: svc.cap_drop.clone(),
            read_only: svc.read_only,
            init: svc.init,
            tty: svc.tty,
            extra_hosts: svc.extra_hosts.clone(),
        });
    }
    if uses_default && !declared_nets.contains("default") {
        networks.push(NetworkSpec {
            key: "default".into(),
            name: object_name(app, "default"),
            internal: false,
        });
    }
    // Two services may not bind the same host port.
    let mut seen = BTreeMap::new();
    for c in &containers {
        for p in &c.ports {
            if let Some(other) = seen.insert((p.host, p.proto), &c.service) {
                return Err(AppError::invalid(
                    &format!("services.{}.ports", c.service),
                    format!(
                        "{}/{} is also published by {other}",
                        p.host,
                        p.proto.as_str()
                    ),
                ));
            }
        }
    }
    let plan = AppPlan {
        app: app.to_owned(),
        containers,
        volumes,
        networks,
        main: meta
            .main
            .clone()
            .or_else(|| names.first().cloned())
            .unwrap_or_default(),
    };
    plan.order()?;
    Ok(plan)
}

/// A process service's program: the first word of its entrypoint, else of
/// its command, an absolute path (whether it exists is checked at
/// install, on this node). Its `image` is `process:PATH`.
fn process_program(svc: &dct::Service, at: &str) -> Result<String, AppError> {
    let words = |v: Option<Vec<String>>| v.filter(|w| !w.is_empty());
    let first = words(svc.entrypoint.as_ref().map(|c| match c {
        dct::Entrypoint::Simple(s) => split_words(s),
        dct::Entrypoint::List(a) => a.clone(),
    }))
    .or_else(|| {
        words(svc.command.as_ref().map(|c| match c {
            dct::Command::Simple(s) => split_words(s),
            dct::Command::Args(a) => a.clone(),
        }))
    })
    .and_then(|w| w.into_iter().next())
    .ok_or_else(|| {
        AppError::invalid(
            &format!("{at}.entrypoint"),
            "a process service names its program (entrypoint or command)",
        )
    })?;
    if !first.starts_with('/') || first.split('/').any(|c| c == "..") {
        return Err(AppError::invalid(
            &format!("{at}.entrypoint"),
            format!("{first:?}: give the program's absolute path"),
        ));
    }
    Ok(format!("{}{first}", crate::process::IMAGE_PREFIX))
}

/// A process listens on its port itself: `PORT[/PROTO]`, or
/// `[IP:]PORT:PORT[/PROTO]` with the same port twice (there is no
/// mapping). The ports are what the app publishes and what conflict
/// checks see.
fn process_ports(p: &dct::Ports, at: &str) -> Result<Vec<PortMap>, AppError> {
    let mut out = Vec::new();
    let dct::Ports::Short(l) = p else {
        return ports(p, at).and_then(|v| {
            v.iter()
                .find(|m| m.host != m.container)
                .map_or(Ok(v.clone()), |m| {
                    Err(AppError::invalid(
                        at,
                        format!("{}:{}: a program listens on its port, there is no mapping: give one port", m.host, m.container),
                    ))
                })
        });
    };
    for (i, s) in l.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let (num, proto) = match s.rsplit_once('/') {
            Some((a, pr)) => (a, pr),
            None => (s.as_str(), "tcp"),
        };
        let m = if !num.contains(':') {
            short_port(&format!("{num}:{num}/{proto}"), &at)?
        } else {
            short_port(s, &at)?
        };
        if m.host != m.container {
            return Err(AppError::invalid(
                &at,
                format!("{s:?}: a program listens on its port, there is no mapping: give one port"),
            ));
        }
        out.push(m);
    }
    Ok(out)
}

/// A process service's volume: `NAME:VARIABLE[:ro]`, a named volume (a
/// directory the agent keeps, owned by the run user) whose path the
/// program gets in the environment variable `VARIABLE` (there is no
/// mount: the program runs in the host's file system).
fn process_mount(
    v: &dct::Volumes,
    at: &str,
    app: &str,
    top: &dct::TopLevelVolumes,
) -> Result<Mount, AppError> {
    let dct::Volumes::Simple(s) = v else {
        return Err(AppError::invalid(
            at,
            "a process service's volume is NAME:VARIABLE (the long syntax is for containers)",
        ));
    };
    let parts: Vec<&str> = s.split(':').collect();
    let (name, var) = match parts.as_slice() {
        [n, v] | [n, v, "rw"] => (*n, *v),
        _ => {
            return Err(AppError::invalid(
                at,
                format!("{s:?}: a process service's volume is NAME:VARIABLE (its directory's path is given in $VARIABLE)"),
            ))
        }
    };
    if !top.0.contains_key(name) {
        return Err(AppError::invalid(
            at,
            format!("volume {name} is not declared under volumes:"),
        ));
    }
    if !is_var(var) {
        return Err(AppError::invalid(
            at,
            format!("{var:?} is not an environment variable name (NAME:VARIABLE; there are no mounts for a program)"),
        ));
    }
    Ok(Mount {
        source: MountSource::Volume(object_name(app, name)),
        target: var.to_owned(),
        read_only: false,
    })
}

/// Service, volume and network names become parts of engine names.
fn check_part(at: &str, s: &str) -> Result<(), AppError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(
            at,
            format!("{s:?}: names are letters, digits, '-', '_' and '.'"),
        ))
    }
}

fn set_env(env: &mut Vec<(String, String)>, k: &str, v: &str) {
    env.retain(|(x, _)| x != k);
    env.push((k.to_owned(), v.to_owned()));
}

/// `KEY=VALUE` lines; `#` comments and blank lines skipped; a value may be
/// quoted with `"` or `'`.
pub fn parse_env_file(text: &str, at: &str) -> Result<Vec<(String, String)>, AppError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| AppError::invalid(at, format!("line {}: no '='", i + 1)))?;
        let k = k.trim();
        if !is_var(k) {
            return Err(AppError::invalid(
                at,
                format!("line {}: bad name {k:?}", i + 1),
            ));
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// A command given as one string: split on spaces, with `"`/`'` quotes
/// grouping words (as Compose does with shlex).
pub(crate) fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for ch in s.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(ch);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() || any {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if !cur.is_empty() || any {
        out.push(cur);
    }
    out
}

fn ports(p: &dct::Ports, at: &str) -> Result<Vec<PortMap>, AppError> {
    let mut out = Vec::new();
    match p {
        dct::Ports::Short(l) => {
            for (i, s) in l.iter().enumerate() {
                out.push(short_port(s, &format!("{at}[{i}]"))?);
            }
        }
        dct::Ports::Long(l) => {
            for (i, p) in l.iter().enumerate() {
                let at = format!("{at}[{i}]");
                let host = match &p.published {
                    Some(dct::PublishedPort::Single(n)) => *n,
                    Some(dct::PublishedPort::Range(s)) => s.parse().map_err(|_| {
                        AppError::invalid(
                            &at,
                            format!("published {s:?}: port ranges are not supported"),
                        )
                    })?,
                    None => {
                        return Err(AppError::invalid(
                            &at,
                            "published is required (nuvol publishes known ports)",
                        ))
                    }
                };
                let proto = Proto::parse(p.protocol.as_deref().unwrap_or("tcp"), &at)?;
                let host_ip = p
                    .host_ip
                    .as_deref()
                    .map(|h| {
                        h.parse::<IpAddr>()
                            .map_err(|_| AppError::invalid(&at, format!("host_ip {h:?}")))
                    })
                    .transpose()?;
                if host == 0 || p.target == 0 {
                    return Err(AppError::invalid(&at, "port 0"));
                }
                out.push(PortMap {
                    host_ip,
                    host,
                    container: p.target,
                    proto,
                });
            }
        }
    }
    Ok(out)
}

/// `[HOST_IP:]HOST:CONTAINER[/PROTO]` (an IPv6 host IP in brackets).
pub fn short_port(s: &str, at: &str) -> Result<PortMap, AppError> {
    let bad = |why: &str| AppError::invalid(at, format!("{s:?}: {why}"));
    let (spec, proto) = match s.rsplit_once('/') {
        Some((a, p)) => (a, Proto::parse(p, at)?),
        None => (s, Proto::Tcp),
    };
    let (host_ip, rest) = if let Some(r) = spec.strip_prefix('[') {
        let (ip, r) = r
            .split_once("]:")
            .ok_or_else(|| bad("bad [IPv6] host address"))?;
        (
            Some(ip.parse::<IpAddr>().map_err(|_| bad("bad host address"))?),
            r,
        )
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            3 => (
                Some(
                    parts[0]
                        .parse::<IpAddr>()
                        .map_err(|_| bad("bad host address"))?,
                ),
                &spec[parts[0].len() + 1..],
            ),
            _ => (None, spec),
        }
    };
    let (h, c) = rest
        .split_once(':')
        .ok_or_else(|| bad("give HOST:CONTAINER (a random host port cannot be published)"))?;
    if h.contains('-') || c.contains('-') {
        return Err(bad("port ranges are not supported"));
    }
    let num = |x: &str| -> Result<u16, AppError> {
        x.parse::<u16>()
            .ok()
            .filter(|n| *n != 0)
            .ok_or_else(|| bad(&format!("{x:?} is not a port")))
    };
    Ok(PortMap {
        host_ip,
        host: num(h)?,
        container: num(c)?,
        proto,
    })
}

fn mount(
    v: &dct::Volumes,
    at: &str,
    app: &str,
    top: &dct::TopLevelVolumes,
) -> Result<Mount, AppError> {
    let named = |n: &str| -> Result<MountSource, AppError> {
        if !top.0.contains_key(n) {
            return Err(AppError::invalid(
                at,
                format!("volume {n} is not declared under volumes:"),
            ));
        }
        Ok(MountSource::Volume(object_name(app, n)))
    };
    let path = |p: &str| -> Result<MountSource, AppError> {
        if p.split('/').any(|c| c == "..") {
            return Err(AppError::invalid(
                at,
                format!("{p:?}: '..' is not allowed in a path"),
            ));
        }
        if let Some(rel) = p.strip_prefix("./") {
            Ok(MountSource::AppDir(rel.trim_end_matches('/').to_owned()))
        } else if p == "." {
            Ok(MountSource::AppDir(String::new()))
        } else if p.starts_with('/') {
            Ok(MountSource::Host(p.to_owned()))
        } else {
            Err(AppError::invalid(
                at,
                format!("{p:?}: a bind path starts with / or ./"),
            ))
        }
    };
    match v {
        dct::Volumes::Simple(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            let (src, dst, mode) = match parts.as_slice() {
                [_] => {
                    return Err(AppError::invalid(
                        at,
                        format!("{s:?}: an anonymous volume is lost when the container is replaced; name it (NAME:{s})"),
                    ))
                }
                [a, b] => (*a, *b, ""),
                [a, b, m] => (*a, *b, *m),
                _ => return Err(AppError::invalid(at, format!("{s:?}: SOURCE:TARGET[:ro]"))),
            };
            let read_only = match mode {
                "" | "rw" => false,
                "ro" => true,
                m => return Err(AppError::invalid(at, format!("mode {m:?}: ro or rw"))),
            };
            if !dst.starts_with('/') {
                return Err(AppError::invalid(
                    at,
                    format!("target {dst:?} is not an absolute path"),
                ));
            }
            let source = if src.starts_with('/') || src.starts_with('.') {
                path(src)?
            } else {
                named(src)?
            };
            Ok(Mount {
                source,
                target: dst.to_owned(),
                read_only,
            })
        }
        dct::Volumes::Advanced(a) => {
            if !a.target.starts_with('/') {
                return Err(AppError::invalid(
                    at,
                    format!("target {:?} is not an absolute path", a.target),
                ));
            }
            let source = match a._type.as_str() {
                "volume" => named(a.source.as_deref().ok_or_else(|| {
                    AppError::invalid(at, "source is required (anonymous volumes are lost)")
                })?)?,
                "bind" => path(
                    a.source
                        .as_deref()
                        .ok_or_else(|| AppError::invalid(at, "source is required"))?,
                )?,
                "tmpfs" => MountSource::Tmpfs(a.tmpfs.as_ref().map(|t| t.size)),
                t => {
                    return Err(AppError::Unsupported {
                        key: format!("{at}.type: {t}"),
                        hint: Some("volume, bind or tmpfs".into()),
                    })
                }
            };
            Ok(Mount {
                source,
                target: a.target.clone(),
                read_only: a.read_only,
            })
        }
    }
}

fn restart(svc: &dct::Service, at: &str) -> Result<RestartPolicy, AppError> {
    if let Some(p) = svc.deploy.as_ref().and_then(|d| d.restart_policy.as_ref()) {
        return Ok(match p.condition.as_deref().unwrap_or("any") {
            "none" => RestartPolicy::No,
            "on-failure" => RestartPolicy::OnFailure(
                p.max_attempts
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
            ),
            "any" => RestartPolicy::Always,
            c => {
                return Err(AppError::invalid(
                    &format!("{at}.deploy.restart_policy.condition"),
                    format!("{c:?}"),
                ))
            }
        });
    }
    // Compose's default is "no"; an app that should survive a reboot says
    // so, and a store's templates all do. Unset here means what a
    // self-hosted app wants: unless-stopped.
    Ok(match svc.restart.as_deref() {
        None | Some("unless-stopped") => RestartPolicy::UnlessStopped,
        Some("no") => RestartPolicy::No,
        Some("always") => RestartPolicy::Always,
        Some("on-failure") => RestartPolicy::OnFailure(0),
        Some(s) if s.starts_with("on-failure:") => RestartPolicy::OnFailure(
            s["on-failure:".len()..]
                .parse()
                .map_err(|_| AppError::invalid(&format!("{at}.restart"), format!("{s:?}")))?,
        ),
        Some(s) => {
            return Err(AppError::invalid(
                &format!("{at}.restart"),
                format!("{s:?}: no, always, on-failure[:N] or unless-stopped"),
            ))
        }
    })
}

fn health(h: &dct::Healthcheck, at: &str) -> Result<Option<HealthSpec>, AppError> {
    let test = match &h.test {
        None => return Ok(None),
        Some(dct::HealthcheckTest::Single(s)) => vec!["CMD-SHELL".to_owned(), s.clone()],
        Some(dct::HealthcheckTest::Multiple(v)) => v.clone(),
    };
    match test.first().map(String::as_str) {
        Some("NONE") => return Ok(None),
        Some("CMD" | "CMD-SHELL") if test.len() >= 2 => {}
        _ => {
            return Err(AppError::invalid(
                &format!("{at}.test"),
                "starts with CMD or CMD-SHELL and a command",
            ))
        }
    }
    let d = |s: &Option<String>, k: &str, default: u64| -> Result<Duration, AppError> {
        match s {
            Some(s) => duration(s, &format!("{at}.{k}")),
            None => Ok(Duration::from_secs(default)),
        }
    };
    Ok(Some(HealthSpec {
        test,
        interval: d(&h.interval, "interval", 30)?,
        timeout: d(&h.timeout, "timeout", 30)?,
        retries: if h.retries > 0 {
            u32::try_from(h.retries).unwrap_or(3)
        } else {
            3
        },
        start_period: d(&h.start_period, "start_period", 0)?,
    }))
}

/// Compose durations: `1m30s`, `10s`, `500ms`, `1h`.
fn duration(s: &str, at: &str) -> Result<Duration, AppError> {
    nuvol_agent::duration::parse(s).map_err(|e| AppError::invalid(at, e))
}

/// Compose byte sizes: `512m`, `1g`, `1.5gb`, `1024k`, `100000`.
pub fn parse_bytes(s: &str, at: &str) -> Result<u64, AppError> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| AppError::invalid(at, format!("{s:?} is not a size (512m, 1g)")))?;
    let b = n * mult as f64;
    if !(4.0 * 1024.0 * 1024.0..1e15).contains(&b) {
        return Err(AppError::invalid(at, format!("{s:?}: at least 4m")));
    }
    Ok(b as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(s: &str) -> Definition {
        Definition {
            compose: s.to_owned(),
            env_files: BTreeMap::new(),
        }
    }

    fn vals(v: &[(&str, &str)]) -> BTreeMap<String, String> {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn process_apps_plan_programs_and_refuse_container_keys() {
        let ok = def(r#"
x-nuvol: {driver: process}
services:
  web:
    entrypoint: ["/bin/busybox", "httpd"]
    command: ["-f", "-p", "8080"]
    ports: ["8080", "127.0.0.1:9090:9090/udp"]
    volumes: ["data:DATA_DIR"]
    user: nobody
    mem_limit: 64m
    cpus: 0.5
    environment: {A: b}
volumes:
  data: {}
"#);
        let (p, m, _) = plan("site", &ok, &BTreeMap::new()).unwrap();
        assert_eq!(m.driver, Driver::Process);
        assert_eq!(p.driver(), Driver::Process);
        let c = &p.containers[0];
        assert_eq!(c.image, "process:/bin/busybox");
        assert!(c.networks.is_empty());
        assert!(p.networks.is_empty());
        assert_eq!(c.ports.len(), 2);
        assert!(c.ports.iter().all(|m| m.host == m.container));
        assert_eq!(c.mounts[0].target, "DATA_DIR");
        assert_eq!(
            c.mounts[0].source,
            MountSource::Volume("nuvol-site-data".into())
        );
        assert_eq!(c.memory, Some(64 << 20));
        assert_eq!(c.nano_cpus, Some(500_000_000));
        let bad = |svc: &str, top: &str| {
            plan(
                "site",
                &def(&format!(
                    "x-nuvol: {{driver: process}}\nservices:\n  web:\n{svc}{top}"
                )),
                &BTreeMap::new(),
            )
            .unwrap_err()
            .to_string()
        };
        let e = bad("    image: busybox\n    command: [/bin/true]\n", "");
        assert!(e.starts_with("services.web.image: not supported"), "{e}");
        assert!(e.contains("absolute path as entrypoint"), "{e}");
        for key in [
            "networks: [x]",
            "cap_add: [NET_ADMIN]",
            "hostname: h",
            "privileged: true",
        ] {
            let e = bad(&format!("    command: [/bin/true]\n    {key}\n"), "");
            let k = key.split(':').next().unwrap();
            assert!(
                e.starts_with(&format!("services.web.{k}: not supported")),
                "{e}"
            );
        }
        let e = bad("    command: [/bin/true]\n", "networks: {n: {}}\n");
        assert!(e.starts_with("networks: not supported"), "{e}");
        let e = bad("    command: [sleep, \"9\"]\n", "");
        assert!(e.contains("absolute path"), "{e}");
        let e = bad("    environment: {A: b}\n", "");
        assert!(e.contains("names its program"), "{e}");
        let e = bad("    command: [/bin/true]\n    ports: [\"80:8080\"]\n", "");
        assert!(e.contains("no mapping"), "{e}");
        let e = bad(
            "    command: [/bin/true]\n    volumes: [\"d:/data\"]\n",
            "volumes: {d: {}}\n",
        );
        assert!(e.contains("not an environment variable name"), "{e}");
        let e = bad("    command: [/bin/true]\n    volumes: [\"e:E\"]\n", "");
        assert!(e.contains("not declared"), "{e}");
    }

    #[test]
    fn docker_apps_keep_their_spec_hashes() {
        // The driver is not in a Docker app's specs: hashes (container
        // labels) of existing apps do not change with this version.
        let (p, m, _) = plan("web", &def(WEB), &vals(&[("PORT", "8081")])).unwrap();
        assert_eq!(m.driver, Driver::Docker);
        assert!(!serde_json::to_string(&m).unwrap().contains("driver"));
        assert!(!serde_json::to_string(&p.containers[0])
            .unwrap()
            .contains("process"));
    }

    const WEB: &str = r#"
services:
  web:
    image: nuvol-test/busybox:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["${PORT}:8080"]
    environment:
      GREETING: "hi $$HOME ${WHO:-all}"
    volumes: ["www:/www", "./conf:/etc/conf:ro"]
    restart: on-failure:3
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 2s
      retries: 2
    deploy:
      resources:
        limits: {memory: 64m, cpus: "0.5"}
    x-other: ignored
volumes:
  www: {}
x-nuvol:
  id: web
  version: "1.0"
  title: {en: A web server, ca: Un servidor web}
  parameters:
    - {name: PORT, type: port, default: "8080"}
    - {name: WHO, type: string}
  publish:
    - {type: http, port: "${PORT}", description: Web, txt: {path: /}}
"#;

    #[test]
    fn a_web_app_plans_with_its_parameters() {
        let (p, meta, values) = plan("site", &def(WEB), &vals(&[("PORT", "9000")])).unwrap();
        assert_eq!(values["PORT"], "9000");
        assert_eq!(meta.publish[0].port, 9000);
        assert_eq!(meta.title.get("ca"), "Un servidor web");
        let c = &p.containers[0];
        assert_eq!(c.name, "nuvol-site-web");
        assert_eq!(c.ports[0].host, 9000);
        assert_eq!(c.ports[0].container, 8080);
        assert_eq!(c.env, vec![("GREETING".into(), "hi $HOME all".into())]);
        assert_eq!(
            c.mounts[0].source,
            MountSource::Volume("nuvol-site-www".into())
        );
        assert_eq!(c.mounts[1].source, MountSource::AppDir("conf".into()));
        assert!(c.mounts[1].read_only);
        assert_eq!(c.restart, RestartPolicy::OnFailure(3));
        assert_eq!(c.memory, Some(64 << 20));
        assert_eq!(c.nano_cpus, Some(500_000_000));
        let h = c.health.as_ref().unwrap();
        assert_eq!(h.interval, Duration::from_secs(2));
        assert_eq!(h.retries, 2);
        assert_eq!(c.networks, vec!["nuvol-site-default".to_owned()]);
        assert_eq!(p.networks[0].name, "nuvol-site-default");
        assert_eq!(p.volumes[0].name, "nuvol-site-www");
        assert_eq!(p.main, "web");
    }

    #[test]
    fn unsupported_keys_are_named() {
        for (yaml, key) in [
            (
                "services: {web: {image: x, build: .}}",
                "services.web.build",
            ),
            (
                "services: {web: {image: x, privileged: true}}",
                "services.web.privileged",
            ),
            (
                "services: {web: {image: x, frobnicate: 1}}",
                "services.web.frobnicate",
            ),
            ("services: {web: {image: x}}\nsecrets: {}", "secrets"),
            (
                "services: {web: {image: x, deploy: {replicas: 2}}}",
                "services.web.deploy.replicas",
            ),
            (
                "services: {web: {image: x}}\nvolumes: {v: {external: true}}",
                "volumes.v.external",
            ),
        ] {
            let e = plan("a", &def(yaml), &BTreeMap::new()).unwrap_err();
            assert!(
                matches!(&e, AppError::Unsupported { key: k, .. } if k == key),
                "{yaml}: {e}"
            );
            assert!(e.to_string().contains("not supported by nuvol"), "{e}");
        }
    }

    #[test]
    fn bad_files_and_parameters_are_errors_naming_the_cause() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("", &[], "compose file"),
            ("services: [", &[], "compose file"),
            ("services: {}", &[], "no services"),
            (
                "services: {web: {command: x}}",
                &[],
                "services.web.image: is required",
            ),
            (
                "services: {web: {image: x, ports: ['80']}}",
                &[],
                "HOST:CONTAINER",
            ),
            (
                "services: {web: {image: x, ports: ['8000-8010:80']}}",
                &[],
                "ranges",
            ),
            (
                "services: {web: {image: x, volumes: ['/data']}}",
                &[],
                "anonymous volume",
            ),
            (
                "services: {web: {image: x, volumes: ['v:/data']}}",
                &[],
                "not declared",
            ),
            (
                "services: {web: {image: x, volumes: ['../x:/data']}}",
                &[],
                "'..'",
            ),
            (
                "services: {web: {image: x, environment: [HOME]}}",
                &[],
                "no value",
            ),
            (
                "services: {web: {image: x, environment: {A: $NOPE}}}",
                &[],
                "NOPE",
            ),
            (
                "services: {web: {image: x, depends_on: [db]}}",
                &[],
                "no service db",
            ),
            (
                "services: {web: {image: x, restart: sometimes}}",
                &[],
                "restart",
            ),
            (
                "services: {web: {image: x, mem_limit: 1k}}",
                &[],
                "at least 4m",
            ),
            (
                "services: {web: {image: x, labels: {nuvol.app: x}}}",
                &[],
                "agent's",
            ),
            (
                "services: {a: {image: x, ports: ['80:80']}, b: {image: y, ports: ['80:81']}}",
                &[],
                "also published",
            ),
            (
                "services: {a: {image: x, depends_on: [b]}, b: {image: y, depends_on: [a]}}",
                &[],
                "cycle",
            ),
            (
                "services: {web: {image: x}}\nx-nuvol: {parameters: [{name: P, required: true}]}",
                &[],
                "parameter P is required",
            ),
            (
                "services: {web: {image: x}}\nx-nuvol: {parameters: [{name: P, type: port}]}",
                &[("P", "http")],
                "parameter P",
            ),
            (
                "services: {web: {image: x}}",
                &[("Q", "1")],
                "Q is not declared",
            ),
            (
                "services: {web: {image: x}}\nx-nuvol: {main: db}",
                &[],
                "x-nuvol.main",
            ),
            (
                "services: {web: {image: x}}\nx-nuvol: {bogus: 1}",
                &[],
                "x-nuvol",
            ),
        ];
        for (yaml, given, want) in cases {
            let e = plan("a", &def(yaml), &vals(given)).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml}: {e:?} lacks {want:?}");
        }
        assert!(plan(
            "Bad_Name",
            &def("services: {web: {image: x}}"),
            &BTreeMap::new()
        )
        .is_err());
    }

    #[test]
    fn interpolation_follows_compose() {
        let v = vals(&[("A", "1"), ("E", "")]);
        let i = |s: &str| interpolate(s, &v, "t");
        assert_eq!(
            i("$A-${A}-$$A-${E:-d}-${E-d}-${Z:-z}-$").unwrap(),
            "1-1-$A-d--z-$"
        );
        assert!(i("${E:?needed}")
            .unwrap_err()
            .to_string()
            .contains("needed"));
        assert!(i("${Z}").is_err());
        assert!(i("${A").is_err());
        assert!(i("${1A}").is_err());
        assert_eq!(i("${Z:-${A}x}").unwrap(), "1x");
    }

    #[test]
    fn short_ports_and_words() {
        let p = short_port("127.0.0.1:8080:80/udp", "p").unwrap();
        assert_eq!((p.host, p.container, p.proto), (8080, 80, Proto::Udp));
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        let p = short_port("[::1]:8080:80", "p").unwrap();
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        assert!(short_port("x:80", "p").is_err());
        assert_eq!(
            split_words(r#"sh -c "echo 'a b'" ''"#),
            vec!["sh", "-c", "echo 'a b'", ""]
        );
    }

    #[test]
    fn env_files_and_sizes() {
        let mut d = def("services: {web: {image: x, env_file: app.env, environment: {B: '2'}}}");
        d.env_files
            .insert("app.env".into(), "# c\nA=1\nexport B=\"x y\"\n\n".into());
        let (p, _, _) = plan("a", &d, &BTreeMap::new()).unwrap();
        assert_eq!(
            p.containers[0].env,
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        assert!(parse_env_file("NOEQUALS", "f").is_err());
        assert_eq!(parse_bytes("1.5g", "m").unwrap(), 1_610_612_736);
        assert!(parse_bytes("lots", "m").is_err());
    }
}
