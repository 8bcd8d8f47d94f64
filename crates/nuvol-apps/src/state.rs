//! The desired state of this node's apps, in an embedded ACID store
//! (redb, `DATA_DIR/apps.redb`): an install, a start or a stop that
//! returned is committed (fsync), so after an agent restart, a daemon
//! restart or a reboot the reconciler knows what should run.
//!
//! One table, `apps`: key the app's name, value an [`AppRecord`] as JSON
//! (readable with any JSON tool, tolerant of new optional fields). A row
//! that no longer parses is reported and left as it is, never deleted.

use crate::compose::Definition;
use crate::reconcile::Want;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot open the apps store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("apps store: {0}")]
    Db(String),
}

fn db_err<E: std::fmt::Display>(e: E) -> StateError {
    StateError::Db(e.to_string())
}

/// What an upgrade replaced, to roll back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    pub definition: Definition,
    pub params: BTreeMap<String, String>,
    pub version: String,
    /// The image id each service ran (`sha256:...`), so a rollback runs
    /// the very same bits even if a tag moved.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
}

/// One installed app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub name: String,
    /// Where it came from: a store id, a file path, an import.
    pub source: String,
    pub definition: Definition,
    /// Parameter values (passwords included: containers are recreated
    /// from them; the API never shows them).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub want: Want,
    #[serde(default)]
    pub version: String,
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub installed_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// Services run from an image id (`sha256:...`) instead of the image
    /// their definition names: set by a rollback when the tag has moved
    /// since, so that the stored record plans to exactly the containers
    /// the rollback created (and the reconciler leaves them alone).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pinned: BTreeMap<String, String>,
}

/// A row that could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub key: String,
    pub error: String,
}

pub struct State {
    db: Database,
}

impl State {
    /// Open (or create) the store at `path`. A file that is not a redb
    /// database is an error: nothing is overwritten.
    pub fn open(path: &Path) -> Result<State, StateError> {
        let db = Database::create(path).map_err(|source| StateError::Open {
            path: path.to_owned(),
            source,
        })?;
        let tx = db.begin_write().map_err(db_err)?;
        tx.open_table(APPS).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(State { db })
    }

    /// Every app, and the rows that did not parse.
    pub fn list(&self) -> Result<(Vec<AppRecord>, Vec<BadRow>), StateError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(APPS).map_err(db_err)?;
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            match serde_json::from_slice::<AppRecord>(v.value()) {
                Ok(r) => good.push(r),
                Err(e) => bad.push(BadRow {
                    key: k.value().to_owned(),
                    error: e.to_string(),
                }),
            }
        }
        Ok((good, bad))
    }

    /// Insert or replace, committed before it returns.
    pub fn put(&self, r: &AppRecord) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(r).map_err(db_err)?;
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(APPS).map_err(db_err)?;
            t.insert(r.name.as_str(), bytes.as_slice())
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Remove; true if it was there.
    pub fn remove(&self, name: &str) -> Result<bool, StateError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let had = {
            let mut t = tx.open_table(APPS).map_err(db_err)?;
            let had = t.remove(name).map_err(db_err)?.is_some();
            had
        };
        tx.commit().map_err(db_err)?;
        Ok(had)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> AppRecord {
        AppRecord {
            name: name.into(),
            source: "test".into(),
            definition: Definition {
                compose: "services: {web: {image: x}}".into(),
                env_files: BTreeMap::new(),
            },
            params: BTreeMap::from([("P".into(), "1".into())]),
            want: Want::Running,
            version: "1".into(),
            installed_at: 1,
            previous: None,
            pinned: BTreeMap::new(),
        }
    }

    #[test]
    fn survives_reopen_and_reports_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apps.redb");
        {
            let s = State::open(&path).unwrap();
            s.put(&rec("a")).unwrap();
            s.put(&rec("b")).unwrap();
            assert!(s.remove("b").unwrap());
            assert!(!s.remove("b").unwrap());
            // A row written by something else, not an AppRecord.
            let tx = s.db.begin_write().unwrap();
            tx.open_table(APPS)
                .unwrap()
                .insert("junk", b"{not json".as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        let s = State::open(&path).unwrap();
        let (good, bad) = s.list().unwrap();
        assert_eq!(good, vec![rec("a")]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].key, "junk");
    }

    #[test]
    fn a_file_that_is_not_a_store_is_an_error_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apps.redb");
        std::fs::write(&path, b"precious, not redb").unwrap();
        let e = State::open(&path).err().unwrap().to_string();
        assert!(e.contains("apps.redb"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious, not redb");
    }
}
