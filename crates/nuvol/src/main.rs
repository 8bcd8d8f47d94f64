//! The `nuvol` binary: the agent and its command-line clients.

mod agent_cmd;
mod cli;
mod docs_cmd;
mod setup_cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "nuvol",
    version,
    about = "A community and home micro-cloud in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once per process; boxing the client commands buys nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the nuvol agent.
    Agent(Box<agent_cmd::AgentArgs>),
    /// Write a config file for this node (never over an existing one) and
    /// print the command that adds the next board.
    Init(setup_cmd::InitArgs),
    /// Print the command that adds the next board, from this node's config.
    JoinCmd(setup_cmd::JoinCmdArgs),
    /// Check a config file as `nuvol agent --config FILE` would load it.
    CheckConfig(setup_cmd::CheckConfigArgs),
    #[command(flatten)]
    Client(cli::ClientCommand),
    /// Print shell completions (bash, zsh or fish).
    Completions(docs_cmd::CompletionsArgs),
    /// Print the man page, or write one per command into a directory.
    Manpage(docs_cmd::ManpageArgs),
}

/// The whole command line: the agent's flags come from its components'
/// config sections.
fn command() -> clap::Command {
    Cli::command().mut_subcommand("agent", |c| c.args(nuvol::components().args()))
}

fn main() {
    let parsed = command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|c| (c, m)));
    let (cli, matches) = match parsed {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // One line: the error itself, without clap's usage block.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "nuvol: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            std::process::exit(2);
        }
    };
    // One thread for the components keeps the footprint small on a 1 GB
    // board (handler scripts run as separate processes anyway); the gossip
    // layer has its own thread, so load here never delays a probe.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Threads of blocking work (store commits) go soon after: each
        // idle one holds its stack and malloc arena.
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nuvol: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        match cli.command {
            Command::Agent(a) => match matches.subcommand_matches("agent") {
                Some(m) => agent_cmd::run(*a, m).await,
                None => Err(anyhow::anyhow!("no agent arguments")),
            },
            Command::Client(c) => cli::run(c).await,
            Command::Init(a) => setup_cmd::init(a),
            Command::JoinCmd(a) => setup_cmd::join_cmd(a),
            Command::CheckConfig(a) => setup_cmd::check_config(a),
            Command::Completions(a) => docs_cmd::completions(a, command()),
            Command::Manpage(a) => docs_cmd::manpage(a, command()),
        }
    });
    match code {
        Ok(c) => std::process::exit(c),
        Err(e) => {
            // One line, always: multi-line causes (regex errors...) are folded.
            let msg = format!("{e:#}");
            let line = msg.split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("nuvol: {line}");
            std::process::exit(1);
        }
    }
}
