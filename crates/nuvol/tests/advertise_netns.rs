//! The address `nuvol agent --bind 0.0.0.0:7946` advertises, on a host of
//! its own: a network namespace whose default route goes out through a veth
//! (10.77.0.2/24 via 10.77.0.1, the gateway in a second namespace), and
//! which also has a bridge named `docker0` holding 172.17.0.1/16 with its
//! link down, created first so that it is listed before the veth (the old
//! choice, "the first private IPv4 of any interface", took it).
//!
//! Needs root and iproute2; skipped without them, failed instead under
//! `NUVOL_REQUIRE_SYSTEM=1`.

use anyhow::{bail, ensure, Context, Result};
use nuvol_testkit::netns::{self, run};
use nuvol_testkit::{eventually, parse_members, run_with_timeout, CLI_TIMEOUT};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

const HOST_ADDR: &str = "10.77.0.2";
const GATEWAY: &str = "10.77.0.1";

/// Two namespaces, deleted on drop (their veth ends with them).
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            if let Err(e) = run(&["ip", "netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// `ip -n NS link show dev DEV` as one line: `INDEX: DEV: <FLAGS> ... state STATE ...`.
fn link_line(ns: &str, dev: &str) -> Result<String> {
    run(&["ip", "-n", ns, "-o", "link", "show", "dev", dev]).map_err(anyhow::Error::msg)
}

fn ifindex(line: &str) -> Result<u32> {
    line.split(':')
        .next()
        .and_then(|i| i.trim().parse().ok())
        .with_context(|| format!("no interface index in {line:?}"))
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bound_to_any_advertises_the_default_route_interface_not_docker0() -> Result<()> {
    let test = "bound_to_any_advertises_the_default_route_interface_not_docker0";
    if !netns::require_system(test, &[]) {
        return Ok(());
    }
    let tag = std::process::id();
    let host = format!("nvadv{tag}h");
    let gw = format!("nvadv{tag}g");
    let veth = format!("nva{tag}h");
    let veth_gw = format!("nva{tag}g");
    ensure!(veth.len() <= 15, "interface name too long: {veth}");
    run(&["ip", "netns", "add", &host]).map_err(anyhow::Error::msg)?;
    let mut guard = Namespaces(vec![host.clone()]);
    run(&["ip", "netns", "add", &gw]).map_err(anyhow::Error::msg)?;
    guard.0.push(gw.clone());
    let ip = |ns: &str, args: &[&str]| -> Result<String> {
        let mut v = vec!["ip", "-n", ns];
        v.extend_from_slice(args);
        run(&v).map_err(anyhow::Error::msg)
    };
    ip(&host, &["link", "set", "lo", "up"])?;
    ip(&gw, &["link", "set", "lo", "up"])?;
    // docker0 first: a bridge with Docker's default address whose link is
    // down (as Docker leaves it with no container running).
    ip(&host, &["link", "add", "docker0", "type", "bridge"])?;
    ip(&host, &["addr", "add", "172.17.0.1/16", "dev", "docker0"])?;
    run(&[
        "ip", "link", "add", &veth, "netns", &host, "type", "veth", "peer", "name", &veth_gw,
        "netns", &gw,
    ])
    .map_err(anyhow::Error::msg)?;
    ip(
        &host,
        &["addr", "add", &format!("{HOST_ADDR}/24"), "dev", &veth],
    )?;
    ip(&host, &["link", "set", &veth, "up"])?;
    ip(
        &gw,
        &["addr", "add", &format!("{GATEWAY}/24"), "dev", &veth_gw],
    )?;
    ip(&gw, &["link", "set", &veth_gw, "up"])?;
    ip(&host, &["route", "add", "default", "via", GATEWAY])?;

    // The setup is what the test claims: docker0 is down and listed before
    // the veth (so "first private address" would have picked 172.17.0.1),
    // and the default route is on the veth.
    let docker0 = link_line(&host, "docker0")?;
    ensure!(
        docker0.contains("state DOWN"),
        "docker0 not down: {docker0}"
    );
    let v = link_line(&host, &veth)?;
    ensure!(
        ifindex(&docker0)? < ifindex(&v)?,
        "docker0 is not listed first:\n{docker0}\n{v}"
    );
    let route = ip(&host, &["-4", "route", "show", "default"])?;
    ensure!(
        route.contains(&format!("dev {veth}")),
        "default route: {route}"
    );

    let dir = tempfile::tempdir()?;
    let log_path: PathBuf = dir.path().join("agent.log");
    let log = File::create(&log_path)?;
    let child = Command::new("ip")
        .args(["netns", "exec", &host, NUVOL, "agent", "--node=adv"])
        .arg("--bind=0.0.0.0:7946")
        .arg("--rpc-addr=127.0.0.1:7373")
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg("--log-level=info")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("spawning nuvol agent in the namespace")?;
    let mut agent = Killed(child);
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let members = eventually("nuvol members in the namespace", LIMIT, POLL, || {
        if let Ok(Some(st)) = agent.0.try_wait() {
            bail!("agent exited ({st}); log:\n{}", log_text());
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host, NUVOL, "members", "--format", "json"])
            .args(["--rpc-addr", "127.0.0.1:7373"]);
        let out = run_with_timeout(cmd, CLI_TIMEOUT)?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        parse_members(&String::from_utf8_lossy(&out.stdout))
    })?;
    let me = members
        .iter()
        .find(|m| m.name == "adv")
        .with_context(|| format!("adv not in its own member list: {members:?}"))?;
    ensure!(
        me.addr == format!("{HOST_ADDR}:7946"),
        "advertised {} instead of {HOST_ADDR}:7946; log:\n{}",
        me.addr,
        log_text()
    );
    let why = format!("advertising {HOST_ADDR} (interface {veth}, holds the default route)");
    ensure!(
        log_text().contains(&why),
        "no {why:?} in the log:\n{}",
        log_text()
    );
    drop(agent);
    drop(guard);
    Ok(())
}
