//! `/monitor`: the network devices the monitors watch (state, owners, the
//! newest sample's age, why not cleanly up); `/monitor/{id}`: one device,
//! each owner's latest sample (ping, SNMP uptime, interfaces, counts) and
//! charts of RTT, loss and interface traffic at a chosen resolution.
//!
//! Device titles come from CNML files and owner names from other nodes:
//! they reach the markup only through maud's escaping (the charts too, see
//! [`crate::chart`]).

use crate::chart::{self, Chart, Series, SummaryLabels, Unit};
use crate::i18n::{fill, Lang, T};
use crate::page::{layout, notice, Nav};
use crate::pages::nodes::truncate;
use crate::state::Dash;
use crate::sys::human_duration;
use crate::web::{html, Req, Viewer};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use nuvol_agent::http::encode_segment;
use nuvol_monitor::verdict::DeviceState;
use nuvol_monitor::view::{DeviceDetail, DeviceSummary, Sample, SeriesView};
use nuvol_monitor::{MonitorHandle, MonitorStatus};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The resolutions the rings keep (seconds per point).
pub const STEPS: [u32; 4] = [300, 1800, 7200, 86_400];

fn handle(dash: &Dash) -> Option<MonitorHandle> {
    dash.registry.get().and_then(|r| r.get::<MonitorHandle>())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A device state as a word with its colour class (the word carries the
/// meaning).
pub fn state_badge(l: Lang, s: DeviceState) -> Markup {
    let (t, class) = match s {
        DeviceState::Up => (T::DevUp, "ok"),
        DeviceState::Down => (T::DevDown, "bad"),
        DeviceState::Unknown => (T::Unknown, "off"),
    };
    html! { span class={ "badge " (class) } data-state=(s.as_str()) { (t.get(l)) } }
}

/// "12s ago", with the UTC time as a `<time>`.
pub fn age(l: Lang, at: Option<u64>, now: u64) -> Markup {
    match at {
        None => html! { span class="muted" { (T::Never.get(l)) } },
        Some(t) => {
            let ago = human_duration(Duration::from_secs(now.saturating_sub(t)));
            html! {
                time datetime=(iso(t)) title={ (chart::date_time(t)) " UTC" } { (fill(T::Ago.get(l), &[&ago])) }
            }
        }
    }
}

fn iso(t: u64) -> String {
    let d = chart::date_time(t);
    format!("{}T{}:{:02}Z", &d[..10], &d[11..], t % 60)
}

fn device_href(id: &str) -> String {
    format!("/monitor/{}", encode_segment(id))
}

/// The name shown for a device: its title, else its id.
fn shown_name(d: &DeviceSummary) -> String {
    if d.title.trim().is_empty() {
        truncate(&d.id, 80)
    } else {
        truncate(&d.title, 80)
    }
}

/// The owners, those that could not be asked marked so.
fn owners_list(l: Lang, d: &DeviceSummary) -> Markup {
    html! {
        @if d.owners.is_empty() {
            span class="muted" { "–" }
        } @else {
            ul class="txt owners" {
                @for o in &d.owners {
                    li {
                        a href={ "/nodes/" (encode_segment(o)) } { (o) }
                        @if d.unreachable_owners.contains(o) { " " span class="muted" { "(" (T::NotAsked.get(l)) ")" } }
                    }
                }
            }
        }
    }
}

/// One row of the device list.
pub fn device_row(l: Lang, d: &DeviceSummary, now: u64) -> Markup {
    html! {
        tr data-key=(d.id) data-device=(d.id) data-state=(d.state.as_str()) {
            th scope="row" {
                a href=(device_href(&d.id)) { (shown_name(d)) }
                @if !d.title.trim().is_empty() && d.title != d.id { br; small class="muted" { code { (truncate(&d.id, 80)) } } }
            }
            td { (d.address) }
            td { (state_badge(l, d.state)) }
            td { (owners_list(l, d)) }
            td { (age(l, d.last_sample, now)) }
            td { @match &d.cause { Some(c) => (truncate(c, 300)), None => span class="muted" { "–" } } }
        }
    }
}

/// The device list, for `/monitor`.
pub fn devices_table(l: Lang, devices: &[DeviceSummary], now: u64) -> Markup {
    html! {
        @if devices.is_empty() {
            p class="muted" { (T::NoDevices.get(l)) }
        } @else {
            div class="scroll" tabindex="0" role="region" aria-label=(T::Devices.get(l)) {
                table id="devices" {
                    thead { tr {
                        th scope="col" { (T::Device.get(l)) }
                        th scope="col" { (T::Address.get(l)) }
                        th scope="col" { (T::Status.get(l)) }
                        th scope="col" { (T::MonitoredBy.get(l)) }
                        th scope="col" { (T::LastSample.get(l)) }
                        th scope="col" { (T::Cause.get(l)) }
                    } }
                    tbody {
                        @for d in devices { (device_row(l, d, now)) }
                    }
                }
            }
        }
    }
}

/// This node's part: monitors, owners per device, devices it watches.
fn status_card(l: Lang, s: &MonitorStatus) -> Markup {
    let names = |v: &[String]| {
        if v.is_empty() {
            "–".to_owned()
        } else {
            v.join(", ")
        }
    };
    html! {
        section class="card monitors" aria-labelledby="h-monitors" {
            h2 id="h-monitors" { (T::Monitors.get(l)) }
            dl class="kv" {
                dt { (T::Monitors.get(l)) } dd { (names(&s.monitors)) }
                @if !s.pending.is_empty() {
                    dt { (T::MonitorsPending.get(l)) } dd { (names(&s.pending)) }
                }
                dt { (T::OwnersPerDevice.get(l)) } dd { (s.k) }
                dt { (T::Devices.get(l)) } dd { (s.devices) }
                dt { (T::WatchedHere.get(l)) } dd { (s.mine.len()) }
                @if let Some(e) = &s.error {
                    dt { (T::DeviceSetProblem.get(l)) } dd { (e) }
                }
            }
        }
    }
}

/// Monitoring is off here: say so, and how to turn it on.
pub fn off_notice(l: Lang) -> Markup {
    html! {
        div id="monitor-off" {
            (notice(T::MonitorOff.get(l), false))
            p { (T::MonitorHowTo.get(l)) }
        }
    }
}

/// `GET /monitor`.
pub async fn list(State(dash): State<Arc<Dash>>, Viewer(req): Viewer) -> Response {
    if let Some(r) = super::reject_unknown(&req, &[]) {
        return r;
    }
    let l = req.lang;
    let title = T::MonitorTitle.get(l);
    let Some(h) = handle(&dash) else {
        return html(
            StatusCode::OK,
            layout(&req, title, Nav::Monitor, None, off_notice(l)),
        );
    };
    let devices = match h.devices().await {
        Ok(d) => d,
        Err(e) => return super::unavailable(&req, e),
    };
    let status = h.status();
    let count = |s: DeviceState| devices.iter().filter(|d| d.state == s).count();
    let body = html! {
        ul class="counts" id="device-counts" {
            @for s in [DeviceState::Up, DeviceState::Down, DeviceState::Unknown] {
                li data-state=(s.as_str()) { (state_badge(l, s)) " " (count(s)) }
            }
        }
        p class="muted" { (T::StateRule.get(l)) }
        (devices_table(l, &devices, now()))
        (status_card(l, &status))
    };
    html(
        StatusCode::OK,
        layout(&req, title, Nav::Monitor, None, body),
    )
}

/// The `step` parameter: one of [`STEPS`], 300 when absent.
pub fn parse_step(req: &Req) -> Result<u32, String> {
    let q = super::query(req, &["step"]).map_err(|(_, m)| m)?;
    match super::param(&q, "step") {
        None => Ok(STEPS[0]),
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| STEPS.contains(n))
            .ok_or_else(|| fill(T::BadStep.get(req.lang), &[&format!("{s:?}")])),
    }
}

fn step_label(l: Lang, step: u32) -> &'static str {
    match step {
        300 => T::Res300.get(l),
        1800 => T::Res1800.get(l),
        7200 => T::Res7200.get(l),
        _ => T::Res86400.get(l),
    }
}

/// Links to the other resolutions.
fn step_selector(l: Lang, id: &str, step: u32) -> Markup {
    html! {
        nav aria-label=(T::Resolution.get(l)) {
            ul class="tabs" {
                @for s in STEPS {
                    li { a href={ (device_href(id)) "?step=" (s) } aria-current=[(s == step).then_some("page")] { (step_label(l, s)) } }
                }
            }
        }
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> Markup {
    match v.filter(|x| x.is_finite()) {
        Some(x) => html! { (f(x)) },
        None => html! { span class="muted" { "–" } },
    }
}

/// One owner's latest sample.
pub fn sample_card(l: Lang, s: &Sample, now: u64) -> Markup {
    let yes_no = |b: bool| if b { T::Yes.get(l) } else { T::No.get(l) };
    let ms = |v: f64| Unit::Ms.format(v);
    html! {
        section class="card sample" data-monitor=(s.monitor) {
            h3 { a href={ "/nodes/" (encode_segment(&s.monitor)) } { (s.monitor) } }
            dl class="kv" {
                dt { (T::Time.get(l)) } dd { (age(l, Some(s.at), now)) }
                dt { (T::Answered.get(l)) } dd data-answered=(s.answered) { (yes_no(s.answered)) }
                dt { (T::Rtt.get(l)) } dd {
                    (opt(s.rtt_ms, ms))
                    @if let (Some(a), Some(b)) = (s.rtt_min_ms.filter(|x| x.is_finite()), s.rtt_max_ms.filter(|x| x.is_finite())) {
                        " " span class="muted" { "(" (ms(a)) " – " (ms(b)) ")" }
                    }
                }
                dt { (T::Loss.get(l)) } dd {
                    (opt(s.loss, |v| Unit::Ratio.format(v)))
                    @if s.sent > 0 { " " span class="muted" { "(" (fill(T::Replies.get(l), &[&s.received.to_string(), &s.sent.to_string()])) ")" } }
                }
                dt { (T::Uptime.get(l)) } dd { (opt(s.uptime, |u| human_duration(Duration::from_secs_f64(u.clamp(0.0, 1e12))))) }
                @if let Some(e) = &s.ping_error { dt { (T::PingError.get(l)) } dd { (truncate(e, 300)) } }
                @if let Some(e) = &s.snmp_error { dt { (T::SnmpError.get(l)) } dd { (truncate(e, 300)) } }
                dt { (T::Probes.get(l)) } dd { (s.counts.probes) }
                dt { (T::PingSilent.get(l)) } dd { (s.counts.ping_silent) }
                dt { (T::PingNotSent.get(l)) } dd { (s.counts.ping_errors) }
                dt { (T::SnmpTimeouts.get(l)) } dd { (s.counts.snmp_timeouts) }
                dt { (T::SnmpGarbage.get(l)) } dd { (s.counts.snmp_garbage) }
            }
            @if !s.interfaces.is_empty() {
                h4 { (T::Interfaces.get(l)) }
                div class="scroll" tabindex="0" role="region" aria-label={ (T::Interfaces.get(l)) ": " (s.monitor) } {
                    table class="interfaces" {
                        thead { tr {
                            th scope="col" { (T::IfIndex.get(l)) }
                            th scope="col" { (T::OperStatus.get(l)) }
                            th scope="col" { (T::InOctets.get(l)) }
                            th scope="col" { (T::OutOctets.get(l)) }
                            th scope="col" { (T::InRate.get(l)) }
                            th scope="col" { (T::OutRate.get(l)) }
                            th scope="col" { (T::CounterWidth.get(l)) }
                        } }
                        tbody {
                            @for i in &s.interfaces {
                                tr data-ifindex=(i.index) {
                                    th scope="row" { (i.index) }
                                    td { @if i.oper_up { span class="badge ok" { (T::IfUp.get(l)) } } @else { span class="badge bad" { (T::IfDown.get(l)) } } }
                                    td class="num" { (i.in_octets) }
                                    td class="num" { (i.out_octets) }
                                    td class="num" { (opt(i.in_bps, |v| Unit::Bps.format(v))) }
                                    td class="num" { (opt(i.out_bps, |v| Unit::Bps.format(v))) }
                                    td { (if i.hc { "64-bit" } else { "32-bit" }) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The charts of a device's series: RTT, loss, then each interface's
/// traffic (in and out per monitor). Series of each metric are ordered
/// by `owners` (best first), other monitors after.
pub fn charts(l: Lang, d: &DeviceDetail, step: u32) -> Markup {
    let owners = &d.summary.owners;
    let rank = |m: &str| owners.iter().position(|o| o == m).unwrap_or(usize::MAX);
    let mut series: Vec<&SeriesView> = d.series.iter().filter(|s| s.step == step).collect();
    series.sort_by(|a, b| (rank(&a.monitor), &a.monitor).cmp(&(rank(&b.monitor), &b.monitor)));
    let pts =
        |s: &SeriesView| -> Vec<(f64, f64)> { s.points.iter().map(|p| (p[0], p[1])).collect() };
    let name = shown_name(&d.summary);
    let of = |metric: &str| -> Vec<Series> {
        series
            .iter()
            .filter(|s| s.metric == metric)
            .map(|s| Series {
                label: s.monitor.clone(),
                points: pts(s),
            })
            .collect()
    };
    // Interfaces by index: (in, out) series.
    let mut ifs: BTreeMap<u32, Vec<Series>> = BTreeMap::new();
    for s in &series {
        let mut parts = s.metric.split('.');
        if let (Some("if"), Some(n), Some(dir), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            let Ok(n) = n.parse::<u32>() else { continue };
            let dir = match dir {
                "in_bps" => T::DirIn.get(l),
                "out_bps" => T::DirOut.get(l),
                _ => continue,
            };
            ifs.entry(n).or_default().push(Series {
                label: format!("{} {dir}", s.monitor),
                points: pts(s),
            });
        }
    }
    let rtt_title = fill(T::RttChart.get(l), &[&name]);
    let loss_title = fill(T::LossChart.get(l), &[&name]);
    let mut list: Vec<(String, String, Unit, Vec<Series>)> = vec![
        ("chart-rtt".into(), rtt_title, Unit::Ms, of("rtt_ms")),
        ("chart-loss".into(), loss_title, Unit::Ratio, of("loss")),
    ];
    for (n, s) in ifs {
        list.push((
            format!("chart-if-{n}"),
            fill(T::TrafficChart.get(l), &[&name, &n.to_string()]),
            Unit::Bps,
            s,
        ));
    }
    let labels = SummaryLabels {
        series: T::SeriesCol.get(l),
        points: T::Points.get(l),
        latest: T::Latest.get(l),
        min: T::Minimum.get(l),
        mean: T::Mean.get(l),
        max: T::Maximum.get(l),
    };
    html! {
        @for (id, title, unit, s) in &list {
            @let names: Vec<&str> = s.iter().map(|x| x.label.as_str()).collect();
            @let desc = fill(T::ChartDesc.get(l), &[title, &names.join(", "), unit.axis()]);
            @let c = Chart { id, title, desc: &desc, unit: *unit, step, series: s.clone(), empty: T::NoSamples.get(l) };
            // Not a named region: the table's region below carries the title.
            section class="chart-block" {
                h3 id={ "h-" (id) } { (title) }
                (chart::render(&c))
                @if !s.is_empty() {
                    div class="scroll" tabindex="0" role="region" aria-label=(title) {
                        (chart::summary(&c, &labels))
                    }
                }
            }
        }
    }
}

/// The device page's body.
pub fn device_body(l: Lang, d: &DeviceDetail, step: u32, now: u64) -> Markup {
    let s = &d.summary;
    let without: Vec<&String> = s
        .owners
        .iter()
        .filter(|o| !d.samples.iter().any(|x| &x.monitor == *o))
        .collect();
    html! {
        dl class="kv" id="device" {
            dt { (T::DeviceId.get(l)) } dd { code { (s.id) } }
            dt { (T::Address.get(l)) } dd { (s.address) }
            dt { (T::Status.get(l)) } dd { (state_badge(l, s.state)) }
            dt { (T::MonitoredBy.get(l)) } dd { (owners_list(l, s)) }
            dt { (T::LastSample.get(l)) } dd { (age(l, s.last_sample, now)) }
            @if let Some(c) = &s.cause { dt { (T::Cause.get(l)) } dd { (truncate(c, 300)) } }
        }
        h2 { (T::MonitoredBy.get(l)) }
        @if d.samples.is_empty() { p class="muted" { (T::NoSampleYet.get(l)) } }
        div class="grid samples" {
            @for x in &d.samples { (sample_card(l, x, now)) }
        }
        @for o in without {
            p class="muted" { (o) ": " (T::NoSampleYet.get(l)) }
        }
        h2 { (T::History.get(l)) }
        (step_selector(l, &s.id, step))
        (charts(l, d, step))
        p { a href="/monitor" { (T::MonitorTitle.get(l)) } }
    }
}

/// `GET /monitor/{id}[?step=300]`.
pub async fn one(
    State(dash): State<Arc<Dash>>,
    Viewer(req): Viewer,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let l = req.lang;
    let id = match id {
        Ok(Path(n)) => n,
        Err(e) => return super::settings::bad_form(&req, e.body_text()),
    };
    let step = match parse_step(&req) {
        Ok(s) => s,
        Err(m) => {
            let body =
                html! { (notice(&m, true)) p { a href=(device_href(&id)) { (T::Device.get(l)) } } };
            return html(
                StatusCode::BAD_REQUEST,
                layout(&req, req.t(T::Error), Nav::Monitor, None, body),
            );
        }
    };
    let Some(h) = handle(&dash) else {
        return html(
            StatusCode::NOT_FOUND,
            layout(&req, T::NotFound.get(l), Nav::Monitor, None, off_notice(l)),
        );
    };
    let d = match h.device(&id, step).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            let body = html! { p { (T::NoSuchDevice.get(l)) } p { a href="/monitor" { (T::MonitorTitle.get(l)) } } };
            return html(
                StatusCode::NOT_FOUND,
                layout(&req, T::NotFound.get(l), Nav::Monitor, None, body),
            );
        }
        Err(e) => return super::unavailable(&req, e),
    };
    let title = shown_name(&d.summary);
    html(
        StatusCode::OK,
        layout(
            &req,
            &title,
            Nav::Monitor,
            None,
            device_body(l, &d, step, now()),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use nuvol_monitor::view::{IfView, ProbeCounts};

    const EVIL: &str = "<script>x()</script>\"'><img src=x>";

    fn summary(id: &str, title: &str, state: DeviceState) -> DeviceSummary {
        DeviceSummary {
            id: id.into(),
            title: title.into(),
            address: "10.0.0.1".into(),
            state,
            owners: vec!["n1".into(), EVIL.into()],
            last_sample: Some(1_000),
            cause: Some(format!("SNMP: {EVIL}")),
            reports: Vec::new(),
            unreachable_owners: vec![EVIL.into()],
        }
    }

    fn sample(monitor: &str) -> Sample {
        Sample {
            monitor: monitor.into(),
            at: 990,
            answered: true,
            rtt_ms: Some(1.25),
            rtt_min_ms: Some(1.0),
            rtt_max_ms: Some(f64::NAN),
            loss: Some(0.2),
            sent: 5,
            received: 4,
            uptime: Some(f64::INFINITY),
            interfaces: vec![
                IfView {
                    index: 2,
                    oper_up: true,
                    in_octets: 123,
                    out_octets: 456,
                    hc: true,
                    in_bps: Some(1500.0),
                    out_bps: None,
                },
                IfView {
                    index: 3,
                    oper_up: false,
                    in_octets: 0,
                    out_octets: 0,
                    hc: false,
                    in_bps: None,
                    out_bps: None,
                },
            ],
            ping_error: None,
            snmp_error: Some(EVIL.into()),
            counts: ProbeCounts {
                probes: 7,
                ..Default::default()
            },
        }
    }

    fn series(monitor: &str, metric: &str, step: u32, pts: &[(f64, f64)]) -> SeriesView {
        SeriesView {
            monitor: monitor.into(),
            metric: metric.into(),
            step,
            points: pts.iter().map(|&(t, v)| [t, v, v, v]).collect(),
        }
    }

    fn no_markup(out: &str) {
        assert!(!out.contains("<script") && !out.contains("<img"), "{out}");
    }

    #[test]
    fn the_list_shows_state_as_words_and_escapes_what_others_send() {
        let l = Lang::En;
        let list = [
            summary("r1", EVIL, DeviceState::Up),
            summary(EVIL, "", DeviceState::Down),
            summary("r3", "", DeviceState::Unknown),
        ];
        let out = devices_table(l, &list, 1_012).into_string();
        no_markup(&out);
        for (state, word) in [("up", "up"), ("down", "down"), ("unknown", "unknown")] {
            assert!(
                out.contains(&format!("data-state=\"{state}\">{word}</span>")),
                "{state}: {out}"
            );
        }
        assert!(out.contains("12s ago</time>"), "{out}");
        assert!(out.contains("datetime=\"1970-01-01T00:16:40Z\""), "{out}");
        assert!(out.contains("href=\"/monitor/r1\""), "{out}");
        // The id in the link is percent-encoded, in the text escaped.
        assert!(out.contains("href=\"/monitor/%3Cscript%3E"), "{out}");
        assert!(out.contains("could not be asked"), "{out}");
        let empty = devices_table(l, &[], 0).into_string();
        assert!(empty.contains(T::NoDevices.get(l)), "{empty}");
        let off = off_notice(Lang::Ca).into_string();
        assert!(
            off.contains("--monitor") && off.contains("[monitor]"),
            "{off}"
        );
    }

    #[test]
    fn the_device_page_shows_each_owners_sample_and_charts() {
        let l = Lang::En;
        let d = DeviceDetail {
            summary: summary("r1", EVIL, DeviceState::Up),
            samples: vec![sample("n1")],
            series: vec![
                series("n1", "rtt_ms", 300, &[(0.0, 1.0), (300.0, 2.0)]),
                series(EVIL, "rtt_ms", 300, &[(0.0, 3.0), (600.0, 4.0)]),
                series("n1", "loss", 300, &[(0.0, 0.0)]),
                series("n1", "if.2.in_bps", 300, &[(0.0, 10.0), (300.0, 20.0)]),
                series("n1", "if.2.out_bps", 300, &[(0.0, 5.0)]),
                series("n1", "if.x.in_bps", 300, &[(0.0, 5.0)]),
                // Another resolution is not drawn.
                series("n1", "if.9.in_bps", 1800, &[(0.0, 5.0)]),
            ],
        };
        let out = device_body(l, &d, 300, 1_000).into_string();
        no_markup(&out);
        assert!(out.contains("data-monitor=\"n1\""), "{out}");
        assert!(out.contains("1.2 ms") || out.contains("1.3 ms"), "{out}");
        assert!(
            out.contains("20 %") && out.contains("4 of 5 replies"),
            "{out}"
        );
        assert!(out.contains("data-ifindex=\"2\"") && out.contains("data-ifindex=\"3\""));
        assert!(out.contains("1.5 kbit/s"), "{out}");
        assert!(
            !out.to_lowercase().contains("nan") && !out.contains("inf"),
            "{out}"
        );
        // The owner without a sample is said to have none.
        assert!(out.contains("No sample yet."), "{out}");
        for id in ["chart-rtt", "chart-loss", "chart-if-2"] {
            assert!(out.contains(&format!("id=\"{id}-title\"")), "{id}: {out}");
        }
        assert!(!out.contains("chart-if-9") && !out.contains("chart-if-x"));
        // RTT: one line per owner, the best owner first.
        let rtt = &out[out.find("id=\"chart-rtt-title\"").unwrap()..];
        let rtt = &rtt[..rtt.find("</svg>").unwrap()];
        assert!(rtt.find("<title>n1</title>") < rtt.find("<title>&lt;script"));
        // Traffic: in and out of each owner.
        assert!(out.contains("<title>n1 in</title>") && out.contains("<title>n1 out</title>"));
        assert!(
            out.contains("href=\"/monitor/r1?step=300\" aria-current=\"page\""),
            "{out}"
        );
        assert!(out.contains("href=\"/monitor/r1?step=86400\""), "{out}");
        // At another resolution with no points: the message, no svg.
        let out = device_body(l, &d, 7200, 1_000).into_string();
        assert!(!out.contains("<svg"), "{out}");
        assert!(out.contains(T::NoSamples.get(l)), "{out}");
    }
}
