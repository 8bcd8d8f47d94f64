//! `/services`: the community catalog by type (tabs with counts), search,
//! sort, per-type actions, the DNS name of each service; publishing and
//! unpublishing on this node.

use crate::i18n::{Lang, T};
use crate::page::{csrf, layout, notice, quality_cell, status_badge, urlencode, Field, Nav};
use crate::state::{Dash, Scan};
use crate::web::{html, parse_form, see_other, FormErrors, FormState, Req, Viewer};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use nuvol_agent::http::{encode_segment, Access};
use nuvol_catalog::model::{ServiceDef, ServiceEntry};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The key of an instance in lists and the live stream.
pub fn key(e: &ServiceEntry) -> String {
    format!("{}/{}/{}", e.node, e.stype, e.port)
}

/// `TYPE.service.DOMAIN` when the DNS interface runs.
pub fn dns_name(domain: Option<&str>, e: &ServiceEntry) -> Option<String> {
    let d = domain?;
    let label: String = e
        .stype
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!label.is_empty()).then(|| format!("{label}.service.{d}"))
}

/// Context a row needs besides the entry.
pub struct RowCtx<'a> {
    pub l: Lang,
    pub scan: Option<&'a Scan>,
    pub domain: Option<&'a str>,
    /// Set when the viewer may unpublish this node's services.
    pub unpublish: Option<(&'a str, &'a str)>,
}

pub fn service_row(c: &RowCtx<'_>, e: &ServiceEntry) -> Markup {
    let l = c.l;
    let actions = crate::types::for_type(&e.stype);
    let quality = c.scan.and_then(|s| s.quality(&e.node));
    html! {
        tr data-key=(key(e)) data-service=(key(e)) data-type=(e.stype) data-status=(e.status.as_str()) {
            td class="num" { (quality_cell(quality)) }
            td { (e.description) }
            td { a href={ "/nodes/" (encode_segment(&e.node)) } { (e.node) } }
            td { (e.ip) }
            td class="num" { (e.port) }
            td class="hide-narrow" { (e.cloud) }
            td { (status_badge(l, e.status.as_str())) }
            td class="hide-narrow" {
                @if !e.txt.is_empty() {
                    ul class="txt" { @for (k, v) in e.txt.iter().take(8) { li { code { (k) "=" (crate::pages::nodes::truncate(v, 60)) } } } }
                }
            }
            td class="hide-narrow" {
                @if let Some(n) = dns_name(c.domain, e) { code { (n) } } @else { span class="muted" { "–" } }
            }
            td {
                @if let Some(a) = actions { (a.render(e, l)) }
                @if let Some((me, token)) = c.unpublish {
                    @if e.node == me && e.source == nuvol_catalog::model::Source::Nuvol {
                        form method="post" action="/services/unpublish" class="inline" {
                            input type="hidden" name="_csrf" value=(token);
                            input type="hidden" name="type" value=(e.stype);
                            input type="hidden" name="port" value=(e.port);
                            button type="submit" class="secondary" aria-label={ (T::Unpublish.get(l)) " " (e.stype) " " (e.port) } { (T::Unpublish.get(l)) }
                        }
                    }
                }
            }
        }
    }
}

/// The services table; `sort` gives header links (None: plain headers).
pub fn table(
    dash: &Dash,
    l: Lang,
    entries: &[ServiceEntry],
    sort: Option<&ServiceFilter>,
    id: &str,
) -> Markup {
    let scan = dash.scan();
    let domain = dash.info("dns_domain");
    let c = RowCtx {
        l,
        scan: scan.as_ref(),
        domain: domain.as_deref(),
        unpublish: None,
    };
    table_with(&c, entries, sort, id)
}

pub fn table_with(
    c: &RowCtx<'_>,
    entries: &[ServiceEntry],
    sort: Option<&ServiceFilter>,
    id: &str,
) -> Markup {
    let l = c.l;
    let th = |by: &str, t: T, class: &str| match sort {
        Some(f) => {
            let sorted = f.sort == by || (by == "type" && f.sort.is_empty());
            let aria = sorted.then_some(if f.desc { "descending" } else { "ascending" });
            html! { th scope="col" class=(class) aria-sort=[aria] { a href=(f.sort_link(by)) { (t.get(l)) } } }
        }
        None => html! { th scope="col" class=(class) { (t.get(l)) } },
    };
    let empty_id = format!("{id}-empty");
    html! {
        p id=(empty_id) class="muted" hidden[!entries.is_empty()] { (T::NoServices.get(l)) }
        div class="scroll" tabindex="0" role="region" aria-label=(T::Services.get(l)) {
            table id=(id) {
                thead { tr {
                    (th("quality", T::Quality, "num"))
                    (th("desc", T::Description, ""))
                    (th("node", T::Node, ""))
                    (th("ip", T::Ip, ""))
                    (th("port", T::Port, "num"))
                    (th("cloud", T::MicroCloud, "hide-narrow"))
                    (th("health", T::Health, ""))
                    th scope="col" class="hide-narrow" { (T::Txt.get(l)) }
                    th scope="col" class="hide-narrow" { (T::DnsName.get(l)) }
                    th scope="col" { (T::Action.get(l)) }
                } }
                tbody data-list="services" data-empty=(empty_id) {
                    @for e in entries { (service_row(c, e)) }
                }
            }
        }
    }
}

/// Filters of the services page.
#[derive(Debug, Default, Clone)]
pub struct ServiceFilter {
    pub stype: String,
    pub q: String,
    pub sort: String,
    pub desc: bool,
    /// 1-based page of [`PAGE_ROWS`] rows.
    pub page: usize,
}

/// Rows per page of the services list: a community catalog of thousands
/// stays light on a phone (about 120 KB of HTML, 7 KB gzipped, a page).
pub const PAGE_ROWS: usize = 200;

impl ServiceFilter {
    pub fn parse(req: &Req) -> Result<ServiceFilter, (String, String)> {
        let q = super::query(req, &["type", "q", "sort", "order", "done", "page"])?;
        let mut f = ServiceFilter {
            q: super::param(&q, "q")
                .unwrap_or("")
                .chars()
                .take(128)
                .collect(),
            ..Default::default()
        };
        if let Some(t) = super::param(&q, "type") {
            if nuvol_catalog::cloudy::validate_type(t).is_err() {
                return Err((
                    "type".into(),
                    crate::i18n::fill(T::NotAType.get(req.lang), &[&format!("{t:?}")]),
                ));
            }
            f.stype = t.to_owned();
        }
        (f.sort, f.desc) = super::sort_order(
            req,
            &q,
            &[
                "type", "desc", "node", "ip", "port", "cloud", "health", "quality",
            ],
        )?;
        f.page = match super::param(&q, "page") {
            None => 1,
            Some(p) => match p.parse::<usize>() {
                Ok(n) if (1..=100_000).contains(&n) => n,
                _ => {
                    return Err((
                        "page".into(),
                        crate::i18n::fill(T::UnknownValue.get(req.lang), &[&format!("{p:?}")]),
                    ))
                }
            },
        };
        Ok(f)
    }

    pub fn matches(&self, e: &ServiceEntry) -> bool {
        let q = self.q.to_lowercase();
        (self.stype.is_empty() || e.stype.eq_ignore_ascii_case(&self.stype))
            && (q.is_empty()
                || e.description.to_lowercase().contains(&q)
                || e.node.to_lowercase().contains(&q)
                || e.ip.contains(&q)
                || e.stype.to_lowercase().contains(&q)
                || e.cloud.to_lowercase().contains(&q)
                || e.txt
                    .iter()
                    .any(|(k, v)| k.to_lowercase().contains(&q) || v.to_lowercase().contains(&q)))
    }

    pub fn sort(&self, list: &mut [ServiceEntry], scan: Option<&Scan>) {
        match self.sort.as_str() {
            "desc" => list.sort_by(|a, b| a.description.cmp(&b.description)),
            "node" => list.sort_by(|a, b| a.node.cmp(&b.node)),
            "ip" => list.sort_by_key(|e| e.ip.parse::<std::net::IpAddr>().ok()),
            "port" => list.sort_by_key(|e| e.port),
            "cloud" => list.sort_by(|a, b| a.cloud.cmp(&b.cloud)),
            "health" => list.sort_by_key(|e| e.status.as_str()),
            "quality" => {
                list.sort_by_key(|e| std::cmp::Reverse(scan.and_then(|s| s.quality(&e.node))))
            }
            _ => list.sort_by(|a, b| {
                a.stype
                    .cmp(&b.stype)
                    .then(a.node.cmp(&b.node))
                    .then(a.port.cmp(&b.port))
            }),
        }
        if self.desc {
            list.reverse();
        }
    }

    fn sort_link(&self, by: &str) -> String {
        let desc = self.sort == by && !self.desc;
        format!(
            "/services?type={}&q={}&sort={by}&order={}",
            urlencode(&self.stype),
            urlencode(&self.q),
            if desc { "desc" } else { "asc" }
        )
    }

    /// This filter's URL at `page`.
    fn page_link(&self, page: usize) -> String {
        format!(
            "/services?type={}&q={}&sort={}&order={}&page={page}",
            urlencode(&self.stype),
            urlencode(&self.q),
            self.sort,
            if self.desc { "desc" } else { "asc" }
        )
    }

    pub fn live_url(&self) -> String {
        format!(
            "/live?page=services&type={}&q={}",
            urlencode(&self.stype),
            urlencode(&self.q)
        )
    }
}

fn publish_form(req: &Req, state: Option<&FormState>) -> Markup {
    let l = req.lang;
    if !req.may(Access::Operate) {
        return html! { p { a href="/login?next=/services" { (T::LoginToAct.get(l)) } } };
    }
    let st = state.and_then(|s| s.for_form("publish"));
    html! {
        section class="card" {
            h2 id="h-publish" { (T::Publish.get(l)) }
            @if st.is_some() { (notice(T::FixErrors.get(l), true)) }
            form id="publish" method="post" action="/services/publish" {
                (csrf(req))
                (Field { form: "publish", name: "type", label: T::Type.get(l), kind: "text", value: "", help: Some("http, ssh, syncthing, …"), required: true }.render(st))
                (Field { form: "publish", name: "port", label: T::Port.get(l), kind: "number", value: "", help: None, required: true }.render(st))
                (Field { form: "publish", name: "description", label: T::Description.get(l), kind: "text", value: "", help: None, required: true }.render(st))
                (Field { form: "publish", name: "txt", label: T::Txt.get(l), kind: "text", value: "", help: Some(T::TxtHelp.get(l)), required: false }.render(st))
                button type="submit" { (T::PublishButton.get(l)) }
            }
        }
    }
}

fn render(
    dash: &Dash,
    req: &Req,
    state: Option<&FormState>,
    status: StatusCode,
    done: Option<&str>,
) -> Response {
    let l = req.lang;
    let (filter, ferr) = match ServiceFilter::parse(req) {
        Ok(f) => (f, None),
        Err(e) => (ServiceFilter::default(), Some(e)),
    };
    let status = if ferr.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    let all = dash
        .catalog
        .as_ref()
        .map(|c| c.entries(&Default::default()))
        .unwrap_or_default();
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    for e in &all {
        *types.entry(e.stype.to_lowercase()).or_insert(0) += 1;
    }
    let scan = dash.scan();
    let mut list: Vec<ServiceEntry> = all.iter().filter(|e| filter.matches(e)).cloned().collect();
    filter.sort(&mut list, scan.as_ref());
    let domain = dash.info("dns_domain");
    let csrf_token = req.csrf().to_owned();
    let c = RowCtx {
        l,
        scan: scan.as_ref(),
        domain: domain.as_deref(),
        unpublish: req
            .may(Access::Operate)
            .then_some((dash.node_name.as_str(), csrf_token.as_str())),
    };
    let tab = |t: &str, n: usize, label: &str| {
        let current = filter.stype.eq_ignore_ascii_case(t);
        html! { li { a href={ "/services?type=" (urlencode(t)) "&q=" (urlencode(&filter.q)) } aria-current=[current.then_some("page")] { (label) " (" (n) ")" } } }
    };
    let ferr_for = |f: &str| {
        ferr.as_ref()
            .filter(|(k, _)| k == f)
            .map(|(_, m)| m.clone())
    };
    let body = html! {
        @match done {
            Some("publish") => (notice(T::Published.get(l), false)),
            Some("unpublish") => (notice(T::Unpublished.get(l), false)),
            Some("scan") => (notice(T::Scanned.get(l), false)),
            _ => {}
        }
        nav aria-label=(T::Type.get(l)) {
            ul class="tabs" {
                (tab("", all.len(), T::All.get(l)))
                @for (t, n) in &types { (tab(t, *n, t)) }
            }
        }
        form class="filters" method="get" action="/services" role="search" {
            input type="hidden" name="type" value=(filter.stype);
            (super::nodes::filter_field("services-q", "q", T::Search.get(l), "search", &filter.q, ferr_for("q")))
            @if let Some(e) = ferr_for("type").or(ferr_for("sort")).or(ferr_for("order")).or(ferr.as_ref().filter(|(k, _)| !matches!(k.as_str(), "q" | "type" | "sort" | "order")).map(|(_, m)| m.clone())) {
                p class="error" role="alert" { (e) }
            }
            button type="submit" { (T::Search.get(l)) }
        }
        @if req.may(Access::Operate) {
            form id="scan" method="post" action="/nodes/scan" class="inline" {
                (csrf(req))
                input type="hidden" name="back" value="services";
                button type="submit" class="secondary" { (T::Scan.get(l)) }
            }
        }
        @let total = list.len();
        @let start = filter.page.saturating_sub(1) * PAGE_ROWS;
        @let shown: &[ServiceEntry] = list.get(start..(start + PAGE_ROWS).min(total)).unwrap_or(&[]);
        (table_with(&c, shown, Some(&filter), "services"))
        @if total > PAGE_ROWS {
            nav class="pages" aria-label=(T::Services.get(l)) {
                p {
                    (start.min(total) + usize::from(!shown.is_empty())) "–" (start + shown.len()) " " (T::Of.get(l)) " " (total)
                }
                ul class="tabs" {
                    @for p in 1..=total.div_ceil(PAGE_ROWS) {
                        li { a href=(filter.page_link(p)) aria-current=[(p == filter.page.max(1)).then_some("page")] { (p) } }
                    }
                }
            }
        }
        (publish_form(req, state))
    };
    html(
        status,
        layout(
            req,
            T::Services.get(l),
            Nav::Services,
            Some(&filter.live_url()),
            body,
        ),
    )
}

pub async fn list(State(dash): State<Arc<Dash>>, Viewer(req): Viewer) -> Response {
    let done = super::query(&req, &["type", "q", "sort", "order", "done", "page"])
        .ok()
        .and_then(|q| super::param(&q, "done").map(str::to_owned));
    render(&dash, &req, None, StatusCode::OK, done.as_deref())
}

/// Parse the publish form into a service definition; errors by field.
pub fn parse_publish(f: &crate::web::Fields, l: Lang) -> Result<ServiceDef, FormErrors> {
    let mut errs = FormErrors::default();
    let get = |k: &str| f.get(k).map(|s| s.trim().to_owned()).unwrap_or_default();
    let stype = get("type");
    let description = get("description");
    let port_s = get("port");
    if stype.is_empty() {
        errs.add("type", T::Required.get(l));
    }
    if description.is_empty() {
        errs.add("description", T::Required.get(l));
    }
    let port = match port_s.parse::<u16>() {
        Ok(p) if p != 0 => p,
        _ if port_s.is_empty() => {
            errs.add("port", T::Required.get(l));
            0
        }
        _ => {
            errs.add("port", T::BadPort.get(l));
            0
        }
    };
    let txt = match nuvol_catalog::cloudy::parse_txt_arg(&get("txt")) {
        Ok(t) => t,
        Err(e) => {
            errs.add("txt", e.to_string());
            Vec::new()
        }
    };
    let def = ServiceDef {
        stype,
        description,
        port,
        txt,
        checks: Vec::new(),
    };
    if errs.is_empty() {
        if let Err(e) = def.validate() {
            use nuvol_catalog::cloudy::CatalogError as C;
            let field = match &e {
                C::BadPort(_) => "port",
                C::BadTxt(_) => "txt",
                C::BadDescription(_) => "description",
                _ => "type",
            };
            errs.add(field, e.to_string());
        }
    }
    if errs.is_empty() {
        Ok(def)
    } else {
        Err(errs)
    }
}

/// `POST /services/publish`.
pub async fn publish(State(dash): State<Arc<Dash>>, Viewer(req): Viewer, body: Bytes) -> Response {
    let f = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return super::settings::bad_form(&req, e),
    };
    let Some(catalog) = &dash.catalog else {
        return super::unavailable(&req, T::CatalogOff.get(req.lang));
    };
    let result = match parse_publish(&f, req.lang) {
        Ok(def) => catalog.publish(def).await.map_err(|e| {
            let mut errs = FormErrors::default();
            errs.add("type", e.to_string());
            errs
        }),
        Err(errs) => Err(errs),
    };
    match result {
        Ok(_) => see_other("/services?done=publish"),
        Err(errors) => {
            let st = FormState {
                form: "publish",
                values: f,
                errors,
            };
            render(&dash, &req, Some(&st), StatusCode::BAD_REQUEST, None)
        }
    }
}

/// `POST /services/unpublish`.
pub async fn unpublish(
    State(dash): State<Arc<Dash>>,
    Viewer(req): Viewer,
    body: Bytes,
) -> Response {
    let f = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return super::settings::bad_form(&req, e),
    };
    let Some(catalog) = &dash.catalog else {
        return super::unavailable(&req, T::CatalogOff.get(req.lang));
    };
    let stype = f.get("type").map(|s| s.trim()).unwrap_or("");
    let port = match f.get("port").map(|p| p.trim().parse::<u16>()) {
        Some(Ok(p)) if p != 0 => Some(p),
        None => None,
        Some(_) => return super::settings::bad_form(&req, T::BadPort.get(req.lang).into()),
    };
    if stype.is_empty() {
        return super::settings::bad_form(
            &req,
            format!("{}: {}", T::Type.get(req.lang), T::Required.get(req.lang)),
        );
    }
    match catalog.unpublish(stype, port).await {
        Ok(_) => see_other("/services?done=unpublish"),
        Err(e) => super::settings::bad_form(&req, e.to_string()),
    }
}
