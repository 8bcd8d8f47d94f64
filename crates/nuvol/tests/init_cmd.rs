//! `nuvol init`, `nuvol join-cmd`, `nuvol check-config`, `nuvol
//! completions` and `nuvol manpage`, run as the built binary: the file
//! init writes is one the agent starts with, it is never overwritten, the
//! printed command makes a second node that joins the first (encrypted),
//! and bad input is one line naming what is wrong with nothing written.

use nuvol_testkit::{eventually, fresh_ip, nuvol_cli, nuvol_members_json, RPC_PORT, SERF_PORT};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");

/// `nuvol ARGS` with the gossip-key variable cleared (init and the agent
/// read it), whatever the exit status.
fn nuvol(args: &[&str]) -> Output {
    Command::new(NUVOL)
        .args(args)
        .env_remove("NUVOL_ENCRYPT_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("running nuvol")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let o = nuvol(args);
    assert!(
        o.status.success(),
        "nuvol {args:?} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Fails with exit code 1 and one line on stderr containing every `want`.
#[track_caller]
fn fails(args: &[&str], want: &[&str]) -> String {
    let o = nuvol(args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "nuvol {args:?} must fail with 1: {}{err}",
        stdout(&o)
    );
    assert_eq!(
        err.lines().count(),
        1,
        "nuvol {args:?}: one line, got {err:?}"
    );
    for w in want {
        assert!(err.contains(w), "nuvol {args:?}: {err:?} lacks {w:?}");
    }
    err
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// A `nuvol agent --config FILE` process (only the data dir and the RPC
/// address given as flags, so every other setting is the file's); killed
/// when dropped.
struct Agent {
    child: Child,
    rpc: SocketAddr,
    log: PathBuf,
}

impl Agent {
    fn start(config: &Path, dir: &Path, ip: IpAddr) -> Agent {
        let rpc = SocketAddr::new(ip, RPC_PORT);
        let log = dir.join("agent.log");
        let out = std::fs::File::create(&log).expect("agent log");
        let child = Command::new(NUVOL)
            .arg("agent")
            .arg(format!("--config={}", config.display()))
            .arg(format!("--data-dir={}", dir.join("data").display()))
            // The REST API and DNS default to this IP too, so parallel
            // tests never collide on 127.0.0.1.
            .arg(format!("--rpc-addr={rpc}"))
            .env_remove("NUVOL_ENCRYPT_KEY")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("starting the agent");
        Agent { child, rpc, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until this agent lists exactly `names`, all alive.
    fn wait_alive(&mut self, names: &[&str]) {
        let mut want: Vec<&str> = names.to_vec();
        want.sort_unstable();
        let r = eventually(
            &format!("{want:?} alive"),
            Duration::from_secs(40),
            Duration::from_millis(200),
            || -> anyhow::Result<()> {
                if let Ok(Some(s)) = self.child.try_wait() {
                    panic!("the agent exited ({s}); log:\n{}", self.log());
                }
                let ms = nuvol_members_json(Path::new(NUVOL), self.rpc)?;
                let mut alive: Vec<&str> = ms
                    .iter()
                    .filter(|m| m.is_alive())
                    .map(|m| m.name.as_str())
                    .collect();
                alive.sort_unstable();
                anyhow::ensure!(alive == want, "alive: {alive:?} (all: {ms:?})");
                Ok(())
            },
        );
        if let Err(e) = r {
            panic!("{e}\nlog:\n{}", self.log());
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last line of init's text output: the command for the next board.
fn next_command(out: &str) -> Vec<String> {
    let line = out.lines().last().expect("init printed something");
    assert!(line.starts_with("nuvol init "), "{out}");
    line.split_whitespace().map(str::to_owned).collect()
}

fn flag<'a>(words: &'a [String], name: &str) -> Option<&'a str> {
    words
        .iter()
        .position(|w| w == name)
        .and_then(|i| words.get(i + 1))
        .map(String::as_str)
}

#[test]
fn init_writes_a_config_the_agent_runs_and_the_printed_command_adds_a_second_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ip_a, ip_b) = (fresh_ip(), fresh_ip());
    // Parent directories are created.
    let conf_a = tmp.path().join("a/etc/nuvol/nuvol.toml");
    let bind_a = SocketAddr::new(ip_a, SERF_PORT).to_string();
    let out = ok(&[
        "init",
        "--out",
        path_str(&conf_a),
        "--node",
        "alpha",
        "--cloud",
        "homecloud",
        "--bind",
        &bind_a,
    ]);
    assert!(
        out.contains(&format!("wrote {}", conf_a.display())),
        "{out}"
    );
    let mode = std::fs::metadata(&conf_a)
        .expect("written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "the file holds the gossip key");
    let text = std::fs::read_to_string(&conf_a).expect("config");
    assert!(text.contains("nuvol.example.toml"), "{text}");
    assert!(text.contains("node = \"alpha\""), "{text}");
    assert!(text.contains("cloud = \"homecloud\""), "{text}");
    assert!(text.contains("retry_join = []"), "{text}");
    // The command for the next board: this cloud, the key in the file,
    // and this node's gossip address.
    let next = next_command(&out);
    assert_eq!(flag(&next, "--cloud"), Some("homecloud"), "{next:?}");
    assert_eq!(flag(&next, "--join"), Some(bind_a.as_str()), "{next:?}");
    let key = flag(&next, "--encrypt").expect("a key").to_owned();
    assert!(text.contains(&format!("encrypt = \"{key}\"")), "{text}");
    assert_eq!(flag(&next, "--bind"), None, "the default port: {next:?}");

    assert_eq!(
        ok(&["check-config", path_str(&conf_a)]).trim(),
        format!("{}: ok", conf_a.display())
    );
    // join-cmd prints the same command again, from the file.
    let again = ok(&["join-cmd", "--config", path_str(&conf_a)]);
    assert_eq!(again.trim(), next.join(" "));
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "join-cmd",
        "--config",
        path_str(&conf_a),
        "--format",
        "json",
    ]))
    .expect("json");
    assert_eq!(json["next"], next.join(" "));
    assert_eq!(json["config"], path_str(&conf_a));

    // Never overwritten: the same file again fails, naming it, unchanged.
    let err = fails(
        &["init", "--out", path_str(&conf_a), "--node", "other"],
        &[path_str(&conf_a), "already exists"],
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&conf_a).expect("config"), text);

    let dir_a = tmp.path().join("a");
    let mut a = Agent::start(&conf_a, &dir_a, ip_a);
    a.wait_alive(&["alpha"]);

    // The second board: the printed command, on loopback (its own address
    // and file, and a node name: both run on this host).
    let conf_b = tmp.path().join("b/nuvol.toml");
    let bind_b = SocketAddr::new(ip_b, SERF_PORT).to_string();
    let mut args: Vec<&str> = next[1..].iter().map(String::as_str).collect();
    args.extend([
        "--out",
        path_str(&conf_b),
        "--node",
        "beta",
        "--bind",
        &bind_b,
    ]);
    let out_b = ok(&args);
    let text_b = std::fs::read_to_string(&conf_b).expect("config b");
    assert!(text_b.contains(&format!("encrypt = \"{key}\"")), "{text_b}");
    assert!(
        text_b.contains(&format!("retry_join = [\"{bind_a}\"]")),
        "{text_b}"
    );
    assert_eq!(flag(&next_command(&out_b), "--join"), Some(bind_b.as_str()));
    let mut b = Agent::start(&conf_b, &tmp.path().join("b"), ip_b);
    b.wait_alive(&["alpha", "beta"]);
    a.wait_alive(&["alpha", "beta"]);

    // Encrypted: both hold the one key (serf's keys --list, asked of the
    // cluster), and the catalog runs with the file's cloud name.
    let keys: serde_json::Value = serde_json::from_str(
        &nuvol_cli(
            Path::new(NUVOL),
            &["keys", "--list", "--format", "json"],
            a.rpc,
            None,
        )
        .expect("keys --list"),
    )
    .expect("keys json");
    assert_eq!(keys["keys"][key.as_str()], 2, "{keys}");
    assert_eq!(keys["num_nodes"], 2, "{keys}");
    let info =
        nuvol_cli(Path::new(NUVOL), &["info", "--format", "json"], b.rpc, None).expect("info");
    assert!(info.contains("\"encrypted\": \"true\""), "{info}");
}

#[test]
fn init_defaults_json_and_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("nuvol.toml");
    let o = nuvol(&["init", "--out", path_str(&conf), "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(json["config"], path_str(&conf));
    let next: Vec<String> = json["next"]
        .as_str()
        .expect("next")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    // Bound to 0.0.0.0: the address the agent would advertise, chosen by
    // the agent's own code, on the default port.
    let (want, _) =
        nuvol_agent::advertise::advertised(SocketAddr::from(([0, 0, 0, 0], SERF_PORT)), None);
    assert_eq!(
        flag(&next, "--join"),
        Some(want.to_string().as_str()),
        "{next:?}"
    );
    assert_eq!(flag(&next, "--cloud"), Some("nuvol"));
    // A new key from keygen's generator: 32 bytes, and a different one
    // each time.
    let key = flag(&next, "--encrypt").expect("key").to_owned();
    let raw = nuvol_wire::security::parse_key(&key).expect("a valid key");
    assert_eq!(raw.as_bytes().len(), 32);
    let text = std::fs::read_to_string(&conf).expect("config");
    assert!(text.contains("# bind = "), "{text}");
    // The node is named after the host, as the agent names it by default.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert!(
        text.contains(&format!("node = \"{}\"", host.trim())),
        "{text}"
    );
    let cfg = nuvol::components()
        .configure_from(&text, &[])
        .expect("the agent's loader accepts it");
    assert_eq!(cfg.gossip.node, host.trim());
    assert_eq!(
        cfg.gossip.bind.0,
        SocketAddr::from(([0, 0, 0, 0], SERF_PORT))
    );

    // --force replaces it, keeping the old one as FILE.bak.
    let o = nuvol(&["init", "--out", path_str(&conf), "--force", "--node", "n2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bak = tmp.path().join("nuvol.toml.bak");
    assert_eq!(std::fs::read_to_string(&bak).expect("backup"), text);
    let new = std::fs::read_to_string(&conf).expect("config");
    assert!(new.contains("node = \"n2\""), "{new}");
    assert!(!new.contains(&key), "a new key");
    let mode = std::fs::metadata(&conf)
        .expect("written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);

    // Another gossip port: the next board binds it too.
    let conf = tmp.path().join("cloudy.toml");
    let out = ok(&["init", "--out", path_str(&conf), "--bind", "127.0.0.1:5000"]);
    let next = next_command(&out);
    assert_eq!(flag(&next, "--join"), Some("127.0.0.1:5000"));
    assert_eq!(flag(&next, "--bind"), Some("0.0.0.0:5000"));
}

#[test]
fn init_refuses_bad_input_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("sub/nuvol.toml");
    let c = path_str(&conf);
    let cases: &[(&[&str], &[&str])] = &[
        (&["--encrypt", "not base64!"], &["--encrypt", "base64"]),
        // 5 bytes.
        (
            &["--encrypt", "aGVsbG8="],
            &["--encrypt", "16, 24 or 32 bytes"],
        ),
        (&["--join", "a b"], &["--join", "\"a b\""]),
        (
            &["--join", "10.0.0.1:0"],
            &["--join", "port must be 1-65535"],
        ),
        (&["--join", ""], &["--join", "empty"]),
        (&["--bind", "nonsense"], &["gossip.bind (--bind)"]),
        (&["--node", ""], &["gossip.node (--node)"]),
        (&["--cloud", "two words"], &["catalog.cloud (--cloud)"]),
    ];
    for (extra, want) in cases {
        let mut args = vec!["init", "--out", c];
        args.extend_from_slice(extra);
        fails(&args, want);
        assert!(!conf.exists(), "{extra:?}: a file was written");
    }
}

#[test]
fn join_cmd_errors_and_an_unencrypted_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("none.toml");
    fails(
        &["join-cmd", "--config", path_str(&missing)],
        &["cannot read config file", path_str(&missing)],
    );
    // A directory cannot be read as a file (root reads any mode).
    fails(
        &["join-cmd", "--config", path_str(tmp.path())],
        &["cannot read config file", path_str(tmp.path())],
    );
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[gossip]\nprotocol = 9\n").expect("write");
    fails(
        &["join-cmd", "--config", path_str(&bad)],
        &[path_str(&bad), "gossip.protocol"],
    );

    // No key: the command has no --encrypt, and a warning says why.
    let plain = tmp.path().join("plain.toml");
    std::fs::write(
        &plain,
        "[gossip]\nbind = \"127.0.0.9:5000\"\n[catalog]\ncloud = \"c1\"\n",
    )
    .expect("write");
    let o = nuvol(&["join-cmd", "--config", path_str(&plain)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "nuvol init --cloud c1 --join 127.0.0.9:5000 --bind 0.0.0.0:5000"
    );
    let warn = stderr(&o);
    assert!(
        warn.contains("warning") && warn.contains("unencrypted"),
        "{warn}"
    );
    assert!(warn.contains(path_str(&plain)), "{warn}");

    // The key in a keyring file (the first is the primary) and a
    // configured advertise address.
    let key = ok(&["keygen"]).trim().to_owned();
    let ring = tmp.path().join("keyring.json");
    std::fs::write(&ring, serde_json::json!([key]).to_string()).expect("write");
    let kr = tmp.path().join("kr.toml");
    std::fs::write(
        &kr,
        format!(
            "[gossip]\nkeyring_file = \"{}\"\nadvertise = \"10.9.8.7:0\"\n",
            ring.display()
        ),
    )
    .expect("write");
    let o = nuvol(&["join-cmd", "--config", path_str(&kr)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        format!("nuvol init --cloud nuvol --encrypt {key} --join 10.9.8.7:7946")
    );
    assert_eq!(stderr(&o), "", "no warning with a key");
}

#[test]
fn check_config_accepts_what_the_agent_accepts_and_nothing_else() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../nuvol.example.toml");
    assert_eq!(
        ok(&["check-config", example]).trim(),
        format!("{example}: ok")
    );
    // Nothing is created: not the data dir the file names, not a socket.
    let data = tmp.path().join("data");
    let good = tmp.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[agent]\ndata_dir = \"{}\"\n[gossip]\nbind = \"127.0.0.1:1\"\n",
            data.display()
        ),
    )
    .expect("write");
    assert_eq!(
        ok(&["check-config", path_str(&good)]).trim(),
        format!("{}: ok", good.display())
    );
    assert!(!data.exists(), "check-config created the data dir");

    let n = std::cell::Cell::new(0);
    let file = |text: &str| {
        n.set(n.get() + 1);
        let p = tmp.path().join(format!("c{}.toml", n.get()));
        std::fs::write(&p, text).expect("write");
        p
    };
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            file("[gossip]\nnode_name = 'a'\n"),
            "gossip.node_name: unknown key",
        ),
        (file("[gosip]\n"), "unknown section [gosip]"),
        (
            file("[gossip]\nprotocol = 9\n"),
            "invalid gossip.protocol (--protocol): 9 is not supported (2 to 5)",
        ),
        (
            file("[gossip]\nencrypt = 'nope'\n"),
            "invalid gossip.encrypt",
        ),
        (
            file("[catalog]\ncloud = 'two words'\n"),
            "invalid catalog.cloud",
        ),
        (file("[rpc\n"), "line 1"),
        (
            file(&format!(
                "[agent]\ndata_dir = \"{}\"\nlog_level = 'loud'\n",
                data.display()
            )),
            "invalid agent.log_level",
        ),
    ];
    for (p, want) in cases {
        fails(&["check-config", path_str(&p)], &[want, path_str(&p)]);
    }
    fails(
        &["check-config", path_str(&tmp.path().join("missing.toml"))],
        &["cannot read config file"],
    );
    assert!(!data.exists(), "check-config created the data dir");
}

#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish"] {
        let out = ok(&["completions", shell]);
        assert!(out.len() > 1000, "{shell}: {} bytes", out.len());
        for cmd in ["init", "join-cmd", "check-config", "members", "agent"] {
            assert!(out.contains(cmd), "{shell} completions lack {cmd}");
        }
    }
    // bash parses it (bash is essential on Debian).
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = tmp.path().join("nuvol.bash");
    std::fs::write(&script, ok(&["completions", "bash"])).expect("write");
    let o = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("running bash -n");
    assert!(o.status.success(), "bash -n: {}", stderr(&o));
    // The agent's flags (from the components' sections) are completed.
    assert!(std::fs::read_to_string(&script)
        .expect("read")
        .contains("--retry-join"));
    let o = nuvol(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "a usage error");
    assert!(stderr(&o).contains("tcsh"), "{}", stderr(&o));

    let page = ok(&["manpage"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH nuvol 1"),
        "{page}"
    );
    let dir = tmp.path().join("man/man1");
    let out = ok(&["manpage", "--out", path_str(&dir)]);
    assert!(out.contains("man pages into"), "{out}");
    for name in [
        "nuvol.1",
        "nuvol-agent.1",
        "nuvol-init.1",
        "nuvol-app-install.1",
    ] {
        let p = dir.join(name);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name}: {text}");
    }
    let agent = std::fs::read_to_string(dir.join("nuvol-agent.1")).expect("agent page");
    assert!(agent.contains("retry\\-join"), "the agent's flags");

    // Rendered by groff, when installed, without warnings.
    let Ok(o) = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(dir.join("nuvol-init.1"))
        .output()
    else {
        nuvol_testkit::netns::skip_or_fail(
            "completions_and_man_pages (groff)",
            "groff is not installed (Debian's groff-base)",
        );
        return;
    };
    assert!(o.status.success(), "groff: {}", stderr(&o));
    assert_eq!(stderr(&o), "", "groff warnings");
}
