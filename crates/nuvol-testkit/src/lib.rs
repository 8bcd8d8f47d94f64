//! Test harness for nuvol's integration tests and benchmark (dev only).
//!
//! - [`require_serf`]: skip (or, under `NUVOL_REQUIRE_SERF=1`, fail) a test
//!   when Debian's `serf` is not installed.
//! - [`LoopbackAlloc`] / [`fresh_ip`]: loopback addresses 127.x.y.z that no
//!   other test of this process, nor of any other process using this crate,
//!   holds; so every agent gets the default ports 7946 and 7373 on its own
//!   address and tests run in parallel.
//! - [`SerfAgent`] and [`NuvolAgent`]: spawn a real `serf agent` or a
//!   `nuvol agent` from one builder ([`AgentBuilder`]), log to a file,
//!   SIGKILL on drop.
//! - [`serf_cli`] / [`members_json`]: serf's own CLI against any RPC address,
//!   parsed into [`MemberJson`]; [`serf_run`] / [`nuvol_run`] keep a failed
//!   call's exit code and stderr ([`CliOutput`]) for tests of errors. A
//!   failed call is an error (or, in [`AgentProcess::status_of`], a panic),
//!   never an empty member list.
//! - [`wait_until`] / [`eventually`] / [`wait_all_see`] / [`wait_all_agree`]:
//!   poll with an upper bound that only fails a stuck test; never assert on
//!   how long something took.
//!
//! - [`browser`]: headless Chromium over WebDriver (chromedriver) for
//!   end-to-end tests of web pages: viewport widths, screenshots, forms,
//!   and axe-core's accessibility checks.
//! - [`docker`]: the Docker daemon's presence, and a busybox image built
//!   locally (no registry) for the apps' engine tests.
//! - [`netns`]: two network namespaces joined by a veth pair, programs run
//!   inside them, and the skip-or-fail rule for missing system parts.
//! - [`lan`]: a LAN of namespaces on one bridge (a switch namespace), and
//!   daemons run inside them with their output in a file.
//!
//! Everything is blocking (`std::process`, `std::thread::sleep`): no async
//! runtime is needed, except for [`wait_until_async`] (tokio's timer) and
//! [`browser`] (async throughout, on tokio).

mod agent;
pub mod browser;
mod cli;
pub mod debian;
pub mod docker;
pub mod lan;
mod loopback;
pub mod netns;
pub mod podman;
pub mod swarm;
mod wait;

pub use agent::{
    summarize, wait_all_agree, wait_all_see, AgentBuilder, AgentKind, AgentProcess, FromProcess,
    NuvolAgent, SerfAgent, Signal, KEEP_DIRS_ENV,
};
pub use cli::{
    members_json, members_json_auth, nuvol_cli, nuvol_members_json, nuvol_run, parse_members,
    run_cli, run_with_timeout, serf_cli, serf_cli_auth, serf_run, CliOutput, MemberJson,
    ProtocolJson, CLI_ENV, CLI_TIMEOUT,
};
pub use loopback::{fresh_ip, ports_free, LoopbackAlloc, RESERVE_PORT, RPC_PORT, SERF_PORT};
pub use wait::{eventually, wait_until, wait_until_async, wait_until_msg};

/// A TCP port on 127.0.0.1 free at the time of asking (for an app's
/// published host port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("a free port: {e}"))
}

/// `GET /` over HTTP/1.0 from 127.0.0.1:`port`: the whole answer, or
/// None when nothing answers within 2 s.
pub fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(2);
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        timeout,
    )
    .ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

use std::process::{Command, Stdio};

/// The variable that turns a missing `serf` from a skip into a failure.
pub const REQUIRE_SERF_ENV: &str = "NUVOL_REQUIRE_SERF";

/// True when `serf` is installed and runs.
pub fn serf_installed() -> bool {
    Command::new("serf")
        .arg("version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether a test that needs the real `serf` can run.
///
/// True when `serf` is on `PATH`. Otherwise, with `NUVOL_REQUIRE_SERF=1`
/// (as `scripts/test.sh` sets) this panics, so interoperability tests never
/// pass by silently skipping; without it, it prints a note and returns
/// false, and the test should return early:
///
/// ```no_run
/// if !nuvol_testkit::require_serf() {
///     return;
/// }
/// ```
pub fn require_serf() -> bool {
    if serf_installed() {
        return true;
    }
    if std::env::var(REQUIRE_SERF_ENV).as_deref() == Ok("1") {
        panic!(
            "`serf` is not installed (or does not run) but {REQUIRE_SERF_ENV}=1 requires it: \
             install Debian's `serf` package, e.g. by running scripts/test.sh as root"
        );
    }
    eprintln!("skipping: `serf` not installed (run scripts/test.sh)");
    false
}
