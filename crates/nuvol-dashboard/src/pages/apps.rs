//! `/apps`: this node's apps with their actions and every other nuvol
//! node's apps; `/apps/store`: the store's templates as cards, by
//! category; `/apps/store/{id}`: the install form generated from the
//! template's parameters; `/apps/{name}`: status, actions and the log
//! (the last lines, then new ones live over `/apps/{name}/live`).
//!
//! Everything goes through the apps component's [`AppsHandle`], looked up
//! at run time in the registry: the apps component is built after the
//! dashboard (see ARCHITECTURE.md). Without it (apps off) or without an
//! engine yet, the pages say so, with status 200.

use crate::i18n::{fill, Lang, T};
use crate::page::{csrf, layout, notice, urlencode, Nav};
use crate::state::Dash;
use crate::web::{html, parse_form, see_other, Fields, Req, Viewer};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use maud::{html, Markup};
use nuvol_agent::http::{encode_segment, Access};
use nuvol_apps::appstore::StoreEntry;
use nuvol_apps::component::AppsHandle;
use nuvol_apps::manager::AppSummary;
use nuvol_apps::meta::{Param, ParamKind};
use nuvol_apps::reconcile::AppState;
use nuvol_apps::AppError;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Log lines rendered with the app's page.
pub const LOG_LINES: usize = 100;
/// Log lines a page keeps while new ones arrive (`data-max`).
pub const LOG_KEPT: usize = 500;
/// Characters of one log line shown (a line can be a megabyte).
pub const LOG_LINE_CHARS: usize = 2000;
/// How long the page waits for the past log lines.
const LOG_WAIT: Duration = Duration::from_secs(3);
/// How long an install's request waits before it redirects to the app's
/// page (which says it is installing); the install goes on in its task.
/// Below the REST API's 25 s, so a proxy or a browser never cuts it.
pub const INSTALL_WAIT: Duration = Duration::from_secs(20);

/// The apps handle, or the page that says why there is none.
/// (A page is large: boxed.)
fn handle(dash: &Dash, req: &Req) -> Result<AppsHandle, Box<Response>> {
    let Some(reg) = dash.registry.get() else {
        return Err(Box::new(super::unavailable(req, req.t(T::Starting))));
    };
    reg.get::<AppsHandle>()
        .ok_or_else(|| Box::new(off_page(req, req.t(T::AppsOff).to_owned())))
}

/// "Apps are off / not available": a plain page, status 200 (a node
/// without an engine is a normal node).
fn off_page(req: &Req, why: String) -> Response {
    let body = html! { (notice(&why, false)) };
    html(
        StatusCode::OK,
        layout(req, req.t(T::Apps), Nav::Apps, None, body),
    )
}

fn unavailable_text(l: Lang, e: &AppError) -> String {
    match e {
        AppError::Unavailable(why) => fill(T::AppsUnavailable.get(l), &[why]),
        e => fill(T::AppsUnavailable.get(l), &[&e.to_string()]),
    }
}

/// An app's state, in words and colour.
pub fn state_badge(l: Lang, s: AppState) -> Markup {
    let (t, class) = match s {
        AppState::Running => (T::StRunning, "ok"),
        AppState::Stopped => (T::StStopped, "off"),
        AppState::Starting => (T::StStarting, "warn"),
        AppState::Installing => (T::StInstalling, "warn"),
        AppState::Upgrading => (T::StUpgrading, "warn"),
        AppState::Unhealthy => (T::StUnhealthy, "bad"),
        AppState::Failed => (T::StFailed, "bad"),
    };
    html! { span class={ "badge " (class) } data-state=(s.as_str()) { (t.get(l)) } }
}

fn app_link(a: &AppSummary, me: &str) -> String {
    if a.node == me {
        format!("/apps/{}", encode_segment(&a.name))
    } else {
        format!(
            "/apps/{}?node={}",
            encode_segment(&a.name),
            urlencode(&a.node)
        )
    }
}

/// The start/stop/restart/remove buttons of one of this node's apps.
fn actions(req: &Req, name: &str) -> Markup {
    let l = req.lang;
    let b = |action: &str, t: T, class: &str| {
        html! {
            form method="post" action={ "/apps/" (encode_segment(name)) "/" (action) } class="inline" {
                (csrf(req))
                button type="submit" class=(class) aria-label={ (t.get(l)) " " (name) } { (t.get(l)) }
            }
        }
    };
    html! {
        div class="inline" {
            (b("start", T::StartApp, "secondary"))
            (b("stop", T::StopApp, "secondary"))
            (b("restart", T::RestartApp, "secondary"))
            (b("remove", T::RemoveApp, "danger"))
        }
    }
}

fn apps_table(req: &Req, me: &str, apps: &[&AppSummary], mine: bool, id: &str) -> Markup {
    let l = req.lang;
    let act = mine && req.may(Access::Operate);
    html! {
        div class="scroll" tabindex="0" role="region" aria-labelledby={ "h-" (id) } {
            table id=(id) {
                thead { tr {
                    @if !mine { th scope="col" { (T::Node.get(l)) } }
                    th scope="col" { (T::Name.get(l)) }
                    th scope="col" { (T::AppState.get(l)) }
                    th scope="col" { (T::Version.get(l)) }
                    th scope="col" class="hide-narrow" { (T::AppSource.get(l)) }
                    @if act { th scope="col" { (T::Action.get(l)) } }
                } }
                tbody {
                    @for a in apps {
                        tr data-app=(a.name) data-node=(a.node) {
                            @if !mine { td { a href={ "/nodes/" (encode_segment(&a.node)) } { (a.node) } } }
                            td {
                                a href=(app_link(a, me)) { (a.name) }
                                @if !a.title.is_empty() && a.title != a.name { br; span class="muted" { (a.title) } }
                            }
                            td {
                                (state_badge(l, a.state))
                                @if let Some(e) = &a.error { br; small class="muted" { (crate::pages::nodes::truncate(e, 200)) } }
                            }
                            td { (a.version) }
                            td class="hide-narrow" { (a.source) }
                            @if act { td { (actions(req, &a.name)) } }
                        }
                    }
                }
            }
        }
    }
}

fn done_notice(l: Lang, done: Option<&str>) -> Markup {
    let t = match done {
        Some("install") => T::AppInstalled,
        Some("installing") => T::AppInstalling,
        Some("start") => T::AppStarted,
        Some("stop") => T::AppStopped,
        Some("restart") => T::AppRestarted,
        Some("remove") => T::AppRemoved,
        _ => return html! {},
    };
    notice(t.get(l), false)
}

/// `GET /apps`.
pub async fn list(State(dash): State<Arc<Dash>>, Viewer(req): Viewer) -> Response {
    if let Some(r) = super::reject_unknown(&req, &["done"]) {
        return r;
    }
    let h = match handle(&dash, &req) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let l = req.lang;
    let done = super::query(&req, &["done"])
        .ok()
        .and_then(|q| super::param(&q, "done").map(str::to_owned));
    let all = match h.list_all().await {
        Ok(a) => a,
        Err(e) => return off_page(&req, unavailable_text(l, &e)),
    };
    let me = h.node().to_owned();
    let (mine, others): (Vec<&AppSummary>, Vec<&AppSummary>) =
        all.apps.iter().partition(|a| a.node == me);
    let body = html! {
        (done_notice(l, done.as_deref()))
        p { a href="/apps/store" { (T::AppStore.get(l)) } }
        h2 id="h-apps-here" { (T::ThisNode.get(l)) " (" (me) ")" }
        @if mine.is_empty() {
            p class="muted" id="apps-here-empty" { (T::NoApps.get(l)) }
        } @else {
            (apps_table(&req, &me, &mine, true, "apps-here"))
        }
        @if !req.may(Access::Operate) && !mine.is_empty() {
            p { a href="/login?next=/apps" { (T::LoginToAct.get(l)) } }
        }
        h2 id="h-apps-others" { (T::OtherNodes.get(l)) }
        @if others.is_empty() {
            p class="muted" id="apps-others-empty" { (T::NoOtherApps.get(l)) }
        } @else {
            (apps_table(&req, &me, &others, false, "apps-others"))
        }
        @for e in &all.errors {
            p class="error" { (fill(T::CouldNotAsk.get(l), &[&e.node, &e.error])) }
        }
    };
    html(
        StatusCode::OK,
        layout(&req, T::Apps.get(l), Nav::Apps, None, body),
    )
}

/// An icon shown only when it cannot reach elsewhere: a `data:` URL of a
/// raster image (the CSP allows `img-src 'self' data:`; anything else,
/// such as a store-relative file name or an http URL, is left out).
pub fn safe_icon(icon: Option<&str>) -> Option<&str> {
    let i = icon?;
    let ok = ["png", "jpeg", "gif", "webp"]
        .iter()
        .any(|t| i.starts_with(&format!("data:image/{t};base64,")))
        && i.len() <= 64 * 1024
        && i.bytes()
            .skip("data:image/".len())
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b';' | b','));
    ok.then_some(i)
}

/// A template's title in `l` (its id when it has none).
fn title(e: &StoreEntry, l: Lang) -> String {
    let t = e.meta.title.get(l.code());
    if t.is_empty() {
        e.id.clone()
    } else {
        t.to_owned()
    }
}

fn arch_text(l: Lang, e: &StoreEntry) -> String {
    if e.meta.architectures.is_empty() {
        T::AnyArch.get(l).to_owned()
    } else {
        e.meta.architectures.join(", ")
    }
}

/// One template's card.
pub fn card(l: Lang, e: &StoreEntry) -> Markup {
    let href = format!("/apps/store/{}", encode_segment(&e.id));
    let t = title(e, l);
    html! {
        li class="card" data-template=(e.id) data-category=(e.meta.category) {
            h2 {
                @if let Some(i) = safe_icon(e.meta.icon.as_deref()) { img src=(i) alt=""; }
                a href=(href) { (t) }
            }
            p { (e.meta.description.get(l.code())) }
            dl class="kv" {
                dt { (T::Category.get(l)) } dd { (e.meta.category) }
                dt { (T::Version.get(l)) } dd { (e.meta.version) }
                dt { (T::Architectures.get(l)) } dd { (arch_text(l, e)) }
            }
            div class="actions" {
                @if e.runs_here {
                    a class="button" href=(href) aria-label={ (fill(T::InstallTitle.get(l), &[&t])) } { (T::InstallApp.get(l)) }
                } @else {
                    p class="muted" { (fill(T::NotThisCpu.get(l), &[nuvol_apps::meta::this_arch()])) }
                    button type="button" disabled aria-label={ (fill(T::InstallTitle.get(l), &[&t])) } { (T::InstallApp.get(l)) }
                }
            }
        }
    }
}

/// The `category` filter of `/apps/store`: one of the store's categories
/// (any case); the error names the parameter.
pub fn parse_category(
    req: &Req,
    categories: &[String],
) -> Result<Option<String>, (String, String)> {
    let q = super::query(req, &["category"])?;
    match super::param(&q, "category").filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(c) => categories
            .iter()
            .find(|k| k.eq_ignore_ascii_case(c))
            .map(|k| Some(k.clone()))
            .ok_or_else(|| {
                (
                    "category".to_owned(),
                    fill(T::NoSuchCategory.get(req.lang), &[&format!("{c:?}")]),
                )
            }),
    }
}

/// `GET /apps/store`.
pub async fn store(State(dash): State<Arc<Dash>>, Viewer(req): Viewer) -> Response {
    let h = match handle(&dash, &req) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let l = req.lang;
    let (entries, problems) = h.store().await;
    let mut categories: Vec<String> = Vec::new();
    for e in &entries {
        if !e.meta.category.is_empty()
            && !categories
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&e.meta.category))
        {
            categories.push(e.meta.category.clone());
        }
    }
    categories.sort_by_key(|c| c.to_lowercase());
    let (category, err, status) = match parse_category(&req, &categories) {
        Ok(c) => (c, None, StatusCode::OK),
        Err((_, m)) => (None, Some(m), StatusCode::BAD_REQUEST),
    };
    let shown: Vec<&StoreEntry> = entries
        .iter()
        .filter(|e| {
            category
                .as_deref()
                .is_none_or(|c| e.meta.category.eq_ignore_ascii_case(c))
        })
        .collect();
    let tab = |c: Option<&str>, label: &str, n: usize| {
        let current = category.as_deref().map(str::to_lowercase) == c.map(str::to_lowercase);
        let href = match c {
            Some(c) => format!("/apps/store?category={}", urlencode(c)),
            None => "/apps/store".to_owned(),
        };
        html! { li { a href=(href) aria-current=[current.then_some("page")] { (label) " (" (n) ")" } } }
    };
    let body = html! {
        @if let Some(e) = &err { p class="error" role="alert" id="category-error" { (e) } }
        nav aria-label=(T::Category.get(l)) {
            ul class="tabs" {
                (tab(None, T::All.get(l), entries.len()))
                @for c in &categories {
                    (tab(Some(c), c, entries.iter().filter(|e| e.meta.category.eq_ignore_ascii_case(c)).count()))
                }
            }
        }
        @if shown.is_empty() { p class="muted" { (T::NoTemplates.get(l)) } }
        ul class="cards grid" id="templates" {
            @for e in &shown { (card(l, e)) }
        }
        @if !problems.is_empty() {
            details {
                summary { (T::StoreProblems.get(l)) " (" (problems.len()) ")" }
                ul { @for p in &problems { li { (p) } } }
            }
        }
    };
    html(
        status,
        layout(&req, T::AppStore.get(l), Nav::Apps, None, body),
    )
}

/// The form field of parameter `name`.
pub fn param_field(name: &str) -> String {
    format!("p_{name}")
}

/// A parsed install form: the app's name and the parameter values given
/// (empty optional ones left out, so the template's default applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallForm {
    pub name: String,
    pub params: BTreeMap<String, String>,
}

/// Errors of the install form by field (`name`, `p_PARAM`, or `_form` for
/// what belongs to no field).
pub type InstallErrors = BTreeMap<String, String>;

/// Parse the install form against the template's parameters. Fields other
/// than `name` and the declared parameters' `p_NAME` are ignored (the
/// form never sends others; `_csrf` is the router's): an unknown
/// parameter can therefore never reach the manager.
pub fn parse_install(f: &Fields, params: &[Param], l: Lang) -> Result<InstallForm, InstallErrors> {
    let mut errs = InstallErrors::new();
    let name = f.get("name").map(|s| s.trim()).unwrap_or("").to_owned();
    if name.is_empty() {
        errs.insert("name".into(), T::Required.get(l).into());
    } else if nuvol_apps::meta::validate_name("name", &name).is_err() {
        errs.insert("name".into(), T::BadAppName.get(l).into());
    }
    let mut values = BTreeMap::new();
    for p in params {
        let field = param_field(&p.name);
        let raw = f.get(&field).map(String::as_str);
        let v = match p.kind {
            // A checkbox: absent is false.
            ParamKind::Bool => match raw.map(str::trim) {
                None | Some("" | "false") => "false".to_owned(),
                Some("true" | "on") => "true".to_owned(),
                Some(o) => {
                    errs.insert(
                        field,
                        fill(T::UnknownValue.get(l), &[&format!("{:?}", truncate(o))]),
                    );
                    continue;
                }
            },
            // A password is taken as typed (spaces are characters too).
            ParamKind::Password => raw.unwrap_or("").to_owned(),
            _ => raw.unwrap_or("").trim().to_owned(),
        };
        if v.is_empty() {
            if p.required {
                errs.insert(field, T::Required.get(l).into());
            }
            continue;
        }
        if nuvol_apps::meta::check_value(p, &v).is_err() {
            let t = if v.chars().any(char::is_control) {
                T::NoControl.get(l).to_owned()
            } else if v.len() > 4096 {
                fill(T::PayloadTooLong.get(l), &["4096"])
            } else {
                match p.kind {
                    ParamKind::Int => T::NotANumber.get(l).to_owned(),
                    ParamKind::Port => T::BadPort.get(l).to_owned(),
                    ParamKind::Path => T::BadPath.get(l).to_owned(),
                    _ => fill(T::UnknownValue.get(l), &[&format!("{:?}", truncate(&v))]),
                }
            };
            errs.insert(field, t);
            continue;
        }
        values.insert(p.name.clone(), v);
    }
    if errs.is_empty() {
        Ok(InstallForm {
            name,
            params: values,
        })
    } else {
        Err(errs)
    }
}

fn truncate(s: &str) -> String {
    crate::pages::nodes::truncate(s, 60)
}

/// Where an install's error belongs in the form, and its message.
pub fn install_error(e: &AppError, form: &InstallForm, l: Lang) -> (String, String) {
    match e {
        AppError::MissingParam(p) => (param_field(p), T::Required.get(l).into()),
        AppError::UnknownParam(p) => (param_field(p), e.to_string()),
        AppError::Exists(_) => ("name".into(), T::AppExists.get(l).into()),
        AppError::Invalid { field, .. } if field == "name" => ("name".into(), e.to_string()),
        AppError::Invalid { field, .. } if field.starts_with("parameter ") => (
            param_field(field.trim_start_matches("parameter ")),
            e.to_string(),
        ),
        AppError::PortTaken { port, by, .. } => {
            let msg = fill(T::PortTaken.get(l), &[&port.to_string(), by]);
            let field = form
                .params
                .iter()
                .find(|(_, v)| **v == port.to_string())
                .map_or_else(|| "_form".to_owned(), |(k, _)| param_field(k));
            (field, msg)
        }
        e => ("_form".into(), e.to_string()),
    }
}

/// One generated input, with its label, help and error.
fn input(req: &Req, p: &Param, typed: Option<&Fields>, err: Option<&str>) -> Markup {
    let l = req.lang;
    let field = param_field(&p.name);
    let id = format!("install-{field}");
    let help = p.description.get(l.code());
    let help_id = format!("{id}-help");
    let err_id = format!("{id}-error");
    let described = [
        (!help.is_empty()).then_some(help_id.as_str()),
        err.map(|_| err_id.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let described = (!described.is_empty()).then_some(described);
    let default = p.default.as_deref().unwrap_or("");
    // A typed password is never sent back.
    let value = match (typed, p.kind) {
        (Some(_), ParamKind::Password) => "",
        (Some(f), _) => f.get(&field).map_or("", String::as_str),
        (None, _) => default,
    };
    let label = html! {
        label for=(id) { (p.name) @if p.required { " " span class="muted" { (T::RequiredMark.get(l)) } } }
    };
    let invalid = err.map(|_| "true");
    let after = html! {
        @if !help.is_empty() { small id=(help_id) { (help) } }
        @if let Some(e) = err { p id=(err_id) class="error" { (e) } }
    };
    html! {
        @if p.kind == ParamKind::Bool {
            @let checked = match typed { Some(f) => f.get(&field).is_some_and(|v| v == "true" || v == "on"), None => default == "true" };
            div class={ "field check" @if err.is_some() { " invalid" } } {
                input id=(id) name=(field) type="checkbox" value="true" checked[checked]
                    aria-invalid=[invalid] aria-describedby=[described.as_deref()];
                (label)
                (after)
            }
        } @else {
            div class={ "field" @if err.is_some() { " invalid" } } {
                (label)
                @match p.kind {
                    ParamKind::Int => { input id=(id) name=(field) type="number" step="1" inputmode="numeric" value=(value) required[p.required]
                        aria-invalid=[invalid] aria-describedby=[described.as_deref()]; }
                    ParamKind::Port => { input id=(id) name=(field) type="number" min="1" max="65535" step="1" inputmode="numeric" value=(value) required[p.required]
                        aria-invalid=[invalid] aria-describedby=[described.as_deref()]; }
                    ParamKind::Password => { input id=(id) name=(field) type="password" autocomplete="new-password" value=(value) required[p.required]
                        aria-invalid=[invalid] aria-describedby=[described.as_deref()]; }
                    _ => { input id=(id) name=(field) type="text" value=(value) required[p.required]
                        aria-invalid=[invalid] aria-describedby=[described.as_deref()]; }
                }
                (after)
            }
        }
    }
}

fn template_page(
    req: &Req,
    e: &StoreEntry,
    typed: Option<&Fields>,
    errs: &InstallErrors,
    status: StatusCode,
) -> Response {
    let l = req.lang;
    let t = title(e, l);
    let action = format!("/apps/store/{}", encode_segment(&e.id));
    let name_err = errs.get("name");
    let name_val = typed
        .and_then(|f| f.get("name"))
        .map_or(e.id.as_str(), String::as_str);
    let body = html! {
        @if !errs.is_empty() {
            (notice(errs.get("_form").map_or(T::FixErrors.get(l), String::as_str), true))
        }
        p { (e.meta.description.get(l.code())) }
        dl class="kv" {
            dt { (T::Category.get(l)) } dd { (e.meta.category) }
            dt { (T::Version.get(l)) } dd { (e.meta.version) }
            dt { (T::Architectures.get(l)) } dd { (arch_text(l, e)) }
            dt { (T::AppSource.get(l)) } dd { (e.source.to_string()) }
        }
        @if !e.runs_here {
            (notice(&fill(T::NotThisCpu.get(l), &[nuvol_apps::meta::this_arch()]), true))
        }
        @if !req.may(Access::Operate) {
            p { a href={ "/login?next=" (urlencode(&action)) } { (T::LoginToAct.get(l)) } }
        } @else {
            section class="card" {
                h2 id="h-install" { (fill(T::InstallTitle.get(l), &[&t])) }
                form id="install" method="post" action=(action) {
                    (csrf(req))
                    div class={ "field" @if name_err.is_some() { " invalid" } } {
                        label for="install-name" { (T::InstallName.get(l)) " " span class="muted" { (T::RequiredMark.get(l)) } }
                        input id="install-name" name="name" type="text" value=(name_val) required
                            aria-invalid=[name_err.map(|_| "true")] aria-describedby=[name_err.map(|_| "install-name-error")];
                        @if let Some(e) = name_err { p id="install-name-error" class="error" { (e) } }
                    }
                    @if !e.meta.parameters.is_empty() {
                        fieldset {
                            legend { (T::Parameters.get(l)) }
                            @for p in &e.meta.parameters {
                                (input(req, p, typed, errs.get(&param_field(&p.name)).map(String::as_str)))
                            }
                        }
                    }
                    button type="submit" disabled[!e.runs_here] { (T::InstallApp.get(l)) }
                }
            }
        }
        p { a href="/apps/store" { (T::AppStore.get(l)) } }
    };
    html(status, layout(req, &t, Nav::Apps, None, body))
}

async fn find_template(
    dash: &Dash,
    req: &Req,
    id: &str,
) -> Result<(AppsHandle, StoreEntry), Box<Response>> {
    let h = handle(dash, req)?;
    match h.template(id).await {
        Ok(e) => Ok((h, e)),
        Err(AppError::NotFound(_) | AppError::Invalid { .. }) => {
            let body = html! {
                (notice(&fill(req.t(T::NoSuchTemplate), &[&format!("{id:?}")]), true))
                p { a href="/apps/store" { (req.t(T::AppStore)) } }
            };
            Err(Box::new(html(
                StatusCode::NOT_FOUND,
                layout(req, req.t(T::NotFound), Nav::Apps, None, body),
            )))
        }
        Err(e) => Err(Box::new(super::unavailable(req, e))),
    }
}

/// `GET /apps/store/{id}`.
pub async fn template(
    State(dash): State<Arc<Dash>>,
    Viewer(req): Viewer,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = super::reject_unknown(&req, &[]) {
        return r;
    }
    match find_template(&dash, &req, &id).await {
        Ok((_, e)) => template_page(&req, &e, None, &InstallErrors::new(), StatusCode::OK),
        Err(r) => *r,
    }
}

/// `POST /apps/store/{id}`: install, then the app's page. An install that
/// takes longer than [`INSTALL_WAIT`] (an image being pulled) goes on in
/// its own task and the app's page says it is installing.
pub async fn install(
    State(dash): State<Arc<Dash>>,
    Viewer(req): Viewer,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let f = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return super::settings::bad_form(&req, e),
    };
    let (h, e) = match find_template(&dash, &req, &id).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let form = match parse_install(&f, &e.meta.parameters, req.lang) {
        Ok(form) => form,
        Err(errs) => return template_page(&req, &e, Some(&f), &errs, StatusCode::BAD_REQUEST),
    };
    let page = format!("/apps/{}", encode_segment(&form.name));
    let task = {
        let (h, id, form) = (h.clone(), id.clone(), form.clone());
        tokio::spawn(async move { h.install_template(&id, Some(form.name), form.params).await })
    };
    match tokio::time::timeout(INSTALL_WAIT, task).await {
        Ok(Ok(Ok(_))) => see_other(&format!("{page}?done=install")),
        Ok(Ok(Err(err))) => {
            let (field, msg) = install_error(&err, &form, req.lang);
            let errs = InstallErrors::from([(field, msg)]);
            template_page(&req, &e, Some(&f), &errs, StatusCode::BAD_REQUEST)
        }
        Ok(Err(join)) => super::unavailable(&req, join),
        Err(_) => see_other(&format!("{page}?done=installing")),
    }
}

/// `GET /apps/{name}` (`?node=` for another node's app).
pub async fn one(
    State(dash): State<Arc<Dash>>,
    Viewer(req): Viewer,
    Path(name): Path<String>,
) -> Response {
    let l = req.lang;
    let q = match super::query(&req, &["node", "done"]) {
        Ok(q) => q,
        Err(_) => {
            return super::reject_unknown(&req, &["node", "done"])
                .unwrap_or_else(|| super::not_found_page(&req))
        }
    };
    let done = super::param(&q, "done").map(str::to_owned);
    let h = match handle(&dash, &req) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    if let Some(node) = super::param(&q, "node").filter(|n| *n != h.node()) {
        return other_node(&req, &h, node, &name).await;
    }
    let st = match h.status(&name).await {
        Ok(s) => s,
        Err(AppError::NotFound(_) | AppError::Invalid { .. }) => {
            if done.as_deref() == Some("installing") {
                let body = html! { (notice(T::AppInstalling.get(l), false)) p { a href="/apps" { (T::Apps.get(l)) } } };
                return html(StatusCode::OK, layout(&req, &name, Nav::Apps, None, body));
            }
            let body = html! {
                (notice(&fill(T::NoSuchApp.get(l), &[&format!("{name:?}")]), true))
                p { a href="/apps" { (T::Apps.get(l)) } }
            };
            return html(
                StatusCode::NOT_FOUND,
                layout(&req, req.t(T::NotFound), Nav::Apps, None, body),
            );
        }
        Err(e) => return off_page(&req, unavailable_text(l, &e)),
    };
    let lines = past_logs(&h, &name).await;
    let s = &st.summary;
    let live = format!("/apps/{}/live?logs=1", encode_segment(&name));
    let body = html! {
        (done_notice(l, done.as_deref()))
        dl class="kv" id="app-status" {
            dt { (T::AppState.get(l)) } dd { (state_badge(l, s.state)) }
            @if let Some(e) = &s.error { dt { (T::Error.get(l)) } dd { (e) } }
            @if !s.title.is_empty() { dt { (T::Name.get(l)) } dd { (s.title) } }
            dt { (T::Version.get(l)) } dd { (s.version) }
            dt { (T::AppSource.get(l)) } dd { (s.source) }
            dt { (T::Node.get(l)) } dd { (s.node) }
        }
        @if req.may(Access::Operate) {
            (actions(&req, &name))
        } @else {
            p { a href={ "/login?next=" (urlencode(&req.here)) } { (T::LoginToAct.get(l)) } }
        }
        h2 id="h-containers" { (T::Containers.get(l)) }
        div class="scroll" tabindex="0" role="region" aria-labelledby="h-containers" {
            table id="containers" {
                thead { tr {
                    th scope="col" { (T::ServiceName.get(l)) }
                    th scope="col" class="hide-narrow" { (T::Container.get(l)) }
                    th scope="col" { (T::Image.get(l)) }
                    th scope="col" { (T::AppState.get(l)) }
                    th scope="col" { (T::Health.get(l)) }
                    th scope="col" class="num hide-narrow" { (T::Restarts.get(l)) }
                    th scope="col" { (T::Ports.get(l)) }
                } }
                tbody {
                    @for c in &st.services {
                        tr data-service=(c.service) {
                            td { (c.service) }
                            td class="hide-narrow" { @if let Some(id) = &c.container { code { (id) } } @else { span class="muted" { "–" } } }
                            td { code { (c.image) } }
                            td { @if let Some(r) = c.state { (json_word(&r)) } @else { span class="muted" { "–" } } }
                            td { @if let Some(hl) = c.health { (json_word(&hl)) } @else { span class="muted" { "–" } } }
                            td class="num hide-narrow" { (c.restarts) }
                            td { @for p in &c.ports { code { (p) } " " } }
                        }
                    }
                }
            }
        }
        h2 { (T::PublishedServices.get(l)) }
        @if st.published.is_empty() {
            p class="muted" { (T::NothingPublished.get(l)) }
        } @else {
            ul id="published" {
                @for (k, h) in &st.published { li { code { (k) } " " (crate::page::status_badge(l, h.as_str())) } }
            }
        }
        @if !st.params.is_empty() {
            h2 { (T::Parameters.get(l)) }
            dl class="kv" {
                @for (k, v) in &st.params { dt { (k) } dd { code { (v) } } }
            }
        }
        h2 id="h-logs" { (T::Logs.get(l)) }
        @match &lines {
            Ok(lines) => {
                p id="logs-empty" class="muted" hidden[!lines.is_empty()] { (T::NoLogs.get(l)) }
                ol id="logs" class="logs" data-list="logs" data-max=(LOG_KEPT) data-empty="logs-empty"
                    tabindex="0" aria-labelledby="h-logs" {
                    @for (i, (err, t)) in lines.iter().enumerate() { (log_row(&format!("p{i}"), *err, t)) }
                }
            }
            Err(e) => p class="muted" { (fill(T::LogsUnavailable.get(l), &[e])) },
        }
    };
    // No container (yet) to follow: no live stream to retry.
    let live = lines.is_ok().then_some(live.as_str());
    html(StatusCode::OK, layout(&req, &name, Nav::Apps, live, body))
}

/// A value's serde name (`running`, `healthy`, ...).
fn json_word<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One log line (the live stream sends the same markup).
pub fn log_row(key: &str, stderr: bool, text: &str) -> Markup {
    let shown = crate::pages::nodes::truncate(text, LOG_LINE_CHARS);
    html! { li data-key=(key) class=[stderr.then_some("err")] { (shown) } }
}

/// The last [`LOG_LINES`] lines of the app's main service, or why not.
async fn past_logs(h: &AppsHandle, name: &str) -> Result<Vec<(bool, String)>, String> {
    let read = async {
        let mut s = h
            .logs(name, LOG_LINES, false)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(l) = s.next().await {
            let l = l.map_err(|e| e.to_string())?;
            if out.len() >= LOG_LINES {
                out.remove(0);
            }
            out.push((l.stderr, l.text));
        }
        Ok::<_, String>(out)
    };
    match tokio::time::timeout(LOG_WAIT, read).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    }
}

/// Another node's app: what the list of every node says of it.
async fn other_node(req: &Req, h: &AppsHandle, node: &str, name: &str) -> Response {
    let l = req.lang;
    let all = match h.list_all().await {
        Ok(a) => a,
        Err(e) => return off_page(req, unavailable_text(l, &e)),
    };
    let Some(a) = all.apps.iter().find(|a| a.node == node && a.name == name) else {
        return super::not_found_page(req);
    };
    let body = html! {
        dl class="kv" id="app-status" {
            dt { (T::Node.get(l)) } dd { a href={ "/nodes/" (encode_segment(&a.node)) } { (a.node) } }
            dt { (T::AppState.get(l)) } dd { (state_badge(l, a.state)) }
            @if let Some(e) = &a.error { dt { (T::Error.get(l)) } dd { (e) } }
            @if !a.title.is_empty() { dt { (T::Name.get(l)) } dd { (a.title) } }
            dt { (T::Version.get(l)) } dd { (a.version) }
            dt { (T::AppSource.get(l)) } dd { (a.source) }
        }
        p class="muted" { (fill(T::OtherNodeApp.get(l), &[&a.node])) }
        p { a href="/apps" { (T::Apps.get(l)) } }
    };
    html(StatusCode::OK, layout(req, name, Nav::Apps, None, body))
}

/// `POST /apps/{name}/{action}`: start, stop, restart, remove (remove
/// asks first: without `confirm=yes` it shows what it will do).
pub async fn action(
    State(dash): State<Arc<Dash>>,
    Viewer(req): Viewer,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let f = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return super::settings::bad_form(&req, e),
    };
    let l = req.lang;
    if !matches!(action.as_str(), "start" | "stop" | "restart" | "remove") {
        return super::settings::bad_form(
            &req,
            fill(T::UnknownAction.get(l), &[&format!("{action:?}")]),
        );
    }
    let h = match handle(&dash, &req) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let purge = matches!(f.get("purge").map(String::as_str), Some("true" | "on"));
    let r = match action.as_str() {
        "start" => h.start(&name).await.map(|_| ()),
        "stop" => h.stop(&name).await.map(|_| ()),
        "restart" => h.restart(&name).await.map(|_| ()),
        _ if f.get("confirm").map(String::as_str) != Some("yes") => {
            return confirm_remove(&req, &h, &name, purge)
        }
        _ => h.remove(&name, purge).await,
    };
    match r {
        Ok(()) if action == "remove" => see_other("/apps?done=remove"),
        Ok(()) => see_other(&format!("/apps/{}?done={action}", encode_segment(&name))),
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let body = html! {
                (notice(&e.to_string(), true))
                p { a href={ "/apps/" (encode_segment(&name)) } { (name) } }
            };
            html(status, layout(&req, req.t(T::Error), Nav::Apps, None, body))
        }
    }
}

/// The confirmation step of a removal.
fn confirm_remove(req: &Req, h: &AppsHandle, name: &str, purge: bool) -> Response {
    let l = req.lang;
    let known = h
        .list()
        .map(|l| l.iter().any(|a| a.name == name))
        .unwrap_or(false);
    if !known {
        return super::not_found_page(req);
    }
    let t = fill(T::ConfirmRemove.get(l), &[name]);
    let body = html! {
        p class="notice error" role="alert" { (T::RemoveWarning.get(l)) }
        form id="remove" method="post" action={ "/apps/" (encode_segment(name)) "/remove" } {
            (csrf(req))
            input type="hidden" name="confirm" value="yes";
            div class="field check" {
                input id="remove-purge" name="purge" type="checkbox" value="true" checked[purge];
                label for="remove-purge" { (T::Purge.get(l)) }
            }
            div class="inline" {
                button type="submit" class="danger" { (T::ConfirmRemoveButton.get(l)) }
                a href={ "/apps/" (encode_segment(name)) } { (T::Cancel.get(l)) }
            }
        }
    };
    html(StatusCode::OK, layout(req, &t, Nav::Apps, None, body))
}

/// Numbers the live log streams, so that the keys of a reconnected
/// stream's lines never replace earlier ones.
static LOG_STREAMS: AtomicU64 = AtomicU64::new(0);

/// `GET /apps/{name}/live?logs=1`: the app's new log lines as live rows
/// (rendered and escaped here, like every live row), until the viewer
/// leaves, the container's log ends, or the dashboard stops.
pub async fn live(
    State(dash): State<Arc<Dash>>,
    Viewer(req): Viewer,
    Path(name): Path<String>,
) -> Response {
    if let Err((_, m)) = super::query(&req, &["logs", "since"]) {
        return (StatusCode::BAD_REQUEST, m).into_response();
    }
    let h = match dash.registry.get().and_then(|r| r.get::<AppsHandle>()) {
        Some(h) => h,
        None => return (StatusCode::SERVICE_UNAVAILABLE, req.t(T::AppsOff)).into_response(),
    };
    let stream = match h.logs(&name, 0, true).await {
        Ok(s) => s,
        Err(e) => {
            let code = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return (code, e.to_string()).into_response();
        }
    };
    let id = LOG_STREAMS.fetch_add(1, Ordering::Relaxed);
    let stop = dash.stop_token();
    let mut n: u64 = 0;
    let events = stream
        .take_while(|r| std::future::ready(r.is_ok()))
        .filter_map(|r| std::future::ready(r.ok()))
        .map(move |line| {
            n += 1;
            let key = format!("s{id}-{n}");
            let html = log_row(&key, line.stderr, &line.text).into_string();
            let v = serde_json::json!({"op": "upsert", "list": "logs", "key": key, "html": html});
            Ok::<_, Infallible>(
                Event::default()
                    .event("u")
                    .json_data(v)
                    .unwrap_or_else(|_| Event::default().event("u").data("{}")),
            )
        })
        .take_until(async move { stop.cancelled().await });
    crate::live::sse(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nuvol_apps::meta::Localized;

    fn p(name: &str, kind: ParamKind, required: bool, default: Option<&str>) -> Param {
        Param {
            name: name.into(),
            kind,
            default: default.map(str::to_owned),
            required,
            description: Localized::default(),
        }
    }

    fn fields(v: &[(&str, &str)]) -> Fields {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn params() -> Vec<Param> {
        vec![
            p("PORT", ParamKind::Port, true, Some("8080")),
            p("WORKERS", ParamKind::Int, false, Some("2")),
            p("TLS", ParamKind::Bool, false, None),
            p("SECRET", ParamKind::Password, false, None),
            p("DIR", ParamKind::Path, false, None),
        ]
    }

    #[test]
    fn a_good_form_gives_the_values_and_leaves_empty_optional_ones_out() {
        let f = fields(&[
            ("name", " web "),
            ("p_PORT", " 8081 "),
            ("p_WORKERS", ""),
            ("p_TLS", "true"),
            ("p_SECRET", " s p "),
            ("_csrf", "x"),
        ]);
        let got = parse_install(&f, &params(), Lang::En).unwrap();
        assert_eq!(got.name, "web");
        assert_eq!(
            got.params,
            BTreeMap::from([
                ("PORT".to_owned(), "8081".to_owned()),
                ("TLS".to_owned(), "true".to_owned()),
                ("SECRET".to_owned(), " s p ".to_owned()),
            ])
        );
        // An unticked checkbox is false.
        let f = fields(&[("name", "web"), ("p_PORT", "1")]);
        assert_eq!(
            parse_install(&f, &params(), Lang::En).unwrap().params["TLS"],
            "false"
        );
    }

    #[test]
    fn bad_values_are_refused_at_their_field() {
        let f = fields(&[
            ("name", "Bad_Name"),
            ("p_PORT", "70000"),
            ("p_WORKERS", "1.5"),
            ("p_TLS", "yes"),
            ("p_DIR", "relative/x"),
        ]);
        let e = parse_install(&f, &params(), Lang::En).unwrap_err();
        assert_eq!(e["name"], T::BadAppName.get(Lang::En));
        assert_eq!(e["p_PORT"], T::BadPort.get(Lang::En));
        assert_eq!(e["p_WORKERS"], T::NotANumber.get(Lang::En));
        assert!(e["p_TLS"].contains("yes"), "{e:?}");
        assert_eq!(e["p_DIR"], T::BadPath.get(Lang::En));
        assert_eq!(e.len(), 5, "{e:?}");
        // Catalan messages for a Catalan page.
        let e = parse_install(&f, &params(), Lang::Ca).unwrap_err();
        assert_eq!(e["p_WORKERS"], T::NotANumber.get(Lang::Ca));
    }

    #[test]
    fn missing_required_values_and_names_are_refused() {
        let e = parse_install(&fields(&[("p_PORT", "  ")]), &params(), Lang::En).unwrap_err();
        assert_eq!(e["name"], T::Required.get(Lang::En));
        assert_eq!(e["p_PORT"], T::Required.get(Lang::En));
        assert_eq!(e.len(), 2);
        let e = parse_install(
            &fields(&[("name", "a"), ("p_PORT", "1\n")]),
            &params(),
            Lang::En,
        );
        // Trimmed: the newline is whitespace around a good port.
        assert!(e.is_ok(), "{e:?}");
        let e = parse_install(
            &fields(&[("name", "a"), ("p_PORT", "1"), ("p_SECRET", "a\u{7}b")]),
            &params(),
            Lang::En,
        )
        .unwrap_err();
        assert_eq!(e["p_SECRET"], T::NoControl.get(Lang::En));
    }

    #[test]
    fn unknown_fields_are_ignored_never_passed_on() {
        let f = fields(&[
            ("name", "web"),
            ("p_PORT", "80"),
            ("p_EVIL", "x"),
            ("PORT", "81"),
            ("other", "y"),
        ]);
        let got = parse_install(&f, &params(), Lang::En).unwrap();
        assert_eq!(got.params.get("PORT").map(String::as_str), Some("80"));
        assert!(!got.params.contains_key("EVIL"));
        assert_eq!(got.params.len(), 2, "{:?}", got.params);
    }

    #[test]
    fn install_errors_land_at_their_field() {
        let form = InstallForm {
            name: "web".into(),
            params: BTreeMap::from([("PORT".to_owned(), "8080".to_owned())]),
        };
        let l = Lang::En;
        let taken = AppError::PortTaken {
            port: 8080,
            proto: "tcp".into(),
            by: "app other".into(),
        };
        let (f, m) = install_error(&taken, &form, l);
        assert_eq!(f, "p_PORT");
        assert!(m.contains("8080") && m.contains("app other"), "{m}");
        assert_eq!(
            install_error(&AppError::Exists("web".into()), &form, l).0,
            "name"
        );
        assert_eq!(
            install_error(&AppError::MissingParam("X".into()), &form, l).0,
            "p_X"
        );
        assert_eq!(
            install_error(&AppError::invalid("parameter PORT", "bad"), &form, l).0,
            "p_PORT"
        );
        assert_eq!(
            install_error(&AppError::Other("x".into()), &form, l).0,
            "_form"
        );
    }

    #[test]
    fn only_data_urls_of_raster_images_are_icons() {
        assert!(safe_icon(Some("data:image/png;base64,iVBORw0KGgo=")).is_some());
        for bad in [
            "nextcloud.png",
            "https://example.com/x.png",
            "data:image/svg+xml;base64,PHN2Zz4=",
            "javascript:alert(1)",
            "data:image/png;base64,\"><script>",
        ] {
            assert_eq!(safe_icon(Some(bad)), None, "{bad}");
        }
    }
}
