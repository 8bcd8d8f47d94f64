//! Running one check.

use crate::model::{CheckDef, CheckKind, CheckState, Health, MAX_CHECK_OUTPUT};
use crate::output::{cut_str, tidy, tidy_str};
use nuvol_agent::process::{Keep, Script};
use std::future::Future;
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::debug;

/// Redirects an HTTP check follows before giving up (critical).
pub const MAX_REDIRECTS: usize = 5;
/// Bytes of an HTTP response body kept in the output.
const HTTP_BODY_SNIPPET: usize = 512;

/// Why a TCP or HTTP check is critical; its text is the check's output.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("TCP connect {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("HTTP GET {url}: {message}")]
    Http { url: String, message: String },
}

/// Run `def` once and return its result, stamped with the current time.
/// Never fails: errors are a critical state with the error as output.
pub async fn run_once(def: &CheckDef) -> CheckState {
    let (status, output) = match &def.kind {
        CheckKind::Tcp { addr } => settle(with_timeout(def.timeout, tcp(addr)).await),
        CheckKind::Http {
            url,
            status,
            tls_skip_verify,
        } => settle(with_timeout(def.timeout, http(url, *status, *tls_skip_verify)).await),
        CheckKind::Script { command } => script(command, def.timeout).await,
    };
    debug!(
        kind = def.kind.name(),
        target = def.kind.target(),
        status = status.as_str(),
        "check ran"
    );
    CheckState {
        status,
        output,
        updated_ms: now_ms(),
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

async fn with_timeout<T>(
    timeout: Duration,
    f: impl Future<Output = Result<T, CheckError>>,
) -> Result<T, CheckError> {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or(Err(CheckError::Timeout(timeout)))
}

fn settle(r: Result<(Health, String), CheckError>) -> (Health, String) {
    match r {
        Ok((h, out)) => (h, tidy_str(&out)),
        Err(e) => (Health::Critical, tidy_str(&e.to_string())),
    }
}

// ---------------------------------------------------------------- TCP

async fn tcp(addr: &str) -> Result<(Health, String), CheckError> {
    match tokio::net::TcpStream::connect(addr).await {
        Ok(_stream) => Ok((Health::Passing, format!("TCP connect {addr}: Success"))),
        Err(source) => Err(CheckError::Connect {
            addr: addr.to_owned(),
            source,
        }),
    }
}

// ---------------------------------------------------------------- HTTP

/// The two shared clients (verifying and not). Building one fails only if
/// the TLS backend cannot start, which retrying would not fix.
fn client(skip_verify: bool) -> Result<&'static reqwest::Client, CheckError> {
    static VERIFY: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    static NO_VERIFY: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    let cell = if skip_verify { &NO_VERIFY } else { &VERIFY };
    cell.get_or_init(|| {
        reqwest::Client::builder()
            .use_rustls_tls()
            .danger_accept_invalid_certs(skip_verify)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .no_proxy()
            .pool_max_idle_per_host(0)
            .user_agent(concat!("nuvol-health-check/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| error_chain(&e))
    })
    .as_ref()
    .map_err(|e| CheckError::Client(e.clone()))
}

async fn http(url: &str, expect: u16, skip_verify: bool) -> Result<(Health, String), CheckError> {
    let fail = |e: reqwest::Error| CheckError::Http {
        url: url.to_owned(),
        message: error_chain(&e.without_url()),
    };
    let mut resp = client(skip_verify)?
        .get(url)
        .header(reqwest::header::ACCEPT, "text/plain, text/*, */*")
        .send()
        .await
        .map_err(fail)?;
    let status = resp.status();
    let mut body = Vec::new();
    // Only the start of the body is kept; the rest is not read at all (the
    // connection is closed, not reused).
    while body.len() < HTTP_BODY_SNIPPET {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = HTTP_BODY_SNIPPET - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            // A broken body does not change the verdict, which is the status.
            Err(e) => {
                debug!(url, error = %error_chain(&e), "HTTP check: body read failed");
                break;
            }
        }
    }
    let health = if status.as_u16() == expect {
        Health::Passing
    } else {
        Health::Critical
    };
    let mut out = format!(
        "HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_owned();
    let body = tidy(body);
    if !body.is_empty() {
        out.push_str(": ");
        out.push_str(cut_str(&body, MAX_CHECK_OUTPUT.saturating_sub(out.len())));
    }
    Ok((health, out))
}

/// An error and its sources, `a: b: c` (reqwest's own text is terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let m = cause.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        next = cause.source();
    }
    s
}

// ---------------------------------------------------------------- script

async fn script(command: &str, timeout: Duration) -> (Health, String) {
    let o = match nuvol_agent::process::run(Script {
        command,
        env: Vec::new(),
        stdin: None,
        timeout,
        max_output: MAX_CHECK_OUTPUT,
        keep: Keep::Head,
    })
    .await
    {
        Ok(o) => o,
        Err(e) => return (Health::Critical, tidy_str(&format!("cannot start sh: {e}"))),
    };
    let output = tidy(o.output);
    match o.status {
        Some(status) => verdict(status, output),
        None if o.timed_out => {
            let mut msg = format!("timed out after {timeout:?}");
            if !output.is_empty() {
                msg.push('\n');
                msg.push_str(&output);
            }
            (Health::Critical, tidy_str(&msg))
        }
        None => (Health::Critical, "could not wait for the script".to_owned()),
    }
}

fn verdict(status: ExitStatus, output: String) -> (Health, String) {
    match status.code() {
        Some(0) => (Health::Passing, output),
        Some(1) => (Health::Warning, output),
        Some(code) if output.is_empty() => (Health::Critical, format!("exit status {code}")),
        Some(_) => (Health::Critical, output),
        None => {
            #[cfg(unix)]
            let msg = {
                use std::os::unix::process::ExitStatusExt;
                format!("killed by signal {}", status.signal().unwrap_or(0))
            };
            #[cfg(not(unix))]
            let msg = String::from("killed");
            let msg = if output.is_empty() {
                msg
            } else {
                format!("{msg}\n{output}")
            };
            (Health::Critical, tidy_str(&msg))
        }
    }
}
