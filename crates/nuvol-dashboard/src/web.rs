//! What every page handler gets ([`Req`]: language, caller, client address,
//! whether it may view) and gives back (HTML with safe headers, redirects).

use crate::auth::{cookie, LANG_COOKIE};
use crate::i18n::{Lang, T};
use crate::state::Dash;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::Markup;
use nuvol_agent::http::{Access, Principal};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The request as pages see it.
pub struct Req {
    pub lang: Lang,
    pub principal: Option<Principal>,
    pub client: Option<IpAddr>,
    /// Path and query, for the language switcher and `next` links.
    pub here: String,
    pub path: String,
    /// The latest live change when the request came in (pages pass it to
    /// their live stream, which catches up from there).
    pub seq: u64,
}

impl Req {
    /// Whether the caller may do what needs `need`.
    pub fn may(&self, need: Access) -> bool {
        self.principal.as_ref().is_some_and(|p| p.role >= need)
    }

    pub fn csrf(&self) -> &str {
        self.principal
            .as_ref()
            .and_then(Principal::csrf)
            .unwrap_or("")
    }

    pub fn t(&self, t: T) -> &'static str {
        t.get(self.lang)
    }
}

impl FromRequestParts<Arc<Dash>> for Req {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<Dash>) -> Result<Self, Response> {
        Ok(req_of(parts))
    }
}

pub fn req_of(parts: &Parts) -> Req {
    let lang = cookie(&parts.headers, LANG_COOKIE)
        .and_then(Lang::from_code)
        .or_else(|| {
            parts
                .headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::negotiate)
        })
        .unwrap_or_default();
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    Req {
        lang,
        principal: parts.extensions.get::<Principal>().cloned(),
        client,
        here: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        path: parts.uri.path().to_owned(),
        seq: 0,
    }
}

/// A [`Req`] that may view: allowed by address or logged in. Otherwise the
/// handler does not run and the caller gets a 403 page with the login form.
pub struct Viewer(pub Req);

impl FromRequestParts<Arc<Dash>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dash: &Arc<Dash>) -> Result<Self, Response> {
        let mut req = req_of(parts);
        req.seq = dash.seq();
        let by_addr = req.client.is_some_and(|ip| dash.view.allows(ip));
        if by_addr || req.principal.is_some() {
            return Ok(Viewer(req));
        }
        Err(crate::pages::login::forbidden(dash, &req))
    }
}

/// A page: HTML with the headers every page gets.
pub fn html(status: StatusCode, markup: Markup) -> Response {
    let mut resp = (status, markup.into_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// No inline script or style, nothing from elsewhere, no framing.
pub fn secure_headers(h: &mut axum::http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
             object-src 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// 303 to `to` (a local path), after a form.
pub fn see_other(to: &str) -> Response {
    let to = local_path(to).unwrap_or("/");
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `p` when it is a path on this site (no scheme, no `//host`, no
/// backslashes or control characters), for `next` parameters.
pub fn local_path(p: &str) -> Option<&str> {
    let ok = p.starts_with('/')
        && !p.starts_with("//")
        && !p.starts_with("/\\")
        && !p.chars().any(|c| c.is_control() || c == '\\')
        && p.len() <= 2048;
    ok.then_some(p)
}

/// A form's fields (the first value of each name).
pub type Fields = BTreeMap<String, String>;

pub fn parse_form(body: &[u8]) -> Result<Fields, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| format!("malformed form: {e}"))?;
    let mut out = Fields::new();
    for (k, v) in pairs {
        out.entry(k).or_insert(v);
    }
    Ok(out)
}

/// Validation errors of a form, by field name.
#[derive(Debug, Default, Clone)]
pub struct FormErrors(pub BTreeMap<&'static str, String>);

impl FormErrors {
    pub fn add(&mut self, field: &'static str, msg: impl Into<String>) {
        self.0.entry(field).or_insert_with(|| msg.into());
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A form re-shown after a failed post: what was typed and what is wrong.
#[derive(Debug, Default, Clone)]
pub struct FormState {
    /// Which form (its id) the values belong to.
    pub form: &'static str,
    pub values: Fields,
    pub errors: FormErrors,
}

impl FormState {
    pub fn for_form(&self, form: &str) -> Option<&FormState> {
        (self.form == form).then_some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_paths_stay_local() {
        assert_eq!(local_path("/nodes?q=a"), Some("/nodes?q=a"));
        for bad in [
            "//evil.example",
            "/\\evil",
            "http://x",
            "nodes",
            "/a\nb",
            "/a\\b",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn forms_parse() {
        let f = parse_form(b"a=1&b=%3Cx%3E&a=2").unwrap();
        assert_eq!(f["a"], "1");
        assert_eq!(f["b"], "<x>");
    }
}
