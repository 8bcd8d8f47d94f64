//! The dashboard over HTTP against real agents on loopback: every page and
//! asset with its headers; bad query strings and bad form input answered
//! 400 with the message next to the field and the bad value escaped;
//! logging in with the API token (wrong tokens, `next` kept local, the
//! per-address limit, logging out); actions refused without credentials,
//! CSRF token or from another site, with nothing changed; actions that work
//! with a session or the bearer token; the viewing rule by address; and a
//! real serf agent whose name, tags and Cloudy services carry markup, shown
//! escaped on every page and in the live stream; the apps pages (a store
//! template carrying markup, the category filter, the generated install
//! form and its errors, forged installs and actions refused) and, with the
//! real Docker daemon, an app installed, logged live, stopped and removed
//! through them and listed by a second node; the monitoring pages (off
//! on a plain node; on a monitor of two loopback devices, one with a title
//! carrying markup and SNMP from Debian's snmpd, and one that nothing
//! answers: states, owners, samples,
//! charts, the resolution selector, bad parameters and unknown devices).
//!
//! The requests go over real sockets (reqwest, redirects not followed), so
//! the dashboard sees a loopback client address as a browser on the same
//! machine would be seen.

use nuvol_catalog::cloudy::{encode_services, CloudyService};
use nuvol_testkit::{eventually, require_serf, wait_until_msg, NuvolAgent, SerfAgent};
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------
// A small blocking HTTP client for one agent.

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    /// A header's value ("" when absent).
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    #[track_caller]
    fn expect(&self, status: u16, what: &str) -> &Self {
        assert_eq!(
            self.status, status,
            "{what}: status {} (headers {:?}), body:\n{}",
            self.status, self.headers, self.body
        );
        self
    }

    /// An HTML page with the headers every page gets.
    #[track_caller]
    fn expect_page(&self, status: u16, what: &str) -> &Self {
        self.expect(status, what);
        assert!(
            self.header("content-type").starts_with("text/html"),
            "{what}: content type {:?}",
            self.header("content-type")
        );
        let csp = self.header("content-security-policy");
        assert!(
            csp.contains("default-src 'self'")
                && csp.contains("script-src 'self'")
                && csp.contains("frame-ancestors 'none'")
                && !csp.contains("unsafe-inline"),
            "{what}: CSP {csp:?}"
        );
        assert_eq!(self.header("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(self.header("cache-control"), "no-store", "{what}");
        assert!(
            self.body.starts_with("<!DOCTYPE html>") && self.body.contains("<html lang=\"en\">"),
            "{what}: not a whole page with its language:\n{}",
            self.body
        );
        self
    }

    /// The `Location` of a 303.
    #[track_caller]
    fn expect_redirect(&self, to: &str, what: &str) -> &Self {
        self.expect(303, what);
        assert_eq!(self.header("location"), to, "{what}");
        self
    }
}

/// Percent-encode a form or query value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A logged-in browser: its cookie and the session's CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

impl Session {
    fn cookie(&self) -> (&'static str, &str) {
        ("cookie", &self.cookie)
    }
}

/// One nuvol agent and a client for its HTTP address.
struct Node {
    agent: NuvolAgent,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Node {
    /// Start `nuvol agent` (profile local, no mDNS, `args` besides) and wait
    /// until the dashboard runs.
    fn start(name: &str, args: &[&str]) -> Node {
        let agent = NuvolAgent::builder(NUVOL, name)
            .profile("local")
            .arg("--mdns=false")
            .args(args.iter().copied())
            .spawn()
            .unwrap();
        Node::of(agent)
    }

    fn of(agent: NuvolAgent) -> Node {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(T)
            .build()
            .unwrap();
        let mut n = Node {
            base: format!("http://{}:7000", agent.ip()),
            agent,
            rt,
            http,
            token: String::new(),
        };
        // The dashboard loads the API token when it runs: before that a
        // login would be refused (and counted as a failed attempt).
        wait_until_msg("the dashboard running", T, POLL, || {
            n.try_send(reqwest::Method::GET, "/v1/agent/components", None, &[])
                .ok()
                .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
                .and_then(|v| {
                    v.as_array()?
                        .iter()
                        .find(|c| c["name"] == "dashboard")
                        .map(|c| {
                            c["state"]
                                .as_str()
                                .unwrap_or("")
                                .eq_ignore_ascii_case("running")
                        })
                })
                .unwrap_or(false)
        })
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", n.agent.log_tail(40)));
        n.token = nuvol_api::token::read_token(&n.data()).expect("the API token file");
        n
    }

    fn name(&self) -> &str {
        self.agent.name()
    }

    fn data(&self) -> PathBuf {
        self.agent.dir().join("data")
    }

    fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> reqwest::Result<Resp> {
        self.rt.block_on(async {
            let mut rb = self.http.request(method, format!("{}{path}", self.base));
            if let Some(b) = body {
                rb = rb
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(b);
            }
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            let r = rb.send().await?;
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let body = r.text().await?;
            Ok(Resp {
                status,
                headers,
                body,
            })
        })
    }

    #[track_caller]
    fn get(&self, path: &str) -> Resp {
        self.get_with(path, &[])
    }

    #[track_caller]
    fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.try_send(reqwest::Method::GET, path, None, headers)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// POST a urlencoded form.
    #[track_caller]
    fn post(&self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Resp {
        self.try_send(reqwest::Method::POST, path, Some(form(fields)), headers)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// POST a form as a logged-in browser would (cookie and `_csrf`).
    #[track_caller]
    fn post_as(&self, s: &Session, path: &str, fields: &[(&str, &str)]) -> Resp {
        self.post(path, &plus_csrf(fields, &s.csrf), &[s.cookie()])
    }

    #[track_caller]
    fn json(&self, path: &str) -> Value {
        let r = self.get(path);
        r.expect(200, path);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
    }

    /// `GET /v1/services`.
    fn services(&self) -> Vec<Value> {
        self.json("/v1/services").as_array().unwrap().clone()
    }

    fn has_service(&self, node: &str, stype: &str, port: u16) -> bool {
        self.services()
            .iter()
            .any(|s| s["node"] == node && s["type"] == stype && s["port"] == port)
    }

    /// This node's tags, from `GET /v1/agent`.
    fn tags(&self) -> serde_json::Map<String, Value> {
        self.json("/v1/agent")["tags"].as_object().unwrap().clone()
    }

    fn join_json(&self) -> PathBuf {
        self.data().join("join.json")
    }

    /// Log in with the API token and read the session's CSRF token from a
    /// page's hidden `_csrf` input.
    #[track_caller]
    fn login(&self) -> Session {
        let r = self.post(
            "/login",
            &[("token", &self.token), ("next", "/services")],
            &[],
        );
        r.expect_redirect("/services", "logging in");
        let cookie = session_cookie(&r).expect("a session cookie");
        let page = self.get_with("/services", &[("cookie", &cookie)]);
        page.expect_page(200, "/services logged in");
        let csrf = hidden_csrf(&page.body).expect("a _csrf field on /services when logged in");
        Session { cookie, csrf }
    }

    /// Open a live stream (server-sent events).
    #[track_caller]
    fn live(&self, path: &str, headers: &[(&str, &str)]) -> Live {
        let resp = self.rt.block_on(async {
            let mut rb = self
                .http
                .get(format!("{}{path}", self.base))
                // The stream lasts: only the client's overall timeout
                // would end it, so give it none and bound each read.
                .timeout(Duration::from_secs(3600));
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            rb.send().await.unwrap()
        });
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream"),
            "{path}: {:?}",
            resp.headers()
        );
        Live {
            resp,
            buf: String::new(),
            seen: Vec::new(),
        }
    }

    /// Read `live` until an event satisfies `pred`; returns it.
    #[track_caller]
    fn live_until(&self, live: &mut Live, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(v) = live.seen.iter().find(|v| pred(v)) {
                return v.clone();
            }
            let left = T.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what} on the live stream; got {:#?}",
                live.seen
            );
            let chunk = self
                .rt
                .block_on(async { tokio::time::timeout(left, live.resp.chunk()).await });
            match chunk {
                Ok(Ok(Some(bytes))) => live.feed(&bytes),
                Ok(Ok(None)) => panic!("the live stream ended waiting for {what}"),
                Ok(Err(e)) => panic!("the live stream failed waiting for {what}: {e}"),
                Err(_) => {} // the loop's check fails it
            }
        }
    }
}

/// A live stream and the events read from it so far.
struct Live {
    resp: reqwest::Response,
    buf: String,
    seen: Vec<Value>,
}

impl Live {
    fn feed(&mut self, bytes: &[u8]) {
        self.buf.push_str(&String::from_utf8_lossy(bytes));
        while let Some(end) = self.buf.find("\n\n") {
            let block: String = self.buf.drain(..end + 2).collect();
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect::<Vec<_>>()
                .join("\n");
            if data.is_empty() {
                continue; // a keep-alive comment
            }
            let v: Value = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("live event data is not JSON ({e}): {data}"));
            self.seen.push(v);
        }
    }
}

/// `fields` and `_csrf=token`.
fn plus_csrf<'a>(fields: &[(&'a str, &'a str)], token: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut f = fields.to_vec();
    f.push(("_csrf", token));
    f
}

fn session_cookie(r: &Resp) -> Option<String> {
    r.set_cookies()
        .iter()
        .find_map(|c| {
            c.split(';')
                .next()
                .filter(|kv| kv.starts_with("nuvol_session="))
        })
        .map(str::to_owned)
}

fn hidden_csrf(body: &str) -> Option<String> {
    let re = regex_lite::Regex::new(r#"name="_csrf" value="([0-9a-f]*)""#).unwrap();
    re.captures(body)
        .map(|c| c[1].to_owned())
        .filter(|t| !t.is_empty())
}

// ---------------------------------------------------------------------
// Reading the markup.

/// The start tag holding `attr` (e.g. `id="x"`), and where it starts.
fn tag_with<'a>(body: &'a str, attr: &str) -> Option<(usize, &'a str)> {
    let at = body.find(attr)?;
    let start = body[..at].rfind('<')?;
    let end = at + body[at..].find('>')?;
    Some((start, &body[start..=end]))
}

/// The text right inside the element whose start tag holds `attr`.
fn text_of<'a>(body: &'a str, attr: &str) -> Option<&'a str> {
    let (start, tag) = tag_with(body, attr)?;
    let inner = &body[start + tag.len()..];
    Some(&inner[..inner.find("</")?])
}

/// The error shown for field `id` (an input, select or textarea): an
/// element with class `error` inside the same field, after the control,
/// which names it in `aria-describedby` and is marked invalid. Returns the
/// message.
#[track_caller]
fn field_error<'a>(body: &'a str, id: &str, what: &str) -> &'a str {
    let err_id = format!("{id}-error");
    let (at, control) = tag_with(body, &format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("{what}: no control #{id} in:\n{body}"));
    assert!(
        control.contains("aria-invalid=\"true\""),
        "{what}: #{id} not marked invalid: {control}"
    );
    let described = regex_lite::Regex::new(r#"aria-describedby="([^"]*)""#)
        .unwrap()
        .captures(control)
        .map(|c| c[1].to_owned())
        .unwrap_or_default();
    assert!(
        described.split(' ').any(|d| d == err_id),
        "{what}: #{id} is not described by its error: {control}"
    );
    let (err_at, err_tag) = tag_with(body, &format!("id=\"{err_id}\""))
        .unwrap_or_else(|| panic!("{what}: no #{err_id} in:\n{body}"));
    assert!(err_tag.contains("class=\"error\""), "{what}: {err_tag}");
    assert!(err_at > at, "{what}: the error comes before its field");
    let between = &body[at..err_at];
    assert!(
        !between.contains("<div") && !between.contains("</div>"),
        "{what}: the error is not in #{id}'s field: {between}"
    );
    let msg = text_of(body, &format!("id=\"{err_id}\"")).unwrap().trim();
    assert!(!msg.is_empty(), "{what}: an empty error");
    msg
}

/// The messages of every element with class `error`.
fn errors(body: &str) -> Vec<String> {
    let re =
        regex_lite::Regex::new(r#"<[a-z]+[^>]*class="[^"]*\berror\b[^"]*"[^>]*>([^<]*)<"#).unwrap();
    re.captures_iter(body).map(|c| c[1].to_owned()).collect()
}

/// No other field of `form` is marked invalid but `id`.
#[track_caller]
fn only_invalid(body: &str, id: &str, what: &str) {
    let re = regex_lite::Regex::new(r#"<(input|select|textarea)[^>]*>"#).unwrap();
    for m in re.find_iter(body) {
        let t = m.as_str();
        if t.contains("aria-invalid=\"true\"") {
            assert!(
                t.contains(&format!("id=\"{id}\"")),
                "{what}: also invalid: {t}"
            );
        }
    }
}

// ---------------------------------------------------------------------
// 1. Pages, assets, 404s.

#[test]
fn every_page_is_html_with_safe_headers_and_assets_are_cached() {
    let n = Node::start("pages", &[]);
    let own = format!("/nodes/{}", n.name());
    for path in [
        "/",
        "/nodes",
        own.as_str(),
        "/services",
        "/services?type=http&q=x",
        "/events",
        "/settings",
        "/login",
        "/login?next=/nodes",
    ] {
        let r = n.get(path);
        r.expect_page(200, path);
        assert!(
            r.body.contains("<main id=\"main\""),
            "{path}: no main landmark"
        );
    }
    // The language: from Accept-Language, or the switcher's cookie.
    let r = n.get_with("/nodes", &[("accept-language", "ca-ES,ca;q=0.9,en;q=0.5")]);
    assert!(r.body.contains("<html lang=\"ca\">"), "{}", r.body);
    let r = n.get_with("/nodes", &[("cookie", "nuvol_lang=es")]);
    assert!(r.body.contains("<html lang=\"es\">"), "{}", r.body);
    // The node's own page is about it.
    let r = n.get(&own);
    assert!(
        r.body.contains("<title>pages · nuvol</title>"),
        "{}",
        r.body
    );

    // The assets the pages link, as linked (with the version), and plain.
    let page = n.get("/nodes").body;
    let linked: Vec<String> = regex_lite::Regex::new(r#"(?:href|src)="(/assets/[^"]+)""#)
        .unwrap()
        .captures_iter(&page)
        .map(|c| c[1].to_owned())
        .collect();
    for name in ["nuvol.css", "live.js", "icon.svg"] {
        assert!(
            linked
                .iter()
                .any(|l| l.starts_with(&format!("/assets/{name}?v="))),
            "/nodes does not link {name} with its version: {linked:?}"
        );
    }
    for (path, ctype) in linked
        .iter()
        .map(String::as_str)
        .chain(["/assets/nuvol.css", "/assets/live.js", "/assets/icon.svg"])
        .map(|p| {
            let ctype = if p.contains(".css") {
                "text/css"
            } else if p.contains(".js") {
                "text/javascript"
            } else {
                "image/svg+xml"
            };
            (p, ctype)
        })
    {
        let r = n.get(path);
        r.expect(200, path);
        assert!(
            r.header("content-type").starts_with(ctype),
            "{path}: {:?}",
            r.headers
        );
        let cc = r.header("cache-control");
        assert!(
            cc.contains("max-age=31536000") && cc.contains("immutable"),
            "{path}: cache-control {cc:?}"
        );
        assert_eq!(r.header("x-content-type-options"), "nosniff", "{path}");
        assert!(!r.body.is_empty(), "{path}: empty");
    }
    n.get("/assets/nope.js").expect(404, "an unknown asset");

    // Unknown pages: the HTML 404 page; under /v1/ a JSON 404.
    for path in [
        "/nope",
        "/nodes/no-such-node",
        "/queries/999",
        "/queries/abc",
        "/queries/%FF",
        "/a/b/c",
    ] {
        let r = n.get(path);
        r.expect_page(404, path);
        assert!(
            r.body.contains("href=\"/\"") || r.body.contains("href=\"/nodes\""),
            "{path}"
        );
    }
    for path in ["/v1/nope", "/v1"] {
        let r = n.get(path);
        r.expect(404, path);
        assert!(
            r.header("content-type").starts_with("application/json"),
            "{path}: {:?}",
            r.headers
        );
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert!(v["error"].is_string(), "{path}: {v}");
    }
}

// ---------------------------------------------------------------------
// 2. Bad query strings.

#[test]
fn bad_query_strings_get_400_with_the_message_next_to_the_field() {
    let n = Node::start("query", &[]);
    // (path, the control the error belongs to if any, words of the message)
    let cases: &[(&str, Option<&str>, &str)] = &[
        (
            "/nodes?status=bogus",
            Some("nodes-status"),
            "Unknown value &quot;bogus&quot;",
        ),
        (
            "/nodes?status=%22%3E%3Cx%3E",
            Some("nodes-status"),
            "Unknown value &quot;\\&quot;&gt;&lt;x&gt;&quot;",
        ),
        (
            "/nodes?sort=bogus",
            None,
            "Cannot sort by &quot;bogus&quot;",
        ),
        ("/nodes?order=sideways", None, "The order is asc or desc"),
        ("/nodes?q=a&q=b", Some("nodes-q"), "is given more than once"),
        (
            "/nodes?zzz=1",
            Some("nodes-q"),
            "Unknown parameter &quot;zzz&quot;",
        ),
        (
            "/services?type=%3Cx%3E",
            None,
            "&quot;&lt;x&gt;&quot; is not a service type",
        ),
        ("/services?type=a%20b", None, "is not a service type"),
        (
            "/services?unknown=1",
            None,
            "Unknown parameter &quot;unknown&quot;",
        ),
        (
            "/services?q=a&q=b",
            Some("services-q"),
            "&quot;q&quot; is given more than once",
        ),
        (
            "/services?sort=%3Cx%3E",
            None,
            "Cannot sort by &quot;&lt;x&gt;&quot;",
        ),
        ("/services?page=0", None, "Unknown value &quot;0&quot;"),
        ("/services?page=x", None, "Unknown value &quot;x&quot;"),
    ];
    for (path, field, msg) in cases {
        let r = n.get(path);
        r.expect_page(400, path);
        assert!(
            !r.body.contains("<x>") && !r.body.contains("\"><x"),
            "{path}: the bad value is not escaped:\n{}",
            r.body
        );
        match field {
            Some(id) => {
                let got = field_error(&r.body, id, path);
                assert!(got.contains(msg), "{path}: error {got:?}, expected {msg:?}");
                only_invalid(&r.body, id, path);
            }
            None => {
                let errs = errors(&r.body);
                assert!(
                    errs.iter().any(|e| e.contains(msg)),
                    "{path}: no element with class error says {msg:?}: {errs:?}"
                );
                // Inside the filter form, next to its fields.
                let form_at = r.body.find("class=\"filters\"").expect("the filter form");
                let form_end = form_at + r.body[form_at..].find("</form>").unwrap();
                assert!(
                    r.body[form_at..form_end].contains(msg),
                    "{path}: the error is not in the filter form"
                );
            }
        }
        // The page still works: the list and the navigation are there.
        assert!(r.body.contains("<nav aria-label="), "{path}");
    }
    // A node name that is not UTF-8 once decoded: a page, not plain text.
    let r = n.get("/nodes/%FF");
    r.expect_page(400, "/nodes/%FF");
    assert!(!errors(&r.body).is_empty(), "/nodes/%FF: no error shown");
    // The language switcher's parameters.
    for path in ["/lang?set=zz", "/lang?set=en&x=1", "/lang?set=%3Cx%3E"] {
        let r = n.get(path);
        r.expect_page(400, path);
        assert!(!errors(&r.body).is_empty(), "{path}: no error shown");
        assert!(!r.body.contains("<x>"), "{path}: not escaped");
    }
    let r = n.get("/live?page=%3Cx%3E");
    r.expect(400, "/live with an unknown page");
    assert!(!r.body.contains("<x>"), "{}", r.body);
    n.get("/live?page=nodes&bogus=1")
        .expect(400, "/live with an unknown parameter");
}

// ---------------------------------------------------------------------
// 3. Login.

#[test]
fn login_with_the_api_token_sets_a_strict_cookie_and_logout_ends_it() {
    let n = Node::start("login", &[]);
    let r = n.get("/login?next=/services");
    r.expect_page(200, "/login");
    let (_, f) = tag_with(&r.body, "id=\"login\"").expect("form#login");
    assert!(
        f.starts_with("<form") && f.contains("method=\"post\"") && f.contains("action=\"/login\""),
        "{f}"
    );
    let (_, input) = tag_with(&r.body, "id=\"login-token\"").expect("#login-token");
    assert!(
        input.contains("name=\"token\"") && input.contains("type=\"password\""),
        "{input}"
    );
    assert!(
        r.body.contains("name=\"next\" value=\"/services\""),
        "next not kept"
    );
    // No session, nothing to act with.
    assert!(
        !r.body.contains("name=\"_csrf\""),
        "a CSRF field without a session"
    );

    // A wrong token: 401, the error at the field, no cookie, and the
    // typed token not echoed back.
    let wrong = "0123456789abcdef-wrong";
    let r = n.post("/login", &[("token", wrong), ("next", "/services")], &[]);
    r.expect_page(401, "a wrong token");
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    let msg = field_error(&r.body, "login-token", "a wrong token");
    assert!(msg.contains("not this node's API token"), "{msg}");
    assert!(!r.body.contains(wrong), "the wrong token is shown back");
    // An empty one: 400 (not counted), the error at the field.
    let r = n.post("/login", &[("token", ""), ("next", "/")], &[]);
    r.expect_page(400, "an empty token");
    field_error(&r.body, "login-token", "an empty token");
    assert!(r.set_cookies().is_empty());

    // The right token: 303 to next, an HttpOnly SameSite=Strict cookie.
    let r = n.post(
        "/login",
        &[("token", &n.token), ("next", "/services?type=http")],
        &[],
    );
    r.expect_redirect("/services?type=http", "the right token");
    let set = r.set_cookies();
    assert_eq!(set.len(), 1, "{set:?}");
    let c = set[0];
    assert!(c.starts_with("nuvol_session="), "{c}");
    let attrs: Vec<&str> = c.split(';').map(str::trim).collect();
    for want in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(&want), "{want} missing from {c}");
    }
    let cookie = session_cookie(&r).unwrap();
    assert!(
        cookie.len() > "nuvol_session=".len() + 30,
        "a short session id: {cookie}"
    );
    assert!(!c.contains(&n.token), "the token is in the cookie");
    // The cookie gives a session: forms to act and a logout button.
    let page = n.get_with("/services", &[("cookie", &cookie)]);
    page.expect_page(200, "/services with the session");
    assert!(
        page.body.contains("id=\"publish\""),
        "no publish form when logged in"
    );
    assert!(page.body.contains("action=\"/logout\""), "no logout");
    let csrf = hidden_csrf(&page.body).unwrap();
    assert_eq!(csrf.len(), 64, "{csrf}");
    let anon = n.get("/services");
    assert!(
        !anon.body.contains("id=\"publish\""),
        "a publish form without a session"
    );
    // A made-up cookie is no session.
    let fake = n.get_with("/services", &[("cookie", "nuvol_session=00112233")]);
    assert!(!fake.body.contains("id=\"publish\""));

    // `next` stays on this site.
    for (next, to) in [
        ("//evil.example", "/"),
        ("http://evil", "/"),
        ("https://evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("nodes", "/"),
        ("", "/"),
        ("/nodes?q=a", "/nodes?q=a"),
    ] {
        let r = n.post("/login", &[("token", &n.token), ("next", next)], &[]);
        r.expect_redirect(to, &format!("next={next:?}"));
    }
    // The same for the next of the login page and the language switcher.
    let r = n.get("/login?next=//evil.example");
    assert!(r.body.contains("name=\"next\" value=\"/\""), "{}", r.body);
    n.get("/lang?set=ca&next=//evil.example")
        .expect_redirect("/", "/lang next");
    n.get("/lang?set=ca&next=/nodes")
        .expect_redirect("/nodes", "/lang next");

    // Logging out needs the CSRF token too (a forged logout is refused)...
    let r = n.post("/logout", &[], &[("cookie", &cookie)]);
    r.expect(403, "logout without _csrf");
    assert!(n
        .get_with("/services", &[("cookie", &cookie)])
        .body
        .contains("id=\"publish\""));
    // ...and with it ends the session and clears the cookie.
    let r = n.post("/logout", &[("_csrf", &csrf)], &[("cookie", &cookie)]);
    r.expect_redirect("/", "logout");
    let cleared = r.set_cookies();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("nuvol_session=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    let page = n.get_with("/services", &[("cookie", &cookie)]);
    page.expect_page(200, "/services after logout");
    assert!(
        !page.body.contains("id=\"publish\""),
        "the session outlived logout"
    );
    let r = n.post(
        "/settings/tags",
        &[
            ("action", "set"),
            ("key", "after"),
            ("value", "logout"),
            ("_csrf", &csrf),
        ],
        &[("cookie", &cookie)],
    );
    r.expect(401, "acting with an ended session");
    assert!(!n.tags().contains_key("after"));
}

#[test]
fn more_than_five_wrong_logins_a_minute_are_refused_with_429() {
    let n = Node::start("limit", &[]);
    for i in 0..5 {
        let r = n.post(
            "/login",
            &[("token", &format!("wrong-{i}")), ("next", "/")],
            &[],
        );
        r.expect_page(401, &format!("wrong attempt {}", i + 1));
    }
    let r = n.post("/login", &[("token", "wrong-6"), ("next", "/")], &[]);
    r.expect_page(429, "the sixth wrong attempt");
    let msg = field_error(&r.body, "login-token", "429");
    assert!(msg.contains("Too many attempts"), "{msg}");
    assert!(r.set_cookies().is_empty());
    // Locked out, even the right token gives no session for now.
    let r = n.post("/login", &[("token", &n.token), ("next", "/")], &[]);
    r.expect_page(429, "the right token while locked out");
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    // The bearer token is not a login and still works.
    let r = n.post(
        "/settings/tags",
        &[("action", "set"), ("key", "k"), ("value", "v")],
        &[("authorization", &format!("Bearer {}", n.token))],
    );
    r.expect_redirect("/settings?done=tag", "bearer while logins are locked out");
}

// ---------------------------------------------------------------------
// 4. Actions without credentials, CSRF token or from another site.

/// POST `path` every way that must be refused — no credentials (401), a
/// CSRF token alone or a wrong bearer token (401), the session's cookie
/// without or with a wrong CSRF token (403), from another site (403) —
/// checking with `unchanged` that nothing happened.
fn refused_without_credentials_csrf_or_same_origin(
    n: &Node,
    s: &Session,
    path: &str,
    fields: &[(&str, &str)],
    unchanged: &dyn Fn(&str),
) {
    let bad_csrf = "f".repeat(64);
    let bearer_wrong = format!("Bearer {}", "0".repeat(64));
    let with_csrf = |token| plus_csrf(fields, token);
    let what = |w: &str| format!("POST {path} {w}");
    // Nothing at all: 401.
    let r = n.post(path, fields, &[]);
    r.expect(401, &what("without credentials"));
    unchanged(&what("without credentials"));
    // A CSRF token alone is no credential.
    n.post(path, &with_csrf(&s.csrf), &[])
        .expect(401, &what("with only _csrf"));
    // A wrong bearer token.
    n.post(path, fields, &[("authorization", &bearer_wrong)])
        .expect(401, &what("with a wrong bearer token"));
    unchanged(&what("with a wrong bearer token"));
    // The session's cookie without, with an empty or a wrong token.
    n.post(path, fields, &[s.cookie()])
        .expect(403, &what("without _csrf"));
    unchanged(&what("without _csrf"));
    n.post(path, &with_csrf(""), &[s.cookie()])
        .expect(403, &what("with an empty _csrf"));
    n.post(path, &with_csrf(&bad_csrf), &[s.cookie()])
        .expect(403, &what("with a wrong _csrf"));
    n.post(path, fields, &[s.cookie(), ("x-csrf-token", &bad_csrf)])
        .expect(403, &what("with a wrong X-CSRF-Token"));
    unchanged(&what("with a wrong _csrf"));
    // The right token, but the browser says another site sent it.
    for cross in [
        [("sec-fetch-site", "cross-site"), ("x-nothing", "")],
        [("sec-fetch-site", "same-site"), ("x-nothing", "")],
        [("origin", "http://evil.example"), ("x-nothing", "")],
        [("origin", "null"), ("x-nothing", "")],
    ] {
        let mut h = vec![s.cookie()];
        h.extend(cross.iter().filter(|(k, _)| *k != "x-nothing"));
        let r = n.post(path, &with_csrf(&s.csrf), &h);
        r.expect(403, &what(&format!("from another site ({:?})", cross[0])));
    }
    unchanged(&what("from another site"));
    // A cookie-less cross-site post is refused before anything else.
    n.post(path, fields, &[("sec-fetch-site", "cross-site")])
        .expect(403, &what("cross-site without credentials"));
    unchanged(&what("cross-site without credentials"));
}

#[test]
fn actions_change_nothing_without_credentials_csrf_or_from_another_site() {
    let n = Node::start("guard", &[]);
    let other = Node::start("other", &[]);
    let other_addr = other.agent.bind().to_string();
    let s = n.login();
    // Something to unpublish.
    n.post(
        "/services/publish",
        &[
            ("type", "keep"),
            ("port", "7"),
            ("description", "kept"),
            ("txt", ""),
        ],
        &[("authorization", &format!("Bearer {}", n.token))],
    )
    .expect_redirect("/services?done=publish", "publishing with the bearer token");
    assert!(n.has_service("guard", "keep", 7));

    let actions: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "/services/publish",
            vec![
                ("type", "web"),
                ("port", "8080"),
                ("description", "Web"),
                ("txt", "a=1"),
            ],
        ),
        ("/services/unpublish", vec![("type", "keep"), ("port", "7")]),
        (
            "/settings/tags",
            vec![("action", "set"), ("key", "zone"), ("value", "x")],
        ),
        (
            "/settings/tags",
            vec![("action", "delete"), ("key", "keep")],
        ),
        (
            "/events/send",
            vec![("name", "forged-event"), ("payload", "x")],
        ),
        (
            "/queries",
            vec![
                ("name", "forged-query"),
                ("payload", "x"),
                ("timeout", "1s"),
            ],
        ),
        ("/nodes/join", vec![("addr", &other_addr)]),
        ("/nodes/scan", vec![]),
        ("/settings/bootstrap", vec![("addrs", "127.0.0.1:1")]),
    ];
    // A tag that a forged delete would remove.
    n.post(
        "/settings/tags",
        &[("action", "set"), ("key", "keep"), ("value", "1")],
        &[("authorization", &format!("Bearer {}", n.token))],
    )
    .expect_redirect("/settings?done=tag", "setting a tag with the bearer token");

    let unchanged = |what: &str| {
        let tags = n.tags();
        assert!(
            !tags.contains_key("zone"),
            "{what}: a tag was set: {tags:?}"
        );
        assert_eq!(
            tags.get("keep"),
            Some(&Value::from("1")),
            "{what}: a tag was deleted"
        );
        assert!(!n.has_service("guard", "web", 8080), "{what}: published");
        assert!(n.has_service("guard", "keep", 7), "{what}: unpublished");
        assert!(!n.join_json().exists(), "{what}: join.json written");
        let members = n.json("/v1/members");
        assert_eq!(
            members.as_array().unwrap().len(),
            1,
            "{what}: joined: {members}"
        );
        n.get("/queries/1")
            .expect_page(404, &format!("{what}: a query ran"));
        let nodes = n.get("/nodes").body;
        assert!(nodes.contains("Not scanned yet."), "{what}: a scan ran");
    };
    for (path, fields) in &actions {
        refused_without_credentials_csrf_or_same_origin(&n, &s, path, fields, &unchanged);
    }

    // The checks above can see a change: each action, done properly, does
    // change what they look at.
    n.post_as(&s, "/nodes/scan", &[])
        .expect_redirect("/nodes?done=scan&sort=quality", "scan");
    assert!(!n.get("/nodes").body.contains("Not scanned yet."));
    n.post_as(&s, "/queries", &[("name", "real-query"), ("timeout", "1s")])
        .expect_redirect("/queries/1", "a query");
    n.get("/queries/1").expect_page(200, "the query's page");
    n.post_as(
        &s,
        "/events/send",
        &[("name", "real-event"), ("payload", "hello")],
    )
    .expect_redirect("/events?done=event", "an event");
    // The event log, in order: the forged events never got there.
    wait_until_msg("the sent event in the log", T, POLL, || {
        n.get("/events").body.contains("real-event")
    })
    .unwrap();
    assert!(!n.get("/events").body.contains("forged-event"));
    n.post_as(&s, "/nodes/join", &[("addr", &other_addr)])
        .expect_redirect("/nodes?done=join", "join");
    assert_eq!(n.json("/v1/members").as_array().unwrap().len(), 2);
    n.post_as(&s, "/settings/bootstrap", &[("addrs", &other_addr)])
        .expect_redirect("/settings?done=bootstrap", "bootstrap");
    assert!(n.join_json().exists());
    // The same CSRF token in the header instead of the form.
    n.post(
        "/settings/tags",
        &[("action", "set"), ("key", "zone"), ("value", "x")],
        &[s.cookie(), ("x-csrf-token", &s.csrf)],
    )
    .expect_redirect("/settings?done=tag", "X-CSRF-Token");
    assert_eq!(n.tags().get("zone"), Some(&Value::from("x")));
    // Same-origin browsers' headers are fine.
    let origin = n.base.clone();
    n.post(
        "/services/unpublish",
        &[("type", "keep"), ("port", "7"), ("_csrf", &s.csrf)],
        &[
            s.cookie(),
            ("sec-fetch-site", "same-origin"),
            ("origin", &origin),
        ],
    )
    .expect_redirect("/services?done=unpublish", "same-origin unpublish");
    assert!(!n.has_service("guard", "keep", 7));
}

// ---------------------------------------------------------------------
// 5. Forms with a session.

#[test]
fn forms_publish_tag_and_save_bootstrap_addresses_and_refuse_bad_input() {
    let n = Node::start("forms", &[]);
    let s = n.login();
    let me = n.name().to_owned();

    // Bad publish input: 400, the message at the field, nothing published.
    let good = [
        ("type", "http"),
        ("port", "8080"),
        ("description", "Web"),
        ("txt", "path=/x"),
    ];
    let with = |k: &str, v: &'static str| -> Vec<(&'static str, &'static str)> {
        good.iter()
            .map(|(gk, gv)| if *gk == k { (*gk, v) } else { (*gk, *gv) })
            .collect()
    };
    for (field, value) in [
        ("port", "0"),
        ("port", "abc"),
        ("port", "65536"),
        ("port", ""),
        ("type", ""),
        ("type", "a b"),
        ("type", "<x>"),
        ("txt", "novalue"),
        ("txt", "a=1&b"),
        ("txt", "k=v w"),
        ("description", ""),
    ] {
        let what = format!("publish with {field}={value:?}");
        let r = n.post_as(&s, "/services/publish", &with(field, value));
        r.expect_page(400, &what);
        let id = format!("publish-{field}");
        field_error(&r.body, &id, &what);
        only_invalid(&r.body, &id, &what);
        assert!(!r.body.contains("<x>"), "{what}: not escaped");
        // What was typed is kept in the form.
        let (_, desc) = tag_with(&r.body, "id=\"publish-description\"").unwrap();
        if field != "description" {
            assert!(desc.contains("value=\"Web\""), "{what}: {desc}");
        }
        assert!(
            n.services().is_empty(),
            "{what}: published {:?}",
            n.services()
        );
    }
    // A description longer than a service may carry.
    let long = "d".repeat(300);
    let r = n.post_as(
        &s,
        "/services/publish",
        &[
            ("type", "http"),
            ("port", "80"),
            ("description", &long),
            ("txt", ""),
        ],
    );
    r.expect_page(400, "a 300-byte description");
    field_error(&r.body, "publish-description", "a 300-byte description");
    assert!(n.services().is_empty());
    // Values typed back into the form are escaped.
    let r = n.post_as(
        &s,
        "/services/publish",
        &[
            ("type", "http"),
            ("port", "x"),
            ("description", "\"><b>d</b>"),
            ("txt", ""),
        ],
    );
    r.expect_page(400, "publish with markup in the description");
    assert!(
        r.body.contains("value=\"&quot;&gt;&lt;b&gt;d&lt;/b&gt;\""),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<b>d"));

    // Publishing: 303 to the list with a notice; in the REST API.
    n.post_as(&s, "/services/publish", &good)
        .expect_redirect("/services?done=publish", "publish");
    assert!(n.has_service(&me, "http", 8080), "{:?}", n.services());
    let r = n.get_with("/services?done=publish", &[s.cookie()]);
    r.expect_page(200, "/services?done=publish");
    assert!(r.body.contains(&format!("data-service=\"{me}/http/8080\"")));
    assert!(
        r.body.contains("role=\"status\""),
        "no notice after publishing"
    );
    // Unpublishing removes it.
    n.post_as(
        &s,
        "/services/unpublish",
        &[("type", "http"), ("port", "8080")],
    )
    .expect_redirect("/services?done=unpublish", "unpublish");
    assert!(!n.has_service(&me, "http", 8080));
    // Unpublishing what is not there: 400, a message.
    let r = n.post_as(
        &s,
        "/services/unpublish",
        &[("type", "http"), ("port", "8080")],
    );
    r.expect_page(400, "unpublishing again");
    assert!(!errors(&r.body).is_empty());

    // Tags: set, shown by the REST API; delete.
    n.post_as(
        &s,
        "/settings/tags",
        &[("action", "set"), ("key", "zone"), ("value", "b")],
    )
    .expect_redirect("/settings?done=tag", "set a tag");
    assert_eq!(n.tags().get("zone"), Some(&Value::from("b")));
    let r = n.get_with("/settings", &[s.cookie()]);
    assert!(r.body.contains("<tr data-key=\"zone\">"), "{}", r.body);
    n.post_as(
        &s,
        "/settings/tags",
        &[("action", "delete"), ("key", "zone")],
    )
    .expect_redirect("/settings?done=untag", "delete a tag");
    assert!(!n.tags().contains_key("zone"));
    // A value with a control character: 400 at the value field.
    let r = n.post_as(
        &s,
        "/settings/tags",
        &[("action", "set"), ("key", "zone"), ("value", "a\nb")],
    );
    r.expect_page(400, "a tag value with a newline");
    field_error(&r.body, "tags-value", "a tag value with a newline");
    assert!(!n.tags().contains_key("zone"));
    // A tag a component owns, and malformed keys: 400 at the key field.
    for (key, says) in [("services", "catalog"), ("", ""), ("a=b", "no =")] {
        let what = format!("setting tag {key:?}");
        let before = n.tags();
        let r = n.post_as(
            &s,
            "/settings/tags",
            &[("action", "set"), ("key", key), ("value", "x")],
        );
        r.expect_page(400, &what);
        let msg = field_error(&r.body, "tags-key", &what);
        assert!(msg.contains(says), "{what}: {msg}");
        assert_eq!(n.tags(), before, "{what}: tags changed");
    }
    let r = n.post_as(&s, "/settings/tags", &[("action", "rename"), ("key", "k")]);
    r.expect_page(400, "an unknown tag action");

    // Bootstrap addresses: a bad line is refused and nothing is saved...
    for bad in ["bad host", "127.0.0.1:1\nbad host", "host:99999"] {
        let what = format!("bootstrap {bad:?}");
        let r = n.post_as(&s, "/settings/bootstrap", &[("addrs", bad)]);
        r.expect_page(400, &what);
        field_error(&r.body, "bootstrap-addrs", &what);
        assert!(!n.join_json().exists(), "{what}: saved");
    }
    // ...a good one is saved in the data dir and shown.
    n.post_as(&s, "/settings/bootstrap", &[("addrs", "127.0.0.1:1")])
        .expect_redirect("/settings?done=bootstrap", "bootstrap 127.0.0.1:1");
    let saved = std::fs::read_to_string(n.join_json()).expect("join.json");
    assert!(saved.contains("127.0.0.1:1"), "{saved}");
    let r = n.get_with("/settings", &[s.cookie()]);
    let area = text_of(&r.body, "id=\"bootstrap-addrs\"").unwrap();
    assert_eq!(area.trim(), "127.0.0.1:1", "{}", r.body);
    // Viewers without a session see the addresses, not the form.
    let r = n.get("/settings");
    assert!(r.body.contains("<pre>127.0.0.1:1</pre>"), "{}", r.body);
    assert!(!r.body.contains("id=\"bootstrap\""));
    // An empty list clears them.
    n.post_as(&s, "/settings/bootstrap", &[("addrs", "")])
        .expect_redirect("/settings?done=bootstrap", "bootstrap cleared");
    let saved = std::fs::read_to_string(n.join_json()).unwrap_or_default();
    assert!(!saved.contains("127.0.0.1:1"), "{saved}");

    // Bad join input: 400 at the field (an unreachable address too).
    for addr in ["", "bad host", "127.0.0.1:1"] {
        let what = format!("join {addr:?}");
        let r = n.post_as(&s, "/nodes/join", &[("addr", addr)]);
        r.expect_page(400, &what);
        field_error(&r.body, "join-addr", &what);
        assert_eq!(n.json("/v1/members").as_array().unwrap().len(), 1, "{what}");
    }

    // Bad event and query input: 400 at the field.
    for (path, form_id, fields, field) in [
        (
            "/events/send",
            "event",
            vec![("name", ""), ("payload", "")],
            "name",
        ),
        (
            "/events/send",
            "event",
            vec![("name", "_serf_x"), ("payload", "")],
            "name",
        ),
        (
            "/queries",
            "query",
            vec![("name", "q"), ("timeout", "forever")],
            "timeout",
        ),
        (
            "/queries",
            "query",
            vec![("name", "q"), ("timeout", "5m")],
            "timeout",
        ),
    ] {
        let what = format!("{path} {fields:?}");
        let r = n.post_as(&s, path, &fields);
        r.expect_page(400, &what);
        field_error(&r.body, &format!("{form_id}-{field}"), &what);
    }
    let big = "x".repeat(600);
    let r = n.post_as(&s, "/events/send", &[("name", "e"), ("payload", &big)]);
    r.expect_page(400, "a 600-byte payload");
    field_error(&r.body, "event-payload", "a 600-byte payload");

    // The bearer token works for form posts without any CSRF token.
    let bearer = format!("Bearer {}", n.token);
    n.post(
        "/services/publish",
        &[
            ("type", "ssh"),
            ("port", "22"),
            ("description", "Shell"),
            ("txt", ""),
        ],
        &[("authorization", &bearer)],
    )
    .expect_redirect("/services?done=publish", "publish with the bearer token");
    assert!(n.has_service(&me, "ssh", 22));
    n.post(
        "/settings/tags",
        &[("action", "set"), ("key", "via"), ("value", "bearer")],
        &[("authorization", &bearer)],
    )
    .expect_redirect("/settings?done=tag", "tag with the bearer token");
    assert_eq!(n.tags().get("via"), Some(&Value::from("bearer")));
    // A malformed body is a 400 page, not a crash.
    let r = n
        .try_send(
            reqwest::Method::POST,
            "/settings/tags",
            Some("%zz=%".into()),
            &[("authorization", &bearer)],
        )
        .unwrap();
    r.expect_page(400, "a malformed form");
}

// ---------------------------------------------------------------------
// 6. The viewing rule.

#[test]
fn with_view_none_pages_need_a_login_even_from_loopback() {
    let n = Node::start("private", &["--dashboard-view=none"]);
    for path in [
        "/",
        "/nodes",
        "/nodes/private",
        "/services?type=http",
        "/events",
        "/settings",
    ] {
        let r = n.get(path);
        r.expect_page(403, path);
        let (_, f) =
            tag_with(&r.body, "id=\"login\"").unwrap_or_else(|| panic!("{path}: no login form"));
        assert!(f.contains("action=\"/login\""), "{f}");
        assert!(
            r.body.contains(&format!(
                "name=\"next\" value=\"{}\"",
                path.replace('&', "&amp;")
            )),
            "{path}: the form does not come back here:\n{}",
            r.body
        );
        // Nothing of the cluster is shown.
        assert!(
            !r.body.contains("id=\"members\""),
            "{path}: shows the members"
        );
    }
    n.get("/live?page=services").expect_page(403, "/live");
    // The login page, the assets and the REST API still answer.
    n.get("/login").expect_page(200, "/login");
    n.get("/assets/nuvol.css").expect(200, "an asset");
    n.get("/v1/agent").expect(200, "the REST API");
    // A wrong token is refused as usual.
    n.post("/login", &[("token", "nope"), ("next", "/nodes")], &[])
        .expect_page(401, "a wrong token");

    // Logged in, every page opens.
    let r = n.post("/login", &[("token", &n.token), ("next", "/nodes")], &[]);
    r.expect_redirect("/nodes", "login");
    let cookie = session_cookie(&r).unwrap();
    for path in [
        "/",
        "/nodes",
        "/nodes/private",
        "/services?type=http",
        "/events",
        "/settings",
    ] {
        n.get_with(path, &[("cookie", &cookie)])
            .expect_page(200, path);
    }
    let live = n.live("/live?page=services", &[("cookie", &cookie)]);
    drop(live);
}

// ---------------------------------------------------------------------
// 7. A malicious node.

const SCRIPT: &str = "<script>window.__xss=1</script>";
const BREAK: &str = "\"><img src=x onerror=alert(1)>";
const EVIL: &str = "\"><b>x";

/// What must never appear raw in a page or a live row.
const RAW: &[&str] = &[
    "<script>window",
    "<img src=x",
    "<svg/onload",
    "<b>x",
    "\"><img",
    "'><img",
    "\"><svg",
    "'><svg",
    "<i>cloud",
];

#[track_caller]
fn assert_escaped(what: &str, html: &str) {
    for raw in RAW {
        assert!(
            !html.contains(raw),
            "{what} contains {raw:?} unescaped:\n{html}"
        );
    }
}

#[test]
fn markup_from_a_malicious_serf_node_is_escaped_on_every_page_and_live() {
    if !require_serf() {
        return;
    }
    let n = Node::start("victim", &[]);
    let s = n.login();
    // serf accepts any node name: this one closes an attribute and opens
    // an element.
    let evil = SerfAgent::builder(EVIL)
        .profile("local")
        .tag("evil", SCRIPT)
        .tag("q", BREAK)
        .join_agent(&n.agent)
        .spawn()
        .unwrap();
    eventually("the evil node alive with its tags", T, POLL, || {
        let ms = n.json("/v1/members");
        ms.as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == EVIL && m["status"] == "alive" && m["tags"]["q"] == BREAK)
            .map(|_| ())
            .ok_or(format!("{ms}"))
    })
    .unwrap();

    // Live streams opened before the evil services arrive.
    let mut live_services = n.live("/live?page=services", &[s.cookie()]);
    let mut live_services_anon = n.live("/live?page=services", &[]);
    let mut live_nodes = n.live("/live?page=nodes", &[]);
    let mut live_events = n.live("/live?page=events", &[]);

    // Cloudy services whose every text field carries markup.
    let svc = CloudyService {
        stype: "http".into(),
        description: format!("{SCRIPT}{BREAK}"),
        host: "evil.local".into(),
        ip: "127.0.0.1".into(),
        port: 8088,
        cloud: "<i>cloud</i>'><svg/onload=alert(2)>".into(),
        txt: vec![
            ("k".into(), "<script>window.__xss=2</script>".into()),
            ("\"'><svg/onload=alert(3)>".into(), "v".into()),
        ],
    };
    let tag = encode_services(&[svc]);
    evil.serf(&["tags", "-set", &format!("services={tag}")])
        .unwrap_or_else(|e| panic!("setting the services tag ({} bytes): {e:#}", tag.len()));
    let entry = eventually("the evil service in /v1/services", T, POLL, || {
        n.services()
            .into_iter()
            .find(|s| s["node"] == EVIL && s["port"] == 8088)
            .ok_or(format!("{:?}", n.services()))
    })
    .unwrap();
    // The REST API (JSON) has the values as they are: they reached the
    // dashboard intact, so what follows tests its escaping.
    assert_eq!(entry["description"], format!("{SCRIPT}{BREAK}"), "{entry}");
    assert_eq!(
        entry["txt"]["k"], "<script>window.__xss=2</script>",
        "{entry}"
    );

    // One of this node's own services with markup, published through the
    // form while the streams listen.
    n.post_as(
        &s,
        "/services/publish",
        &[
            ("type", "web"),
            ("port", "8099"),
            ("description", &format!("{SCRIPT}{BREAK}")),
            (
                "txt",
                "k=<script>window.__xss=3</script>&q=\"'><svg/onload=alert(4)>",
            ),
        ],
    )
    .expect_redirect("/services?done=publish", "publishing markup");
    assert!(n.has_service("victim", "web", 8099));

    // A user event with markup in its name and payload, from the serf node.
    evil.serf(&["event", SCRIPT, BREAK]).unwrap();
    wait_until_msg("the evil event in the log", T, POLL, || {
        n.get("/events")
            .body
            .contains("&lt;script&gt;window.__xss=1&lt;/script&gt;</td>")
    })
    .unwrap();
    // A query the serf node acknowledges: its name on the query's page.
    n.post_as(&s, "/queries", &[("name", "ping"), ("timeout", "2s")])
        .expect_redirect("/queries/1", "a query");
    wait_until_msg("the evil node's ack", T, POLL, || {
        n.get("/queries/1")
            .body
            .contains("&quot;&gt;&lt;b&gt;x</td>")
    })
    .unwrap();

    // Every page, anonymous (from loopback) and logged in.
    let seg = nuvol_agent::http::encode_segment(EVIL);
    let pages = [
        "/".to_owned(),
        "/nodes".to_owned(),
        format!("/nodes/{seg}"),
        "/nodes?q=evil".to_owned(),
        "/nodes?q=%3Cscript%3E".to_owned(),
        "/services".to_owned(),
        "/services?type=http".to_owned(),
        "/services?q=%22%3E%3Cimg".to_owned(),
        "/nodes/victim".to_owned(),
        "/events".to_owned(),
        "/settings".to_owned(),
        "/queries/1".to_owned(),
    ];
    let esc_name = "&quot;&gt;&lt;b&gt;x";
    let esc_script = "&lt;script&gt;window.__xss=1&lt;/script&gt;";
    let esc_break = "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;";
    for cookie in [None, Some(s.cookie())] {
        let headers: Vec<(&str, &str)> = cookie.into_iter().collect();
        for path in &pages {
            let r = n.get_with(path, &headers);
            r.expect_page(200, path);
            assert_escaped(path, &r.body);
        }
        let r = n.get_with("/nodes", &headers);
        for want in [
            esc_name,
            esc_script,
            esc_break,
            &format!("href=\"/nodes/{seg}\""),
        ] {
            assert!(r.body.contains(want), "/nodes lacks {want:?}:\n{}", r.body);
        }
        let r = n.get_with(&format!("/nodes/{seg}"), &headers);
        for want in [
            esc_script,
            esc_break,
            &format!("<title>{esc_name} · nuvol</title>"),
        ] {
            assert!(
                r.body.contains(want),
                "/nodes/{seg} lacks {want:?}:\n{}",
                r.body
            );
        }
        let r = n.get_with("/services", &headers);
        for want in [
            &format!("{esc_script}{esc_break}") as &str,
            "&lt;script&gt;window.__xss=2&lt;/script&gt;",
            "&lt;script&gt;window.__xss=3&lt;/script&gt;",
            "&lt;i&gt;cloud&lt;/i&gt;'&gt;&lt;svg/onload=alert(2)&gt;",
            esc_name,
        ] {
            assert!(
                r.body.contains(want),
                "/services lacks {want:?}:\n{}",
                r.body
            );
        }
        let r = n.get_with("/events", &headers);
        for want in [esc_name, esc_script, esc_break] {
            assert!(r.body.contains(want), "/events lacks {want:?}:\n{}", r.body);
        }
        let r = n.get_with("/", &headers);
        assert!(
            r.body.contains(esc_name),
            "/ lacks the node's name:\n{}",
            r.body
        );
    }

    // The live rows: escaped like the pages.
    let key = format!("{EVIL}/http/8088");
    for (live, who) in [
        (&mut live_services, "session"),
        (&mut live_services_anon, "anonymous"),
    ] {
        for k in [key.as_str(), "victim/web/8099"] {
            let ev = n.live_until(live, &format!("the row of {k} ({who})"), |v| {
                v["op"] == "upsert" && v["list"] == "services" && v["key"] == k
            });
            let html = ev["html"].as_str().unwrap();
            assert_escaped(&format!("live row {k} ({who})"), html);
            assert!(
                html.starts_with("<tr ") && html.contains("&lt;script&gt;"),
                "{html}"
            );
        }
    }
    let ev = n.live_until(&mut live_nodes, "the evil node's row", |v| {
        v["op"] == "upsert" && v["list"] == "members" && v["key"] == EVIL
    });
    let html = ev["html"].as_str().unwrap();
    assert_escaped("live member row", html);
    assert!(
        html.contains(esc_name) && html.contains(esc_script),
        "{html}"
    );
    let ev = n.live_until(&mut live_events, "an event about the evil node", |v| {
        v["op"] == "upsert"
            && v["list"] == "events"
            && v["html"].as_str().is_some_and(|h| h.contains(esc_name))
    });
    assert_escaped("live event row", ev["html"].as_str().unwrap());
    let ev = n.live_until(&mut live_events, "the evil user event", |v| {
        v["op"] == "upsert"
            && v["list"] == "events"
            && v["html"]
                .as_str()
                .is_some_and(|h| h.contains(esc_script) && h.contains(esc_break))
    });
    assert_escaped("live user event row", ev["html"].as_str().unwrap());
    for live in [
        &live_services,
        &live_services_anon,
        &live_nodes,
        &live_events,
    ] {
        for v in &live.seen {
            if let Some(h) = v["html"].as_str() {
                assert_escaped("a live row", h);
            }
        }
    }
    drop(evil);
}

// ---------------------------------------------------------------------
// DNS rebinding: a request naming another host is refused before any
// route runs, pages and REST API alike; configured names are answered.

#[test]
fn other_host_names_get_421_and_configured_ones_are_answered() {
    let n = Node::start("rebind", &["--http-host=pi1.guifi.net"]);
    for path in ["/", "/nodes", "/v1/members", "/v1/agent", "/login"] {
        let r = n.get_with(path, &[("host", "evil.example:7000")]);
        r.expect(421, path);
        assert!(!r.body.contains("rebind"), "{path}: leaked {}", r.body);
        n.get_with(path, &[("host", "pi1.guifi.net:7000")])
            .expect(200, path);
        n.get_with(path, &[("host", "localhost:7000")])
            .expect(200, path);
    }
    // A browser gets a page saying why.
    let r = n.get_with(
        "/nodes",
        &[("host", "evil.example"), ("accept", "text/html")],
    );
    r.expect(421, "a browser on another host name");
    assert!(r.body.contains("[api] hosts"), "{}", r.body);
    // Nor can a rebound page log in.
    let r = n.post(
        "/login",
        &[("token", "x")],
        &[("host", "evil.example:7000")],
    );
    r.expect(421, "login through another host name");
}

// ---------------------------------------------------------------------
// 8. Apps: the store, the install form, an app's page and its actions.

/// A store template whose every text field carries markup.
const HOSTILE_TEMPLATE: &str = r#"
services:
  app:
    image: nuvol-test/not-here:1
x-nuvol:
  id: hostile
  version: "<i>cloud</i>"
  title: "<script>window.__xss=1</script>"
  description: "\"><img src=x onerror=alert(1)>"
  category: "\"><b>x"
  icon: "javascript:alert(1)"
  parameters:
    - {name: PORT, type: port, required: true, default: "8080", description: "'><svg/onload=alert(1)>"}
    - {name: SECRET, type: password}
    - {name: TLS, type: bool, default: "true"}
    - {name: WORKERS, type: int}
"#;

/// A template for a CPU no test machine has.
const OTHER_ARCH_TEMPLATE: &str = r#"
services:
  app:
    image: nuvol-test/not-here:1
x-nuvol:
  id: bigiron
  version: "1"
  title: Big iron
  category: web
  architectures: [s390x]
"#;

/// A store directory holding `templates` (file name, text).
fn store_dir(templates: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (f, t) in templates {
        std::fs::write(d.path().join(f), t).unwrap();
    }
    d
}

/// The apps of `n` by name (empty when its apps component has no engine).
fn app_names(n: &Node) -> Vec<String> {
    let r = n.get("/v1/apps");
    if r.status == 503 {
        return Vec::new();
    }
    r.expect(200, "/v1/apps");
    let v: Value = serde_json::from_str(&r.body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn apps_pages_escape_templates_validate_filters_and_refuse_forged_installs() {
    let store = store_dir(&[
        ("hostile.yml", HOSTILE_TEMPLATE),
        ("bigiron.yml", OTHER_ARCH_TEMPLATE),
    ]);
    let dir = format!("--apps-store-dir={}", store.path().display());
    let n = Node::start("apps-pages", &[&dir]);

    // Every page is a page with the safe headers (whether or not this
    // machine has a container engine: without one they say so).
    for path in ["/apps", "/apps/store", "/apps/store/hostile"] {
        let r = n.get(path);
        r.expect_page(200, path);
        assert_escaped(path, &r.body);
        assert!(
            r.body.contains("href=\"/apps\""),
            "{path}: no Apps nav entry"
        );
    }
    n.get("/apps/store/nope")
        .expect_page(404, "an unknown template");
    n.get("/apps/store/Bad_Id")
        .expect_page(404, "a bad template id");
    n.get("/apps?x=1").expect_page(400, "an unknown parameter");

    // The store: cards escaped, the template for another CPU marked and
    // its install button disabled, the icon that is no data: URL left out.
    let page = n.get("/apps/store").body;
    assert!(
        page.contains("&lt;script&gt;window.__xss=1&lt;/script&gt;"),
        "the hostile title, escaped:\n{page}"
    );
    assert!(!page.contains("javascript:"), "the icon URL is shown");
    let (at, _) = tag_with(&page, "data-template=\"bigiron\"").expect("the bigiron card");
    let card = &page[at..at + page[at..].find("</li>").unwrap()];
    assert!(card.contains("<button type=\"button\" disabled"), "{card}");
    assert!(
        !card.contains("href=\"/apps/store/bigiron\" aria-label"),
        "{card}"
    );
    let (at, _) = tag_with(&page, "data-template=\"hostile\"").expect("the hostile card");
    let card = &page[at..at + page[at..].find("</li>").unwrap()];
    assert!(!card.contains("disabled"), "{card}");

    // The category filter: validated, 400 naming the parameter.
    let r = n.get("/apps/store?category=%3Cnope%3E");
    r.expect_page(400, "an unknown category");
    assert!(
        r.body.contains("category: ") && r.body.contains("&lt;nope&gt;"),
        "{}",
        r.body
    );
    assert_escaped("a bad category", &r.body);
    let r = n.get("/apps/store?sort=title");
    r.expect_page(400, "an unknown parameter");
    assert!(r.body.contains("&quot;sort&quot;"), "{}", r.body);
    let r = n.get(&format!("/apps/store?category={}", enc("\"><b>x")));
    r.expect_page(200, "the hostile category");
    assert!(r.body.contains("data-template=\"hostile\""));
    assert!(!r.body.contains("data-template=\"bigiron\""));
    let r = n.get("/apps/store?category=WEB");
    r.expect_page(200, "a category in another case");
    assert!(r.body.contains("data-template=\"bigiron\""));
    assert!(!r.body.contains("data-template=\"hostile\""));

    // The install form, generated from the parameters (logged in: viewers
    // see a link to log in instead).
    assert!(!n.get("/apps/store/hostile").body.contains("id=\"install\""));
    let s = n.login();
    let form = n.get_with("/apps/store/hostile", &[s.cookie()]);
    form.expect_page(200, "the install form");
    assert_escaped("the install form", &form.body);
    let b = &form.body;
    let input = |id: &str| {
        tag_with(b, &format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id} in:\n{b}"))
            .1
            .to_owned()
    };
    let name = input("install-name");
    assert!(
        name.contains("value=\"hostile\"") && name.contains("required"),
        "{name}"
    );
    let port = input("install-p_PORT");
    for a in [
        "type=\"number\"",
        "min=\"1\"",
        "max=\"65535\"",
        "value=\"8080\"",
        "required",
    ] {
        assert!(port.contains(a), "{a} in {port}");
    }
    assert!(input("install-p_SECRET").contains("type=\"password\""));
    let tls = input("install-p_TLS");
    assert!(
        tls.contains("type=\"checkbox\"") && tls.contains("checked"),
        "{tls}"
    );
    assert!(input("install-p_WORKERS").contains("type=\"number\""));
    assert!(
        b.contains("&#39;&gt;&lt;svg/onload") || b.contains("'&gt;&lt;svg/onload"),
        "the help, escaped"
    );

    // Bad input: 400, the form again with the message at the field.
    let r = n.post_as(
        &s,
        "/apps/store/hostile",
        &[("name", "Bad_Name"), ("p_PORT", ""), ("p_WORKERS", "1.5")],
    );
    r.expect_page(400, "a bad install form");
    field_error(&r.body, "install-name", "a bad name");
    let m = field_error(&r.body, "install-p_PORT", "a missing port");
    assert_eq!(m, "This field is required.");
    let m = field_error(&r.body, "install-p_WORKERS", "a bad number");
    assert_eq!(m, "Not a whole number.");
    // What was typed is shown again (escaped), the password never.
    let r = n.post_as(
        &s,
        "/apps/store/hostile",
        &[
            ("name", "\"><b>x"),
            ("p_PORT", "0"),
            ("p_SECRET", "hunter2"),
        ],
    );
    r.expect_page(400, "a bad port");
    assert_escaped("the form shown again", &r.body);
    assert!(!r.body.contains("hunter2"), "the password is sent back");
    assert_eq!(
        field_error(&r.body, "install-p_PORT", "port 0"),
        "The port must be 1-65535."
    );

    // Forged installs and actions change nothing.
    let unchanged = |what: &str| {
        let names = app_names(&n);
        assert!(!names.iter().any(|a| a == "forged"), "{what}: installed");
    };
    refused_without_credentials_csrf_or_same_origin(
        &n,
        &s,
        "/apps/store/hostile",
        &[("name", "forged"), ("p_PORT", "8080")],
        &unchanged,
    );
    for action in ["start", "stop", "restart", "remove"] {
        refused_without_credentials_csrf_or_same_origin(
            &n,
            &s,
            &format!("/apps/forged/{action}"),
            &[("confirm", "yes"), ("purge", "true")],
            &unchanged,
        );
    }
    // Done properly, an action on an app that is not there says so.
    let r = n.post_as(&s, "/apps/forged/stop", &[]);
    assert!(
        matches!(r.status, 404 | 503),
        "stop of no app: {}",
        r.status
    );
    n.post_as(&s, "/apps/forged/explode", &[])
        .expect_page(400, "an unknown action");

    // A node with apps off says so on every apps page, plainly.
    let off = Node::start("apps-off", &["--apps=false"]);
    for path in [
        "/apps",
        "/apps/store",
        "/apps/store/static-web",
        "/apps/web",
    ] {
        let r = off.get(path);
        r.expect_page(200, path);
        assert!(
            r.body.contains("Apps are off on this node."),
            "{path}: {}",
            r.body
        );
    }
}

const APP_IMAGE: &str = "nuvol-test/busybox:1";

/// A busybox httpd that writes a log line every second.
const WEB_TEMPLATE: &str = r#"
services:
  web:
    image: nuvol-test/busybox:1
    command: ["sh", "-c", "echo dash-log-start; while true; do echo dash-tick; sleep 1; done & exec httpd -f -p 8080 -h /"]
    ports: ["${PORT}:8080"]
    stop_grace_period: 1s
x-nuvol:
  id: dweb
  version: "1.0"
  title: Dashboard web
  category: web
  parameters:
    - {name: PORT, type: port, required: true}
"#;

/// The row of app `name` on `node` in a `/apps` page.
fn app_row<'a>(page: &'a str, node: &str, name: &str) -> Option<&'a str> {
    let at = page.find(&format!("data-app=\"{name}\" data-node=\"{node}\""))?;
    let end = at + page[at..].find("</tr>")?;
    Some(&page[at..end])
}

#[test]
fn an_app_installed_through_the_dashboard_runs_logs_stops_and_is_removed() {
    use nuvol_testkit::netns::skip_or_fail;
    if let Err(why) = nuvol_testkit::docker::docker_available() {
        skip_or_fail("dashboard_http apps", &why);
        return;
    }
    if let Err(why) = nuvol_testkit::docker::busybox_image(APP_IMAGE) {
        skip_or_fail("dashboard_http apps", &why);
        return;
    }
    // A "registry" that accepts connections and never answers: pulling
    // from it takes as long as the test wants.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    // Some: connections held; None: closed at once (the pull fails).
    let held = std::sync::Arc::new(std::sync::Mutex::new(Some(Vec::new())));
    let hold = held.clone();
    std::thread::spawn(move || {
        for c in hang.incoming().flatten() {
            if let Some(v) = hold.lock().unwrap().as_mut() {
                v.push(c);
            }
        }
    });
    let slow = format!(
        "services: {{web: {{image: \"127.0.0.1:{hang_port}/nuvol-test/slow:1\", stop_grace_period: 1s}}}}\n\
         x-nuvol: {{id: dslow, version: \"1\", title: Slow}}\n"
    );
    let store = store_dir(&[("dweb.yml", WEB_TEMPLATE), ("dslow.yml", &slow)]);
    let dir = format!("--apps-store-dir={}", store.path().display());
    let n1_name = format!("dash-apps-{}", std::process::id());
    let app = format!("dweb{}", std::process::id() % 100_000);
    // Declared before the agents: it runs after they are gone.
    let _clean = nuvol_testkit::docker::AppContainers {
        node: n1_name.clone(),
        app: app.clone(),
    };
    let n1 = Node::start(&n1_name, &[&dir, "--apps-reconcile-every=1s"]);
    let n2 = Node::of(
        NuvolAgent::builder(NUVOL, &format!("{n1_name}-b"))
            .profile("local")
            .join_agent(&n1.agent)
            .arg("--mdns=false")
            .arg("--apps-reconcile-every=1s")
            .spawn()
            .unwrap(),
    );
    wait_until_msg("the apps component up", T, POLL, || {
        n1.get("/v1/apps").status == 200
    })
    .unwrap();
    let s = n1.login();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();

    // Install through the form: the app's page, running.
    let r = n1.post_as(&s, "/apps/store/dweb", &[("name", &app), ("p_PORT", &port)]);
    let page = format!("/apps/{app}");
    r.expect_redirect(&format!("{page}?done=install"), "installing from the form");
    wait_until_msg("the app running on its page", T, POLL, || {
        n1.get(&page).body.contains("data-state=\"running\"")
    })
    .unwrap();
    let r = n1.get_with(&page, &[s.cookie()]);
    r.expect_page(200, "the app's page");
    assert!(r.body.contains(APP_IMAGE), "the image on the page");
    assert!(r.body.contains(&format!("{port}:8080/tcp")), "the port");
    for a in ["start", "stop", "restart", "remove"] {
        assert!(
            r.body.contains(&format!("action=\"/apps/{app}/{a}\"")),
            "the {a} action"
        );
    }
    // The same port again: 400, at the port's field.
    let r = n1.post_as(
        &s,
        "/apps/store/dweb",
        &[("name", "dweb-two"), ("p_PORT", &port)],
    );
    r.expect_page(400, "a port taken");
    let m = field_error(&r.body, "install-p_PORT", "a port taken");
    assert!(m.contains(&port), "{m}");
    let r = n1.post_as(&s, "/apps/store/dweb", &[("name", &app), ("p_PORT", "1")]);
    r.expect_page(400, "a name taken");
    field_error(&r.body, "install-name", "a name taken");

    // Its log: the past lines with the page, then new ones live.
    wait_until_msg("log lines on the page", T, POLL, || {
        n1.get(&page).body.contains("dash-log-start")
    })
    .unwrap();
    let mut live = n1.live(&format!("/apps/{app}/live?logs=1&since=0"), &[]);
    let line = n1.live_until(&mut live, "a new log line", |v| {
        v["list"] == "logs" && v["html"].as_str().is_some_and(|h| h.contains("dash-tick"))
    });
    assert!(
        line["html"]
            .as_str()
            .unwrap()
            .starts_with("<li data-key=\"s"),
        "{line}"
    );
    drop(live);

    // /apps: this node's app with its actions; the other node lists it
    // with this node's name.
    let list = n1.get_with("/apps", &[s.cookie()]);
    list.expect_page(200, "/apps");
    let row = app_row(&list.body, &n1_name, &app).expect("the app on /apps");
    assert!(
        row.contains("data-state=\"running\"") && row.contains("1.0"),
        "{row}"
    );
    assert!(row.contains("store:dweb"), "{row}");
    assert!(row.contains(&format!("/apps/{app}/stop")), "{row}");
    wait_until_msg("the app on the other node's /apps", T, POLL, || {
        let b = n2.get("/apps").body;
        app_row(&b, &n1_name, &app).is_some_and(|r| r.contains("data-state=\"running\""))
    })
    .unwrap();
    let other = n2.get("/apps").body;
    let row = app_row(&other, &n1_name, &app).unwrap();
    assert!(row.contains(&format!("href=\"/nodes/{n1_name}\"")), "{row}");
    assert!(
        !row.contains("/stop"),
        "another node's app has actions: {row}"
    );
    let r = n2.get(&format!("/apps/{app}?node={n1_name}"));
    r.expect_page(200, "another node's app");
    assert!(r.body.contains("data-state=\"running\""));

    // An install that takes long (its image being pulled) goes on after
    // the request: the browser lands on the app's page, which says so.
    let slow_app = format!("{app}-slow");
    let r = n1.post_as(&s, "/apps/store/dslow", &[("name", &slow_app)]);
    let slow_page = format!("/apps/{slow_app}?done=installing");
    r.expect_redirect(&slow_page, "a slow install");
    let r = n1.get(&slow_page);
    r.expect_page(200, "the page of an app being installed");
    assert!(r.body.contains("The installation goes on"), "{}", r.body);
    // The pull fails when the "registry" goes: the install ends (the name
    // is no longer busy), leaving nothing; a new try fails at once, naming
    // the image.
    let conns = held.lock().unwrap().take().unwrap();
    assert!(!conns.is_empty(), "the daemon never reached the registry");
    drop(conns);
    let image = format!("127.0.0.1:{hang_port}/nuvol-test/slow:1");
    wait_until_msg("the slow install ended", T, POLL, || {
        let r = n1.post_as(&s, "/apps/store/dslow", &[("name", &slow_app)]);
        r.status == 400 && r.body.contains(&image) && !r.body.contains("busy")
    })
    .unwrap();
    assert!(!app_names(&n1).contains(&slow_app));
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=nuvol.app={slow_app}"))
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "the failed install left containers");

    // Forged actions change nothing; proper ones act.
    let running = |what: &str| {
        let b = n1.get(&page).body;
        assert!(
            b.contains("data-state=\"running\""),
            "{what}: no longer running"
        );
    };
    for action in ["stop", "remove"] {
        refused_without_credentials_csrf_or_same_origin(
            &n1,
            &s,
            &format!("/apps/{app}/{action}"),
            &[("confirm", "yes"), ("purge", "true")],
            &running,
        );
    }
    n1.post_as(&s, &format!("/apps/{app}/stop"), &[])
        .expect_redirect(&format!("{page}?done=stop"), "stop");
    wait_until_msg("the app stopped", T, POLL, || {
        n1.get(&page).body.contains("data-state=\"stopped\"")
    })
    .unwrap();
    // Removing asks first, and changes nothing until confirmed.
    let r = n1.post_as(&s, &format!("/apps/{app}/remove"), &[("purge", "true")]);
    r.expect_page(200, "the confirmation step");
    assert!(
        r.body.contains("name=\"confirm\" value=\"yes\""),
        "{}",
        r.body
    );
    assert!(
        tag_with(&r.body, "id=\"remove-purge\"")
            .unwrap()
            .1
            .contains("checked"),
        "the purge box as posted"
    );
    assert!(app_names(&n1).contains(&app), "removed before confirming");
    n1.post_as(
        &s,
        &format!("/apps/{app}/remove"),
        &[("purge", "true"), ("confirm", "yes")],
    )
    .expect_redirect("/apps?done=remove", "remove");
    assert!(!app_names(&n1).contains(&app));
    n1.get(&page).expect_page(404, "a removed app's page");
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=nuvol.app={app}"))
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "containers left behind");
}

// ---------------------------------------------------------------------
// The network-monitoring pages.

const SNMPD: &str = "/usr/sbin/snmpd";

/// Debian's snmpd in the foreground on `ip:port`, its own config; killed on
/// drop.
struct Snmpd {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Snmpd {
    fn start(ip: std::net::IpAddr, port: u16) -> Snmpd {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("snmpd.conf");
        std::fs::write(&conf, "rocommunity public default\n").unwrap();
        let child = std::process::Command::new(SNMPD)
            .env("MIBS", "")
            .args(["-f", "-Lo", "-C", "-c"])
            .arg(&conf)
            .arg("-p")
            .arg(dir.path().join("snmpd.pid"))
            .arg(format!("udp:{ip}:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Snmpd { child, _dir: dir }
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `s` as maud escapes text.
fn escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The `<tr>` of `device` on `/monitor`.
fn device_row<'a>(page: &'a str, device: &str) -> Option<&'a str> {
    let start = page.find(&format!("data-device=\"{}\"", escaped(device)))?;
    let rest = &page[start..];
    Some(&rest[..rest.find("</tr>")?])
}

#[test]
fn monitor_pages_show_devices_their_owners_samples_and_charts() {
    // A node that is not a monitor says so, and how to enable it.
    let off = Node::start("nomon", &[]);
    let r = off.get("/monitor");
    r.expect_page(200, "/monitor with monitoring off");
    assert!(
        r.body.contains("id=\"monitor-off\"") && r.body.contains("--monitor"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("href=\"/monitor\" aria-current=\"page\""),
        "the navigation has the page: {}",
        r.body
    );
    off.get("/monitor/r1")
        .expect_page(404, "a device with monitoring off");
    drop(off);

    // A monitor with two devices on loopback addresses: r1 with a title
    // carrying markup (CNML titles are untrusted) and SNMP on Debian's
    // snmpd when installed, r2 ping only.
    let (a, b) = (nuvol_testkit::fresh_ip(), nuvol_testkit::fresh_ip());
    let snmp_port = std::net::UdpSocket::bind(format!("{a}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let have_snmpd = std::path::Path::new(SNMPD).exists()
        || nuvol_testkit::netns::skip_or_fail(
            "monitor pages (the SNMP part)",
            "snmpd is not installed (apt-get install snmpd)",
        );
    let _snmpd = have_snmpd.then(|| Snmpd::start(a, snmp_port));
    let title = "Router <b class=evil>\"one\"</b>";
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("monitor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[monitor]\nenable = true\nk = 2\ninterval = \"2s\"\nsettle = \"1s\"\ndevices = [\n\
             {{ id = \"r1\", title = {title:?}, address = \"{a}\", snmp_port = {snmp_port} }},\n\
             {{ id = \"r2\", address = \"{b}\", snmp = false }},\n\
             {{ id = \"r3\", address = \"198.51.100.1\", snmp = false }},\n]\n"
        ),
    )
    .unwrap();
    let n = Node::start("mon", &[&format!("--config={}", cfg.display())]);

    // Every device sampled (by the only monitor, so their only owner).
    let devices = eventually("every device sampled", T, POLL, || {
        let v = n.json("/v1/monitor/devices");
        let list = v.as_array().ok_or(format!("not a list: {v}"))?.clone();
        (list.len() == 3 && list.iter().all(|d| d["last_sample"].is_u64()))
            .then_some(list)
            .ok_or(format!("not yet: {v}"))
    })
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", n.agent.log_tail(40)));
    let page = n.get("/monitor");
    page.expect_page(200, "/monitor");
    assert!(!page.body.contains("<b class=evil>"), "{}", page.body);
    for d in &devices {
        let id = d["id"].as_str().unwrap();
        let state = d["state"].as_str().unwrap();
        let row =
            device_row(&page.body, id).unwrap_or_else(|| panic!("no row for {id}:\n{}", page.body));
        assert!(row.contains(&format!("data-state=\"{state}\"")), "{row}");
        // The state as a word, not only a colour.
        assert!(
            row.contains(&format!(">{state}</span>")),
            "{id} {state}: {row}"
        );
        assert!(row.contains(&format!("href=\"/monitor/{id}\"")), "{row}");
        assert!(row.contains("href=\"/nodes/mon\""), "the owner: {row}");
        assert!(row.contains(" ago</time>"), "the sample's age: {row}");
        match d["cause"].as_str() {
            Some(c) => assert!(row.contains(&escaped(c)), "the cause {c:?}: {row}"),
            None => assert_eq!(state, "up", "{d}"),
        }
        // Loopback answers ping when the agent may open an ICMP socket
        // (it runs as root here); otherwise the cause says why.
        if state != "up" {
            assert!(d["cause"].is_string(), "{d}");
        }
    }
    // Nothing answers TEST-NET-2 (documentation addresses): down, with the cause.
    let r3 = device_row(&page.body, "r3").unwrap();
    assert!(
        r3.contains("data-state=\"down\"") && r3.contains(">down</span>"),
        "{r3}"
    );
    assert!(r3.contains("ping: "), "{r3}");
    // The counts by state, from the same list.
    for state in ["up", "down", "unknown"] {
        let want = devices.iter().filter(|d| d["state"] == state).count();
        let li = format!(
            "<li data-state=\"{state}\"><span class=\"badge {}\" data-state=\"{state}\">{state}</span> {want}</li>",
            match state {
                "up" => "ok",
                "down" => "bad",
                _ => "off",
            }
        );
        assert!(page.body.contains(&li), "{li}: {}", page.body);
    }
    let r1 = device_row(&page.body, "r1").unwrap();
    assert!(r1.contains(&escaped(title)), "the title, escaped: {r1}");

    // The device page: state, owner, the sample; a chart once the series
    // has a point.
    let page = eventually("r1's page with a chart", T, POLL, || {
        let r = n.get("/monitor/r1");
        (r.status == 200 && r.body.contains("<svg class=\"chart\""))
            .then_some(r)
            .ok_or("no chart yet")
    })
    .unwrap_or_else(|e| panic!("{e}: {}", n.get("/monitor/r1").body));
    page.expect_page(200, "/monitor/r1");
    let body = &page.body;
    assert!(!body.contains("<b class=evil>"), "{body}");
    assert!(
        body.contains(&format!("<title>{} · nuvol</title>", escaped(title))),
        "{body}"
    );
    assert!(
        body.contains("data-monitor=\"mon\""),
        "the owner's sample: {body}"
    );
    assert!(
        body.contains("<title id=\"chart-rtt-title\">")
            && body.contains("<desc id=\"chart-rtt-desc\">"),
        "the RTT chart's title and description: {body}"
    );
    assert!(
        body.contains("class=\"chart-summary\""),
        "the text alternative: {body}"
    );
    assert!(
        body.contains("href=\"/monitor/r1?step=300\" aria-current=\"page\""),
        "the resolution selector: {body}"
    );
    if have_snmpd {
        // snmpd serves this machine's interfaces: a table, and once two
        // samples give a rate, a traffic chart.
        let page = eventually("r1's interface traffic chart", T, POLL, || {
            let r = n.get("/monitor/r1");
            (r.body.contains("class=\"interfaces\"") && r.body.contains("id=\"chart-if-"))
                .then_some(r)
                .ok_or("no interface chart yet")
        })
        .unwrap_or_else(|e| panic!("{e}: {}", n.get("/monitor/r1").body));
        assert!(page.body.contains("data-ifindex="), "{}", page.body);
    }

    // Other resolutions; bad parameters are 400 with the message.
    let r = n.get("/monitor/r2?step=1800");
    r.expect_page(200, "/monitor/r2?step=1800");
    assert!(
        r.body
            .contains("href=\"/monitor/r2?step=1800\" aria-current=\"page\""),
        "{}",
        r.body
    );
    for bad in [
        "/monitor/r2?step=5",
        "/monitor/r2?step=x",
        "/monitor/r2?zoom=1",
    ] {
        let r = n.get(bad);
        r.expect_page(400, bad);
        assert!(r.body.contains("role=\"alert\""), "{bad}: {}", r.body);
    }
    let r = n.get("/monitor/r2?step=%3Cb%3E");
    assert!(
        r.body.contains("&lt;b&gt;") && !r.body.contains("<b>"),
        "{}",
        r.body
    );
    // An unknown device: the dashboard's HTML 404.
    for path in ["/monitor/nope", "/monitor/%3Cscript%3E"] {
        let r = n.get(path);
        r.expect_page(404, path);
        assert!(r.body.contains("href=\"/monitor\""), "{path}: {}", r.body);
    }
}
