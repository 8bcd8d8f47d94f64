//! The node's own published services, persisted in an embedded ACID store
//! (redb) in the data dir: a publish that returned has been committed with
//! fsync, and a write interrupted by a crash leaves the previous committed
//! state (redb's copy-on-write B-trees with an atomic commit slot).
//!
//! One table, `services`: key `type/port`, value the [`ServiceDef`] as JSON
//! (readable with any JSON tool, and tolerant of new optional fields).
//! A row that no longer parses is reported and skipped, never deleted.

use crate::model::{service_key, ServiceDef};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};

const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the catalog store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("catalog store: {0}")]
    Db(String),
}

fn store_err<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// A row that could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub key: String,
    pub error: String,
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Open (or create) the store at `path`. A file that is not a redb
    /// database, or one another agent holds open, is an error: nothing is
    /// overwritten.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        nuvol_agent::fsutil::io_delay();
        let db = Database::create(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        // Make sure the table exists so that reads never fail on a new file.
        let tx = db.begin_write().map_err(store_err)?;
        tx.open_table(SERVICES).map_err(store_err)?;
        tx.commit().map_err(store_err)?;
        Ok(Store {
            db,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All stored services in key order, and the rows that did not parse.
    pub fn list(&self) -> Result<(Vec<ServiceDef>, Vec<BadRow>), StoreError> {
        let tx = self.db.begin_read().map_err(store_err)?;
        let table = tx.open_table(SERVICES).map_err(store_err)?;
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for row in table.iter().map_err(store_err)? {
            let (k, v) = row.map_err(store_err)?;
            match serde_json::from_slice::<ServiceDef>(v.value()) {
                Ok(d) => good.push(d),
                Err(e) => bad.push(BadRow {
                    key: k.value().to_owned(),
                    error: e.to_string(),
                }),
            }
        }
        Ok((good, bad))
    }

    /// Insert or replace (same type and port) one service; durable when
    /// this returns.
    pub fn put(&self, def: &ServiceDef) -> Result<(), StoreError> {
        nuvol_agent::fsutil::io_delay();
        let value = serde_json::to_vec(def).map_err(store_err)?;
        let tx = self.db.begin_write().map_err(store_err)?;
        {
            let mut t = tx.open_table(SERVICES).map_err(store_err)?;
            t.insert(def.key().as_str(), value.as_slice())
                .map_err(store_err)?;
        }
        tx.commit().map_err(store_err)
    }

    /// Remove a service; returns whether it existed.
    pub fn remove(&self, stype: &str, port: u16) -> Result<bool, StoreError> {
        nuvol_agent::fsutil::io_delay();
        let tx = self.db.begin_write().map_err(store_err)?;
        let existed = {
            let mut t = tx.open_table(SERVICES).map_err(store_err)?;
            let r = t
                .remove(service_key(stype, port).as_str())
                .map_err(store_err)?;
            r.is_some()
        };
        tx.commit().map_err(store_err)?;
        Ok(existed)
    }

    /// Remove every service of `stype` (avahi-ps's `unpublish TYPE` without a
    /// port); returns how many were removed. One transaction.
    pub fn remove_type(&self, stype: &str) -> Result<usize, StoreError> {
        nuvol_agent::fsutil::io_delay();
        let tx = self.db.begin_write().map_err(store_err)?;
        let n = {
            let mut t = tx.open_table(SERVICES).map_err(store_err)?;
            let prefix = format!("{stype}/");
            let keys: Vec<String> = t
                .iter()
                .map_err(store_err)?
                .filter_map(|r| r.ok().map(|(k, _)| k.value().to_owned()))
                .filter(|k| k.starts_with(&prefix))
                .collect();
            for k in &keys {
                t.remove(k.as_str()).map_err(store_err)?;
            }
            keys.len()
        };
        tx.commit().map_err(store_err)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(t: &str, port: u16) -> ServiceDef {
        ServiceDef {
            stype: t.into(),
            description: format!("{t} on {port}"),
            port,
            txt: vec![("k".into(), "v".into())],
            checks: vec![],
        }
    }

    #[test]
    fn put_list_remove_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.redb");
        {
            let s = Store::open(&path).unwrap();
            s.put(&def("http", 80)).unwrap();
            s.put(&def("http", 8080)).unwrap();
            s.put(&def("ssh", 22)).unwrap();
            let mut changed = def("ssh", 22);
            changed.description = "new".into();
            s.put(&changed).unwrap();
            assert!(s.remove("http", 80).unwrap());
            assert!(!s.remove("http", 80).unwrap());
        }
        let s = Store::open(&path).unwrap();
        let (list, bad) = s.list().unwrap();
        assert!(bad.is_empty());
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].description, "new");
        assert_eq!(s.remove_type("http").unwrap(), 1);
        assert_eq!(s.list().unwrap().0.len(), 1);
    }

    #[test]
    fn a_corrupt_file_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.redb");
        std::fs::write(&path, b"this is not a database, but someone's data").unwrap();
        let err = Store::open(&path).err().expect("must fail");
        assert!(err.to_string().contains("catalog.redb"), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"this is not a database, but someone's data"
        );
    }

    #[test]
    fn unreadable_rows_are_reported_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.redb");
        let s = Store::open(&path).unwrap();
        s.put(&def("http", 80)).unwrap();
        {
            let tx = s.db.begin_write().unwrap();
            tx.open_table(SERVICES)
                .unwrap()
                .insert("bogus/1", b"{not json".as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        let (good, bad) = s.list().unwrap();
        assert_eq!(good.len(), 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].key, "bogus/1");
        // still there
        assert_eq!(s.list().unwrap().1.len(), 1);
    }
}
