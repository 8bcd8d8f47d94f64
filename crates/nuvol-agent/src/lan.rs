//! mDNS / DNS-SD on the LAN: this node's healthy services are announced as
//! `_TYPE._tcp.local` (what avahi-ps does with avahi), and with
//! `--mdns-import` services others announce are imported into the catalog.
//!
//! The responder starts only when there is something to announce or import,
//! so an agent without services costs no mDNS thread or socket.

use crate::catalog::Catalog;
use nuvol_catalog::{Filter, ServiceEntry, Source, Status};
use nuvol_mdns::{ImportEvent, ImportedService, Mdns, MdnsService};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A DNS label for the node name (mDNS host names are one label).
pub fn host_label(name: &str) -> String {
    let mut s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(63);
    let s = s.trim_matches('-').to_owned();
    if s.is_empty() {
        "nuvol".into()
    } else {
        s
    }
}

/// The announced instance name: the description with avahi-ps's `_` back
/// to spaces, clipped to one DNS label (63 bytes).
fn instance(description: &str) -> String {
    let mut s = description.replace('_', " ");
    while s.len() > 63 {
        s.pop();
    }
    s.trim().to_owned()
}

fn announced(entries: &[ServiceEntry]) -> Vec<MdnsService> {
    entries
        .iter()
        .filter(|e| e.status.is_healthy())
        .map(|e| MdnsService {
            stype: e.stype.clone(),
            instance: instance(&e.description),
            port: e.port,
            txt: e.txt.clone(),
        })
        .filter(|s| match nuvol_mdns::validate_service(s) {
            Ok(()) => true,
            Err(err) => {
                tracing::debug!(stype = %s.stype, port = s.port, %err, "not announced over mDNS");
                false
            }
        })
        .collect()
}

fn imported_entry(s: &ImportedService) -> Option<ServiceEntry> {
    let ip = s.addrs.iter().find(|a| a.is_ipv4()).or(s.addrs.first())?;
    let node = s.host.strip_suffix(".local").unwrap_or(&s.host).to_owned();
    Some(ServiceEntry {
        node,
        stype: s.stype.clone(),
        description: nuvol_mdns::cloudy_description(&s.instance),
        host: s.host.clone(),
        ip: ip.to_string(),
        port: s.port,
        cloud: "mdns".into(),
        txt: s.txt.clone(),
        status: Status::Passing,
        source: Source::Mdns,
        checks: Vec::new(),
    })
}

/// Run the mDNS side until the catalog goes away.
pub async fn run(catalog: Catalog, node: String, addr: IpAddr, announce: bool, import: bool) {
    let host = host_label(&node);
    let addrs = if addr.is_unspecified() {
        Vec::new()
    } else {
        vec![addr]
    };
    let mut mdns: Option<Mdns> = None;
    let mut imports = None;
    let mut found: BTreeMap<(String, String), ImportedService> = BTreeMap::new();
    let mut changes = catalog.changes();
    let mut last: Vec<MdnsService> = Vec::new();
    let mut first = true;
    loop {
        let me = catalog.entries(&Filter {
            stype: None,
            node: Some(node.clone()),
        });
        let want = if announce { announced(&me) } else { Vec::new() };
        if (first || want != last) && (mdns.is_some() || !want.is_empty() || import) {
            if mdns.is_none() {
                match Mdns::start(&host, addrs.clone()) {
                    Ok(m) => {
                        tracing::info!(host = %m.host(), "mDNS responder started");
                        if import {
                            match m.import() {
                                Ok(rx) => imports = Some(rx),
                                Err(e) => tracing::error!(error = %e, "mDNS import not started"),
                            }
                        }
                        mdns = Some(m);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "mDNS responder not started");
                        return;
                    }
                }
            }
            if let Some(m) = mdns.as_mut() {
                match m.set_services(&want) {
                    Ok(()) => last = want,
                    Err(e) => tracing::warn!(error = %e, "mDNS announcements not updated"),
                }
            }
        }
        first = false;
        tokio::select! {
            r = changes.changed() => if r.is_err() { break },
            ev = async {
                match imports.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                match ev {
                    Some(ImportEvent::Found(s)) => {
                        found.insert((s.stype.clone(), s.instance.clone()), s);
                    }
                    Some(ImportEvent::Lost { stype, instance }) => {
                        found.remove(&(stype, instance));
                    }
                    None => imports = None,
                }
                catalog.set_mdns(found.values().filter_map(imported_entry).collect());
            }
        }
    }
    if let Some(m) = mdns {
        m.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_instances() {
        assert_eq!(host_label("Pi.One_2"), "pi-one-2");
        assert_eq!(host_label("..."), "nuvol");
        assert_eq!(instance("My_web_server"), "My web server");
        assert_eq!(instance(&"x".repeat(100)).len(), 63);
    }
}
