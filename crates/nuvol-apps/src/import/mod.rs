//! Other ecosystems' app templates turned into nuvol definitions: Cloudy's
//! (Guifi.net) JSON templates, CasaOS apps (a Compose file with `x-casaos`
//! blocks) and Portainer's app templates (v2 and v3 JSON).
//!
//! Each import produces a Compose file with an `x-nuvol` block, written
//! through serde (never pasted together as text), and a report naming what
//! could not be carried over. Every produced definition has been planned
//! with [`compose::plan`] (its required parameters filled with
//! placeholders) before it is returned, so an import never hands back a
//! definition the agent would refuse.

mod casaos;
mod cloudy;
mod portainer;

use crate::compose::{self, Definition};
use crate::error::AppError;
use crate::meta::{Localized, Meta, Param, ParamKind};
use nuvol_catalog::model::CheckDef;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A template file larger than this is refused (the biggest public
/// Portainer template lists are a few hundred KiB).
pub const MAX_INPUT: usize = 4 << 20;
/// At most this many templates are read from one file.
pub const MAX_TEMPLATES: usize = 1000;
/// At most this many files are read from one directory.
const MAX_DIR_FILES: usize = 1000;

/// Where a template came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Cloudy's (Guifi.net) docker templates.
    Cloudy,
    /// A CasaOS app (`docker-compose.yml` with `x-casaos`), or a plain
    /// Compose file.
    Casaos,
    /// Portainer app templates (v1 list, v2, v3).
    Portainer,
}

/// One template turned into a nuvol definition.
#[derive(Debug, Clone)]
pub struct Imported {
    pub id: String,
    pub definition: Definition,
    /// What was not carried over, or was changed, each naming the field.
    pub report: Vec<String>,
    pub format: Format,
}

/// What one file (or directory) gave: the templates imported and, for
/// those that could not be, why (a stack template, a bad entry), without
/// failing the others.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub apps: Vec<Imported>,
    pub skipped: Vec<String>,
}

/// Import the templates in `bytes`, detecting the format. `name_hint`
/// names the app when the template does not (a CasaOS app's directory).
/// An error when nothing could be imported (the reason of the first
/// skipped template is given).
pub fn import(bytes: &[u8], name_hint: Option<&str>) -> Result<Vec<Imported>, AppError> {
    let b = import_all(bytes, name_hint)?;
    if b.apps.is_empty() {
        return Err(AppError::Other(format!(
            "no template could be imported: {}",
            b.skipped.join("; ")
        )));
    }
    Ok(b.apps)
}

/// Like [`import`], but templates that cannot be imported are listed in
/// [`Batch::skipped`] instead of failing the file.
pub fn import_all(bytes: &[u8], name_hint: Option<&str>) -> Result<Batch, AppError> {
    let parse = |why: String| AppError::Parse {
        file: "template".into(),
        why,
    };
    if bytes.len() > MAX_INPUT {
        return Err(parse(format!(
            "is {} bytes; at most {MAX_INPUT} are read",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| parse(format!("is not UTF-8 text ({e})")))?;
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Err(parse("is empty".into()));
    }
    let batch = if text.starts_with('{') || text.starts_with('[') {
        let v: J = serde_json::from_str(text).map_err(|e| parse(format!("is not JSON: {e}")))?;
        match &v {
            J::Obj(o) if get(o, "templates").is_some() => portainer::import(&v)?,
            J::Obj(o) if get(o, "appname").is_some() || get(o, "image").is_some() => {
                cloudy::import(&v)?
            }
            J::Arr(a) => match a.first() {
                Some(J::Obj(o)) if get(o, "appname").is_some() => cloudy::import(&v)?,
                Some(J::Obj(o)) if get(o, "title").is_some() => portainer::import(&v)?,
                Some(_) => {
                    return Err(parse(
                        "a JSON list, but not of Cloudy (appname) or Portainer (title) templates"
                            .into(),
                    ))
                }
                None => return Err(parse("is an empty JSON list".into())),
            },
            _ => {
                return Err(parse(
                    "JSON, but neither Portainer templates ({\"templates\": [...]}) nor a Cloudy template (appname, image)".into(),
                ))
            }
        }
    } else {
        let v: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| parse(format!("is not YAML: {e}")))?;
        if v.get("services").is_none() {
            return Err(parse(
                "YAML, but not a Compose file (no services:); JSON is read as Cloudy or Portainer templates".into(),
            ));
        }
        casaos::import(v, name_hint)?
    };
    Ok(batch)
}

/// Import every template file of a directory (`*.json`, `*.yml`,
/// `*.yaml`; a CasaOS app directory's `docker-compose.yml` is named after
/// the directory). Files that fail are listed in [`Batch::skipped`].
pub fn import_dir(dir: &Path) -> Result<Batch, AppError> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| AppError::Other(format!("{}: {e}", dir.display())))?;
    let mut files: Vec<_> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "json" | "yml" | "yaml"))
        })
        .collect();
    files.sort();
    let mut out = Batch::default();
    if files.len() > MAX_DIR_FILES {
        out.skipped.push(format!(
            "{}: {} files; only the first {MAX_DIR_FILES} are read",
            dir.display(),
            files.len()
        ));
        files.truncate(MAX_DIR_FILES);
    }
    let dir_name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().and_then(|n| n.to_str()).map(str::to_owned));
    for f in files {
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or("app");
        let hint = if matches!(stem, "docker-compose" | "compose") {
            dir_name.clone()
        } else {
            Some(stem.to_owned())
        };
        let read = std::fs::metadata(&f)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                if m.len() > MAX_INPUT as u64 {
                    Err(format!(
                        "is {} bytes; at most {MAX_INPUT} are read",
                        m.len()
                    ))
                } else {
                    std::fs::read(&f).map_err(|e| e.to_string())
                }
            });
        match read
            .map_err(AppError::Other)
            .and_then(|b| import_all(&b, hint.as_deref()))
        {
            Ok(b) => {
                out.apps.extend(b.apps);
                out.skipped.extend(
                    b.skipped
                        .into_iter()
                        .map(|s| format!("{}: {s}", f.display())),
                );
            }
            Err(e) => out.skipped.push(format!("{}: {e}", f.display())),
        }
    }
    Ok(out)
}

/// Values that make every required parameter of `meta` given: each
/// kind's placeholder (for checking that a definition plans, not for
/// running it).
pub fn placeholders(meta: &Meta) -> BTreeMap<String, String> {
    meta.parameters
        .iter()
        .filter(|p| p.required && p.default.as_deref().is_none_or(str::is_empty))
        .map(|p| {
            let v = match p.kind {
                ParamKind::Port => "8080",
                ParamKind::Int => "1",
                ParamKind::Bool => "false",
                ParamKind::Path => "/srv/placeholder",
                ParamKind::String | ParamKind::Password => "placeholder",
            };
            (p.name.clone(), v.to_owned())
        })
        .collect()
}

/// Plan `def` as `id` with placeholders for its required parameters.
pub fn check(id: &str, def: &Definition) -> Result<(), AppError> {
    let (meta, _) = compose::read_meta(def)?;
    compose::plan(id, def, &placeholders(&meta)).map(|_| ())
}

/// Serialise an app and check that it plans.
fn finish(
    id: String,
    app: &OutCompose,
    report: Vec<String>,
    format: Format,
) -> Result<Imported, AppError> {
    let compose = serde_norway::to_string(app).map_err(|e| AppError::Other(e.to_string()))?;
    done(id, compose, report, format)
}

fn done(
    id: String,
    compose: String,
    report: Vec<String>,
    format: Format,
) -> Result<Imported, AppError> {
    let definition = Definition {
        compose,
        env_files: BTreeMap::new(),
    };
    check(&id, &definition)?;
    Ok(Imported {
        id,
        definition,
        report,
        format,
    })
}

// ---- Output: a Compose file with an x-nuvol block, as serde types. ----

/// A map serialised in the order its entries were pushed (Compose files
/// read better in the template's order, and the first service is the
/// default main one).
#[derive(Debug, Clone)]
pub(crate) struct Ordered<T>(pub Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<T> Ordered<T> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Set `k`, replacing an earlier value (as Compose does with a key
    /// given twice).
    fn set(&mut self, k: String, v: T) {
        self.0.retain(|(x, _)| *x != k);
        self.0.push((k, v));
    }
}

impl<T: Serialize> Serialize for Ordered<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// An empty mapping (`{}`), as a named volume's declaration.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Empty {}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct OutService {
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    pub environment: Ordered<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    pub restart: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    pub labels: Ordered<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct OutCompose {
    pub services: Ordered<OutService>,
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    pub volumes: Ordered<Empty>,
    #[serde(rename = "x-nuvol")]
    pub nuvol: NuvolBlock,
}

/// The `x-nuvol` block as written (a publish port may be `${PARAM}`,
/// which [`crate::meta::Publish`] reads only after interpolation).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct NuvolBlock {
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub main: Option<String>,
    #[serde(skip_serializing_if = "Localized::is_empty")]
    pub title: Localized,
    #[serde(skip_serializing_if = "Localized::is_empty")]
    pub description: Localized,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub category: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Param>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<OutPublish>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct OutPublish {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(rename = "type")]
    pub stype: String,
    pub port: PortRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub txt: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDef>,
}

/// A publish port: a number, or a `${PARAM}` reference.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum PortRef {
    N(u16),
    Param(String),
}

// ---- Helpers shared by the importers. ----

/// A string from a template as a literal Compose value: `$` doubled so
/// that it is not read as a parameter.
pub(crate) fn lit(s: &str) -> String {
    s.replace('$', "$$")
}

/// An app id (`[a-z0-9][a-z0-9-]{0,39}`) from any name; `app` when
/// nothing usable is left.
pub(crate) fn sanitize_id(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.truncate(40);
    let out = out.trim_matches('-').to_owned();
    if out.is_empty() {
        "app".into()
    } else {
        out
    }
}

/// An avahi-ps service type (`[A-Za-z0-9-]{1,63}`) from an app name.
pub(crate) fn sanitize_type(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out.truncate(63);
    let out = out.trim_matches('-').to_owned();
    if out.is_empty() {
        "app".into()
    } else {
        out
    }
}

/// A parameter name (`[A-Z_][A-Z0-9_]*`) from an environment name.
pub(crate) fn param_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if c.is_ascii_uppercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if !out
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
    {
        out.insert(0, '_');
    }
    out
}

/// A volume or service name (letters, digits, `-`, `_`, `.`, starting
/// with a letter or digit).
pub(crate) fn part_name(s: &str, fallback: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    while out
        .chars()
        .next()
        .is_some_and(|c| !c.is_ascii_alphanumeric())
    {
        out.remove(0);
    }
    if out.is_empty() {
        fallback.into()
    } else {
        out
    }
}

/// Docker's architecture name for Cloudy's, Debian's, Portainer's or
/// CasaOS's; `None` for one nuvol does not know.
pub(crate) fn map_arch(s: &str) -> Option<&'static str> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "amd64" | "x86_64" | "x86-64" | "x64" => "amd64",
        "arm64" | "aarch64" | "arm64v8" | "arm64/v8" => "arm64",
        "arm" | "armhf" | "armv7" | "armv7l" | "arm/v7" | "arm32v7" | "armel" | "armv6"
        | "armv6l" | "arm/v6" => "arm",
        "386" | "i386" | "i686" | "x86" => "386",
        "riscv64" => "riscv64",
        "ppc64le" | "ppc64el" => "ppc64le",
        "s390x" => "s390x",
        _ => return None,
    })
}

/// Whether an environment name looks like it holds a secret (made a
/// `password` parameter, never shown back).
pub(crate) fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "_KEY", "APIKEY"]
        .iter()
        .any(|w| n.contains(w))
}

/// A text cut to `max` characters (descriptions from templates can be
/// pages long; a catalog description is a line).
pub(crate) fn cut(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

pub(crate) use crate::compose::split_words as words;

/// `value` rendered for a report: strings as they are, others as JSON.
pub(crate) fn show(v: &J) -> String {
    match v {
        J::Str(s) => cut(s, 60),
        other => cut(
            &serde_json::to_string(&other.to_json()).unwrap_or_default(),
            60,
        ),
    }
}

// ---- JSON read in order. ----

/// A JSON value whose objects keep their keys in the file's order
/// (serde_json's map sorts them unless a crate-wide feature is turned
/// on; a Cloudy template's first port is the published one).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum J {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

pub(crate) fn get<'a>(o: &'a [(String, J)], k: &str) -> Option<&'a J> {
    o.iter().rev().find(|(x, _)| x == k).map(|(_, v)| v)
}

impl J {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A string, or a number or boolean written as one (templates mix
    /// `"port": 80` and `"port": "80"`).
    pub(crate) fn as_text(&self) -> Option<String> {
        match self {
            J::Str(s) => Some(s.clone()),
            J::Num(n) => Some(n.to_string()),
            J::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            J::Null => "null",
            J::Bool(_) => "a boolean",
            J::Num(_) => "a number",
            J::Str(_) => "a string",
            J::Arr(_) => "a list",
            J::Obj(_) => "an object",
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            J::Null => serde_json::Value::Null,
            J::Bool(b) => serde_json::Value::Bool(*b),
            J::Num(n) => serde_json::Value::Number(n.clone()),
            J::Str(s) => serde_json::Value::String(s.clone()),
            J::Arr(a) => serde_json::Value::Array(a.iter().map(J::to_json).collect()),
            J::Obj(o) => {
                serde_json::Value::Object(o.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_none<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<J, E> {
                Ok(J::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<J, E> {
                Ok(J::Num(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<J, E> {
                Ok(J::Num(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<J, E> {
                Ok(serde_json::Number::from_f64(n).map_or(J::Null, J::Num))
            }
            fn visit_str<E>(self, s: &str) -> Result<J, E> {
                Ok(J::Str(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<J, E> {
                Ok(J::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(J::Arr(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = a.next_entry::<String, J>()? {
                    v.push((k, x));
                }
                Ok(J::Obj(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised() {
        assert_eq!(sanitize_id("My App_2!"), "my-app-2");
        assert_eq!(sanitize_id("***"), "app");
        assert_eq!(sanitize_id(&"a".repeat(80)).len(), 40);
        assert_eq!(sanitize_type("go ipfs!"), "go-ipfs");
        assert_eq!(param_name("db.pass"), "DB_PASS");
        assert_eq!(param_name("1x"), "_1X");
        assert_eq!(part_name("/var/lib/data", "v"), "var-lib-data");
        assert_eq!(map_arch("armhf"), Some("arm"));
        assert_eq!(map_arch("aarch64"), Some("arm64"));
        assert_eq!(map_arch("x86_64"), Some("amd64"));
        assert_eq!(map_arch("vax"), None);
        assert_eq!(lit("a$b"), "a$$b");
    }

    #[test]
    fn bad_input_is_an_error_naming_the_cause() {
        for (input, want) in [
            (&b""[..], "empty"),
            (b"   \n", "empty"),
            (b"\xff\xfe", "UTF-8"),
            (b"{", "not JSON"),
            (b"[]", "empty JSON list"),
            (b"[1, 2]", "not of Cloudy"),
            (b"42", "not a Compose file"),
            (b"{\"x\": 1}", "neither Portainer"),
            (b"services: [", "not YAML"),
            (b"a: b", "no services"),
            (b"{\"templates\": 3}", "templates"),
            (b"{\"appname\": 3}", "appname"),
            (b"services: 3", "services"),
        ] {
            let e = import(input, None).unwrap_err().to_string();
            assert!(
                e.contains(want),
                "{:?}: {e}",
                String::from_utf8_lossy(input)
            );
        }
        let huge = vec![b' '; MAX_INPUT + 1];
        assert!(import(&huge, None)
            .unwrap_err()
            .to_string()
            .contains("at most"));
        let deep = "[".repeat(10_000);
        assert!(import(deep.as_bytes(), None).is_err());
    }
}
