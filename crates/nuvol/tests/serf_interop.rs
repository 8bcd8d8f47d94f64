//! Mixed clusters of real serf agents and nuvol agents on loopback.
//! Every check goes over the network or serf's RPC, as a user would see it.

use anyhow::{ensure, Context, Result};
use nuvol_testkit::{
    require_serf, run_cli, serf_run, wait_all_agree, wait_until_msg, AgentBuilder, AgentProcess,
    FromProcess, MemberJson, NuvolAgent, SerfAgent, CLI_TIMEOUT,
};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

fn serf(name: &str) -> AgentBuilder<SerfAgent> {
    SerfAgent::builder(name).profile("local")
}

fn nuvol(name: &str) -> AgentBuilder<NuvolAgent> {
    NuvolAgent::builder(NUVOL, name).profile("local")
}

fn tags(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `members -format=json` output with members sorted by name (serf's own
/// order changes from call to call).
fn sorted_members(out: &str) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    if let Some(a) = v["members"].as_array_mut() {
        a.sort_by(|x, y| x["name"].as_str().cmp(&y["name"].as_str()));
    }
    v
}

fn keygen() -> String {
    let mut c = Command::new(NUVOL);
    c.arg("keygen");
    run_cli(c, CLI_TIMEOUT)
        .expect("nuvol keygen")
        .assert_ok()
        .trim()
        .to_owned()
}

/// Membership both ways, at Serf protocol 4 (Cloudy) and 5 (serf's default).
#[test]
fn membership_both_directions_protocols_4_and_5() -> Result<()> {
    if !require_serf() {
        return Ok(());
    }
    fn opts<A: FromProcess>(b: AgentBuilder<A>, proto: u8) -> AgentBuilder<A> {
        b.protocol(proto).tag("role", &format!("p{proto}"))
    }
    for proto in [4u8, 5] {
        let s1 = opts(serf("s1"), proto).spawn()?;
        // nuvol joins a serf cluster...
        let n1 = opts(nuvol("n1"), proto).join_agent(&s1).spawn()?;
        // ...and serf agents join a nuvol cluster.
        let n2 = opts(nuvol("n2"), proto).spawn()?;
        let s2 = opts(serf("s2"), proto).join_agent(&n2).spawn()?;
        n2.cli(&["join", &n1.bind().to_string()])?;
        let expect = [
            ("n1", "alive"),
            ("n2", "alive"),
            ("s1", "alive"),
            ("s2", "alive"),
        ];
        wait_all_agree(&[&s1, &n1, &n2, &s2], &expect, T)?;
        let view = s1.members()?;
        for m in &view {
            assert_eq!(m.protocol.version, proto, "{m:?}");
            assert_eq!(m.tag("role"), Some(format!("p{proto}").as_str()), "{m:?}");
            assert_eq!(m.port, 7946);
        }
        let n1v = view.iter().find(|m| m.name == "n1").context("n1 listed")?;
        assert_eq!(n1v.addr, n1.bind().to_string());
    }
    Ok(())
}

#[test]
fn failure_detection_leave_and_rejoin_with_snapshot() -> Result<()> {
    if !require_serf() {
        return Ok(());
    }
    // The observers of n2 never try to reconnect to a failed member during
    // the test (serf's and nuvol's reconnect path would bring a restarted n2
    // back without its snapshot): only n2's own snapshot can rejoin it.
    let s1 = serf("s1").reconnect_interval("1h").spawn()?;
    let mut n1 = nuvol("n1")
        .reconnect_interval("1h")
        .join_agent(&s1)
        .spawn()?;
    let mut n2 = nuvol("n2").join_agent(&s1).spawn()?;
    let mut s2 = serf("s2")
        .reconnect_interval("1h")
        .join_agent(&n1)
        .spawn()?;
    let expect = [
        ("n1", "alive"),
        ("n2", "alive"),
        ("s1", "alive"),
        ("s2", "alive"),
    ];
    wait_all_agree(&[&s1, &n1, &n2, &s2], &expect, T)?;

    // SIGKILL a nuvol node: failed everywhere.
    n2.kill();
    wait_until_msg("n2 failed on serf and nuvol", T, POLL, || {
        [&*s1, &*n1, &*s2]
            .iter()
            .all(|a| a.status_of("n2").as_deref() == Some("failed"))
    })?;
    // SIGKILL a serf node: failed everywhere.
    s2.kill();
    wait_until_msg("s2 failed", T, POLL, || {
        [&*s1, &*n1]
            .iter()
            .all(|a| a.status_of("s2").as_deref() == Some("failed"))
    })?;

    // Restart n2 with the same name, address and data dir but without its
    // --join: its snapshot brings it back.
    let snap = std::fs::read_to_string(n2.dir().join("data/serf.snapshot"))?;
    assert!(snap.contains("alive: s1 "), "snapshot lists peers:\n{snap}");
    n2.restart_without_join()?;
    assert!(
        !n2.command_line().iter().any(|a| a.contains("join")),
        "{:?}",
        n2.command_line()
    );
    wait_until_msg("restarted n2 alive everywhere", T, POLL, || {
        [&*s1, &*n1, &*n2]
            .iter()
            .all(|a| a.status_of("n2").as_deref() == Some("alive"))
    })?;
    ensure!(
        n2.log_contains("re-joined from snapshot"),
        "n2 came back, but not through its snapshot:\n{}",
        n2.log_tail(40)
    );

    // A graceful leave shows `left` everywhere, and the agent exits.
    n1.cli(&["leave"])?;
    let left = wait_until_msg("n1 left everywhere", T, POLL, || {
        [&*s1, &*n2]
            .iter()
            .all(|a| a.status_of("n1").as_deref() == Some("left"))
    });
    if let Err(e) = left {
        panic!(
            "{e}: s1 sees {:?}, n2 sees {:?}\n--- n1 log:\n{}\n--- n2 log:\n{}",
            s1.status_of("n1"),
            n2.status_of("n1"),
            n1.log_tail(60),
            n2.log_tail(60)
        );
    }
    let st = n1.wait_exit(T)?;
    assert!(st.success(), "n1 after leave: {st}");
    Ok(())
}

#[test]
fn failed_members_are_reaped_after_reconnect_timeout() -> Result<()> {
    if !require_serf() {
        return Ok(());
    }
    let n1 = nuvol("n1").arg("--reconnect-timeout=2s").spawn()?;
    let mut s1 = serf("s1").join_agent(&n1).spawn()?;
    wait_until_msg("joined", T, POLL, || {
        n1.status_of("s1").as_deref() == Some("alive")
    })?;
    s1.kill();
    wait_until_msg("s1 failed", T, POLL, || {
        n1.status_of("s1").as_deref() == Some("failed")
    })?;
    // Reaping runs every 15s (serf's reap interval). `status_of` panics if
    // the member list cannot be had: an RPC error never reads as "reaped".
    wait_until_msg("s1 reaped", T, POLL, || n1.status_of("s1").is_none())?;
    Ok(())
}

#[test]
fn name_conflict_resolved_like_serf() -> Result<()> {
    if !require_serf() {
        return Ok(());
    }
    let s1 = serf("s1").spawn()?;
    let s2 = serf("s2").join_agent(&s1).spawn()?;
    let n1 = nuvol("dup").join_agent(&s1).spawn()?;
    wait_all_agree(
        &[&s1, &s2, &n1],
        &[("dup", "alive"), ("s1", "alive"), ("s2", "alive")],
        T,
    )?;
    // A second node with the same name at another address is in the
    // minority and stops, as serf's conflict resolution decides.
    let mut dup2 = nuvol("dup").join_agent(&s2).wait_ready(false).spawn()?;
    let st = dup2.wait_exit(T)?;
    assert_eq!(
        st.code(),
        Some(1),
        "the conflicting newcomer exits with an error"
    );
    assert!(dup2.log_contains("conflict"), "{}", dup2.log_text());
    let dup = s1.member("dup")?.context("dup listed")?;
    assert_eq!(
        dup.addr,
        n1.bind().to_string(),
        "the original keeps the name"
    );
    Ok(())
}

#[test]
fn tags_at_start_and_runtime_reach_everyone() -> Result<()> {
    if !require_serf() {
        return Ok(());
    }
    let s1 = serf("s1").spawn()?;
    let n1 = nuvol("n1")
        .tag("role", "web")
        .tag("dc", "bcn")
        .join_agent(&s1)
        .spawn()?;
    let has = |a: &AgentProcess, node: &str, f: &dyn Fn(&MemberJson) -> bool| {
        a.members_now().iter().any(|m| m.name == node && f(m))
    };
    wait_until_msg("start tags seen by serf", T, POLL, || {
        has(&s1, "n1", &|m| {
            m.tags == tags(&[("role", "web"), ("dc", "bcn")])
        })
    })?;
    n1.cli(&["tags", "--set", "role=db", "--delete", "dc"])?;
    wait_until_msg("runtime tags seen by serf", T, POLL, || {
        has(&s1, "n1", &|m| m.tags == tags(&[("role", "db")]))
    })?;
    // serf's own `tags` against nuvol, seen from nuvol.
    s1.serf(&["tags", "-set", "zone=a"])?;
    wait_until_msg("serf tag seen by nuvol", T, POLL, || {
        has(&n1, "s1", &|m| m.tag("zone") == Some("a"))
    })?;
    // The 512-byte limit: a clear error, nothing changed.
    let big = format!("big={}", "x".repeat(600));
    n1.cli_run(&["tags", "--set", &big])?
        .assert_one_line_error("512");
    assert!(has(&n1, "n1", &|m| m.tags == tags(&[("role", "db")])));
    Ok(())
}

#[test]
fn user_events_and_queries_both_ways_with_handlers() -> Result<()> {
    if !require_serf() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let d = dir.path().display().to_string();
    // One event name per direction: `deploy-n` is sent by n1 only and
    // `deploy-s` by s1 only, each with its own payload. Every agent also
    // runs its handler for the event it sent itself, so what proves
    // delivery is the *other* agent's file: s1's deploy-n file (nuvol to
    // serf) and n1's deploy-s file (serf to nuvol). serf gives a user
    // event's handler no sender name, hence the names.
    let handler = |who: &str, ev: &str| {
        format!(
            "user:{ev}=env | grep ^SERF_ | sort > {d}/{who}.{ev}.env; cat > {d}/{who}.{ev}.payload"
        )
    };
    let query = "query:whoami=echo \"$SERF_SELF_NAME/$SERF_QUERY_NAME/$SERF_TAG_ROLE\"; cat";
    let s1 = serf("s1")
        .event_handler(&handler("s1", "deploy-n"))
        .event_handler(&handler("s1", "deploy-s"))
        .event_handler(query)
        .tag("role", "db")
        .spawn()?;
    let n1 = nuvol("n1")
        .event_handler(&handler("n1", "deploy-n"))
        .event_handler(&handler("n1", "deploy-s"))
        .event_handler(query)
        .tag("role", "web")
        .join_agent(&s1)
        .spawn()?;
    wait_all_agree(&[&s1, &n1], &[("n1", "alive"), ("s1", "alive")], T)?;

    // An event sent from nuvol reaches the serf handler, and vice versa.
    n1.cli(&["event", "deploy-n", "from-n1"])?;
    s1.serf(&["event", "deploy-s", "from-s1"])?;
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap_or_default();
    wait_until_msg("nuvol's event ran serf's handler", T, POLL, || {
        !read("s1.deploy-n.payload").is_empty()
    })?;
    wait_until_msg("serf's event ran nuvol's handler", T, POLL, || {
        !read("n1.deploy-s.payload").is_empty()
    })?;
    // Handlers get the payload on stdin with a newline appended (serf's
    // streamPayload; nuvol does the same).
    assert_eq!(read("s1.deploy-n.payload"), "from-n1\n", "nuvol -> serf");
    assert_eq!(read("n1.deploy-s.payload"), "from-s1\n", "serf -> nuvol");
    let env = read("n1.deploy-s.env");
    assert!(env.contains("SERF_EVENT=user\n"), "{env}");
    assert!(env.contains("SERF_USER_EVENT=deploy-s\n"), "{env}");
    assert!(env.contains("SERF_SELF_NAME=n1\n"), "{env}");
    assert!(env.contains("SERF_TAG_ROLE=web\n"), "{env}");
    assert!(env.contains("SERF_USER_LTIME="), "{env}");
    let env = read("s1.deploy-n.env");
    assert!(env.contains("SERF_USER_EVENT=deploy-n\n"), "{env}");
    assert!(env.contains("SERF_SELF_NAME=s1\n"), "{env}");

    // Queries both ways, responses from handlers' stdout.
    // Every CLI against every agent kind.
    for (from, cli) in [
        ("nuvol", &*n1),
        ("serf", &*s1),
        ("nuvol", &*s1),
        ("serf", &*n1),
    ] {
        let out = if from == "nuvol" {
            cli.nuvol_cli(
                NUVOL,
                &[
                    "query",
                    "--format",
                    "json",
                    "--timeout",
                    "3s",
                    "whoami",
                    "ping",
                ],
            )?
        } else {
            cli.serf(&["query", "-format=json", "-timeout=3s", "whoami", "ping"])?
        };
        let v: serde_json::Value = serde_json::from_str(&out)?;
        assert_eq!(v["Responses"]["n1"], "n1/whoami/web\nping\n", "{v}");
        assert_eq!(v["Responses"]["s1"], "s1/whoami/db\nping\n", "{v}");
        let mut acks: Vec<String> = v["Acks"]
            .as_array()
            .context("Acks")?
            .iter()
            .map(|a| a.as_str().unwrap_or_default().to_owned())
            .collect();
        acks.sort();
        assert_eq!(acks, vec!["n1", "s1"]);
    }
    // Filters: by node and by tag.
    let out = n1.cli(&[
        "query",
        "--format",
        "json",
        "--node",
        "s1",
        "--timeout",
        "2s",
        "whoami",
    ])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert!(
        v["Responses"].get("n1").is_none() && v["Responses"].get("s1").is_some(),
        "{v}"
    );
    let out = s1.serf(&[
        "query",
        "-format=json",
        "-tag=role=web",
        "-timeout=2s",
        "whoami",
    ])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert!(
        v["Responses"].get("n1").is_some() && v["Responses"].get("s1").is_none(),
        "{v}"
    );
    // --no-ack: no acks.
    let out = n1.cli(&[
        "query",
        "--format",
        "json",
        "--no-ack",
        "--timeout",
        "2s",
        "whoami",
    ])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert!(v["Acks"].is_null(), "serf prints null for no acks: {v}");
    // Size limits: a clear error.
    let big = "x".repeat(2000);
    n1.cli_run(&["event", "deploy", &big])?
        .assert_one_line_error("limit");
    n1.cli_run(&["query", "whoami", &big])?
        .assert_one_line_error("limit");
    Ok(())
}

#[test]
fn encryption_keys_and_rotation_across_mixed_cluster() -> Result<()> {
    if !require_serf() {
        return Ok(());
    }
    let k1 = keygen();
    let k2 = keygen();
    let ring = tempfile::tempdir()?;
    let ring_file = ring.path().join("keyring.json");
    let s1 = serf("s1").encrypt(&k1).spawn()?;
    let n1 = nuvol("n1")
        .encrypt(&k1)
        .keyring_file(&ring_file)
        .join_agent(&s1)
        .spawn()?;
    wait_all_agree(&[&s1, &n1], &[("n1", "alive"), ("s1", "alive")], T)?;
    // A node with the wrong key cannot join; both sides log it.
    let mut bad = nuvol("bad")
        .encrypt(&k2)
        .join_agent(&s1)
        .wait_ready(false)
        .spawn()?;
    assert_eq!(bad.wait_exit(T)?.code(), Some(1));
    assert!(bad.log_contains("decrypt"), "{}", bad.log_text());
    assert!(
        s1.log_contains("No installed keys could decrypt"),
        "serf logs it"
    );
    assert!(s1.members()?.iter().all(|m| m.name != "bad"));

    // Rotate with nuvol's CLI, then serf's.
    // Each CLI against each agent: nuvol's against serf, serf's against nuvol.
    s1.nuvol_cli(NUVOL, &["keys", "--install", &k2])?;
    let list = n1.serf(&["keys", "-list"])?;
    assert!(list.contains(&k1) && list.contains(&k2), "{list}");
    n1.serf(&["keys", "-use", &k2])?;
    n1.cli(&["keys", "--remove", &k1])?;
    let list = n1.cli(&["keys", "--list"])?;
    assert!(
        !list.contains(&k1) && list.contains(&format!("{k2}  [2/2]")),
        "{list}"
    );
    let file = std::fs::read_to_string(&ring_file)?;
    assert!(
        file.contains(&k2) && !file.contains(&k1),
        "keyring file updated: {file}"
    );
    // Still talking after rotation: a tag change crosses.
    s1.serf(&["tags", "-set", "rotated=yes"])?;
    wait_until_msg("gossip after rotation", T, POLL, || {
        n1.members_now()
            .iter()
            .any(|m| m.name == "s1" && m.tag("rotated") == Some("yes"))
    })?;
    // A malformed key is refused with one line, nothing changed.
    n1.cli_run(&["keys", "--install", "not-a-key"])?
        .assert_one_line_error("base64");
    let list = n1.cli(&["keys", "--list"])?;
    assert!(list.contains(&format!("{k2}  [2/2]")), "{list}");
    assert_eq!(list.matches("[2/2]").count(), 1, "{list}");
    Ok(())
}

#[test]
fn serf_cli_against_nuvol_and_nuvol_cli_against_serf() -> Result<()> {
    if !require_serf() {
        return Ok(());
    }
    let s1 = serf("s1").spawn()?;
    // `rpc_auth`: the harness passes the key to both CLIs below.
    let mut n1 = nuvol("n1").rpc_auth("sekret").spawn()?;
    // Auth: without the key nothing works, nor with a wrong one; with it
    // everything does.
    n1.serf_run_noauth(&["members"])?
        .assert_fails_saying(1, "Authentication required");
    serf_run(&["members"], n1.rpc_addr(), Some("wrong"))?
        .assert_fails_saying(1, "Invalid authentication token");
    n1.serf(&["join", &s1.bind().to_string()])?;
    let o = n1.serf(&["members", "-format=json"])?;
    assert!(o.contains("\"s1\""), "{o}");
    let o = n1.serf(&["info"])?;
    assert!(o.contains("name = n1"), "{o}");
    n1.serf(&["event", "hello"])?;
    // rtt from both CLIs (coordinates come with probe acks).
    wait_until_msg("coordinates exchanged", T, POLL, || {
        n1.serf_run(&["rtt", "s1"]).expect("serf rtt").success()
    })?;
    wait_until_msg("serf has n1's coordinate", T, POLL, || {
        let o = s1.serf_run(&["rtt", "n1"]).expect("serf rtt");
        o.success() && o.stdout.contains("rtt:")
    })?;
    let o = s1.nuvol_cli(NUVOL, &["rtt", "s1", "n1"])?;
    assert!(o.contains("Estimated s1 <-> n1 rtt:"), "{o}");
    // monitor streams logs, the marker event among them.
    let mut mon = Command::new("serf")
        .args(["monitor", "-log-level=debug", "-rpc-auth=sekret"])
        .arg(format!("-rpc-addr={}", n1.rpc_addr()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = mon.stdout.take().context("monitor stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The monitor may register after the first event: send the marker until
    // it shows (each send is a new event and a new log line).
    let deadline = Instant::now() + T;
    let mut lines: Vec<String> = Vec::new();
    'seen: loop {
        n1.serf(&["event", "monitored-marker"])?;
        let round = Instant::now() + Duration::from_secs(1);
        while let Ok(l) = rx.recv_timeout(round.saturating_duration_since(Instant::now())) {
            let hit = l.contains("monitored-marker");
            lines.push(l);
            if hit {
                break 'seen;
            }
        }
        if Instant::now() > deadline {
            let _ = mon.kill();
            panic!("monitor never showed the marker event: {lines:#?}");
        }
    }
    let _ = mon.kill();
    let _ = mon.wait();
    // nuvol's CLI against serf: same JSON as serf's own.
    let a = n1.cli(&["members", "--format", "json"])?;
    let b = n1.serf(&["members", "-format=json"])?;
    assert_eq!(sorted_members(&a), sorted_members(&b));
    let a = s1.nuvol_cli(NUVOL, &["members", "--format", "json"])?;
    let b = s1.serf(&["members", "-format=json"])?;
    assert_eq!(sorted_members(&a), sorted_members(&b));
    // force-leave of a failed member via serf's CLI against nuvol.
    let mut s2 = serf("s2").join_agent(&n1).spawn()?;
    wait_until_msg("s2 joined", T, POLL, || {
        n1.status_of("s2").as_deref() == Some("alive")
    })?;
    s2.kill();
    wait_until_msg("s2 failed", T, POLL, || {
        n1.status_of("s2").as_deref() == Some("failed")
    })?;
    n1.serf(&["force-leave", "s2"])?;
    wait_until_msg("s2 left on serf", T, POLL, || {
        s1.status_of("s2").as_deref() == Some("left")
    })?;
    // Bad input: one-line errors, non-zero exit.
    let mut c = Command::new(NUVOL);
    c.args(["members", "--rpc-addr=300.1.1.1:1"]);
    run_cli(c, CLI_TIMEOUT)?.assert_one_line_error("300.1.1.1:1");
    // (force-leave of an unknown node succeeds, as serf's; rtt fails.)
    n1.cli_run(&["force-leave", "nosuchnode"])?.assert_ok();
    n1.cli_run(&["rtt", "nosuchnode"])?
        .assert_one_line_error("nosuchnode");
    // leave through serf's CLI stops the nuvol agent.
    n1.serf(&["leave"])?;
    wait_until_msg("n1 left", T, POLL, || {
        s1.status_of("n1").as_deref() == Some("left")
    })?;
    let st = n1.wait_exit(T)?;
    assert!(st.success(), "n1 after leave: {st}");
    Ok(())
}

#[test]
fn profiles_lan_and_wan_interoperate() -> Result<()> {
    if !require_serf() {
        return Ok(());
    }
    for profile in ["lan", "wan"] {
        let s1 = SerfAgent::builder("s1").profile(profile).spawn()?;
        let mut n1 = NuvolAgent::builder(NUVOL, "n1")
            .profile(profile)
            .join_agent(&s1)
            .spawn()?;
        wait_all_agree(&[&s1, &n1], &[("n1", "alive"), ("s1", "alive")], T)?;
        n1.kill();
        // wan: 5s probes and 6x suspicion; generous upper bound.
        wait_until_msg(
            &format!("failure seen with the {profile} profile"),
            Duration::from_secs(120),
            POLL,
            || s1.status_of("n1").as_deref() == Some("failed"),
        )?;
    }
    Ok(())
}

#[test]
fn tags_file_and_retry_join() -> Result<()> {
    if !require_serf() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let tags_file = dir.path().join("tags.json");
    std::fs::write(&tags_file, r#"{"role": "cache"}"#)?;
    // The serf agent comes up later, at an address nuvol keeps retrying.
    let s_ip = nuvol_testkit::fresh_ip();
    let n1 = nuvol("n1")
        .tags_file(&tags_file)
        .retry_join(format!("{s_ip}:7946"))
        .arg("--retry-interval=1s")
        .spawn()?;
    std::thread::sleep(Duration::from_secs(2));
    let s1 = serf("s1").ip(s_ip).spawn()?;
    wait_all_agree(&[&s1, &n1], &[("n1", "alive"), ("s1", "alive")], T)?;
    assert!(s1
        .members()?
        .iter()
        .any(|m| m.name == "n1" && m.tag("role") == Some("cache")));
    n1.cli(&["tags", "--set", "zone=b"])?;
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&tags_file)?)?;
    assert_eq!(saved, serde_json::json!({"role": "cache", "zone": "b"}));
    Ok(())
}
