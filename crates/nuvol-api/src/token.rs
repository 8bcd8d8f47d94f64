//! The API token: `<data_dir>/api-token`, created by the agent, read by the
//! CLI.
//!
//! The file holds one token: 32 random bytes, hex-encoded, created with
//! mode 0600 from the start (`create_new` + mode, so it is never readable
//! by others, not even briefly). An existing token is reused as it is, so
//! scripts that copied it keep working; a corrupt one is an error, never
//! silently replaced.

use rand::RngCore;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The token file's name inside the data directory.
pub const TOKEN_FILE: &str = "api-token";
/// Shortest token accepted from a file.
pub const MIN_TOKEN_LEN: usize = 32;
/// Longest token accepted from a file.
pub const MAX_TOKEN_LEN: usize = 1024;

/// Why the token could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no API token at {path} (is the agent's data directory right? the agent creates it on start)")]
    Missing { path: PathBuf },
    #[error("cannot {op} API token file {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("API token file {path} is invalid: {reason}; fix or delete it (a new token is then created)")]
    Corrupt { path: PathBuf, reason: String },
}

/// The path of the token file in `data_dir`.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// Read the token of an existing agent (for the CLI).
pub fn read_token(data_dir: &Path) -> Result<String, TokenError> {
    let path = token_path(data_dir);
    let raw = match std::fs::read(&path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(TokenError::Missing { path }),
        Err(source) => {
            return Err(TokenError::Io {
                op: "read",
                path,
                source,
            })
        }
    };
    parse_token(&path, &raw)
}

/// Load the agent's token, creating a new random one (mode 0600) if there is
/// none. An existing token readable by group or others is made 0600 (with a
/// warning).
pub fn load_or_create(data_dir: &Path) -> Result<String, TokenError> {
    let path = token_path(data_dir);
    match read_token(data_dir) {
        Ok(token) => {
            fix_mode(&path)?;
            return Ok(token);
        }
        Err(TokenError::Missing { .. }) => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = hex(&bytes);
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let io_err = |op, source| TokenError::Io {
        op,
        path: path.clone(),
        source,
    };
    match opts.open(&path) {
        Ok(mut f) => {
            f.write_all(token.as_bytes())
                .and_then(|()| f.write_all(b"\n"))
                .and_then(|()| f.sync_all())
                .map_err(|e| io_err("write", e))?;
            tracing::info!(path = %path.display(), "created a new API token");
            Ok(token)
        }
        // Another process created it meanwhile: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_token(data_dir),
        Err(e) => Err(io_err("create", e)),
    }
}

fn parse_token(path: &Path, raw: &[u8]) -> Result<String, TokenError> {
    let corrupt = |reason: &str| TokenError::Corrupt {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let text = std::str::from_utf8(raw).map_err(|_| corrupt("not text"))?;
    let token = text.trim_end_matches(['\n', '\r']);
    if token.is_empty() {
        return Err(corrupt("empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(corrupt(
            "expected one line of visible ASCII characters (no spaces)",
        ));
    }
    if token.len() < MIN_TOKEN_LEN || token.len() > MAX_TOKEN_LEN {
        return Err(corrupt(&format!(
            "expected {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} characters, found {}",
            token.len()
        )));
    }
    Ok(token.to_owned())
}

#[cfg(unix)]
fn fix_mode(path: &Path) -> Result<(), TokenError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| TokenError::Io {
        op: "inspect",
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "API token file was readable by others; setting mode 0600 (consider replacing the token)"
        );
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| TokenError::Io {
                op: "set the mode of",
                path: path.to_owned(),
                source,
            },
        )?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn fix_mode(_path: &Path) -> Result<(), TokenError> {
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_encodes() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }

    #[test]
    fn parse_rejects_bad_tokens() {
        let p = Path::new("x");
        assert!(parse_token(p, b"").is_err());
        assert!(parse_token(p, b"\n").is_err());
        assert!(parse_token(p, b"short").is_err());
        assert!(parse_token(p, &[0xff; 40]).is_err());
        assert!(parse_token(p, b"aaaaaaaaaaaaaaaa aaaaaaaaaaaaaaaaaaaaa").is_err());
        let good = "a".repeat(64);
        assert_eq!(
            parse_token(p, format!("{good}\n").as_bytes()).ok(),
            Some(good)
        );
    }
}
