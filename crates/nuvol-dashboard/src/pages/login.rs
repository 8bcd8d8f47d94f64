//! `/login` (a session from the API token), `/logout`, `/lang` (the
//! switcher), and the page a viewer not allowed by address gets.

use crate::auth::{cookie, LANG_COOKIE, SESSION_COOKIE};
use crate::i18n::{Lang, T};
use crate::page::{layout, notice, Field, Nav};
use crate::state::Dash;
use crate::web::{html, local_path, parse_form, see_other, FormErrors, FormState, Req};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use maud::html;
use std::sync::Arc;

fn next_of(req: &Req) -> String {
    super::query(req, &["next"])
        .ok()
        .and_then(|q| {
            super::param(&q, "next")
                .and_then(local_path)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "/".to_owned())
}

fn form(
    req: &Req,
    next: &str,
    state: Option<&FormState>,
    status: StatusCode,
    lead: Option<&str>,
) -> Response {
    let l = req.lang;
    let body = html! {
        @if let Some(t) = lead { (notice(t, true)) }
        @if req.principal.is_some() { p { (T::LoggedIn.get(l)) } }
        form id="login" method="post" action="/login" {
            input type="hidden" name="next" value=(next);
            (Field { form: "login", name: "token", label: T::Token.get(l), kind: "password", value: "", help: Some(T::TokenHelp.get(l)), required: true }.render(state))
            button type="submit" { (T::Login.get(l)) }
        }
    };
    html(status, layout(req, T::Login.get(l), Nav::Login, None, body))
}

pub async fn page(req: Req) -> Response {
    if let Some(r) = super::reject_unknown(&req, &["next"]) {
        return r;
    }
    let next = next_of(&req);
    form(&req, &next, None, StatusCode::OK, None)
}

/// 403 for a viewer whose address the view rule does not allow.
pub fn forbidden(_dash: &Dash, req: &Req) -> Response {
    let next = local_path(&req.here).unwrap_or("/").to_owned();
    form(
        req,
        &next,
        None,
        StatusCode::FORBIDDEN,
        Some(T::NotAllowed.get(req.lang)),
    )
}

fn set_cookie(resp: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// `POST /login`: the API token for a session cookie.
pub async fn login(State(dash): State<Arc<Dash>>, req: Req, body: Bytes) -> Response {
    let l = req.lang;
    if dash.token.get().is_none() {
        return super::unavailable(&req, T::Starting.get(l));
    }
    let f = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return super::settings::bad_form(&req, e),
    };
    let next = f
        .get("next")
        .and_then(|n| local_path(n))
        .unwrap_or("/")
        .to_owned();
    let token = f.get("token").map(|s| s.trim()).unwrap_or("");
    let ip = req.client.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let mut errors = FormErrors::default();
    let mut status = StatusCode::UNAUTHORIZED;
    if !dash.sessions.may_try(ip) {
        errors.add("token", T::TooManyAttempts.get(l));
        status = StatusCode::TOO_MANY_REQUESTS;
        dash.metrics.login("limited");
    } else if token.is_empty() {
        errors.add("token", T::Required.get(l));
        status = StatusCode::BAD_REQUEST;
    } else if !dash.is_token(token) {
        dash.sessions.failed(ip);
        dash.metrics.login("bad-token");
        tracing::warn!(client = %ip, "dashboard: failed login");
        errors.add("token", T::BadToken.get(l));
    }
    if !errors.is_empty() {
        let st = FormState {
            form: "login",
            values: Default::default(),
            errors,
        };
        return form(&req, &next, Some(&st), status, None);
    }
    let id = dash.sessions.create();
    dash.metrics.login("ok");
    let mut resp = see_other(&next);
    // A browser-session cookie: the server ends idle sessions itself.
    set_cookie(
        &mut resp,
        format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict"),
    );
    resp
}

/// `POST /logout`.
pub async fn logout(
    State(dash): State<Arc<Dash>>,
    req: Req,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        // The router checked the CSRF token of a live session; a dead
        // session's cookie is simply cleared.
        if req.principal.is_some() {
            dash.sessions.end(id);
        }
    }
    let mut resp = see_other("/");
    set_cookie(
        &mut resp,
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

/// `GET /lang?set=ca&next=/nodes`: remember the language, go back.
pub async fn lang(req: Req) -> Response {
    let q = match super::query(&req, &["set", "next"]) {
        Ok(q) => q,
        Err((_, m)) => return super::settings::bad_form(&req, m),
    };
    let Some(lang) = super::param(&q, "set").and_then(Lang::from_code) else {
        return super::settings::bad_form(&req, T::UnknownLanguage.get(req.lang).into());
    };
    let next = super::param(&q, "next").and_then(local_path).unwrap_or("/");
    let mut resp = see_other(next);
    set_cookie(
        &mut resp,
        format!(
            "{LANG_COOKIE}={}; Path=/; SameSite=Lax; Max-Age=31536000",
            lang.code()
        ),
    );
    resp
}
