//! The server against the real `dig` (Debian's dnsutils / bind9-dnsutils).
//!
//! Without `dig` on the PATH the tests print a SKIP line and pass, unless
//! `NUVOL_REQUIRE_SYSTEM=1` is set, which makes them fail.

use nuvol_dns::{DnsConfig, DnsServer, DnsStats, DnsView, Instance};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// False (skip) when dig is missing; panics instead with NUVOL_REQUIRE_SYSTEM=1.
fn have_dig(test: &str) -> bool {
    let ok = std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    let reason = "`dig` is not installed (apt-get install dnsutils)";
    if std::env::var("NUVOL_REQUIRE_SYSTEM").as_deref() == Ok("1") {
        panic!("{test}: {reason} (NUVOL_REQUIRE_SYSTEM=1)");
    }
    eprintln!("SKIP {test}: {reason}");
    false
}

#[derive(Debug, Clone, PartialEq)]
struct Rr {
    name: String,
    ttl: u32,
    rtype: String,
    data: String,
}

#[derive(Debug, Default)]
struct DigOut {
    status: String,
    flags: Vec<String>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
    msg_size: usize,
    raw: String,
}

impl DigOut {
    fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
    fn answer_data(&self, rtype: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect();
        v.sort();
        v
    }
}

fn parse_dig(raw: &str) -> DigOut {
    let mut out = DigOut {
        raw: raw.to_owned(),
        ..DigOut::default()
    };
    #[derive(PartialEq)]
    enum Sec {
        None,
        An,
        Au,
        Ad,
    }
    let mut sec = Sec::None;
    for line in raw.lines() {
        let l = line.trim();
        if let Some(rest) = l.split("status: ").nth(1) {
            out.status = rest.split(',').next().unwrap_or("").trim().to_owned();
        }
        if let Some(rest) = l.strip_prefix(";; flags:") {
            let flags = rest.split(';').next().unwrap_or("");
            out.flags = flags.split_whitespace().map(str::to_owned).collect();
        }
        if let Some(rest) = l.strip_prefix(";; MSG SIZE  rcvd:") {
            out.msg_size = rest.trim().parse().unwrap_or(0);
        }
        match l {
            ";; ANSWER SECTION:" => sec = Sec::An,
            ";; AUTHORITY SECTION:" => sec = Sec::Au,
            ";; ADDITIONAL SECTION:" => sec = Sec::Ad,
            "" => sec = Sec::None,
            _ if l.starts_with(';') => {}
            _ if sec != Sec::None => {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() >= 5 {
                    let rr = Rr {
                        name: f[0].to_owned(),
                        ttl: f[1].parse().unwrap_or(u32::MAX),
                        rtype: f[3].to_owned(),
                        data: f[4..].join(" "),
                    };
                    match sec {
                        Sec::An => out.answer.push(rr),
                        Sec::Au => out.authority.push(rr),
                        Sec::Ad => out.additional.push(rr),
                        Sec::None => {}
                    }
                }
            }
            _ => {}
        }
    }
    out
}

async fn dig(addr: SocketAddr, args: &[&str]) -> DigOut {
    let out = tokio::process::Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .arg("-p")
        .arg(addr.port().to_string())
        .args(["+time=3", "+tries=2", "+norecurse"])
        .args(args)
        .output()
        .await
        .expect("running dig");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dig {args:?} failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_dig(&text)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn inst(node: &str, addr: &str, port: u16) -> Instance {
    Instance {
        node: node.into(),
        ip: ip(addr),
        port,
    }
}

fn base_view() -> DnsView {
    let mut v = DnsView::default();
    v.add_node_addr("alpha", ip("10.1.0.1"));
    v.add_node_addr("alpha", ip("fd00::1"));
    v.add_node_addr("beta", ip("10.1.0.2"));
    v.add_node_addr("gamma", ip("10.1.0.3"));
    v.add_instance("http", inst("alpha", "10.1.0.1", 80));
    v.add_instance("http", inst("beta", "10.1.0.2", 8080));
    v.add_instance("ipfs", inst("alpha", "fd00::1", 4001));
    v.add_instance("ssh", inst("gamma", "10.1.0.3", 22));
    // 100 instances: over 512 and 1232 bytes as A records, under 4096.
    for i in 0..100u16 {
        let node = format!("big-{i}");
        let a = format!("10.2.{}.{}", i / 200, i % 200 + 1);
        v.add_node_addr(&node, ip(&a));
        v.add_instance("big", inst(&node, &a, 9000 + i));
    }
    v
}

struct Running {
    addr: SocketAddr,
    stats: Arc<DnsStats>,
    tx: watch::Sender<Arc<DnsView>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), nuvol_dns::DnsError>>,
}

async fn start(view: DnsView) -> Running {
    let (tx, rx) = watch::channel(Arc::new(view));
    let cfg = DnsConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        service_ttl: Duration::from_secs(7),
        node_ttl: Duration::from_secs(42),
        ..DnsConfig::default()
    };
    let server = DnsServer::bind(cfg, rx).await.expect("bind");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let stats = server.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stats,
        tx,
        stop: Some(stop),
        task,
    }
}

impl Running {
    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.expect("join").expect("server run");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_a_aaaa_srv_node_nxdomain() {
    if !have_dig("dig_a_aaaa_srv_node_nxdomain") {
        return;
    }
    let s = start(base_view()).await;
    let a = s.addr;

    // A: both instances, TTL = service_ttl, authoritative.
    let r = dig(a, &["http.service.nuvol", "A"]).await;
    assert_eq!(r.status, "NOERROR", "{}", r.raw);
    assert!(r.has_flag("aa"), "{}", r.raw);
    assert!(!r.has_flag("tc"));
    assert_eq!(
        r.answer_data("A"),
        vec!["10.1.0.1", "10.1.0.2"],
        "{}",
        r.raw
    );
    assert!(r.answer.iter().all(|x| x.ttl == 7), "{}", r.raw);

    // AAAA of a v6-only type; the other family is NOERROR with no answers.
    let r = dig(a, &["ipfs.service.nuvol.", "AAAA"]).await;
    assert_eq!(r.answer_data("AAAA"), vec!["fd00::1"], "{}", r.raw);
    let r = dig(a, &["ipfs.service.nuvol", "A"]).await;
    assert_eq!(r.status, "NOERROR", "{}", r.raw);
    assert!(r.answer.is_empty(), "{}", r.raw);
    assert_eq!(r.authority.len(), 1, "SOA for negative caching: {}", r.raw);
    let r = dig(a, &["http.service.nuvol", "AAAA"]).await;
    assert_eq!(r.status, "NOERROR");
    assert!(r.answer.is_empty());

    // SRV, both name forms, with the targets' addresses as additionals.
    for name in ["http.service.nuvol", "_http._tcp.service.nuvol"] {
        let r = dig(a, &[name, "SRV"]).await;
        assert_eq!(r.status, "NOERROR", "{}", r.raw);
        assert_eq!(
            r.answer_data("SRV"),
            vec!["1 1 80 alpha.node.nuvol.", "1 1 8080 beta.node.nuvol."],
            "{}",
            r.raw
        );
        assert!(r.answer.iter().all(|x| x.ttl == 7));
        let mut extra: Vec<(String, String, u32)> = r
            .additional
            .iter()
            .map(|x| (x.name.clone(), x.data.clone(), x.ttl))
            .collect();
        extra.sort();
        assert_eq!(
            extra,
            vec![
                ("alpha.node.nuvol.".into(), "10.1.0.1".into(), 42),
                ("alpha.node.nuvol.".into(), "fd00::1".into(), 42),
                ("beta.node.nuvol.".into(), "10.1.0.2".into(), 42),
            ],
            "{}",
            r.raw
        );
    }

    // NODE.node, TTL = node_ttl.
    let r = dig(a, &["alpha.node.nuvol", "A"]).await;
    assert_eq!(r.answer_data("A"), vec!["10.1.0.1"], "{}", r.raw);
    assert_eq!(r.answer[0].ttl, 42);
    let r = dig(a, &["alpha.node.nuvol", "AAAA"]).await;
    assert_eq!(r.answer_data("AAAA"), vec!["fd00::1"], "{}", r.raw);

    // Case-insensitive.
    let r = dig(a, &["HTTP.Service.NuVol", "A"]).await;
    assert_eq!(
        r.answer_data("A"),
        vec!["10.1.0.1", "10.1.0.2"],
        "{}",
        r.raw
    );
    let r = dig(a, &["_HTTP._TCP.SERVICE.NUVOL.", "SRV"]).await;
    assert_eq!(r.answer.len(), 2, "{}", r.raw);
    let r = dig(a, &["Beta.NODE.nuvol", "A"]).await;
    assert_eq!(r.answer_data("A"), vec!["10.1.0.2"], "{}", r.raw);

    // Unknown names under the domain: NXDOMAIN with the SOA, negative TTL 7.
    for name in ["nope.service.nuvol", "nope.node.nuvol", "x.y.nuvol"] {
        let r = dig(a, &[name, "A"]).await;
        assert_eq!(r.status, "NXDOMAIN", "{name}: {}", r.raw);
        assert!(r.has_flag("aa"));
        assert_eq!(r.authority.len(), 1, "{}", r.raw);
        assert_eq!(r.authority[0].rtype, "SOA");
        assert_eq!(r.authority[0].ttl, 7);
        assert!(
            r.authority[0].data.ends_with(" 7"),
            "SOA minimum: {}",
            r.raw
        );
    }
    // Outside the domain: REFUSED.
    let r = dig(a, &["example.com", "A"]).await;
    assert_eq!(r.status, "REFUSED", "{}", r.raw);
    // The apex SOA.
    let r = dig(a, &["nuvol", "SOA"]).await;
    assert_eq!(r.answer_data("SOA").len(), 1, "{}", r.raw);

    let st = s.stats.snapshot();
    assert!(st.nxdomain >= 3 && st.refused >= 1, "{st:?}");
    assert_eq!(st.dropped_malformed, 0);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_sees_view_updates() {
    if !have_dig("dig_sees_view_updates") {
        return;
    }
    let s = start(base_view()).await;
    let r = dig(s.addr, &["http.service.nuvol", "A"]).await;
    assert_eq!(r.answer.len(), 2);

    // beta's http goes unhealthy, a new type appears.
    let mut v = base_view();
    v.services
        .insert("http".into(), vec![inst("alpha", "10.1.0.1", 80)]);
    v.add_instance("mqtt", inst("gamma", "10.1.0.3", 1883));
    s.tx.send(Arc::new(v)).expect("send view");
    let r = dig(s.addr, &["http.service.nuvol", "A"]).await;
    assert_eq!(r.answer_data("A"), vec!["10.1.0.1"], "{}", r.raw);
    let r = dig(s.addr, &["_mqtt._tcp.service.nuvol", "SRV"]).await;
    assert_eq!(
        r.answer_data("SRV"),
        vec!["1 1 1883 gamma.node.nuvol."],
        "{}",
        r.raw
    );

    // Everything gone: the type is NXDOMAIN.
    s.tx.send(Arc::new(DnsView {
        services: HashMap::new(),
        nodes: HashMap::new(),
    }))
    .expect("send view");
    let r = dig(s.addr, &["http.service.nuvol", "A"]).await;
    assert_eq!(r.status, "NXDOMAIN", "{}", r.raw);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_truncation_and_tcp() {
    if !have_dig("dig_truncation_and_tcp") {
        return;
    }
    let s = start(base_view()).await;
    let a = s.addr;
    let all: Vec<String> = (0..100u16)
        .map(|i| format!("10.2.{}.{}", i / 200, i % 200 + 1))
        .collect();
    let mut all_sorted = all.clone();
    all_sorted.sort();

    // Plain UDP, no EDNS: 512 bytes, TC, only whole records.
    let r = dig(
        a,
        &["+notcp", "+ignore", "+noedns", "big.service.nuvol", "A"],
    )
    .await;
    assert!(r.has_flag("tc"), "{}", r.raw);
    assert!(r.msg_size <= 512, "{}", r.msg_size);
    assert!(!r.answer.is_empty() && r.answer.len() < 100, "{}", r.raw);
    for x in &r.answer {
        assert!(all.contains(&x.data), "{x:?}");
    }

    // EDNS 1232: more fit, still TC, OPT echoed.
    let r = dig(
        a,
        &[
            "+notcp",
            "+ignore",
            "+bufsize=1232",
            "big.service.nuvol",
            "A",
        ],
    )
    .await;
    assert!(r.has_flag("tc"), "{}", r.raw);
    assert!(r.msg_size <= 1232, "{}", r.msg_size);
    assert!(r.answer.len() > 30 && r.answer.len() < 100, "{}", r.raw);
    assert!(r.raw.contains("OPT PSEUDOSECTION"), "{}", r.raw);

    // EDNS 4096: everything fits over UDP.
    let r = dig(
        a,
        &[
            "+notcp",
            "+ignore",
            "+bufsize=4096",
            "big.service.nuvol",
            "A",
        ],
    )
    .await;
    assert!(!r.has_flag("tc"), "{}", r.raw);
    assert_eq!(r.answer_data("A"), all_sorted);

    // TCP: all 100.
    let tcp_before = s.stats.snapshot().tcp_queries;
    let r = dig(a, &["+tcp", "+noedns", "big.service.nuvol", "A"]).await;
    assert!(!r.has_flag("tc"), "{}", r.raw);
    assert_eq!(r.answer_data("A"), all_sorted, "{}", r.raw);
    // SRV over TCP: all 100 with their additionals.
    let r = dig(a, &["+tcp", "_big._tcp.service.nuvol", "SRV"]).await;
    assert_eq!(r.answer.len(), 100, "{}", r.raw);
    assert_eq!(r.additional.len(), 100, "{}", r.raw);

    // dig's default: UDP, sees TC, retries over TCP, gets everything.
    let r = dig(a, &["+noedns", "big.service.nuvol", "A"]).await;
    assert!(
        r.raw.contains("Truncated, retrying in TCP mode"),
        "{}",
        r.raw
    );
    assert_eq!(r.answer_data("A"), all_sorted, "{}", r.raw);

    let st = s.stats.snapshot();
    assert!(st.tcp_queries >= tcp_before + 3, "{st:?}");
    assert!(st.truncated >= 3, "{st:?}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_shuffled() {
    if !have_dig("answers_are_shuffled") {
        return;
    }
    let s = start(base_view()).await;
    let mut firsts = std::collections::HashSet::new();
    for _ in 0..10 {
        let r = dig(s.addr, &["+tcp", "big.service.nuvol", "A"]).await;
        firsts.insert(r.answer[0].data.clone());
    }
    // 10 draws of 100: all equal only with probability 1e-20.
    assert!(firsts.len() > 1, "{firsts:?}");
    s.shutdown().await;
}
