//! Where `[monitor] cnml` is read from: a file path (`file://` accepted)
//! or an `http://`/`https://` URL.
//!
//! Either way the text is bounded: a size cap enforced while reading (a
//! zone's CNML is tens of megabytes; a misconfigured URL must not fill a
//! 1 GB board's memory), and for a URL a connect and total timeout, so a
//! server that accepts and never answers does not stall the reload. A body
//! that is not UTF-8 is an error rather than lossily decoded. Errors name
//! the source (a URL's user and password left out) and what went wrong.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Limits on reading a CNML source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOptions {
    /// A URL's connect and total (headers and body) timeout.
    pub timeout: Duration,
    /// The largest text accepted, in bytes.
    pub max_bytes: u64,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            timeout: Duration::from_secs(30),
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why a CNML source could not be read. `location` is the source as
/// configured (a URL without its user and password).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("CNML {location}: timed out (no complete answer within {timeout:?})")]
    Timeout { location: String, timeout: Duration },
    #[error("CNML {location}: connection refused")]
    Refused { location: String },
    #[error("CNML {location}: cannot connect: {message}")]
    Connect { location: String, message: String },
    #[error("CNML {location}: the server answered HTTP {status}")]
    Status { location: String, status: u16 },
    #[error("CNML {location}: HTTP error: {message}")]
    Http { location: String, message: String },
    #[error("CNML {location}: too big (over the {max_bytes}-byte cap)")]
    TooBig { location: String, max_bytes: u64 },
    #[error("CNML {location}: not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { location: String, offset: usize },
    #[error("CNML {location}: no such file")]
    NotFound { location: String },
    #[error("CNML {location}: permission denied")]
    Permission { location: String },
    #[error("CNML {location}: cannot read: {message}")]
    Io { location: String, message: String },
    #[error("CNML {location}: unsupported URL scheme {scheme:?} (a file path or an http(s) URL)")]
    Scheme { location: String, scheme: String },
}

/// What a configured `cnml` string names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An `http://` or `https://` URL, as given.
    Url(String),
    /// A file path (a `file://` prefix removed).
    Path(PathBuf),
    /// `scheme://…` with another scheme.
    Unsupported(String),
}

/// Classify a `cnml` setting (pure): schemes are matched case-insensitively;
/// `file://localhost/p` and `file:///p` are the path `/p`.
pub fn classify(source: &str) -> Source {
    let Some((scheme, rest)) = source.split_once("://") else {
        return Source::Path(PathBuf::from(source));
    };
    let is_scheme = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        return Source::Path(PathBuf::from(source));
    }
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
        Source::Url(source.to_owned())
    } else if scheme.eq_ignore_ascii_case("file") {
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        Source::Path(PathBuf::from(path))
    } else {
        Source::Unsupported(scheme.to_owned())
    }
}

/// `source` for messages: a URL's `user:password@` removed (pure).
pub fn redact(source: &str) -> String {
    let Some((scheme, rest)) = source.split_once("://") else {
        return source.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => source.to_owned(),
    }
}

/// Read a CNML source's text: an `http(s)://` URL is fetched, anything
/// else read as a file (`file://` accepted), both within `opts`.
pub async fn read_cnml(source: &str, opts: &SourceOptions) -> Result<String, SourceError> {
    let location = redact(source);
    let bytes = match classify(source) {
        Source::Url(url) => fetch(&url, &location, opts).await?,
        Source::Path(path) => read_file(&path, &location, opts).await?,
        Source::Unsupported(scheme) => return Err(SourceError::Scheme { location, scheme }),
    };
    String::from_utf8(bytes).map_err(|e| SourceError::NotUtf8 {
        offset: e.utf8_error().valid_up_to(),
        location,
    })
}

async fn fetch(url: &str, location: &str, opts: &SourceOptions) -> Result<Vec<u8>, SourceError> {
    let timeout = || SourceError::Timeout {
        location: location.to_owned(),
        timeout: opts.timeout,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(opts.timeout)
        .timeout(opts.timeout)
        .build()
        .map_err(|e| http_error(location, opts, &e))?;
    // reqwest's total timeout covers the headers and the body; the outer
    // one, the same length, is only a backstop.
    match tokio::time::timeout(opts.timeout, async {
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| http_error(location, opts, &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(SourceError::Status {
                location: location.to_owned(),
                status: status.as_u16(),
            });
        }
        let too_big = || SourceError::TooBig {
            location: location.to_owned(),
            max_bytes: opts.max_bytes,
        };
        if resp.content_length().is_some_and(|n| n > opts.max_bytes) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| http_error(location, opts, &e))?
        {
            if body.len() as u64 + chunk.len() as u64 > opts.max_bytes {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    })
    .await
    {
        Ok(result) => result,
        Err(_elapsed) => Err(timeout()),
    }
}

/// A reqwest error as a [`SourceError`]: timeout, refused, other connect
/// failures, anything else.
fn http_error(location: &str, opts: &SourceOptions, e: &reqwest::Error) -> SourceError {
    let location = location.to_owned();
    if e.is_timeout() {
        return SourceError::Timeout {
            location,
            timeout: opts.timeout,
        };
    }
    let message = error_chain(e);
    if e.is_connect() {
        if io_kind(e) == Some(ErrorKind::ConnectionRefused) {
            return SourceError::Refused { location };
        }
        return SourceError::Connect { location, message };
    }
    SourceError::Http { location, message }
}

/// The first I/O error kind in `e`'s source chain.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

/// `e` and its causes. Not `e`'s own Display: it names the URL, which
/// may carry a password.
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = String::from(if e.is_builder() {
        "cannot build the HTTP client"
    } else if e.is_connect() {
        "error sending the request"
    } else if e.is_redirect() {
        "error following a redirect"
    } else if e.is_body() || e.is_decode() {
        "error reading the body"
    } else {
        "request error"
    });
    let mut cur = std::error::Error::source(e);
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}

async fn read_file(
    path: &std::path::Path,
    location: &str,
    opts: &SourceOptions,
) -> Result<Vec<u8>, SourceError> {
    let io_error = |e: std::io::Error| match e.kind() {
        ErrorKind::NotFound => SourceError::NotFound {
            location: location.to_owned(),
        },
        ErrorKind::PermissionDenied => SourceError::Permission {
            location: location.to_owned(),
        },
        _ => SourceError::Io {
            location: location.to_owned(),
            message: e.to_string(),
        },
    };
    let too_big = || SourceError::TooBig {
        location: location.to_owned(),
        max_bytes: opts.max_bytes,
    };
    let file = tokio::fs::File::open(path).await.map_err(io_error)?;
    let meta = file.metadata().await.map_err(io_error)?;
    if meta.is_file() && meta.len() > opts.max_bytes {
        return Err(too_big());
    }
    // The cap holds while reading too (a file growing, a FIFO, /dev/zero):
    // read at most one byte more than it.
    let mut body = Vec::new();
    file.take(opts.max_bytes.saturating_add(1))
        .read_to_end(&mut body)
        .await
        .map_err(io_error)?;
    if body.len() as u64 > opts.max_bytes {
        return Err(too_big());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_tells_urls_from_paths() {
        let url = |s: &str| Source::Url(s.to_owned());
        let path = |s: &str| Source::Path(PathBuf::from(s));
        for (input, want) in [
            ("http://guifi.net/cnml", url("http://guifi.net/cnml")),
            ("HTTPS://guifi.net/x", url("HTTPS://guifi.net/x")),
            ("/etc/nuvol/zone.cnml", path("/etc/nuvol/zone.cnml")),
            ("zone.cnml", path("zone.cnml")),
            ("file:///etc/zone.cnml", path("/etc/zone.cnml")),
            ("FILE:///etc/zone.cnml", path("/etc/zone.cnml")),
            ("file://localhost/etc/z", path("/etc/z")),
            ("./a://b", path("./a://b")),
            ("ftp://host/zone", Source::Unsupported("ftp".to_owned())),
        ] {
            assert_eq!(classify(input), want, "{input}");
        }
    }

    #[test]
    fn redact_drops_user_and_password() {
        assert_eq!(
            redact("https://u:secret@guifi.net/cnml?x=@y"),
            "https://guifi.net/cnml?x=@y"
        );
        assert_eq!(redact("http://guifi.net/a@b"), "http://guifi.net/a@b");
        assert_eq!(redact("/srv/a@b.cnml"), "/srv/a@b.cnml");
    }

    #[tokio::test]
    async fn unsupported_scheme_is_an_error_naming_it() {
        let err = read_cnml("ftp://host/zone", &SourceOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(&err, SourceError::Scheme { scheme, .. } if scheme == "ftp"));
        assert!(err.to_string().contains("ftp://host/zone"), "{err}");
    }
}
