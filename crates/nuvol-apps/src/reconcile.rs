//! The reconciler: from what should run (each app's plan and whether it
//! should be running) and what the engine has (containers by label), the
//! actions that bring the second to the first. Plain values and a clock,
//! no I/O: the component carries the actions out and calls again.
//!
//! Rules, per app and service:
//! - A container whose `nuvol.spec` matches the plan is the service's
//!   container; the agent adopts it whatever created it (an earlier run of
//!   the agent, before a reboot). Only one is kept: others, and containers
//!   of an older spec, are removed (never two for one service).
//! - A service with no container gets its networks and volumes ensured and
//!   a container created, then started.
//! - Should run: a created, paused or exited container is started (an
//!   exited one unless its restart policy says it is done: `no`, or
//!   `on-failure` after a clean exit or its last attempt), a running one
//!   whose health check fails is restarted when its policy restarts failed
//!   containers, each with a backoff (10 s doubling to 5 min) so a
//!   crashing app is not hammered.
//! - Should be stopped: a running one is stopped.
//! - A container of an app this node does not have is removed (its
//!   volumes stay: only `remove --purge` deletes data).
//!
//! Apps that are busy (an install, upgrade or backup running) are left
//! alone.

use crate::driver::{Health, Observed, RunState};
use crate::plan::{AppPlan, NetworkSpec, RestartPolicy, VolumeSpec};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// First wait before acting again on a failing container.
pub const BACKOFF_MIN: Duration = Duration::from_secs(10);
/// The longest wait.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Healthy (or running without a check) this long resets the backoff.
pub const BACKOFF_RESET: Duration = Duration::from_secs(120);

/// Whether an app should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Want {
    Running,
    Stopped,
}

/// One app as the reconciler sees it.
#[derive(Debug, Clone)]
pub struct Desired<'a> {
    pub plan: &'a AppPlan,
    pub want: Want,
}

/// Something to do to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    EnsureNetwork {
        app: String,
        net: NetworkSpec,
    },
    EnsureVolume {
        app: String,
        vol: VolumeSpec,
    },
    /// Create the service's container (and start it when the app should
    /// run: the next pass sees it created).
    Create {
        app: String,
        service: String,
    },
    Start {
        app: String,
        service: String,
        id: String,
    },
    Unpause {
        app: String,
        service: String,
        id: String,
    },
    Stop {
        app: String,
        service: String,
        id: String,
    },
    Restart {
        app: String,
        service: String,
        id: String,
        why: String,
    },
    Remove {
        app: String,
        service: String,
        id: String,
        why: String,
    },
}

impl Action {
    pub fn app(&self) -> &str {
        match self {
            Action::EnsureNetwork { app, .. }
            | Action::EnsureVolume { app, .. }
            | Action::Create { app, .. }
            | Action::Start { app, .. }
            | Action::Unpause { app, .. }
            | Action::Stop { app, .. }
            | Action::Restart { app, .. }
            | Action::Remove { app, .. } => app,
        }
    }
}

#[derive(Debug, Clone)]
struct Backoff {
    /// Not before.
    next: Instant,
    delay: Duration,
    /// Since when it looked fine (for the reset).
    fine_since: Option<Instant>,
}

/// The reconciler's memory between passes: backoffs per service, and
/// whether the next pass adopts.
#[derive(Debug, Default)]
pub struct Reconciler {
    backoff: HashMap<(String, String), Backoff>,
    adopt: bool,
}

fn is_up(o: &Observed) -> bool {
    matches!(o.state, RunState::Running | RunState::Restarting)
}

impl Reconciler {
    /// Make the next pass an adoption: the engine may have restarted (the
    /// agent just started, or the engine was unreachable), so containers
    /// of apps that should run were stopped by the engine's shutdown, not
    /// by a failure: every exited one is started whatever its restart
    /// policy says, without waiting for a backoff.
    pub fn adopt_next(&mut self) {
        self.adopt = true;
    }

    /// The actions for one pass. `observed` is every labelled container
    /// of this node; `busy` apps are skipped.
    pub fn plan(
        &mut self,
        now: Instant,
        desired: &[Desired<'_>],
        observed: &[Observed],
        busy: &BTreeSet<String>,
    ) -> Vec<Action> {
        let adopt = std::mem::take(&mut self.adopt);
        let mut out = Vec::new();
        let wanted: BTreeSet<&str> = desired.iter().map(|d| d.plan.app.as_str()).collect();
        for o in observed {
            if !wanted.contains(o.app.as_str()) && !busy.contains(&o.app) {
                out.push(Action::Remove {
                    app: o.app.clone(),
                    service: o.service.clone(),
                    id: o.id.clone(),
                    why: "the app is not installed on this node".into(),
                });
            }
        }
        let mut by_service: BTreeMap<(&str, &str), Vec<&Observed>> = BTreeMap::new();
        for o in observed {
            by_service
                .entry((o.app.as_str(), o.service.as_str()))
                .or_default()
                .push(o);
        }
        for d in desired {
            let app = d.plan.app.as_str();
            if busy.contains(app) {
                continue;
            }
            let services: BTreeSet<&str> = d
                .plan
                .containers
                .iter()
                .map(|c| c.service.as_str())
                .collect();
            // Containers of services the definition no longer has.
            for ((a, s), list) in &by_service {
                if *a == app && !services.contains(s) {
                    for o in list {
                        out.push(remove(o, "the service is no longer in the app"));
                    }
                }
            }
            let Ok(order) = d.plan.order() else { continue };
            let mut ensured = false;
            for spec in order {
                let key = (app.to_owned(), spec.service.clone());
                let hash = spec.hash();
                let list = by_service
                    .get(&(app, spec.service.as_str()))
                    .cloned()
                    .unwrap_or_default();
                let (current, old): (Vec<&Observed>, Vec<&Observed>) =
                    list.into_iter().partition(|o| o.spec == hash);
                for o in &old {
                    out.push(remove(o, "its definition changed"));
                }
                // Keep the best current one: running first, then any.
                let keep = current
                    .iter()
                    .copied()
                    .max_by_key(|o| (is_up(o), o.state != RunState::Dead, o.id.clone()));
                for o in &current {
                    if keep.is_some_and(|k| k.id != o.id) {
                        out.push(remove(o, "a second container of the service"));
                    }
                }
                let Some(c) = keep else {
                    if !ensured {
                        for net in &d.plan.networks {
                            out.push(Action::EnsureNetwork {
                                app: app.to_owned(),
                                net: net.clone(),
                            });
                        }
                        for vol in &d.plan.volumes {
                            out.push(Action::EnsureVolume {
                                app: app.to_owned(),
                                vol: vol.clone(),
                            });
                        }
                        ensured = true;
                    }
                    out.push(Action::Create {
                        app: app.to_owned(),
                        service: spec.service.clone(),
                    });
                    continue;
                };
                let id = c.id.clone();
                let service = spec.service.clone();
                match d.want {
                    Want::Stopped => {
                        self.backoff.remove(&key);
                        if matches!(
                            c.state,
                            RunState::Running | RunState::Restarting | RunState::Paused
                        ) {
                            out.push(Action::Stop {
                                app: app.to_owned(),
                                service,
                                id,
                            });
                        }
                    }
                    Want::Running => {
                        let fine = c.state == RunState::Running && c.health != Health::Unhealthy;
                        if fine {
                            if let Some(b) = self.backoff.get_mut(&key) {
                                let since = *b.fine_since.get_or_insert(now);
                                if now.saturating_duration_since(since) >= BACKOFF_RESET {
                                    self.backoff.remove(&key);
                                }
                            }
                            continue;
                        }
                        if let Some(b) = self.backoff.get_mut(&key) {
                            b.fine_since = None;
                        }
                        let act = match c.state {
                            RunState::Created => Some(Action::Start {
                                app: app.to_owned(),
                                service,
                                id,
                            }),
                            RunState::Paused => Some(Action::Unpause {
                                app: app.to_owned(),
                                service,
                                id,
                            }),
                            RunState::Exited | RunState::Dead if adopt && !seen_ending(c) => {
                                out.push(Action::Start {
                                    app: app.to_owned(),
                                    service,
                                    id,
                                });
                                continue;
                            }
                            RunState::Exited | RunState::Dead => {
                                done(spec.restart, c).is_none().then(|| Action::Start {
                                    app: app.to_owned(),
                                    service,
                                    id,
                                })
                            }
                            RunState::Running
                                if c.health == Health::Unhealthy
                                    && spec.restart.restarts_failed() =>
                            {
                                Some(Action::Restart {
                                    app: app.to_owned(),
                                    service,
                                    id,
                                    why: "its health check fails".into(),
                                })
                            }
                            // The engine restarts it, or it is going.
                            _ => None,
                        };
                        let Some(act) = act else { continue };
                        // A created container starts now; acting again on
                        // one that failed waits for its backoff.
                        if matches!(act, Action::Start { .. }) && c.state == RunState::Created {
                            out.push(act);
                            continue;
                        }
                        let b = self.backoff.entry(key).or_insert(Backoff {
                            next: now,
                            delay: BACKOFF_MIN / 2,
                            fine_since: None,
                        });
                        if now >= b.next {
                            b.delay = (b.delay * 2).min(BACKOFF_MAX);
                            b.next = now + b.delay;
                            out.push(act);
                        }
                    }
                }
            }
        }
        // Forget backoffs of services that are gone.
        let live: BTreeSet<(String, String)> = desired
            .iter()
            .flat_map(|d| {
                d.plan
                    .containers
                    .iter()
                    .map(|c| (d.plan.app.clone(), c.service.clone()))
            })
            .collect();
        self.backoff.retain(|k, _| live.contains(k));
        out
    }

    /// When the reconciler will act again on a failing service.
    pub fn retry_at(&self, app: &str, service: &str) -> Option<Instant> {
        self.backoff
            .get(&(app.to_owned(), service.to_owned()))
            .map(|b| b.next)
    }
}

/// A process whose end an agent saw (its exit code is known, see
/// [`crate::process`]): no engine restart stopped it, so an adoption pass
/// leaves it to its restart policy as any pass does. (A process that ended
/// while no agent ran has no exit code and is started.)
fn seen_ending(o: &Observed) -> bool {
    o.image_id.starts_with(crate::process::IMAGE_PREFIX) && o.exit_code.is_some()
}

fn remove(o: &Observed, why: &str) -> Action {
    Action::Remove {
        app: o.app.clone(),
        service: o.service.clone(),
        id: o.id.clone(),
        why: why.into(),
    }
}

/// Why an exited container is not to be started again, if it is done:
/// `no` never restarts; `on-failure` after a clean exit, or after its last
/// attempt.
fn done(policy: RestartPolicy, c: &Observed) -> Option<&'static str> {
    match policy {
        RestartPolicy::No => Some("restart: no"),
        RestartPolicy::OnFailure(_) if c.exit_code == Some(0) => Some("it completed"),
        RestartPolicy::OnFailure(n) if n > 0 && c.restart_count >= u64::from(n) => {
            Some("it failed its last attempt")
        }
        _ => None,
    }
}

/// An app's state as users see it (`nuvol app list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppState {
    Running,
    Stopped,
    Starting,
    Unhealthy,
    Failed,
    Installing,
    Upgrading,
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Running => "running",
            AppState::Stopped => "stopped",
            AppState::Starting => "starting",
            AppState::Unhealthy => "unhealthy",
            AppState::Failed => "failed",
            AppState::Installing => "installing",
            AppState::Upgrading => "upgrading",
        }
    }
}

/// The state of an app from its containers (those of its current spec).
pub fn app_state(plan: &AppPlan, want: Want, observed: &[Observed]) -> AppState {
    let mine: Vec<(&crate::plan::ContainerSpec, Option<&Observed>)> = plan
        .containers
        .iter()
        .map(|s| {
            let h = s.hash();
            (
                s,
                observed
                    .iter()
                    .filter(|o| o.app == plan.app && o.service == s.service && o.spec == h)
                    .max_by_key(|o| is_up(o)),
            )
        })
        .collect();
    if want == Want::Stopped {
        return if mine.iter().any(|(_, o)| o.is_some_and(is_up)) {
            AppState::Running
        } else {
            AppState::Stopped
        };
    }
    let mut state = AppState::Running;
    for (spec, o) in mine {
        let s = match o {
            None => AppState::Failed,
            Some(o) => match (o.state, o.health) {
                (RunState::Running, Health::Unhealthy) => AppState::Unhealthy,
                (RunState::Running, Health::Starting) => AppState::Starting,
                (RunState::Running, _) => AppState::Running,
                (RunState::Created | RunState::Restarting, _) => AppState::Starting,
                (RunState::Exited, _)
                    if o.exit_code == Some(0) && done(spec.restart, o).is_some() =>
                {
                    // A one-shot service that completed.
                    AppState::Running
                }
                _ => AppState::Failed,
            },
        };
        let rank = |s: AppState| match s {
            AppState::Running => 0,
            AppState::Starting => 1,
            AppState::Unhealthy => 2,
            _ => 3,
        };
        if rank(s) > rank(state) {
            state = s;
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::{plan, Definition};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    const TWO: &str = r#"
services:
  db: {image: db:1, restart: always, volumes: ["data:/data"]}
  web:
    image: web:1
    depends_on: [db]
    ports: ["8080:80"]
    restart: unless-stopped
volumes: {data: {}}
"#;

    fn app(name: &str, yaml: &str) -> AppPlan {
        let def = Definition {
            compose: yaml.into(),
            env_files: Default::default(),
        };
        plan(name, &def, &Default::default()).unwrap().0
    }

    /// A model engine: containers by id, changed only by actions, crashes
    /// and restarts of the daemon.
    #[derive(Default)]
    struct Engine {
        next: u64,
        containers: BTreeMap<String, Observed>,
        networks: BTreeSet<String>,
        volumes: BTreeSet<String>,
    }

    impl Engine {
        fn list(&self) -> Vec<Observed> {
            self.containers.values().cloned().collect()
        }

        fn apply(&mut self, plans: &[AppPlan], a: &Action) {
            match a {
                Action::EnsureNetwork { net, .. } => {
                    self.networks.insert(net.name.clone());
                }
                Action::EnsureVolume { vol, .. } => {
                    self.volumes.insert(vol.name.clone());
                }
                Action::Create { app, service } => {
                    let p = plans.iter().find(|p| &p.app == app).unwrap();
                    let s = p.container(service).unwrap();
                    for n in &s.networks {
                        assert!(self.networks.contains(n), "{n} ensured before create");
                    }
                    // The engine refuses a second container of one name.
                    assert!(
                        !self.containers.values().any(|o| o.name == s.name),
                        "{} created twice",
                        s.name
                    );
                    self.next += 1;
                    let id = format!("c{}", self.next);
                    self.containers.insert(
                        id.clone(),
                        Observed {
                            id,
                            name: s.name.clone(),
                            app: app.clone(),
                            service: service.clone(),
                            node: "n1".into(),
                            spec: s.hash(),
                            state: RunState::Created,
                            health: Health::None,
                            exit_code: None,
                            restart_count: 0,
                            image_id: "sha256:x".into(),
                        },
                    );
                }
                Action::Start { id, .. }
                | Action::Unpause { id, .. }
                | Action::Restart { id, .. } => {
                    if let Some(c) = self.containers.get_mut(id) {
                        c.state = RunState::Running;
                        c.health = Health::None;
                        c.exit_code = None;
                    }
                }
                Action::Stop { id, .. } => {
                    if let Some(c) = self.containers.get_mut(id) {
                        c.state = RunState::Exited;
                        c.exit_code = Some(0);
                    }
                }
                Action::Remove { id, .. } => {
                    self.containers.remove(id);
                }
            }
        }
    }

    fn pass(
        r: &mut Reconciler,
        e: &mut Engine,
        now: Instant,
        plans: &[AppPlan],
        want: Want,
    ) -> usize {
        let desired: Vec<Desired> = plans.iter().map(|p| Desired { plan: p, want }).collect();
        let acts = r.plan(now, &desired, &e.list(), &BTreeSet::new());
        for a in &acts {
            e.apply(plans, a);
        }
        acts.len()
    }

    #[test]
    fn installs_in_order_then_is_quiet() {
        let p = vec![app("shop", TWO)];
        let mut r = Reconciler::default();
        let mut e = Engine::default();
        let t = Instant::now();
        let desired = [Desired {
            plan: &p[0],
            want: Want::Running,
        }];
        let acts = r.plan(t, &desired, &[], &BTreeSet::new());
        let kinds: Vec<String> = acts
            .iter()
            .map(|a| match a {
                Action::Create { service, .. } => format!("create {service}"),
                Action::EnsureNetwork { net, .. } => format!("net {}", net.name),
                Action::EnsureVolume { vol, .. } => format!("vol {}", vol.name),
                a => format!("{a:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "net nuvol-shop-default",
                "vol nuvol-shop-data",
                "create db",
                "create web"
            ]
        );
        for a in &acts {
            e.apply(&p, a);
        }
        assert_eq!(pass(&mut r, &mut e, t, &p, Want::Running), 2, "two starts");
        assert_eq!(pass(&mut r, &mut e, t, &p, Want::Running), 0, "converged");
        assert_eq!(
            app_state(&p[0], Want::Running, &e.list()),
            AppState::Running
        );
        assert_eq!(pass(&mut r, &mut e, t, &p, Want::Stopped), 2);
        assert_eq!(
            app_state(&p[0], Want::Stopped, &e.list()),
            AppState::Stopped
        );
        assert_eq!(pass(&mut r, &mut e, t, &p, Want::Stopped), 0);
    }

    #[test]
    fn adopts_duplicates_and_outdated_containers_without_doubling() {
        let p = vec![app("shop", TWO)];
        let mut r = Reconciler::default();
        let mut e = Engine::default();
        let t = Instant::now();
        while pass(&mut r, &mut e, t, &p, Want::Running) > 0 {}
        // A leftover of an older definition and a second copy of db, as a
        // crash between create and record could leave.
        let mut dup = e.list().into_iter().find(|o| o.service == "db").unwrap();
        dup.id = "dup".into();
        dup.state = RunState::Exited;
        e.containers.insert("dup".into(), dup.clone());
        let mut old = dup.clone();
        old.id = "old".into();
        old.spec = "0000".into();
        e.containers.insert("old".into(), old);
        let mut stray = dup;
        stray.id = "stray".into();
        stray.app = "gone".into();
        e.containers.insert("stray".into(), stray);
        let desired = [Desired {
            plan: &p[0],
            want: Want::Running,
        }];
        let acts = r.plan(t, &desired, &e.list(), &BTreeSet::new());
        let removed: BTreeSet<&str> = acts
            .iter()
            .filter_map(|a| match a {
                Action::Remove { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(removed, BTreeSet::from(["dup", "old", "stray"]));
        assert!(!acts.iter().any(|a| matches!(a, Action::Create { .. })));
        // Busy apps are left alone, strays of busy apps too.
        let busy = BTreeSet::from(["shop".to_owned(), "gone".to_owned()]);
        assert!(r.plan(t, &desired, &e.list(), &busy).is_empty());
    }

    #[test]
    fn restart_policies_and_backoff() {
        let p = vec![app(
            "a",
            "services: {once: {image: x, restart: 'no'}, retry: {image: x, restart: 'on-failure:2'}, web: {image: x}}",
        )];
        let mut r = Reconciler::default();
        let mut e = Engine::default();
        let t = Instant::now();
        while pass(&mut r, &mut e, t, &p, Want::Running) > 0 {}
        for c in e.containers.values_mut() {
            c.state = RunState::Exited;
            c.exit_code = Some(1);
            if c.service == "retry" {
                c.restart_count = 2;
            }
        }
        assert_eq!(app_state(&p[0], Want::Running, &e.list()), AppState::Failed);
        let desired = [Desired {
            plan: &p[0],
            want: Want::Running,
        }];
        let acts = r.plan(t, &desired, &e.list(), &BTreeSet::new());
        // Only web (unless-stopped) is started: once is `no`, retry used
        // its attempts.
        assert_eq!(acts.len(), 1, "{acts:?}");
        assert!(matches!(&acts[0], Action::Start { service, .. } if service == "web"));
        // Failing again at once: waits 10 s, then 20 s.
        assert!(r
            .plan(
                t + Duration::from_secs(1),
                &desired,
                &e.list(),
                &BTreeSet::new()
            )
            .is_empty());
        assert_eq!(
            r.plan(
                t + Duration::from_secs(10),
                &desired,
                &e.list(),
                &BTreeSet::new()
            )
            .len(),
            1
        );
        assert!(r
            .plan(
                t + Duration::from_secs(25),
                &desired,
                &e.list(),
                &BTreeSet::new()
            )
            .is_empty());
        assert_eq!(
            r.plan(
                t + Duration::from_secs(31),
                &desired,
                &e.list(),
                &BTreeSet::new()
            )
            .len(),
            1
        );
        // Unhealthy and running: restarted (backoff shared).
        for c in e.containers.values_mut() {
            c.state = RunState::Running;
            c.health = Health::Unhealthy;
        }
        assert_eq!(
            app_state(&p[0], Want::Running, &e.list()),
            AppState::Unhealthy
        );
        let acts = r.plan(
            t + Duration::from_secs(200),
            &desired,
            &e.list(),
            &BTreeSet::new(),
        );
        let restarted: Vec<&str> = acts
            .iter()
            .filter_map(|a| match a {
                Action::Restart { service, .. } => Some(service.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(restarted, ["retry", "web"], "once has restart: no");
    }

    #[test]
    fn an_adoption_pass_starts_what_the_engine_stopped_whatever_the_policy() {
        let p = vec![app(
            "a",
            "services: {once: {image: x, restart: 'no'}, web: {image: x}}",
        )];
        let mut r = Reconciler::default();
        let mut e = Engine::default();
        let t = Instant::now();
        while pass(&mut r, &mut e, t, &p, Want::Running) > 0 {}
        // The engine shut down: everything exited.
        for c in e.containers.values_mut() {
            c.state = RunState::Exited;
            c.exit_code = Some(0);
        }
        let desired = [Desired {
            plan: &p[0],
            want: Want::Running,
        }];
        // A normal pass leaves `once` (restart: no) alone.
        let acts = r.plan(t, &desired, &e.list(), &BTreeSet::new());
        assert_eq!(acts.len(), 1, "{acts:?}");
        // An adoption pass starts both, at once, and only once.
        r.adopt_next();
        let acts = r.plan(t, &desired, &e.list(), &BTreeSet::new());
        assert_eq!(acts.len(), 2, "{acts:?}");
        assert!(acts.iter().all(|a| matches!(a, Action::Start { .. })));
        let acts = r.plan(t, &desired, &e.list(), &BTreeSet::new());
        assert!(acts.is_empty(), "web waits for its backoff: {acts:?}");
    }

    #[test]
    fn an_adoption_pass_leaves_processes_whose_end_was_seen_to_their_policy() {
        let p = vec![app(
            "a",
            "services: {once: {image: x, restart: 'no'}, gone: {image: x, restart: 'no'}}",
        )];
        let mut r = Reconciler::default();
        let mut e = Engine::default();
        let t = Instant::now();
        while pass(&mut r, &mut e, t, &p, Want::Running) > 0 {}
        let desired = [Desired {
            plan: &p[0],
            want: Want::Running,
        }];
        // Processes: `once` ended under an agent (code known), `gone`
        // while no agent ran (no code).
        let mut seen = e.list();
        for o in &mut seen {
            o.image_id = "process:/bin/x".into();
            o.state = RunState::Exited;
            o.exit_code = (o.service == "once").then_some(0);
        }
        r.adopt_next();
        let acts = r.plan(t, &desired, &seen, &BTreeSet::new());
        let started: Vec<&str> = acts
            .iter()
            .filter_map(|a| match a {
                Action::Start { service, .. } => Some(service.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(started, ["gone"], "{acts:?}");
    }

    #[test]
    fn a_changed_definition_replaces_its_container_and_keeps_the_rest() {
        let mut r = Reconciler::default();
        let mut e = Engine::default();
        let t = Instant::now();
        let v1 = vec![app("shop", TWO)];
        while pass(&mut r, &mut e, t, &v1, Want::Running) > 0 {}
        let db_id = e.list().into_iter().find(|o| o.service == "db").unwrap().id;
        let v2 = vec![app("shop", &TWO.replace("web:1", "web:2"))];
        while pass(&mut r, &mut e, t, &v2, Want::Running) > 0 {}
        let now = e.list();
        assert_eq!(now.len(), 2);
        assert!(now.iter().any(|o| o.id == db_id), "db untouched");
        assert_eq!(app_state(&v2[0], Want::Running, &now), AppState::Running);
        assert_eq!(app_state(&v1[0], Want::Running, &now), AppState::Failed);
    }

    /// Many apps, random crashes, daemon restarts (everything exits),
    /// stray containers and changes of what should run: the engine never
    /// holds two containers of one service (Engine::apply asserts it on
    /// every create) and every pass sequence converges.
    #[test]
    fn simulation_converges_and_never_duplicates() {
        for seed in 0..20u64 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let plans: Vec<AppPlan> = (0..12).map(|i| app(&format!("app{i}"), TWO)).collect();
            let mut want: Vec<Want> = vec![Want::Running; plans.len()];
            let mut r = Reconciler::default();
            let mut e = Engine::default();
            let mut t = Instant::now();
            for _ in 0..300 {
                t += Duration::from_secs(rng.gen_range(1..30));
                match rng.gen_range(0..10) {
                    0 => {
                        // The daemon restarts: every container exits.
                        for c in e.containers.values_mut() {
                            c.state = RunState::Exited;
                            c.exit_code = Some(137);
                        }
                    }
                    1 | 2 => {
                        let ids: Vec<String> = e.containers.keys().cloned().collect();
                        if !ids.is_empty() {
                            let id = &ids[rng.gen_range(0..ids.len())];
                            if let Some(c) = e.containers.get_mut(id) {
                                c.state = RunState::Exited;
                                c.exit_code = Some(1);
                            }
                        }
                    }
                    3 => {
                        let i = rng.gen_range(0..want.len());
                        want[i] = if want[i] == Want::Running {
                            Want::Stopped
                        } else {
                            Want::Running
                        };
                    }
                    _ => {}
                }
                let desired: Vec<Desired> = plans
                    .iter()
                    .zip(&want)
                    .map(|(p, w)| Desired { plan: p, want: *w })
                    .collect();
                let acts = r.plan(t, &desired, &e.list(), &BTreeSet::new());
                for a in &acts {
                    e.apply(&plans, a);
                }
            }
            // Quiet now: within the longest backoff everything is as wanted.
            for _ in 0..20 {
                t += BACKOFF_MAX;
                let desired: Vec<Desired> = plans
                    .iter()
                    .zip(&want)
                    .map(|(p, w)| Desired { plan: p, want: *w })
                    .collect();
                for a in r.plan(t, &desired, &e.list(), &BTreeSet::new()) {
                    e.apply(&plans, &a);
                }
            }
            for (p, w) in plans.iter().zip(&want) {
                let s = app_state(p, *w, &e.list());
                let expect = if *w == Want::Running {
                    AppState::Running
                } else {
                    AppState::Stopped
                };
                assert_eq!(s, expect, "seed {seed} {}", p.app);
            }
            assert_eq!(e.containers.len(), plans.len() * 2, "seed {seed}");
        }
    }
}
