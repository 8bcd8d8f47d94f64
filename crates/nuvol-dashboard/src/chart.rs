//! Line charts as inline SVG, for the monitoring pages: a pure function
//! from points to markup, no script and no external file.
//!
//! - One line per series; a missing slot (two points more than one step
//!   apart) or a non-finite value breaks the line instead of joining its
//!   neighbours, and a lone point is drawn as a dot.
//! - Non-finite values never reach the markup (they are gaps); every
//!   coordinate is a finite number printed by this module.
//! - Labels (series names come from other nodes, titles from CNML files)
//!   reach the markup only through maud's escaping.
//! - Series differ by dash pattern as well as colour (the legend repeats
//!   both), the `<svg>` has a `<title>` and a `<desc>`, and [`summary`]
//!   is the text alternative: a table of each series' latest, minimum,
//!   mean and maximum.

use maud::{html, Markup};

/// What the values are, for the axis and the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds.
    Ms,
    /// A share from 0 to 1, shown as a percentage (axis 0–100 %).
    Ratio,
    /// Bits per second (SI prefixes).
    Bps,
}

impl Unit {
    /// A value with its unit, for people.
    pub fn format(self, v: f64) -> String {
        if !v.is_finite() {
            return "–".to_owned();
        }
        match self {
            Unit::Ms => {
                if v.abs() >= 100.0 {
                    format!("{v:.0} ms")
                } else if v.abs() >= 1.0 || v == 0.0 {
                    format!("{v:.1} ms")
                } else {
                    format!("{v:.2} ms")
                }
            }
            Unit::Ratio => format!("{:.0} %", v * 100.0),
            Unit::Bps => si(v, "bit/s"),
        }
    }

    /// The axis title.
    pub fn axis(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::Ratio => "%",
            Unit::Bps => "bit/s",
        }
    }

    /// A tick label (shorter than [`Unit::format`]), with the decimals
    /// ticks `step` apart need to differ.
    fn tick(self, v: f64, step: f64) -> String {
        match self {
            Unit::Ms => fixed(v, decimals(step)),
            Unit::Ratio => fixed(v * 100.0, decimals(step * 100.0)),
            Unit::Bps => {
                // The prefix of the top tick (four steps up), which every
                // tick of the chart shares.
                let div = [1e12, 1e9, 1e6, 1e3]
                    .into_iter()
                    .find(|d| step.abs() * 4.0 >= *d)
                    .unwrap_or(1.0);
                let p = match div {
                    1e12 => " T",
                    1e9 => " G",
                    1e6 => " M",
                    1e3 => " k",
                    _ => "",
                };
                if v == 0.0 {
                    "0".to_owned()
                } else {
                    format!("{}{p}", fixed(v / div, decimals(step / div)))
                }
            }
        }
    }
}

/// `v` with an SI prefix: 1.5 k, 12 M, 3.2 G.
pub fn si(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    let prefixes = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    let (div, p) = prefixes
        .iter()
        .find(|(d, _)| v.abs() >= *d)
        .copied()
        .unwrap_or((1.0, ""));
    let x = v / div;
    let sep = if unit.is_empty() && p.is_empty() {
        ""
    } else {
        " "
    };
    format!("{}{sep}{p}{unit}", trim(x)).trim_end().to_owned()
}

/// The decimals that show a difference of `step` (0 to 3).
fn decimals(step: f64) -> usize {
    if !step.is_finite() || step <= 0.0 {
        return 0;
    }
    // 0.25 needs 2, 0.05 needs 2, 0.5 needs 1, 6.25 needs 2, 25 none.
    (0..=3)
        .find(|d| {
            let m = 10f64.powi(*d as i32) * step;
            (m - m.round()).abs() < 1e-6
        })
        .unwrap_or(3)
}

/// `v` with `d` decimals (0 for a non-finite value).
fn fixed(v: f64, d: usize) -> String {
    if v.is_finite() {
        format!("{v:.d$}")
    } else {
        "0".to_owned()
    }
}

/// A number with at most one decimal, none when whole.
fn trim(v: f64) -> String {
    if !v.is_finite() {
        return "0".to_owned();
    }
    let r = (v * 10.0).round() / 10.0;
    if (r - r.round()).abs() < 1e-9 {
        format!("{:.0}", r)
    } else {
        format!("{r:.1}")
    }
}

/// One line: a label and `[time (epoch s), value]` points, oldest first.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart to draw.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// Unique on the page: the ids of the title and description derive
    /// from it.
    pub id: &'a str,
    pub title: &'a str,
    /// What the chart shows, for screen readers (the `<desc>`).
    pub desc: &'a str,
    pub unit: Unit,
    /// Seconds per point: points further apart than this are not joined.
    pub step: u32,
    pub series: Vec<Series>,
    /// Shown instead of a chart when no series has a finite point.
    pub empty: &'a str,
}

/// Drawing area.
const W: f64 = 640.0;
const H: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 36.0;
/// Series styles (colour and dash classes) before they repeat.
pub const STYLES: usize = 6;
/// Legend rows: at most this many series are drawn.
pub const MAX_SERIES: usize = 12;

/// Consecutive points drawn as one line.
pub type Run = Vec<(f64, f64)>;

/// The runs of consecutive finite points of `points`: a new run starts
/// after a non-finite point or when two points are more than `step`
/// seconds apart (a missing slot), so gaps are never interpolated.
pub fn runs(points: &[(f64, f64)], step: u32) -> Vec<Run> {
    // Half a step of slack: slot times are exact multiples, but a series
    // may carry sample times.
    let max_gap = f64::from(step.max(1)) * 1.5;
    let mut out: Vec<Run> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    for &(t, v) in points {
        if !t.is_finite() || !v.is_finite() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if let Some(&(pt, _)) = cur.last() {
            if t - pt > max_gap || t < pt {
                out.push(std::mem::take(&mut cur));
            }
        }
        cur.push((t, v));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A "nice" number near `x` (1, 2, 2.5 or 5 times a power of ten), not
/// below it.
fn nice_ceil(x: f64) -> f64 {
    if !x.is_finite() || x <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= x * (1.0 - 1e-12) {
            return m * p;
        }
    }
    10.0 * p
}

/// The time between two x ticks for a span of `span` seconds (at most
/// about six ticks).
fn time_tick(span: f64) -> f64 {
    const CHOICES: [f64; 12] = [
        60.0,
        300.0,
        900.0,
        1800.0,
        3600.0,
        10_800.0,
        21_600.0,
        43_200.0,
        86_400.0,
        172_800.0,
        604_800.0,
        2_592_000.0,
    ];
    CHOICES
        .iter()
        .copied()
        .find(|c| span / c <= 6.0)
        .unwrap_or(31_536_000.0)
}

/// `t` (epoch seconds) as UTC `HH:MM`, or `MM-DD` when `days`.
pub fn time_label(t: f64, days: bool) -> String {
    if !t.is_finite() || t < 0.0 {
        return String::new();
    }
    let s = t as u64;
    if days {
        let (_, m, d) = civil(s / 86_400);
        format!("{m:02}-{d:02}")
    } else {
        format!("{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60)
    }
}

/// `t` (epoch seconds) as `YYYY-MM-DD HH:MM` UTC.
pub fn date_time(t: u64) -> String {
    let (y, m, d) = civil(t / 86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        (t / 3600) % 24,
        (t / 60) % 60
    )
}

/// Year, month, day of a day number since 1970-01-01 (Howard Hinnant's
/// civil-from-days).
fn civil(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A coordinate for the markup (always finite).
fn c(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "0".to_owned()
    }
}

/// The chart as an `<svg>` in a `<figure>`, or a paragraph saying
/// `chart.empty` when there is nothing to draw.
pub fn render(chart: &Chart<'_>) -> Markup {
    let series: Vec<(&Series, Vec<Run>)> = chart
        .series
        .iter()
        .take(MAX_SERIES)
        .map(|s| (s, runs(&s.points, chart.step)))
        .collect();
    let all = series.iter().flat_map(|(_, r)| r.iter().flatten());
    let (mut t0, mut t1, mut vmax) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    let mut any = false;
    for &(t, v) in all {
        any = true;
        t0 = t0.min(t);
        t1 = t1.max(t);
        vmax = vmax.max(v);
    }
    if !any {
        return html! { p class="muted chart-empty" { (chart.empty) } };
    }
    let step = f64::from(chart.step.max(1));
    if t1 - t0 < step {
        // One slot: half a step either side, so the point is in the middle.
        t0 -= step / 2.0;
        t1 += step / 2.0;
    }
    let ymax = match chart.unit {
        Unit::Ratio => 1.0,
        _ => nice_ceil(vmax),
    };
    let legend_rows = series.len().div_ceil(2);
    let height = H + legend_rows as f64 * 18.0;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |t: f64| LEFT + (t - t0) / (t1 - t0) * pw;
    let y = |v: f64| TOP + ph - (v.clamp(0.0, ymax) / ymax) * ph;
    let tick = time_tick(t1 - t0);
    let days = tick >= 86_400.0;
    let first = (t0 / tick).ceil() * tick;
    let xticks: Vec<f64> = (0..12)
        .map(|i| first + f64::from(i) * tick)
        .take_while(|t| *t <= t1)
        .collect();
    let yticks: Vec<f64> = (0..=4).map(|i| ymax * f64::from(i) / 4.0).collect();
    let title_id = format!("{}-title", chart.id);
    let desc_id = format!("{}-desc", chart.id);
    html! {
        figure class="chart" {
            svg class="chart" viewBox={ "0 0 " (c(W)) " " (c(height)) } role="img"
                aria-labelledby=(title_id) aria-describedby=(desc_id) {
                title id=(title_id) { (chart.title) }
                desc id=(desc_id) { (chart.desc) }
                g class="grid" {
                    @for v in &yticks {
                        line x1=(c(LEFT)) x2=(c(W - RIGHT)) y1=(c(y(*v))) y2=(c(y(*v))) {}
                        text class="ytick" x=(c(LEFT - 4.0)) y=(c(y(*v) + 4.0)) text-anchor="end" { (chart.unit.tick(*v, ymax / 4.0)) }
                    }
                    @for t in &xticks {
                        line x1=(c(x(*t))) x2=(c(x(*t))) y1=(c(TOP)) y2=(c(TOP + ph)) {}
                        text class="xtick" x=(c(x(*t))) y=(c(TOP + ph + 14.0)) text-anchor="middle" { (time_label(*t, days)) }
                    }
                }
                line class="axis" x1=(c(LEFT)) x2=(c(LEFT)) y1=(c(TOP)) y2=(c(TOP + ph)) {}
                line class="axis" x1=(c(LEFT)) x2=(c(W - RIGHT)) y1=(c(TOP + ph)) y2=(c(TOP + ph)) {}
                text class="unit" x=(c(LEFT)) y=(c(TOP - 8.0)) text-anchor="middle" { (chart.unit.axis()) }
                text class="unit" x=(c(W - RIGHT)) y=(c(TOP + ph + 30.0)) text-anchor="end" { (if days { "UTC (MM-DD)" } else { "UTC" }) }
                @for (i, (s, rs)) in series.iter().enumerate() {
                    g class={ "series s" (i % STYLES) } {
                        @for r in rs {
                            @if r.len() == 1 {
                                circle cx=(c(x(r[0].0))) cy=(c(y(r[0].1))) r="3" {}
                            } @else {
                                path d=(path(r, &x, &y)) {}
                            }
                        }
                        title { (s.label) }
                    }
                }
                @for (i, (s, _)) in series.iter().enumerate() {
                    @let lx = LEFT + (i % 2) as f64 * (pw / 2.0);
                    @let ly = H + (i / 2) as f64 * 18.0;
                    g class={ "legend series s" (i % STYLES) } {
                        path d={ "M" (c(lx)) " " (c(ly)) "h24" } {}
                        text x=(c(lx + 30.0)) y=(c(ly + 4.0)) { (crate::pages::nodes::truncate(&s.label, 40)) }
                    }
                }
            }
        }
    }
}

/// `M x y L x y ...` of one run.
fn path(run: &[(f64, f64)], x: &impl Fn(f64) -> f64, y: &impl Fn(f64) -> f64) -> String {
    let mut d = String::with_capacity(run.len() * 14);
    for (i, &(t, v)) in run.iter().enumerate() {
        d.push(if i == 0 { 'M' } else { 'L' });
        d.push_str(&c(x(t)));
        d.push(' ');
        d.push_str(&c(y(v)));
    }
    d
}

/// Latest, minimum, mean and maximum of a series' finite points, and
/// their number.
pub fn stats(points: &[(f64, f64)]) -> Option<(f64, f64, f64, f64, usize)> {
    let finite: Vec<f64> = points
        .iter()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .map(|(_, v)| *v)
        .collect();
    let last = *finite.last()?;
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = finite.iter().sum::<f64>() / finite.len() as f64;
    Some((last, min, mean, max, finite.len()))
}

/// Column headers of [`summary`].
pub struct SummaryLabels<'a> {
    pub series: &'a str,
    pub points: &'a str,
    pub latest: &'a str,
    pub min: &'a str,
    pub mean: &'a str,
    pub max: &'a str,
}

/// The chart as text: one row per series.
pub fn summary(chart: &Chart<'_>, l: &SummaryLabels<'_>) -> Markup {
    html! {
        table class="chart-summary" {
            caption class="visually-hidden" { (chart.title) }
            thead { tr {
                th scope="col" { (l.series) }
                th scope="col" { (l.points) }
                th scope="col" { (l.latest) }
                th scope="col" { (l.min) }
                th scope="col" { (l.mean) }
                th scope="col" { (l.max) }
            } }
            tbody {
                @for s in &chart.series {
                    tr {
                        th scope="row" { (s.label) }
                        @match stats(&s.points) {
                            Some((last, min, mean, max, n)) => {
                                td class="num" { (n) }
                                td class="num" { (chart.unit.format(last)) }
                                td class="num" { (chart.unit.format(min)) }
                                td class="num" { (chart.unit.format(mean)) }
                                td class="num" { (chart.unit.format(max)) }
                            }
                            None => { td class="num" { "0" } td { "–" } td { "–" } td { "–" } td { "–" } }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(series: Vec<Series>) -> Chart<'static> {
        Chart {
            id: "c",
            title: "RTT",
            desc: "Round trip",
            unit: Unit::Ms,
            step: 300,
            series,
            empty: "No samples yet.",
        }
    }

    fn s(label: &str, points: &[(f64, f64)]) -> Series {
        Series {
            label: label.into(),
            points: points.to_vec(),
        }
    }

    /// The `d` attributes of the drawn lines (legend swatches left out).
    fn paths(svg: &str) -> Vec<String> {
        svg.split("<path d=\"")
            .skip(1)
            .map(|p| p.split('"').next().unwrap().to_owned())
            .filter(|d| !d.ends_with("h24"))
            .collect()
    }

    #[test]
    fn an_empty_series_gives_the_message_and_no_svg() {
        for c in [
            chart(vec![]),
            chart(vec![s("a", &[])]),
            chart(vec![s("a", &[(0.0, f64::NAN), (300.0, f64::INFINITY)])]),
        ] {
            let out = render(&c).into_string();
            assert!(!out.contains("<svg"), "{out}");
            assert!(out.contains("No samples yet."), "{out}");
        }
    }

    #[test]
    fn one_point_is_a_dot_in_the_middle() {
        let out = render(&chart(vec![s("a", &[(3000.0, 5.0)])])).into_string();
        assert!(out.contains("<svg"), "{out}");
        assert!(paths(&out).is_empty(), "{out}");
        assert_eq!(out.matches("<circle").count(), 1, "{out}");
        // Centred on the x axis: LEFT + plot width / 2.
        let cx = LEFT + (W - LEFT - RIGHT) / 2.0;
        assert!(out.contains(&format!("cx=\"{cx:.1}\"")), "{out}");
        assert!(out.contains("<title id=\"c-title\">RTT</title>"));
        assert!(out.contains("<desc id=\"c-desc\">Round trip</desc>"));
        assert!(out.contains("aria-labelledby=\"c-title\""));
    }

    #[test]
    fn missing_slots_break_the_line() {
        // Slots 0, 1, 2, then 4, 5 (slot 3 missing), then 7 alone.
        let pts: Vec<(f64, f64)> = [0, 1, 2, 4, 5, 7]
            .iter()
            .map(|i| (f64::from(*i) * 300.0, 10.0))
            .collect();
        assert_eq!(runs(&pts, 300).len(), 3);
        assert_eq!(
            runs(&pts, 300).iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3, 2, 1]
        );
        let out = render(&chart(vec![s("a", &pts)])).into_string();
        let p = paths(&out);
        assert_eq!(p.len(), 2, "{out}");
        assert_eq!(p[0].matches('L').count(), 2, "{}", p[0]);
        assert_eq!(p[1].matches('L').count(), 1, "{}", p[1]);
        assert_eq!(out.matches("<circle").count(), 1);
        // A non-finite value in the middle breaks it too.
        let pts = [(0.0, 1.0), (300.0, f64::NAN), (600.0, 1.0), (900.0, 2.0)];
        assert_eq!(runs(&pts, 300).len(), 2);
        // Out of order: not joined backwards.
        assert_eq!(runs(&[(600.0, 1.0), (0.0, 1.0)], 300).len(), 2);
    }

    #[test]
    fn nan_and_infinity_never_reach_the_markup() {
        let pts = [
            (0.0, f64::NAN),
            (300.0, 1.0),
            (600.0, f64::INFINITY),
            (900.0, f64::NEG_INFINITY),
            (f64::NAN, 3.0),
            (1200.0, 4.0),
            (1500.0, 5.0),
            (f64::INFINITY, 1.0),
        ];
        for unit in [Unit::Ms, Unit::Ratio, Unit::Bps] {
            let mut c = chart(vec![s("a", &pts), s("b", &[(0.0, f64::MAX)])]);
            c.unit = unit;
            let out = render(&c).into_string().to_lowercase();
            assert!(out.contains("<svg"));
            assert!(!out.contains("nan") && !out.contains("inf"), "{out}");
        }
        assert_eq!(Unit::Bps.format(f64::NAN), "–");
        assert_eq!(stats(&[(0.0, f64::NAN)]), None);
    }

    #[test]
    fn text_is_escaped() {
        let evil = "<script>alert(1)</script>\"'&";
        let c = Chart {
            id: "x\"><b>",
            title: evil,
            desc: evil,
            unit: Unit::Bps,
            step: 300,
            series: vec![s(evil, &[(0.0, 1.0), (300.0, 2.0)])],
            empty: evil,
        };
        let labels = SummaryLabels {
            series: evil,
            points: "p",
            latest: "l",
            min: "mi",
            mean: "me",
            max: "ma",
        };
        for out in [
            render(&c).into_string(),
            summary(&c, &labels).into_string(),
            render(&Chart {
                series: vec![],
                ..c.clone()
            })
            .into_string(),
        ] {
            assert!(!out.contains("<script"), "{out}");
            assert!(!out.contains("<b>"), "{out}");
            assert!(out.contains("&lt;script&gt;"), "{out}");
        }
    }

    #[test]
    fn axes_have_units_and_time_labels() {
        // 01:00 to 03:00 UTC on 2026-12-04, 5-minute points.
        let t0 = 1_796_346_000.0;
        let pts: Vec<(f64, f64)> = (0..=24)
            .map(|i| (t0 + f64::from(i) * 300.0, 1500.0 * f64::from(i)))
            .collect();
        let mut c = chart(vec![s("n1", &pts)]);
        c.unit = Unit::Bps;
        let out = render(&c).into_string();
        assert!(out.contains(">bit/s<"), "{out}");
        assert!(out.contains(">UTC<"), "{out}");
        assert!(out.contains(">01:00<") && out.contains(">02:00<"), "{out}");
        // Max 36 kbit/s: the axis goes to 50 k.
        assert!(
            out.contains(">50.0 k<") && out.contains(">12.5 k<"),
            "{out}"
        );
        assert_eq!(date_time(1_796_346_000), "2026-12-04 01:00");
        assert_eq!(time_label(1_796_346_000.0, true), "12-04");
        let s = summary(
            &c,
            &SummaryLabels {
                series: "s",
                points: "p",
                latest: "l",
                min: "mi",
                mean: "me",
                max: "ma",
            },
        )
        .into_string();
        assert!(s.contains("36 kbit/s") && s.contains("18 kbit/s"), "{s}");
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(si(0.0, "bit/s"), "0 bit/s");
        assert_eq!(si(1500.0, "bit/s"), "1.5 kbit/s");
        assert_eq!(si(2.5e9, ""), "2.5 G");
        assert_eq!(si(12.0, ""), "12");
        assert_eq!(Unit::Ratio.format(0.2), "20 %");
        assert_eq!(Unit::Ms.format(1.234), "1.2 ms");
        assert_eq!(Unit::Ms.format(0.0716), "0.07 ms");
        assert_eq!(Unit::Ms.tick(0.05, 0.05), "0.05");
        assert_eq!(Unit::Ms.tick(0.1, 0.05), "0.10");
        assert_eq!(Unit::Ms.tick(25.0, 25.0), "25");
        assert_eq!(Unit::Ms.tick(0.5, 0.5), "0.5");
        assert_eq!(Unit::Ratio.tick(0.25, 0.25), "25");
        assert_eq!(Unit::Bps.tick(6250.0, 6250.0), "6.25 k");
        assert_eq!(Unit::Bps.tick(25_000.0, 6250.0), "25.00 k");
        assert_eq!(Unit::Bps.tick(0.0, 6250.0), "0");
        assert_eq!(Unit::Bps.tick(2e6, 5e5), "2.0 M");
        assert_eq!(nice_ceil(36_000.0), 50_000.0);
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(1.0), 1.0);
        assert_eq!(nice_ceil(1.2), 2.0);
    }
}
