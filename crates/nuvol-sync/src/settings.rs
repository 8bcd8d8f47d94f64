//! `[sync]`: whether nuvol runs (or attaches to) the node's Syncthing, where,
//! and the folders it keeps shared.

use nuvol_agent::config::{Addr, BadValue, ConfigError, Secret, Setting, Validate};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use toml::Value;

/// The sync protocol port Syncthing uses when none is given.
pub const DEFAULT_PORT: u16 = 22000;

nuvol_agent::settings! {
    /// Replicated folders, kept by the node's Syncthing.
    pub struct SyncSettings in "sync", "Sync" {
        /// Keep the folders below shared with the other nodes through
        /// Syncthing.
        enable: bool = false, flag "sync";
        /// The Syncthing program nuvol runs.
        syncthing: String = "syncthing".to_owned(), flag "syncthing";
        /// Syncthing's home (its keys, config and database); "" is
        /// DATA_DIR/syncthing.
        home: PathBuf = PathBuf::new(), flag "syncthing-home";
        /// Syncthing's GUI/REST address (IP:PORT) nuvol runs it with, or
        /// where the one it attaches to listens.
        gui: String = "127.0.0.1:8384".to_owned(), flag "syncthing-gui";
        /// The REST API key of a Syncthing nuvol attaches to (when nuvol runs
        /// Syncthing it makes one and keeps it in the home).
        api_key: Option<Secret> = None, flag "syncthing-api-key", env "NUVOL_SYNCTHING_API_KEY";
        /// Use the Syncthing already running at `gui` with `api_key` instead
        /// of starting one.
        attach: bool = false, flag "syncthing-attach";
        /// Where Syncthing listens for its peers (tcp://IP:PORT); the other
        /// nodes are given tcp://<this node's gossip IP>:PORT.
        listen: String = format!("tcp://0.0.0.0:{DEFAULT_PORT}"), flag "sync-listen";
        /// Time between two looks at Syncthing (its config, the folders'
        /// state); membership changes are applied at once.
        poll_every: Duration = Duration::from_secs(5), flag "sync-poll-every";
        /// The shared folders: { id, path, nodes = [gossip node names],
        /// follow_app = "NAME" } (nodes empty: every node with sync on;
        /// follow_app: send-only on the node where app NAME runs,
        /// receive-only on the others, flipping when it moves); flag
        /// ID=PATH[:NODE,...] (repeatable).
        folders: Folders = Folders::default(), flag "sync-folder";
    }
}

/// One folder kept shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderSpec {
    /// Syncthing's folder id, the same on every node.
    pub id: String,
    /// Where it is on this node.
    pub path: PathBuf,
    /// The nodes sharing it (gossip names); empty: every node with sync.
    pub nodes: Vec<String>,
    /// The app it follows: send-only on the node where the app runs
    /// (published and healthy in the catalog), receive-only elsewhere.
    pub follow_app: Option<String>,
}

impl FolderSpec {
    /// Whether `node` shares this folder.
    pub fn shared_by(&self, node: &str) -> bool {
        self.nodes.is_empty() || self.nodes.iter().any(|n| n == node)
    }
}

/// The folder list (`folders` in the file, `--sync-folder` flags added).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folders(pub Vec<FolderSpec>);

fn folder_from_table(v: Value, i: usize) -> Result<FolderSpec, BadValue> {
    let Value::Table(mut t) = v else {
        return Err(BadValue(format!(
            "folders[{i}]: expected a table {{ id, path, nodes, follow_app }}"
        )));
    };
    let text = |t: &mut toml::Table, k: &str| -> Result<String, BadValue> {
        match t.remove(k) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(BadValue(format!("folders[{i}].{k}: expected a string"))),
            None => Err(BadValue(format!("folders[{i}]: {k} is missing"))),
        }
    };
    let id = text(&mut t, "id")?;
    let path = PathBuf::from(text(&mut t, "path")?);
    let nodes = match t.remove("nodes") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|n| match n {
                Value::String(s) => Ok(s),
                _ => Err(BadValue(format!(
                    "folders[{i}].nodes: expected a list of node names"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(BadValue(format!(
                "folders[{i}].nodes: expected a list of node names"
            )))
        }
    };
    let follow_app = match t.remove("follow_app") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            return Err(BadValue(format!(
                "folders[{i}].follow_app: expected an app name"
            )))
        }
    };
    if let Some(k) = t.keys().next() {
        return Err(BadValue(format!(
            "folders[{i}].{k}: unknown key (keys: id, path, nodes, follow_app)"
        )));
    }
    Ok(FolderSpec {
        id,
        path,
        nodes,
        follow_app,
    })
}

impl Setting for Folders {
    const VALUE_NAME: &'static str = "ID=PATH[:NODE,...]";
    const REPEATED: bool = true;
    fn from_toml(v: Value) -> Result<Self, BadValue> {
        match v {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| folder_from_table(v, i))
                .collect::<Result<_, _>>()
                .map(Folders),
            _ => Err(BadValue(
                "expected a list of tables { id, path, nodes }".into(),
            )),
        }
    }
    fn from_flag(s: &str) -> Result<Self, BadValue> {
        let (id, rest) = s.split_once('=').ok_or_else(|| {
            BadValue(format!("invalid folder {s:?}: expected ID=PATH[:NODE,...]"))
        })?;
        // The node list follows the last ':' unless what follows is part of
        // the path (has a '/').
        let (path, nodes) = match rest.rsplit_once(':') {
            Some((p, n)) if !n.contains('/') => (
                p,
                n.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => (rest, Vec::new()),
        };
        Ok(Folders(vec![FolderSpec {
            id: id.to_owned(),
            path: PathBuf::from(path),
            nodes,
            follow_app: None,
        }]))
    }
    fn merge(file: Option<Self>, flags: Option<Self>) -> Option<Self> {
        match (file, flags) {
            (Some(mut a), Some(b)) => {
                a.0.extend(b.0);
                Some(a)
            }
            (a, b) => b.or(a),
        }
    }
}

/// Whether `id` can be a folder id: 1 to 64 of `[A-Za-z0-9._-]`.
pub fn valid_folder_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The port of a `tcp://HOST:PORT` listen address.
pub fn listen_port(listen: &str) -> Result<u16, String> {
    let rest = listen
        .strip_prefix("tcp://")
        .ok_or_else(|| format!("{listen:?} is not a tcp://IP:PORT address"))?;
    let a: SocketAddr = rest
        .parse()
        .map_err(|_| format!("{listen:?} is not a tcp://IP:PORT address"))?;
    if a.port() == 0 {
        return Err(format!("{listen:?}: give a port"));
    }
    Ok(a.port())
}

impl SyncSettings {
    /// The GUI/REST address.
    pub fn gui_addr(&self) -> Result<SocketAddr, BadValue> {
        self.gui.parse::<Addr<8384>>().map(|a| a.0)
    }
}

impl Validate for SyncSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.syncthing.trim().is_empty() {
            return Err(ConfigError::invalid::<Self>("syncthing", "is empty"));
        }
        self.gui_addr()
            .map_err(|e| ConfigError::invalid::<Self>("gui", e))?;
        listen_port(&self.listen).map_err(|e| ConfigError::invalid::<Self>("listen", e))?;
        if self.attach && self.api_key.as_ref().is_none_or(|k| k.0.is_empty()) {
            return Err(ConfigError::invalid::<Self>(
                "api_key",
                "attach = true needs the API key of the running Syncthing",
            ));
        }
        if self.poll_every < Duration::from_millis(500) {
            return Err(ConfigError::invalid::<Self>(
                "poll_every",
                "must be at least 500ms",
            ));
        }
        let mut ids = BTreeSet::new();
        let mut paths = BTreeSet::new();
        for f in &self.folders.0 {
            if !valid_folder_id(&f.id) {
                return Err(ConfigError::invalid::<Self>(
                    "folders",
                    format!(
                        "folder id {:?} must be 1 to 64 of A-Z, a-z, 0-9, '.', '_', '-'",
                        f.id
                    ),
                ));
            }
            if !f.path.is_absolute() {
                return Err(ConfigError::invalid::<Self>(
                    "folders",
                    format!(
                        "folder {}: path {:?} is not absolute",
                        f.id,
                        f.path.display()
                    ),
                ));
            }
            if !ids.insert(f.id.clone()) {
                return Err(ConfigError::invalid::<Self>(
                    "folders",
                    format!("folder id {} is listed twice", f.id),
                ));
            }
            if !paths.insert(f.path.clone()) {
                return Err(ConfigError::invalid::<Self>(
                    "folders",
                    format!("path {} is given to two folders", f.path.display()),
                ));
            }
            if f.follow_app.as_ref().is_some_and(|a| a.trim().is_empty()) {
                return Err(ConfigError::invalid::<Self>(
                    "folders",
                    format!("folder {}: follow_app is empty", f.id),
                ));
            }
            if let Some(n) = f.nodes.iter().find(|n| n.trim().is_empty()) {
                return Err(ConfigError::invalid::<Self>(
                    "folders",
                    format!("folder {}: node name {n:?} is empty", f.id),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nuvol_agent::config::{ConfigFile, Section};

    fn load(file: &str, args: &[&str]) -> Result<SyncSettings, ConfigError> {
        let m = clap::Command::new("t")
            .args(SyncSettings::args())
            .try_get_matches_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"));
        let f = ConfigFile::parse(file, None)?;
        SyncSettings::load(f.section("sync"), &m)
    }

    #[test]
    fn defaults_are_off_with_no_folders() {
        let s = load("", &[]).unwrap();
        assert!(!s.enable && !s.attach);
        assert_eq!(s.gui, "127.0.0.1:8384");
        assert_eq!(listen_port(&s.listen).unwrap(), DEFAULT_PORT);
        assert!(s.folders.0.is_empty());
    }

    #[test]
    fn folders_from_the_file_and_flags() {
        let s = load(
            "[sync]\nenable = true\nfolders = [{ id = 'docs', path = '/srv/docs' }, { id = 'app.db', path = '/srv/db', nodes = ['a', 'b'], follow_app = 'db' }]\n",
            &["--sync-folder", "pics=/srv/pics:a,c", "--sync-folder", "x=/srv/x:y/z"],
        )
        .unwrap();
        let f = &s.folders.0;
        assert_eq!(f.len(), 4);
        assert_eq!(f[0].id, "docs");
        assert!(f[0].nodes.is_empty() && f[0].shared_by("any"));
        assert_eq!(f[1].nodes, ["a", "b"]);
        assert_eq!(f[1].follow_app.as_deref(), Some("db"));
        assert_eq!(f[0].follow_app, None);
        assert!(!f[1].shared_by("c"));
        assert_eq!(f[2].path, PathBuf::from("/srv/pics"));
        assert_eq!(f[2].nodes, ["a", "c"]);
        assert_eq!(
            f[3].path,
            PathBuf::from("/srv/x:y/z"),
            "a ':' inside the path"
        );
        assert!(f[3].nodes.is_empty());
        // The array-of-tables form.
        let s = load(
            "[sync]\n[[sync.folders]]\nid = 'a'\npath = '/a'\n[[sync.folders]]\nid = 'b'\npath = '/b'\n",
            &[],
        )
        .unwrap();
        assert_eq!(s.folders.0.len(), 2);
    }

    #[test]
    fn bad_folders_and_addresses_are_named() {
        let e = |file: &str, args: &[&str]| load(file, args).unwrap_err().to_string();
        assert!(e("[sync]\nfolders = [{ id = 'a b', path = '/a' }]\n", &[])
            .contains("folder id \"a b\" must be"));
        assert!(e("[sync]\nfolders = [{ id = 'a', path = 'rel' }]\n", &[])
            .contains("path \"rel\" is not absolute"));
        assert!(e(
            "[sync]\nfolders = [{ id = 'a', path = '/a' }, { id = 'a', path = '/b' }]\n",
            &[]
        )
        .contains("folder id a is listed twice"));
        assert!(e(
            "[sync]\nfolders = [{ id = 'a', path = '/a' }, { id = 'b', path = '/a' }]\n",
            &[]
        )
        .contains("given to two folders"));
        assert!(e(
            "[sync]\nfolders = [{ id = 'a', path = '/a', mode = 'x' }]\n",
            &[]
        )
        .contains("folders[0].mode: unknown key"));
        assert!(e("[sync]\nfolders = [{ path = '/a' }]\n", &[]).contains("id is missing"));
        assert!(e(
            "[sync]\nfolders = [{ id = 'a', path = '/a', follow_app = '' }]\n",
            &[]
        )
        .contains("folder a: follow_app is empty"));
        assert!(e(
            "[sync]\nfolders = [{ id = 'a', path = '/a', follow_app = 1 }]\n",
            &[]
        )
        .contains("folders[0].follow_app: expected an app name"));
        assert!(e("", &["--sync-folder", "nopath"]).contains("expected ID=PATH"));
        assert!(e("[sync]\nlisten = '0.0.0.0:22000'\n", &[]).contains("not a tcp://IP:PORT"));
        assert!(e("[sync]\ngui = 'nowhere'\n", &[]).starts_with("invalid sync.gui"));
        assert!(e("[sync]\nattach = true\n", &[]).contains("needs the API key"));
    }
}
