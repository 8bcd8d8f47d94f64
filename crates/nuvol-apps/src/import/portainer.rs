//! Portainer app templates: `{"version": "2"|"3", "templates": [...]}`
//! (or v1's bare list). Container templates (type 1) become one-service
//! apps, their `env` entries parameters; stack templates (types 2 and 3)
//! live in a Git repository nuvol does not fetch, and are skipped with a
//! reason naming it.

use super::{
    cut, finish, get, lit, looks_secret, param_name, part_name, sanitize_id, sanitize_type, show,
    words, Batch, Empty, Format, Imported, NuvolBlock, Ordered, OutCompose, OutPublish, OutService,
    PortRef, J, MAX_TEMPLATES,
};
use crate::error::AppError;
use crate::meta::{Localized, Param, ParamKind};
use std::collections::BTreeSet;

pub(super) fn import(v: &J) -> Result<Batch, AppError> {
    let mut out = Batch::default();
    let list = match v {
        J::Arr(a) => a,
        J::Obj(o) => {
            match get(o, "version").and_then(J::as_text).as_deref() {
                None | Some("2" | "3") => {}
                Some(other) => out.skipped.push(format!(
                    "version {:?}: read as version 3 (nuvol knows 2 and 3)",
                    cut(other, 10)
                )),
            }
            match get(o, "templates") {
                Some(J::Arr(a)) => a,
                Some(t) => {
                    return Err(AppError::invalid(
                        "templates",
                        format!("is {}, not a list of templates", t.kind()),
                    ))
                }
                None => return Err(AppError::invalid("templates", "is missing")),
            }
        }
        other => {
            return Err(AppError::invalid(
                "templates",
                format!("the file is {}, not Portainer templates", other.kind()),
            ))
        }
    };
    let mut ids = BTreeSet::new();
    for (i, t) in list.iter().enumerate() {
        if i >= MAX_TEMPLATES {
            out.skipped
                .push(format!("only the first {MAX_TEMPLATES} templates are read"));
            break;
        }
        let title = match t {
            J::Obj(o) => get(o, "title")
                .and_then(J::as_str)
                .map(|s| format!(" ({})", cut(s, 40)))
                .unwrap_or_default(),
            _ => String::new(),
        };
        match one(t, &mut ids) {
            Ok(imp) => out.apps.push(imp),
            Err(e) => out.skipped.push(format!("templates[{i}]{title}: {e}")),
        }
    }
    Ok(out)
}

fn text<'a>(o: &'a [(String, J)], k: &str) -> Result<Option<&'a str>, AppError> {
    match get(o, k) {
        None | Some(J::Null) => Ok(None),
        Some(J::Str(s)) => Ok(Some(s)),
        Some(v) => Err(AppError::invalid(
            k,
            format!("is {}, not a string", v.kind()),
        )),
    }
}

fn list<'a>(o: &'a [(String, J)], k: &str) -> Result<&'a [J], AppError> {
    match get(o, k) {
        None | Some(J::Null) => Ok(&[]),
        Some(J::Arr(a)) => Ok(a),
        Some(v) => Err(AppError::invalid(k, format!("is {}, not a list", v.kind()))),
    }
}

/// A Portainer port: `[IP:][HOST:]CONTAINER[/PROTO]`. Without a host port
/// Portainer lets Docker pick one; nuvol publishes known ports, so the
/// container port is used (and reported).
fn port(s: &str, report: &mut Vec<String>) -> Result<Option<(String, u16, u16, bool)>, AppError> {
    let at = "ports";
    let (spec, proto) = match s.trim().rsplit_once('/') {
        Some((a, p @ ("tcp" | "udp"))) => (a, p),
        Some((_, p)) => {
            return Err(AppError::invalid(
                at,
                format!(
                    "{:?}: protocol {:?} is not tcp or udp",
                    cut(s, 30),
                    cut(p, 10)
                ),
            ))
        }
        None => (s.trim(), "tcp"),
    };
    if spec.contains('-') {
        report.push(format!(
            "ports: {:?} not carried over (port ranges are not supported)",
            cut(s, 30)
        ));
        return Ok(None);
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let num = |x: &str| {
        x.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| *n != 0)
            .ok_or_else(|| AppError::invalid(at, format!("{:?} is not a port", cut(s, 30))))
    };
    let (ip, host, container) = match parts.as_slice() {
        [c] => {
            let c = num(c)?;
            report.push(format!(
                "ports: {s} has no host port; published on host port {c} (change it with the app's ports if taken)"
            ));
            (None, c, c)
        }
        [h, c] => (None, num(h)?, num(c)?),
        [ip, h, c] => {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(AppError::invalid(
                    at,
                    format!("{:?}: bad host address", cut(s, 30)),
                ));
            }
            (Some(*ip), num(h)?, num(c)?)
        }
        _ => {
            return Err(AppError::invalid(
                at,
                format!("{:?}: [HOST:]CONTAINER[/PROTO]", cut(s, 30)),
            ))
        }
    };
    let mut out = String::new();
    if let Some(ip) = ip {
        out.push_str(ip);
        out.push(':');
    }
    out.push_str(&format!("{host}:{container}"));
    if proto == "udp" {
        out.push_str("/udp");
    }
    Ok(Some((out, host, container, proto == "udp")))
}

fn one(t: &J, ids: &mut BTreeSet<String>) -> Result<Imported, AppError> {
    let J::Obj(o) = t else {
        return Err(AppError::invalid(
            "template",
            format!("is {}, not an object", t.kind()),
        ));
    };
    let kind = get(o, "type")
        .and_then(J::as_text)
        .unwrap_or_else(|| "1".into());
    match kind.as_str() {
        "1" | "container" => {}
        "2" | "3" | "stack" | "compose" => {
            let repo = match get(o, "repository") {
                Some(J::Obj(r)) => format!(
                    "{} ({})",
                    get(r, "url")
                        .and_then(J::as_str)
                        .map_or("?".into(), |u| cut(u, 100)),
                    get(r, "stackfile")
                        .and_then(J::as_str)
                        .map_or("?".into(), |u| cut(u, 100))
                ),
                _ => "no repository given".into(),
            };
            return Err(AppError::invalid(
                "type",
                format!("a stack template needs its repository {repo}; stack templates are not carried over (import the stack's Compose file instead)"),
            ));
        }
        k => {
            return Err(AppError::invalid(
                "type",
                format!("{:?}: 1 (container), 2 or 3 (stack)", cut(k, 10)),
            ))
        }
    }
    if let Some(p) = text(o, "platform")? {
        if !p.eq_ignore_ascii_case("linux") {
            return Err(AppError::invalid(
                "platform",
                format!("{:?}: nuvol runs Linux containers", cut(p, 20)),
            ));
        }
    }
    let title = text(o, "title")?.unwrap_or_default();
    let name = text(o, "name")?;
    let mut id = sanitize_id(name.unwrap_or(if title.is_empty() { "app" } else { title }));
    // Two templates may share a title; ids within a file are unique.
    let base = id.clone();
    let mut n = 2;
    while ids.contains(&id) {
        let suffix = format!("-{n}");
        id = format!("{}{suffix}", &base[..base.len().min(40 - suffix.len())]).replace("--", "-");
        n += 1;
    }
    ids.insert(id.clone());
    let mut report = Vec::new();
    let image = text(o, "image")?
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AppError::invalid("image", "is required"))?;
    let image = match text(o, "registry")?
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        Some(r) => format!("{}/{image}", r.trim_end_matches('/')),
        None => image.to_owned(),
    };
    if image.contains(char::is_whitespace) {
        return Err(AppError::invalid(
            "image",
            format!("{:?} holds spaces", cut(&image, 60)),
        ));
    }
    let mut svc = OutService {
        image,
        restart: "unless-stopped".into(),
        ..OutService::default()
    };
    if let Some(c) = text(o, "command")?.filter(|c| !c.trim().is_empty()) {
        svc.command = Some(words(c).iter().map(|w| lit(w)).collect());
    }
    let mut parameters: Vec<Param> = Vec::new();
    for (i, e) in list(o, "env")?.iter().enumerate() {
        let at = format!("env[{i}]");
        let J::Obj(e) = e else {
            return Err(AppError::invalid(
                &at,
                format!("is {}, not an object", e.kind()),
            ));
        };
        let ename = text(e, "name")
            .map_err(|x| AppError::invalid(&at, x))?
            .map(str::trim)
            .filter(|n| {
                !n.is_empty() && !n.contains(['=', '\0']) && !n.contains(char::is_whitespace)
            })
            .ok_or_else(|| {
                AppError::invalid(&format!("{at}.name"), "is required (an environment name)")
            })?;
        let label = get(e, "label").and_then(J::as_text).unwrap_or_default();
        let desc = get(e, "description")
            .and_then(J::as_text)
            .unwrap_or_default();
        let default = get(e, "default").and_then(J::as_text);
        let preset = matches!(get(e, "preset"), Some(J::Bool(true)));
        if preset {
            // A preset value is not asked for: it is the template's.
            svc.environment.set(
                ename.to_owned(),
                lit(default.as_deref().unwrap_or_default()),
            );
            continue;
        }
        let pname = param_name(ename);
        if parameters.iter().any(|p| p.name == pname) {
            report.push(format!(
                "env {ename}: given twice (as parameter {pname}); the first kept"
            ));
            continue;
        }
        let mut text_desc = [label.trim(), desc.trim()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(": ");
        let mut default = default.filter(|d| !d.is_empty());
        if let Some(sel) = get(e, "select") {
            let J::Arr(sel) = sel else {
                return Err(AppError::invalid(
                    &format!("{at}.select"),
                    format!("is {}, not a list", sel.kind()),
                ));
            };
            let mut values = Vec::new();
            let mut chosen = None;
            for s in sel {
                if let J::Obj(s) = s {
                    if let Some(v) = get(s, "value").and_then(J::as_text) {
                        if matches!(get(s, "default"), Some(J::Bool(true))) {
                            chosen = Some(v.clone());
                        }
                        let t = get(s, "text").and_then(J::as_text).unwrap_or_default();
                        values.push(if t.is_empty() || t == v {
                            v
                        } else {
                            format!("{v} ({t})")
                        });
                    }
                }
            }
            let first = sel.iter().find_map(|s| match s {
                J::Obj(s) => get(s, "value").and_then(J::as_text),
                _ => None,
            });
            default = chosen.or(first).or(default);
            if !values.is_empty() {
                text_desc = format!("{text_desc} (one of: {})", values.join(", "));
            }
            report.push(format!(
                "env {ename}: select options are listed in parameter {pname}'s description; the value is not restricted to them"
            ));
        }
        let secret = looks_secret(ename);
        parameters.push(Param {
            name: pname.clone(),
            kind: if secret {
                ParamKind::Password
            } else {
                ParamKind::String
            },
            required: secret && default.is_none(),
            default,
            description: Localized::One(cut(&text_desc, 300)),
        });
        svc.environment
            .set(ename.to_owned(), format!("${{{pname}}}"));
    }
    let mut network_mode = None;
    match text(o, "network")?.map(str::trim) {
        None | Some("" | "bridge") => {}
        Some("host") => network_mode = Some("host".to_owned()),
        Some(n) => report.push(format!(
            "network: {:?} not carried over (an app has its own network)",
            cut(n, 40)
        )),
    }
    let host_net = network_mode.is_some();
    let mut first_port = None;
    let mut seen = BTreeSet::new();
    for p in list(o, "ports")? {
        let Some(s) = p.as_text() else {
            return Err(AppError::invalid(
                "ports",
                format!("an entry is {}, not \"HOST:CONTAINER/PROTO\"", p.kind()),
            ));
        };
        if let Some((spec, host, container, udp)) = port(&s, &mut report)? {
            if !seen.insert((host, udp)) {
                report.push(format!(
                    "ports: host port {host} given twice; the first kept"
                ));
                continue;
            }
            if first_port.is_none() && !udp {
                first_port = Some((host, container));
            }
            if !host_net {
                svc.ports.push(spec);
            }
        }
    }
    if host_net && !seen.is_empty() {
        report.push("ports: with host networking the app listens on the host's ports directly; no mappings written".into());
    }
    let mut volumes: Ordered<Empty> = Ordered::default();
    for (i, v) in list(o, "volumes")?.iter().enumerate() {
        let at = format!("volumes[{i}]");
        let J::Obj(v) = v else {
            return Err(AppError::invalid(
                &at,
                format!("is {}, not an object", v.kind()),
            ));
        };
        let container = text(v, "container")
            .map_err(|x| AppError::invalid(&at, x))?
            .map(str::trim)
            .filter(|c| c.starts_with('/') && !c.contains(':'))
            .ok_or_else(|| {
                AppError::invalid(&format!("{at}.container"), "is required (an absolute path)")
            })?;
        let ro = if matches!(get(v, "readonly"), Some(J::Bool(true))) {
            ":ro"
        } else {
            ""
        };
        match text(v, "bind")
            .map_err(|x| AppError::invalid(&at, x))?
            .map(str::trim)
        {
            Some(b) if !b.is_empty() => {
                if !b.starts_with('/') || b.contains(':') || b.split('/').any(|c| c == "..") {
                    return Err(AppError::invalid(
                        &format!("{at}.bind"),
                        format!("{:?} is not an absolute path", cut(b, 60)),
                    ));
                }
                report.push(format!("volumes: {b} is a path on the host; kept, but make sure it exists on this node"));
                svc.volumes.push(lit(&format!("{b}:{container}{ro}")));
            }
            _ => {
                // Portainer makes an anonymous volume, lost when the
                // container is replaced; nuvol names it after the path.
                let mut name = part_name(container.trim_start_matches('/'), "data");
                if volumes.0.iter().any(|(n, _)| *n == name) {
                    name = format!("{name}-{i}");
                }
                report.push(format!("volumes: {container} becomes the named volume {name} (Portainer made an anonymous one)"));
                volumes.set(name.clone(), Empty {});
                svc.volumes.push(lit(&format!("{name}:{container}{ro}")));
            }
        }
    }
    for (i, l) in list(o, "labels")?.iter().enumerate() {
        let J::Obj(l) = l else {
            return Err(AppError::invalid(
                &format!("labels[{i}]"),
                format!("is {}, not an object", l.kind()),
            ));
        };
        let (Some(k), v) = (
            get(l, "name").and_then(J::as_text),
            get(l, "value").and_then(J::as_text),
        ) else {
            report.push(format!("labels[{i}]: no name; not carried over"));
            continue;
        };
        if k.starts_with(crate::plan::LABEL_PREFIX) || k.is_empty() {
            report.push(format!(
                "labels: {} not carried over (labels {}* are the agent's)",
                cut(&k, 40),
                crate::plan::LABEL_PREFIX
            ));
            continue;
        }
        svc.labels.set(k, lit(&v.unwrap_or_default()));
    }
    match text(o, "restart_policy")?.map(str::trim) {
        None | Some("") => {}
        Some(r @ ("always" | "unless-stopped" | "on-failure" | "no")) => svc.restart = r.into(),
        Some(r) => report.push(format!(
            "restart_policy: {:?} not carried over; unless-stopped",
            cut(r, 20)
        )),
    }
    if let Some(h) = text(o, "hostname")?.filter(|h| !h.trim().is_empty()) {
        svc.hostname = Some(lit(h.trim()));
    }
    if matches!(get(o, "privileged"), Some(J::Bool(true))) {
        report.push("privileged: dropped — apps run without extra privileges; the app may not work without it (granting it would hand it the whole host)".into());
    }
    if matches!(get(o, "interactive"), Some(J::Bool(true))) {
        svc.tty = true;
        report.push("interactive: carried over as tty (no stdin is attached)".into());
    }
    svc.network_mode = network_mode;
    let category = match get(o, "categories") {
        Some(J::Arr(c)) => c
            .iter()
            .find_map(J::as_text)
            .map(|c| c.to_ascii_lowercase()),
        _ => None,
    }
    .unwrap_or_default();
    let icon = text(o, "logo")?
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned());
    let description = text(o, "description")?.unwrap_or_default();
    if let Some(n) = text(o, "note")?.filter(|n| !n.trim().is_empty()) {
        report.push(format!(
            "note: {:?} not carried over (read it before installing)",
            cut(n, 80)
        ));
    }
    for (k, v) in o {
        if !matches!(
            k.as_str(),
            "type"
                | "title"
                | "name"
                | "description"
                | "categories"
                | "platform"
                | "logo"
                | "image"
                | "registry"
                | "ports"
                | "volumes"
                | "env"
                | "restart_policy"
                | "command"
                | "network"
                | "privileged"
                | "interactive"
                | "hostname"
                | "labels"
                | "note"
                | "id"
                | "administrator_only"
                | "maintainer"
        ) {
            report.push(format!("{k}: {} not carried over", show(v)));
        }
    }
    let publish = match first_port {
        Some((host, container)) => {
            let stype = match container {
                80 | 8000 | 8080 | 8081 | 3000 | 5000 | 9000 => "http".to_owned(),
                443 | 8443 | 9443 => "https".to_owned(),
                _ => sanitize_type(&id),
            };
            report.push(format!(
                "publish: the first TCP port, {host}, is published as type {stype} (Portainer templates do not say what a port serves)"
            ));
            vec![OutPublish {
                service: None,
                stype,
                port: PortRef::N(if host_net { container } else { host }),
                description: Some(cut(if title.is_empty() { &id } else { title }, 100)),
                txt: Default::default(),
                checks: Vec::new(),
            }]
        }
        None => Vec::new(),
    };
    let service = part_name(&id, "app");
    let mut services = Ordered::default();
    services.set(service.clone(), svc);
    let app = OutCompose {
        services,
        volumes,
        nuvol: NuvolBlock {
            id: id.clone(),
            main: Some(service),
            title: Localized::One(cut(if title.is_empty() { &id } else { title }, 100)),
            description: Localized::One(cut(description, 2000)),
            category,
            icon,
            parameters,
            publish,
            ..NuvolBlock::default()
        },
    };
    finish(id, &app, report, Format::Portainer)
}
