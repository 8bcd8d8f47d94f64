//! The `x-nuvol` block of an app's Compose file, modelled on CasaOS's
//! `x-casaos`: who the app is (id, version, title, description, category,
//! icon), where it runs (architectures), what a user fills in at install
//! time (parameters), and what it offers the community (publish).

use crate::error::AppError;
use nuvol_catalog::model::CheckDef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A text in one language or several (`{en: ..., ca: ...}`), as CasaOS
/// writes titles and descriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Localized {
    One(String),
    Many(BTreeMap<String, String>),
}

impl Default for Localized {
    fn default() -> Self {
        Localized::One(String::new())
    }
}

impl Localized {
    /// The text in `lang`, else English (`en`, `en_us`, `en_US`), else any.
    pub fn get(&self, lang: &str) -> &str {
        match self {
            Localized::One(s) => s,
            Localized::Many(m) => m
                .get(lang)
                .or_else(|| {
                    m.iter()
                        .find(|(k, _)| k.to_ascii_lowercase().starts_with("en"))
                        .map(|(_, v)| v)
                })
                .or_else(|| m.values().next())
                .map_or("", String::as_str),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.get("en").is_empty()
    }
}

/// What a parameter holds; its value is checked against it at install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    #[default]
    String,
    /// A secret: never shown back (status, list, logs of the agent).
    Password,
    Int,
    /// 1..=65535.
    Port,
    /// `true` or `false`.
    Bool,
    /// An absolute host path.
    Path,
}

/// A value the user fills in at install time, used in the Compose file as
/// `${NAME}` (or `${NAME:-default}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// `[A-Z_][A-Z0-9_]*`, as an environment variable.
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: ParamKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Localized::is_empty")]
    pub description: Localized,
}

/// A port the app offers to the community catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// The Compose service behind it (default: the main service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// avahi-ps service type (`http`, `syncthing`, ...).
    #[serde(rename = "type")]
    pub stype: String,
    /// The host port (a number, or `${PARAM}`).
    #[serde(deserialize_with = "port_value")]
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub txt: BTreeMap<String, String>,
    /// Health checks run by the agent (default: a TCP connect to the port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDef>,
}

/// A port as a number or as a string of digits (what `${PORT}` becomes).
fn port_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum P {
        N(u64),
        S(String),
    }
    let n = match P::deserialize(d)? {
        P::N(n) => n,
        P::S(s) => s
            .trim()
            .parse::<u64>()
            .map_err(|_| serde::de::Error::custom(format!("port {s:?} is not a number")))?,
    };
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| serde::de::Error::custom(format!("port {n} is not in 1..=65535")))
}

/// The `x-nuvol` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// The app's id in a store (`[a-z0-9][a-z0-9-]*`); the default
    /// install name.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub version: String,
    /// The service a user means by "the app" (logs, the open link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<String>,
    #[serde(default, skip_serializing_if = "Localized::is_empty")]
    pub title: Localized,
    #[serde(default, skip_serializing_if = "Localized::is_empty")]
    pub description: Localized,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub category: String,
    /// A URL or a store-relative path of an icon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// Docker's names (`amd64`, `arm64`, `arm`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Param>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<Publish>,
    /// What runs the services: `docker` (the default) or `process`
    /// (programs installed on the host).
    #[serde(default, skip_serializing_if = "crate::plan::Driver::is_docker")]
    pub driver: crate::plan::Driver,
    /// An HA app: each Compose service runs as a Docker Swarm service
    /// (see `crate::ha`), published from wherever its task runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ha: bool,
    /// Tasks of each service of an HA app (default 1: a singleton).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

/// Valid app and id names: `[a-z0-9][a-z0-9-]{0,39}` (they become parts of
/// container, volume and network names, and of DNS labels).
pub fn validate_name(what: &str, s: &str) -> Result<(), AppError> {
    let ok = !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(
            what,
            format!("{s:?} must be 1 to 40 of a-z, 0-9 and '-', not starting or ending with '-'"),
        ))
    }
}

/// Docker's name of this machine's CPU architecture.
pub fn this_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

impl Meta {
    /// Whether the app runs on `arch` (Docker's name).
    pub fn runs_on(&self, arch: &str) -> bool {
        self.architectures.is_empty()
            || self
                .architectures
                .iter()
                .any(|a| a == arch || (arch == "arm" && a.starts_with("arm/v")))
    }

    /// Check names and parameters; `services` are the Compose file's.
    pub fn validate(&self, services: &[String]) -> Result<(), AppError> {
        if !self.id.is_empty() {
            validate_name("x-nuvol.id", &self.id)?;
        }
        if let Some(m) = &self.main {
            if !services.contains(m) {
                return Err(AppError::invalid(
                    "x-nuvol.main",
                    format!("no service {m:?} in the Compose file"),
                ));
            }
        }
        if let Some(r) = self.replicas {
            if !self.ha {
                return Err(AppError::invalid(
                    "x-nuvol.replicas",
                    "is for HA apps only (x-nuvol.ha: true)",
                ));
            }
            if r == 0 || r > crate::ha::MAX_REPLICAS {
                return Err(AppError::invalid(
                    "x-nuvol.replicas",
                    format!("{r} is not in 1..={}", crate::ha::MAX_REPLICAS),
                ));
            }
        }
        if self.ha && !self.driver.is_docker() {
            return Err(AppError::invalid(
                "x-nuvol.ha",
                "HA apps run on Docker Swarm: not with driver: process",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.parameters {
            let ok = p
                .name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(AppError::invalid(
                    "x-nuvol.parameters",
                    format!("name {:?} must match [A-Z_][A-Z0-9_]*", p.name),
                ));
            }
            if !seen.insert(&p.name) {
                return Err(AppError::invalid(
                    "x-nuvol.parameters",
                    format!("{} is declared twice", p.name),
                ));
            }
            if let Some(d) = &p.default {
                check_value(p, d)?;
            }
        }
        for (i, p) in self.publish.iter().enumerate() {
            if let Some(s) = &p.service {
                if !services.contains(s) {
                    return Err(AppError::invalid(
                        &format!("x-nuvol.publish[{i}].service"),
                        format!("no service {s:?} in the Compose file"),
                    ));
                }
            }
            nuvol_catalog::cloudy::validate_type(&p.stype).map_err(|e| {
                AppError::invalid(&format!("x-nuvol.publish[{i}].type"), e.to_string())
            })?;
            // What the catalog would refuse at publish time is refused
            // here, at install: otherwise the app runs and is never
            // published, with only a warning in the log to say why.
            for (j, c) in p.checks.iter().enumerate() {
                if let Err(nuvol_checks::model::CheckError(f, m)) = c.validate() {
                    return Err(AppError::invalid(
                        &format!("x-nuvol.publish[{i}].checks[{j}].{f}"),
                        m,
                    ));
                }
            }
            let def = nuvol_catalog::model::ServiceDef {
                stype: p.stype.clone(),
                // The title stands in when there is none.
                description: p.description.clone().unwrap_or_else(|| "-".into()),
                port: p.port,
                txt: p.txt.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                checks: p.checks.clone(),
            };
            def.validate()
                .map_err(|e| AppError::invalid(&format!("x-nuvol.publish[{i}]"), e.to_string()))?;
        }
        Ok(())
    }
}

/// Check a parameter's value against its kind.
pub fn check_value(p: &Param, v: &str) -> Result<(), AppError> {
    let field = format!("parameter {}", p.name);
    if v.chars().any(|c| c.is_control()) {
        return Err(AppError::invalid(
            &field,
            "must not hold control characters",
        ));
    }
    if v.len() > 4096 {
        return Err(AppError::invalid(&field, "is longer than 4096 bytes"));
    }
    let bad = |why: &str| Err(AppError::invalid(&field, format!("{v:?} {why}")));
    match p.kind {
        ParamKind::String | ParamKind::Password => Ok(()),
        ParamKind::Int => match v.parse::<i64>() {
            Ok(_) => Ok(()),
            Err(_) => bad("is not an integer"),
        },
        ParamKind::Port => match v.parse::<u16>() {
            Ok(n) if n > 0 => Ok(()),
            _ => bad("is not a port (1 to 65535)"),
        },
        ParamKind::Bool => match v {
            "true" | "false" => Ok(()),
            _ => bad("is not true or false"),
        },
        ParamKind::Path => {
            if v.starts_with('/') && !v.split('/').any(|c| c == "..") {
                Ok(())
            } else {
                bad("is not an absolute path without '..'")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(kind: ParamKind) -> Param {
        Param {
            name: "P".into(),
            kind,
            default: None,
            required: false,
            description: Localized::default(),
        }
    }

    #[test]
    fn values_are_checked_by_kind() {
        assert!(check_value(&param(ParamKind::Port), "8080").is_ok());
        for bad in ["0", "65536", "x", ""] {
            assert!(check_value(&param(ParamKind::Port), bad).is_err(), "{bad}");
        }
        assert!(check_value(&param(ParamKind::Bool), "yes").is_err());
        assert!(check_value(&param(ParamKind::Path), "/srv/x").is_ok());
        assert!(check_value(&param(ParamKind::Path), "/srv/../etc").is_err());
        assert!(check_value(&param(ParamKind::Path), "rel").is_err());
        assert!(check_value(&param(ParamKind::String), "a\nb").is_err());
        let e = check_value(&param(ParamKind::Int), "1.5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("parameter P"), "{e}");
    }

    #[test]
    fn names_and_languages() {
        assert!(validate_name("name", "web-1").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", &"a".repeat(41)] {
            assert!(validate_name("name", bad).is_err(), "{bad}");
        }
        let l = Localized::Many(BTreeMap::from([
            ("ca".into(), "Núvol".into()),
            ("en_us".into(), "Cloud".into()),
        ]));
        assert_eq!(l.get("ca"), "Núvol");
        assert_eq!(l.get("es"), "Cloud");
    }

    #[test]
    fn architectures() {
        let mut m = Meta::default();
        assert!(m.runs_on("arm64"));
        m.architectures = vec!["amd64".into(), "arm/v7".into()];
        assert!(m.runs_on("amd64"));
        assert!(m.runs_on("arm"));
        assert!(!m.runs_on("arm64"));
    }

    #[test]
    fn a_publish_entry_the_catalog_would_refuse_is_refused_at_install() {
        let publish = |v: serde_json::Value| -> Meta {
            Meta {
                publish: vec![serde_json::from_value(v).unwrap()],
                ..Meta::default()
            }
        };
        let ok = publish(serde_json::json!({"type": "http", "port": 80,
            "checks": [{"tcp": "127.0.0.1:80", "interval": "5s", "timeout": "1s"}]}));
        assert!(ok.validate(&[]).is_ok());
        // A timeout longer than the interval: the catalog refuses it.
        let e = publish(serde_json::json!({"type": "http", "port": 80,
            "checks": [{"tcp": "127.0.0.1:80", "interval": "1s", "timeout": "5s"}]}))
        .validate(&[])
        .unwrap_err()
        .to_string();
        assert!(e.contains("x-nuvol.publish[0].checks[0]"), "{e}");
        let e = publish(serde_json::json!({"type": "http", "port": 80,
            "txt": {"a b": "1"}}))
        .validate(&[])
        .unwrap_err()
        .to_string();
        assert!(e.contains("x-nuvol.publish[0]"), "{e}");
    }
}
