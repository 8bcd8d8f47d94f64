//! The component interface: what every capability of the agent implements.
//!
//! A component has a name, its own config section ([`Component::Config`]),
//! a build step ([`Component::build`]) in which it checks its settings and
//! registers what it offers with the [`BuildCtx`](crate::BuildCtx) (HTTP
//! routes and their OpenAPI fragment, metrics, DNS names, gossip stream
//! protocols, internal query names, owned tag keys, reload hooks, services
//! for later components), and a run loop ([`Component::run`]) that serves
//! until its [`RunCtx`](crate::RunCtx) says stop. The supervisor
//! ([`crate::supervisor`]) starts components in the binary's order, restarts
//! a failed non-critical one with backoff, and stops them in reverse order.

use crate::config::Section;
use crate::registry::{BuildCtx, RunCtx};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::future::Future;

/// One capability of the agent.
pub trait Component: Send + Sized + 'static {
    /// Its config section (`NoSettings` for none).
    type Config: Section;
    /// Its name in status lists, logs and errors.
    const NAME: &'static str;
    /// A failure of a critical component stops the agent; any other is
    /// retried with backoff and shown as failed meanwhile.
    const CRITICAL: bool = false;

    /// Check the settings and register what the component offers. No I/O
    /// that can fail at run time (binding, opening stores) belongs here:
    /// that is [`Component::run`]'s, so that it is retried. `Ok(None)`: the
    /// settings turn the component off.
    fn build(config: Self::Config, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError>;

    /// Serve until `ctx.stopping()` resolves, then drain and return `Ok`.
    /// Call `ctx.ready()` once serving. Returning `Ok` earlier means the
    /// work is done (state `stopped`); an `Err` is a failure.
    ///
    /// Tasks it spawns must end when it returns (hold them in a
    /// `tokio::task::JoinSet`, which aborts them when dropped).
    fn run(&mut self, ctx: &RunCtx) -> impl Future<Output = Result<(), ComponentError>> + Send;
}

/// A component that failed to build: the agent does not start.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub message: String,
}

impl BuildError {
    pub fn new(message: impl std::fmt::Display) -> BuildError {
        BuildError {
            message: message.to_string(),
        }
    }
}

/// Why a component's run loop failed. Any error converts with `?`.
pub struct ComponentError(Box<dyn std::error::Error + Send + Sync>);

impl ComponentError {
    pub fn msg(m: impl std::fmt::Display) -> ComponentError {
        ComponentError(m.to_string().into())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for ComponentError {
    fn from(e: E) -> Self {
        ComponentError(Box::new(e))
    }
}

impl std::fmt::Display for ComponentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The error and its causes, on one line.
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl std::fmt::Debug for ComponentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The state of a component, as `GET /v1/agent/components` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentState {
    /// Its run loop started and has not said it is ready.
    Starting,
    /// Serving.
    Running,
    /// Started again after a failure, not ready yet.
    Restarting,
    /// It failed; a non-critical component waits for its next attempt.
    Failed,
    /// It finished, or the agent stopped it.
    Stopped,
}

impl ComponentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentState::Starting => "starting",
            ComponentState::Running => "running",
            ComponentState::Restarting => "restarting",
            ComponentState::Failed => "failed",
            ComponentState::Stopped => "stopped",
        }
    }
}

/// One row of the component table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentStatus {
    pub name: String,
    pub critical: bool,
    pub state: ComponentState,
    pub restarts: u32,
    /// The last failure, kept after a successful restart.
    pub last_error: Option<String>,
}

/// A built component, type-erased for the supervisor.
pub(crate) trait Runnable: Send {
    fn run_boxed<'a>(&'a mut self, ctx: &'a RunCtx) -> BoxFuture<'a, Result<(), ComponentError>>;
}

impl<C: Component> Runnable for C {
    fn run_boxed<'a>(&'a mut self, ctx: &'a RunCtx) -> BoxFuture<'a, Result<(), ComponentError>> {
        Box::pin(self.run(ctx))
    }
}
