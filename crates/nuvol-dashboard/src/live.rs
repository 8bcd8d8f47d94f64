//! Live updates.
//!
//! [`hub`] (the component's run loop) follows the agent's event streams —
//! member events, user events, the components' event bus that `/v1/events`
//! serves — and the catalog's changes, keeps the event log, and broadcasts
//! what changed ([`Change`]): one member, one service instance (the catalog
//! is diffed, so a change sends one row, never the whole catalog), one
//! event. [`stream`] (`GET /live?page=...`) turns those into server-sent
//! events of rows rendered in the viewer's language by the same functions
//! the pages use, filtered like the page that listens.

use crate::i18n::Lang;
use crate::pages::nodes::{member_row, view_of, NodeFilter};
use crate::pages::services::{key as service_key, service_row, RowCtx, ServiceFilter};
use crate::state::{Change, Dash};
use crate::web::Viewer;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use nuvol_agent::chan::RecvError;
use nuvol_agent::{ComponentError, RunCtx};
use nuvol_catalog::model::ServiceEntry;
use nuvol_gossip::Event as GEvent;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Shown of a user event's payload in the log.
const PAYLOAD_LOGGED: usize = 200;

/// The component's run loop: feed the log and the live stream until stop.
pub async fn hub(dash: Arc<Dash>, ctx: &RunCtx) -> Result<(), ComponentError> {
    let mut members = ctx.cluster().member_events();
    let mut events = ctx.cluster().events();
    let mut bus = ctx.registry().events.subscribe();
    let mut changes = dash.catalog.as_ref().map(|c| c.changes());
    // What each instance looked like, as a hash: diffing needs no copy of
    // the catalog (2,000 entries are about a megabyte).
    let mut known: HashMap<String, u64> = dash
        .catalog
        .as_ref()
        .map(|c| {
            c.entries(&Default::default())
                .iter()
                .map(|e| (service_key(e), entry_hash(e)))
                .collect()
        })
        .unwrap_or_default();
    let mut counters = dash.counters().await;
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            () = ctx.stopping() => return Ok(()),
            _ = tick.tick() => {
                // Keep the CPU sampler's window short for the overview.
                let d = dash.clone();
                let _ = tokio::task::spawn_blocking(move || d.cpu_sample()).await;
            }
            r = members.recv() => match r {
                Ok(GEvent::Member { kind, members }) => {
                    for m in members {
                        dash.log(kind.as_str(), &m.name, format!("{} {}", m.addr, m.status.as_str()));
                        dash.publish(Change::Member(m));
                    }
                    publish_counters(&dash, &mut counters).await;
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Ok(()),
            },
            r = events.recv() => match r {
                Ok(GEvent::User { name, payload, .. }) => {
                    let shown = &payload[..payload.len().min(PAYLOAD_LOGGED)];
                    dash.log("user", &name, String::from_utf8_lossy(shown).into_owned());
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Ok(()),
            },
            r = bus.recv() => match r {
                // Member events come from the cluster above, unduplicated.
                Ok(ev) if !ev.event.starts_with("member-") => {
                    let subject = ["node", "name", "type"]
                        .iter()
                        .find_map(|k| ev.data.get(*k).and_then(|v| v.as_str()))
                        .unwrap_or("")
                        .to_owned();
                    let mut detail = ev.data.to_string();
                    detail.truncate(PAYLOAD_LOGGED);
                    dash.log(&ev.event, &subject, detail);
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Ok(()),
            },
            r = async {
                match changes.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                if !r {
                    changes = None;
                    continue;
                }
                let Some(c) = &dash.catalog else { continue };
                let entries = c.entries(&Default::default());
                let now: HashMap<String, u64> = entries
                    .iter()
                    .map(|e| (service_key(e), entry_hash(e)))
                    .collect();
                let mut any = false;
                for e in entries {
                    let k = service_key(&e);
                    if known.get(&k) != now.get(&k) {
                        any = true;
                        dash.publish(Change::Service(Box::new(e)));
                    }
                }
                for k in known.keys() {
                    if !now.contains_key(k) {
                        any = true;
                        dash.publish(Change::ServiceGone(k.clone()));
                    }
                }
                known = now;
                if any {
                    publish_counters(&dash, &mut counters).await;
                }
            }
        }
    }
}

/// Publish the overview counters that differ from `last` (and remember
/// them): a change sends only the figures it moved.
async fn publish_counters(dash: &Dash, last: &mut BTreeMap<String, usize>) {
    let now = dash.counters().await;
    let changed = counters_changed(last, &now);
    if !changed.is_empty() {
        dash.publish(Change::Counts(changed.into()));
    }
    *last = now;
}

/// The counters of `now` whose value is not the one in `last`.
fn counters_changed(
    last: &BTreeMap<String, usize>,
    now: &BTreeMap<String, usize>,
) -> Vec<(String, usize)> {
    now.iter()
        .filter(|(k, v)| last.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// The live message of one query row.
fn render_row(r: &crate::state::QueryRow) -> Option<Event> {
    use crate::state::QueryRow;
    Some(match r {
        QueryRow::Ack(n, at) => upsert(
            "acks",
            n,
            crate::pages::events::ack_row(n, *at).into_string(),
        ),
        QueryRow::Response(n, p, at) => upsert(
            "responses",
            n,
            crate::pages::events::response_row(n, p, *at).into_string(),
        ),
    })
}

/// A hash of everything an instance shows (its JSON form).
fn entry_hash(e: &ServiceEntry) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(e).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// What one listener wants.
struct Listener {
    lang: Lang,
    page: String,
    nodes: NodeFilter,
    services: ServiceFilter,
    query: Option<u64>,
    csrf: Option<String>,
    /// The session this viewer views through, when its address alone
    /// would not do: the stream ends with the session.
    session: Option<String>,
}

fn msg(v: serde_json::Value) -> Event {
    Event::default()
        .event("u")
        .json_data(v)
        .unwrap_or_else(|_| Event::default().event("u").data("{}"))
}

fn upsert(list: &str, key: &str, html: String) -> Event {
    msg(serde_json::json!({"op": "upsert", "list": list, "key": key, "html": html}))
}

fn remove(list: &str, key: &str) -> Event {
    msg(serde_json::json!({"op": "remove", "list": list, "key": key}))
}

fn text(id: &str, t: String) -> Event {
    msg(serde_json::json!({"op": "text", "id": id, "text": t}))
}

async fn render(dash: &Dash, l: &Listener, c: Change) -> Vec<Event> {
    let lang = l.lang;
    match c {
        Change::Event(e) if matches!(l.page.as_str(), "overview" | "events") => {
            vec![upsert(
                "events",
                &e.seq.to_string(),
                crate::pages::events::event_row(lang, &e).into_string(),
            )]
        }
        Change::Member(m) if l.page == "nodes" => {
            let coords = dash
                .cluster
                .coordinates()
                .await
                .map(|c| c.into_iter().collect())
                .unwrap_or_default();
            let scan = dash.scan();
            let name = m.name.clone();
            let v = view_of(dash, m, &coords, scan.as_ref());
            if l.nodes.matches(&v) {
                vec![upsert("members", &name, member_row(lang, &v).into_string())]
            } else {
                vec![remove("members", &name)]
            }
        }
        Change::Service(e) if l.page == "services" => {
            let scan = dash.scan();
            let domain = dash.info("dns_domain");
            let rc = RowCtx {
                l: lang,
                scan: scan.as_ref(),
                domain: domain.as_deref(),
                unpublish: l.csrf.as_deref().map(|t| (dash.node_name.as_str(), t)),
            };
            let k = service_key(&e);
            if l.services.matches(&e) {
                vec![upsert("services", &k, service_row(&rc, &e).into_string())]
            } else {
                vec![remove("services", &k)]
            }
        }
        Change::ServiceGone(k) if l.page == "services" => vec![remove("services", &k)],
        Change::Counts(changed) if l.page == "overview" => changed
            .iter()
            .map(|(id, n)| text(id, n.to_string()))
            .collect(),
        Change::Query(id, row) if l.query == Some(id) => {
            let Some(j) = dash.query(id) else {
                return Vec::new();
            };
            let mut out = vec![
                text(
                    "query-state",
                    crate::pages::events::query_state(lang, &j).to_owned(),
                ),
                text("query-acks", j.acks.len().to_string()),
                text("query-responses", j.responses.len().to_string()),
            ];
            if let Some(r) = &row {
                out.extend(render_row(r));
            }
            out
        }
        _ => Vec::new(),
    }
}

/// Counts a stream open while it lives.
struct StreamGauge(prometheus_client::metrics::gauge::Gauge);

impl StreamGauge {
    fn new(m: &crate::state::Metrics) -> Self {
        m.live_streams.inc();
        StreamGauge(m.live_streams.clone())
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `GET /live?page=overview|nodes|services|events|query&...`.
pub async fn stream(
    State(dash): State<Arc<Dash>>,
    Viewer(req): Viewer,
    headers: axum::http::HeaderMap,
) -> Response {
    let q = match crate::pages::query(&req, &["page", "q", "status", "type", "query", "since"]) {
        Ok(q) => q,
        Err((_, m)) => return (axum::http::StatusCode::BAD_REQUEST, m).into_response(),
    };
    let p = |k| crate::pages::param(&q, k).unwrap_or("").to_owned();
    let page = p("page");
    if !matches!(
        page.as_str(),
        "overview" | "nodes" | "services" | "events" | "query"
    ) {
        return (axum::http::StatusCode::BAD_REQUEST, "unknown page").into_response();
    }
    let listener = Listener {
        lang: req.lang,
        nodes: NodeFilter {
            q: p("q"),
            status: p("status"),
            ..Default::default()
        },
        services: ServiceFilter {
            stype: p("type"),
            q: p("q"),
            ..Default::default()
        },
        query: p("query").parse().ok(),
        csrf: req
            .may(nuvol_agent::http::Access::Operate)
            .then(|| req.csrf().to_owned()),
        page,
        session: req
            .client
            .is_none_or(|ip| !dash.view.allows(ip))
            .then(|| crate::auth::cookie(&headers, crate::auth::SESSION_COOKIE).map(str::to_owned))
            .flatten(),
    };
    let since: Option<u64> = crate::pages::param(&q, "since").and_then(|s| s.parse().ok());
    let (rx, caught_up, complete) = dash.subscribe_since(since.unwrap_or(u64::MAX));
    let stop = dash.stop_token();
    let listener = Arc::new(listener);
    // A listener that lags misses changes (the broadcast queue holds 1024);
    // its page is then stale until reloaded, never wrong in what it shows.
    let gauge = StreamGauge::new(&dash.metrics);
    let missed = dash.metrics.live_missed.clone();
    // A query's page was rendered before this stream subscribed: replay
    // its rows (upserts by node, so repeats are harmless) after
    // subscribing, so none that arrived in between is lost.
    let replay: Vec<Event> = match listener.query.and_then(|id| dash.query(id)) {
        Some(j) => {
            let mut out = Vec::new();
            for (n, at) in &j.acks {
                out.extend(render_row(&crate::state::QueryRow::Ack(n.clone(), *at)));
            }
            for (n, p, at) in &j.responses {
                out.extend(render_row(&crate::state::QueryRow::Response(
                    n.clone(),
                    p.clone(),
                    *at,
                )));
            }
            out.push(text("query-acks", j.acks.len().to_string()));
            out.push(text("query-responses", j.responses.len().to_string()));
            out.push(text(
                "query-state",
                crate::pages::events::query_state(listener.lang, &j).to_owned(),
            ));
            out
        }
        None => Vec::new(),
    };
    let mut replay = replay;
    if !complete {
        replay.push(msg(serde_json::json!({"op": "reload"})));
    }
    let replay = futures::stream::iter(replay.into_iter().map(Ok::<_, Infallible>));
    // Changes made since the page was rendered, then the live ones (by
    // sequence number, so none is sent twice).
    let last_missed = caught_up.last().map_or(0, |(s, _)| *s);
    let caught_up = futures::stream::iter(caught_up);
    let live = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |r| {
        let _ = &gauge;
        if let Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) = &r {
            missed.inc_by(*n);
        }
        std::future::ready(r.ok().filter(|(seq, _)| *seq > last_missed))
    });
    let s = caught_up
        .chain(live)
        .map(|(_, c)| c)
        .take_while({
            let (dash, l) = (dash.clone(), listener.clone());
            move |_| {
                let alive = l
                    .session
                    .as_deref()
                    .is_none_or(|id| dash.sessions.lookup(id).is_some());
                std::future::ready(alive)
            }
        })
        .then(move |c| {
            let (dash, l) = (dash.clone(), listener.clone());
            async move { render(&dash, &l, c).await }
        })
        .flat_map(futures::stream::iter)
        .map(Ok::<_, Infallible>);
    let s = replay
        .chain(s)
        .take_until(async move { stop.cancelled().await });
    sse(s)
}

/// A stream of live messages as the response: server-sent events, kept
/// alive every 15 s, never cached (also `/apps/{name}/live`'s).
pub fn sse<S>(s: S) -> Response
where
    S: futures::Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let mut resp = Sse::new(s)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_counters_that_moved_are_sent() {
        let m = |v: &[(&str, usize)]| -> BTreeMap<String, usize> {
            v.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
        };
        let last = m(&[
            ("count-members", 3),
            ("count-alive", 3),
            ("svc-passing", 10),
        ]);
        let now = m(&[
            ("count-members", 3),
            ("count-alive", 2),
            ("count-failed", 1),
            ("svc-passing", 10),
        ]);
        assert_eq!(
            counters_changed(&last, &now),
            vec![
                ("count-alive".to_owned(), 2),
                ("count-failed".to_owned(), 1)
            ]
        );
        assert!(counters_changed(&now, &now).is_empty());
    }
}
