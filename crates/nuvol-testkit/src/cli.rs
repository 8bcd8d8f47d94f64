//! serf's CLI (and nuvol's) against an agent's RPC address, with a time
//! limit so a hung agent fails the test instead of hanging it.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Upper bound for one CLI call.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(15);

/// One member as `serf members -format=json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MemberJson {
    pub name: String,
    /// `IP:PORT`.
    pub addr: String,
    pub port: u16,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: BTreeMap<String, String>,
    /// `alive`, `leaving`, `left`, `failed`.
    pub status: String,
    #[serde(default, deserialize_with = "null_default")]
    pub protocol: ProtocolJson,
}

/// The `protocol` object of a member: serf protocol versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct ProtocolJson {
    #[serde(default)]
    pub min: u8,
    #[serde(default)]
    pub max: u8,
    #[serde(default)]
    pub version: u8,
}

impl MemberJson {
    pub fn is_alive(&self) -> bool {
        self.status == "alive"
    }

    /// The tag's value, if set.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct MembersDoc {
    #[serde(default, deserialize_with = "null_default")]
    members: Vec<MemberJson>,
}

/// Parse the output of `members -format=json` (serf's or nuvol's); sorted
/// by name. `"members": null` (nothing matched a filter) is an empty list.
pub fn parse_members(json: &str) -> Result<Vec<MemberJson>> {
    let doc: MembersDoc = serde_json::from_str(json)
        .with_context(|| format!("parsing members JSON: {}", excerpt(json)))?;
    let mut ms = doc.members;
    ms.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ms)
}

/// Variables through which serf's and nuvol's CLIs (and nuvol's agent) take
/// an RPC address or key from the environment; removed from every command
/// the harness runs, so the caller's shell cannot change what a test talks to.
pub const CLI_ENV: &[&str] = &[
    "SERF_RPC_ADDR",
    "SERF_RPC_AUTH",
    "NUVOL_RPC_ADDR",
    "NUVOL_RPC_AUTH",
    "NUVOL_HTTP_ADDR",
    "NUVOL_TOKEN",
    "NUVOL_ENCRYPT_KEY",
];

/// What a finished CLI call printed and how it exited.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Its stdout if it exited 0, else an error with its stderr.
    pub fn into_ok(self) -> Result<String> {
        if self.status.success() {
            return Ok(self.stdout);
        }
        bail!(
            "{} failed ({}): {}{}",
            self.command,
            self.status,
            self.stderr.trim(),
            if self.stdout.trim().is_empty() {
                String::new()
            } else {
                format!(" / stdout: {}", excerpt(&self.stdout))
            }
        )
    }

    /// Its stdout; panics with its stderr unless it exited 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &str {
        assert!(
            self.status.success(),
            "{} failed ({}): stderr: {} / stdout: {}",
            self.command,
            self.status,
            self.stderr.trim(),
            excerpt(&self.stdout)
        );
        &self.stdout
    }

    /// Panics unless it failed with exit code `code` and its stderr
    /// contains `what`. Returns stderr.
    #[track_caller]
    pub fn assert_fails_with(&self, code: i32, what: &str) -> &str {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{}: expected exit code {code}; stderr: {} / stdout: {}",
            self.command,
            self.stderr.trim(),
            excerpt(&self.stdout)
        );
        assert!(
            self.stderr.contains(what),
            "{}: stderr lacks {what:?}: {:?}",
            self.command,
            self.stderr
        );
        &self.stderr
    }

    /// Like [`assert_fails_with`](Self::assert_fails_with), with `what` on
    /// stderr or stdout: serf's CLI prints its errors on stdout.
    #[track_caller]
    pub fn assert_fails_saying(&self, code: i32, what: &str) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{}: expected exit code {code}; stderr: {} / stdout: {}",
            self.command,
            self.stderr.trim(),
            excerpt(&self.stdout)
        );
        assert!(
            self.stderr.contains(what) || self.stdout.contains(what),
            "{}: output lacks {what:?}: stderr {:?} / stdout {:?}",
            self.command,
            self.stderr,
            self.stdout
        );
    }

    /// Panics unless it failed with exit code 1 and exactly one line on
    /// stderr, containing `what` (nuvol's CLI error convention).
    #[track_caller]
    pub fn assert_one_line_error(&self, what: &str) -> &str {
        self.assert_fails_with(1, what);
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "{}: not one line on stderr: {:?}",
            self.command,
            self.stderr
        );
        &self.stderr
    }
}

/// Run `cmd` (no stdin, [`CLI_ENV`] removed) within `timeout`; its output
/// whatever its exit status. Errs only if it cannot be run or hangs.
pub fn run_cli(mut cmd: Command, timeout: Duration) -> Result<CliOutput> {
    for v in CLI_ENV {
        cmd.env_remove(v);
    }
    let command = format!("{cmd:?}");
    let out = run_with_timeout(cmd, timeout)?;
    Ok(CliOutput {
        command,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `serf <sub> -rpc-addr=<rpc_addr> [-rpc-auth=A] <rest>`, whatever its exit
/// status.
///
/// `args[0]` is the subcommand; `-rpc-addr` goes right after it, because
/// Go's flag parsing stops at the first positional argument.
pub fn serf_run(args: &[&str], rpc_addr: SocketAddr, auth: Option<&str>) -> Result<CliOutput> {
    let Some((sub, rest)) = args.split_first() else {
        bail!("serf_run: no subcommand");
    };
    let mut cmd = Command::new("serf");
    cmd.arg(sub).arg(format!("-rpc-addr={rpc_addr}"));
    if let Some(a) = auth {
        cmd.arg(format!("-rpc-auth={a}"));
    }
    cmd.args(rest);
    run_cli(cmd, CLI_TIMEOUT)
}

/// Run `serf <args>` against `rpc_addr` and return its stdout; an error
/// (with stderr) when it exits non-zero or takes longer than
/// [`CLI_TIMEOUT`]. See [`serf_run`] for the argument order:
/// `serf_cli(&["event", "-coalesce=false", "deploy", "v2"], rpc)`.
pub fn serf_cli(args: &[&str], rpc_addr: SocketAddr) -> Result<String> {
    serf_cli_auth(args, rpc_addr, None)
}

/// [`serf_cli`] with `-rpc-auth`.
pub fn serf_cli_auth(args: &[&str], rpc_addr: SocketAddr, auth: Option<&str>) -> Result<String> {
    serf_run(args, rpc_addr, auth)?.into_ok()
}

/// `serf members -format=json` against `rpc_addr`, parsed, sorted by name.
pub fn members_json(rpc_addr: SocketAddr) -> Result<Vec<MemberJson>> {
    members_json_auth(rpc_addr, None)
}

/// [`members_json`] with `-rpc-auth`.
pub fn members_json_auth(rpc_addr: SocketAddr, auth: Option<&str>) -> Result<Vec<MemberJson>> {
    parse_members(&serf_cli_auth(
        &["members", "-format=json"],
        rpc_addr,
        auth,
    )?)
}

/// `<bin> <args> --rpc-addr <rpc_addr> [--rpc-auth A]` (nuvol's CLI),
/// whatever its exit status.
pub fn nuvol_run(
    bin: &Path,
    args: &[&str],
    rpc_addr: SocketAddr,
    auth: Option<&str>,
) -> Result<CliOutput> {
    let mut cmd = Command::new(bin);
    cmd.args(args).arg("--rpc-addr").arg(rpc_addr.to_string());
    if let Some(a) = auth {
        cmd.arg("--rpc-auth").arg(a);
    }
    run_cli(cmd, CLI_TIMEOUT)
}

/// Run `<bin> <args> --rpc-addr <rpc_addr> [--rpc-auth A]` (nuvol's CLI) and
/// return its stdout; an error with its stderr if it fails.
pub fn nuvol_cli(
    bin: &Path,
    args: &[&str],
    rpc_addr: SocketAddr,
    auth: Option<&str>,
) -> Result<String> {
    nuvol_run(bin, args, rpc_addr, auth)?.into_ok()
}

/// `<bin> members --format json --rpc-addr <rpc_addr>`, parsed.
pub fn nuvol_members_json(bin: &Path, rpc_addr: SocketAddr) -> Result<Vec<MemberJson>> {
    parse_members(&nuvol_cli(
        bin,
        &["members", "--format", "json"],
        rpc_addr,
        None,
    )?)
}

/// Run `cmd` to completion within `timeout` (killed after), capturing its
/// output; no stdin.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {shown}"))?;
    // Drain both pipes on threads so a chatty child never blocks on a full
    // pipe while we wait for it.
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{shown} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

fn excerpt(s: &str) -> String {
    let s = s.trim();
    if s.len() <= 400 {
        s.to_owned()
    } else {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_serf_members_json() {
        let j = r#"{
  "members": [
    {"name": "b", "addr": "127.9.9.9:7946", "port": 7946, "tags": {"a": "b"},
     "status": "alive", "protocol": {"max": 5, "min": 2, "version": 5}},
    {"name": "a", "addr": "127.9.9.8:7946", "port": 7946, "tags": null,
     "status": "failed", "protocol": {"max": 5, "min": 2, "version": 4}}
  ]
}"#;
        let ms = parse_members(j).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].name, "a");
        assert!(ms[0].tags.is_empty());
        assert_eq!(ms[0].protocol.version, 4);
        assert_eq!(ms[1].tag("a"), Some("b"));
        assert!(ms[1].is_alive());
        assert!(parse_members(r#"{"members": null}"#).unwrap().is_empty());
        assert!(parse_members("nope").is_err());
    }

    #[test]
    fn cli_output_assertions() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo out; echo 'bad thing' >&2; exit 1"]);
        let o = run_cli(c, CLI_TIMEOUT).unwrap();
        assert!(!o.success());
        o.assert_one_line_error("bad thing");
        o.assert_fails_saying(1, "out");
        assert!(o
            .clone()
            .into_ok()
            .unwrap_err()
            .to_string()
            .contains("bad thing"));
        let r = std::panic::catch_unwind(|| o.assert_fails_with(2, "bad thing"));
        assert!(r.is_err(), "wrong exit code accepted");
        let r = std::panic::catch_unwind(|| o.assert_fails_with(1, "other"));
        assert!(r.is_err(), "wrong message accepted");
        let r = std::panic::catch_unwind(|| o.assert_ok());
        assert!(r.is_err(), "failure taken for success");
    }

    #[test]
    fn timeout_kills_the_child() {
        let mut c = Command::new("sleep");
        c.arg("30");
        let e = run_with_timeout(c, Duration::from_millis(100)).unwrap_err();
        assert!(e.to_string().contains("did not finish"), "{e}");
    }
}
