//! The catalog's data model, shared by the agent, the REST API, DNS, mDNS
//! and the health-check runner.
//!
//! - [`ServiceDef`]: a service this node publishes (what the user gave:
//!   `nuvol publish`, `POST /v1/services`, a service file), with its checks.
//! - [`CheckDef`] / [`CheckState`] / [`Health`]: health checks and results.
//! - [`ServiceEntry`]: one service instance in the cluster-wide catalog view,
//!   as every node lists it (`nuvol services`, `GET /v1/services`).

use crate::cloudy::{validate_type, CatalogError};
pub use nuvol_checks::model::{CheckDef, CheckKind, CheckState, Health, MAX_CHECK_OUTPUT};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest TXT record set of one service, in bytes (`k=v` summed).
pub const MAX_TXT_BYTES: usize = 8 * 1024;
/// Largest number of checks on one service.
pub const MAX_CHECKS: usize = 8;
/// Largest number of services one node publishes (and that is accepted
/// from one peer).
pub const MAX_SERVICES_PER_NODE: usize = 1024;

/// A service this node publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    /// avahi-ps type, `[A-Za-z0-9-]+`.
    #[serde(rename = "type")]
    pub stype: String,
    pub description: String,
    pub port: u16,
    /// TXT entries in order (`a=1&b=2` on the command line).
    #[serde(default, with = "txt_map")]
    pub txt: Vec<(String, String)>,
    #[serde(default)]
    pub checks: Vec<CheckDef>,
}

impl ServiceDef {
    /// The key a node's services are unique by: `type/port`.
    pub fn key(&self) -> String {
        service_key(&self.stype, self.port)
    }

    /// Check every field; the error names the field.
    pub fn validate(&self) -> Result<(), CatalogError> {
        validate_type(&self.stype)?;
        if self.description.trim().is_empty() || self.description.len() > 255 {
            return Err(CatalogError::BadDescription(
                "must be 1 to 255 bytes".into(),
            ));
        }
        if self.port == 0 {
            return Err(CatalogError::BadPort("0".into()));
        }
        let mut size = 0;
        for (k, v) in &self.txt {
            if k.is_empty()
                || k.contains(['=', '&'])
                || k.contains(char::is_whitespace)
                || v.contains(char::is_whitespace)
            {
                return Err(CatalogError::BadTxt(format!("{k}={v}")));
            }
            size += k.len() + v.len() + 1;
        }
        if size > MAX_TXT_BYTES {
            return Err(CatalogError::BadTxt(format!(
                "more than {MAX_TXT_BYTES} bytes"
            )));
        }
        if self.checks.len() > MAX_CHECKS {
            return Err(CatalogError::BadField(
                "checks".into(),
                format!("at most {MAX_CHECKS} checks per service"),
            ));
        }
        for c in &self.checks {
            c.validate()?;
        }
        Ok(())
    }
}

/// `type/port`.
pub fn service_key(stype: &str, port: u16) -> String {
    format!("{stype}/{port}")
}

/// Where a catalog entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A nuvol node's full list (pulled from the node).
    Nuvol,
    /// A Cloudy `services` tag (serf / avahi-ps nodes, or a nuvol node whose
    /// full list has not been fetched yet).
    Cloudy,
    /// Imported from mDNS / DNS-SD on the LAN.
    Mdns,
}

/// Catalog status of an instance: its health, or `unavailable` when its
/// node has failed or left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passing,
    Warning,
    Critical,
    Unavailable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
            Status::Unavailable => "unavailable",
        }
    }
    /// Served by DNS: passing and warning (as Consul does).
    pub fn is_healthy(self) -> bool {
        matches!(self, Status::Passing | Status::Warning)
    }
}

impl From<Health> for Status {
    fn from(h: Health) -> Status {
        match h {
            Health::Passing => Status::Passing,
            Health::Warning => Status::Warning,
            Health::Critical => Status::Critical,
        }
    }
}

/// A check as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckView {
    /// `tcp`, `http` or `script`.
    pub kind: String,
    /// The address, URL or command.
    pub target: String,
    pub status: Health,
    pub output: String,
    pub updated_ms: u64,
}

/// One service instance in the cluster-wide catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    pub node: String,
    #[serde(rename = "type")]
    pub stype: String,
    pub description: String,
    /// `<node>.<cloud>.local`, as avahi-ps writes it.
    pub host: String,
    pub ip: String,
    pub port: u16,
    /// The micro-cloud / device name (`e` in Cloudy's tag).
    pub cloud: String,
    #[serde(with = "txt_map")]
    pub txt: Vec<(String, String)>,
    pub status: Status,
    pub source: Source,
    #[serde(default)]
    pub checks: Vec<CheckView>,
}

/// The TXT key that marks the services an app publishes (`app=NAME`).
pub const APP_TXT: &str = "app";

/// The health of a set of entries: `None` when there are none, otherwise
/// whether every one is passing (or only warning).
pub fn health_of<'a>(entries: impl IntoIterator<Item = &'a ServiceEntry>) -> Option<bool> {
    let mut any = false;
    let mut ok = true;
    for e in entries {
        any = true;
        ok &= matches!(e.status, Status::Passing | Status::Warning);
    }
    any.then_some(ok)
}

/// Whether app `app` runs on `node`, from what the catalog shows: `None`
/// when nothing of it is published there, otherwise whether all its
/// services are healthy. The one notion of "the app is here" that the
/// floating IPs' `track_apps` and the folders that follow an app share.
pub fn app_health(entries: &[ServiceEntry], node: &str, app: &str) -> Option<bool> {
    health_of(
        entries
            .iter()
            .filter(|e| e.node == node && e.txt.iter().any(|(k, v)| k == APP_TXT && v == app)),
    )
}

impl ServiceEntry {
    pub fn key(&self) -> String {
        service_key(&self.stype, self.port)
    }

    /// Sanity of an entry received from a peer: a valid type and port and
    /// bounded sizes. Entries failing it are dropped (and the rest kept).
    pub fn validate_shape(&self) -> bool {
        let txt: usize = self.txt.iter().map(|(k, v)| k.len() + v.len() + 1).sum();
        validate_type(&self.stype).is_ok()
            && self.port != 0
            && self.description.len() <= 255
            && self.host.len() <= 255
            && self.ip.parse::<std::net::IpAddr>().is_ok()
            && self.cloud.len() <= 255
            && txt <= MAX_TXT_BYTES
            && self.checks.len() <= MAX_CHECKS
            && self
                .checks
                .iter()
                .all(|c| c.output.len() <= MAX_CHECK_OUTPUT && c.target.len() <= 4096)
    }
}

/// TXT entries as a JSON/TOML object (`{"a": "1"}`), keeping their order
/// when serialising; duplicate keys are rejected on input.
pub mod txt_map {
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(v: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(v.len()))?;
        for (k, val) in v {
            m.serialize_entry(k, val)?;
        }
        m.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, String>()? {
                    if out.iter().any(|(ek, _)| *ek == k) {
                        return Err(serde::de::Error::custom(format!("duplicate TXT key {k:?}")));
                    }
                    out.push((k, v));
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// Summarise check results into one health (the worst; passing if none).
pub fn aggregate(states: impl IntoIterator<Item = Health>) -> Health {
    states.into_iter().max().unwrap_or(Health::Passing)
}

/// Filter for catalog listings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(rename = "type")]
    pub stype: Option<String>,
    pub node: Option<String>,
}

impl Filter {
    pub fn matches(&self, e: &ServiceEntry) -> bool {
        self.stype
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case(&e.stype))
            && self.node.as_deref().is_none_or(|n| n == e.node)
    }
}

/// Cluster-wide catalog helper: all entries of a node keyed by service key.
pub type NodeServices = BTreeMap<String, ServiceEntry>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn def() -> ServiceDef {
        ServiceDef {
            stype: "http".into(),
            description: "web".into(),
            port: 80,
            txt: vec![("a".into(), "1".into())],
            checks: vec![],
        }
    }

    #[test]
    fn an_app_is_where_it_publishes_healthy_services() {
        let e = |node: &str, app: Option<&str>, status| ServiceEntry {
            node: node.into(),
            stype: "http".into(),
            description: String::new(),
            host: String::new(),
            ip: "10.0.0.1".into(),
            port: 80,
            cloud: String::new(),
            txt: app
                .map(|a| vec![(APP_TXT.to_owned(), a.to_owned())])
                .unwrap_or_default(),
            status,
            source: Source::Nuvol,
            checks: vec![],
        };
        let all = vec![
            e("a", Some("db"), Status::Passing),
            e("a", Some("db"), Status::Warning),
            e("a", None, Status::Critical),
            e("b", Some("db"), Status::Critical),
            e("b", Some("web"), Status::Passing),
        ];
        assert_eq!(app_health(&all, "a", "db"), Some(true));
        assert_eq!(app_health(&all, "b", "db"), Some(false));
        assert_eq!(app_health(&all, "a", "web"), None);
        assert_eq!(app_health(&all, "c", "db"), None);
        assert_eq!(health_of(&[]), None);
    }

    #[test]
    fn validation_names_the_field() {
        assert!(def().validate().is_ok());
        let mut d = def();
        d.stype = "a b".into();
        assert!(matches!(d.validate(), Err(CatalogError::BadType(_))));
        let mut d = def();
        d.txt = vec![("a b".into(), "1".into())];
        assert!(matches!(d.validate(), Err(CatalogError::BadTxt(_))));
        let mut d = def();
        d.checks = vec![CheckDef {
            kind: CheckKind::Http {
                url: "ftp://x".into(),
                status: 200,
                tls_skip_verify: false,
            },
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
        }];
        assert_eq!(
            d.validate(),
            Err(CatalogError::BadField(
                "http".into(),
                "expected an http:// or https:// URL".into()
            ))
        );
    }

    #[test]
    fn json_shape() {
        let j = serde_json::json!({
            "type": "http", "description": "web", "port": 80, "txt": {"a": "1", "b": "2"},
            "checks": [{"tcp": "127.0.0.1:80", "interval": "5s", "timeout": "1s"}]
        });
        let d: ServiceDef = serde_json::from_value(j).unwrap();
        assert_eq!(
            d.txt,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(d.checks[0].interval, Duration::from_secs(5));
        assert!(d.validate().is_ok());
        let back = serde_json::to_value(&d).unwrap();
        assert_eq!(serde_json::from_value::<ServiceDef>(back).unwrap(), d);
        let two = serde_json::json!({"tcp": "a:1", "script": "true"});
        assert!(serde_json::from_value::<CheckDef>(two).is_err());
        let null = serde_json::json!({"tcp": "a:1", "script": null});
        assert!(serde_json::from_value::<CheckDef>(null).is_err());
        let bad = serde_json::json!({"type": "http", "description": "w", "port": 80, "bogus": 1});
        assert!(serde_json::from_value::<ServiceDef>(bad).is_err());
        let dup = r#"{"type":"http","description":"w","port":80,"txt":{"a":"1","a":"2"}}"#;
        assert!(serde_json::from_str::<ServiceDef>(dup).is_err());
    }

    #[test]
    fn worst_health_wins() {
        assert_eq!(aggregate([]), Health::Passing);
        assert_eq!(
            aggregate([Health::Passing, Health::Critical, Health::Warning]),
            Health::Critical
        );
    }
}
