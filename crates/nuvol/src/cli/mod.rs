//! Client subcommands of `nuvol`: serf's CLI, spoken over serf's RPC
//! protocol, so they drive a nuvol agent or a real serf agent alike.
//!
//! README (API for the binary)
//! ---------------------------
//! ```ignore
//! #[derive(clap::Subcommand)]
//! enum Command {
//!     Agent(..),
//!     #[command(flatten)]
//!     Client(cli::ClientCommand),
//! }
//! // ...
//! let code: i32 = cli::run(client_command).await?;   // exit code
//! ```
//!
//! - [`ClientCommand`]: a clap `Subcommand` enum with `members`, `join`,
//!   `leave`, `force-leave`, `tags`, `event`, `query`, `keys`, `info`,
//!   `monitor`, `rtt`, `reachability` and `keygen`. Flatten it into the
//!   binary's command enum.
//! - [`run`]`(cmd) -> anyhow::Result<i32>`: runs one command. `Ok(code)` is
//!   the process exit code (0, or 1 for "ran but failed" outcomes such as a
//!   reachability test missing acks or a broken stdout pipe); `Err(e)` is a
//!   failure to report as one line on stderr (`{e:#}`) with exit code 1.
//!   Nothing is sent to the agent when local validation fails.
//! - Every command but `keygen` takes `--rpc-addr HOST:PORT` (default
//!   `127.0.0.1:7373`, env `NUVOL_RPC_ADDR`), `--rpc-auth KEY` (env
//!   `NUVOL_RPC_AUTH`) and `--format text|json`; `keygen` only `--format`.
//! - Text output follows serf's CLI; `--format json` for `members`, `info`
//!   and `query` has exactly serf's `-format=json` shape (Go's indentation
//!   and escaping). Other commands, where serf has no JSON, print:
//!   `join` `{"contacted": N}`, `leave` `{"status": "left"}`,
//!   `force-leave` `{"node": N, "prune": B}`, `tags` `{"tags": {..}}` (the
//!   agent's tags afterwards), `event` `{"event", "payload", "coalesce"}`,
//!   `keys` `{"keys", "messages", "num_nodes", "num_resp", "num_err"}`,
//!   `rtt` `{"source", "destination", "rtt_ms"}`, `reachability`
//!   `{"total_members", "live_members", "acks", "missing", "unexpected",
//!   "duplicates", "query_time_sec", "last_response_sec", "success"}`,
//!   `monitor` one object per line, `{"log": ..}` or `{"event": {..}}`
//!   (`[]byte` fields base64, as Go's JSON would), `keygen` `{"key": K}`.
//! - Durations (`query --timeout`) are Go's: `5s`, `1m30s`, `500ms`.
//! - Differences from serf on purpose: errors go to stderr, not stdout;
//!   `rtt` of a node the agent does not know fails (`force-leave` of one
//!   succeeds, as serf's, with a warning on stderr); keys are checked
//!   locally to be base64 of 16, 24 or 32 bytes; regular expressions,
//!   `K=V` pairs and addresses are checked before connecting.

mod app;
mod catalog;
mod commands;
mod monitor;
pub mod output;
mod swarm;
mod sync;
mod vip;

use clap::{ArgAction, Args, Subcommand, ValueEnum};

pub use commands::new_key;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// How to reach the agent, and how to print.
#[derive(Debug, Args, Clone)]
pub struct RpcOpts {
    /// RPC address of the agent.
    #[arg(
        long,
        env = "NUVOL_RPC_ADDR",
        default_value = "127.0.0.1:7373",
        value_name = "HOST:PORT"
    )]
    pub rpc_addr: String,
    /// RPC auth key, if the agent requires one.
    #[arg(
        long,
        env = "NUVOL_RPC_AUTH",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub rpc_auth: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// How catalog commands reach the agent: its REST API (`--http-addr`, or
/// found through the RPC's stats), or, for a plain serf agent, the
/// `services` tag over RPC.
#[derive(Debug, Args, Clone)]
pub struct CatalogOpts {
    #[command(flatten)]
    pub rpc: RpcOpts,
    /// REST API address of a nuvol agent (default: asked from the agent over RPC).
    #[arg(long, env = "NUVOL_HTTP_ADDR", value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// API token for writes (default: read from the agent's data dir).
    #[arg(long, env = "NUVOL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `nuvol publish`.
#[derive(Debug, Args, Clone)]
pub struct PublishArgs {
    #[command(flatten)]
    pub at: CatalogOpts,
    /// Micro-cloud name in the service's host (`NODE.CLOUD.local`); for a
    /// nuvol agent it must match the agent's `--cloud`.
    #[arg(long)]
    pub cloud: Option<String>,
    /// Health check: TCP connect to HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub check_tcp: Vec<String>,
    /// Health check: HTTP(S) GET of URL, expecting 200.
    #[arg(long, value_name = "URL")]
    pub check_http: Vec<String>,
    /// Health check: shell command (exit 0 passing, 1 warning, else critical).
    #[arg(long, value_name = "COMMAND")]
    pub check_script: Vec<String>,
    /// Time between check runs.
    #[arg(long, default_value = "10s")]
    pub check_interval: String,
    /// Time after which a check run counts as critical.
    #[arg(long, default_value = "5s")]
    pub check_timeout: String,
    pub description: String,
    #[arg(value_name = "TYPE")]
    pub stype: String,
    pub port: String,
    pub txt: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// List the members of the cluster.
    Members {
        #[command(flatten)]
        rpc: RpcOpts,
        /// Also show protocol versions (text output only).
        #[arg(long)]
        detailed: bool,
        /// Only members whose status matches this (anchored) regular expression.
        #[arg(long, value_name = "REGEX")]
        status: Option<String>,
        /// Only members whose name matches this (anchored) regular expression.
        #[arg(long, value_name = "REGEX")]
        name: Option<String>,
        /// Only members whose tag K matches REGEX (anchored; repeatable).
        #[arg(long, value_name = "K=REGEX")]
        tag: Vec<String>,
    },
    /// Tell the agent to join a cluster through these members' addresses.
    Join {
        #[command(flatten)]
        rpc: RpcOpts,
        /// Replay past user events.
        #[arg(long)]
        replay: bool,
        /// Addresses (HOST or HOST:PORT) of existing members.
        #[arg(required = true, value_name = "ADDR")]
        addrs: Vec<String>,
    },
    /// Leave the cluster gracefully and shut the agent down.
    Leave {
        #[command(flatten)]
        rpc: RpcOpts,
    },
    /// Force a failed member into the "left" state.
    ForceLeave {
        #[command(flatten)]
        rpc: RpcOpts,
        /// Also remove it from the member list at once.
        #[arg(long)]
        prune: bool,
        /// The member's node name.
        node: String,
    },
    /// Set or delete tags of the agent.
    Tags {
        #[command(flatten)]
        rpc: RpcOpts,
        /// Set tag K to V (repeatable).
        #[arg(long, value_name = "K=V")]
        set: Vec<String>,
        /// Delete tag K (repeatable).
        #[arg(long, value_name = "K")]
        delete: Vec<String>,
    },
    /// Send a custom event through the cluster.
    Event {
        #[command(flatten)]
        rpc: RpcOpts,
        /// Whether repeated events of this name may be coalesced.
        #[arg(
            long,
            value_name = "true|false",
            default_value_t = true,
            action = ArgAction::Set,
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true"
        )]
        coalesce: bool,
        name: String,
        payload: Option<String>,
    },
    /// Send a query and print the acks and responses.
    Query {
        #[command(flatten)]
        rpc: RpcOpts,
        /// Only this node answers (repeatable).
        #[arg(long, value_name = "NAME")]
        node: Vec<String>,
        /// Only nodes whose tag K matches REGEX answer (repeatable).
        #[arg(long, value_name = "K=REGEX")]
        tag: Vec<String>,
        /// How long to wait for answers (Go duration, e.g. 5s; default: the agent's).
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        /// Don't ask nodes to acknowledge the query.
        #[arg(long)]
        no_ack: bool,
        /// Relay responses through this many extra nodes.
        #[arg(long, default_value_t = 0, value_name = "N")]
        relay_factor: u8,
        name: String,
        payload: Option<String>,
    },
    /// Manage the cluster's gossip encryption keys (exactly one operation).
    #[command(group(clap::ArgGroup::new("op").required(true).multiple(false)))]
    Keys {
        #[command(flatten)]
        rpc: RpcOpts,
        /// Install a key on every member.
        #[arg(long, group = "op", value_name = "KEY")]
        install: Option<String>,
        /// Make an installed key the primary one everywhere.
        #[arg(long = "use", group = "op", value_name = "KEY")]
        use_key: Option<String>,
        /// Remove a (non-primary) key from every member.
        #[arg(long, group = "op", value_name = "KEY")]
        remove: Option<String>,
        /// List the keys in use and how many members have each.
        #[arg(long, group = "op")]
        list: bool,
    },
    /// Show debugging information about the agent.
    Info {
        #[command(flatten)]
        rpc: RpcOpts,
    },
    /// Stream the agent's logs (and events) until interrupted (serf's
    /// `monitor`); with a subcommand, network monitoring (`nuvol monitor
    /// assignment`).
    #[command(args_conflicts_with_subcommands = true)]
    Monitor {
        #[command(flatten)]
        rpc: RpcOpts,
        /// Lowest level shown: trace, debug, info, warn or err.
        #[arg(long, default_value = "INFO", value_name = "LEVEL")]
        log_level: String,
        #[command(subcommand)]
        cmd: Option<MonitorCommand>,
    },
    /// Estimated round-trip time between two nodes (or a node and the agent).
    Rtt {
        #[command(flatten)]
        rpc: RpcOpts,
        /// One or two node names.
        #[arg(required = true, num_args = 1..=2, value_name = "NODE")]
        nodes: Vec<String>,
    },
    /// Check that every live member acknowledges a ping query.
    Reachability {
        #[command(flatten)]
        rpc: RpcOpts,
        /// Print each ack and the timings.
        #[arg(long)]
        verbose: bool,
    },
    /// Publish a service, as avahi-ps: DESCRIPTION TYPE PORT [TXT as a=1&b=2].
    Publish(PublishArgs),
    /// Withdraw a published service: TYPE [PORT] (all of that type without PORT).
    Unpublish {
        #[command(flatten)]
        at: CatalogOpts,
        #[arg(value_name = "TYPE")]
        stype: String,
        port: Option<String>,
    },
    /// List services of available members, as avahi-ps: [TYPE] [HOST].
    Search {
        #[command(flatten)]
        at: CatalogOpts,
        #[arg(value_name = "TYPE")]
        stype: Option<String>,
        host: Option<String>,
    },
    /// The service catalog, with each service's status.
    Services {
        #[command(flatten)]
        at: CatalogOpts,
        /// Only this service type.
        #[arg(long = "type", value_name = "TYPE")]
        stype: Option<String>,
        /// Only services of this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Apps on a node: install, list, start, stop, logs, remove, ...
    App {
        #[command(subcommand)]
        cmd: AppCommand,
    },
    /// Floating IPs (VRRP): this node's (`status`) or every node's (`list`).
    Vip {
        #[command(subcommand)]
        cmd: VipCommand,
    },
    /// Docker Swarm formed by the agent: this node's state, managers, nodes.
    Swarm {
        #[command(subcommand)]
        cmd: SwarmCommand,
    },
    /// Replicated folders (Syncthing driven by the agent): their state.
    Sync {
        #[command(subcommand)]
        cmd: SyncCommand,
    },
    /// Print a new random encryption key (32 bytes, base64); needs no agent.
    Keygen {
        /// Output format (json: `{"key": KEY}`).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// Run one client command; `Ok` holds the exit code.
pub async fn run(cmd: ClientCommand) -> anyhow::Result<i32> {
    match commands::run(cmd).await {
        Err(e) if is_broken_pipe(&e) => Ok(1),
        other => other,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        let mut v = vec!["nuvol"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map(|c| c.cmd)
    }

    #[test]
    fn flags_parse_like_serf() {
        match parse(&["event", "--coalesce=false", "deploy", "v1"]).unwrap() {
            ClientCommand::Event {
                coalesce,
                name,
                payload,
                ..
            } => {
                assert!(!coalesce);
                assert_eq!(name, "deploy");
                assert_eq!(payload.as_deref(), Some("v1"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["event", "--coalesce", "deploy"]).unwrap() {
            ClientCommand::Event { coalesce, .. } => assert!(coalesce),
            other => panic!("{other:?}"),
        }
        match parse(&[
            "members", "--tag", "a=b", "--tag", "c=d", "--format", "json",
        ])
        .unwrap()
        {
            ClientCommand::Members { tag, rpc, .. } => {
                assert_eq!(tag, vec!["a=b", "c=d"]);
                assert_eq!(rpc.format, Format::Json);
                assert_eq!(rpc.rpc_addr, "127.0.0.1:7373");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["keys"]).is_err());
        assert!(parse(&["keys", "--list", "--install", "k"]).is_err());
        assert!(parse(&["rtt"]).is_err());
        assert!(parse(&["rtt", "a", "b", "c"]).is_err());
        assert!(parse(&["query", "--relay-factor", "256", "q"]).is_err());
        assert!(parse(&["join"]).is_err());
        assert!(parse(&["keygen", "--rpc-addr", "x:1"]).is_err());
        assert!(matches!(
            parse(&["keygen", "--format", "json"]).unwrap(),
            ClientCommand::Keygen {
                format: Format::Json
            }
        ));
    }
}

/// `nuvol vip ...`.
#[derive(Debug, Subcommand, Clone)]
pub enum VipCommand {
    /// This node's VIPs: address, interface, VRID, state, priority, the
    /// master it sees, and why it is in fault.
    Status {
        #[command(flatten)]
        at: CatalogOpts,
    },
    /// Every node's VIP states (from their gossip tags).
    List {
        #[command(flatten)]
        at: CatalogOpts,
    },
}

/// `nuvol swarm ...`.
#[derive(Debug, Subcommand, Clone)]
pub enum SwarmCommand {
    /// This node's state in the Docker Swarm nuvol forms, the managers, and
    /// (on a manager) the swarm's nodes.
    Status {
        #[command(flatten)]
        at: CatalogOpts,
    },
}

/// `nuvol sync ...`.
#[derive(Debug, Subcommand, Clone)]
pub enum SyncCommand {
    /// This node's Syncthing and each replicated folder: its type here,
    /// the nodes sharing it, whether it is in sync, files still needed,
    /// conflicts.
    Status {
        #[command(flatten)]
        at: CatalogOpts,
    },
}

/// `nuvol monitor ...`.
#[derive(Debug, Subcommand, Clone)]
pub enum MonitorCommand {
    /// Each device and the monitors that own it (best first), as this
    /// node computes it; JSON: an object mapping device id to owners.
    Assignment {
        #[command(flatten)]
        at: CatalogOpts,
    },
    /// Every device: its state (up, down: a majority of its owners got no
    /// answer, unknown), owners, last sample and what is wrong; any node
    /// answers by asking the owners. JSON: an array.
    Devices {
        #[command(flatten)]
        at: CatalogOpts,
    },
    /// One device: each owner's latest sample (RTT, loss, uptime,
    /// interface counters and rates, errors) and its series. JSON: an
    /// object.
    Device {
        /// The device's id.
        id: String,
        /// Seconds per point of the series: 300, 1800, 7200 or 86400.
        #[arg(long, default_value_t = 300)]
        step: u32,
        #[command(flatten)]
        at: CatalogOpts,
    },
}

/// `nuvol app ...`.
#[derive(Debug, Subcommand, Clone)]
pub enum AppCommand {
    /// The app store: templates this node can install (built-in, and the
    /// store directories and URLs of [apps]).
    Store {
        #[command(flatten)]
        at: CatalogOpts,
        /// Only this category.
        #[arg(long)]
        category: Option<String>,
        /// Also templates that do not run on this node's CPU.
        #[arg(long)]
        all: bool,
    },
    /// Convert Cloudy, CasaOS or Portainer templates (a file or a
    /// directory) into nuvol apps: one Compose file with an x-nuvol block
    /// per template in --output, and a report of what was not carried
    /// over. Needs no agent.
    Import {
        #[arg(value_name = "FILE|DIR")]
        path: String,
        /// Where to write them (created if missing).
        #[arg(long, default_value = ".")]
        output: String,
        /// Output format (json: the report).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Install an app and start it: SOURCE is a store template id, a
    /// Compose file (with or without an x-nuvol block), a directory holding
    /// one, or a Cloudy, CasaOS or Portainer template (imported on the
    /// fly).
    Install {
        #[command(flatten)]
        at: CatalogOpts,
        #[arg(value_name = "SOURCE")]
        source: String,
        /// The app's name (default: the template's id).
        #[arg(long)]
        name: Option<String>,
        /// A parameter's value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Run it as an HA app (as x-nuvol.ha: true does): each Compose
        /// service a Docker Swarm service, rescheduled on another node when
        /// its node fails, published in the catalog from wherever it runs.
        /// Needs [swarm] on and this node a Swarm manager.
        #[arg(long)]
        ha: bool,
    },
    /// This node's apps and the HA apps (--all: every nuvol node's).
    List {
        #[command(flatten)]
        at: CatalogOpts,
        #[arg(long)]
        all: bool,
    },
    /// One app: state, containers, published services, parameters.
    Status {
        #[command(flatten)]
        at: CatalogOpts,
        name: String,
    },
    /// Start an app (and keep it running across restarts).
    Start {
        #[command(flatten)]
        at: CatalogOpts,
        name: String,
    },
    /// Stop an app (and keep it stopped across restarts).
    Stop {
        #[command(flatten)]
        at: CatalogOpts,
        name: String,
    },
    /// Restart an app's containers.
    Restart {
        #[command(flatten)]
        at: CatalogOpts,
        name: String,
    },
    /// An app's log (its main service, or --service).
    Logs {
        #[command(flatten)]
        at: CatalogOpts,
        name: String,
        /// Keep printing new lines.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Lines from the past.
        #[arg(long, default_value_t = 100)]
        tail: usize,
        #[arg(long)]
        service: Option<String>,
    },
    /// Remove an app; its volumes and files stay unless --purge.
    Remove {
        #[command(flatten)]
        at: CatalogOpts,
        name: String,
        #[arg(long)]
        purge: bool,
    },
    /// Upgrade an app to a new definition (SOURCE, like install's) and/or
    /// parameter values; with neither, its definition is planned again
    /// (a tag that names a new local image). If the new version is not
    /// healthy within --timeout, the old one is brought back.
    Upgrade {
        #[command(flatten)]
        at: CatalogOpts,
        name: String,
        #[arg(value_name = "SOURCE")]
        source: Option<String>,
        /// A parameter's new value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// How long the new version has to become healthy.
        #[arg(long, default_value = "60s")]
        timeout: String,
    },
    /// Back an app up into one archive (definition, parameters, image
    /// references, volumes, files), written by the agent on its host.
    Backup {
        #[command(flatten)]
        at: CatalogOpts,
        name: String,
        /// The archive (default: NAME-YYYYmmdd-HHMMSS.nuvol-backup.tar.gz
        /// in the current directory, UTC).
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// Restore an app from a backup archive (read by the agent on its
    /// host), on this node or another.
    Restore {
        #[command(flatten)]
        at: CatalogOpts,
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
        /// The app's name (default: the backed-up app's).
        #[arg(long)]
        name: Option<String>,
        /// A parameter's value overriding the archive's (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}
