//! The pages. Each handler reads what it shows through the cluster and
//! catalog handles, renders with maud, and answers forms by redirecting
//! (or by re-showing the form with its errors, status 400).

pub mod apps;
pub mod events;
pub mod login;
pub mod monitor;
pub mod nodes;
pub mod overview;
pub mod services;
pub mod settings;

use crate::i18n::T;
use crate::page::{layout, Nav};
use crate::state::Dash;
use crate::web::{html, Req};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use nuvol_agent::http::ApiError;
use std::sync::Arc;

/// Query parameters of a page: only `allowed` names, each at most once.
/// The error is (parameter, message) for the filter form.
pub fn query(req: &Req, allowed: &[&str]) -> Result<Vec<(String, String)>, (String, String)> {
    let raw = req.here.split_once('?').map(|(_, q)| q.to_owned());
    nuvol_agent::http::parse_query(raw, allowed).map_err(|e| {
        let field = e.field().unwrap_or("query").to_owned();
        let l = req.lang;
        let message = if e.to_string().contains("more than once") {
            crate::i18n::fill(T::RepeatedParam.get(l), &[&format!("{field:?}")])
        } else if field == "query" {
            T::BadQuery.get(l).to_owned()
        } else {
            crate::i18n::fill(
                T::UnknownParam.get(l),
                &[&format!("{field:?}"), &allowed.join(", ")],
            )
        };
        (field, message)
    })
}

/// A 400 page when the query string has parameters other than `allowed`
/// (pages without filters), so a mistyped link is not silently ignored.
pub fn reject_unknown(req: &Req, allowed: &[&str]) -> Option<Response> {
    let (_, message) = query(req, allowed).err()?;
    let body =
        html! { (crate::page::notice(&message, true)) p { a href="/" { (req.t(T::BackHome)) } } };
    Some(html(
        StatusCode::BAD_REQUEST,
        layout(req, req.t(T::Error), Nav::None, None, body),
    ))
}

/// The `sort` (one of `sorts`) and `order` (asc/desc) parameters of a
/// list page; the error names the parameter.
pub fn sort_order(
    req: &Req,
    q: &[(String, String)],
    sorts: &[&str],
) -> Result<(String, bool), (String, String)> {
    let mut sort = String::new();
    if let Some(s) = param(q, "sort") {
        if !sorts.contains(&s) {
            return Err((
                "sort".into(),
                crate::i18n::fill(T::CannotSortBy.get(req.lang), &[&format!("{s:?}")]),
            ));
        }
        sort = s.to_owned();
    }
    let desc = match param(q, "order") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => {
            return Err((
                "order".into(),
                crate::i18n::fill(T::BadOrder.get(req.lang), &[&format!("{o:?}")]),
            ))
        }
    };
    Ok((sort, desc))
}

pub fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    nuvol_agent::http::query_param(q, k)
}

/// The 404 page (a JSON error under `/v1/`, where API clients look).
pub async fn not_found(State(dash): State<Arc<Dash>>, req: Req) -> Response {
    if req.path.starts_with("/v1/") || req.path == "/v1" {
        return ApiError::NotFound(format!("no such endpoint: GET {}", req.path)).into_response();
    }
    let _ = dash;
    not_found_page(&req)
}

pub fn not_found_page(req: &Req) -> Response {
    let body = html! {
        p { (req.t(T::NotFoundText)) }
        p { a href="/" { (req.t(T::BackHome)) } }
    };
    html(
        StatusCode::NOT_FOUND,
        layout(req, req.t(T::NotFound), Nav::None, None, body),
    )
}

/// The agent is stopping, or the gossip layer failed to answer.
pub fn unavailable(req: &Req, e: impl std::fmt::Display) -> Response {
    let body = html! { (crate::page::notice(&e.to_string(), true)) };
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        layout(req, req.t(T::Error), Nav::None, None, body),
    )
}
