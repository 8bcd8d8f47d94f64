//! Mixed clusters of real serf agents and nuvol agents on loopback.
//! Every check goes over the network or serf's RPC, as a user would see it.

mod common;

use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// `members -format=json` output with members sorted by name (serf's own
/// order changes from call to call).
fn sorted_members(out: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(out).unwrap();
    if let Some(a) = v["members"].as_array_mut() {
        a.sort_by(|x, y| x["name"].as_str().cmp(&y["name"].as_str()));
    }
    v
}

fn local() -> Opts {
    Opts {
        profile: Some("local"),
        ..Default::default()
    }
}

fn joining(addr: std::net::SocketAddr, mut o: Opts) -> Opts {
    o.join.push(addr);
    o
}

/// Membership both ways, at Serf protocol 4 (Cloudy) and 5 (serf's default).
#[test]
fn membership_both_directions_protocols_4_and_5() {
    if !require_serf() {
        return;
    }
    for proto in [4u8, 5] {
        let o = || Opts {
            protocol: Some(proto),
            profile: Some("local"),
            tags: vec![("role".into(), format!("p{proto}"))],
            ..Default::default()
        };
        let s1 = Agent::start(Kind::Serf, "s1", o());
        // nuvol joins a serf cluster...
        let n1 = Agent::start(Kind::Nuvol, "n1", joining(s1.bind, o()));
        // ...and serf agents join a nuvol cluster.
        let n2 = Agent::start(Kind::Nuvol, "n2", o());
        let s2 = Agent::start(Kind::Serf, "s2", joining(n2.bind, o()));
        let out = n2.nuvol_cli(&["join", &n1.bind.to_string()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all = [&s1, &n1, &n2, &s2];
        let expect = [
            ("n1", "alive"),
            ("n2", "alive"),
            ("s1", "alive"),
            ("s2", "alive"),
        ];
        wait_for("all four agree on membership", T, || {
            all_agree(&all, &expect)
        });
        let view = s1.members();
        for m in &view {
            assert_eq!(m.protocol, proto as u64, "{m:?}");
            assert!(m.tags.contains(&format!("p{proto}")), "{m:?}");
            assert_eq!(m.port, 7946);
        }
        let n1v = view.iter().find(|m| m.name == "n1").unwrap();
        assert_eq!(n1v.addr, n1.bind.to_string());
    }
}

#[test]
fn failure_detection_leave_and_rejoin_with_snapshot() {
    if !require_serf() {
        return;
    }
    let s1 = Agent::start(Kind::Serf, "s1", local());
    let n1 = Agent::start(Kind::Nuvol, "n1", joining(s1.bind, local()));
    let mut n2 = Agent::start(Kind::Nuvol, "n2", joining(s1.bind, local()));
    let mut s2 = Agent::start(Kind::Serf, "s2", joining(n1.bind, local()));
    let expect = [
        ("n1", "alive"),
        ("n2", "alive"),
        ("s1", "alive"),
        ("s2", "alive"),
    ];
    wait_for("converged", T, || all_agree(&[&s1, &n1, &n2, &s2], &expect));

    // SIGKILL a nuvol node: failed everywhere.
    let n2_ip = n2.bind.ip();
    let n2_data = n2.dir.join("data");
    n2.kill();
    wait_for("n2 failed on serf and nuvol", T, || {
        [&s1, &n1, &s2]
            .iter()
            .all(|a| a.status_of("n2").as_deref() == Some("failed"))
    });
    // SIGKILL a serf node: failed everywhere.
    s2.kill();
    wait_for("s2 failed", T, || {
        [&s1, &n1]
            .iter()
            .all(|a| a.status_of("s2").as_deref() == Some("failed"))
    });

    // Restart n2 with the same name, address and data dir: its snapshot
    // brings it back without any --join.
    let n2b = Agent::start(
        Kind::Nuvol,
        "n2",
        Opts {
            ip: Some(n2_ip),
            data_dir: Some(n2_data.clone()),
            ..local()
        },
    );
    wait_for("restarted n2 alive everywhere", T, || {
        [&s1, &n1, &n2b]
            .iter()
            .all(|a| a.status_of("n2").as_deref() == Some("alive"))
    });
    let snap = std::fs::read_to_string(n2_data.join("serf.snapshot")).unwrap();
    assert!(snap.contains("alive: s1 "), "snapshot lists peers:\n{snap}");

    // A graceful leave shows `left` everywhere, and the agent exits.
    let out = n1.nuvol_cli(&["leave"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = || {
        [&s1, &n2b]
            .iter()
            .all(|a| a.status_of("n1").as_deref() == Some("left"))
    };
    let deadline = std::time::Instant::now() + T;
    while !left() {
        assert!(
            std::time::Instant::now() < deadline,
            "n1 not left everywhere: s1 sees {:?}, n2b sees {:?}\n--- n1 log:\n{}\n--- n2b log:\n{}",
            s1.status_of("n1"),
            n2b.status_of("n1"),
            n1.log_text(),
            n2b.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn failed_members_are_reaped_after_reconnect_timeout() {
    if !require_serf() {
        return;
    }
    let extra = vec!["--reconnect-timeout=2s".to_string()];
    let n1 = Agent::start(Kind::Nuvol, "n1", Opts { extra, ..local() });
    let mut s1 = Agent::start(Kind::Serf, "s1", joining(n1.bind, local()));
    wait_for("joined", T, || {
        n1.status_of("s1").as_deref() == Some("alive")
    });
    s1.kill();
    wait_for("s1 failed", T, || {
        n1.status_of("s1").as_deref() == Some("failed")
    });
    // Reaping runs every 15s (serf's reap interval).
    wait_for("s1 reaped", T, || n1.status_of("s1").is_none());
}

#[test]
fn name_conflict_resolved_like_serf() {
    if !require_serf() {
        return;
    }
    let s1 = Agent::start(Kind::Serf, "s1", local());
    let s2 = Agent::start(Kind::Serf, "s2", joining(s1.bind, local()));
    let n1 = Agent::start(Kind::Nuvol, "dup", joining(s1.bind, local()));
    wait_for("joined", T, || {
        all_agree(
            &[&s1, &s2, &n1],
            &[("dup", "alive"), ("s1", "alive"), ("s2", "alive")],
        )
    });
    // A second node with the same name at another address is in the
    // minority and stops, as serf's conflict resolution decides.
    let mut dup2 = Agent::start(Kind::Nuvol, "dup", joining(s2.bind, local()));
    let code = dup2.wait_exit(T);
    assert_eq!(
        code,
        Some(1),
        "the conflicting newcomer exits with an error"
    );
    assert!(dup2.log_text().contains("conflict"), "{}", dup2.log_text());
    let dup = s1.members().into_iter().find(|m| m.name == "dup").unwrap();
    assert_eq!(dup.addr, n1.bind.to_string(), "the original keeps the name");
}

#[test]
fn tags_at_start_and_runtime_reach_everyone() {
    if !require_serf() {
        return;
    }
    let s1 = Agent::start(Kind::Serf, "s1", local());
    let n1 = Agent::start(
        Kind::Nuvol,
        "n1",
        Opts {
            tags: vec![("role".into(), "web".into()), ("dc".into(), "bcn".into())],
            ..joining(s1.bind, local())
        },
    );
    wait_for("start tags seen by serf", T, || {
        s1.members()
            .iter()
            .any(|m| m.name == "n1" && m.tags.contains("\"role\":\"web\""))
    });
    let out = n1.nuvol_cli(&["tags", "--set", "role=db", "--delete", "dc"]);
    assert!(out.status.success());
    wait_for("runtime tags seen by serf", T, || {
        s1.members()
            .iter()
            .any(|m| m.name == "n1" && m.tags == "{\"role\":\"db\"}")
    });
    // serf's own `tags` against nuvol, seen from nuvol.
    let out = s1.serf_cli(&["tags", "-set", "zone=a"]);
    assert!(out.status.success());
    wait_for("serf tag seen by nuvol", T, || {
        n1.members()
            .iter()
            .any(|m| m.name == "s1" && m.tags.contains("zone"))
    });
    // The 512-byte limit: a clear error, nothing changed.
    let big = format!("big={}", "x".repeat(600));
    let out = n1.nuvol_cli(&["tags", "--set", &big]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("512"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    assert!(n1
        .members()
        .iter()
        .any(|m| m.name == "n1" && m.tags == "{\"role\":\"db\"}"));
}

#[test]
fn user_events_and_queries_both_ways_with_handlers() {
    if !require_serf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let handler = |who: &str| {
        vec![
            format!(
                "user:deploy=env | grep ^SERF_ | sort > {d}/{who}.env; cat > {d}/{who}.payload"
            ),
            "query:whoami=echo \"$SERF_SELF_NAME/$SERF_QUERY_NAME/$SERF_TAG_ROLE\"; cat"
                .to_string(),
        ]
    };
    let s1 = Agent::start(
        Kind::Serf,
        "s1",
        Opts {
            handlers: handler("s1"),
            tags: vec![("role".into(), "db".into())],
            ..local()
        },
    );
    let n1 = Agent::start(
        Kind::Nuvol,
        "n1",
        Opts {
            handlers: handler("n1"),
            tags: vec![("role".into(), "web".into())],
            ..joining(s1.bind, local())
        },
    );
    wait_for("joined", T, || {
        all_agree(&[&s1, &n1], &[("n1", "alive"), ("s1", "alive")])
    });

    // An event sent from nuvol reaches the serf handler, and vice versa.
    let out = n1.nuvol_cli(&["event", "deploy", "v1"]);
    assert!(out.status.success());
    let out = s1.serf_cli(&["event", "deploy", "v2"]);
    assert!(out.status.success());
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap_or_default();
    wait_for("handlers ran on both", T, || {
        !read("s1.payload").is_empty() && !read("n1.payload").is_empty()
    });
    let env = read("n1.env");
    assert!(env.contains("SERF_EVENT=user"), "{env}");
    assert!(env.contains("SERF_USER_EVENT=deploy"), "{env}");
    assert!(env.contains("SERF_SELF_NAME=n1"), "{env}");
    assert!(env.contains("SERF_TAG_ROLE=web"), "{env}");
    assert!(env.contains("SERF_USER_LTIME="), "{env}");

    // Queries both ways, responses from handlers' stdout.
    // Every CLI against every agent kind.
    for (from, cli) in [("nuvol", &n1), ("serf", &s1), ("nuvol", &s1), ("serf", &n1)] {
        let out = if from == "nuvol" {
            cli.nuvol_cli(&[
                "query",
                "--format",
                "json",
                "--timeout",
                "3s",
                "whoami",
                "ping",
            ])
        } else {
            cli.serf_cli(&["query", "-format=json", "-timeout=3s", "whoami", "ping"])
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Responses"]["n1"], "n1/whoami/web\nping\n", "{v}");
        assert_eq!(v["Responses"]["s1"], "s1/whoami/db\nping\n", "{v}");
        let mut acks: Vec<String> = v["Acks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        acks.sort();
        assert_eq!(acks, vec!["n1", "s1"]);
    }
    // Filters: by node and by tag.
    let out = n1.nuvol_cli(&[
        "query",
        "--format",
        "json",
        "--node",
        "s1",
        "--timeout",
        "2s",
        "whoami",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["Responses"].get("n1").is_none() && v["Responses"].get("s1").is_some(),
        "{v}"
    );
    let out = s1.serf_cli(&[
        "query",
        "-format=json",
        "-tag=role=web",
        "-timeout=2s",
        "whoami",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["Responses"].get("n1").is_some() && v["Responses"].get("s1").is_none(),
        "{v}"
    );
    // --no-ack: no acks.
    let out = n1.nuvol_cli(&[
        "query",
        "--format",
        "json",
        "--no-ack",
        "--timeout",
        "2s",
        "whoami",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["Acks"].is_null(), "serf prints null for no acks: {v}");
    // Size limits: a clear error.
    let big = "x".repeat(2000);
    let out = n1.nuvol_cli(&["event", "deploy", &big]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("limit"));
    let out = n1.nuvol_cli(&["query", "whoami", &big]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("limit"));
}

#[test]
fn encryption_keys_and_rotation_across_mixed_cluster() {
    if !require_serf() {
        return;
    }
    let keygen = |_: ()| {
        let out = std::process::Command::new(NUVOL)
            .arg("keygen")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let k1 = keygen(());
    let k2 = keygen(());
    let ring = tempfile::tempdir().unwrap();
    let ring_file = ring.path().join("keyring.json");
    let s1 = Agent::start(
        Kind::Serf,
        "s1",
        Opts {
            encrypt: Some(k1.clone()),
            ..local()
        },
    );
    let n1 = Agent::start(
        Kind::Nuvol,
        "n1",
        Opts {
            encrypt: Some(k1.clone()),
            keyring_file: Some(ring_file.clone()),
            ..joining(s1.bind, local())
        },
    );
    wait_for("encrypted join", T, || {
        all_agree(&[&s1, &n1], &[("n1", "alive"), ("s1", "alive")])
    });
    // A node with the wrong key cannot join; both sides log it.
    let mut bad = Agent::start(
        Kind::Nuvol,
        "bad",
        Opts {
            encrypt: Some(k2.clone()),
            ..joining(s1.bind, local())
        },
    );
    assert_eq!(bad.wait_exit(T), Some(1));
    assert!(bad.log_text().contains("decrypt"), "{}", bad.log_text());
    assert!(
        s1.log_text().contains("No installed keys could decrypt"),
        "serf logs it"
    );
    assert!(s1.members().iter().all(|m| m.name != "bad"));

    // Rotate with nuvol's CLI, then serf's.
    let ok = |o: std::process::Output| {
        assert!(
            o.status.success(),
            "{}{}",
            stdout(&o),
            String::from_utf8_lossy(&o.stderr)
        );
        stdout(&o)
    };
    // Each CLI against each agent: nuvol's against serf, serf's against nuvol.
    ok(s1.nuvol_cli(&["keys", "--install", &k2]));
    let list = ok(n1.serf_cli(&["keys", "-list"]));
    assert!(list.contains(&k1) && list.contains(&k2), "{list}");
    ok(n1.serf_cli(&["keys", "-use", &k2]));
    ok(n1.nuvol_cli(&["keys", "--remove", &k1]));
    let list = ok(n1.nuvol_cli(&["keys", "--list"]));
    assert!(
        !list.contains(&k1) && list.contains(&format!("{k2}  [2/2]")),
        "{list}"
    );
    let file = std::fs::read_to_string(&ring_file).unwrap();
    assert!(
        file.contains(&k2) && !file.contains(&k1),
        "keyring file updated: {file}"
    );
    // Still talking after rotation: a tag change crosses.
    ok(s1.serf_cli(&["tags", "-set", "rotated=yes"]));
    wait_for("gossip after rotation", T, || {
        n1.members()
            .iter()
            .any(|m| m.name == "s1" && m.tags.contains("rotated"))
    });
    // A malformed key is refused with one line, nothing changed.
    let o = n1.nuvol_cli(&["keys", "--install", "not-a-key"]);
    assert!(!o.status.success());
}

#[test]
fn serf_cli_against_nuvol_and_nuvol_cli_against_serf() {
    if !require_serf() {
        return;
    }
    let s1 = Agent::start(Kind::Serf, "s1", local());
    let n1 = Agent::start(
        Kind::Nuvol,
        "n1",
        Opts {
            extra: vec!["--rpc-auth=sekret".into()],
            ..local()
        },
    );
    // Auth: without the key nothing works; with it everything does.
    let o = n1.serf_cli(&["members"]);
    assert!(!o.status.success());
    let auth = |args: &[&str]| {
        let mut a: Vec<&str> = args.to_vec();
        a.insert(1, "-rpc-auth=sekret");
        n1.serf_cli(&a)
    };
    let o = auth(&["join", &s1.bind.to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = auth(&["members", "-format=json"]);
    assert!(stdout(&o).contains("\"s1\""));
    let o = auth(&["info"]);
    assert!(stdout(&o).contains("name = n1"), "{}", stdout(&o));
    let o = auth(&["event", "hello"]);
    assert!(o.status.success());
    // rtt from both CLIs (coordinates come with probe acks).
    wait_for("coordinates exchanged", T, || {
        auth(&["rtt", "s1"]).status.success()
    });
    wait_for("serf has n1's coordinate", T, || {
        stdout(&s1.serf_cli(&["rtt", "n1"])).contains("rtt:")
    });
    let o = s1.nuvol_cli(&["rtt", "s1", "n1"]);
    assert!(
        stdout(&o).contains("Estimated s1 <-> n1 rtt:"),
        "{}",
        stdout(&o)
    );
    // monitor streams logs.
    let mut mon = std::process::Command::new("serf")
        .args(["monitor", "-log-level=debug", "-rpc-auth=sekret"])
        .arg(format!("-rpc-addr={}", n1.rpc))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let _ = auth(&["event", "monitored"]);
    std::thread::sleep(Duration::from_secs(2));
    let _ = mon.kill();
    let out = mon.wait_with_output().unwrap();
    assert!(!out.stdout.is_empty(), "monitor printed nothing");
    // nuvol's CLI against serf: same JSON as serf's own.
    let a = n1.nuvol_cli(&["members", "--format", "json", "--rpc-auth", "sekret"]);
    let b = auth(&["members", "-format=json"]);
    assert_eq!(sorted_members(&a.stdout), sorted_members(&b.stdout));
    let a = s1.nuvol_cli(&["members", "--format", "json"]);
    let b = s1.serf_cli(&["members", "-format=json"]);
    assert_eq!(sorted_members(&a.stdout), sorted_members(&b.stdout));
    // force-leave of a failed member via serf's CLI against nuvol.
    let mut s2 = Agent::start(Kind::Serf, "s2", joining(n1.bind, local()));
    wait_for("s2 joined", T, || {
        auth(&["members"]).stdout.windows(2).any(|w| w == b"s2")
    });
    s2.kill();
    wait_for("s2 failed", T, || {
        stdout(&auth(&["members"])).contains("failed")
    });
    let o = auth(&["force-leave", "s2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_for("s2 left on serf", T, || {
        s1.status_of("s2").as_deref() == Some("left")
    });
    // Bad input: one-line errors, non-zero exit.
    let o = std::process::Command::new(NUVOL)
        .args(["members", "--rpc-addr=300.1.1.1:1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim().lines().count(), 1);
    // (force-leave of an unknown node succeeds, as serf's; rtt fails.)
    let o = n1.nuvol_cli(&["force-leave", "--rpc-auth", "sekret", "nosuchnode"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = n1.nuvol_cli(&["rtt", "--rpc-auth", "sekret", "nosuchnode"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    // leave through serf's CLI stops the nuvol agent.
    let o = auth(&["leave"]);
    assert!(o.status.success());
    wait_for("n1 left", T, || {
        s1.status_of("n1").as_deref() == Some("left")
    });
}

#[test]
fn profiles_lan_and_wan_interoperate() {
    if !require_serf() {
        return;
    }
    for profile in ["lan", "wan"] {
        let o = || Opts {
            profile: Some(profile),
            ..Default::default()
        };
        let s1 = Agent::start(Kind::Serf, "s1", o());
        let mut n1 = Agent::start(Kind::Nuvol, "n1", joining(s1.bind, o()));
        wait_for("joined", T, || {
            all_agree(&[&s1, &n1], &[("n1", "alive"), ("s1", "alive")])
        });
        n1.kill();
        // wan: 5s probes and 6x suspicion; generous upper bound.
        wait_for(
            "failure seen with this profile",
            Duration::from_secs(120),
            || s1.status_of("n1").as_deref() == Some("failed"),
        );
    }
}

#[test]
fn tags_file_and_retry_join() {
    if !require_serf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tags_file = dir.path().join("tags.json");
    std::fs::write(&tags_file, r#"{"role": "cache"}"#).unwrap();
    // The serf agent comes up later, at an address nuvol keeps retrying.
    let s_ip = fresh_ip();
    let n1 = Agent::start(
        Kind::Nuvol,
        "n1",
        Opts {
            extra: vec![
                format!("--tags-file={}", tags_file.display()),
                format!("--retry-join={s_ip}:7946"),
                "--retry-interval=1s".into(),
            ],
            ..local()
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let s1 = Agent::start(
        Kind::Serf,
        "s1",
        Opts {
            ip: Some(s_ip),
            ..local()
        },
    );
    wait_for("retry-join reached serf", T, || {
        all_agree(&[&s1, &n1], &[("n1", "alive"), ("s1", "alive")])
    });
    assert!(s1
        .members()
        .iter()
        .any(|m| m.name == "n1" && m.tags.contains("cache")));
    let out = n1.nuvol_cli(&["tags", "--set", "zone=b"]);
    assert!(out.status.success());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tags_file).unwrap()).unwrap();
    assert_eq!(saved, serde_json::json!({"role": "cache", "zone": "b"}));
}
