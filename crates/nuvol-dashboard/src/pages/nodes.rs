//! `/nodes`: every member with status, address, tags, protocol, RTT from
//! this node and reachability quality, the map, filters and sorting;
//! `/nodes/{name}`: one node; joining and scanning.

use crate::i18n::{Lang, T};
use crate::page::{csrf, layout, notice, quality_cell, status_badge, urlencode, Field, Nav};
use crate::state::{Dash, Scan};
use crate::web::{html, parse_form, see_other, FormErrors, FormState, Req, Viewer};
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use nuvol_agent::http::{encode_segment, Access};
use nuvol_agent::Coordinate;
use nuvol_gossip::{Member, MemberStatus};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// One row of the nodes table.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub member: Member,
    pub rtt: Option<Duration>,
    pub quality: Option<u8>,
}

impl NodeView {
    pub fn status(&self) -> &'static str {
        match self.member.status {
            MemberStatus::None => "failed",
            s => s.as_str(),
        }
    }
}

/// Members with their RTT estimates and quality (two requests to the
/// gossip layer, whatever the number of nodes).
pub async fn views(
    dash: &Dash,
) -> Result<(Vec<NodeView>, HashMap<String, Coordinate>), nuvol_agent::ClusterError> {
    let members = dash.cluster.members().await?;
    let coords: HashMap<String, Coordinate> =
        dash.cluster.coordinates().await?.into_iter().collect();
    let scan = dash.scan();
    Ok((
        members
            .into_iter()
            .map(|m| view_of(dash, m, &coords, scan.as_ref()))
            .collect(),
        coords,
    ))
}

pub fn view_of(
    dash: &Dash,
    m: Member,
    coords: &HashMap<String, Coordinate>,
    scan: Option<&Scan>,
) -> NodeView {
    let mine = coords.get(&dash.node_name);
    let rtt = match (mine, coords.get(&m.name)) {
        (Some(a), Some(b)) if m.name != dash.node_name => {
            nuvol_gossip::coordinate::estimate_rtt(a, b).ok()
        }
        (Some(_), Some(_)) => Some(Duration::ZERO),
        _ => None,
    };
    let quality = scan.and_then(|s| s.quality(&m.name));
    NodeView {
        member: m,
        rtt,
        quality,
    }
}

pub fn fmt_rtt(rtt: Option<Duration>) -> String {
    match rtt {
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        None => "–".into(),
    }
}

fn tags_short(m: &Member) -> Markup {
    html! {
        ul class="txt" {
            @for (k, v) in m.tags.iter().filter(|(k, _)| !matches!(k.as_str(), "services" | "nv-svc")).take(6) {
                li { code { (k) "=" (truncate(v, 40)) } }
            }
        }
    }
}

pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

/// The row of one member; the live stream sends the same markup.
pub fn member_row(l: Lang, v: &NodeView) -> Markup {
    let m = &v.member;
    html! {
        tr data-key=(m.name) data-node=(m.name) data-status=(v.status()) {
            th scope="row" { a href={ "/nodes/" (encode_segment(&m.name)) } { (m.name) } }
            td { (status_badge(l, v.status())) }
            td { (m.addr) }
            td class="hide-narrow" { (tags_short(m)) }
            td class="hide-narrow" { (m.vsn[2]) "/" (m.vsn[5]) }
            td class="num" { (fmt_rtt(v.rtt)) }
            td class="num" { (quality_cell(v.quality)) }
        }
    }
}

/// Filters of the nodes page.
#[derive(Debug, Default, Clone)]
pub struct NodeFilter {
    pub q: String,
    pub status: String,
    pub sort: String,
    pub desc: bool,
}

impl NodeFilter {
    pub fn matches(&self, v: &NodeView) -> bool {
        let q = self.q.to_lowercase();
        (self.status.is_empty() || v.status() == self.status)
            && (q.is_empty()
                || v.member.name.to_lowercase().contains(&q)
                || v.member.addr.to_string().contains(&q)
                || v.member.tags.iter().any(|(k, val)| {
                    k.to_lowercase().contains(&q) || val.to_lowercase().contains(&q)
                }))
    }

    pub fn sort(&self, list: &mut [NodeView]) {
        match self.sort.as_str() {
            "status" => list.sort_by(|a, b| {
                a.status()
                    .cmp(b.status())
                    .then(a.member.name.cmp(&b.member.name))
            }),
            "addr" => list.sort_by_key(|v| v.member.addr),
            "rtt" => list.sort_by_key(|v| (v.rtt.is_none(), v.rtt)),
            "quality" => list.sort_by_key(|v| (v.quality.is_none(), std::cmp::Reverse(v.quality))),
            _ => list.sort_by(|a, b| a.member.name.cmp(&b.member.name)),
        }
        if self.desc {
            list.reverse();
        }
    }

    /// From the query string; the error names the parameter.
    pub fn parse(req: &Req) -> Result<NodeFilter, (String, String)> {
        let q = super::query(req, &["q", "status", "sort", "order", "done"])?;
        let mut f = NodeFilter {
            q: super::param(&q, "q")
                .unwrap_or("")
                .chars()
                .take(128)
                .collect(),
            ..Default::default()
        };
        if let Some(s) = super::param(&q, "status") {
            if !matches!(s, "alive" | "failed" | "left" | "leaving") {
                return Err((
                    "status".into(),
                    crate::i18n::fill(T::UnknownValue.get(req.lang), &[&format!("{s:?}")]),
                ));
            }
            f.status = s.to_owned();
        }
        (f.sort, f.desc) =
            super::sort_order(req, &q, &["name", "status", "addr", "rtt", "quality"])?;
        Ok(f)
    }

    /// The query string of this filter sorted by `by` (toggling the order
    /// when it already is).
    fn sort_link(&self, by: &str) -> String {
        let desc = self.sort == by && !self.desc;
        format!(
            "/nodes?q={}&status={}&sort={by}&order={}",
            urlencode(&self.q),
            self.status,
            if desc { "desc" } else { "asc" }
        )
    }

    /// The live stream's URL for this filter.
    pub fn live_url(&self) -> String {
        format!(
            "/live?page=nodes&q={}&status={}",
            urlencode(&self.q),
            self.status
        )
    }
}

/// The map: nodes placed by their coordinates (see [`crate::svg`]).
fn map(
    dash: &Dash,
    l: Lang,
    views: &[NodeView],
    coords: &HashMap<String, Coordinate>,
    me: &str,
) -> Markup {
    let placed: Vec<&NodeView> = views
        .iter()
        .filter(|v| coords.contains_key(&v.member.name))
        .take(300)
        .collect();
    if placed.len() < 2 {
        return html! { p class="muted" { (T::NoCoordinates.get(l)) } };
    }
    let (w, h) = (640.0, 360.0);
    let names: Vec<&str> = placed.iter().map(|v| v.member.name.as_str()).collect();
    let pts = dash.map_layout(&names, || {
        let d: Vec<Vec<f64>> = placed
            .iter()
            .map(|a| {
                placed
                    .iter()
                    .map(
                        |b| match (coords.get(&a.member.name), coords.get(&b.member.name)) {
                            (Some(x), Some(y)) => nuvol_gossip::coordinate::estimate_rtt(x, y)
                                .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
                            _ => 0.0,
                        },
                    )
                    .collect()
            })
            .collect();
        crate::svg::fit(&crate::svg::layout(&d), w, h, 30.0)
    });
    let label = placed.len() <= 40;
    html! {
        figure {
            svg class="map" viewBox="0 0 640 360" role="img" aria-labelledby="map-title" {
                title id="map-title" { (T::ClusterMap.get(l)) }
                @for (v, (x, y)) in placed.iter().zip(&pts) {
                    g {
                        circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="7"
                            class={ (v.status()) @if v.member.name == me { " self" } } {
                            title { (v.member.name) " · " (fmt_rtt(v.rtt)) }
                        }
                        @if label {
                            text x=(format!("{:.1}", x + 10.0)) y=(format!("{:.1}", y + 4.0)) { (truncate(&v.member.name, 20)) }
                        }
                    }
                }
            }
            figcaption class="muted" { (T::ClusterMap.get(l)) }
        }
    }
}

fn actions(req: &Req, state: Option<&FormState>) -> Markup {
    let l = req.lang;
    if !req.may(Access::Operate) {
        return html! { p { a href="/login?next=/nodes" { (T::LoginToAct.get(l)) } } };
    }
    let st = state.and_then(|s| s.for_form("join"));
    html! {
        div class="grid" {
            section class="card" {
                h2 id="h-join" { (T::JoinNode.get(l)) }
                form id="join" method="post" action="/nodes/join" {
                    (csrf(req))
                    (Field { form: "join", name: "addr", label: T::Address.get(l), kind: "text", value: "", help: Some(T::JoinHelp.get(l)), required: true }.render(st))
                    button type="submit" { (T::Join.get(l)) }
                }
            }
            section class="card" {
                h2 id="h-scan" { (T::Quality.get(l)) }
                form id="scan" method="post" action="/nodes/scan" {
                    (csrf(req))
                    button type="submit" { (T::Scan.get(l)) }
                }
            }
        }
    }
}

fn render(
    dash: &Dash,
    req: &Req,
    views: Vec<NodeView>,
    coords: &HashMap<String, Coordinate>,
    state: Option<&FormState>,
    status: StatusCode,
) -> Response {
    let l = req.lang;
    let (filter, ferr) = match NodeFilter::parse(req) {
        Ok(f) => (f, None),
        Err(e) => (NodeFilter::default(), Some(e)),
    };
    let done = super::query(req, &["q", "status", "sort", "order", "done"])
        .ok()
        .and_then(|q| super::param(&q, "done").map(str::to_owned));
    let mut list: Vec<NodeView> = views
        .iter()
        .filter(|v| filter.matches(v))
        .cloned()
        .collect();
    filter.sort(&mut list);
    let scan = dash.scan();
    let ferr_for = |f: &str| {
        ferr.as_ref()
            .filter(|(k, _)| {
                k == f || (f == "q" && !matches!(k.as_str(), "status" | "sort" | "order"))
            })
            .map(|(_, m)| m.clone())
    };
    let status = if ferr.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    let th = |by: &str, t: T, class: &str| {
        let sorted = filter.sort == by || (by == "name" && filter.sort.is_empty());
        let aria = sorted.then_some(if filter.desc {
            "descending"
        } else {
            "ascending"
        });
        html! { th scope="col" class=(class) aria-sort=[aria] { a href=(filter.sort_link(by)) { (t.get(l)) } } }
    };
    let body = html! {
        @match done.as_deref() {
            Some("join") => (notice(T::Joined.get(l), false)),
            Some("scan") => (notice(T::Scanned.get(l), false)),
            _ => {}
        }
        @if let Some(st) = state { @if !st.errors.is_empty() { (notice(T::FixErrors.get(l), true)) } }
        form class="filters" method="get" action="/nodes" role="search" {
            (filter_field("nodes-q", "q", T::Search.get(l), "search", &filter.q, ferr_for("q")))
            div class={ "field" @if ferr_for("status").is_some() { " invalid" } } {
                label for="nodes-status" { (T::Status.get(l)) }
                select id="nodes-status" name="status" aria-invalid=[ferr_for("status").map(|_| "true")] aria-describedby=[ferr_for("status").map(|_| "nodes-status-error")] {
                    option value="" { (T::All.get(l)) }
                    @for s in ["alive", "failed", "left", "leaving"] {
                        option value=(s) selected[filter.status == s] { (status_label(l, s)) }
                    }
                }
                @if let Some(e) = ferr_for("status") { p id="nodes-status-error" class="error" { (e) } }
            }
            @if let Some(e) = ferr_for("sort").or(ferr_for("order")) { p class="error" role="alert" { (e) } }
            button type="submit" { (T::Filter.get(l)) }
        }
        p id="nodes-empty" class="muted" hidden[!list.is_empty()] { (T::NoNodes.get(l)) }
        div class="scroll" tabindex="0" role="region" aria-label=(T::Nodes.get(l)) {
            table id="members" {
                thead { tr {
                    (th("name", T::Name, ""))
                    (th("status", T::Status, ""))
                    (th("addr", T::Address, ""))
                    th scope="col" class="hide-narrow" { (T::Tags.get(l)) }
                    th scope="col" class="hide-narrow" { (T::Protocol.get(l)) }
                    (th("rtt", T::Rtt, ""))
                    (th("quality", T::Quality, ""))
                } }
                tbody data-list="members" data-empty="nodes-empty" {
                    @for v in &list { (member_row(l, v)) }
                }
            }
        }
        @if let Some(s) = &scan {
            p class="muted" { (T::Quality.get(l)) ": " (crate::pages::events::clock(s.at)) " UTC" }
        } @else {
            p class="muted" { (T::ScanNever.get(l)) }
        }
        (map(dash, l, &views, coords, &dash.node_name))
        (actions(req, state))
    };
    html(
        status,
        layout(
            req,
            T::Nodes.get(l),
            Nav::Nodes,
            Some(&filter.live_url()),
            body,
        ),
    )
}

pub fn status_label(l: Lang, s: &str) -> &'static str {
    match s {
        "alive" => T::Alive.get(l),
        "failed" => T::Failed.get(l),
        "left" => T::Left.get(l),
        _ => T::Leaving.get(l),
    }
}

pub fn filter_field(
    id: &str,
    name: &str,
    label: &str,
    kind: &str,
    value: &str,
    err: Option<String>,
) -> Markup {
    let err_id = format!("{id}-error");
    html! {
        div class={ "field" @if err.is_some() { " invalid" } } {
            label for=(id) { (label) }
            input id=(id) name=(name) type=(kind) value=(value)
                aria-invalid=[err.as_ref().map(|_| "true")] aria-describedby=[err.as_ref().map(|_| err_id.as_str())];
            @if let Some(e) = &err { p id=(err_id) class="error" { (e) } }
        }
    }
}

pub async fn list(State(dash): State<Arc<Dash>>, Viewer(req): Viewer) -> Response {
    match views(&dash).await {
        Ok((v, c)) => render(&dash, &req, v, &c, None, StatusCode::OK),
        Err(e) => super::unavailable(&req, e),
    }
}

/// `GET /nodes/{name}`.
pub async fn one(
    State(dash): State<Arc<Dash>>,
    Viewer(req): Viewer,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    if let Some(r) = super::reject_unknown(&req, &[]) {
        return r;
    }
    let l = req.lang;
    // Not UTF-8 once decoded: a page saying so, not axum's plain text.
    let name = match name {
        Ok(Path(n)) => n,
        Err(e) => return super::settings::bad_form(&req, e.body_text()),
    };
    let (all, _) = match views(&dash).await {
        Ok(v) => v,
        Err(e) => return super::unavailable(&req, e),
    };
    let Some(v) = all.into_iter().find(|v| v.member.name == name) else {
        let body =
            html! { p { (T::NoSuchNode.get(l)) } p { a href="/nodes" { (T::Nodes.get(l)) } } };
        return html(
            StatusCode::NOT_FOUND,
            layout(&req, T::NotFound.get(l), Nav::Nodes, None, body),
        );
    };
    let services = dash
        .catalog
        .as_ref()
        .map(|c| {
            c.entries(&nuvol_catalog::model::Filter {
                node: Some(name.clone()),
                ..Default::default()
            })
        })
        .unwrap_or_default();
    let owned = dash.cluster.owned_tags();
    let m = &v.member;
    let body = html! {
        dl class="kv" {
            dt { (T::Status.get(l)) } dd { (status_badge(l, v.status())) }
            dt { (T::Address.get(l)) } dd { (m.addr) }
            dt { (T::Rtt.get(l)) } dd { (fmt_rtt(v.rtt)) }
            dt { (T::Quality.get(l)) } dd { (quality_cell(v.quality)) }
            dt { (T::Protocol.get(l)) } dd { (m.vsn[0]) "–" (m.vsn[1]) " (" (m.vsn[2]) "), " (T::Delegate.get(l)) " " (m.vsn[3]) "–" (m.vsn[4]) " (" (m.vsn[5]) ")" }
        }
        h2 { (T::Tags.get(l)) }
        div class="scroll" tabindex="0" role="region" aria-label=(T::Tags.get(l)) {
            table id="tags" {
                thead { tr { th scope="col" { (T::Key.get(l)) } th scope="col" { (T::Value.get(l)) } } }
                tbody {
                    @for (k, val) in &m.tags {
                        tr {
                            th scope="row" { code { (k) } }
                            td {
                                code { (truncate(val, 300)) }
                                @if m.name == dash.node_name { @if let Some(o) = owned.get(k) { " " span class="muted" { "(" (T::OwnedBy.get(l)) " " (o) ")" } } }
                            }
                        }
                    }
                }
            }
        }
        h2 { (T::Services.get(l)) " (" (services.len()) ")" }
        (super::services::table(&dash, l, &services, None, "node-services"))
    };
    let title = truncate(&m.name, 64);
    html(StatusCode::OK, layout(&req, &title, Nav::Nodes, None, body))
}

/// `POST /nodes/join`.
pub async fn join(State(dash): State<Arc<Dash>>, Viewer(req): Viewer, body: Bytes) -> Response {
    let f = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return super::settings::bad_form(&req, e),
    };
    let addr = f
        .get("addr")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mut errs = FormErrors::default();
    if addr.is_empty() {
        errs.add("addr", T::Required.get(req.lang));
    } else if let Err(e) = nuvol_agent::join::check_join_addr(&addr) {
        errs.add("addr", e);
    } else if let Err(e) = dash.cluster.join(std::slice::from_ref(&addr), false).await {
        errs.add("addr", e.to_string());
    }
    if !errs.is_empty() {
        let st = FormState {
            form: "join",
            values: f,
            errors: errs,
        };
        return match views(&dash).await {
            Ok((v, c)) => render(&dash, &req, v, &c, Some(&st), StatusCode::BAD_REQUEST),
            Err(e) => super::unavailable(&req, e),
        };
    }
    dash.log("join", &addr, "joined from the dashboard".into());
    see_other("/nodes?done=join")
}

/// How long a scan waits for acks.
pub const SCAN_TIMEOUT: Duration = Duration::from_secs(3);

/// Ping every alive node with serf's internal `_serf_ping` query (what
/// `serf reachability` does) and keep each ack's time.
pub async fn run_scan(dash: &Dash) -> Result<Scan, nuvol_agent::ClusterError> {
    let asked: Vec<String> = dash
        .cluster
        .members()
        .await?
        .into_iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .map(|m| m.name)
        .collect();
    let params = nuvol_gossip::QueryParams {
        request_ack: true,
        timeout: SCAN_TIMEOUT,
        ..Default::default()
    };
    let start = Instant::now();
    let mut s = dash
        .cluster
        .query("_serf_ping".into(), Vec::new(), params)
        .await?;
    let mut acks = HashMap::new();
    while let Some(u) = s.updates.recv().await {
        if let nuvol_agent::QueryUpdate::Ack(from) = u {
            acks.entry(from).or_insert_with(|| start.elapsed());
        }
    }
    Ok(Scan {
        at: SystemTime::now(),
        acks,
        asked,
    })
}

/// `POST /nodes/scan`.
pub async fn scan(State(dash): State<Arc<Dash>>, Viewer(req): Viewer, body: Bytes) -> Response {
    let back = parse_form(&body)
        .ok()
        .and_then(|f| f.get("back").cloned())
        .unwrap_or_default();
    match run_scan(&dash).await {
        Ok(s) => {
            let n = s.acks.len();
            dash.set_scan(s);
            dash.log("scan", &dash.node_name, format!("{n} nodes answered"));
            if back == "services" {
                see_other("/services?done=scan&sort=quality")
            } else {
                see_other("/nodes?done=scan&sort=quality")
            }
        }
        Err(e) => super::unavailable(&req, e),
    }
}
