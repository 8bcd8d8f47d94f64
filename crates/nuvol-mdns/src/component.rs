//! The mDNS component: this node's healthy services are announced on the
//! LAN as `_TYPE._tcp.local` (what avahi-ps does with avahi), and with
//! `--mdns-import` services others announce are imported into the catalog.
//! It uses the catalog's handle, so it is listed after the catalog.
//!
//! The responder starts only when there is something to announce or import,
//! so an agent without services costs no mDNS thread or socket. At most
//! [`MAX_IMPORTED`] imported services are kept; more are dropped (counted
//! and logged).

use crate::{ImportEvent, ImportedService, Mdns, MdnsService};
use nuvol_agent::config::{ConfigError, Validate};
use nuvol_agent::{BuildCtx, BuildError, Component, ComponentError, RunCtx};
use nuvol_catalog::component::Catalog;
use nuvol_catalog::{Filter, ServiceEntry, Source, Status};
use prometheus_client::metrics::counter::Counter;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Imported services kept at most (a LAN can announce anything).
pub const MAX_IMPORTED: usize = 1024;

nuvol_agent::settings! {
    /// mDNS / DNS-SD on the LAN.
    pub struct MdnsSettings in "mdns", "mDNS" {
        /// Announce published services with mDNS / DNS-SD, as avahi-ps does.
        announce: bool = true, flag "mdns";
        /// Import services others announce on the LAN into the catalog.
        import: bool = false, flag "mdns-import";
    }
}

impl Validate for MdnsSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// The mDNS component.
pub struct MdnsComponent {
    catalog: Catalog,
    announce: bool,
    import: bool,
    dropped: Counter,
}

impl Component for MdnsComponent {
    type Config = MdnsSettings;
    const NAME: &'static str = "mdns";

    fn build(cfg: MdnsSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        if !cfg.announce && !cfg.import {
            return Ok(None);
        }
        let catalog = ctx
            .get::<Catalog>()
            .ok_or_else(|| BuildError::new("needs the catalog component, listed before it"))?;
        let dropped = Counter::default();
        ctx.metrics().register(
            "mdns_imports_dropped",
            "Services announced on the LAN not imported (more than the import limit)",
            dropped.clone(),
        );
        Ok(Some(MdnsComponent {
            catalog,
            announce: cfg.announce,
            import: cfg.import,
            dropped,
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        ctx.ready();
        let node = ctx.cluster().name().to_owned();
        let addr = ctx.cluster().advertise().ip();
        tokio::select! {
            r = run(&self.catalog, node, addr, self.announce, self.import, &self.dropped) => r.map_err(ComponentError::from),
            () = ctx.stopping() => Ok(()),
        }
    }
}

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
        .filter(|s| match crate::validate_service(s) {
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
        description: crate::cloudy_description(&s.instance),
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

/// Run the mDNS side until the catalog goes away (or fails to start).
async fn run(
    catalog: &Catalog,
    node: String,
    addr: IpAddr,
    announce: bool,
    import: bool,
    dropped: &Counter,
) -> Result<(), crate::MdnsError> {
    let host = host_label(&node);
    let addrs = if addr.is_unspecified() {
        Vec::new()
    } else {
        vec![addr]
    };
    // Stops the responder when the component stops, whatever the path.
    struct Responder(Option<Mdns>);
    impl Drop for Responder {
        fn drop(&mut self) {
            if let Some(m) = self.0.take() {
                m.shutdown();
            }
        }
    }
    let mut responder = Responder(None);
    let mdns = &mut responder.0;
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
                        *mdns = Some(m);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "mDNS responder not started");
                        return Err(e);
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
                        remember(&mut found, s, dropped);
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
    Ok(())
}

/// Keep an imported service, unless [`MAX_IMPORTED`] are kept already
/// (then it is counted and logged). Returns whether it was kept.
fn remember(
    found: &mut BTreeMap<(String, String), ImportedService>,
    s: ImportedService,
    dropped: &Counter,
) -> bool {
    let key = (s.stype.clone(), s.instance.clone());
    if found.len() >= MAX_IMPORTED && !found.contains_key(&key) {
        dropped.inc();
        tracing::warn!(stype = %s.stype, instance = %s.instance, "mDNS import limit ({MAX_IMPORTED}) reached; service not imported");
        return false;
    }
    found.insert(key, s);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_bounded() {
        let svc = |i: usize| ImportedService {
            stype: "http".into(),
            instance: format!("site {i}"),
            host: "h.local".into(),
            addrs: vec![std::net::Ipv4Addr::LOCALHOST.into()],
            port: 80,
            txt: Vec::new(),
        };
        let mut found = BTreeMap::new();
        let dropped = Counter::default();
        for i in 0..MAX_IMPORTED + 10 {
            remember(&mut found, svc(i), &dropped);
        }
        assert_eq!(found.len(), MAX_IMPORTED);
        assert_eq!(dropped.get(), 10);
        // An update of a kept service still lands.
        let mut again = svc(3);
        again.port = 8080;
        assert!(remember(&mut found, again, &dropped));
        assert_eq!(found[&("http".to_owned(), "site 3".to_owned())].port, 8080);
    }

    #[test]
    fn labels_and_instances() {
        assert_eq!(host_label("Pi.One_2"), "pi-one-2");
        assert_eq!(host_label("..."), "nuvol");
        assert_eq!(instance("My_web_server"), "My web server");
        assert_eq!(instance(&"x".repeat(100)).len(), 63);
    }
}
