//! `/settings`: this node's tags (set and delete), the bootstrap addresses
//! (saved in the data dir and joined now, as Cloudy's Serf settings page
//! did), and what the agent runs.

use crate::i18n::T;
use crate::page::{csrf, layout, notice, Field, Nav};
use crate::state::Dash;
use crate::web::{html, parse_form, see_other, FormErrors, FormState, Req, Viewer};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use nuvol_agent::http::Access;
use nuvol_agent::join::{SavedJoin, SavedJoinError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A form that is not even a form (a client's bug or an attack): 400 and
/// the reason.
pub fn bad_form(req: &Req, message: String) -> Response {
    let body = html! { (notice(&message, true)) };
    html(
        StatusCode::BAD_REQUEST,
        layout(req, req.t(T::Error), Nav::None, None, body),
    )
}

async fn render(dash: &Dash, req: &Req, state: Option<&FormState>, status: StatusCode) -> Response {
    let l = req.lang;
    let tags = match dash.cluster.tags().await {
        Ok(t) => t.tags,
        Err(e) => return super::unavailable(req, e),
    };
    let dir = dash.data_dir.clone();
    let saved = tokio::task::spawn_blocking(move || SavedJoin::load(&dir))
        .await
        .unwrap_or_else(|e| {
            Err(SavedJoinError::Invalid {
                index: 0,
                message: e.to_string(),
            })
        });
    let owned = dash.cluster.owned_tags();
    let done = super::query(req, &["done"])
        .ok()
        .and_then(|q| super::param(&q, "done").map(str::to_owned));
    let tag_st = state.and_then(|s| s.for_form("tags"));
    let boot_st = state.and_then(|s| s.for_form("bootstrap"));
    let (saved_text, saved_err) = match &saved {
        Ok(s) => (s.addrs.join("\n"), None),
        Err(e) => (String::new(), Some(e.to_string())),
    };
    let components = dash
        .registry
        .get()
        .map(|r| r.status.snapshot())
        .unwrap_or_default();
    let body = html! {
        @match done.as_deref() {
            Some("tag") => (notice(T::TagSaved.get(l), false)),
            Some("untag") => (notice(T::TagDeleted.get(l), false)),
            Some("bootstrap") => (notice(T::BootstrapSaved.get(l), false)),
            _ => {}
        }
        @if state.is_some_and(|s| !s.errors.is_empty()) { (notice(T::FixErrors.get(l), true)) }
        section {
            h2 id="h-tags" { (T::Tags.get(l)) }
            div class="scroll" tabindex="0" role="region" aria-label=(T::Tags.get(l)) {
                table id="own-tags" {
                    thead { tr { th scope="col" { (T::Key.get(l)) } th scope="col" { (T::Value.get(l)) } th scope="col" { (T::Action.get(l)) } } }
                    tbody {
                        @for (k, v) in &tags {
                            tr data-key=(k) {
                                th scope="row" { code { (k) } }
                                td { code { (crate::pages::nodes::truncate(v, 200)) } }
                                td {
                                    @if let Some(o) = owned.get(k) {
                                        span class="muted" { (T::OwnedBy.get(l)) " " (o) }
                                    } @else if req.may(Access::Operate) {
                                        form method="post" action="/settings/tags" {
                                            (csrf(req))
                                            input type="hidden" name="key" value=(k);
                                            input type="hidden" name="action" value="delete";
                                            button type="submit" class="secondary" aria-label={ (T::Delete.get(l)) " " (k) } { (T::Delete.get(l)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if req.may(Access::Operate) {
                h3 { (T::SetTag.get(l)) }
                form id="tags" method="post" action="/settings/tags" class="inline" {
                    (csrf(req))
                    input type="hidden" name="action" value="set";
                    (Field { form: "tags", name: "key", label: T::Key.get(l), kind: "text", value: "", help: None, required: true }.render(tag_st))
                    (Field { form: "tags", name: "value", label: T::Value.get(l), kind: "text", value: "", help: None, required: false }.render(tag_st))
                    button type="submit" { (T::Save.get(l)) }
                }
            } @else {
                p { a href="/login?next=/settings" { (T::LoginToAct.get(l)) } }
            }
        }
        section {
            h2 id="h-boot" { (T::Bootstrap.get(l)) }
            @if let Some(e) = &saved_err { (notice(e, true)) }
            @if req.may(Access::Admin) {
                form id="bootstrap" method="post" action="/settings/bootstrap" {
                    (csrf(req))
                    (Field { form: "bootstrap", name: "addrs", label: T::Bootstrap.get(l), kind: "textarea", value: &saved_text, help: Some(T::BootstrapHelp.get(l)), required: false }.render(boot_st))
                    button type="submit" { (T::Save.get(l)) }
                }
            } @else {
                @if saved_text.is_empty() { p class="muted" { "–" } } @else { pre { (saved_text) } }
                p { a href="/login?next=/settings" { (T::LoginToAct.get(l)) } }
            }
        }
        section {
            h2 id="h-comp" { (T::Components.get(l)) }
            div class="scroll" tabindex="0" role="region" aria-label=(T::Components.get(l)) {
                table id="components" {
                    thead { tr { th scope="col" { (T::Name.get(l)) } th scope="col" { (T::Status.get(l)) } th scope="col" { (T::Details.get(l)) } } }
                    tbody {
                        @for c in &components {
                            tr { th scope="row" { (c.name) } td { (format!("{:?}", c.state).to_lowercase()) } td { (c.last_error.clone().unwrap_or_default()) } }
                        }
                    }
                }
            }
        }
    };
    html(
        status,
        layout(req, T::Settings.get(l), Nav::Settings, None, body),
    )
}

pub async fn page(State(dash): State<Arc<Dash>>, Viewer(req): Viewer) -> Response {
    if let Some(r) = super::reject_unknown(&req, &["done"]) {
        return r;
    }
    render(&dash, &req, None, StatusCode::OK).await
}

/// Longest tag key and value accepted (serf's whole tag set must fit its
/// 512-byte meta; the core refuses more with its own error).
pub const MAX_TAG_KEY: usize = 64;

/// `POST /settings/tags`: `action=set` (key, value) or `action=delete` (key).
pub async fn tags(State(dash): State<Arc<Dash>>, Viewer(req): Viewer, body: Bytes) -> Response {
    let l = req.lang;
    let f = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return bad_form(&req, e),
    };
    let key = f
        .get("key")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let value = f.get("value").cloned().unwrap_or_default();
    let action = f.get("action").map(String::as_str).unwrap_or("set");
    let mut errs = FormErrors::default();
    if key.is_empty() {
        errs.add("key", T::Required.get(l));
    } else if key.len() > MAX_TAG_KEY || key.chars().any(|c| c.is_control() || c == '=') {
        errs.add(
            "key",
            crate::i18n::fill(T::BadTagKey.get(l), &[&MAX_TAG_KEY.to_string()]),
        );
    }
    if value.chars().any(char::is_control) {
        errs.add("value", T::NoControl.get(l));
    }
    let (set, delete, done) = match action {
        "set" => (BTreeMap::from([(key.clone(), value)]), Vec::new(), "tag"),
        "delete" => (BTreeMap::new(), vec![key.clone()], "untag"),
        other => {
            return bad_form(
                &req,
                crate::i18n::fill(T::UnknownAction.get(l), &[&format!("{other:?}")]),
            )
        }
    };
    if errs.is_empty() {
        if let Err(e) = dash.cluster.set_user_tags(set, delete).await {
            errs.add("key", e.to_string());
        }
    }
    if !errs.is_empty() {
        let st = FormState {
            form: "tags",
            values: f,
            errors: errs,
        };
        return render(&dash, &req, Some(&st), StatusCode::BAD_REQUEST).await;
    }
    see_other(&format!("/settings?done={done}"))
}

/// `POST /settings/bootstrap`: save the addresses (one per line), then
/// join them in the background.
pub async fn bootstrap(
    State(dash): State<Arc<Dash>>,
    Viewer(req): Viewer,
    body: Bytes,
) -> Response {
    let f = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return bad_form(&req, e),
    };
    let text = f.get("addrs").cloned().unwrap_or_default();
    let lines: Vec<String> = text
        .lines()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let saved = SavedJoin::new(lines);
    let result = match saved {
        Ok(s) => {
            let dir = dash.data_dir.clone();
            let s2 = s.clone();
            match tokio::task::spawn_blocking(move || s2.save(&dir)).await {
                Ok(Ok(())) => Ok(s),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(s) => {
            dash.log(
                "settings",
                &dash.node_name,
                format!("bootstrap addresses: {}", s.addrs.join(", ")),
            );
            if !s.addrs.is_empty() {
                let cluster = dash.cluster.clone();
                tokio::spawn(async move {
                    if let Err(e) = cluster.join(&s.addrs, false).await {
                        tracing::warn!(error = %e, "joining the saved bootstrap addresses failed");
                    }
                });
            }
            see_other("/settings?done=bootstrap")
        }
        Err(message) => {
            let mut errors = FormErrors::default();
            errors.add("addrs", message);
            let st = FormState {
                form: "bootstrap",
                values: f,
                errors,
            };
            render(&dash, &req, Some(&st), StatusCode::BAD_REQUEST).await
        }
    }
}
