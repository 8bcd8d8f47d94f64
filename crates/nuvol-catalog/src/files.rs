//! Service files: a directory of TOML files (like avahi's
//! `/etc/avahi/services`), each describing one service at the top level or
//! several as `[[service]]` tables, in the same shape as the REST API's
//! `POST /v1/services` body:
//!
//! ```toml
//! type = "http"
//! description = "Home page"
//! port = 80
//! txt = { path = "/" }
//! [[checks]]
//! http = "http://127.0.0.1/"
//! interval = "10s"
//! ```

use crate::model::ServiceDef;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Many {
    service: Vec<ServiceDef>,
}

/// Parse one file's text.
pub fn parse(path: &Path, text: &str) -> Result<Vec<ServiceDef>, FileError> {
    let invalid = |message: String| FileError::Invalid {
        path: path.to_owned(),
        message,
    };
    let value: toml::Table = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let defs = if value.contains_key("service") {
        toml::Value::Table(value)
            .try_into::<Many>()
            .map_err(|e| invalid(e.to_string()))?
            .service
    } else {
        vec![toml::Value::Table(value)
            .try_into::<ServiceDef>()
            .map_err(|e| invalid(e.to_string()))?]
    };
    for d in &defs {
        d.validate().map_err(|e| invalid(e.to_string()))?;
    }
    Ok(defs)
}

/// The result of reading a directory: services by key with the file that
/// defined them, and the files that failed (the caller keeps what those
/// files defined before).
#[derive(Debug, Default)]
pub struct DirScan {
    pub services: BTreeMap<String, (ServiceDef, PathBuf)>,
    pub errors: Vec<FileError>,
    /// Files that failed, so their previous services can be kept.
    pub failed: Vec<PathBuf>,
}

/// Read every `*.toml` file of `dir` (sorted; a key defined twice: the
/// first file wins and the second is an error). A missing directory is
/// empty.
pub fn scan(dir: &Path) -> DirScan {
    let mut out = DirScan::default();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(source) => {
            out.errors.push(FileError::Io {
                path: dir.to_owned(),
                source,
            });
            return out;
        }
    };
    paths.sort();
    for p in paths {
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(source) => {
                out.errors.push(FileError::Io {
                    path: p.clone(),
                    source,
                });
                out.failed.push(p);
                continue;
            }
        };
        match parse(&p, &text) {
            Ok(defs) => {
                for d in defs {
                    let key = d.key();
                    if let Some((_, first)) = out.services.get(&key) {
                        out.errors.push(FileError::Invalid {
                            path: p.clone(),
                            message: format!("{key} is already defined in {}", first.display()),
                        });
                        continue;
                    }
                    out.services.insert(key, (d, p.clone()));
                }
            }
            Err(e) => {
                out.errors.push(e);
                out.failed.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_many_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.toml"),
            "type = \"http\"\ndescription = \"Home\"\nport = 80\ntxt = { path = \"/\" }\n[[checks]]\ntcp = \"127.0.0.1:80\"\ninterval = \"5s\"\ntimeout = \"1s\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.toml"),
            "[[service]]\ntype = \"ssh\"\ndescription = \"Shell\"\nport = 22\n[[service]]\ntype = \"http\"\ndescription = \"dup\"\nport = 80\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("c.toml"),
            "type = \"bad type\"\ndescription = \"x\"\nport = 1\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("d.toml"), "port = 99999\n").unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "garbage").unwrap();
        let s = scan(dir.path());
        assert_eq!(
            s.services.keys().collect::<Vec<_>>(),
            vec!["http/80", "ssh/22"]
        );
        assert_eq!(s.services["http/80"].0.checks.len(), 1);
        assert_eq!(s.errors.len(), 3, "{:?}", s.errors);
        assert_eq!(s.failed.len(), 2);
        let msg = s
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            msg.contains("c.toml") && msg.contains("d.toml") && msg.contains("already defined"),
            "{msg}"
        );
        assert!(scan(&dir.path().join("missing")).services.is_empty());
    }
}
