//! SIGHUP: runs every reload hook components registered (service files,
//! ...), one after the other, in the order they were registered.

use crate::component::{BuildError, Component, ComponentError};
use crate::config::NoSettings;
use crate::registry::{BuildCtx, RunCtx};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The reload component.
pub struct Reload {
    /// Installed at build, before any component runs: a SIGHUP sent as
    /// soon as the agent answers waits here instead of killing the process
    /// (the signal's default action).
    hup: Signal,
}

impl Component for Reload {
    type Config = NoSettings;
    const NAME: &'static str = "reload";

    fn build(_: NoSettings, _ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        let hup = signal(SignalKind::hangup())
            .map_err(|e| BuildError::new(format!("cannot handle SIGHUP: {e}")))?;
        Ok(Some(Reload { hup }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        ctx.ready();
        loop {
            tokio::select! {
                r = self.hup.recv() => if r.is_none() { return Ok(()) },
                () = ctx.stopping() => return Ok(()),
            }
            tracing::info!("SIGHUP: reloading");
            for (component, hook) in ctx.registry().reload_hooks() {
                tracing::debug!(component, "reload");
                hook().await;
            }
        }
    }
}
