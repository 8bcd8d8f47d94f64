//! SIGHUP: runs every reload hook components registered (service files,
//! ...), one after the other, in the order they were registered.

use crate::component::{BuildError, Component, ComponentError};
use crate::config::NoSettings;
use crate::registry::{BuildCtx, RunCtx};

/// The reload component.
pub struct Reload;

impl Component for Reload {
    type Config = NoSettings;
    const NAME: &'static str = "reload";

    fn build(_: NoSettings, _ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        Ok(Some(Reload))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        ctx.ready();
        loop {
            tokio::select! {
                r = hup.recv() => if r.is_none() { return Ok(()) },
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
