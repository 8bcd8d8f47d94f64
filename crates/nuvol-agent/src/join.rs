//! Joining the cluster: from the snapshot of the last run, through `--join`
//! at start (a failure stops the agent, as serf's `-join` does) and through
//! `--retry-join` until it works. Listed last in the binary, so a node joins
//! once its other components (the catalog) are ready.

use crate::component::{BuildError, Component, ComponentError};
use crate::config::{ConfigError, Validate};
use crate::registry::{BuildCtx, RunCtx};
use std::time::Duration;

crate::settings! {
    /// Joining the cluster.
    pub struct JoinSettings in "join", "Joining" {
        /// Join this node at start, IP:PORT or HOST[:PORT] (repeatable); the
        /// agent stops if none answers.
        join: Vec<String> = Vec::new(), flag "join";
        /// Join this node, retrying until it works (repeatable).
        retry_join: Vec<String> = Vec::new(), flag "retry-join";
        /// Time between retry-join attempts.
        retry_interval: Duration = Duration::from_secs(30), flag "retry-interval";
        /// Give up retry-join after this many attempts (0: never).
        retry_max: u32 = 0, flag "retry-max";
        /// Replay past user events when joining.
        replay: bool = false, flag "replay";
        /// Rejoin the cluster from the snapshot even after a graceful leave.
        rejoin: bool = false, flag "rejoin";
    }
}

impl Validate for JoinSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.retry_interval.is_zero() && !self.retry_join.is_empty() {
            return Err(ConfigError::invalid::<Self>(
                "retry_interval",
                "must be more than 0s",
            ));
        }
        Ok(())
    }
}

/// The join component.
pub struct Join {
    cfg: JoinSettings,
    /// The start-up joins ran (a restart does not repeat them).
    started: bool,
}

impl Component for Join {
    type Config = JoinSettings;
    const NAME: &'static str = "join";
    /// A `--join` that fails stops the agent, as serf's does.
    const CRITICAL: bool = true;

    fn build(cfg: JoinSettings, _ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        Ok(Some(Join {
            cfg,
            started: false,
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let cluster = ctx.cluster().clone();
        let mut tasks = tokio::task::JoinSet::new();
        if !self.started {
            self.started = true;
            let rejoin: Vec<String> = match cluster.previous() {
                Some(p) if !p.left || self.cfg.rejoin => p
                    .alive
                    .iter()
                    .filter(|(n, _)| n.as_str() != cluster.name())
                    .map(|(_, a)| a.to_string())
                    .collect(),
                _ => Vec::new(),
            };
            if !rejoin.is_empty() {
                let c = cluster.clone();
                tasks.spawn(async move {
                    for a in rejoin {
                        match c.join(std::slice::from_ref(&a), false).await {
                            Ok(_) => {
                                tracing::info!(addr = %a, "re-joined from snapshot");
                                return;
                            }
                            Err(e) => {
                                tracing::debug!(addr = %a, error = %e, "snapshot re-join failed")
                            }
                        }
                    }
                    tracing::warn!("failed to re-join any previously known node");
                });
            }
            if !self.cfg.join.is_empty() {
                let n = cluster.join(&self.cfg.join, self.cfg.replay).await?;
                tracing::info!(joined = n, "joined cluster");
            }
        }
        ctx.ready();
        if !self.cfg.retry_join.is_empty() {
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                let r = tokio::select! {
                    r = cluster.join(&self.cfg.retry_join, self.cfg.replay) => r,
                    () = ctx.stopping() => return Ok(()),
                };
                match r {
                    Ok(n) => {
                        tracing::info!(joined = n, "retry-join succeeded");
                        break;
                    }
                    Err(e) => tracing::warn!(attempt, error = %e, "retry-join failed"),
                }
                if self.cfg.retry_max > 0 && attempt >= self.cfg.retry_max {
                    tracing::error!("retry-join: giving up after {attempt} attempts");
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(self.cfg.retry_interval) => {}
                    () = ctx.stopping() => return Ok(()),
                }
            }
        }
        // Keep the snapshot re-join going until it is done or we stop.
        tokio::select! {
            _ = async { while tasks.join_next().await.is_some() {} } => {}
            () = ctx.stopping() => {}
        }
        Ok(())
    }
}
