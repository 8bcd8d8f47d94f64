//! Event handler scripts with serf's interface: `[FILTER=]SCRIPT` run by
//! `/bin/sh -c`, `SERF_*` environment variables, the event on stdin, and for
//! queries the script's output as the response.

use nuvol_gossip::{Event, Member};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// serf's limit on the output collected from a handler.
pub const MAX_OUTPUT: usize = 8 * 1024;

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
    pub fn parse_list(v: &str) -> Result<Vec<EventFilter>, String> {
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
                    return Err(format!("invalid event filter {e:?}"));
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
    pub fn parse(s: &str) -> Result<HandlerSpec, String> {
        // serf: the filter is the part before '=' if it has no spaces.
        let (filter, script) = match s.split_once('=') {
            Some((f, rest)) if !f.contains(' ') && !f.is_empty() => (f, rest),
            _ => ("", s),
        };
        if script.trim().is_empty() {
            return Err(format!("empty script in event handler {s:?}"));
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

/// Run `script` for `ev`; returns the (truncated) output.
pub async fn invoke(
    script: &str,
    self_name: &str,
    self_tags: &BTreeMap<String, String>,
    ev: &Event,
    timeout: Option<Duration>,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(script);
    cmd.env("SERF_EVENT", event_type(ev));
    cmd.env("SERF_SELF_NAME", self_name);
    cmd.env(
        "SERF_SELF_ROLE",
        self_tags.get("role").map(String::as_str).unwrap_or(""),
    );
    for (k, v) in self_tags {
        cmd.env(format!("SERF_TAG_{}", sanitize_tag(k)), v);
    }
    let stdin_data = match ev {
        Event::Member { members, .. } => member_stdin(members),
        Event::User {
            name,
            ltime,
            payload,
            ..
        } => {
            cmd.env("SERF_USER_EVENT", name);
            cmd.env("SERF_USER_LTIME", ltime.to_string());
            with_newline(payload)
        }
        Event::Query {
            name,
            ltime,
            payload,
            ..
        } => {
            cmd.env("SERF_QUERY_NAME", name);
            cmd.env("SERF_QUERY_LTIME", ltime.to_string());
            with_newline(payload)
        }
    };
    cmd.stdin(std::process::Stdio::piped());
    cmd.stdout(std::process::Stdio::piped());
    cmd.stderr(std::process::Stdio::piped());
    cmd.kill_on_drop(true);
    let mut child = cmd.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            let _ = stdin.write_all(&stdin_data).await;
        });
    }
    let run = child.wait_with_output();
    let output = match timeout {
        Some(t) => match tokio::time::timeout(t, run).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "handler timed out",
                ))
            }
        },
        None => run.await?,
    };
    // serf collects stdout and stderr in one circular buffer, keeping the end.
    let mut all = output.stdout;
    all.extend_from_slice(&output.stderr);
    let truncated = all.len() > MAX_OUTPUT;
    if truncated {
        all.drain(..all.len() - MAX_OUTPUT);
    }
    if !output.status.success() {
        tracing::warn!(script, status = %output.status, "event handler failed");
    }
    Ok((all, truncated))
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
            None,
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
