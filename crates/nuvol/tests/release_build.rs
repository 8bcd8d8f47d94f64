//! The deployment binary (`scripts/build-release.sh`: release profile,
//! abort on panic, glibc linked statically) is not the binary the other
//! tests run (the dev build), so it gets its own check: it is static, it
//! resolves host names without a dynamic libc (`localhost`, the machine's
//! own name), and it forms a mixed cluster with the real serf, driven by its
//! own CLI and by serf's.
//!
//! `scripts/test.sh` builds it and passes its path in `NUVOL_RELEASE_BIN`;
//! without that variable the test is skipped (or fails under
//! `NUVOL_REQUIRE_SYSTEM=1`, as `scripts/test.sh` runs it).

use nuvol_testkit::netns::skip_or_fail;
use nuvol_testkit::{require_serf, wait_until_msg, MemberJson, NuvolAgent, SerfAgent};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

const RELEASE_BIN_ENV: &str = "NUVOL_RELEASE_BIN";
const T: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

fn release_bin(test: &str) -> Option<PathBuf> {
    match std::env::var_os(RELEASE_BIN_ENV) {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "{RELEASE_BIN_ENV}={} is not a file",
                p.display()
            );
            Some(p)
        }
        None => {
            skip_or_fail(
                test,
                "NUVOL_RELEASE_BIN is not set (scripts/test.sh builds the deployment \
                 binary with scripts/build-release.sh and sets it)",
            );
            None
        }
    }
}

/// Whether an ELF file asks for a dynamic loader (has a `PT_INTERP`
/// program header). 64-bit little-endian ELF only.
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap_or([0; 8]));
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not a 64-bit ELF file");
    assert_eq!(elf[5], 1, "not a little-endian ELF file");
    let phoff = u64_at(0x20) as usize;
    let phentsize = u16_at(0x36);
    let phnum = u16_at(0x38);
    (0..phnum).any(|i| u32_at(phoff + i * phentsize) == 3)
}

/// A port free for both TCP and UDP on 127.0.0.1 (gossip uses both).
fn free_localhost_port() -> u16 {
    for _ in 0..100 {
        let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) else {
            continue;
        };
        let Ok(port) = tcp.local_addr().map(|a| a.port()) else {
            continue;
        };
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[test]
fn deployment_binary_is_static() {
    let Some(bin) = release_bin("deployment_binary_is_static") else {
        return;
    };
    let elf = std::fs::read(&bin).expect("reading the release binary");
    assert!(
        !has_interpreter(&elf),
        "{} asks for a dynamic loader: scripts/build-release.sh should link glibc statically",
        bin.display()
    );
    // And the dev build, for contrast, does: the check can tell them apart.
    let dev = std::fs::read(env!("CARGO_BIN_EXE_nuvol")).expect("reading the dev binary");
    assert!(
        has_interpreter(&dev),
        "the dev build was expected to be dynamic"
    );
}

#[test]
fn deployment_binary_joins_by_host_name_and_works_with_serf() {
    let Some(bin) = release_bin("deployment_binary_joins_by_host_name_and_works_with_serf") else {
        return;
    };
    if !require_serf() {
        return;
    }
    let serf = SerfAgent::builder("rel-serf").spawn().expect("serf agent");
    // `a` listens on 127.0.0.1 so that `localhost` reaches it; its API and
    // DNS are off so that parallel tests' defaults do not collide.
    let port = free_localhost_port();
    let mut a = NuvolAgent::builder(&bin, "rel-a")
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .rpc_addr(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            free_localhost_port(),
        )))
        .args(["--http-addr", "", "--dns-addr", ""])
        .join(serf.bind())
        .tag("build", "release")
        .spawn()
        .expect("release agent a");
    // `b` finds `a` by name: glibc's resolver, linked statically.
    let b = NuvolAgent::builder(&bin, "rel-b")
        .join(format!("localhost:{port}"))
        .spawn()
        .expect("release agent b");
    let everyone = ["rel-a", "rel-b", "rel-serf"];
    let all_alive = |list: Vec<MemberJson>| {
        everyone
            .iter()
            .all(|n| list.iter().any(|m| m.name == *n && m.is_alive()))
    };
    wait_until_msg("three members alive on every node", T, POLL, || {
        // A failed member list fails the test (it is not "not yet").
        all_alive(serf.members_now())
            && all_alive(a.nuvol_members().expect("nuvol members on rel-a"))
            && all_alive(b.members_now())
    })
    .expect("mixed cluster with the release binary");

    // The CLI of the release binary, with a's RPC address given by name
    // (the machine's own name if it resolves to 127.0.0.1, else localhost):
    // a tag change reaches serf.
    let rpc_port = a.rpc_addr().port();
    let host = std::process::Command::new("hostname")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|h| {
            std::net::ToSocketAddrs::to_socket_addrs(&(h.as_str(), rpc_port))
                .map(|mut it| it.any(|s| s.ip() == Ipv4Addr::LOCALHOST))
                .unwrap_or(false)
        })
        .unwrap_or_else(|| "localhost".into());
    let rpc = format!("{host}:{rpc_port}");
    let out = std::process::Command::new(&bin)
        .args(["tags", "--set", "role=edge", "--rpc-addr", &rpc])
        .output()
        .expect("running the release CLI");
    assert!(
        out.status.success(),
        "nuvol tags via {rpc}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("release CLI reached rel-a at {rpc}");
    wait_until_msg("serf sees rel-a's new tag", T, POLL, || {
        serf.member("rel-a")
            .expect("serf's member list")
            .is_some_and(|m| m.tag("role") == Some("edge"))
    })
    .expect("tag from the release binary");
    let m = serf
        .member("rel-a")
        .expect("serf's member list")
        .expect("rel-a in serf's list");
    assert_eq!(m.tag("build"), Some("release"));

    // A graceful leave through serf's CLI against the release agent.
    a.serf(&["leave"])
        .expect("serf leave against the release agent");
    wait_until_msg("rel-a left, seen by serf and rel-b", T, POLL, || {
        serf.status_of("rel-a").as_deref() == Some("left")
            && b.status_of("rel-a").as_deref() == Some("left")
    })
    .expect("leave");
    let st = a.wait_exit(T).expect("rel-a exits after its leave");
    assert!(st.success(), "rel-a after leave: {st}");
    assert!(
        !a.log_text().contains("panicked"),
        "release agent a panicked:\n{}",
        a.log_text()
    );
}
