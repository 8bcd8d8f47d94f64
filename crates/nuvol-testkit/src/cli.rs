//! serf's CLI (and nuvol's) against an agent's RPC address, with a time
//! limit so a hung agent fails the test instead of hanging it.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
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

/// Run `serf <args>` against `rpc_addr` and return its stdout; an error
/// (with stderr) when it exits non-zero or takes longer than
/// [`CLI_TIMEOUT`].
///
/// `args[0]` is the subcommand; `-rpc-addr` goes right after it, because
/// Go's flag parsing stops at the first positional argument:
/// `serf_cli(&["event", "-coalesce=false", "deploy", "v2"], rpc)`.
pub fn serf_cli(args: &[&str], rpc_addr: SocketAddr) -> Result<String> {
    serf_cli_auth(args, rpc_addr, None)
}

/// [`serf_cli`] with `-rpc-auth`.
pub fn serf_cli_auth(args: &[&str], rpc_addr: SocketAddr, auth: Option<&str>) -> Result<String> {
    let Some((sub, rest)) = args.split_first() else {
        bail!("serf_cli: no subcommand");
    };
    let mut cmd = Command::new("serf");
    cmd.arg(sub).arg(format!("-rpc-addr={rpc_addr}"));
    if let Some(a) = auth {
        cmd.arg(format!("-rpc-auth={a}"));
    }
    cmd.args(rest);
    run_ok(cmd, CLI_TIMEOUT)
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

/// Run `<bin> <args> --rpc-addr <rpc_addr> [--rpc-auth A]` (nuvol's CLI) and
/// return its stdout.
pub fn nuvol_cli(
    bin: &Path,
    args: &[&str],
    rpc_addr: SocketAddr,
    auth: Option<&str>,
) -> Result<String> {
    let mut cmd = Command::new(bin);
    cmd.args(args).arg("--rpc-addr").arg(rpc_addr.to_string());
    if let Some(a) = auth {
        cmd.arg("--rpc-auth").arg(a);
    }
    run_ok(cmd, CLI_TIMEOUT)
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

fn run_ok(cmd: Command, timeout: Duration) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = run_with_timeout(cmd, timeout)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            if stdout.trim().is_empty() {
                String::new()
            } else {
                format!(" / stdout: {}", excerpt(&stdout))
            }
        );
    }
    Ok(stdout)
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
    fn timeout_kills_the_child() {
        let mut c = Command::new("sleep");
        c.arg("30");
        let e = run_with_timeout(c, Duration::from_millis(100)).unwrap_err();
        assert!(e.to_string().contains("did not finish"), "{e}");
    }
}
