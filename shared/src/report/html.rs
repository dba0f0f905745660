//! One self-contained HTML page: inline CSS and SVG, no script, no external resource; prints
//! to A4 with each rule starting a page. Also the report's outline and tables, which the
//! Markdown renderer draws too, so both formats carry the same figures.

use super::markdown::{
    bytes, count, date, duration, duration_u, escape, latency, pct, share, time, NONE,
};
use super::model::{
    AuditFindingSeen, CanaryFigures, EventFigures, IncidentSource, IncidentSpan, LateVersion,
    NotTrackedCount, Report, RuleReport, Share, SourceReport, VerdictLevel,
};
use super::svg;
use chrono::{DateTime, Utc};
use std::fmt::Write;

fn opt_time(t: Option<DateTime<Utc>>, otherwise: &str) -> String {
    t.map_or_else(|| otherwise.to_owned(), time)
}

/// A figure if there is one, else [`NONE`].
fn or_none<T>(value: Option<T>, show: impl FnOnce(T) -> String) -> String {
    value.map_or_else(|| NONE.to_owned(), show)
}

/// A table both renderers draw; cells already escaped for the format.
pub(crate) struct Grid {
    pub(crate) class: &'static str,
    pub(crate) headers: Vec<String>,
    /// Columns of numbers, aligned right.
    pub(crate) numeric: Vec<usize>,
    pub(crate) rows: Vec<Vec<String>>,
}

/// A table of `items`, one row each: `headers` separated by `|`, a number's column marked `#`.
fn grid<T>(
    (class, headers): (&'static str, &str),
    items: &[T],
    row: impl FnMut(&T) -> Vec<String>,
) -> Grid {
    let headers: Vec<&str> = headers.split('|').collect();
    let numeric = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| h.starts_with('#'));
    let numeric = numeric.map(|(column, _)| column).collect();
    let headers = headers
        .iter()
        .map(|h| h.trim_start_matches('#').to_owned())
        .collect();
    let rows = items.iter().map(row).collect();
    Grid {
        class,
        headers,
        numeric,
        rows,
    }
}

/// What the outline writes to: the HTML page or the Markdown document.
pub(crate) trait Sink {
    /// Untrusted text, escaped for the format.
    fn esc(&self, text: &str) -> String;
    /// A verdict's label, marked up.
    fn badge(&self, level: VerdictLevel) -> String;
    /// The summary's rule cell, linked to the rule's section where there is one.
    fn link(&self, text: String, rule_index: Option<usize>) -> String;
    /// `text` is escaped already, as in `para` and `list`.
    fn heading(&mut self, level: usize, text: &str);
    fn para(&mut self, text: &str);
    /// The table, or the `empty` sentence (if any) when it has no row.
    fn table(&mut self, grid: Grid, empty: &str);
    fn list(&mut self, items: &[String]);
    /// A section with a class and maybe an id (HTML only).
    fn open(&mut self, class: &str, id: Option<String>);
    fn close(&mut self);
    /// An inline SVG picture (HTML only).
    fn chart(&mut self, svg: String);

    /// Untrusted text if any, escaped, else `otherwise`.
    fn esc_or(&self, text: Option<&str>, otherwise: &str) -> String {
        text.map_or_else(|| otherwise.to_owned(), |t| self.esc(t))
    }
}

/// The report from title to notes, the same in every format.
pub(crate) fn outline<S: Sink>(report: &Report, out: &mut S) {
    let label = out.esc(&report.period.label);
    out.heading(1, &format!("S3 replication evidence: {label} (UTC)"));
    let (from, to) = (time(report.period.from), time(report.period.to));
    let generated = time(report.generated_at);
    out.para(&format!(
        "Generated {generated}. Period {from} to {to}, end excluded."
    ));
    let target = duration_u(report.target_seconds);
    let error = pct(report.percentile_error);
    out.para(&format!(
        "Target: every object version replicated within {target} (S3 Replication Time \
         Control). Canary figures are probe-sampled: they describe the probes the canary wrote \
         under each rule, while S3's SLA counts all objects. Percentiles are read from a \
         log-scale histogram and are within ±{error} of the exact value; maxima are exact."
    ));
    out.heading(2, "Summary");
    let grid = summary(report, out);
    out.table(grid, "No source, rule or destination in this period.");
    let mut index = 0;
    for source in &report.sources {
        out.open("source", None);
        let bucket = out.esc(&source.source_bucket);
        out.heading(2, &format!("Source bucket {bucket}"));
        if source.rules.is_empty() {
            out.para("No replication rule of this source in this period.");
        }
        for rule in &source.rules {
            rule_section(report, index, rule, out);
            index += 1;
        }
        source_section(source, out);
        out.close();
    }
    out.heading(2, "Notes");
    let notes: Vec<String> = report.notes.iter().map(|n| out.esc(n)).collect();
    match notes.is_empty() {
        true => out.para("None."),
        false => out.list(&notes),
    }
}

fn summary<S: Sink>(report: &Report, out: &S) -> Grid {
    let rules: Vec<&RuleReport> = report.sources.iter().flat_map(|s| &s.rules).collect();
    let target = duration_u(report.target_seconds);
    let headers = format!(
        "Source|Rule|Destination|Verdict|#Probes|Within {target}|#p99|#Failed versions|\
         #Incidents|#Backlog at end"
    );
    grid(("summary", &headers), &report.summary, |row| {
        let index = rules.iter().position(|r| {
            (&r.source_bucket, &r.rule_id, &r.destination_bucket)
                == (&row.source_bucket, &row.rule_id, &row.destination_bucket)
        });
        vec![
            out.esc(&row.source_bucket),
            out.link(out.esc(&row.rule_id), index),
            out.esc(&row.destination_bucket),
            out.badge(row.verdict.level),
            count(row.probes),
            or_none(row.within_target.as_ref(), share),
            or_none(row.p99_ms, latency),
            count(row.failed_versions),
            count(row.incidents),
            count(row.backlog_at_end),
        ]
    })
}

fn rule_section<S: Sink>(report: &Report, i: usize, rule: &RuleReport, out: &mut S) {
    out.open("rule", Some(format!("rule-{i}")));
    let (id, destination) = (out.esc(&rule.rule_id), out.esc(&rule.destination_bucket));
    out.heading(3, &format!("Rule {id} → {destination}"));
    let (badge, why) = (out.badge(rule.verdict.level), out.esc(&rule.verdict.text));
    out.para(&format!("{badge} {why}"));
    out.heading(4, "Canary probes");
    let (canary, target) = (&rule.canary, report.target_seconds);
    let o = &canary.outcomes;
    let outcomes = [
        o.arrived,
        o.slow,
        o.missing,
        o.stalled,
        o.failed,
        o.cannot_verify,
        o.total,
    ];
    let probed: &[[u64; 7]] = if o.total > 0 { &[outcomes] } else { &[] };
    let headers = (
        "outcomes",
        "#Arrived|#Slow|#Missing|#Stalled|#Failed|#Cannot verify|#Total",
    );
    let grid_of_outcomes = grid(headers, probed, |cells| {
        cells.iter().map(|&n| count(n)).collect()
    });
    out.table(grid_of_outcomes, "No probes in this period.");
    out.table(canary_figures(target, canary), "");
    out.chart(svg::daily_latency(i, &canary.days, target));
    out.chart(svg::latency_histogram(i, &canary.histogram, target));
    out.heading(4, "S3 replication events");
    events_section(&rule.events, out);
    out.heading(4, "Incidents");
    out.chart(svg::incident_timeline(i, &report.period, &rule.incidents));
    let incidents = incidents(&rule.incidents, out);
    out.table(incidents, "No incidents in this period.");
    out.heading(4, "Exposure");
    out.para("Object versions missing from the replica: what a failover would have lost.");
    let e = &rule.exposure;
    let end = ("End of period", e.versions_at_end, e.bytes_at_end);
    let rows = [end, ("Now", e.versions_now, e.bytes_now)];
    let headers = ("exposure", "When|#Versions missing|#Bytes missing");
    let exposure = grid(headers, &rows, |&(when, versions, size)| {
        vec![when.to_owned(), count(versions), bytes(size)]
    });
    out.table(exposure, "");
    out.close();
}

fn events_section<S: Sink>(events: &EventFigures, out: &mut S) {
    let (failed, missed) = (events.failed_versions, events.missed_threshold);
    let listed = events.late_versions.len() as u64;
    if failed == 0 && missed == 0 && listed == 0 && events.failed_by_reason.is_empty() {
        return out.para("No version failed or missed the threshold in this period.");
    }
    let (missed, after) = (count(missed), count(events.replicated_after_threshold));
    out.para(&format!(
        "Failed versions: {}. Versions that missed S3's replication time threshold: {missed}, \
         of which {after} replicated after it.",
        count(failed)
    ));
    let headers = ("reasons", "Failure reason|#Versions|Meaning|Fix");
    let reasons = grid(headers, &events.failed_by_reason, |r| {
        let (reason, meaning, fix) = (out.esc(&r.reason), out.esc(&r.meaning), out.esc(&r.fix));
        vec![reason, count(r.versions), meaning, fix]
    });
    out.table(reasons, "No version failed in this period.");
    if listed > 0 && listed < events.missed_threshold {
        out.para(&format!("The slowest {listed} of {missed} late versions:"));
    }
    let late = late(&events.late_versions, out);
    out.table(late, "No late version in this period.");
}

fn canary_figures(target_seconds: u64, c: &CanaryFigures) -> Grid {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |name: &str, value: String| rows.push((name.to_owned(), value));
    match &c.latency {
        Some(l) => {
            row("Probes replicated", count(l.samples));
            row("Latency p50", latency(l.p50_ms));
            row("Latency p95", latency(l.p95_ms));
            row("Latency p99", latency(l.p99_ms));
            row("Latency max (exact)", latency(l.max_ms));
        }
        None => row("Latency", "no probe replicated".into()),
    }
    let verified = |s: &Option<Share>| match s {
        Some(s) => format!("{}; {} of {} probes", share(s), count(s.hits), count(s.of)),
        None => "no verified probe".into(),
    };
    let within = format!("Within {}", duration_u(target_seconds));
    row(&within, verified(&c.within_target));
    row("Within the threshold", verified(&c.within_threshold));
    let thresholds: Vec<String> = c.threshold_seconds.iter().map(|&s| duration_u(s)).collect();
    let thresholds = match thresholds.is_empty() {
        true => "not recorded".to_owned(),
        false => thresholds.join(", "),
    };
    row("Threshold", thresholds);
    let blind = c.blind.as_ref().map_or_else(
        || "not measured (fewer than two probes replicated)".to_owned(),
        |b| {
            format!(
                "{}, from {} to {}",
                duration(b.seconds),
                time(b.from),
                time(b.to)
            )
        },
    );
    row("Longest blind time", blind);
    row("First probe", opt_time(c.first_probe_at, "none"));
    row("Last probe", opt_time(c.last_probe_at, "none"));
    grid(("kv", "Figure|Value"), &rows, |(name, value)| {
        vec![name.clone(), value.clone()]
    })
}

fn late<S: Sink>(versions: &[LateVersion], out: &S) -> Grid {
    let headers = (
        "late long",
        "Key|Version|Late at|Arrived at|#Replication time",
    );
    grid(headers, versions, |v| {
        let seconds = v.replication_seconds.filter(|s| s.is_finite() && *s >= 0.0);
        vec![
            out.esc(&v.key),
            out.esc_or(v.version_id.as_deref(), NONE),
            opt_time(v.late_at, NONE),
            opt_time(v.replicated_at, "not yet"),
            or_none(seconds, |s| latency((s * 1000.0).round() as u64)),
        ]
    })
}

fn incidents<S: Sink>(incidents: &[IncidentSpan], out: &S) -> Grid {
    let headers = "Source|Cause|Opened|First failure|Paged|Resolved|#Time to page|\
                   #Time to resolve|#Count|Resolution";
    grid(("incidents long", headers), incidents, |i| {
        let source = match i.source {
            IncidentSource::Events => "S3 events",
            IncidentSource::Canary => "canary",
        };
        vec![
            source.to_owned(),
            out.esc(&i.cause),
            time(i.opened_at),
            opt_time(i.first_failure_at, NONE),
            opt_time(i.paged_at, "not paged"),
            opt_time(i.resolved_at, "still open"),
            or_none(i.seconds_to_page, duration),
            or_none(i.seconds_to_resolve, duration),
            count(i.count),
            out.esc_or(i.resolution.as_deref(), NONE),
        ]
    })
}

fn source_section<S: Sink>(source: &SourceReport, out: &mut S) {
    out.open("source-extra", None);
    let bucket = out.esc(&source.source_bucket);
    out.heading(3, &format!("Re-drives of {bucket}"));
    let headers = "Destination|#Attempt|State|Started|Finished|#Replicated|#Still failing";
    let redrives = grid(("redrives", headers), &source.redrives, |r| {
        vec![
            out.esc_or(r.destination_bucket.as_deref(), "all"),
            r.attempt.to_string(),
            out.esc(&r.state),
            time(r.started_at),
            opt_time(r.finished_at, "not finished"),
            count(r.replicated),
            count(r.still_failing),
        ]
    });
    out.table(redrives, "No re-drive of this source ran in this period.");
    out.heading(3, &format!("Audit findings for {bucket}"));
    let headers = ("audit", "Finding|Severity|Summary|First day|Last day|#Days");
    let audit = grid(headers, &source.audit_findings, |f: &AuditFindingSeen| {
        let (id, severity, summary) = (out.esc(&f.id), out.esc(&f.severity), out.esc(&f.summary));
        vec![
            id,
            severity,
            summary,
            date(f.first_day),
            date(f.last_day),
            f.days.to_string(),
        ]
    });
    out.table(audit, "None.");
    out.heading(3, &format!("Events S3 could not track in {bucket}"));
    out.para("OperationNotTracked events, counted per incident since it opened.");
    let headers = (
        "not-tracked",
        "Rule|Destination|#Events|First seen|Last seen",
    );
    let not_tracked = grid(headers, &source.not_tracked, |n: &NotTrackedCount| {
        let (rule, destination) = (out.esc(&n.rule_id), out.esc(&n.destination_bucket));
        let (first, last) = (opt_time(n.first_seen, NONE), opt_time(n.last_seen, NONE));
        vec![rule, destination, count(n.events), first, last]
    });
    out.table(not_tracked, "None.");
    out.close();
}

const CSS: &str = r#"
:root { --ink: #212529; --muted: #6c757d; --line: #dee2e6; --head: #f1f3f5; }
* { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; background: #fff; color: var(--ink); line-height: 1.5; font-size: 15px;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 1.7rem; margin: 0 0 .3rem; }
h2 { font-size: 1.35rem; margin: 2.4rem 0 .6rem; padding-bottom: .25rem;
  border-bottom: 2px solid var(--line); }
h3 { font-size: 1.15rem; margin: 1.8rem 0 .4rem; }
h4 { font-size: 1rem; margin: 1.3rem 0 .4rem; color: #343a40; }
h1 + p { color: var(--muted); margin-top: 0; }
p.none { color: var(--muted); font-style: italic; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem; font-size: .88rem; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top;
  overflow-wrap: anywhere; }
th { overflow-wrap: normal; }
td:not(.num) { min-width: 6.5em; }
th { background: var(--head); font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
table.kv, table.outcomes, table.exposure { width: auto; min-width: 50%; }
table.kv td:first-child { font-weight: 600; white-space: nowrap; }
.verdict { display: inline-block; padding: 1px 8px; border-radius: 4px; font-size: .78rem;
  font-weight: 700; letter-spacing: .03em; white-space: nowrap; color: #fff; }
.verdict-missed { background: #c92a2a; }
.verdict-at_risk { background: #f59f00; color: #212529; }
.verdict-no_evidence { background: #868e96; }
.verdict-met { background: #2b8a3e; }
figure.chart { margin: .6rem 0 1.2rem; }
svg.chart { display: block; width: 100%; height: auto; }
section.rule { border-top: 1px solid var(--line); margin-top: 2rem; }
h2 + section.rule { border-top: 0; margin-top: 0; }
a { color: #1864ab; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { font-size: 10pt; }
  main { max-width: none; padding: 0; }
  section.source { break-before: page; }
  section.rule + section.rule { break-before: page; }
  section.rule { border-top: 0; margin-top: 0; }
  table, figure.chart, svg.chart { break-inside: avoid; }
  table.long { break-inside: auto; }
  thead { display: table-header-group; }
  tr { break-inside: avoid; }
  h2, h3, h4 { break-after: avoid; }
  a { color: inherit; text-decoration: none; }
}
"#;

/// The page: `<table id="summary">`, `<section class="rule" id="rule-{i}">` per rule (`i` the
/// rule's index across sources, as given to the pictures: `latency-{i}`, `histogram-{i}`,
/// `timeline-{i}`), verdict badges `verdict-{level}` (`missed`, `at_risk`, ...).
pub fn html(report: &Report) -> String {
    let title = escape(&format!(
        "S3 replication evidence: {} (UTC)",
        report.period.label
    ));
    let mut page = Page(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
    ));
    outline(report, &mut page);
    page.0.push_str("</main>\n</body>\n</html>\n");
    page.0
}

struct Page(String);

impl Sink for Page {
    fn esc(&self, text: &str) -> String {
        escape(text)
    }

    fn badge(&self, level: VerdictLevel) -> String {
        let class = match level {
            VerdictLevel::Missed => "missed",
            VerdictLevel::AtRisk => "at_risk",
            VerdictLevel::NoEvidence => "no_evidence",
            VerdictLevel::Met => "met",
        };
        format!(
            r#"<span class="verdict verdict-{class}">{}</span>"#,
            level.label()
        )
    }

    fn link(&self, text: String, rule_index: Option<usize>) -> String {
        match rule_index {
            Some(i) => format!(r##"<a href="#rule-{i}">{text}</a>"##),
            None => text,
        }
    }

    fn heading(&mut self, level: usize, text: &str) {
        let _ = writeln!(self.0, "<h{level}>{text}</h{level}>");
    }

    fn para(&mut self, text: &str) {
        let _ = writeln!(self.0, "<p>{text}</p>");
    }

    fn table(&mut self, grid: Grid, empty: &str) {
        if grid.rows.is_empty() {
            if !empty.is_empty() {
                let _ = writeln!(self.0, r#"<p class="none">{empty}</p>"#);
            }
            return;
        }
        let _ = match grid.class {
            "summary" => write!(self.0, r#"<table id="summary">"#),
            class => write!(self.0, r#"<table class="{class}">"#),
        };
        let cell = |tag: &str, column: usize, text: &str| match grid.numeric.contains(&column) {
            true => format!(r#"<{tag} class="num">{text}</{tag}>"#),
            false => format!("<{tag}>{text}</{tag}>"),
        };
        self.0.push_str("<thead><tr>");
        for (column, header) in grid.headers.iter().enumerate() {
            self.0.push_str(&cell("th", column, header));
        }
        self.0.push_str("</tr></thead>\n<tbody>\n");
        for row in &grid.rows {
            self.0.push_str("<tr>");
            for (column, text) in row.iter().enumerate() {
                self.0.push_str(&cell("td", column, text));
            }
            self.0.push_str("</tr>\n");
        }
        self.0.push_str("</tbody></table>\n");
    }

    fn list(&mut self, items: &[String]) {
        self.0.push_str("<ul>\n");
        for item in items {
            let _ = writeln!(self.0, "<li>{item}</li>");
        }
        self.0.push_str("</ul>\n");
    }

    fn open(&mut self, class: &str, id: Option<String>) {
        let id = id.map(|id| format!(r#" id="{id}""#)).unwrap_or_default();
        let _ = writeln!(self.0, r#"<section class="{class}"{id}>"#);
    }

    fn close(&mut self) {
        self.0.push_str("</section>\n");
    }

    fn chart(&mut self, svg: String) {
        let _ = writeln!(self.0, r#"<figure class="chart">{svg}</figure>"#);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::markdown::tests::sample;

    #[test]
    fn page_has_its_structure_and_says_when_empty() {
        let page = html(&sample());
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"));
        for part in [
            r#"<meta charset="utf-8">"#,
            "@media print",
            "print-color-adjust: exact",
            "<h1>S3 replication evidence: 2026-11 (UTC)</h1>",
            "Generated 2026-11-30 06:00 UTC.",
            "within ±2.2% of the exact value",
            r#"<table id="summary">"#,
            r#"<section class="source">"#,
            r#"<section class="rule" id="rule-0">"#,
            r#"<section class="rule" id="rule-1">"#,
            r##"<a href="#rule-1">quiet</a>"##,
            r#"<span class="verdict verdict-missed">MISSED</span>"#,
            r#"<span class="verdict verdict-no_evidence">NO EVIDENCE</span>"#,
            "<td>99.7% (95% CI 99.1–99.9%)</td>",
            "3 h 12 min, from 2026-11-03 14:00 UTC to 2026-11-03 17:00 UTC",
            "<td>15 min, 10 min</td>",
            "<td>End of period</td><td class=\"num\">2</td><td class=\"num\">1.2 GiB</td>",
            "The slowest 1 of 120 late versions:",
            "No probes in this period.",
            "No version failed or missed the threshold in this period.",
            "No incidents in this period.",
            "<li>Canary figures are probe-sampled.</li>",
        ] {
            assert!(page.contains(part), "{part} missing");
        }
        for i in 0..2 {
            for chart in ["latency", "histogram", "timeline"] {
                assert!(page.contains(&format!(r#"id="{chart}-{i}" class="chart""#)));
            }
        }
        assert_eq!(
            (page.matches("<svg").count(), page.matches("</svg>").count()),
            (6, 6)
        );
        assert!(!page.contains("<tbody>\n</tbody>") && !page.contains("NaN"));
    }

    #[test]
    fn untrusted_text_is_escaped_and_nothing_is_fetched() {
        let page = html(&sample());
        for part in [
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "logs/a|b\\nc&lt;/svg&gt;[x](javascript:alert(1))",
            "<td>v1&#39;&quot;</td>",
            "canary: MISSING &lt;/svg&gt;&lt;b&gt;",
            "dst &amp; co",
            "<li>- a | note\\n# with &lt;i&gt;</li>",
        ] {
            assert!(page.contains(part), "{part} missing");
        }
        let page = page
            .to_lowercase()
            .replace(r#"xmlns="http://www.w3.org/2000/svg""#, "");
        for banned in [
            "<script", "http://", "https://", "url(", "@import", "<link", "<img", "src=",
        ] {
            assert!(!page.contains(banned), "{banned}");
        }
    }
}
