//! The `nuvol` binary: the agent and its command-line clients.

mod agent_cmd;
mod cli;

use clap::{Parser, Subcommand};

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
enum Command {
    /// Run the nuvol agent.
    Agent(Box<agent_cmd::AgentArgs>),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
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
            Command::Agent(a) => agent_cmd::run(*a).await,
            Command::Client(c) => cli::run(c).await,
        }
    });
    match code {
        Ok(c) => std::process::exit(c),
        Err(e) => {
            eprintln!("nuvol: {e:#}");
            std::process::exit(1);
        }
    }
}
