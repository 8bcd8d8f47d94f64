//! `read_cnml` against a local HTTP server (a raw tokio listener on
//! 127.0.0.1:0, so each test controls exactly what is sent) and files.

use nuvol_monitor::devices::{parse_cnml, Snmp};
use nuvol_monitor::source::{read_cnml, SourceError, SourceOptions};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CNML: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<cnml version="0.1" server_id="1" server_url="http://guifi.net" generated="20261201 1200">
  <network nodes="1" devices="2">
    <zone id="2413" title="Osona">
      <node id="100" title="Vic-Centre" status="Working">
        <device id="1001" title="vic-router" type="radio" status="Working">
          <radio id="0" mode="ap" snmp_index="5">
            <interface id="11" type="wLan/Lan" ipv4="10.138.1.1"/>
          </radio>
        </device>
        <device id="1004" title="planned" type="radio" status="Planned">
          <interface id="14" type="Lan" ipv4="10.138.1.50"/>
        </device>
      </node>
    </zone>
  </network>
</cnml>"#;

/// A test that hangs is a failure, not a stuck CI job: generous enough for
/// a loaded machine, far longer than any short timeout used here.
const TEST_DEADLINE: Duration = Duration::from_secs(120);

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_DEADLINE, fut)
        .await
        .expect("the read finished before the test deadline")
}

fn opts(timeout: Duration, max_bytes: u64) -> SourceOptions {
    SourceOptions { timeout, max_bytes }
}

/// Read a request's head (up to the blank line).
async fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

/// Serve every connection with `handle` after reading its request head.
async fn serve<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            read_head(&mut stream).await;
            tokio::spawn(handle(stream));
        }
    });
    addr
}

/// A server answering every request with `status` and `body`.
async fn answering(status: &'static str, body: Vec<u8>) -> SocketAddr {
    serve(move |mut s| {
        let body = body.clone();
        async move {
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&body).await;
            let _ = s.shutdown().await;
        }
    })
    .await
}

#[tokio::test]
async fn a_url_gives_its_cnml_and_its_devices() {
    let addr = answering("200 OK", CNML.as_bytes().to_vec()).await;
    let url = format!("http://{addr}/cnml/2413/detail");
    let text = within(read_cnml(&url, &SourceOptions::default()))
        .await
        .unwrap();
    assert_eq!(text, CNML);
    let (set, report) = parse_cnml(&text, &Snmp::default()).unwrap();
    assert_eq!(set.ids().collect::<Vec<_>>(), ["1001"]);
    assert_eq!(
        set.get("1001").unwrap().address,
        Ipv4Addr::new(10, 138, 1, 1)
    );
    assert_eq!(set.get("1001").unwrap().interfaces, [5]);
    assert_eq!((report.seen, report.skipped_status), (2, 1));
}

#[tokio::test]
async fn a_non_2xx_status_is_an_error_with_the_status() {
    let addr = answering("404 Not Found", b"no such zone".to_vec()).await;
    let url = format!("http://{addr}/cnml/9999/detail");
    let err = within(read_cnml(&url, &SourceOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SourceError::Status {
            location: url.clone(),
            status: 404
        }
    );
    let msg = err.to_string();
    assert!(msg.contains(&url) && msg.contains("404"), "{msg}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts, reads the request, then holds the connection open silently.
    let addr = serve(|s| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(s);
    })
    .await;
    let url = format!("http://{addr}/cnml");
    let timeout = Duration::from_millis(300);
    let err = within(read_cnml(&url, &opts(timeout, 1 << 20)))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SourceError::Timeout {
            location: url.clone(),
            timeout
        }
    );
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn a_body_that_stalls_after_the_headers_times_out() {
    let addr = serve(|mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n<cnml>")
            .await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
    })
    .await;
    let url = format!("http://{addr}/cnml");
    let err = within(read_cnml(&url, &opts(Duration::from_millis(300), 1 << 20)))
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn a_refused_port_is_refused() {
    // A port just bound and released: nothing listens on it.
    let port = {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/cnml");
    let err = within(read_cnml(&url, &SourceOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SourceError::Refused {
            location: url.clone()
        }
    );
    assert!(err.to_string().contains("refused"), "{err}");
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_too_big() {
    let addr = answering("200 OK", vec![b'x'; 4096]).await;
    let url = format!("http://{addr}/cnml");
    let err = within(read_cnml(&url, &opts(Duration::from_secs(60), 1000)))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SourceError::TooBig {
            location: url,
            max_bytes: 1000
        }
    );
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_cap_while_streaming() {
    // No Content-Length and a body that never ends: only a cap enforced
    // while reading can end this with TooBig (buffering it all would run
    // into the timeout instead).
    let addr = serve(|mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .await;
        let chunk = vec![b'x'; 16 * 1024];
        while s.write_all(&chunk).await.is_ok() {}
    })
    .await;
    let url = format!("http://{addr}/cnml");
    let err = within(read_cnml(&url, &opts(Duration::from_secs(60), 100_000)))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SourceError::TooBig {
            location: url,
            max_bytes: 100_000
        }
    );
}

#[tokio::test]
async fn a_body_of_exactly_the_cap_is_accepted() {
    let addr = answering("200 OK", vec![b'x'; 1000]).await;
    let url = format!("http://{addr}/cnml");
    let text = within(read_cnml(&url, &opts(Duration::from_secs(60), 1000)))
        .await
        .unwrap();
    assert_eq!(text.len(), 1000);
}

#[tokio::test]
async fn an_invalid_utf8_body_is_an_error() {
    let mut body = b"<cnml>caf".to_vec();
    body.extend_from_slice(&[0xe9, b'<', b'/']); // Latin-1 "é"
    let addr = answering("200 OK", body).await;
    let url = format!("http://{addr}/cnml");
    let err = within(read_cnml(&url, &SourceOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SourceError::NotUtf8 {
            location: url,
            offset: 9
        }
    );
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[tokio::test]
async fn a_url_password_is_not_in_the_error() {
    let addr = answering("403 Forbidden", Vec::new()).await;
    let url = format!("http://user:hunter2@{addr}/cnml");
    let err = within(read_cnml(&url, &SourceOptions::default()))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("http://{addr}/cnml")), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[tokio::test]
async fn a_file_path_and_a_file_url_give_the_cnml() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zone.cnml");
    std::fs::write(&path, CNML).unwrap();
    let path = path.to_str().unwrap();
    for source in [path.to_owned(), format!("file://{path}")] {
        let text = within(read_cnml(&source, &SourceOptions::default()))
            .await
            .unwrap();
        assert_eq!(text, CNML, "{source}");
        let (set, _) = parse_cnml(&text, &Snmp::default()).unwrap();
        assert_eq!(set.ids().collect::<Vec<_>>(), ["1001"], "{source}");
    }
}

#[tokio::test]
async fn a_missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.cnml");
    let path = path.to_str().unwrap().to_owned();
    let err = within(read_cnml(&path, &SourceOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SourceError::NotFound {
            location: path.clone()
        }
    );
    let msg = err.to_string();
    assert!(msg.contains(&path) && msg.contains("no such file"), "{msg}");
}

#[tokio::test]
async fn a_file_over_the_cap_is_too_big() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.cnml");
    std::fs::write(&path, vec![b'x'; 1001]).unwrap();
    let path = path.to_str().unwrap().to_owned();
    let err = within(read_cnml(&path, &opts(Duration::from_secs(60), 1000)))
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::TooBig { .. }), "{err:?}");
}

#[tokio::test]
async fn an_endless_device_file_is_cut_at_the_cap() {
    // /dev/zero has no length: only the cap while reading ends it.
    let err = within(read_cnml(
        "/dev/zero",
        &opts(Duration::from_secs(60), 100_000),
    ))
    .await
    .unwrap_err();
    assert_eq!(
        err,
        SourceError::TooBig {
            location: "/dev/zero".into(),
            max_bytes: 100_000
        }
    );
}

#[tokio::test]
async fn an_invalid_utf8_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.cnml");
    std::fs::write(&path, [b'<', 0xff, b'>']).unwrap();
    let path = path.to_str().unwrap().to_owned();
    let err = within(read_cnml(&path, &SourceOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SourceError::NotUtf8 {
            location: path,
            offset: 1
        }
    );
}

#[tokio::test]
async fn a_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_owned();
    let err = within(read_cnml(&path, &SourceOptions::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Io { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unreadable_file_is_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.cnml");
    std::fs::write(&secret, CNML).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let denied = |p: &std::path::Path| {
        std::fs::read(p).is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    };
    // Root reads a mode-000 file anyway; sysfs refuses even root to read
    // a write-only attribute (opening it for reading has no effect).
    let sysfs = std::path::Path::new("/sys/bus/pci/rescan");
    let path = if denied(&secret) {
        secret.to_str().unwrap().to_owned()
    } else if denied(sysfs) {
        sysfs.to_str().unwrap().to_owned()
    } else {
        eprintln!("skipping: this user reads a mode-000 file and {sysfs:?} is not there");
        return;
    };
    let err = within(read_cnml(&path, &SourceOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SourceError::Permission {
            location: path.clone()
        }
    );
    assert!(err.to_string().contains("permission denied"), "{err}");
}
