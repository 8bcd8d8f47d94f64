//! mDNS / DNS-SD for nuvol: announce the services a node publishes on the
//! LAN, and optionally import services that other devices announce.
//!
//! Cloudy's avahi-ps published every community service through avahi as
//! well as through serf; this crate is nuvol's replacement for that half,
//! built on the pure-Rust [`mdns_sd`] responder (no avahi daemon needed).
//!
//! # Mapping
//! - An avahi-ps type `http` is announced as the DNS-SD service type
//!   `_http._tcp.local.` (see [`service_type_domain`]).
//! - The instance name is the service's description. DNS-SD instance names
//!   may contain spaces, so a description is announced as given; Cloudy's
//!   habit of writing `_` for spaces is accepted as well (both are valid
//!   instance names; [`cloudy_description`] converts an imported name back
//!   to Cloudy's form).
//! - TXT entries are `k=v` strings, in order.
//! - The host is `<hostname>.local.`, with the addresses given to
//!   [`Mdns::start`] (or, when none are given, every address of every
//!   enabled interface, kept up to date as they change).
//!
//! # Announcing
//! [`Mdns::set_services`] makes the announced set equal to the list given:
//! services are keyed by `(type, port)` like the catalog's `type/port` key;
//! new keys are registered, vanished keys unregistered (a DNS-SD "goodbye"
//! is sent so other browsers drop them at once), and a key whose description
//! or TXT changed is re-registered.
//!
//! # Importing
//! [`Mdns::import`] browses `_services._dns-sd._udp.local.` to learn every
//! service type on the LAN, then browses each `_X._tcp.local.` type whose
//! `X` is a valid avahi-ps type, and streams [`ImportEvent`]s on a tokio
//! channel. Our own announcements (same host name) are skipped.
//!
//! # Validation
//! Everything is checked before anything is changed, and bad input is a
//! typed [`MdnsError`]:
//! - announced types: 1 to [`MAX_TYPE_LEN`] bytes of `[A-Za-z0-9-]`, with a
//!   letter, not starting or ending with `-` and without `--` (RFC 6335's
//!   service name rules; the catalog's own rule is looser, so a few valid
//!   catalog types cannot be announced over mDNS);
//! - instance names: 1 to 63 bytes (one DNS label), no control characters;
//! - TXT: a non-empty printable-ASCII key without `=`, unique ignoring case,
//!   and at most 255 bytes per `k=v` entry;
//! - host name: one DNS label of `[A-Za-z0-9-]`, at most 63 bytes.

pub mod component;
mod validate;

pub use validate::{
    cloudy_description, is_importable_type, service_type_domain, validate_hostname,
    validate_instance, validate_service, validate_txt, validate_type, MAX_INSTANCE_LEN,
    MAX_TXT_ENTRY_LEN, MAX_TYPE_LEN,
};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// The DNS-SD meta-query name listing every service type on the LAN.
pub const META_QUERY: &str = "_services._dns-sd._udp.local.";

/// Capacity of the channel returned by [`Mdns::import`].
pub const IMPORT_CHANNEL_CAPACITY: usize = 256;
/// Service types browsed at most (a LAN can announce any number).
pub const MAX_IMPORT_TYPES: usize = 256;
/// Services remembered by the importer at most; more are not reported.
pub const MAX_IMPORT_SERVICES: usize = 4096;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    /// The service type cannot be announced as `_<type>._tcp.local.`.
    #[error("invalid mDNS service type {0:?}: {1}")]
    BadType(String, &'static str),
    /// The instance name (description) cannot be a DNS-SD instance name.
    #[error("invalid mDNS instance name {0:?}: {1}")]
    BadInstance(String, &'static str),
    /// Port 0.
    #[error("invalid port 0 for service {0:?}")]
    BadPort(String),
    /// A TXT entry is malformed or too long.
    #[error("invalid TXT entry {0:?}: {1}")]
    BadTxt(String, &'static str),
    /// The host name is not a single DNS label.
    #[error("invalid mDNS host name {0:?}: {1}")]
    BadHostname(String, &'static str),
    /// Two services share a `(type, port)` key or a `(type, instance)` name.
    #[error("duplicate mDNS service {0}")]
    Duplicate(String),
    /// [`Mdns::import`] was called outside a tokio runtime.
    #[error("mDNS import needs a tokio runtime")]
    NoRuntime,
    /// The mDNS daemon failed or has stopped.
    #[error("mDNS daemon: {0}")]
    Daemon(#[from] mdns_sd::Error),
}

/// A service this node announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdnsService {
    /// avahi-ps type, e.g. `http` (announced as `_http._tcp.local.`).
    pub stype: String,
    /// The description, used as the DNS-SD instance name.
    pub instance: String,
    pub port: u16,
    /// TXT entries, in order.
    pub txt: Vec<(String, String)>,
}

impl MdnsService {
    /// The key services are unique by: `type/port` (as the catalog's).
    pub fn key(&self) -> (String, u16) {
        (self.stype.clone(), self.port)
    }
}

/// A service announced by another device on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedService {
    /// avahi-ps type (`http` for `_http._tcp.local.`).
    pub stype: String,
    /// The DNS-SD instance name, unescaped.
    pub instance: String,
    /// The target host, without the trailing dot (`node.local`).
    pub host: String,
    /// Its addresses, sorted.
    pub addrs: Vec<IpAddr>,
    pub port: u16,
    /// TXT entries in record order; a bare key (no `=`) has an empty value.
    pub txt: Vec<(String, String)>,
}

/// An import event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportEvent {
    /// A service appeared or changed (an upsert keyed by type and instance).
    Found(ImportedService),
    /// A service previously reported as found went away.
    Lost { stype: String, instance: String },
}

/// Options for [`Mdns::start_with`].
#[derive(Debug, Clone, Default)]
pub struct MdnsConfig {
    /// The node name; announced as `<hostname>.local.`.
    pub hostname: String,
    /// Addresses to announce; empty = the addresses of the enabled
    /// interfaces, followed as they change.
    pub addrs: Vec<IpAddr>,
    /// Interface names to run on; empty = all interfaces.
    pub interfaces: Vec<String>,
}

/// The mDNS responder (and browser) of one node.
pub struct Mdns {
    daemon: ServiceDaemon,
    /// `<hostname>.local.`
    host: String,
    addrs: Vec<IpAddr>,
    interfaces: Vec<String>,
    /// Announced services by `(type, port)`, with their full names.
    announced: BTreeMap<(String, u16), (MdnsService, String)>,
    stopped: bool,
}

impl std::fmt::Debug for Mdns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mdns")
            .field("host", &self.host)
            .field("addrs", &self.addrs)
            .field("interfaces", &self.interfaces)
            .field("announced", &self.announced.len())
            .finish()
    }
}

impl Mdns {
    /// Start the responder on all interfaces. `hostname` is the node name
    /// (announced as `<hostname>.local.`), `addrs` the addresses to announce
    /// (empty = every interface's addresses, followed as they change).
    pub fn start(hostname: &str, addrs: Vec<IpAddr>) -> Result<Mdns, MdnsError> {
        Mdns::start_with(MdnsConfig {
            hostname: hostname.to_owned(),
            addrs,
            interfaces: Vec::new(),
        })
    }

    /// Start the responder with all options.
    pub fn start_with(config: MdnsConfig) -> Result<Mdns, MdnsError> {
        validate_hostname(&config.hostname)?;
        let daemon = ServiceDaemon::new()?;
        // Allow avahi-ps types up to MAX_TYPE_LEN (RFC 6763 says 15).
        let setup = || -> Result<(), mdns_sd::Error> {
            daemon.set_service_name_len_max(MAX_TYPE_LEN as u8)?;
            if !config.interfaces.is_empty() {
                daemon.disable_interface(IfKind::All)?;
                daemon.enable_interface(
                    config
                        .interfaces
                        .iter()
                        .map(|n| IfKind::Name(n.clone()))
                        .collect::<Vec<_>>(),
                )?;
            }
            Ok(())
        };
        if let Err(e) = setup() {
            let _ = daemon.shutdown();
            return Err(e.into());
        }
        let host = format!("{}.local.", config.hostname);
        info!(host = %host, addrs = ?config.addrs, interfaces = ?config.interfaces, "mDNS responder started");
        Ok(Mdns {
            daemon,
            host,
            addrs: config.addrs,
            interfaces: config.interfaces,
            announced: BTreeMap::new(),
            stopped: false,
        })
    }

    /// The announced host name, `<hostname>.local.`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The services currently announced, in `(type, port)` order.
    pub fn services(&self) -> impl Iterator<Item = &MdnsService> {
        self.announced.values().map(|(s, _)| s)
    }

    /// Make the announced set equal to `services`: register new and changed
    /// ones, unregister removed ones (by `(type, port)`). Everything is
    /// validated first; on a validation error nothing changes.
    pub fn set_services(&mut self, services: &[MdnsService]) -> Result<(), MdnsError> {
        let mut wanted: BTreeMap<(String, u16), &MdnsService> = BTreeMap::new();
        let mut names = HashSet::new();
        for s in services {
            validate_service(s)?;
            let label = format!("{}/{}", s.stype, s.port);
            if wanted.insert(s.key(), s).is_some() {
                return Err(MdnsError::Duplicate(label));
            }
            if !names.insert((s.stype.to_ascii_lowercase(), s.instance.to_lowercase())) {
                return Err(MdnsError::Duplicate(format!(
                    "{label}: instance name {:?} used twice",
                    s.instance
                )));
            }
        }

        // Build the new registrations first (nothing changes on error).
        let mut to_register = Vec::new();
        for (key, s) in &wanted {
            if !matches!(self.announced.get(key), Some((old, _)) if old == *s) {
                let info = self.service_info(s)?;
                to_register.push((key.clone(), (*s).clone(), info));
            }
        }
        let new_names: HashSet<String> = to_register
            .iter()
            .map(|(_, _, info)| info.get_fullname().to_lowercase())
            .collect();

        // Unregister removed and changed services. A name that is about to
        // be registered again (changed TXT or port) is not unregistered: the
        // new registration replaces the old records, whereas a goodbye
        // followed at once by a new probe of the same name makes the
        // responder see a conflict with itself and rename the service.
        let stale: Vec<(String, u16)> = self
            .announced
            .iter()
            .filter(|(k, (old, _))| !matches!(wanted.get(*k), Some(new) if *new == old))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            let Some((old, fullname)) = self.announced.remove(&key) else {
                continue;
            };
            if new_names.contains(&fullname.to_lowercase()) {
                continue;
            }
            debug!(fullname = %fullname, "mDNS unregister");
            if let Err(e) = self.daemon.unregister(&fullname) {
                warn!(service = %fullname, error = %e, "mDNS unregister failed");
                // Keep our view consistent with the daemon's.
                self.announced.insert(key, (old, fullname));
                return Err(e.into());
            }
        }

        for (key, s, info) in to_register {
            let fullname = info.get_fullname().to_owned();
            debug!(fullname = %fullname, port = s.port, "mDNS register");
            self.daemon.register(info)?;
            self.announced.insert(key, (s, fullname));
        }
        Ok(())
    }

    fn service_info(&self, s: &MdnsService) -> Result<ServiceInfo, MdnsError> {
        let ty = service_type_domain(&s.stype);
        let txt: Vec<(&str, &str)> = s
            .txt
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut info = ServiceInfo::new(
            &ty,
            &s.instance,
            &self.host,
            &self.addrs[..],
            s.port,
            &txt[..],
        )?;
        if self.addrs.is_empty() {
            info = info.enable_addr_auto();
        }
        if !self.interfaces.is_empty() {
            info.set_interfaces(
                self.interfaces
                    .iter()
                    .map(|n| IfKind::Name(n.clone()))
                    .collect(),
            );
        }
        Ok(info)
    }

    /// Browse the LAN for service types, then for each `_X._tcp` type whose
    /// `X` is a valid avahi-ps type, and stream [`ImportEvent`]s. Must be
    /// called inside a tokio runtime. Dropping the receiver stops browsing.
    pub fn import(&self) -> Result<mpsc::Receiver<ImportEvent>, MdnsError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| MdnsError::NoRuntime)?;
        let meta = self.daemon.browse(META_QUERY)?;
        let (tx, rx) = mpsc::channel(IMPORT_CHANNEL_CAPACITY);
        let importer = Importer {
            daemon: self.daemon.clone(),
            own_host: self.host.to_ascii_lowercase(),
            tx,
            browsing: HashSet::new(),
            found: HashMap::new(),
        };
        rt.spawn(importer.run(meta, rt.clone()));
        Ok(rx)
    }

    /// Unregister everything (sending goodbyes) and stop the daemon. Blocks
    /// for at most a few seconds while the goodbyes go out.
    pub fn shutdown(mut self) {
        self.stop(true);
    }

    fn stop(&mut self, wait: bool) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let mut pending = Vec::new();
        for (_, (_, fullname)) in std::mem::take(&mut self.announced) {
            match self.daemon.unregister(&fullname) {
                Ok(r) => pending.push(r),
                Err(e) => debug!(service = %fullname, error = %e, "mDNS unregister at shutdown"),
            }
        }
        if wait {
            for r in pending {
                let _ = r.recv_timeout(Duration::from_secs(2));
            }
        }
        match self.daemon.shutdown() {
            Ok(r) if wait => {
                let _ = r.recv_timeout(Duration::from_secs(2));
            }
            Ok(_) => {}
            Err(e) => debug!(error = %e, "mDNS daemon shutdown"),
        }
        info!(host = %self.host, "mDNS responder stopped");
    }
}

impl Drop for Mdns {
    fn drop(&mut self) {
        self.stop(false);
    }
}

/// State of one import stream.
struct Importer {
    daemon: ServiceDaemon,
    own_host: String,
    tx: mpsc::Sender<ImportEvent>,
    /// Service types (`_x._tcp.local.`, lowercase) being browsed.
    browsing: HashSet<String>,
    /// Reported services by lowercase full name.
    found: HashMap<String, ImportedService>,
}

/// What the per-type browse tasks forward to the importer.
enum Forwarded {
    Event(ServiceEvent),
    Ended(String),
}

impl Importer {
    async fn run(mut self, meta: mdns_sd::Receiver<ServiceEvent>, rt: tokio::runtime::Handle) {
        let (fwd_tx, mut fwd_rx) = mpsc::channel::<Forwarded>(IMPORT_CHANNEL_CAPACITY);
        let mut meta_open = true;
        loop {
            tokio::select! {
                ev = meta.recv_async(), if meta_open => match ev {
                    Ok(ServiceEvent::ServiceFound(_, ty)) => self.new_type(&ty, &fwd_tx, &rt),
                    Ok(_) => {}
                    Err(_) => {
                        debug!("mDNS type browse ended");
                        meta_open = false;
                        if self.browsing.is_empty() {
                            break;
                        }
                    }
                },
                fwd = fwd_rx.recv() => match fwd {
                    Some(Forwarded::Event(ev)) => {
                        if self.handle(ev).await.is_err() {
                            break;
                        }
                    }
                    Some(Forwarded::Ended(ty)) => {
                        self.browsing.remove(&ty);
                        if !meta_open && self.browsing.is_empty() {
                            break;
                        }
                    }
                    None => break,
                },
                _ = self.tx.closed() => break,
            }
        }
        debug!("mDNS import stopped");
        let _ = self.daemon.stop_browse(META_QUERY);
        for ty in &self.browsing {
            let _ = self.daemon.stop_browse(ty);
        }
    }

    fn new_type(&mut self, ty: &str, fwd: &mpsc::Sender<Forwarded>, rt: &tokio::runtime::Handle) {
        let ty = ty.to_ascii_lowercase();
        if self.browsing.contains(&ty) {
            return;
        }
        let Some(stype) = avahi_type_of(&ty) else {
            debug!(service_type = %ty, "mDNS: not an avahi-ps type, not imported");
            return;
        };
        if self.browsing.len() >= MAX_IMPORT_TYPES {
            warn!(service_type = %ty, "mDNS: browsing {MAX_IMPORT_TYPES} types already; not imported");
            return;
        }
        let rx = match self.daemon.browse(&ty) {
            Ok(rx) => rx,
            Err(e) => {
                warn!(service_type = %ty, error = %e, "mDNS browse failed");
                return;
            }
        };
        debug!(service_type = %ty, stype = %stype, "mDNS: browsing");
        self.browsing.insert(ty.clone());
        let fwd = fwd.clone();
        rt.spawn(async move {
            while let Ok(ev) = rx.recv_async().await {
                if fwd.send(Forwarded::Event(ev)).await.is_err() {
                    return;
                }
            }
            let _ = fwd.send(Forwarded::Ended(ty)).await;
        });
    }

    /// Returns Err when the consumer has gone away.
    async fn handle(&mut self, ev: ServiceEvent) -> Result<(), ()> {
        match ev {
            ServiceEvent::ServiceResolved(r) => {
                // Skip our own announcements.
                if r.host.eq_ignore_ascii_case(&self.own_host) {
                    return Ok(());
                }
                let Some(s) = imported_from(&r) else {
                    return Ok(());
                };
                let key = r.fullname.to_lowercase();
                if self.found.len() >= MAX_IMPORT_SERVICES && !self.found.contains_key(&key) {
                    debug!(fullname = %r.fullname, "mDNS import: {MAX_IMPORT_SERVICES} services known already; not reported");
                    return Ok(());
                }
                if self.found.get(&key) != Some(&s) {
                    debug!(fullname = %r.fullname, "mDNS import: found");
                    self.found.insert(key, s.clone());
                    self.tx.send(ImportEvent::Found(s)).await.map_err(|_| ())?;
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                if let Some(s) = self.found.remove(&fullname.to_lowercase()) {
                    debug!(fullname = %fullname, "mDNS import: lost");
                    self.tx
                        .send(ImportEvent::Lost {
                            stype: s.stype,
                            instance: s.instance,
                        })
                        .await
                        .map_err(|_| ())?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// `http` for `_http._tcp.local.` (any case) when `http` is a valid
/// avahi-ps type; `None` otherwise.
pub fn avahi_type_of(ty_domain: &str) -> Option<String> {
    let lower = ty_domain.to_ascii_lowercase();
    let x = lower.strip_suffix("._tcp.local.")?.strip_prefix('_')?;
    is_importable_type(x).then(|| x.to_owned())
}

fn imported_from(r: &mdns_sd::ResolvedService) -> Option<ImportedService> {
    let stype = avahi_type_of(&r.ty_domain)?;
    let instance = instance_of(&r.fullname, &r.ty_domain)?;
    let mut addrs: Vec<IpAddr> = r.addresses.iter().map(|a| a.to_ip_addr()).collect();
    addrs.sort();
    addrs.dedup();
    let txt = r
        .txt_properties
        .iter()
        .map(|p| {
            let v = p.val().map(String::from_utf8_lossy).unwrap_or_default();
            (p.key().to_owned(), v.into_owned())
        })
        .collect();
    Some(ImportedService {
        stype,
        instance,
        host: r.host.trim_end_matches('.').to_owned(),
        addrs,
        port: r.port,
        txt,
    })
}

/// The unescaped instance label of `fullname` (`<instance>.<ty_domain>`).
pub fn instance_of(fullname: &str, ty_domain: &str) -> Option<String> {
    if fullname.len() <= ty_domain.len() + 1
        || !fullname.is_char_boundary(fullname.len() - ty_domain.len() - 1)
    {
        return None;
    }
    let (head, tail) = fullname.split_at(fullname.len() - ty_domain.len() - 1);
    if !tail[1..].eq_ignore_ascii_case(ty_domain) || !tail.starts_with('.') {
        return None;
    }
    let mut out = String::with_capacity(head.len());
    let mut chars = head.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) => out.push(n),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The responder on 127.0.0.1, or `None` (skip) when the daemon cannot
    /// start here; under `NUVOL_REQUIRE_SYSTEM=1` that is a failure
    /// (testkit's skip-or-fail rule). Any other error is a bug and fails.
    fn start_or_skip(test: &str, hostname: &str) -> Option<Mdns> {
        match Mdns::start(hostname, vec!["127.0.0.1".parse().unwrap()]) {
            Ok(m) => Some(m),
            Err(MdnsError::Daemon(e)) => {
                nuvol_testkit::netns::skip_or_fail(
                    test,
                    &format!("the mDNS daemon cannot start here: {e}"),
                );
                None
            }
            Err(e) => panic!("{test}: Mdns::start failed: {e}"),
        }
    }

    #[test]
    fn type_domain_mapping() {
        assert_eq!(avahi_type_of("_http._tcp.local."), Some("http".into()));
        assert_eq!(avahi_type_of("_HTTP._tcp.local."), Some("http".into()));
        assert_eq!(
            avahi_type_of("_tahoe-lafs._tcp.local."),
            Some("tahoe-lafs".into())
        );
        assert_eq!(avahi_type_of("_http._udp.local."), None);
        assert_eq!(avahi_type_of("_services._dns-sd._udp.local."), None);
        assert_eq!(avahi_type_of("_a_b._tcp.local."), None);
        assert_eq!(avahi_type_of("http._tcp.local."), None);
        assert_eq!(avahi_type_of("__tcp.local."), None);
        assert_eq!(avahi_type_of("_x.y._tcp.local."), None);
    }

    #[test]
    fn instance_from_fullname() {
        let ty = "_http._tcp.local.";
        assert_eq!(
            instance_of("My Web._http._tcp.local.", ty),
            Some("My Web".into())
        );
        assert_eq!(
            instance_of("a\\.b\\\\c._http._tcp.local.", ty),
            Some("a.b\\c".into())
        );
        assert_eq!(instance_of("x._HTTP._tcp.local.", ty), Some("x".into()));
        assert_eq!(instance_of("._http._tcp.local.", ty), None);
        assert_eq!(instance_of("_http._tcp.local.", ty), None);
        assert_eq!(instance_of("x._ftp._tcp.local.", ty), None);
        assert_eq!(instance_of("é._http._tcp.local.", ty), Some("é".into()));
    }

    #[test]
    fn service_info_round_trip() {
        // ServiceInfo escapes the instance the way instance_of unescapes it.
        let s = MdnsService {
            stype: "http".into(),
            instance: "web v1.2 \\ test".into(),
            port: 80,
            txt: vec![("path".into(), "/".into())],
        };
        validate_service(&s).unwrap();
        let ty = service_type_domain(&s.stype);
        let info = ServiceInfo::new(
            &ty,
            &s.instance,
            "n.local.",
            "10.0.0.1",
            80,
            &[][..] as &[(&str, &str)],
        )
        .unwrap();
        assert_eq!(instance_of(info.get_fullname(), &ty), Some(s.instance));
    }

    #[test]
    fn set_services_rejects_before_changing() {
        let Some(mut m) = start_or_skip("set_services_rejects_before_changing", "unit-test-node")
        else {
            return;
        };
        let good = MdnsService {
            stype: "http".into(),
            instance: "Web".into(),
            port: 8080,
            txt: vec![],
        };
        m.set_services(std::slice::from_ref(&good)).unwrap();
        let dup = vec![good.clone(), good.clone()];
        assert!(matches!(m.set_services(&dup), Err(MdnsError::Duplicate(_))));
        let same_name = vec![
            good.clone(),
            MdnsService {
                port: 8081,
                ..good.clone()
            },
        ];
        assert!(matches!(
            m.set_services(&same_name),
            Err(MdnsError::Duplicate(_))
        ));
        let bad = vec![MdnsService {
            stype: "bad_type".into(),
            ..good.clone()
        }];
        assert!(matches!(m.set_services(&bad), Err(MdnsError::BadType(..))));
        assert_eq!(
            m.services().cloned().collect::<Vec<_>>(),
            vec![good.clone()]
        );
        m.set_services(&[]).unwrap();
        assert_eq!(m.services().count(), 0);
        m.shutdown();
    }

    #[test]
    fn bad_hostname_is_rejected() {
        assert!(matches!(
            Mdns::start("a.b", vec![]),
            Err(MdnsError::BadHostname(..))
        ));
    }

    #[test]
    fn import_needs_runtime() {
        let Some(m) = start_or_skip("import_needs_runtime", "unit-test-node2") else {
            return;
        };
        assert!(matches!(m.import(), Err(MdnsError::NoRuntime)));
        m.shutdown();
    }
}
