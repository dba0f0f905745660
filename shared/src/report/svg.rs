//! The report's pictures as inline SVG: daily latency, latency histogram, incident timeline.
//! Pure functions of the model; every text escaped, every coordinate finite.

use super::markdown::{date, duration_u, escape, latency, time};
use super::model::{DayLatency, HistogramBar, IncidentSource, IncidentSpan, Period};
use super::palette;
use chrono::{DateTime, NaiveTime, Utc};
use std::fmt::{self, Write};

const WIDTH: f64 = 960.0;
const FONT: &str = "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif";
const INK: &str = "#212529";
const MUTED: &str = "#868e96";
const RULE: &str = "#ced4da";
const GRID: &str = "#edf0f2";
const DASH: &str = r#" stroke-dasharray="6 4""#;
const DASHED: &str = r#" stroke-width="2" stroke-dasharray="6 4" class="target""#;

/// An axis label: `850 ms`, `2 s`, `1.5 min`, `1 h`.
fn short_ms(ms: u64) -> String {
    let (value, unit) = match ms {
        0..=999 => return format!("{ms} ms"),
        1_000..=59_999 => (ms as f64 / 1e3, "s"),
        60_000..=3_599_999 => (ms as f64 / 6e4, "min"),
        3_600_000..=86_399_999 => (ms as f64 / 3.6e6, "h"),
        _ => (ms as f64 / 8.64e7, "d"),
    };
    let text = format!("{value:.1}");
    format!("{} {unit}", text.strip_suffix(".0").unwrap_or(&text))
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A coordinate: one decimal, never NaN or infinite.
struct F(f64);

impl fmt::Display for F {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}", if self.0.is_finite() { self.0 } else { 0.0 })
    }
}

/// The plotting area: left, top, right, bottom.
#[derive(Clone, Copy)]
struct Frame(f64, f64, f64, f64);

impl Frame {
    fn width(self) -> f64 {
        self.2 - self.0
    }
    fn height(self) -> f64 {
        self.3 - self.1
    }
}

/// A picture being drawn.
struct Svg(String);

impl Svg {
    fn new(id: &str, height: f64, title: &str) -> Svg {
        let (w, h, title) = (F(WIDTH), F(height), escape(title));
        Svg(format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" id="{id}" class="chart" role="img" aria-labelledby="{id}-title" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="{FONT}" font-size="12"><title id="{id}-title">{title}</title><rect width="{w}" height="{h}" fill="#fff"/>"##
        ))
    }

    fn text(&mut self, (x, y): (f64, f64), anchor: &str, fill: &str, content: &str) {
        let (x, y, content) = (F(x), F(y), escape(content));
        let _ = write!(
            self.0,
            r#"<text x="{x}" y="{y}" text-anchor="{anchor}" fill="{fill}">{content}</text>"#
        );
    }

    fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), stroke: &str, extra: &str) {
        let (x1, y1, x2, y2) = (F(x1), F(y1), F(x2), F(y2));
        let _ = write!(
            self.0,
            r#"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{stroke}"{extra}/>"#
        );
    }

    /// A rectangle at `(x, y)` of `(width, height)`, with a tooltip unless `tip` is empty.
    fn rect(&mut self, (x, y): (f64, f64), (w, h): (f64, f64), style: &str, tip: &str) {
        let (x, y, w, h) = (F(x), F(y), F(w), F(h.max(0.0)));
        let _ = write!(
            self.0,
            r#"<rect x="{x}" y="{y}" width="{w}" height="{h}" {style}"#
        );
        self.tip(tip, "rect");
    }

    fn polygon(&mut self, points: &[(f64, f64)], style: &str, tip: &str) {
        let points: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{},{}", F(x), F(y)))
            .collect();
        let _ = write!(self.0, r#"<polygon points="{}" {style}"#, points.join(" "));
        self.tip(tip, "polygon");
    }

    fn tip(&mut self, tip: &str, element: &str) {
        let _ = match tip {
            "" => write!(self.0, "/>"),
            tip => write!(self.0, "><title>{}</title></{element}>", escape(tip)),
        };
    }

    fn border(&mut self, f: Frame) {
        let style = format!(r#"fill="none" stroke="{RULE}""#);
        self.rect((f.0, f.1), (f.width(), f.height()), &style, "");
    }

    fn note(&mut self, f: Frame, message: &str) {
        let at = (f.0 + f.width() / 2.0, f.1 + f.height() / 2.0 + 4.0);
        self.text(at, "middle", MUTED, message);
    }

    /// Entries left to right: label, colour, stroke width (none: text only), dashed.
    fn legend(&mut self, mut x: f64, items: &[(&str, &str, f64, bool)]) {
        for &(label, colour, width, dashed) in items {
            if width > 0.0 {
                let dash = if dashed { DASH } else { "" };
                let extra = format!(r#" stroke-width="{}"{dash}"#, F(width));
                self.line((x, 18.0), (x + 24.0, 18.0), colour, &extra);
                x += 30.0;
            }
            self.text((x, 22.0), "start", INK, label);
            x += 18.0 + 6.5 * label.chars().count() as f64;
        }
    }

    /// A tick and its label under the frame.
    fn x_label(&mut self, x: f64, f: Frame, label: &str) {
        self.line((x, f.3), (x, f.3 + 4.0), RULE, "");
        self.text((x, f.3 + 18.0), "middle", MUTED, label);
    }

    /// A grid line and its label left of the frame.
    fn y_label(&mut self, y: f64, f: Frame, label: &str) {
        self.line((f.0, y), (f.2, y), GRID, "");
        self.text((f.0 - 6.0, y + 4.0), "end", MUTED, label);
    }

    fn end(mut self) -> String {
        self.0.push_str("</svg>");
        self.0
    }
}

const S: u64 = 1000;
const MIN: u64 = 60 * S;
const H: u64 = 60 * MIN;
const D: u64 = 24 * H;
const LOG_TICKS_MS: [u64; 11] = [1, 10, 100, S, 10 * S, MIN, 10 * MIN, H, 6 * H, D, 7 * D];

/// Milliseconds on a log axis, from the tick at or below the least value to the tick at or
/// above the greatest: `ln` of both ends, and the frame.
struct LogScale(f64, f64, Frame);

impl LogScale {
    fn new(least: u64, greatest: u64, frame: Frame) -> Self {
        let least = least.max(1);
        let greatest = greatest.max(least);
        let mut ticks = LOG_TICKS_MS.into_iter();
        let lo = ticks.clone().rev().find(|&t| t <= least).unwrap_or(least);
        let hi = ticks.find(|&t| t >= greatest).unwrap_or(greatest);
        let (lo, hi) = ((lo as f64).ln(), (hi as f64).ln());
        LogScale(lo, hi.max(lo + 1.0), frame)
    }

    fn y(&self, ms: u64) -> f64 {
        let share = ((ms.max(1) as f64).ln() - self.0) / (self.1 - self.0);
        let frame = self.2;
        frame.3 - share.clamp(0.0, 1.0) * frame.height()
    }

    fn ticks(&self) -> impl Iterator<Item = u64> + '_ {
        LOG_TICKS_MS.into_iter().filter(|&t| {
            let v = (t as f64).ln();
            v >= self.0 - 1e-9 && v <= self.1 + 1e-9
        })
    }
}

/// One latency series: a line through consecutive days (broken where a day has none), a dot
/// per day with its value as a tooltip.
type Series = (&'static str, &'static str, fn(&DayLatency) -> Option<u64>);
const SERIES: [Series; 2] = [
    ("p50", palette::P50, |d| d.p50_ms),
    ("p99", palette::P99, |d| d.p99_ms),
];

fn series(svg: &mut Svg, days: &[DayLatency], s: Series, x: &dyn Fn(usize) -> f64, y: &LogScale) {
    let (name, colour, pick) = s;
    let mut runs: Vec<Vec<String>> = vec![Vec::new()];
    for (i, day) in days.iter().enumerate() {
        match (pick(day), runs.last_mut()) {
            (Some(ms), Some(run)) => run.push(format!("{},{}", F(x(i)), F(y.y(ms)))),
            _ => runs.push(Vec::new()),
        }
    }
    for run in runs.iter().filter(|run| run.len() > 1) {
        let _ = write!(
            svg.0,
            r#"<polyline class="series-{name}" points="{}" fill="none" stroke="{colour}" stroke-width="2.5" stroke-linejoin="round" stroke-linecap="round"/>"#,
            run.join(" ")
        );
    }
    for (i, day) in days.iter().enumerate() {
        if let Some(ms) = pick(day) {
            let (cx, cy) = (F(x(i)), F(y.y(ms)));
            let (day, value, probes) = (date(day.day), latency(ms), day.probes);
            let tip = format!("{day}: {name} {value}, {probes} probes");
            let _ = write!(
                svg.0,
                r#"<circle cx="{cx}" cy="{cy}" r="3.5" fill="{colour}"><title>{}</title></circle>"#,
                escape(&tip)
            );
        }
    }
}

/// Daily p50 and p99 on a log scale over every day of the period, with the target line.
pub fn daily_latency(rule_index: usize, days: &[DayLatency], target_seconds: u64) -> String {
    let target = target_seconds.saturating_mul(1000).max(1);
    let f = Frame(70.0, 40.0, WIDTH - 20.0, 270.0);
    let title = "Daily replication latency of the canary's probes, p50 and p99 (log scale)";
    let mut svg = Svg::new(&format!("latency-{rule_index}"), 310.0, title);
    let values = days.iter().flat_map(|d| [d.p50_ms, d.p99_ms]).flatten();
    let least = values.clone().min().unwrap_or(target).min(target);
    let scale = LogScale::new(least, values.clone().max().unwrap_or(target).max(target), f);
    for tick in scale.ticks() {
        svg.y_label(scale.y(tick), f, &short_ms(tick));
    }
    svg.border(f);
    let step = f.width() / days.len().max(1) as f64;
    let x = move |i: usize| f.0 + step * (i as f64 + 0.5);
    let every = days.len().div_ceil(10).max(1);
    for (i, day) in days.iter().enumerate().step_by(every) {
        svg.x_label(x(i), f, &day.day.format("%-d %b").to_string());
    }
    let (ty, target_label) = (scale.y(target), duration_u(target_seconds));
    svg.line((f.0, ty), (f.2, ty), palette::TARGET, DASHED);
    svg.text((f.2 - 4.0, ty - 5.0), "end", palette::TARGET, &target_label);
    if values.clone().next().is_none() {
        svg.note(f, "no probe replicated in this period");
    }
    for (i, day) in days.iter().enumerate() {
        if day.probes > 0 && day.p50_ms.is_none() && day.p99_ms.is_none() {
            let tip = format!("{}: {} probes, none replicated", date(day.day), day.probes);
            let (cx, cy) = (F(x(i)), F(f.3 - 6.0));
            let _ = write!(
                svg.0,
                r#"<text x="{cx}" y="{cy}" text-anchor="middle" fill="{}">×<title>{tip}</title></text>"#,
                palette::TARGET
            );
        }
    }
    for s in SERIES {
        series(&mut svg, days, s, &x, &scale);
    }
    let target_item = format!("{target_label} target");
    svg.legend(
        f.0,
        &[
            ("p50 per day", palette::P50, 2.5, false),
            ("p99 per day", palette::P99, 2.5, false),
            (&target_item, palette::TARGET, 2.0, true),
        ],
    );
    svg.text(
        (f.2, 22.0),
        "end",
        MUTED,
        "UTC days; × probed, none replicated",
    );
    svg.end()
}

/// Where the target falls on a histogram of `slot`-wide bars from `left`, if within them.
fn target_x(bars: &[HistogramBar], target_ms: u64, left: f64, slot: f64) -> Option<f64> {
    for (i, bar) in bars.iter().enumerate() {
        if target_ms < bar.from_ms {
            return (i > 0).then_some(left + slot * i as f64);
        }
        if target_ms < bar.to_ms {
            let within = (target_ms - bar.from_ms) as f64 / (bar.to_ms - bar.from_ms) as f64;
            return Some(left + slot * (i as f64 + within));
        }
    }
    None
}

/// Probes per latency bucket, with the target marked where it falls among the buckets.
pub fn latency_histogram(rule_index: usize, bars: &[HistogramBar], target_seconds: u64) -> String {
    let f = Frame(70.0, 36.0, WIDTH - 40.0, 230.0);
    let title = "Replication latency of the canary's probes: probes per latency bucket";
    let mut svg = Svg::new(&format!("histogram-{rule_index}"), 275.0, title);
    let target_label = duration_u(target_seconds);
    let target_item = format!("{target_label} target");
    svg.legend(
        f.0,
        &[
            ("probes per bucket", palette::HISTOGRAM, 8.0, false),
            (&target_item, palette::TARGET, 2.0, true),
        ],
    );
    if bars.is_empty() {
        svg.border(f);
        svg.note(f, "no latencies");
        return svg.end();
    }
    let most = bars.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    let y = |count: u64| f.3 - f.height() * count as f64 / most as f64;
    let mut ticks = vec![0, most / 2, most];
    ticks.dedup();
    for tick in ticks {
        svg.y_label(y(tick), f, &tick.to_string());
    }
    svg.border(f);
    let slot = f.width() / bars.len() as f64;
    let style = format!(r#"fill="{}""#, palette::HISTOGRAM);
    for (i, bar) in bars.iter().enumerate() {
        let least = if bar.count > 0 { 1.0 } else { 0.0 };
        let height = (f.3 - y(bar.count)).max(least);
        let (from, to) = (latency(bar.from_ms), latency(bar.to_ms));
        let tip = format!("{from} to {to}: {} probes", bar.count);
        let at = (f.0 + slot * (i as f64 + 0.08), f.3 - height);
        svg.rect(at, ((slot * 0.84).max(0.5), height), &style, &tip);
    }
    let every = bars.len().div_ceil(12).max(1);
    let mut edges: Vec<(usize, u64)> = bars.iter().map(|b| b.from_ms).enumerate().collect();
    edges.extend(bars.last().map(|b| (bars.len(), b.to_ms)));
    for (i, ms) in edges.into_iter().step_by(every) {
        svg.x_label(f.0 + slot * i as f64, f, &short_ms(ms));
    }
    svg.text((f.2, f.3 + 38.0), "end", MUTED, "latency (bucket bounds)");
    let target = target_seconds.saturating_mul(1000);
    match target_x(bars, target, f.0, slot) {
        Some(x) => {
            svg.line((x, f.1), (x, f.3), palette::TARGET, DASHED);
            let at = (x + 4.0, f.1 + 14.0);
            svg.text(at, "start", palette::TARGET, &target_label);
        }
        None => {
            let below = bars.iter().all(|b| b.to_ms <= target);
            let side = if below { "below" } else { "at or above" };
            let note = format!("every bucket {side} the {target_label} target");
            // Above the frame, beside the legend: inside it the note would cover the bars.
            svg.text((f.2, f.1 - 10.0), "end", palette::TARGET, &note);
        }
    }
    svg.end()
}

/// One row per incident over the period: a bar from opened to resolved (an arrow when still
/// open), a diamond where it paged.
pub fn incident_timeline(rule_index: usize, period: &Period, incidents: &[IncidentSpan]) -> String {
    const ROW: f64 = 26.0;
    let rows = (ROW * incidents.len() as f64).max(60.0);
    let f = Frame(240.0, 40.0, WIDTH - 30.0, 40.0 + rows);
    let title = "Incidents over the period, from opened to resolved";
    let mut svg = Svg::new(&format!("timeline-{rule_index}"), f.3 + 40.0, title);
    let span = (period.to - period.from).num_seconds().max(1) as f64;
    let x = |t: DateTime<Utc>| {
        let offset = ((t - period.from).num_seconds() as f64).clamp(0.0, span);
        f.0 + f.width() * offset / span
    };
    let every = ((span / 86_400.0 / 10.0).ceil() as usize).max(1);
    let mut day = period.from.date_naive();
    for k in 0..4_000usize {
        let midnight = day.and_time(NaiveTime::MIN).and_utc();
        if midnight > period.to {
            break;
        }
        if midnight >= period.from {
            svg.line((x(midnight), f.1), (x(midnight), f.3), GRID, "");
            if k % every == 0 {
                svg.x_label(x(midnight), f, &midnight.format("%-d %b").to_string());
            }
        }
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    svg.border(f);
    svg.legend(
        f.0,
        &[
            ("S3 events", palette::EVENT_INCIDENT, 10.0, false),
            ("canary", palette::CANARY_INCIDENT, 10.0, false),
            ("◆ paged, ▶ still open", INK, 0.0, false),
        ],
    );
    if incidents.is_empty() {
        svg.note(f, "no incidents");
    }
    for (row, incident) in incidents.iter().enumerate() {
        let top = f.1 + ROW * row as f64 + 6.0;
        let colour = match incident.source {
            IncidentSource::Events => palette::EVENT_INCIDENT,
            IncidentSource::Canary => palette::CANARY_INCIDENT,
        };
        let start = x(incident.opened_at).min(f.2 - 3.0);
        let end = x(incident.resolved_at.unwrap_or(period.to)).max(start + 3.0);
        let state = match incident.resolved_at {
            Some(t) => format!("resolved {}", time(t)),
            None => "still open".into(),
        };
        let (cause, opened) = (&incident.cause, time(incident.opened_at));
        let tip = format!("{cause}: opened {opened}, {state}");
        svg.0.push_str(r#"<g class="incident">"#);
        let style = format!(r#"rx="2" fill="{colour}""#);
        svg.rect((start, top), (end - start, 14.0), &style, &tip);
        if incident.resolved_at.is_none() {
            let arrow = [(end, top - 3.0), (end + 9.0, top + 7.0), (end, top + 17.0)];
            let style = format!(r#"class="open-end" fill="{colour}""#);
            svg.polygon(&arrow, &style, "still open");
        }
        let paged = incident
            .paged_at
            .filter(|t| (period.from..=period.to).contains(t));
        if let Some(paged) = paged {
            let (px, py) = (x(paged), top + 7.0);
            let diamond = [
                (px, py - 7.0),
                (px + 6.0, py),
                (px, py + 7.0),
                (px - 6.0, py),
            ];
            let style = format!(r##"class="paged" fill="{INK}" stroke="#fff""##);
            svg.polygon(&diamond, &style, &format!("paged {}", time(paged)));
        }
        svg.0.push_str("</g>");
        let label = clip(&incident.cause, 34);
        svg.text((f.0 - 8.0, top + 11.0), "end", INK, &label);
    }
    svg.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::markdown::tests::{at, sample};

    fn day(d: u32, p50_ms: Option<u64>, p99_ms: Option<u64>) -> DayLatency {
        let day = at(d, 0).date_naive();
        DayLatency {
            day,
            probes: 4,
            p50_ms,
            p99_ms,
            max_ms: p99_ms,
        }
    }

    /// One well-formed picture with its id, and no NaN or infinity anywhere.
    fn check(svg: &str, id: &str) {
        let head = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" id="{id}" class="chart""#);
        assert!(svg.starts_with(&head) && svg.ends_with("</svg>"), "{svg}");
        assert!(
            svg.contains(r#"role="img""#) && svg.contains("viewBox=") && svg.contains("<title")
        );
        assert_eq!(
            (svg.matches("<svg").count(), svg.matches("</svg>").count()),
            (1, 1)
        );
        assert!(
            !svg.contains("NaN") && !svg.contains("inf\"") && !svg.contains("\"inf"),
            "{svg}"
        );
    }

    #[test]
    fn daily_latency_draws_lines_with_gaps_and_the_target() {
        let (fast, slow) = (Some(1_500), Some(1_200_000));
        let days = [
            day(1, fast, slow),
            day(2, fast, fast),
            day(3, None, None),
            day(4, fast, fast),
        ];
        let svg = daily_latency(3, &[&days[..], &[day(5, fast, slow)]].concat(), 900);
        check(&svg, "latency-3");
        assert_eq!(
            svg.matches(r#"class="series-p50""#).count(),
            2,
            "broken at day 3"
        );
        assert_eq!(svg.matches(r#"class="series-p99""#).count(), 2);
        assert!(svg.contains(&format!(r#"stroke="{}" stroke-width="2.5""#, palette::P50)));
        assert!(svg.contains(&format!(r#"stroke="{}"{DASHED}"#, palette::TARGET)));
        assert!(svg.contains(">15 min</text>") && svg.contains(">1 Nov</text>"));
        assert!(svg.contains("none replicated</title>"), "day 3 was probed");
        assert_eq!(
            (short_ms(2_000), short_ms(90_000)),
            ("2 s".into(), "1.5 min".into())
        );
    }

    #[test]
    fn daily_latency_degenerate_inputs() {
        for (i, days) in [vec![], vec![day(1, None, None)]].iter().enumerate() {
            let svg = daily_latency(i, days, [900, 0][i]);
            check(&svg, &format!("latency-{i}"));
            assert!(svg.contains("no probe replicated in this period"));
            assert!(svg.contains(r#"class="target""#));
        }
        let same = [day(1, Some(900_000), Some(900_000))];
        check(&daily_latency(2, &same, 900), "latency-2");
        let extreme = [day(1, Some(0), Some(u64::MAX))];
        check(&daily_latency(2, &extreme, u64::MAX), "latency-2");
    }

    #[test]
    fn histogram_bars_target_and_degenerate_inputs() {
        let bar = |from_ms, to_ms, count| HistogramBar {
            from_ms,
            to_ms,
            count,
        };
        let bars = [
            bar(1_000, 2_000, 5),
            bar(2_000, 600_000, 0),
            bar(600_000, 1_200_000, 1),
        ];
        let svg = latency_histogram(4, &bars, 900);
        check(&svg, "histogram-4");
        let bar_fill = format!(r#"fill="{}"><title>"#, palette::HISTOGRAM);
        assert_eq!(svg.matches(&bar_fill).count(), 3);
        assert!(svg.contains(r#"class="target""#) && svg.contains(">1 s</text>"));
        assert!(
            svg.contains(">20 min</text>"),
            "the last bucket's upper bound"
        );
        let below = latency_histogram(5, &[bar(1_000, 2_000, 0)], 900);
        check(&below, "histogram-5");
        assert!(below.contains("every bucket below the 15 min target"));
        assert!(!below.contains(r#"class="target""#));
        let empty = latency_histogram(6, &[], 900);
        check(&empty, "histogram-6");
        assert!(empty.contains("no latencies"));
        let odd = [bar(5, 5, u64::MAX), bar(0, 0, 0)];
        check(&latency_histogram(7, &odd, 0), "histogram-7");
    }

    #[test]
    fn timeline_rows_clamped_open_and_escaped() {
        let report = sample();
        let mut incidents = report.sources[0].rules[0].incidents.clone();
        let mut early = incidents[0].clone();
        let before = at(1, 0) - chrono::Duration::days(3);
        (early.opened_at, early.paged_at, early.resolved_at) =
            (before, Some(before), Some(at(1, 0)));
        incidents.push(early);
        let svg = incident_timeline(2, &report.period, &incidents);
        check(&svg, "timeline-2");
        assert!(
            svg.contains(r#"x="240.0" y="98.0" width="3.0""#),
            "clamped, still visible"
        );
        assert_eq!(svg.matches(r#"class="open-end""#).count(), 1);
        assert_eq!(
            svg.matches(r#"class="paged""#).count(),
            2,
            "those paged in the period"
        );
        assert_eq!(
            svg.matches(&format!(r#"fill="{}""#, palette::EVENT_INCIDENT))
                .count(),
            2
        );
        assert!(svg.contains(&format!(r#"fill="{}""#, palette::CANARY_INCIDENT)));
        assert!(svg.contains(">canary: MISSING &lt;/svg&gt;&lt;b&gt;</text>"));
        assert!(svg.contains(">1 Nov</text>"));
        let empty = incident_timeline(0, &report.period, &[]);
        check(&empty, "timeline-0");
        assert!(empty.contains("no incidents"));
        let instant = Period {
            from: at(2, 0),
            to: at(2, 0),
            label: "x".into(),
        };
        check(&incident_timeline(1, &instant, &incidents), "timeline-1");
    }
}
