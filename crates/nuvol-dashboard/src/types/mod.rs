//! Per-type actions on the services page: one small module per service
//! type, listed in [`ACTIONS`]. Each turns an instance into links or
//! instructions (Cloudy's "join grid" button was such an action). To add a
//! type: a module with a unit struct implementing [`TypeActions`], one line
//! in [`ACTIONS`].
//!
//! Everything here comes from another node: URLs are built only from a
//! parsed IP address, a port and checked TXT values, and rendered through
//! maud's escaping.

use crate::i18n::Lang;
use maud::Markup;
use nuvol_catalog::model::ServiceEntry;
use std::net::IpAddr;

mod http;
mod ssh;
mod syncthing;

/// What a service type offers on its instances.
pub trait TypeActions: Sync {
    /// The types it handles (lower case, as published).
    fn types(&self) -> &'static [&'static str];
    /// The action cell of one instance (empty markup for none).
    fn render(&self, e: &ServiceEntry, lang: Lang) -> Markup;
    /// A URL a browser can open, if the service is a web one.
    fn open_url(&self, _e: &ServiceEntry) -> Option<String> {
        None
    }
}

/// Every type's actions.
pub static ACTIONS: &[&dyn TypeActions] = &[&http::Http, &ssh::Ssh, &syncthing::Syncthing];

/// The actions for a type, if any module handles it.
pub fn for_type(stype: &str) -> Option<&'static dyn TypeActions> {
    ACTIONS
        .iter()
        .copied()
        .find(|a| a.types().iter().any(|t| t.eq_ignore_ascii_case(stype)))
}

/// The host part of a URL for an instance's IP (brackets for IPv6); None
/// when the published IP is not an address.
pub fn url_host(ip: &str) -> Option<String> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(v4.to_string()),
        IpAddr::V6(v6) => Some(format!("[{v6}]")),
    }
}

/// A TXT value by key.
pub fn txt<'a>(e: &'a ServiceEntry, key: &str) -> Option<&'a str> {
    e.txt
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
pub(crate) fn entry(stype: &str, ip: &str, port: u16, txt: &[(&str, &str)]) -> ServiceEntry {
    ServiceEntry {
        node: "n1".into(),
        stype: stype.into(),
        description: "d".into(),
        host: "n1.c.local".into(),
        ip: ip.into(),
        port,
        cloud: "c".into(),
        txt: txt
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        status: nuvol_catalog::model::Status::Passing,
        source: nuvol_catalog::model::Source::Nuvol,
        checks: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_found() {
        assert!(for_type("HTTP").is_some());
        assert!(for_type("https").is_some());
        assert!(for_type("ssh").is_some());
        assert!(for_type("syncthing").is_some());
        assert!(for_type("tahoe-introducer").is_none());
        assert_eq!(url_host("fd00::1").as_deref(), Some("[fd00::1]"));
        assert_eq!(url_host("javascript:alert(1)"), None);
    }
}
