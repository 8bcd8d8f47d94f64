//! The web dashboard: the community cloud at a glance, served by the agent
//! on its HTTP address next to the REST API (`[dashboard]`).
//!
//! - Server-rendered HTML ([`maud`], compiled in), forms that work without
//!   JavaScript (post, then redirect), one small hand-written script
//!   (`assets/live.js`) for live updates, every asset embedded.
//! - Pages: `/` overview, `/nodes`, `/nodes/{name}`, `/services`,
//!   `/apps`, `/apps/store`, `/apps/store/{id}`, `/apps/{name}` (its log
//!   live over `/apps/{name}/live`), `/events`, `/queries/{id}`,
//!   `/monitor`, `/monitor/{id}`, `/settings`, `/login`; `/live` is the
//!   live-update stream (server-sent events of rendered rows: only what
//!   changed, escaped here like every page).
//! - Access: each route declares view, operate or admin (the core's
//!   router enforces it, see [`auth`]); viewing is open to the addresses
//!   of `[dashboard] view` (loopback by default) or with a session.
//! - Strings: [`i18n`] (English, Catalan, Spanish).
//!
//! Architecture Invariant: every value that comes from another node (names,
//! tags, TXT, descriptions, event payloads) reaches HTML only through
//! maud's escaping, including the rows the live stream sends.

pub mod auth;
pub mod chart;
pub mod i18n;
pub(crate) mod live;
mod page;
mod pages;
mod state;
pub mod svg;
pub mod sys;
pub mod types;
mod web;

/// Entry points for the fuzz targets: everything the dashboard parses from
/// a request, and the escaping of what other nodes send.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use nuvol_catalog::model::{ServiceEntry, Source, Status};

    /// Parse `data` every way a request can reach the dashboard: a form
    /// body, a query string, `Accept-Language`, `Cookie`, `Host`, the
    /// publish form, join addresses. Nothing may panic.
    pub fn request(data: &[u8]) {
        if let Ok(f) = crate::web::parse_form(data) {
            let _ = crate::pages::services::parse_publish(&f, crate::i18n::Lang::En);
            let _ = crate::pages::apps::parse_install(&f, &install_params(), crate::i18n::Lang::En);
        }
        let Ok(s) = std::str::from_utf8(data) else {
            return;
        };
        let _ = crate::i18n::Lang::negotiate(s);
        let _ = nuvol_agent::http::parse_query(Some(s.to_owned()), &["q", "type", "sort"]);
        let _ = nuvol_agent::join::check_join_addr(s);
        let _ = crate::web::local_path(s);
        if let Ok(v) = axum::http::HeaderValue::from_str(s) {
            let mut h = axum::http::HeaderMap::new();
            h.insert(axum::http::header::COOKIE, v.clone());
            h.insert(axum::http::header::HOST, v);
            let _ = crate::auth::cookie(&h, crate::auth::SESSION_COOKIE);
            let _ = nuvol_agent::http::host_allowed(&h, &[]);
        }
    }

    /// A parameter of every kind, required or not, for the install form.
    fn install_params() -> Vec<nuvol_apps::meta::Param> {
        use nuvol_apps::meta::{Localized, Param, ParamKind as K};
        [K::String, K::Password, K::Int, K::Port, K::Bool, K::Path]
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Param {
                name: format!("P{i}"),
                kind,
                default: None,
                required: i % 2 == 0,
                description: Localized::default(),
            })
            .collect()
    }

    /// A store template whose every text is `text`.
    fn template(text: &str) -> nuvol_apps::appstore::StoreEntry {
        let t = nuvol_apps::meta::Localized::One(text.to_owned());
        nuvol_apps::appstore::StoreEntry {
            id: "x".into(),
            source: nuvol_apps::appstore::Source::Builtin,
            cached: false,
            meta: nuvol_apps::meta::Meta {
                version: text.to_owned(),
                title: t.clone(),
                description: t,
                category: text.to_owned(),
                architectures: vec![text.to_owned()],
                ..Default::default()
            },
            definition: Default::default(),
            runs_here: true,
        }
    }

    fn entry(text: &str) -> ServiceEntry {
        ServiceEntry {
            node: text.to_owned(),
            stype: "http".into(),
            description: text.to_owned(),
            host: text.to_owned(),
            ip: "10.0.0.1".into(),
            port: 80,
            cloud: text.to_owned(),
            txt: vec![
                ("k".into(), text.to_owned()),
                ("path".into(), text.to_owned()),
            ],
            status: Status::Passing,
            source: Source::Cloudy,
            checks: Vec::new(),
        }
    }

    /// Render a service row whose every field another node controls is
    /// `text`: it must have exactly the markup of a row with plain text
    /// (the same number of `<`), so nothing in `text` became markup.
    pub fn escaping(text: &str) {
        let ctx = crate::pages::services::RowCtx {
            l: crate::i18n::Lang::En,
            scan: None,
            domain: Some("nuvol"),
            unpublish: None,
        };
        let count = |t: &str| {
            crate::pages::services::service_row(&ctx, &entry(t))
                .into_string()
                .matches('<')
                .count()
        };
        // A plain path keeps the open link's structure the same.
        assert_eq!(count(text), count("x"), "markup from {text:?}");
        let card = |t: &str| {
            crate::pages::apps::card(crate::i18n::Lang::En, &template(t))
                .into_string()
                .matches('<')
                .count()
        };
        assert_eq!(card(text), card("x"), "store card markup from {text:?}");
        // A monitored device (CNML titles, owner names) and its chart.
        let device = |t: &str| {
            let d = nuvol_monitor::view::DeviceSummary {
                id: t.to_owned(),
                title: t.to_owned(),
                address: t.to_owned(),
                state: nuvol_monitor::verdict::DeviceState::Down,
                owners: vec![t.to_owned()],
                last_sample: Some(0),
                cause: Some(t.to_owned()),
                reports: Vec::new(),
                unreachable_owners: Vec::new(),
            };
            let c = crate::chart::Chart {
                id: t,
                title: t,
                desc: t,
                unit: crate::chart::Unit::Bps,
                step: 300,
                series: vec![crate::chart::Series {
                    label: t.to_owned(),
                    points: vec![(0.0, 1.0), (300.0, 2.0)],
                }],
                empty: t,
            };
            crate::pages::monitor::device_row(crate::i18n::Lang::En, &d, 10)
                .into_string()
                .matches('<')
                .count()
                + crate::chart::render(&c).into_string().matches('<').count()
        };
        assert_eq!(device(text), device("x"), "device markup from {text:?}");
    }
}

use auth::{Sessions, ViewRule};
use axum::http::Method;
use axum::routing::{get, post, MethodRouter};
use nuvol_agent::config::{ConfigError, Validate};
use nuvol_agent::http::{Access, HttpRoute};
use nuvol_agent::{BuildCtx, BuildError, Component, ComponentError, RunCtx};
use state::Dash;
use std::sync::Arc;
use std::time::Duration;

nuvol_agent::settings! {
    /// The web dashboard, served on the REST API's address.
    pub struct DashboardSettings in "dashboard", "Web dashboard" {
        /// Serve the dashboard.
        enable: bool = true, flag "dashboard";
        /// Who may view without logging in: loopback, lan (private,
        /// link-local and CGNAT addresses), any, none, or IP[/PREFIX]
        /// networks (repeatable). Acting always needs the API token or a
        /// session.
        view: Vec<String> = vec!["loopback".to_owned()], flag "dashboard-view";
        /// A session idle this long ends.
        session_ttl: Duration = Duration::from_secs(12 * 3600), flag "dashboard-session-ttl";
    }
}

impl Validate for DashboardSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        ViewRule::parse(&self.view).map_err(|e| ConfigError::invalid::<Self>("view", e))?;
        if self.session_ttl < Duration::from_secs(60) {
            return Err(ConfigError::invalid::<Self>(
                "session_ttl",
                "must be at least 1m",
            ));
        }
        Ok(())
    }
}

/// The dashboard component.
pub struct Dashboard {
    dash: Arc<Dash>,
}

fn route(
    ctx: &mut BuildCtx<'_>,
    method: Method,
    path: &'static str,
    access: Access,
    handler: MethodRouter<Arc<Dash>>,
    dash: &Arc<Dash>,
) -> Result<(), BuildError> {
    ctx.http_route(HttpRoute::page(
        method,
        path,
        access,
        handler.with_state(dash.clone()),
    ))
}

impl Component for Dashboard {
    type Config = DashboardSettings;
    const NAME: &'static str = "dashboard";

    fn build(cfg: DashboardSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        if !cfg.enable {
            return Ok(None);
        }
        let view = ViewRule::parse(&cfg.view).map_err(BuildError::new)?;
        let sessions = Sessions::new(cfg.session_ttl);
        ctx.authenticator(Arc::new(sessions.clone()));
        let dash = Arc::new(Dash::new(ctx, view, sessions));
        use Access::{Admin, Operate, View};
        use Method as M;
        let routes: Vec<(Method, &'static str, Access, MethodRouter<Arc<Dash>>)> = vec![
            (M::GET, "/", View, get(pages::overview::page)),
            (M::GET, "/nodes", View, get(pages::nodes::list)),
            (M::GET, "/nodes/{name}", View, get(pages::nodes::one)),
            (M::POST, "/nodes/join", Operate, post(pages::nodes::join)),
            (M::POST, "/nodes/scan", Operate, post(pages::nodes::scan)),
            (M::GET, "/services", View, get(pages::services::list)),
            (
                M::POST,
                "/services/publish",
                Operate,
                post(pages::services::publish),
            ),
            (
                M::POST,
                "/services/unpublish",
                Operate,
                post(pages::services::unpublish),
            ),
            (M::GET, "/apps", View, get(pages::apps::list)),
            (M::GET, "/apps/store", View, get(pages::apps::store)),
            (M::GET, "/apps/store/{id}", View, get(pages::apps::template)),
            (
                M::POST,
                "/apps/store/{id}",
                Operate,
                post(pages::apps::install),
            ),
            (M::GET, "/apps/{name}", View, get(pages::apps::one)),
            (M::GET, "/apps/{name}/live", View, get(pages::apps::live)),
            (
                M::POST,
                "/apps/{name}/{action}",
                Operate,
                post(pages::apps::action),
            ),
            (M::GET, "/events", View, get(pages::events::page)),
            (M::POST, "/events/send", Operate, post(pages::events::send)),
            (M::POST, "/queries", Operate, post(pages::events::query)),
            (
                M::GET,
                "/queries/{id}",
                View,
                get(pages::events::query_page),
            ),
            (M::GET, "/monitor", View, get(pages::monitor::list)),
            (M::GET, "/monitor/{id}", View, get(pages::monitor::one)),
            (M::GET, "/settings", View, get(pages::settings::page)),
            (
                M::POST,
                "/settings/tags",
                Operate,
                post(pages::settings::tags),
            ),
            (
                M::POST,
                "/settings/bootstrap",
                Admin,
                post(pages::settings::bootstrap),
            ),
            (M::GET, "/login", View, get(pages::login::page)),
            (M::POST, "/login", View, post(pages::login::login)),
            (M::POST, "/logout", View, post(pages::login::logout)),
            (M::GET, "/lang", View, get(pages::login::lang)),
            (M::GET, "/live", View, get(live::stream)),
            (M::GET, "/assets/{file}", View, get(page::asset)),
            // Anything else a browser asks for: an HTML 404 (JSON under /v1/).
            (M::GET, "/{*rest}", View, get(pages::not_found)),
        ];
        for (m, path, access, h) in routes {
            route(ctx, m, path, access, h, &dash)?;
        }
        Ok(Some(Dashboard { dash }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        self.dash.start(ctx).await?;
        ctx.ready();
        let r = live::hub(self.dash.clone(), ctx).await;
        self.dash.stop();
        r
    }
}
