//! `run_once` against local servers and scripts.

use nuvol_checks::model::{CheckDef, CheckKind, Health, MAX_CHECK_OUTPUT};
use nuvol_checks::run_once;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

fn check(kind: CheckKind, timeout: Duration) -> CheckDef {
    CheckDef {
        kind,
        interval: Duration::from_secs(10),
        timeout,
    }
}

fn http(url: String, status: u16, tls_skip_verify: bool) -> CheckDef {
    check(
        CheckKind::Http {
            url,
            status,
            tls_skip_verify,
        },
        Duration::from_secs(10),
    )
}

fn script(command: &str, timeout: Duration) -> CheckDef {
    check(
        CheckKind::Script {
            command: command.into(),
        },
        timeout,
    )
}

/// Read a request head (up to the blank line) and write `response`.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, response: Vec<u8>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = s.write_all(&response).await;
    let _ = s.shutdown().await;
}

fn response(status: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A plain HTTP server answering every request with `response`.
async fn serve(response: Vec<u8>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(answer(s, response.clone()));
        }
    });
    addr
}

#[tokio::test]
async fn tcp_passing_and_critical() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let tcp = |addr: String| check(CheckKind::Tcp { addr }, Duration::from_secs(5));

    let s = run_once(&tcp(format!("127.0.0.1:{port}"))).await;
    assert_eq!(s.status, Health::Passing, "{}", s.output);
    assert!(s.updated_ms > 1_600_000_000_000);
    let s = run_once(&tcp(format!("localhost:{port}"))).await;
    assert_eq!(s.status, Health::Passing, "{}", s.output);

    drop(l);
    let s = run_once(&tcp(format!("127.0.0.1:{port}"))).await;
    assert_eq!(s.status, Health::Critical);
    assert!(
        s.output.contains(&format!("127.0.0.1:{port}")),
        "{}",
        s.output
    );

    let s = run_once(&tcp("no-such-host.invalid:80".into())).await;
    assert_eq!(s.status, Health::Critical);
    assert!(!s.output.is_empty());
}

#[tokio::test]
async fn http_status_decides() {
    let ok = serve(response("200 OK", "", "all good")).await;
    let down = serve(response("503 Service Unavailable", "", "maintenance")).await;

    let s = run_once(&http(format!("http://{ok}/health"), 200, false)).await;
    assert_eq!(s.status, Health::Passing, "{}", s.output);
    assert_eq!(s.output, "HTTP 200 OK: all good");

    let s = run_once(&http(format!("http://{down}/"), 200, false)).await;
    assert_eq!(s.status, Health::Critical);
    assert_eq!(s.output, "HTTP 503 Service Unavailable: maintenance");

    let s = run_once(&http(format!("http://{down}/"), 503, false)).await;
    assert_eq!(s.status, Health::Passing, "{}", s.output);
    assert!(s.output.starts_with("HTTP 503"));

    let s = run_once(&http(format!("http://{ok}/"), 204, false)).await;
    assert_eq!(s.status, Health::Critical);
}

#[tokio::test]
async fn http_body_is_cut() {
    let body = "b".repeat(100_000);
    let big = serve(response("200 OK", "", &body)).await;
    let s = run_once(&http(format!("http://{big}/"), 200, false)).await;
    assert_eq!(s.status, Health::Passing, "{}", s.output);
    assert!(s.output.starts_with("HTTP 200 OK: bbb"));
    assert!(s.output.len() < 1024, "{}", s.output.len());
}

#[tokio::test]
async fn http_errors_are_critical() {
    // Accepts and never answers.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let mut def = http(format!("http://{silent}/"), 200, false);
    def.timeout = Duration::from_millis(300);
    let s = run_once(&def).await;
    assert_eq!(s.status, Health::Critical);
    assert_eq!(s.output, "timed out after 300ms");

    // Endless redirects.
    let loop_ = serve(response("302 Found", "Location: /again\r\n", "")).await;
    let s = run_once(&http(format!("http://{loop_}/"), 200, false)).await;
    assert_eq!(s.status, Health::Critical);
    assert!(s.output.contains("redirect"), "{}", s.output);

    // Nothing listening.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = l.local_addr().unwrap();
    drop(l);
    let s = run_once(&http(format!("http://{closed}/"), 200, false)).await;
    assert_eq!(s.status, Health::Critical);
    assert!(s.output.starts_with("HTTP GET http://"), "{}", s.output);
}

#[tokio::test]
async fn https_self_signed() {
    use tokio_rustls::rustls::{
        self,
        pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
    };
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    answer(tls, response("200 OK", "", "secure")).await;
                }
            });
        }
    });

    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{port}/");
        let s = run_once(&http(url.clone(), 200, false)).await;
        assert_eq!(s.status, Health::Critical, "{}", s.output);
        assert!(s.output.contains("certificate"), "{}", s.output);

        let s = run_once(&http(url, 200, true)).await;
        assert_eq!(s.status, Health::Passing, "{}", s.output);
        assert_eq!(s.output, "HTTP 200 OK: secure");
    }
}

#[tokio::test]
async fn script_exit_codes() {
    let t = Duration::from_secs(10);
    let s = run_once(&script("echo fine", t)).await;
    assert_eq!((s.status, s.output.as_str()), (Health::Passing, "fine"));
    let s = run_once(&script("echo meh >&2; exit 1", t)).await;
    assert_eq!((s.status, s.output.as_str()), (Health::Warning, "meh"));
    let s = run_once(&script("echo bad; exit 2", t)).await;
    assert_eq!((s.status, s.output.as_str()), (Health::Critical, "bad"));
    let s = run_once(&script("exit 3", t)).await;
    assert_eq!(
        (s.status, s.output.as_str()),
        (Health::Critical, "exit status 3")
    );
    let s = run_once(&script("kill -9 $$", t)).await;
    assert_eq!(
        (s.status, s.output.as_str()),
        (Health::Critical, "killed by signal 9")
    );
    let s = run_once(&script("read x; echo \"[$x]\"", t)).await;
    assert_eq!((s.status, s.output.as_str()), (Health::Passing, "[]"));

    let s = run_once(&script("echo out; echo err >&2", t)).await;
    assert_eq!(s.status, Health::Passing);
    assert!(
        s.output.contains("out") && s.output.contains("err"),
        "{}",
        s.output
    );
}

#[tokio::test]
async fn script_output_is_capped() {
    let s = run_once(&script(
        "yes xxxxxxx | head -c 1048576; yes e | head -c 1048576 >&2; exit 1",
        Duration::from_secs(30),
    ))
    .await;
    assert_eq!(s.status, Health::Warning, "{}", s.output);
    assert!(s.output.len() <= MAX_CHECK_OUTPUT);
    assert!(s.output.len() > MAX_CHECK_OUTPUT / 2);
    assert!(s.output.starts_with("xxxxxxx"));
}

/// Whether `pid` is a live (not zombie) process.
#[cfg(target_os = "linux")]
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
    }
}

#[cfg(target_os = "linux")]
async fn pid_from(path: &std::path::Path) -> i32 {
    for _ in 0..100 {
        if let Ok(Ok(pid)) = std::fs::read_to_string(path).map(|s| s.trim().parse::<i32>()) {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pid in {}", path.display());
}

#[cfg(target_os = "linux")]
async fn gone(pid: i32) -> bool {
    for _ in 0..100 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn script_timeout_kills_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let cmd = format!(
        "echo started; sleep 1000 & echo $! > '{}'; wait",
        pidfile.display()
    );
    let s = run_once(&script(&cmd, Duration::from_millis(500))).await;
    assert_eq!(s.status, Health::Critical);
    assert_eq!(s.output, "timed out after 500ms\nstarted");
    let pid = pid_from(&pidfile).await;
    assert!(gone(pid).await, "grandchild {pid} survived the timeout");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn script_leftovers_are_killed_on_exit() {
    // The background `sleep` holds stdout open; the check must still end
    // with the script's own exit status, not wait for the timeout.
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let cmd = format!("sleep 1000 & echo $! > '{}'; echo ok", pidfile.display());
    let s = run_once(&script(&cmd, Duration::from_secs(60))).await;
    assert_eq!((s.status, s.output.as_str()), (Health::Passing, "ok"));
    let pid = pid_from(&pidfile).await;
    assert!(gone(pid).await, "leftover {pid} survived the check");
}
