//! Cloudy's (Guifi.net) docker templates: one JSON object per app, or a
//! list of them. Cloudy ran each as one container and announced it with
//! avahi-ps under the app's name; so does the import (the first host port,
//! the app name as the service type).

use super::{
    cut, finish, get, lit, map_arch, part_name, sanitize_id, sanitize_type, show, Batch, Empty,
    Format, Imported, NuvolBlock, Ordered, OutCompose, OutPublish, OutService, PortRef, J,
    MAX_TEMPLATES,
};
use crate::error::AppError;
use crate::meta::Localized;

pub(super) fn import(v: &J) -> Result<Batch, AppError> {
    let list: Vec<&J> = match v {
        J::Arr(a) => a.iter().collect(),
        one => vec![one],
    };
    let mut out = Batch::default();
    for (i, t) in list.into_iter().enumerate() {
        if i >= MAX_TEMPLATES {
            out.skipped
                .push(format!("only the first {MAX_TEMPLATES} templates are read"));
            break;
        }
        let at = if matches!(v, J::Arr(_)) {
            format!("[{i}]")
        } else {
            String::new()
        };
        match one(t, &at) {
            Ok(imp) => out.apps.push(imp),
            Err(e) => {
                let name = match t {
                    J::Obj(o) => get(o, "appname")
                        .or_else(|| get(o, "name"))
                        .and_then(J::as_str)
                        .map(|n| format!(" ({})", cut(n, 40)))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                out.skipped.push(format!("Cloudy template{at}{name}: {e}"));
            }
        }
    }
    Ok(out)
}

/// A port of a Cloudy template: `8080` or `8080/udp`.
fn port(s: &str, at: &str) -> Result<(u16, Option<&'static str>), AppError> {
    let (n, proto) = match s.trim().split_once('/') {
        Some((n, "tcp")) => (n, None),
        Some((n, "udp")) => (n, Some("udp")),
        Some((_, p)) => {
            return Err(AppError::invalid(
                at,
                format!("protocol {:?}: tcp or udp", cut(p, 20)),
            ))
        }
        None => (s.trim(), None),
    };
    let p = n
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| AppError::invalid(at, format!("{:?} is not a port", cut(s, 20))))?;
    Ok((p, proto))
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

fn one(t: &J, at: &str) -> Result<Imported, AppError> {
    let J::Obj(o) = t else {
        return Err(AppError::invalid(
            if at.is_empty() { "template" } else { at },
            format!("is {}, not an object", t.kind()),
        ));
    };
    let appname = text(o, "appname")?;
    let name = text(o, "name")?;
    let description = text(o, "description")?.unwrap_or_default();
    let title = appname.or(name).unwrap_or_default();
    let id =
        sanitize_id(name.or(appname).ok_or_else(|| {
            AppError::invalid("appname", "a template needs an appname or a name")
        })?);
    let image_line = text(o, "image")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| AppError::invalid("image", "is required"))?;
    let mut report = Vec::new();
    let mut words = image_line.split_whitespace();
    let image = words.next().unwrap_or_default().to_owned();
    let args: Vec<String> = words.map(lit).collect();
    let mut svc = OutService {
        image,
        command: (!args.is_empty()).then_some(args),
        restart: "unless-stopped".into(),
        ..OutService::default()
    };
    let mut volumes: Ordered<Empty> = Ordered::default();
    // (host, container, proto), in the template's order.
    let mut ports: Vec<(u16, u16, Option<&'static str>)> = Vec::new();
    let mut add_port = |h: &str, c: &str| -> Result<(), AppError> {
        let (hp, hproto) = port(h, "ports")?;
        let (cp, cproto) = port(c, "ports")?;
        ports.push((hp, cp, hproto.or(cproto)));
        Ok(())
    };
    match get(o, "ports") {
        None | Some(J::Null) => {}
        Some(J::Obj(m)) => {
            for (h, c) in m {
                add_port(h, &c.as_text().unwrap_or_default())?;
            }
        }
        Some(J::Arr(a)) => {
            for x in a {
                match x {
                    J::Obj(m) => {
                        for (h, c) in m {
                            add_port(h, &c.as_text().unwrap_or_default())?;
                        }
                    }
                    J::Str(s) => match s.split_once(':') {
                        Some((h, c)) => add_port(h, c)?,
                        None => add_port(s, s)?,
                    },
                    J::Num(n) => add_port(&n.to_string(), &n.to_string())?,
                    other => {
                        return Err(AppError::invalid(
                            "ports",
                            format!(
                                "an entry is {}, not {{\"host\": \"container\"}}",
                                other.kind()
                            ),
                        ))
                    }
                }
            }
        }
        Some(v) => {
            return Err(AppError::invalid(
                "ports",
                format!("is {}, not {{\"host\": \"container\"}}", v.kind()),
            ))
        }
    }
    let mut network_mode: Option<String> = None;
    // Options: environment as a map, or docker run arguments (`-e K=V`).
    match get(o, "options") {
        None | Some(J::Null) => {}
        Some(J::Obj(m)) => {
            for (k, v) in m {
                env(&mut svc, k, &v.as_text().unwrap_or_default(), &mut report)?;
            }
        }
        Some(J::Arr(a)) => {
            let mut words = Vec::new();
            for x in a {
                match x.as_text() {
                    // One argument per item (`"TITLE=Guifi pad"` keeps its
                    // space); an item `-e K=V` is a flag and its value.
                    Some(s) => match s.trim().split_once(char::is_whitespace) {
                        Some((f, v)) if f.starts_with('-') => {
                            words.push(f.to_owned());
                            words.push(v.trim().to_owned());
                        }
                        _ => words.push(s.trim().to_owned()),
                    },
                    None => report.push(format!("options: {} not carried over", show(x))),
                }
            }
            run_args(
                &words,
                &mut svc,
                &mut volumes,
                &mut network_mode,
                &mut report,
            )?;
        }
        Some(J::Str(s)) => {
            let words = super::words(s);
            run_args(
                &words,
                &mut svc,
                &mut volumes,
                &mut network_mode,
                &mut report,
            )?;
        }
        Some(v) => {
            return Err(AppError::invalid(
                "options",
                format!("is {}, not environment", v.kind()),
            ))
        }
    }
    match get(o, "links") {
        None | Some(J::Null) => {}
        Some(J::Arr(a)) if a.is_empty() => {}
        Some(J::Obj(m)) if m.is_empty() => {}
        Some(J::Str(s)) if s.trim().is_empty() => {}
        Some(v) => report.push(format!(
            "links: {} not carried over (services reach each other by name; another app's container is reached through its published port)",
            show(v)
        )),
    }
    match get(o, "misc") {
        None | Some(J::Null) => {}
        Some(J::Obj(m)) => {
            for (k, v) in m {
                let val = v.as_text().unwrap_or_default();
                match (k.as_str(), val.as_str()) {
                    ("net" | "network", "host") => network_mode = Some("host".into()),
                    ("net" | "network", "bridge" | "default") => {}
                    ("restart", r @ ("always" | "no" | "unless-stopped" | "on-failure")) => {
                        svc.restart = r.into();
                    }
                    ("hostname", h) if !h.is_empty() => svc.hostname = Some(lit(h)),
                    _ => report.push(format!("misc.{k}: {} not carried over", show(v))),
                }
            }
        }
        Some(v) => report.push(format!("misc: {} not carried over", show(v))),
    }
    match get(o, "volumes") {
        None | Some(J::Null) => {}
        Some(J::Obj(m)) => {
            for (h, c) in m {
                volume(
                    h,
                    &c.as_text().unwrap_or_default(),
                    &mut svc,
                    &mut volumes,
                    &mut report,
                )?;
            }
        }
        Some(J::Arr(a)) => {
            for x in a {
                let s = x.as_text().unwrap_or_default();
                match s.split_once(':') {
                    Some((h, c)) => volume(h, c, &mut svc, &mut volumes, &mut report)?,
                    None => volume(&s, &s, &mut svc, &mut volumes, &mut report)?,
                }
            }
        }
        Some(v) => report.push(format!("volumes: {} not carried over", show(v))),
    }
    let mut architectures = Vec::new();
    let arches: Vec<String> = match get(o, "arch").or_else(|| get(o, "architectures")) {
        None | Some(J::Null) => Vec::new(),
        Some(J::Arr(a)) => a.iter().filter_map(J::as_text).collect(),
        Some(J::Str(s)) => s
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(v) => {
            report.push(format!("arch: {} not carried over", show(v)));
            Vec::new()
        }
    };
    for a in arches {
        match map_arch(&a) {
            Some(d) if !architectures.iter().any(|x| x == d) => architectures.push(d.to_owned()),
            Some(_) => {}
            None => report.push(format!(
                "arch: {:?} is not an architecture nuvol knows; left out",
                cut(&a, 20)
            )),
        }
    }
    for (k, v) in o {
        if !matches!(
            k.as_str(),
            "appname"
                | "name"
                | "description"
                | "image"
                | "ports"
                | "options"
                | "links"
                | "misc"
                | "arch"
                | "architectures"
                | "volumes"
        ) {
            report.push(format!("{k}: {} not carried over", show(v)));
        }
    }
    // With host networking the container's ports are the host's: Docker
    // ignores port mappings, so none are written; the container port is
    // the one published.
    let host_net = network_mode.as_deref() == Some("host");
    if host_net && !ports.is_empty() {
        report.push(
            "ports: with host networking (misc.net) the app listens on the host's ports directly; no mappings written".into(),
        );
    } else {
        let mut seen = std::collections::BTreeSet::new();
        for (h, c, proto) in &ports {
            if !seen.insert((*h, *proto)) {
                report.push(format!("ports: host port {h} given twice; the first kept"));
                continue;
            }
            svc.ports.push(match proto {
                Some(p) => format!("{h}:{c}/{p}"),
                None => format!("{h}:{c}"),
            });
        }
    }
    svc.network_mode = network_mode;
    let stype = sanitize_type(name.or(appname).unwrap_or("app"));
    let publish = match ports.iter().find(|p| p.2.is_none()).or(ports.first()) {
        Some((h, c, _)) => vec![OutPublish {
            service: None,
            stype,
            port: PortRef::N(if host_net { *c } else { *h }),
            description: Some(cut(
                if description.is_empty() {
                    title
                } else {
                    description
                },
                200,
            )),
            txt: Default::default(),
            checks: Vec::new(),
        }],
        None => {
            report.push("publish: the template has no port; nothing is published".into());
            Vec::new()
        }
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
            title: Localized::One(cut(title, 100)),
            description: Localized::One(cut(description, 2000)),
            architectures,
            publish,
            ..NuvolBlock::default()
        },
    };
    finish(id, &app, report, Format::Cloudy)
}

fn env(svc: &mut OutService, k: &str, v: &str, report: &mut Vec<String>) -> Result<(), AppError> {
    let k = k.trim();
    if k.is_empty() || k.contains(['=', '\0', ' ']) {
        report.push(format!(
            "options: environment name {:?} not carried over",
            cut(k, 40)
        ));
        return Ok(());
    }
    svc.environment.set(k.to_owned(), lit(v));
    Ok(())
}

fn volume(
    host: &str,
    container: &str,
    svc: &mut OutService,
    volumes: &mut Ordered<Empty>,
    report: &mut Vec<String>,
) -> Result<(), AppError> {
    let (container, ro) = match container.strip_suffix(":ro") {
        Some(c) => (c, ":ro"),
        None => (container, ""),
    };
    if !container.starts_with('/') || container.contains(':') {
        report.push(format!(
            "volumes: {:?} not carried over (the target is not an absolute path)",
            cut(container, 60)
        ));
        return Ok(());
    }
    if host.starts_with('/') && !host.contains(':') && !host.split('/').any(|c| c == "..") {
        report.push(format!(
            "volumes: {host} is a path on the host; kept, but make sure it exists on this node"
        ));
        svc.volumes.push(lit(&format!("{host}:{container}{ro}")));
    } else {
        let name = part_name(host.trim_start_matches('/'), "data");
        volumes.set(name.clone(), Empty {});
        svc.volumes.push(lit(&format!("{name}:{container}{ro}")));
    }
    Ok(())
}

/// `docker run` arguments from a template's options: `-e K=V`, `-v H:C`,
/// `-p H:C`, `--net=host`; anything else reported.
fn run_args(
    words: &[String],
    svc: &mut OutService,
    volumes: &mut Ordered<Empty>,
    network_mode: &mut Option<String>,
    report: &mut Vec<String>,
) -> Result<(), AppError> {
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f, Some(v.to_owned())),
            _ => (w, None),
        };
        let takes = matches!(
            flag,
            "-e" | "--env"
                | "-v"
                | "--volume"
                | "-p"
                | "--publish"
                | "--net"
                | "--network"
                | "-h"
                | "--hostname"
        );
        let value = if takes {
            match inline {
                Some(v) => Some(v),
                None => {
                    i += 1;
                    words.get(i).cloned()
                }
            }
        } else {
            None
        };
        i += 1;
        match (flag, value) {
            ("-e" | "--env", Some(kv)) => match kv.split_once('=') {
                Some((k, v)) => env(svc, k, v, report)?,
                None => report.push(format!(
                    "options: -e {} has no value; not carried over",
                    cut(&kv, 40)
                )),
            },
            ("-v" | "--volume", Some(v)) => match v.split_once(':') {
                Some((h, c)) => volume(h, c, svc, volumes, report)?,
                None => volume(&v, &v, svc, volumes, report)?,
            },
            ("--net" | "--network", Some(n)) if n == "host" => *network_mode = Some("host".into()),
            ("--net" | "--network", Some(n)) if n == "bridge" => {}
            ("-h" | "--hostname", Some(h)) => svc.hostname = Some(lit(&h)),
            // A bare K=V (Cloudy wrote environment without -e, too).
            (kv, None) if !kv.starts_with('-') && kv.contains('=') => {
                if let Some((k, v)) = kv.split_once('=') {
                    env(svc, k, v, report)?;
                }
            }
            (f, v) => report.push(format!(
                "options: {}{} not carried over",
                cut(f, 40),
                v.map(|v| format!(" {}", cut(&v, 40))).unwrap_or_default()
            )),
        }
    }
    Ok(())
}
