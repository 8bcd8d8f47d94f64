//! The health-check component: owns the check tasks (they end when it
//! stops) and offers a [`Checks`] handle to the components that attach
//! checks to what they publish (the catalog).

use crate::model::CheckDef;
use crate::{CheckUpdate, Runner};
use nuvol_agent::config::{ConfigError, Validate};
use nuvol_agent::{BuildCtx, BuildError, Component, ComponentError, RunCtx};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Depth of the results channel.
const RESULTS: usize = 256;

nuvol_agent::settings! {
    /// Health checks of published services.
    pub struct CheckSettings in "checks", "Health checks" {
        /// Run script checks (they run commands as the agent's user); with
        /// false each script check is critical, saying so.
        scripts: bool = true, flag "check-scripts";
    }
}

impl Validate for CheckSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

struct Inner {
    runner: Mutex<Runner>,
    results: Mutex<Option<mpsc::Receiver<CheckUpdate>>>,
}

/// A handle to the check runner (cheap to clone).
#[derive(Clone)]
pub struct Checks {
    inner: Arc<Inner>,
}

impl Checks {
    fn runner(&self) -> std::sync::MutexGuard<'_, Runner> {
        self.inner
            .runner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Run `checks` for `key` (see [`Runner::set`]); must be called within
    /// a tokio runtime.
    pub fn set(&self, key: &str, checks: Vec<CheckDef>) {
        self.runner().set(key, checks);
    }

    pub fn remove(&self, key: &str) {
        self.runner().remove(key);
    }

    /// The generation of `key`'s running checks (see [`CheckUpdate`]).
    pub fn generation(&self, key: &str) -> Option<u64> {
        self.runner().generation(key)
    }

    /// The results, for the one consumer that takes them.
    pub fn take_results(&self) -> Option<mpsc::Receiver<CheckUpdate>> {
        self.inner
            .results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// The component.
pub struct ChecksComponent {
    checks: Checks,
}

impl Component for ChecksComponent {
    type Config = CheckSettings;
    const NAME: &'static str = "checks";

    fn build(cfg: CheckSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        let (tx, rx) = ctx.channels().mpsc("check-results", RESULTS);
        let mut runner = Runner::new(tx);
        runner.allow_scripts(cfg.scripts);
        let checks = Checks {
            inner: Arc::new(Inner {
                runner: Mutex::new(runner),
                results: Mutex::new(Some(rx)),
            }),
        };
        ctx.provide(checks.clone());
        Ok(Some(ChecksComponent { checks }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        ctx.ready();
        ctx.stopping().await;
        // The check tasks end with the component.
        self.checks.runner().clear();
        Ok(())
    }
}
