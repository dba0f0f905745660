//! The summary table as terminal text (what `replmon report --out FILE` prints beside the
//! file it wrote).

use super::model::{Report, Share};
use crate::delivery::text::untrusted_brief;
use std::fmt::Write as _;

fn share(share: Option<&Share>) -> String {
    share.map_or_else(|| "-".to_owned(), super::build::percent)
}

pub fn summary_text(report: &Report) -> String {
    let mut out = format!(
        "S3 replication evidence, {} (UTC), target {} min\n",
        untrusted_brief(&report.period.label, 60),
        report.target_seconds / 60
    );
    if report.summary.is_empty() {
        out.push_str("  no rule has probes, events or incidents in this period\n");
        return out;
    }
    let rows: Vec<[String; 8]> = report
        .summary
        .iter()
        .map(|row| {
            [
                row.verdict.level.label().to_owned(),
                untrusted_brief(&row.source_bucket, 40),
                untrusted_brief(&row.rule_id, 30),
                untrusted_brief(&row.destination_bucket, 40),
                row.probes.to_string(),
                share(row.within_target.as_ref()),
                row.p99_ms.map_or_else(
                    || "-".to_owned(),
                    |ms| format!("{:.1} s", ms as f64 / 1000.0),
                ),
                format!(
                    "{} failed, {} missing at end, {} incidents",
                    row.failed_versions, row.backlog_at_end, row.incidents
                ),
            ]
        })
        .collect();
    let header = [
        "VERDICT",
        "SOURCE",
        "RULE",
        "DESTINATION",
        "PROBES",
        "<=15 MIN",
        "P99",
        "EVENTS",
    ];
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut text = String::from(" ");
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(text, " {cell:<width$}");
        }
        text.trim_end().to_owned() + "\n"
    };
    out.push_str(&line(header.to_vec()));
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    // Each verdict's reason, below the table.
    for row in &report.summary {
        let _ = writeln!(
            out,
            "  {} {} -> {}: {}",
            untrusted_brief(&row.rule_id, 30),
            untrusted_brief(&row.source_bucket, 40),
            untrusted_brief(&row.destination_bucket, 40),
            untrusted_brief(&row.verdict.text, 300)
        );
    }
    out
}
