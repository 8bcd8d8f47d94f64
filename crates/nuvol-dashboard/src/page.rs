//! The page shell (landmarks, navigation, language switcher, live status),
//! shared widgets (status badges, form fields with their errors) and the
//! embedded assets.

use crate::i18n::{Lang, T};
use crate::web::{FormState, Req};
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

const CSS: &str = include_str!("../assets/nuvol.css");
const JS: &str = include_str!("../assets/live.js");
const ICON: &str = include_str!("../assets/icon.svg");

/// Asset URLs carry the version, so browsers may cache them for good.
fn asset_url(name: &str) -> String {
    format!("/assets/{name}?v={}", env!("CARGO_PKG_VERSION"))
}

/// `GET /assets/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, ctype) = match file.as_str() {
        "nuvol.css" => (CSS, "text/css; charset=utf-8"),
        "live.js" => (JS, "text/javascript; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    crate::web::secure_headers(h);
    resp
}

/// Which navigation entry is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Nodes,
    Services,
    Apps,
    Events,
    Monitor,
    Settings,
    Login,
    None,
}

/// A whole page. `live` is the live stream's URL for this page, if any.
pub fn layout(req: &Req, title: &str, nav: Nav, live: Option<&str>, body: Markup) -> Markup {
    let l = req.lang;
    let live_url = live.map(|u| format!("{u}&since={}", req.seq));
    let live = live_url.as_deref();
    let item = |n: Nav, href: &str, t: T| {
        html! {
            li { a href=(href) aria-current=[(nav == n).then_some("page")] { (t.get(l)) } }
        }
    };
    html! {
        (DOCTYPE)
        html lang=(l.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · nuvol" }
                link rel="stylesheet" href=(asset_url("nuvol.css"));
                link rel="icon" href=(asset_url("icon.svg")) type="image/svg+xml";
                @if live.is_some() {
                    script src=(asset_url("live.js")) defer {}
                }
            }
            body data-live=[live] {
                a class="skip" href="#main" { (T::SkipToContent.get(l)) }
                header class="top" {
                    a class="brand" href="/" { "nuvol" }
                    nav aria-label=(T::MainNav.get(l)) {
                        ul {
                            (item(Nav::Overview, "/", T::Overview))
                            (item(Nav::Nodes, "/nodes", T::Nodes))
                            (item(Nav::Services, "/services", T::Services))
                            (item(Nav::Apps, "/apps", T::Apps))
                            (item(Nav::Events, "/events", T::Events))
                            (item(Nav::Monitor, "/monitor", T::Monitor))
                            (item(Nav::Settings, "/settings", T::Settings))
                        }
                    }
                    div class="session" {
                        @if req.principal.is_some() {
                            form method="post" action="/logout" {
                                input type="hidden" name="_csrf" value=(req.csrf());
                                button type="submit" class="link" { (T::Logout.get(l)) }
                            }
                        } @else {
                            a href={ "/login?next=" (urlencode(&req.here)) }
                              aria-current=[(nav == Nav::Login).then_some("page")] { (T::Login.get(l)) }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    @if live.is_some() {
                        p id="live-status" class="live" role="status"
                          data-on=(T::Live.get(l)) data-off=(T::Offline.get(l)) {}
                    }
                    (body)
                }
                footer {
                    form method="get" action="/lang" class="lang" {
                        input type="hidden" name="next" value=(req.here);
                        label for="lang-select" { (T::Language.get(l)) }
                        select id="lang-select" name="set" {
                            @for o in Lang::ALL {
                                option value=(o.code()) selected[o == l] lang=(o.code()) { (o.native()) }
                            }
                        }
                        button type="submit" { (T::Change.get(l)) }
                    }
                    p { "nuvol " (env!("CARGO_PKG_VERSION")) }
                }
            }
        }
    }
}

/// A status word with its colour class (the text carries the meaning; the
/// colour only repeats it).
pub fn status_badge(l: Lang, status: &str) -> Markup {
    let (t, class) = match status {
        "alive" => (T::Alive, "ok"),
        "passing" => (T::Passing, "ok"),
        "failed" | "none" => (T::Failed, "bad"),
        "critical" => (T::Critical, "bad"),
        "warning" => (T::Warning, "warn"),
        "left" => (T::Left, "off"),
        "leaving" => (T::Leaving, "warn"),
        _ => (T::Unavailable, "off"),
    };
    html! { span class={ "badge " (class) } { (t.get(l)) } }
}

/// Quality in ten colour steps, as Cloudy's list showed it.
pub fn quality_cell(q: Option<u8>) -> Markup {
    html! {
        @match q {
            Some(q) => span class={ "q q" (q.min(99) / 10) } { (q) "%" },
            None => span class="muted" { "–" },
        }
    }
}

/// A labelled input with its help and error (the error is tied to it
/// for screen readers, and the input is marked invalid).
pub struct Field<'a> {
    pub form: &'a str,
    pub name: &'static str,
    pub label: &'a str,
    pub kind: &'a str,
    pub value: &'a str,
    pub help: Option<&'a str>,
    pub required: bool,
}

impl Field<'_> {
    pub fn render(&self, state: Option<&FormState>) -> Markup {
        let id = format!("{}-{}", self.form, self.name);
        let value = state
            .and_then(|s| s.values.get(self.name))
            .map_or(self.value, String::as_str);
        let error = state.and_then(|s| s.errors.get(self.name));
        let help_id = format!("{id}-help");
        let err_id = format!("{id}-error");
        let described = match (self.help.is_some(), error.is_some()) {
            (true, true) => Some(format!("{help_id} {err_id}")),
            (true, false) => Some(help_id.clone()),
            (false, true) => Some(err_id.clone()),
            (false, false) => None,
        };
        html! {
            div class={ "field" @if error.is_some() { " invalid" } } {
                label for=(id) { (self.label) }
                @if self.kind == "textarea" {
                    textarea id=(id) name=(self.name) rows="4" required[self.required]
                        aria-invalid=[error.map(|_| "true")] aria-describedby=[described.as_deref()] { (value) }
                } @else {
                    input id=(id) name=(self.name) type=(self.kind) value=(value) required[self.required]
                        aria-invalid=[error.map(|_| "true")] aria-describedby=[described.as_deref()];
                }
                @if let Some(h) = self.help { small id=(help_id) { (h) } }
                @if let Some(e) = error { p id=(err_id) class="error" { (e) } }
            }
        }
    }
}

/// The hidden CSRF field every form that acts carries.
pub fn csrf(req: &Req) -> Markup {
    html! { input type="hidden" name="_csrf" value=(req.csrf()); }
}

/// A notice after a redirect (`?done=...`), or a form's summary error.
pub fn notice(text: &str, error: bool) -> Markup {
    html! {
        p class={ "notice" @if error { " error" } } role=(if error { "alert" } else { "status" }) { (text) }
    }
}

/// Percent-encode for a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
