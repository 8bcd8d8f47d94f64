//! `nuvol agent`: the components, the config file and flags, logging.

use anyhow::Context;
use clap::{ArgMatches, Args};
use nuvol::components;
use nuvol_agent::config::ConfigFile;
use std::path::PathBuf;

/// The agent's own flag; every other comes from the components' sections.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// TOML configuration file, a section per component; flags override it.
    #[arg(long, help_heading = "Configuration")]
    config: Option<PathBuf>,
}

fn init_logging(level: tracing::Level) {
    use tracing_subscriber::filter::Targets;
    // `NUVOL_LOG` takes per-target directives (`info,nuvol_gossip=debug`);
    // `Targets` parses them without pulling a regex engine into the agent.
    let default = || Targets::new().with_default(level);
    let filter = match std::env::var("NUVOL_LOG") {
        Ok(v) => v.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!("nuvol: ignoring NUVOL_LOG={v:?}: {e}");
            default()
        }),
        Err(_) => default(),
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false),
        )
        .with(nuvol_agent::logs::BroadcastLayer)
        .try_init();
}

pub async fn run(args: AgentArgs, flags: &ArgMatches) -> anyhow::Result<i32> {
    let file = match &args.config {
        Some(p) => ConfigFile::load(p)?,
        None => ConfigFile::default(),
    };
    // Loading has no side effects: a bad setting stops here, before
    // anything is created or written.
    let cfg = components().configure(&file, flags)?;
    init_logging(cfg.agent.tracing_level());
    // Release builds abort on panic (Cargo.toml): a panic is a bug, and a
    // half-dead agent that keeps its sockets open is worse than a restart
    // (the store and the snapshot survive it). Log it where the operator
    // looks before the default hook prints it and the process aborts.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "nuvol panicked; this is a bug, please report it");
        default_hook(info);
    }));
    let (leave_on_term, skip_leave_on_int) = (
        cfg.agent.leave_on_terminate,
        cfg.agent.skip_leave_on_interrupt,
    );
    let agent = cfg.start().await.context("the agent did not start")?;
    Ok(agent
        .run_until_signal(leave_on_term, skip_leave_on_int)
        .await)
}
