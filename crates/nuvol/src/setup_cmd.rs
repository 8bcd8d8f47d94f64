//! A node's config file without reading a manual: `nuvol init` writes one
//! (node, cloud, gossip key, join addresses) and prints the command for
//! the next board, `nuvol join-cmd` prints that command again from an
//! existing file, and `nuvol check-config` loads a file exactly as
//! `nuvol agent --config` does (the package's scripts and the Ansible role
//! validate with it before replacing a working config).

use crate::cli::Format;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use nuvol_agent::config::{ArgMatches, ConfigFile, Section};
use nuvol_agent::AgentConfig;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where the Debian package, the systemd unit and the Ansible role keep
/// the agent's config.
pub const DEFAULT_CONFIG: &str = "/etc/nuvol/nuvol.toml";
/// serf's and nuvol's default gossip port.
const DEFAULT_PORT: u16 = 7946;
/// The group the packaged service runs as: a config written as root is
/// given to it, so the agent (not root) can read its key.
const SERVICE_GROUP: &str = "nuvol";

/// `nuvol init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the config; an existing file is never overwritten
    /// (unless --force). Parent directories are created.
    #[arg(long, default_value = DEFAULT_CONFIG, value_name = "FILE")]
    out: PathBuf,
    /// This node's name, unique in the cluster (default: the host name).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// The micro-cloud's name, the same on every node (host
    /// NODE.CLOUD.local in Cloudy's service records).
    #[arg(long, default_value = "nuvol", value_name = "NAME")]
    cloud: String,
    /// A member to join, HOST or IP with an optional :PORT (repeatable);
    /// retried until it answers, so boards may boot in any order.
    #[arg(long, value_name = "ADDR")]
    join: Vec<String>,
    /// The cluster's gossip key, base64 of 16, 24 or 32 bytes (default: a
    /// new one, as `nuvol keygen` makes).
    #[arg(
        long,
        env = "NUVOL_ENCRYPT_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    encrypt: Option<String>,
    /// Gossip address for UDP and TCP, IP:PORT (default 0.0.0.0:7946).
    #[arg(long, value_name = "IP:PORT")]
    bind: Option<String>,
    /// Replace an existing file; its old content is kept in FILE.bak.
    #[arg(long)]
    force: bool,
    /// Output format (json: `{"config": FILE, "next": COMMAND}`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// `nuvol join-cmd`.
#[derive(Debug, Args)]
pub struct JoinCmdArgs {
    /// The node's config file.
    #[arg(long, default_value = DEFAULT_CONFIG, value_name = "FILE")]
    config: PathBuf,
    /// Output format (json: `{"config": FILE, "next": COMMAND}`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// `nuvol check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The config file to check.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// The agent's flags, none given: what `nuvol agent --config FILE` merges
/// the file with (the environment variables of its flags included).
fn no_flags() -> Result<ArgMatches> {
    clap::Command::new("nuvol agent")
        .no_binary_name(true)
        .args(nuvol::components().args())
        .try_get_matches_from(Vec::<String>::new())
        .map_err(|e| {
            let text = e.render().to_string();
            anyhow!(
                "{}",
                text.lines().next().unwrap_or("invalid agent flags").trim()
            )
        })
}

/// Check a parsed file as the agent does at start: every component's
/// section merged with the flags and validated. Writes and binds nothing.
fn configure(file: &ConfigFile, flags: &ArgMatches) -> Result<AgentConfig> {
    nuvol::components().configure(file, flags).map_err(|e| {
        // Errors about values name `section.key`, not the file: say which.
        match file.path() {
            Some(p) => anyhow!("{}: {e}", p.display()),
            None => anyhow!("{e}"),
        }
    })
}

/// Load `path` exactly as `nuvol agent --config PATH` does.
fn load(path: &Path) -> Result<(ConfigFile, ArgMatches, AgentConfig)> {
    let file = ConfigFile::load(path)?;
    let flags = no_flags()?;
    let cfg = configure(&file, &flags)?;
    Ok((file, flags, cfg))
}

pub fn check_config(args: CheckConfigArgs) -> Result<i32> {
    load(&args.file)?;
    println!("{}: ok", args.file.display());
    Ok(0)
}

/// What the next board needs to join this one.
struct Next {
    cloud: String,
    key: Option<String>,
    /// The address this node advertises (what the agent would).
    addr: SocketAddr,
    /// This node's gossip port, for the next board's --bind.
    port: u16,
    /// Why `addr` was chosen, when the agent would choose it (bound to
    /// 0.0.0.0): shown when it is loopback, which no board can reach.
    choice: Option<nuvol_agent::advertise::Choice>,
}

impl Next {
    fn from_config(file: &ConfigFile, flags: &ArgMatches, cfg: &AgentConfig) -> Result<Next> {
        let catalog = nuvol_catalog::component::CatalogSettings::load(
            file.section(nuvol_catalog::component::CatalogSettings::NAME),
            flags,
        )?;
        let g = &cfg.gossip;
        let (addr, choice) =
            nuvol_agent::advertise::advertised(g.bind.0, g.advertise.as_ref().map(|a| a.0));
        let key = match &g.encrypt {
            Some(k) => Some(k.0.trim().to_owned()),
            None => match &g.keyring_file {
                Some(p) => keyring_primary(p)?,
                None => None,
            },
        };
        Ok(Next {
            cloud: catalog.cloud,
            key,
            addr,
            port: g.bind.0.port(),
            choice,
        })
    }

    fn command(&self) -> String {
        let mut w: Vec<String> = vec!["nuvol".into(), "init".into()];
        w.extend(["--cloud".into(), shell_quote(&self.cloud)]);
        if let Some(k) = &self.key {
            w.extend(["--encrypt".into(), shell_quote(k)]);
        }
        w.extend(["--join".into(), shell_quote(&self.addr.to_string())]);
        // A cluster on another port (Cloudy's 5000): the next board's
        // gossip goes there too.
        if self.port != DEFAULT_PORT && self.port != 0 {
            w.extend(["--bind".into(), format!("0.0.0.0:{}", self.port)]);
        }
        w.join(" ")
    }

    /// A warning when the address is one other boards cannot reach.
    fn warn_unreachable(&self) {
        if self.addr.ip().is_loopback() {
            match &self.choice {
                Some(c) => eprintln!(
                    "nuvol: warning: {c}; set [gossip] bind or advertise to an address \
                     the next board reaches"
                ),
                None => eprintln!(
                    "nuvol: warning: this node's gossip address {} is loopback: only \
                     agents on this machine can join it",
                    self.addr
                ),
            }
        }
    }
}

/// The primary key of a keyring file (`None` if it does not exist yet).
fn keyring_primary(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let kr = nuvol_wire::security::Keyring::from_file_json(&text)
                .map_err(|e| anyhow!("keyring file {}: {e}", path.display()))?;
            Ok(Some(nuvol_wire::security::encode_key(
                kr.primary().as_bytes(),
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot read keyring file {}: {e}", path.display())),
    }
}

/// Quote for a POSIX shell when needed (keys are base64: `+/=` are safe).
fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-[]".contains(&b));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn print_next(config: &Path, next: &Next, format: Format) -> Result<()> {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({ "config": config.display().to_string(), "next": next.command() })
        ),
        Format::Text => println!("{}", next.command()),
    }
    Ok(())
}

pub fn join_cmd(args: JoinCmdArgs) -> Result<i32> {
    let (file, flags, cfg) = load(&args.config)?;
    let next = Next::from_config(&file, &flags, &cfg)?;
    if next.key.is_none() {
        eprintln!(
            "nuvol: warning: {} has no gossip key ([gossip] encrypt or keyring_file): the \
             cluster is unencrypted, and so will the next board be",
            args.config.display()
        );
    }
    next.warn_unreachable();
    print_next(&args.config, &next, args.format)?;
    Ok(0)
}

/// A TOML string (quoted and escaped).
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The file `nuvol init` writes: only what it was given, each key
/// explained; everything else keeps the agent's defaults.
fn render(node: &str, key: &str, bind: Option<&str>, cloud: &str, join: &[String]) -> String {
    let bind_line = match bind {
        Some(b) => format!("bind = {}", toml_str(b)),
        None => "# bind = \"0.0.0.0:7946\"".to_owned(),
    };
    let join_list = join
        .iter()
        .map(|a| toml_str(a))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"# nuvol agent configuration of node {node_q}, written by `nuvol init`.
#
# Only the settings below are set; every other keeps its default. All of
# them, one table per component, are explained in nuvol.example.toml (in
# the source tree; /usr/share/doc/nuvol/examples/ with the Debian package),
# and `nuvol agent --help` lists them as flags. After an edit, check the
# file with `nuvol check-config FILE`, then restart the agent (`systemctl
# restart nuvol`). `nuvol join-cmd` prints the command that adds the next
# board to this cluster.
#
# This file holds the cluster's gossip key: keep it secret (mode 0640).

[gossip]
# This node's name, unique in the cluster (--node).
node = {node_q}
# The cluster's gossip encryption key, base64 (--encrypt; `nuvol keygen`
# makes one): every member needs the same key, and a node without it
# cannot join or read the cluster's traffic.
encrypt = {key_q}
# Gossip address for UDP and TCP, IP:PORT (--bind). 0.0.0.0 listens on
# every interface and advertises the address of the default route's one.
{bind_line}

[catalog]
# The micro-cloud's name, the same on every node (--cloud): services are
# listed as NODE.CLOUD.local in Cloudy's records.
cloud = {cloud_q}

[join]
# Members to join at start (--retry-join), retried every retry_interval
# until one answers: boards may boot in any order and still meet. Empty
# on the first board; the others join it.
retry_join = [{join_list}]
"#,
        node_q = toml_str(node),
        key_q = toml_str(key),
        cloud_q = toml_str(cloud),
    )
}

pub fn init(args: InitArgs) -> Result<i32> {
    let key = match &args.encrypt {
        Some(k) => {
            let k = k.trim().to_owned();
            nuvol_wire::security::parse_key(&k).map_err(|e| {
                anyhow!("--encrypt: {e} (a gossip key is base64 of 16, 24 or 32 bytes, as `nuvol keygen` prints)")
            })?;
            k
        }
        None => crate::cli::new_key()?,
    };
    let mut join: Vec<String> = Vec::new();
    for a in &args.join {
        let a = a.trim();
        nuvol_agent::join::check_join_addr(a).map_err(|e| anyhow!("--join: {e}"))?;
        // check_join_addr takes any socket address; port 0 reaches no one.
        if a.parse::<SocketAddr>().is_ok_and(|s| s.port() == 0) {
            bail!("--join: {a:?}: the port must be 1-65535");
        }
        if !join.iter().any(|j| j == a) {
            join.push(a.to_owned());
        }
    }
    // The file is checked by the agent's own loader before it is written,
    // so `nuvol init` never leaves a config the agent refuses; a bad
    // --node, --bind or --cloud is named as the agent names it.
    let flags = no_flags()?;
    let check = |text: &str| -> Result<(ConfigFile, AgentConfig)> {
        let file = ConfigFile::parse(text, None)?;
        let cfg = configure(&file, &flags)?;
        Ok((file, cfg))
    };
    let node = match &args.node {
        Some(n) => n.clone(),
        // The agent's default (the host name), written out so the file
        // says which name the node has.
        None => configure(&ConfigFile::default(), &flags)?.gossip.node,
    };
    let text = render(&node, &key, args.bind.as_deref(), &args.cloud, &join);
    let (file, cfg) = check(&text)?;
    let next = Next::from_config(&file, &flags, &cfg)?;
    write_config(&args.out, &text, args.force)?;
    next.warn_unreachable();
    match args.format {
        Format::Json => print_next(&args.out, &next, Format::Json)?,
        Format::Text => {
            let joins = if join.is_empty() {
                "the first node: the others join it".to_owned()
            } else {
                format!("joining {}", join.join(", "))
            };
            let given = if args.encrypt.is_some() {
                "the given gossip key"
            } else {
                "a new gossip key"
            };
            println!(
                "nuvol: wrote {} (node {node}, cloud {}, {given}, {joins})",
                args.out.display(),
                args.cloud
            );
            if args.out == Path::new(DEFAULT_CONFIG) {
                println!(
                    "Apply it: systemctl restart nuvol (or: nuvol agent --config {DEFAULT_CONFIG})"
                );
            } else {
                println!(
                    "Run the agent with it: nuvol agent --config {}",
                    args.out.display()
                );
            }
            println!("On the next board, run:");
            println!("{}", next.command());
        }
    }
    Ok(0)
}

/// Write a new config file, mode 0640, never replacing an existing one
/// unless `force` (then the old one is kept as FILE.bak and the new one
/// renamed over it, so the path never holds half a file).
fn write_config(path: &Path, text: &str, force: bool) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let shown = path.display();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let exists = path.symlink_metadata().is_ok();
    if exists && !force {
        bail!(
            "{shown} already exists; not overwriting it (use --out for another file, \
             or --force to replace it)"
        );
    }
    let target = if exists {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".new-{}", std::process::id()));
        PathBuf::from(tmp)
    } else {
        path.to_owned()
    };
    // create_new: a file that appeared since the check is not replaced.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&target)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                anyhow!("{} already exists; not overwriting it", target.display())
            }
            _ => anyhow!("cannot create {}: {e}", target.display()),
        })?;
    let written = (|| -> std::io::Result<()> {
        // Exactly 0640 whatever the umask: the service's group reads it.
        f.set_permissions(std::fs::Permissions::from_mode(0o640))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&target);
        bail!("cannot write {}: {e}", target.display());
    }
    give_to_service_group(&target);
    if exists {
        let mut bak = path.as_os_str().to_owned();
        bak.push(".bak");
        let bak = PathBuf::from(bak);
        let replaced = std::fs::copy(path, &bak)
            .with_context(|| format!("cannot keep {shown} as {}", bak.display()))
            .and_then(|_| {
                std::fs::rename(&target, path).with_context(|| format!("cannot replace {shown}"))
            });
        if let Err(e) = replaced {
            let _ = std::fs::remove_file(&target);
            return Err(e);
        }
        eprintln!("nuvol: replaced {shown}; the old one is {}", bak.display());
    }
    Ok(())
}

/// Written by root where the package's `nuvol` group exists: group
/// `nuvol`, so the service (which does not run as root) can read it.
fn give_to_service_group(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Some(gid) = group_id(SERVICE_GROUP) else {
        return;
    };
    // Only root's files: another user's config is that user's business.
    if !path.metadata().is_ok_and(|m| m.uid() == 0) {
        return;
    }
    if let Err(e) = std::os::unix::fs::chown(path, None, Some(gid)) {
        eprintln!(
            "nuvol: warning: cannot give {} to group {SERVICE_GROUP}: {e}; the service \
             may not be able to read it",
            path.display()
        );
    }
}

/// A group's id from /etc/group (no NSS: system groups live there).
fn group_id(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.next()?;
        f.next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc+/=="), "abc+/==");
        assert_eq!(shell_quote("10.1.2.3:7946"), "10.1.2.3:7946");
        assert_eq!(shell_quote("[::1]:7946"), "[::1]:7946");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn rendered_file_is_what_the_agent_loads() {
        let key = crate::cli::new_key().expect("key");
        let text = render(
            "pi \"1\"",
            &key,
            Some("127.0.0.1:5000"),
            "home",
            &["10.0.0.1:5000".into(), "pi2".into()],
        );
        let cfg = nuvol::components()
            .configure_from(&text, &[])
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.gossip.node, "pi \"1\"");
        assert_eq!(cfg.gossip.bind.0, "127.0.0.1:5000".parse().expect("addr"));
        assert_eq!(
            cfg.gossip.encrypt.as_ref().map(|k| k.0.as_str()),
            Some(key.as_str())
        );
        let without_bind = render("a", &key, None, "home", &[]);
        assert!(without_bind.contains("# bind = "));
        nuvol::components()
            .configure_from(&without_bind, &[])
            .unwrap_or_else(|e| panic!("{e}\n{without_bind}"));
    }

    #[test]
    fn next_command_words() {
        let n = Next {
            cloud: "home".into(),
            key: Some("k+/=".into()),
            addr: "10.1.2.3:5000".parse().expect("addr"),
            port: 5000,
            choice: None,
        };
        assert_eq!(
            n.command(),
            "nuvol init --cloud home --encrypt k+/= --join 10.1.2.3:5000 --bind 0.0.0.0:5000"
        );
        let n = Next {
            key: None,
            port: DEFAULT_PORT,
            addr: "10.1.2.3:7946".parse().expect("addr"),
            ..n
        };
        assert_eq!(n.command(), "nuvol init --cloud home --join 10.1.2.3:7946");
    }
}
