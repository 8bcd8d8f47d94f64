//! The harness proved against real serf alone: clusters form, a SIGKILLed
//! node is seen failed, runtime tag changes and user events propagate, RPC
//! auth and encryption are passed through, and agents stop and restart.
//!
//! All agents use serf's `local` profile (memberlist's DefaultLocalConfig:
//! gossip every 100 ms, probe every 1 s with a 200 ms timeout, suspicion
//! multiplier 3 instead of `lan`'s 200 ms / 500 ms / 4), which shortens
//! failure detection on a 3-node cluster to a few seconds. Timeouts below
//! only bound a stuck test; nothing asserts on how long anything took.

use anyhow::{ensure, Context, Result};
use nuvol_testkit::{
    eventually, require_serf, serf_run, wait_all_see, wait_until_msg, AgentProcess, SerfAgent,
};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

fn all_alive(ms: &[nuvol_testkit::MemberJson], names: &[&str]) -> bool {
    ms.len() == names.len()
        && names
            .iter()
            .all(|n| ms.iter().any(|m| m.name == *n && m.is_alive()))
}

#[test]
fn three_agents_converge_tag_and_detect_failure() -> Result<()> {
    if !require_serf() {
        return Ok(());
    }
    let s1 = SerfAgent::builder("s1").profile("local").spawn()?;
    let s2 = SerfAgent::builder("s2")
        .profile("local")
        .tag("role", "db")
        .join_agent(&s1)
        .spawn()?;
    let mut s3 = SerfAgent::builder("s3")
        .profile("local")
        .join(s1.bind())
        .spawn()?;
    let all: [&AgentProcess; 3] = [&s1, &s2, &s3];
    wait_all_see(&all, "s1, s2, s3 alive", LIMIT, |ms| {
        all_alive(ms, &["s1", "s2", "s3"])
    })?;
    // Start-up tags came through, and the free CLI helper works too.
    let ms = nuvol_testkit::members_json(s3.rpc_addr())?;
    let s2_seen = ms.iter().find(|m| m.name == "s2").context("s2 listed")?;
    ensure!(s2_seen.tag("role") == Some("db"), "{s2_seen:?}");
    ensure!(s2_seen.addr == s2.bind().to_string(), "{s2_seen:?}");

    // A tag set at runtime on s2 reaches everyone.
    let out = s2.serf(&["tags", "-set", "role=web", "-set", "zone=a"])?;
    ensure!(out.contains("Successfully updated"), "{out}");
    wait_all_see(&all, "s2 tagged role=web zone=a", LIMIT, |ms| {
        ms.iter()
            .any(|m| m.name == "s2" && m.tag("role") == Some("web") && m.tag("zone") == Some("a"))
    })?;

    // SIGKILL s3: the others mark it failed (not left: it never said bye).
    s3.kill();
    ensure!(!s3.is_running());
    wait_all_see(&[&s1, &s2], "s3 failed", LIMIT, |ms| {
        ms.iter().any(|m| m.name == "s3" && m.status == "failed")
            && ms.iter().filter(|m| m.name != "s3").all(|m| m.is_alive())
    })?;
    s1.wait_for_log("EventMemberFailed: s3", LIMIT)?;
    ensure!(s1.status_of("s3").as_deref() == Some("failed"));
    // s3 is dead: its RPC port refuses.
    serf_run(&["members"], s3.rpc_addr(), None)?.assert_fails_saying(1, "connection refused");
    Ok(())
}

#[test]
fn user_event_runs_handlers_everywhere() -> Result<()> {
    if !require_serf() {
        return Ok(());
    }
    // Handlers run in the agent's own directory, so a relative file is
    // per agent.
    let handler = "user:ping=cat >> events.log; echo >> events.log";
    let a = SerfAgent::builder("a")
        .profile("local")
        .event_handler(handler)
        .spawn()?;
    let b = SerfAgent::builder("b")
        .profile("local")
        .event_handler(handler)
        .join_agent(&a)
        .spawn()?;
    wait_all_see(&[&a, &b], "a, b alive", LIMIT, |ms| {
        all_alive(ms, &["a", "b"])
    })?;
    b.serf(&["event", "-coalesce=false", "ping", "hello-from-b"])?;
    for agent in [&a, &b] {
        let file = agent.dir().join("events.log");
        wait_until_msg(
            &format!("the ping handler on {}", agent.name()),
            LIMIT,
            POLL,
            || std::fs::read_to_string(&file).is_ok_and(|s| s.contains("hello-from-b")),
        )?;
    }
    a.wait_for_log("Received event: user-event: ping", LIMIT)?;
    Ok(())
}

#[test]
fn rpc_auth_and_encryption_are_applied() -> Result<()> {
    if !require_serf() {
        return Ok(());
    }
    let key = "T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s=";
    let e1 = SerfAgent::builder("e1")
        .profile("local")
        .rpc_auth("sekrit")
        .keyring_keys(&[key])
        .spawn()?;
    let e2 = SerfAgent::builder("e2")
        .profile("local")
        .encrypt(key)
        .rpc_auth("sekrit")
        .join_agent(&e1)
        .spawn()?;
    ensure!(e1.log_contains("Encrypted: true"), "{}", e1.log_tail(20));
    wait_all_see(&[&e1, &e2], "e1, e2 alive", LIMIT, |ms| {
        all_alive(ms, &["e1", "e2"])
    })?;
    // Without the auth key, or with a wrong one, serf's CLI is refused.
    serf_run(&["members"], e1.rpc_addr(), None)?.assert_fails_saying(1, "Authentication required");
    serf_run(&["members"], e1.rpc_addr(), Some("wrong"))?
        .assert_fails_saying(1, "Invalid authentication token");
    let keys = e1.serf(&["keys", "-list"])?;
    ensure!(keys.contains(key), "{keys}");
    // An unencrypted agent cannot join them.
    let mut plain = SerfAgent::builder("plain")
        .profile("local")
        .join_agent(&e1)
        .wait_ready(false)
        .spawn()?;
    let st = plain.wait_exit(LIMIT)?;
    ensure!(
        !st.success(),
        "joining an encrypted cluster in clear must fail"
    );
    ensure!(
        e1.members()?.iter().all(|m| m.name != "plain"),
        "plain must not be a member"
    );
    Ok(())
}

#[test]
fn stop_restart_and_snapshot_rejoin() -> Result<()> {
    if !require_serf() {
        return Ok(());
    }
    // r1 never tries to reconnect to a failed member during the test, so
    // only r2's snapshot can bring r2 back.
    let r1 = SerfAgent::builder("r1")
        .profile("local")
        .reconnect_interval("1h")
        .spawn()?;
    let mut r2 = SerfAgent::builder("r2")
        .profile("local")
        .snapshot("r2.snapshot")
        .join_agent(&r1)
        .spawn()?;
    wait_all_see(&[&r1, &r2], "r1, r2 alive", LIMIT, |ms| {
        all_alive(ms, &["r1", "r2"])
    })?;
    ensure!(r2.dir().join("r2.snapshot").exists());

    // SIGTERM: serf shuts down without leaving.
    let pid = r2.pid().context("running")?;
    let st = r2.stop()?;
    ensure!(r2.pid().is_none() && st.code().is_some(), "{st}");
    ensure!(r2.log_contains("Caught signal"), "{}", r2.log_tail(20));
    ensure!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    wait_all_see(&[&r1], "r2 failed", LIMIT, |ms| {
        ms.iter().any(|m| m.name == "r2" && m.status == "failed")
    })?;

    // Same address and directory, without its -join: it rejoins r1 from
    // its snapshot alone.
    r2.restart_without_join()?;
    ensure!(
        !r2.command_line().iter().any(|a| a.contains("join")),
        "{:?}",
        r2.command_line()
    );
    let ms = eventually("r2 back from its snapshot", LIMIT, POLL, || {
        let ms = r1.members()?;
        ensure!(all_alive(&ms, &["r1", "r2"]), "{ms:?}");
        anyhow::Ok(ms)
    })?;
    ensure!(ms.len() == 2);
    ensure!(
        r2.log_contains("Re-joined to previously known node: r1"),
        "r2 came back, but not through its snapshot:\n{}",
        r2.log_tail(30)
    );
    Ok(())
}
