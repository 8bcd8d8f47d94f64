//! The SNMP client against Debian's real net-snmp agent (`snmpd`), run in
//! the foreground on a free loopback port with its own config.
//!
//! Loopback's counters: net-snmp caches the interface table for a few
//! seconds, loaded on the first request that needs it. So `before` is read
//! before the agent has answered anything, `after` once the sample is
//! back: the cached value was read between the two.
//!
//! Skips when `snmpd` is missing, unless NUVOL_REQUIRE_SYSTEM=1.

use nuvol_monitor::devices::{Device, Snmp, SnmpVersion};
use nuvol_monitor::snmp::{sample, Options, SnmpError};
use nuvol_testkit::netns::skip_or_fail;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SNMPD: &str = "/usr/sbin/snmpd";

struct Agent {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

fn start_agent() -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let conf = dir.path().join("snmpd.conf");
    std::fs::write(
        &conf,
        // The endpoint is on the command line (an `agentaddress` too would
        // make snmpd bind it twice and exit).
        "rocommunity public 127.0.0.1\n",
    )
    .unwrap();
    let child = Command::new(SNMPD)
        // No MIB text to load (Debian ships none): numeric OIDs only.
        .env("MIBS", "")
        .args(["-f", "-Lo", "-C", "-c"])
        .arg(&conf)
        .arg("-p")
        .arg(dir.path().join("snmpd.pid"))
        .arg(format!("udp:127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Agent {
        child,
        port,
        _dir: dir,
    }
}

fn have_snmpd(test: &str) -> bool {
    std::path::Path::new(SNMPD).exists()
        || skip_or_fail(test, "snmpd is not installed (apt-get install snmpd)")
}

fn device(port: u16, community: &str, version: SnmpVersion, interfaces: Vec<u32>) -> Device {
    Device {
        id: "lo".into(),
        title: String::new(),
        address: Ipv4Addr::LOCALHOST,
        snmp: Some(Snmp {
            community: community.into(),
            port,
            version,
        }),
        interfaces,
    }
}

fn lo_stat(name: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/lo/statistics/{name}"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn lo_index() -> u32 {
    std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn quick() -> Options {
    Options {
        timeout: Duration::from_millis(300),
        retries: 1,
    }
}

/// Polls until the agent answers (it takes a moment to start).
async fn first_sample(dev: &Device) -> nuvol_monitor::snmp::Sample {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sample(dev, &quick()).await {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for snmpd: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("snmpd never answered: {e}"),
        }
    }
}

#[tokio::test]
async fn v2c_loopback_counters() {
    if !have_snmpd("v2c_loopback_counters") {
        return;
    }
    let (rx0, tx0) = (lo_stat("rx_bytes"), lo_stat("tx_bytes"));
    let agent = start_agent();
    let lo = lo_index();
    let s = first_sample(&device(agent.port, "public", SnmpVersion::V2c, vec![lo])).await;
    let (rx1, tx1) = (lo_stat("rx_bytes"), lo_stat("tx_bytes"));
    assert!(s.uptime_cs > 0, "{s:?}");
    let i = s.interfaces.first().expect("loopback in the sample");
    assert_eq!(i.index, lo);
    assert!(i.hc, "net-snmp has ifHCInOctets: {i:?}");
    assert!(i.oper_up, "loopback is up: {i:?}");
    assert!(
        (rx0..=rx1).contains(&i.in_octets),
        "ifHCInOctets {} not in [{rx0}, {rx1}]",
        i.in_octets
    );
    assert!(
        (tx0..=tx1).contains(&i.out_octets),
        "ifHCOutOctets {} not in [{tx0}, {tx1}]",
        i.out_octets
    );
    // No interfaces listed: the ifIndex walk (GETBULK) finds loopback.
    let all = sample(
        &device(agent.port, "public", SnmpVersion::V2c, vec![]),
        &quick(),
    )
    .await
    .unwrap();
    assert!(all.interfaces.iter().any(|i| i.index == lo), "{all:?}");
    assert!(all.uptime_cs >= s.uptime_cs);
}

#[tokio::test]
async fn v1_falls_back_to_32_bit() {
    if !have_snmpd("v1_falls_back_to_32_bit") {
        return;
    }
    let agent = start_agent();
    let lo = lo_index();
    let s = first_sample(&device(agent.port, "public", SnmpVersion::V1, vec![lo])).await;
    let i = s.interfaces.first().expect("loopback in the sample");
    assert!(!i.hc, "{i:?}");
    assert!(i.in_octets <= u64::from(u32::MAX));
    assert!(s.uptime_cs > 0);
    // The GETNEXT walk.
    let all = sample(
        &device(agent.port, "public", SnmpVersion::V1, vec![]),
        &quick(),
    )
    .await
    .unwrap();
    assert!(
        all.interfaces.iter().any(|i| i.index == lo && !i.hc),
        "{all:?}"
    );
    // A listed interface the agent does not have.
    let s = sample(
        &device(agent.port, "public", SnmpVersion::V2c, vec![lo, 999_999]),
        &quick(),
    )
    .await
    .unwrap();
    assert_eq!(s.missing, vec![999_999]);
}

#[tokio::test]
async fn wrong_community_and_closed_port_give_no_answer() {
    if !have_snmpd("wrong_community_and_closed_port_give_no_answer") {
        return;
    }
    let agent = start_agent();
    first_sample(&device(agent.port, "public", SnmpVersion::V2c, vec![1])).await;
    let opts = quick();
    // 2 attempts of 300 ms.
    let bound = Duration::from_millis(2 * 300 + 500);
    for (port, community) in [(agent.port, "wrong"), (free_udp_port(), "public")] {
        let t0 = Instant::now();
        let e = sample(&device(port, community, SnmpVersion::V2c, vec![1]), &opts)
            .await
            .unwrap_err();
        assert!(t0.elapsed() < bound, "took {:?}", t0.elapsed());
        assert!(matches!(e, SnmpError::NoAnswer { attempts: 2, .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("no answer") && msg.contains("wrong community, hung agent or unreachable"),
            "{msg}"
        );
        eprintln!("port {port}, community {community}: {msg}");
    }
}
