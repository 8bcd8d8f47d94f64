//! ICMP echo through the shared pinger: loopback answers, TEST-NET does not.
//! Needs an ICMP socket: root (raw), or an unprivileged datagram socket
//! allowed by net.ipv4.ping_group_range; else skips (or fails under
//! NUVOL_REQUIRE_SYSTEM=1).

use nuvol_monitor::ping::{PingOptions, Pinger};
use nuvol_testkit::netns::skip_or_fail;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

fn pinger(test: &str) -> Option<Pinger> {
    match Pinger::new() {
        Ok(p) => Some(p),
        Err(e) => {
            skip_or_fail(test, &e.to_string());
            None
        }
    }
}

#[tokio::test]
async fn loopback_answers() {
    let Some(p) = pinger("loopback_answers") else {
        return;
    };
    let s = p
        .ping(Ipv4Addr::LOCALHOST, &PingOptions::default())
        .await
        .unwrap();
    eprintln!("socket {:?}: {s:?}", p.kind);
    assert_eq!(s.loss, 0.0, "{s:?}");
    assert_eq!(s.received, 5);
    let (min, avg, max) = (s.min_ms.unwrap(), s.avg_ms.unwrap(), s.max_ms.unwrap());
    assert!(min > 0.0 && min <= avg && avg <= max, "{s:?}");
}

#[tokio::test]
async fn test_net_is_silent() {
    let Some(p) = pinger("test_net_is_silent") else {
        return;
    };
    let opts = PingOptions {
        timeout: Duration::from_millis(500),
        ..PingOptions::default()
    };
    let t0 = Instant::now();
    // TEST-NET-2 (RFC 5737): never routed, so no answer. Not TEST-NET-1:
    // containers and labs number real networks from 192.0.2.0/24 (this
    // machine's gateway is 192.0.2.1). A machine with no route at all fails
    // to send instead, which is also no answer.
    match p.ping(Ipv4Addr::new(198, 51, 100, 1), &opts).await {
        Ok(s) => {
            assert_eq!(s.loss, 1.0, "{s:?}");
            assert_eq!(s.avg_ms, None);
        }
        Err(e) => eprintln!("198.51.100.1 unroutable here: {e}"),
    }
    // 4 intervals of 200 ms, then a 500 ms timeout.
    assert!(
        t0.elapsed() < Duration::from_millis(4 * 200 + 500 + 700),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn one_pinger_many_devices() {
    let Some(p) = pinger("one_pinger_many_devices") else {
        return;
    };
    let opts = PingOptions {
        count: 3,
        interval: Duration::from_millis(20),
        ..PingOptions::default()
    };
    let a = Ipv4Addr::LOCALHOST;
    let b = Ipv4Addr::new(127, 0, 0, 2);
    let (x, y, z) = tokio::join!(p.ping(a, &opts), p.ping(b, &opts), p.ping(a, &opts));
    for s in [x.unwrap(), y.unwrap(), z.unwrap()] {
        assert_eq!(s.loss, 0.0, "{s:?}");
    }
}

/// Run in a child by `unprivileged_socket_and_the_error` (else a no-op):
/// checks the socket kind, or the error, that NUVOL_PING_CHILD names.
#[tokio::test]
async fn socket_kind_child() {
    let Ok(expect) = std::env::var("NUVOL_PING_CHILD") else {
        return;
    };
    match (expect.as_str(), Pinger::new()) {
        ("dgram", Ok(p)) => {
            assert_eq!(p.kind, socket2::Type::DGRAM);
            let s = p
                .ping(Ipv4Addr::LOCALHOST, &PingOptions::default())
                .await
                .unwrap();
            assert_eq!(s.loss, 0.0, "{s:?}");
        }
        ("none", Err(e)) => {
            let msg = e.to_string();
            assert!(
                msg.contains("net.ipv4.ping_group_range") && msg.contains("CAP_NET_RAW"),
                "{msg}"
            );
        }
        (want, got) => panic!("wanted {want}, got {:?}", got.map(|p| p.kind)),
    }
}

/// Without CAP_NET_RAW, in a network namespace of its own: with
/// ping_group_range open, an unprivileged datagram socket pings; with the
/// kernel's default range ("1 0"), the error names both fixes. Needs root,
/// `unshare`, `setpriv` and `ip`.
#[test]
fn unprivileged_socket_and_the_error() {
    let test = "unprivileged_socket_and_the_error";
    if let Some(why) = nuvol_testkit::netns::missing(&[]) {
        skip_or_fail(test, &why);
        return;
    }
    for tool in ["unshare", "setpriv"] {
        if nuvol_testkit::netns::run(&[tool, "--version"]).is_err() {
            skip_or_fail(test, &format!("`{tool}` (util-linux) is missing"));
            return;
        }
    }
    let exe = std::env::current_exe().unwrap();
    for (expect, range) in [("dgram", "0 2147483647"), ("none", "1 0")] {
        let script = format!(
            "ip link set lo up && echo '{range}' > /proc/sys/net/ipv4/ping_group_range && \
             exec setpriv --inh-caps=-net_raw --bounding-set=-net_raw \"$0\" --exact socket_kind_child"
        );
        let out = std::process::Command::new("unshare")
            .args(["-n", "sh", "-c", &script])
            .arg(&exe)
            .env("NUVOL_PING_CHILD", expect)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{expect}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
