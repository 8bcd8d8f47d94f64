//! Network monitoring's assignment across real agents (issue 12): four
//! `nuvol agent`s on loopback with `[monitor] enable` and the same 40
//! devices. Every agent computes the same owners (k = 2, distinct, among
//! the monitors); when one is killed the survivors agree again, the
//! devices it did not own keep their owners and each device it owned
//! gains exactly one new owner; a non-monitor agent says monitoring is
//! off; a bad `[monitor]` section stops the agent with a message naming
//! it. No root or system package needed.

use nuvol_testkit::{fresh_ip, wait_until_msg, NuvolAgent};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

type Assignment = BTreeMap<String, Vec<String>>;

fn assignment(a: &NuvolAgent) -> Option<Assignment> {
    let out = a
        .cli_run(&["monitor", "assignment", "--format", "json"])
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_str::<Value>(&out.stdout)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

fn devices(a: &NuvolAgent) -> Value {
    a.cli_run(&["monitor", "devices", "--format", "json"])
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_str(&o.stdout).ok())
        .unwrap_or(Value::Null)
}

/// Every device of `want` is listed with the owners `want` gives and a
/// report from each of them (`k` in all).
fn reported_by_owners(v: &Value, want: &Assignment, k: usize) -> bool {
    let Some(list) = v.as_array() else {
        return false;
    };
    list.len() == want.len()
        && list.iter().all(|d| {
            let id = d["id"].as_str().unwrap_or("");
            let owners: Vec<String> =
                serde_json::from_value(d["owners"].clone()).unwrap_or_default();
            let from: std::collections::BTreeSet<&str> = d["reports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["monitor"].as_str())
                .collect();
            want.get(id) == Some(&owners)
                && from.len() == k
                && owners.iter().all(|o| from.contains(o.as_str()))
        })
}

fn config(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let mut s = String::from(
        "[monitor]\nenable = true\nk = 2\nsettle = \"2s\"\ninterval = \"2s\"\ndevices = [\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "  {{ id = \"r{i}\", address = \"10.9.{}.{}\" }},\n",
            i / 200,
            1 + i % 200
        ));
    }
    s.push_str("]\n");
    let p = dir.join("monitor.toml");
    std::fs::write(&p, s).unwrap();
    p
}

#[test]
fn every_monitor_computes_the_same_owners_and_a_lost_one_moves_only_its_devices() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 40);
    let names: Vec<String> = (0..4)
        .map(|k| format!("mon{}-{k}", std::process::id()))
        .collect();
    let mut agents: Vec<Option<NuvolAgent>> = Vec::new();
    for name in &names {
        let mut b = NuvolAgent::builder(NUVOL, name)
            .ip(fresh_ip())
            .profile("local")
            .arg(format!("--config={}", cfg.display()))
            .arg("--mdns=false")
            .arg("--apps=false");
        if let Some(Some(first)) = agents.first() {
            b = b.join_agent(first);
        }
        agents.push(Some(b.spawn().unwrap()));
    }
    let all_agree = |agents: &[Option<NuvolAgent>], want: usize| -> Option<Assignment> {
        let views: Vec<Assignment> = agents
            .iter()
            .flatten()
            .map(assignment)
            .collect::<Option<_>>()?;
        let first = views.first()?.clone();
        let owners: std::collections::BTreeSet<&String> = first.values().flatten().collect();
        (views.iter().all(|v| *v == first) && first.len() == 40 && owners.len() == want)
            .then_some(first)
    };
    let mut before = None;
    let r = wait_until_msg("the four monitors agree on the owners", T, POLL, || {
        before = all_agree(&agents, 4);
        before.is_some()
    });
    if let Err(e) = r {
        for a in agents.iter().flatten() {
            eprintln!("--- {}: {:?}\n{}", a.name(), assignment(a), a.log_tail(20));
        }
        panic!("{e}");
    }
    let before = before.unwrap();
    for (d, o) in &before {
        assert_eq!(o.len(), 2, "{d}: {o:?}");
        assert_ne!(o[0], o[1], "{d}");
    }
    // Each monitor owns some devices (40 devices, k = 2, 4 monitors).
    for n in &names {
        let c = before.values().filter(|o| o.contains(n)).count();
        assert!(c > 5, "{n} owns {c} devices: {before:?}");
    }

    // Any node answers for every device, from its owners' probes. The
    // addresses are unroutable: both owners get no answer, so each device
    // is down (a majority of its two owners agree), with a cause.
    let mut seen = Vec::new();
    let r = wait_until_msg(
        "every node reports every device from both owners",
        T,
        POLL,
        || {
            seen = agents.iter().flatten().map(devices).collect();
            seen.iter().all(|v| reported_by_owners(v, &before, 2))
        },
    );
    if let Err(e) = r {
        panic!("{e}: {:?}", seen.first());
    }
    for v in &seen {
        for d in v.as_array().unwrap() {
            assert_eq!(d["state"], "down", "{d}");
            assert!(d["cause"].as_str().is_some_and(|c| !c.is_empty()), "{d}");
        }
    }
    let one = agents[0].as_ref().unwrap();
    let out = one
        .cli_run(&["monitor", "device", "r0", "--format", "json"])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let d: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(d["owners"], serde_json::json!(before["r0"]), "{d}");
    let samples = d["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2, "{d}");
    for smp in samples {
        assert_eq!(smp["answered"], false, "{smp}");
        assert!(smp["counts"]["probes"].as_u64().unwrap() >= 1, "{smp}");
        assert!(!smp["snmp_error"].is_null(), "{smp}");
    }
    let status = one.cli_run(&["monitor", "devices"]).unwrap();
    assert!(
        status.stdout.contains("r0") && status.stdout.contains("down"),
        "{status:?}"
    );
    let out = one.cli_run(&["monitor", "device", "nope"]).unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("no device"), "{out:?}");
    let out = one
        .cli_run(&["monitor", "device", "r0", "--step", "60"])
        .unwrap();
    assert!(
        !out.status.success() && out.stderr.contains("step"),
        "{out:?}"
    );

    let victim = 3;
    let gone = names[victim].clone();
    if let Some(mut a) = agents[victim].take() {
        a.kill();
    }
    let mut after = None;
    wait_until_msg(
        "the survivors agree without the killed monitor",
        T,
        POLL,
        || {
            after = all_agree(&agents, 3);
            after.is_some()
        },
    )
    .unwrap();
    let after = after.unwrap();
    for (d, b) in &before {
        let a = &after[d];
        assert!(!a.contains(&gone), "{d}: {a:?}");
        if b.contains(&gone) {
            let new: Vec<&String> = a.iter().filter(|o| !b.contains(o)).collect();
            assert_eq!(new.len(), 1, "{d}: {b:?} -> {a:?}");
            let kept = b.iter().find(|o| **o != gone).unwrap();
            assert!(a.contains(kept), "{d}: {b:?} -> {a:?}");
        } else {
            assert_eq!(a, b, "{d}: a device the killed monitor did not own");
        }
    }

    // The survivors take the killed monitor's devices over: every device
    // has two fresh reports again, none from the killed monitor.
    let mut seen = Vec::new();
    let r = wait_until_msg("the new owners report the devices", T, POLL, || {
        seen = agents.iter().flatten().map(devices).collect();
        seen.iter().all(|v| reported_by_owners(v, &after, 2))
    });
    if let Err(e) = r {
        panic!("{e}: {:?}", seen.first());
    }

    // A node that is not a monitor says so.
    let plain = NuvolAgent::builder(NUVOL, &format!("plain{}", std::process::id()))
        .ip(fresh_ip())
        .profile("local")
        .arg("--mdns=false")
        .arg("--apps=false")
        .spawn()
        .unwrap();
    let out = plain.cli_run(&["monitor", "assignment"]).unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("monitoring is off"), "{out:?}");
    // serf's `monitor` (log streaming) is still the bare command.
    let help = plain.cli_run(&["monitor", "--help"]).unwrap();
    assert!(help.stdout.contains("log-level"), "{help:?}");
    assert!(help.stdout.contains("assignment"), "{help:?}");
}

#[test]
fn a_bad_monitor_section_stops_the_agent_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[monitor]\nenable = true\ndevices = [{ id = \"a\", address = \"10.0.0\" }]\n",
    )
    .unwrap();
    let out = std::process::Command::new(NUVOL)
        .args(["agent", "--node", "bad-monitor", "--bind", "127.0.0.1:0"])
        .arg(format!("--config={}", cfg.display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("monitor") && err.contains("address"), "{err}");
}

/// The device set travels: monitors configured with no devices fetch the
/// newest set from the one that has it (its generation in the tag), keep
/// it across a restart, and an edited config on the source node spreads
/// to all.
#[test]
fn monitors_without_devices_fetch_the_newest_set_from_a_peer() {
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let cfg10 = config(dir.path(), 10);
    // (A restarted node keeps its address.)
    let spawn = |name: &str,
                 ip: std::net::IpAddr,
                 cfg: Option<&std::path::Path>,
                 data: &std::path::Path,
                 join: Option<&NuvolAgent>| {
        let mut b = NuvolAgent::builder(NUVOL, name)
            .ip(ip)
            .profile("local")
            .data_dir(data)
            .arg("--mdns=false")
            .arg("--apps=false")
            .arg("--monitor")
            .arg("--monitor-settle=2s");
        if let Some(c) = cfg {
            b = b.arg(format!("--config={}", c.display()));
        }
        if let Some(j) = join {
            b = b.join_agent(j);
        }
        b.spawn().unwrap()
    };
    let ips = [fresh_ip(), fresh_ip(), fresh_ip()];
    let source = spawn(
        &format!("src{pid}"),
        ips[0],
        Some(&cfg10),
        &dir.path().join("d0"),
        None,
    );
    let b = spawn(
        &format!("b{pid}"),
        ips[1],
        None,
        &dir.path().join("d1"),
        Some(&source),
    );
    let c = spawn(
        &format!("c{pid}"),
        ips[2],
        None,
        &dir.path().join("d2"),
        Some(&source),
    );
    let same = |agents: &[&NuvolAgent], n: usize| {
        let views: Option<Vec<Assignment>> = agents.iter().map(|a| assignment(a)).collect();
        views.is_some_and(|v| v.iter().all(|x| x.len() == n && *x == v[0]))
    };
    let r = wait_until_msg("b and c hold the source's 10 devices", T, POLL, || {
        same(&[&source, &b, &c], 10)
    });
    if let Err(e) = r {
        for a in [&source, &b, &c] {
            eprintln!("--- {}: {:?}\n{}", a.name(), assignment(a), a.log_tail(20));
        }
        panic!("{e}");
    }
    let st: Value = serde_json::from_str(
        &b.cli_run(&["monitor", "assignment", "--format", "json"])
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(st.as_object().map(|m| m.len()), Some(10));
    assert!(dir.path().join("d1/monitor-devices.json").exists());

    // The source restarts with 12 devices: a newer generation, adopted by all.
    let cfg12 = config(dir.path(), 12);
    let name = source.name().to_owned();
    drop(source);
    let source = spawn(
        &name,
        ips[0],
        Some(&cfg12),
        &dir.path().join("d0"),
        Some(&b),
    );
    let r = wait_until_msg("everyone holds the edited set", T, POLL, || {
        same(&[&source, &b, &c], 12)
    });
    if let Err(e) = r {
        for a in [&source, &b, &c] {
            let st = a.cli_run(&["monitor", "assignment", "--format", "json"]);
            eprintln!(
                "--- {}: {:?}\n{}",
                a.name(),
                st.map(|o| o.stdout.len()),
                a.log_tail(30)
            );
        }
        panic!("{e}");
    }
    // b restarts alone (no devices configured): it keeps the set it held.
    let bname = b.name().to_owned();
    drop(b);
    let b = spawn(&bname, ips[1], None, &dir.path().join("d1"), None);
    wait_until_msg("a restarted b keeps the 12 devices", T, POLL, || {
        assignment(&b).is_some_and(|a| a.len() == 12)
    })
    .unwrap();
}

/// A CNML served over HTTP that the agent reads again every
/// `cnml_refresh`: a changed description is adopted; a malformed one, and
/// then a server that is gone, keep the set held before and show the
/// error.
#[test]
fn a_cnml_url_is_read_again_and_bad_answers_keep_the_held_set() {
    let body = std::sync::Arc::new(std::sync::Mutex::new(cnml(&["1001", "1002"])));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cnml", listener.local_addr().unwrap());
    let serving = body.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in listener.incoming() {
            if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                return; // dropping the listener: connections are refused
            }
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let b = serving.lock().unwrap().clone();
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                b.len()
            );
            let _ = c.write_all(&b);
        }
    });
    let a = NuvolAgent::builder(NUVOL, &format!("cnml{}", std::process::id()))
        .ip(fresh_ip())
        .profile("local")
        .arg("--mdns=false")
        .arg("--apps=false")
        .arg("--monitor")
        .arg("--monitor-settle=1s")
        .arg(format!("--monitor-cnml={url}"))
        .arg("--monitor-cnml-refresh=10s")
        .spawn()
        .unwrap();
    let status = |a: &NuvolAgent| -> Value {
        a.cli_run(&["monitor", "assignment", "--format", "json"])
            .ok()
            .and_then(|o| serde_json::from_str(&o.stdout).ok())
            .unwrap_or(Value::Null)
    };
    let ids = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let long = Duration::from_secs(90);
    wait_until_msg("the CNML's two devices", long, POLL, || {
        ids(&status(&a)) == ["1001", "1002"]
    })
    .unwrap();
    // The description grows: read again within the refresh period.
    *body.lock().unwrap() = cnml(&["1001", "1002", "1003"]);
    wait_until_msg("the third device", long, POLL, || {
        ids(&status(&a)) == ["1001", "1002", "1003"]
    })
    .unwrap();
    // Malformed: the set is kept, the error shown.
    *body.lock().unwrap() = b"<cnml><network><zone><node".to_vec();
    let mut err = String::new();
    wait_until_msg("the parse error shown", long, POLL, || {
        err = component_status(&a)["error"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        !err.is_empty()
    })
    .unwrap();
    assert!(err.contains(&url), "{err}");
    assert_eq!(ids(&status(&a)), ["1001", "1002", "1003"]);
    // The server goes away: still kept, a new error.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ =
        std::net::TcpStream::connect(url.trim_start_matches("http://").trim_end_matches("/cnml"));
    let first = err.clone();
    wait_until_msg("the refused error shown", long, POLL, || {
        err = component_status(&a)["error"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        !err.is_empty() && err != first
    })
    .unwrap();
    assert_eq!(ids(&status(&a)), ["1001", "1002", "1003"], "{err}");
}

/// `GET /v1/monitor` on the agent's REST API (port 7000 on its address).
fn component_status(a: &NuvolAgent) -> Value {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect((a.ip(), 7000)) else {
        return Value::Null;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "GET /v1/monitor HTTP/1.1\r\nHost: {}:7000\r\nConnection: close\r\n\r\n",
        a.ip()
    );
    if c.write_all(req.as_bytes()).is_err() {
        return Value::Null;
    }
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    resp.split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null)
}

/// A CNML with one working device per id.
fn cnml(ids: &[&str]) -> Vec<u8> {
    let mut s = String::from(
        "<?xml version=\"1.0\"?>\n<cnml version=\"0.1\"><network><zone id=\"1\" title=\"Z\"><node id=\"10\" title=\"N\" status=\"Working\">\n",
    );
    for (i, id) in ids.iter().enumerate() {
        s.push_str(&format!(
            "<device id=\"{id}\" title=\"d{id}\" type=\"radio\" status=\"Working\"><interface id=\"{i}\" type=\"Lan\" ipv4=\"10.199.0.{}\" mask=\"255.255.255.0\"/></device>\n",
            i + 1
        ));
    }
    s.push_str("</node></zone></network></cnml>\n");
    s.into_bytes()
}
