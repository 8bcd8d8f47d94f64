//! Event handler scripts with serf's interface: `[FILTER=]SCRIPT` run by
//! `/bin/sh -c`, `SERF_*` environment variables, the event on stdin, and for
//! queries the script's output as the response.
//!
//! Unlike serf's agent, which runs handlers one after the other for as long
//! as they take, each invocation here has a timeout (`[handlers] timeout`;
//! a query's handler at most [`QUERY_TIMEOUT`]) after which its whole
//! process group is killed, its output is bounded while it is read, and up
//! to [`MAX_CONCURRENT`] invocations run at once, started in event order, so
//! one hung script does not hold back the events after it.

use crate::component::{BuildError, Component, ComponentError};
use crate::config::{ConfigError, Validate};
use crate::process::{Keep, Script};
use crate::registry::{BuildCtx, RunCtx};
use nuvol_gossip::{Event, Member};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// serf's limit on the output collected from a handler.
pub const MAX_OUTPUT: usize = 8 * 1024;
/// A query's answer after its deadline is useless.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Invocations running at once.
pub const MAX_CONCURRENT: usize = 4;

crate::settings! {
    /// Event handler scripts (serf's `-event-handler`).
    pub struct HandlerSettings in "handlers", "Event handlers" {
        /// Event handler, [FILTER=]SCRIPT (repeatable), as serf's
        /// -event-handler: FILTER is member-join, member-leave,
        /// member-failed, member-update, member-reap, user[:NAME],
        /// query[:NAME] or *, comma-separated.
        event_handler: Vec<String> = Vec::new(), flag "event-handler";
        /// Longest a handler of a member or user event may run before it is
        /// killed with its process group.
        timeout: Duration = Duration::from_secs(300), flag "handler-timeout";
    }
}

impl Validate for HandlerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        for h in &self.event_handler {
            HandlerSpec::parse(h).map_err(|e| ConfigError::invalid::<Self>("event_handler", e))?;
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid::<Self>(
                "timeout",
                "must be more than 0s",
            ));
        }
        Ok(())
    }
}

/// The configured handlers, as given (serf's `info` lists them).
#[derive(Debug, Clone, Default)]
pub struct HandlerList(pub Vec<String>);

/// The component: runs the configured scripts for each event.
pub struct Handlers {
    specs: Arc<Vec<HandlerSpec>>,
    timeout: Duration,
}

impl Component for Handlers {
    type Config = HandlerSettings;
    const NAME: &'static str = "handlers";

    fn build(config: HandlerSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        if config.event_handler.is_empty() {
            return Ok(None);
        }
        ctx.provide(HandlerList(config.event_handler.clone()));
        let specs = config
            .event_handler
            .iter()
            .map(|h| HandlerSpec::parse(h).map_err(BuildError::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Handlers {
            specs: Arc::new(specs),
            timeout: config.timeout,
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let cluster = ctx.cluster().clone();
        let mut events = cluster.events();
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
        let mut running = tokio::task::JoinSet::new();
        ctx.ready();
        loop {
            let ev = tokio::select! {
                r = events.recv() => r,
                () = ctx.stopping() => break,
            };
            let ev = match ev {
                Ok(ev) => ev,
                Err(crate::chan::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "event handlers fell behind; events skipped");
                    continue;
                }
                Err(crate::chan::RecvError::Closed) => break,
            };
            // Reap what finished.
            while running.try_join_next().is_some() {}
            if !self.specs.iter().any(|s| s.wants(&ev)) {
                continue;
            }
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.map_err(ComponentError::from)?,
                () = ctx.stopping() => break,
            };
            let me = cluster.local_member().await?;
            let specs = self.specs.clone();
            let timeout = match &ev {
                Event::Query { .. } => QUERY_TIMEOUT.min(self.timeout),
                _ => self.timeout,
            };
            let cluster = cluster.clone();
            running.spawn(async move {
                let _permit = permit;
                for spec in specs.iter().filter(|s| s.wants(&ev)) {
                    match invoke(&spec.script, &me.name, &me.tags, &ev, timeout).await {
                        Ok((out, truncated)) => {
                            if truncated {
                                tracing::warn!(script = %spec.script, "handler output truncated to {MAX_OUTPUT} bytes");
                            }
                            if let Event::Query { id, .. } = &ev {
                                if !out.is_empty() {
                                    if let Err(e) = cluster.respond(id.0, out).await {
                                        tracing::warn!(error = %e, "failed to respond to query");
                                    }
                                }
                            }
                        }
                        Err(e) => tracing::error!(script = %spec.script, error = %e, "event handler failed"),
                    }
                }
            });
        }
        // Dropping `running` kills what still runs (kill_on_drop).
        Ok(())
    }
}

/// A handler or filter that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandlerSpecError(pub String);

/// One `FILTER=SCRIPT` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerSpec {
    pub filters: Vec<EventFilter>,
    pub script: String,
}

/// serf's event filter: `member-join`, `user:NAME`, `query:NAME`, `*`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    pub event: String,
    pub name: String,
}

const EVENT_TYPES: &[&str] = &[
    "*",
    "member-join",
    "member-leave",
    "member-failed",
    "member-update",
    "member-reap",
    "user",
    "query",
];

impl EventFilter {
    /// Parse a comma-separated filter list (empty means `*`).
    pub fn parse_list(v: &str) -> Result<Vec<EventFilter>, HandlerSpecError> {
        let v = if v.is_empty() { "*" } else { v };
        v.split(',')
            .map(|e| {
                let (event, name) = if let Some(n) = e.strip_prefix("user:") {
                    ("user", n)
                } else if let Some(n) = e.strip_prefix("query:") {
                    ("query", n)
                } else {
                    (e, "")
                };
                if !EVENT_TYPES.contains(&event) {
                    return Err(HandlerSpecError(format!("invalid event filter {e:?}")));
                }
                Ok(EventFilter {
                    event: event.to_owned(),
                    name: name.to_owned(),
                })
            })
            .collect()
    }

    pub fn matches(&self, ev: &Event) -> bool {
        if self.event == "*" {
            return true;
        }
        match ev {
            Event::Member { kind, .. } => self.event == kind.as_str(),
            Event::User { name, .. } => {
                self.event == "user" && (self.name.is_empty() || &self.name == name)
            }
            Event::Query { name, .. } => {
                self.event == "query" && (self.name.is_empty() || &self.name == name)
            }
        }
    }
}

impl HandlerSpec {
    pub fn parse(s: &str) -> Result<HandlerSpec, HandlerSpecError> {
        // serf: the filter is the part before '=' if it has no spaces.
        let (filter, script) = match s.split_once('=') {
            Some((f, rest)) if !f.contains(' ') && !f.is_empty() => (f, rest),
            _ => ("", s),
        };
        if script.trim().is_empty() {
            return Err(HandlerSpecError(format!(
                "empty script in event handler {s:?}"
            )));
        }
        Ok(HandlerSpec {
            filters: EventFilter::parse_list(filter)?,
            script: script.to_owned(),
        })
    }

    pub fn wants(&self, ev: &Event) -> bool {
        self.filters.iter().any(|f| f.matches(ev))
    }
}

/// serf's `SERF_EVENT` value for an event.
pub fn event_type(ev: &Event) -> &'static str {
    match ev {
        Event::Member { kind, .. } => kind.as_str(),
        Event::User { .. } => "user",
        Event::Query { .. } => "query",
    }
}

fn clean(v: &str) -> String {
    v.replace('\t', "\\t").replace('\n', "\\n")
}

fn sanitize_tag(name: &str) -> String {
    name.to_uppercase()
        .chars()
        .map(|c| {
            if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The stdin serf gives a member event handler.
pub fn member_stdin(members: &[Member]) -> Vec<u8> {
    let mut out = String::new();
    for m in members {
        let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            clean(&m.name),
            m.addr.ip(),
            clean(m.tags.get("role").map(String::as_str).unwrap_or("")),
            clean(&tags.join(","))
        ));
    }
    out.into_bytes()
}

/// Run `script` for `ev`; returns the output (serf keeps the last
/// [`MAX_OUTPUT`] bytes of stdout and stderr) and whether it was cut. The
/// script runs in its own process group, which is killed after `timeout`.
pub async fn invoke(
    script: &str,
    self_name: &str,
    self_tags: &BTreeMap<String, String>,
    ev: &Event,
    timeout: Duration,
) -> Result<(Vec<u8>, bool), HandlerError> {
    let mut env: Vec<(String, String)> = vec![
        ("SERF_EVENT".into(), event_type(ev).into()),
        ("SERF_SELF_NAME".into(), self_name.into()),
        (
            "SERF_SELF_ROLE".into(),
            self_tags.get("role").cloned().unwrap_or_default(),
        ),
    ];
    for (k, v) in self_tags {
        env.push((format!("SERF_TAG_{}", sanitize_tag(k)), v.clone()));
    }
    let stdin = match ev {
        Event::Member { members, .. } => member_stdin(members),
        Event::User {
            name,
            ltime,
            payload,
            ..
        } => {
            env.push(("SERF_USER_EVENT".into(), name.clone()));
            env.push(("SERF_USER_LTIME".into(), ltime.to_string()));
            with_newline(payload)
        }
        Event::Query {
            name,
            ltime,
            payload,
            ..
        } => {
            env.push(("SERF_QUERY_NAME".into(), name.clone()));
            env.push(("SERF_QUERY_LTIME".into(), ltime.to_string()));
            with_newline(payload)
        }
    };
    let o = crate::process::run(Script {
        command: script,
        env,
        stdin: Some(stdin),
        timeout,
        max_output: MAX_OUTPUT,
        keep: Keep::Tail,
    })
    .await
    .map_err(HandlerError::Spawn)?;
    if o.timed_out {
        return Err(HandlerError::TimedOut(timeout));
    }
    match o.status {
        Some(st) if !st.success() => tracing::warn!(script, status = %st, "event handler failed"),
        _ => {}
    }
    Ok((o.output, o.truncated))
}

/// A handler that could not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("cannot start /bin/sh: {0}")]
    Spawn(std::io::Error),
    #[error("timed out after {}; killed with its process group", crate::duration::format(*.0))]
    TimedOut(Duration),
}

fn with_newline(p: &[u8]) -> Vec<u8> {
    let mut v = p.to_vec();
    if !v.is_empty() && v.last() != Some(&b'\n') {
        v.push(b'\n');
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use nuvol_gossip::{InboundQueryId, MemberEventKind, MemberStatus};

    #[test]
    fn parse_specs() {
        let h = HandlerSpec::parse("member-join,user:deploy=./x.sh arg=1").unwrap();
        assert_eq!(h.script, "./x.sh arg=1");
        assert_eq!(h.filters.len(), 2);
        let h = HandlerSpec::parse("echo a=b").unwrap();
        assert_eq!(h.script, "echo a=b");
        assert_eq!(h.filters[0].event, "*");
        assert!(HandlerSpec::parse("bogus=x").is_err());
        assert!(HandlerSpec::parse("user=").is_err());
    }

    #[test]
    fn filters_match() {
        let f = EventFilter::parse_list("user:deploy,query").unwrap();
        let ue = Event::User {
            ltime: 1,
            name: "deploy".into(),
            payload: vec![],
            coalesce: false,
        };
        let other = Event::User {
            ltime: 1,
            name: "other".into(),
            payload: vec![],
            coalesce: false,
        };
        let q = Event::Query {
            id: InboundQueryId(1),
            ltime: 1,
            name: "x".into(),
            payload: vec![],
            source_node: "a".into(),
        };
        assert!(f.iter().any(|f| f.matches(&ue)));
        assert!(!f.iter().any(|f| f.matches(&other)));
        assert!(f.iter().any(|f| f.matches(&q)));
    }

    #[tokio::test]
    async fn script_gets_serf_environment() {
        let mut tags = BTreeMap::new();
        tags.insert("role".to_string(), "web".to_string());
        tags.insert("dc-name".to_string(), "bcn".to_string());
        let m = Member {
            name: "n1".into(),
            addr: "127.0.0.1:7946".parse().unwrap(),
            tags: tags.clone(),
            status: MemberStatus::Alive,
            vsn: [1, 5, 2, 2, 5, 5],
        };
        let ev = Event::Member {
            kind: MemberEventKind::Join,
            members: vec![m],
        };
        let (out, _) = invoke(
            "echo $SERF_EVENT $SERF_SELF_NAME $SERF_SELF_ROLE $SERF_TAG_DC_NAME; cat",
            "me",
            &tags,
            &ev,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "member-join me web bcn\nn1\t127.0.0.1\tweb\tdc-name=bcn,role=web\n"
        );
    }
}
