//! The report as GitHub-flavoured Markdown for a wiki page or a pull request: the HTML page's
//! outline and tables (`html::outline`) without the pictures. Untrusted text is escaped so a
//! hostile key can neither break a table nor inject HTML, a link, an image or a heading.
//!
//! Also the text formats all three renderers share: escaping for HTML and XML, durations,
//! latencies, times, counts, bytes and shares.

use super::html::{outline, Grid, Sink};
use super::model::{Report, Share, VerdictLevel};
use chrono::{DateTime, NaiveDate, Utc};
use std::fmt::Write;

/// A missing figure.
pub(crate) const NONE: &str = "–";

/// A character that would be invisible or reorder text (controls are legal in S3 keys): the
/// same set pages escape.
pub(crate) use crate::delivery::text::is_hidden as hidden;

/// Text safe in HTML and XML, in elements and quoted attributes; hidden characters shown as
/// Rust escapes (`\n`, `\u{202e}`), so a key reads as it is.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if hidden(c) => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// `12 s`, `4 min 12 s`, `2 h 5 min`, `3 d 4 h` (negative as zero).
pub(crate) fn duration(seconds: i64) -> String {
    let pair = |a: i64, a_unit: &str, b: i64, b_unit: &str| match b {
        0 => format!("{a} {a_unit}"),
        _ => format!("{a} {a_unit} {b} {b_unit}"),
    };
    match seconds.max(0) {
        s @ 0..=59 => format!("{s} s"),
        s @ 60..=3_599 => pair(s / 60, "min", s % 60, "s"),
        s @ 3_600..=86_399 => pair(s / 3_600, "h", s % 3_600 / 60, "min"),
        s => pair(s / 86_400, "d", s % 86_400 / 3_600, "h"),
    }
}

/// Seconds given unsigned (a target, a threshold).
pub(crate) fn duration_u(seconds: u64) -> String {
    duration(i64::try_from(seconds).unwrap_or(i64::MAX))
}

/// `850 ms`, `12.4 s`, `3 min 5 s`.
pub(crate) fn latency(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_949 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => duration_u(ms / 1000 + u64::from(ms % 1000 >= 500)),
    }
}

/// `2026-11-03 14:05 UTC`.
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `2026-11-03`.
pub(crate) fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// `512 B`, `1.2 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let (mut value, mut unit) = (n as f64, 0);
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// `1,234,567`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let groups = digits.as_bytes().rchunks(3).rev();
    let groups: Vec<&str> = groups
        .map(|g| std::str::from_utf8(g).unwrap_or("?"))
        .collect();
    groups.join(",")
}

/// `99.7%`: never `100.0%` short of all, nor `0.0%` above none.
pub(crate) fn pct(share: f64) -> String {
    match share * 100.0 {
        p if !p.is_finite() => NONE.into(),
        p if p >= 100.0 => "100%".into(),
        p if p <= 0.0 => "0%".into(),
        p => format!("{:.1}%", p.clamp(0.1, 99.9)),
    }
}

/// `99.7% (95% CI 99.1–99.9%)`.
pub(crate) fn share(s: &Share) -> String {
    let low = pct(s.low);
    let low = low.trim_end_matches('%');
    format!("{} (95% CI {low}–{})", pct(s.share), pct(s.high))
}

/// The whole report: title, intro, summary table, per source and rule the figures as tables,
/// notes.
pub fn markdown(report: &Report) -> String {
    let mut doc = Doc(String::new());
    outline(report, &mut doc);
    let end = doc.0.trim_end().len();
    doc.0.truncate(end);
    doc.0.push('\n');
    doc.0
}

/// Untrusted text for a Markdown line or table cell: `|` as an entity (so a row keeps its
/// cells), Markdown and HTML punctuation backslash-escaped, `:` too (no bare `https:` link),
/// `www.` broken, a leading list or heading marker escaped, hidden characters (a newline) shown
/// as Rust escapes.
pub(crate) fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            c.escape_default().for_each(|e| push(&mut out, e));
        } else {
            push(&mut out, c);
        }
    }
    out
}

fn push(out: &mut String, c: char) {
    let escaped = match c {
        '|' => return out.push_str("&#124;"),
        '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '~' | '&' | '$' | '#' | '!' | ':' => true,
        '@' => true, // e-mail autolinks
        // `www.` would be a link; `1.` or `1)` first, an ordered list.
        '.' | ')' => {
            let www = out
                .get(out.len().saturating_sub(3)..)
                .is_some_and(|t| t.eq_ignore_ascii_case("www"));
            www || (!out.is_empty() && out.bytes().all(|b| b.is_ascii_digit()))
        }
        // A list item or a heading's underline, first.
        '-' | '+' | '=' => out.is_empty(),
        _ => false,
    };
    if escaped {
        out.push('\\');
    }
    out.push(c);
}

struct Doc(String);

impl Sink for Doc {
    fn esc(&self, text: &str) -> String {
        md(text)
    }

    fn badge(&self, level: VerdictLevel) -> String {
        format!("**{}**", level.label())
    }

    fn link(&self, text: String, _: Option<usize>) -> String {
        text
    }

    fn heading(&mut self, level: usize, text: &str) {
        let _ = writeln!(self.0, "{} {text}\n", "#".repeat(level));
    }

    fn para(&mut self, text: &str) {
        let _ = writeln!(self.0, "{text}\n");
    }

    fn table(&mut self, grid: Grid, empty: &str) {
        if grid.rows.is_empty() {
            if !empty.is_empty() {
                let _ = writeln!(self.0, "_{empty}_\n");
            }
            return;
        }
        let mut line = |cells: &[String]| {
            let _ = writeln!(self.0, "| {} |", cells.join(" | "));
        };
        line(&grid.headers);
        let align = |c| {
            if grid.numeric.contains(&c) {
                "---:"
            } else {
                "---"
            }
        };
        let rule: Vec<String> = (0..grid.headers.len())
            .map(|c| align(c).to_owned())
            .collect();
        line(&rule);
        grid.rows.iter().for_each(|row| line(row));
        self.0.push('\n');
    }

    fn list(&mut self, items: &[String]) {
        for item in items {
            let _ = writeln!(self.0, "- {item}");
        }
        self.0.push('\n');
    }

    fn open(&mut self, _: &str, _: Option<String>) {}

    fn close(&mut self) {}

    fn chart(&mut self, _: String) {}
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::model::*;
    use chrono::TimeZone;

    pub(crate) const HOSTILE_RULE: &str = "<script>alert(1)</script>";
    pub(crate) const HOSTILE_KEY: &str = "logs/a|b\nc</svg>[x](javascript:alert(1))";

    pub(crate) fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn incident(source: IncidentSource, cause: &str, opened_at: DateTime<Utc>) -> IncidentSpan {
        IncidentSpan {
            source,
            cause: cause.into(),
            opened_at,
            first_failure_at: Some(opened_at),
            paged_at: Some(opened_at + chrono::Duration::seconds(30)),
            resolved_at: Some(opened_at + chrono::Duration::hours(4)),
            seconds_to_page: Some(30),
            seconds_to_resolve: Some(14_400),
            count: 3,
            resolution: Some("re-drive".into()),
        }
    }

    /// One source, two rules: a hostile one with every figure, and one with nothing at all.
    pub(crate) fn sample() -> Report {
        let share = Share {
            hits: 997,
            of: 1000,
            share: 0.997,
            low: 0.991,
            high: 0.999,
        };
        let day = |d, p50_ms: Option<u64>| {
            let (day, p99_ms) = (
                NaiveDate::from_ymd_opt(2026, 11, d).unwrap(),
                p50_ms.map(|v| v * 6),
            );
            DayLatency {
                day,
                probes: 24,
                p50_ms,
                p99_ms,
                max_ms: p99_ms,
            }
        };
        let bar = |from_ms, to_ms, count| HistogramBar {
            from_ms,
            to_ms,
            count,
        };
        let (arrived, slow, missing, stalled, failed, cannot_verify) = (990, 7, 1, 0, 2, 0);
        let total = 1000;
        let outcomes = OutcomeFigures {
            arrived,
            slow,
            missing,
            stalled,
            failed,
            cannot_verify,
            total,
        };
        let latency = LatencyFigures {
            samples: 997,
            p50_ms: 2_100,
            p95_ms: 5_400,
            p99_ms: 12_400,
            max_ms: 1_250_000,
        };
        let canary = CanaryFigures {
            outcomes,
            latency: Some(latency),
            within_target: Some(share.clone()),
            within_threshold: Some(share.clone()),
            threshold_seconds: vec![900, 600],
            blind: Some(BlindSpan {
                seconds: 11_520,
                from: at(3, 14),
                to: at(3, 17),
            }),
            first_probe_at: Some(at(1, 0)),
            last_probe_at: Some(at(30, 23)),
            days: vec![
                day(1, Some(2_000)),
                day(2, None),
                day(3, Some(2_200)),
                day(4, Some(2_100)),
            ],
            histogram: vec![
                bar(1_000, 2_000, 400),
                bar(2_000, 4_000, 590),
                bar(4_000, 1_800_000, 7),
            ],
        };
        let reason = ReasonCount {
            reason: "AssumeRoleNotPermitted".into(),
            versions: 3,
            meaning: "S3 cannot assume the <role>".into(),
            fix: "Trust s3.amazonaws.com | then re-drive".into(),
        };
        let late = LateVersion {
            key: HOSTILE_KEY.into(),
            version_id: Some("v1'\"".into()),
            late_at: Some(at(3, 14)),
            replicated_at: None,
            replication_seconds: Some(f64::NAN),
        };
        let events = EventFigures {
            failed_by_reason: vec![reason],
            failed_versions: 3,
            missed_threshold: 120,
            replicated_after_threshold: 119,
            late_versions: vec![late],
        };
        let mut open = incident(
            IncidentSource::Canary,
            "canary: MISSING </svg><b>",
            at(29, 0),
        );
        (open.resolved_at, open.seconds_to_resolve, open.resolution) = (None, None, None);
        let rule = RuleReport {
            source_bucket: "src-bucket".into(),
            rule_id: HOSTILE_RULE.into(),
            destination_bucket: "dst & co".into(),
            verdict: Verdict {
                level: VerdictLevel::Missed,
                text: "3 versions failed".into(),
            },
            canary,
            events,
            incidents: vec![
                incident(
                    IncidentSource::Events,
                    "FAILED:AssumeRoleNotPermitted",
                    at(3, 14),
                ),
                open,
            ],
            exposure: Exposure {
                versions_at_end: 2,
                bytes_at_end: 1_288_490_189,
                versions_now: 0,
                bytes_now: 0,
            },
        };
        let mut quiet = rule.clone();
        quiet.rule_id = "quiet".into();
        quiet.verdict.level = VerdictLevel::NoEvidence;
        quiet.verdict.text = "no probe, no event".into();
        quiet.canary = CanaryFigures {
            outcomes: OutcomeFigures::default(),
            latency: None,
            within_target: None,
            within_threshold: None,
            threshold_seconds: vec![],
            blind: None,
            first_probe_at: None,
            last_probe_at: None,
            days: vec![DayLatency {
                probes: 0,
                ..day(1, None)
            }],
            histogram: vec![],
        };
        quiet.events = EventFigures {
            failed_by_reason: vec![],
            failed_versions: 0,
            missed_threshold: 0,
            replicated_after_threshold: 0,
            late_versions: vec![],
        };
        (quiet.incidents, quiet.exposure) = (vec![], Exposure::default());
        let row = |r: &RuleReport, within_target: Option<Share>, p99_ms| SummaryRow {
            source_bucket: r.source_bucket.clone(),
            rule_id: r.rule_id.clone(),
            destination_bucket: r.destination_bucket.clone(),
            verdict: r.verdict.clone(),
            probes: r.canary.outcomes.total,
            within_target,
            p99_ms,
            failed_versions: r.events.failed_versions,
            incidents: r.incidents.len() as u64,
            backlog_at_end: r.exposure.versions_at_end,
        };
        let summary = vec![
            row(&rule, Some(share), Some(12_400)),
            row(&quiet, None, None),
        ];
        let redrive = RedriveSummary {
            destination_bucket: None,
            attempt: 2,
            state: "Complete".into(),
            started_at: at(4, 9),
            finished_at: Some(at(4, 10)),
            replicated: 3,
            still_failing: 0,
        };
        let (first_day, last_day) = (at(2, 0).date_naive(), at(5, 0).date_naive());
        let finding = AuditFindingSeen {
            id: "rtc-off".into(),
            severity: "high".into(),
            summary: "Replication Time Control is off".into(),
            first_day,
            last_day,
            days: 4,
        };
        let source = SourceReport {
            source_bucket: "src-bucket".into(),
            rules: vec![rule, quiet],
            redrives: vec![redrive],
            audit_findings: vec![finding],
            not_tracked: vec![],
        };
        let period = Period {
            from: at(1, 0),
            to: at(30, 0) + chrono::Duration::days(1),
            label: "2026-11".into(),
        };
        Report {
            generated_at: at(30, 6),
            period,
            target_seconds: 900,
            percentile_error: 0.022,
            summary,
            sources: vec![source],
            notes: vec![
                "Canary figures are probe-sampled.".into(),
                "- a | note\n# with <i>".into(),
            ],
        }
    }

    #[test]
    fn text_formats_for_people() {
        let durations = [
            (12, "12 s"),
            (252, "4 min 12 s"),
            (900, "15 min"),
            (7_500, "2 h 5 min"),
        ];
        for (seconds, text) in durations
            .into_iter()
            .chain([(273_600, "3 d 4 h"), (-5, "0 s")])
        {
            assert_eq!(duration(seconds), text);
        }
        for (ms, text) in [(850, "850 ms"), (12_400, "12.4 s"), (185_000, "3 min 5 s")] {
            assert_eq!(latency(ms), text);
        }
        assert!(!latency(u64::MAX).is_empty());
        assert_eq!(time(at(3, 14)), "2026-11-03 14:00 UTC");
        assert_eq!(
            (bytes(512), bytes(1_288_490_189)),
            ("512 B".into(), "1.2 GiB".into())
        );
        assert_eq!(
            (count(7), count(1_234_567)),
            ("7".into(), "1,234,567".into())
        );
        let s = Share {
            hits: 997,
            of: 1000,
            share: 0.997,
            low: 0.991,
            high: 0.999,
        };
        assert_eq!(share(&s), "99.7% (95% CI 99.1–99.9%)");
        assert_eq!(
            (pct(0.99999), pct(1.0), pct(f64::NAN)),
            ("99.9%".into(), "100%".into(), NONE.into())
        );
        let hostile = "<a href='x'>&\"\n\u{202e}";
        assert_eq!(
            escape(hostile),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;\\n\\u{202e}"
        );
        // Every character pages escape, line separators and soft hyphens included.
        for c in ['\u{2028}', '\u{2029}', '\u{2060}', '\u{061c}', '\u{feff}'] {
            assert!(!escape(&format!("a{c}b")).contains(c), "{c:?}");
            assert!(!md(&format!("a{c}b")).contains(c), "{c:?}");
        }
    }

    #[test]
    fn md_escapes_what_could_break_a_table_or_inject() {
        assert_eq!(md("a|b"), "a&#124;b");
        assert_eq!(md("[x](https://e.example)"), "\\[x\\](https\\://e.example)");
        assert_eq!(md("www.evil.example <b>"), "www\\.evil.example \\<b\\>");
        assert_eq!(md("1. one"), "1\\. one");
        assert_eq!(md("- x\ny"), "\\- x\\\\ny");
        assert_eq!(md("`*_~$#!&@"), "\\`\\*\\_\\~\\$\\#\\!\\&\\@");
    }

    #[test]
    fn markdown_carries_the_figures_escaped() {
        let doc = markdown(&sample());
        assert!(
            doc.starts_with("# S3 replication evidence: 2026-11 (UTC)\n"),
            "{doc}"
        );
        for part in [
            "## Summary",
            "| Source | Rule | Destination | Verdict | Probes | Within 15 min | p99 |",
            "| **MISSED** |",
            "99.7% (95% CI 99.1–99.9%)",
            "### Rule \\<script\\>alert(1)\\</script\\> → dst \\& co",
            "logs/a&#124;b\\\\nc\\</svg\\>\\[x\\](javascript\\:alert(1))",
            "_No probes in this period._",
            "_No incidents in this period._",
            "| End of period | 2 | 1.2 GiB |",
            "- \\- a &#124; note\\\\n\\# with \\<i\\>",
        ] {
            assert!(doc.contains(part), "{part} missing in\n{doc}");
        }
        assert!(!doc.contains("<svg") && !doc.contains("NaN"));
        assert_eq!(
            doc.matches("<").count(),
            doc.matches("\\<").count(),
            "every < escaped"
        );
        // Every table keeps its header's number of cells, row by row.
        let mut columns = None;
        for line in doc.lines() {
            match line.starts_with('|') {
                true => {
                    let pipes = line.matches('|').count();
                    assert_eq!(*columns.get_or_insert(pipes), pipes, "{line}");
                }
                false => columns = None,
            }
        }
        let summary = doc
            .lines()
            .skip_while(|l| !l.starts_with("| Source"))
            .take(4);
        let summary: Vec<&str> = summary.take_while(|l| l.starts_with('|')).collect();
        assert_eq!(summary.len(), 4, "header, alignment, two rows");
    }
}
