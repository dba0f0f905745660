//! The reports as plain-text tables, for a terminal at 3 a.m.

use super::{BacklogPage, StatusReport};
use chrono::{DateTime, SecondsFormat, Utc};
use std::fmt::Write;

/// Columns padded to their widest cell; the last column is not padded.
struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    /// Columns aligned right (numbers).
    right: Vec<usize>,
}

impl Table {
    fn new(headers: Vec<&'static str>, right: Vec<usize>) -> Self {
        Table {
            headers,
            rows: Vec::new(),
            right,
        }
    }

    fn render(&self, out: &mut String) {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let line = |cells: Vec<&str>, out: &mut String| {
            let last = cells.len().saturating_sub(1);
            let mut text = String::from("  ");
            for (i, cell) in cells.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                let pad = width.saturating_sub(cell.chars().count());
                if self.right.contains(&i) {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    if i != last {
                        text.push_str(&" ".repeat(pad));
                    }
                }
                if i != last {
                    text.push_str("  ");
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(self.headers.clone(), out);
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect(), out);
        }
    }
}

/// Control characters (legal in S3 keys) escaped, so one key cannot break the table.
fn printable(text: &str) -> String {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        text.to_owned()
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), time)
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
pub(crate) fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A window as given: `90m`, `24h`, `7d`.
fn span(seconds: i64) -> String {
    match seconds {
        s if s >= 2 * 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s => format!("{}m", s / 60),
    }
}

/// `512 B`, `1.5 KiB`, `3.2 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn ms(value: Option<u64>) -> String {
    match value {
        None => "-".into(),
        Some(v) if v < 10_000 => format!("{v} ms"),
        Some(v) => format!("{:.1} s", v as f64 / 1000.0),
    }
}

fn heading(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n{title}");
}

pub(super) fn status(report: &StatusReport) -> String {
    let mut out = String::new();
    let window = span(report.window_seconds);
    let _ = writeln!(
        out,
        "replmon status at {} (window {window}); source buckets: {}",
        time(report.generated_at),
        if report.source_buckets.is_empty() {
            "none".to_owned()
        } else {
            report.source_buckets.join(", ")
        }
    );
    if report.is_empty() {
        out.push_str(
            "\nThe ledger is empty: its catalog lists no source bucket and no alarm. That is \
             expected for a new deployment; check that the functions are invoked (replication \
             events need metrics on the rule and an s3:Replication:* notification). A ledger \
             written by a version before the catalog existed needs `replmon catalog-rebuild` once.\n",
        );
        return out;
    }

    heading(
        &mut out,
        &format!("OPEN INCIDENTS ({})", report.incidents.len()),
    );
    if report.incidents.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut table = Table::new(
            vec![
                "SEVERITY",
                "FROM",
                "WHAT",
                "CAUSE",
                "MISSING",
                "EVENTS",
                "PAGES",
                "OPENED",
                "LAST SEEN",
            ],
            vec![4, 5, 6],
        );
        for i in &report.incidents {
            let cause = match i.flapping_since {
                Some(_) => format!("{} (flapping)", i.cause),
                None => i.cause.clone(),
            };
            let count = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| v.to_string());
            table.rows.push(vec![
                i.severity.as_str().to_uppercase(),
                format!("{:?}", i.source).to_lowercase(),
                i.subject.clone(),
                cause,
                count(i.objects_missing),
                count(i.events),
                count(i.pages_sent),
                time(i.opened_at),
                opt_time(i.last_seen),
            ]);
        }
        table.render(&mut out);
        let explained: Vec<_> = report
            .incidents
            .iter()
            .filter_map(|i| Some((i.cause.as_str(), i.meaning.as_deref()?)))
            .filter(|(_, m)| !m.is_empty())
            .collect();
        let mut seen = Vec::new();
        for (cause, meaning) in explained {
            if !seen.contains(&cause) {
                seen.push(cause);
                let _ = writeln!(out, "  {cause}: {meaning}");
            }
        }
    }

    redrives(&mut out, report);

    heading(
        &mut out,
        "UNREPLICATED BACKLOG (what a failover would lose now)",
    );
    if report.backlog.is_empty() {
        out.push_str("  none: every failed or late object the ledger knows of has arrived\n");
    } else {
        let mut table = Table::new(
            vec![
                "SOURCE",
                "DESTINATION",
                "OBJECTS",
                "FAILED",
                "LATE",
                "BYTES",
                "OLDEST",
                "SINCE",
            ],
            vec![2, 3, 4, 5, 6],
        );
        for b in &report.backlog {
            let size = if b.objects_without_size == 0 {
                bytes(b.bytes)
            } else if b.objects_without_size == b.objects {
                "unknown".into()
            } else {
                format!("{} + {} unsized", bytes(b.bytes), b.objects_without_size)
            };
            table.rows.push(vec![
                b.source_bucket.clone(),
                b.destination_bucket.clone(),
                b.objects.to_string(),
                b.failed.to_string(),
                b.late.to_string(),
                size,
                age(b.oldest_age_seconds),
                time(b.oldest_since),
            ]);
        }
        table.render(&mut out);
        out.push_str("  list them: replmon backlog --bucket SOURCE [--destination DESTINATION] (canary probes are left out)\n");
    }

    heading(&mut out, &format!("CANARY (probes over the last {window})"));
    if report.canary.is_empty() {
        out.push_str("  no probes: the canary is not running or watches no bucket here\n");
    } else {
        let mut table = Table::new(
            vec![
                "SOURCE",
                "DESTINATION",
                "RULE",
                "PROBES",
                "ARRIVED",
                "P50",
                "P95",
                "P99",
                "LAST",
                "LAST AT",
            ],
            vec![3, 4, 5, 6, 7],
        );
        for c in &report.canary {
            let last = match (c.last_status, c.last_latency_ms) {
                (Some(status), Some(latency)) => {
                    format!("{} {}", status.as_str(), ms(Some(latency)))
                }
                (Some(status), None) => status.as_str().to_owned(),
                (None, _) => "-".into(),
            };
            table.rows.push(vec![
                c.source_bucket.clone(),
                c.destination_bucket.clone(),
                c.rule_id.clone(),
                c.probes.to_string(),
                c.arrived.to_string(),
                ms(c.p50_ms),
                ms(c.p95_ms),
                ms(c.p99_ms),
                last,
                opt_time(c.last_probe_at),
            ]);
        }
        table.render(&mut out);
        for c in report.canary.iter().filter(|c| c.last_detail.is_some()) {
            let _ = writeln!(
                out,
                "  {} -> {} (rule {}): {}",
                c.source_bucket,
                c.destination_bucket,
                c.rule_id,
                c.last_detail.as_deref().unwrap_or_default()
            );
        }
    }

    heading(&mut out, &format!("FAILURES BY REASON (last {window})"));
    if report.failures_by_reason.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut table = Table::new(vec!["REASON", "OBJECTS", "SOURCES", "MEANING"], vec![1]);
        for f in &report.failures_by_reason {
            table.rows.push(vec![
                f.reason.clone(),
                f.objects.to_string(),
                f.source_buckets.join(", "),
                f.meaning.clone(),
            ]);
        }
        table.render(&mut out);
    }

    heading(&mut out, "CONFIGURATION AUDIT (the canary's latest check)");
    if report.findings.is_empty() {
        out.push_str("  no findings\n");
    } else {
        let mut table = Table::new(vec!["SEVERITY", "BUCKET", "FINDING", "CHECKED"], vec![]);
        for f in &report.findings {
            table.rows.push(vec![
                f.severity.as_str().to_uppercase(),
                f.source_bucket.clone(),
                f.summary.clone(),
                time(f.audited_at),
            ]);
        }
        table.render(&mut out);
    }
    out
}

pub(super) fn backlog(page: &BacklogPage, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    if page.objects.is_empty() {
        out.push_str("No object is missing from the replica, as far as the ledger knows.\n");
        return out;
    }
    let mut table = Table::new(
        vec![
            "STATUS",
            "DESTINATION",
            "RULE",
            "SIZE",
            "WAITING",
            "REASON",
            "VERSION",
            "KEY",
        ],
        vec![3, 4],
    );
    for o in &page.objects {
        let since = o.failed_at.or(o.late_at).unwrap_or(o.first_seen);
        table.rows.push(vec![
            o.status().as_str().to_owned(),
            o.destination_bucket.clone(),
            o.rule_id.clone(),
            o.size.map_or_else(|| "-".into(), bytes),
            age((now - since).num_seconds()),
            o.failure_reason.clone().unwrap_or_else(|| "-".into()),
            o.version_id.clone().unwrap_or_else(|| "null".into()),
            printable(&o.key),
        ]);
    }
    table.render(&mut out);
    out
}

/// Each source's latest re-drive.
fn redrives(out: &mut String, report: &StatusReport) {
    if report.redrives.is_empty() {
        return;
    }
    heading(out, &format!("RE-DRIVES ({})", report.redrives.len()));
    let mut table = Table::new(
        vec![
            "SOURCE",
            "SCOPE",
            "ATTEMPT",
            "JOB",
            "STATE",
            "BY",
            "STARTED",
            "REPLICATED",
            "STILL FAILING",
            "FINISHED",
        ],
        vec![2, 7, 8],
    );
    for redrive in &report.redrives {
        let r = &redrive.record;
        let state = match (r.state, r.job_status.as_deref()) {
            (crate::redrive::RedriveState::Running, Some(status)) => format!("running ({status})"),
            (state, _) => format!("{state:?}").to_lowercase(),
        };
        let still = if r.still_failing.is_empty() {
            "0".to_owned()
        } else {
            r.still_failing
                .iter()
                .map(|f| {
                    format!(
                        "{} {}",
                        f.count,
                        crate::delivery::text::untrusted_brief(&f.code, 40)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let finished = r.finished_at.is_some();
        table.rows.push(vec![
            r.source_bucket.clone(),
            r.destination_bucket.clone().unwrap_or_else(|| "all".into()),
            r.attempt.to_string(),
            r.job_id.clone().unwrap_or_else(|| "-".into()),
            state,
            format!(
                "{}{}",
                r.requested_by,
                if r.forced { " (forced)" } else { "" }
            ),
            time(r.requested_at),
            if finished {
                r.replicated.to_string()
            } else {
                "-".into()
            },
            if finished { still } else { "-".into() },
            opt_time(r.finished_at),
        ]);
    }
    table.render(out);
    for redrive in &report.redrives {
        for id in &redrive.resolved_incidents {
            let _ = writeln!(
                out,
                "  resolved by re-drive: {} {id} (nothing missing any more)",
                redrive.record.source_bucket
            );
        }
    }
    for r in report
        .redrives
        .iter()
        .map(|r| &r.record)
        .filter(|r| !r.job_failures.is_empty())
    {
        let _ = writeln!(
            out,
            "  job {} failed: {}",
            r.job_id.as_deref().unwrap_or("?"),
            r.job_failures
                .iter()
                .map(|f| crate::delivery::text::untrusted_brief(f, 200))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
}
