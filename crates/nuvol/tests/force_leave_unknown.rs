//! force-leave of a node the agent does not know, through the third-party
//! Python RPC client `serfclient` (PyPI), against real serf and against
//! nuvol: both accept it with the same response (no error), and a member
//! that still knows the node marks it left.
//!
//! Serf's behaviour (serf/serf.go `forceLeave`, reached from
//! cmd/serf/command/agent/ipc.go `handleForceLeave`): no check that the
//! node is known; the leave intent is processed locally (an unknown node
//! only gets a recorded intent) and broadcast when other members are alive.
//!
//! The scenario, once with a serf agent and once with a nuvol agent as A:
//! T joins B (both serf) and is killed; B sees T failed; A joins B, and
//! does not know T (memberlist makes no member from a dead entry it never
//! saw alive); `serfclient.force_leave(T)` against A; B marks T left.
//!
//! Needs Debian's `serf` (skip-or-fail by `NUVOL_REQUIRE_SERF`) and the
//! Python module `serfclient` (skip-or-fail by `NUVOL_REQUIRE_SYSTEM`).
//! All agents use the `local` profile; timeouts only bound a stuck test.

use anyhow::{ensure, Context, Result};
use nuvol_testkit::netns::skip_or_fail;
use nuvol_testkit::{
    require_serf, run_with_timeout, wait_until_msg, AgentBuilder, FromProcess, NuvolAgent,
    SerfAgent, CLI_TIMEOUT,
};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/serfclient_force_leave.py"
);
const LIMIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

/// Whether `python3 -c "import serfclient"` works; else skip or fail.
fn require_serfclient(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import serfclient"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok || skip_or_fail(
        test,
        "python3 module serfclient is missing (pip install serfclient)",
    )
}

/// Run the serfclient script against `rpc`: its JSON output.
fn serfclient_force_leave(rpc: std::net::SocketAddr, node: &str) -> Result<Value> {
    let mut cmd = Command::new("python3");
    cmd.arg(SCRIPT)
        .arg(rpc.ip().to_string())
        .arg(rpc.port().to_string())
        .arg(node);
    let out = run_with_timeout(cmd, CLI_TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "serfclient force_leave against {rpc} failed ({}): {}{}",
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).with_context(|| format!("serfclient output: {stdout}"))
}

/// The scenario with `a` (serf or nuvol) as the agent asked; returns what
/// serfclient got back.
fn scenario<A: FromProcess>(tag: &str, a: impl FnOnce(&str) -> AgentBuilder<A>) -> Result<Value> {
    let (b_name, t_name, a_name) = (
        format!("flb-{tag}"),
        format!("flt-{tag}"),
        format!("fla-{tag}"),
    );
    let b = SerfAgent::builder(&b_name).profile("local").spawn()?;
    let mut t = SerfAgent::builder(&t_name)
        .profile("local")
        .join_agent(&b)
        .spawn()?;
    wait_until_msg(
        &format!("{b_name} sees {t_name} alive"),
        LIMIT,
        POLL,
        || b.status_of(&t_name).as_deref() == Some("alive"),
    )?;
    t.kill();
    wait_until_msg(
        &format!("{b_name} sees {t_name} failed"),
        LIMIT,
        POLL,
        || b.status_of(&t_name).as_deref() == Some("failed"),
    )?;
    let a = a(&a_name).profile("local").join_agent(&b).spawn()?;
    wait_until_msg(&format!("{a_name} and {b_name} alive"), LIMIT, POLL, || {
        a.status_of(&b_name).as_deref() == Some("alive")
            && b.status_of(&a_name).as_deref() == Some("alive")
    })?;
    let ms = a.members()?;
    ensure!(
        !ms.iter().any(|m| m.name == t_name),
        "{a_name} knows {t_name}; the test needs it not to: {ms:?}"
    );

    let got = serfclient_force_leave(a.rpc_addr(), &t_name)?;
    // Success: an empty error string and no body (serf's responseHeader).
    let expected = serde_json::json!({ "head": { "Error": "" }, "body": null });
    ensure!(got == expected, "{a_name} answered {got}");

    wait_until_msg(
        &format!("{b_name} sees {t_name} left after force-leave on {a_name}"),
        LIMIT,
        POLL,
        || b.status_of(&t_name).as_deref() == Some("left"),
    )
    .with_context(|| format!("{a_name}'s log:\n{}", a.log_tail(40)))?;
    Ok(got)
}

#[test]
fn serfclient_force_leave_of_an_unknown_node_serf_and_nuvol_agree() -> Result<()> {
    let test = "serfclient_force_leave_of_an_unknown_node_serf_and_nuvol_agree";
    if !require_serf() || !require_serfclient(test) {
        return Ok(());
    }
    let from_serf = scenario("serf", SerfAgent::builder)?;
    let from_nuvol = scenario("nuvol", |n| NuvolAgent::builder(NUVOL, n))?;
    ensure!(
        from_nuvol == from_serf,
        "nuvol answered {from_nuvol}, serf {from_serf}"
    );
    Ok(())
}
