//! The app store: nuvol templates (Compose files with an `x-nuvol` block)
//! from the built-in set compiled into the binary, from directories the
//! user adds, and from store URLs (an `index.json` naming the templates,
//! fetched over HTTP(S) and cached on disk so that a node keeps its store
//! when the community's link to the store is down).
//!
//! Every source is read on its own: a broken source, index or template is
//! a problem listed next to the entries, never a failure of the store.

use crate::compose::{read_meta, Definition};
use crate::error::AppError;
use crate::meta::{this_arch, Meta};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An index or a template larger than this is refused.
pub const MAX_FILE: usize = 1 << 20;
/// At most this many templates are read from one index or directory.
pub const MAX_ENTRIES: usize = 1000;

/// The built-in templates: (file name, Compose text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("syncthing.yml", include_str!("../appstore/syncthing.yml")),
    ("ipfs.yml", include_str!("../appstore/ipfs.yml")),
    ("nextcloud.yml", include_str!("../appstore/nextcloud.yml")),
    (
        "calibre-web.yml",
        include_str!("../appstore/calibre-web.yml"),
    ),
    ("node-red.yml", include_str!("../appstore/node-red.yml")),
    ("mosquitto.yml", include_str!("../appstore/mosquitto.yml")),
    ("static-web.yml", include_str!("../appstore/static-web.yml")),
];

/// Where a store entry came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Builtin,
    Dir(PathBuf),
    Url(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin => f.write_str("built-in"),
            Source::Dir(p) => write!(f, "{}", p.display()),
            Source::Url(u) => f.write_str(u),
        }
    }
}

/// A template in the store.
#[derive(Debug, Clone)]
pub struct StoreEntry {
    pub id: String,
    pub source: Source,
    /// Read from the disk cache because the store URL could not be
    /// fetched.
    pub cached: bool,
    pub meta: Meta,
    pub definition: Definition,
    /// Whether it runs on this node's CPU (callers hide or mark the
    /// others).
    pub runs_here: bool,
}

/// `index.json`: `{"templates": [{"id": ..., "file": "relative/path.yml"}]}`.
#[derive(Debug, Deserialize)]
struct Index {
    templates: Vec<IndexEntry>,
}

#[derive(Debug, Deserialize)]
struct IndexEntry {
    #[serde(default)]
    id: Option<String>,
    file: String,
}

/// The store's sources.
#[derive(Debug, Clone)]
pub struct Store {
    builtin: bool,
    dirs: Vec<PathBuf>,
    urls: Vec<String>,
    cache_dir: Option<PathBuf>,
    timeout: Duration,
    arch: String,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// The built-in templates only.
    pub fn new() -> Store {
        Store {
            builtin: true,
            dirs: Vec::new(),
            urls: Vec::new(),
            cache_dir: None,
            timeout: Duration::from_secs(20),
            arch: this_arch().to_owned(),
        }
    }

    /// Leave the built-in templates out (tests, a community's own store).
    pub fn without_builtin(mut self) -> Store {
        self.builtin = false;
        self
    }

    /// A directory of `*.yml`/`*.yaml` templates, or one with an
    /// `index.json`.
    pub fn add_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Store {
        self.dirs.push(dir.into());
        self
    }

    /// A store URL: its `index.json` (or the index file itself when the
    /// URL ends in `.json`).
    pub fn add_url(&mut self, url: impl Into<String>) -> &mut Store {
        self.urls.push(url.into());
        self
    }

    /// Where fetched indexes and templates are kept (without one, a store
    /// URL works only while it answers).
    pub fn cache_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Store {
        self.cache_dir = Some(dir.into());
        self
    }

    /// The time a whole fetch (connect, headers, body) may take.
    pub fn timeout(&mut self, t: Duration) -> &mut Store {
        self.timeout = t;
        self
    }

    /// Judge `runs_here` for another architecture than this node's.
    pub fn arch(&mut self, arch: &str) -> &mut Store {
        self.arch = arch.to_owned();
        self
    }

    /// Every template of every source, and the problems met. An id given
    /// by two sources is listed once, from the first (built-in, then
    /// directories, then URLs, in the order they were added).
    pub async fn list(&self) -> (Vec<StoreEntry>, Vec<String>) {
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        if self.builtin {
            for (file, text) in BUILTIN {
                match self.entry(None, text, Source::Builtin, false) {
                    Ok(e) => entries.push(e),
                    Err(e) => problems.push(format!("built-in {file}: {e}")),
                }
            }
        }
        for d in &self.dirs {
            self.read_dir(d, &mut entries, &mut problems);
        }
        if !self.urls.is_empty() {
            match self.client() {
                Ok(client) => {
                    for u in &self.urls {
                        self.read_url(&client, u, &mut entries, &mut problems).await;
                    }
                }
                Err(e) => problems.push(format!("store URLs: {e}")),
            }
        }
        let mut seen: BTreeMap<String, Source> = BTreeMap::new();
        entries.retain(|e| match seen.get(&e.id) {
            Some(first) => {
                problems.push(format!(
                    "{}: template {} is also in {first}; that one is listed",
                    e.source, e.id
                ));
                false
            }
            None => {
                seen.insert(e.id.clone(), e.source.clone());
                true
            }
        });
        (entries, problems)
    }

    /// The template `id`.
    pub async fn find(&self, id: &str) -> Result<StoreEntry, AppError> {
        let (entries, problems) = self.list().await;
        entries.into_iter().find(|e| e.id == id).ok_or_else(|| {
            if problems.is_empty() {
                AppError::NotFound(id.to_owned())
            } else {
                AppError::Store(format!(
                    "no template {id:?} (some sources had problems: {})",
                    problems.join("; ")
                ))
            }
        })
    }

    /// A store entry from a template's text, checked: its `x-nuvol`
    /// block read, and the whole definition planned with its defaults and
    /// placeholders for its required parameters.
    fn entry(
        &self,
        id_hint: Option<&str>,
        text: &str,
        source: Source,
        cached: bool,
    ) -> Result<StoreEntry, AppError> {
        let definition = Definition {
            compose: text.to_owned(),
            env_files: BTreeMap::new(),
        };
        let (meta, _) = read_meta(&definition)?;
        let id = if meta.id.is_empty() {
            id_hint
                .map(str::to_owned)
                .ok_or_else(|| AppError::invalid("x-nuvol.id", "is required in a store"))?
        } else {
            meta.id.clone()
        };
        crate::meta::validate_name("id", &id)?;
        if let Some(h) = id_hint {
            if !meta.id.is_empty() && h != meta.id {
                return Err(AppError::invalid(
                    "id",
                    format!("the index says {h:?}, the template {:?}", meta.id),
                ));
            }
        }
        crate::import::check(&id, &definition)?;
        Ok(StoreEntry {
            runs_here: meta.runs_on(&self.arch),
            id,
            source,
            cached,
            meta,
            definition,
        })
    }

    fn read_dir(&self, dir: &Path, entries: &mut Vec<StoreEntry>, problems: &mut Vec<String>) {
        let src = || Source::Dir(dir.to_owned());
        let index = dir.join("index.json");
        if index.is_file() {
            let index = match read_file(&index).and_then(|b| parse_index(&b)) {
                Ok(i) => i,
                Err(e) => {
                    problems.push(format!("{}: {e}", index.display()));
                    return;
                }
            };
            for t in index.templates.iter().take(MAX_ENTRIES) {
                let r = safe_rel(&t.file)
                    .and_then(|rel| read_file(&dir.join(rel)))
                    .and_then(|b| text(b, &t.file))
                    .and_then(|s| self.entry(t.id.as_deref(), &s, src(), false));
                match r {
                    Ok(e) => entries.push(e),
                    Err(e) => problems.push(format!("{}: {}: {e}", dir.display(), t.file)),
                }
            }
            return;
        }
        let files = match std::fs::read_dir(dir) {
            Ok(rd) => {
                let mut f: Vec<PathBuf> = rd
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.is_file()
                            && p.extension()
                                .and_then(|e| e.to_str())
                                .is_some_and(|e| e == "yml" || e == "yaml")
                    })
                    .collect();
                f.sort();
                f
            }
            Err(e) => {
                problems.push(format!("{}: {e}", dir.display()));
                return;
            }
        };
        for f in files.iter().take(MAX_ENTRIES) {
            let stem = f.file_stem().and_then(|s| s.to_str()).map(str::to_owned);
            let r = read_file(f)
                .and_then(|b| text(b, &f.display().to_string()))
                .and_then(|s| {
                    // A file's name is only a hint: the template's own id
                    // wins (`foo.v2.yml` may hold `id: foo`).
                    self.entry(None, &s, src(), false).or_else(|e| match &stem {
                        Some(st) if matches!(e, AppError::Invalid { ref field, .. } if field == "x-nuvol.id") => {
                            self.entry(Some(st), &s, src(), false)
                        }
                        _ => Err(e),
                    })
                });
            match r {
                Ok(e) => entries.push(e),
                Err(e) => problems.push(format!("{}: {e}", f.display())),
            }
        }
    }

    fn client(&self) -> Result<reqwest::Client, AppError> {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("nuvol/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AppError::Store(e.to_string()))
    }

    /// The cache directory of one store URL.
    fn cache_of(&self, url: &str) -> Option<PathBuf> {
        self.cache_dir.as_ref().map(|d| d.join(cache_key(url)))
    }

    async fn read_url(
        &self,
        client: &reqwest::Client,
        url: &str,
        entries: &mut Vec<StoreEntry>,
        problems: &mut Vec<String>,
    ) {
        let index_url = match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {
                if u.path().ends_with(".json") {
                    u
                } else {
                    let mut u = u;
                    if !u.path().ends_with('/') {
                        let p = format!("{}/", u.path());
                        u.set_path(&p);
                    }
                    match u.join("index.json") {
                        Ok(u) => u,
                        Err(e) => {
                            problems.push(format!("{url}: {e}"));
                            return;
                        }
                    }
                }
            }
            Ok(u) => {
                problems.push(format!("{url}: scheme {} is not http or https", u.scheme()));
                return;
            }
            Err(e) => {
                problems.push(format!("{url}: not a URL ({e})"));
                return;
            }
        };
        let cache = self.cache_of(url);
        let src = || Source::Url(url.to_owned());
        // The index: fetched, else the cached copy.
        let (index_bytes, offline) = match fetch(client, &index_url).await {
            Ok(b) => match parse_index(&b) {
                Ok(_) => {
                    if let Some(c) = &cache {
                        if let Err(e) = store_cache(c, "index.json", &b) {
                            problems.push(format!("{url}: the cache could not be written: {e}"));
                        }
                    }
                    (b, false)
                }
                Err(e) => {
                    problems.push(format!("{index_url}: {e}"));
                    match cached(&cache, "index.json") {
                        Some(b) => {
                            problems.push(format!("{url}: listing the cached copy of the index"));
                            (b, true)
                        }
                        None => return,
                    }
                }
            },
            Err(e) => match cached(&cache, "index.json") {
                Some(b) => {
                    tracing::info!(%url, error = %e, "store unreachable; serving its cache");
                    problems.push(format!("{url}: {e}; serving the cache"));
                    (b, true)
                }
                None => {
                    problems.push(format!("{url}: {e}"));
                    return;
                }
            },
        };
        let index = match parse_index(&index_bytes) {
            Ok(i) => i,
            Err(e) => {
                problems.push(format!("{url}: cached index: {e}"));
                return;
            }
        };
        for t in index.templates.iter().take(MAX_ENTRIES) {
            let rel = match safe_rel(&t.file) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("{url}: {}: {e}", t.file));
                    continue;
                }
            };
            // Cached under a name of its own (the index's path may have
            // directories; the cache is flat).
            let cache_name = format!("t-{}", cache_key(&rel));
            let fetched = if offline {
                Err(AppError::Store("the store is offline".into()))
            } else {
                match index_url.join(&rel) {
                    Ok(u) => fetch(client, &u).await,
                    Err(e) => Err(AppError::Store(format!("{e}"))),
                }
            };
            let (bytes, from_cache) = match fetched {
                Ok(b) => (b, false),
                Err(e) => match cached(&cache, &cache_name) {
                    Some(b) => {
                        if !offline {
                            problems.push(format!("{url}: {}: {e}; serving the cache", t.file));
                        }
                        (b, true)
                    }
                    None => {
                        problems.push(format!("{url}: {}: {e}", t.file));
                        continue;
                    }
                },
            };
            let r = text(bytes.clone(), &t.file)
                .and_then(|s| self.entry(t.id.as_deref(), &s, src(), from_cache));
            match r {
                Ok(e) => {
                    if !from_cache {
                        if let Some(c) = &cache {
                            if let Err(e) = store_cache(c, &cache_name, &bytes) {
                                problems
                                    .push(format!("{url}: the cache could not be written: {e}"));
                            }
                        }
                    }
                    entries.push(e);
                }
                Err(e) => problems.push(format!("{url}: {}: {e}", t.file)),
            }
        }
    }
}

/// GET `url`, refusing a body over [`MAX_FILE`] (checked as it arrives,
/// not trusted from Content-Length).
async fn fetch(client: &reqwest::Client, url: &reqwest::Url) -> Result<Vec<u8>, AppError> {
    let err = |e: reqwest::Error| AppError::Store(format!("{url}: {e}"));
    let mut resp = client.get(url.clone()).send().await.map_err(err)?;
    if !resp.status().is_success() {
        return Err(AppError::Store(format!("{url}: HTTP {}", resp.status())));
    }
    if resp.content_length().is_some_and(|n| n > MAX_FILE as u64) {
        return Err(AppError::Store(format!(
            "{url}: larger than {MAX_FILE} bytes"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(err)? {
        if body.len() + chunk.len() > MAX_FILE {
            return Err(AppError::Store(format!(
                "{url}: larger than {MAX_FILE} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn parse_index(b: &[u8]) -> Result<Index, AppError> {
    if b.len() > MAX_FILE {
        return Err(AppError::Parse {
            file: "index.json".into(),
            why: format!("is larger than {MAX_FILE} bytes"),
        });
    }
    serde_json::from_slice(b).map_err(|e| AppError::Parse {
        file: "index.json".into(),
        why: e.to_string(),
    })
}

fn read_file(p: &Path) -> Result<Vec<u8>, AppError> {
    let meta =
        std::fs::metadata(p).map_err(|e| AppError::Store(format!("{}: {e}", p.display())))?;
    if meta.len() > MAX_FILE as u64 {
        return Err(AppError::Store(format!(
            "{}: larger than {MAX_FILE} bytes",
            p.display()
        )));
    }
    std::fs::read(p).map_err(|e| AppError::Store(format!("{}: {e}", p.display())))
}

fn text(b: Vec<u8>, what: &str) -> Result<String, AppError> {
    String::from_utf8(b).map_err(|_| AppError::Parse {
        file: what.to_owned(),
        why: "is not UTF-8 text".into(),
    })
}

/// An index's `file`: a relative path inside the store (no `..`, no
/// absolute path, no URL), so that it can neither leave the store's
/// directory nor point the fetch at another host.
fn safe_rel(f: &str) -> Result<String, AppError> {
    let bad = |why: &str| Err(AppError::invalid("file", format!("{f:?} {why}")));
    if f.is_empty() || f.len() > 512 {
        return bad("is not a file name");
    }
    if f.starts_with('/')
        || f.contains('\\')
        || f.contains(':')
        || f.contains('?')
        || f.contains('#')
    {
        return bad("is not a relative path in the store");
    }
    if f.split('/').any(|c| c == ".." || c.is_empty()) {
        return bad("must not hold '..' or empty parts");
    }
    if f.chars().any(char::is_control) {
        return bad("holds control characters");
    }
    Ok(f.to_owned())
}

/// A file name for a URL or path: its readable part and a hash (two URLs
/// never share a cache).
fn cache_key(s: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let readable: String = s
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    format!("{readable}-{h:016x}")
}

fn cached(dir: &Option<PathBuf>, name: &str) -> Option<Vec<u8>> {
    let p = dir.as_ref()?.join(name);
    read_file(&p).ok()
}

/// Write a cache file whole or not at all (a reader never sees half).
fn store_cache(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_stay_in_the_store() {
        assert!(safe_rel("apps/web.yml").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x.yml",
            "a/../../b",
            "http://evil/x",
            "a//b",
            "a\\b",
        ] {
            assert!(safe_rel(bad).is_err(), "{bad}");
        }
        assert_ne!(cache_key("http://a/x"), cache_key("http://a/y"));
        assert!(!cache_key("http://a/../../x").contains('/'));
    }
}
