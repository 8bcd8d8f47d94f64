//! `nuvol agent`: flags (serf's names with double dashes), config file merge,
//! logging, signals.

use anyhow::Context;
use clap::Args;
use nuvol_agent::FileConfig;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// TOML configuration file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Node name (default: the host name).
    #[arg(long)]
    node: Option<String>,
    /// Gossip address, IP:PORT (default 0.0.0.0:7946).
    #[arg(long)]
    bind: Option<String>,
    /// Address advertised to other nodes, IP:PORT.
    #[arg(long)]
    advertise: Option<String>,
    /// Join this node at start (repeatable).
    #[arg(long, value_name = "IP:PORT")]
    join: Vec<String>,
    /// Join this node, retrying until it works (repeatable).
    #[arg(long, value_name = "IP:PORT")]
    retry_join: Vec<String>,
    /// Time between retry-join attempts (e.g. 30s).
    #[arg(long)]
    retry_interval: Option<String>,
    /// Give up retry-join after this many attempts (0: never).
    #[arg(long)]
    retry_max: Option<u32>,
    /// Replay past user events when joining.
    #[arg(long)]
    replay: bool,
    /// Rejoin the cluster from the snapshot even after a graceful leave.
    #[arg(long)]
    rejoin: bool,
    /// RPC address (default 127.0.0.1:7373).
    #[arg(long, env = "NUVOL_RPC_ADDR")]
    rpc_addr: Option<String>,
    /// Require this auth key from RPC clients.
    #[arg(long, env = "NUVOL_RPC_AUTH", hide_env_values = true)]
    rpc_auth: Option<String>,
    /// Gossip encryption key (base64, from `nuvol keygen`).
    #[arg(long, env = "NUVOL_ENCRYPT_KEY", hide_env_values = true)]
    encrypt: Option<String>,
    /// Keyring file (JSON list of base64 keys, first is primary).
    #[arg(long)]
    keyring_file: Option<PathBuf>,
    /// Tag K=V (repeatable).
    #[arg(long, value_name = "K=V")]
    tag: Vec<String>,
    /// Tags file (JSON object), kept up to date on `nuvol tags`.
    #[arg(long)]
    tags_file: Option<PathBuf>,
    /// Timing profile: lan, wan or local.
    #[arg(long)]
    profile: Option<String>,
    /// Serf protocol version (2 to 5).
    #[arg(long)]
    protocol: Option<u8>,
    /// Data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Snapshot file (default: DATA_DIR/serf.snapshot).
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// Event handler, [FILTER=]SCRIPT (repeatable).
    #[arg(long)]
    event_handler: Vec<String>,
    /// Log level: trace, debug, info, warn, err.
    #[arg(long)]
    log_level: Option<String>,
    /// Time after which a failed node is reaped (e.g. 24h).
    #[arg(long)]
    reconnect_timeout: Option<String>,
    /// Time between reconnect attempts to failed nodes.
    #[arg(long)]
    reconnect_interval: Option<String>,
    /// Time after which a left node is reaped.
    #[arg(long)]
    tombstone_timeout: Option<String>,
    /// Leave the cluster gracefully on SIGTERM.
    #[arg(long)]
    leave_on_terminate: bool,
    /// Do not leave gracefully on SIGINT.
    #[arg(long)]
    skip_leave_on_interrupt: bool,
    /// REST API address (default: the RPC IP, port 7000; "" disables).
    #[arg(long, env = "NUVOL_HTTP_ADDR")]
    http_addr: Option<String>,
    /// DNS server address (default: the RPC IP, port 8600; "" disables).
    #[arg(long)]
    dns_addr: Option<String>,
    /// DNS domain (default nuvol).
    #[arg(long)]
    domain: Option<String>,
    /// Directory of service files (*.toml), reloaded on SIGHUP.
    #[arg(long)]
    services_dir: Option<PathBuf>,
    /// Micro-cloud name used in Cloudy service records (default nuvol).
    #[arg(long)]
    cloud: Option<String>,
    /// Announce services with mDNS / DNS-SD: true or false (default true).
    #[arg(long, value_name = "BOOL")]
    mdns: Option<bool>,
    /// Import services announced by others on the LAN with mDNS.
    #[arg(long)]
    mdns_import: bool,
    /// How long services of a failed or departed node stay listed (e.g. 24h).
    #[arg(long)]
    catalog_remove_after: Option<String>,
}

impl AgentArgs {
    fn to_file_config(&self) -> anyhow::Result<FileConfig> {
        let mut tags = std::collections::BTreeMap::new();
        for t in &self.tag {
            let (k, v) = t
                .split_once('=')
                .with_context(|| format!("invalid tag {t:?}: expected K=V"))?;
            tags.insert(k.to_owned(), v.to_owned());
        }
        Ok(FileConfig {
            node_name: self.node.clone(),
            bind: self.bind.clone(),
            advertise: self.advertise.clone(),
            join: self.join.clone(),
            retry_join: self.retry_join.clone(),
            retry_interval: self.retry_interval.clone(),
            retry_max: self.retry_max,
            replay_on_join: self.replay.then_some(true),
            rejoin_after_leave: self.rejoin.then_some(true),
            rpc_addr: self.rpc_addr.clone(),
            rpc_auth: self.rpc_auth.clone(),
            encrypt_key: self.encrypt.clone(),
            keyring_file: self.keyring_file.clone(),
            tags,
            tags_file: self.tags_file.clone(),
            profile: self.profile.clone(),
            protocol: self.protocol,
            data_dir: self.data_dir.clone(),
            snapshot_path: self.snapshot.clone(),
            event_handlers: self.event_handler.clone(),
            log_level: self.log_level.clone(),
            reconnect_interval: self.reconnect_interval.clone(),
            reconnect_timeout: self.reconnect_timeout.clone(),
            tombstone_timeout: self.tombstone_timeout.clone(),
            disable_coordinates: None,
            leave_on_terminate: self.leave_on_terminate.then_some(true),
            skip_leave_on_interrupt: self.skip_leave_on_interrupt.then_some(true),
            http_addr: self.http_addr.clone(),
            dns_addr: self.dns_addr.clone(),
            domain: self.domain.clone(),
            services_dir: self.services_dir.clone(),
            cloud: self.cloud.clone(),
            mdns: self.mdns,
            mdns_import: self.mdns_import.then_some(true),
            catalog_remove_after: self.catalog_remove_after.clone(),
        })
    }
}

fn init_logging(level: &str) {
    use tracing_subscriber::filter::Targets;
    let level = match level {
        "err" => "error",
        l => l,
    };
    // `NUVOL_LOG` takes per-target directives (`info,nuvol_gossip=debug`);
    // `Targets` parses them without pulling a regex engine into the agent.
    let default = || {
        level
            .parse::<Targets>()
            .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
    };
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

pub async fn run(args: AgentArgs) -> anyhow::Result<i32> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let mut cfg = file.merge(args.to_file_config()?).resolve()?;
    init_logging(&cfg.log_level);
    // Release builds abort on panic (Cargo.toml): a panic is a bug, and a
    // half-dead agent that keeps its sockets open is worse than a restart
    // (the store and the snapshot survive it). Log it where the operator
    // looks before the default hook prints it and the process aborts.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "nuvol panicked; this is a bug, please report it");
        default_hook(info);
    }));
    // Owner-only when nuvol creates it: it holds the API token, the keyring
    // and service definitions (check scripts). An existing dir is left as is.
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.data_dir)
            .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    }
    if cfg.snapshot_path.is_none() {
        cfg.snapshot_path = Some(cfg.data_dir.join("serf.snapshot"));
    }
    let join = cfg.join.clone();
    let retry_join = cfg.retry_join.clone();
    let retry_interval = cfg.retry_interval;
    let retry_max = cfg.retry_max;
    let replay = cfg.replay_on_join;
    let leave_on_term = cfg.leave_on_terminate;
    let skip_leave_on_int = cfg.skip_leave_on_interrupt;
    let catalog_settings = nuvol_agent::catalog::CatalogSettings {
        data_dir: cfg.data_dir.clone(),
        services_dir: cfg.services_dir.clone(),
        cloud: cfg.cloud.clone(),
        remove_after: cfg.catalog_remove_after,
    };
    let (mdns, mdns_import) = (cfg.mdns, cfg.mdns_import);
    let (http_addr, dns_addr, data_dir) = (cfg.http_addr, cfg.dns_addr, cfg.data_dir.clone());
    let domain = cfg.domain.clone();
    let node_name = cfg.node_name.clone();
    let running = nuvol_agent::start(cfg).await?;
    let agent = running.handle.clone();
    let _rpc = nuvol_agent::rpc_server::serve(agent.clone())
        .await
        .context("failed to start the RPC server")?;
    let catalog = nuvol_agent::catalog::Catalog::start(agent.clone(), catalog_settings)
        .await
        .context("failed to start the service catalog")?;
    let dns_addr = match dns_addr {
        Some(addr) => {
            let (bound, _stats) =
                nuvol_agent::dns::start(catalog.clone(), agent.clone(), addr, domain.clone())
                    .await
                    .with_context(|| format!("failed to start the DNS server on {addr}"))?;
            tracing::info!(addr = %bound, %domain, "DNS listening");
            Some(bound)
        }
        None => None,
    };
    let metrics = nuvol_agent::metrics::Metrics::new();
    tokio::spawn(metrics.clone().run(agent.clone(), catalog.clone()));
    let _api = match http_addr {
        Some(addr) => {
            let token = nuvol_api::token::load_or_create(&data_dir)
                .context("cannot set up the API token")?;
            let backend = nuvol_agent::api_backend::AgentBackend::new(
                agent.clone(),
                catalog.clone(),
                metrics.clone(),
                running.advertise,
                addr,
                dns_addr,
            );
            let server = nuvol_api::bind(addr, token, std::sync::Arc::new(backend))
                .await
                .with_context(|| format!("failed to start the HTTP API on {addr}"))?;
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                if let Err(e) = server
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await
                {
                    tracing::error!(error = %e, "HTTP API stopped");
                }
            });
            Some(stop_tx)
        }
        None => None,
    };
    if mdns || mdns_import {
        tokio::spawn(nuvol_agent::lan::run(
            catalog.clone(),
            node_name,
            running.advertise.ip(),
            mdns,
            mdns_import,
        ));
    }
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        let c = catalog.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading service files");
                c.reload_files().await;
            }
        });
    }
    if !join.is_empty() {
        match agent.join(&join, replay).await {
            Ok(n) => tracing::info!(joined = n, "joined cluster"),
            Err(e) => anyhow::bail!("failed to join: {e}"),
        }
    }
    if !retry_join.is_empty() {
        let a = agent.clone();
        tokio::spawn(async move {
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                match a.join(&retry_join, replay).await {
                    Ok(n) => {
                        tracing::info!(joined = n, "retry-join succeeded");
                        return;
                    }
                    Err(e) => tracing::warn!(attempt, error = %e, "retry-join failed"),
                }
                if retry_max > 0 && attempt >= retry_max {
                    tracing::error!("retry-join: giving up after {attempt} attempts");
                    return;
                }
                tokio::time::sleep(retry_interval).await;
            }
        });
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let graceful = tokio::select! {
        _ = term.recv() => leave_on_term,
        _ = int.recv() => !skip_leave_on_int,
        reason = agent.stopped() => {
            if reason == "left" {
                return Ok(0);
            }
            eprintln!("nuvol: agent stopped: {reason}");
            return Ok(1);
        }
    };
    if graceful {
        tracing::info!("gracefully leaving the cluster");
        let leave = agent.leave();
        tokio::select! {
            r = leave => if let Err(e) = r { tracing::error!(error = %e, "leave failed") },
            _ = int.recv() => tracing::warn!("second signal: exiting without finishing leave"),
        }
    }
    Ok(0)
}
