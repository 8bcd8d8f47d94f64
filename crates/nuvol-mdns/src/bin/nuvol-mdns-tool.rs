//! A small driver of `nuvol-mdns` for tests and manual experiments.
//!
//! ```text
//! nuvol-mdns-tool --hostname NAME [--addr IP]... [--interface IFNAME]... [--import]
//! ```
//!
//! Prints `ready` once started, then reads commands from stdin, one a line:
//! - `service TYPE PORT TXT DESCRIPTION...` adds a service to the pending
//!   list (`TXT` is avahi-ps style `a=1&b=2`, or `-` for none);
//! - `apply` calls `set_services` with the pending list and prints `applied`
//!   (or `error: ...`);
//! - `clear` empties the pending list.
//!
//! With `--import`, imported services are printed as JSON lines:
//! `{"event":"found","type":..,"instance":..,"host":..,"addrs":[..],"port":..,"txt":{..}}`
//! and `{"event":"lost","type":..,"instance":..}`.
//!
//! Stdin closing (or a signal) ends it; services are unregistered first.

use nuvol_mdns::{ImportEvent, Mdns, MdnsConfig, MdnsService};
use std::io::Write;
use tokio::io::AsyncBufReadExt;

fn usage() -> ! {
    eprintln!(
        "usage: nuvol-mdns-tool --hostname NAME [--addr IP]... [--interface IFNAME]... [--import]"
    );
    std::process::exit(2)
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn event_json(ev: &ImportEvent) -> String {
    match ev {
        ImportEvent::Found(s) => {
            let addrs: Vec<String> = s.addrs.iter().map(|a| json_str(&a.to_string())).collect();
            let txt: Vec<String> = s
                .txt
                .iter()
                .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
                .collect();
            format!(
                "{{\"event\":\"found\",\"type\":{},\"instance\":{},\"host\":{},\"addrs\":[{}],\"port\":{},\"txt\":{{{}}}}}",
                json_str(&s.stype),
                json_str(&s.instance),
                json_str(&s.host),
                addrs.join(","),
                s.port,
                txt.join(",")
            )
        }
        ImportEvent::Lost { stype, instance } => format!(
            "{{\"event\":\"lost\",\"type\":{},\"instance\":{}}}",
            json_str(stype),
            json_str(instance)
        ),
    }
}

fn parse_service(rest: &str) -> Result<MdnsService, String> {
    let mut it = rest.splitn(4, ' ');
    let (Some(stype), Some(port), Some(txt), Some(desc)) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err("expected: service TYPE PORT TXT DESCRIPTION".into());
    };
    let port = port.parse::<u16>().map_err(|e| format!("port: {e}"))?;
    let mut pairs = Vec::new();
    if txt != "-" {
        for kv in txt.split('&') {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("bad TXT {kv:?}"))?;
            pairs.push((k.to_owned(), v.to_owned()));
        }
    }
    Ok(MdnsService {
        stype: stype.to_owned(),
        instance: desc.to_owned(),
        port,
        txt: pairs,
    })
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber_init();
    let mut config = MdnsConfig::default();
    let mut import = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--hostname" => config.hostname = args.next().unwrap_or_else(|| usage()),
            "--addr" => match args.next().map(|s| s.parse()) {
                Some(Ok(ip)) => config.addrs.push(ip),
                _ => usage(),
            },
            "--interface" => config
                .interfaces
                .push(args.next().unwrap_or_else(|| usage())),
            "--import" => import = true,
            _ => usage(),
        }
    }
    let mut mdns = match Mdns::start_with(config) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let mut events = if import {
        match mdns.import() {
            Ok(rx) => Some(rx),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    say("ready");

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut pending: Vec<MdnsService> = Vec::new();
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Ok(Some(line)) = line else { break };
                let line = line.trim_end();
                let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
                match cmd {
                    "service" => match parse_service(rest) {
                        Ok(s) => pending.push(s),
                        Err(e) => say(&format!("error: {e}")),
                    },
                    "apply" => match mdns.set_services(&pending) {
                        Ok(()) => say("applied"),
                        Err(e) => say(&format!("error: {e}")),
                    },
                    "clear" => pending.clear(),
                    "" => {}
                    other => say(&format!("error: unknown command {other:?}")),
                }
            }
            ev = async {
                match events.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match ev {
                Some(ev) => say(&event_json(&ev)),
                None => events = None,
            },
            _ = async {
                match sigterm.as_mut() {
                    Some(s) => { s.recv().await; }
                    None => std::future::pending().await,
                }
            } => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    mdns.shutdown();
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings).
fn tracing_subscriber_init() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::WARN)
        });
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
}
