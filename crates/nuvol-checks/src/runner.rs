//! Scheduling checks: one tokio task per check.

use crate::model::{CheckDef, CheckState};
use crate::run::run_once;
use nuvol_agent::chan::Tx as Sender;
use rand::Rng;
use std::collections::HashMap;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::debug;

/// Shortest time between two runs of a check, whatever its `interval` says
/// (validated checks never ask for less).
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// One result of one check.
///
/// Until the first update for a check arrives, the check is to be taken as
/// **critical** (Consul's initial state): a service is not advertised as
/// healthy before its checks have said so.
///
/// Every run is sent, changed or not; the consumer deduplicates. After
/// [`Runner::set`] changed a service's checks or [`Runner::remove`] dropped
/// it, results of the old checks already queued in the channel may still
/// arrive: drop updates whose `generation` differs from
/// [`Runner::generation`] of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckUpdate {
    /// The service key (`type/port`) given to [`Runner::set`].
    pub service: String,
    /// Position of the check in the list given to [`Runner::set`].
    pub index: usize,
    /// Which [`Runner::set`] of the service started the check.
    pub generation: u64,
    pub state: CheckState,
}

struct Service {
    checks: Vec<CheckDef>,
    generation: u64,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Runs the checks of this node's services and sends their results.
///
/// Each check has its own task: it runs at once, then every `interval` plus
/// a random 0–10% (so that many checks do not fire together), and sends
/// every result to the channel (waiting when it is full). Tasks end when
/// their service is removed or replaced, when the runner is dropped, or when
/// the receiver is closed.
///
/// [`Runner::set`] spawns tasks, so it must be called within a tokio runtime
/// (like `tokio::spawn`).
pub struct Runner {
    tx: Sender<CheckUpdate>,
    services: HashMap<String, Service>,
    next_generation: u64,
    allow_scripts: bool,
}

impl Runner {
    pub fn new(tx: Sender<CheckUpdate>) -> Runner {
        Runner {
            tx,
            services: HashMap::new(),
            next_generation: 0,
            allow_scripts: true,
        }
    }

    /// With `false`, script checks do not run: each reports critical,
    /// saying script checks are disabled.
    pub fn allow_scripts(&mut self, allow: bool) {
        self.allow_scripts = allow;
    }

    /// Run `checks` for `service_key`. If the list equals the current one
    /// nothing happens; otherwise the old checks stop and the new ones start
    /// (each runs at once). An empty list is the same as [`Runner::remove`].
    pub fn set(&mut self, service_key: &str, checks: Vec<CheckDef>) {
        if checks.is_empty() {
            self.remove(service_key);
            return;
        }
        if self
            .services
            .get(service_key)
            .is_some_and(|s| s.checks == checks)
        {
            return;
        }
        debug!(
            service = service_key,
            checks = checks.len(),
            "starting health checks"
        );
        self.next_generation += 1;
        let generation = self.next_generation;
        let tasks = checks
            .iter()
            .enumerate()
            .map(|(index, def)| {
                tokio::spawn(check_loop(
                    service_key.to_owned(),
                    index,
                    generation,
                    def.clone(),
                    self.tx.clone(),
                    self.allow_scripts,
                ))
            })
            .collect();
        // Replacing the entry drops (aborts) the old tasks.
        self.services.insert(
            service_key.to_owned(),
            Service {
                checks,
                generation,
                tasks,
            },
        );
    }

    /// Stop the checks of `service_key` (nothing if it has none).
    pub fn remove(&mut self, service_key: &str) {
        if self.services.remove(service_key).is_some() {
            debug!(service = service_key, "stopped health checks");
        }
    }

    /// Stop every check.
    pub fn clear(&mut self) {
        self.services.clear();
    }

    /// The checks running for `service_key`.
    pub fn checks(&self, service_key: &str) -> Option<&[CheckDef]> {
        self.services.get(service_key).map(|s| s.checks.as_slice())
    }

    /// The generation of the checks running for `service_key`.
    pub fn generation(&self, service_key: &str) -> Option<u64> {
        self.services.get(service_key).map(|s| s.generation)
    }

    /// The services that have checks running.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .finish()
    }
}

async fn check_loop(
    service: String,
    index: usize,
    generation: u64,
    def: CheckDef,
    tx: Sender<CheckUpdate>,
    allow_scripts: bool,
) {
    let interval = def.interval.max(MIN_INTERVAL);
    let disabled = !allow_scripts && matches!(def.kind, crate::model::CheckKind::Script { .. });
    loop {
        let state = if disabled {
            CheckState {
                status: crate::model::Health::Critical,
                output: "script checks are disabled ([checks] scripts = false)".into(),
                updated_ms: crate::run::now_ms(),
            }
        } else {
            run_once(&def).await
        };
        let update = CheckUpdate {
            service: service.clone(),
            index,
            generation,
            state,
        };
        if tx.send(update).await.is_err() {
            debug!(service, index, "check results receiver closed");
            return;
        }
        tokio::time::sleep(with_jitter(interval)).await;
    }
}

/// `interval` plus a random 0–10%.
fn with_jitter(interval: Duration) -> Duration {
    let max = u64::try_from(interval.as_millis() / 10).unwrap_or(u64::MAX);
    interval + Duration::from_millis(rand::thread_rng().gen_range(0..=max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let i = Duration::from_secs(10);
        for _ in 0..100 {
            let j = with_jitter(i);
            assert!(j >= i && j <= Duration::from_secs(11));
        }
        assert_eq!(with_jitter(Duration::ZERO), Duration::ZERO);
    }
}
