//! `/events`: the event log (live), sending a user event, running a query;
//! `/queries/{id}`: a query's acks and responses as they arrive.

use crate::i18n::{Lang, T};
use crate::page::{csrf, layout, notice, Field, Nav};
use crate::state::{Dash, LoggedEvent, QueryJob, QueryRow, PAYLOAD_SHOWN};
use crate::web::{html, parse_form, see_other, FormErrors, FormState, Req, Viewer};
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use nuvol_agent::http::Access;
use nuvol_agent::QueryUpdate;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Largest user event payload (serf's limit on the whole message is 512
/// bytes by default; the core refuses bigger ones with a clear error).
pub const MAX_PAYLOAD: usize = 512;
/// Longest query timeout accepted from the form.
pub const MAX_QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// `HH:MM:SS` UTC of a time.
pub fn clock(t: SystemTime) -> String {
    let s = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

pub fn event_row(_l: Lang, e: &LoggedEvent) -> Markup {
    html! {
        tr data-key=(e.seq) data-kind=(e.kind) {
            td { time { (clock(e.at)) } }
            td { (e.kind) }
            td { (e.subject) }
            td { (e.detail) }
        }
    }
}

fn forms(req: &Req, state: Option<&FormState>) -> Markup {
    let l = req.lang;
    if !req.may(Access::Operate) {
        return html! { p { a href={ "/login?next=/events" } { (T::LoginToAct.get(l)) } } };
    }
    let ev = state.and_then(|s| s.for_form("event"));
    let q = state.and_then(|s| s.for_form("query"));
    html! {
        div class="grid" {
            section class="card" {
                h2 id="h-send" { (T::UserEvent.get(l)) }
                @if ev.is_some() { (notice(T::FixErrors.get(l), true)) }
                form id="event" method="post" action="/events/send" {
                    (csrf(req))
                    (Field { form: "event", name: "name", label: T::Name.get(l), kind: "text", value: "", help: None, required: true }.render(ev))
                    (Field { form: "event", name: "payload", label: T::Payload.get(l), kind: "text", value: "", help: None, required: false }.render(ev))
                    div class="field" {
                        label { input type="checkbox" name="coalesce" value="1"; " " (T::Coalesce.get(l)) }
                    }
                    button type="submit" { (T::Send.get(l)) }
                }
            }
            section class="card" {
                h2 id="h-query" { (T::RunQuery.get(l)) }
                @if q.is_some() { (notice(T::FixErrors.get(l), true)) }
                form id="query" method="post" action="/queries" {
                    (csrf(req))
                    (Field { form: "query", name: "name", label: T::Name.get(l), kind: "text", value: "", help: None, required: true }.render(q))
                    (Field { form: "query", name: "payload", label: T::Payload.get(l), kind: "text", value: "", help: None, required: false }.render(q))
                    (Field { form: "query", name: "nodes", label: T::OnlyNodes.get(l), kind: "text", value: "", help: None, required: false }.render(q))
                    (Field { form: "query", name: "timeout", label: T::Timeout.get(l), kind: "text", value: "5s", help: Some(T::TimeoutHelp.get(l)), required: false }.render(q))
                    button type="submit" { (T::Run.get(l)) }
                }
            }
        }
    }
}

fn render(dash: &Dash, req: &Req, state: Option<&FormState>, status: StatusCode) -> Response {
    let l = req.lang;
    let events = dash.recent(crate::state::EVENT_LOG);
    let done = super::query(req, &["done"])
        .ok()
        .and_then(|q| super::param(&q, "done").map(str::to_owned));
    let body = html! {
        @if done.as_deref() == Some("event") { (notice(T::EventSent.get(l), false)) }
        (forms(req, state))
        section {
            h2 id="h-log" { (T::RecentEvents.get(l)) }
            (super::overview::event_table(l, &events, crate::state::EVENT_LOG))
        }
    };
    html(
        status,
        layout(
            req,
            T::Events.get(l),
            Nav::Events,
            Some("/live?page=events"),
            body,
        ),
    )
}

pub async fn page(State(dash): State<Arc<Dash>>, Viewer(req): Viewer) -> Response {
    if let Some(r) = super::reject_unknown(&req, &["done"]) {
        return r;
    }
    render(&dash, &req, None, StatusCode::OK)
}

fn check_name(f: &crate::web::Fields, errs: &mut FormErrors, l: Lang) -> String {
    let name = f.get("name").map(|s| s.trim()).unwrap_or("").to_owned();
    if name.is_empty() {
        errs.add("name", T::Required.get(l));
    } else if name.len() > 128 || name.chars().any(char::is_control) {
        errs.add("name", T::NameTooLong.get(l));
    } else if name.starts_with("_serf_") || name.starts_with("_nuvol_") {
        errs.add("name", T::ReservedName.get(l));
    }
    name
}

fn check_payload(f: &crate::web::Fields, errs: &mut FormErrors, l: Lang) -> Vec<u8> {
    let p = f.get("payload").cloned().unwrap_or_default();
    if p.len() > MAX_PAYLOAD {
        errs.add(
            "payload",
            crate::i18n::fill(T::PayloadTooLong.get(l), &[&MAX_PAYLOAD.to_string()]),
        );
    }
    p.into_bytes()
}

/// `POST /events/send`.
pub async fn send(State(dash): State<Arc<Dash>>, Viewer(req): Viewer, body: Bytes) -> Response {
    let l = req.lang;
    let f = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return super::settings::bad_form(&req, e),
    };
    let mut errs = FormErrors::default();
    let name = check_name(&f, &mut errs, l);
    let payload = check_payload(&f, &mut errs, l);
    if errs.is_empty() {
        let coalesce = f.get("coalesce").is_some_and(|v| v == "1");
        if let Err(e) = dash
            .cluster
            .user_event(name.clone(), payload, coalesce)
            .await
        {
            errs.add("name", e.to_string());
        }
    }
    if !errs.is_empty() {
        let st = FormState {
            form: "event",
            values: f,
            errors: errs,
        };
        return render(&dash, &req, Some(&st), StatusCode::BAD_REQUEST);
    }
    see_other("/events?done=event")
}

/// `POST /queries`: start a query, then show it.
pub async fn query(State(dash): State<Arc<Dash>>, Viewer(req): Viewer, body: Bytes) -> Response {
    let l = req.lang;
    let f = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return super::settings::bad_form(&req, e),
    };
    let mut errs = FormErrors::default();
    let name = check_name(&f, &mut errs, l);
    let payload = check_payload(&f, &mut errs, l);
    let timeout = match f.get("timeout").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Duration::from_secs(5),
        Some(t) => match nuvol_agent::duration::parse(t) {
            Ok(d) if !d.is_zero() && d <= MAX_QUERY_TIMEOUT => d,
            Ok(_) => {
                errs.add("timeout", T::TimeoutRange.get(l));
                Duration::ZERO
            }
            Err(e) => {
                errs.add("timeout", e.to_string());
                Duration::ZERO
            }
        },
    };
    let nodes: Vec<String> = f
        .get("nodes")
        .map(|s| {
            s.split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if nodes.len() > 64 || nodes.iter().any(|n| n.len() > 128) {
        errs.add("nodes", T::TooManyNodes.get(l));
    }
    let mut stream = None;
    if errs.is_empty() {
        let params = nuvol_gossip::QueryParams {
            filter_nodes: nodes,
            request_ack: true,
            timeout,
            ..Default::default()
        };
        match dash.cluster.query(name.clone(), payload, params).await {
            Ok(s) => stream = Some(s),
            Err(e) => errs.add("name", e.to_string()),
        }
    }
    let Some(stream) = stream else {
        let st = FormState {
            form: "query",
            values: f,
            errors: errs,
        };
        return render(&dash, &req, Some(&st), StatusCode::BAD_REQUEST);
    };
    let id = dash.new_query(&name);
    tokio::spawn(follow(dash.clone(), id, stream));
    see_other(&format!("/queries/{id}"))
}

/// Record a query's acks and responses as they arrive.
async fn follow(dash: Arc<Dash>, id: u64, mut s: nuvol_agent::QueryStream) {
    let start = Instant::now();
    while let Some(u) = s.updates.recv().await {
        let at = start.elapsed();
        let row = match u {
            QueryUpdate::Ack(from) => QueryRow::Ack(from, at),
            QueryUpdate::Response { from, payload } => {
                let shown = &payload[..payload.len().min(PAYLOAD_SHOWN)];
                QueryRow::Response(from, String::from_utf8_lossy(shown).into_owned(), at)
            }
        };
        dash.update_query(id, Some(row));
    }
    let _ = s.done.await;
    dash.update_query(id, None);
}

pub fn ack_row(from: &str, at: Duration) -> Markup {
    html! { tr data-key=(from) { td { (from) } td class="num" { (format!("{:.1} ms", at.as_secs_f64() * 1000.0)) } } }
}

pub fn response_row(from: &str, payload: &str, at: Duration) -> Markup {
    html! {
        tr data-key=(from) {
            td { (from) }
            td { code { (payload) } }
            td class="num" { (format!("{:.1} ms", at.as_secs_f64() * 1000.0)) }
        }
    }
}

pub fn query_state(l: Lang, j: &QueryJob) -> &'static str {
    if j.done {
        T::QueryDone.get(l)
    } else {
        T::QueryRunning.get(l)
    }
}

/// `GET /queries/{id}`.
pub async fn query_page(
    State(dash): State<Arc<Dash>>,
    Viewer(req): Viewer,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    if let Some(r) = super::reject_unknown(&req, &[]) {
        return r;
    }
    let l = req.lang;
    // An id that is not even UTF-8 names no query either.
    let id = id.map_or_else(|_| String::new(), |Path(id)| id);
    let Some(j) = id.parse::<u64>().ok().and_then(|id| dash.query(id)) else {
        return super::not_found_page(&req);
    };
    let body = html! {
        p { (T::Query.get(l)) " " code { (j.name) } " · " (clock(j.started)) " UTC · " span id="query-state" { (query_state(l, &j)) } }
        div class="grid" {
            section {
                h2 id="h-acks" { (T::Acks.get(l)) " (" span id="query-acks" { (j.acks.len()) } ")" }
                div class="scroll" tabindex="0" role="region" aria-label=(T::Acks.get(l)) {
                    table {
                        thead { tr { th scope="col" { (T::Node.get(l)) } th scope="col" { (T::Time.get(l)) } } }
                        tbody data-list="acks" { @for (n, at) in &j.acks { (ack_row(n, *at)) } }
                    }
                }
            }
            section {
                h2 id="h-resp" { (T::Responses.get(l)) " (" span id="query-responses" { (j.responses.len()) } ")" }
                div class="scroll" tabindex="0" role="region" aria-label=(T::Responses.get(l)) {
                    table {
                        thead { tr { th scope="col" { (T::Node.get(l)) } th scope="col" { (T::Payload.get(l)) } th scope="col" { (T::Time.get(l)) } } }
                        tbody data-list="responses" { @for (n, p, at) in &j.responses { (response_row(n, p, *at)) } }
                    }
                }
            }
        }
    };
    let live = format!("/live?page=query&query={}", j.id);
    html(
        StatusCode::OK,
        layout(&req, T::Query.get(l), Nav::Events, Some(&live), body),
    )
}
