//! An app's backup archive: one tar file, gzipped, that holds everything
//! needed to bring the app back on this node or another one.
//!
//! Layout, in this order:
//!
//! - `nuvol-backup.json`: the [`Manifest`] (format version, app, node,
//!   time, source, definition, parameters, version, image references,
//!   volume keys). First, so a reader knows at once whether the file is a
//!   backup at all.
//! - `volumes/KEY.tar`: per named volume, the engine's archive of its
//!   content (entries `KEY/...`, as the Docker archive API writes a
//!   directory mounted at `/nuvol-backup/KEY`).
//! - `app/...`: the app's own directory (`./` bind mounts).
//! - `nuvol-backup.end`: last, so a plain (not gzipped) archive cut short
//!   is told from a complete one.
//!
//! [`read_archive`] checks all of it before anything of the app is
//! created: paths that are absolute or go up (`..`), links leaving their
//! place, device files, entries larger than the limits, a missing or
//! unknown part, another format version. It unpacks into a staging
//! directory the caller then uses.

use crate::compose::Definition;
use crate::error::AppError;
use crate::reconcile::Want;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

/// The archive format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_NAME: &str = "nuvol-backup.json";
pub const END_NAME: &str = "nuvol-backup.end";
const VOLUMES_DIR: &str = "volumes";
const APP_DIR: &str = "app";

/// The most an archive may hold; an entry over a limit is refused before
/// anything is unpacked past it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The manifest (definition and parameters).
    pub manifest: u64,
    /// One file (a volume's archive, a file of the app directory, a file
    /// inside a volume).
    pub entry: u64,
    /// Everything unpacked.
    pub total: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            manifest: 8 << 20,
            entry: 64 << 30,
            total: 256 << 30,
        }
    }
}

/// The image a service ran: the reference of its definition and the id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub image: String,
    /// `sha256:...`; empty when the image was not on the node.
    #[serde(default)]
    pub id: String,
}

/// `nuvol-backup.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub app: String,
    /// The node it was taken on.
    pub node: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub source: String,
    pub definition: Definition,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub version: String,
    pub want: Want,
    /// By service.
    #[serde(default)]
    pub images: BTreeMap<String, ImageRef>,
    /// The keys of the named volumes archived.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Services run from an image id (see `AppRecord::pinned`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pinned: BTreeMap<String, String>,
}

/// What `backup` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    pub app: String,
    pub node: String,
    pub path: String,
    pub bytes: u64,
    pub version: String,
    pub volumes: Vec<String>,
    pub created_at: u64,
}

/// An archive read back and unpacked into a staging directory.
#[derive(Debug)]
pub struct Unpacked {
    pub manifest: Manifest,
    /// Volume key to its archive (entries `KEY/...`).
    pub volumes: BTreeMap<String, PathBuf>,
    /// The app directory's content, when the archive has one.
    pub app_dir: Option<PathBuf>,
}

/// A volume key usable as a path component and a file name.
pub fn check_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key != "."
        && key != ".."
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("volume key {key:?} is not a plain name"))
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> AppError {
    AppError::Other(format!("{what} {}: {e}", path.display()))
}

/// Write the archive to `dest`: into a temporary file next to it, renamed
/// when complete, so a failure leaves no half archive. `volumes` maps each
/// volume key to the engine's archive of it. Returns the archive's size.
pub fn write_archive(
    dest: &Path,
    manifest: &Manifest,
    volumes: &BTreeMap<String, PathBuf>,
    app_dir: Option<&Path>,
) -> Result<u64, AppError> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Created 0600: the manifest holds the parameters, passwords included.
    let tmp = tempfile::Builder::new()
        .prefix(".nuvol-backup-")
        .suffix(".partial")
        .tempfile_in(parent)
        .map_err(|e| io_err("cannot create a file in", parent, e))?;
    let w = |e: std::io::Error| io_err("cannot write", tmp.path(), e);
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| AppError::Other(e.to_string()))?;
    let gz = flate2::write::GzEncoder::new(
        BufWriter::new(tmp.as_file()),
        // Boards are slow and volumes mostly compressed already.
        flate2::Compression::fast(),
    );
    let mut b = tar::Builder::new(gz);
    b.follow_symlinks(false);
    append_bytes(&mut b, MANIFEST_NAME, &json, manifest.created_at).map_err(w)?;
    for (key, file) in volumes {
        check_key(key).map_err(AppError::Other)?;
        b.append_path_with_name(file, format!("{VOLUMES_DIR}/{key}.tar"))
            .map_err(w)?;
    }
    if let Some(dir) = app_dir.filter(|d| d.is_dir()) {
        b.append_dir_all(APP_DIR, dir)
            .map_err(|e| io_err("cannot archive", dir, e))?;
    }
    append_bytes(
        &mut b,
        END_NAME,
        format!("{{\"format\":{FORMAT_VERSION}}}\n").as_bytes(),
        manifest.created_at,
    )
    .map_err(w)?;
    let gz = b.into_inner().map_err(w)?;
    let mut buf = gz.finish().map_err(w)?;
    buf.flush().map_err(w)?;
    drop(buf);
    tmp.as_file().sync_all().map_err(w)?;
    let bytes = tmp.as_file().metadata().map_err(w)?.len();
    tmp.persist(dest)
        .map_err(|e| io_err("cannot rename the archive to", dest, e.error))?;
    Ok(bytes)
}

fn append_bytes<W: Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
    mtime: u64,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data)
}

/// An entry's path as relative components, refusing absolute paths and
/// `..` (`.` components are dropped).
fn safe_path(raw: &[u8]) -> Result<Vec<String>, String> {
    let s = std::str::from_utf8(raw).map_err(|_| "a path that is not UTF-8".to_owned())?;
    if s.starts_with('/') {
        return Err(format!("{s:?} is an absolute path"));
    }
    let mut out = Vec::new();
    for c in Path::new(s).components() {
        match c {
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("{s:?} goes up (..)")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("{s:?} is an absolute path"))
            }
        }
    }
    if out.is_empty() {
        return Err(format!("{s:?} is an empty path"));
    }
    Ok(out)
}

/// Whether a symbolic link at `at` (components) pointing to `target`
/// stays inside the tree whose root is the first `root` components of
/// `at`.
fn link_stays_inside(at: &[String], root: usize, target: &[u8]) -> bool {
    let Ok(t) = std::str::from_utf8(target) else {
        return false;
    };
    if t.starts_with('/') {
        return false;
    }
    let mut cur: Vec<&str> = at[..at.len().saturating_sub(1)]
        .iter()
        .map(String::as_str)
        .collect();
    for c in t.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if cur.len() <= root {
                    return false;
                }
                cur.pop();
            }
            n => cur.push(n),
        }
    }
    cur.len() >= root
}

/// Read `src` (gzipped or plain tar), check it and unpack it into
/// `staging` (an empty directory). Nothing outside `staging` is written.
pub fn read_archive(src: &Path, staging: &Path, limits: &Limits) -> Result<Unpacked, AppError> {
    let bad = |why: String| AppError::Archive {
        path: src.display().to_string(),
        why,
    };
    let f = std::fs::File::open(src).map_err(|e| bad(format!("cannot open: {e}")))?;
    let mut r = BufReader::new(f);
    let head = r.fill_buf().map_err(|e| bad(format!("cannot read: {e}")))?;
    if head.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    let gz = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(r))
    } else {
        Box::new(r)
    };
    read_tar(reader, staging, limits).map_err(bad)
}

fn read_tar(reader: impl Read, staging: &Path, limits: &Limits) -> Result<Unpacked, String> {
    let mut ar = tar::Archive::new(reader);
    let entries = ar
        .entries()
        .map_err(|e| format!("not a nuvol backup (not a tar archive: {e})"))?;
    let mut manifest: Option<Manifest> = None;
    let mut volumes: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut app_dir: Option<PathBuf> = None;
    let mut ended = false;
    let mut total: u64 = 0;
    let vol_dir = staging.join(VOLUMES_DIR);
    let app_root = staging.join(APP_DIR);
    for (i, entry) in entries.enumerate() {
        let mut e = entry.map_err(|e| {
            if i == 0 {
                format!("not a nuvol backup (not a tar archive: {e})")
            } else {
                format!("corrupt or truncated: {e}")
            }
        })?;
        if ended {
            return Err(format!("data after {END_NAME}"));
        }
        let parts = safe_path(&e.path_bytes())?;
        let shown = parts.join("/");
        let size = e.header().size().map_err(|e| format!("{shown}: {e}"))?;
        let kind = e.header().entry_type();
        let cap = if i == 0 {
            limits.manifest
        } else {
            limits.entry
        };
        if size > cap {
            return Err(format!(
                "{shown} is {size} bytes, more than the limit of {cap}"
            ));
        }
        total = total.saturating_add(size);
        if total > limits.total {
            return Err(format!("more than {} bytes in all", limits.total));
        }
        if i == 0 {
            if shown != MANIFEST_NAME || !kind.is_file() {
                return Err(format!(
                    "not a nuvol backup (it does not start with {MANIFEST_NAME})"
                ));
            }
            let mut buf = Vec::new();
            (&mut e)
                .take(limits.manifest + 1)
                .read_to_end(&mut buf)
                .map_err(|e| format!("corrupt or truncated: {e}"))?;
            manifest = Some(parse_manifest(&buf)?);
            continue;
        }
        let Some(m) = &manifest else {
            return Err(format!("{MANIFEST_NAME} is missing"));
        };
        match parts[0].as_str() {
            END_NAME if parts.len() == 1 && kind.is_file() => {
                ended = true;
            }
            VOLUMES_DIR if parts.len() == 1 && kind.is_dir() => {}
            VOLUMES_DIR if parts.len() == 2 && kind.is_file() => {
                let key = parts[1]
                    .strip_suffix(".tar")
                    .ok_or_else(|| format!("{shown}: not a volume archive"))?
                    .to_owned();
                if !m.volumes.contains(&key) {
                    return Err(format!("{shown}: volume {key:?} is not in the manifest"));
                }
                if volumes.contains_key(&key) {
                    return Err(format!("{shown} is there twice"));
                }
                std::fs::create_dir_all(&vol_dir).map_err(|e| format!("staging: {e}"))?;
                let dest = vol_dir.join(format!("{key}.tar"));
                let mut out = std::fs::File::create(&dest).map_err(|e| format!("staging: {e}"))?;
                let n = std::io::copy(&mut (&mut e).take(size), &mut out)
                    .map_err(|e| format!("corrupt or truncated: {e}"))?;
                if n != size {
                    return Err(format!("corrupt or truncated: {shown} is cut short"));
                }
                drop(out);
                check_volume_tar(&dest, &key, limits).map_err(|why| format!("{shown}: {why}"))?;
                volumes.insert(key, dest);
            }
            APP_DIR => {
                let dest = if parts.len() == 1 {
                    app_root.clone()
                } else {
                    app_root.join(parts[1..].iter().collect::<PathBuf>())
                };
                match kind {
                    tar::EntryType::Directory => {
                        std::fs::create_dir_all(&dest).map_err(|e| format!("staging: {e}"))?;
                    }
                    tar::EntryType::Regular | tar::EntryType::Continuous
                        if parts.len() > 1 =>
                    {
                        unpack_file(&mut e, &dest, size).map_err(|why| format!("{shown}: {why}"))?;
                    }
                    tar::EntryType::Symlink if parts.len() > 1 => {
                        let target = e
                            .link_name_bytes()
                            .map(|t| t.into_owned())
                            .unwrap_or_default();
                        // A link out of the app directory would let a
                        // `./` bind mount reach any host path.
                        if !link_stays_inside(&parts, 1, &target) {
                            return Err(format!("{shown}: a link out of the app directory"));
                        }
                        if let Some(p) = dest.parent() {
                            std::fs::create_dir_all(p).map_err(|e| format!("staging: {e}"))?;
                        }
                        e.unpack(&dest)
                            .map_err(|err| format!("{shown}: cannot unpack: {err}"))?;
                    }
                    other => {
                        return Err(format!(
                            "{shown}: a {other:?} entry (only files, directories and links inside are kept)"
                        ))
                    }
                }
                app_dir = Some(app_root.clone());
            }
            _ => return Err(format!("{shown}: not part of a nuvol backup")),
        }
    }
    let Some(manifest) = manifest else {
        return Err("not a nuvol backup (empty tar archive)".into());
    };
    if !ended {
        return Err(format!(
            "corrupt or truncated: the end marker ({END_NAME}) is missing"
        ));
    }
    for k in &manifest.volumes {
        if !volumes.contains_key(k) {
            return Err(format!("the archive of volume {k:?} is missing"));
        }
    }
    Ok(Unpacked {
        manifest,
        volumes,
        app_dir,
    })
}

fn unpack_file(e: &mut impl Read, dest: &Path, size: u64) -> Result<(), String> {
    if let Some(p) = dest.parent() {
        std::fs::create_dir_all(p).map_err(|e| format!("staging: {e}"))?;
    }
    let mut out = std::fs::File::create(dest).map_err(|e| format!("staging: {e}"))?;
    let n = std::io::copy(&mut e.take(size), &mut out)
        .map_err(|e| format!("corrupt or truncated: {e}"))?;
    if n != size {
        return Err("corrupt or truncated: cut short".into());
    }
    Ok(())
}

fn parse_manifest(buf: &[u8]) -> Result<Manifest, String> {
    // The format first, on its own: another version may not parse as this
    // one's manifest, and "another format" is the clearer message.
    #[derive(Deserialize)]
    struct Format {
        format: Option<u64>,
    }
    let f: Format = serde_json::from_slice(buf)
        .map_err(|e| format!("{MANIFEST_NAME} is not valid JSON: {e}"))?;
    match f.format {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "format version {v}; this nuvol reads version {FORMAT_VERSION}"
            ))
        }
        None => return Err(format!("{MANIFEST_NAME} has no format version")),
    }
    let m: Manifest = serde_json::from_slice(buf).map_err(|e| format!("{MANIFEST_NAME}: {e}"))?;
    crate::meta::validate_name("app", &m.app).map_err(|e| format!("{MANIFEST_NAME}: {e}"))?;
    let mut seen = BTreeSet::new();
    for k in &m.volumes {
        check_key(k).map_err(|e| format!("{MANIFEST_NAME}: {e}"))?;
        if !seen.insert(k) {
            return Err(format!("{MANIFEST_NAME}: volume {k:?} listed twice"));
        }
    }
    if m.definition.compose.trim().is_empty() {
        return Err(format!("{MANIFEST_NAME}: the definition is empty"));
    }
    Ok(m)
}

/// A volume's archive as the engine wrote it: every entry under `KEY/`,
/// no way out of it, no device files, each within the limit.
fn check_volume_tar(file: &Path, key: &str, limits: &Limits) -> Result<(), String> {
    let f = std::fs::File::open(file).map_err(|e| format!("staging: {e}"))?;
    let mut ar = tar::Archive::new(BufReader::new(f));
    let entries = ar
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    let mut total: u64 = 0;
    for entry in entries {
        let e = entry.map_err(|e| format!("corrupt: {e}"))?;
        let parts = safe_path(&e.path_bytes())?;
        let shown = parts.join("/");
        if parts[0] != key {
            return Err(format!("{shown} is not under {key}/"));
        }
        let size = e.header().size().map_err(|e| format!("{shown}: {e}"))?;
        if size > limits.entry {
            return Err(format!(
                "{shown} is {size} bytes, more than the limit of {}",
                limits.entry
            ));
        }
        total = total.saturating_add(size);
        if total > limits.total {
            return Err(format!("more than {} bytes in all", limits.total));
        }
        match e.header().entry_type() {
            tar::EntryType::Regular
            | tar::EntryType::Continuous
            | tar::EntryType::GNUSparse
            | tar::EntryType::Directory
            | tar::EntryType::Fifo
            // Symbolic links are resolved inside the container by the
            // engine, which keeps them there.
            | tar::EntryType::Symlink => {}
            tar::EntryType::Link => {
                let target = e.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                let t = safe_path(&target).map_err(|w| format!("{shown}: hard link to {w}"))?;
                if t[0] != key {
                    return Err(format!("{shown}: a hard link out of {key}/"));
                }
            }
            other => {
                return Err(format!(
                    "{shown}: a {other:?} entry (device files are not restored)"
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(vols: &[&str]) -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            app: "web".into(),
            node: "n1".into(),
            created_at: 1,
            source: "test".into(),
            definition: Definition {
                compose: "services: {web: {image: x}}".into(),
                env_files: BTreeMap::new(),
            },
            params: BTreeMap::from([("PORT".into(), "8080".into())]),
            version: "1".into(),
            want: Want::Running,
            images: BTreeMap::new(),
            volumes: vols.iter().map(|s| (*s).to_owned()).collect(),
            pinned: BTreeMap::new(),
        }
    }

    /// A volume archive as the engine writes it.
    fn volume_tar(dir: &Path, key: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let p = dir.join(format!("{key}-src.tar"));
        let mut b = tar::Builder::new(std::fs::File::create(&p).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, format!("{key}/"), std::io::empty())
            .unwrap();
        for (name, data) in files {
            append_bytes(&mut b, &format!("{key}/{name}"), data, 1).unwrap();
        }
        b.finish().unwrap();
        p
    }

    fn good_archive(dir: &Path) -> PathBuf {
        let vol = volume_tar(dir, "www", &[("index.html", b"hello")]);
        let app = dir.join("appdir");
        std::fs::create_dir_all(app.join("conf")).unwrap();
        std::fs::write(app.join("conf/a.conf"), "x=1").unwrap();
        std::os::unix::fs::symlink("conf/a.conf", app.join("link")).unwrap();
        let dest = dir.join("b.tar.gz");
        write_archive(
            &dest,
            &manifest(&["www"]),
            &BTreeMap::from([("www".to_owned(), vol)]),
            Some(&app),
        )
        .unwrap();
        dest
    }

    /// The staging directory is returned too: the staged files stay
    /// readable for the assertions.
    fn read_in(src: &Path) -> (Result<Unpacked, String>, tempfile::TempDir) {
        let staging = tempfile::tempdir().unwrap();
        let r = read_archive(src, staging.path(), &Limits::default()).map_err(|e| e.to_string());
        (r, staging)
    }

    fn read(src: &Path) -> Result<(), String> {
        read_in(src).0.map(|_| ())
    }

    /// A tar written entry by entry (raw names, as an attacker would).
    fn raw_tar(dest: &Path, entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_old();
            {
                // Bypass set_path's own checks: an archive from elsewhere
                // may hold anything.
                let raw = h.as_old_mut();
                raw.name[..name.len()].copy_from_slice(name.as_bytes());
                if let Some(l) = link {
                    raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
                }
            }
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        std::fs::write(dest, b.into_inner().unwrap()).unwrap();
    }

    fn manifest_json(vols: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&manifest(vols)).unwrap()
    }

    #[test]
    fn a_written_archive_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let src = good_archive(dir.path());
        let (u, _staging) = read_in(&src);
        let u = u.unwrap();
        assert_eq!(u.manifest, manifest(&["www"]));
        let vol = &u.volumes["www"];
        let mut ar = tar::Archive::new(std::fs::File::open(vol).unwrap());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.contains(&"www/index.html".to_owned()), "{names:?}");
        let app = u.app_dir.unwrap();
        assert_eq!(
            std::fs::read_to_string(app.join("conf/a.conf")).unwrap(),
            "x=1"
        );
        assert_eq!(
            std::fs::read_link(app.join("link")).unwrap(),
            Path::new("conf/a.conf")
        );
    }

    #[test]
    fn truncated_random_and_empty_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = good_archive(dir.path());
        let bytes = std::fs::read(&src).unwrap();
        let cut = dir.path().join("cut.tar.gz");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let e = read(&cut).unwrap_err();
        assert!(e.contains("truncated") || e.contains("corrupt"), "{e}");
        let noise = dir.path().join("noise.bin");
        let junk: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(&noise, &junk).unwrap();
        let e = read(&noise).unwrap_err();
        assert!(e.contains("not a nuvol backup"), "{e}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(read(&empty).unwrap_err().contains("empty"));
        assert!(read(&dir.path().join("absent"))
            .unwrap_err()
            .contains("cannot open"));
    }

    #[test]
    fn a_plain_tar_cut_at_an_entry_boundary_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut.tar");
        raw_tar(
            &p,
            &[(
                MANIFEST_NAME,
                tar::EntryType::Regular,
                &manifest_json(&[]),
                None,
            )],
        );
        let e = read(&p).unwrap_err();
        assert!(e.contains("end marker"), "{e}");
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest_json(&[]);
        let end: &[u8] = b"{}";
        for (name, kind, link, want) in [
            ("../evil", tar::EntryType::Regular, None, "goes up"),
            ("app/../../evil", tar::EntryType::Regular, None, "goes up"),
            ("/etc/evil", tar::EntryType::Regular, None, "absolute"),
            (
                "app/l",
                tar::EntryType::Symlink,
                Some("/etc"),
                "link out of the app directory",
            ),
            (
                "app/l",
                tar::EntryType::Symlink,
                Some("../../x"),
                "link out of the app directory",
            ),
            ("app/dev", tar::EntryType::Char, None, "entry"),
            ("other/x", tar::EntryType::Regular, None, "not part of"),
        ] {
            let p = dir.path().join("evil.tar");
            raw_tar(
                &p,
                &[
                    (MANIFEST_NAME, tar::EntryType::Regular, &m, None),
                    (name, kind, b"x", link),
                    (END_NAME, tar::EntryType::Regular, end, None),
                ],
            );
            let staging = tempfile::tempdir().unwrap();
            let e = read_archive(&p, staging.path(), &Limits::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{name}: {e}");
            assert!(!dir.path().join("evil").exists());
        }
    }

    #[test]
    fn a_volume_archive_escaping_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        append_bytes(&mut b, "other/x", b"x", 1).unwrap();
        let inner = b.into_inner().unwrap();
        let p = dir.path().join("v.tar");
        raw_tar(
            &p,
            &[
                (
                    MANIFEST_NAME,
                    tar::EntryType::Regular,
                    &manifest_json(&["www"]),
                    None,
                ),
                ("volumes/www.tar", tar::EntryType::Regular, &inner, None),
                (END_NAME, tar::EntryType::Regular, b"{}", None),
            ],
        );
        let e = read(&p).unwrap_err();
        assert!(e.contains("not under www/"), "{e}");
        // A volume of the manifest without its archive.
        raw_tar(
            &p,
            &[
                (
                    MANIFEST_NAME,
                    tar::EntryType::Regular,
                    &manifest_json(&["www"]),
                    None,
                ),
                (END_NAME, tar::EntryType::Regular, b"{}", None),
            ],
        );
        assert!(read(&p).unwrap_err().contains("volume \"www\" is missing"));
    }

    #[test]
    fn bad_manifests_and_other_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.tar");
        let mut other = manifest(&[]);
        other.format = 9;
        let mut bad_name = manifest(&[]);
        bad_name.app = "Not A Name".into();
        for (json, want) in [
            (b"{not json".to_vec(), "not valid JSON"),
            (serde_json::to_vec(&other).unwrap(), "format version 9"),
            (b"{\"app\":\"x\"}".to_vec(), "no format version"),
            (serde_json::to_vec(&bad_name).unwrap(), "app"),
        ] {
            raw_tar(
                &p,
                &[
                    (MANIFEST_NAME, tar::EntryType::Regular, &json, None),
                    (END_NAME, tar::EntryType::Regular, b"{}", None),
                ],
            );
            let e = read(&p).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
        // Not starting with the manifest.
        raw_tar(&p, &[("x", tar::EntryType::Regular, b"x", None)]);
        assert!(read(&p).unwrap_err().contains("does not start with"));
    }

    #[test]
    fn oversized_entries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = good_archive(dir.path());
        let staging = tempfile::tempdir().unwrap();
        let small = Limits {
            manifest: 1 << 20,
            entry: 16,
            total: 1 << 20,
        };
        let e = read_archive(&src, staging.path(), &small)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than the limit"), "{e}");
        let tiny = Limits {
            manifest: 8,
            entry: 1 << 20,
            total: 1 << 20,
        };
        let e = read_archive(&src, staging.path(), &tiny)
            .unwrap_err()
            .to_string();
        assert!(e.contains(MANIFEST_NAME), "{e}");
    }

    #[test]
    fn links_inside_are_kept() {
        let at: Vec<String> = ["app", "a", "l"].iter().map(|s| s.to_string()).collect();
        assert!(link_stays_inside(&at, 1, b"../b"));
        assert!(link_stays_inside(&at, 1, b"x/y"));
        assert!(!link_stays_inside(&at, 1, b"../../b"));
        assert!(!link_stays_inside(&at, 1, b"/b"));
    }
}
